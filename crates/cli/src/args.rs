//! The command line grammar: global connection options and one subcommand per resource.
//! Values are parsed into validated domain types here (tenant ids, roles, field specs), so a
//! typo is reported by the CLI with the offending argument named, before any request is sent.

use std::fmt;
use std::num::NonZeroU32;
use std::path::PathBuf;

use bulkhead_core::access::{PlatformRole, TenantRole};
use bulkhead_core::model::Isolation;
use bulkhead_core::permissions::Action;
use bulkhead_core::{
    CollectionName, ConnectionUrl, DomainName, KeyId, RecordId, TenantId, TierName,
};
use clap::{Args, Subcommand, ValueEnum};

use crate::input::{FieldArg, parse_field, parse_label};
pub use crate::printer::ListArgs;

/// Where the server is and who is calling. All of these may also come after the subcommand.
#[derive(Clone, Args)]
pub struct ClientOptions {
    /// Base URL of the Bulkhead server.
    #[arg(
        long,
        env = "BULKHEAD_URL",
        default_value = "http://127.0.0.1:7070",
        global = true
    )]
    pub url: String,
    /// Credential sent as a bearer token [default: the platform admin key in <DATA_DIR>/admin.key].
    #[arg(long, env = "BULKHEAD_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory [default: ./bulkhead-data]. `serve` keeps its data there; client commands
    /// read <DATA_DIR>/admin.key from it when no token is given.
    #[arg(long, env = "BULKHEAD_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Tenant whose data a platform admin's record commands touch (sent as bulkhead-tenant).
    #[arg(long, env = "BULKHEAD_TENANT", global = true, value_parser = TenantId::parse)]
    pub tenant: Option<TenantId>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// PEM file of certificate authorities to trust for an `https://` server, beside the
    /// system's (a server with a certificate of its own CA).
    #[arg(long, env = "BULKHEAD_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
}

/// The token is a secret: debug output shows only whether one was given.
/// Where the server keeps its data when nothing else is configured.
pub const DEFAULT_DATA_DIR: &str = "./bulkhead-data";

impl ClientOptions {
    /// The data directory given by flag or environment, else the default.
    pub fn data_dir_or_default(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("data_dir", &self.data_dir)
            .field("tenant", &self.tenant)
            .field("json", &self.json)
            .finish()
    }
}

/// Commands that talk to a running server.
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// Create, inspect, suspend and delete tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// List and define tiers (isolation model, domains, price).
    #[command(subcommand)]
    Tier(TierCmd),
    /// List and register storage domains.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Define and inspect collection schemas.
    #[command(subcommand)]
    Collection(CollectionCmd),
    /// Manage a tenant's API keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Manage platform (admin/operator) keys.
    #[command(subcommand)]
    PlatformKey(PlatformKeyCmd),
    /// Follow or cancel a live move.
    #[command(subcommand)]
    Move(MoveCmd),
    /// Follow the rollouts of collection changes to every tenant's storage.
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// Create, read, change and list records.
    #[command(subcommand)]
    Record(RecordCmd),
    /// Manage the people of a tenant (from your identity provider) and their roles.
    #[command(subcommand)]
    Member(crate::members::MemberCmd),
    /// Manage a tenant's custom roles (actions, record rules, hidden fields).
    #[command(subcommand)]
    Role(crate::members::RoleCmd),
    /// List, disable and re-enable users platform-wide (platform admins).
    #[command(subcommand)]
    User(crate::members::UserCmd),
    /// Mint short-lived tenant tokens for browsers.
    #[command(subcommand)]
    Token(crate::members::TokenCmd),
    /// Show who this credential is and which tenants it reaches.
    Whoami,
    /// Read the audit log: changes, denials, platform-admin access to tenant data.
    #[command(subcommand)]
    Audit(crate::audit::AuditCmd),
    /// Security findings raised from the audit stream: list and acknowledge.
    #[command(subcommand)]
    Findings(crate::secops::FindingsCmd),
    /// Webhooks that deliver findings and lifecycle events, signed (platform admins).
    #[command(subcommand)]
    Webhook(crate::secops::WebhookCmd),
    /// The cold archive retention fills: list a tenant's, bring a range back, run a pass.
    #[command(subcommand)]
    Archive(crate::cold::ArchiveCmd),
    /// The placement planner: moves proposed from each tenant's load, and applying them.
    #[command(subcommand)]
    Placement(crate::placement::PlacementCmd),
    /// Metered usage per tenant and hour or day: requests, records written, bytes, query
    /// work, refusals and storage; `usage top` ranks tenants, `usage sample` measures now.
    Usage(crate::usage::UsageArgs),
    /// Cost and margin: each domain's monthly cost split among its tenants by its rule, set
    /// against their tiers' prices.
    #[command(subcommand)]
    Cost(crate::cost::CostCmd),
    /// Find tenant storage that no live tenant owns (left by crashes or races), and remove it.
    Doctor(crate::doctor::DoctorArgs),
    /// Show how the tiers, domains and collections a platform file declares differ from
    /// what is live (create / change / unchanged / refused), changing nothing.
    Plan(crate::platform::PlatformArgs),
    /// Make the tiers, domains and collections a platform file declares live; refuses (and
    /// changes nothing) when any change would lose data or pull something from under tenants.
    Apply(crate::platform::ApplyArgs),
}

#[derive(Debug, Clone, Subcommand)]
pub enum TenantCmd {
    /// Onboard a tenant on a tier.
    Create {
        #[arg(value_parser = TenantId::parse)]
        id: TenantId,
        /// Display name.
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = TierName::parse)]
        tier: TierName,
        /// A label, as key=value; repeat for more.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// List tenants (all of them, unless --limit is given).
    List(ListArgs),
    /// Show one tenant and its placement.
    Get {
        #[arg(value_parser = TenantId::parse)]
        id: TenantId,
    },
    /// Change a tenant's name, tier (starts a move) or labels.
    Update {
        #[arg(value_parser = TenantId::parse)]
        id: TenantId,
        #[arg(long)]
        name: Option<String>,
        /// Move the tenant to another tier; its data moves live.
        #[arg(long, value_parser = TierName::parse)]
        tier: Option<TierName>,
        /// A label, as key=value; when any is given, they replace all existing labels.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Move a tenant live to another isolation model and/or domain (any engine to any other).
    Move {
        #[arg(value_parser = TenantId::parse)]
        id: TenantId,
        /// Target isolation model (default: the current one).
        #[arg(long, value_enum)]
        to: Option<IsolationArg>,
        /// Target domain (default: the current one, or the tier's domains).
        #[arg(long, value_parser = DomainName::parse)]
        domain: Option<DomainName>,
        /// Follow the move with a progress bar until it ends; exits non-zero if it rolls back.
        #[arg(long)]
        wait: bool,
    },
    /// List a tenant's moves, newest first.
    Moves {
        #[arg(value_parser = TenantId::parse)]
        id: TenantId,
    },
    /// Suspend a tenant: its writes are refused (403 tenant_suspended) until resumed; reads work.
    Suspend {
        #[arg(value_parser = TenantId::parse)]
        id: TenantId,
    },
    /// Resume a suspended tenant.
    Resume {
        #[arg(value_parser = TenantId::parse)]
        id: TenantId,
    },
    /// Write a tenant's whole data to one portable, compressed, checksummed file (platform
    /// admins; streamed, with progress).
    Export {
        #[arg(value_parser = TenantId::parse)]
        id: TenantId,
        #[arg(short = 'o', long)]
        output: std::path::PathBuf,
    },
    /// Create a tenant from an archive `tenant export` wrote, in whatever model its tier
    /// gives, with every record exactly as it was. The archive is checked whole first; a
    /// failure removes the tenant again.
    Import {
        file: std::path::PathBuf,
        /// The new tenant's id (default: the archive's).
        #[arg(long = "as", value_parser = TenantId::parse)]
        rename: Option<TenantId>,
        /// Its tier (default: the archive's).
        #[arg(long, value_parser = TierName::parse)]
        tier: Option<TierName>,
    },
    /// Delete a tenant and purge every byte of its data.
    Delete {
        #[arg(value_parser = TenantId::parse)]
        id: TenantId,
        /// Confirm that every byte of the tenant's data is to be purged.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum MoveCmd {
    /// Show a move: phase, rows copied, rate, ETA, freeze time.
    Get {
        id: String,
        /// Follow it with a progress bar until it ends.
        #[arg(long)]
        wait: bool,
    },
    /// Cancel a move that has not switched yet (it rolls back to the source).
    Cancel { id: String },
}

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
pub enum KeyCmd {
    /// Create an API key for a tenant; the secret is printed once.
    Create {
        #[arg(long, value_parser = TenantId::parse)]
        tenant_id: TenantId,
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: TenantRoleArg,
        /// Seconds until the key stops working (default: never).
        #[arg(long, value_name = "SECONDS")]
        expires_in: Option<u64>,
    },
    /// List a tenant's keys (never their secrets).
    List {
        #[arg(long, value_parser = TenantId::parse)]
        tenant_id: TenantId,
    },
    /// Revoke one of a tenant's keys.
    Revoke {
        #[arg(long, value_parser = TenantId::parse)]
        tenant_id: TenantId,
        #[arg(value_parser = KeyId::parse)]
        key_id: KeyId,
    },
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

#[derive(Debug, Clone, Subcommand)]
pub enum RecordCmd {
    /// Follow the collection's changes as they happen (server-sent events): one line per
    /// created, updated or deleted record, as your credential may see it. Reconnects on its
    /// own, resuming after the last event it printed.
    Watch {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        /// Only records matching this filter.
        #[arg(long)]
        filter: Option<String>,
        /// Resume after this event id (printed with each event under --json).
        #[arg(long, value_name = "EVENT_ID")]
        after: Option<String>,
        /// Stop after this many record events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Export every record you may export, as NDJSON on standard output (id order).
    Export {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        /// Only records matching this filter.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Create a record.
    Create {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        /// The record: inline JSON, @path to read a file, or - for standard input.
        #[arg(value_name = "JSON")]
        body: String,
    },
    /// Show one record.
    Get {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        #[arg(value_parser = RecordId::parse)]
        id: RecordId,
    },
    /// List records: one page (100, or --limit), the next with --cursor; --all for every
    /// page.
    List {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        /// Filter expression, e.g. 'status = "open" && priority > 2' (see docs/query.md).
        #[arg(long)]
        filter: Option<String>,
        /// Sort keys, e.g. '-created_at,title' (id breaks ties).
        #[arg(long, allow_hyphen_values = true)]
        sort: Option<String>,
        /// Full-text search over text fields: words, "phrases", prefix*.
        #[arg(long)]
        search: Option<String>,
        /// Only these fields (and id), e.g. 'title,n'.
        #[arg(long)]
        fields: Option<String>,
        #[command(flatten)]
        page: crate::printer::RecordPageArgs,
    },
    /// Summarise records: groups, time buckets and metrics in one call, e.g.
    /// '{"group_by": ["machine"], "bucket": {"field": "at", "interval": "hour"},
    ///   "metrics": [{"op": "count"}, {"op": "avg", "field": "temp"}]}'.
    Aggregate {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        /// The aggregation: inline JSON, @path to read a file, or - for standard input.
        #[arg(value_name = "JSON")]
        body: String,
        /// Groups per page (overrides the body's `limit`).
        #[arg(long)]
        limit: Option<u32>,
        /// `next_cursor` of the previous page (overrides the body's `cursor`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Load records from an NDJSON file (each line a record to create, or
    /// {"op": "create" | "upsert" | "delete", "id": …, "record": {…}}), with a progress bar.
    /// Failed lines are listed with their line numbers; the others are kept.
    Import {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        /// The NDJSON file, or - for standard input.
        file: std::path::PathBuf,
        /// Lines per request.
        #[arg(long, default_value_t = 5000)]
        batch: usize,
        /// Go on with an import of this file that stopped (killed, connection lost), after
        /// the lines it had imported, without duplicating one.
        #[arg(long, conflicts_with = "restart")]
        resume: bool,
        /// Import the whole file again, forgetting an unfinished import of it.
        #[arg(long)]
        restart: bool,
        /// Where the import keeps its progress [default: <file>.import-state].
        #[arg(long, value_name = "PATH")]
        state: Option<std::path::PathBuf>,
    },
    /// Change some fields of a record.
    Patch {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        #[arg(value_parser = RecordId::parse)]
        id: RecordId,
        /// The fields to change: inline JSON, @path, or - for standard input.
        #[arg(value_name = "JSON")]
        body: String,
        /// Only apply if the record is still at this version.
        #[arg(long, value_name = "VERSION")]
        if_match: Option<i64>,
    },
    /// Replace a whole record.
    Replace {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        #[arg(value_parser = RecordId::parse)]
        id: RecordId,
        /// The new record: inline JSON, @path, or - for standard input.
        #[arg(value_name = "JSON")]
        body: String,
        /// Only apply if the record is still at this version.
        #[arg(long, value_name = "VERSION")]
        if_match: Option<i64>,
    },
    /// Delete a record.
    Delete {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        #[arg(value_parser = RecordId::parse)]
        id: RecordId,
        /// Only delete if the record is still at this version.
        #[arg(long, value_name = "VERSION")]
        if_match: Option<i64>,
    },
}

/// `clap` mirrors of the core enums, so `--help` lists the possible values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IsolationArg {
    Pool,
    Bridge,
    Silo,
}

impl From<IsolationArg> for Isolation {
    fn from(arg: IsolationArg) -> Self {
        match arg {
            IsolationArg::Pool => Isolation::Pool,
            IsolationArg::Bridge => Isolation::Bridge,
            IsolationArg::Silo => Isolation::Silo,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TenantRoleArg {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl From<TenantRoleArg> for TenantRole {
    fn from(arg: TenantRoleArg) -> Self {
        match arg {
            TenantRoleArg::Owner => TenantRole::Owner,
            TenantRoleArg::Admin => TenantRole::Admin,
            TenantRoleArg::Member => TenantRole::Member,
            TenantRoleArg::Viewer => TenantRole::Viewer,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlatformRoleArg {
    Admin,
    Operator,
}

impl From<PlatformRoleArg> for PlatformRole {
    fn from(arg: PlatformRoleArg) -> Self {
        match arg {
            PlatformRoleArg::Admin => PlatformRole::Admin,
            PlatformRoleArg::Operator => PlatformRole::Operator,
        }
    }
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
