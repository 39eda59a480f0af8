//! The built-in roles: a platform key's (admin, operator) and a tenant member's or key's
//! (owner, admin, member, viewer). What each may do is in `permissions`; who holds one is in
//! `access`.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlatformRole {
    /// Everything, including tenant data when the tenant is named explicitly (audited).
    Admin,
    /// Tenants and tiers, never tenant records or credentials.
    Operator,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TenantRole {
    Viewer,
    Member,
    Admin,
    Owner,
}

impl FromStr for TenantRole {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "viewer" => Ok(TenantRole::Viewer),
            "member" => Ok(TenantRole::Member),
            "admin" => Ok(TenantRole::Admin),
            "owner" => Ok(TenantRole::Owner),
            other => Err(Error::bad_request(
                "invalid_role",
                format!("unknown tenant role {other:?}; expected owner, admin, member or viewer"),
            )),
        }
    }
}

impl FromStr for PlatformRole {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "admin" => Ok(PlatformRole::Admin),
            "operator" => Ok(PlatformRole::Operator),
            other => Err(Error::bad_request(
                "invalid_role",
                format!("unknown platform role {other:?}; expected admin or operator"),
            )),
        }
    }
}

impl TenantRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantRole::Viewer => "viewer",
            TenantRole::Member => "member",
            TenantRole::Admin => "admin",
            TenantRole::Owner => "owner",
        }
    }
}

impl PlatformRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PlatformRole::Admin => "admin",
            PlatformRole::Operator => "operator",
        }
    }
}
