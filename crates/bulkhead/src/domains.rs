//! Opening the engine of a storage domain from its spec: the binary's [`EngineFactory`], the
//! one place that maps an engine kind to a concrete engine. The catalog calls it for domains
//! registered at runtime (`PUT /v1/domains/{name}`) and, at start, for those it has stored.
//!
//! Errors are shown to the operator who put the domain: they name the problem and never
//! contain a connection URL's password.

use std::sync::Arc;

use bulkhead_catalog::EngineFactory;
use bulkhead_core::DomainName;
use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::model::{DomainSpec, ENGINE_POSTGRES, ENGINE_SQLITE};
use bulkhead_core::time::Clock;
use bulkhead_engine::Engine;
use bulkhead_engine_postgres::{PgConfig, PgEngine};
use bulkhead_engine_sqlite::{SqliteConfig, SqliteEngine};

use crate::config::Config;

/// The SQLite engine settings of every domain kept in the data directory, at `dir`.
pub fn sqlite_config(config: &Config, dir: std::path::PathBuf) -> SqliteConfig {
    let mut engine_config = SqliteConfig::new(dir);
    engine_config.fsync = config.fsync;
    engine_config.silo_handle_cap = config.silo_handle_cap;
    engine_config.readers_per_db = config.readers_per_db;
    if !config.search_upkeep {
        engine_config.search_upkeep = None;
    }
    engine_config
}

/// Opens the engine a domain's spec names. `sqlite` domains live in
/// `<data_dir>/domains/<name>` with the server's storage settings. To add an engine, add an
/// arm.
pub async fn open_engine(
    config: &Config,
    clock: Arc<dyn Clock>,
    name: &DomainName,
    spec: &DomainSpec,
) -> Result<Arc<dyn Engine>, Error> {
    match spec.engine.as_str() {
        ENGINE_SQLITE => {
            let dir = config.data_dir.join("domains").join(name.as_str());
            let engine_config = sqlite_config(config, dir.clone());
            let engine =
                tokio::task::spawn_blocking(move || SqliteEngine::open(engine_config, clock))
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "opening a sqlite domain panicked");
                        Error::internal()
                    })?
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::Unprocessable,
                            "domain_unreachable",
                            format!("cannot open the domain directory {}: {e}", dir.display()),
                        )
                    })?;
            Ok(Arc::new(engine))
        }
        ENGINE_POSTGRES => {
            let unreachable = |why: String| {
                Error::new(
                    ErrorKind::Unprocessable,
                    "domain_unreachable",
                    spec.scrub(&why),
                )
            };
            let url = spec
                .url
                .as_ref()
                .ok_or_else(|| unreachable("url: a postgres domain needs a url".into()))?;
            let mut pg = PgConfig::new(url.expose());
            pg.data_url = spec.data_url.as_ref().map(|u| u.expose().to_owned());
            pg.statement_cache = !spec.transaction_pooler;
            if let Some(size) = spec.pool_size {
                pg.max_connections = size.max(1) as usize;
            }
            let engine = tokio::time::timeout(pg.connect_timeout * 3, PgEngine::connect(pg, clock))
                .await
                .map_err(|_| {
                    unreachable(format!("domain {name}: the server did not answer in time"))
                })?
                .map_err(|e| unreachable(format!("domain {name}: {e}")))?;
            Ok(Arc::new(engine))
        }
        other => Err(Error::new(
            ErrorKind::Unprocessable,
            "engine_unavailable",
            format!("engine '{other}' is not available in this build"),
        )),
    }
}

/// [`open_engine`] with the server's configuration, for the catalog.
pub struct BinaryEngineFactory {
    config: Config,
    clock: Arc<dyn Clock>,
}

impl BinaryEngineFactory {
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> Self {
        BinaryEngineFactory { config, clock }
    }
}

#[async_trait::async_trait]
impl EngineFactory for BinaryEngineFactory {
    async fn open(&self, name: &DomainName, spec: &DomainSpec) -> Result<Arc<dyn Engine>, Error> {
        open_engine(&self.config, Arc::clone(&self.clock), name, spec).await
    }
}
