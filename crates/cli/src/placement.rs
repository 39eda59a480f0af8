//! The placement planner: `bulkhead placement plan` shows the moves proposed from each
//! tenant's load over a window; `bulkhead placement apply` starts them as live moves, a
//! number at a time per domain, and follows them to their end — once, or again every N
//! minutes (`--every`, the automatic mode). Tenants moved within the hold (`--hold-hours`,
//! default 24) are not moved again; the server's plan lists them as held.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bulkhead_api::{MoveReason, PlacementPlan, PlanQuery, PlannedMove, StartMove};
use bulkhead_client::{Client, ClientError};
use bulkhead_core::DomainName;
use bulkhead_core::model::MovePhase;
use clap::Subcommand;
use serde::Serialize;

use crate::output::{bytes, table};
use crate::printer::Printer;

#[derive(Debug, Clone, Subcommand)]
pub enum PlacementCmd {
    /// Propose live moves from each tenant's load over a window, with a reason for each,
    /// and show every domain's load before and after them.
    Plan {
        /// Days of usage to read [default: 7].
        #[arg(long)]
        window_days: Option<u32>,
        /// Hold back tenants whose last move started or ended within this many hours
        /// (0: none) [default: 24].
        #[arg(long)]
        hold_hours: Option<u32>,
    },
    /// Plan afresh, then start the proposed moves, a number at a time per domain they
    /// leave, and follow them to their end.
    Apply {
        #[arg(long)]
        window_days: Option<u32>,
        /// Hold back tenants whose last move started or ended within this many hours
        /// (0: none) [default: 24].
        #[arg(long)]
        hold_hours: Option<u32>,
        /// Keep going: plan and apply again every this many minutes, until stopped (the
        /// automatic mode; the hold keeps a tenant from moving back and forth).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        every: Option<u64>,
        /// Moves running at once per domain they leave.
        #[arg(long, default_value_t = 1)]
        per_domain: usize,
        /// Start the moves (without it, the plan is shown and nothing moves).
        #[arg(long)]
        yes: bool,
    },
}

pub(crate) async fn placement(
    client: &Client,
    out: &Printer,
    cmd: PlacementCmd,
) -> anyhow::Result<()> {
    match cmd {
        PlacementCmd::Plan {
            window_days,
            hold_hours,
        } => {
            let plan = client
                .placement_plan(&PlanQuery {
                    window_days,
                    hold_hours,
                })
                .await?;
            out.show(&plan, plan_text)
        }
        PlacementCmd::Apply {
            window_days,
            hold_hours,
            every,
            per_domain,
            yes,
        } => {
            let query = PlanQuery {
                window_days,
                hold_hours,
            };
            let Some(minutes) = every else {
                return round(client, out, &query, per_domain, yes).await;
            };
            if !yes {
                anyhow::bail!("--every starts moves on its own: add --yes");
            }
            loop {
                if let Err(e) = round(client, out, &query, per_domain, yes).await {
                    // A credential refused (revoked, expired, or its role no longer allowed
                    // to plan or move) stays refused: stop rather than fail every round.
                    if let Some(ClientError::Api {
                        status: 401 | 403, ..
                    }) = e.downcast_ref::<ClientError>()
                    {
                        return Err(
                            e.context("the automatic mode stops: its credential is refused")
                        );
                    }
                    eprintln!("placement round: {e:#}");
                }
                tokio::time::sleep(Duration::from_secs(minutes * 60)).await;
            }
        }
    }
}

/// One plan, and its moves made (with `yes`).
async fn round(
    client: &Client,
    out: &Printer,
    query: &PlanQuery,
    per_domain: usize,
    yes: bool,
) -> anyhow::Result<()> {
    let plan = client.placement_plan(query).await?;
    if !out.json {
        println!("{}", plan_text(&plan));
    }
    if plan.moves.is_empty() {
        return out.show(&Applied::default(), |_| "nothing to move".to_owned());
    }
    if !yes {
        anyhow::bail!(
            "{} moves proposed; run again with --yes to start them",
            plan.moves.len()
        );
    }
    let applied = apply(client, out, &plan, per_domain.max(1)).await?;
    out.show(&applied, |a| {
        let mut text = format!(
            "{} moved, {} rolled back, {} not started",
            a.done.len(),
            a.rolled_back.len(),
            a.not_started.len()
        );
        for (tenant, why) in &a.not_started {
            text.push_str(&format!("\n{tenant}: {why}"));
        }
        text
    })?;
    if !applied.rolled_back.is_empty() || !applied.not_started.is_empty() {
        anyhow::bail!("not every proposed move was made");
    }
    Ok(())
}

/// What `apply` did: the moves done (by id), rolled back, and those that did not start.
#[derive(Debug, Default, Serialize)]
struct Applied {
    done: Vec<String>,
    rolled_back: Vec<String>,
    not_started: Vec<(String, String)>,
}

async fn apply(
    client: &Client,
    out: &Printer,
    plan: &PlacementPlan,
    per_domain: usize,
) -> anyhow::Result<Applied> {
    let mut queues: BTreeMap<DomainName, VecDeque<&PlannedMove>> = BTreeMap::new();
    for m in &plan.moves {
        queues
            .entry(m.from.domain.clone())
            .or_default()
            .push_back(m);
    }
    let bar = indicatif::ProgressBar::new(plan.moves.len() as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} moves [{bar:30}] {pos}/{len} {msg} [{elapsed}]",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    if out.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut running: Vec<(DomainName, String)> = Vec::new();
    let mut applied = Applied::default();
    loop {
        for (domain, queue) in &mut queues {
            while running.iter().filter(|(d, _)| d == domain).count() < per_domain {
                let Some(m) = queue.pop_front() else { break };
                let started = client
                    .start_move(
                        &m.tenant,
                        &StartMove {
                            isolation: Some(m.to.isolation),
                            domain: Some(m.to.domain.clone()),
                            incarnation: Some(m.incarnation.clone()),
                        },
                    )
                    .await;
                match started {
                    Ok(view) => running.push((domain.clone(), view.id)),
                    Err(e) => {
                        applied
                            .not_started
                            .push((m.tenant.to_string(), e.to_string()));
                        bar.inc(1);
                    }
                }
            }
        }
        if running.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut still = Vec::new();
        for (domain, id) in running {
            let view = client.get_move(&id).await?;
            match view.phase {
                MovePhase::Done => applied.done.push(id),
                MovePhase::RolledBack => applied.rolled_back.push(id),
                _ => {
                    still.push((domain, id));
                    continue;
                }
            }
            bar.inc(1);
        }
        running = still;
        bar.set_message(format!("{} running", running.len()));
    }
    bar.finish_and_clear();
    Ok(applied)
}

fn reason(r: MoveReason) -> &'static str {
    match r {
        MoveReason::Promote => "promote",
        MoveReason::DemoteIdle => "demote (idle)",
        MoveReason::OverCapacity => "over capacity",
    }
}

fn plan_text(plan: &PlacementPlan) -> String {
    let mut text = format!("usage from {} to {}\n", plan.from, plan.to);
    if plan.moves.is_empty() {
        text.push_str("no move proposed\n");
    } else {
        let mut t = table(&["tenant", "tier", "from", "to", "reason", "load", "why"]);
        for m in &plan.moves {
            t.add_row(vec![
                m.tenant.to_string(),
                m.tier.to_string(),
                format!("{} {:?}", m.from.domain, m.from.isolation).to_lowercase(),
                format!("{} {:?}", m.to.domain, m.to.isolation).to_lowercase(),
                reason(m.reason).to_owned(),
                format!("{:.0}", m.load.score),
                m.detail.clone(),
            ]);
        }
        text.push_str(&format!("{t}\n"));
    }
    if !plan.held.is_empty() {
        let mut t = table(&["held", "would go to", "reason", "last moved"]);
        for h in &plan.held {
            let m = &h.proposal;
            t.add_row(vec![
                m.tenant.to_string(),
                format!("{} {:?}", m.to.domain, m.to.isolation).to_lowercase(),
                reason(m.reason).to_owned(),
                h.placed_at.to_string(),
            ]);
        }
        text.push_str(&format!("{t}\n"));
    }
    let mut t = table(&[
        "domain",
        "tenants",
        "bridge+silo",
        "capacity",
        "bytes",
        "load",
        "after",
    ]);
    for (before, after) in plan.domains_before.iter().zip(&plan.domains_after) {
        t.add_row(vec![
            before.domain.to_string(),
            format!("{} → {}", before.tenants, after.tenants),
            format!("{} → {}", before.dedicated, after.dedicated),
            if before.capacity == 0 {
                "-".to_owned()
            } else {
                before.capacity.to_string()
            },
            format!("{} → {}", bytes(before.bytes), bytes(after.bytes)),
            format!("{:.0}", before.score),
            format!("{:.0}", after.score),
        ]);
    }
    text.push_str(&t.to_string());
    text
}
