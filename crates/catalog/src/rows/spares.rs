//! Ready-pool rows: one per empty silo kept ready on a domain. A row is written before its
//! storage exists (`preparing`) and removed only after its storage is adopted by a tenant or
//! removed, so no spare storage exists that no row names (short of a crash in between, which
//! `doctor` shows as an orphan).

use bulkhead_core::time::Timestamp;
use bulkhead_core::{DomainName, Incarnation, StorageKey};

use crate::store::{StoreResult, Tx, malformed, params};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpareState {
    Preparing,
    Ready,
    Claimed,
    Discarding,
}

impl SpareState {
    fn as_str(self) -> &'static str {
        match self {
            SpareState::Preparing => "preparing",
            SpareState::Ready => "ready",
            SpareState::Claimed => "claimed",
            SpareState::Discarding => "discarding",
        }
    }

    fn parse(raw: &str) -> StoreResult<Self> {
        Ok(match raw {
            "preparing" => SpareState::Preparing,
            "ready" => SpareState::Ready,
            "claimed" => SpareState::Claimed,
            "discarding" => SpareState::Discarding,
            other => return Err(malformed(format!("spare state {other:?}"))),
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SpareRow {
    pub id: Incarnation,
    pub domain: DomainName,
    pub state: SpareState,
    pub schema_version: i64,
    /// The storage key of the tenant being created with it (`claimed`).
    pub claimed_by: Option<StorageKey>,
    pub updated_at: Timestamp,
}

pub(crate) fn list(tx: &dyn Tx) -> StoreResult<Vec<SpareRow>> {
    tx.query(
        "SELECT id, domain, state, schema_version, claimed_by, updated_at FROM spares ORDER BY id",
        &[],
    )?
    .iter()
    .map(|row| {
        Ok(SpareRow {
            id: Incarnation::parse(&row.get::<String>(0)?).map_err(|e| malformed(e.message))?,
            domain: DomainName::parse(&row.get::<String>(1)?).map_err(|e| malformed(e.message))?,
            state: SpareState::parse(&row.get::<String>(2)?)?,
            schema_version: row.get(3)?,
            claimed_by: row
                .get::<Option<String>>(4)?
                .map(|raw| StorageKey::read(&raw).ok_or_else(|| malformed(raw)))
                .transpose()?,
            updated_at: Timestamp::from_micros(row.get(5)?),
        })
    })
    .collect()
}

/// Records a new spare about to be prepared, unless `domain` already has `target` spares
/// ready or being prepared. True when recorded.
pub(crate) fn insert_preparing(
    tx: &dyn Tx,
    id: &Incarnation,
    domain: &DomainName,
    target: u32,
    schema_version: i64,
    now: Timestamp,
) -> StoreResult<bool> {
    let have: i64 = tx
        .query_one(
            "SELECT count(*) FROM spares WHERE domain = ?1 AND state IN ('preparing', 'ready')",
            params![domain.as_str()],
        )?
        .get(0)?;
    if have >= i64::from(target) {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO spares (id, domain, state, schema_version, updated_at) VALUES (?1, ?2, 'preparing', ?3, ?4)",
        params![id.as_str(), domain.as_str(), schema_version, now.as_micros()],
    )?;
    Ok(true)
}

/// Moves a spare from `from` to `to` (and its schema version, when given); false when it is
/// not in `from` (someone else moved it first).
pub(crate) fn transition(
    tx: &dyn Tx,
    id: &Incarnation,
    from: SpareState,
    to: SpareState,
    schema_version: Option<i64>,
    now: Timestamp,
) -> StoreResult<bool> {
    let moved = tx.execute(
        "UPDATE spares SET state = ?3, schema_version = COALESCE(?4, schema_version), updated_at = ?5 \
         WHERE id = ?1 AND state = ?2",
        params![id.as_str(), from.as_str(), to.as_str(), schema_version, now.as_micros()],
    )?;
    Ok(moved > 0)
}

pub(crate) fn delete(tx: &dyn Tx, id: &Incarnation) -> StoreResult<()> {
    tx.execute("DELETE FROM spares WHERE id = ?1", params![id.as_str()])?;
    Ok(())
}

/// Hands a ready spare of `domain` on schema `generation` to the tenant whose storage will
/// be `key`, inside the transaction that creates it. `None` when the domain has none ready.
pub(crate) fn claim(
    tx: &dyn Tx,
    domain: &DomainName,
    generation: i64,
    key: &StorageKey,
    now: Timestamp,
) -> StoreResult<Option<Incarnation>> {
    let candidates = tx.query(
        "SELECT id FROM spares WHERE domain = ?1 AND state = 'ready' AND schema_version = ?2 ORDER BY id LIMIT 4",
        params![domain.as_str(), generation],
    )?;
    for row in candidates {
        let id = Incarnation::parse(&row.get::<String>(0)?).map_err(|e| malformed(e.message))?;
        let taken = tx.execute(
            "UPDATE spares SET state = 'claimed', claimed_by = ?2, updated_at = ?3 WHERE id = ?1 AND state = 'ready'",
            params![id.as_str(), key.as_str(), now.as_micros()],
        )?;
        if taken > 0 {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// The spare claimed for the tenant storage `key`, if any.
pub(crate) fn claimed_for(tx: &dyn Tx, key: &StorageKey) -> StoreResult<Option<Incarnation>> {
    tx.query_opt(
        "SELECT id FROM spares WHERE state = 'claimed' AND claimed_by = ?1",
        params![key.as_str()],
    )?
    .map(|row| Incarnation::parse(&row.get::<String>(0)?).map_err(|e| malformed(e.message)))
    .transpose()
}

/// Whether the tenant incarnation `key` names is still being created.
pub(crate) fn still_provisioning(tx: &dyn Tx, key: &StorageKey) -> StoreResult<bool> {
    let Some((tenant, incarnation)) = StorageKey::parse(key.as_str()) else {
        return Ok(false);
    };
    Ok(tx
        .query_opt(
            "SELECT 1 FROM tenants t JOIN placements p ON p.tenant_id = t.id \
             WHERE t.id = ?1 AND p.incarnation = ?2 AND t.status = 'provisioning'",
            params![tenant.as_str(), incarnation.as_str()],
        )?
        .is_some())
}

/// Records that a ready spare's storage has schema `generation` (never going back).
pub(crate) fn brought_up(
    tx: &dyn Tx,
    id: &Incarnation,
    generation: i64,
    now: Timestamp,
) -> StoreResult<()> {
    tx.execute(
        "UPDATE spares SET schema_version = ?2, updated_at = ?3 \
         WHERE id = ?1 AND state = 'ready' AND schema_version < ?2",
        params![id.as_str(), generation, now.as_micros()],
    )?;
    Ok(())
}
