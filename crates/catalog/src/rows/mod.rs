//! The catalog's tables, one kind of row at a time: reading and writing rows inside a
//! transaction, with no cache, gate, engine or audit queue. The operations on `Catalog`
//! build on these; nothing here reaches back up to them.

use bulkhead_core::error::Error;

use crate::store::{StoreResult, malformed};

pub(crate) mod audit;
pub(crate) mod collections;
pub(crate) mod domains;
pub(crate) mod paging;
pub(crate) mod rollouts;
pub(crate) mod spares;
pub(crate) mod tenants;
pub(crate) mod tiers;

pub(crate) fn parse<T: std::str::FromStr<Err = Error>>(raw: &str) -> StoreResult<T> {
    raw.parse().map_err(|e: Error| malformed(e.message))
}
