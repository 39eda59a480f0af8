//! What tenants' data occupies, for metering (`Engine::measure`). A silo is its database's
//! pages in use (its file's pages less the free ones); a bridge tenant is the b-trees of its tables, indexes and full-text
//! index in the shared file, from SQLite's `dbstat`; a pool tenant is its share of each
//! pooled table's b-trees, in proportion to the bytes of its rows (one pass per table).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use bulkhead_core::model::Isolation;
use bulkhead_core::schema::Collection;
use bulkhead_core::{CollectionName, StorageKey};
use bulkhead_engine::{Measured, PlacementRef, pool_share};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::layout::{TableName, db_path};
use crate::{Inner, StorageError};

/// What a b-tree cell costs beyond its payload (header, pointer), roughly.
const CELL_BYTES: u64 = 12;

/// Bytes of each b-tree in the database, by name (tables, indexes, full-text shadow tables).
fn btree_bytes(conn: &Connection) -> Result<HashMap<String, u64>, StorageError> {
    let mut stmt = conn.prepare("SELECT name, pgsize FROM dbstat WHERE aggregate = TRUE")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = HashMap::new();
    for row in rows {
        let (name, bytes) = row?;
        out.insert(name, u64::try_from(bytes).unwrap_or(0));
    }
    Ok(out)
}

/// The bytes of `table`'s own b-trees: the table, its indexes and its full-text index.
fn table_bytes(btrees: &HashMap<String, u64>, table: &TableName) -> u64 {
    let (ix, fts) = (table.index_prefix(), table.fts_raw());
    btrees
        .iter()
        .filter(|(name, _)| **name == table.raw || name.starts_with(&ix) || name.starts_with(&fts))
        .map(|(_, bytes)| *bytes)
        .sum()
}

fn exists(conn: &Connection, table: &TableName) -> Result<bool, StorageError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [&table.raw],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn count(conn: &Connection, table: &TableName) -> Result<u64, StorageError> {
    let n: i64 = conn.query_row(
        &format!("SELECT count(*) FROM {}", table.quoted()),
        [],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

impl Inner {
    /// Measures `placements`, resting after each silo, each bridge file and each page of a
    /// pooled table as `rest` says (on this blocking thread).
    pub(crate) fn measure(
        &self,
        placements: &[PlacementRef],
        collections: &[Collection],
        rest: &dyn bulkhead_engine::Rest,
    ) -> Result<Vec<Measured>, StorageError> {
        let mut out = Vec::new();
        let mut shared: BTreeMap<(Isolation, &str), Vec<&PlacementRef>> = BTreeMap::new();
        for p in placements {
            match p.isolation {
                Isolation::Silo => {
                    let began = Instant::now();
                    out.extend(self.measure_silo(p, collections)?);
                    pause(rest, began);
                }
                isolation => shared.entry((isolation, &p.namespace)).or_default().push(p),
            }
        }
        for ((isolation, namespace), members) in shared {
            if !self.config.dir.join(format!("{namespace}.db")).exists() {
                continue;
            }
            let db = self.shared_db(isolation, namespace)?;
            let began = Instant::now();
            out.extend(match isolation {
                Isolation::Pool => measure_pool(&db, &members, collections, rest)?,
                _ => db.read(|conn| measure_bridge(conn, &members, collections))?,
            });
            pause(rest, began);
        }
        Ok(out)
    }

    /// A silo, read through a connection of its own: measuring every silo must not push the
    /// busy ones out of the open-handle cache.
    fn measure_silo(
        &self,
        p: &PlacementRef,
        collections: &[Collection],
    ) -> Result<Option<Measured>, StorageError> {
        let path = db_path(&self.config.dir, Isolation::Silo, &p.namespace, &p.key)?;
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut records = BTreeMap::new();
        for c in collections {
            let table = TableName::new(Isolation::Silo, &p.key, &c.name);
            if exists(&conn, &table)? {
                records.insert(c.name.clone(), count(&conn, &table)?);
            }
        }
        // Pages in use: what deleting records gives back counts at once (the file keeps
        // its free pages for later writes, and the write-ahead log is transient).
        let pragma = |name: &str| -> Result<u64, StorageError> {
            let n: i64 = conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        let used = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
        let bytes = used * pragma("page_size")?;
        Ok(Some(Measured {
            key: p.key.clone(),
            records,
            bytes,
        }))
    }
}

fn measure_bridge(
    conn: &Connection,
    members: &[&PlacementRef],
    collections: &[Collection],
) -> Result<Vec<Measured>, StorageError> {
    let btrees = btree_bytes(conn)?;
    let mut out = Vec::new();
    for p in members {
        let mut m = Measured {
            key: p.key.clone(),
            records: BTreeMap::new(),
            bytes: 0,
        };
        let mut any = false;
        for c in collections {
            let table = TableName::new(Isolation::Bridge, &p.key, &c.name);
            if exists(conn, &table)? {
                any = true;
                m.records.insert(c.name.clone(), count(conn, &table)?);
                m.bytes += table_bytes(&btrees, &table);
            }
        }
        if any {
            out.push(m);
        }
    }
    Ok(out)
}

/// Tenants (groups) read from a pooled table per read transaction.
const POOL_PAGE: usize = 1_000;

/// Each tenant's rows of a pooled table, a page of tenants after `after` at a time: (storage
/// key, records, bytes of its rows), in key order.
fn pool_rows_page(
    conn: &Connection,
    table: &TableName,
    indexes: usize,
    after: &str,
) -> Result<Vec<(String, u64, u64)>, StorageError> {
    let columns: Vec<String> = {
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
        let names = stmt.query_map([&table.raw], |r| r.get::<_, String>(0))?;
        names.collect::<Result<_, _>>()?
    };
    // A value's stored size: `length` of text and blobs; 8 for numbers (SQLite stores
    // integers in up to 8 bytes and floats in 8); 0 for NULL.
    let size = columns
        .iter()
        .map(|c| {
            format!(
                "(CASE typeof(\"{c}\") WHEN 'null' THEN 0 WHEN 'integer' THEN 8 WHEN 'real' THEN 8 \
                 ELSE length(CAST(\"{c}\" AS BLOB)) END)"
            )
        })
        .collect::<Vec<_>>()
        .join(" + ");
    // Each row also costs a cell header, and an entry in each index: the indexed value (in
    // the row's size already) with the tenant and id as its key.
    let overhead =
        format!("{CELL_BYTES} + {indexes} * ({CELL_BYTES} + length(tenant_id) + length(id))");
    let mut stmt = conn.prepare(&format!(
        "SELECT tenant_id, count(*), sum({size} + {overhead}) FROM {} WHERE tenant_id > ?1 \
         GROUP BY tenant_id ORDER BY tenant_id LIMIT {POOL_PAGE}",
        table.quoted()
    ))?;
    let rows = stmt.query_map([after], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<i64>>(2)?.unwrap_or(0),
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (key, n, bytes) = row?;
        out.push((
            key,
            u64::try_from(n).unwrap_or(0),
            u64::try_from(bytes).unwrap_or(0),
        ));
    }
    Ok(out)
}

/// A pool's tenants: each pooled table's b-trees read once, its rows a page of tenants per
/// read transaction (so the pass never holds a reader for long, and yields between pages).
/// Rests as `rest` says after work that began at `began`.
fn pause(rest: &dyn bulkhead_engine::Rest, began: Instant) {
    let rest = rest.rest_after(began.elapsed());
    if !rest.is_zero() {
        std::thread::sleep(rest);
    }
}

fn measure_pool(
    db: &crate::db::Db,
    members: &[&PlacementRef],
    collections: &[Collection],
    rest: &dyn bulkhead_engine::Rest,
) -> Result<Vec<Measured>, StorageError> {
    let mut found: BTreeMap<StorageKey, Measured> = members
        .iter()
        .map(|p| {
            (
                p.key.clone(),
                Measured {
                    key: p.key.clone(),
                    records: BTreeMap::<CollectionName, u64>::new(),
                    bytes: 0,
                },
            )
        })
        .collect();
    let wanted: HashMap<&str, &StorageKey> =
        members.iter().map(|p| (p.key.as_str(), &p.key)).collect();
    for c in collections {
        // The pool's table of `c` has the same name for every tenant.
        let Some(first) = members.first() else {
            break;
        };
        let table = TableName::new(Isolation::Pool, &first.key, &c.name);
        let Some((total, indexes)) = db.read(|conn| {
            if !exists(conn, &table)? {
                return Ok(None);
            }
            let btrees = btree_bytes(conn)?;
            let ix = table.index_prefix();
            let indexes = btrees.keys().filter(|name| name.starts_with(&ix)).count();
            Ok(Some((table_bytes(&btrees, &table), indexes)))
        })?
        else {
            continue;
        };
        let (mut all, mut mine, mut after) = (0u64, Vec::new(), String::new());
        loop {
            let began = Instant::now();
            let page = db.read(|conn| pool_rows_page(conn, &table, indexes, &after))?;
            for (key, n, bytes) in &page {
                all += bytes;
                if let Some(key) = wanted.get(key.as_str()) {
                    mine.push(((*key).clone(), *n, *bytes));
                }
            }
            match page.last() {
                Some((last, _, _)) if page.len() == POOL_PAGE => after.clone_from(last),
                _ => break,
            }
            pause(rest, began);
            std::thread::yield_now();
        }
        for (key, n, bytes) in mine {
            if let Some(m) = found.get_mut(&key) {
                m.records.insert(c.name.clone(), n);
                m.bytes += pool_share(total, bytes, all);
            }
        }
    }
    Ok(found.into_values().collect())
}
