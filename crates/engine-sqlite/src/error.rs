//! The engine's own failures, and their conversion to the engine-neutral [`EngineError`]
//! (a primary-key or unique violation names what was duplicated).

use bulkhead_core::FieldName;
use bulkhead_engine::EngineError;

/// Failures inside the engine, converted to [`EngineError`] at the trait boundary.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("database file {0} does not exist")]
    Missing(String),
    #[error("namespace {0:?} does not name a placement of this engine")]
    BadNamespace(String),
    #[error("stored data does not match its schema: {0}")]
    Corrupt(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl StorageError {
    /// Whether this is a write refused by a primary key or unique index.
    pub(crate) fn is_constraint(&self) -> bool {
        matches!(
            self,
            StorageError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        )
    }
}

impl From<StorageError> for EngineError {
    fn from(err: StorageError) -> Self {
        use rusqlite::ffi::{SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE};
        match err {
            StorageError::Engine(e) => e,
            StorageError::Missing(what) => EngineError::PlacementMissing(what),
            StorageError::Sqlite(rusqlite::Error::SqliteFailure(e, msg))
                if e.code == rusqlite::ErrorCode::DiskFull =>
            {
                EngineError::StorageFull(format!("{e}: {}", msg.unwrap_or_default()))
            }
            StorageError::Sqlite(rusqlite::Error::SqliteFailure(e, msg)) => {
                match (e.extended_code, msg) {
                    (SQLITE_CONSTRAINT_PRIMARYKEY, _) => EngineError::DuplicateId,
                    (SQLITE_CONSTRAINT_UNIQUE, Some(msg)) => unique_field(&msg).map_or_else(
                        || EngineError::Storage(msg.clone()),
                        |f| EngineError::UniqueViolation(Some(f)),
                    ),
                    (_, Some(msg)) if msg.starts_with("no such table") => {
                        EngineError::PlacementMissing(msg)
                    }
                    // `sum()` past a 64-bit integer.
                    (_, Some(msg)) if msg == "integer overflow" => {
                        EngineError::OutOfRange(bulkhead_engine::SUM_OUT_OF_RANGE.into())
                    }
                    (_, msg) => EngineError::Storage(format!("{e}: {}", msg.unwrap_or_default())),
                }
            }
            other => EngineError::Storage(other.to_string()),
        }
    }
}

/// `UNIQUE constraint failed: c_items.tenant_id, c_items.f_sku` → `sku`.
fn unique_field(msg: &str) -> Option<FieldName> {
    let last = msg.rsplit(", ").next()?;
    let column = last.rsplit('.').next()?;
    FieldName::parse(column.strip_prefix("f_")?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that finds the database's storage full (SQLite's `SQLITE_FULL`, here forced by
    /// a page limit) is `StorageFull`, which clients see as `507 storage_full`.
    #[test]
    fn a_full_disk_is_storage_full() {
        let db = rusqlite::Connection::open_in_memory().unwrap_or_else(|e| panic!("{e}"));
        db.execute_batch("PRAGMA max_page_count = 8; CREATE TABLE t (v BLOB);")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut failure = None;
        for _ in 0..100 {
            if let Err(e) = db.execute("INSERT INTO t VALUES (zeroblob(4000))", []) {
                failure = Some(e);
                break;
            }
        }
        let failure = failure.unwrap_or_else(|| panic!("the page limit never filled"));
        let engine = EngineError::from(StorageError::Sqlite(failure));
        assert!(matches!(engine, EngineError::StorageFull(_)), "{engine:?}");
        let error = bulkhead_core::Error::from(engine);
        assert_eq!(
            (error.kind.status(), error.code.as_ref()),
            (507, "storage_full")
        );
    }
}
