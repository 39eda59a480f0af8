//! Bytes in and out per tenant: each request's body and its answer's body are counted
//! (`RequestTenant`), and once both are done (the answer sent, or the connection gone) the
//! bytes go to the meter of the tenant the request acted on — if it named one. An answer of
//! known size is counted at once; only streamed bodies are wrapped to count as they pass
//! (the request's own body too: what counts is what was read of it).

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use bulkhead_catalog::{BodyBytes, Catalog, RequestTenant};
use http_body::{Frame, SizeHint};

#[derive(Clone, Copy)]
pub(crate) enum Side {
    Received,
    Sent,
}

/// A streamed body whose data bytes are added to one side of a request's counts.
pub(crate) struct Counted {
    inner: Body,
    counts: BodyBytes,
    side: Side,
}

impl Counted {
    fn add(counts: &BodyBytes, side: Side, n: u64) {
        match side {
            Side::Received => counts.received(n),
            Side::Sent => counts.sent(n),
        }
    }

    /// `inner`, counted: at once when its size is known (a full body), else as it streams.
    /// An empty body is left as it is.
    pub fn wrap(inner: Body, request: &mut RequestTenant, catalog: &Catalog, side: Side) -> Body {
        use http_body::Body as _;
        if inner.is_end_stream() {
            return inner;
        }
        if let Some(n) = inner.size_hint().exact()
            && matches!(side, Side::Sent)
        {
            request.sent_sized(n);
            return inner;
        }
        Body::new(Counted {
            inner,
            counts: request.streamed(catalog),
            side,
        })
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            Counted::add(&self.counts, self.side, data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
