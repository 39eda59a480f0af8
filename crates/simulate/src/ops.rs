//! The scheduled operations and faults, run one after another at their planned moments, and
//! the settling at the end: the server up, moves finished, every tenant exported and its
//! quota counter compared, the audit chain verified.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bulkhead_api::{CreateKey, StartMove, UpdateTenant};
use bulkhead_client::{Client, ClientError};
use bulkhead_core::TenantId;
use bulkhead_core::model::{Isolation, MovePhase, TenantStatus};
use bulkhead_core::roles::TenantRole;

use crate::history::{Op, Outcome};
use crate::schedule::{Action, Planned};
use crate::server::Local;
use crate::workload::{Shared, collection, seen};

/// The servers the simulator started (none against `--target`), and how to restart
/// PostgreSQL and its pooler.
pub struct Servers {
    pub locals: Mutex<Vec<Local>>,
    pub pg_restart: Option<String>,
    pub pgbouncer_restart: Option<String>,
    /// The small disk under the domain `full`, and its size in megabytes.
    pub disk: Option<(crate::server::SmallDisk, u64)>,
}

type Server = Arc<Servers>;

/// How long the end of a run waits for the moves still running to end.
const SETTLE_MOVES: Duration = Duration::from_secs(120);

fn tid(id: &str) -> anyhow::Result<TenantId> {
    TenantId::parse(id).map_err(|e| anyhow::anyhow!(e.message))
}

fn answered<T>(answer: &Result<T, ClientError>) -> (Option<u16>, Outcome) {
    let status = match answer {
        Ok(_) => Some(200),
        Err(e) => e.status(),
    };
    (status, Outcome::of_status(status))
}

/// Runs `plan` in order, each at its moment; returns how many were carried out.
pub async fn execute(
    shared: Arc<Shared>,
    server: Server,
    plan: Vec<Planned>,
) -> anyhow::Result<u64> {
    let mut done = 0;
    // Freeing the full disk runs on its own clock: other actions (a deletion on that disk)
    // may wait for it.
    let (free, plan): (Vec<Planned>, Vec<Planned>) =
        plan.into_iter().partition(|p| p.action == Action::FreeDisk);
    let mut freeing = Vec::new();
    for planned in free {
        let (shared, server) = (Arc::clone(&shared), Arc::clone(&server));
        freeing.push(tokio::spawn(async move {
            let wait = planned.at_ms.saturating_sub(shared.now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            run_one(&shared, &server, &planned.action).await
        }));
    }
    for planned in plan {
        let wait = planned.at_ms.saturating_sub(shared.now_ms());
        tokio::time::sleep(Duration::from_millis(wait)).await;
        run_one(&shared, &server, &planned.action).await?;
        done += 1;
    }
    for task in freeing {
        task.await??;
        done += 1;
    }
    Ok(done)
}

async fn run_one(shared: &Shared, server: &Server, action: &Action) -> anyhow::Result<()> {
    let admin = &shared.admin;
    match action {
        Action::Kill { server: which } | Action::Drain { server: which } => {
            let kill = matches!(action, Action::Kill { .. });
            let kind = if kill { "kill -9" } else { "SIGTERM drain" };
            let start = shared.now_ms();
            let which = *which;
            bounce(server, which, kill).await?;
            let op = Op::Fault {
                kind: format!("{kind} of server {which}"),
            };
            shared
                .record("faults", "-", 0, start, None, Outcome::Ok, op)
                .await;
        }
        Action::FreeDisk => {
            let Some((disk, megabytes)) = &server.disk else {
                return Ok(());
            };
            let start = shared.now_ms();
            disk.grow(megabytes * 8)?;
            let op = Op::Fault {
                kind: format!(
                    "the full disk of domain full grown from {megabytes} MB to {} MB",
                    megabytes * 8
                ),
            };
            shared
                .record("faults", "-", 0, start, None, Outcome::Ok, op)
                .await;
        }
        Action::PgRestart => {
            if let Some(command) = &server.pg_restart {
                restart(shared, command, "--pg-restart-command", "postgres restart").await?;
            }
        }
        Action::PgBouncerRestart => {
            if let Some(command) = &server.pgbouncer_restart {
                let flag = "--pgbouncer-restart-command";
                restart(shared, command, flag, "pgbouncer restart").await?;
            }
        }
        Action::Move {
            tenant,
            isolation,
            interrupt,
        } => {
            let tenant = &shared.tenants[*tenant];
            let life = tenant.current.read().await.0;
            let start = shared.now_ms();
            let mut isolation_value: Isolation = isolation
                .parse()
                .map_err(|e: bulkhead_core::error::Error| anyhow::anyhow!(e.message))?;
            // A move to where the tenant already is would be refused: take the next model.
            if let Ok(view) = admin.get_tenant(&tid(&tenant.id)?).await
                && view.placement.isolation == isolation_value
            {
                isolation_value = match isolation_value {
                    Isolation::Pool => Isolation::Bridge,
                    Isolation::Bridge => Isolation::Silo,
                    Isolation::Silo => Isolation::Pool,
                };
            }
            let answer = admin
                .start_move(
                    &tid(&tenant.id)?,
                    &StartMove {
                        isolation: Some(isolation_value),
                        domain: None,
                        incarnation: None,
                    },
                )
                .await;
            let (status, outcome) = answered(&answer);
            let op = Op::Move {
                isolation: isolation_value.as_str().to_owned(),
            };
            shared
                .record("operations", &tenant.id, life, start, status, outcome, op)
                .await;
            if let (Some(phase), Ok(started)) = (interrupt, &answer) {
                interrupt_move(shared, server, &started.id, phase).await?;
            }
        }
        Action::Recreate { tenant } => {
            let tenant = &shared.tenants[*tenant];
            let id = tid(&tenant.id)?;
            // Holding the tenant's state: writers finish their current request with the old
            // key and wait for the new life's.
            let mut current = tenant.current.write().await;
            let life = current.0;
            let start = shared.now_ms();
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            let mut last = String::new();
            loop {
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "tenant {} could not be deleted within 120 s; the last answer: {last}",
                    tenant.id
                );
                let answer = admin.delete_tenant(&id).await;
                if let Err(e) = &answer {
                    last = e.to_string();
                }
                let (status, outcome) = answered(&answer);
                let gone = outcome == Outcome::Ok || status == Some(404);
                if gone {
                    shared
                        .record(
                            "operations",
                            &tenant.id,
                            life,
                            start,
                            status,
                            Outcome::Ok,
                            Op::Deleted,
                        )
                        .await;
                    break;
                }
                // A refusal (a move under way holds a deletion back?) or no answer: retry.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let start = shared.now_ms();
            let key = crate::setup::create(admin, &tenant.id, &tenant.tier, tenant.users).await?;
            *current = (life + 1, key);
            shared
                .record(
                    "operations",
                    &tenant.id,
                    life + 1,
                    start,
                    Some(201),
                    Outcome::Ok,
                    Op::Created,
                )
                .await;
        }
        Action::Suspend { tenant } => {
            let tenant = &shared.tenants[*tenant];
            let id = tid(&tenant.id)?;
            let life = tenant.current.read().await.0;
            let start = shared.now_ms();
            let answer = admin
                .update_tenant(
                    &id,
                    &UpdateTenant {
                        status: Some(TenantStatus::Suspended),
                        ..UpdateTenant::default()
                    },
                )
                .await;
            let (status, outcome) = answered(&answer);
            shared
                .record(
                    "operations",
                    &tenant.id,
                    life,
                    start,
                    status,
                    outcome,
                    Op::Suspended,
                )
                .await;
            tokio::time::sleep(Duration::from_millis(800)).await;
            // The window ends when the first attempt to resume begins.
            let start = shared.now_ms();
            loop {
                let answer = admin
                    .update_tenant(
                        &id,
                        &UpdateTenant {
                            status: Some(TenantStatus::Active),
                            ..UpdateTenant::default()
                        },
                    )
                    .await;
                let (status, outcome) = answered(&answer);
                if outcome != Outcome::Unknown {
                    shared
                        .record(
                            "operations",
                            &tenant.id,
                            life,
                            start,
                            status,
                            outcome,
                            Op::Resumed,
                        )
                        .await;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Action::Rollout { field } => {
            let start = shared.now_ms();
            let spec = crate::setup::collection_spec(Some(*field))?;
            let answer = admin.put_collection(&collection(), &spec).await;
            let version = answer.as_ref().ok().map(|c| c.version);
            let (status, outcome) = answered(&answer);
            let op = Op::Rollout { version };
            shared
                .record("operations", "-", 0, start, status, outcome, op)
                .await;
        }
        Action::Revoke { tenant } => {
            let tenant = &shared.tenants[*tenant];
            let id = tid(&tenant.id)?;
            let life = tenant.current.read().await.0;
            let Ok(key) = admin
                .create_key(
                    &id,
                    &CreateKey {
                        name: "revoked-soon".into(),
                        role: TenantRole::Member,
                        expires_in: None,
                    },
                )
                .await
            else {
                return Ok(());
            };
            let user = Client::new(shared.url(0), key.key.clone())?;
            let _ = user.me().await;
            let start = shared.now_ms();
            let answer = admin.revoke_key(&id, &key.view.id).await;
            let (status, outcome) = answered(&answer);
            // Right after: the revoked key must be refused (asked again while the server is away).
            let mut after = None;
            for _ in 0..600 {
                match user.me().await {
                    Ok(_) => after = Some(200),
                    Err(e) => after = e.status(),
                }
                if after.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let op = Op::Revoked {
                status_after: after,
            };
            shared
                .record("operations", &tenant.id, life, start, status, outcome, op)
                .await;
        }
    }
    Ok(())
}

/// Runs a restart command (`flag` names where it came from) and records the fault as `kind`.
async fn restart(shared: &Shared, command: &str, flag: &str, kind: &str) -> anyhow::Result<()> {
    let start = shared.now_ms();
    let out = tokio::process::Command::new("sh")
        .args(["-c", command])
        .output()
        .await
        .with_context(|| format!("running {flag}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{flag} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let op = Op::Fault { kind: kind.into() };
    shared
        .record("faults", "-", 0, start, None, Outcome::Ok, op)
        .await;
    Ok(())
}

/// Waits until move `id` reaches `phase` (or ends), then kills the server that accepted it
/// (`kill -9`) and starts it again: a move interrupted in that phase.
async fn interrupt_move(
    shared: &Shared,
    server: &Server,
    id: &str,
    phase: &str,
) -> anyhow::Result<()> {
    let order = |p: &str| crate::schedule::MOVE_PHASES.iter().position(|q| *q == p);
    let wanted = order(phase).unwrap_or(0);
    let start = shared.now_ms();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut seen = String::from("unknown");
    while std::time::Instant::now() < deadline {
        if let Ok(view) = shared.admin.get_move(id).await {
            seen = view.phase.as_str().to_owned();
            let ended = matches!(view.phase, MovePhase::Done | MovePhase::RolledBack);
            if ended || order(&seen).is_some_and(|at| at >= wanted) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bounce(server, 0, true).await?;
    let op = Op::Fault {
        kind: format!("kill -9 of server 0 with a move in phase {seen} (aimed at {phase})"),
    };
    shared
        .record("faults", "-", 0, start, None, Outcome::Ok, op)
        .await;
    Ok(())
}

/// Stops server `which` (`kill -9`, or SIGTERM when `kill` is false) and starts it again on
/// the same port and data.
async fn bounce(servers: &Server, which: usize, kill: bool) -> anyhow::Result<()> {
    let servers = Arc::clone(servers);
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut locals = servers
            .locals
            .lock()
            .map_err(|_| anyhow::anyhow!("the server handles"))?;
        if let Some(local) = locals.get_mut(which) {
            if kill {
                local.kill()?;
            } else {
                local.drain()?;
            }
            std::thread::sleep(Duration::from_millis(200));
            local.restart()?;
        }
        Ok(())
    })
    .await?
}

/// After the workload: waits for moves to end, exports every tenant, compares its quota
/// counter with the real count, and verifies the audit chain.
pub async fn settle(shared: &Shared) -> anyhow::Result<()> {
    let admin = &shared.admin;
    for tenant in &shared.tenants {
        let id = tid(&tenant.id)?;
        let deadline = std::time::Instant::now() + SETTLE_MOVES;
        loop {
            let unfinished = match admin.list_moves(&id).await {
                Ok(page) => page.items.into_iter().find(|m| !m.phase.is_final()),
                // No tenant has the id at the end (deleted, not created again): no move runs.
                Err(e) if e.code() == Some("tenant_not_found") => None,
                Err(e) => {
                    anyhow::ensure!(
                        std::time::Instant::now() < deadline,
                        "the moves of {} could not be listed at the end: {e}",
                        tenant.id
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(unfinished) = unfinished else { break };
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "move {} of {} is still in phase {} {SETTLE_MOVES:?} after the workload ended: \
                 a move that never ends",
                unfinished.id,
                tenant.id,
                unfinished.phase
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for tenant in &shared.tenants {
        let (life, _) = tenant.current.read().await.clone();
        let scoped = admin.with_tenant(tid(&tenant.id)?);
        let start = shared.now_ms();
        let records = scoped
            .export(&collection(), None)
            .await
            .with_context(|| format!("exporting {} at the end", tenant.id))?;
        let found: Vec<_> = records.iter().filter_map(seen).collect();
        let real = records.len() as u64;
        let op = Op::List {
            seen: found,
            complete: true,
        };
        shared
            .record(
                "settle",
                &tenant.id,
                life,
                start,
                Some(200),
                Outcome::Ok,
                op,
            )
            .await;
        let start = shared.now_ms();
        let quota = scoped
            .quota()
            .await
            .with_context(|| format!("the quota of {}", tenant.id))?;
        let op = Op::Quota {
            counted: quota.records,
            real,
        };
        shared
            .record(
                "settle",
                &tenant.id,
                life,
                start,
                Some(200),
                Outcome::Ok,
                op,
            )
            .await;
    }
    for tenant in &shared.tenants {
        let start = shared.now_ms();
        let mut metered = 0;
        let mut query = bulkhead_api::UsageQuery {
            tenant: Some(tid(&tenant.id)?),
            granularity: Some(bulkhead_api::Granularity::Day),
            ..bulkhead_api::UsageQuery::default()
        };
        loop {
            let page = admin
                .list_usage(&query)
                .await
                .with_context(|| format!("the usage of {}", tenant.id))?;
            metered += page.items.iter().map(|p| p.records_written).sum::<u64>();
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => break,
            }
        }
        let life = tenant.current.read().await.0;
        let op = Op::Usage { metered };
        shared
            .record(
                "settle",
                &tenant.id,
                life,
                start,
                Some(200),
                Outcome::Ok,
                op,
            )
            .await;
    }
    let start = shared.now_ms();
    let verified = admin
        .verify_audit(None)
        .await
        .context("verifying the audit chain")?;
    let op = Op::AuditVerified {
        ok: verified.ok,
        checked: verified.checked,
    };
    shared
        .record("settle", "-", 0, start, Some(200), Outcome::Ok, op)
        .await;
    Ok(())
}
