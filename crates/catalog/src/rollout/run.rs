//! One pass of the rollout runner: every live placement behind the catalog's schema
//! generation is brought up to it, wave by wave.
//!
//! Waves: first the tenants labelled `canary=true`, then one wave per tier, in the configured
//! order (`CatalogOptions::rollout_tier_order`; tiers it does not name follow by name). A
//! pooled namespace is one unit (its tables are shared): it goes in the earliest wave of any
//! tenant in it. Each unit's placements move to the new generation in the catalog as soon as
//! their storage has the change (the ledger), so a pass cut off by a crash, or continued by
//! another server sharing the catalog, applies nothing twice. Moving tenants are left to their
//! move. Every wave and every failure is audited (failures: the first few of a pass, then a
//! count).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;

use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::model::{Isolation, Placement};
use bulkhead_core::schema::Collection;
use bulkhead_core::{DomainName, TenantId, TierName};
use bulkhead_engine::PlacementRef;

use crate::Catalog;
use crate::store::{malformed, params};

/// Failures audited one by one in a pass; the rest are counted in one row.
const AUDITED_FAILURES: usize = 20;

/// Placements whose storage is changed together: a pooled namespace's tenants, or one
/// dedicated tenant.
struct Unit {
    tenants: Vec<TenantId>,
    placement: Placement,
    /// Index in the pass's wave order.
    wave: usize,
}

impl Catalog {
    /// Brings every placement behind the current schema generation up to date, unless the
    /// newest rollout was stopped (the failure policy) or cancelled: then placements behind
    /// keep their definitions until it is resumed or a later change starts a new rollout.
    pub(crate) async fn rollout_pending(&self) -> Result<(), Error> {
        let _schema = self.lock_schema().await?;
        let newest = self
            .blocking(|store| store.read(|tx| crate::rows::rollouts::newest_state(tx)))
            .await?;
        if matches!(newest.as_deref(), Some("stopped" | "cancelled")) {
            return Ok(());
        }
        self.rollout_locked().await
    }

    /// The pass itself; the caller holds the schema lock.
    async fn rollout_locked(&self) -> Result<(), Error> {
        let (generation, collections, behind) = self
            .blocking(|store| {
                store.read(|tx| {
                    let g = crate::rows::collections::generation(tx)?;
                    let collections = crate::rows::collections::read_collections(tx)?;
                    let rows = tx.query(
                        "SELECT t.id, t.tier, t.labels FROM tenants t JOIN placements p ON p.tenant_id = t.id \
                         WHERE p.schema_version < ?1 AND t.status NOT IN ('provisioning', 'deleting') \
                         AND t.id NOT IN (SELECT tenant_id FROM moves WHERE phase NOT IN ('done', 'rolled_back')) ORDER BY t.id",
                        params![g],
                    )?;
                    let mut behind = Vec::new();
                    for row in rows {
                        let id = TenantId::parse(&row.get::<String>(0)?).map_err(|e| malformed(e.message))?;
                        let tier = TierName::parse(&row.get::<String>(1)?).map_err(|e| malformed(e.message))?;
                        let labels: BTreeMap<String, String> =
                            serde_json::from_str(&row.get::<String>(2)?).map_err(malformed)?;
                        if let Some((_, placement)) = crate::rows::tenants::read_tenant(tx, &id)? {
                            behind.push((id, tier, labels, placement));
                        }
                    }
                    Ok((g, collections, behind))
                })
            })
            .await?;
        if behind.is_empty() {
            return self.record_pass(generation, None, 0, None).await;
        }
        let (waves, units) = self.plan_waves(behind);
        let collections = Arc::new(collections);
        let mut failed = 0usize;
        let mut last_error = None;
        for (index, wave) in waves.iter().enumerate() {
            if self
                .inner()
                .options
                .rollout_max_failures
                .is_some_and(|max| failed as u64 > max)
            {
                break;
            }
            let in_wave: Vec<&Unit> = units.iter().filter(|u| u.wave == index).collect();
            if in_wave.is_empty() {
                continue;
            }
            let placements: usize = in_wave.iter().map(|u| u.tenants.len()).sum();
            tracing::info!(generation, wave = %wave, placements, "schema rollout wave");
            self.rollout_event(
                "rollout.wave",
                wave,
                format!("{placements} placements, generation {generation}"),
            );
            let (w, now) = (wave.clone(), self.inner().clock.now());
            self.blocking(move |store| {
                store.write(|tx| crate::rows::rollouts::set_wave(tx, generation, &w, now))
            })
            .await?;
            // Up to `rollout_parallelism` units at once on each domain.
            let per_domain = self.inner().options.rollout_parallelism.max(1);
            let mut limits: BTreeMap<DomainName, Arc<tokio::sync::Semaphore>> = BTreeMap::new();
            for unit in &in_wave {
                limits
                    .entry(unit.placement.domain.clone())
                    .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(per_domain)));
            }
            let width = per_domain * limits.len();
            let work: Vec<_> = in_wave
                .into_iter()
                .map(|unit| {
                    (
                        self.clone(),
                        Arc::clone(&collections),
                        Arc::clone(&limits[&unit.placement.domain]),
                        unit.tenants.clone(),
                        unit.placement.clone(),
                    )
                })
                .collect();
            let mut results = futures_util::stream::iter(work)
                .map(
                    |(catalog, collections, limit, tenants, placement)| async move {
                        let _permit = limit.acquire_owned().await;
                        let outcome = catalog
                            .ensure_all(&tenants[0], &placement, &collections)
                            .await;
                        (tenants, outcome)
                    },
                )
                .buffer_unordered(width);
            let max_failures = self.inner().options.rollout_max_failures;
            while let Some((tenants, outcome)) = results.next().await {
                if max_failures.is_some_and(|max| failed as u64 > max) {
                    // Stopped: what is still running finishes, nothing more starts.
                    if outcome.is_ok() {
                        self.applied(&tenants, generation).await?;
                    }
                    continue;
                }
                match outcome {
                    Ok(()) => self.applied(&tenants, generation).await?,
                    Err(e) => {
                        failed += 1;
                        tracing::error!(tenant = %tenants[0], error = %e, "schema rollout failed for placement; will retry");
                        if failed <= AUDITED_FAILURES {
                            self.rollout_event(
                                "rollout.failure",
                                tenants[0].as_str(),
                                format!("wave {wave}: {}", e.message),
                            );
                        }
                        last_error = Some(format!("{}: {}", tenants[0], e.message));
                    }
                }
            }
        }
        if let Some(max) = self.inner().options.rollout_max_failures
            && failed as u64 > max
        {
            let reason = format!(
                "stopped after {failed} failures (the limit is {max}); last: {}",
                last_error.as_deref().unwrap_or("unknown")
            );
            tracing::error!(generation, %reason, "schema rollout stopped");
            self.rollout_event(
                "rollout.stopped",
                &format!("generation {generation}"),
                reason.clone(),
            );
            self.record_pass(generation, None, failed, Some(reason.clone()))
                .await?;
            let now = self.inner().clock.now();
            self.blocking(move |store| {
                store.write(|tx| crate::rows::rollouts::stop(tx, generation, &reason, now))
            })
            .await?;
            return Ok(());
        }
        if failed > AUDITED_FAILURES {
            self.rollout_event(
                "rollout.failure",
                "placements",
                format!("{} more failures in this pass", failed - AUDITED_FAILURES),
            );
        }
        let wave = (failed > 0).then(|| waves.last().cloned()).flatten();
        self.record_pass(generation, wave, failed, last_error)
            .await?;
        if failed > 0 {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "rollout_incomplete",
                format!(
                    "{failed} placements could not be updated yet; they keep serving with the previous definition and are retried in the background"
                ),
            ));
        }
        Ok(())
    }

    /// The waves of a pass, in order, and the units each falls in.
    fn plan_waves(
        &self,
        behind: Vec<(TenantId, TierName, BTreeMap<String, String>, Placement)>,
    ) -> (Vec<String>, Vec<Unit>) {
        let order = &self.inner().options.rollout_tier_order;
        let mut tiers: Vec<TierName> = behind.iter().map(|(_, t, _, _)| t.clone()).collect();
        tiers.sort_by_key(|t| {
            (
                order.iter().position(|o| o == t).unwrap_or(usize::MAX),
                t.clone(),
            )
        });
        tiers.dedup();
        let mut waves = vec!["canary".to_owned()];
        waves.extend(tiers.iter().map(|t| format!("tier {t}")));
        let wave_of = |tier: &TierName, labels: &BTreeMap<String, String>| {
            if labels.get("canary").is_some_and(|v| v == "true") {
                0
            } else {
                1 + tiers.iter().position(|t| t == tier).unwrap_or(0)
            }
        };
        let mut pools: BTreeMap<(DomainName, String), Unit> = BTreeMap::new();
        let mut units = Vec::new();
        for (tenant, tier, labels, placement) in behind {
            let wave = wave_of(&tier, &labels);
            if placement.isolation == Isolation::Pool {
                let key = (placement.domain.clone(), placement.namespace.clone());
                let unit = pools.entry(key).or_insert_with(|| Unit {
                    tenants: Vec::new(),
                    placement: placement.clone(),
                    wave,
                });
                unit.wave = unit.wave.min(wave);
                unit.tenants.push(tenant);
            } else {
                units.push(Unit {
                    tenants: vec![tenant],
                    placement,
                    wave,
                });
            }
        }
        // A canary by count: the first dedicated placements (by tenant id) join the canary wave.
        units.sort_by(|a, b| a.tenants[0].cmp(&b.tenants[0]));
        for unit in units
            .iter_mut()
            .filter(|u| u.wave != 0)
            .take(self.inner().options.rollout_canary_count)
        {
            unit.wave = 0;
        }
        units.extend(pools.into_values());
        (waves, units)
    }

    /// Records in the ledger that `tenants`' storage has generation `generation`.
    async fn applied(&self, tenants: &[TenantId], generation: i64) -> Result<(), Error> {
        let bumped = tenants.to_vec();
        self.blocking(move |store| {
            store.write(|tx| {
                for tenant in &bumped {
                    let moved = tx.execute(
                        "UPDATE placements SET schema_version = ?2 WHERE tenant_id = ?1 AND schema_version < ?2",
                        params![tenant.as_str(), generation],
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
        for tenant in tenants {
            self.inner().routes.forget(tenant);
        }
        Ok(())
    }

    pub(super) async fn record_pass(
        &self,
        generation: i64,
        wave: Option<String>,
        failed: usize,
        last_error: Option<String>,
    ) -> Result<(), Error> {
        let now = self.inner().clock.now();
        self.blocking(move |store| {
            store.write(|tx| {
                crate::rows::rollouts::record_pass(
                    tx,
                    generation,
                    wave.as_deref(),
                    failed as i64,
                    last_error.as_deref(),
                    now,
                )
            })
        })
        .await
    }

    fn rollout_event(&self, action: &str, target: &str, detail: String) {
        self.inner().audit.record(crate::AuditEvent {
            at: self.inner().clock.now(),
            actor: "system:rollout".into(),
            action: action.to_owned(),
            target: target.to_owned(),
            tenant: TenantId::parse(target).ok(),
            outcome: if action.ends_with("failure") {
                "failed".into()
            } else {
                "ok".into()
            },
            request_id: String::new(),
            detail: Some(detail),
        });
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
