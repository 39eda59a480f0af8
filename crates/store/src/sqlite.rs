//! The catalog in one SQLite file that one server owns. Writes go through one writer
//! connection in immediate transactions; reads use a small pool of read-only connections.
//! `secure_delete` is on, so a deleted tenant's name and labels do not linger in free pages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::migrations::{self, Dialect, SchemaState};
use crate::tx::{Row, StoreResult, Tx, Val, malformed, now_ms};

pub struct SqliteStore {
    schema: SchemaState,
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

fn configure(conn: &Connection, fsync: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Plans never depend on bound values. SQLite built with STAT4 (as rusqlite bundles it)
    // marks a plan with a bound value on an indexed column as depending on it, and rusqlite
    // clears a cached statement's bindings when it goes back to the cache, so every cached
    // catalog statement was compiled again on each use. The catalog is never analysed: its
    // plans never came from values.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

pub struct SqliteTx<'a>(pub &'a Connection);

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(n) => ToSqlOutput::Borrowed(ValueRef::Integer(*n)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

impl Tx for SqliteTx<'_> {
    fn execute(&self, sql: &str, params: &[Val]) -> StoreResult<u64> {
        let mut stmt = self.0.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params))? as u64)
    }

    fn query(&self, sql: &str, params: &[Val]) -> StoreResult<Vec<Row>> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i)? {
                    ValueRef::Null => Val::Null,
                    ValueRef::Integer(n) => Val::Int(n),
                    ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                    other => {
                        return Err(malformed(format!(
                            "unexpected {:?} in column {i}",
                            other.data_type()
                        )));
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn shared(&self) -> bool {
        false
    }
}

impl SqliteStore {
    /// The catalog schema's version, and what this open migrated.
    pub fn schema(&self) -> &SchemaState {
        &self.schema
    }

    pub fn open(path: &Path, fsync: bool) -> StoreResult<SqliteStore> {
        let mut writer = Connection::open(path)?;
        configure(&writer, fsync)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        let schema = {
            let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let state = migrations::apply(
                &SqliteTx(&tx),
                Dialect::Sqlite,
                migrations::MIGRATIONS,
                now_ms(),
            )?;
            tx.commit()?;
            state
        };
        Ok(SqliteStore {
            schema,
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    pub fn write<T>(&self, f: impl FnOnce(&dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.writer.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&SqliteTx(&tx))?;
        tx.commit()?;
        Ok(out)
    }

    pub fn read<T>(&self, f: impl FnOnce(&dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
        let pooled = self.readers.lock().pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn =
                    Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                configure(&conn, false)?;
                conn
            }
        };
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let out = f(&SqliteTx(&tx))?;
            tx.finish()?;
            Ok(out)
        })();
        let mut readers = self.readers.lock();
        if readers.len() < 8 {
            readers.push(conn);
        }
        result
    }

    /// A consistent copy of the catalog at `to` (`VACUUM INTO`: one read transaction, so
    /// writers go on meanwhile); returns its size.
    pub fn snapshot_into(&self, to: &Path) -> StoreResult<u64> {
        let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        let target = to
            .to_str()
            .ok_or_else(|| malformed(format!("{} is not UTF-8", to.display())))?;
        conn.execute("VACUUM INTO ?1", [target])?;
        let file =
            std::fs::File::open(to).map_err(|e| malformed(format!("{}: {e}", to.display())))?;
        file.sync_all()
            .map_err(|e| malformed(format!("{}: {e}", to.display())))?;
        Ok(file.metadata().map_err(|e| malformed(e.to_string()))?.len())
    }

    pub fn checkpoint(&self) -> StoreResult<()> {
        self.writer
            .lock()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached catalog statement is not compiled again on each use (issue 16: the storage
    /// sampler's catalog writes spent a third of their time recompiling `read_tenant`).
    #[test]
    fn a_cached_catalog_statement_is_not_prepared_again_on_each_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("catalog.db"), false).unwrap();
        let sql = "SELECT t.id, t.name, p.domain FROM tenants t JOIN placements p \
                   ON p.tenant_id = t.id WHERE t.id = ?1";
        let mut reprepared = Vec::new();
        for id in ["a", "b", "a", "c"] {
            let conn = store.writer.lock();
            let mut stmt = conn.prepare_cached(sql).unwrap();
            let rows = stmt.query_map([id], |r| r.get::<_, String>(0)).unwrap();
            assert_eq!(rows.count(), 0);
            reprepared.push(stmt.get_status(rusqlite::StatementStatus::RePrepare));
        }
        assert_eq!(reprepared, [0, 0, 0, 0], "the statement was prepared again");
    }
}
