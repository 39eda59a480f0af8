//! Tenants: their lifecycle, moves and API keys.

use bulkhead_core::{DomainName, Incarnation, KeyId, TenantId, TierName};
use clap::{Args, Subcommand};

use super::{IsolationArg, ListArgs, TenantRoleArg, TenantStatusArg};
use crate::input::parse_label;

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
    /// List tenants in id order (all that match, unless --limit is given).
    List(TenantListArgs),
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
        /// Move only this life of the tenant (its `placement.incarnation`): if the id names
        /// another by now, the move is refused (409 tenant_life_ended) and nothing starts.
        #[arg(long, value_parser = Incarnation::parse)]
        incarnation: Option<Incarnation>,
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
        /// Export the hot records alone when the tenant also has records in the cold archive
        /// (which an archive does not hold; without this, such an export is refused).
        #[arg(long)]
        hot_only: bool,
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
        /// Delete only this life of the tenant (its `placement.incarnation`): if the id names
        /// another by now (deleted and created again meanwhile), nothing is deleted (409
        /// tenant_life_ended).
        #[arg(long, value_parser = Incarnation::parse)]
        incarnation: Option<Incarnation>,
    },
}

/// `tenant list`: filters (each one given must match) and paging.
#[derive(Debug, Clone, Args)]
pub struct TenantListArgs {
    /// Only tenants whose id or name contains this text, ignoring case.
    #[arg(long)]
    pub search: Option<String>,
    /// Only tenants on this tier.
    #[arg(long, value_parser = TierName::parse)]
    pub tier: Option<TierName>,
    /// Only tenants in this status.
    #[arg(long, value_enum)]
    pub status: Option<TenantStatusArg>,
    /// Only tenants placed on this storage domain.
    #[arg(long, value_parser = DomainName::parse)]
    pub domain: Option<DomainName>,
    /// Only tenants placed in this isolation model.
    #[arg(long, value_enum)]
    pub isolation: Option<IsolationArg>,
    #[command(flatten)]
    pub page: ListArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum MoveCmd {
    /// List moves of every tenant, newest first (all of them, unless --limit is given).
    List {
        /// Only moves still under way (not done or rolled back).
        #[arg(long)]
        active: bool,
        /// Only this tenant's moves.
        #[arg(long, value_parser = TenantId::parse)]
        tenant_id: Option<TenantId>,
        #[command(flatten)]
        page: ListArgs,
    },
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
