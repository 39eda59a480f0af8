//! Tiers: the policy a tenant is placed, limited, kept and moved by.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::DomainName;
use crate::model::Isolation;
use crate::permissions::Ceiling;

/// A tier: the policy a tenant is placed and limited by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    pub isolation: Isolation,
    /// Domains this tier's tenants may be placed on, in order of preference. Empty means any.
    #[serde(default)]
    pub domains: Vec<DomainName>,
    /// Monthly price of one tenant on this tier (a decimal string, `"49.00"`), for the
    /// margin in cost reports.
    #[serde(default)]
    pub monthly_price: crate::money::Amount,
    /// The currency of `monthly_price` (default `USD`).
    #[serde(default, skip_serializing_if = "crate::money::Currency::is_default")]
    pub currency: crate::money::Currency,
    #[serde(default)]
    pub description: String,
    /// Limits on what one request of this tier's tenants may cost; unset limits take the
    /// server's defaults.
    #[serde(default, skip_serializing_if = "TierLimits::is_empty")]
    pub limits: TierLimits,
    /// What no role of this tier's tenants may do, whatever the role says.
    #[serde(default, skip_serializing_if = "Ceiling::is_default")]
    pub ceiling: Ceiling,
    /// How long each collection's records stay in the hot store before the retention job
    /// moves them into the tenant's cold archive (collections not named stay hot).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retention: BTreeMap<crate::CollectionName, Retention>,
    /// What the placement planner may propose for this tier's tenants.
    #[serde(default, skip_serializing_if = "PlacementPolicy::is_default")]
    pub placement: PlacementPolicy,
    /// How a live move of this tier's tenants paces its copy by its neighbours' latency;
    /// unset settings take the server's.
    #[serde(default, skip_serializing_if = "PacePolicy::is_default")]
    pub pace: PacePolicy,
}

impl TierSpec {
    /// Checks what the spec decides by itself: its placement and pace policies, and each
    /// retention rule against the collection `definition` gives (a collection it does not
    /// know is checked when defined). The server also checks that its domains exist.
    pub fn validate<'a>(
        &self,
        definition: impl Fn(&crate::CollectionName) -> Option<&'a crate::schema::Collection>,
    ) -> Result<(), Error> {
        self.placement.validate()?;
        self.pace.validate()?;
        for (collection, rule) in &self.retention {
            rule.validate(collection, definition(collection))?;
        }
        Ok(())
    }
}

/// How a live move paces itself: it keeps its neighbours' p99 within `target_ratio` times
/// what it was just before the move, and never copies less than `floor` of the time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PacePolicy {
    /// Above 1, at most 100 (server default 1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ratio: Option<f64>,
    /// The least share of time the copy runs: above 0, at most 1 (server default 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<f64>,
}

impl PacePolicy {
    pub fn is_default(&self) -> bool {
        *self == PacePolicy::default()
    }

    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |message: String| Error::bad_request("invalid_tier", message);
        if let Some(r) = self.target_ratio
            && !(r > 1.0 && r <= 100.0)
        {
            return Err(invalid(format!(
                "pace.target_ratio: must be above 1 and at most 100 (got {r})"
            )));
        }
        if let Some(f) = self.floor
            && !(f > 0.0 && f <= 1.0)
        {
            return Err(invalid(format!(
                "pace.floor: must be above 0 and at most 1 (got {f})"
            )));
        }
        Ok(())
    }
}

impl TierSpec {
    /// A tier placing tenants in `isolation`, with every other setting at its default: any
    /// domain, no price, the server's limits, no ceiling, no retention, no placement policy,
    /// the server's pace.
    pub fn new(isolation: Isolation) -> Self {
        TierSpec {
            isolation,
            domains: Vec::new(),
            monthly_price: Default::default(),
            currency: Default::default(),
            description: String::new(),
            limits: TierLimits::default(),
            ceiling: Ceiling::default(),
            retention: BTreeMap::new(),
            placement: PlacementPolicy::default(),
            pace: PacePolicy::default(),
        }
    }
}

/// What the placement planner (`bulkhead placement plan`) may propose for a tier's tenants:
/// nothing unless set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementPolicy {
    /// A pooled tenant whose load over the window is over `promote_factor` times the mean
    /// of its domain's pooled tenants is proposed for this model (`bridge` or `silo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_to: Option<Isolation>,
    /// Default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_factor: Option<f64>,
    /// A bridge or silo tenant with no request and no write over the window is proposed for
    /// this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demote_to: Option<Isolation>,
}

/// The promotion factor of tiers that set none.
pub const DEFAULT_PROMOTE_FACTOR: f64 = 4.0;

impl PlacementPolicy {
    pub fn is_default(&self) -> bool {
        *self == PlacementPolicy::default()
    }

    pub fn promote_factor(&self) -> f64 {
        self.promote_factor.unwrap_or(DEFAULT_PROMOTE_FACTOR)
    }

    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |message: &str| Error::bad_request("invalid_tier", message.to_owned());
        if self.promote_to == Some(Isolation::Pool) {
            return Err(invalid(
                "placement.promote_to: bridge or silo (a promotion leaves the pool)",
            ));
        }
        if self.demote_to == Some(Isolation::Silo) {
            return Err(invalid(
                "placement.demote_to: pool or bridge (a demotion leaves a silo or bridge)",
            ));
        }
        if let Some(factor) = self.promote_factor
            && !(factor.is_finite() && (1.0..=1_000_000.0).contains(&factor))
        {
            return Err(invalid(
                "placement.promote_factor: a number from 1 to 1,000,000",
            ));
        }
        Ok(())
    }
}

/// Retention of one collection: records whose `field` is older than `hot_days` days go to the
/// cold archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// A `timestamp` field of the collection, or `created_at` / `updated_at`.
    pub field: crate::FieldName,
    /// Days a record stays hot, counted from `field` (1 to 36,500).
    #[schema(value_type = u32, minimum = 1)]
    pub hot_days: NonZeroU32,
}

/// The longest retention window a tier may set (100 years).
pub const MAX_HOT_DAYS: u32 = 36_500;

impl Retention {
    /// Checks the window, and the field against `collection` when it is defined.
    pub fn validate(
        &self,
        collection: &crate::CollectionName,
        definition: Option<&crate::schema::Collection>,
    ) -> Result<(), Error> {
        let invalid = |message: String| Error::bad_request("invalid_tier", message);
        if self.hot_days.get() > MAX_HOT_DAYS {
            return Err(invalid(format!(
                "retention.{collection}.hot_days: at most {MAX_HOT_DAYS} (got {})",
                self.hot_days
            )));
        }
        if matches!(self.field.as_str(), "created_at" | "updated_at") {
            return Ok(());
        }
        if let Some(definition) = definition {
            match definition.fields.get(&self.field) {
                Some(spec) if spec.field_type == crate::schema::FieldType::Timestamp => {}
                Some(spec) => {
                    return Err(invalid(format!(
                        "retention.{collection}.field: {} is a {} field; retention needs a timestamp field, created_at or updated_at",
                        self.field, spec.field_type
                    )));
                }
                None => {
                    return Err(invalid(format!(
                        "retention.{collection}.field: collection {collection} has no field {}",
                        self.field
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Per-tier request limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierLimits {
    /// Wall-clock budget of one query (list, search, aggregation), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_time_ms: Option<u64>,
    /// Rows one query may examine, matching or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_rows_examined: Option<u64>,
    /// Largest bulk-ingest body, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_max_bytes: Option<u64>,
    /// Data requests one tenant may start per second on each server, sustained; beyond it
    /// `429 rate_limited` with `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u32>, minimum = 1)]
    pub requests_per_second: Option<NonZeroU32>,
    /// Requests a tenant may start at once before its rate applies (default: one second's
    /// worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u32>, minimum = 1)]
    pub request_burst: Option<NonZeroU32>,
    /// Data requests one tenant may have in flight at once on each server (a streamed
    /// export counts until it ends); beyond it `429 too_many_concurrent_requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u32>, minimum = 1)]
    pub max_concurrent_requests: Option<NonZeroU32>,
    /// Connections of a shared database server (a PostgreSQL domain's pool) one tenant may
    /// hold at once; its further work waits for its own, never for its neighbours'. Default:
    /// a quarter of the domain's pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u32>, minimum = 1)]
    pub max_domain_connections: Option<NonZeroU32>,
    /// Records one tenant may hold, over all collections; a write past it is refused with
    /// `507 quota_exceeded` (reads and deletes still work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_records: Option<u64>,
    /// Bytes one tenant's data may occupy (as storage sampling measures it, plus an estimate
    /// of what was written since); a write that adds data past it is refused with `507
    /// quota_exceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

impl TierLimits {
    pub fn is_empty(&self) -> bool {
        *self == TierLimits::default()
    }
}
