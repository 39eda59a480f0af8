//! What a handler leaves of a request body is read before the answer goes out.
//!
//! A route may answer without reading the body: a 404 or 405, a GET or DELETE that carries
//! one, a 413 past the size limit. hyper then closes the connection with those bytes unread,
//! the kernel resets it, and a client still sending its body gets a broken pipe instead of
//! the answer. So every request body is shared between the handler and this layer, which
//! reads and discards the rest — up to a cap and a deadline — and the connection stays
//! usable. Past the cap or the deadline the answer says `Connection: close`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use http_body::{Body as _, Frame, SizeHint};
use parking_lot::Mutex;

/// Most bytes read (and thrown away) after a handler is done with a request.
pub(crate) const DRAIN_CAP: u64 = 16 * 1024 * 1024;
/// Longest wait for them.
pub(crate) const DRAIN_WITHIN: Duration = Duration::from_secs(2);

/// The handler's view of the request body.
struct Shared(Arc<Mutex<Body>>);

impl http_body::Body for Shared {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut *self.0.lock()).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.lock().size_hint()
    }
}

/// What remains of a request body once the handler has answered.
pub(crate) struct Leftover(Arc<Mutex<Body>>);

/// Gives the request a body the handler reads as usual, and keeps a handle on the rest.
pub(crate) fn share(request: Request) -> (Request, Leftover) {
    let (parts, body) = request.into_parts();
    let body = Arc::new(Mutex::new(body));
    let handler = Body::new(Shared(Arc::clone(&body)));
    (Request::from_parts(parts, handler), Leftover(body))
}

impl Leftover {
    /// Reads and discards the rest of the body, at most `cap` bytes within `within`. True
    /// when the body is over (the connection can carry the next request).
    pub(crate) async fn drain(self, cap: u64, within: Duration) -> bool {
        if self.0.lock().size_hint().lower() > cap {
            return false;
        }
        let read_all = async {
            let mut read = 0u64;
            loop {
                let frame =
                    std::future::poll_fn(|cx| Pin::new(&mut *self.0.lock()).poll_frame(cx)).await;
                match frame {
                    None => return true,
                    Some(Err(_)) => return false,
                    Some(Ok(frame)) => {
                        let len = frame.data_ref().map_or(0, Bytes::len);
                        read = read.saturating_add(len as u64);
                        if read > cap {
                            return false;
                        }
                    }
                }
            }
        };
        tokio::time::timeout(within, read_all)
            .await
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Body) -> Request {
        Request::builder().uri("/").body(body).unwrap()
    }

    #[tokio::test]
    async fn the_handler_reads_the_body_as_sent_and_nothing_is_left() {
        let (req, rest) = share(request(Body::from("hello")));
        let read = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&read[..], b"hello");
        assert!(rest.drain(0, DRAIN_WITHIN).await);
    }

    #[tokio::test]
    async fn an_unread_body_is_drained_within_the_cap_and_refused_past_it() {
        let (_req, rest) = share(request(Body::from(vec![7u8; 1000])));
        assert!(rest.drain(1000, DRAIN_WITHIN).await);
        let (_req, rest) = share(request(Body::from(vec![7u8; 1000])));
        assert!(!rest.drain(999, DRAIN_WITHIN).await);
    }

    #[tokio::test]
    async fn a_body_that_never_ends_is_given_up_at_the_deadline() {
        let stream = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
        let (_req, rest) = share(request(Body::from_stream(stream)));
        assert!(!rest.drain(DRAIN_CAP, Duration::from_millis(50)).await);
    }
}
