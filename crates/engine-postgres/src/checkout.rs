//! Taking a data connection for a tenant: under one of its share permits, from the pool of
//! the database its placement lives in, with a silo database's bookkeeping checked once.

use bulkhead_core::access::TenantScope;
use bulkhead_engine::EngineError;
use deadpool_postgres::Object;

use crate::PgError;
use crate::engine::{PgEngine, database_of};

/// A data connection and the tenant's share permit it was taken under (both given back
/// when dropped).
pub(crate) struct Client {
    object: Object,
    _share: tokio::sync::OwnedSemaphorePermit,
}

impl std::ops::Deref for Client {
    type Target = Object;
    fn deref(&self) -> &Object {
        &self.object
    }
}

impl std::ops::DerefMut for Client {
    fn deref_mut(&mut self) -> &mut Object {
        &mut self.object
    }
}

impl PgEngine {
    /// A pooled data-role connection to the database holding the scope's placement, taken
    /// under one of the tenant's share permits (its tier's cap, else a quarter of the pool).
    pub(crate) async fn client(&self, scope: &TenantScope) -> Result<Client, PgError> {
        let cap = scope
            .connection_cap()
            .unwrap_or_else(|| (self.pools.pool_size() / 4).max(1) as u32);
        let share = self
            .shares
            .acquire(scope.storage_key(), cap, self.pools.acquire_timeout())
            .await
            .ok_or_else(|| {
                // As when the pool itself has nothing free in time: 503, retry.
                PgError::Engine(EngineError::PlacementMissing(format!(
                    "no connection available: this tenant already holds its {cap} connections of the domain"
                )))
            })?;
        let database = database_of(scope);
        let object = self.pools.data(database.as_deref()).await?;
        if let Some(db) = database {
            self.bookkeeping(&object, db).await?;
        }
        Ok(Client {
            object,
            _share: share,
        })
    }

    /// Makes sure a silo database made by an earlier release has the bookkeeping writes
    /// read (the definition versions of the schema fence): checked once per database and
    /// process, and added by the owner when missing. The main database gets it at start.
    pub(crate) async fn bookkeeping(&self, data: &Object, database: String) -> Result<(), PgError> {
        if self
            .bookkept
            .lock()
            .expect("not poisoned")
            .contains(&database)
        {
            return Ok(());
        }
        // One simple-protocol statement: safe behind a transaction-mode PgBouncer.
        let answer = data
            .simple_query(&format!(
                "SELECT to_regclass('{}.table_versions') IS NOT NULL",
                crate::names::META_SCHEMA
            ))
            .await?;
        let present = answer.iter().any(|message| {
            matches!(message, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))
        });
        if !present {
            let mut owner = self.pools.owner(Some(&database)).await?;
            let tx = owner.transaction().await?;
            crate::ddl::lock(&tx).await?;
            crate::ddl::bootstrap_database(&tx, &self.pools.data_role).await?;
            tx.commit().await?;
        }
        self.bookkept.lock().expect("not poisoned").insert(database);
        Ok(())
    }
}
