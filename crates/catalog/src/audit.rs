//! The audit log (invariant 5). Control-plane changes are written in the same transaction as
//! the change itself; denials and platform-admin data access go through a bounded queue to a
//! writer task that commits them in batches, so a flood of bad requests cannot stall the
//! server. The queue is drained before shutdown completes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bulkhead_core::TenantId;
use bulkhead_core::time::Timestamp;
use tokio::sync::mpsc;

use crate::store::{Store, StoreResult, Tx, params};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub tenant: Option<TenantId>,
    /// `ok`, or `denied:<code>`.
    pub outcome: String,
    pub request_id: String,
    pub detail: Option<String>,
}

pub(crate) fn insert(tx: &dyn Tx, event: &AuditEvent) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO audit (at, actor, action, target, tenant_id, outcome, request_id, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            event.at.as_micros(),
            &event.actor,
            &event.action,
            &event.target,
            event.tenant.as_ref().map(TenantId::as_str),
            &event.outcome,
            &event.request_id,
            &event.detail,
        ],
    )?;
    Ok(())
}

/// Reads audit rows, newest last (used by tests and, later, the audit API).
pub(crate) fn read_all(tx: &dyn Tx, tenant: Option<&TenantId>) -> StoreResult<Vec<AuditEvent>> {
    let rows = tx.query(
        "SELECT at, actor, action, target, tenant_id, outcome, request_id, detail FROM audit \
         WHERE CAST(?1 AS TEXT) IS NULL OR tenant_id = ?1 ORDER BY seq",
        params![tenant.map(TenantId::as_str)],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(AuditEvent {
            at: Timestamp::from_micros(r.get(0)?),
            actor: r.get(1)?,
            action: r.get(2)?,
            target: r.get(3)?,
            tenant: r
                .get::<Option<String>>(4)?
                .and_then(|t| TenantId::parse(&t).ok()),
            outcome: r.get(5)?,
            request_id: r.get(6)?,
            detail: r.get(7)?,
        });
    }
    Ok(out)
}

enum Message {
    Event(AuditEvent),
    /// Answered once every event queued before it is committed.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The sending side of the audit queue.
#[derive(Clone)]
pub struct AuditQueue {
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

impl AuditQueue {
    /// Queues an event without waiting. When the queue is full the event is counted and logged
    /// instead; the count is itself written to the audit log by the writer.
    pub fn record(&self, event: AuditEvent) {
        if self.tx.try_send(Message::Event(event)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("audit queue full; event counted as dropped");
        }
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
    };
    tokio::spawn(async move {
        let mut messages = Vec::with_capacity(256);
        while rx.recv_many(&mut messages, 256).await > 0 {
            let mut events = Vec::with_capacity(messages.len() + 1);
            let mut waiters = Vec::new();
            for message in messages.drain(..) {
                match message {
                    Message::Event(e) => events.push(e),
                    Message::Flush(done) => waiters.push(done),
                }
            }
            let lost = dropped.swap(0, Ordering::Relaxed);
            if lost > 0 {
                let at = events.first().map_or(Timestamp::from_micros(0), |e| e.at);
                events.push(AuditEvent {
                    at,
                    actor: "system".into(),
                    action: "audit.dropped".into(),
                    target: "audit".into(),
                    tenant: None,
                    outcome: "ok".into(),
                    request_id: String::new(),
                    detail: Some(format!("{lost} events dropped while the queue was full")),
                });
            }
            if !events.is_empty() {
                let store = Arc::clone(&store);
                let written = tokio::task::spawn_blocking(move || {
                    store.write(|tx| events.iter().try_for_each(|e| insert(tx, e)))
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
