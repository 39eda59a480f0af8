//! The move executor: one task per move, driving it through its phases.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bulkhead_core::access::TenantRoute;
use bulkhead_core::error::Error;
use bulkhead_core::model::{MovePhase, Placement, TenantStatus, WriteState};
use bulkhead_core::schema::Collection;
use bulkhead_engine::PlacementRef;
use serde_json::json;

use super::copy::{self, Sides};
use super::end::forget_move_state;
use super::pace::Pacer;
use super::{Live, MoveRow, phase_error, read_move};
use crate::Catalog;
use crate::audit::AuditEvent;
use crate::background::{Lane, Priority};
use crate::rows::tenants::{next_epoch, write_placement};
use crate::store::params;

/// Attempts to take the freeze before the move gives up.
const FREEZE_ATTEMPTS: usize = 3;

impl Catalog {
    /// A move's audit record; its detail always names the tenant's life the move belongs to.
    pub(super) fn move_event(
        &self,
        row: &MoveRow,
        action: &str,
        mut detail: serde_json::Value,
    ) -> AuditEvent {
        if let Some(fields) = detail.as_object_mut() {
            fields.insert("incarnation".into(), json!(row.source.incarnation));
        }
        AuditEvent {
            at: self.inner().clock.now(),
            actor: format!("system:move/{}", row.id),
            action: action.to_owned(),
            target: row.tenant.as_str().to_owned(),
            tenant: Some(row.tenant.clone()),
            outcome: "ok".into(),
            request_id: row.id.clone(),
            detail: Some(detail.to_string()),
        }
    }

    /// Records a phase change (and the progress so far), audited in the same transaction.
    async fn enter_phase(
        &self,
        row: &mut MoveRow,
        phase: MovePhase,
        live: &Live,
    ) -> Result<(), Error> {
        row.phase = phase;
        *live.phase.lock() = Some(phase);
        // One span per phase entered (exported as a trace when traces are on).
        tracing::info_span!("move.phase", r#move = %row.id, tenant = %row.tenant, phase = %phase)
            .in_scope(|| tracing::debug!("move entered a phase"));
        row.rows_copied = live.copied.load(Ordering::Relaxed);
        row.rows_total = live.total.load(Ordering::Relaxed);
        row.rows_verified = live.verified.load(Ordering::Relaxed);
        let event = self.move_event(
            row,
            &format!("move.{phase}"),
            json!({"move": row.id, "rows_copied": row.rows_copied, "rows_verified": row.rows_verified}),
        );
        self.save_progress(row, Some(event)).await?;
        if let Some((hold, wait)) = self.inner().options.moves.hold
            && hold == phase
        {
            tracing::warn!(r#move = %row.id, %phase, "holding the move (BULKHEAD_MOVE_HOLD)");
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    async fn save_progress(&self, row: &MoveRow, event: Option<AuditEvent>) -> Result<(), Error> {
        let now = self.inner().clock.now();
        let r = row.clone();
        self.blocking(move |store| {
            store.write(|tx| {
                tx.execute(
                    "UPDATE moves SET phase = ?2, rows_copied = ?3, rows_total = ?4, rows_verified = ?5, updated_at = ?6, copy_ms = ?7 WHERE id = ?1",
                    params![&r.id, r.phase.as_str(), r.rows_copied as i64, r.rows_total as i64, r.rows_verified as i64, now.as_micros(), r.copy_ms.map(|ms| ms as i64)],
                )?;
                if let Some(event) = &event {
                    crate::rows::audit::insert(tx, event)?;
                }
                Ok(())
            })
        })
        .await
    }

    pub(super) fn check_cancel(live: &Live) -> Result<(), Error> {
        match live.cancel.lock().clone() {
            Some(why) => Err(Error::conflict("move_cancelled", why)),
            None => Ok(()),
        }
    }

    /// Runs a move to its end: done, or rolled back with the reason. When storage fails while
    /// the move ends (the catalog's or a domain's server restarting), ending it is retried
    /// until it succeeds: a move never stays unfinished while its server runs.
    pub(crate) async fn run_move(self, id: String, live: Arc<Live>) {
        self.watch_cancel(&id, &live);
        match self.read_move(&id).await {
            Ok(Some(mut row)) => match self.drive(&mut row, &live).await {
                Ok(()) => {}
                Err(e) if row.phase.is_switched() => {
                    tracing::warn!(r#move = %id, error = %e, "cleaning after the switch failed; retrying");
                    self.until_ended(&id, || self.clean_source(&row)).await;
                }
                Err(e) => {
                    tracing::warn!(r#move = %id, phase = %row.phase, error = %e, "move failed; rolling back");
                    self.until_ended(&id, || self.roll_back(&row, &e.message))
                        .await;
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::error!(r#move = %id, error = %e, "could not read the move; retried at next start");
            }
        }
        self.inner().moves.live.lock().remove(&id);
    }

    fn collections(&self) -> Vec<Arc<Collection>> {
        self.collections_snapshot().values().cloned().collect()
    }

    async fn drive(&self, row: &mut MoveRow, live: &Live) -> Result<(), Error> {
        let settings = self.inner().options.moves.clone();
        let gate = self.inner().moves.gates.get(&row.tenant);
        let lane = Lane::new(self.inner().main.clone(), Priority::Low);
        let (tenant, source_placement) = self
            .load_tenant(&row.tenant)
            .await?
            .ok_or_else(|| Error::not_found("tenant_not_found", "tenant not found"))?;
        let target_ref = PlacementRef::of(&row.tenant, &row.target);
        let sides = Sides {
            source_engine: self.engine(&row.source.domain)?,
            source: self
                .inner()
                .move_authority
                .source_scope(row, &route(&tenant, &source_placement)),
            target_engine: self.engine(&row.target.domain)?,
            target: self
                .inner()
                .move_authority
                .target_scope(row, &route(&tenant, &row.target)),
            defs: Arc::default(),
        };

        self.enter_phase(row, MovePhase::Provisioning, live).await?;
        let sides = {
            let _schema = self.lock_schema().await?;
            // The source at the newest generation: a rollout still on its way to it would
            // leave the move copying with older definitions than a shared target (a pool a
            // rollout already changed) has. No rollout touches it from here on.
            let (_, source_now) = self
                .load_tenant(&row.tenant)
                .await?
                .ok_or_else(|| Error::not_found("tenant_not_found", "tenant not found"))?;
            let source_now = self
                .bring_to_newest_schema(&row.tenant, source_now)
                .await
                .map_err(|e| phase_error(MovePhase::Provisioning, e))?;
            let defs = self.definitions_at(source_now.schema_version);
            let collections: Vec<Collection> = defs.iter().map(|c| (**c).clone()).collect();
            sides
                .target_engine
                .provision(&target_ref, &collections)
                .await
                .map_err(|e| phase_error(MovePhase::Provisioning, e.into()))?;
            Sides {
                defs: Arc::new(defs),
                ..sides
            }
        };
        // Record every write from here on; the exclusive pass waits out writes that began
        // before tracking did.
        gate.track();
        let _untrack = Untrack(&gate);
        gate.freeze(Duration::from_secs(60)).await.ok_or_else(|| {
            Error::conflict(
                "move_freeze_timeout",
                "writes in flight did not finish within 60 s",
            )
        })?;
        // Shared catalog: every other server journals too, and has no write in flight that
        // resolved the route from before the move.
        let silent_after = self.inner().options.moves.silent_after;
        if !self
            .await_stage(
                &row.id,
                "track",
                silent_after + Duration::from_secs(5),
                false,
            )
            .await?
        {
            return Err(Error::conflict(
                "move_servers_unresponsive",
                "servers sharing the catalog did not confirm they journal the tenant's writes",
            ));
        }

        // The neighbours' baseline is the moments before the copy.
        let tier_name = tenant.tier.clone();
        let tier_pace = self
            .blocking(move |store| store.read(|tx| crate::rows::tiers::read_tier(tx, &tier_name)))
            .await?
            .map(|t| t.pace)
            .unwrap_or_default();
        let pacer = Pacer::for_move(
            Arc::clone(&self.inner().latency),
            row.tenant.as_str(),
            &source_placement,
            &row.target,
            &tier_pace,
            &settings,
        );
        *live.pace.lock() = Some(pacer.clone());
        self.enter_phase(row, MovePhase::Copying, live).await?;
        let mut total = 0;
        for c in sides.defs.iter() {
            let (engine, scope, c) = (
                Arc::clone(&sides.source_engine),
                sides.source.clone(),
                Arc::clone(c),
            );
            total += lane
                .bulk(async move { copy::count(engine.as_ref(), &scope, &c).await })
                .await?;
        }
        live.total.store(total, Ordering::Relaxed);
        live.copy_clock.lock().0 = Some(Instant::now());
        let mut saved = Instant::now();
        let mut warned_chase = false;
        for c in sides.defs.iter() {
            let (engine, scope, collection) = (
                Arc::clone(&sides.source_engine),
                sides.source.clone(),
                Arc::clone(c),
            );
            let Some(upto) = lane
                .bulk(async move { copy::last_id(engine.as_ref(), &scope, &collection).await })
                .await?
            else {
                continue;
            };
            let mut after = None;
            loop {
                Catalog::check_cancel(live)?;
                // Writers adding ids between the cursor and the bound faster than the paced
                // copy takes them would keep it copying for good. Once it has copied well past
                // what there was, it stops resting and runs at normal priority: the move must
                // finish (its neighbours come first only while it can).
                let chasing =
                    live.copied.load(Ordering::Relaxed) > chase_after(total, settings.chunk);
                if chasing && !warned_chase {
                    warned_chase = true;
                    tracing::info!(tenant = %row.tenant, copied = live.copied.load(Ordering::Relaxed), total, "the copy is chasing the tenant's writers: no more pacing until it ends");
                }
                let started = Instant::now();
                // One page read from the source and restored into the target: a bulk step,
                // shorter while the pace is slowed.
                let chunk = if chasing {
                    settings.chunk
                } else {
                    pacer.page(settings.chunk)
                };
                let (catalog, step_sides) = (self.clone(), sides.clone());
                let (collection, from, bound) = (Arc::clone(c), after.take(), upto.clone());
                let step = async move {
                    let page = copy::page(
                        step_sides.source_engine.as_ref(),
                        &step_sides.source,
                        &collection,
                        from.as_ref(),
                        Some(&bound),
                        chunk,
                    )
                    .await?;
                    let (n, last) = (page.len(), page.last().map(|r| r.id.clone()));
                    if n > 0 {
                        copy::restore(&catalog, &step_sides, &collection, page).await?;
                    }
                    Ok((n, last))
                };
                let (n, last) = if chasing {
                    lane.normal(step).await?
                } else {
                    lane.bulk(step).await?
                };
                // The work the step did, for the pace: not the waits below.
                let busy = started.elapsed();
                after = last;
                live.copied.fetch_add(n as u64, Ordering::Relaxed);
                if saved.elapsed() > Duration::from_secs(1) {
                    row.rows_copied = live.copied.load(Ordering::Relaxed);
                    row.rows_total = live.total.load(Ordering::Relaxed).max(row.rows_copied);
                    self.save_progress(row, None).await?;
                    saved = Instant::now();
                }
                if let Some(rate) = settings.copy_rate.filter(|r| *r > 0 && !chasing) {
                    let due = Duration::from_secs_f64(n as f64 / rate as f64);
                    if let Some(rest) = due.checked_sub(busy) {
                        tokio::time::sleep(rest).await;
                    }
                }
                if n < chunk as usize || after.as_ref() == Some(&upto) {
                    break;
                }
                // Let the neighbours' requests in between pages.
                if !chasing {
                    pacer.rest_after(busy).await;
                }
            }
        }
        let took = {
            let mut clock = live.copy_clock.lock();
            clock.1 = clock.0.map(|s| s.elapsed());
            clock.1.unwrap_or_default()
        };
        row.copy_ms = Some(took.as_millis() as u64);

        self.enter_phase(row, MovePhase::CatchingUp, live).await?;
        self.catch_up(&lane, &sides, &gate, &row.tenant, live)
            .await?;

        self.enter_phase(row, MovePhase::Verifying, live).await?;
        let mut checks = serde_json::Map::new();
        for c in sides.defs.iter().cloned() {
            Catalog::check_cancel(live)?;
            let cmp = copy::compare(&sides, &c, settings.chunk, &pacer, &lane).await?;
            // Every difference must be a record written since the comparison began (it is
            // in the journal, and the next catch-up copies it). Any other is a copy fault.
            let journal = self.drain_journal(&gate, &row.tenant).await?;
            let written = journal.ids.get(&c.name);
            let unexplained: Vec<_> = cmp
                .differing
                .iter()
                .filter(|id| written.is_none_or(|w| !w.contains(*id)))
                .collect();
            if let Some(first) = unexplained.first() {
                return Err(Error::conflict(
                    "move_verification_failed",
                    format!(
                        "{} records of '{}' differ between source and target without a write explaining it (first: {first})",
                        unexplained.len(),
                        c.name
                    ),
                ));
            }
            // The drained ids are synced here, as a catch-up round would.
            self.sync_journal(&lane, &sides, journal).await?;
            live.verified.fetch_add(cmp.source_rows, Ordering::Relaxed);
            checks.insert(
                c.name.to_string(),
                json!({
                    "source_rows": cmp.source_rows, "target_rows": cmp.target_rows,
                    "source_checksum": format!("{:016x}", cmp.source_sum),
                    "target_checksum": format!("{:016x}", cmp.target_sum),
                    "written_during_check": cmp.differing.len(),
                }),
            );
        }
        let event = self.move_event(row, "move.verified", serde_json::Value::Object(checks));
        self.save_progress(row, Some(event)).await?;
        self.catch_up(&lane, &sides, &gate, &row.tenant, live)
            .await?;

        // The freeze: writes wait at the gate while the last changes are synced and checked
        // and the routing entry switches. The schema lock is taken first, outside the freeze,
        // so no rollout changes collections in between.
        //
        // Shared catalog: the frozen route is announced, and the freeze holds only once every
        // other server has acknowledged it (their writes then wait too, none in flight).
        let mut attempt = 0;
        let (schema, frozen, started) = loop {
            Catalog::check_cancel(live)?;
            let schema = self.lock_schema().await?;
            let started = Instant::now();
            if let Some(frozen) = gate.freeze(settings.freeze_wait).await {
                let stage = format!("freeze{attempt}");
                self.set_write_state(row, WriteState::Frozen, Some(&stage))
                    .await?;
                let left = settings.freeze_wait.saturating_sub(started.elapsed());
                if self.await_stage(&row.id, &stage, left, true).await? {
                    break (schema, frozen, started);
                }
                self.set_write_state(row, WriteState::Open, None).await?;
                drop(frozen);
            }
            drop(schema);
            attempt += 1;
            if attempt >= FREEZE_ATTEMPTS {
                return Err(Error::conflict(
                    "move_freeze_timeout",
                    format!(
                        "writes in flight (on this server or another sharing the catalog) did not finish within {} ms, {FREEZE_ATTEMPTS} times",
                        settings.freeze_wait.as_millis()
                    ),
                ));
            }
            self.catch_up(&lane, &sides, &gate, &row.tenant, live)
                .await?;
        };
        self.enter_phase(row, MovePhase::Frozen, live).await?;
        // Writes are held now: the last sync and the exact counts run at normal priority.
        // The newest definitions: the schema lock is held, so none can change before the
        // switch stamps the target with the generation they belong to.
        let newest = self.collections();
        let last = self.journal_work(&sides, self.drain_journal(&gate, &row.tenant).await?)?;
        let (frozen_sides, target, catalog) = (sides.clone(), target_ref.clone(), self.clone());
        let rechecked = lane
            .normal(async move {
                let sides = frozen_sides;
                let all = Arc::clone(&sides.defs);
                let mut rechecked = 0u64;
                for (c, ids) in &last {
                    copy::sync_ids(&catalog, &sides, c, ids).await?;
                    let left = copy::differing(&sides, c, ids).await?;
                    if let Some(first) = left.first() {
                        return Err(Error::conflict(
                            "move_verification_failed",
                            format!(
                                "record {first} of '{}' differs after the final sync",
                                c.name
                            ),
                        ));
                    }
                    rechecked += ids.len() as u64;
                }
                for c in all.iter() {
                    let s = copy::count(sides.source_engine.as_ref(), &sides.source, c).await?;
                    let t = copy::count(sides.target_engine.as_ref(), &sides.target, c).await?;
                    if s != t {
                        return Err(Error::conflict(
                            "move_verification_failed",
                            format!(
                                "'{}' has {s} records in the source but {t} in the target",
                                c.name
                            ),
                        ));
                    }
                }
                // Checked with the move's definitions; now the target takes every change
                // made since (writes are held: nothing lands in between).
                for c in &newest {
                    sides
                        .target_engine
                        .ensure_collection(&target, c)
                        .await
                        .map_err(|e| phase_error(MovePhase::Frozen, e.into()))?;
                }
                Ok(rechecked)
            })
            .await?;
        live.verified.fetch_add(rechecked, Ordering::Relaxed);
        // A cancel asked for while frozen is honoured: the move rolls back rather than switch.
        Catalog::check_cancel(live)?;
        let freeze_ms = self.switch(row, live, started).await?;
        if let Some((MovePhase::Switched, wait)) = self.inner().options.moves.hold {
            // Crash tests: stop right after the switch, with writes still held.
            tokio::time::sleep(wait).await;
        }
        drop(frozen);
        drop(schema);
        let raised_steps = lane.raised_steps();
        tracing::info!(r#move = %row.id, tenant = %row.tenant, freeze_ms, raised_steps, "move switched");

        self.enter_phase(row, MovePhase::Cleaning, live).await?;
        tokio::time::sleep(settings.drain_grace).await;
        self.clean_source(row).await
    }

    /// Sets the routing entry's write state; `stage` announces it to the other servers
    /// sharing the catalog, which acknowledge it (`shared`).
    async fn set_write_state(
        &self,
        row: &MoveRow,
        state: WriteState,
        stage: Option<&str>,
    ) -> Result<(), Error> {
        let tenant = row.tenant.clone();
        let announce = stage.map(|s| format!("{}:{s}", row.id));
        self.blocking(move |store| {
            store.write(|tx| {
                tx.execute(
                    "UPDATE placements SET write_state = ?2, epoch = ?3 WHERE tenant_id = ?1",
                    params![tenant.as_str(), state.as_str(), next_epoch(tx)?],
                )?;
                crate::store::changed(tx, "route", tenant.as_str())?;
                if let Some(announce) = &announce {
                    crate::store::changed(tx, "move", announce)?;
                }
                Ok(())
            })
        })
        .await?;
        self.load_tenant(&row.tenant).await?;
        Ok(())
    }

    /// The switch: one catalog transaction points the routing entry at the target, ends the
    /// tenant's `moving` status and records the phase. Returns the freeze's length.
    async fn switch(
        &self,
        row: &mut MoveRow,
        live: &Live,
        frozen_at: Instant,
    ) -> Result<u64, Error> {
        let now = self.inner().clock.now();
        let r = row.clone();
        let verified = live.verified.load(Ordering::Relaxed);
        let event_base = self.move_event(row, "move.switched", json!({}));
        let me = self.server_id().to_owned();
        let freeze_ms = self
            .blocking(move |store| {
                store.write(|tx| {
                    // Only the move's executor switches, and only a move still in force (a
                    // server that adopted it as orphaned may have rolled it back).
                    let current = read_move(tx, &r.id)?;
                    if !current.is_some_and(|m| !m.phase.is_final() && !m.phase.is_switched())
                        || !Catalog::runs_move(tx, &r.id, &me)?
                    {
                        return Err(Error::conflict(
                            "move_adopted",
                            "another server took this move over; it no longer switches here",
                        )
                        .into());
                    }
                    // Fenced by incarnation: a move switches only the life it was started for.
                    let life = crate::rows::tenants::read_tenant(tx, &r.tenant)?.map(|(_, p)| p.incarnation);
                    if life.as_ref() != Some(&r.source.incarnation) {
                        return Err(Error::conflict(
                            "tenant_gone",
                            "the tenant this move was started for no longer exists",
                        )
                        .into());
                    }
                    forget_move_state(tx, &r.id, &r.tenant)?;
                    let generation = crate::rows::collections::generation(tx)?;
                    let placement = Placement {
                        epoch: next_epoch(tx)?,
                        schema_version: generation,
                        write_state: WriteState::Open,
                        ..r.target.clone()
                    };
                    write_placement(tx, &r.tenant, &placement)?;
                    tx.execute("UPDATE tenants SET status = 'active', updated_at = ?2 WHERE id = ?1", params![r.tenant.as_str(), now.as_micros()])?;
                    if let Some(tier) = &r.target_tier {
                        tx.execute("UPDATE tenants SET tier = ?2 WHERE id = ?1", params![r.tenant.as_str(), tier.as_str()])?;
                    }
                    let freeze_ms = frozen_at.elapsed().as_millis() as i64;
                    tx.execute(
                        "UPDATE moves SET phase = 'switched', freeze_ms = ?2, rows_verified = ?3, updated_at = ?4 WHERE id = ?1",
                        params![&r.id, freeze_ms, verified as i64, now.as_micros()],
                    )?;
                    let mut event = event_base;
                    event.detail = Some(json!({"move": r.id, "placement": placement, "freeze_ms": freeze_ms}).to_string());
                    crate::rows::audit::insert(tx, &event)?;
                    crate::store::changed(tx, "route", r.tenant.as_str())?;
                    Ok(freeze_ms as u64)
                })
            })
            .await?;
        row.phase = MovePhase::Switched;
        row.freeze_ms = Some(freeze_ms);
        self.load_tenant(&row.tenant).await?;
        Ok(freeze_ms)
    }
}

fn route(tenant: &bulkhead_core::model::Tenant, placement: &Placement) -> TenantRoute {
    TenantRoute {
        tenant: tenant.id.clone(),
        tier: tenant.tier.clone(),
        status: TenantStatus::Active,
        placement: placement.clone(),
    }
}

/// Stops journaling when the executor ends, however it ends.
struct Untrack<'a>(&'a super::gate::Gate);

impl Drop for Untrack<'_> {
    fn drop(&mut self) {
        self.0.untrack();
    }
}

/// Rows copied past which a copy is chasing its tenant's writers rather than copying what
/// there was: a quarter more than the count at the start, and four pages.
fn chase_after(total: u64, chunk: u32) -> u64 {
    total + total / 4 + 4 * u64::from(chunk)
}
