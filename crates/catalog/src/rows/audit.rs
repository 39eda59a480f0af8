//! Audit rows and their hash chain: every append links to the entry before it (see
//! `bulkhead_core::chain`), inside the catalog's write transaction, which servers sharing a
//! catalog take one at a time — so the chain is one total order.

use bulkhead_api::AuditEntry;
use bulkhead_core::TenantId;
use bulkhead_core::chain::{self, Fields, Link};
use bulkhead_core::time::Timestamp;

use crate::store::{Row, StoreResult, Tx, params};

/// One audit entry to record.
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

/// An event, its client address (for requests that had one) and position, as hashed.
fn fields<'a>(event: &'a AuditEvent, source: Option<&'a str>, seq: i64) -> Fields<'a> {
    Fields {
        seq,
        at: event.at.as_micros(),
        actor: &event.actor,
        action: &event.action,
        target: &event.target,
        tenant: event.tenant.as_ref().map(TenantId::as_str),
        outcome: &event.outcome,
        request_id: &event.request_id,
        detail: event.detail.as_deref(),
        source,
    }
}

/// Where the chain starts: the last entry retention removed (or 0 and the genesis hash).
pub(crate) fn anchor(tx: &dyn Tx) -> StoreResult<Link> {
    let row = tx.query_one(
        "SELECT anchor_seq, anchor_hash FROM audit_chain WHERE id = 1",
        &[],
    )?;
    Ok(Link {
        seq: row.get(0)?,
        hash: row.get(1)?,
    })
}

/// The chain's last link: the newest entry, or the anchor when the log is empty.
pub(crate) fn tail(tx: &dyn Tx) -> StoreResult<Link> {
    match tx.query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])? {
        // An entry written around the server has no hash; what follows still links to
        // something, and verification names the entry that broke the chain.
        Some(row) => Ok(Link {
            seq: row.get(0)?,
            hash: row.get::<Option<String>>(1)?.unwrap_or_default(),
        }),
        None => anchor(tx),
    }
}

pub(crate) fn insert(tx: &dyn Tx, event: &AuditEvent) -> StoreResult<()> {
    append(tx, std::slice::from_ref(event).iter().map(|e| (e, None)))?;
    Ok(())
}

/// Appends `events` (each with its client address, if any) after the chain's tail; returns
/// the new tail.
pub(crate) fn append<'a>(
    tx: &dyn Tx,
    events: impl IntoIterator<Item = (&'a AuditEvent, Option<&'a str>)>,
) -> StoreResult<Link> {
    let mut link = tail(tx)?;
    for (event, source) in events {
        let seq = link.seq + 1;
        let hash = chain::hash(&fields(event, source, seq), &link.hash);
        tx.execute(
            "INSERT INTO audit (seq, at, actor, action, target, tenant_id, outcome, request_id, \
             detail, source, prev_hash, hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                seq,
                event.at.as_micros(),
                &event.actor,
                &event.action,
                &event.target,
                event.tenant.as_ref().map(TenantId::as_str),
                &event.outcome,
                &event.request_id,
                &event.detail,
                source,
                &link.hash,
                &hash,
            ],
        )?;
        link = Link { seq, hash };
    }
    Ok(link)
}

/// Removes the oldest run of entries recorded before `cutoff` (the audit retention) and
/// makes the last one removed the chain's anchor; returns how many went. Only a run from
/// the start goes: an entry before `cutoff` behind a newer one stays, so no hole opens in
/// the chain.
pub(crate) fn purge_before(tx: &dyn Tx, cutoff: Timestamp) -> StoreResult<u64> {
    let boundary: Option<i64> = tx
        .query_one(
            "SELECT min(seq) FROM audit WHERE at >= ?1",
            params![cutoff.as_micros()],
        )?
        .get(0)?;
    let last_removed = match boundary {
        Some(b) => tx.query_opt(
            "SELECT seq, hash FROM audit WHERE seq < ?1 ORDER BY seq DESC LIMIT 1",
            params![b],
        )?,
        None => tx.query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])?,
    };
    let Some(last) = last_removed else {
        return Ok(0);
    };
    let (seq, hash): (i64, Option<String>) = (last.get(0)?, last.get(1)?);
    let removed = tx.execute("DELETE FROM audit WHERE seq <= ?1", params![seq])?;
    tx.execute(
        "UPDATE audit_chain SET anchor_seq = ?1, anchor_hash = ?2 WHERE id = 1",
        params![seq, hash.unwrap_or_default()],
    )?;
    Ok(removed)
}

/// Gives every entry written before the chain existed its links, oldest first, once (the
/// first start of a catalog made by 0.2); later entries without a hash stay unchained for
/// verification to find.
pub(crate) fn link_once(tx: &dyn Tx) -> StoreResult<u64> {
    let linked: i64 = tx
        .query_one("SELECT linked FROM audit_chain WHERE id = 1", &[])?
        .get(0)?;
    if linked != 0 {
        return Ok(0);
    }
    let mut link = anchor(tx)?;
    let mut count = 0;
    loop {
        let rows = tx.query(
            &format!("SELECT {ENTRY_COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT 10000"),
            params![link.seq],
        )?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let e = entry(row)?;
            let hash = chain::hash(&e.chain_fields(), &link.hash);
            tx.execute(
                "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
                params![&link.hash, &hash, e.seq],
            )?;
            link = Link { seq: e.seq, hash };
            count += 1;
        }
    }
    tx.execute("UPDATE audit_chain SET linked = 1 WHERE id = 1", &[])?;
    Ok(count)
}

/// The hash stored at `seq`: `None` when no entry is there (`Some(None)`: one without).
pub(crate) fn hash_at(tx: &dyn Tx, seq: i64) -> StoreResult<Option<Option<String>>> {
    tx.query_opt("SELECT hash FROM audit WHERE seq = ?1", params![seq])?
        .map(|r| r.get(0))
        .transpose()
}

/// Up to `limit` entries after `after`, oldest first (verification and export).
pub(crate) fn read_after(
    tx: &dyn Tx,
    after: i64,
    to: Option<Timestamp>,
    limit: u32,
) -> StoreResult<Vec<AuditEntry>> {
    let rows = tx.query(
        &format!(
            "SELECT {ENTRY_COLUMNS} FROM audit WHERE seq > ?1 \
             AND (CAST(?2 AS BIGINT) IS NULL OR at < ?2) ORDER BY seq LIMIT ?3"
        ),
        params![after, to.map(|t| t.as_micros()), i64::from(limit)],
    )?;
    rows.iter().map(entry).collect()
}

/// The position just before the first entry recorded at or after `from`.
pub(crate) fn seq_before(tx: &dyn Tx, from: Timestamp) -> StoreResult<i64> {
    let first: Option<i64> = tx
        .query_one(
            "SELECT min(seq) FROM audit WHERE at >= ?1",
            params![from.as_micros()],
        )?
        .get(0)?;
    Ok(first.map_or(i64::MAX - 1, |s| s - 1))
}

/// Reads audit rows, oldest first (the whole log; tests use it).
pub(crate) fn read_all(tx: &dyn Tx, tenant: Option<&TenantId>) -> StoreResult<Vec<AuditEntry>> {
    let rows = tx.query(
        &format!(
            "SELECT {ENTRY_COLUMNS} FROM audit \
             WHERE CAST(?1 AS TEXT) IS NULL OR tenant_id = ?1 ORDER BY seq"
        ),
        params![tenant.map(TenantId::as_str)],
    )?;
    rows.iter().map(entry).collect()
}

pub(crate) const ENTRY_COLUMNS: &str = "seq, at, actor, action, target, tenant_id, outcome, \
                                        request_id, detail, source, prev_hash, hash";

/// An audit row read with [`ENTRY_COLUMNS`].
pub(crate) fn entry(r: &Row) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        seq: r.get(0)?,
        at: Timestamp::from_micros(r.get(1)?),
        actor: r.get(2)?,
        action: r.get(3)?,
        target: r.get(4)?,
        tenant: r
            .get::<Option<String>>(5)?
            .and_then(|t| TenantId::parse(&t).ok()),
        outcome: r.get(6)?,
        request_id: r.get(7)?,
        detail: r.get(8)?,
        source: r.get(9)?,
        prev_hash: r.get(10)?,
        hash: r.get(11)?,
    })
}
