//! Query strings of the control plane's filtered listings: `GET /v1/tenants` and
//! `GET /v1/moves`. Every filter is optional; an item is listed when it matches every one
//! given. Unknown parameters are refused (`400 invalid_query`), like every listing's.

use bulkhead_core::model::{Isolation, TenantStatus};
use bulkhead_core::{DomainName, TenantId, TierName};
use serde::{Deserialize, Serialize};

/// Longest `q` of `GET /v1/tenants`, in characters.
pub const MAX_TENANT_SEARCH_CHARS: usize = 100;

/// `GET /v1/tenants`: tenants in id order, filtered.
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
pub struct TenantListQuery {
    /// Tenants whose id or name contains this text, ignoring the case of ASCII letters (at
    /// most 100 characters; `%`, `_` and `\` match themselves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Tenants on this tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierName>,
    /// Tenants in this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TenantStatus>,
    /// Tenants placed on this storage domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainName>,
    /// Tenants placed in this isolation model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (of the same filters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `GET /v1/moves`: moves of every tenant, newest first, filtered.
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
pub struct MoveListQuery {
    /// `true`: only moves that have not ended (neither `done` nor `rolled_back`); `false`:
    /// only those that have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Only this tenant's moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}
