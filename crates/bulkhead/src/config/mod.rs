//! Configuration in two stages: [`FileConfig`] (what a TOML file may say, unknown keys
//! rejected, every key optional) and [`Config`] (validated, real types). Precedence:
//! defaults < file < `BULKHEAD_*` environment < command-line flags; clap reads the environment
//! and the flags, so [`ServeArgs`] already holds the top two layers merged.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

mod args;

pub use args::ServeArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
    #[serde(default)]
    pub storage: StorageFile,
    #[serde(default)]
    pub limits: LimitsFile,
    /// External identity providers whose JWTs are accepted (`[[issuers]]` tables).
    #[serde(default)]
    pub issuers: Vec<bulkhead_identity::IssuerConfig>,
    /// Origins browsers may call the API from (`*`: any).
    pub cors_origins: Option<Vec<String>>,
    /// The security detectors' thresholds and the finding kinds switched off.
    #[serde(default)]
    pub findings: bulkhead_secops::FindingRules,
    #[serde(default)]
    pub webhooks: bulkhead_secops::WebhookSettings,
    #[serde(default)]
    pub retention: RetentionFile,
}

/// `[retention]`: the retention job and where the cold archive lives.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    /// The cold archive's root [default: `<data dir>/cold`].
    pub dir: Option<PathBuf>,
    /// Minutes between two passes; 0: only on demand [default: 60].
    pub every_minutes: Option<u64>,
    /// Records archived per batch [default: 10000].
    pub batch: Option<u32>,
    /// Seconds one server may hold an unfinished batch before another settles it
    /// [default: 120].
    pub lease_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageFile {
    pub fsync: Option<bool>,
    pub silo_handle_cap: Option<usize>,
    pub readers_per_db: Option<usize>,
    pub search_upkeep: Option<bool>,
    pub bridge_tenants_per_file: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub body_limit_bytes: Option<usize>,
    pub request_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub header_timeout_secs: Option<u64>,
    pub audit_retention_days: Option<u64>,
    pub bulk_in_flight: Option<usize>,
    pub body_budget_bytes: Option<u64>,
    /// Defaults for tiers that set no limits of their own.
    pub query_time_ms: Option<u64>,
    pub query_rows_examined: Option<u64>,
    pub bulk_max_bytes: Option<u64>,
}

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    pub log_level: String,
    pub fsync: bool,
    pub silo_handle_cap: usize,
    pub readers_per_db: usize,
    /// The SQLite engine's background search upkeep (`bulkhead_engine_sqlite::SearchUpkeep`).
    pub search_upkeep: bool,
    pub bridge_tenants_per_file: u32,
    /// The local domain's `ready_silos`; `None`: the engine's default.
    pub ready_silos: Option<u32>,
    pub body_limit: usize,
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub audit_retention: Option<Duration>,
    pub bulk_in_flight: usize,
    pub body_budget_bytes: u64,
    pub query_time_ms: u64,
    pub query_rows_examined: u64,
    pub bulk_max_bytes: u64,
    pub admin_key: Option<Secret>,
    /// A PostgreSQL catalog's URL; `None` keeps the catalog in the data directory.
    pub catalog_url: Option<Secret>,
    pub catalog_data_url: Option<Secret>,
    pub moves: bulkhead_catalog::MoveSettings,
    /// `BULKHEAD_DELETE_HOLD_MS`, for crash tests: see `CatalogOptions::deletion_hold`.
    pub deletion_hold: Option<Duration>,
    /// See `CatalogOptions::rollout_tier_order` and the three below it.
    pub rollout_tier_order: Vec<bulkhead_core::TierName>,
    pub rollout_parallelism: usize,
    pub rollout_max_failures: Option<u64>,
    pub rollout_max_failure_ratio: Option<f64>,
    pub rollout_canary_count: usize,
    /// See `CatalogOptions::storage_sample_every`.
    pub storage_sample_every: Option<Duration>,
    /// See `CatalogOptions::storage_sample_pace`.
    pub storage_sample_pace: Option<bulkhead_catalog::DomainPace>,
    /// See `CatalogOptions::rollout_pace`.
    pub rollout_pace: Option<bulkhead_catalog::DomainPace>,
    /// See `CatalogOptions::audit_watch_every`.
    pub audit_watch_every: Option<Duration>,
    pub findings: bulkhead_secops::FindingRules,
    pub webhooks: bulkhead_secops::WebhookSettings,
    /// The cold archive's root; `None`: `<data dir>/cold`.
    pub cold_dir: Option<PathBuf>,
    /// Change feeds: events kept, retention, watchers per tenant.
    pub watch: bulkhead_catalog::WatchSettings,
    pub retention: bulkhead_cold::ColdSettings,
    /// Origins browsers may call from (see `ServerConfig::cors_origins`).
    pub cors_origins: Vec<String>,
    /// HTTPS, from `--tls-cert` and `--tls-key`.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    pub metrics_token: Option<Secret>,
    pub metrics_listen: Option<SocketAddr>,
    /// Where traces go (`--otlp-endpoint`); `None`: not exported.
    pub otlp_endpoint: Option<String>,
    pub metrics_top_tenants: usize,
    /// JWT issuers (from the configuration file).
    pub issuers: Vec<bulkhead_identity::IssuerConfig>,
    /// `BULKHEAD_CLOCK_SKEW_MS`: how far this server's catalog clock is set off the system's
    /// (fault injection: clock skew between servers sharing a catalog; never in production).
    pub clock_skew_ms: i64,
}

/// `BULKHEAD_CLOCK_SKEW_MS=<ms>` (may be negative): the catalog's clock runs that far off
/// the system's, for simulations of clock skew between servers.
fn clock_skew_ms() -> anyhow::Result<i64> {
    let Ok(raw) = std::env::var("BULKHEAD_CLOCK_SKEW_MS") else {
        return Ok(0);
    };
    raw.parse().map_err(|_| {
        anyhow::anyhow!("BULKHEAD_CLOCK_SKEW_MS: {raw:?} is not a number of milliseconds")
    })
}

/// `BULKHEAD_MOVE_HOLD=<phase>:<ms>`: a move pauses that long on entering that phase. For
/// crash tests, which kill the server while a move is in a given phase.
fn move_hold() -> anyhow::Result<Option<(bulkhead_core::model::MovePhase, Duration)>> {
    let Ok(raw) = std::env::var("BULKHEAD_MOVE_HOLD") else {
        return Ok(None);
    };
    let (phase, ms) = raw
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("BULKHEAD_MOVE_HOLD must be <phase>:<milliseconds>"))?;
    let phase = phase
        .parse()
        .map_err(|e: bulkhead_core::Error| anyhow::anyhow!("BULKHEAD_MOVE_HOLD: {}", e.message))?;
    let ms: u64 = ms.parse().map_err(|_| {
        anyhow::anyhow!("BULKHEAD_MOVE_HOLD: {ms:?} is not a number of milliseconds")
    })?;
    Ok(Some((phase, Duration::from_millis(ms))))
}

/// `BULKHEAD_DELETE_HOLD_MS=<ms>`: a deletion pauses that long between marking the tenant
/// `deleting` and purging it. For crash tests, which kill the server in between.
fn deletion_hold() -> anyhow::Result<Option<Duration>> {
    let Ok(raw) = std::env::var("BULKHEAD_DELETE_HOLD_MS") else {
        return Ok(None);
    };
    let ms: u64 = raw.parse().map_err(|_| {
        anyhow::anyhow!("BULKHEAD_DELETE_HOLD_MS: {raw:?} is not a number of milliseconds")
    })?;
    Ok(Some(Duration::from_millis(ms)))
}

impl Config {
    /// Merges the layers. `data_dir` comes from the shared `--data-dir`/`BULKHEAD_DATA_DIR`.
    pub fn load(
        args: &ServeArgs,
        data_dir: Option<&Path>,
        admin_key: Option<String>,
    ) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let listen_text = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:7070".into());
        let listen: SocketAddr = listen_text.parse().with_context(|| {
            format!("listen address {listen_text:?} is not HOST:PORT with a numeric host")
        })?;
        let config = Config {
            data_dir: data_dir
                .map(Path::to_path_buf)
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./bulkhead-data")),
            listen,
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            log_level: args
                .log_level
                .clone()
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
            fsync: args.fsync.or(file.storage.fsync).unwrap_or(false),
            silo_handle_cap: args
                .silo_handle_cap
                .or(file.storage.silo_handle_cap)
                .unwrap_or(256),
            readers_per_db: file.storage.readers_per_db.unwrap_or(4),
            search_upkeep: args
                .search_upkeep
                .or(file.storage.search_upkeep)
                .unwrap_or(true),
            bridge_tenants_per_file: args
                .bridge_tenants_per_file
                .or(file.storage.bridge_tenants_per_file)
                .unwrap_or(1000),
            ready_silos: args.ready_silos,
            body_limit: args
                .body_limit
                .or(file.limits.body_limit_bytes)
                .unwrap_or(1024 * 1024),
            request_timeout: Duration::from_secs(file.limits.request_timeout_secs.unwrap_or(30)),
            max_connections: args
                .max_connections
                .or(file.limits.max_connections)
                .unwrap_or(4096),
            header_timeout: Duration::from_secs(
                args.header_timeout_secs
                    .or(file.limits.header_timeout_secs)
                    .unwrap_or(30),
            ),
            body_budget_bytes: args
                .body_budget
                .or(file.limits.body_budget_bytes)
                .unwrap_or(256 * 1024 * 1024),
            bulk_in_flight: args
                .bulk_in_flight
                .or(file.limits.bulk_in_flight)
                .unwrap_or(16),
            audit_retention: args
                .audit_retention_days
                .or(file.limits.audit_retention_days)
                .map(|days| Duration::from_secs(days * 86_400)),
            query_time_ms: args
                .query_time_ms
                .or(file.limits.query_time_ms)
                .unwrap_or(5_000),
            query_rows_examined: args
                .query_rows_examined
                .or(file.limits.query_rows_examined)
                .unwrap_or(2_000_000),
            bulk_max_bytes: args
                .bulk_max_bytes
                .or(file.limits.bulk_max_bytes)
                .unwrap_or(64 * 1024 * 1024),
            admin_key: admin_key.filter(|k| !k.is_empty()).map(Secret),
            catalog_url: args.catalog.clone().filter(|c| !c.is_empty()).map(Secret),
            catalog_data_url: args
                .catalog_data_url
                .clone()
                .filter(|c| !c.is_empty())
                .map(Secret),
            moves: bulkhead_catalog::MoveSettings {
                freeze_wait: Duration::from_millis(args.move_freeze_wait_ms.unwrap_or(5_000)),
                copy_rate: args.move_copy_rate.filter(|r| *r > 0),
                duty: args.move_duty.unwrap_or(0.75),
                pace_target: args.move_pace_target.unwrap_or(1.5),
                pace_floor: args.move_pace_floor.unwrap_or(0.05),
                chunk: args.move_chunk.unwrap_or(500),
                drain_grace: Duration::from_millis(args.move_drain_grace_ms.unwrap_or(6_000)),
                hold: move_hold()?,
                lease: Duration::from_millis(args.server_lease_ms.unwrap_or(3_000)),
                silent_after: Duration::from_millis(args.server_silent_ms.unwrap_or(10_000)),
            },
            issuers: file.issuers,
            clock_skew_ms: clock_skew_ms()?,
            deletion_hold: deletion_hold()?,
            rollout_tier_order: args.rollout_tier_order.clone(),
            rollout_parallelism: args.rollout_parallelism.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
            }),
            rollout_max_failures: args.rollout_max_failures,
            rollout_max_failure_ratio: args.rollout_max_failure_ratio,
            rollout_canary_count: args.rollout_canary_count.unwrap_or(0),
            metrics_token: args
                .metrics_token
                .clone()
                .filter(|t| !t.is_empty())
                .map(Secret),
            metrics_listen: args
                .metrics_listen
                .as_deref()
                .map(|text| {
                    text.parse().with_context(|| {
                        format!(
                            "metrics listen address {text:?} is not HOST:PORT with a numeric host"
                        )
                    })
                })
                .transpose()?,
            metrics_top_tenants: args.metrics_top_tenants.unwrap_or(50),
            otlp_endpoint: args.otlp_endpoint.clone().filter(|e| !e.is_empty()),
            storage_sample_every: match args.storage_sample_minutes.unwrap_or(60) {
                0 => None,
                minutes => Some(Duration::from_secs(minutes.saturating_mul(60))),
            },
            storage_sample_pace: match args.sample_pace_target.unwrap_or(1.2) {
                0.0 => None,
                target_ratio => Some(bulkhead_catalog::DomainPace {
                    target_ratio,
                    floor: args.sample_pace_floor.unwrap_or(0.1),
                }),
            },
            rollout_pace: match args.rollout_pace_target.unwrap_or(0.0) {
                0.0 => None,
                target_ratio => Some(bulkhead_catalog::DomainPace {
                    target_ratio,
                    floor: args.rollout_pace_floor.unwrap_or(0.2),
                }),
            },
            audit_watch_every: match args.audit_watch_secs.unwrap_or(60) {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            findings: file.findings.clone(),
            tls: match (&args.tls_cert, &args.tls_key) {
                (None, None) => None,
                (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
                _ => bail!("--tls-cert and --tls-key go together"),
            },
            cors_origins: args
                .cors_origins
                .clone()
                .or_else(|| file.cors_origins.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            webhooks: bulkhead_secops::WebhookSettings {
                allow_private: args
                    .webhooks_allow_private
                    .unwrap_or(file.webhooks.allow_private),
            },
            cold_dir: args.cold_dir.clone().or(file.retention.dir.clone()),
            watch: bulkhead_catalog::WatchSettings {
                buffer: args.watch_buffer.unwrap_or(4096),
                retention: Duration::from_secs(args.watch_retention_secs.unwrap_or(300)),
                per_tenant: args.max_watchers_per_tenant.unwrap_or(256),
            },
            retention: bulkhead_cold::ColdSettings {
                every: match args
                    .retention_minutes
                    .or(file.retention.every_minutes)
                    .unwrap_or(60)
                {
                    0 => None,
                    minutes => Some(Duration::from_secs(minutes.saturating_mul(60))),
                },
                batch: file.retention.batch.unwrap_or(10_000),
                lease: Duration::from_secs(file.retention.lease_secs.unwrap_or(120)),
                crash_at: std::env::var("BULKHEAD_RETENTION_CRASH").ok(),
            },
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !(1..=100_000).contains(&self.retention.batch) {
            bail!(
                "[retention] batch must be 1 to 100000 (got {})",
                self.retention.batch
            );
        }
        if self.retention.lease < Duration::from_secs(1) {
            bail!("[retention] lease_secs must be at least 1");
        }
        if self.rollout_parallelism == 0 {
            bail!("rollout_parallelism must be at least 1");
        }
        if let Some(ratio) = self.rollout_max_failure_ratio
            && !(0.0..1.0).contains(&ratio)
        {
            bail!("rollout_max_failure_ratio must be at least 0 and below 1 (got {ratio})");
        }
        if self.silo_handle_cap == 0 {
            bail!("silo_handle_cap must be at least 1");
        }
        if self.readers_per_db == 0 {
            bail!("storage.readers_per_db must be at least 1");
        }
        if let Some(n) = self.ready_silos
            && n > bulkhead_core::model::MAX_READY_SILOS
        {
            bail!(
                "ready_silos must be at most {} (got {n})",
                bulkhead_core::model::MAX_READY_SILOS
            );
        }
        if self.bridge_tenants_per_file == 0 {
            bail!("bridge_tenants_per_file must be at least 1");
        }
        if self.body_limit < 1024 {
            bail!("body limit must be at least 1024 bytes");
        }
        if self.query_time_ms == 0 || self.query_rows_examined == 0 || self.bulk_max_bytes == 0 {
            bail!("query_time_ms, query_rows_examined and bulk_max_bytes must be at least 1");
        }
        if let Some(url) = &self.catalog_url {
            let url = url.expose();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!(
                    "--catalog must be a postgres:// URL (leave it unset for the embedded catalog)"
                );
            }
        }
        for (pace, name) in [
            (self.storage_sample_pace, "sample_pace"),
            (self.rollout_pace, "rollout_pace"),
        ] {
            let Some(pace) = pace else { continue };
            if !(pace.target_ratio > 1.0 && pace.target_ratio <= 100.0) {
                bail!("{name}_target must be 0 (no pacing), or above 1 and at most 100");
            }
            if !(pace.floor > 0.0 && pace.floor <= 1.0) {
                bail!("{name}_floor must be above 0 and at most 1");
            }
        }
        if self.watch.buffer == 0 || self.watch.buffer > 1_000_000 {
            bail!("watch_buffer must be between 1 and 1000000");
        }
        if self.watch.retention.is_zero() {
            bail!("watch_retention_secs must be at least 1");
        }
        if self.watch.per_tenant == 0 {
            bail!("max_watchers_per_tenant must be at least 1");
        }
        if self.moves.chunk == 0 || self.moves.chunk > 10_000 {
            bail!("move_chunk must be between 1 and 10000");
        }
        if !(self.moves.duty > 0.0 && self.moves.duty <= 1.0) {
            bail!("move_duty must be above 0 and at most 1");
        }
        if !(self.moves.pace_target > 1.0 && self.moves.pace_target <= 100.0) {
            bail!("move_pace_target must be above 1 and at most 100");
        }
        if !(self.moves.pace_floor > 0.0 && self.moves.pace_floor <= 1.0) {
            bail!("move_pace_floor must be above 0 and at most 1");
        }
        if self.moves.freeze_wait.is_zero() {
            bail!("move_freeze_wait_ms must be at least 1");
        }
        if self.moves.lease < Duration::from_millis(500) {
            bail!("server_lease_ms must be at least 500");
        }
        if self.moves.silent_after < self.moves.lease * 2 {
            bail!("server_silent_ms must be at least twice server_lease_ms");
        }
        if self.catalog_data_url.is_some() && self.catalog_url.is_none() {
            bail!("--catalog-data-url needs --catalog postgres://...");
        }
        if self.request_timeout.is_zero() {
            bail!("limits.request_timeout_secs must be at least 1");
        }
        if let Err(why) = self.findings.validate() {
            bail!("{why}");
        }
        for origin in &self.cors_origins {
            if let Err(why) = bulkhead_server::browser::check_origin(origin) {
                bail!("{why}");
            }
        }
        if self.body_budget_bytes < self.body_limit as u64 {
            bail!(
                "limits.body_budget_bytes (--body-budget) must hold at least one body of \
                 limits.body_limit_bytes ({} bytes)",
                self.body_limit
            );
        }
        if self.bulk_in_flight == 0 {
            bail!("limits.bulk_in_flight (--bulk-in-flight) must be at least 1");
        }
        if self.max_connections == 0 {
            bail!("limits.max_connections (--max-connections) must be at least 1");
        }
        if self.audit_retention.is_some_and(|keep| keep.is_zero()) {
            bail!("limits.audit_retention_days (--audit-retention-days) must be at least 1");
        }
        if self.header_timeout.is_zero() {
            bail!("limits.header_timeout_secs (--header-timeout-secs) must be at least 1");
        }
        if self
            .admin_key
            .as_ref()
            .is_some_and(|key| key.expose().len() < 16)
        {
            bail!("BULKHEAD_ADMIN_KEY must be at least 16 characters");
        }
        Ok(())
    }
}

/// The server's TLS configuration: rustls with the `ring` provider, HTTP/1.1.
fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<std::sync::Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading the TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    if chain.is_empty() {
        bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the TLS private key {}", key.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not fit together")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(std::sync::Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write");
        file
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let file =
            write("listen = \"127.0.0.1:9000\"\n[storage]\nfsync = true\nsilo_handle_cap = 7\n");
        let args = ServeArgs {
            config: Some(file.path().to_owned()),
            silo_handle_cap: Some(9),
            ..Default::default()
        };
        let config = Config::load(&args, None, None).expect("valid");
        assert_eq!(config.listen.port(), 9000, "file over default");
        assert!(config.fsync, "file over default");
        assert_eq!(config.silo_handle_cap, 9, "flag over file");
        assert_eq!(config.data_dir, PathBuf::from("./bulkhead-data"), "default");
        let config = Config::load(&args, Some(Path::new("/tmp/x")), None).expect("valid");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn a_rollout_paces_itself_when_asked_and_bad_paces_are_refused_by_name() {
        let config = Config::load(&ServeArgs::default(), None, None).expect("valid");
        assert_eq!(config.rollout_pace, None, "full speed by default");
        let paced = ServeArgs {
            rollout_pace_target: Some(1.3),
            ..Default::default()
        };
        assert_eq!(
            Config::load(&paced, None, None)
                .expect("valid")
                .rollout_pace,
            Some(bulkhead_catalog::DomainPace {
                target_ratio: 1.3,
                floor: 0.2
            })
        );
        for (target, floor, named) in [
            (Some(0.9), None, "rollout_pace_target"),
            (Some(1.3), Some(0.0), "rollout_pace_floor"),
            (Some(1.3), Some(1.5), "rollout_pace_floor"),
        ] {
            let args = ServeArgs {
                rollout_pace_target: target,
                rollout_pace_floor: floor,
                ..Default::default()
            };
            let e = Config::load(&args, None, None).expect_err("refused");
            assert!(e.to_string().contains(named), "{e}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected_with_their_name() {
        let file = write("[storage]\nfsnyc = true\n");
        let args = ServeArgs {
            config: Some(file.path().to_owned()),
            ..Default::default()
        };
        let err = format!("{:#}", Config::load(&args, None, None).unwrap_err());
        assert!(err.contains("fsnyc"), "{err}");
        let args = ServeArgs {
            listen: Some("localhost:x".into()),
            ..Default::default()
        };
        assert!(
            format!("{:#}", Config::load(&args, None, None).unwrap_err())
                .contains("listen address")
        );
        let err = format!(
            "{:#}",
            Config::load(&ServeArgs::default(), None, Some("short".into())).unwrap_err()
        );
        assert!(err.contains("BULKHEAD_ADMIN_KEY"));
    }

    #[test]
    fn secrets_never_print() {
        let config = Config::load(
            &ServeArgs::default(),
            None,
            Some("a-very-long-admin-secret".into()),
        )
        .expect("valid");
        assert!(!format!("{config:?}").contains("a-very-long-admin-secret"));
    }
}
