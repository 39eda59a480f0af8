//! What tenants' data occupies, for metering (`Engine::measure`). A silo is its database's
//! pages in use (its file's pages less the free ones); a bridge tenant is the b-trees of its tables, indexes and full-text
//! index in the shared file, from SQLite's `dbstat`; a pool tenant is its share of each
//! pooled table's b-trees, in proportion to the bytes of its rows (one pass per table).

pub(crate) mod memo;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Instant, SystemTime};

use bulkhead_core::model::Isolation;
use bulkhead_core::schema::Collection;
use bulkhead_core::{CollectionName, StorageKey};
use bulkhead_engine::{Measured, PlacementRef, pool_share};
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::layout::{TableName, db_path};
use crate::{Inner, StorageError};
pub(crate) use memo::Memo;
use memo::{PooledRows, RowsMark, SiloMark};

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
                Isolation::Pool => measure_pool(&db, &self.memo, &members, collections, rest)?,
                _ => db.read(|conn| measure_bridge(conn, &members, collections))?,
            });
            pause(rest, began);
        }
        self.save_memo(memo::SAVE_EVERY);
        Ok(out)
    }

    /// Writes what the passes kept to the engine's directory, when something changed and
    /// `every` has passed since the last time.
    pub(crate) fn save_memo(&self, every: std::time::Duration) {
        let _alone = self.saving.lock();
        let contents = self.memo.lock().due_contents(&self.config.dir, every);
        if let Some(contents) = contents {
            memo::save(&self.config.dir, &contents);
        }
    }

    /// A silo, read through a connection of its own: measuring every silo must not push the
    /// busy ones out of the open-handle cache. A silo whose files have not changed since it
    /// was last measured is not read again (see [`memo`]).
    fn measure_silo(
        &self,
        p: &PlacementRef,
        collections: &[Collection],
    ) -> Result<Option<Measured>, StorageError> {
        let path = db_path(&self.config.dir, Isolation::Silo, &p.namespace, &p.key)?;
        let began = SystemTime::now();
        let Some(mark) = SiloMark::of(&path)? else {
            self.memo.lock().forget(&path);
            return Ok(None);
        };
        let names: Vec<CollectionName> = collections.iter().map(|c| c.name.clone()).collect();
        if let Some((records, bytes)) = self.memo.lock().silo(&path, &mark, &names) {
            return Ok(Some(Measured {
                key: p.key.clone(),
                records,
                bytes,
            }));
        }
        let (mut mark, mut began, mut tries) = (mark, began, 0);
        let counted = loop {
            match count_silo(&path, &p.key, collections) {
                Ok(counted) => break counted,
                // Removed under the pass (SQLite then fails to read it): left out of the
                // pass. Removed and made again: the new file measured (a few times at most).
                Err(e) => match SiloMark::of(&path)? {
                    None => {
                        self.memo.lock().forget(&path);
                        return Ok(None);
                    }
                    Some(now) if now != mark && tries < 3 => {
                        (mark, began, tries) = (now, SystemTime::now(), tries + 1);
                    }
                    Some(_) => return Err(e),
                },
            }
        };
        let (records, bytes) = counted;
        let after = SiloMark::of(&path)?;
        if after.is_none() {
            self.memo.lock().forget(&path);
            return Ok(None);
        }
        self.memo
            .lock()
            .keep_silo(&path, began, mark, after, &names, &records, bytes);
        Ok(Some(Measured {
            key: p.key.clone(),
            records,
            bytes,
        }))
    }
}

/// Records per collection and pages in use of the silo at `path`, in one snapshot.
fn count_silo(
    path: &std::path::Path,
    key: &StorageKey,
    collections: &[Collection],
) -> Result<(BTreeMap<CollectionName, u64>, u64), StorageError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch("BEGIN")?;
    let tables = table_names(&conn)?;
    let mut records = BTreeMap::new();
    for c in collections {
        let table = TableName::new(Isolation::Silo, key, &c.name);
        if tables.contains(&table.raw) {
            records.insert(c.name.clone(), count(&conn, &table)?);
        }
    }
    // Pages in use: what deleting records gives back counts at once (the file keeps its free
    // pages for later writes, and the write-ahead log is transient).
    let pragma = |name: &str| -> Result<u64, StorageError> {
        let n: i64 = conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    let used = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
    let bytes = used * pragma("page_size")?;
    conn.execute_batch("COMMIT")?;
    Ok((records, bytes))
}

/// The names of the tables in the database.
fn table_names(conn: &Connection) -> Result<HashSet<String>, StorageError> {
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(names.collect::<Result<_, _>>()?)
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

/// The statements that measure a pooled table: its tenants' marks a page at a time, the same
/// with each tenant's bytes, and one tenant's mark and bytes. A tenant's bytes are its rows'
/// values (`length` of text and blobs, 8 for numbers, which SQLite stores in up to 8 bytes)
/// plus a cell header per row and an entry in each index (the indexed value, in the row's
/// size already, with the tenant and id as its key).
struct PoolSql {
    marks: String,
    sized: String,
    one: String,
}

/// A pooled tenant's mark, then its rows' bytes (`sized`), from column `first`.
const MARK: &str = "count(*), max(updated_at), sum(version), total(updated_at)";

impl PoolSql {
    fn new(conn: &Connection, table: &TableName, indexes: usize) -> Result<Self, StorageError> {
        let columns: Vec<String> = {
            let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
            let names = stmt.query_map([&table.raw], |r| r.get::<_, String>(0))?;
            names.collect::<Result<_, _>>()?
        };
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
        let overhead =
            format!("{CELL_BYTES} + {indexes} * ({CELL_BYTES} + length(tenant_id) + length(id))");
        let t = table.quoted();
        let page = |what: &str| {
            format!(
                "SELECT tenant_id, {what} FROM {t} WHERE tenant_id > ?1 \
                 GROUP BY tenant_id ORDER BY tenant_id LIMIT {POOL_PAGE}"
            )
        };
        Ok(PoolSql {
            marks: page(MARK),
            sized: page(&format!("{MARK}, sum({size} + {overhead})")),
            one: format!("SELECT {MARK}, sum({size} + {overhead}) FROM {t} WHERE tenant_id = ?1"),
        })
    }
}

fn mark_at(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<RowsMark> {
    Ok(RowsMark {
        rows: u64::try_from(r.get::<_, i64>(first)?).unwrap_or(0),
        newest: r.get::<_, Option<i64>>(first + 1)?.unwrap_or(0),
        versions: r.get::<_, Option<i64>>(first + 2)?.unwrap_or(0),
        stamps: r.get::<_, f64>(first + 3)?,
    })
}

fn bytes_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    Ok(u64::try_from(r.get::<_, Option<i64>>(i)?.unwrap_or(0)).unwrap_or(0))
}

/// One page of a pooled table's tenants after `after`, in key order, each with its rows'
/// mark and bytes: taken from `kept` where the mark has not moved, measured otherwise (the
/// whole page in one scan when most of it must be). Returns the page and how many tenants
/// were measured. One read transaction: marks and bytes are of the same moment.
fn pool_page(
    conn: &Connection,
    sql: &PoolSql,
    after: &str,
    kept: &HashMap<String, PooledRows>,
    memo: &Mutex<Memo>,
) -> Result<(Vec<(String, PooledRows)>, u64), StorageError> {
    let sized = |conn: &Connection| -> Result<Vec<(String, PooledRows)>, StorageError> {
        let mut stmt = conn.prepare_cached(&sql.sized)?;
        let rows = stmt.query_map([after], |r| {
            Ok((r.get::<_, String>(0)?, mark_at(r, 1)?, bytes_at(r, 5)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key, mark, bytes) = row?;
            out.push((key, PooledRows::new(mark, bytes)));
        }
        Ok(out)
    };
    if kept.is_empty() {
        let page = sized(conn)?;
        let n = page.len() as u64;
        return Ok((page, n));
    }
    let marks: Vec<(String, RowsMark)> = {
        let mut stmt = conn.prepare_cached(&sql.marks)?;
        let rows = stmt.query_map([after], |r| Ok((r.get::<_, String>(0)?, mark_at(r, 1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let still: Vec<Option<PooledRows>> = {
        let memo = memo.lock();
        marks
            .iter()
            .map(|(key, mark)| kept.get(key).filter(|k| memo.still(k, mark)).copied())
            .collect()
    };
    let stale = still.iter().filter(|k| k.is_none()).count();
    if stale * 2 > marks.len() {
        let page = sized(conn)?;
        let n = page.len() as u64;
        return Ok((page, n));
    }
    let mut one = conn.prepare_cached(&sql.one)?;
    let mut out = Vec::with_capacity(marks.len());
    for ((key, _), still) in marks.into_iter().zip(still) {
        let rows = match still {
            Some(rows) => rows,
            None => one.query_row([&key], |r| {
                Ok(PooledRows::new(mark_at(r, 0)?, bytes_at(r, 4)?))
            })?,
        };
        out.push((key, rows));
    }
    Ok((out, stale as u64))
}

/// Rests as `rest` says after work that began at `began`.
fn pause(rest: &dyn bulkhead_engine::Rest, began: Instant) {
    let rest = rest.rest_after(began.elapsed());
    if !rest.is_zero() {
        std::thread::sleep(rest);
    }
}

/// A pool's tenants: each pooled table's b-trees read once, its tenants a page at a time per
/// read transaction (so the pass never holds a reader for long, and rests between pages),
/// each tenant's rows sized only when they changed since the last pass.
fn measure_pool(
    db: &crate::db::Db,
    memo: &Mutex<Memo>,
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
        let Some((total, sql)) = db.read(|conn| {
            if !exists(conn, &table)? {
                return Ok(None);
            }
            let btrees = btree_bytes(conn)?;
            let ix = table.index_prefix();
            let indexes = btrees.keys().filter(|name| name.starts_with(&ix)).count();
            Ok(Some((
                table_bytes(&btrees, &table),
                PoolSql::new(conn, &table, indexes)?,
            )))
        })?
        else {
            continue;
        };
        let kept = memo.lock().take_pooled(db.path(), &table.raw, &sql.one);
        let mut now_kept = HashMap::with_capacity(kept.len());
        let (mut all, mut mine, mut after) = (0u64, Vec::new(), String::new());
        let (mut read, mut reused) = (0u64, 0u64);
        loop {
            let began = Instant::now();
            let (page, measured) = db.read(|conn| pool_page(conn, &sql, &after, &kept, memo))?;
            read += measured;
            reused += page.len() as u64 - measured;
            let full = page.len() == POOL_PAGE;
            if let Some((last, _)) = page.last() {
                after.clone_from(last);
            }
            for (key, rows) in page {
                all += rows.bytes;
                if let Some(key) = wanted.get(key.as_str()) {
                    mine.push(((*key).clone(), rows.mark.rows, rows.bytes));
                }
                now_kept.insert(key, rows);
            }
            if !full {
                break;
            }
            pause(rest, began);
            std::thread::yield_now();
        }
        memo.lock()
            .put_pooled(db.path(), &table.raw, &sql.one, now_kept, read, reused);
        for (key, n, bytes) in mine {
            if let Some(m) = found.get_mut(&key) {
                m.records.insert(c.name.clone(), n);
                m.bytes += pool_share(total, bytes, all);
            }
        }
    }
    Ok(found.into_values().collect())
}

#[cfg(test)]
mod tests;
