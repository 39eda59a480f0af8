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

use std::collections::BTreeMap;
use std::sync::Arc;

use bulkhead_api::{CollectionView, Page};
use bulkhead_core::access::{self, ControlAction};
use bulkhead_core::error::{Error, ErrorKind};

use bulkhead_core::CollectionName;
use bulkhead_core::schema::{Collection, CollectionSpec, plan_change};

use crate::rows::collections::{generation, insert_version, read_collections, read_history};
use crate::store::{malformed, params};
use crate::{Catalog, Ctx};

fn view(c: &Collection) -> CollectionView {
    CollectionView {
        name: c.name.clone(),
        version: c.version,
        fields: c.fields.clone(),
        placements_behind: None,
        rollout: None,
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
        let rollout = format!("ro{}", uuid::Uuid::now_v7().simple());
        let (rollout_id, actor) = (rollout.clone(), ctx.principal.actor().to_owned());
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
                crate::rows::rollouts::insert(tx, &rollout_id, &stored.name, stored.version, next, &actor, now)?;
                crate::rows::audit::insert(tx, &event)
            })
        })
        .await?;
        // Known before any placement has it: each placement is served with the version its
        // generation gives, and a write the fence turned back finds the newer one here.
        // Other servers may use it at once for the same reason.
        self.load_collections().await?;
        self.announce_collections().await?;
        // The rollout runs in the background (`rollout`); the answer says where it stands.
        self.retry_rollout_soon();
        crate::spares::Spares(self).refill_soon();
        let rollout = self.rollout_view(&rollout).await?;
        Ok((
            CollectionView {
                rollout: Some(rollout),
                ..view(&collection)
            },
            created,
        ))
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

    /// Tells servers sharing the catalog to reload the collections. Each of them serves a
    /// placement with its generation's definitions, so a new one may be known before any
    /// placement has it.
    pub(crate) async fn announce_collections(&self) -> Result<(), Error> {
        if !self.is_shared() {
            return Ok(());
        }
        self.blocking(|store| store.write(|tx| crate::store::changed(tx, "collections", "*")))
            .await
    }
}
