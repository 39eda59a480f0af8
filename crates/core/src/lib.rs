//! Bulkhead's domain: identifiers, tenants, tiers, placements, collection schemas, records,
//! credentials and the access decision that produces a [`access::TenantScope`].
//!
//! This crate does no I/O and knows no database driver or async runtime. Every other crate
//! speaks in these types, so the invariants they carry (a validated tenant id, a record that
//! matches its schema, a scope that only the access layer can mint) hold everywhere.

pub mod access;
pub mod chain;
pub mod connection_url;
mod described;
pub mod error;
pub mod ids;
pub mod keys;
pub mod model;
pub mod money;
pub mod permissions;
pub mod query;
pub mod record;
pub mod roles;
pub mod schema;
pub mod shard;
pub mod tier;
pub mod time;
pub mod tokens;
pub mod value;

pub use connection_url::ConnectionUrl;
pub use error::{Error, ErrorKind};
pub use ids::{
    CollectionName, DomainName, FieldName, Incarnation, KeyId, RecordId, RoleName, StorageKey,
    TenantId, TierName, UserId,
};
