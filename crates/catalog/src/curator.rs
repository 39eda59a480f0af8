//! The curator: the narrow door through which the retention job (crate `bulkhead-cold`)
//! reaches one tenant life's records. It reads a page of aged records, removes the ones it
//! archived (each only while it is still at the version archived), tells which of a set of
//! records are hot, and brings archived records back — always for exactly one life: a call
//! for a life that has ended (the tenant deleted, maybe created again under the same id)
//! fails with `409 tenant_life_ended` and touches nothing.
//!
//! Writes go through the tenant's write gate like any write, and are refused with `409
//! tenant_busy` while the tenant is not `active` or its placement is not open (a move, a
//! suspension): the job tries again at its next pass.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_core::access::{self, ControlAction, DataAction, TenantRoute};
use bulkhead_core::error::Error;
use bulkhead_core::model::{Retention, TenantStatus, WriteState};
use bulkhead_core::record::Record;
use bulkhead_core::schema::Collection;
use bulkhead_core::time::Timestamp;
use bulkhead_core::{CollectionName, Incarnation, RecordId, TenantId};
use bulkhead_engine::{BulkOp, BulkOutcome, EngineError, Keyset, ListQuery, QueryBudget};

use crate::rows::audit::AuditEvent;
use crate::store::{StoreResult, Tx};
use crate::{Catalog, Ctx};

/// One life of a tenant: the tenant id and the incarnation it was created as.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Life {
    pub tenant: TenantId,
    pub incarnation: Incarnation,
}

/// A life whose tier keeps some collections hot for a limited time.
#[derive(Debug, Clone)]
pub struct Retained {
    pub life: Life,
    /// `active`, or `moving` / `suspended` (left for a later pass).
    pub status: TenantStatus,
    pub rules: BTreeMap<CollectionName, Retention>,
}

/// What the retention job may do; see the module documentation.
#[derive(Clone)]
pub struct Curator {
    catalog: Catalog,
}

/// Time one page read or one removal may take.
const QUERY_TIME: Duration = Duration::from_secs(120);
/// How often a write refused by the schema fence runs again with the storage's definition.
const SCHEMA_RETRIES: u32 = 3;

impl Curator {
    pub(crate) fn new(catalog: Catalog) -> Self {
        Curator { catalog }
    }

    /// Where cold archives live, when the server keeps any.
    pub fn cold_dir(&self) -> Option<PathBuf> {
        self.catalog.inner().options.cold_dir.clone()
    }

    pub fn now(&self) -> Timestamp {
        self.catalog.inner().clock.now()
    }

    /// Checks that `ctx` may perform `action` (on `tenant`, when it names one); a refusal is
    /// audited as `op`.
    pub fn authorize(
        &self,
        ctx: &Ctx,
        action: ControlAction,
        op: &str,
        tenant: Option<&TenantId>,
    ) -> Result<(), Error> {
        let target = tenant.map_or("retention", |t| t.as_str());
        self.catalog.authorize(ctx, action, op, target, tenant)
    }

    /// Records `action` on `life` in the audit log: by the caller, or by the job itself.
    pub async fn audit(
        &self,
        ctx: Option<&Ctx>,
        action: &str,
        life: &Life,
        detail: serde_json::Value,
    ) -> Result<(), Error> {
        let event = AuditEvent {
            at: self.now(),
            actor: ctx
                .map_or("system:retention", |c| c.principal.actor())
                .to_owned(),
            action: action.to_owned(),
            target: life.tenant.to_string(),
            tenant: Some(life.tenant.clone()),
            outcome: "ok".into(),
            request_id: ctx.map(|c| c.request_id.clone()).unwrap_or_default(),
            detail: Some(detail.to_string()),
        };
        self.catalog
            .blocking(move |store| store.write(|tx| crate::rows::audit::insert(tx, &event)))
            .await
    }

    /// The backup fence: hold it while removing archive files, so an online backup that is
    /// copying them finds them all.
    pub async fn removal_fence(&self) -> tokio::sync::OwnedRwLockReadGuard<()> {
        self.catalog.inner().backups.removal().await
    }

    /// Runs `f` in one write transaction of the catalog (the job's ledger lives there).
    pub async fn ledger<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Tx) -> StoreResult<T> + Send + 'static,
    ) -> Result<T, Error> {
        self.catalog.blocking(move |store| store.write(f)).await
    }

    /// Every tenant whose tier sets a retention, with its rules: those `active`, and those
    /// `moving` or `suspended`, whose turn comes later.
    pub async fn retained(&self) -> Result<Vec<Retained>, Error> {
        self.catalog
            .blocking(|store| {
                store.read(|tx| {
                    let mut tiers = BTreeMap::new();
                    for row in tx.query("SELECT name, spec FROM tiers", &[])? {
                        let spec = crate::rows::tiers::tier_spec_from(&row.get::<String>(1)?)?;
                        if !spec.retention.is_empty() {
                            tiers.insert(row.get::<String>(0)?, spec.retention);
                        }
                    }
                    let mut out = Vec::new();
                    for (tier, rules) in tiers {
                        let rows = tx.query(
                            "SELECT id FROM tenants WHERE tier = ?1 \
                             AND status IN ('active', 'moving', 'suspended') ORDER BY id",
                            crate::store::params![tier.as_str()],
                        )?;
                        for row in rows {
                            let id = TenantId::parse(&row.get::<String>(0)?)
                                .map_err(crate::store::malformed)?;
                            if let Some((row, placement)) =
                                crate::rows::tenants::read_tenant(tx, &id)?
                            {
                                out.push(Retained {
                                    life: Life {
                                        tenant: id,
                                        incarnation: placement.incarnation,
                                    },
                                    status: row.status,
                                    rules: rules.clone(),
                                });
                            }
                        }
                    }
                    Ok(out)
                })
            })
            .await
    }

    /// The current life of `tenant`, when it exists (in any status).
    pub async fn life_of(&self, tenant: &TenantId) -> Result<Option<(Life, TenantStatus)>, Error> {
        let id = tenant.clone();
        self.catalog
            .blocking(move |store| {
                store.read(|tx| {
                    Ok(
                        crate::rows::tenants::read_tenant(tx, &id)?.map(|(row, placement)| {
                            (
                                Life {
                                    tenant: id.clone(),
                                    incarnation: placement.incarnation,
                                },
                                row.status,
                            )
                        }),
                    )
                })
            })
            .await
    }

    /// The definition the life's placement serves `collection` with.
    pub async fn definition(
        &self,
        life: &Life,
        collection: &CollectionName,
    ) -> Result<Arc<Collection>, Error> {
        let route = self.route(life).await?;
        self.catalog
            .definition(collection, route.placement.schema_version, None)
    }

    /// The record of `collection` matching `filter` that comes first in `sort` order (the
    /// query language's `sort=`), all fields.
    pub async fn first(
        &self,
        life: &Life,
        collection: &CollectionName,
        filter: &str,
        sort: &str,
    ) -> Result<Option<Record>, Error> {
        let reader = self.reader(life, collection).await?;
        let sort = bulkhead_core::query::sort::parse_sort(sort, &reader.definition)?;
        let hits = reader.list(filter, sort, None, 1).await?;
        Ok(hits.into_iter().next())
    }

    /// Up to `limit` records of `collection` matching `filter` (the query language, checked
    /// against the collection), after `after` in id order, all fields.
    pub async fn page(
        &self,
        life: &Life,
        collection: &CollectionName,
        filter: &str,
        after: Option<RecordId>,
        limit: u32,
    ) -> Result<Vec<Record>, Error> {
        let reader = self.reader(life, collection).await?;
        reader.list(filter, Vec::new(), after, limit).await
    }

    /// The version and last update of those of `ids` that are in the hot store.
    pub async fn hot(
        &self,
        life: &Life,
        collection: &CollectionName,
        ids: &[RecordId],
    ) -> Result<HashMap<RecordId, (i64, Timestamp)>, Error> {
        let reader = self.reader(life, collection).await?;
        let mut out = HashMap::new();
        for id in ids {
            let found = reader
                .engine
                .get(&reader.scope, &reader.definition, id)
                .await?;
            if let Some(record) = found {
                out.insert(id.clone(), (record.version, record.updated_at));
            }
        }
        Ok(out)
    }

    /// What reading `collection` of `life` takes: its placement's definition, a read scope
    /// and the engine.
    async fn reader(&self, life: &Life, collection: &CollectionName) -> Result<Reader, Error> {
        let route = self.route(life).await?;
        Ok(Reader {
            definition: self.catalog.definition(
                collection,
                route.placement.schema_version,
                None,
            )?,
            scope: self.scope(&route, DataAction::Read),
            engine: self.catalog.engine(&route.placement.domain)?,
        })
    }

    /// Removes each record of `records` that is still at the version given, in one
    /// transaction; returns the ids removed. A record written since (another version) or
    /// deleted since stays as it is.
    pub async fn retire(
        &self,
        life: &Life,
        collection: &CollectionName,
        records: &[(RecordId, i64)],
    ) -> Result<Vec<RecordId>, Error> {
        let ops = || {
            records
                .iter()
                .map(|(id, version)| BulkOp::Retire {
                    id: id.clone(),
                    version: *version,
                })
                .collect::<Vec<_>>()
        };
        let outcomes = self.write(life, collection, ops).await?;
        let mut removed = Vec::new();
        for outcome in outcomes {
            match outcome {
                Ok(BulkOutcome::Deleted(id)) => removed.push(id),
                Ok(_) | Err(EngineError::NotFound | EngineError::VersionMismatch { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(removed)
    }

    /// Writes `records` back exactly as they were archived (read with definition `older`),
    /// each only where no record with its id is hot (a record written since under the same
    /// id wins); returns how many were written. Fields the collection gained since take their
    /// defaults, as rows already stored did; fields it lost are left out.
    pub async fn bring_back(
        &self,
        life: &Life,
        collection: &CollectionName,
        older: &Collection,
        records: Vec<Record>,
    ) -> Result<usize, Error> {
        let ids: Vec<RecordId> = records.iter().map(|r| r.id.clone()).collect();
        let route = self.route(life).await?;
        let mut learned = None;
        for attempt in 1..=SCHEMA_RETRIES {
            let (ticket, route) = self.enter(life).await?;
            let definition =
                self.catalog
                    .definition(collection, route.placement.schema_version, learned)?;
            let engine = self.catalog.engine(&route.placement.domain)?;
            let read = self.scope(&route, DataAction::Read);
            let mut absent = Vec::new();
            for record in &records {
                if engine.get(&read, &definition, &record.id).await?.is_none() {
                    let mut record = record.clone();
                    record.upgrade(older, &definition);
                    record
                        .fields
                        .retain(|name, _| definition.fields.contains_key(name));
                    absent.push(record);
                }
            }
            let count = absent.len();
            ticket.before(collection, ids.iter()).await?;
            let written = engine
                .restore(&self.scope(&route, DataAction::Write), &definition, absent)
                .await;
            ticket.after(collection, ids.iter()).await;
            match written {
                Ok(()) => return Ok(count),
                Err(EngineError::SchemaMoved { stored }) if attempt < SCHEMA_RETRIES => {
                    learned = Some(stored);
                }
                Err(e) => return Err(e.into()),
            }
        }
        drop(route);
        Err(Error::internal())
    }

    /// Runs one bulk call on the life's placement through its write gate, again with the
    /// storage's definition when the schema fence moved meanwhile.
    async fn write(
        &self,
        life: &Life,
        collection: &CollectionName,
        ops: impl Fn() -> Vec<BulkOp>,
    ) -> Result<Vec<Result<BulkOutcome, EngineError>>, Error> {
        let mut learned = None;
        for attempt in 1..=SCHEMA_RETRIES {
            let (ticket, route) = self.enter(life).await?;
            let definition =
                self.catalog
                    .definition(collection, route.placement.schema_version, learned)?;
            let batch = ops();
            ticket
                .before(collection, batch.iter().map(BulkOp::id))
                .await?;
            let ids: Vec<RecordId> = batch.iter().map(|op| op.id().clone()).collect();
            let result = self
                .catalog
                .engine(&route.placement.domain)?
                .bulk(&self.scope(&route, DataAction::Write), &definition, batch)
                .await;
            ticket.after(collection, ids.iter()).await;
            match result {
                Ok(outcomes) => return Ok(outcomes),
                Err(EngineError::SchemaMoved { stored }) if attempt < SCHEMA_RETRIES => {
                    learned = Some(stored);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::internal())
    }

    /// Enters the tenant's write gate and resolves its route, which must be `life`'s and
    /// writable right now.
    async fn enter(&self, life: &Life) -> Result<(crate::moves::WriteTicket, TenantRoute), Error> {
        self.catalog.check_lease()?;
        let ticket = self
            .catalog
            .inner()
            .moves
            .gates
            .enter(&life.tenant, Duration::ZERO)
            .await
            .map_err(|_| busy(life))?;
        let route = self.route(life).await?;
        if route.status != TenantStatus::Active || route.placement.write_state != WriteState::Open {
            return Err(busy(life));
        }
        if self.catalog.is_shared() && !ticket.tracked_here() {
            // Another server may be moving the tenant: its journal is not ours to join.
            let fresh = self.fresh_route(life).await?;
            if fresh.status != TenantStatus::Active
                || fresh.placement.write_state != WriteState::Open
                || fresh.placement.epoch != route.placement.epoch
            {
                return Err(busy(life));
            }
        }
        Ok((ticket, TenantRoute::clone(&route)))
    }

    /// The life's route (cached), or `409 tenant_life_ended` when the life has ended.
    async fn route(&self, life: &Life) -> Result<std::sync::Arc<TenantRoute>, Error> {
        let route = match self.catalog.route(&life.tenant).await {
            Ok(route) => route,
            Err(e) if e.kind == bulkhead_core::ErrorKind::NotFound => return Err(ended(life)),
            Err(e) => return Err(e),
        };
        if route.placement.incarnation != life.incarnation {
            return Err(ended(life));
        }
        Ok(route)
    }

    /// The life's route read from the catalog now.
    async fn fresh_route(&self, life: &Life) -> Result<std::sync::Arc<TenantRoute>, Error> {
        self.catalog.inner().routes.forget(&life.tenant);
        self.route(life).await
    }

    fn scope(&self, route: &TenantRoute, action: DataAction) -> access::TenantScope {
        self.catalog
            .inner()
            .retention_authority
            .scope(route, action)
    }
}

/// One life's collection, open for reading.
struct Reader {
    definition: Arc<Collection>,
    scope: access::TenantScope,
    engine: Arc<dyn bulkhead_engine::Engine>,
}

impl Reader {
    /// Up to `limit` records matching `filter`, in `sort` order (id order when empty).
    async fn list(
        &self,
        filter: &str,
        sort: Vec<bulkhead_core::query::SortKey>,
        after: Option<RecordId>,
        limit: u32,
    ) -> Result<Vec<Record>, Error> {
        let query = ListQuery {
            filter: bulkhead_core::query::filter(filter, &self.definition)?,
            search: None,
            sort,
            after: after.map(|id| Keyset {
                values: Vec::new(),
                score: None,
                id,
            }),
            limit,
            fields: None,
            budget: QueryBudget::unmetered(QUERY_TIME),
        };
        let hits = self
            .engine
            .list(&self.scope, &self.definition, &query)
            .await?;
        Ok(hits.into_iter().map(|hit| hit.record).collect())
    }
}

/// The access authority, for the retention job's scopes only.
pub(crate) struct RetentionAuthority(access::AccessAuthority);

impl RetentionAuthority {
    pub(crate) fn new(authority: access::AccessAuthority) -> Self {
        RetentionAuthority(authority)
    }

    fn scope(&self, route: &TenantRoute, action: DataAction) -> access::TenantScope {
        access::retention_scope(&self.0, route, action)
    }
}

impl Curator {
    /// Removes the cold archive of `incarnation` of `tenant` from disk (a deletion's purge).
    pub(crate) async fn remove_cold(
        &self,
        tenant: &TenantId,
        incarnation: &Incarnation,
    ) -> Result<(), Error> {
        let Some(root) = self.cold_dir() else {
            return Ok(());
        };
        let _removal = self.removal_fence().await;
        let life = Life {
            tenant: tenant.clone(),
            incarnation: incarnation.clone(),
        };
        match std::fs::remove_dir_all(life_dir(&root, &life)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(
                    Error::internal().with_message(format!("removing the cold archive: {e}"))
                );
            }
        }
        // The tenant's directory too, when no other life has one in it (its name is the id).
        let _ = std::fs::remove_dir(root.join(tenant.as_str()));
        Ok(())
    }
}

/// The directory of one life's cold archive under `root`: `<tenant>/<incarnation>`. Tenant
/// ids and incarnations are slugs, so no life's directory is inside another's.
pub fn life_dir(root: &std::path::Path, life: &Life) -> PathBuf {
    root.join(life.tenant.as_str())
        .join(life.incarnation.as_str())
}

/// Drops the ledger of one life's cold archive (a deletion's purge, with its files).
pub(crate) fn forget_cold(
    tx: &dyn Tx,
    tenant: &TenantId,
    incarnation: &Incarnation,
) -> StoreResult<()> {
    for table in ["cold_files", "cold_holds"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE tenant_id = ?1 AND incarnation = ?2"),
            crate::store::params![tenant.as_str(), incarnation.as_str()],
        )?;
    }
    Ok(())
}

/// `409 tenant_life_ended`: the life a job worked for is over.
fn ended(life: &Life) -> Error {
    crate::rows::tenants::life_ended(&life.tenant, &life.incarnation)
}

fn busy(life: &Life) -> Error {
    Error::conflict(
        "tenant_busy",
        format!(
            "tenant '{}' is being moved, suspended or written under a freeze; try again later",
            life.tenant
        ),
    )
}
