//! Collections and their rollout to every placement.
//!
//! A global schema generation counts accepted changes; each placement records the generation
//! its tables match, and every version of every definition is kept with the generation that
//! made it (`collection_versions`). A request is served with the definitions of its
//! placement's generation — never a newer one over older storage. A change is committed,
//! then rolled out to every placement that is behind (pool namespaces once, bridge and silo
//! tenants each); each placement's generation moves only after its storage has the change.
//! The engines' schema fence closes the gap between the two: a write made with the older
//! definition after the storage changed writes nothing and runs again with the newer one
//! (`TenantHandle::fenced`), so no record misses a new column's search index.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bulkhead_api::{CollectionView, Page};
use bulkhead_core::access::{self, ControlAction};
use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::model::{Isolation, Placement};
use bulkhead_core::schema::{Collection, CollectionSpec, plan_change};
use bulkhead_core::{CollectionName, DomainName, TenantId};
use bulkhead_engine::PlacementRef;

use crate::rows::collections::{generation, insert_version, read_collections, read_history};
use crate::store::{malformed, params};
use crate::{Catalog, Ctx};

fn view(c: &Collection) -> CollectionView {
    CollectionView {
        name: c.name.clone(),
        version: c.version,
        fields: c.fields.clone(),
        placements_behind: None,
    }
}

/// The collections' definitions as this server knows them: the latest of each, and every
/// version with the generation that made it (a placement at generation `g` is served with
/// the newest version made at or before `g`).
#[derive(Default)]
pub(crate) struct Definitions {
    latest: Arc<BTreeMap<CollectionName, Arc<Collection>>>,
    history: BTreeMap<CollectionName, Vec<(i64, Arc<Collection>)>>,
}

impl Definitions {
    fn of(latest: Vec<Collection>, history: Vec<(i64, Collection)>) -> Definitions {
        let mut versions: BTreeMap<CollectionName, Vec<(i64, Arc<Collection>)>> = BTreeMap::new();
        for (generation, collection) in history {
            versions
                .entry(collection.name.clone())
                .or_default()
                .push((generation, Arc::new(collection)));
        }
        Definitions {
            latest: Arc::new(
                latest
                    .into_iter()
                    .map(|c| (c.name.clone(), Arc::new(c)))
                    .collect(),
            ),
            history: versions,
        }
    }

    /// The definition of `name` a placement at `generation` has, or version `exactly`.
    fn at(
        &self,
        name: &CollectionName,
        generation: i64,
        exactly: Option<i64>,
    ) -> Option<Arc<Collection>> {
        let versions = self.history.get(name)?;
        match exactly {
            Some(version) => versions
                .iter()
                .find(|(_, c)| c.version == version)
                .map(|(_, c)| Arc::clone(c)),
            None => versions
                .iter()
                .rev()
                .find(|(made, _)| *made <= generation)
                .map(|(_, c)| Arc::clone(c)),
        }
    }
}

/// A request on a collection its tenant's placement does not have yet (the change that added
/// it is still being rolled out there).
pub(crate) fn rolling_out(name: &CollectionName) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "schema_rolling_out",
        format!(
            "collection '{name}' is still being added to this tenant's storage; retry shortly \
             (Retry-After)"
        ),
    )
}

impl Catalog {
    pub(crate) fn collections_snapshot(&self) -> Arc<BTreeMap<CollectionName, Arc<Collection>>> {
        Arc::clone(&self.inner().collections.get().latest)
    }

    /// Every collection a placement at schema `generation` has, with its definition there.
    pub(crate) fn definitions_at(&self, generation: i64) -> Vec<Arc<Collection>> {
        let defs = self.inner().collections.get();
        defs.latest
            .values()
            .filter_map(|latest| {
                if defs.history.contains_key(&latest.name) {
                    defs.at(&latest.name, generation, None)
                } else {
                    Some(Arc::clone(latest))
                }
            })
            .collect()
    }

    /// The definition of `name` to serve a placement at schema `generation` with — or version
    /// `exactly`, when a write learned from the storage that its table is there (the schema
    /// fence). Unknown collections are 404; one the placement does not have yet is 503.
    pub(crate) fn definition(
        &self,
        name: &CollectionName,
        generation: i64,
        exactly: Option<i64>,
    ) -> Result<Arc<Collection>, Error> {
        let latest = self.collection(name)?;
        let defs = self.inner().collections.get();
        match defs.at(name, generation, exactly) {
            Some(found) => Ok(found),
            // A version the storage has but this server has not loaded yet: the newest.
            None if exactly.is_some_and(|v| v <= latest.version) => Ok(latest),
            None if !defs.history.contains_key(name) => Ok(latest),
            None => Err(rolling_out(name)),
        }
    }

    /// Re-reads the collections. Not stored when a change from another server was applied
    /// meanwhile: the reload that change triggers is newer.
    pub(crate) async fn load_collections(&self) -> Result<(), Error> {
        let ticket = self.cache_ticket();
        let (latest, history) = self
            .blocking(|store| store.read(|tx| Ok((read_collections(tx)?, read_history(tx)?))))
            .await?;
        self.inner()
            .collections
            .fill(ticket, Arc::new(Definitions::of(latest, history)));
        Ok(())
    }

    /// The collection a data request names; unknown collections are 404.
    pub(crate) fn collection(&self, name: &CollectionName) -> Result<Arc<Collection>, Error> {
        self.inner()
            .collections
            .get()
            .latest
            .get(name)
            .cloned()
            .ok_or_else(|| {
                Error::not_found(
                    "collection_not_found",
                    format!("collection '{name}' does not exist"),
                )
            })
    }

    /// `PUT /v1/collections/{name}`. Returns the collection and whether it was created.
    ///
    /// The change and its rollout run as their own task: a caller that gives up (a client
    /// gone, the request's timeout) does not stop them half-way.
    pub async fn put_collection(
        &self,
        ctx: &Ctx,
        name: &CollectionName,
        spec: CollectionSpec,
    ) -> Result<(CollectionView, bool), Error> {
        let (catalog, ctx, name) = (self.clone(), ctx.clone(), name.clone());
        tokio::spawn(async move { catalog.change_collection(&ctx, &name, spec).await })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "collection change task failed");
                Error::internal()
            })?
    }

    async fn change_collection(
        &self,
        ctx: &Ctx,
        name: &CollectionName,
        spec: CollectionSpec,
    ) -> Result<(CollectionView, bool), Error> {
        access::authorize_control(&ctx.principal, ControlAction::ManageCollections)
            .map_err(|e| self.denied(ctx, "collection.put", name.as_str(), None, e))?;
        let _schema = self.lock_schema().await?;
        let current = self.collections_snapshot().get(name).cloned();
        let plan = plan_change(name, current.as_deref(), &spec)?;
        if !plan.changed {
            return Ok((view(&plan.collection), false));
        }
        let created = current.is_none();
        let collection = plan.collection;
        let event = self.event(
            ctx,
            "collection.put",
            name.as_str(),
            None,
            serde_json::to_string(&spec).ok(),
        );
        let stored = collection.clone();
        let now = self.inner().clock.now();
        self.blocking(move |store| {
            store.write(|tx| {
                tx.execute(
                    "INSERT INTO collections (name, version, spec, updated_at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (name) DO UPDATE SET version = excluded.version, spec = excluded.spec, updated_at = excluded.updated_at",
                    params![
                        stored.name.as_str(),
                        stored.version,
                        serde_json::to_string(&stored).map_err(malformed)?,
                        now.as_micros()
                    ],
                )?;
                let next = generation(tx)? + 1;
                crate::store::set_meta(tx, "schema_generation", &next.to_string())?;
                insert_version(tx, &stored, next)?;
                crate::rows::audit::insert(tx, &event)
            })
        })
        .await?;
        // Known before any placement has it: each placement is served with the version its
        // generation gives, and a write the fence turned back finds the newer one here.
        self.load_collections().await?;
        let outcome = self.rollout_locked().await;
        self.announce_collections().await?;
        if outcome.is_err() {
            self.retry_rollout_soon();
        }
        outcome?;
        Ok((view(&collection), created))
    }

    /// Collections are application schema shared by all tenants, so tenant credentials may
    /// read them as well as platform credentials with catalog read access.
    fn authorize_schema_read(&self, ctx: &Ctx, action: &str, target: &str) -> Result<(), Error> {
        if ctx.principal.home_tenant().is_some() {
            return Ok(());
        }
        access::authorize_control(&ctx.principal, ControlAction::ReadCatalog)
            .map_err(|e| self.denied(ctx, action, target, None, e))
    }

    pub async fn get_collection(
        &self,
        ctx: &Ctx,
        name: &CollectionName,
    ) -> Result<CollectionView, Error> {
        self.authorize_schema_read(ctx, "collection.get", name.as_str())?;
        let collection = self.collection(name)?;
        let made = self
            .inner()
            .collections
            .get()
            .history
            .get(name)
            .and_then(|versions| versions.last().map(|(generation, _)| *generation));
        let behind = match made {
            Some(generation) => self.placements_behind_of(generation).await?,
            None => 0,
        };
        Ok(CollectionView {
            placements_behind: Some(behind),
            ..view(&collection)
        })
    }

    pub async fn list_collections(&self, ctx: &Ctx) -> Result<Page<CollectionView>, Error> {
        self.authorize_schema_read(ctx, "collection.list", "collections")?;
        Ok(Page {
            items: self
                .collections_snapshot()
                .values()
                .map(|c| view(c))
                .collect(),
            next_cursor: None,
        })
    }

    /// Tells servers sharing the catalog to reload the collections. Sent once the rollout
    /// is done (not with the change itself), so they never use a definition whose tables
    /// do not exist yet.
    async fn announce_collections(&self) -> Result<(), Error> {
        if !self.is_shared() {
            return Ok(());
        }
        self.blocking(|store| store.write(|tx| crate::store::changed(tx, "collections", "*")))
            .await
    }

    /// Brings every placement behind the current schema generation up to date.
    pub(crate) async fn rollout_pending(&self) -> Result<(), Error> {
        let _schema = self.lock_schema().await?;
        let outcome = self.rollout_locked().await;
        self.load_collections().await?;
        self.announce_collections().await?;
        outcome
    }

    /// The rollout itself; the caller holds the schema lock.
    async fn rollout_locked(&self) -> Result<(), Error> {
        let (target_generation, collections, behind) = self
            .blocking(|store| {
                store.read(|tx| {
                    let g = generation(tx)?;
                    let collections = read_collections(tx)?;
                    let ids = tx.query(
                        "SELECT t.id FROM tenants t JOIN placements p ON p.tenant_id = t.id \
                         WHERE p.schema_version < ?1 AND t.status NOT IN ('provisioning', 'deleting') \
                         AND t.id NOT IN (SELECT tenant_id FROM moves WHERE phase NOT IN ('done', 'rolled_back')) ORDER BY t.id",
                        params![g],
                    )?;
                    let mut behind = Vec::new();
                    for id in ids {
                        let id = TenantId::parse(&id.get::<String>(0)?).map_err(|e| malformed(e.message))?;
                        if let Some((_, placement)) = crate::rows::tenants::read_tenant(tx, &id)? {
                            behind.push((id, placement));
                        }
                    }
                    Ok((g, collections, behind))
                })
            })
            .await?;
        let mut done_pools: BTreeSet<(DomainName, String)> = BTreeSet::new();
        let mut updated = Vec::new();
        let mut failed = 0usize;
        for (tenant, placement) in behind {
            let shared_key = (placement.domain.clone(), placement.namespace.clone());
            if placement.isolation == Isolation::Pool && done_pools.contains(&shared_key) {
                updated.push(tenant);
                continue;
            }
            match self.ensure_all(&tenant, &placement, &collections).await {
                Ok(()) => {
                    if placement.isolation == Isolation::Pool {
                        done_pools.insert(shared_key);
                    }
                    updated.push(tenant);
                }
                Err(e) => {
                    failed += 1;
                    tracing::error!(tenant = %tenant, error = %e, "schema rollout failed for placement; will retry");
                }
            }
        }
        let bumped = updated.clone();
        self.blocking(move |store| {
            store.write(|tx| {
                for tenant in &bumped {
                    let moved = tx.execute(
                        "UPDATE placements SET schema_version = ?2 WHERE tenant_id = ?1 AND schema_version < ?2",
                        params![tenant.as_str(), target_generation],
                    )?;
                    // Requests pick definitions by the cached route's generation.
                    if moved > 0 {
                        crate::store::changed(tx, "route", tenant.as_str())?;
                    }
                }
                Ok(())
            })
        })
        .await?;
        for tenant in &updated {
            self.inner().routes.forget(tenant);
        }
        if failed > 0 {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "rollout_incomplete",
                format!(
                    "the change is saved but {failed} placements could not be updated yet; they keep serving with the previous definition and are retried in the background"
                ),
            ));
        }
        Ok(())
    }

    async fn ensure_all(
        &self,
        tenant: &TenantId,
        placement: &Placement,
        collections: &[Collection],
    ) -> Result<(), Error> {
        let engine = self.engine(&placement.domain)?;
        let target = PlacementRef::of(tenant, placement);
        for collection in collections {
            engine.ensure_collection(&target, collection).await?;
        }
        Ok(())
    }
}
