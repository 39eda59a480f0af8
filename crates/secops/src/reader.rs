//! The reader of the audit stream: takes the entries after its cursor, one batch per write
//! transaction (servers sharing a catalog take those one at a time, so each entry is read
//! once), runs the detectors, folds findings, and writes the webhooks' messages for each
//! event — all in that one transaction, so a crash loses nothing and doubles nothing.

use std::sync::Arc;
use std::time::Duration;

use bulkhead_api::AuditEntry;
use bulkhead_core::time::Timestamp;
use serde_json::json;

use bulkhead_catalog::{WeakDoor, audit_after};
use bulkhead_store::{Store, StoreResult, Tx, params};

use crate::SecopsSettings;
use crate::detect::{detect, event_data, lifecycle};
use crate::findings::{FindingRules, fold};
use crate::webhooks::{enqueue, read_all};

/// The reader's name in `audit_readers`.
const READER: &str = "secops";
/// Entries per batch.
const BATCH: u32 = 500;
/// How often the reader looks for new entries.
const POLL: Duration = Duration::from_millis(200);

/// The cursor: the last entry read. A catalog that never had a reader starts at its newest
/// entry (what came before the reader is history, not news).
fn cursor(tx: &dyn Tx) -> StoreResult<i64> {
    if let Some(row) = tx.query_opt(
        "SELECT seq FROM audit_readers WHERE name = ?1",
        params![READER],
    )? {
        return row.get(0);
    }
    let newest: Option<i64> = tx.query_one("SELECT max(seq) FROM audit", &[])?.get(0)?;
    let start = newest.unwrap_or(0);
    tx.execute(
        "INSERT INTO audit_readers (name, seq) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        params![READER, start],
    )?;
    Ok(start)
}

fn newest(tx: &dyn Tx) -> StoreResult<i64> {
    Ok(tx
        .query_one("SELECT max(seq) FROM audit", &[])?
        .get::<Option<i64>>(0)?
        .unwrap_or(0))
}

/// The standard body of a message: `{"type", "timestamp", "data"}`.
fn body(kind: &str, at: Timestamp, data: serde_json::Value) -> String {
    json!({"type": kind, "timestamp": at, "data": data}).to_string()
}

/// One batch; returns the entries read and the messages written.
fn pass(tx: &dyn Tx, rules: &FindingRules, now: Timestamp) -> StoreResult<(usize, usize)> {
    let after = cursor(tx)?;
    let batch: Vec<AuditEntry> = audit_after(tx, after, BATCH)?;
    let Some(last) = batch.last() else {
        return Ok((0, 0));
    };
    let hooks = read_all(tx)?;
    let mut messages = 0;
    for entry in &batch {
        if let Some(event) = lifecycle(entry) {
            let lane = entry.tenant.as_ref().map_or("", |t| t.as_str());
            messages += enqueue(
                tx,
                &hooks,
                event.kind,
                &format!("msg_{}", entry.seq),
                lane,
                &body(event.kind, entry.at, event_data(&event.entry)),
                now,
            )?;
        }
    }
    for (n, observation) in detect(tx, rules, &batch)?.iter().enumerate() {
        let id = format!("f{:016}-{n:03}", observation.seq);
        if let Some(opened) = fold(tx, observation, &id)? {
            let lane = opened.tenant.as_ref().map_or("", |t| t.as_str());
            messages += enqueue(
                tx,
                &hooks,
                "finding.opened",
                &format!("msg_{id}"),
                lane,
                &body("finding.opened", opened.first_seen, json!(opened)),
                now,
            )?;
        }
    }
    tx.execute(
        "UPDATE audit_readers SET seq = ?2 WHERE name = ?1",
        params![READER, last.seq],
    )?;
    Ok((batch.len(), messages))
}

/// Reads until the stream is caught up; returns the messages written.
fn catch_up(
    store: &Store,
    rules: &FindingRules,
    clock: &dyn Fn() -> Timestamp,
) -> StoreResult<usize> {
    let mut written = 0;
    loop {
        let behind = store.read(|tx| Ok(newest(tx)? > cursor_or_zero(tx)?))?;
        if !behind {
            // Makes the cursor on a catalog that never had one.
            store.write(|tx| cursor(tx).map(|_| ()))?;
            return Ok(written);
        }
        let now = clock();
        let (read, messages) = store.write(|tx| pass(tx, rules, now))?;
        written += messages;
        if read == 0 {
            return Ok(written);
        }
    }
}

fn cursor_or_zero(tx: &dyn Tx) -> StoreResult<i64> {
    match tx.query_opt(
        "SELECT seq FROM audit_readers WHERE name = ?1",
        params![READER],
    )? {
        Some(row) => row.get(0),
        // No cursor yet: behind only if there is anything at all (then `cursor` starts it
        // at the newest entry).
        None => Ok(i64::MAX),
    }
}

/// Runs the reader until the catalog is dropped.
pub(crate) fn spawn(door: WeakDoor, settings: Arc<SecopsSettings>, wake: Arc<tokio::sync::Notify>) {
    tokio::spawn(async move {
        loop {
            let Some(strong) = door.upgrade() else {
                return;
            };
            let (settings, clock) = (Arc::clone(&settings), strong.clone());
            let read = strong
                .blocking(move |store| catch_up(store, &settings.findings, &|| clock.now()))
                .await;
            match read {
                Ok(0) => {}
                Ok(_) => wake.notify_one(),
                Err(e) => tracing::warn!(error = %e.message, "audit stream reader failed; retried"),
            }
            drop(strong);
            tokio::time::sleep(POLL).await;
        }
    });
}
