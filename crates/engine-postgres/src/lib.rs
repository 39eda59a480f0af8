//! The PostgreSQL engine: placements on a PostgreSQL server (a domain).
//!
//! - **pool**: shared tables with `tenant_id`, row-level security enabled and forced;
//! - **bridge**: one schema per tenant in the domain's database;
//! - **silo**: one database per tenant.
//!
//! Two roles: the *owner* (the domain URL's user) creates and changes schemas and owns every
//! table; the *data* role runs every tenant query, owns nothing and must not be a superuser or
//! have `BYPASSRLS` (the engine refuses to start otherwise). Each data transaction sets the
//! tenant transaction-locally before anything else, and the SQL keeps its explicit tenant
//! predicate as well (defence in depth, and better plans). See [`names`] for the layout and
//! [`ddl`] for the policies.

mod checkout;
mod conn;
pub mod ddl;
mod dialect;
mod engine;
mod fence;
mod inventory;
mod measure;
pub mod names;
mod placements;
mod records;
mod search;
mod shares;
mod tx;
mod value;

use std::time::Duration;

use bulkhead_core::FieldName;
use bulkhead_engine::EngineError;
use tokio_postgres::error::SqlState;

pub use engine::PgEngine;

/// How to reach a PostgreSQL domain and how much of it to use.
#[derive(Clone)]
pub struct PgConfig {
    /// Connection URL as the owner role (schema changes). Must be allowed to create schemas,
    /// and databases on a domain that holds silos.
    pub owner_url: String,
    /// Connection URL as the data role. When absent, the owner's server and database are used
    /// with the user [`PgConfig::data_role`] and no password, and the engine creates that role
    /// if it is missing.
    pub data_url: Option<String>,
    pub data_role: String,
    /// Connections of the pool to the domain's database.
    pub max_connections: usize,
    /// Silo databases with an open pool at once, and connections per silo pool.
    pub silo_pools: usize,
    pub silo_connections: usize,
    /// Keep prepared statements across transactions. Turn off behind a transaction-mode
    /// connection pooler that does not track prepared statements (PgBouncer before 1.21).
    pub statement_cache: bool,
    pub connect_timeout: Duration,
    /// How long a request waits for a free connection.
    pub acquire_timeout: Duration,
    /// Statement timeout of writes and reads by id.
    pub write_timeout: Duration,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may hold passwords: never printed.
        f.debug_struct("PgConfig")
            .field("data_role", &self.data_role)
            .field("max_connections", &self.max_connections)
            .field("statement_cache", &self.statement_cache)
            .finish_non_exhaustive()
    }
}

impl PgConfig {
    pub fn new(owner_url: impl Into<String>) -> Self {
        PgConfig {
            owner_url: owner_url.into(),
            data_url: None,
            data_role: "bulkhead_data".into(),
            max_connections: 16,
            silo_pools: 64,
            silo_connections: 2,
            statement_cache: true,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Failures inside the engine, converted to [`EngineError`] at the trait boundary.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error("connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("stored data does not match its schema: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The field a unique index guards, read from its name (`u:sku:c_items`; `c_items__u_sku`
/// from earlier versions). The field leads, so it survives when a long name is shortened,
/// unless the field itself is very long (then `None`: the error names no field).
fn unique_field(constraint: &str) -> Option<FieldName> {
    if let Some(rest) = constraint.strip_prefix("u:") {
        return FieldName::parse(rest.split_once(':')?.0).ok();
    }
    if names::is_shortened(constraint) {
        return None;
    }
    FieldName::parse(constraint.split_once("__u_")?.1).ok()
}

impl From<PgError> for EngineError {
    fn from(err: PgError) -> Self {
        match err {
            PgError::Engine(e) => e,
            PgError::Db(e) => match e.as_db_error() {
                Some(db) => match db.code() {
                    c if *c == SqlState::UNIQUE_VIOLATION => match db.constraint() {
                        Some(name) if name.ends_with("_pkey") => EngineError::DuplicateId,
                        Some(name) => EngineError::UniqueViolation(unique_field(name)),
                        None => EngineError::Storage(db.to_string()),
                    },
                    // A sum of integers cast back to bigint, or of floats, past 64 bits.
                    c if *c == SqlState::NUMERIC_VALUE_OUT_OF_RANGE => {
                        EngineError::OutOfRange(bulkhead_engine::SUM_OUT_OF_RANGE.into())
                    }
                    c if *c == SqlState::DISK_FULL => {
                        EngineError::StorageFull(db.message().to_owned())
                    }
                    c if *c == SqlState::UNDEFINED_TABLE
                        || *c == SqlState::INVALID_SCHEMA_NAME
                        || *c == SqlState::INVALID_CATALOG_NAME =>
                    {
                        EngineError::PlacementMissing(db.message().to_owned())
                    }
                    _ => EngineError::Storage(format!("{}: {}", db.code().code(), db.message())),
                },
                None => {
                    tracing::warn!(error = %e, "PostgreSQL domain unreachable");
                    EngineError::PlacementMissing(format!("database unreachable: {e}"))
                }
            },
            PgError::Pool(e) => {
                tracing::warn!(error = %e, "no PostgreSQL connection available");
                EngineError::PlacementMissing(format!("no connection available: {e}"))
            }
            other => EngineError::Storage(other.to_string()),
        }
    }
}

#[cfg(test)]
mod unique_tests {
    use super::*;

    #[test]
    fn a_unique_violation_names_its_field_from_every_index_naming() {
        let c = bulkhead_core::CollectionName::parse(&"y".repeat(63)).unwrap();
        let key = bulkhead_core::StorageKey::of(
            &bulkhead_core::TenantId::parse("acme").unwrap(),
            &bulkhead_core::Incarnation::legacy(),
        );
        let table = names::Table::new(bulkhead_core::model::Isolation::Pool, &key, &c);
        let sku = FieldName::parse("sku").unwrap();
        let long = FieldName::parse(&format!("f{}", "z".repeat(60))).unwrap();
        assert_eq!(unique_field(&table.index_name(&sku, true)), Some(sku));
        assert_eq!(unique_field(&table.index_name(&long, true)), None);
        assert_eq!(
            unique_field("c_items__u_sku").map(|f| f.to_string()),
            Some("sku".into())
        );
        assert_eq!(unique_field("c_items_pkey"), None);
    }
}
