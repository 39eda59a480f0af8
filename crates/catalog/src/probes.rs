//! Not-found answers on record ids, counted per principal in memory: a record of another
//! tenant answers exactly like a missing one (so nothing leaks), but a principal asking for
//! many missing ids is enumerating. Once a principal crosses the threshold within the
//! window, one `probe.enumeration` entry is audited for the burst; the findings reader turns
//! it into a finding. Counts are per server (a probe spread over servers is counted on each).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bulkhead_core::TenantId;
use bulkhead_core::error::Error;
use parking_lot::Mutex;

use crate::{AuditEvent, Catalog, Ctx};

/// Principals tracked at once; past it the oldest burst is forgotten.
const MAX_TRACKED: usize = 10_000;

struct Burst {
    started: Instant,
    count: u64,
    reported: bool,
}

#[derive(Default)]
pub(crate) struct Probes {
    bursts: Mutex<HashMap<String, Burst>>,
}

impl Probes {
    /// Counts one not-found answer to `principal`; returns the count when this one crosses
    /// `threshold` (once per burst of `window`).
    fn note(&self, principal: &str, threshold: u64, window: Duration) -> Option<u64> {
        let now = Instant::now();
        let mut bursts = self.bursts.lock();
        if bursts.len() >= MAX_TRACKED && !bursts.contains_key(principal) {
            bursts.retain(|_, b| now.duration_since(b.started) < window);
            if bursts.len() >= MAX_TRACKED
                && let Some(oldest) = bursts
                    .iter()
                    .min_by_key(|(_, b)| b.started)
                    .map(|(k, _)| k.clone())
            {
                bursts.remove(&oldest);
            }
        }
        let burst = bursts.entry(principal.to_owned()).or_insert(Burst {
            started: now,
            count: 0,
            reported: false,
        });
        if now.duration_since(burst.started) > window {
            *burst = Burst {
                started: now,
                count: 0,
                reported: false,
            };
        }
        burst.count += 1;
        (burst.count >= threshold && !std::mem::replace(&mut burst.reported, true))
            .then_some(burst.count)
    }
}

impl Catalog {
    /// Passes a record operation's result on; a `record_not_found` answer is counted
    /// against the caller (see the module).
    pub(crate) fn watch_not_found<T>(
        &self,
        ctx: &Ctx,
        tenant: Option<&TenantId>,
        result: Result<T, Error>,
    ) -> Result<T, Error> {
        if let Err(e) = &result
            && e.code == "record_not_found"
        {
            let (threshold, window) = self.inner().options.enumeration;
            let actor = ctx.principal.actor();
            if let Some(count) = self.inner().probes.note(actor, threshold, window) {
                self.inner().audit.record_from(
                    AuditEvent {
                        at: self.inner().clock.now(),
                        actor: actor.to_owned(),
                        action: "probe.enumeration".into(),
                        target: "records".into(),
                        tenant: tenant.cloned(),
                        outcome: "ok".into(),
                        request_id: ctx.request_id.clone(),
                        detail: Some(
                            serde_json::json!({
                                "not_found": count,
                                "window_secs": window.as_secs(),
                            })
                            .to_string(),
                        ),
                    },
                    ctx.source.clone(),
                );
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_reported_once_when_it_crosses_the_threshold() {
        let probes = Probes::default();
        let window = Duration::from_secs(60);
        let reports: Vec<u64> = (0..200)
            .filter_map(|_| probes.note("key:k1", 50, window))
            .collect();
        assert_eq!(reports, [50]);
        assert_eq!(probes.note("key:k2", 1, window), Some(1));
        let short = Duration::from_millis(1);
        assert_eq!(probes.note("key:k3", 2, short), None);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(probes.note("key:k3", 2, short), None, "a new burst");
    }
}
