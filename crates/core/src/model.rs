//! Tenants, tiers, domains and placements: the control plane's nouns.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::connection_url::ConnectionUrl;
use crate::error::Error;
use crate::ids::{DomainName, TenantId, TierName};
use crate::time::Timestamp;

/// How a tenant's data is separated from its neighbours'.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteState {
    Open,
    Frozen,
    ReadOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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

/// Where a live move stands. Phases run in this order; `done` and `rolled_back` are final.
/// Up to and including `frozen`, the source placement is the tenant's only home and a failure
/// (or a restart) rolls back to it; from `switched` on, the target is, and a restart finishes
/// the move.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MovePhase {
    Planned,
    Provisioning,
    Copying,
    CatchingUp,
    Verifying,
    Frozen,
    Switched,
    Cleaning,
    Done,
    RolledBack,
}

str_enum!(MovePhase {
    Planned => "planned",
    Provisioning => "provisioning",
    Copying => "copying",
    CatchingUp => "catching_up",
    Verifying => "verifying",
    Frozen => "frozen",
    Switched => "switched",
    Cleaning => "cleaning",
    Done => "done",
    RolledBack => "rolled_back",
});

impl MovePhase {
    /// True once the move has ended, either way.
    pub fn is_final(self) -> bool {
        matches!(self, MovePhase::Done | MovePhase::RolledBack)
    }

    /// True once the target is the tenant's home (the routing entry points at it).
    pub fn is_switched(self) -> bool {
        matches!(
            self,
            MovePhase::Switched | MovePhase::Cleaning | MovePhase::Done
        )
    }
}

/// A tenant's entry in the routing table: where its data lives and whether it takes writes.
/// `epoch` grows with every change to the entry; caches keep the highest epoch they have seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Placement {
    pub domain: DomainName,
    pub isolation: Isolation,
    /// Engine-neutral name of the physical home: `pool`, `bridge-0001`, `silo-<storage key>`.
    pub namespace: String,
    pub write_state: WriteState,
    pub epoch: i64,
    pub schema_version: i64,
    /// The tenant's life this placement belongs to; storage is named by it
    /// ([`crate::StorageKey`]). Entries written before incarnations existed are legacy.
    #[serde(default)]
    pub incarnation: crate::Incarnation,
}

impl Placement {
    /// The name this placement's storage goes by in its engine.
    pub fn storage_key(&self, tenant: &crate::TenantId) -> crate::StorageKey {
        crate::StorageKey::of(tenant, &self.incarnation)
    }
}

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub tier: TierName,
    pub status: TenantStatus,
    pub labels: Labels,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub use crate::tier::{
    DEFAULT_PROMOTE_FACTOR, MAX_HOT_DAYS, PacePolicy, PlacementPolicy, Retention, TierLimits,
    TierSpec,
};

/// A storage target placements live in: a local data directory (`sqlite`) or a PostgreSQL
/// server (`postgres`). Registered by the server at start (`local`) or with
/// `PUT /v1/domains/{name}`; stored in the catalog with its connection URLs, which every view
/// shows redacted ([`DomainSpec::redacted`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainSpec {
    /// `sqlite` for a local data directory, `postgres` for a PostgreSQL server.
    pub engine: String,
    /// `postgres`: how to reach the server as the role that owns the schemas (schema changes,
    /// provisioning), `postgres://user:password@host:5432/db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<ConnectionUrl>,
    /// `postgres`: an optional connection as the data role, which owns nothing and runs the
    /// tenants' queries. Without it, the engine decides (it may derive one from `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_url: Option<ConnectionUrl>,
    /// Whether the domain may hold silo placements (a database per tenant). `sqlite` domains
    /// always may (stored as `true`); others only when this is set or the domain is dedicated
    /// to the tenant.
    #[serde(default)]
    pub silos: bool,
    /// A server registered for one tenant (premium): only that tenant is placed here, and it
    /// may be placed as a silo whatever `silos` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedicated_to: Option<TenantId>,
    /// `postgres`: the data connection goes through a transaction-mode pooler that does not
    /// track prepared statements (PgBouncer before 1.21), so none are kept across
    /// transactions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transaction_pooler: bool,
    /// How many bridge tenants share one database file before a new file is started.
    #[serde(default = "default_bridge_tenants_per_file")]
    pub bridge_tenants_per_file: u32,
    /// How many bridge/silo tenants the domain takes at most (0: unlimited). A `postgres`
    /// domain stored with 0 gets [`DEFAULT_POSTGRES_CAPACITY`]: each bridge schema costs
    /// catalog-cache memory in every PostgreSQL backend that touches it, so a capacity bounds
    /// it. Set another value explicitly to override, a large one included.
    #[serde(default)]
    pub max_dedicated_tenants: u32,
    /// What the domain costs per month (a decimal string), split among the tenants placed
    /// on it by `cost_rule` in cost reports.
    #[serde(default)]
    pub monthly_cost: crate::money::Amount,
    /// The currency of `monthly_cost` (default `USD`).
    #[serde(default, skip_serializing_if = "crate::money::Currency::is_default")]
    pub currency: crate::money::Currency,
    /// How `monthly_cost` is split among the domain's tenants (default: by storage).
    #[serde(default, skip_serializing_if = "CostRule::is_default")]
    pub cost_rule: CostRule,
    /// `postgres`: data connections the domain's shared pool opens at most (pool and bridge
    /// tenants share it; each silo database has its own). Default 16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
    /// Empty silo placements kept ready on this domain (the ready pool), so creating a silo
    /// tenant renames one instead of building storage. 0: none. Refilled in the background,
    /// brought to each new schema version, never holding data, never visible as tenants.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ready_silos: u32,
}

/// How a domain's cost is split among its tenants: each tenant's share of the domain's
/// stored bytes, requests and query time, weighted (default: storage only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CostRule {
    #[serde(default)]
    pub storage: u32,
    #[serde(default)]
    pub requests: u32,
    #[serde(default)]
    pub query_time: u32,
}

impl Default for CostRule {
    fn default() -> Self {
        CostRule {
            storage: 1,
            requests: 0,
            query_time: 0,
        }
    }
}

impl CostRule {
    pub fn is_default(&self) -> bool {
        *self == CostRule::default()
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The most empty silos a domain keeps ready.
pub const MAX_READY_SILOS: u32 = 64;

/// The engine kinds a domain may name.
pub const ENGINE_SQLITE: &str = "sqlite";
pub const ENGINE_POSTGRES: &str = "postgres";

/// Capacity (bridge/silo tenants) a `postgres` domain gets when none is given.
pub const DEFAULT_POSTGRES_CAPACITY: u32 = 5000;

pub fn default_bridge_tenants_per_file() -> u32 {
    1000
}

fn invalid_domain(message: impl Into<String>) -> Error {
    Error::bad_request("invalid_domain", message)
}

impl DomainSpec {
    /// A `sqlite` domain with default settings.
    pub fn sqlite() -> Self {
        DomainSpec {
            engine: ENGINE_SQLITE.to_owned(),
            url: None,
            data_url: None,
            silos: true,
            dedicated_to: None,
            transaction_pooler: false,
            bridge_tenants_per_file: default_bridge_tenants_per_file(),
            max_dedicated_tenants: 0,
            monthly_cost: crate::money::Amount::ZERO,
            currency: crate::money::Currency::default(),
            cost_rule: CostRule::default(),
            pool_size: None,
            ready_silos: 0,
        }
    }

    /// Fills in per-engine defaults (a `postgres` domain's capacity, `silos` of a `sqlite`
    /// domain); run before storing.
    pub fn with_engine_defaults(mut self) -> Self {
        match self.engine.as_str() {
            ENGINE_POSTGRES if self.max_dedicated_tenants == 0 => {
                self.max_dedicated_tenants = DEFAULT_POSTGRES_CAPACITY;
            }
            ENGINE_SQLITE => self.silos = true,
            _ => {}
        }
        self
    }

    /// Checks the spec; errors name the field and never quote a URL.
    pub fn validate(&self) -> Result<(), Error> {
        if self.ready_silos > MAX_READY_SILOS {
            return Err(invalid_domain(format!(
                "ready_silos: at most {MAX_READY_SILOS} empty silos are kept ready (got {})",
                self.ready_silos
            )));
        }
        if self.ready_silos > 0 && !self.silos && self.engine != ENGINE_SQLITE {
            return Err(invalid_domain(
                "ready_silos: this domain holds no silos for tenants at large; set silos too",
            ));
        }
        match self.engine.as_str() {
            ENGINE_SQLITE => {
                for (field, value) in [("url", &self.url), ("data_url", &self.data_url)] {
                    if value.is_some() {
                        return Err(invalid_domain(format!(
                            "{field}: a sqlite domain lives in the server's data directory and takes no {field}"
                        )));
                    }
                }
            }
            ENGINE_POSTGRES => {
                let Some(url) = &self.url else {
                    return Err(invalid_domain(
                        "url: a postgres domain needs url (postgres://user:password@host:5432/db)",
                    ));
                };
                for (field, value) in [("url", Some(url)), ("data_url", self.data_url.as_ref())] {
                    let Some(value) = value else { continue };
                    let text = value.expose();
                    if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
                        return Err(invalid_domain(format!(
                            "{field}: must start with postgres:// or postgresql://"
                        )));
                    }
                    if text.len() > 4096 || text.chars().any(char::is_control) {
                        return Err(invalid_domain(format!(
                            "{field}: must be at most 4096 bytes of printable text"
                        )));
                    }
                }
            }
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(invalid_domain(format!(
                    "engine: unknown engine {shown:?}; expected {ENGINE_SQLITE} or {ENGINE_POSTGRES}"
                )));
            }
        }
        if self.bridge_tenants_per_file == 0 {
            return Err(invalid_domain(
                "bridge_tenants_per_file: must be at least 1",
            ));
        }
        if self.cost_rule.storage + self.cost_rule.requests + self.cost_rule.query_time == 0 {
            return Err(invalid_domain(
                "cost_rule: at least one weight (storage, requests, query_time) must be above 0",
            ));
        }
        Ok(())
    }

    /// The spec with `url` and `data_url` redacted: what views and audit records show.
    pub fn redacted(&self) -> DomainSpec {
        DomainSpec {
            url: self.url.as_ref().map(ConnectionUrl::to_redacted),
            data_url: self.data_url.as_ref().map(ConnectionUrl::to_redacted),
            ..self.clone()
        }
    }

    /// Whether `tenant` may be placed on this domain at all.
    pub fn accepts(&self, tenant: &TenantId) -> bool {
        self.dedicated_to
            .as_ref()
            .is_none_or(|owner| owner == tenant)
    }

    /// Whether `tenant` may be placed here as a silo.
    pub fn allows_silo_for(&self, tenant: &TenantId) -> bool {
        self.engine == ENGINE_SQLITE || self.silos || self.dedicated_to.as_ref() == Some(tenant)
    }

    /// Removes this spec's secrets from a text that may quote them (an engine's error).
    pub fn scrub(&self, text: &str) -> String {
        [&self.url, &self.data_url]
            .into_iter()
            .flatten()
            .fold(text.to_owned(), |text, url| url.scrub(&text))
    }
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
        // A PostgreSQL catalog cannot store a NUL; no label needs a control character.
        if value.chars().any(char::is_control) {
            return Err(Error::bad_request(
                "invalid_labels",
                format!("label {key:?}: value must be printable text (no control characters)"),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn spec(json: serde_json::Value) -> DomainSpec {
        serde_json::from_value(json).unwrap()
    }

    fn field_of(err: Error) -> String {
        assert_eq!(err.code, "invalid_domain");
        err.message.split(':').next().unwrap().to_owned()
    }

    #[test]
    fn label_values_are_printable_text() {
        let labels = |value: &str| -> Labels { [("plan".to_owned(), value.to_owned())].into() };
        assert!(validate_labels(&labels("gold, eu-west / 2")).is_ok());
        assert!(validate_labels(&labels("")).is_ok());
        // A PostgreSQL catalog cannot store a NUL; no label needs a control character.
        for bad in ["a\u{0}b", "tab\there", "line\n", "\u{7f}"] {
            let err = validate_labels(&labels(bad)).unwrap_err();
            assert_eq!(err.code, "invalid_labels", "{bad:?}");
            assert!(err.message.contains("\"plan\""), "{}", err.message);
        }
    }

    #[test]
    fn domain_specs_are_checked_field_by_field_without_quoting_urls() {
        assert!(
            spec(serde_json::json!({"engine": "sqlite"}))
                .validate()
                .is_ok()
        );
        let pg = spec(serde_json::json!({"engine": "postgres", "url": "postgres://o:pw@db/x"}));
        assert!(pg.validate().is_ok());
        let cases = [
            (serde_json::json!({"engine": "mysql"}), "engine"),
            (serde_json::json!({"engine": "postgres"}), "url"),
            (
                serde_json::json!({"engine": "postgres", "url": "mysql://o:pw@db"}),
                "url",
            ),
            (
                serde_json::json!({"engine": "postgres", "url": "postgres://db", "data_url": "o:pw@db"}),
                "data_url",
            ),
            (
                serde_json::json!({"engine": "sqlite", "url": "postgres://o:pw@db"}),
                "url",
            ),
            (
                serde_json::json!({"engine": "sqlite", "data_url": "postgres://o:pw@db"}),
                "data_url",
            ),
            (
                serde_json::json!({"engine": "sqlite", "bridge_tenants_per_file": 0}),
                "bridge_tenants_per_file",
            ),
            (
                serde_json::json!({"engine": "sqlite", "cost_rule": {"storage": 0}}),
                "cost_rule",
            ),
        ];
        // A negative or float-garbled cost never even parses.
        for bad in [serde_json::json!(-1.0), serde_json::json!("1e3x")] {
            let json = serde_json::json!({"engine": "sqlite", "monthly_cost": bad});
            assert!(serde_json::from_value::<DomainSpec>(json).is_err());
        }
        for (json, field) in cases {
            let err = spec(json.clone()).validate().unwrap_err();
            assert!(!err.message.contains("pw"), "{json}: {}", err.message);
            assert_eq!(field_of(err), field, "{json}");
        }
    }

    #[test]
    fn postgres_domains_get_a_default_capacity_and_views_are_redacted() {
        let pg = spec(serde_json::json!({
            "engine": "postgres", "url": "postgres://o:pw1@db/x", "data_url": "postgres://d:pw2@db/x"
        }))
        .with_engine_defaults();
        assert_eq!(pg.max_dedicated_tenants, DEFAULT_POSTGRES_CAPACITY);
        let explicit = DomainSpec {
            max_dedicated_tenants: 1_000_000,
            ..pg.clone()
        };
        assert_eq!(
            explicit.with_engine_defaults().max_dedicated_tenants,
            1_000_000
        );
        assert_eq!(
            DomainSpec::sqlite()
                .with_engine_defaults()
                .max_dedicated_tenants,
            0
        );
        let shown = serde_json::to_string(&pg.redacted()).unwrap();
        assert!(!shown.contains("pw1") && !shown.contains("pw2"), "{shown}");
        assert!(serde_json::to_string(&pg).unwrap().contains("pw1"));
        assert_eq!(
            pg.scrub("login o:pw1 / pw2 failed"),
            "login o:*** / *** failed"
        );
    }

    #[test]
    fn dedicated_domains_take_only_their_tenant_and_silos_follow_the_engine() {
        let (acme, other) = (
            TenantId::parse("acme").unwrap(),
            TenantId::parse("other").unwrap(),
        );
        let mut pg = spec(serde_json::json!({"engine": "postgres", "url": "postgres://db/x"}));
        assert!(pg.accepts(&acme) && !pg.allows_silo_for(&acme));
        pg.dedicated_to = Some(acme.clone());
        assert!(pg.accepts(&acme) && !pg.accepts(&other));
        assert!(pg.allows_silo_for(&acme) && !pg.allows_silo_for(&other));
        pg.silos = true;
        assert!(pg.allows_silo_for(&other));
        assert!(DomainSpec::sqlite().allows_silo_for(&other));
    }
}
