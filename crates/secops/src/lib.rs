//! Security operations, downstream of the audit log (which knows nothing of them): a reader
//! of the audit stream raises findings from what the entries show and writes the messages
//! of subscribed webhooks to a durable outbox, which a deliverer sends, signed.
//!
//! Rooms, dependencies pointing down: `reader` → `detect` → `findings`; `reader` and
//! `deliver` → `webhooks` → `target`, `sign`. Everything reaches the catalog through its
//! [`Door`] (storage, control-plane authorization, the audit log); nothing here reaches
//! tenant data. (The catalog's `probes` counts not-found answers in memory and audits a
//! burst; the reader sees it like any entry.)

mod deliver;
mod detect;
mod findings;
mod reader;
mod sign;
mod target;
mod webhooks;

use std::sync::Arc;

use bulkhead_catalog::{Catalog, Door};

pub use findings::FindingRules;
pub use webhooks::WebhookSettings;

/// What security operations are told at start.
#[derive(Debug, Clone, Default)]
pub struct SecopsSettings {
    /// The detectors' thresholds and the finding kinds switched off.
    pub findings: FindingRules,
    pub webhooks: WebhookSettings,
}

/// Findings and webhooks, for one server.
#[derive(Clone)]
pub struct Secops {
    door: Door,
    settings: Arc<SecopsSettings>,
    /// Wakes the webhook deliverer (a message was written).
    wake: Arc<tokio::sync::Notify>,
}

impl Secops {
    pub fn new(catalog: &Catalog, settings: SecopsSettings) -> Self {
        Secops {
            door: catalog.door(),
            settings: Arc::new(settings),
            wake: Arc::default(),
        }
    }

    /// Starts the reader and the deliverer; both end when the catalog is dropped.
    pub fn spawn(&self) {
        reader::spawn(
            self.door.downgrade(),
            Arc::clone(&self.settings),
            Arc::clone(&self.wake),
        );
        deliver::spawn(
            self.door.downgrade(),
            Arc::clone(&self.settings),
            Arc::clone(&self.wake),
        );
    }
}
