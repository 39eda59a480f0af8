//! Retention passes as jobs: started on demand (`POST /v1/retention:run`, `202`) or on the
//! schedule, one at a time per server, followed by `GET /v1/retention/runs/{id}`.

use std::time::Instant;

use bulkhead_api::{RetentionReport, RetentionRun, RunState};
use bulkhead_core::TenantId;
use bulkhead_core::error::Error;

use crate::Cold;
use crate::pass::pass;
use crate::progress::Progress;

/// `POST /v1/retention:run`: starts a pass now (`202`), for a platform principal allowed to
/// manage tenants. One pass at a time per server: while one runs, `409 retention_running`
/// names it.
pub async fn run_now(
    cold: &Cold,
    ctx: &bulkhead_catalog::Ctx,
    request: bulkhead_api::RunRetention,
) -> Result<RetentionRun, Error> {
    cold.curator.authorize(
        ctx,
        bulkhead_core::access::ControlAction::ManageTenants,
        "retention.run",
        request.tenant.as_ref(),
    )?;
    cold.root()?;
    if let Some(tenant) = &request.tenant
        && cold.curator.life_of(tenant).await?.is_none()
    {
        return Err(Error::not_found(
            "tenant_not_found",
            format!("tenant '{tenant}' does not exist"),
        ));
    }
    start(cold, request.tenant)
}

/// `GET /v1/retention/runs/{id}`: a pass this server runs or ran (the last 20 are kept).
pub fn get_run(cold: &Cold, ctx: &bulkhead_catalog::Ctx, id: &str) -> Result<RetentionRun, Error> {
    cold.curator.authorize(
        ctx,
        bulkhead_core::access::ControlAction::ReadTenants,
        "retention.get",
        None,
    )?;
    cold.runs
        .lock()
        .iter()
        .find(|r| r.id == id)
        .cloned()
        .ok_or_else(|| {
            Error::not_found(
                "retention_run_not_found",
                "no such retention run on this server",
            )
        })
}

/// Runs kept per server, the one running included.
const RUNS_KEPT: usize = 20;

/// Starts a pass in the background, over every tenant or only `only`.
pub(crate) fn start(cold: &Cold, only: Option<TenantId>) -> Result<RetentionRun, Error> {
    let run = {
        let mut runs = cold.runs.lock();
        if let Some(running) = runs.iter().find(|r| r.state == RunState::Running) {
            return Err(Error::conflict(
                "retention_running",
                format!("retention run {} is under way on this server", running.id),
            ));
        }
        let run = RetentionRun {
            id: uuid::Uuid::now_v7().simple().to_string(),
            state: RunState::Running,
            tenant: only.clone(),
            started_at: cold.curator.now(),
            finished_at: None,
            collections_total: 0,
            collections_done: 0,
            report: RetentionReport::default(),
            error: None,
        };
        runs.push(run.clone());
        let excess = runs.len().saturating_sub(RUNS_KEPT);
        runs.drain(..excess);
        run
    };
    let (cold, progress) = (cold.clone(), Progress(run.id.clone()));
    tokio::spawn(async move {
        let started = Instant::now();
        let result = pass(&cold, only.as_ref(), &progress).await;
        let finished = cold.curator.now();
        let view = progress.update(&cold, |run| {
            run.report.elapsed_ms =
                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            run.finished_at = Some(finished);
            match &result {
                Ok(()) => run.state = RunState::Done,
                Err(e) => {
                    run.state = RunState::Failed;
                    run.error = Some(e.message.clone());
                }
            }
        });
        if let Some(run) = view {
            let r = &run.report;
            match &result {
                Ok(()) => tracing::info!(
                    archived = r.archived,
                    files = r.files,
                    busy = r.busy,
                    failed = r.failed,
                    recovered = r.recovered,
                    swept = r.swept,
                    elapsed_ms = r.elapsed_ms,
                    "retention pass"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "retention pass failed; next at the next interval")
                }
            }
        }
    });
    Ok(run)
}
