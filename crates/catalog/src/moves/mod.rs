//! Live moves: a tenant changes isolation model, domain or engine while it keeps serving.
//!
//! A move is a row in the catalog's `moves` table whose phase only moves forward:
//! planned → provisioning → copying → catching_up → verifying → frozen → switched → cleaning →
//! done, or → rolled_back from any phase before `switched`. The routing entry keeps pointing at
//! the source until one catalog transaction points it at the target (`switched`), so at every
//! instant the tenant has exactly one home:
//!
//! - before the switch, a failure, a cancel or a restart rolls back: the target is destroyed
//!   and the source, which took every write, stays the home;
//! - from the switch on, the target is the home; a restart finishes cleaning the source.
//!
//! Reads never wait. Writes pass the tenant's gate (`gate.rs`): the executor learns from it
//! which records changed during the copy, and holds writes only for the final sync, the last
//! verification and the switch.

mod catchup;
mod copy;
mod end;
mod gate;
mod pace;
mod run;
pub(crate) mod shared;
mod table;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bulkhead_api::{MoveListQuery, MoveView, Page, StartMove};
use bulkhead_core::access::ControlAction;
use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::model::{Isolation, MovePhase, TenantStatus, TierSpec};
use bulkhead_core::time::Timestamp;
use bulkhead_core::{DomainName, Incarnation, TenantId, TierName};
use parking_lot::Mutex;

pub(crate) use gate::{Gates, WriteTicket, tenant_moving};
pub(crate) use shared::CatalogJournal;
use table::{
    MOVE_COLUMNS, decode, list_page, move_not_found, moves_cursor, moves_position, unfinished, view,
};
pub(crate) use table::{MoveRow, not_ended, read_move, uncleaned_sources};

use crate::rows::paging::page_limit;
use crate::rows::tenants::read_tenant;
use crate::store::{StoreResult, malformed, params};
use crate::{Catalog, Ctx};

/// How moves run. The defaults suit production; tests shorten the waits.
#[derive(Debug, Clone)]
pub struct MoveSettings {
    /// How long a write may wait while a moving tenant's writes are held (then `503`).
    pub freeze_wait: Duration,
    /// Records per copy and comparison page.
    pub chunk: u32,
    /// Upper bound on copied records per second (`None`: as fast as the engines go).
    pub copy_rate: Option<u64>,
    /// Most share of time the copy and the comparison may work (0 < duty ≤ 1): after each
    /// page they rest in proportion, so neighbours on the same cores and files get their
    /// turn. Below it, the pace follows the neighbours' latency (`pace.rs`).
    pub duty: f64,
    /// A move keeps its neighbours' p99 within this many times their p99 before it (a
    /// tier's `pace.target_ratio` overrides it).
    pub pace_target: f64,
    /// The least share of time the copy works, however slow its neighbours get (a tier's
    /// `pace.floor` overrides it).
    pub pace_floor: f64,
    /// How long reads that resolved the old placement get before the source is removed.
    pub drain_grace: Duration,
    /// For crash tests: pause this long on entering this phase.
    pub hold: Option<(MovePhase, Duration)>,
    /// Shared catalog: a server out of touch with the catalog this long refuses writes.
    pub lease: Duration,
    /// Shared catalog: a server silent this long no longer counts (for acknowledgements,
    /// and its moves are adopted by another server). Longer than `lease`, with room for a
    /// write that began just before the lease ran out.
    pub silent_after: Duration,
}

impl Default for MoveSettings {
    fn default() -> Self {
        MoveSettings {
            freeze_wait: Duration::from_secs(5),
            chunk: 500,
            copy_rate: None,
            duty: 0.75,
            pace_target: 1.5,
            pace_floor: 0.05,
            drain_grace: Duration::from_secs(6),
            hold: None,
            lease: Duration::from_secs(3),
            silent_after: Duration::from_secs(10),
        }
    }
}

/// A move's progress as the executor sees it now (the catalog row lags by up to a second).
#[derive(Default)]
pub(crate) struct Live {
    pub copied: AtomicU64,
    pub total: AtomicU64,
    pub verified: AtomicU64,
    /// Why the move was cancelled, once it is.
    pub cancel: Mutex<Option<String>>,
    /// The phase it is in, once it entered one (metrics).
    pub phase: Mutex<Option<MovePhase>>,
    /// When the copy began, and how long it took once done.
    pub copy_clock: Mutex<(Option<Instant>, Option<Duration>)>,
    /// The copy's pace, while it copies and compares.
    pub pace: Mutex<Option<pace::Pacer>>,
}

impl Live {
    fn rate(&self) -> f64 {
        let (start, took) = *self.copy_clock.lock();
        let elapsed = took.or_else(|| start.map(|s| s.elapsed()));
        match elapsed {
            Some(e) if e.as_secs_f64() > 0.0 => {
                self.copied.load(Ordering::Relaxed) as f64 / e.as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// The moves this server runs, and the tenants' write gates.
pub(crate) struct Registry {
    pub gates: Gates,
    pub live: Mutex<HashMap<String, Arc<Live>>>,
    /// This server's id and heartbeat, for a shared catalog.
    pub lease: shared::ServerLease,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            gates: Gates::default(),
            live: Mutex::new(HashMap::new()),
            lease: shared::ServerLease::new(),
        }
    }
}

/// What a new move asks for, after defaults.
pub(crate) struct MoveRequest {
    pub isolation: Option<Isolation>,
    pub domain: Option<DomainName>,
    pub target_tier: Option<TierName>,
    /// Only this life of the tenant (`409 tenant_life_ended` for another).
    pub only: Option<Incarnation>,
}

impl Catalog {
    /// `POST /v1/tenants/{tenant}/moves`.
    pub async fn start_move(
        &self,
        ctx: &Ctx,
        tenant: &TenantId,
        request: StartMove,
    ) -> Result<MoveView, Error> {
        self.authorize(
            ctx,
            ControlAction::ManageTenants,
            "tenant.move",
            tenant.as_str(),
            Some(tenant),
        )?;
        if request.isolation.is_none() && request.domain.is_none() {
            return Err(Error::bad_request(
                "invalid_move",
                "name the target: \"isolation\" (pool, bridge, silo), \"domain\", or both",
            ));
        }
        let request = MoveRequest {
            isolation: request.isolation,
            domain: request.domain,
            target_tier: None,
            only: request.incarnation,
        };
        self.begin_move(ctx, tenant, request).await
    }

    /// Records a new move and starts its executor.
    pub(crate) async fn begin_move(
        &self,
        ctx: &Ctx,
        tenant: &TenantId,
        request: MoveRequest,
    ) -> Result<MoveView, Error> {
        let available = request
            .domain
            .as_ref()
            .is_none_or(|d| self.inner().engines.contains(d));
        let id = format!("mv{}", uuid::Uuid::now_v7().simple());
        let now = self.inner().clock.now();
        let detail = serde_json::json!({
            "move": id,
            "isolation": request.isolation,
            "domain": request.domain,
            "tier": request.target_tier,
        });
        let event = self.event(ctx, "move.start", tenant.as_str(), Some(tenant), None);
        let (tenant_id, actor, move_id, me) = (
            tenant.clone(),
            ctx.principal.actor().to_owned(),
            id.clone(),
            self.server_id().to_owned(),
        );
        self.blocking(move |store| {
            store.write(|tx| {
                if let Some(domain) = &request.domain
                    && !crate::rows::domains::read_domains(tx)?.iter().any(|(name, _)| name == domain)
                {
                    return Err(Error::bad_request("unknown_domain", format!("domain '{domain}' does not exist")).into());
                }
                if !available {
                    return Err(Error::new(ErrorKind::Unavailable, "domain_unavailable", "the target domain's storage is not available on this server").into());
                }
                let (current, source) = read_tenant(tx, &tenant_id)?
                    .ok_or_else(|| Error::not_found("tenant_not_found", "tenant not found"))?;
                if let Some(only) = &request.only
                    && *only != source.incarnation
                {
                    return Err(crate::rows::tenants::life_ended(&tenant_id, only)
                    .into());
                }
                match current.status {
                    TenantStatus::Active => {}
                    TenantStatus::Moving => {
                        return Err(Error::conflict("move_in_progress", format!("tenant '{tenant_id}' is already moving; see GET /v1/tenants/{tenant_id}/moves")).into());
                    }
                    TenantStatus::Deleting => {
                        return Err(Error::not_found("tenant_not_found", "tenant not found").into());
                    }
                    other => {
                        return Err(Error::conflict("tenant_not_active", format!("only an active tenant can move; this one is {other}")).into());
                    }
                }
                let tier_name = request.target_tier.clone().unwrap_or(current.tier.clone());
                let tier = crate::rows::tiers::read_tier(tx, &tier_name)?
                    .ok_or_else(|| Error::bad_request("unknown_tier", format!("tier '{tier_name}' does not exist")))?;
                let isolation = request.isolation.unwrap_or(if request.target_tier.is_some() { tier.isolation } else { source.isolation });
                let domains = match &request.domain {
                    Some(d) => vec![d.clone()],
                    None if isolation == source.isolation => vec![source.domain.clone()],
                    None => tier.domains.clone(),
                };
                if isolation == source.isolation && domains == [source.domain.clone()] {
                    return Err(Error::conflict(
                        "already_placed",
                        format!("tenant '{tenant_id}' is already in {isolation} on domain '{}'", source.domain),
                    )
                    .into());
                }
                let spec = TierSpec { isolation, domains, ..tier };
                let generation = crate::rows::collections::generation(tx)?;
                // The target belongs to the same life of the tenant as the source.
                let target = crate::placement::allocate(tx, &tenant_id, &source.incarnation, &spec, generation)?;
                if target.domain == source.domain && target.isolation == source.isolation {
                    return Err(Error::conflict("already_placed", format!("tenant '{tenant_id}' is already in {isolation} on domain '{}'", source.domain)).into());
                }
                tx.execute(
                    &format!("INSERT INTO moves ({MOVE_COLUMNS}) VALUES (?1, ?2, 'planned', ?3, ?4, ?5, ?6, ?7, 0, 0, 0, NULL, NULL, ?8, ?9, ?9, NULL)"),
                    params![
                        &move_id,
                        tenant_id.as_str(),
                        serde_json::to_string(&source).map_err(malformed)?,
                        target.domain.as_str(),
                        target.isolation.as_str(),
                        &target.namespace,
                        request.target_tier.as_ref().map(TierName::as_str),
                        &actor,
                        now.as_micros()
                    ],
                )?;
                crate::rows::tenants::set_status(tx, &tenant_id, TenantStatus::Moving, now)?;
                if tx.shared() {
                    // Other servers journal this tenant's writes from the moment they see it
                    // moving, and acknowledge that they do (`shared`).
                    tx.execute(
                        &format!("INSERT INTO move_runs (move_id, runner, started_at) VALUES (?1, ?2, {})", shared::NOW_US),
                        params![&move_id, &me],
                    )?;
                    tx.execute("DELETE FROM move_journal WHERE tenant_id = ?1", params![tenant_id.as_str()])?;
                    crate::store::changed(tx, "move", &format!("{move_id}:track"))?;
                }
                // The life it moves (a `move.started` webhook names it).
                let mut detail = detail;
                detail["incarnation"] = serde_json::json!(source.incarnation);
                let mut event = event;
                event.detail = Some(detail.to_string());
                crate::rows::audit::insert(tx, &event)
            })
        })
        .await?;
        self.load_tenant(tenant).await?;
        let live = Arc::new(Live::default());
        self.inner()
            .moves
            .live
            .lock()
            .insert(id.clone(), Arc::clone(&live));
        let catalog = self.clone();
        let run_id = id.clone();
        crate::background::spawn(crate::background::Priority::Low, async move {
            catalog.run_move(run_id, live).await
        });
        self.move_view(&id).await
    }

    async fn move_view(&self, id: &str) -> Result<MoveView, Error> {
        let row = self.read_move(id).await?.ok_or_else(move_not_found)?;
        let live = self.inner().moves.live.lock().get(id).cloned();
        Ok(view(row, live.as_deref()))
    }

    pub(crate) async fn read_move(&self, id: &str) -> Result<Option<MoveRow>, Error> {
        let id = id.to_owned();
        self.blocking(move |store| store.read(|tx| read_move(tx, &id)))
            .await
    }

    /// `GET /v1/moves/{move}`.
    pub async fn get_move(&self, ctx: &Ctx, id: &str) -> Result<MoveView, Error> {
        self.authorize(ctx, ControlAction::ReadTenants, "move.get", id, None)?;
        self.move_view(id).await
    }

    /// `GET /v1/tenants/{tenant}/moves`: the moves of the tenant's current life, newest first
    /// (`404 tenant_not_found` for an id no tenant has; `GET /v1/moves?tenant=` lists every
    /// life's).
    pub async fn list_moves(&self, ctx: &Ctx, tenant: &TenantId) -> Result<Vec<MoveView>, Error> {
        self.authorize(
            ctx,
            ControlAction::ReadTenants,
            "move.list",
            tenant.as_str(),
            Some(tenant),
        )?;
        let life = self.route(tenant).await?.placement.incarnation.clone();
        let t = tenant.clone();
        let rows = self
            .blocking(move |store| {
                store.read(|tx| {
                    let sql = format!(
                        "SELECT {MOVE_COLUMNS} FROM moves WHERE tenant_id = ?1 ORDER BY created_at DESC LIMIT 100"
                    );
                    tx.query(&sql, params![t.as_str()])?.iter().map(decode).collect::<StoreResult<Vec<_>>>()
                })
            })
            .await?;
        let live = self.inner().moves.live.lock().clone();
        Ok(rows
            .into_iter()
            .filter(|r| r.source.incarnation == life)
            .map(|r| {
                let l = live.get(&r.id).cloned();
                view(r, l.as_deref())
            })
            .collect())
    }

    /// `GET /v1/moves`: moves of every tenant (or of `query.tenant`), newest first.
    pub async fn list_all_moves(
        &self,
        ctx: &Ctx,
        query: &MoveListQuery,
    ) -> Result<Page<MoveView>, Error> {
        let tenant = query.tenant.clone();
        let target = tenant.as_ref().map_or("moves", TenantId::as_str);
        self.authorize(
            ctx,
            ControlAction::ReadTenants,
            "move.list",
            target,
            tenant.as_ref(),
        )?;
        let limit = page_limit(query.limit)?;
        let before = query.cursor.as_deref().map(moves_position).transpose()?;
        let active = query.active;
        let rows = self
            .blocking(move |store| {
                store.read(|tx| {
                    list_page(
                        tx,
                        active,
                        tenant.as_ref(),
                        before.as_ref(),
                        i64::from(limit) + 1,
                    )
                })
            })
            .await?;
        let more = rows.len() > limit as usize;
        let items: Vec<MoveView> = {
            let live = self.inner().moves.live.lock();
            rows.into_iter()
                .take(limit as usize)
                .map(|r| {
                    let l = live.get(&r.id).map(Arc::as_ref);
                    view(r, l)
                })
                .collect()
        };
        let next_cursor = more.then(|| items.last().map(moves_cursor)).flatten();
        Ok(Page { items, next_cursor })
    }

    /// When each tenant's last move that did not roll back started or ended (its latest
    /// change), for the placement planner's hold (tenants that never moved are absent).
    pub async fn last_moves(
        &self,
        ctx: &Ctx,
    ) -> Result<std::collections::BTreeMap<TenantId, Timestamp>, Error> {
        self.authorize(ctx, ControlAction::ReadTenants, "move.list", "moves", None)?;
        let rows = self
            .blocking(move |store| {
                store.read(|tx| {
                    tx.query(
                        "SELECT tenant_id, MAX(updated_at) FROM moves WHERE phase <> 'rolled_back' GROUP BY tenant_id",
                        &[],
                    )?
                    .iter()
                    .map(|r| {
                        let tenant = TenantId::parse(&r.get::<String>(0)?)
                            .map_err(|e| malformed(e.message))?;
                        Ok((tenant, Timestamp::from_micros(r.get(1)?)))
                    })
                    .collect::<StoreResult<std::collections::BTreeMap<_, _>>>()
                })
            })
            .await?;
        Ok(rows)
    }

    /// `POST /v1/moves/{move}/cancel`: rolls the move back, if it has not switched yet.
    pub async fn cancel_move(&self, ctx: &Ctx, id: &str) -> Result<MoveView, Error> {
        self.authorize(ctx, ControlAction::ManageTenants, "move.cancel", id, None)?;
        let row = self.read_move(id).await?.ok_or_else(move_not_found)?;
        if row.phase.is_final() {
            return Err(Error::conflict(
                "move_finished",
                format!("move '{id}' has already ended ({})", row.phase),
            ));
        }
        if row.phase.is_switched() {
            return Err(Error::conflict(
                "move_past_switch",
                format!(
                    "move '{id}' has switched the tenant to its target; it can no longer be cancelled"
                ),
            ));
        }
        let live = self.inner().moves.live.lock().get(id).cloned();
        let why = format!("cancelled by {}", ctx.principal.actor());
        match (live, self.pg()) {
            (Some(live), _) => *live.cancel.lock() = Some(why),
            // Another server runs it: it polls for the request.
            (None, Some(pg)) => shared::request_cancel(pg, id, &why).await?,
            (None, None) => {}
        }
        // The executor notices between pages; wait (briefly) so the answer shows the outcome.
        let mut current = self.move_view(id).await?;
        for _ in 0..100 {
            if current.phase.is_final() || current.phase.is_switched() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            current = self.move_view(id).await?;
        }
        // The switch can win the race with the cancel (it was already committing): the move
        // then goes on to its end, and the cancel is refused as it is past the switch.
        let too_late = current.phase.is_switched() || current.phase == MovePhase::Done;
        let mut event = self.event(
            ctx,
            "move.cancel",
            row.tenant.as_str(),
            Some(&row.tenant),
            Some(id.to_owned()),
        );
        if too_late {
            event.outcome = "denied:move_past_switch".into();
        }
        self.blocking(move |store| store.write(|tx| crate::rows::audit::insert(tx, &event)))
            .await?;
        if too_late {
            return Err(Error::conflict(
                "move_past_switch",
                format!(
                    "move '{id}' switched the tenant to its target before the cancel took hold; it can no longer be cancelled"
                ),
            ));
        }
        Ok(current)
    }

    /// At start: a move a stopped server left before its switch is rolled back (its write
    /// journal died with the process); one past its switch is finished.
    pub(crate) async fn recover_moves(&self) -> Result<(), Error> {
        if self.is_shared() {
            // Other servers may be running moves: only those whose server fell silent are
            // this server's to finish.
            return self.adopt_orphaned_moves().await;
        }
        let pending = self.blocking(|store| store.read(unfinished)).await?;
        for row in pending {
            tracing::info!(r#move = %row.id, tenant = %row.tenant, phase = %row.phase, "resuming interrupted move");
            let outcome = if row.phase.is_switched() {
                self.clean_source(&row).await
            } else {
                let why = format!(
                    "the server stopped during {}; rolled back to the source, which kept every write",
                    row.phase
                );
                self.roll_back(&row, &why).await
            };
            if let Err(e) = outcome {
                tracing::error!(r#move = %row.id, error = %e, "could not finish interrupted move; retried at next start");
            }
        }
        Ok(())
    }
}

/// Maps an unavailable engine or a storage error to a move error that names the phase.
pub(crate) fn phase_error(phase: MovePhase, err: Error) -> Error {
    if err.kind == ErrorKind::Internal {
        Error::internal().with_message(format!("storage failed during {phase}"))
    } else {
        err
    }
}

/// The access authority, for live moves only: the scopes a move recorded in the catalog copies
/// through (the one tenant of its row, on its source and target placements) and the
/// demolition of the side a move leaves behind. Only this room reads the authority inside.
pub(crate) struct MoveAuthority(bulkhead_core::access::AccessAuthority);

impl MoveAuthority {
    pub(crate) fn new(authority: bulkhead_core::access::AccessAuthority) -> Self {
        MoveAuthority(authority)
    }

    /// Reads the move's source: `route` must be the row's tenant on the row's source.
    fn source_scope(
        &self,
        row: &MoveRow,
        route: &bulkhead_core::access::TenantRoute,
    ) -> bulkhead_core::access::TenantScope {
        debug_assert_eq!(route.tenant, row.tenant);
        bulkhead_core::access::move_scope(
            &self.0,
            &row.id,
            route,
            bulkhead_core::access::DataAction::Read,
        )
    }

    /// Writes the move's target placement (the row's), for the row's tenant.
    fn target_scope(
        &self,
        row: &MoveRow,
        route: &bulkhead_core::access::TenantRoute,
    ) -> bulkhead_core::access::TenantScope {
        debug_assert!(route.tenant == row.tenant && route.placement == row.target);
        bulkhead_core::access::move_scope(
            &self.0,
            &row.id,
            route,
            bulkhead_core::access::DataAction::Write,
        )
    }

    /// After the switch: the source the tenant left.
    fn demolish_source(&self, row: &MoveRow) -> bulkhead_core::access::Demolition {
        self.0.demolish(&row.tenant, &row.source)
    }

    /// On a rollback: the target the tenant never reached.
    fn demolish_target(&self, row: &MoveRow) -> bulkhead_core::access::Demolition {
        self.0.demolish(&row.tenant, &row.target)
    }
}
