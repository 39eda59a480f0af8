//! `bulkhead serve`: with `domains`, the only place that wires concrete engines in. Opens the
//! data directory (locked against a second server), the local SQLite domain and the catalog
//! (which reopens the domains put at runtime through `domains::open_engine`), creates the
//! first admin key on first start, serves until SIGINT/SIGTERM, drains, closes.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use bulkhead_catalog::{Catalog, CatalogOptions, Engines, Location};
use bulkhead_core::DomainName;
use bulkhead_core::access::AccessAuthority;
use bulkhead_core::connection_url::ConnectionUrl;
use bulkhead_core::model::{DomainSpec, ENGINE_POSTGRES};
use bulkhead_core::time::{Clock, SystemClock};
use bulkhead_engine::Engine;
use bulkhead_engine_sqlite::SqliteEngine;
use bulkhead_server::{AppState, Handles, ServerConfig};

use crate::config::Config;
use crate::domains;

const ADMIN_KEY_FILE: &str = "admin.key";
const LOCAL_DOMAIN: &str = "local";

/// A running data directory: the lock that keeps other servers out, and the catalog.
pub struct Node {
    /// The control plane; call [`Catalog::shutdown`] when done.
    pub catalog: Catalog,
    /// What `bulkhead_server::serve` serves.
    pub state: AppState,
    _lock: File,
}

/// Opens everything under `config.data_dir`. Prints the first admin key, once. `authority`
/// is the process's access authority ([`AccessAuthority::claim`]); the catalog keeps it.
/// Empty silos a local SQLite domain keeps ready unless told otherwise.
const DEFAULT_READY_SILOS: u32 = 2;

pub async fn open(
    config: &Config,
    clock: Arc<dyn Clock>,
    authority: AccessAuthority,
) -> anyhow::Result<Node> {
    crate::private::restrict_new_files();
    crate::private::prepare_data_dir(&config.data_dir)?;
    let lock = lock_data_dir(&config.data_dir)?;

    let local = DomainName::parse(LOCAL_DOMAIN)?;
    let (location, spec, engine): (Location, DomainSpec, Arc<dyn Engine>) = match &config
        .catalog_url
    {
        None => {
            let engine_config =
                domains::sqlite_config(config, config.data_dir.join("domains").join(LOCAL_DOMAIN));
            let engine = SqliteEngine::open(engine_config, Arc::clone(&clock))
                .context("opening the local SQLite domain")?;
            let spec = DomainSpec {
                bridge_tenants_per_file: config.bridge_tenants_per_file,
                ready_silos: config.ready_silos.unwrap_or(DEFAULT_READY_SILOS),
                ..DomainSpec::sqlite()
            };
            let location = Location::Sqlite(config.data_dir.join("catalog.db"));
            (location, spec, Arc::new(engine))
        }
        Some(url) => {
            // The catalog's database is also the default domain, so every server
            // sharing the catalog places and finds tenants alike.
            let spec = DomainSpec {
                engine: ENGINE_POSTGRES.to_owned(),
                url: Some(ConnectionUrl::new(url.expose())),
                data_url: config
                    .catalog_data_url
                    .as_ref()
                    .map(|u| ConnectionUrl::new(u.expose())),
                silos: true,
                // A spare here is a database: only when asked for.
                ready_silos: config.ready_silos.unwrap_or(0),
                ..DomainSpec::sqlite()
            }
            .with_engine_defaults();
            let engine = domains::open_engine(config, Arc::clone(&clock), &local, &spec)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("opening the local PostgreSQL domain: {}", e.message)
                })?;
            (Location::Postgres(url.expose().to_owned()), spec, engine)
        }
    };
    let mut engines = Engines::default();
    engines.register(local, spec, engine);
    // Domains put at runtime are stored in the catalog and reopened through this at start.
    let factory = domains::BinaryEngineFactory::new(config.clone(), Arc::clone(&clock));

    let options = CatalogOptions {
        fsync: config.fsync,
        bootstrap_admin_hash: config
            .admin_key
            .as_ref()
            .map(|k| bulkhead_core::keys::hash_secret(k.expose())),
        query_budget: bulkhead_engine::QueryBudget {
            time: std::time::Duration::from_millis(config.query_time_ms),
            rows_examined: config.query_rows_examined,
            examined: Default::default(),
        },
        bulk_max_bytes: config.bulk_max_bytes,
        engine_factory: Some(Arc::new(factory)),
        moves: config.moves.clone(),
        identity: crate::identity::providers(&config.issuers).await?,
        deletion_hold: config.deletion_hold,
        audit_retention: config.audit_retention,
        rollout_tier_order: config.rollout_tier_order.clone(),
        rollout_parallelism: config.rollout_parallelism,
        rollout_max_failures: config.rollout_max_failures,
        rollout_max_failure_ratio: config.rollout_max_failure_ratio,
        rollout_canary_count: config.rollout_canary_count,
        storage_sample_every: config.storage_sample_every,
        storage_sample_pace: config.storage_sample_pace,
        rollout_pace: config.rollout_pace,
        audit_watch_every: config.audit_watch_every,
        enumeration: (
            config.findings.enumeration_not_found,
            std::time::Duration::from_secs(config.findings.enumeration_window_secs),
        ),
        watch: config.watch,
        cold_dir: Some(
            config
                .cold_dir
                .clone()
                .unwrap_or_else(|| config.data_dir.join("cold")),
        ),
    };
    let catalog = Catalog::open(&location, clock, engines, options, authority)
        .await
        .map_err(|e| anyhow::anyhow!("opening the catalog: {}", e.message))?;

    if !catalog
        .is_initialized()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        // Once per catalog, even when several servers sharing it start together: only the
        // one whose transaction marks the catalog initialized creates the key.
        if config.admin_key.is_none() {
            if let Some(key) = catalog
                .create_first_admin_key()
                .await
                .map_err(|e| anyhow::anyhow!("creating the admin key: {e}"))?
            {
                let path = write_admin_key(&config.data_dir, &key.key)?;
                println!(
                    "Platform admin key (shown once; also saved to {}):\n\n    {}\n",
                    path.display(),
                    key.key
                );
            }
        } else {
            catalog
                .mark_initialized()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let cold = bulkhead_cold::Cold::new(&catalog, config.retention.clone());
    cold.spawn();
    let secops = bulkhead_secops::Secops::new(
        &catalog,
        bulkhead_secops::SecopsSettings {
            findings: config.findings.clone(),
            webhooks: config.webhooks.clone(),
        },
    );
    secops.spawn();
    let state = AppState::new(Handles {
        catalog: catalog.clone(),
        cold,
        secops,
        config: ServerConfig {
            body_limit: config.body_limit,
            request_timeout: config.request_timeout,
            max_connections: config.max_connections,
            header_timeout: config.header_timeout,
            bulk_in_flight: config.bulk_in_flight,
            body_budget_bytes: config.body_budget_bytes,
            cors_origins: config.cors_origins.clone(),
            tls: config.tls.clone(),
        },
        bulk_slots: Arc::new(tokio::sync::Semaphore::new(config.bulk_in_flight)),
        body_budget: bulkhead_server::budget::budget(config.body_budget_bytes),
        http_metrics: bulkhead_server::metrics::HttpMetrics::default(),
        metrics_config: bulkhead_server::metrics::MetricsConfig {
            token: config.metrics_token.as_ref().map(|t| t.expose().to_owned()),
            top_tenants: config.metrics_top_tenants,
        },
    });
    Ok(Node {
        catalog,
        state,
        _lock: lock,
    })
}

fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join("LOCK");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!(
                "another bulkhead server is using {}; stop it or choose another --data-dir",
                dir.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Writes the key with mode 0600 from the start (never world-readable, not even briefly).
fn write_admin_key(dir: &Path, key: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(ADMIN_KEY_FILE);
    let mut options = File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(format!("{key}\n").as_bytes())?;
    file.sync_all()?;
    Ok(path)
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; draining in-flight requests");
}

/// `bulkhead serve`.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let mut config = config;
    match crate::private::raise_open_files_limit() {
        Some(files) => {
            // Connections share the file descriptors with database files (silos, shared
            // files, WAL and shared memory) and the catalog: leave those their room.
            let reserve = (config.silo_handle_cap as u64) * 3 + 256;
            let room = usize::try_from(files.saturating_sub(reserve)).unwrap_or(usize::MAX);
            if config.max_connections > room {
                tracing::warn!(
                    files,
                    asked = config.max_connections,
                    allowed = room.max(1),
                    "lowering max_connections to what the open-files limit leaves room for"
                );
                config.max_connections = room.max(1);
            }
            tracing::info!(
                files,
                max_connections = config.max_connections,
                "open files allowed"
            );
        }
        None => tracing::info!(
            max_connections = config.max_connections,
            "open files: no limit"
        ),
    }
    // Claimed first thing: nothing else in this process turns facts into scopes.
    let authority = AccessAuthority::claim()
        .context("the access authority was already claimed in this process")?;
    let clock: Arc<dyn Clock> = if config.clock_skew_ms == 0 {
        Arc::new(SystemClock)
    } else {
        tracing::warn!(
            skew_ms = config.clock_skew_ms,
            "the catalog's clock is set off the system's (BULKHEAD_CLOCK_SKEW_MS): for fault injection only"
        );
        Arc::new(bulkhead_core::time::SkewedClock {
            offset_micros: config.clock_skew_ms.saturating_mul(1000),
        })
    };
    let node = open(&config, clock, authority).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, data_dir = %config.data_dir.display(), "bulkhead is serving");
    // One write (stderr is unbuffered): whoever watches for this line sees it whole.
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let line = format!(
        "bulkhead listening on {scheme}://{address} (data in {})\n",
        config.data_dir.display()
    );
    eprint!("{line}");
    if let Some(at) = config.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(at)
            .await
            .with_context(|| format!("binding the metrics listener {at}"))?;
        let address = metrics.local_addr()?;
        // One write, as the line above.
        let line = format!("bulkhead metrics on http://{address}/metrics\n");
        eprint!("{line}");
        let state = node.state.clone();
        tokio::spawn(async move {
            if let Err(e) = bulkhead_server::metrics::serve(metrics, state).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    bulkhead_server::serve(listener, node.state.clone(), shutdown_signal()).await?;
    node.catalog.shutdown().await;
    tracing::info!("stopped cleanly");
    Ok(())
}
