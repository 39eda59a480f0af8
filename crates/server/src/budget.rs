//! A server-wide budget for request bodies in flight, so many concurrent uploads cannot
//! exhaust memory between them. A request with a body reserves what it may hold in memory —
//! its declared length up to the body limit, the body limit when it declares none, and for a
//! streamed bulk body one chunk plus one line — before its body is read, and gives it back
//! when it is answered. When the budget is spent the request answers `503 busy` with
//! `Retry-After`, nothing read or applied.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::error_response;

/// The budget counts KiB.
const UNIT: u64 = 1024;

/// A budget of `bytes` for bodies in flight.
pub fn budget(bytes: u64) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(
        usize::try_from((bytes / UNIT).max(1)).unwrap_or(Semaphore::MAX_PERMITS),
    ))
}

/// What a request may hold of its body in memory at once.
fn reserved(request: &Request, body_limit: u64) -> u64 {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
    if request.uri().path().ends_with(":bulk") {
        // Streamed: one chunk of lines and the line being read.
        let most = bulkhead_catalog::BULK_CHUNK_BYTES as u64 + body_limit;
        return match declared {
            Some(len) => len.min(most),
            None if chunked => most,
            None => 0,
        };
    }
    match declared {
        Some(len) => len.min(body_limit),
        None if chunked => body_limit,
        None => 0,
    }
}

/// The server's budget for bodies is spent: answered `503 busy`, nothing read.
pub struct Busy;

impl axum::response::IntoResponse for Busy {
    fn into_response(self) -> Response {
        error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "this server holds as many request bodies as its memory budget allows; retry shortly",
        )
    }
}

/// Reserves what `request` may hold of its body in memory (nothing when it has none). The
/// permit is held until the request is answered.
pub fn admit(
    budget: &Arc<Semaphore>,
    body_limit: u64,
    request: &Request,
) -> Result<Option<OwnedSemaphorePermit>, Busy> {
    let bytes = reserved(request, body_limit);
    if bytes == 0 {
        return Ok(None);
    }
    let units = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX);
    Arc::clone(budget)
        .try_acquire_many_owned(units)
        .map(Some)
        .map_err(|_| Busy)
}
