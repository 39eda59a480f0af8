//! Audit rows.

use bulkhead_api::AuditEntry;
use bulkhead_core::TenantId;
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

/// Removes audit rows recorded before `cutoff` (the audit retention); returns how many.
pub(crate) fn purge_before(tx: &dyn Tx, cutoff: Timestamp) -> StoreResult<u64> {
    tx.execute(
        "DELETE FROM audit WHERE at < ?1",
        params![cutoff.as_micros()],
    )
}

/// Applies the audit retention every hour (and once at start): rows older than `keep` go,
/// and the removal itself is audited.
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

pub(crate) const ENTRY_COLUMNS: &str =
    "seq, at, actor, action, target, tenant_id, outcome, request_id, detail";

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
    })
}
