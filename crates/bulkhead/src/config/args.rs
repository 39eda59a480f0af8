//! `bulkhead serve`'s flags: each also reads its `BULKHEAD_*` variable, so clap merges the
//! environment and the command line here (the top two layers of the configuration).

use std::path::PathBuf;

use super::LogFormat;

/// `bulkhead serve` flags; each also reads its `BULKHEAD_*` variable.
#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (unknown keys are rejected).
    #[arg(long, env = "BULKHEAD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7070].
    #[arg(long, env = "BULKHEAD_LISTEN")]
    pub listen: Option<String>,
    /// Log format [default: text].
    #[arg(long, env = "BULKHEAD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `bulkhead=debug` [default: info].
    #[arg(long, env = "BULKHEAD_LOG")]
    pub log_level: Option<String>,
    /// fsync every commit, for durability across power loss (not only process crashes).
    #[arg(long, env = "BULKHEAD_FSYNC")]
    pub fsync: Option<bool>,
    /// Merge the search indexes of pool and bridge files in the background, in pauses
    /// between writes and paced (see docs/operations.md) [default: true].
    #[arg(long, env = "BULKHEAD_SEARCH_UPKEEP")]
    pub search_upkeep: Option<bool>,
    /// Silo database files kept open at once [default: 256].
    #[arg(long, env = "BULKHEAD_SILO_HANDLE_CAP")]
    pub silo_handle_cap: Option<usize>,
    /// Bridge tenants per database file before a new file is used [default: 1000].
    #[arg(long, env = "BULKHEAD_BRIDGE_TENANTS_PER_FILE")]
    pub bridge_tenants_per_file: Option<u32>,
    /// Empty silos the local domain keeps ready, so a silo tenant is created by renaming
    /// one (0: none) [default: 2 on SQLite, 0 when the catalog is on PostgreSQL].
    #[arg(long, env = "BULKHEAD_READY_SILOS")]
    pub ready_silos: Option<u32>,
    /// Largest request body in bytes [default: 1048576].
    #[arg(long, env = "BULKHEAD_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// Open connections at most; more are closed at once [default: 4096, lowered to what
    /// the open-files limit leaves room for].
    #[arg(long, env = "BULKHEAD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a connection may take to send a request head, and an idle keep-alive
    /// connection may wait for its next request [default: 30].
    #[arg(long, env = "BULKHEAD_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Days audit rows are kept, then removed (hourly) [default: kept forever].
    #[arg(long, env = "BULKHEAD_AUDIT_RETENTION_DAYS")]
    pub audit_retention_days: Option<u64>,
    /// The tiers' waves in a schema rollout, in order, after the canary wave (tenants
    /// labelled `canary=true`), e.g. `free,standard,premium`; tiers not named follow by name.
    #[arg(long, env = "BULKHEAD_ROLLOUT_TIER_ORDER", value_delimiter = ',', value_parser = bulkhead_core::TierName::parse)]
    pub rollout_tier_order: Vec<bulkhead_core::TierName>,
    /// Placements a schema rollout changes at once on each domain [default: half the CPUs,
    /// at least 1: a rollout is background work, and its neighbours come first].
    #[arg(long, env = "BULKHEAD_ROLLOUT_PARALLELISM")]
    pub rollout_parallelism: Option<usize>,
    /// A schema rollout pass with more failures than this stops the rollout (placements left
    /// keep their definitions until `bulkhead rollout resume`) [default: never stops; failed
    /// placements are retried with backoff].
    #[arg(long, env = "BULKHEAD_ROLLOUT_MAX_FAILURES")]
    pub rollout_max_failures: Option<u64>,
    /// A schema rollout pass whose failed share of the placements tried (after the first
    /// 10) is above this stops the rollout, e.g. `0.05` [default: no ratio].
    #[arg(long, env = "BULKHEAD_ROLLOUT_MAX_FAILURE_RATIO")]
    pub rollout_max_failure_ratio: Option<f64>,
    /// The first this many dedicated tenants (by id) join a rollout's canary wave, with
    /// those labelled `canary=true` [default: 0].
    #[arg(long, env = "BULKHEAD_ROLLOUT_CANARY_COUNT")]
    pub rollout_canary_count: Option<usize>,
    /// A schema rollout slows down while the requests on the domain it changes see their p99
    /// over this many times their p99 just before it, e.g. `1.3`; 0: roll out at full speed
    /// [default: 0].
    #[arg(long, env = "BULKHEAD_ROLLOUT_PACE_TARGET")]
    pub rollout_pace_target: Option<f64>,
    /// The least share of time a schema rollout works, so it always ends [default: 0.2].
    #[arg(long, env = "BULKHEAD_ROLLOUT_PACE_FLOOR")]
    pub rollout_pace_floor: Option<f64>,
    /// Minutes between two measurements of every tenant's storage (records and bytes, for
    /// `bulkhead usage`); 0: only on demand (`bulkhead usage sample`) [default: 60].
    #[arg(long, env = "BULKHEAD_STORAGE_SAMPLE_MINUTES")]
    pub storage_sample_minutes: Option<u64>,
    /// Storage sampling slows down while the requests on the domain it measures see their
    /// p99 over this many times their p99 just before; 0: sample at full speed [default: 1.2].
    #[arg(long, env = "BULKHEAD_SAMPLE_PACE_TARGET")]
    pub sample_pace_target: Option<f64>,
    /// The least share of time storage sampling works, so a pass always ends [default: 0.1].
    #[arg(long, env = "BULKHEAD_SAMPLE_PACE_FLOOR")]
    pub sample_pace_floor: Option<f64>,
    /// Seconds between two checks of the audit log's hash chain (each logs the chain's
    /// head; a break is audited and raised as a finding); 0: only on demand [default: 60].
    #[arg(long, env = "BULKHEAD_AUDIT_WATCH_SECS")]
    pub audit_watch_secs: Option<u64>,
    /// Minutes between two retention passes (tiers' `retention` moves aged records into the
    /// cold archive); 0: only on demand (`bulkhead archive run`) [default: 60].
    #[arg(long, env = "BULKHEAD_RETENTION_MINUTES")]
    pub retention_minutes: Option<u64>,
    /// Where tenants' cold archives are kept [default: <data dir>/cold].
    #[arg(long, env = "BULKHEAD_COLD_DIR")]
    pub cold_dir: Option<PathBuf>,
    /// Change-feed events kept per tenant and collection for resumption (`Last-Event-ID`);
    /// also how far a watcher may fall behind before it is told to resync [default: 4096].
    #[arg(long, env = "BULKHEAD_WATCH_BUFFER")]
    pub watch_buffer: Option<usize>,
    /// Seconds change-feed events are kept for resumption [default: 300].
    #[arg(long, env = "BULKHEAD_WATCH_RETENTION_SECS")]
    pub watch_retention_secs: Option<u64>,
    /// Change feeds one tenant may have open on this server [default: 256].
    #[arg(long, env = "BULKHEAD_MAX_WATCHERS_PER_TENANT")]
    pub max_watchers_per_tenant: Option<usize>,
    /// Serve HTTPS with this certificate chain (PEM; with --tls-key).
    #[arg(long, env = "BULKHEAD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "BULKHEAD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Origins browsers may call the API from, comma-separated (`https://app.example.com`),
    /// or `*`; none by default (no CORS answers).
    #[arg(long, env = "BULKHEAD_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
    /// Let webhooks deliver to loopback and private addresses (`[webhooks] allow_private`).
    #[arg(long, env = "BULKHEAD_WEBHOOKS_ALLOW_PRIVATE")]
    pub webhooks_allow_private: Option<bool>,
    /// Export traces over OTLP/HTTP to this collector (`http://host:4318`); off when unset.
    #[arg(long, env = "BULKHEAD_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// A bearer token that may scrape `GET /metrics` (platform admin and operator keys may
    /// too) [default: none].
    #[arg(long, env = "BULKHEAD_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Also serve `GET /metrics` (only it) on this address: open, or behind the metrics
    /// token when one is set [default: not served separately].
    #[arg(long, env = "BULKHEAD_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Tenants with metrics series of their own (the heaviest by requests); the others are
    /// summed into `tenant="_other"` [default: 50].
    #[arg(long, env = "BULKHEAD_METRICS_TOP_TENANTS")]
    pub metrics_top_tenants: Option<usize>,
    /// Bulk bodies applied at once on this server; one more answers 503 [default: 16].
    #[arg(long, env = "BULKHEAD_BULK_IN_FLIGHT")]
    pub bulk_in_flight: Option<usize>,
    /// Bytes of request bodies held at once on this server; past it `503 busy`
    /// [default: 268435456].
    #[arg(long, env = "BULKHEAD_BODY_BUDGET")]
    pub body_budget: Option<u64>,
    /// Time budget of one query for tiers that set none, in milliseconds [default: 5000].
    #[arg(long, env = "BULKHEAD_QUERY_TIME_MS")]
    pub query_time_ms: Option<u64>,
    /// Rows one query may examine, for tiers that set none [default: 2000000].
    #[arg(long, env = "BULKHEAD_QUERY_ROWS_EXAMINED")]
    pub query_rows_examined: Option<u64>,
    /// Largest bulk-ingest body for tiers that set none, in bytes [default: 67108864].
    #[arg(long, env = "BULKHEAD_BULK_MAX_BYTES")]
    pub bulk_max_bytes: Option<u64>,
    /// Where the catalog lives: a `postgres://` URL (an owner role; several servers may
    /// share it, and the default domain `local` is then that database) [default: an SQLite
    /// file in the data directory].
    #[arg(long, env = "BULKHEAD_CATALOG", hide_env_values = true)]
    pub catalog: Option<String>,
    /// With a PostgreSQL catalog: the URL tenant queries of the `local` domain connect with
    /// (a role without BYPASSRLS) [default: the catalog URL as user `bulkhead_data`].
    #[arg(long, env = "BULKHEAD_CATALOG_DATA_URL", hide_env_values = true)]
    pub catalog_data_url: Option<String>,
    /// How long a write to a moving tenant may wait while the move switches placement
    /// before it gets 503 with Retry-After, in milliseconds [default: 5000].
    #[arg(long, env = "BULKHEAD_MOVE_FREEZE_WAIT_MS")]
    pub move_freeze_wait_ms: Option<u64>,
    /// Most records a move copies per second, to spare neighbours [default: no limit].
    #[arg(long, env = "BULKHEAD_MOVE_COPY_RATE")]
    pub move_copy_rate: Option<u64>,
    /// Share of time a move's copy and comparison may work, between 0 and 1; they rest the
    /// remainder so neighbours keep their latency [default: 0.75].
    #[arg(long, env = "BULKHEAD_MOVE_DUTY")]
    pub move_duty: Option<f64>,
    /// A move slows its copy down while its neighbours' p99 is over this many times their
    /// p99 just before the move (a tier's `pace.target_ratio` overrides it) [default: 1.5].
    #[arg(long, env = "BULKHEAD_MOVE_PACE_TARGET")]
    pub move_pace_target: Option<f64>,
    /// The least share of time a move's copy works, however slow its neighbours get, so it
    /// always finishes (a tier's `pace.floor` overrides it) [default: 0.05].
    #[arg(long, env = "BULKHEAD_MOVE_PACE_FLOOR")]
    pub move_pace_floor: Option<f64>,
    /// Records per page a move copies and compares [default: 500].
    #[arg(long, env = "BULKHEAD_MOVE_CHUNK")]
    pub move_chunk: Option<u32>,
    /// How long reads that began before a move's switch may still use the old placement
    /// before it is removed, in milliseconds [default: 6000].
    #[arg(long, env = "BULKHEAD_MOVE_DRAIN_GRACE_MS")]
    pub move_drain_grace_ms: Option<u64>,
    /// With a shared catalog: a server that has not reached the catalog for this long refuses
    /// writes (503 catalog_unreachable), in milliseconds [default: 3000].
    #[arg(long, env = "BULKHEAD_SERVER_LEASE_MS")]
    pub server_lease_ms: Option<u64>,
    /// With a shared catalog: a server silent this long is taken for gone (moves stop waiting
    /// for it; those it ran are adopted), in milliseconds; at least twice the lease
    /// [default: 10000].
    #[arg(long, env = "BULKHEAD_SERVER_SILENT_MS")]
    pub server_silent_ms: Option<u64>,
}
