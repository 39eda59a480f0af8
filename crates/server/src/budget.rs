//! A server-wide budget for request bodies in flight, so many concurrent uploads cannot
//! exhaust memory between them. A request's body takes from the budget as its bytes arrive
//! (what the server then holds of it), and gives it all back when the request is answered; a
//! streamed bulk body, of which the server holds one chunk at a time, reserves one chunk plus
//! one line before it is read. When the budget is spent the request answers `503 busy` with
//! `Retry-After`, nothing applied. Counting what arrives rather than what a client declares
//! means a client that declares large bodies and stalls holds only what it sent: it cannot
//! keep every other tenant's writes out with a few hundred idle uploads.

use std::sync::Arc;

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::Response;
use http_body::Frame;
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

/// What a streamed bulk body may hold in memory at once, reserved before it is read.
fn reserved_for_bulk(request: &Request, body_limit: u64) -> u64 {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
    // One chunk of lines and the line being read.
    let most = bulkhead_catalog::BULK_CHUNK_BYTES as u64 + body_limit;
    match declared {
        Some(len) => len.min(most),
        None if chunked => most,
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

/// What one request holds of the budget: a bulk body's reservation, or what its body has
/// brought in so far. Given back when the request is answered ([`Held::release`]).
#[derive(Clone, Default)]
pub struct Held(Arc<parking_lot::Mutex<HeldInner>>);

#[derive(Default)]
struct HeldInner {
    permit: Option<OwnedSemaphorePermit>,
    /// Bytes of body counted so far (units are taken as they fill).
    bytes: u64,
    /// The budget could not take the body's next bytes.
    refused: bool,
}

impl Held {
    /// Takes `n` more bytes of body from `budget`; false (and refused) when it is spent.
    fn take(&self, budget: &Arc<Semaphore>, n: u64) -> bool {
        let mut held = self.0.lock();
        let before = held.bytes.div_ceil(UNIT);
        let after = (held.bytes + n).div_ceil(UNIT);
        let units = u32::try_from(after - before).unwrap_or(u32::MAX);
        if units > 0 {
            match Arc::clone(budget).try_acquire_many_owned(units) {
                Ok(more) => match &mut held.permit {
                    Some(permit) => permit.merge(more),
                    None => held.permit = Some(more),
                },
                Err(_) => {
                    held.refused = true;
                    return false;
                }
            }
        }
        held.bytes += n;
        true
    }

    /// Whether the body outgrew what the budget had left.
    pub fn refused(&self) -> bool {
        self.0.lock().refused
    }

    /// Gives back everything held.
    pub fn release(&self) {
        self.0.lock().permit = None;
    }
}

/// A request body that takes from the budget as its bytes arrive.
struct Budgeted {
    inner: Body,
    budget: Arc<Semaphore>,
    held: Held,
}

impl http_body::Body for Budgeted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && !self.held.take(&self.budget, data.len() as u64)
        {
            return Poll::Ready(Some(Err(axum::Error::new(
                "the server's budget for request bodies is spent",
            ))));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Puts `request`'s body on the budget: a bulk body reserves its chunk and line now (`503
/// busy` when it cannot), any other body takes from it as it arrives.
pub fn admit(
    budget: &Arc<Semaphore>,
    body_limit: u64,
    request: Request,
) -> Result<(Request, Held), Busy> {
    let held = Held::default();
    if request.uri().path().ends_with(":bulk") {
        let bytes = reserved_for_bulk(&request, body_limit);
        if bytes > 0 && !held.take(budget, bytes) {
            return Err(Busy);
        }
        return Ok((request, held));
    }
    let (budget, taken) = (Arc::clone(budget), held.clone());
    let request = request.map(|inner| {
        Body::new(Budgeted {
            inner,
            budget,
            held: taken,
        })
    });
    Ok((request, held))
}
