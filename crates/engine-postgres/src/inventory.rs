//! What tenant storage a PostgreSQL domain holds, read from the server's catalogs: silo
//! databases (`bk_<key>`), bridge schemas (`t_<key>`) and, when the owner role may read past
//! row-level security (superuser or `BYPASSRLS`), the storage keys with rows in the pool.
//! Names carry the server and database, so two domains on one server never mistake each
//! other's storage for their own.

use bulkhead_core::StorageKey;
use bulkhead_core::model::Isolation;
use bulkhead_engine::{PlacementRef, StoredPlacement};

use crate::PgError;
use crate::engine::PgEngine;
use crate::names::{self, POOL_SCHEMA, quote};

impl PgEngine {
    /// `host:port` of the domain's server and the domain's database.
    fn location(&self) -> (String, String) {
        let config = self.pools.owner_config();
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let database = config
            .get_dbname()
            .or_else(|| config.get_user())
            .unwrap_or("postgres")
            .to_owned();
        (format!("{host}:{port}"), database)
    }

    /// The name [`PgEngine::list_storage`] reports for a placement's storage.
    pub(crate) fn name_of(&self, isolation: Isolation, key: &str) -> String {
        let (server, database) = self.location();
        match isolation {
            Isolation::Pool => format!("{server}/{database} {POOL_SCHEMA} rows of {key}"),
            Isolation::Bridge => format!("{server}/{database} schema {key}"),
            Isolation::Silo => format!("{server} database {key}"),
        }
    }

    pub(crate) fn placement_name(&self, target: &PlacementRef) -> String {
        match target.isolation {
            Isolation::Pool => self.name_of(Isolation::Pool, target.key.as_str()),
            Isolation::Bridge => {
                self.name_of(Isolation::Bridge, &names::bridge_schema(&target.key))
            }
            Isolation::Silo => self.name_of(Isolation::Silo, &names::silo_database(&target.key)),
        }
    }

    pub(crate) async fn list_storage(&self) -> Result<Vec<StoredPlacement>, PgError> {
        let owner = self.pools.owner(None).await?;
        let mut found = Vec::new();
        let databases = owner
            .query(
                "SELECT datname::text FROM pg_database WHERE starts_with(datname, 'bk_') \
                 AND datname <> current_database() ORDER BY 1",
                &[],
            )
            .await?;
        for row in databases {
            let name: String = row.get(0);
            let raw = name.strip_prefix("bk_").unwrap_or(&name).to_owned();
            found.push(StoredPlacement {
                isolation: Isolation::Silo,
                namespace: format!("silo-{raw}"),
                key: StorageKey::read(&raw),
                name: self.name_of(Isolation::Silo, &name),
            });
        }
        let schemas = owner
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, 't_') ORDER BY 1",
                &[],
            )
            .await?;
        for row in schemas {
            let name: String = row.get(0);
            let raw = name.strip_prefix("t_").unwrap_or(&name).to_owned();
            found.push(StoredPlacement {
                isolation: Isolation::Bridge,
                namespace: name.clone(),
                key: StorageKey::read(&raw),
                name: self.name_of(Isolation::Bridge, &name),
            });
        }
        let sees_all = owner_sees_all(&owner).await?;
        if sees_all {
            let tables = owner
                .query(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 AND starts_with(tablename, 'c_') ORDER BY 1",
                    &[&POOL_SCHEMA],
                )
                .await?;
            let mut keys = std::collections::BTreeSet::new();
            for table in tables {
                let table: String = table.get(0);
                let sql = format!(
                    "SELECT DISTINCT tenant_id FROM {}.{}",
                    quote(POOL_SCHEMA),
                    quote(&table)
                );
                for row in owner.query(&sql, &[]).await? {
                    keys.insert(row.get::<_, String>(0));
                }
            }
            found.extend(keys.into_iter().map(|raw| StoredPlacement {
                isolation: Isolation::Pool,
                namespace: "pool".into(),
                key: StorageKey::read(&raw),
                name: self.name_of(Isolation::Pool, &raw),
            }));
        } else {
            tracing::info!(
                "the owner role cannot read past row-level security: pooled rows are left out of the inventory"
            );
        }
        Ok(found)
    }
}

/// Whether the owner role may read past row-level security (superuser or `BYPASSRLS`), so
/// one query sees every pool tenant's rows.
pub(crate) async fn owner_sees_all(owner: &tokio_postgres::Client) -> Result<bool, PgError> {
    Ok(owner
        .query_one(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?
        .get(0))
}
