//! Cursors and page sizes of the control plane's listings.

use base64::Engine as _;
use bulkhead_core::error::Error;

use crate::store::Val;

pub const MAX_PAGE: u32 = 1000;
pub const DEFAULT_PAGE: u32 = 50;

/// A listing's cursor: `<kind>:<position>`, URL-safe base64.
pub(crate) fn list_cursor(kind: &str, position: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{position}"))
}

/// The position in a cursor [`list_cursor`] made for `kind`, or `400 invalid_cursor`.
pub(crate) fn list_position(kind: &str, cursor: &str) -> Result<String, Error> {
    let bad = || Error::bad_request("invalid_cursor", "cursor is not one this server issued");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let position = text.strip_prefix(kind).and_then(|t| t.strip_prefix(':'));
    position.map(str::to_owned).ok_or_else(bad)
}

pub(crate) fn page_limit(limit: Option<u32>) -> Result<u32, Error> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(0) => Err(Error::bad_request(
            "invalid_limit",
            "limit must be at least 1",
        )),
        Some(n) if n > MAX_PAGE => Err(Error::bad_request(
            "invalid_limit",
            format!("limit must be at most {MAX_PAGE}"),
        )),
        Some(n) => Ok(n),
    }
}

/// The `WHERE` clause of a filtered listing, built from the filters a query gives: only
/// those present become terms, so no parameter is ever compared with `NULL` in SQL (which
/// PostgreSQL cannot type).
#[derive(Debug, Default)]
pub(crate) struct Where {
    terms: Vec<String>,
    values: Vec<Val>,
}

impl Where {
    /// Adds a parameter; returns its placeholder (`?N`), to be used in a term (more than
    /// once, if need be).
    pub(crate) fn param(&mut self, value: impl Into<Val>) -> String {
        self.values.push(value.into());
        format!("?{}", self.values.len())
    }

    /// Adds a term every listed row must satisfy (parenthesised, so an `OR` in it stays
    /// inside it).
    pub(crate) fn and(&mut self, term: String) {
        self.terms.push(format!("({term})"));
    }

    /// `WHERE a AND b …`, or nothing when there is no term.
    pub(crate) fn clause(&self) -> String {
        if self.terms.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.terms.join(" AND "))
        }
    }

    pub(crate) fn values(&self) -> &[Val] {
        &self.values
    }
}

/// A `LIKE` pattern (with `ESCAPE '\'`) matching text that contains `needle` as written:
/// its `%`, `_` and `\` match only themselves.
pub(crate) fn contains_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contains_pattern_escapes_the_like_wildcards_and_the_escape() {
        assert_eq!(contains_pattern("acme"), "%acme%");
        assert_eq!(contains_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
        assert_eq!(contains_pattern(""), "%%");
    }

    #[test]
    fn a_where_numbers_its_parameters_and_omits_itself_when_empty() {
        let mut w = Where::default();
        assert_eq!(w.clause(), "");
        let a = w.param("x");
        w.and(format!("a = {a} OR b = {a}"));
        let c = w.param(3);
        w.and(format!("c > {c}"));
        assert_eq!(w.clause(), "WHERE (a = ?1 OR b = ?1) AND (c > ?2)");
        assert_eq!(w.values().len(), 2);
    }
}
