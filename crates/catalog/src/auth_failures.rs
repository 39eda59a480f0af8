//! Failed authentications, aggregated so anonymous traffic cannot flood the audit log: the
//! first failure of a kind (source address and reason) in a window is written at once, as
//! before; the ones that follow in the same window are counted, and one row with the count
//! is written when the window closes. At most [`MAX_KINDS`] kinds are tracked at once; the
//! rest of a flood is counted under one overflow kind, never dropped silently.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use bulkhead_core::time::Timestamp;
use parking_lot::Mutex;
use serde_json::json;

use crate::{AuditEvent, Catalog, Inner};

/// How long failures of one kind are counted before their summary row is written.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// Kinds tracked at once.
const MAX_KINDS: usize = 10_000;
const OVERFLOW: (&str, &str) = ("*", "more sources than tracked");

struct Window {
    opened: Timestamp,
    /// Failures after the first, not yet written.
    repeated: u64,
    last_request_id: String,
}

#[derive(Default)]
pub(crate) struct AuthFailures {
    windows: Mutex<HashMap<(String, String), Window>>,
}

fn event(at: Timestamp, source: &str, request_id: &str, detail: String) -> AuditEvent {
    AuditEvent {
        at,
        actor: "-".into(),
        action: "authenticate".into(),
        target: source.to_owned(),
        tenant: None,
        outcome: "denied:invalid_credentials".into(),
        request_id: request_id.to_owned(),
        detail: Some(detail),
    }
}

fn summary(source: &str, reason: &str, window: &Window, now: Timestamp) -> AuditEvent {
    let detail = json!({
        "reason": reason,
        "repeated": window.repeated,
        "from": window.opened,
        "to": now,
    });
    event(now, source, &window.last_request_id, detail.to_string())
}

impl AuthFailures {
    /// Counts one failure; returns the rows to write now (the first of a window, and the
    /// summary of a window this one replaces).
    pub(crate) fn record(
        &self,
        source: &str,
        reason: &str,
        request_id: &str,
        now: Timestamp,
    ) -> Vec<AuditEvent> {
        let window_micros = WINDOW.as_micros() as i64;
        let mut windows = self.windows.lock();
        let mut key = (source.to_owned(), reason.to_owned());
        if !windows.contains_key(&key) && windows.len() >= MAX_KINDS {
            key = (OVERFLOW.0.to_owned(), OVERFLOW.1.to_owned());
        }
        let mut out = Vec::new();
        match windows.get_mut(&key) {
            Some(window) if now.as_micros() - window.opened.as_micros() < window_micros => {
                window.repeated += 1;
                window.last_request_id = request_id.to_owned();
                return out;
            }
            Some(window) if window.repeated > 0 => out.push(summary(&key.0, &key.1, window, now)),
            _ => {}
        }
        windows.insert(
            key.clone(),
            Window {
                opened: now,
                repeated: 0,
                last_request_id: request_id.to_owned(),
            },
        );
        out.push(event(now, &key.0, request_id, reason.to_owned()));
        out
    }

    /// The summaries of windows that closed by `now` (all of them with `all`), forgetting them.
    pub(crate) fn closed(&self, now: Timestamp, all: bool) -> Vec<AuditEvent> {
        let window_micros = WINDOW.as_micros() as i64;
        let mut windows = self.windows.lock();
        let mut out = Vec::new();
        windows.retain(|(source, reason), window| {
            let over = all || now.as_micros() - window.opened.as_micros() >= window_micros;
            if over && window.repeated > 0 {
                out.push(summary(source, reason, window, now));
            }
            !over
        });
        out
    }
}

impl Catalog {
    /// Audits a failed authentication from `source` (aggregated per source and reason).
    pub(crate) fn audit_auth_failure(&self, source: &str, reason: &str, request_id: &str) {
        let now = self.inner().clock.now();
        for event in self
            .inner()
            .auth_failures
            .record(source, reason, request_id, now)
        {
            self.inner().audit.record(event);
        }
    }

    /// Writes the summaries of every open window (at shutdown).
    pub(crate) fn flush_auth_failures(&self) {
        let now = self.inner().clock.now();
        for event in self.inner().auth_failures.closed(now, true) {
            self.inner().audit.record(event);
        }
    }
}

/// Writes closed windows' summaries, every [`WINDOW`].
pub(crate) fn spawn_flusher(inner: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(WINDOW).await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let now = inner.clock.now();
            for event in inner.auth_failures.closed(now, false) {
                inner.audit.record(event);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_micros(secs * 1_000_000)
    }

    #[test]
    fn a_flood_from_one_source_is_one_row_then_one_count_per_window() {
        let failures = AuthFailures::default();
        let mut rows = Vec::new();
        for i in 0..4000 {
            rows.extend(failures.record("10.0.0.9", "unknown key", &format!("r{i}"), at(1)));
        }
        assert_eq!(rows.len(), 1, "the first is written at once");
        // Another reason or source is a kind of its own.
        assert_eq!(
            failures
                .record("10.0.0.9", "wrong secret", "x", at(2))
                .len(),
            1
        );
        assert_eq!(
            failures.record("10.0.0.7", "unknown key", "y", at(2)).len(),
            1
        );
        assert!(
            failures.closed(at(5), false).is_empty(),
            "windows still open"
        );
        let summaries = failures.closed(at(12), false);
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        assert!(
            summaries[0]
                .detail
                .as_deref()
                .unwrap()
                .contains("\"repeated\":3999")
        );
        assert_eq!(summaries[0].target, "10.0.0.9");
        // A new window starts with an immediate row again.
        assert_eq!(
            failures
                .record("10.0.0.9", "unknown key", "z", at(13))
                .len(),
            1
        );
    }

    #[test]
    fn the_tracked_kinds_are_bounded_and_the_rest_counted() {
        let failures = AuthFailures::default();
        let mut rows = 0;
        for i in 0..(MAX_KINDS + 500) {
            rows += failures
                .record(&format!("s{i}"), "unknown key", "r", at(1))
                .len();
        }
        assert_eq!(
            rows,
            MAX_KINDS + 1,
            "one row per tracked kind, one for the overflow"
        );
        let summaries = failures.closed(at(1), true);
        assert_eq!(summaries.len(), 1);
        assert!(
            summaries[0]
                .detail
                .as_deref()
                .unwrap()
                .contains("\"repeated\":499")
        );
    }
}
