//! The command line grammar: global connection options and one subcommand per resource
//! (tenants and their keys and moves in `tenants`, the platform's tiers, domains, collections,
//! rollouts and platform keys in `platform`, records in `records`). Values are parsed into
//! validated domain types here (tenant ids, roles, field specs), so a typo is reported by the
//! CLI with the offending argument named, before any request is sent.

mod platform;
mod records;
mod tenants;

use std::fmt;
use std::path::PathBuf;

use bulkhead_core::TenantId;
use bulkhead_core::access::{PlatformRole, TenantRole};
use bulkhead_core::model::{Isolation, TenantStatus};
use clap::{Args, Subcommand, ValueEnum};

pub use crate::printer::ListArgs;
pub use platform::{CollectionCmd, DomainCmd, PlatformKeyCmd, RolloutCmd, TierCmd};
pub use records::RecordCmd;
pub use tenants::{KeyCmd, MoveCmd, TenantCmd};

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
    /// Show how the webhooks, domains, tiers and collections a platform file declares differ
    /// from what is live (create / change / unchanged / refused), changing nothing.
    Plan(crate::platform::PlatformArgs),
    /// Make the webhooks, domains, tiers and collections a platform file declares live;
    /// refuses (and changes nothing) when any change would lose data, pull something from
    /// under tenants, or be refused by the server's checks.
    Apply(crate::platform::ApplyArgs),
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
pub enum TenantStatusArg {
    Provisioning,
    Active,
    Suspended,
    Moving,
    Deleting,
}

impl From<TenantStatusArg> for TenantStatus {
    fn from(arg: TenantStatusArg) -> Self {
        match arg {
            TenantStatusArg::Provisioning => TenantStatus::Provisioning,
            TenantStatusArg::Active => TenantStatus::Active,
            TenantStatusArg::Suspended => TenantStatus::Suspended,
            TenantStatusArg::Moving => TenantStatus::Moving,
            TenantStatusArg::Deleting => TenantStatus::Deleting,
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
