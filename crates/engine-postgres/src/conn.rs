//! Connections to a PostgreSQL domain: one pool per database for the data role (the domain's
//! database, plus an LRU of silo databases with a fixed cap), and short-lived owner
//! connections for schema work. Every data transaction starts by setting its tenant with
//! `set_config(.., true)` — transaction-local — so a pooled connection (ours, or PgBouncer's
//! in transaction mode) never carries one tenant's setting into another's transaction.

use std::num::NonZeroUsize;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use lru::LruCache;
use parking_lot::Mutex;
use tokio_postgres::{Client, NoTls};

use crate::{PgConfig, PgError};

pub struct Pools {
    owner: tokio_postgres::Config,
    data: tokio_postgres::Config,
    pub data_role: String,
    main: Pool,
    silos: Mutex<LruCache<String, Pool>>,
    config: PgConfig,
}

fn pool(config: &tokio_postgres::Config, size: usize, c: &PgConfig) -> Result<Pool, PgError> {
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(c.acquire_timeout))
        .create_timeout(Some(c.connect_timeout))
        .recycle_timeout(Some(c.connect_timeout))
        .build()
        .map_err(|e| PgError::Config(format!("connection pool: {e}")))
}

/// The user a connection configuration logs in as.
pub fn user_of(config: &tokio_postgres::Config) -> Option<&str> {
    config.get_user()
}

impl Pools {
    pub fn new(config: &PgConfig) -> Result<Pools, PgError> {
        let mut owner: tokio_postgres::Config = config
            .owner_url
            .parse()
            .map_err(|e| PgError::Config(format!("url: {e}")))?;
        owner.connect_timeout(config.connect_timeout);
        owner.application_name("bulkhead");
        // DDL is idempotent ("IF NOT EXISTS"); its "already exists, skipping" notices are noise.
        owner.options("-c client_min_messages=warning");
        let mut data = match &config.data_url {
            Some(url) => url
                .parse::<tokio_postgres::Config>()
                .map_err(|e| PgError::Config(format!("data_url: {e}")))?,
            None => {
                // The owner's server and database, as the data role, with no password
                // (trust, peer or certificate authentication); set `data_url` otherwise.
                let mut c = owner.clone();
                c.user(&config.data_role);
                c.password(Vec::<u8>::new());
                c
            }
        };
        data.connect_timeout(config.connect_timeout);
        data.application_name("bulkhead");
        let data_role = user_of(&data)
            .ok_or_else(|| PgError::Config("data_url names no user".into()))?
            .to_owned();
        if user_of(&owner) == Some(data_role.as_str()) {
            return Err(PgError::Config(
                "the data role must not be the owner role: tenant queries would bypass row-level security".into(),
            ));
        }
        let main = pool(&data, config.max_connections, config)?;
        let cap = NonZeroUsize::new(config.silo_pools.max(1)).unwrap_or(NonZeroUsize::MIN);
        Ok(Pools {
            owner,
            data,
            data_role,
            main,
            silos: Mutex::new(LruCache::new(cap)),
            config: config.clone(),
        })
    }

    /// A data connection to the domain's database (`None`) or a silo database.
    pub async fn data(&self, database: Option<&str>) -> Result<Object, PgError> {
        let pool = match database {
            None => self.main.clone(),
            Some(db) => {
                let mut silos = self.silos.lock();
                match silos.get(db) {
                    Some(p) => p.clone(),
                    None => {
                        let mut config = self.data.clone();
                        config.dbname(db);
                        let p = pool(&config, self.config.silo_connections, &self.config)?;
                        silos.put(db.to_owned(), p.clone());
                        p
                    }
                }
            }
        };
        Ok(pool.get().await?)
    }

    /// Closes the pool of a silo database (before it is dropped).
    pub fn forget_silo(&self, database: &str) {
        if let Some(pool) = self.silos.lock().pop(database) {
            pool.close();
        }
    }

    /// A fresh owner connection to the domain's database or a silo database, for schema work.
    pub async fn owner(&self, database: Option<&str>) -> Result<Client, PgError> {
        let mut config = self.owner.clone();
        if let Some(db) = database {
            config.dbname(db);
        }
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "owner connection ended");
            }
        });
        Ok(client)
    }

    /// The owner role's connection settings (server, database), for naming storage.
    pub fn owner_config(&self) -> &tokio_postgres::Config {
        &self.owner
    }

    pub fn open_pools(&self) -> usize {
        1 + self.silos.lock().len()
    }

    pub fn close(&self) {
        self.main.close();
        for (_, pool) in self.silos.lock().iter() {
            pool.close();
        }
    }

    pub fn statement_cache(&self) -> bool {
        self.config.statement_cache
    }

    /// Connections of the domain's shared pool.
    pub fn pool_size(&self) -> usize {
        self.config.max_connections
    }

    /// How long a request waits for a connection.
    pub fn acquire_timeout(&self) -> Duration {
        self.config.acquire_timeout
    }

    pub fn write_timeout(&self) -> Duration {
        self.config.write_timeout
    }
}
