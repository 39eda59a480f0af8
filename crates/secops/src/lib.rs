//! Security operations, downstream of the audit log (which knows nothing of them): a reader
//! of the audit stream raises findings from what the entries show and writes the messages
//! of subscribed webhooks to a durable outbox, which a deliverer sends, signed.
//!
//! Rooms, dependencies pointing down: `reader` → `detect` → `findings`; `reader` and
//! `deliver` → `webhooks` → `target`, `sign`. `probes` counts not-found answers in memory
//! and audits a burst (the reader sees it like any entry).

mod deliver;
mod detect;
pub(crate) mod findings;
pub(crate) mod probes;
mod reader;
mod sign;
mod target;
pub(crate) mod webhooks;

pub use findings::FindingRules;
pub use webhooks::WebhookSettings;

/// Starts the reader and the deliverer; both end when the catalog is dropped.
pub(crate) fn spawn(inner: std::sync::Weak<crate::Inner>) {
    reader::spawn(inner.clone());
    deliver::spawn(inner);
}
