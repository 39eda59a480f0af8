//! The storage engine contract. An engine keeps placements (pool, bridge, silo) in some
//! database and reads and writes records in them. It knows no HTTP, no catalog and no driver
//! beyond its own; the binary alone decides which engine serves which domain.
//!
//! Every record operation takes a [`TenantScope`], which only the access layer in
//! `bulkhead-core` can mint: an engine cannot be asked for tenant data without verified
//! credentials behind the request. Placement operations (provision, schema, destroy) take a
//! [`PlacementRef`] and are called only by the control plane.

pub mod conformance;

use async_trait::async_trait;
use bulkhead_core::access::TenantScope;
use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::filter::EqualityFilter;
use bulkhead_core::model::{Isolation, Placement};
use bulkhead_core::record::{NewRecord, Record, RecordChange};
use bulkhead_core::schema::Collection;
use bulkhead_core::{FieldName, RecordId, TenantId};

/// Errors an engine reports. `Storage` carries detail for the log, never for the caller.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("record not found")]
    NotFound,
    #[error("a record with this id already exists")]
    DuplicateId,
    #[error("another record already has this value of unique field '{0}'")]
    UniqueViolation(FieldName),
    #[error("record is at version {current}")]
    VersionMismatch { current: i64 },
    #[error("the scope does not allow writing")]
    ReadOnlyScope,
    #[error("placement is not available: {0}")]
    PlacementMissing(String),
    #[error("storage failure: {0}")]
    Storage(String),
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
            EngineError::Storage(detail) => {
                // The caller sees a generic error; the detail is logged once, here.
                tracing::error!(error = %detail, "storage failure");
                Error::internal()
            }
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// Names a placement for control-plane operations. For `pool`, schema operations act on the
/// shared namespace (all pooled tenants at once) and `destroy` removes only this tenant's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRef {
    pub tenant: TenantId,
    pub isolation: Isolation,
    pub namespace: String,
}

impl PlacementRef {
    pub fn of(tenant: &TenantId, placement: &Placement) -> Self {
        PlacementRef {
            tenant: tenant.clone(),
            isolation: placement.isolation,
            namespace: placement.namespace.clone(),
        }
    }
}

/// A page request: records after `after` (by id), matching `filter`, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: EqualityFilter,
    pub after: Option<RecordId>,
    pub limit: u32,
}

/// Counts an engine reports about a placement, for tests and operators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Database handles currently open.
    pub open_handles: usize,
}

#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// A short name of the engine (`sqlite`, `postgres`).
    fn kind(&self) -> &'static str;

    /// Creates the placement's storage with tables for `collections`. Idempotent, so a
    /// provisioning interrupted by a crash can simply run again.
    async fn provision(
        &self,
        target: &PlacementRef,
        collections: &[Collection],
    ) -> EngineResult<()>;

    /// Makes the placement's tables match `collection` (create table, add columns, create or
    /// drop indexes). Idempotent. Never drops data: the catalog refuses lossy changes first.
    async fn ensure_collection(
        &self,
        target: &PlacementRef,
        collection: &Collection,
    ) -> EngineResult<()>;

    /// Removes every byte of the tenant's data in this placement.
    async fn destroy(&self, target: &PlacementRef) -> EngineResult<()>;

    /// Inserts records atomically: all or none.
    async fn insert(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        records: Vec<NewRecord>,
    ) -> EngineResult<Vec<Record>>;

    async fn get(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        id: &RecordId,
    ) -> EngineResult<Option<Record>>;

    /// Replaces or patches a record, checking `expected_version` when given.
    async fn update(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        id: &RecordId,
        change: RecordChange,
        expected_version: Option<i64>,
    ) -> EngineResult<Record>;

    async fn delete(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        id: &RecordId,
        expected_version: Option<i64>,
    ) -> EngineResult<()>;

    /// Records in id order after `query.after`.
    async fn list(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        query: &ListQuery,
    ) -> EngineResult<Vec<Record>>;

    fn stats(&self) -> EngineStats;

    /// Flushes and closes every database cleanly.
    async fn shutdown(&self);
}
