//! What an engine reports when a call fails, and how that becomes an API error.

use std::time::Duration;

use bulkhead_core::FieldName;
use bulkhead_core::error::{Error, ErrorKind};

/// Errors an engine reports. `Storage` carries detail for the log, never for the caller.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("record not found")]
    NotFound,
    #[error("a record with this id already exists")]
    DuplicateId,
    /// The field, when the engine can tell which (a PostgreSQL index whose name had to be
    /// shortened for a very long field name cannot say).
    #[error("{}", unique_message(.0.as_ref()))]
    UniqueViolation(Option<FieldName>),
    #[error("record is at version {current}")]
    VersionMismatch { current: i64 },
    #[error("the scope does not allow writing")]
    ReadOnlyScope,
    #[error("placement is not available: {0}")]
    PlacementMissing(String),
    #[error("query stopped: {0}")]
    TooExpensive(BudgetHit),
    #[error("storage failure: {0}")]
    Storage(String),
    /// A value is beyond what 64 bits hold: a sum or average (see [`SUM_OUT_OF_RANGE`]), or
    /// the version of a record restored at [`bulkhead_core::record::Record::MAX_VERSION`].
    /// The text is the client's message.
    #[error("{0}")]
    OutOfRange(String),
    /// The disk (or filesystem) under the placement is full: nothing was written.
    #[error("storage is full: {0}")]
    StorageFull(String),
    /// The collection's table was changed to definition version `stored` after the caller
    /// chose the definition it passed (an older one): nothing was written. The caller
    /// retries with the definition of version `stored` (the schema fence, see
    /// [`Engine::ensure_collection`]).
    #[error("the collection's storage is at definition version {stored}, newer than the caller's")]
    SchemaMoved { stored: i64 },
    /// The caller passed a definition newer than the collection's table has (version
    /// `stored`): the placement has not been brought to it yet. Nothing was written.
    #[error("the collection's storage is still at definition version {stored}")]
    SchemaBehind { stored: i64 },
}

/// Which limit of a [`QueryBudget`] stopped a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetHit {
    Time(Duration),
    RowsExamined(u64),
}

impl std::fmt::Display for BudgetHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BudgetHit::Time(limit) => write!(
                f,
                "it ran longer than the time budget of {} ms",
                limit.as_millis()
            ),
            BudgetHit::RowsExamined(limit) => {
                write!(f, "it examined more than the budget of {limit} rows")
            }
        }
    }
}

impl From<EngineError> for Error {
    fn from(err: EngineError) -> Self {
        match &err {
            EngineError::NotFound => Error::not_found("record_not_found", "record not found"),
            EngineError::DuplicateId => Error::conflict("duplicate_id", err.to_string()),
            EngineError::UniqueViolation(_) => Error::conflict("unique_violation", err.to_string()),
            EngineError::VersionMismatch { .. } => Error::new(
                ErrorKind::PreconditionFailed,
                "version_mismatch",
                err.to_string(),
            ),
            EngineError::ReadOnlyScope => {
                Error::forbidden("forbidden", "this credential may only read")
            }
            EngineError::PlacementMissing(_) => Error::new(
                ErrorKind::Unavailable,
                "placement_unavailable",
                "tenant storage is not available",
            ),
            EngineError::TooExpensive(hit) => Error::new(
                ErrorKind::Unprocessable,
                "query_too_expensive",
                format!(
                    "query stopped because {hit} (a limit of this tenant's tier); narrow it with a \
                     filter on an indexed field, or use a smaller time range"
                ),
            ),
            // The catalog retries a moved definition itself; these reach a client only when
            // the placement is still being brought to the definition the request needs.
            EngineError::SchemaMoved { .. } | EngineError::SchemaBehind { .. } => Error::new(
                ErrorKind::Unavailable,
                "schema_rolling_out",
                "this tenant's storage is being brought to the collection's new definition; \
                 retry shortly (Retry-After)",
            ),
            EngineError::OutOfRange(message) => {
                Error::new(ErrorKind::Unprocessable, "out_of_range", message.clone())
            }
            EngineError::StorageFull(detail) => {
                tracing::warn!(error = %detail, "storage full");
                Error::new(
                    ErrorKind::QuotaExceeded,
                    "storage_full",
                    "the storage holding this tenant's data is full, so nothing was written; \
                     the platform must free space on its domain (reads still work)",
                )
            }
            EngineError::Storage(detail) => {
                // The caller sees a generic error; the detail is logged once, here.
                tracing::error!(error = %detail, "storage failure");
                Error::internal()
            }
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// The message of a sum or average past 64 bits, alike on every engine.
pub const SUM_OUT_OF_RANGE: &str = "a sum or average is beyond what a 64-bit integer or float \
     holds; narrow the query with a filter, or aggregate a float field";

/// The refusal to change a record at the largest version a record may have.
pub fn version_out_of_range(record: &bulkhead_core::record::Record) -> EngineError {
    EngineError::OutOfRange(format!(
        "record {} is at version {}, the largest a record may have: it can be read and \
         deleted, not changed",
        record.id, record.version
    ))
}

fn unique_message(field: Option<&FieldName>) -> String {
    match field {
        Some(field) => format!("another record already has this value of unique field '{field}'"),
        None => "another record already has this value of one of the collection's unique fields"
            .to_owned(),
    }
}
