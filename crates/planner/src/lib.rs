//! The placement planner: reads each tenant's load over a window from metered usage, and
//! proposes live moves with a reason for each (`model`), with the domains' load before and
//! after. It works over the catalog's public operations with the caller's context (so the
//! caller's permissions apply: reading tenants and usage), and records each plan in the
//! audit log. Applying a plan is starting its moves (`bulkhead placement apply`).

pub mod model;

use std::collections::BTreeMap;

use bulkhead_api::{PlacementPlan, PlanQuery, Spot, TenantListQuery};
use bulkhead_catalog::{Catalog, Ctx, append_audit};
use bulkhead_core::error::Error;
use bulkhead_core::model::TenantStatus;
use bulkhead_core::time::Timestamp;

use model::{DomainState, TenantState};

/// The default window, and the longest.
pub const DEFAULT_WINDOW_DAYS: u32 = 7;
pub const MAX_WINDOW_DAYS: u32 = 90;
/// A tenant moved within this many hours is held by default; the longest hold is a year.
pub const DEFAULT_HOLD_HOURS: u32 = 24;
pub const MAX_HOLD_HOURS: u32 = 8_760;

const DAY_MICROS: i64 = 86_400_000_000;
const HOUR_MICROS: i64 = 3_600_000_000;

/// `GET /v1/placement/plan`.
pub async fn plan(catalog: &Catalog, ctx: &Ctx, query: &PlanQuery) -> Result<PlacementPlan, Error> {
    let days = query.window_days.unwrap_or(DEFAULT_WINDOW_DAYS);
    if !(1..=MAX_WINDOW_DAYS).contains(&days) {
        return Err(Error::bad_request(
            "invalid_window",
            format!("window_days: 1 to {MAX_WINDOW_DAYS} (got {days})"),
        ));
    }
    let hold_hours = query.hold_hours.unwrap_or(DEFAULT_HOLD_HOURS);
    if hold_hours > MAX_HOLD_HOURS {
        return Err(Error::bad_request(
            "invalid_hold",
            format!("hold_hours: 0 to {MAX_HOLD_HOURS} (got {hold_hours})"),
        ));
    }
    let door = catalog.door();
    let to = door.now();
    let hold_since = (hold_hours > 0)
        .then(|| Timestamp::from_micros(to.as_micros() - i64::from(hold_hours) * HOUR_MICROS));
    let from = Timestamp::from_micros(to.as_micros() - i64::from(days) * DAY_MICROS);
    let mut views = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = TenantListQuery {
            limit: Some(1_000),
            cursor: cursor.take(),
            ..Default::default()
        };
        let page = catalog.list_tenants(ctx, &query).await?;
        views.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let tiers = catalog
        .list_tiers(ctx)
        .await?
        .items
        .into_iter()
        .map(|t| (t.name, t.spec))
        .collect();
    let domains: BTreeMap<_, _> = catalog
        .list_domains(ctx)
        .await?
        .items
        .into_iter()
        .map(|d| {
            let state = DomainState {
                capacity: d.spec.max_dedicated_tenants,
                silos: d.spec.silos,
                dedicated_to: d.spec.dedicated_to.clone(),
            };
            (d.name, state)
        })
        .collect();
    let mut loads = catalog.usage_totals(ctx, from, to).await?;
    let last_moves = catalog.last_moves(ctx).await?;
    let tenants: Vec<TenantState> = views
        .into_iter()
        .filter(|t| t.status == TenantStatus::Active)
        .map(|t| TenantState {
            load: loads.remove(&t.id).unwrap_or_default(),
            spot: Spot {
                domain: t.placement.domain,
                isolation: t.placement.isolation,
            },
            // Only this life's moves hold it: a tenant re-created under the id of one moved
            // within the hold is not held for the old life's move.
            placed: last_moves
                .get(&t.id)
                .copied()
                .filter(|at| *at >= t.created_at),
            whole_window: t.created_at <= from,
            incarnation: t.placement.incarnation,
            id: t.id,
            tier: t.tier,
        })
        .collect();
    let planned = model::plan(&tenants, &tiers, &domains, hold_since);
    let plan = PlacementPlan {
        from,
        to,
        moves: planned.moves,
        domains_before: planned.before,
        domains_after: planned.after,
        held: planned.held,
    };
    let detail = serde_json::json!({
        "window_days": days,
        "hold_hours": hold_hours,
        "held": plan.held.iter().map(|h| h.proposal.tenant.as_str()).collect::<Vec<_>>(),
        "tenants": tenants.len(),
        "moves": plan.moves.iter().map(|m| serde_json::json!({
            "tenant": m.tenant, "incarnation": m.incarnation, "reason": m.reason, "to": m.to,
        })).collect::<Vec<_>>(),
    });
    let event = door.event(
        ctx,
        "placement.plan",
        "placement",
        None,
        Some(detail.to_string()),
    );
    door.blocking(move |store| store.write(|tx| append_audit(tx, &event)))
        .await?;
    Ok(plan)
}
