//! The catalog's own SQLite database: schema, connection handling and row mapping.
//!
//! Writes go through one writer connection in immediate transactions; reads use a small pool
//! of read-only connections. `secure_delete` is on, so a deleted tenant's name and labels do
//! not linger in free pages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bulkhead_core::error::Error;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tiers (name TEXT PRIMARY KEY, spec TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS domains (name TEXT PRIMARY KEY, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, tier TEXT NOT NULL, status TEXT NOT NULL,
    labels TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS placements (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id), domain TEXT NOT NULL, isolation TEXT NOT NULL,
    namespace TEXT NOT NULL, write_state TEXT NOT NULL, epoch INTEGER NOT NULL,
    schema_version INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS placements_by_namespace ON placements (domain, isolation, namespace);
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY, version INTEGER NOT NULL, spec TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_hash TEXT NOT NULL, tenant_id TEXT,
    role TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER, revoked_at INTEGER);
CREATE INDEX IF NOT EXISTS api_keys_by_tenant ON api_keys (tenant_id, id);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, tenant_id TEXT, outcome TEXT NOT NULL,
    request_id TEXT NOT NULL, detail TEXT);
CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit (tenant_id, seq);
";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("catalog row is malformed: {0}")]
    Malformed(String),
    #[error(transparent)]
    Api(#[from] Error),
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Api(e) => e,
            other => {
                tracing::error!(error = %other, "catalog failure");
                Error::internal()
            }
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

pub(crate) fn malformed(what: impl std::fmt::Display) -> StoreError {
    StoreError::Malformed(what.to_string())
}

pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

fn configure(conn: &Connection, fsync: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl Store {
    pub fn open(path: &Path, fsync: bool) -> StoreResult<Store> {
        let writer = Connection::open(path)?;
        configure(&writer, fsync)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.execute_batch(SCHEMA)?;
        Ok(Store {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    pub fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.writer.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    pub fn read<T>(&self, f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
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
            let out = f(&tx)?;
            tx.finish()?;
            Ok(out)
        })();
        let mut readers = self.readers.lock();
        if readers.len() < 8 {
            readers.push(conn);
        }
        result
    }

    pub fn checkpoint(&self) -> StoreResult<()> {
        self.writer
            .lock()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

pub fn get_meta(tx: &Connection, key: &str) -> StoreResult<Option<String>> {
    use rusqlite::OptionalExtension;
    Ok(tx
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

pub fn set_meta(tx: &Connection, key: &str, value: &str) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}
