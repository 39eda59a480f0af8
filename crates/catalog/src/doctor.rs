//! `bulkhead doctor`: tenant storage that no live tenant incarnation owns.
//!
//! Each domain's engine reports what it holds ([`Engine::inventory`]); the catalog names what
//! should exist — every tenant's placement (also while provisioning or deleting) and both
//! sides of every move not yet ended — and the difference is orphaned. Cleaning removes the
//! orphans whose names read back to a storage key, under the schema lock (which creation,
//! deletion and a move's provisioning take), so nothing that becomes live meanwhile is
//! touched; every removal is audited.

use std::collections::HashSet;

use bulkhead_api::{DoctorReport, StorageOrphan};
use bulkhead_core::access::ControlAction;
use bulkhead_core::error::Error;
use bulkhead_core::model::Placement;
use bulkhead_core::{DomainName, StorageKey, TenantId};
use bulkhead_engine::{Engine, PlacementRef, StoredPlacement};
use serde_json::json;

use crate::store::{StoreResult, Tx, malformed};
use crate::{Catalog, Ctx};

/// Every placement the catalog says exists, with its tenant.
fn live_placements(tx: &dyn Tx) -> StoreResult<Vec<(TenantId, Placement)>> {
    let mut out = Vec::new();
    let rows = tx.query(
        "SELECT t.id FROM tenants t JOIN placements p ON p.tenant_id = t.id",
        &[],
    )?;
    for row in rows {
        let id = TenantId::parse(&row.get::<String>(0)?).map_err(|e| malformed(e.message))?;
        if let Some((_, placement)) = crate::rows::tenants::read_tenant(tx, &id)? {
            out.push((id, placement));
        }
    }
    for m in crate::moves::not_ended(tx)? {
        out.push((m.tenant.clone(), m.source));
        out.push((m.tenant, m.target));
    }
    Ok(out)
}

impl Catalog {
    /// `GET /v1/doctor` (list) and `POST /v1/doctor/clean` (remove, platform admins only).
    pub async fn doctor(&self, ctx: &Ctx, clean: bool) -> Result<DoctorReport, Error> {
        let (action, name) = if clean {
            (ControlAction::DeleteTenants, "storage.clean")
        } else {
            (ControlAction::ReadTenants, "storage.inspect")
        };
        self.authorize(ctx, action, name, "storage", None)?;
        let _schema = self.lock_schema().await?;
        let engines = self.inner().engines.snapshot();
        // Storage first, then the catalog: anything created in between is in the catalog.
        let mut found: Vec<(DomainName, StoredPlacement)> = Vec::new();
        for (domain, engine) in &engines {
            for item in engine.inventory().await? {
                found.push((domain.clone(), item));
            }
        }
        let (placements, domains, spares) = self
            .blocking(|store| {
                store.read(|tx| {
                    Ok((
                        live_placements(tx)?,
                        crate::rows::domains::read_domains(tx)?,
                        crate::rows::spares::list(tx)?,
                    ))
                })
            })
            .await?;
        let named = |domain: &DomainName, target: &PlacementRef| {
            let (_, engine) = engines.iter().find(|(d, _)| d == domain)?;
            Some(engine.storage_name(target))
        };
        // The ready pool's spares are storage the catalog knows of, not orphans.
        let live: HashSet<String> = placements
            .iter()
            .filter_map(|(tenant, p)| named(&p.domain, &PlacementRef::of(tenant, p)))
            .chain(
                spares
                    .iter()
                    .filter_map(|s| named(&s.domain, &PlacementRef::spare(&s.id))),
            )
            .collect();
        let mut report = DoctorReport {
            unchecked_domains: domains
                .into_iter()
                .map(|(d, _)| d)
                .filter(|d| !engines.iter().any(|(e, _)| e == d))
                .collect(),
            ..DoctorReport::default()
        };
        for (domain, item) in found {
            if live.contains(&item.name) {
                continue;
            }
            let parsed = item
                .key
                .as_ref()
                .and_then(|k| StorageKey::parse(k.as_str()));
            report.orphans.push(StorageOrphan {
                domain: domain.clone(),
                isolation: item.isolation,
                name: item.name.clone(),
                tenant: parsed.as_ref().map(|(t, _)| t.clone()),
                incarnation: parsed.map(|(_, i)| i),
                removable: item.key.is_some(),
            });
            if clean && let Some(key) = item.key.clone() {
                let engine = self.engine(&domain)?;
                self.remove_orphan(ctx, &domain, engine.as_ref(), key, &item)
                    .await?;
                report.removed += 1;
            }
        }
        Ok(report)
    }

    async fn remove_orphan(
        &self,
        ctx: &Ctx,
        domain: &DomainName,
        engine: &dyn Engine,
        key: StorageKey,
        item: &StoredPlacement,
    ) -> Result<(), Error> {
        let target = self.inner().orphan_authority.demolish(key, item);
        let removal = self.inner().backups.removal().await;
        engine.destroy(&target).await?;
        drop(removal);
        tracing::info!(%domain, name = %item.name, "removed orphaned tenant storage");
        let detail = json!({"domain": domain, "isolation": item.isolation, "name": item.name});
        let tenant = StorageKey::parse(target.key().as_str()).map(|(t, _)| t);
        let event = self.event(
            ctx,
            "storage.remove",
            &item.name,
            tenant.as_ref(),
            Some(detail.to_string()),
        );
        self.blocking(move |store| store.write(|tx| crate::rows::audit::insert(tx, &event)))
            .await
    }
}

/// The access authority, for removing orphaned storage only (what an engine holds that no live
/// placement owns). Only this room reads the authority inside.
pub(crate) struct OrphanAuthority(bulkhead_core::access::AccessAuthority);

impl OrphanAuthority {
    pub(crate) fn new(authority: bulkhead_core::access::AccessAuthority) -> Self {
        OrphanAuthority(authority)
    }

    fn demolish(
        &self,
        key: StorageKey,
        item: &StoredPlacement,
    ) -> bulkhead_core::access::Demolition {
        self.0
            .demolish_orphan(key, item.isolation, item.namespace.clone())
    }
}
