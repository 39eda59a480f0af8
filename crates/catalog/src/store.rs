//! The catalog's storage, behind one small transaction interface ([`Tx`]) with two backends:
//! an embedded SQLite file (one server owns it) and a PostgreSQL database that several
//! servers share (see `store_pg`). Catalog code writes its SQL once, with `?N` parameters,
//! in the subset both understand.
//!
//! SQLite: writes go through one writer connection in immediate transactions; reads use a
//! small pool of read-only connections. `secure_delete` is on, so a deleted tenant's name and
//! labels do not linger in free pages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bulkhead_core::error::Error;
use parking_lot::Mutex;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::migrations::{self, Dialect, SchemaState};
use crate::store_pg::PgStore;

/// Milliseconds since the Unix epoch, for the migrations' record.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("catalog database: {0}")]
    Postgres(String),
    #[error("catalog row is malformed: {0}")]
    Malformed(String),
    #[error(transparent)]
    Api(#[from] Error),
    #[error(
        "the catalog's schema is at version {found}, newer than this binary knows ({known}): \
         run the bulkhead release that upgraded it (or a newer one), or restore the backup \
         taken before that upgrade"
    )]
    TooNew { found: i64, known: i64 },
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Api(e) => e,
            too_new @ StoreError::TooNew { .. } => {
                Error::internal().with_message(too_new.to_string())
            }
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

/// A parameter or a column value: the catalog stores only integers, text and nulls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Val {
    fn from(n: i64) -> Self {
        Val::Int(n)
    }
}
impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::Text(s.to_owned())
    }
}
impl From<String> for Val {
    fn from(s: String) -> Self {
        Val::Text(s)
    }
}
impl From<&String> for Val {
    fn from(s: &String) -> Self {
        Val::Text(s.clone())
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}
impl From<&Option<String>> for Val {
    fn from(v: &Option<String>) -> Self {
        v.as_deref().into()
    }
}

/// `params![a, b]`: a parameter slice for [`Tx`] methods.
macro_rules! params {
    ($($v:expr),* $(,)?) => { &[$($crate::store::Val::from($v)),*] as &[$crate::store::Val] };
}
pub(crate) use params;

/// A value read from a column.
pub trait FromVal: Sized {
    fn from_val(v: &Val) -> StoreResult<Self>;
}
impl FromVal for i64 {
    fn from_val(v: &Val) -> StoreResult<Self> {
        match v {
            Val::Int(n) => Ok(*n),
            other => Err(malformed(format!("expected an integer, found {other:?}"))),
        }
    }
}
impl FromVal for String {
    fn from_val(v: &Val) -> StoreResult<Self> {
        match v {
            Val::Text(s) => Ok(s.clone()),
            other => Err(malformed(format!("expected text, found {other:?}"))),
        }
    }
}
impl<T: FromVal> FromVal for Option<T> {
    fn from_val(v: &Val) -> StoreResult<Self> {
        match v {
            Val::Null => Ok(None),
            other => T::from_val(other).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug)]
pub struct Row(pub(crate) Vec<Val>);

impl Row {
    pub fn get<T: FromVal>(&self, i: usize) -> StoreResult<T> {
        let v = self
            .0
            .get(i)
            .ok_or_else(|| malformed(format!("no column {i}")))?;
        T::from_val(v)
    }

    pub fn raw(&self, i: usize) -> Option<&Val> {
        self.0.get(i)
    }
}

/// An open catalog transaction. SQL uses `?N` parameters and the dialect subset SQLite and
/// PostgreSQL share.
pub trait Tx {
    fn execute(&self, sql: &str, params: &[Val]) -> StoreResult<u64>;
    fn query(&self, sql: &str, params: &[Val]) -> StoreResult<Vec<Row>>;
    /// True when other servers share this catalog (and so must hear of cache changes).
    fn shared(&self) -> bool;

    fn query_opt(&self, sql: &str, params: &[Val]) -> StoreResult<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    fn query_one(&self, sql: &str, params: &[Val]) -> StoreResult<Row> {
        self.query_opt(sql, params)?
            .ok_or_else(|| malformed(format!("no row from: {sql}")))
    }
}

/// Tells every server sharing the catalog that cached state of `kind` (`key`, `route`,
/// `collections`, `tier`, `domain`) changed for `id`. Written in the changing transaction,
/// so it is seen exactly when the change is. A no-op for a catalog one server owns.
pub(crate) fn changed(tx: &dyn Tx, kind: &str, id: &str) -> StoreResult<()> {
    if tx.shared() {
        tx.execute(
            "INSERT INTO changes (kind, id) VALUES (?1, ?2)",
            params![kind, id],
        )?;
        tx.execute("SELECT pg_notify('bulkhead_catalog', '')", &[])?;
    }
    Ok(())
}

pub fn get_meta(tx: &dyn Tx, key: &str) -> StoreResult<Option<String>> {
    tx.query_opt("SELECT value FROM meta WHERE key = ?1", params![key])?
        .map(|r| r.get(0))
        .transpose()
}

pub fn set_meta(tx: &dyn Tx, key: &str, value: &str) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Where the catalog lives.
#[derive(Debug, Clone)]
pub enum Location {
    /// An SQLite file one server owns.
    Sqlite(PathBuf),
    /// A PostgreSQL database (URL with credentials) several servers may share.
    Postgres(String),
}

pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens the store. PostgreSQL needs `handle` (the runtime its connections run on);
    /// call from a blocking thread.
    pub fn open(
        location: &Location,
        fsync: bool,
        handle: tokio::runtime::Handle,
    ) -> StoreResult<Store> {
        match location {
            Location::Sqlite(path) => SqliteStore::open(path, fsync).map(Store::Sqlite),
            Location::Postgres(url) => PgStore::open(url, handle).map(Store::Postgres),
        }
    }

    pub fn write<T>(&self, f: impl FnOnce(&dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
        match self {
            Store::Sqlite(s) => s.write(f),
            Store::Postgres(s) => s.write(f),
        }
    }

    pub fn read<T>(&self, f: impl FnOnce(&dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
        match self {
            Store::Sqlite(s) => s.read(f),
            Store::Postgres(s) => s.read(f),
        }
    }

    pub fn checkpoint(&self) -> StoreResult<()> {
        match self {
            Store::Sqlite(s) => s.checkpoint(),
            Store::Postgres(_) => Ok(()),
        }
    }

    /// The catalog schema's version, and what this start migrated.
    pub fn schema(&self) -> &SchemaState {
        match self {
            Store::Sqlite(s) => &s.schema,
            Store::Postgres(s) => s.schema(),
        }
    }

    pub fn postgres(&self) -> Option<&PgStore> {
        match self {
            Store::Postgres(s) => Some(s),
            Store::Sqlite(_) => None,
        }
    }
}

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
    Ok(())
}

pub(crate) struct SqliteTx<'a>(pub(crate) &'a Connection);

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

    fn write<T>(&self, f: impl FnOnce(&dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.writer.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&SqliteTx(&tx))?;
        tx.commit()?;
        Ok(out)
    }

    fn read<T>(&self, f: impl FnOnce(&dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
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

    fn checkpoint(&self) -> StoreResult<()> {
        self.writer
            .lock()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_core::{Incarnation, StorageKey, TenantId};

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
            .read(|tx| crate::rows::tenants::read_tenant(tx, &TenantId::parse("acme").unwrap()))
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
