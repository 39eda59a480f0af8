//! The catalog's storage: the `bulkhead-store` crate (one transaction interface over an
//! SQLite file or a shared PostgreSQL schema, and the catalog's migrations), under the name
//! the catalog's rooms use.

pub(crate) use bulkhead_store::postgres::PgStore;
pub use bulkhead_store::{Location, StoreError};
pub(crate) use bulkhead_store::{
    Row, Store, StoreResult, Tx, Val, changed, get_meta, malformed, params, set_meta,
};
