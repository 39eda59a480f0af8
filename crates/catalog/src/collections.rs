//! Collections and their rollout to every placement.
//!
//! A global schema generation counts accepted changes; each placement records the generation
//! its tables match. A change is committed to the catalog, rolled out to every placement that
//! is behind (pool namespaces once, bridge and silo tenants each), and only then published to
//! the in-memory definitions requests use — changes are additive, so requests using the old
//! definition keep working on the new tables meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bulkhead_api::{CollectionView, Page};
use bulkhead_core::access::{self, ControlAction};
use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::model::{Isolation, Placement};
use bulkhead_core::schema::{Collection, CollectionSpec, plan_change};
use bulkhead_core::{CollectionName, DomainName, TenantId};
use bulkhead_engine::PlacementRef;

use crate::rows::collections::{generation, read_collections};
use crate::store::{malformed, params};
use crate::{Catalog, Ctx};

fn view(c: &Collection) -> CollectionView {
    CollectionView {
        name: c.name.clone(),
        version: c.version,
        fields: c.fields.clone(),
    }
}

impl Catalog {
    pub(crate) fn collections_snapshot(&self) -> Arc<BTreeMap<CollectionName, Arc<Collection>>> {
        self.inner().collections.get()
    }

    /// Re-reads the collections. Not stored when a change from another server was applied
    /// meanwhile: the reload that change triggers is newer.
    pub(crate) async fn load_collections(&self) -> Result<(), Error> {
        let ticket = self.cache_ticket();
        let all = self
            .blocking(|store| store.read(|tx| read_collections(tx)))
            .await?;
        let map = all
            .into_iter()
            .map(|c| (c.name.clone(), Arc::new(c)))
            .collect();
        self.inner().collections.fill(ticket, Arc::new(map));
        Ok(())
    }

    /// The collection a data request names; unknown collections are 404.
    pub(crate) fn collection(&self, name: &CollectionName) -> Result<Arc<Collection>, Error> {
        self.inner()
            .collections
            .get()
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
    pub async fn put_collection(
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
                crate::rows::audit::insert(tx, &event)
            })
        })
        .await?;
        let outcome = self.rollout_locked().await;
        self.load_collections().await?;
        self.announce_collections().await?;
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
        Ok(view(&*self.collection(name)?))
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
                         WHERE p.schema_version < ?1 AND t.status NOT IN ('provisioning', 'deleting') ORDER BY t.id",
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
        self.blocking(move |store| {
            store.write(|tx| {
                for tenant in &updated {
                    tx.execute(
                        "UPDATE placements SET schema_version = ?2 WHERE tenant_id = ?1 AND schema_version < ?2",
                        params![tenant.as_str(), target_generation],
                    )?;
                }
                Ok(())
            })
        })
        .await?;
        if failed > 0 {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "rollout_incomplete",
                format!(
                    "the change is saved but {failed} placements could not be updated yet; it is retried at the next change or restart"
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
