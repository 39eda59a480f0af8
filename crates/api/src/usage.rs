//! The wire types of metering: usage per tenant and period, the heaviest tenants, storage
//! samples, quotas and cost reports.

use bulkhead_core::time::Timestamp;
use bulkhead_core::{CollectionName, DomainName, TenantId, TierName};
use serde::{Deserialize, Serialize};

/// How `GET /v1/usage` groups its counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    #[default]
    Hour,
    Day,
}

/// The filters of `GET /v1/usage`.
#[derive(
    Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema, utoipa::IntoParams,
)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// One tenant's usage (it may since have been deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    /// Periods starting at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Timestamp>,
    /// Periods starting before this time (whole periods: a day that starts before it counts
    /// in full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub granularity: Option<Granularity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// What one tenant used in one period (UTC hours or days), newest period first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsagePeriod {
    pub tenant: TenantId,
    pub from: Timestamp,
    pub to: Timestamp,
    /// Data requests served (reads and writes).
    pub requests: u64,
    /// Of those, writes.
    pub writes: u64,
    /// Requests refused because the tenant was over its tier's rate or concurrency limit
    /// (`refused.rate + refused.concurrency`).
    pub rate_limited: u64,
    /// Records created, replaced, patched or deleted; each bulk line counts.
    #[serde(default)]
    pub records_written: u64,
    /// Request body bytes received.
    #[serde(default)]
    pub bytes_in: u64,
    /// Response body bytes sent.
    #[serde(default)]
    pub bytes_out: u64,
    /// Rows the tenant's queries examined (matching or not).
    #[serde(default)]
    pub rows_examined: u64,
    /// Time the tenant's queries spent in the engine, in milliseconds.
    #[serde(default)]
    pub query_ms: f64,
    /// Requests refused, by kind.
    #[serde(default)]
    pub refused: Refusals,
    /// The tenant's storage at the last sample in the period, if one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageUse>,
}

/// Requests refused in a period, by the limit they hit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Refusals {
    /// Over the tier's request rate (`429 rate_limited`).
    pub rate: u64,
    /// Over the tier's concurrent requests (`429 too_many_concurrent_requests`).
    pub concurrency: u64,
    /// Over the tier's storage quota (`507 quota_exceeded`).
    pub quota: u64,
    /// A query over the tier's query budget (`422 query_too_expensive`).
    pub budget: u64,
}

/// What `GET /v1/usage/top` ranks tenants by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TopBy {
    /// Records written in the window (each bulk line counts).
    Records,
    /// Bytes stored, at the last sample in the window.
    Bytes,
    /// Records stored, at the last sample in the window.
    StoredRecords,
    /// Data requests in the window.
    Requests,
    /// Query time in the window, in milliseconds.
    QueryTime,
    /// Rows examined by queries in the window.
    RowsExamined,
    /// Request bytes received in the window.
    BytesIn,
    /// Response bytes sent in the window.
    BytesOut,
}

/// The filters of `GET /v1/usage/top`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TopQuery {
    pub by: TopBy,
    /// Start of the window (default: 7 days ago).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Timestamp>,
    /// End of the window (default: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Timestamp>,
    /// How many tenants (default 20, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// The heaviest tenants by one measure, heaviest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageTop {
    pub by: TopBy,
    pub from: Timestamp,
    pub to: Timestamp,
    pub items: Vec<TopTenant>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopTenant {
    pub tenant: TenantId,
    pub value: f64,
}

/// The window of `GET /v1/costs` (default: the last 30 days).
#[derive(
    Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema, utoipa::IntoParams,
)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CostQuery {
    /// Start of the window (default: 30 days before its end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Timestamp>,
    /// End of the window (default: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Timestamp>,
}

/// `GET /v1/costs`: each domain's cost over a window split among its tenants by its rule;
/// each tenant's attributed cost, its tier's price and the margin; each tier's totals and
/// the marginal cost of one more tenant. Amounts are decimal strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostReport {
    pub from: Timestamp,
    pub to: Timestamp,
    /// Hours in the window; monthly amounts are prorated over 730 hours a month.
    pub hours: f64,
    pub domains: Vec<DomainCost>,
    pub tenants: Vec<TenantCost>,
    pub tiers: Vec<TierCost>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DomainCost {
    pub domain: DomainName,
    /// The domain's cost over the window.
    pub cost: bulkhead_core::money::Amount,
    pub currency: bulkhead_core::money::Currency,
    pub rule: bulkhead_core::model::CostRule,
    pub tenants: u64,
    /// Bytes stored on it (the tenants' last samples in the window).
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantCost {
    pub tenant: TenantId,
    pub tier: TierName,
    pub domain: DomainName,
    /// Its share of its domain's cost over the window.
    pub cost: bulkhead_core::money::Amount,
    pub cost_currency: bulkhead_core::money::Currency,
    /// Its tier's price over the window (prorated to the part of the window it existed).
    pub price: bulkhead_core::money::Amount,
    pub price_currency: bulkhead_core::money::Currency,
    /// `price - cost` when both are in one currency (may be negative, so a decimal string
    /// with a sign); `None` otherwise.
    pub margin: Option<String>,
    /// What the share was computed from.
    pub bytes: u64,
    pub requests: u64,
    pub query_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TierCost {
    pub tier: TierName,
    pub tenants: u64,
    pub cost: bulkhead_core::money::Amount,
    pub price: bulkhead_core::money::Amount,
    pub currency: bulkhead_core::money::Currency,
    /// What one more tenant of this tier would cost over the window: the storage cost of an
    /// empty placement of its model (measured) plus the median tenant's attributed cost.
    pub marginal_cost: bulkhead_core::money::Amount,
    /// Bytes of an empty placement of the tier's model: a pool adds no bytes until it has
    /// rows; a silo is measured on a ready spare made for it; a bridge is its emptiest
    /// tenant without records (`None` when it has none).
    pub empty_placement_bytes: Option<u64>,
}

/// `GET /v1/quota`: what a tenant uses of its tier's storage quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuotaView {
    pub tenant: TenantId,
    /// The tier's `max_records` (`None`: no limit).
    pub max_records: Option<u64>,
    /// Records the tenant holds, exactly.
    pub records: u64,
    /// The tier's `max_bytes` (`None`: no limit).
    pub max_bytes: Option<u64>,
    /// Bytes its data occupies: the last storage sample plus an estimate of what was added
    /// since (`None`: never sampled).
    pub bytes: Option<u64>,
}

/// What `POST /v1/usage/storage` measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StorageSampled {
    /// Tenants measured.
    pub tenants: u64,
    /// Tenants whose domain could not be measured (logged; tried again at the next sample).
    pub failed: u64,
    pub elapsed_ms: u64,
}

/// What a tenant's data occupies, measured on its placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StorageUse {
    /// When it was measured.
    pub sampled_at: Timestamp,
    /// Records, over all collections.
    pub records: u64,
    /// Bytes on disk: a silo's whole database; a bridge tenant's tables and indexes; a pool
    /// tenant's share of the pool's tables and indexes, by the bytes of its rows.
    pub bytes: u64,
    /// Records per collection.
    #[serde(default)]
    pub collections: std::collections::BTreeMap<CollectionName, u64>,
    /// Records and bytes in the tenant's cold archive (retention), apart from the above.
    #[serde(default)]
    pub cold_records: u64,
    #[serde(default)]
    pub cold_bytes: u64,
}
