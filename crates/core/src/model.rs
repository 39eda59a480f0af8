//! Tenants, tiers, domains and placements: the control plane's nouns.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{DomainName, TenantId, TierName};
use crate::time::Timestamp;

/// How a tenant's data is separated from its neighbours'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Shared tables; `tenant_id` leads every key and index.
    Pool,
    /// Tables owned by one tenant inside a shared database.
    Bridge,
    /// A database of the tenant's own.
    Silo,
}

/// Whether a placement accepts writes. Moves freeze a placement; `read_only` is an operator's
/// choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteState {
    Open,
    Frozen,
    ReadOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Provisioning,
    Active,
    Suspended,
    Moving,
    Deleting,
}

macro_rules! str_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    other => Err(Error::bad_request(
                        "invalid_value",
                        format!(concat!("unknown ", stringify!($ty), " {:?}; expected one of: ", $($text, " "),+), other),
                    )),
                }
            }
        }
    };
}

str_enum!(Isolation { Pool => "pool", Bridge => "bridge", Silo => "silo" });
str_enum!(WriteState { Open => "open", Frozen => "frozen", ReadOnly => "read_only" });
str_enum!(TenantStatus {
    Provisioning => "provisioning",
    Active => "active",
    Suspended => "suspended",
    Moving => "moving",
    Deleting => "deleting",
});

/// A tenant's entry in the routing table: where its data lives and whether it takes writes.
/// `epoch` grows with every change to the entry; caches keep the highest epoch they have seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub domain: DomainName,
    pub isolation: Isolation,
    /// Engine-neutral name of the physical home: `pool`, `bridge-0001`, `silo-<tenant>`.
    pub namespace: String,
    pub write_state: WriteState,
    pub epoch: i64,
    pub schema_version: i64,
}

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub tier: TierName,
    pub status: TenantStatus,
    pub labels: Labels,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A tier: the policy a tenant is placed and limited by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    pub isolation: Isolation,
    /// Domains this tier's tenants may be placed on, in order of preference. Empty means any.
    #[serde(default)]
    pub domains: Vec<DomainName>,
    /// Monthly price of one tenant on this tier, for cost attribution.
    #[serde(default)]
    pub monthly_price: f64,
    #[serde(default)]
    pub description: String,
    /// Limits on what one request of this tier's tenants may cost; unset limits take the
    /// server's defaults.
    #[serde(default, skip_serializing_if = "TierLimits::is_empty")]
    pub limits: TierLimits,
}

/// Per-tier request limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl TierLimits {
    pub fn is_empty(&self) -> bool {
        *self == TierLimits::default()
    }
}

/// A storage target placements live in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSpec {
    /// `sqlite` for a local data directory.
    pub engine: String,
    /// How many bridge tenants share one database file before a new file is started.
    #[serde(default = "default_bridge_tenants_per_file")]
    pub bridge_tenants_per_file: u32,
    /// How many bridge/silo tenants the domain takes at most (0: unlimited).
    #[serde(default)]
    pub max_dedicated_tenants: u32,
    #[serde(default)]
    pub monthly_cost: f64,
}

pub fn default_bridge_tenants_per_file() -> u32 {
    1000
}

/// Validates a free-form label map: keys are short snake/slug words, values short strings.
pub fn validate_labels(labels: &Labels) -> Result<(), Error> {
    if labels.len() > 64 {
        return Err(Error::bad_request(
            "invalid_labels",
            "at most 64 labels are allowed",
        ));
    }
    for (key, value) in labels {
        let key_ok = !key.is_empty()
            && key.len() <= 63
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_./".contains(&b));
        if !key_ok {
            return Err(Error::bad_request(
                "invalid_labels",
                format!("label key {key:?} must be 1-63 of [a-z0-9-_./]"),
            ));
        }
        if value.len() > 256 {
            return Err(Error::bad_request(
                "invalid_labels",
                format!("label {key:?}: value longer than 256 bytes"),
            ));
        }
    }
    Ok(())
}

/// Validates a tenant's display name.
pub fn validate_display_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(Error::bad_request(
            "invalid_name",
            "name must be 1-200 bytes of printable text",
        ));
    }
    Ok(())
}
