//! Route groups, one module per resource family.

pub mod archives;
pub mod audit;
pub mod backups;
pub mod control;
pub mod members;
pub mod placement;
pub mod records;
pub mod secops;
pub mod storage;
pub mod usage;

use axum::extract::rejection::QueryRejection;
use bulkhead_core::Error;

/// Query-string problems name the parameter serde complained about.
pub fn query_error(rejection: QueryRejection) -> Error {
    let text = rejection.body_text();
    let detail = text.trim_start_matches("Failed to deserialize query string: ");
    Error::bad_request("invalid_query", format!("query string: {detail}"))
}
