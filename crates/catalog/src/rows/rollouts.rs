//! Rollout rows: one per collection change. The ledger of what each placement has applied is
//! `placements.schema_version`; a rollout's progress is counted from it when read.

use bulkhead_api::RolloutView;
use bulkhead_core::CollectionName;
use bulkhead_core::time::Timestamp;

use crate::store::{StoreResult, Tx, malformed, params};

/// Live placements (tenants neither provisioning nor deleting), with those of moving tenants
/// left out when `moving` is false (their move brings them up).
const LIVE: &str = "FROM placements p JOIN tenants t ON t.id = p.tenant_id \
     WHERE t.status NOT IN ('provisioning', 'deleting')";
/// A tenant is moving when a move of its current life has not ended: a move of an earlier
/// life under the same id (still cleaning up after the deletion) does not hold back the
/// new life's placement, which the rollout must bring up itself.
pub(crate) const NOT_MOVING: &str = "AND NOT EXISTS (SELECT 1 FROM moves m WHERE m.tenant_id = t.id \
     AND m.phase NOT IN ('done', 'rolled_back') AND m.created_at >= t.created_at)";

/// Live placements behind `generation`, moving tenants left out.
pub(crate) fn behind(tx: &dyn Tx, generation: i64) -> StoreResult<i64> {
    tx.query_one(
        &format!("SELECT count(*) {LIVE} AND p.schema_version < ?1 {NOT_MOVING}"),
        params![generation],
    )?
    .get::<i64>(0)
}

/// Whether `tenant`'s placement is still the one a pass planned (`epoch`), live, not moving
/// and behind `generation`.
pub(crate) fn still_behind(
    tx: &dyn Tx,
    tenant: &bulkhead_core::TenantId,
    epoch: i64,
    generation: i64,
) -> StoreResult<bool> {
    Ok(tx
        .query_opt(
            &format!(
                "SELECT 1 {LIVE} AND t.id = ?1 AND p.epoch = ?2 AND p.schema_version < ?3 {NOT_MOVING}"
            ),
            params![tenant.as_str(), epoch, generation],
        )?
        .is_some())
}

/// Records the rollout of a change, in the changing transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) fn insert(
    tx: &dyn Tx,
    id: &str,
    collection: &CollectionName,
    version: i64,
    generation: i64,
    started_by: &str,
    now: Timestamp,
) -> StoreResult<()> {
    let total = behind(tx, generation)?;
    // Nothing to bring up (no tenants yet, or all moving): done as it is made.
    let (state, finished) = if total == 0 {
        ("done", Some(now.as_micros()))
    } else {
        ("running", None)
    };
    tx.execute(
        "INSERT INTO rollouts (id, collection, version, generation, state, total, failed, started_by, created_at, updated_at, finished_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8, ?8, ?9)",
        params![id, collection.as_str(), version, generation, state, total, started_by, now.as_micros(), finished],
    )?;
    Ok(())
}

/// What a pass of the runner found, written to every running rollout it served (those of
/// generation `generation` and older); the ones with nothing left are done.
pub(crate) fn record_pass(
    tx: &dyn Tx,
    generation: i64,
    wave: Option<&str>,
    failed: i64,
    last_error: Option<&str>,
    now: Timestamp,
) -> StoreResult<()> {
    tx.execute(
        "UPDATE rollouts SET wave = ?2, failed = ?3, last_error = ?4, updated_at = ?5 \
         WHERE state = 'running' AND generation <= ?1",
        params![generation, wave, failed, last_error, now.as_micros()],
    )?;
    let running: Vec<(String, i64)> = tx
        .query(
            "SELECT id, generation FROM rollouts WHERE state = 'running' AND generation <= ?1",
            params![generation],
        )?
        .iter()
        .map(|r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)))
        .collect::<StoreResult<_>>()?;
    for (id, made) in running {
        if behind(tx, made)? == 0 {
            tx.execute(
                "UPDATE rollouts SET state = 'done', wave = NULL, finished_at = ?2 WHERE id = ?1",
                params![&id, now.as_micros()],
            )?;
            crate::rows::audit::insert(
                tx,
                &crate::AuditEvent {
                    at: now,
                    actor: "system".into(),
                    action: "rollout.done".into(),
                    target: id.clone(),
                    tenant: None,
                    outcome: "ok".into(),
                    request_id: String::new(),
                    detail: None,
                },
            )?;
        }
    }
    Ok(())
}

/// Sets the wave every running rollout up to `generation` is in.
pub(crate) fn set_wave(
    tx: &dyn Tx,
    generation: i64,
    wave: &str,
    now: Timestamp,
) -> StoreResult<()> {
    tx.execute(
        "UPDATE rollouts SET wave = ?2, updated_at = ?3 WHERE state = 'running' AND generation <= ?1",
        params![generation, wave, now.as_micros()],
    )?;
    Ok(())
}

const COLUMNS: &str = "id, collection, version, generation, state, total, failed, wave, last_error, \
     started_by, created_at, updated_at, finished_at";

fn view(tx: &dyn Tx, row: &crate::store::Row, now: Timestamp) -> StoreResult<RolloutView> {
    let generation: i64 = row.get(3)?;
    let total = row.get::<i64>(5)?.max(0) as u64;
    let left = behind(tx, generation)?.max(0) as u64;
    let done = tx
        .query_one(
            &format!("SELECT count(*) {LIVE} AND p.schema_version >= ?1"),
            params![generation],
        )?
        .get::<i64>(0)?
        .max(0) as u64;
    let state: String = row.get(4)?;
    let created_at = Timestamp::from_micros(row.get(10)?);
    let finished_at = row.get::<Option<i64>>(12)?.map(Timestamp::from_micros);
    let until = finished_at.unwrap_or(now);
    let seconds = (until.as_micros() - created_at.as_micros()).max(1) as f64 / 1e6;
    let brought = total.saturating_sub(left) as f64;
    let rate = brought / seconds;
    let eta_seconds = (state == "running" && left > 0 && rate > 0.0).then(|| left as f64 / rate);
    Ok(RolloutView {
        id: row.get(0)?,
        collection: CollectionName::parse(&row.get::<String>(1)?)
            .map_err(|e| malformed(e.message))?,
        version: row.get(2)?,
        generation,
        state,
        placements_total: total,
        placements_done: done,
        placements_left: left,
        placements_failed: row.get::<i64>(6)?.max(0) as u64,
        wave: row.get(7)?,
        rate,
        eta_seconds,
        last_error: row.get(8)?,
        started_by: row.get(9)?,
        created_at,
        updated_at: Timestamp::from_micros(row.get(11)?),
        finished_at,
        pace: None,
    })
}

pub(crate) fn read(tx: &dyn Tx, id: &str, now: Timestamp) -> StoreResult<Option<RolloutView>> {
    match tx.query_opt(
        &format!("SELECT {COLUMNS} FROM rollouts WHERE id = ?1"),
        params![id],
    )? {
        Some(row) => Ok(Some(view(tx, &row, now)?)),
        None => Ok(None),
    }
}

/// The newest rollouts first, at most `limit`.
pub(crate) fn list(tx: &dyn Tx, limit: i64, now: Timestamp) -> StoreResult<Vec<RolloutView>> {
    let rows = tx.query(
        &format!(
            "SELECT {COLUMNS} FROM rollouts ORDER BY generation DESC, created_at DESC LIMIT ?1"
        ),
        params![limit],
    )?;
    rows.iter().map(|row| view(tx, row, now)).collect()
}

/// The state of the newest rollout (the one a pass serves), if any.
pub(crate) fn newest_state(tx: &dyn Tx) -> StoreResult<Option<String>> {
    tx.query_opt(
        "SELECT state FROM rollouts ORDER BY generation DESC, created_at DESC LIMIT 1",
        &[],
    )?
    .map(|row| row.get::<String>(0))
    .transpose()
}

/// Stops every running rollout up to `generation` (the failure policy).
pub(crate) fn stop(tx: &dyn Tx, generation: i64, reason: &str, now: Timestamp) -> StoreResult<()> {
    tx.execute(
        "UPDATE rollouts SET state = 'stopped', last_error = ?2, updated_at = ?3 \
         WHERE state = 'running' AND generation <= ?1",
        params![generation, reason, now.as_micros()],
    )?;
    Ok(())
}

/// Moves a rollout from one of `from` to `to`; false when it is in none of them.
pub(crate) fn transition(
    tx: &dyn Tx,
    id: &str,
    from: &[&str],
    to: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    let Some(row) = tx.query_opt("SELECT state FROM rollouts WHERE id = ?1", params![id])? else {
        return Ok(false);
    };
    let state: String = row.get(0)?;
    if !from.contains(&state.as_str()) {
        return Ok(false);
    }
    let finished = (to == "cancelled").then_some(now.as_micros());
    tx.execute(
        "UPDATE rollouts SET state = ?2, updated_at = ?3, finished_at = ?4 WHERE id = ?1",
        params![id, to, now.as_micros(), finished],
    )?;
    if to == "running" {
        // Resumed: the failures of the pass that stopped it are history.
        tx.execute("UPDATE rollouts SET failed = 0 WHERE id = ?1", params![id])?;
    }
    Ok(true)
}
