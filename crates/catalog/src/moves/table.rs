//! The `moves` table: a move as stored, reading and listing moves, and a move as the API
//! shows it (with the live figures of the server that runs it).

use std::sync::atomic::Ordering;

use bulkhead_api::MoveView;
use bulkhead_core::error::Error;
use bulkhead_core::model::{MovePhase, Placement, WriteState};
use bulkhead_core::time::Timestamp;
use bulkhead_core::{DomainName, TenantId, TierName};

use super::Live;
use crate::rows::paging::{Where, list_cursor, list_position};
use crate::rows::parse;
use crate::store::{Row, StoreResult, Tx, malformed, params};

/// A move as stored.
#[derive(Debug, Clone)]
pub(crate) struct MoveRow {
    pub id: String,
    pub tenant: TenantId,
    pub phase: MovePhase,
    pub source: Placement,
    pub target: Placement,
    pub target_tier: Option<TierName>,
    pub rows_copied: u64,
    pub rows_total: u64,
    pub rows_verified: u64,
    pub freeze_ms: Option<u64>,
    pub error: Option<String>,
    pub started_by: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// How long the copy phase took, once it is over.
    pub copy_ms: Option<u64>,
}

pub(super) const MOVE_COLUMNS: &str = "id, tenant_id, phase, source, target_domain, target_isolation, \
    target_namespace, target_tier, rows_copied, rows_total, rows_verified, freeze_ms, error, \
    started_by, created_at, updated_at, copy_ms";

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(super) fn decode(row: &Row) -> StoreResult<MoveRow> {
    let source: Placement = serde_json::from_str(&row.get::<String>(3)?).map_err(malformed)?;
    let target = Placement {
        domain: DomainName::parse(&row.get::<String>(4)?).map_err(|e| malformed(e.message))?,
        isolation: parse(&row.get::<String>(5)?)?,
        namespace: row.get(6)?,
        write_state: WriteState::Open,
        epoch: 0,
        schema_version: 0,
        incarnation: source.incarnation.clone(),
    };
    Ok(MoveRow {
        id: row.get(0)?,
        tenant: TenantId::parse(&row.get::<String>(1)?).map_err(|e| malformed(e.message))?,
        phase: parse(&row.get::<String>(2)?)?,
        source,
        target,
        target_tier: row
            .get::<Option<String>>(7)?
            .map(|t| crate::rows::tiers::tier_name(&t))
            .transpose()?,
        rows_copied: count(row.get(8)?),
        rows_total: count(row.get(9)?),
        rows_verified: count(row.get(10)?),
        freeze_ms: row.get::<Option<i64>>(11)?.map(count),
        error: row.get(12)?,
        started_by: row.get(13)?,
        created_at: Timestamp::from_micros(row.get(14)?),
        updated_at: Timestamp::from_micros(row.get(15)?),
        copy_ms: row.get::<Option<i64>>(16)?.map(count),
    })
}

pub(crate) fn read_move(tx: &dyn Tx, id: &str) -> StoreResult<Option<MoveRow>> {
    let sql = format!("SELECT {MOVE_COLUMNS} FROM moves WHERE id = ?1");
    tx.query_opt(&sql, params![id])?
        .map(|r| decode(&r))
        .transpose()
}

/// The source placements a tenant's switched moves have not cleaned up yet: storage of the
/// tenant's current life that its deletion must purge too.
pub(crate) fn uncleaned_sources(tx: &dyn Tx, tenant: &TenantId) -> StoreResult<Vec<Placement>> {
    let sql = format!(
        "SELECT {MOVE_COLUMNS} FROM moves WHERE tenant_id = ?1 AND phase IN ('switched', 'cleaning')"
    );
    tx.query(&sql, params![tenant.as_str()])?
        .iter()
        .map(|r| decode(r).map(|m| m.source))
        .collect()
}

/// Moves not yet ended (`done` or `rolled_back`): both their placements still exist.
pub(crate) fn not_ended(tx: &dyn Tx) -> StoreResult<Vec<MoveRow>> {
    unfinished(tx)
}

pub(super) fn unfinished(tx: &dyn Tx) -> StoreResult<Vec<MoveRow>> {
    let sql = format!(
        "SELECT {MOVE_COLUMNS} FROM moves WHERE phase NOT IN ('done', 'rolled_back') ORDER BY created_at"
    );
    tx.query(&sql, &[])?.iter().map(decode).collect()
}

/// Up to `limit` moves, newest first (by `created_at`, then id), after `before` in that
/// order: those not ended (`active`), or ended (`!active`), of `tenant`, as given.
pub(super) fn list_page(
    tx: &dyn Tx,
    active: Option<bool>,
    tenant: Option<&TenantId>,
    before: Option<&(i64, String)>,
    limit: i64,
) -> StoreResult<Vec<MoveRow>> {
    let mut w = Where::default();
    // The phases `MovePhase::is_final` names.
    match active {
        Some(true) => w.and("phase NOT IN ('done', 'rolled_back')".to_owned()),
        Some(false) => w.and("phase IN ('done', 'rolled_back')".to_owned()),
        None => {}
    }
    if let Some(tenant) = tenant {
        let tenant = w.param(tenant.as_str());
        w.and(format!("tenant_id = {tenant}"));
    }
    if let Some((at, id)) = before {
        let (at, id) = (w.param(*at), w.param(id.as_str()));
        w.and(format!(
            "created_at < {at} OR (created_at = {at} AND id < {id})"
        ));
    }
    let limit = w.param(limit);
    let sql = format!(
        "SELECT {MOVE_COLUMNS} FROM moves {} ORDER BY created_at DESC, id DESC LIMIT {limit}",
        w.clause()
    );
    tx.query(&sql, w.values())?.iter().map(decode).collect()
}

/// A cursor of `GET /v1/moves`: the last listed move's creation time and id.
pub(super) fn moves_cursor(row: &MoveView) -> String {
    list_cursor(
        "moves",
        &format!("{}:{}", row.created_at.as_micros(), row.id),
    )
}

pub(super) fn moves_position(cursor: &str) -> Result<(i64, String), Error> {
    let position = list_position("moves", cursor)?;
    position
        .split_once(':')
        .and_then(|(at, id)| Some((at.parse().ok()?, id.to_owned())))
        .ok_or_else(|| Error::bad_request("invalid_cursor", "cursor is not one this server issued"))
}

pub(super) fn move_not_found() -> Error {
    Error::not_found("move_not_found", "move not found")
}

pub(super) fn view(row: MoveRow, live: Option<&Live>) -> MoveView {
    let mut rate = match row.copy_ms {
        Some(ms) if ms > 0 => row.rows_copied as f64 * 1000.0 / ms as f64,
        _ => 0.0,
    };
    let (mut copied, mut total, mut verified) =
        (row.rows_copied, row.rows_total, row.rows_verified);
    if let Some(live) = live {
        copied = copied.max(live.copied.load(Ordering::Relaxed));
        total = total.max(live.total.load(Ordering::Relaxed));
        verified = verified.max(live.verified.load(Ordering::Relaxed));
        rate = live.rate();
    }
    let pace = live
        .and_then(|l| l.pace.lock().clone())
        .filter(|_| {
            matches!(
                row.phase,
                MovePhase::Copying | MovePhase::CatchingUp | MovePhase::Verifying
            )
        })
        .map(|p| Box::new(p.view()));
    // Records created during the copy are copied too: the total counted at its start grows.
    total = total.max(copied);
    let eta_seconds = (row.phase <= MovePhase::Copying && rate > 0.0)
        .then(|| total.saturating_sub(copied) as f64 / rate);
    MoveView {
        id: row.id,
        tenant: row.tenant,
        phase: row.phase,
        source: row.source,
        target: row.target,
        target_tier: row.target_tier,
        rows_copied: copied,
        rows_total: total,
        rate,
        eta_seconds,
        freeze_ms: row.freeze_ms,
        rows_verified: verified,
        error: row.error,
        started_by: row.started_by,
        created_at: row.created_at,
        updated_at: row.updated_at,
        pace,
    }
}
