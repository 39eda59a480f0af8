//! The audit log (invariant 5). Control-plane changes are written in the same transaction as
//! the change itself; denials and platform-admin data access go through a bounded queue to a
//! writer task that commits them in batches, so a flood of bad requests cannot stall the
//! server. The queue is drained before shutdown completes. Every entry is linked into one
//! hash chain (`chain`).

pub(crate) mod chain;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bulkhead_api::{AuditEntry, AuditQuery, Page};
use bulkhead_core::access::ControlAction;
use bulkhead_core::error::Error;
use bulkhead_core::time::Timestamp;
use tokio::sync::mpsc;

pub use crate::rows::audit::AuditEvent;
use crate::rows::audit::{ENTRY_COLUMNS, append, entry, insert, purge_before};
use crate::rows::paging::{list_cursor, list_position, page_limit};
use crate::store::{Store, StoreResult, Tx, Val};
use crate::{Catalog, Ctx};

/// Longest `actor` or `action` filter accepted.
const MAX_FILTER_CHARS: usize = 200;

pub(crate) fn spawn_retention(inner: std::sync::Weak<crate::Inner>, keep: std::time::Duration) {
    tokio::spawn(async move {
        loop {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let catalog = Catalog { inner: strong };
            let now = catalog.inner().clock.now();
            let cutoff = Timestamp::from_micros(now.as_micros() - keep.as_micros() as i64);
            let removed = catalog
                .blocking(move |store| {
                    store.write(|tx| {
                        let removed = purge_before(tx, cutoff)?;
                        if removed > 0 {
                            insert(
                                tx,
                                &AuditEvent {
                                    at: now,
                                    actor: "system".into(),
                                    action: "audit.retention".into(),
                                    target: "audit".into(),
                                    tenant: None,
                                    outcome: "ok".into(),
                                    request_id: String::new(),
                                    detail: Some(format!(
                                        "{{\"removed\": {removed}, \"before\": \"{cutoff}\"}}"
                                    )),
                                },
                            )?;
                        }
                        Ok(removed)
                    })
                })
                .await;
            match removed {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "audit rows past their retention removed"),
                Err(e) => tracing::warn!(error = %e, "audit retention failed; retried in an hour"),
            }
            drop(catalog);
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
    });
}

enum Message {
    /// An event and the client address of its request, if known.
    Event(AuditEvent, Option<Arc<str>>),
    /// Answered once every event queued before it is committed.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The sending side of the audit queue.
#[derive(Clone)]
pub struct AuditQueue {
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
    /// Never reset (the writer takes `dropped` to report it in the log).
    dropped_total: Arc<AtomicU64>,
}

impl AuditQueue {
    /// Queues an event without waiting. When the queue is full the event is counted and logged
    /// instead; the count is itself written to the audit log by the writer.
    pub fn record(&self, event: AuditEvent) {
        self.record_from(event, None);
    }

    /// [`AuditQueue::record`] for a request from `source` (the client's address).
    pub fn record_from(&self, event: AuditEvent, source: Option<Arc<str>>) {
        if self.tx.try_send(Message::Event(event, source)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("audit queue full; event counted as dropped");
        }
    }

    /// Events waiting to be written, and events dropped since start (queue full).
    pub fn depth(&self) -> (u64, u64) {
        let queued = self.tx.max_capacity() - self.tx.capacity();
        (queued as u64, self.dropped_total.load(Ordering::Relaxed))
    }

    /// Waits until every event queued so far is committed.
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// Starts the writer task; it ends once every queue handle is dropped.
pub(crate) fn spawn_writer(store: Arc<Store>) -> AuditQueue {
    let (tx, mut rx) = mpsc::channel::<Message>(10_000);
    let dropped = Arc::new(AtomicU64::new(0));
    let queue = AuditQueue {
        tx,
        dropped: Arc::clone(&dropped),
        dropped_total: Arc::default(),
    };
    tokio::spawn(async move {
        let mut messages = Vec::with_capacity(256);
        while rx.recv_many(&mut messages, 256).await > 0 {
            let mut events = Vec::with_capacity(messages.len() + 1);
            let mut waiters = Vec::new();
            for message in messages.drain(..) {
                match message {
                    Message::Event(e, source) => events.push((e, source)),
                    Message::Flush(done) => waiters.push(done),
                }
            }
            let lost = dropped.swap(0, Ordering::Relaxed);
            if lost > 0 {
                let at = events.first().map_or(Timestamp::from_micros(0), |e| e.0.at);
                events.push((
                    AuditEvent {
                        at,
                        actor: "system".into(),
                        action: "audit.dropped".into(),
                        target: "audit".into(),
                        tenant: None,
                        outcome: "ok".into(),
                        request_id: String::new(),
                        detail: Some(format!("{lost} events dropped while the queue was full")),
                    },
                    None,
                ));
            }
            if !events.is_empty() {
                let store = Arc::clone(&store);
                let written = tokio::task::spawn_blocking(move || {
                    store.write(|tx| {
                        append(tx, events.iter().map(|(e, s)| (e, s.as_deref())))?;
                        Ok(())
                    })
                })
                .await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "audit batch could not be written"),
                    Err(e) => tracing::error!(error = %e, "audit writer task failed"),
                }
            }
            for done in waiters {
                let _ = done.send(());
            }
        }
    });
    queue
}

/// A checked `GET /v1/audit` filter, as SQL terms over the `audit` table.
#[derive(Debug, Default)]
struct Filter {
    terms: Vec<String>,
    values: Vec<Val>,
}

impl Filter {
    /// Adds a term; `{}` in it stands for the value's placeholder.
    fn push(&mut self, term: &str, value: impl Into<Val>) {
        self.values.push(value.into());
        let placeholder = format!("?{}", self.values.len());
        self.terms.push(term.replace("{}", &placeholder));
    }

    fn check(query: &AuditQuery) -> Result<Filter, Error> {
        let mut filter = Filter::default();
        if let Some(tenant) = &query.tenant {
            filter.push("tenant_id = {}", tenant.as_str());
        }
        if let Some(actor) = &query.actor {
            filter.push("actor = {}", text_filter("actor", actor)?);
        }
        if let Some(action) = &query.action {
            let action = text_filter("action", action)?;
            match action.strip_suffix('*') {
                Some(prefix) if prefix.contains('*') => return Err(bad_star()),
                // A bare `*` is every action: no term.
                Some("") => {}
                Some(prefix) => filter.push(
                    "substr(action, 1, length(CAST({} AS TEXT))) = CAST({} AS TEXT)",
                    prefix,
                ),
                None if action.contains('*') => return Err(bad_star()),
                None => filter.push("action = {}", action),
            }
        }
        match query.outcome.as_deref() {
            None => {}
            Some("ok") => filter.push("outcome = {}", "ok"),
            Some("denied") => filter.push("substr(outcome, 1, 7) = {}", "denied:"),
            Some(one) if one.len() > "denied:".len() && one.starts_with("denied:") => {
                filter.push("outcome = {}", one);
            }
            Some(other) => {
                return Err(Error::bad_request(
                    "invalid_outcome",
                    format!("outcome {other:?} is not one of ok, denied, denied:<code>"),
                ));
            }
        }
        if let (Some(from), Some(to)) = (query.from, query.to)
            && from >= to
        {
            return Err(Error::bad_request(
                "invalid_time_range",
                format!("from ({from}) must be before to ({to})"),
            ));
        }
        if let Some(from) = query.from {
            filter.push("at >= {}", from.as_micros());
        }
        if let Some(to) = query.to {
            filter.push("at < {}", to.as_micros());
        }
        Ok(filter)
    }
}

fn text_filter<'a>(name: &str, value: &'a str) -> Result<&'a str, Error> {
    if value.is_empty() || value.chars().count() > MAX_FILTER_CHARS {
        return Err(Error::bad_request(
            "invalid_filter",
            format!("{name} must be 1 to {MAX_FILTER_CHARS} characters"),
        ));
    }
    Ok(value)
}

fn bad_star() -> Error {
    Error::bad_request(
        "invalid_filter",
        "action takes `*` only at its end, as a prefix (`move.*`)",
    )
}

fn encode_cursor(seq: i64) -> String {
    list_cursor("audit", &seq.to_string())
}

fn decode_cursor(cursor: &str) -> Result<i64, Error> {
    let seq = list_position("audit", cursor)?;
    seq.parse()
        .map_err(|_| Error::bad_request("invalid_cursor", "cursor is not one this server issued"))
}

/// Up to `limit` entries matching `filter` with `seq` below `before`, newest first.
fn read_page(
    tx: &dyn Tx,
    filter: &Filter,
    before: Option<i64>,
    limit: u32,
) -> StoreResult<Vec<AuditEntry>> {
    let mut terms = filter.terms.clone();
    let mut values = filter.values.clone();
    if let Some(before) = before {
        values.push(Val::Int(before));
        terms.push(format!("seq < ?{}", values.len()));
    }
    values.push(Val::Int(i64::from(limit)));
    let where_ = if terms.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", terms.join(" AND "))
    };
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM audit {where_} ORDER BY seq DESC LIMIT ?{}",
        values.len()
    );
    tx.query(&sql, &values)?.iter().map(entry).collect()
}

impl Catalog {
    /// `GET /v1/audit`: the log, newest first, filtered (platform admins and operators).
    /// Events this server has queued are committed first, so a denial just answered is
    /// already listed.
    pub async fn list_audit(
        &self,
        ctx: &Ctx,
        query: &AuditQuery,
    ) -> Result<Page<AuditEntry>, Error> {
        self.authorize(ctx, ControlAction::ReadAudit, "audit.read", "audit", None)?;
        let filter = Filter::check(query)?;
        let limit = page_limit(query.limit)?;
        let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
        self.flush_audit().await;
        let mut items = self
            .blocking(move |store| store.read(|tx| read_page(tx, &filter, before, limit + 1)))
            .await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = more
            .then(|| items.last().map(|e| encode_cursor(e.seq)))
            .flatten();
        Ok(Page { items, next_cursor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_removes_only_rows_older_than_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let store = bulkhead_store::SqliteStore::open(&dir.path().join("c.db"), false).unwrap();
        let store = Store::Sqlite(store);
        let row = |secs: i64| AuditEvent {
            at: Timestamp::from_micros(secs * 1_000_000),
            actor: "a".into(),
            action: "x".into(),
            target: "t".into(),
            tenant: None,
            outcome: "ok".into(),
            request_id: String::new(),
            detail: None,
        };
        store
            .write(|tx| {
                [10, 20, 30, 40]
                    .iter()
                    .try_for_each(|s| insert(tx, &row(*s)))
            })
            .unwrap();
        let removed = store
            .write(|tx| purge_before(tx, Timestamp::from_micros(25_000_000)))
            .unwrap();
        assert_eq!(removed, 2);
        let left = store
            .read(|tx| crate::rows::audit::read_all(tx, None))
            .unwrap();
        let times: Vec<i64> = left.iter().map(|e| e.at.as_micros() / 1_000_000).collect();
        assert_eq!(times, [30, 40]);
    }

    fn query(action: Option<&str>, outcome: Option<&str>) -> AuditQuery {
        AuditQuery {
            action: action.map(str::to_owned),
            outcome: outcome.map(str::to_owned),
            ..AuditQuery::default()
        }
    }

    #[test]
    fn action_filters_are_exact_or_a_trailing_prefix() {
        let exact = Filter::check(&query(Some("tenant.create"), None)).unwrap();
        assert_eq!(exact.terms, ["action = ?1"]);
        let prefix = Filter::check(&query(Some("move.*"), None)).unwrap();
        assert!(
            prefix.terms[0].starts_with("substr(action"),
            "{:?}",
            prefix.terms
        );
        assert_eq!(prefix.values, [Val::Text("move.".into())]);
        assert!(
            Filter::check(&query(Some("*"), None))
                .unwrap()
                .terms
                .is_empty()
        );
        for bad in ["mo*ve", "*.create", "a**", ""] {
            let err = Filter::check(&query(Some(bad), None)).unwrap_err();
            assert_eq!(err.code, "invalid_filter", "{bad}");
        }
    }

    #[test]
    fn outcomes_are_ok_any_denial_or_one_denial() {
        for good in ["ok", "denied", "denied:forbidden"] {
            assert!(Filter::check(&query(None, Some(good))).is_ok(), "{good}");
        }
        for bad in ["OK", "denied:", "refused", ""] {
            let err = Filter::check(&query(None, Some(bad))).unwrap_err();
            assert_eq!(err.code, "invalid_outcome", "{bad}");
        }
    }

    #[test]
    fn a_time_range_must_run_forward() {
        let at = Timestamp::from_micros(1_000);
        let q = AuditQuery {
            from: Some(at),
            to: Some(at),
            ..AuditQuery::default()
        };
        assert_eq!(Filter::check(&q).unwrap_err().code, "invalid_time_range");
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        let tenants = list_cursor("tenants", "acme");
        for bad in ["", "%%%", tenants.as_str()] {
            assert_eq!(decode_cursor(bad).unwrap_err().code, "invalid_cursor");
        }
    }
}
