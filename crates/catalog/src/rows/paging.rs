//! Cursors and page sizes of the control plane's listings.

use base64::Engine as _;
use bulkhead_core::error::Error;

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
