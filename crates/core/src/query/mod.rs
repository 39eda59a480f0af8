//! The query language: filters, sorting, projection and full-text search terms.
//!
//! Text from the caller is parsed into an untyped tree ([`ast`]), which prints back to a
//! canonical form ([`print`]), and is then typed against a collection ([`check`]) into a
//! [`Predicate`] that names only schema columns and carries only typed values. Engines compile
//! a `Predicate` to their own SQL dialect; nothing here knows SQL. See `docs/query.md`.

pub mod aggregate;
pub mod ast;
pub mod check;
pub mod eval;
mod literal;
pub mod parse;
mod plan;
pub mod print;
pub mod search;
pub mod sort;
#[cfg(test)]
mod testing;
pub mod vars;

pub use plan::*;

use crate::error::Error;
use crate::schema::Collection;

/// Longest filter text accepted.
pub const MAX_FILTER_BYTES: usize = 4096;

/// Parses and types a filter. Blank text means "no filter".
pub fn filter(src: &str, collection: &Collection) -> Result<Option<Predicate>, Error> {
    if src.trim().is_empty() {
        return Ok(None);
    }
    let expr = parse::parse_filter(src)?;
    check::check_filter(&expr, collection).map(Some)
}
