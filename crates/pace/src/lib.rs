//! Background work paced by the latency its neighbours see.
//!
//! Bulk work that shares cores, files and disks with tenants' requests (a live move's copy,
//! and later other background passes) must not make those requests slow. Like the load
//! throttlers of online schema-change tools, it watches what the neighbours see and adapts:
//!
//! - [`Board`] keeps the latency of recent requests per domain and per file (pool or bridge
//!   namespace), fed by the HTTP layer as each request ends.
//! - [`Controller`] turns observations of the neighbours' p99 into a duty cycle: the share of
//!   time the work may run. It takes the neighbours' p99 just before the work began as the
//!   baseline, halves the duty while the p99 is over `target_ratio` times that, adds a step
//!   while there is room, and never goes below `floor`, so the work always finishes.
//! - [`Throttle`] puts the two together behind a clock, for the work to ask how long to
//!   rest after each step.
//!
//! Nothing here knows tenants' data or the catalog: the controller is pure and its clock and
//! latency source are injected, so its reactions are tested deterministically.

mod board;
mod control;
mod throttle;

pub use board::{Board, Observation, Place};
pub use control::{Controller, Pace, Settings, State};
pub use throttle::Throttle;
