//! The storage engine contract. An engine keeps placements (pool, bridge, silo) in some
//! database and reads and writes records in them. It knows no HTTP, no catalog and no driver
//! beyond its own; the binary alone decides which engine serves which domain.
//!
//! Every record operation takes a [`TenantScope`], which only the access layer in
//! `bulkhead-core` can mint: an engine cannot be asked for tenant data without verified
//! credentials behind the request. Placement operations (provision, schema, destroy) take a
//! [`PlacementRef`] and are called only by the control plane.

pub mod conformance;
mod error;
mod query;
pub mod sql;

pub use error::{BudgetHit, EngineError, EngineResult, SUM_OUT_OF_RANGE, version_out_of_range};
pub use query::{AggregateQuery, Examined, GroupRow, Hit, Keyset, ListQuery, QueryBudget};

use async_trait::async_trait;
use bulkhead_core::access::{Demolition, TenantScope};
use bulkhead_core::model::{Isolation, Placement};
use bulkhead_core::query::aggregate::AggregatePlan;
use bulkhead_core::record::{FieldValue, NewRecord, Record, RecordChange};
use bulkhead_core::schema::Collection;
use bulkhead_core::{CollectionName, RecordId, StorageKey, TenantId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Refuses writes through a read-only scope.
pub fn require_write(scope: &TenantScope) -> EngineResult<()> {
    if scope.allows_write() {
        Ok(())
    } else {
        Err(EngineError::ReadOnlyScope)
    }
}

/// Names a placement for control-plane operations. For `pool`, schema operations act on the
/// shared namespace (all pooled tenants at once) and `destroy` removes only this tenant's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRef {
    /// The tenant incarnation whose storage this is: engines name everything by it.
    pub key: StorageKey,
    pub isolation: Isolation,
    pub namespace: String,
}

impl PlacementRef {
    /// The ready-pool silo `id` (never a tenant's).
    pub fn spare(id: &bulkhead_core::Incarnation) -> Self {
        let key = StorageKey::spare(id);
        PlacementRef {
            namespace: format!("silo-{key}"),
            key,
            isolation: Isolation::Silo,
        }
    }

    /// Checks that this names a ready-pool silo: the spare operations refuse anything else.
    pub fn require_spare(&self) -> EngineResult<()> {
        if self.isolation == Isolation::Silo && self.key.is_spare() {
            Ok(())
        } else {
            Err(EngineError::Storage(format!(
                "{} is not ready-pool storage",
                self.namespace
            )))
        }
    }

    /// Checks that `target` (a new tenant's silo) may adopt this spare's storage: this is a
    /// spare silo and `target` a tenant's silo.
    pub fn require_adoptable_by(&self, target: &PlacementRef) -> EngineResult<()> {
        self.require_spare()?;
        if target.isolation != Isolation::Silo || target.key.is_spare() {
            return Err(EngineError::Storage(format!(
                "{} cannot adopt ready-pool storage",
                target.namespace
            )));
        }
        Ok(())
    }

    /// The storage a demolition names.
    pub fn demolished(target: &Demolition) -> Self {
        PlacementRef {
            key: target.key().clone(),
            isolation: target.isolation(),
            namespace: target.namespace().to_owned(),
        }
    }

    pub fn of(tenant: &TenantId, placement: &Placement) -> Self {
        PlacementRef {
            key: placement.storage_key(tenant),
            isolation: placement.isolation,
            namespace: placement.namespace.clone(),
        }
    }
}

/// One operation of a bulk request.
#[derive(Debug, Clone, PartialEq)]
pub enum BulkOp {
    Create(NewRecord),
    /// Creates the record, or replaces every field of the existing one.
    Upsert(NewRecord),
    Delete(RecordId),
    /// Deletes the record only while it is still at `version` (else it fails alone, with
    /// [`EngineError::VersionMismatch`] or [`EngineError::NotFound`]): how the retention job
    /// removes records it has archived without removing a write that came after its read.
    Retire {
        id: RecordId,
        version: i64,
    },
}

impl BulkOp {
    /// The id of the record the operation writes.
    pub fn id(&self) -> &RecordId {
        match self {
            BulkOp::Create(r) | BulkOp::Upsert(r) => &r.id,
            BulkOp::Delete(id) | BulkOp::Retire { id, .. } => id,
        }
    }

    /// Whether the operation removes its record.
    pub fn removes(&self) -> bool {
        matches!(self, BulkOp::Delete(_) | BulkOp::Retire { .. })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum BulkOutcome {
    Created(Record),
    Updated(Record),
    Deleted(RecordId),
}

/// How long a paced background scan rests after a unit of work that kept it busy for `busy`
/// (the catalog's pace, from the neighbours' latency).
pub trait Rest: Send + Sync {
    fn rest_after(&self, busy: Duration) -> Duration;
}

/// No rest: work at full speed.
pub struct NoRest;

impl Rest for NoRest {
    fn rest_after(&self, _: Duration) -> Duration {
        Duration::ZERO
    }
}

/// One piece of tenant storage an engine holds, as found in its files or databases (not as
/// the catalog believes it to be): what `bulkhead doctor` compares with the live placements.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoredPlacement {
    pub isolation: Isolation,
    pub namespace: String,
    /// The storage key the engine found: a [`StorageKey`] as text, or a name the engine made
    /// of one it cannot read back (a hashed long PostgreSQL name), then `None`.
    pub key: Option<StorageKey>,
    /// The engine's own name for it (file, schema, database, or `pool:<key>`).
    pub name: String,
}

/// The exact number of `scope`'s tenant's records in `collection`: a count through
/// [`Engine::aggregate`], not metered per row (the server's own counts: a move's
/// comparison, a storage quota's first count).
pub async fn count_records(
    engine: &dyn Engine,
    scope: &TenantScope,
    collection: &Collection,
    time: Duration,
) -> EngineResult<u64> {
    use bulkhead_core::query::aggregate::{Metric, MetricOp};
    let query = AggregateQuery {
        plan: AggregatePlan {
            filter: None,
            groups: Vec::new(),
            metrics: vec![Metric {
                name: "count".into(),
                op: MetricOp::Count,
                column: None,
            }],
        },
        after: None,
        limit: 1,
        budget: QueryBudget::unmetered(time),
    };
    let rows = engine.aggregate(scope, collection, &query).await?;
    let n = match rows.first().and_then(|r| r.metrics.first()) {
        Some(Some(FieldValue::Integer(n))) => *n,
        _ => 0,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

/// What one placement's data occupies ([`Engine::measure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    pub key: StorageKey,
    /// Records per collection (collections without any are left out).
    pub records: BTreeMap<CollectionName, u64>,
    pub bytes: u64,
}

/// A pool tenant's share of a pooled table's `table_bytes`: `tenant_row_bytes` of
/// `all_row_bytes`, rounded down. Rows, their index entries and full-text postings grow
/// together, so the bytes of a tenant's rows are the measure of its share.
pub fn pool_share(table_bytes: u64, tenant_row_bytes: u64, all_row_bytes: u64) -> u64 {
    if all_row_bytes == 0 {
        return 0;
    }
    let share = u128::from(table_bytes) * u128::from(tenant_row_bytes.min(all_row_bytes))
        / u128::from(all_row_bytes);
    u64::try_from(share).unwrap_or(u64::MAX)
}

/// Counts an engine reports about a placement, for tests and operators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Database handles currently open.
    pub open_handles: usize,
    /// Search indexes merged by the engine's background upkeep since it opened (SQLite's
    /// shared files; PostgreSQL keeps its indexes itself, so none there).
    pub search_merges: u64,
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
    ///
    /// The schema fence: the storage records the definition version it was last brought to,
    /// in the same transaction as the change. A definition older than that is ignored (the
    /// storage never goes back). Every write transaction compares the version of the
    /// definition it was given with the recorded one before it commits, and writes nothing
    /// on a difference ([`EngineError::SchemaMoved`], [`EngineError::SchemaBehind`]); a
    /// change waits for the writes in flight on the table and they for it. So no write made
    /// with an older definition (say, one that does not index a new text field for search)
    /// lands after the change, and none with a newer one lands before it.
    async fn ensure_collection(
        &self,
        target: &PlacementRef,
        collection: &Collection,
    ) -> EngineResult<()>;

    /// The ready pool: builds the silo `spare` (named by a [`StorageKey::spare`] key) with
    /// tables for `collections`, or brings an existing one up to them, and lets go of it (no
    /// handle stays open). Refuses anything but a spare silo.
    async fn prepare_spare(
        &self,
        spare: &PlacementRef,
        collections: &[Collection],
    ) -> EngineResult<()>;

    /// Hands the ready storage of `spare` to `target`, a new silo, by renaming it: the
    /// tenant's storage then has the spare's tables and nothing else. `Ok(false)` when the
    /// spare's storage is gone (the caller provisions as usual). Never replaces storage
    /// `target` already has.
    async fn adopt_spare(&self, spare: &PlacementRef, target: &PlacementRef) -> EngineResult<bool>;

    /// Removes a spare's storage, if it is still there. Refuses anything but a spare silo.
    async fn discard_spare(&self, spare: &PlacementRef) -> EngineResult<()>;

    /// Removes every byte of the tenant's data in this placement. Takes a [`Demolition`],
    /// which only the holder of the access authority makes (tenant deletion, a move's
    /// clean-up or rollback, `doctor` removing an orphan).
    async fn destroy(&self, target: &Demolition) -> EngineResult<()>;

    /// Inserts records atomically: all or none.
    async fn insert(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        records: Vec<NewRecord>,
    ) -> EngineResult<Vec<Record>>;

    /// Writes records exactly as given — ids, timestamps, versions, fields — replacing any
    /// record with the same id: how a move copies a tenant's records into its new placement.
    /// All or none.
    async fn restore(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        records: Vec<Record>,
    ) -> EngineResult<()>;

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

    /// One page of records matching the query, at most `query.limit`.
    async fn list(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        query: &ListQuery,
    ) -> EngineResult<Vec<Hit>>;

    /// Groups and metrics over the matching records (see [`AggregateQuery`]).
    async fn aggregate(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        query: &AggregateQuery,
    ) -> EngineResult<Vec<GroupRow>>;

    /// Applies operations in one transaction. An operation that fails (duplicate id, unique
    /// value, missing record) fails alone and the others still commit; any other error fails
    /// the whole call and commits nothing.
    async fn bulk(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        ops: Vec<BulkOp>,
    ) -> EngineResult<Vec<Result<BulkOutcome, EngineError>>>;

    fn stats(&self) -> EngineStats;

    /// The name [`Engine::inventory`] gives the storage of `target`.
    fn storage_name(&self, target: &PlacementRef) -> String;

    /// Every piece of tenant storage this engine holds: silo files or databases, bridge
    /// tables or schemas, and each storage key with rows in a pooled table.
    async fn inventory(&self) -> EngineResult<Vec<StoredPlacement>>;

    /// What `placements` (all on this engine) occupy, for metering: records per collection
    /// of `collections` and bytes on disk. A silo is its whole database; a bridge tenant its
    /// tables and indexes; a pool tenant its share of each pooled table and its indexes, in
    /// proportion to the bytes of its rows. Placements sharing a pool are measured in one
    /// pass over each table. A placement whose storage is gone is left out.
    async fn measure(
        &self,
        placements: &[PlacementRef],
        collections: &[Collection],
    ) -> EngineResult<Vec<Measured>>;

    /// [`Engine::measure`], resting between units of work (a file, a page of a pooled
    /// table) as long as `rest` says, so a scan of every tenant's storage spares the
    /// requests meanwhile. Engines whose measurement is a few catalog queries on a database
    /// server measure at once (the default).
    async fn measure_paced(
        &self,
        placements: &[PlacementRef],
        collections: &[Collection],
        rest: Arc<dyn Rest>,
    ) -> EngineResult<Vec<Measured>> {
        let _ = rest;
        self.measure(placements, collections).await
    }

    /// Writes a copy of every database this engine keeps into `dest` (same relative paths as
    /// under its own directory), each one consistent as of one moment (one read transaction,
    /// so writers go on meanwhile), counting them in `progress`. `None`: the engine's data is
    /// on a database server, backed up with that server's tools.
    async fn snapshot(
        &self,
        dest: &std::path::Path,
        progress: std::sync::Arc<SnapshotProgress>,
    ) -> EngineResult<Option<Vec<SnapshotFile>>>;

    /// Flushes and closes every database cleanly.
    async fn shutdown(&self);
}

/// How far a snapshot has gone: files known, files copied, bytes written.
#[derive(Debug, Default)]
pub struct SnapshotProgress {
    pub files_total: std::sync::atomic::AtomicU64,
    pub files_done: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
}

/// One database file a snapshot wrote: its path relative to the snapshot's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: std::path::PathBuf,
    pub bytes: u64,
}
