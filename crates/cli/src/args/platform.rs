//! The platform: tiers, storage domains, collections and their rollouts, platform keys.

use std::num::NonZeroU32;
use std::path::PathBuf;

use bulkhead_core::permissions::Action;
use bulkhead_core::{CollectionName, ConnectionUrl, DomainName, KeyId, TenantId, TierName};
use clap::{Subcommand, ValueEnum};

use super::{IsolationArg, PlatformRoleArg};
use crate::input::{FieldArg, parse_field};

#[derive(Debug, Clone, Subcommand)]
pub enum RolloutCmd {
    /// Show a rollout: placements done, left and failed, the wave, rate and ETA.
    Get {
        id: String,
        /// Follow it with a progress bar until it is done.
        #[arg(long)]
        wait: bool,
    },
    /// List rollouts, the newest first.
    List,
    /// Run a stopped or cancelled rollout again.
    Resume { id: String },
    /// Stop a rollout: placements it has not reached keep their definitions until a later
    /// change's rollout reaches them.
    Cancel { id: String },
}

#[derive(Debug, Clone, Subcommand)]
// Parsed once per run: the size of the `put` variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum TierCmd {
    /// List tiers.
    List,
    /// Create or replace a tier.
    Put {
        #[arg(value_parser = TierName::parse)]
        name: TierName,
        #[arg(long, value_enum)]
        isolation: IsolationArg,
        /// A domain the tier's tenants may be placed on, in order of preference; repeat for
        /// more (none: any domain).
        #[arg(long = "domain", value_parser = DomainName::parse)]
        domains: Vec<DomainName>,
        /// Monthly price of one tenant on this tier, a decimal amount (`49.00`), for the
        /// margin in cost reports.
        #[arg(long, default_value = "0", value_parser = bulkhead_core::money::Amount::parse)]
        price: bulkhead_core::money::Amount,
        /// The currency of the price [default: USD].
        #[arg(long, default_value = "USD", value_parser = bulkhead_core::money::Currency::parse)]
        currency: bulkhead_core::money::Currency,
        #[arg(long, default_value = "")]
        description: String,
        /// Time budget of one query, in milliseconds (default: the server's).
        #[arg(long)]
        query_time_ms: Option<u64>,
        /// Rows one query may examine (default: the server's).
        #[arg(long)]
        query_rows_examined: Option<u64>,
        /// Largest bulk-ingest body, in bytes (default: the server's).
        #[arg(long)]
        bulk_max_bytes: Option<u64>,
        /// Data requests one tenant may start per second on each server (default: no limit).
        #[arg(long)]
        requests_per_second: Option<NonZeroU32>,
        /// Requests a tenant may start at once before its rate applies (default: one
        /// second's worth).
        #[arg(long, requires = "requests_per_second")]
        request_burst: Option<NonZeroU32>,
        /// Data requests one tenant may have in flight at once on each server (default: no
        /// limit).
        #[arg(long)]
        max_concurrent_requests: Option<NonZeroU32>,
        /// Connections of a PostgreSQL domain's shared pool one tenant may hold at once
        /// (default: a quarter of the pool).
        #[arg(long)]
        max_domain_connections: Option<NonZeroU32>,
        /// Records one tenant may hold over all collections; past it, writes that add
        /// records are refused with 507 (reads and deletes still work).
        #[arg(long)]
        max_records: Option<u64>,
        /// Bytes one tenant's data may occupy (as storage sampling measures it); past it,
        /// writes that add data are refused with 507.
        #[arg(long)]
        max_bytes: Option<u64>,
        /// An action no credential of this tier's tenants may perform (read, create, update,
        /// delete, aggregate, export); repeat for more.
        #[arg(long = "forbid", value_parser = parse_action)]
        forbid: Vec<Action>,
        /// Forbid custom roles for this tier's tenants.
        #[arg(long)]
        no_custom_roles: bool,
        /// Keep a collection's records hot this many days, counted from a timestamp field
        /// (or created_at / updated_at), then move them into the cold archive:
        /// COLLECTION:FIELD:DAYS, repeatable (`--retention signals:ts:30`).
        #[arg(long = "retention", value_parser = parse_retention)]
        retention: Vec<(
            bulkhead_core::CollectionName,
            bulkhead_core::model::Retention,
        )>,
        /// The placement planner proposes a pooled tenant with over --promote-factor times
        /// its pool's mean load for this model.
        #[arg(long, value_enum)]
        promote_to: Option<IsolationArg>,
        /// [default: 4]
        #[arg(long)]
        promote_factor: Option<f64>,
        /// The placement planner proposes an idle bridge or silo tenant for this model.
        #[arg(long, value_enum)]
        demote_to: Option<IsolationArg>,
        /// A live move of this tier's tenants keeps its neighbours' p99 within this many
        /// times their p99 before the move [default: the server's, 1.5].
        #[arg(long)]
        pace_target: Option<f64>,
        /// The least share of time such a move's copy runs, however slow its neighbours
        /// get [default: the server's, 0.05].
        #[arg(long)]
        pace_floor: Option<f64>,
    },
}

fn parse_retention(
    raw: &str,
) -> Result<
    (
        bulkhead_core::CollectionName,
        bulkhead_core::model::Retention,
    ),
    String,
> {
    let mut parts = raw.splitn(3, ':');
    let (Some(collection), Some(field), Some(days)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("expected COLLECTION:FIELD:DAYS (signals:ts:30)".into());
    };
    let collection = bulkhead_core::CollectionName::parse(collection).map_err(|e| e.message)?;
    let field = bulkhead_core::FieldName::parse(field).map_err(|e| e.message)?;
    let hot_days = days
        .parse::<std::num::NonZeroU32>()
        .map_err(|_| format!("days: a whole number of at least 1, not {days:?}"))?;
    Ok((
        collection,
        bulkhead_core::model::Retention { field, hot_days },
    ))
}

fn parse_action(raw: &str) -> Result<Action, String> {
    raw.parse::<Action>().map_err(|e| e.message)
}

#[derive(Debug, Clone, Subcommand)]
pub enum DomainCmd {
    /// List storage domains with their capacity and tenant counts (URLs redacted).
    List,
    /// Register a storage domain, or change one (platform admin). The server opens it first
    /// and refuses one it cannot reach.
    Put {
        #[arg(value_parser = DomainName::parse)]
        name: DomainName,
        #[arg(long, value_enum)]
        engine: EngineArg,
        /// postgres: connection as the owner role, postgres://user:password@host:5432/db. Best
        /// given through the environment, so the password stays off command lines. (`--url`
        /// is the Bulkhead server's address.)
        #[arg(
            long,
            value_name = "URL",
            env = "BULKHEAD_DOMAIN_URL",
            hide_env_values = true,
            value_parser = parse_connection_url
        )]
        domain_url: Option<ConnectionUrl>,
        /// postgres: connection as the data role that runs tenant queries.
        #[arg(
            long,
            value_name = "URL",
            env = "BULKHEAD_DOMAIN_DATA_URL",
            hide_env_values = true,
            value_parser = parse_connection_url
        )]
        data_url: Option<ConnectionUrl>,
        /// Allow silo placements (one database per tenant); sqlite domains always allow them.
        #[arg(long)]
        silos: bool,
        /// Reserve the domain for one tenant: only it is placed here (as a silo if its tier
        /// says so).
        #[arg(long, value_parser = TenantId::parse)]
        dedicated_to: Option<TenantId>,
        /// postgres: the data URL goes through a transaction-mode pooler (PgBouncer before
        /// 1.21), so no prepared statements are kept across transactions.
        #[arg(long)]
        transaction_pooler: bool,
        /// Most bridge/silo tenants the domain takes (default: unlimited for sqlite, 5000 for
        /// postgres).
        #[arg(long)]
        capacity: Option<u32>,
        /// Bridge tenants per shared database file.
        #[arg(long, default_value_t = bulkhead_core::model::default_bridge_tenants_per_file())]
        bridge_tenants_per_file: u32,
        /// Monthly cost of the domain, a decimal amount (`1200.00`), split among its tenants
        /// in cost reports.
        #[arg(long, default_value = "0", value_parser = bulkhead_core::money::Amount::parse)]
        monthly_cost: bulkhead_core::money::Amount,
        /// The currency of the cost [default: USD].
        #[arg(long, default_value = "USD", value_parser = bulkhead_core::money::Currency::parse)]
        currency: bulkhead_core::money::Currency,
        /// How the cost is split among the domain's tenants: weights of their shares of
        /// stored bytes, requests and query time, e.g. `storage=2,requests=1`
        /// [default: storage=1].
        #[arg(long, value_parser = parse_cost_rule)]
        cost_rule: Option<bulkhead_core::model::CostRule>,
        /// postgres: data connections of the shared pool (default 16).
        #[arg(long)]
        pool_size: Option<u32>,
        /// Empty silos kept ready, so a silo tenant is created by renaming one (0: none).
        #[arg(long, default_value_t = 0)]
        ready_silos: u32,
    },
}

/// Any text: the server checks it. Parsed into a type whose debug output is redacted.
fn parse_connection_url(raw: &str) -> Result<ConnectionUrl, String> {
    Ok(ConnectionUrl::new(raw.trim()))
}

/// The engine kinds a domain may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    Sqlite,
    Postgres,
}

impl EngineArg {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineArg::Sqlite => bulkhead_core::model::ENGINE_SQLITE,
            EngineArg::Postgres => bulkhead_core::model::ENGINE_POSTGRES,
        }
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum CollectionCmd {
    /// Create a collection or roll out an additive change to it.
    #[command(group = clap::ArgGroup::new("definition").required(true).args(["file", "fields"]))]
    Put {
        #[arg(value_parser = CollectionName::parse)]
        name: CollectionName,
        /// JSON definition, {"fields": {...}}; '-' reads standard input.
        #[arg(long)]
        file: Option<PathBuf>,
        /// A field, as name:type[:required][:unique][:index]; repeat for more. Types: string,
        /// text, integer, float, boolean, timestamp, json.
        #[arg(long = "field", value_name = "NAME:TYPE[:FLAG]...", value_parser = parse_field)]
        fields: Vec<FieldArg>,
        /// Follow the rollout to every tenant's storage with a progress bar until it is done.
        #[arg(long)]
        wait: bool,
    },
    /// Show a collection's fields.
    Get {
        #[arg(value_parser = CollectionName::parse)]
        name: CollectionName,
    },
    /// List collections.
    List,
}

#[derive(Debug, Clone, Subcommand)]
pub enum PlatformKeyCmd {
    /// Create a platform key; the secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: PlatformRoleArg,
        /// Seconds until the key stops working (default: never).
        #[arg(long, value_name = "SECONDS")]
        expires_in: Option<u64>,
    },
    /// List platform keys (never their secrets).
    List,
    /// Revoke a platform key.
    Revoke {
        #[arg(value_parser = KeyId::parse)]
        key_id: KeyId,
    },
}

/// `storage=2,requests=1,query_time=0`: the weights of a domain's cost rule.
fn parse_cost_rule(raw: &str) -> Result<bulkhead_core::model::CostRule, String> {
    let mut rule = bulkhead_core::model::CostRule {
        storage: 0,
        requests: 0,
        query_time: 0,
    };
    for part in raw.split(',').filter(|p| !p.trim().is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not name=weight"))?;
        let weight: u32 = weight
            .trim()
            .parse()
            .map_err(|_| format!("{weight:?} is not a whole number"))?;
        match name.trim() {
            "storage" => rule.storage = weight,
            "requests" => rule.requests = weight,
            "query_time" => rule.query_time = weight,
            other => return Err(format!("{other:?} is not storage, requests or query_time")),
        }
    }
    Ok(rule)
}
