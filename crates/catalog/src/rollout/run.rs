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
/// A chunk of a wave is this many rounds of the wave's parallelism: what runs under one
/// holding of the schema lock.
const CHUNK_ROUNDS: usize = 8;
/// How long a request for a collection or field its tenant's storage does not have yet waits
/// for its own placement to be brought up ahead of the rollout ([`Catalog::roll_out_first`]).
const FIRST_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);
/// A failure ratio is judged only once this many units were tried in the pass.
const RATIO_AFTER: usize = 10;

/// When a pass stops: more than `max_failures` failures, or a failure ratio above
/// `max_ratio` once [`RATIO_AFTER`] units were tried.
#[derive(Debug, Clone, Copy)]
struct FailurePolicy {
    max_failures: Option<u64>,
    max_ratio: Option<f64>,
}

impl FailurePolicy {
    fn of(options: &crate::CatalogOptions) -> Self {
        FailurePolicy {
            max_failures: options.rollout_max_failures,
            max_ratio: options.rollout_max_failure_ratio,
        }
    }

    fn stops(&self, tally: &Tally) -> bool {
        let by_count = self
            .max_failures
            .is_some_and(|max| tally.failed as u64 > max);
        let tried = tally.done + tally.failed;
        let by_ratio = self
            .max_ratio
            .is_some_and(|max| tried >= RATIO_AFTER && tally.failed as f64 / tried as f64 > max);
        by_count || by_ratio
    }

    fn describe(&self) -> String {
        match (self.max_failures, self.max_ratio) {
            (Some(n), Some(r)) => format!("the limits are {n} failures or a ratio of {r}"),
            (Some(n), None) => format!("the limit is {n}"),
            (None, Some(r)) => format!("the limit is a failure ratio of {r}"),
            (None, None) => "no limit".to_owned(),
        }
    }
}

/// What a pass has done so far.
#[derive(Debug, Default)]
struct Tally {
    done: usize,
    failed: usize,
    last_error: Option<String>,
}

/// The pace `GET /v1/rollouts/{id}` shows while a pass runs here; cleared however it ends.
struct PaceShown<'a>(&'a parking_lot::Mutex<Option<bulkhead_api::MovePace>>);

impl Drop for PaceShown<'_> {
    fn drop(&mut self) {
        *self.0.lock() = None;
    }
}

/// Whether the newest rollout was stopped or cancelled: a pass then applies nothing.
fn halted(tx: &dyn crate::store::Tx) -> crate::store::StoreResult<bool> {
    Ok(matches!(
        crate::rows::rollouts::newest_state(tx)?.as_deref(),
        Some("stopped" | "cancelled")
    ))
}

/// Placements whose storage is changed together: a pooled namespace's tenants, or one
/// dedicated tenant.
struct Unit {
    /// Each tenant with the epoch of the placement planned for it.
    tenants: Vec<(TenantId, i64)>,
    placement: Placement,
    /// Index in the pass's wave order.
    wave: usize,
}

impl Unit {
    /// This unit with only the tenants in `current` (those still as planned); `None` when
    /// none is left.
    fn narrowed(&self, current: &[TenantId]) -> Option<Unit> {
        let tenants: Vec<(TenantId, i64)> = self
            .tenants
            .iter()
            .filter(|(t, _)| current.contains(t))
            .cloned()
            .collect();
        (!tenants.is_empty()).then(|| Unit {
            tenants,
            placement: self.placement.clone(),
            wave: self.wave,
        })
    }
}

impl Catalog {
    /// Brings every placement behind the current schema generation up to date, unless the
    /// newest rollout was stopped (the failure policy) or cancelled: then placements behind
    /// keep their definitions until it is resumed or a later change starts a new rollout.
    ///
    /// The pass takes the schema lock a chunk of units at a time, never for the whole pass:
    /// tenant creations, deletions and moves wait for one chunk at most. Each chunk checks
    /// again, under the lock, that its placements are still the ones planned (same epoch,
    /// still live, not moving, still behind), and a stop or cancel between chunks ends the
    /// pass.
    pub(crate) async fn rollout_pending(&self) -> Result<(), Error> {
        let planned = {
            let _schema = self.lock_schema().await?;
            self.blocking(|store| {
                store.read(|tx| {
                    if halted(tx)? {
                        return Ok(None);
                    }
                    let g = crate::rows::collections::generation(tx)?;
                    let collections = crate::rows::collections::read_collections(tx)?;
                    let rows = tx.query(
                        &format!("SELECT t.id, t.tier, t.labels FROM tenants t JOIN placements p ON p.tenant_id = t.id \
                         WHERE p.schema_version < ?1 AND t.status NOT IN ('provisioning', 'deleting') \
                         {} ORDER BY t.id", crate::rows::rollouts::NOT_MOVING),
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
                    Ok(Some((g, collections, behind)))
                })
            })
            .await?
        };
        let Some((generation, collections, behind)) = planned else {
            return Ok(());
        };
        if behind.is_empty() {
            return self.record_pass(generation, None, 0, None).await;
        }
        let (waves, units) = self.plan_waves(behind);
        let collections = Arc::new(collections);
        let policy = FailurePolicy::of(&self.inner().options);
        let mut tally = Tally::default();
        // Each domain's pace, from its requests' latency just before the pass.
        let pace = self.inner().options.rollout_pace;
        let mut throttles: BTreeMap<DomainName, bulkhead_pace::Throttle> = BTreeMap::new();
        let _shown = PaceShown(&self.inner().rollout_pace);
        // Steps run here, on the idle-priority runtime, unless that is starved.
        let lane = crate::background::Lane::new(
            self.inner().main.clone(),
            crate::background::Priority::Idle,
        );
        'waves: for (index, wave) in waves.iter().enumerate() {
            if policy.stops(&tally) {
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
            let domains: std::collections::BTreeSet<&DomainName> =
                in_wave.iter().map(|u| &u.placement.domain).collect();
            let width = per_domain * domains.len();
            if let Some(pace) = pace {
                for domain in &domains {
                    throttles.entry((*domain).clone()).or_insert_with(|| {
                        pace.throttle(Arc::clone(&self.inner().latency), domain)
                    });
                }
            }
            for chunk in in_wave.chunks(width * CHUNK_ROUNDS) {
                let (schema, _no_backup) = self.lock_schema_between_backups().await?;
                let began = std::time::Instant::now();
                let planned: Vec<(TenantId, i64)> = chunk
                    .iter()
                    .flat_map(|u| u.tenants.iter().cloned())
                    .collect();
                let (stop, current) = self
                    .blocking(move |store| {
                        store.read(|tx| {
                            if halted(tx)? {
                                return Ok((true, Vec::new()));
                            }
                            let mut current = Vec::new();
                            for (tenant, epoch) in &planned {
                                if crate::rows::rollouts::still_behind(
                                    tx, tenant, *epoch, generation,
                                )? {
                                    current.push(tenant.clone());
                                }
                            }
                            Ok((false, current))
                        })
                    })
                    .await?;
                if stop {
                    // Stopped or cancelled meanwhile (here or on another server).
                    break 'waves;
                }
                let work: Vec<Unit> = chunk
                    .iter()
                    .filter_map(|unit| unit.narrowed(&current))
                    .collect();
                let limits: BTreeMap<DomainName, Arc<tokio::sync::Semaphore>> = domains
                    .iter()
                    .map(|d| {
                        (
                            (*d).clone(),
                            Arc::new(tokio::sync::Semaphore::new(per_domain)),
                        )
                    })
                    .collect();
                let lane = &lane;
                let mut results = futures_util::stream::iter(work.into_iter().map(|unit| {
                    let limit = Arc::clone(&limits[&unit.placement.domain]);
                    (self.clone(), Arc::clone(&collections), limit, unit)
                }))
                .map(|(catalog, collections, limit, unit)| async move {
                    let _permit = limit.acquire_owned().await;
                    let Unit {
                        tenants, placement, ..
                    } = unit;
                    let (first, wanted) = (tenants[0].0.clone(), catalog.schema_wanted());
                    // The change and its line in the ledger, in one step: where the step
                    // runs (idle or normal priority), the catalog write runs too.
                    let step = {
                        let tenants = tenants.clone();
                        async move {
                            catalog.ensure_all(&first, &placement, &collections).await?;
                            catalog.applied(&tenants, generation).await
                        }
                    };
                    // While a request waits for the schema lock this pass holds (a tenant
                    // being created or deleted), its steps do not wait for an idle CPU.
                    let outcome = if wanted {
                        lane.urgent(step).await
                    } else {
                        lane.bulk(step).await
                    };
                    (tenants, outcome)
                })
                .buffer_unordered(width);
                while let Some((tenants, outcome)) = results.next().await {
                    let stopped = policy.stops(&tally);
                    match outcome {
                        // Stopped: what is still running finishes and is recorded.
                        Ok(()) => tally.done += 1,
                        Err(_) if stopped => tally.failed += 1,
                        Err(e) => {
                            tally.failed += 1;
                            let first = &tenants[0].0;
                            tracing::error!(tenant = %first, error = %e, "schema rollout failed for placement; will retry");
                            if tally.failed <= AUDITED_FAILURES {
                                self.rollout_event(
                                    "rollout.failure",
                                    first.as_str(),
                                    format!("wave {wave}: {}", e.message),
                                );
                            }
                            tally.last_error = Some(format!("{first}: {}", e.message));
                        }
                    }
                }
                drop(schema);
                if policy.stops(&tally) {
                    break 'waves;
                }
                // Rest as the chunk's busiest domain asks, outside the schema lock.
                let busy = began.elapsed();
                let busy_domains: std::collections::BTreeSet<&DomainName> =
                    chunk.iter().map(|unit| &unit.placement.domain).collect();
                let slowest = busy_domains
                    .into_iter()
                    .filter_map(|domain| throttles.get(domain))
                    .map(|throttle| (throttle.rest_after(busy), throttle))
                    .max_by_key(|(rest, _)| *rest);
                let rest = slowest.map(|(rest, _)| rest).unwrap_or_default();
                *self.inner().rollout_pace.lock() =
                    slowest.map(|(_, throttle)| crate::paced::view(throttle.pace()));
                if !rest.is_zero() {
                    tokio::time::sleep(rest).await;
                }
            }
        }
        let failed = tally.failed;
        if policy.stops(&tally) {
            let reason = format!(
                "stopped after {failed} failures ({}); last: {}",
                policy.describe(),
                tally.last_error.as_deref().unwrap_or("unknown")
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
        if lane.raised_steps() > 0 {
            tracing::info!(
                generation,
                steps = lane.raised_steps(),
                "schema rollout steps taken at normal priority (the background was starved, or a request waited for the schema lock)"
            );
        }
        let wave = (failed > 0).then(|| waves.last().cloned()).flatten();
        self.record_pass(generation, wave, failed, tally.last_error)
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
                unit.tenants.push((tenant, placement.epoch));
            } else {
                units.push(Unit {
                    tenants: vec![(tenant, placement.epoch)],
                    placement,
                    wave,
                });
            }
        }
        // A canary by count: the first dedicated placements (by tenant id) join the canary wave.
        units.sort_by(|a, b| a.tenants[0].0.cmp(&b.tenants[0].0));
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

    /// Records in the ledger that `tenants`' storage has generation `generation`: only for
    /// the placement that was changed (its epoch), never for a later one under the same id.
    async fn applied(&self, tenants: &[(TenantId, i64)], generation: i64) -> Result<(), Error> {
        let bumped = tenants.to_vec();
        self.blocking(move |store| {
            store.write(|tx| {
                for (tenant, epoch) in &bumped {
                    let moved = tx.execute(
                        "UPDATE placements SET schema_version = ?2 WHERE tenant_id = ?1 AND epoch = ?3 AND schema_version < ?2",
                        params![tenant.as_str(), generation, *epoch],
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
        for (tenant, _) in tenants {
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

    /// Brings one placement to the newest generation now, outside any pass: a move does this
    /// before it copies, so the move's definitions are the newest and a shared target that a
    /// rollout already changed takes its pages. The caller holds the schema lock. Returns the
    /// placement as it now is.
    pub(crate) async fn bring_to_newest_schema(
        &self,
        tenant: &TenantId,
        placement: Placement,
    ) -> Result<Placement, Error> {
        let (generation, collections) = self
            .blocking(|store| {
                store.read(|tx| {
                    Ok((
                        crate::rows::collections::generation(tx)?,
                        crate::rows::collections::read_collections(tx)?,
                    ))
                })
            })
            .await?;
        if placement.schema_version >= generation {
            return Ok(placement);
        }
        tracing::info!(tenant = %tenant, from = placement.schema_version, to = generation, "bringing a placement to the newest schema before its move");
        let _no_backup = self.inner().backups.schema_change().await;
        self.ensure_all(tenant, &placement, &collections).await?;
        self.applied(&[(tenant.clone(), placement.epoch)], generation)
            .await?;
        Ok(Placement {
            schema_version: generation,
            ..placement
        })
    }

    /// A request needs a collection or field its tenant's placement does not have yet (a
    /// change is rolling out and has not reached it): that placement is brought to the newest
    /// schema now, ahead of the rollout, so the request goes on instead of answering
    /// `503 schema_rolling_out`. Within [`FIRST_WITHIN`]; not for a moving tenant (its move
    /// brings its target up), nor for another life or placement than the request's, nor
    /// while a backup runs (beyond the wait). True when the placement is now at the newest
    /// generation: the caller resolves its tenant again.
    pub(crate) async fn roll_out_first(&self, scope: &bulkhead_core::access::TenantScope) -> bool {
        let (tenant, seen) = (scope.tenant().clone(), scope.placement().clone());
        let run = async {
            let _schema = self.lock_schema().await.ok()?;
            let id = tenant.clone();
            let current = self
                .blocking(move |store| store.read(|tx| crate::rows::tenants::read_tenant(tx, &id)))
                .await
                .ok()??;
            let (row, placement) = current;
            if placement.incarnation != seen.incarnation
                || placement.epoch != seen.epoch
                || !matches!(
                    row.status,
                    bulkhead_core::model::TenantStatus::Active
                        | bulkhead_core::model::TenantStatus::Suspended
                )
            {
                return None;
            }
            tracing::info!(tenant = %tenant, from = placement.schema_version, "a request brings its tenant's placement up ahead of the rollout");
            self.bring_to_newest_schema(&tenant, placement).await.ok()
        };
        let done = matches!(tokio::time::timeout(FIRST_WITHIN, run).await, Ok(Some(_)));
        if done {
            self.inner().routes.forget(scope.tenant());
        }
        done
    }

    /// The schema lock for a chunk of a pass, taken while no backup runs (see
    /// `backup.rs`): the placements' storage must not get ahead of a backup's catalog. While a
    /// backup runs the pass waits without the schema lock, so creations and deletions go on,
    /// and its view says why.
    async fn lock_schema_between_backups(
        &self,
    ) -> Result<
        (
            crate::schema_lock::SchemaGuard<'_>,
            tokio::sync::OwnedRwLockReadGuard<()>,
        ),
        Error,
    > {
        loop {
            let schema = self.lock_schema().await?;
            if let Some(no_backup) = self.inner().backups.schema_change_now() {
                return Ok((schema, no_backup));
            }
            drop(schema);
            tracing::info!("schema rollout waits for a running backup");
            let shown = self.inner().rollout_pace.lock().take();
            *self.inner().rollout_pace.lock() = Some(bulkhead_api::MovePace {
                duty: 0.0,
                state: "waiting".into(),
                group: None,
                p99_ms: None,
                baseline_ms: None,
                ratio: None,
                target_ratio: shown.as_ref().map_or(0.0, |p| p.target_ratio),
                samples: 0,
                reason: "a backup is running: placements change once it is done".into(),
            });
            drop(self.inner().backups.schema_change().await);
            *self.inner().rollout_pace.lock() = shown;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(done: usize, failed: usize) -> Tally {
        Tally {
            done,
            failed,
            last_error: None,
        }
    }

    #[test]
    fn a_count_limit_stops_past_it() {
        let policy = FailurePolicy {
            max_failures: Some(2),
            max_ratio: None,
        };
        assert!(!policy.stops(&tally(100, 2)));
        assert!(policy.stops(&tally(100, 3)));
    }

    #[test]
    fn a_ratio_is_judged_only_after_enough_tries() {
        let policy = FailurePolicy {
            max_failures: None,
            max_ratio: Some(0.1),
        };
        // 3 of 4 failed, but too few tried to judge.
        assert!(!policy.stops(&tally(1, 3)));
        assert!(policy.stops(&tally(8, 2)), "2 of 10 is above 0.1");
        assert!(!policy.stops(&tally(9, 1)), "1 of 10 is not above 0.1");
        assert!(
            !FailurePolicy {
                max_failures: None,
                max_ratio: None
            }
            .stops(&tally(0, 1000))
        );
    }
}
