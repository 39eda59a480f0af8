//! The placement planner: `GET /v1/placement/plan` proposes live moves from each tenant's
//! load over a window, with a reason for each, and the domains' load before and after.

use bulkhead_core::model::Isolation;
use bulkhead_core::time::Timestamp;
use bulkhead_core::{DomainName, Incarnation, TenantId, TierName};
use serde::{Deserialize, Serialize};

/// `GET /v1/placement/plan?window_days=&hold_hours=`.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    utoipa::IntoParams,
)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PlanQuery {
    /// Days of usage the plan reads (default 7, at most 90).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_days: Option<u32>,
    /// A tenant whose last move started or ended within this many hours is not proposed
    /// (default 24, 0 for no hold, at most 8,760).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_hours: Option<u32>,
}

/// A plan: the moves it proposes, and each domain's load before and after them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlacementPlan {
    pub from: Timestamp,
    pub to: Timestamp,
    pub moves: Vec<PlannedMove>,
    pub domains_before: Vec<DomainLoad>,
    pub domains_after: Vec<DomainLoad>,
    /// Moves the plan would propose but holds back: the tenant moved within the hold.
    #[serde(default)]
    pub held: Vec<HeldMove>,
}

/// A move held back by the hold period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeldMove {
    pub proposal: PlannedMove,
    /// When the tenant's last move started or ended.
    pub placed_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlannedMove {
    pub tenant: TenantId,
    /// The life of the tenant the plan measured; its load counts only this life's usage.
    pub incarnation: Incarnation,
    pub tier: TierName,
    pub from: Spot,
    pub to: Spot,
    pub reason: MoveReason,
    /// The reason in words, with its figures.
    pub detail: String,
    pub load: TenantLoad,
}

/// Where a placement is: a domain and an isolation model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Spot {
    pub domain: DomainName,
    pub isolation: Isolation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MoveReason {
    /// A pooled tenant much heavier than its pool's mean (the tier's `promote_to`).
    Promote,
    /// An idle bridge or silo tenant (the tier's `demote_to`).
    DemoteIdle,
    /// Its domain holds more bridge and silo tenants than its capacity.
    OverCapacity,
}

/// A tenant's load over the window: requests, records written and query time, and its
/// storage at the last sample. `score` is requests + records written + query milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantLoad {
    pub requests: u64,
    pub records_written: u64,
    pub query_ms: f64,
    pub bytes: u64,
    pub score: f64,
}

/// A domain's tenants and load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DomainLoad {
    pub domain: DomainName,
    pub tenants: u64,
    /// Bridge and silo tenants, and the most it takes (`0`: no limit).
    pub dedicated: u64,
    pub capacity: u32,
    pub bytes: u64,
    pub score: f64,
}
