//! Moving records between a tenant's source and target placements, through the engine
//! contract only (so any engine can move to any other): a keyset copy by id, a sync of given
//! ids (the catch-up), a full comparison of both sides, and exact counts.
//!
//! Records travel with their system fields (`Engine::restore`), so a moved record keeps its
//! id, timestamps and version, and a copied record compares equal to its source.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bulkhead_core::RecordId;
use bulkhead_core::access::TenantScope;
use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::query::{CmpOp, Column, Operand, Predicate, SortKey, SystemField};
use bulkhead_core::record::{FieldValue, Record};
use bulkhead_core::schema::Collection;
use bulkhead_engine::{BulkOp, Engine, EngineError, Keyset, ListQuery, PlacementRef, QueryBudget};

use crate::Catalog;

use super::pace::Pacer;
use crate::background::Lane;

/// Ids fetched per query when syncing or re-checking given records.
const ID_BATCH: usize = 500;

/// The budget of the executor's own queries: it reads whole tenants page by page, so the
/// per-request limits meant for callers do not apply.
/// The move's own scans are not metered per row (a tier's limits are for its queries).
fn budget() -> QueryBudget {
    QueryBudget::unmetered(Duration::from_secs(600))
}

/// The two placements of a moving tenant.
#[derive(Clone)]
pub(crate) struct Sides {
    pub source_engine: Arc<dyn Engine>,
    pub source: TenantScope,
    pub target_engine: Arc<dyn Engine>,
    pub target: TenantScope,
    /// The definitions the move reads and writes with, fixed for the whole move: those of
    /// the source placement's generation when the target was provisioned. Rollouts leave a
    /// moving tenant's placement alone, and the target is brought to the newest definitions
    /// only in the freeze, after the last sync and the checks.
    pub defs: Arc<Vec<Arc<Collection>>>,
}

/// The highest record id in the collection now, if it holds any: where the copy stops.
/// Records written after tracking began are journaled and reach the target in the catch-up,
/// so the copy need not chase writers that keep adding ids past its cursor (without the
/// bound, a writer creating ids above the cursor faster than a page is copied kept the move
/// in `copying` for good).
pub(crate) async fn last_id(
    engine: &dyn Engine,
    scope: &TenantScope,
    collection: &Collection,
) -> Result<Option<RecordId>, Error> {
    let query = ListQuery {
        sort: vec![SortKey {
            column: Column::System(SystemField::Id),
            descending: true,
        }],
        limit: 1,
        budget: budget(),
        ..Default::default()
    };
    let hits = engine.list(scope, collection, &query).await?;
    Ok(hits.into_iter().next().map(|h| h.record.id))
}

/// One page of records in id order, after `after` and up to `upto` if given.
pub(crate) async fn page(
    engine: &dyn Engine,
    scope: &TenantScope,
    collection: &Collection,
    after: Option<&RecordId>,
    upto: Option<&RecordId>,
    limit: u32,
) -> Result<Vec<Record>, Error> {
    let query = ListQuery {
        filter: upto.map(|upto| Predicate::Compare {
            operand: Operand::Column(Column::System(SystemField::Id)),
            op: CmpOp::Le,
            value: FieldValue::Text(upto.as_str().to_owned()),
        }),
        after: after.map(|id| Keyset {
            values: Vec::new(),
            score: None,
            id: id.clone(),
        }),
        limit,
        budget: budget(),
        ..Default::default()
    };
    let hits = engine.list(scope, collection, &query).await?;
    Ok(hits.into_iter().map(|h| h.record).collect())
}

/// The records among `ids` that exist, by id.
async fn fetch(
    engine: &dyn Engine,
    scope: &TenantScope,
    collection: &Collection,
    ids: &[RecordId],
) -> Result<HashMap<RecordId, Record>, Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let query = ListQuery {
        filter: Some(Predicate::In {
            operand: Operand::Column(Column::System(SystemField::Id)),
            values: ids
                .iter()
                .map(|id| FieldValue::Text(id.as_str().to_owned()))
                .collect(),
        }),
        limit: u32::try_from(ids.len()).unwrap_or(u32::MAX),
        budget: budget(),
        ..Default::default()
    };
    let hits = engine.list(scope, collection, &query).await?;
    Ok(hits
        .into_iter()
        .map(|h| (h.record.id.clone(), h.record))
        .collect())
}

/// Refuses to copy records holding a NUL character (stored before NUL was refused on every
/// engine): no engine but the embedded one stores it, so the move stops here, naming them,
/// and rolls back with the source untouched.
pub(crate) fn refuse_unmovable(records: &[bulkhead_core::record::Record]) -> Result<(), Error> {
    let bad: Vec<&str> = records
        .iter()
        .filter(|r| bulkhead_core::record::holds_nul(&r.fields))
        .map(|r| r.id.as_str())
        .take(10)
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(Error::conflict(
        "unmovable_records",
        format!(
            "records {} hold the NUL character (\\u0000), which is not stored on every engine; \
             change or delete them, then move again",
            bad.join(", ")
        ),
    ))
}

/// How often a write to the target follows its table to a newer definition before it gives up
/// (each time, a change was rolled out to the target between two tries).
const SCHEMA_TRIES: usize = 3;

/// What the move writes into the target.
enum TargetWrite {
    Restore(Vec<Record>),
    Delete(Vec<RecordId>),
}

/// Writes into the target with the move's definition `c` of a collection, following the
/// target's table where it stands elsewhere: behind (a target an earlier attempt of the move
/// provisioned) it is brought to `c`; ahead (a shared target, such as a pool, that a rollout
/// changed during the move) the records take that newer definition, with the defaults of the
/// fields it added, as the rows already in the table got them.
async fn write_target(
    catalog: &Catalog,
    sides: &Sides,
    c: &Collection,
    mut write: TargetWrite,
) -> Result<(), Error> {
    let mut def = Arc::new(c.clone());
    for _ in 0..SCHEMA_TRIES {
        let tried = match &write {
            TargetWrite::Restore(records) => sides
                .target_engine
                .restore(&sides.target, &def, records.clone())
                .await
                .map(drop),
            TargetWrite::Delete(ids) => {
                // A delete that finds nothing fails alone; the record is gone either way.
                let ops = ids.iter().cloned().map(BulkOp::Delete).collect();
                sides
                    .target_engine
                    .bulk(&sides.target, &def, ops)
                    .await
                    .map(drop)
            }
        };
        match tried {
            Err(EngineError::SchemaBehind { stored }) => {
                tracing::info!(collection = %def.name, stored, "the target is behind the move's definition; updating it");
                let target = PlacementRef::of(sides.target.tenant(), sides.target.placement());
                sides.target_engine.ensure_collection(&target, &def).await?;
            }
            Err(EngineError::SchemaMoved { stored }) => {
                tracing::info!(collection = %def.name, stored, "the target's table is newer than the move's definition; writing with it");
                let newer = catalog.definition(&def.name, 0, Some(stored))?;
                if let TargetWrite::Restore(records) = &mut write {
                    for record in records.iter_mut() {
                        record.upgrade(&def, &newer);
                    }
                }
                def = newer;
            }
            other => return Ok(other?),
        }
    }
    Err(Error::new(
        ErrorKind::Unavailable,
        "schema_rolling_out",
        format!(
            "the target's table of '{}' kept changing while the move wrote to it",
            c.name
        ),
    ))
}

/// Restores `records` (from the source) into the target; see [`write_target`].
pub(crate) async fn restore(
    catalog: &Catalog,
    sides: &Sides,
    c: &Collection,
    records: Vec<Record>,
) -> Result<(), Error> {
    refuse_unmovable(&records)?;
    write_target(catalog, sides, c, TargetWrite::Restore(records)).await
}

/// Makes the target hold exactly what the source holds for `ids` (copies the changed ones,
/// deletes the ones gone from the source). Returns how many records differed.
pub(crate) async fn sync_ids(
    catalog: &Catalog,
    sides: &Sides,
    collection: &Collection,
    ids: &[RecordId],
) -> Result<usize, Error> {
    let mut changed = 0;
    for batch in ids.chunks(ID_BATCH) {
        let source = fetch(
            sides.source_engine.as_ref(),
            &sides.source,
            collection,
            batch,
        )
        .await?;
        let target = fetch(
            sides.target_engine.as_ref(),
            &sides.target,
            collection,
            batch,
        )
        .await?;
        let mut copy = Vec::new();
        let mut gone = Vec::new();
        for id in batch {
            match (source.get(id), target.get(id)) {
                (Some(s), t) if t != Some(s) => copy.push(s.clone()),
                (None, Some(_)) => gone.push(id.clone()),
                _ => {}
            }
        }
        changed += copy.len() + gone.len();
        if !copy.is_empty() {
            restore(catalog, sides, collection, copy).await?;
        }
        if !gone.is_empty() {
            write_target(catalog, sides, collection, TargetWrite::Delete(gone)).await?;
        }
    }
    Ok(changed)
}

/// Ids whose records differ between the sides (including ids on one side only).
pub(crate) async fn differing(
    sides: &Sides,
    collection: &Collection,
    ids: &[RecordId],
) -> Result<Vec<RecordId>, Error> {
    let mut out = Vec::new();
    for batch in ids.chunks(ID_BATCH) {
        let source = fetch(
            sides.source_engine.as_ref(),
            &sides.source,
            collection,
            batch,
        )
        .await?;
        let target = fetch(
            sides.target_engine.as_ref(),
            &sides.target,
            collection,
            batch,
        )
        .await?;
        out.extend(
            batch
                .iter()
                .filter(|id| source.get(*id) != target.get(*id))
                .cloned(),
        );
    }
    Ok(out)
}

/// The exact number of the tenant's records in a collection on one side.
pub(crate) async fn count(
    engine: &dyn Engine,
    scope: &TenantScope,
    collection: &Collection,
) -> Result<u64, Error> {
    Ok(bulkhead_engine::count_records(engine, scope, collection, budget().time).await?)
}

/// A stable hash of a record's whole content, system fields included. Fields are in name
/// order and JSON objects in key order, so equal records hash equal on every engine.
pub(crate) fn record_hash(record: &Record) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    record.id.as_str().hash(&mut h);
    record.created_at.as_micros().hash(&mut h);
    record.updated_at.as_micros().hash(&mut h);
    record.version.hash(&mut h);
    for (name, value) in &record.fields {
        name.as_str().hash(&mut h);
        match value {
            FieldValue::Text(s) => (0u8, s).hash(&mut h),
            FieldValue::Integer(n) => (1u8, n).hash(&mut h),
            FieldValue::Float(f) => (2u8, f.to_bits()).hash(&mut h),
            FieldValue::Boolean(b) => (3u8, b).hash(&mut h),
            FieldValue::Timestamp(t) => (4u8, t.as_micros()).hash(&mut h),
            FieldValue::Json(v) => (5u8, v.to_string()).hash(&mut h),
        }
    }
    h.finish()
}

/// What a full comparison of one collection found.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub source_rows: u64,
    pub target_rows: u64,
    /// Sum of the record hashes on each side (wrapping): the content checksum.
    pub source_sum: u64,
    pub target_sum: u64,
    pub differing: HashSet<RecordId>,
}

/// Records of one side in id order, a page at a time (each page a bulk step of the lane).
struct Cursor {
    engine: Arc<dyn Engine>,
    scope: TenantScope,
    collection: Arc<Collection>,
    buffer: VecDeque<Record>,
    after: Option<RecordId>,
    done: bool,
    chunk: u32,
}

impl Cursor {
    async fn peek(&mut self, pacer: &Pacer, lane: &Lane) -> Result<Option<&Record>, Error> {
        if self.buffer.is_empty() && !self.done {
            let started = std::time::Instant::now();
            let (engine, scope, collection) = (
                Arc::clone(&self.engine),
                self.scope.clone(),
                Arc::clone(&self.collection),
            );
            let (after, chunk) = (self.after.clone(), self.chunk);
            let page = lane
                .bulk(async move {
                    page(
                        engine.as_ref(),
                        &scope,
                        &collection,
                        after.as_ref(),
                        None,
                        chunk,
                    )
                    .await
                })
                .await?;
            self.done = page.len() < self.chunk as usize;
            self.after = page.last().map(|r| r.id.clone());
            self.buffer.extend(page);
            pacer.rest_after(started.elapsed()).await;
        }
        Ok(self.buffer.front())
    }
}

/// Compares every record of a collection on both sides (a merge of the two id orders).
pub(crate) async fn compare(
    sides: &Sides,
    collection: &Arc<Collection>,
    chunk: u32,
    pacer: &Pacer,
    lane: &Lane,
) -> Result<Comparison, Error> {
    let cursor = |engine: &Arc<dyn Engine>, scope: &TenantScope| Cursor {
        engine: Arc::clone(engine),
        scope: scope.clone(),
        collection: Arc::clone(collection),
        buffer: VecDeque::new(),
        after: None,
        done: false,
        chunk,
    };
    let mut source = cursor(&sides.source_engine, &sides.source);
    let mut target = cursor(&sides.target_engine, &sides.target);
    let mut out = Comparison::default();
    loop {
        let s = source.peek(pacer, lane).await?.map(|r| r.id.clone());
        let t = target.peek(pacer, lane).await?.map(|r| r.id.clone());
        let (take_s, take_t) = match (&s, &t) {
            (None, None) => break,
            (Some(_), None) => (true, false),
            (None, Some(_)) => (false, true),
            (Some(s), Some(t)) => (s <= t, t <= s),
        };
        let sr = if take_s {
            source.buffer.pop_front()
        } else {
            None
        };
        let tr = if take_t {
            target.buffer.pop_front()
        } else {
            None
        };
        if let Some(r) = &sr {
            out.source_rows += 1;
            out.source_sum = out.source_sum.wrapping_add(record_hash(r));
        }
        if let Some(r) = &tr {
            out.target_rows += 1;
            out.target_sum = out.target_sum.wrapping_add(record_hash(r));
        }
        if sr != tr {
            let id = sr.or(tr).map(|r| r.id).expect("one side has a record");
            out.differing.insert(id);
        }
    }
    Ok(out)
}
