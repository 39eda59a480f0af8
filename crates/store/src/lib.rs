//! The catalog's storage, behind one small transaction interface ([`Tx`]) with two backends:
//! an embedded SQLite file one server owns ([`sqlite`]) and a PostgreSQL schema several
//! servers share ([`postgres`]). Catalog code writes its SQL once, with `?N` parameters, in
//! the subset both understand. The catalog's schema is defined once, in [`migrations`].
//!
//! Rooms, dependencies pointing down: `tx` (the interface) ← `migrations` ← `sqlite`,
//! `postgres` ← this file (which backend a location opens).

pub mod migrations;
pub mod postgres;
pub mod sqlite;
mod tx;

pub use migrations::SchemaState;
pub use sqlite::{SqliteStore, SqliteTx};
pub use tx::{
    FromVal, Row, StoreError, StoreResult, Tx, Val, changed, get_meta, malformed, now_ms, set_meta,
};

use std::path::PathBuf;

use crate::postgres::PgStore;

/// Where the catalog lives.
#[derive(Debug, Clone)]
pub enum Location {
    /// An SQLite file one server owns.
    Sqlite(PathBuf),
    /// A PostgreSQL database (URL with credentials) several servers may share.
    Postgres(String),
}

pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens the store. PostgreSQL needs `handle` (the runtime its connections run on);
    /// call from a blocking thread.
    pub fn open(
        location: &Location,
        fsync: bool,
        handle: tokio::runtime::Handle,
    ) -> StoreResult<Store> {
        match location {
            Location::Sqlite(path) => SqliteStore::open(path, fsync).map(Store::Sqlite),
            Location::Postgres(url) => PgStore::open(url, handle).map(Store::Postgres),
        }
    }

    pub fn write<T>(&self, f: impl FnOnce(&dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
        match self {
            Store::Sqlite(s) => s.write(f),
            Store::Postgres(s) => s.write(f),
        }
    }

    pub fn read<T>(&self, f: impl FnOnce(&dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
        match self {
            Store::Sqlite(s) => s.read(f),
            Store::Postgres(s) => s.read(f),
        }
    }

    pub fn checkpoint(&self) -> StoreResult<()> {
        match self {
            Store::Sqlite(s) => s.checkpoint(),
            Store::Postgres(_) => Ok(()),
        }
    }

    /// The catalog schema's version, and what this start migrated.
    pub fn schema(&self) -> &SchemaState {
        match self {
            Store::Sqlite(s) => s.schema(),
            Store::Postgres(s) => s.schema(),
        }
    }

    pub fn postgres(&self) -> Option<&PgStore> {
        match self {
            Store::Postgres(s) => Some(s),
            Store::Sqlite(_) => None,
        }
    }
}
