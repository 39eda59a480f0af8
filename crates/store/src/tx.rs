//! The transaction interface every catalog statement goes through: parameters and rows
//! (integers, text and nulls only), errors, and the few helpers every room needs.

use bulkhead_core::error::Error;

/// Milliseconds since the Unix epoch, for the migrations' record.
pub fn now_ms() -> i64 {
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

pub fn malformed(what: impl std::fmt::Display) -> StoreError {
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
#[macro_export]
macro_rules! params {
    ($($v:expr),* $(,)?) => { &[$($crate::Val::from($v)),*] as &[$crate::Val] };
}

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
pub struct Row(pub Vec<Val>);

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
pub fn changed(tx: &dyn Tx, kind: &str, id: &str) -> StoreResult<()> {
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
