//! The [`Engine`] implementation: placements, transactions and record operations.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bulkhead_core::access::{Demolition, TenantScope};
use bulkhead_core::model::Isolation;
use bulkhead_core::record::{NewRecord, Record, RecordChange, apply_change};
use bulkhead_core::schema::{Collection, FieldType};
use bulkhead_core::time::Clock;
use bulkhead_core::{RecordId, StorageKey};
use bulkhead_engine::{
    AggregateQuery, BudgetHit, BulkOp, BulkOutcome, Engine, EngineError, EngineResult, EngineStats,
    GroupRow, Hit, ListQuery, PlacementRef, QueryBudget, StoredPlacement,
};
use deadpool_postgres::{Object, Transaction};
use futures_util::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use crate::PgError;
use crate::conn::Pools;
use crate::names::{self, POOL_SCHEMA, SILO_SCHEMA, Table};
use crate::records::{RecordSql, Statement};
use crate::tx::{begin, budget_error, execute, query, report_examined};
use crate::value::refs;

/// Batches of at least this many records are inserted with binary `COPY`.
const COPY_THRESHOLD: usize = 16;

pub struct PgEngine {
    pub(crate) pools: Arc<Pools>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Each tenant's share of the pool's connections.
    pub(crate) shares: crate::shares::Shares,
    /// Silo databases known to have this version's bookkeeping (see [`PgEngine::client`]).
    pub(crate) bookkept: std::sync::Mutex<HashSet<String>>,
}

fn table_of(scope: &TenantScope, collection: &Collection) -> Table {
    Table::new(
        scope.placement().isolation,
        scope.storage_key(),
        &collection.name,
    )
}

pub(crate) fn database_of(scope: &TenantScope) -> Option<String> {
    names::database_of(scope.placement().isolation, scope.storage_key())
}

pub(crate) fn schema_of(isolation: Isolation, tenant: &StorageKey) -> String {
    match isolation {
        Isolation::Pool => POOL_SCHEMA.to_owned(),
        Isolation::Bridge => names::bridge_schema(tenant),
        Isolation::Silo => SILO_SCHEMA.to_owned(),
    }
}

fn copy_type(field_type: FieldType) -> Type {
    match field_type {
        FieldType::String | FieldType::Text => Type::TEXT,
        FieldType::Integer | FieldType::Timestamp => Type::INT8,
        FieldType::Float => Type::FLOAT8,
        FieldType::Boolean => Type::BOOL,
        FieldType::Json => Type::JSONB,
    }
}

impl PgEngine {
    /// [`begin`] for the scope's tenant with the write timeout (record reads and writes).
    async fn begin_writes<'a>(
        &self,
        client: &'a mut Object,
        scope: &TenantScope,
    ) -> Result<Transaction<'a>, PgError> {
        begin(
            client,
            scope.storage_key(),
            self.pools.write_timeout(),
            self.cache(),
        )
        .await
    }

    /// Inserts records in the caller's transaction: one prepared INSERT each, or binary COPY
    /// through a staging table for batches of [`COPY_THRESHOLD`] or more. A duplicate id or
    /// unique value fails the whole call (the caller's savepoint or transaction rolls back).
    async fn insert_rows(
        &self,
        tx: &Transaction<'_>,
        sql: &RecordSql<'_>,
        records: &[Record],
    ) -> Result<(), PgError> {
        if records.len() >= COPY_THRESHOLD {
            let mut types: Vec<Type> = Vec::new();
            if sql.table.pooled {
                types.push(Type::TEXT);
            }
            types.extend([Type::TEXT, Type::INT8, Type::INT8, Type::INT8]);
            types.extend(sql.field_types().map(copy_type));
            if sql.search {
                types.push(Type::TS_VECTOR);
            }
            // PostgreSQL refuses COPY into a table under row-level security, so the rows are
            // copied into a transaction-scoped staging table and moved with one INSERT, which
            // the policy's WITH CHECK then vets like any other write.
            let cols = sql.insert_columns().join(", ");
            tx.batch_execute(&format!(
                "DROP TABLE IF EXISTS pg_temp.bk_stage; \
                 CREATE TEMP TABLE bk_stage (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP",
                sql.table.quoted()
            ))
            .await?;
            let sink = tx
                .copy_in(&format!(
                    "COPY pg_temp.bk_stage ({cols}) FROM STDIN (FORMAT binary)"
                ))
                .await?;
            let writer = BinaryCopyInWriter::new(sink, &types);
            pin_mut!(writer);
            for record in records {
                let row = sql.insert_row(record);
                writer.as_mut().write(&refs(&row)).await?;
            }
            writer.finish().await?;
            tx.batch_execute(&format!(
                "INSERT INTO {} ({cols}) SELECT {cols} FROM pg_temp.bk_stage; DROP TABLE pg_temp.bk_stage",
                sql.table.quoted()
            ))
            .await?;
            return Ok(());
        }
        let text = sql.insert_sql();
        for record in records {
            let s = Statement {
                sql: text.clone(),
                params: sql.insert_row(record),
            };
            execute(tx, &s, self.cache()).await?;
        }
        Ok(())
    }

    async fn fetch(
        &self,
        tx: &Transaction<'_>,
        sql: &RecordSql<'_>,
        id: &RecordId,
        for_update: bool,
    ) -> Result<Option<Record>, PgError> {
        let rows = query(tx, &sql.get(id, for_update), self.cache()).await?;
        rows.first().map(|r| sql.decode(r)).transpose()
    }

    async fn replace(
        &self,
        tx: &Transaction<'_>,
        sql: &RecordSql<'_>,
        current: Record,
        fields: bulkhead_core::record::Fields,
    ) -> Result<Record, PgError> {
        let now = self.clock.now();
        let version = current
            .next_version()
            .ok_or_else(|| bulkhead_engine::version_out_of_range(&current))?;
        execute(
            tx,
            &sql.update(&current.id, now, version, &fields),
            self.cache(),
        )
        .await?;
        Ok(Record {
            id: current.id,
            created_at: current.created_at,
            updated_at: now,
            version,
            fields,
        })
    }

    async fn remove(
        &self,
        tx: &Transaction<'_>,
        sql: &RecordSql<'_>,
        id: &RecordId,
    ) -> Result<(), PgError> {
        if execute(tx, &sql.delete(id), self.cache()).await? == 0 {
            return Err(EngineError::NotFound.into());
        }
        Ok(())
    }

    /// One bulk operation inside its own savepoint, so a failure rolls back only itself.
    async fn bulk_op(
        &self,
        tx: &mut Transaction<'_>,
        sql: &RecordSql<'_>,
        op: BulkOp,
    ) -> Result<BulkOutcome, PgError> {
        let now = self.clock.now();
        let sp = tx.savepoint("bk_op").await?;
        let result = match op {
            BulkOp::Create(record) => {
                let record = created(record, now);
                self.insert_rows(&sp, sql, std::slice::from_ref(&record))
                    .await
                    .map(|()| BulkOutcome::Created(record))
            }
            BulkOp::Upsert(record) => match self.fetch(&sp, sql, &record.id, true).await? {
                Some(current) => self
                    .replace(&sp, sql, current, record.fields)
                    .await
                    .map(BulkOutcome::Updated),
                None => {
                    let record = created(record, now);
                    self.insert_rows(&sp, sql, std::slice::from_ref(&record))
                        .await
                        .map(|()| BulkOutcome::Created(record))
                }
            },
            BulkOp::Delete(id) => self
                .remove(&sp, sql, &id)
                .await
                .map(|()| BulkOutcome::Deleted(id)),
            BulkOp::Retire { id, version } => match self.fetch(&sp, sql, &id, true).await? {
                None => Err(EngineError::NotFound.into()),
                Some(current) if current.version != version => Err(EngineError::VersionMismatch {
                    current: current.version,
                }
                .into()),
                Some(_) => self
                    .remove(&sp, sql, &id)
                    .await
                    .map(|()| BulkOutcome::Deleted(id)),
            },
        };
        match result {
            Ok(outcome) => {
                sp.commit().await?;
                Ok(outcome)
            }
            Err(e) => {
                sp.rollback().await?;
                Err(e)
            }
        }
    }
}

fn created(record: NewRecord, now: bulkhead_core::time::Timestamp) -> Record {
    Record {
        id: record.id,
        created_at: now,
        updated_at: now,
        version: 1,
        fields: record.fields,
    }
}

/// A time budget under a millisecond cannot run a query at all (PostgreSQL's statement
/// timeout counts in milliseconds, and 0 would mean "no limit").
fn check_time(budget: &QueryBudget) -> Result<(), PgError> {
    if budget.time < Duration::from_millis(1) {
        return Err(EngineError::TooExpensive(BudgetHit::Time(budget.time)).into());
    }
    Ok(())
}

#[async_trait]
impl Engine for PgEngine {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn provision(
        &self,
        target: &PlacementRef,
        collections: &[Collection],
    ) -> EngineResult<()> {
        Ok(self.ensure(target, collections, true).await?)
    }

    async fn ensure_collection(
        &self,
        target: &PlacementRef,
        collection: &Collection,
    ) -> EngineResult<()> {
        Ok(self
            .ensure(target, std::slice::from_ref(collection), false)
            .await?)
    }

    async fn prepare_spare(
        &self,
        spare: &PlacementRef,
        collections: &[Collection],
    ) -> EngineResult<()> {
        spare.require_spare()?;
        self.ensure(spare, collections, true).await?;
        self.pools.forget_silo(&names::silo_database(&spare.key));
        Ok(())
    }

    async fn adopt_spare(&self, spare: &PlacementRef, target: &PlacementRef) -> EngineResult<bool> {
        spare.require_adoptable_by(target)?;
        Ok(self.adopt_spare_database(spare, target).await?)
    }

    async fn discard_spare(&self, spare: &PlacementRef) -> EngineResult<()> {
        spare.require_spare()?;
        Ok(self.destroy_placement(spare).await?)
    }

    async fn destroy(&self, target: &Demolition) -> EngineResult<()> {
        let target = &PlacementRef::demolished(target);
        Ok(self.destroy_placement(target).await?)
    }

    async fn insert(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        records: Vec<NewRecord>,
    ) -> EngineResult<Vec<Record>> {
        bulkhead_engine::require_write(scope)?;
        let table = table_of(scope, collection);
        let sql = RecordSql::new(&table, scope.storage_key().as_str(), collection);
        let mut client = self.client(scope).await?;
        let tx = self.begin_writes(&mut client, scope).await?;
        let now = self.clock.now();
        let records: Vec<Record> = records.into_iter().map(|r| created(r, now)).collect();
        self.insert_rows(&tx, &sql, &records).await?;
        crate::fence::commit_fenced(tx, &table, collection.version, self.cache()).await?;
        Ok(records)
    }

    async fn restore(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        records: Vec<Record>,
    ) -> EngineResult<()> {
        bulkhead_engine::require_write(scope)?;
        let table = table_of(scope, collection);
        let sql = RecordSql::new(&table, scope.storage_key().as_str(), collection);
        let mut client = self.client(scope).await?;
        let tx = self.begin_writes(&mut client, scope).await?;
        let ids: Vec<&RecordId> = records.iter().map(|r| &r.id).collect();
        execute(&tx, &sql.delete_many(&ids), self.cache()).await?;
        self.insert_rows(&tx, &sql, &records).await?;
        crate::fence::commit_fenced(tx, &table, collection.version, self.cache()).await?;
        Ok(())
    }

    async fn get(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        id: &RecordId,
    ) -> EngineResult<Option<Record>> {
        let table = table_of(scope, collection);
        let sql = RecordSql::new(&table, scope.storage_key().as_str(), collection);
        let mut client = self.client(scope).await?;
        let tx = self.begin_writes(&mut client, scope).await?;
        let record = self.fetch(&tx, &sql, id, false).await?;
        tx.commit().await.map_err(PgError::from)?;
        Ok(record)
    }

    async fn update(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        id: &RecordId,
        change: RecordChange,
        expected_version: Option<i64>,
    ) -> EngineResult<Record> {
        bulkhead_engine::require_write(scope)?;
        let table = table_of(scope, collection);
        let sql = RecordSql::new(&table, scope.storage_key().as_str(), collection);
        let mut client = self.client(scope).await?;
        let tx = self.begin_writes(&mut client, scope).await?;
        let current = self
            .fetch(&tx, &sql, id, true)
            .await?
            .ok_or(EngineError::NotFound)?;
        if expected_version.is_some_and(|v| v != current.version) {
            return Err(EngineError::VersionMismatch {
                current: current.version,
            });
        }
        let fields = apply_change(&current.fields, change);
        let record = self.replace(&tx, &sql, current, fields).await?;
        crate::fence::commit_fenced(tx, &table, collection.version, self.cache()).await?;
        Ok(record)
    }

    async fn delete(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        id: &RecordId,
        expected_version: Option<i64>,
    ) -> EngineResult<()> {
        bulkhead_engine::require_write(scope)?;
        let table = table_of(scope, collection);
        let sql = RecordSql::new(&table, scope.storage_key().as_str(), collection);
        let mut client = self.client(scope).await?;
        let tx = self.begin_writes(&mut client, scope).await?;
        if let Some(expected) = expected_version {
            let current = self
                .fetch(&tx, &sql, id, true)
                .await?
                .ok_or(EngineError::NotFound)?;
            if current.version != expected {
                return Err(EngineError::VersionMismatch {
                    current: current.version,
                });
            }
        }
        self.remove(&tx, &sql, id).await?;
        crate::fence::commit_fenced(tx, &table, collection.version, self.cache()).await?;
        Ok(())
    }

    async fn list(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        query_: &ListQuery,
    ) -> EngineResult<Vec<Hit>> {
        check_time(&query_.budget)?;
        let table = table_of(scope, collection);
        let sql = RecordSql::new(&table, scope.storage_key().as_str(), collection);
        let list = sql.list(query_)?;
        let mut client = self.client(scope).await?;
        let tx = begin(
            &mut client,
            scope.storage_key(),
            query_.budget.time,
            self.cache(),
        )
        .await?;
        let rows = query(&tx, &list.statement, self.cache())
            .await
            .map_err(|e| budget_error(e, &query_.budget))?;
        let hits = rows
            .iter()
            .map(|row| sql.decode_hit(row, &list, query_))
            .collect::<Result<Vec<_>, _>>()?;
        report_examined(&tx, &query_.budget, self.cache()).await?;
        tx.commit().await.map_err(PgError::from)?;
        Ok(hits)
    }

    async fn aggregate(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        query_: &AggregateQuery,
    ) -> EngineResult<Vec<GroupRow>> {
        check_time(&query_.budget)?;
        let table = table_of(scope, collection);
        let sql = RecordSql::new(&table, scope.storage_key().as_str(), collection);
        let statement = sql.aggregate(query_);
        let mut client = self.client(scope).await?;
        let tx = begin(
            &mut client,
            scope.storage_key(),
            query_.budget.time,
            self.cache(),
        )
        .await?;
        let rows = query(&tx, &statement, self.cache())
            .await
            .map_err(|e| budget_error(e, &query_.budget))?;
        let groups = rows
            .iter()
            .map(|row| sql.decode_group(row, &query_.plan))
            .collect::<Result<Vec<_>, _>>()?;
        report_examined(&tx, &query_.budget, self.cache()).await?;
        tx.commit().await.map_err(PgError::from)?;
        Ok(groups)
    }

    async fn bulk(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        ops: Vec<BulkOp>,
    ) -> EngineResult<Vec<Result<BulkOutcome, EngineError>>> {
        bulkhead_engine::require_write(scope)?;
        let table = table_of(scope, collection);
        let sql = RecordSql::new(&table, scope.storage_key().as_str(), collection);
        let mut client = self.client(scope).await?;
        let mut tx = self.begin_writes(&mut client, scope).await?;
        // A batch of creates goes in with one COPY when none of them fails; otherwise (or for
        // mixed batches) operation by operation, each in its own savepoint.
        if ops.len() >= COPY_THRESHOLD && ops.iter().all(|op| matches!(op, BulkOp::Create(_))) {
            let now = self.clock.now();
            let records: Vec<Record> = ops
                .iter()
                .filter_map(|op| match op {
                    BulkOp::Create(r) => Some(created(r.clone(), now)),
                    _ => None,
                })
                .collect();
            let sp = tx.savepoint("bk_copy").await.map_err(PgError::from)?;
            match self.insert_rows(&sp, &sql, &records).await {
                Ok(()) => {
                    sp.commit().await.map_err(PgError::from)?;
                    crate::fence::commit_fenced(tx, &table, collection.version, self.cache())
                        .await?;
                    return Ok(records
                        .into_iter()
                        .map(|r| Ok(BulkOutcome::Created(r)))
                        .collect());
                }
                Err(e) => match EngineError::from(e) {
                    EngineError::DuplicateId | EngineError::UniqueViolation(_) => {
                        sp.rollback().await.map_err(PgError::from)?;
                    }
                    other => return Err(other),
                },
            }
        }
        // A batch of deletes only is one statement; an id it did not find (or found already
        // deleted earlier in the batch) is reported as not found, as op by op would.
        if ops.len() > 1 && ops.iter().all(|op| matches!(op, BulkOp::Delete(_))) {
            let ids: Vec<&RecordId> = ops
                .iter()
                .filter_map(|op| match op {
                    BulkOp::Delete(id) => Some(id),
                    _ => None,
                })
                .collect();
            let rows = query(&tx, &sql.delete_many_returning(&ids), self.cache()).await?;
            let mut found: HashSet<String> = rows
                .iter()
                .map(|row| row.try_get::<_, String>(0))
                .collect::<Result<_, _>>()
                .map_err(PgError::from)?;
            crate::fence::commit_fenced(tx, &table, collection.version, self.cache()).await?;
            return Ok(ids
                .into_iter()
                .map(|id| {
                    if found.remove(id.as_str()) {
                        Ok(BulkOutcome::Deleted(id.clone()))
                    } else {
                        Err(EngineError::NotFound)
                    }
                })
                .collect());
        }
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            match self.bulk_op(&mut tx, &sql, op).await {
                Ok(outcome) => out.push(Ok(outcome)),
                Err(err) => match EngineError::from(err) {
                    e @ (EngineError::NotFound
                    | EngineError::DuplicateId
                    | EngineError::VersionMismatch { .. }
                    | EngineError::UniqueViolation(_)) => out.push(Err(e)),
                    other => return Err(other),
                },
            }
        }
        crate::fence::commit_fenced(tx, &table, collection.version, self.cache()).await?;
        Ok(out)
    }

    fn stats(&self) -> EngineStats {
        EngineStats {
            open_handles: self.pools.open_pools(),
            search_merges: 0,
        }
    }

    fn storage_name(&self, target: &PlacementRef) -> String {
        self.placement_name(target)
    }

    async fn inventory(&self) -> EngineResult<Vec<StoredPlacement>> {
        Ok(self.list_storage().await?)
    }

    async fn measure(
        &self,
        placements: &[PlacementRef],
        collections: &[Collection],
    ) -> EngineResult<Vec<bulkhead_engine::Measured>> {
        Ok(self.measure_placements(placements, collections).await?)
    }

    /// A PostgreSQL domain is backed up with PostgreSQL's own tools (docs/backup.md).
    async fn snapshot(
        &self,
        _dest: &std::path::Path,
        _progress: std::sync::Arc<bulkhead_engine::SnapshotProgress>,
    ) -> EngineResult<Option<Vec<bulkhead_engine::SnapshotFile>>> {
        Ok(None)
    }

    async fn shutdown(&self) {
        self.pools.close();
    }
}
