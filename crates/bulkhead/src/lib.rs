//! The Bulkhead server as a library, behind the `bulkhead` binary (`src/main.rs`).
//!
//! Public, because something outside this crate starts a server in process:
//! - [`config`]: [`config::ServeArgs`] (the `serve` flags) and [`config::Config::load`], which
//!   layers defaults, file, environment and flags into a validated [`config::Config`];
//! - [`serve`]: [`serve::open`] opens a data directory into a [`serve::Node`] (catalog and the
//!   HTTP state to hand to `bulkhead_server::serve`), and [`serve::run`] is `bulkhead serve`.
//!
//! - [`logging`]: the process's log (stderr through a writer thread that never holds a request,
//!   OTLP traces when configured), installed by `bulkhead serve`.
//!
//! The `bulkhead-bench` crate (crates/bench) uses exactly these to run its in-process server.
//! Everything else — `domains` (the `EngineFactory` mapping a domain's engine kind to a
//! concrete engine), `identity` (JWT issuers as the catalog's identity providers),
//! `telemetry` (the OTLP exporter) and `private` (umask, data-directory permissions,
//! open-files limit) — stays private.

pub mod backup;
pub mod config;
pub mod logging;
pub mod serve;

mod domains;
mod identity;
mod private;
mod telemetry;
