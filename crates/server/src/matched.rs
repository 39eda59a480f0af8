//! The route template a request matched, carried out on its answer.
//!
//! The server's layers (request id and span, metering, timeout, panic catcher, CORS,
//! compression) wrap the router as a whole, once, rather than each route: axum clones a
//! route's whole layered stack for every request it serves, which cost a get by id about a
//! seventh of its allocations (issue 24). Outside the router the request carries no
//! [`MatchedPath`] yet, so each route notes it on its response for the metrics.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::{MatchedPath, Request};
use axum::response::Response;

/// Puts the [`MatchedPath`] of the request on its response.
#[derive(Clone, Copy)]
pub(crate) struct NoteRouteLayer;

impl<S> tower::Layer<S> for NoteRouteLayer {
    type Service = NoteRoute<S>;

    fn layer(&self, inner: S) -> NoteRoute<S> {
        NoteRoute(inner)
    }
}

#[derive(Clone)]
pub(crate) struct NoteRoute<S>(S);

impl<S> tower::Service<Request> for NoteRoute<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Noted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Noted<S::Future> {
        let route = request.extensions().get::<MatchedPath>().cloned();
        Noted {
            inner: self.0.call(request),
            route,
        }
    }
}

pin_project_lite::pin_project! {
    /// A route's answer, with its template once ready.
    pub(crate) struct Noted<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
    }
}

impl<F, E> Future for Noted<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut answered = ready!(this.inner.poll(cx));
        if let (Ok(response), Some(route)) = (&mut answered, this.route.take()) {
            response.extensions_mut().insert(route);
        }
        Poll::Ready(answered)
    }
}
