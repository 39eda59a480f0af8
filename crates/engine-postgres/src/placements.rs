//! Placements on a PostgreSQL domain: connecting (and checking the data role), provisioning
//! schemas, databases and tables, and destroying a tenant's placement.

use std::sync::Arc;

use bulkhead_core::model::Isolation;
use bulkhead_core::schema::Collection;
use bulkhead_core::time::Clock;
use bulkhead_engine::PlacementRef;
use tokio_postgres::error::SqlState;

use crate::conn::Pools;
use crate::ddl;
use crate::engine::{PgEngine, schema_of};
use crate::names::{self, POOL_SCHEMA, Table, quote};
use crate::{PgConfig, PgError};

impl PgEngine {
    /// Connects to the domain, checks the data role (never a superuser, never `BYPASSRLS`,
    /// never the owner) and installs Bulkhead's schema in the domain's database.
    pub async fn connect(config: PgConfig, clock: Arc<dyn Clock>) -> Result<PgEngine, PgError> {
        let pools = Arc::new(Pools::new(&config)?);
        let mut owner = pools.owner(None).await?;
        let tx = owner.transaction().await?;
        ddl::lock(&tx).await?;
        let role = pools.data_role.clone();
        let found = tx
            .query_opt(
                "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1",
                &[&role],
            )
            .await?;
        match found {
            Some(row) => {
                let (superuser, bypass): (bool, bool) = (row.get(0), row.get(1));
                if superuser || bypass {
                    return Err(PgError::Config(format!(
                        "the data role {role} is a superuser or has BYPASSRLS: row-level security would not apply to it"
                    )));
                }
            }
            None if config.data_url.is_none() => {
                tx.batch_execute(&format!(
                    "CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE",
                    quote(&role)
                ))
                .await?;
            }
            None => {
                return Err(PgError::Config(format!(
                    "the data role {role} does not exist"
                )));
            }
        }
        let database: String = tx
            .query_one("SELECT current_database()::text", &[])
            .await?
            .get(0);
        tx.batch_execute(&format!(
            "GRANT CONNECT ON DATABASE {} TO {}",
            quote(&database),
            quote(&role)
        ))
        .await?;
        ddl::bootstrap_database(&tx, &role).await?;
        tx.commit().await?;
        // The data role can log in and reach the database.
        pools.data(None).await?.simple_query("SELECT 1").await?;
        Ok(PgEngine {
            pools,
            clock,
            shares: crate::shares::Shares::default(),
            bookkept: Default::default(),
        })
    }

    /// The role tenant queries run as.
    pub fn data_role(&self) -> &str {
        &self.pools.data_role
    }

    pub(crate) fn cache(&self) -> bool {
        self.pools.statement_cache()
    }

    /// Creates a silo database (when missing) that only the owner and the data role may
    /// connect to.
    async fn ensure_silo_database(&self, database: &str) -> Result<(), PgError> {
        let owner = self.pools.owner(None).await?;
        let exists = owner
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
            .await?
            .is_some();
        if !exists {
            let created = owner
                .batch_execute(&format!(
                    "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'",
                    quote(database)
                ))
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => {}
                Err(e) => return Err(e.into()),
            }
        }
        owner
            .batch_execute(&format!(
                "REVOKE CONNECT ON DATABASE {db} FROM PUBLIC; GRANT CONNECT ON DATABASE {db} TO {role};",
                db = quote(database),
                role = quote(&self.pools.data_role)
            ))
            .await?;
        Ok(())
    }

    /// Brings the placement's schema and `collections` up to date, in one owner transaction.
    pub(crate) async fn ensure(
        &self,
        target: &PlacementRef,
        collections: &[Collection],
        create: bool,
    ) -> Result<(), PgError> {
        let database = names::database_of(target.isolation, &target.key);
        if let Some(db) = &database
            && create
        {
            self.ensure_silo_database(db).await?;
        }
        let mut owner = self.pools.owner(database.as_deref()).await?;
        let tx = owner.transaction().await?;
        ddl::lock(&tx).await?;
        let role = &self.pools.data_role;
        if database.is_some() {
            ddl::bootstrap_database(&tx, role).await?;
        }
        let schema = schema_of(target.isolation, &target.key);
        if create {
            ddl::ensure_schema(&tx, &schema, role).await?;
        }
        for collection in collections {
            let table = Table::new(target.isolation, &target.key, &collection.name);
            ddl::ensure_table(&tx, &table, &target.key, collection, role).await?;
        }
        if create && target.isolation == Isolation::Silo {
            // A database adopted from the ready pool whose policies were not yet pointed at
            // its tenant (a crash between the rename and that step) is set right here.
            ddl::repoint_policies(&tx, &schema, &target.key).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Renames a ready-pool silo database to the target's name. `false` when it is gone.
    /// A rename needs the database free of sessions: ours are closed first, and a session
    /// still ending is waited for briefly.
    pub(crate) async fn adopt_spare_database(
        &self,
        spare: &PlacementRef,
        target: &PlacementRef,
    ) -> Result<bool, PgError> {
        let (from, to) = (
            names::silo_database(&spare.key),
            names::silo_database(&target.key),
        );
        self.pools.forget_silo(&from);
        let owner = self.pools.owner(None).await?;
        let rename = format!("ALTER DATABASE {} RENAME TO {}", quote(&from), quote(&to));
        let mut attempts = 0;
        loop {
            match owner.batch_execute(&rename).await {
                Ok(()) => break,
                Err(e) if e.code() == Some(&SqlState::UNDEFINED_DATABASE) => return Ok(false),
                Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) && attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                // The target's name taken (`duplicate_database`) included: never replaced.
                Err(e) => return Err(e.into()),
            }
        }
        // Its tables' policies named the spare; from now on they name the tenant.
        let mut owner = self.pools.owner(Some(&to)).await?;
        let tx = owner.transaction().await?;
        ddl::repoint_policies(&tx, &schema_of(Isolation::Silo, &target.key), &target.key).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn destroy_placement(&self, target: &PlacementRef) -> Result<(), PgError> {
        match target.isolation {
            Isolation::Silo => {
                let database = names::silo_database(&target.key);
                self.pools.forget_silo(&database);
                let owner = self.pools.owner(None).await?;
                owner
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        quote(&database)
                    ))
                    .await?;
            }
            Isolation::Bridge => {
                let schema = names::bridge_schema(&target.key);
                let mut owner = self.pools.owner(None).await?;
                let tx = owner.transaction().await?;
                ddl::lock(&tx).await?;
                tx.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(&schema)))
                    .await?;
                for bookkeeping in ["search_fields", "table_versions"] {
                    tx.execute(
                        &format!("DELETE FROM bulkhead.{bookkeeping} WHERE starts_with(tbl, $1)"),
                        &[&format!("{schema}.")],
                    )
                    .await?;
                }
                tx.commit().await?;
            }
            Isolation::Pool => {
                // The owner is subject to the forced policy too: it deletes as the tenant.
                let mut owner = self.pools.owner(None).await?;
                let tx = owner.transaction().await?;
                let tenant = target.key.as_str();
                tx.execute(
                    "SELECT set_config('bulkhead.tenant_id', $1, true)",
                    &[&tenant],
                )
                .await?;
                let tables: Vec<String> = tx
                    .query(
                        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 AND starts_with(tablename, 'c_')",
                        &[&POOL_SCHEMA],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                for table in tables {
                    tx.execute(
                        &format!(
                            "DELETE FROM {}.{} WHERE tenant_id = $1",
                            quote(POOL_SCHEMA),
                            quote(&table)
                        ),
                        &[&tenant],
                    )
                    .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }
}
