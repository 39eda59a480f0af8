//! Tenants, tiers, domains and the routing table.
//!
//! Creating a tenant allocates its placement (domain, namespace) inside the same catalog
//! transaction that records it, so two concurrent creates cannot overfill a bridge file.
//! Provisioning and deletion are two-step (catalog state first, then storage), and
//! [`Catalog::reconcile`] finishes whatever a crash interrupted.

use std::sync::Arc;

use bulkhead_api::{
    CreateTenant, MAX_TENANT_SEARCH_CHARS, Page, TenantListQuery, TenantView, UpdateTenant,
};
use bulkhead_core::access::{self, ControlAction, TenantRoute};
use bulkhead_core::error::Error;
use bulkhead_core::model::{
    Isolation, Placement, Tenant, TenantStatus, validate_display_name, validate_labels,
};
use bulkhead_core::{Incarnation, TenantId};
use bulkhead_engine::PlacementRef;

use crate::moves::MoveRequest;
use crate::placement::allocate;
use crate::rows::paging::{list_cursor, list_position, page_limit};
use crate::rows::tenants::{
    TenantFilter, read_tenant, set_status, tenant_not_found, write_placement,
};
use crate::rows::tiers::read_tier;
use crate::spares::Spares;
use crate::store::{malformed, params};
use crate::{Catalog, Ctx};

/// The filters of a tenant listing, checked: `q` is at most
/// [`MAX_TENANT_SEARCH_CHARS`] characters (an empty one matches every tenant) and holds no
/// NUL, which no tenant id or name holds (SQLite's text matching would stop reading at it).
fn tenant_filter(query: &TenantListQuery) -> Result<TenantFilter, Error> {
    if let Some(q) = &query.q {
        if q.chars().count() > MAX_TENANT_SEARCH_CHARS {
            return Err(Error::bad_request(
                "invalid_filter",
                format!("q must be at most {MAX_TENANT_SEARCH_CHARS} characters"),
            ));
        }
        if q.contains('\0') {
            return Err(Error::bad_request(
                "invalid_filter",
                format!("q: {}", bulkhead_core::query::parse::NUL_REFUSED),
            ));
        }
    }
    Ok(TenantFilter {
        search: query.q.clone().filter(|q| !q.is_empty()),
        tier: query.tier.clone(),
        status: query.status,
        domain: query.domain.clone(),
        isolation: query.isolation,
    })
}

/// What a `PATCH /v1/tenants/{id}` did: applied the change, or (a tier in another isolation
/// model) started the live move that applies it.
#[derive(Debug, Clone)]
pub enum TenantUpdate {
    Applied(TenantView),
    Moving(bulkhead_api::MoveView),
}

pub(crate) fn view(tenant: Tenant, placement: Placement) -> TenantView {
    TenantView {
        id: tenant.id,
        name: tenant.name,
        tier: tenant.tier,
        status: tenant.status,
        labels: tenant.labels,
        created_at: tenant.created_at,
        updated_at: tenant.updated_at,
        placement,
    }
}

impl Catalog {
    pub(crate) fn authorize(
        &self,
        ctx: &Ctx,
        action: ControlAction,
        name: &str,
        target: &str,
        tenant: Option<&TenantId>,
    ) -> Result<(), Error> {
        if let Some(tenant) = tenant {
            Catalog::tag_tenant(tenant);
        }
        access::authorize_control(&ctx.principal, action)
            .map_err(|e| self.denied(ctx, name, target, tenant, e))
    }

    /// `POST /v1/tenants`: creates the tenant and provisions its placement. Returns `false`
    /// with the existing tenant when an identical one already exists (idempotent replay).
    ///
    /// The creation runs as its own task: a caller that gives up does not leave it half-done.
    /// An identical request for a tenant still provisioning (an earlier creation failed or was
    /// cut off) tries to finish it and answers with where it stands.
    pub async fn create_tenant(
        &self,
        ctx: &Ctx,
        request: CreateTenant,
    ) -> Result<(TenantView, bool), Error> {
        let (catalog, ctx) = (self.clone(), ctx.clone());
        tokio::spawn(async move { catalog.create_tenant_now(&ctx, request).await })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "tenant creation task failed");
                Error::internal()
            })?
    }

    async fn create_tenant_now(
        &self,
        ctx: &Ctx,
        request: CreateTenant,
    ) -> Result<(TenantView, bool), Error> {
        self.authorize(
            ctx,
            ControlAction::ManageTenants,
            "tenant.create",
            request.id.as_str(),
            Some(&request.id),
        )?;
        validate_display_name(&request.name)?;
        validate_labels(&request.labels)?;
        if request.id.as_str() == bulkhead_core::ids::SPARE_TENANT {
            return Err(Error::bad_request(
                "reserved_tenant_id",
                format!(
                    "tenant id '{}' is reserved for the ready pool's storage",
                    request.id
                ),
            ));
        }
        let _schema = self.lock_schema().await?;
        // Under the schema lock no live server is deleting this id (deletion holds the lock
        // throughout), so a tenant still `deleting` was left by one that died: finish it.
        if let Some((old, placement)) = self.load_tenant(&request.id).await?
            && old.status == TenantStatus::Deleting
        {
            self.finish_deletion(&request.id, &placement.incarnation, "system:takeover")
                .await?;
        }
        let collections: Vec<_> = self
            .collections_snapshot()
            .values()
            .map(|c| (**c).clone())
            .collect();
        let now = self.inner().clock.now();
        let event = self.event(
            ctx,
            "tenant.create",
            request.id.as_str(),
            Some(&request.id),
            None,
        );
        let req = request.clone();
        let created = self
            .blocking(move |store| {
                store.write(|tx| {
                    if let Some((tenant, placement)) = read_tenant(tx, &req.id)? {
                        let same = tenant.name == req.name && tenant.tier == req.tier && tenant.labels == req.labels;
                        return if same && tenant.status != TenantStatus::Deleting {
                            Ok(Err(view(tenant, placement)))
                        } else {
                            Err(Error::conflict("tenant_exists", format!("tenant '{}' already exists with other settings", req.id)).into())
                        };
                    }
                    let tier = read_tier(tx, &req.tier)?
                        .ok_or_else(|| Error::bad_request("unknown_tier", format!("tier '{}' does not exist", req.tier)))?;
                    let generation = crate::rows::collections::generation(tx)?;
                    // A new life: storage, keys and tokens of any earlier tenant under this id
                    // belong to another incarnation and can never reach this one.
                    let placement = allocate(tx, &req.id, &Incarnation::generate(), &tier, generation)?;
                    // A silo takes a ready spare of its domain on this generation, if any.
                    let spare = if placement.isolation == Isolation::Silo {
                        crate::rows::spares::claim(tx, &placement.domain, generation, &placement.storage_key(&req.id), now)?
                    } else {
                        None
                    };
                    tx.execute(
                        "INSERT INTO tenants (id, name, tier, status, labels, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                        params![
                            req.id.as_str(),
                            &req.name,
                            req.tier.as_str(),
                            TenantStatus::Provisioning.as_str(),
                            serde_json::to_string(&req.labels).map_err(malformed)?,
                            now.as_micros()
                        ],
                    )?;
                    write_placement(tx, &req.id, &placement)?;
                    // The life it begins, as `tenant.delete` names the life it ends: the
                    // audit log and the `tenant.created` / `tenant.deleted` webhooks pair up.
                    let mut event = event;
                    event.detail = Some(
                        serde_json::json!({
                            "incarnation": placement.incarnation,
                            "tier": req.tier,
                            "isolation": placement.isolation,
                            "domain": placement.domain,
                        })
                        .to_string(),
                    );
                    crate::rows::audit::insert(tx, &event)?;
                    Ok(Ok((placement, spare)))
                })
            })
            .await?;
        let placement = match created {
            Err(existing) if existing.status == TenantStatus::Provisioning => {
                if let Err(e) = self.resume_provisioning(&request.id).await {
                    tracing::warn!(tenant = %request.id, error = %e, "provisioning still cannot finish; retried in the background");
                }
                let (tenant, placement) = self
                    .load_tenant(&request.id)
                    .await?
                    .ok_or_else(tenant_not_found)?;
                return Ok((view(tenant, placement), false));
            }
            Err(existing) => return Ok((existing, false)),
            Ok(created) => created,
        };
        let (placement, spare) = placement;
        let target = PlacementRef::of(&request.id, &placement);
        // A spare on this generation has every collection already: renaming it is enough.
        let adopted = Spares(self)
            .adopt(spare.as_ref(), &target, &placement.domain)
            .await;
        if !adopted
            && let Err(e) = self
                .engine(&placement.domain)?
                .provision(&target, &collections)
                .await
        {
            tracing::error!(tenant = %request.id, error = %e, "provisioning failed; the tenant stays in provisioning and is retried in the background");
            return Err(e.into());
        }
        self.finish_provisioning(&request.id).await?;
        let tenant = self
            .load_tenant(&request.id)
            .await?
            .ok_or_else(tenant_not_found)?;
        Ok((view(tenant.0, tenant.1), true))
    }

    async fn finish_provisioning(&self, id: &TenantId) -> Result<(), Error> {
        let (id, now) = (id.clone(), self.inner().clock.now());
        self.blocking(move |store| {
            store.write(|tx| set_status(tx, &id, TenantStatus::Active, now))
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn load_tenant(
        &self,
        id: &TenantId,
    ) -> Result<Option<(Tenant, Placement)>, Error> {
        let id = id.clone();
        let seen = self.cache_ticket();
        let found = self
            .blocking(move |store| store.read(|tx| read_tenant(tx, &id)))
            .await?;
        if let Some((tenant, placement)) = &found {
            self.publish_route(
                TenantRoute {
                    tenant: tenant.id.clone(),
                    tier: tenant.tier.clone(),
                    status: tenant.status,
                    placement: placement.clone(),
                },
                seen,
            );
        }
        Ok(found)
    }

    /// Stores a routing entry read from the catalog in the cache, unless a newer epoch is
    /// already there or a change from another server was applied since the read began
    /// (`ticket`, from [`Catalog::cache_ticket`]).
    pub(crate) fn publish_route(&self, route: TenantRoute, ticket: crate::caches::Ticket) {
        self.inner().routes.fill(
            ticket,
            route.tenant.clone(),
            Arc::new(route),
            |cached, read| cached.placement.epoch > read.placement.epoch,
        );
    }

    /// Resolves a tenant's routing entry: from the cache, or from the catalog.
    pub(crate) async fn route(&self, tenant: &TenantId) -> Result<Arc<TenantRoute>, Error> {
        if let Some(entry) = self.inner().routes.get(tenant) {
            return Ok(entry);
        }
        let (tenant_row, placement) = self
            .load_tenant(tenant)
            .await?
            .ok_or_else(tenant_not_found)?;
        Ok(Arc::new(TenantRoute {
            tenant: tenant_row.id,
            tier: tenant_row.tier,
            status: tenant_row.status,
            placement,
        }))
    }

    /// Re-reads a tenant from the catalog and publishes its route (after a change).
    /// The tenant as the catalog holds it right after this server committed a change to
    /// it. The cached route is dropped first: that counts as an invalidation, so a request
    /// that read the row before the change and fills the cache after this refresh cannot put
    /// the old status back (a suspension that did not hold, found by `bulkhead simulate`).
    async fn refresh(&self, id: &TenantId) -> Result<TenantView, Error> {
        self.inner().routes.forget(id);
        let (tenant, placement) = self.load_tenant(id).await?.ok_or_else(tenant_not_found)?;
        Ok(view(tenant, placement))
    }

    pub async fn get_tenant(&self, ctx: &Ctx, id: &TenantId) -> Result<TenantView, Error> {
        self.authorize(
            ctx,
            ControlAction::ReadTenants,
            "tenant.get",
            id.as_str(),
            Some(id),
        )?;
        let (tenant, placement) = self.load_tenant(id).await?.ok_or_else(tenant_not_found)?;
        Ok(view(tenant, placement))
    }

    /// `GET /v1/tenants`: a page of the tenants that pass the query's filters, in id order.
    pub async fn list_tenants(
        &self,
        ctx: &Ctx,
        query: &TenantListQuery,
    ) -> Result<Page<TenantView>, Error> {
        self.authorize(
            ctx,
            ControlAction::ReadTenants,
            "tenant.list",
            "tenants",
            None,
        )?;
        let filter = tenant_filter(query)?;
        let limit = page_limit(query.limit)?;
        // The cursor is a position in id order, so it holds with any filters.
        let after = query
            .cursor
            .as_deref()
            .map(|c| list_position("tenants", c))
            .transpose()?
            .unwrap_or_default();
        let rows = self
            .blocking(move |store| {
                store.read(|tx| {
                    crate::rows::tenants::list_after(tx, &filter, &after, i64::from(limit) + 1)
                })
            })
            .await?;
        let more = rows.len() > limit as usize;
        let items: Vec<_> = rows
            .into_iter()
            .take(limit as usize)
            .map(|(t, p)| view(t, p))
            .collect();
        let next_cursor = more
            .then(|| items.last().map(|t| list_cursor("tenants", t.id.as_str())))
            .flatten();
        Ok(Page { items, next_cursor })
    }

    /// `PATCH /v1/tenants/{id}`: name, labels, suspend/resume. A tier change that keeps the
    /// isolation model is applied; one that needs a different model needs a live move.
    pub async fn update_tenant(
        &self,
        ctx: &Ctx,
        id: &TenantId,
        update: UpdateTenant,
    ) -> Result<TenantUpdate, Error> {
        self.authorize(
            ctx,
            ControlAction::ManageTenants,
            "tenant.update",
            id.as_str(),
            Some(id),
        )?;
        if let Some(name) = &update.name {
            validate_display_name(name)?;
        }
        if let Some(labels) = &update.labels {
            validate_labels(labels)?;
        }
        let now = self.inner().clock.now();
        let detail = serde_json::to_value(&update)
            .map_err(|e| Error::internal().with_message(e.to_string()))?;
        let event = self.event(ctx, "tenant.update", id.as_str(), Some(id), None);
        let tenant = id.clone();
        let shared = self.is_shared();
        let move_to = self.blocking(move |store| {
            store.write(|tx| {
                let mut move_to = None;
                let (current, placement) = read_tenant(tx, &tenant)?.ok_or_else(tenant_not_found)?;
                if current.status == TenantStatus::Deleting {
                    return Err(tenant_not_found().into());
                }
                if let Some(status) = update.status {
                    let allowed = matches!(
                        (current.status, status),
                        (TenantStatus::Active | TenantStatus::Suspended, TenantStatus::Active | TenantStatus::Suspended)
                    );
                    if !allowed {
                        return Err(Error::conflict(
                            "invalid_status_change",
                            format!("status can change between active and suspended only; tenant is {}", current.status),
                        )
                        .into());
                    }
                    if status != current.status {
                        set_status(tx, &tenant, status, now)?;
                    }
                }
                if let Some(tier_name) = &update.tier {
                    let tier = read_tier(tx, tier_name)?
                        .ok_or_else(|| Error::bad_request("unknown_tier", format!("tier '{tier_name}' does not exist")))?;
                    if tier.isolation != placement.isolation {
                        // The tier changes when the move switches the tenant to its new placement.
                        if current.status != TenantStatus::Active || shared {
                            return Err(Error::conflict(
                                "move_required",
                                format!(
                                    "tier '{tier_name}' places tenants in {} but this tenant is in {}; the live move this \
                                     needs starts only for an active tenant on a catalog this server alone uses (tenant is {})",
                                    tier.isolation, placement.isolation, current.status
                                ),
                            )
                            .into());
                        }
                        move_to = Some((tier_name.clone(), placement.incarnation.clone()));
                    } else {
                        tx.execute("UPDATE tenants SET tier = ?2 WHERE id = ?1", params![tenant.as_str(), tier_name.as_str()])?;
                    }
                }
                if let Some(name) = &update.name {
                    tx.execute("UPDATE tenants SET name = ?2 WHERE id = ?1", params![tenant.as_str(), name.as_str()])?;
                }
                if let Some(labels) = &update.labels {
                    let labels = serde_json::to_string(labels).map_err(malformed)?;
                    tx.execute("UPDATE tenants SET labels = ?2 WHERE id = ?1", params![tenant.as_str(), labels.as_str()])?;
                }
                tx.execute("UPDATE tenants SET updated_at = ?2 WHERE id = ?1", params![tenant.as_str(), now.as_micros()])?;
                crate::store::changed(tx, "route", tenant.as_str())?;
                // The life it changed (its `tenant.updated` / `tenant.suspended` webhooks name it).
                let mut detail = detail;
                detail["incarnation"] = serde_json::json!(placement.incarnation);
                let mut event = event;
                event.detail = Some(detail.to_string());
                crate::rows::audit::insert(tx, &event)?;
                Ok(move_to)
            })
        })
        .await?;
        match move_to {
            Some((tier, life)) => {
                // The move is for the life this change read: if the tenant was deleted and
                // re-created meanwhile, the new life is not moved to the old one's tier.
                let request = MoveRequest {
                    isolation: None,
                    domain: None,
                    target_tier: Some(tier),
                    only: Some(life),
                };
                Ok(TenantUpdate::Moving(
                    self.begin_move(ctx, id, request).await?,
                ))
            }
            None => Ok(TenantUpdate::Applied(self.refresh(id).await?)),
        }
    }

    /// Finishes work a crash interrupted: deleting tenants are purged. (Tenants left
    /// `provisioning` are finished by the background pass in `rollout`, which starts with
    /// the catalog: start-up does not wait for their storage.)
    /// Runs under the schema lock, which creation and deletion also hold: with a shared
    /// catalog, what another live server is doing right now is not "interrupted".
    pub(crate) async fn reconcile(&self) -> Result<(), Error> {
        let schema = self.lock_schema().await?;
        let pending: Vec<(TenantId, TenantStatus, Incarnation)> = self
            .blocking(|store| {
                store.read(|tx| {
                    let mut out = Vec::new();
                    for row in tx.query("SELECT t.id, t.status, p.incarnation FROM tenants t JOIN placements p ON p.tenant_id = t.id \
                         WHERE t.status = 'deleting'", &[])? {
                        let (id, status, life): (String, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
                        out.push((
                            TenantId::parse(&id).map_err(|e| malformed(e.message))?,
                            crate::rows::parse(&status)?,
                            Incarnation::parse(&life).map_err(|e| malformed(e.message))?,
                        ));
                    }
                    Ok(out)
                })
            })
            .await?;
        for (id, status, life) in pending {
            tracing::info!(tenant = %id, %status, incarnation = %life, "resuming interrupted tenant operation");
            let resumed = match status {
                TenantStatus::Deleting => {
                    self.finish_deletion(&id, &life, "system:reconcile").await
                }
                _ => self.resume_provisioning(&id).await,
            };
            match resumed {
                Ok(()) => {}
                // Its domain could not be opened: the tenant waits for it (retried when the
                // domain is put again, or at the next start).
                Err(e) if e.code == "domain_unavailable" => {
                    tracing::warn!(tenant = %id, %status, "tenant's domain is unavailable; its operation waits for it");
                }
                // One tenant that cannot be finished never keeps the server from serving the
                // others: it stays as it is (provisioning: 503; deleting: 404) and is retried
                // at the next start.
                Err(e) => {
                    tracing::error!(tenant = %id, %status, error = %e, code = %e.code, "could not finish the tenant's interrupted operation; it waits, the server serves the rest");
                }
            }
        }
        drop(schema);
        // Placements behind the schema generation are brought up by the background retrier
        // (`rollout`), which starts with the catalog: the server serves at once.
        Ok(())
    }

    /// Finishes creations left in `provisioning` by a creation that failed or was cut off
    /// (run by the background pass in `rollout`). Under the schema lock, which every creation
    /// in progress holds (on a shared catalog, catalog-wide), so none here is still running.
    pub(crate) async fn resume_stalled_provisioning(&self) -> Result<usize, Error> {
        let _schema = self.lock_schema().await?;
        let stalled: Vec<TenantId> = self
            .blocking(|store| {
                store.read(|tx| {
                    tx.query(
                        "SELECT id FROM tenants WHERE status = 'provisioning' ORDER BY id",
                        &[],
                    )?
                    .iter()
                    .map(|row| {
                        TenantId::parse(&row.get::<String>(0)?).map_err(|e| malformed(e.message))
                    })
                    .collect()
                })
            })
            .await?;
        let mut finished = 0;
        for id in stalled {
            match self.resume_provisioning(&id).await {
                Ok(()) => {
                    tracing::info!(tenant = %id, "an interrupted creation was finished in the background");
                    finished += 1;
                }
                Err(e) => {
                    tracing::warn!(tenant = %id, error = %e, "could not finish the tenant's interrupted operation (its creation); retrying in the background")
                }
            }
        }
        Ok(finished)
    }

    async fn resume_provisioning(&self, id: &TenantId) -> Result<(), Error> {
        let (_, placement) = self.load_tenant(id).await?.ok_or_else(tenant_not_found)?;
        let collections: Vec<_> = self
            .collections_snapshot()
            .values()
            .map(|c| (**c).clone())
            .collect();
        let target = PlacementRef::of(id, &placement);
        // A creation cut off after claiming a spare adopts it now (if it had not yet); the
        // provisioning after it is idempotent either way.
        let spares = Spares(self);
        let spare = spares.claimed_for(&target.key).await?;
        spares
            .adopt(spare.as_ref(), &target, &placement.domain)
            .await;
        self.engine(&placement.domain)?
            .provision(&target, &collections)
            .await?;
        self.finish_provisioning(id).await
    }
}
