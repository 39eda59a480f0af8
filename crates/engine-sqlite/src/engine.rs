//! The `Engine` trait for SQLite: each call finds its placement's file and runs on the
//! blocking pool ([`SqliteEngine::blocking`]).

use std::sync::Arc;

use async_trait::async_trait;
use bulkhead_core::RecordId;
use bulkhead_core::access::{Demolition, TenantScope};
use bulkhead_core::model::Isolation;
use bulkhead_core::record::{NewRecord, Record, RecordChange, apply_change};
use bulkhead_core::schema::Collection;
use bulkhead_engine::{
    AggregateQuery, BulkOp, BulkOutcome, Engine, EngineError, EngineResult, EngineStats, GroupRow,
    Hit, ListQuery, PlacementRef, StoredPlacement,
};
use rusqlite::params_from_iter;

use crate::layout::TableName;
use crate::search::next_seq;
use crate::sql::{RecordSql, ensure_table};
use crate::write::{create, fetch, insert_exact, remove, replace};
use crate::{SqliteEngine, inventory, sql, table_of};

/// WAL pages after which a move's restore into a shared file checkpoints (on the move's own
/// thread, outside the writer: `Db::checkpoint_if_due`). Smaller steps keep the WAL, and so
/// what readers of the shared file search through, short while a move fills it. Only the
/// move's own commits use it; at 256 for every commit, bulk ingest into a pool fell from
/// 0.88 to 0.65–0.77 of raw SQLite (measured when checkpoints still ran on the writer).
const SHARED_RESTORE_CHECKPOINT_PAGES: u32 = 256;
/// Most records per transaction when a move restores into a file other tenants write to
/// (a transaction ends sooner when one of their writes waits: `Db::write_yielding`).
const SHARED_RESTORE_PER_TX: usize = 256;

#[async_trait]
impl Engine for SqliteEngine {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn provision(
        &self,
        target: &PlacementRef,
        collections: &[Collection],
    ) -> EngineResult<()> {
        let (target, collections) = (target.clone(), collections.to_vec());
        self.blocking(move |inner| {
            let db = inner.db(target.isolation, &target.namespace, &target.key, true)?;
            for collection in &collections {
                let table = TableName::new(target.isolation, &target.key, &collection.name);
                db.with_writer(|conn| ensure_table(conn, &table, collection))?;
            }
            Ok(())
        })
        .await
    }

    async fn ensure_collection(
        &self,
        target: &PlacementRef,
        collection: &Collection,
    ) -> EngineResult<()> {
        let (target, collection) = (target.clone(), collection.clone());
        self.blocking(move |inner| {
            let db = inner.db(target.isolation, &target.namespace, &target.key, false)?;
            let table = TableName::new(target.isolation, &target.key, &collection.name);
            db.with_writer(|conn| ensure_table(conn, &table, &collection))
        })
        .await
    }

    async fn prepare_spare(
        &self,
        spare: &PlacementRef,
        collections: &[Collection],
    ) -> EngineResult<()> {
        spare.require_spare()?;
        let (spare, collections) = (spare.clone(), collections.to_vec());
        self.blocking(move |inner| {
            let db = inner.db(Isolation::Silo, &spare.namespace, &spare.key, true)?;
            for collection in &collections {
                let table = TableName::new(Isolation::Silo, &spare.key, &collection.name);
                db.with_writer(|conn| ensure_table(conn, &table, collection))?;
            }
            let path = db.path().to_owned();
            drop(db);
            inner.release(&path);
            Ok(())
        })
        .await
    }

    async fn adopt_spare(&self, spare: &PlacementRef, target: &PlacementRef) -> EngineResult<bool> {
        spare.require_adoptable_by(target)?;
        let (spare, target) = (spare.clone(), target.clone());
        self.blocking(move |inner| inner.adopt_spare(&spare, &target))
            .await
    }

    async fn discard_spare(&self, spare: &PlacementRef) -> EngineResult<()> {
        spare.require_spare()?;
        let spare = spare.clone();
        self.blocking(move |inner| inner.destroy(&spare)).await
    }

    async fn destroy(&self, target: &Demolition) -> EngineResult<()> {
        let target = PlacementRef::demolished(target);
        self.blocking(move |inner| inner.destroy(&target)).await
    }

    async fn insert(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        records: Vec<NewRecord>,
    ) -> EngineResult<Vec<Record>> {
        let (scope, collection) = (scope.clone(), collection.clone());
        self.blocking(move |inner| {
            bulkhead_engine::require_write(&scope)?;
            let db = inner.scoped_db(&scope)?;
            let now = inner.clock.now();
            // Concurrent single writes to one file share a commit (`Db::write_grouped`).
            db.write_grouped(move |tx| {
                let table = table_of(&scope, &collection);
                let sql = RecordSql::new(&table, scope.storage_key().as_str(), &collection);
                let text = sql.insert_sql();
                sql::fence(tx, &table, collection.version)?;
                let mut seq = if sql.search { next_seq(tx, &table)? } else { 0 };
                records
                    .into_iter()
                    .map(|record| create(tx, &sql, &text, record, now, &mut seq))
                    .collect()
            })
        })
        .await
    }

    async fn restore(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        records: Vec<Record>,
    ) -> EngineResult<()> {
        let (scope, collection) = (scope.clone(), collection.clone());
        self.blocking(move |inner| {
            bulkhead_engine::require_write(&scope)?;
            let db = inner.scoped_db(&scope)?;
            let table = table_of(&scope, &collection);
            let sql = RecordSql::new(&table, scope.storage_key().as_str(), &collection);
            let text = sql.insert_sql();
            // A file other tenants write to (pool, bridge) gets the copy in small
            // transactions with the writer handed over between them; a silo's own file takes
            // the page in one.
            let (per_tx, checkpoint) = if scope.placement().isolation == Isolation::Silo {
                (records.len(), None)
            } else {
                (SHARED_RESTORE_PER_TX, Some(SHARED_RESTORE_CHECKPOINT_PAGES))
            };
            // Once per transaction: the schema fence and the next search number.
            let begin = |tx: &rusqlite::Transaction<'_>| {
                sql::fence(tx, &table, collection.version)?;
                Ok(if sql.search { next_seq(tx, &table)? } else { 0 })
            };
            db.write_yielding(records, per_tx, checkpoint, begin, |tx, seq, record| {
                // Inserted as it is; a record with its id already there is replaced (a failed
                // statement undoes only itself).
                match insert_exact(tx, &sql, &text, &record, seq) {
                    // The id, or a unique value the record it replaces holds.
                    Err(e) if e.is_constraint() && fetch(tx, &sql, &record.id)?.is_some() => {
                        remove(tx, &sql, &record.id)?;
                        insert_exact(tx, &sql, &text, &record, seq)
                    }
                    other => other,
                }
            })
        })
        .await
    }

    async fn get(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        id: &RecordId,
    ) -> EngineResult<Option<Record>> {
        let (scope, collection, id) = (scope.clone(), collection.clone(), id.clone());
        self.blocking(move |inner| {
            let db = inner.scoped_db(&scope)?;
            let table = table_of(&scope, &collection);
            let sql = RecordSql::new(&table, scope.storage_key().as_str(), &collection);
            db.read_statement(None, |tx| fetch(tx, &sql, &id))
        })
        .await
    }

    async fn update(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        id: &RecordId,
        change: RecordChange,
        expected_version: Option<i64>,
    ) -> EngineResult<Record> {
        let (scope, collection, id) = (scope.clone(), collection.clone(), id.clone());
        self.blocking(move |inner| {
            bulkhead_engine::require_write(&scope)?;
            let db = inner.scoped_db(&scope)?;
            let now = inner.clock.now();
            db.write_grouped(move |tx| {
                let table = table_of(&scope, &collection);
                let sql = RecordSql::new(&table, scope.storage_key().as_str(), &collection);
                sql::fence(tx, &table, collection.version)?;
                let current = fetch(tx, &sql, &id)?.ok_or(EngineError::NotFound)?;
                if expected_version.is_some_and(|v| v != current.version) {
                    return Err(EngineError::VersionMismatch {
                        current: current.version,
                    }
                    .into());
                }
                let fields = apply_change(&current.fields, change);
                replace(tx, &table, &sql, current, fields, now)
            })
        })
        .await
    }

    async fn delete(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        id: &RecordId,
        expected_version: Option<i64>,
    ) -> EngineResult<()> {
        let (scope, collection, id) = (scope.clone(), collection.clone(), id.clone());
        self.blocking(move |inner| {
            bulkhead_engine::require_write(&scope)?;
            let db = inner.scoped_db(&scope)?;
            db.write_grouped(move |tx| {
                let table = table_of(&scope, &collection);
                let sql = RecordSql::new(&table, scope.storage_key().as_str(), &collection);
                sql::fence(tx, &table, collection.version)?;
                if let Some(expected) = expected_version {
                    let current = fetch(tx, &sql, &id)?.ok_or(EngineError::NotFound)?;
                    if current.version != expected {
                        return Err(EngineError::VersionMismatch {
                            current: current.version,
                        }
                        .into());
                    }
                }
                remove(tx, &sql, &id)
            })
        })
        .await
    }

    async fn list(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        query: &ListQuery,
    ) -> EngineResult<Vec<Hit>> {
        let (scope, collection, query) = (scope.clone(), collection.clone(), query.clone());
        self.blocking(move |inner| {
            let db = inner.scoped_db(&scope)?;
            let table = table_of(&scope, &collection);
            let sql = RecordSql::new(&table, scope.storage_key().as_str(), &collection);
            let statement = sql.list(&query)?;
            db.read_statement(Some(&query.budget), |tx| {
                let mut stmt = tx.prepare_cached(&statement.sql)?;
                let mut rows = stmt.query(params_from_iter(statement.params.iter()))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(sql.decode_hit(row, &statement, &query)?);
                }
                Ok(out)
            })
        })
        .await
    }

    async fn aggregate(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        query: &AggregateQuery,
    ) -> EngineResult<Vec<GroupRow>> {
        let (scope, collection, query) = (scope.clone(), collection.clone(), query.clone());
        self.blocking(move |inner| {
            let db = inner.scoped_db(&scope)?;
            let table = table_of(&scope, &collection);
            let sql = RecordSql::new(&table, scope.storage_key().as_str(), &collection);
            let (text, params) = sql.aggregate(&query);
            db.read_within(Some(&query.budget), |tx| {
                let mut stmt = tx.prepare_cached(&text)?;
                let mut rows = stmt.query(params_from_iter(params.iter()))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(sql.decode_group(row, &query.plan)?);
                }
                Ok(out)
            })
        })
        .await
    }

    async fn bulk(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        ops: Vec<BulkOp>,
    ) -> EngineResult<Vec<Result<BulkOutcome, EngineError>>> {
        let (scope, collection) = (scope.clone(), collection.clone());
        self.blocking(move |inner| {
            bulkhead_engine::require_write(&scope)?;
            let db = inner.scoped_db(&scope)?;
            let table = table_of(&scope, &collection);
            let sql = RecordSql::new(&table, scope.storage_key().as_str(), &collection);
            let now = inner.clock.now();
            let insert_text = sql.insert_sql();
            db.write(|tx| {
                sql::fence(tx, &table, collection.version)?;
                let mut seq = if sql.search { next_seq(tx, &table)? } else { 0 };
                let mut out = Vec::with_capacity(ops.len());
                for op in ops {
                    // A failed statement rolls back only itself in SQLite; the transaction
                    // and the other operations go on.
                    let result = match op {
                        BulkOp::Create(record) => {
                            create(tx, &sql, &insert_text, record, now, &mut seq)
                                .map(BulkOutcome::Created)
                        }
                        BulkOp::Upsert(record) => match fetch(tx, &sql, &record.id)? {
                            Some(current) => replace(tx, &table, &sql, current, record.fields, now)
                                .map(BulkOutcome::Updated),
                            None => create(tx, &sql, &insert_text, record, now, &mut seq)
                                .map(BulkOutcome::Created),
                        },
                        BulkOp::Delete(id) => {
                            remove(tx, &sql, &id).map(|()| BulkOutcome::Deleted(id))
                        }
                        BulkOp::Retire { id, version } => match fetch(tx, &sql, &id)? {
                            None => Err(EngineError::NotFound.into()),
                            Some(current) if current.version != version => {
                                Err(EngineError::VersionMismatch {
                                    current: current.version,
                                }
                                .into())
                            }
                            Some(_) => remove(tx, &sql, &id).map(|()| BulkOutcome::Deleted(id)),
                        },
                    };
                    match result {
                        Ok(outcome) => out.push(Ok(outcome)),
                        Err(err) => match EngineError::from(err) {
                            e @ (EngineError::NotFound
                            | EngineError::DuplicateId
                            | EngineError::VersionMismatch { .. }
                            | EngineError::UniqueViolation(_)) => out.push(Err(e)),
                            other => return Err(other.into()),
                        },
                    }
                }
                Ok(out)
            })
        })
        .await
    }

    fn stats(&self) -> EngineStats {
        EngineStats {
            open_handles: self.inner.shared.lock().len() + self.inner.silos.lock().len(),
            search_merges: self.search_upkeep_merges(),
        }
    }

    fn storage_name(&self, target: &PlacementRef) -> String {
        inventory::name_of(
            &self.inner.config.dir,
            target.isolation,
            &target.namespace,
            target.key.as_str(),
        )
    }

    async fn inventory(&self) -> EngineResult<Vec<StoredPlacement>> {
        self.blocking(|inner| inner.inventory()).await
    }

    async fn measure(
        &self,
        placements: &[PlacementRef],
        collections: &[Collection],
    ) -> EngineResult<Vec<bulkhead_engine::Measured>> {
        self.measure_paced(placements, collections, Arc::new(bulkhead_engine::NoRest))
            .await
    }

    async fn measure_paced(
        &self,
        placements: &[PlacementRef],
        collections: &[Collection],
        rest: Arc<dyn bulkhead_engine::Rest>,
    ) -> EngineResult<Vec<bulkhead_engine::Measured>> {
        let (placements, collections) = (placements.to_vec(), collections.to_vec());
        self.blocking(move |inner| inner.measure(&placements, &collections, rest.as_ref()))
            .await
    }

    async fn snapshot(
        &self,
        dest: &std::path::Path,
        progress: Arc<bulkhead_engine::SnapshotProgress>,
    ) -> EngineResult<Option<Vec<bulkhead_engine::SnapshotFile>>> {
        let dest = dest.to_owned();
        self.blocking(move |inner| inner.snapshot(&dest, &progress))
            .await
            .map(Some)
    }

    async fn shutdown(&self) {
        let result = self
            .blocking(|inner| {
                inner
                    .stopping
                    .store(true, std::sync::atomic::Ordering::Release);
                let shared: Vec<_> = inner.shared.lock().drain().map(|(_, db)| db).collect();
                let silos: Vec<_> = {
                    let mut lru = inner.silos.lock();
                    let mut all = Vec::new();
                    while let Some((_, db)) = lru.pop_lru() {
                        all.push(db);
                    }
                    all
                };
                for db in shared.iter().chain(silos.iter()) {
                    if let Err(e) = db.checkpoint() {
                        tracing::warn!(path = %db.path().display(), error = %e, "checkpoint at shutdown failed");
                    }
                }
                inner.save_memo(std::time::Duration::ZERO);
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "engine shutdown failed");
        }
    }
}
