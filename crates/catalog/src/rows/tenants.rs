//! Tenant and placement rows: the routing table as stored.

use bulkhead_core::error::Error;
use bulkhead_core::model::{Isolation, Placement, Tenant, TenantStatus};
use bulkhead_core::time::Timestamp;
use bulkhead_core::{DomainName, Incarnation, TenantId, TierName};

use super::paging::{Where, contains_pattern};
use super::parse;
use crate::store::{Row, StoreResult, Tx, Val, malformed, params};

pub(crate) fn tenant_not_found() -> Error {
    Error::not_found("tenant_not_found", "tenant not found")
}

/// `409 tenant_life_ended`: the id no longer names life `incarnation` of `tenant` (a job or a
/// request for that life finds it deleted, maybe re-created).
pub(crate) fn life_ended(tenant: &TenantId, incarnation: &Incarnation) -> Error {
    Error::conflict(
        "tenant_life_ended",
        format!("tenant '{tenant}' of incarnation {incarnation} no longer exists"),
    )
}

const TENANT_COLUMNS: &str = "t.id, t.name, t.tier, t.status, t.labels, t.created_at, t.updated_at, \
     p.domain, p.isolation, p.namespace, p.write_state, p.epoch, p.schema_version, p.incarnation";

fn read_row(row: &Row) -> [String; 14] {
    let mut out: [String; 14] = Default::default();
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = match row.raw(i) {
            Some(Val::Int(n)) => n.to_string(),
            Some(Val::Text(t)) => t.clone(),
            _ => String::new(),
        };
    }
    out
}

fn decode(raw: [String; 14]) -> StoreResult<(Tenant, Placement)> {
    let int = |s: &str| s.parse::<i64>().map_err(malformed);
    let tenant = Tenant {
        id: TenantId::parse(&raw[0]).map_err(|e| malformed(e.message))?,
        name: raw[1].clone(),
        tier: super::tiers::tier_name(&raw[2])?,
        status: parse(&raw[3])?,
        labels: serde_json::from_str(&raw[4]).map_err(malformed)?,
        created_at: Timestamp::from_micros(int(&raw[5])?),
        updated_at: Timestamp::from_micros(int(&raw[6])?),
    };
    let placement = Placement {
        domain: DomainName::parse(&raw[7]).map_err(|e| malformed(e.message))?,
        isolation: parse(&raw[8])?,
        namespace: raw[9].clone(),
        write_state: parse(&raw[10])?,
        epoch: int(&raw[11])?,
        schema_version: int(&raw[12])?,
        incarnation: Incarnation::parse(&raw[13]).map_err(|e| malformed(e.message))?,
    };
    Ok((tenant, placement))
}

pub(crate) fn read_tenant(tx: &dyn Tx, id: &TenantId) -> StoreResult<Option<(Tenant, Placement)>> {
    let sql = format!(
        "SELECT {TENANT_COLUMNS} FROM tenants t JOIN placements p ON p.tenant_id = t.id WHERE t.id = ?1"
    );
    tx.query_opt(&sql, params![id.as_str()])?
        .map(|r| decode(read_row(&r)))
        .transpose()
}

/// Routing epochs come from one catalog-wide counter, so every change to any routing entry
/// gets a higher epoch than anything before it — including the entries of a deleted tenant
/// whose id is later reused. Caches compare epochs and so never keep a stale entry.
pub(crate) fn next_epoch(tx: &dyn Tx) -> StoreResult<i64> {
    let current: i64 = crate::store::get_meta(tx, "routing_epoch")?
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let next = current + 1;
    crate::store::set_meta(tx, "routing_epoch", &next.to_string())?;
    Ok(next)
}

/// The schema generation the ledger records for `tenant`'s placement of `epoch`.
pub(crate) fn placement_generation(
    tx: &dyn Tx,
    tenant: &TenantId,
    epoch: i64,
) -> StoreResult<Option<i64>> {
    tx.query_opt(
        "SELECT schema_version FROM placements WHERE tenant_id = ?1 AND epoch = ?2",
        params![tenant.as_str(), epoch],
    )?
    .map(|r| r.get::<i64>(0))
    .transpose()
}

pub(crate) fn write_placement(tx: &dyn Tx, tenant: &TenantId, p: &Placement) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO placements (tenant_id, domain, isolation, namespace, write_state, epoch, schema_version, incarnation) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (tenant_id) DO UPDATE SET domain = excluded.domain, \
         isolation = excluded.isolation, namespace = excluded.namespace, write_state = excluded.write_state, \
         epoch = excluded.epoch, schema_version = excluded.schema_version, incarnation = excluded.incarnation",
        params![
            tenant.as_str(),
            p.domain.as_str(),
            p.isolation.as_str(),
            &p.namespace,
            p.write_state.as_str(),
            p.epoch,
            p.schema_version,
            p.incarnation.as_str()
        ],
    )?;
    Ok(())
}

pub(crate) fn set_status(
    tx: &dyn Tx,
    tenant: &TenantId,
    status: TenantStatus,
    now: Timestamp,
) -> StoreResult<()> {
    tx.execute(
        "UPDATE tenants SET status = ?2, updated_at = ?3 WHERE id = ?1",
        params![tenant.as_str(), status.as_str(), now.as_micros()],
    )?;
    tx.execute(
        "UPDATE placements SET epoch = ?2 WHERE tenant_id = ?1",
        params![tenant.as_str(), next_epoch(tx)?],
    )?;
    crate::store::changed(tx, "route", tenant.as_str())?;
    Ok(())
}

/// What a tenant listing keeps: every filter given must match.
#[derive(Debug, Clone, Default)]
pub(crate) struct TenantFilter {
    /// Text the id or the name contains, ignoring case (as the catalog's `lower()` folds it).
    pub search: Option<String>,
    pub tier: Option<TierName>,
    pub status: Option<TenantStatus>,
    pub domain: Option<DomainName>,
    pub isolation: Option<Isolation>,
}

/// Up to `limit` tenants that pass `filter` with ids after `after`, in id order.
pub(crate) fn list_after(
    tx: &dyn Tx,
    filter: &TenantFilter,
    after: &str,
    limit: i64,
) -> StoreResult<Vec<(Tenant, Placement)>> {
    let mut w = Where::default();
    let after = w.param(after);
    w.and(format!("t.id > {after}"));
    if let Some(search) = &filter.search {
        // Both sides through the database's `lower()`, so SQLite and PostgreSQL each fold
        // the text and the pattern alike. The cast gives PostgreSQL the parameter's type.
        let pattern = w.param(contains_pattern(search).as_str());
        w.and(format!(
            "lower(t.id) LIKE lower(CAST({pattern} AS TEXT)) ESCAPE '\\' \
             OR lower(t.name) LIKE lower(CAST({pattern} AS TEXT)) ESCAPE '\\'"
        ));
    }
    if let Some(tier) = &filter.tier {
        let tier = w.param(tier.as_str());
        w.and(format!("t.tier = {tier}"));
    }
    if let Some(status) = filter.status {
        let status = w.param(status.as_str());
        w.and(format!("t.status = {status}"));
    }
    if let Some(domain) = &filter.domain {
        let domain = w.param(domain.as_str());
        w.and(format!("p.domain = {domain}"));
    }
    if let Some(isolation) = filter.isolation {
        let isolation = w.param(isolation.as_str());
        w.and(format!("p.isolation = {isolation}"));
    }
    let limit = w.param(limit);
    let sql = format!(
        "SELECT {TENANT_COLUMNS} FROM tenants t JOIN placements p ON p.tenant_id = t.id \
         {} ORDER BY t.id LIMIT {limit}",
        w.clause()
    );
    tx.query(&sql, w.values())?
        .iter()
        .map(|r| decode(read_row(r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_core::StorageKey;
    use bulkhead_store::SqliteStore;
    use rusqlite::Connection;

    /// A catalog file written before tenant incarnations opens with every tenant and tenant
    /// key in the legacy life, whose storage key is the bare tenant id: the names its data
    /// already has, so nothing moves and nothing is lost.
    #[test]
    fn a_catalog_from_before_incarnations_opens_with_every_tenant_in_its_legacy_life() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE tenants (
                    id TEXT PRIMARY KEY, name TEXT NOT NULL, tier TEXT NOT NULL, status TEXT NOT NULL,
                    labels TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
                 CREATE TABLE placements (
                    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id), domain TEXT NOT NULL, isolation TEXT NOT NULL,
                    namespace TEXT NOT NULL, write_state TEXT NOT NULL, epoch INTEGER NOT NULL,
                    schema_version INTEGER NOT NULL);
                 CREATE TABLE api_keys (
                    id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_hash TEXT NOT NULL, tenant_id TEXT,
                    role TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER, revoked_at INTEGER);
                 INSERT INTO tenants VALUES ('acme', 'Acme', 'premium', 'active', '{}', 1, 1);
                 INSERT INTO placements VALUES ('acme', 'local', 'silo', 'silo-acme', 'open', 7, 1);
                 INSERT INTO api_keys VALUES ('k0123456789abcdef', 'app', 'h', 'acme', 'member', 1, NULL, NULL);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, false).unwrap();
        let (tenant, placement) = store
            .read(|tx| read_tenant(tx, &TenantId::parse("acme").unwrap()))
            .unwrap()
            .unwrap();
        assert_eq!(tenant.name, "Acme");
        assert_eq!(placement.incarnation, Incarnation::legacy());
        assert_eq!(placement.namespace, "silo-acme");
        assert_eq!(
            placement.storage_key(&tenant.id),
            StorageKey::of(&tenant.id, &Incarnation::legacy())
        );
        assert_eq!(placement.storage_key(&tenant.id).as_str(), "acme");
        let key_life: Option<String> = store
            .read(|tx| {
                tx.query_one(
                    "SELECT incarnation FROM api_keys WHERE id = 'k0123456789abcdef'",
                    &[],
                )?
                .get(0)
            })
            .unwrap();
        assert_eq!(
            key_life, None,
            "tenant keys from before read as the legacy life"
        );
        drop(store);
        // Opening again changes nothing (the migration is idempotent).
        let store = SqliteStore::open(&path, false).unwrap();
        let count: i64 = store
            .read(|tx| tx.query_one("SELECT count(*) FROM placements", &[])?.get(0))
            .unwrap();
        assert_eq!(count, 1);
    }
}
