//! What the binary tells the catalog when it opens it: durability, limits, the engine
//! factory, and the settings of each background job.

use std::sync::Arc;

use bulkhead_core::TierName;

use crate::{EngineFactory, IdentityProviders, MoveSettings};

/// How the catalog is opened and runs; see each field.
#[derive(Clone)]
pub struct CatalogOptions {
    pub fsync: bool,
    /// SHA-256 of `BULKHEAD_ADMIN_KEY`, when the operator provides the admin credential.
    pub bootstrap_admin_hash: Option<String>,
    /// Query budget of tiers that set none.
    pub query_budget: bulkhead_engine::QueryBudget,
    /// Largest bulk-ingest body of tiers that set none, in bytes.
    pub bulk_max_bytes: u64,
    /// Opens the engines of domains that are not pre-registered: those stored in the catalog
    /// (at start) and those put at runtime. Without one, such domains stay unavailable.
    pub engine_factory: Option<Arc<dyn EngineFactory>>,
    /// How live moves run.
    pub moves: MoveSettings,
    /// The configured JWT issuers; without them only keys and tenant tokens authenticate.
    pub identity: Option<Arc<dyn IdentityProviders>>,
    /// Audit rows older than this are removed (hourly); `None` keeps them all.
    pub audit_retention: Option<std::time::Duration>,
    /// For crash tests: a deletion pauses this long once the tenant is marked `deleting`,
    /// before its purge (so a test can kill the server in between).
    pub deletion_hold: Option<std::time::Duration>,
    /// The order of the tiers' waves in a schema rollout (after the canary wave); tiers not
    /// named follow, by name.
    pub rollout_tier_order: Vec<TierName>,
    /// Placements (storage units) a rollout changes at once on each domain.
    pub rollout_parallelism: usize,
    /// A rollout pass with more failures than this stops the rollout (`stopped`: the
    /// placements left keep their definitions until `resume`); `None` retries for ever.
    pub rollout_max_failures: Option<u64>,
    /// A rollout pass whose failed share of the units tried is above this (judged after 10)
    /// stops the rollout too; `None`: no ratio.
    pub rollout_max_failure_ratio: Option<f64>,
    /// The first this many dedicated placements (by tenant id) join the canary wave.
    pub rollout_canary_count: usize,
    /// How a rollout paces itself on each domain by the latency of the domain's requests;
    /// `None`: full speed.
    pub rollout_pace: Option<crate::DomainPace>,
    /// How often every tenant's storage is measured; `None`: only on demand.
    pub storage_sample_every: Option<std::time::Duration>,
    /// How storage sampling paces itself by its neighbours' latency; `None`: full speed.
    pub storage_sample_pace: Option<crate::DomainPace>,
    /// How often the audit chain's new entries are checked and its head logged; `None`:
    /// never (only on demand).
    pub audit_watch_every: Option<std::time::Duration>,
    /// Not-found answers on record ids to one principal within a window that are audited
    /// as one `probe.enumeration` (the probing an enumeration finding is raised from).
    pub enumeration: (u64, std::time::Duration),
    /// Where tenants' cold archives live (retention); a deletion removes the life's part.
    /// `None`: the server keeps no cold archive.
    pub cold_dir: Option<std::path::PathBuf>,
    /// How change feeds keep events and admit watchers.
    pub watch: crate::WatchSettings,
}

impl std::fmt::Debug for CatalogOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogOptions")
            .field("fsync", &self.fsync)
            .field(
                "bootstrap_admin_hash",
                &self.bootstrap_admin_hash.as_ref().map(|_| "<set>"),
            )
            .field("query_budget", &self.query_budget)
            .field("bulk_max_bytes", &self.bulk_max_bytes)
            .field("engine_factory", &self.engine_factory.is_some())
            .field("moves", &self.moves)
            .field("identity", &self.identity.is_some())
            .field("deletion_hold", &self.deletion_hold)
            .field("audit_retention", &self.audit_retention)
            .field("rollout_tier_order", &self.rollout_tier_order)
            .field("rollout_parallelism", &self.rollout_parallelism)
            .field("rollout_max_failures", &self.rollout_max_failures)
            .field("rollout_max_failure_ratio", &self.rollout_max_failure_ratio)
            .field("rollout_canary_count", &self.rollout_canary_count)
            .field("rollout_pace", &self.rollout_pace)
            .field("storage_sample_every", &self.storage_sample_every)
            .field("storage_sample_pace", &self.storage_sample_pace)
            .field("audit_watch_every", &self.audit_watch_every)
            .field("enumeration", &self.enumeration)
            .field("cold_dir", &self.cold_dir)
            .field("watch", &self.watch)
            .finish()
    }
}

impl Default for CatalogOptions {
    fn default() -> Self {
        CatalogOptions {
            fsync: false,
            bootstrap_admin_hash: None,
            query_budget: bulkhead_engine::QueryBudget::default(),
            bulk_max_bytes: 64 * 1024 * 1024,
            engine_factory: None,
            moves: MoveSettings::default(),
            identity: None,
            deletion_hold: None,
            audit_retention: None,
            rollout_tier_order: Vec::new(),
            rollout_parallelism: 4,
            rollout_max_failures: None,
            rollout_max_failure_ratio: None,
            rollout_canary_count: 0,
            rollout_pace: None,
            storage_sample_every: None,
            storage_sample_pace: Some(crate::DomainPace {
                target_ratio: 1.2,
                floor: 0.1,
            }),
            audit_watch_every: Some(std::time::Duration::from_secs(60)),
            enumeration: (50, std::time::Duration::from_secs(60)),
            cold_dir: None,
            watch: crate::WatchSettings::default(),
        }
    }
}
