//! Deleting a tenant ends one life (incarnation) of it and purges every byte of that life.
//!
//! Everything runs under the schema lock, which creation also takes, so a re-creation of the
//! id waits for the purge, and no two servers purge the same tenant at once:
//!
//! 1. The tenant is marked `deleting` in one catalog transaction, audited with its
//!    incarnation. Every request that resolves its route from then on gets `404`.
//! 2. Its write gate is taken once, exclusively: writes that entered before step 1 finish
//!    first. A bulk request re-checks the route before each chunk and stops at the next one.
//! 3. Its storage is destroyed: the current placement and the source of any move that has
//!    switched but not yet cleaned up (`switched`, `cleaning`): both belong to this life.
//! 4. Its catalog rows go (keys, members, roles, placement, tenant), only if the tenant row
//!    is still this life, and the purge is audited.
//!
//! Every step names the incarnation, so a purge finished late — at the next start after a
//! crash, or by another server sharing the catalog that found the deletion abandoned — never
//! touches a tenant re-created under the same id. A move before its switch (`planned` to
//! `frozen`) refuses deletion with `409 tenant_moving`: cancel it first.

use std::time::Duration;

use bulkhead_core::access::{ControlAction, KeyOwner};
use bulkhead_core::error::Error;
use bulkhead_core::model::{Placement, TenantStatus};
use bulkhead_core::{Incarnation, TenantId};
use serde_json::json;

use crate::rows::tenants::{read_tenant, set_status, tenant_not_found};
use crate::store::params;
use crate::{AuditEvent, Catalog, Ctx};

/// A row's tenant (column 0) and life (column 1).
fn life_of(row: &crate::store::Row) -> crate::store::StoreResult<(TenantId, Incarnation)> {
    let bad = |e: Error| crate::store::malformed(e.message);
    Ok((
        TenantId::parse(&row.get::<String>(0)?).map_err(bad)?,
        Incarnation::parse(&row.get::<String>(1)?).map_err(bad)?,
    ))
}

/// How long one wait for a tenant's writes in flight lasts before it is logged and repeated.
/// Writes are bounded by the request timeout, and bulk requests stop at their next chunk.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

impl Catalog {
    /// `DELETE /v1/tenants/{id}`: ends the tenant's current life and purges its storage
    /// before answering. A tenant already `deleting` (its deleter died) is finished here.
    /// With `only`, only that life: when the id names another by now (the tenant was deleted
    /// and re-created meanwhile), `409 tenant_life_ended` and nothing is touched.
    pub async fn delete_tenant(
        &self,
        ctx: &Ctx,
        id: &TenantId,
        only: Option<&Incarnation>,
    ) -> Result<(), Error> {
        self.authorize(
            ctx,
            ControlAction::DeleteTenants,
            "tenant.delete",
            id.as_str(),
            Some(id),
        )?;
        let _schema = self.lock_schema().await?;
        let now = self.inner().clock.now();
        let event = self.event(ctx, "tenant.delete", id.as_str(), Some(id), None);
        let (tenant, only) = (id.clone(), only.cloned());
        let refused = |e: Error| {
            if e.code == "tenant_moving" {
                self.audit_denied(
                    ctx.principal.actor(),
                    "tenant.delete",
                    id.as_str(),
                    Some(id),
                    &e.code,
                    &ctx.request_id,
                    Some(e.message.to_string()),
                );
            }
            e
        };
        let life = self
            .blocking(move |store| {
                store.write(|tx| {
                    let (current, placement) =
                        read_tenant(tx, &tenant)?.ok_or_else(tenant_not_found)?;
                    if let Some(only) = only
                        && only != placement.incarnation
                    {
                        return Err(crate::rows::tenants::life_ended(&tenant, &only)
                        .into());
                    }
                    match current.status {
                        TenantStatus::Moving => {
                            return Err(Error::conflict(
                                "tenant_moving",
                                "the tenant is moving; cancel the move (POST /v1/moves/{id}/cancel) or wait for it, then delete",
                            )
                            .into());
                        }
                        TenantStatus::Deleting => {}
                        _ => set_status(tx, &tenant, TenantStatus::Deleting, now)?,
                    }
                    let mut event = event;
                    event.detail = Some(json!({"incarnation": placement.incarnation}).to_string());
                    crate::rows::audit::insert(tx, &event)?;
                    Ok(placement.incarnation)
                })
            })
            .await
            .map_err(refused)?;
        self.load_tenant(id).await?;
        if let Some(hold) = self.inner().options.deletion_hold {
            tracing::warn!(tenant = %id, "holding the deletion (BULKHEAD_DELETE_HOLD_MS)");
            tokio::time::sleep(hold).await;
        }
        self.finish_deletion(id, &life, ctx.principal.actor()).await
    }

    /// Purges the storage and catalog rows of life `life` of tenant `id`. Does nothing when
    /// the tenant is gone or is another life (someone else finished this deletion, and the id
    /// may already name a new tenant). Call under the schema lock.
    pub(crate) async fn finish_deletion(
        &self,
        id: &TenantId,
        life: &Incarnation,
        actor: &str,
    ) -> Result<(), Error> {
        self.inner().rates.forget(id);
        self.drain_writes(id).await;
        let (tenant, expected) = (id.clone(), life.clone());
        let placements: Option<Vec<Placement>> = self
            .blocking(move |store| {
                store.read(|tx| {
                    let Some((row, current)) = read_tenant(tx, &tenant)? else {
                        return Ok(None);
                    };
                    if current.incarnation != expected || row.status != TenantStatus::Deleting {
                        return Ok(None);
                    }
                    let mut all = vec![current];
                    all.extend(
                        crate::moves::uncleaned_sources(tx, &tenant)?
                            .into_iter()
                            .filter(|p| p.incarnation == expected),
                    );
                    Ok(Some(all))
                })
            })
            .await?;
        let Some(placements) = placements else {
            return Ok(());
        };
        for placement in &placements {
            let _removal = self.inner().backups.removal().await;
            self.engine(&placement.domain)?
                .destroy(&self.inner().deletion_authority.demolish(id, placement))
                .await?;
            self.inner().quotas.forget(&placement.storage_key(id));
        }
        let event = AuditEvent {
            at: self.inner().clock.now(),
            actor: actor.to_owned(),
            action: "tenant.purge".into(),
            target: id.to_string(),
            tenant: Some(id.clone()),
            outcome: "ok".into(),
            request_id: String::new(),
            detail: Some(json!({"incarnation": life, "placements": placements}).to_string()),
        };
        // What this server counted of the life goes to its rows before the id can name
        // another (`usage` rows are told apart by the life's `created_at`).
        self.flush_usage().await;
        let (tenant, expected) = (id.clone(), life.clone());
        let (destroyed, purged_at) = (placements.clone(), self.inner().clock.now());
        self.blocking(move |store| {
            store.write(|tx| {
                let still =
                    read_tenant(tx, &tenant)?.is_some_and(|(_, p)| p.incarnation == expected);
                if !still {
                    return Ok(());
                }
                tx.execute(
                    "DELETE FROM api_keys WHERE tenant_id = ?1",
                    params![tenant.as_str()],
                )?;
                crate::members::purge_tenant(tx, &tenant)?;
                crate::curator::forget_cold(tx, &tenant, &expected)?;
                tx.execute(
                    "DELETE FROM placements WHERE tenant_id = ?1",
                    params![tenant.as_str()],
                )?;
                tx.execute(
                    "DELETE FROM tenants WHERE id = ?1",
                    params![tenant.as_str()],
                )?;
                crate::store::changed(tx, "tenant_keys", tenant.as_str())?;
                if tx.shared() {
                    tx.execute(
                        "INSERT INTO purged_lives (tenant_id, incarnation, placements, purged_at) \
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tenant_id, incarnation) DO NOTHING",
                        params![
                            tenant.as_str(),
                            expected.as_str(),
                            serde_json::to_string(&destroyed).map_err(crate::store::malformed)?,
                            purged_at.as_micros()
                        ],
                    )?;
                }
                crate::rows::audit::insert(tx, &event)
            })
        })
        .await?;
        // After the life's rows are gone: a retention batch still writing can no longer seal
        // a file (it removes what it wrote), so nothing of this life is left on disk.
        self.curator().remove_cold(id, life).await?;
        self.inner()
            .keys
            .forget_where(|_, key| matches!(&key.owner, KeyOwner::Tenant(t, _) if t == id));
        self.inner().users.forget_all();
        // The route stays cached as `deleting`, so a request racing the deletion still sees
        // "not found"; a tenant created later under the same id has a higher epoch and
        // replaces it.
        Ok(())
    }

    /// `Ok` while the tenant `scope` was authorized for is still this life and not being
    /// deleted; otherwise `404 tenant_not_found`, as for any request arriving now. Long
    /// writes (each bulk chunk) call it before they touch storage.
    pub(crate) async fn still_current(
        &self,
        scope: &bulkhead_core::access::TenantScope,
    ) -> Result<(), Error> {
        let route = self.route(scope.tenant()).await?;
        if route.status == TenantStatus::Deleting
            || route.placement.incarnation != scope.placement().incarnation
        {
            return Err(tenant_not_found());
        }
        Ok(())
    }

    /// Waits until no write to `id` that entered its gate before now is in flight on this
    /// server (writes entering later see the `deleting` route and write nothing).
    async fn drain_writes(&self, id: &TenantId) {
        let gate = self.inner().moves.gates.get(id);
        loop {
            if gate.freeze(DRAIN_WAIT).await.is_some() {
                return;
            }
            tracing::warn!(tenant = %id, "deletion still waits for writes in flight");
        }
    }

    /// Shared catalog: purges once more the lives purged at least `after` ago, then forgets
    /// them. Another server may have had a write to the tenant in flight when the deletion
    /// began (its gate is its own); such a write lands in the dead life's storage — never in
    /// a later life's — and this second purge removes it.
    pub(crate) async fn purge_again(&self, after: Duration) -> Result<(), Error> {
        let before = self.inner().clock.now().as_micros() - after.as_micros() as i64;
        let due: Vec<(TenantId, Incarnation, Vec<Placement>)> = self
            .blocking(move |store| {
                store.read(|tx| {
                    let rows = tx.query(
                        "SELECT tenant_id, incarnation, placements FROM purged_lives WHERE purged_at < ?1",
                        params![before],
                    )?;
                    rows.iter()
                        .map(|r| {
                            let (tenant, life) = life_of(r)?;
                            let placements = serde_json::from_str(&r.get::<String>(2)?)
                                .map_err(crate::store::malformed)?;
                            Ok((tenant, life, placements))
                        })
                        .collect()
                })
            })
            .await?;
        for (id, life, placements) in due {
            for placement in &placements {
                debug_assert_eq!(placement.incarnation, life);
                let _removal = self.inner().backups.removal().await;
                self.engine(&placement.domain)?
                    .destroy(&self.inner().deletion_authority.demolish(&id, placement))
                    .await?;
            }
            // An archive pass that was writing when the life was purged may have left a file.
            self.curator().remove_cold(&id, &life).await?;
            let (tenant, life) = (id.clone(), life.clone());
            self.blocking(move |store| {
                store.write(|tx| {
                    tx.execute(
                        "DELETE FROM purged_lives WHERE tenant_id = ?1 AND incarnation = ?2",
                        params![tenant.as_str(), life.as_str()],
                    )?;
                    Ok(())
                })
            })
            .await?;
        }
        Ok(())
    }

    /// Finishes deletions abandoned by servers that died (shared catalog): a tenant still
    /// `deleting` while this server holds the schema lock has no live deleter.
    pub(crate) async fn finish_abandoned_deletions(&self) -> Result<(), Error> {
        let any: bool = self
            .blocking(|store| {
                store.read(|tx| {
                    Ok(tx
                        .query_opt(
                            "SELECT 1 FROM tenants WHERE status = 'deleting' LIMIT 1",
                            &[],
                        )?
                        .is_some())
                })
            })
            .await?;
        if !any {
            return Ok(());
        }
        let _schema = self.lock_schema().await?;
        let abandoned: Vec<(TenantId, Incarnation)> = self
            .blocking(|store| {
                store.read(|tx| {
                    let rows = tx.query(
                        "SELECT t.id, p.incarnation FROM tenants t JOIN placements p ON p.tenant_id = t.id \
                         WHERE t.status = 'deleting'",
                        &[],
                    )?;
                    rows.iter().map(life_of).collect()
                })
            })
            .await?;
        for (id, life) in abandoned {
            tracing::info!(tenant = %id, incarnation = %life, "finishing a deletion its server abandoned");
            self.finish_deletion(&id, &life, "system:takeover").await?;
        }
        Ok(())
    }
}

/// How often a server sharing its catalog looks for deletions whose server died.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Takes over abandoned deletions on a shared catalog, every [`SWEEP_EVERY`].
pub(crate) fn spawn_sweeper(inner: std::sync::Weak<crate::Inner>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let catalog = Catalog { inner };
            if let Err(e) = catalog.finish_abandoned_deletions().await {
                tracing::warn!(error = %e, "could not finish abandoned deletions; retrying");
            }
            let after = catalog.inner().options.moves.drain_grace;
            if let Err(e) = catalog.purge_again(after).await {
                tracing::warn!(error = %e, "could not purge deleted tenants once more; retrying");
            }
        }
    });
}

/// The access authority, for a deletion's purge only: the demolition of a placement of the
/// tenant being deleted. Only this room reads the authority inside.
pub(crate) struct DeletionAuthority(bulkhead_core::access::AccessAuthority);

impl DeletionAuthority {
    pub(crate) fn new(authority: bulkhead_core::access::AccessAuthority) -> Self {
        DeletionAuthority(authority)
    }

    fn demolish(
        &self,
        tenant: &TenantId,
        placement: &bulkhead_core::model::Placement,
    ) -> bulkhead_core::access::Demolition {
        self.0.demolish(tenant, placement)
    }
}
