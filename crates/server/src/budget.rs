//! A server-wide budget for request bodies in flight, so many concurrent uploads cannot
//! exhaust memory between them. A request with a body reserves what it may hold in memory —
//! its declared length up to the body limit, the body limit when it declares none, and for a
//! streamed bulk body one chunk plus one line — before its body is read, and gives it back
//! when it is answered. When the budget is spent the request answers `503 busy` with
//! `Retry-After`, nothing read or applied.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;

use crate::AppState;
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

pub async fn bodies_in_flight(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let bytes = reserved(&request, state.config.body_limit as u64);
    if bytes == 0 {
        return next.run(request).await;
    }
    let units = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX);
    let Ok(permit) = Arc::clone(&state.body_budget).try_acquire_many_owned(units) else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "this server holds as many request bodies as its memory budget allows; retry shortly",
        );
    };
    let response = next.run(request).await;
    drop(permit);
    response
}
