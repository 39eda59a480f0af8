//! The cold archive's ledger in the catalog (`cold_files`, `cold_holds`): which files each
//! tenant life has, in what state, and which ranges were brought back.
//!
//! A file is `pending` from before it is written until the records it holds are gone from
//! the hot store (its batch is then `sealed`); `restoring` while a range of it goes back.
//! Pending and restoring rows carry a lease: the server working on them renews nothing, it
//! finishes within the lease, and after it any server may finish or undo the work.

use bulkhead_catalog::Life;
use bulkhead_core::{CollectionName, Incarnation, TenantId};
use bulkhead_store::{Row, StoreResult, Tx, Val, malformed, params};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Sealed,
    Restoring,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Sealed => "sealed",
            State::Restoring => "restoring",
        }
    }

    fn parse(raw: &str) -> StoreResult<Self> {
        Ok(match raw {
            "pending" => State::Pending,
            "sealed" => State::Sealed,
            "restoring" => State::Restoring,
            other => return Err(malformed(format!("cold file state {other:?}"))),
        })
    }
}

/// One row of `cold_files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub id: String,
    pub batch: String,
    pub life: Life,
    pub collection: CollectionName,
    /// `YYYY-MM`.
    pub month: String,
    /// Relative to the cold archive's root.
    pub path: String,
    pub records: u64,
    pub bytes: u64,
    pub min_at: i64,
    pub max_at: i64,
    pub sha256: String,
    pub state: State,
    pub lease_until: i64,
}

const COLUMNS: &str = "id, batch, tenant_id, incarnation, collection, month, path, records, \
                       bytes, min_at, max_at, sha256, state, lease_until";

fn row_of(r: &Row) -> StoreResult<FileRow> {
    let count = |i: usize| r.get::<i64>(i).map(|n| u64::try_from(n).unwrap_or(0));
    Ok(FileRow {
        id: r.get(0)?,
        batch: r.get(1)?,
        life: Life {
            tenant: TenantId::parse(&r.get::<String>(2)?).map_err(malformed)?,
            incarnation: Incarnation::parse(&r.get::<String>(3)?).map_err(malformed)?,
        },
        collection: CollectionName::parse(&r.get::<String>(4)?).map_err(malformed)?,
        month: r.get(5)?,
        path: r.get(6)?,
        records: count(7)?,
        bytes: count(8)?,
        min_at: r.get(9)?,
        max_at: r.get(10)?,
        sha256: r.get(11)?,
        state: State::parse(&r.get::<String>(12)?)?,
        lease_until: r.get(13)?,
    })
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub fn insert(tx: &dyn Tx, row: &FileRow, now: i64) -> StoreResult<()> {
    tx.execute(
        &format!(
            "INSERT INTO cold_files ({COLUMNS}, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
        ),
        params![
            row.id.as_str(),
            row.batch.as_str(),
            row.life.tenant.as_str(),
            row.life.incarnation.as_str(),
            row.collection.as_str(),
            row.month.as_str(),
            row.path.as_str(),
            int(row.records),
            int(row.bytes),
            row.min_at,
            row.max_at,
            row.sha256.as_str(),
            row.state.as_str(),
            row.lease_until,
            now
        ],
    )?;
    Ok(())
}

pub fn delete(tx: &dyn Tx, id: &str) -> StoreResult<()> {
    tx.execute("DELETE FROM cold_files WHERE id = ?1", params![id])?;
    Ok(())
}

pub fn delete_batch(tx: &dyn Tx, batch: &str) -> StoreResult<()> {
    tx.execute("DELETE FROM cold_files WHERE batch = ?1", params![batch])?;
    Ok(())
}

/// Whether `life` is its tenant's current life (and, with `active`, the tenant is active).
pub fn is_current(tx: &dyn Tx, life: &Life, active: bool) -> StoreResult<bool> {
    let row = tx.query_opt(
        "SELECT t.status FROM tenants t JOIN placements p ON p.tenant_id = t.id \
         WHERE t.id = ?1 AND p.incarnation = ?2",
        params![life.tenant.as_str(), life.incarnation.as_str()],
    )?;
    Ok(match row {
        None => false,
        Some(row) => !active || row.get::<String>(0)? == "active",
    })
}

/// Whether a batch of `life`'s `collection` is pending or restoring (someone works on it).
pub fn busy(tx: &dyn Tx, life: &Life, collection: &CollectionName) -> StoreResult<bool> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM cold_files WHERE tenant_id = ?1 AND incarnation = ?2 \
             AND collection = ?3 AND state <> 'sealed' LIMIT 1",
            params![
                life.tenant.as_str(),
                life.incarnation.as_str(),
                collection.as_str()
            ],
        )?
        .is_some())
}

/// Files not sealed whose lease has run out, oldest batch first.
pub fn abandoned(tx: &dyn Tx, now: i64) -> StoreResult<Vec<FileRow>> {
    tx.query(
        &format!(
            "SELECT {COLUMNS} FROM cold_files WHERE state <> 'sealed' AND lease_until < ?1 \
             ORDER BY batch, id"
        ),
        params![now],
    )?
    .iter()
    .map(row_of)
    .collect()
}

/// Takes over the unsealed files of `batch` whose lease ran out; false when another server
/// took them first.
pub fn take_over(tx: &dyn Tx, batch: &str, now: i64, lease_until: i64) -> StoreResult<bool> {
    let taken = tx.execute(
        "UPDATE cold_files SET lease_until = ?3 WHERE batch = ?1 AND state <> 'sealed' \
         AND lease_until < ?2",
        params![batch, now, lease_until],
    )?;
    Ok(taken > 0)
}

/// Claims a sealed file for a restore; false when it is not sealed any more.
pub fn claim_for_restore(tx: &dyn Tx, id: &str, lease_until: i64) -> StoreResult<bool> {
    let claimed = tx.execute(
        "UPDATE cold_files SET state = 'restoring', lease_until = ?2 \
         WHERE id = ?1 AND state = 'sealed'",
        params![id, lease_until],
    )?;
    Ok(claimed > 0)
}

pub fn set_sealed(tx: &dyn Tx, id: &str) -> StoreResult<()> {
    tx.execute(
        "UPDATE cold_files SET state = 'sealed' WHERE id = ?1",
        params![id],
    )?;
    Ok(())
}

/// The sealed files of `life` (one collection, or all), by collection and month.
pub fn sealed(
    tx: &dyn Tx,
    life: &Life,
    collection: Option<&CollectionName>,
) -> StoreResult<Vec<FileRow>> {
    let mut args = vec![
        Val::from(life.tenant.as_str()),
        Val::from(life.incarnation.as_str()),
    ];
    let mut sql = format!(
        "SELECT {COLUMNS} FROM cold_files WHERE tenant_id = ?1 AND incarnation = ?2 \
         AND state = 'sealed'"
    );
    if let Some(collection) = collection {
        sql.push_str(" AND collection = ?3");
        args.push(Val::from(collection.as_str()));
    }
    sql.push_str(" ORDER BY collection, month, id");
    tx.query(&sql, &args)?.iter().map(row_of).collect()
}

/// Every path the ledger knows for `life`.
pub fn paths(tx: &dyn Tx, life: &Life) -> StoreResult<Vec<String>> {
    tx.query(
        "SELECT path FROM cold_files WHERE tenant_id = ?1 AND incarnation = ?2",
        params![life.tenant.as_str(), life.incarnation.as_str()],
    )?
    .iter()
    .map(|r| r.get::<String>(0))
    .collect()
}

/// Bytes and records in the cold archive of `tenant`'s current life.
pub fn totals(tx: &dyn Tx, life: &Life) -> StoreResult<(u64, u64)> {
    let row = tx.query_one(
        "SELECT COALESCE(SUM(records), 0), COALESCE(SUM(bytes), 0) FROM cold_files \
         WHERE tenant_id = ?1 AND incarnation = ?2 AND state <> 'pending'",
        params![life.tenant.as_str(), life.incarnation.as_str()],
    )?;
    let count = |i: usize| row.get::<i64>(i).map(|n| u64::try_from(n).unwrap_or(0));
    Ok((count(0)?, count(1)?))
}

/// A range of `collection` brought back, kept hot until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub from: i64,
    pub to: i64,
    pub until: i64,
}

pub fn add_hold(
    tx: &dyn Tx,
    life: &Life,
    collection: &CollectionName,
    hold: &Hold,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO cold_holds (tenant_id, incarnation, collection, from_at, to_at, until) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            life.tenant.as_str(),
            life.incarnation.as_str(),
            collection.as_str(),
            hold.from,
            hold.to,
            hold.until
        ],
    )?;
    Ok(())
}

/// The holds of `life`'s `collection` still in force at `now` (expired ones are dropped).
pub fn holds(
    tx: &dyn Tx,
    life: &Life,
    collection: &CollectionName,
    now: i64,
) -> StoreResult<Vec<Hold>> {
    tx.execute("DELETE FROM cold_holds WHERE until <= ?1", params![now])?;
    tx.query(
        "SELECT from_at, to_at, until FROM cold_holds WHERE tenant_id = ?1 \
         AND incarnation = ?2 AND collection = ?3 ORDER BY from_at",
        params![
            life.tenant.as_str(),
            life.incarnation.as_str(),
            collection.as_str()
        ],
    )?
    .iter()
    .map(|r| {
        Ok(Hold {
            from: r.get(0)?,
            to: r.get(1)?,
            until: r.get(2)?,
        })
    })
    .collect()
}
