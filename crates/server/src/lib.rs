//! The HTTP layer: axum routes, extractors and middleware over the catalog's operations.
//!
//! Every request gets an id (echoed in `x-request-id` and in every error body) and a tracing
//! span carrying it and, once known, the tenant. Every route has a body limit and a timeout;
//! any error a layer produces (timeout, panic, 405) still leaves with the standard error body.

pub mod browser;
pub mod budget;
mod bulk_body;
mod drain;
pub mod error;
pub mod extract;
pub mod listen;
mod matched;
mod metered;
pub mod metrics;
mod openapi;
mod routes;

use std::future::Future;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bulkhead_api::{Health, REQUEST_ID_HEADER};
use bulkhead_catalog::{Catalog, RequestTenant};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{error_response, kind_of};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted (413 beyond).
    pub body_limit: usize,
    /// Longest a request may run before it is answered with an error.
    pub request_timeout: Duration,
    /// Open connections at most; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// How long a connection may take to send a request's head, and how long an idle
    /// keep-alive connection is kept waiting for its next request.
    pub header_timeout: Duration,
    /// Bulk bodies applied at once on this server.
    pub bulk_in_flight: usize,
    /// Bytes of request bodies this server holds at once ([`budget`]).
    pub body_budget_bytes: u64,
    /// Origins browsers may call from (`*` for any); empty: no CORS answers.
    pub cors_origins: Vec<String>,
    /// Serve HTTPS with this configuration (`None`: plain HTTP).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_connections: 4096,
            header_timeout: Duration::from_secs(30),
            bulk_in_flight: 16,
            body_budget_bytes: 256 * 1024 * 1024,
            cors_origins: Vec::new(),
            tls: None,
        }
    }
}

/// What every request shares: one pointer, cloned for each request's extractors and
/// middleware (the handles themselves were cloned field by field, a few per cent of a get
/// by id, issue 24).
#[derive(Clone)]
pub struct AppState(std::sync::Arc<Handles>);

impl AppState {
    pub fn new(handles: Handles) -> AppState {
        AppState(std::sync::Arc::new(handles))
    }
}

impl std::ops::Deref for AppState {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.0
    }
}

/// Handles shared by every request.
pub struct Handles {
    pub catalog: Catalog,
    /// Retention and the cold archive (`bulkhead-cold`).
    pub cold: bulkhead_cold::Cold,
    /// Findings and webhooks (`bulkhead-secops`).
    pub secops: bulkhead_secops::Secops,
    pub config: ServerConfig,
    /// Bulk bodies this server applies at once (`ServerConfig::bulk_in_flight`); one more
    /// answers 503 with `Retry-After`.
    pub bulk_slots: std::sync::Arc<tokio::sync::Semaphore>,
    /// Request bodies in flight on this server ([`budget`]).
    pub body_budget: std::sync::Arc<tokio::sync::Semaphore>,
    /// Request latencies for `GET /metrics` ([`metrics`]).
    pub http_metrics: metrics::HttpMetrics,
    pub metrics_config: metrics::MetricsConfig,
}

/// The whole server as one service: the layers wrap the router once (see [`matched`]).
pub type App = tower::util::BoxCloneSyncService<
    axum::http::Request<hyper::body::Incoming>,
    Response,
    std::convert::Infallible,
>;

pub fn router(state: AppState) -> App {
    let config = state.config.clone();
    let (routes, api) = described_routes().split_for_parts();
    let description = std::sync::Arc::new(openapi::finish(api).to_string());
    let routes = routes
        .route(
            "/v1/openapi.json",
            get(move || {
                let description = std::sync::Arc::clone(&description);
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        description.as_str().to_owned(),
                    )
                }
            }),
        )
        // The operator console: static files speaking the API above with a platform key.
        .merge(bulkhead_console::router())
        .route_layer(matched::NoteRouteLayer)
        .fallback(|| async {
            error_response(StatusCode::NOT_FOUND, "route_not_found", "no such route")
        })
        .with_state(state.clone());
    // Outermost first.
    let app = tower::ServiceBuilder::new()
        .map_response(|r: axum::http::Response<_>| r.map(axum::body::Body::new))
        .map_request(|r: axum::http::Request<hyper::body::Incoming>| r.map(axum::body::Body::new))
        .option_layer(browser::cors(&config.cors_origins))
        // Answers are compressed when the client asks (`Accept-Encoding: gzip`) and they are
        // not small (see [`compress_when`]).
        .layer(tower_http::compression::CompressionLayer::new().compress_when(compress_when()))
        // One middleware function for the request's id, span, metering and logging, the
        // body budget and error normalisation: each `from_fn` layer clones the whole stack
        // inside it on every request, so three of them cost a get by id several per cent
        // (issue 24).
        .layer(middleware::from_fn_with_state(state, request_context))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(CatchPanicLayer::new())
        .layer(DefaultBodyLimit::max(config.body_limit))
        .service(routes);
    tower::util::BoxCloneSyncService::new(app)
}

/// Answers shorter than this go out uncompressed even when the client accepts gzip: they fit
/// in one packet either way, and starting a compressor for one (its state is a few hundred KiB
/// to set up) doubled a get by id's CPU (BENCHMARKS.md, issue 24). Answers of unknown length
/// (streams: exports, bulk reports) are compressed.
pub const COMPRESS_FROM_BYTES: u16 = 1024;

/// What gets compressed: answers of [`COMPRESS_FROM_BYTES`] or more (or of unknown length),
/// except change feeds (event by event) and images.
fn compress_when() -> impl tower_http::compression::Predicate {
    use tower_http::compression::Predicate as _;
    use tower_http::compression::predicate::{NotForContentType, SizeAbove};
    SizeAbove::new(COMPRESS_FROM_BYTES)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::SSE)
}

/// Every route but the description itself, each with its part of the description.
fn described_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics::scrape))
        .merge(routes::control::router())
        .merge(routes::audit::router())
        .merge(routes::secops::router())
        .merge(routes::backups::router())
        .merge(routes::archives::router())
        .merge(routes::placement::router())
        .merge(routes::records::router())
        .merge(routes::members::router())
        .merge(routes::storage::router())
        .merge(routes::usage::router())
}

/// The API description as the server serves it at `GET /v1/openapi.json`.
pub fn api_description() -> serde_json::Value {
    openapi::finish(described_routes().into_openapi())
}

#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, description = "The process is up", body = Health)))]
async fn healthz() -> impl IntoResponse {
    axum::Json(Health {
        status: "ok".into(),
        problems: Vec::new(),
        catalog_schema: None,
    })
}

#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses(
        (status = 200, description = "Ready (`ready`) or serving with problems (`degraded`)", body = Health),
        (status = 503, description = "The catalog is not ready", body = bulkhead_api::ErrorBody),
    ))]
async fn readyz(State(state): State<AppState>) -> Response {
    match state.catalog.is_initialized().await {
        Ok(true) => {
            let problems = state.catalog.problems().await.unwrap_or_default();
            axum::Json(Health {
                status: if problems.is_empty() {
                    "ready"
                } else {
                    "degraded"
                }
                .into(),
                problems,
                catalog_schema: Some(state.catalog.schema_version()),
            })
            .into_response()
        }
        _ => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the catalog is not ready",
        ),
    }
}

fn request_id_from(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(|| uuid::Uuid::now_v7().simple().to_string(), str::to_owned)
}

/// Gives the request its id and span, logs one line when it ends, and echoes the id.
async fn request_context(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let request_id = request_id_from(&request);
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
        tenant = tracing::field::Empty,
    );
    // A caller's W3C `traceparent` makes this request's span its child (when traces are
    // exported at all; otherwise this does nothing).
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&TraceHeaders(request.headers()))
        });
        let _ = span.set_parent(parent);
    }
    let started = Instant::now();
    let id = request_id.clone();
    let method = request.method().clone();
    // The request's slot: its id for everything it runs, and what it turns out to act on
    // (its tenant, whose meter gets its bytes in and out). Metering is off only while
    // `bulkhead-bench metering` measures what it costs.
    let metering = state.catalog.metering();
    let mut acted = RequestTenant::new(request_id);
    let request = if metering {
        request.map(|body| {
            metered::Counted::wrap(body, &mut acted, &state.catalog, metered::Side::Received)
        })
    } else {
        request
    };
    let (request, leftover) = drain::share(request);
    let (budget, body_limit) = (
        std::sync::Arc::clone(&state.body_budget),
        state.config.body_limit as u64,
    );
    let work = async move {
        let mut scoped = std::pin::pin!(acted.enter(admitted(budget, body_limit, request, next)));
        let response = scoped.as_mut().await;
        acted.leave(scoped);
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "request done"
        );
        (response, acted)
    }
    .instrument(span);
    // A change runs to its end even when its client goes away (a reset connection drops this
    // future): cut off between the engine and its bookkeeping, a write would leave its quota
    // reservation, move ticket or feed order unsettled. Reads stop with their client.
    let (mut response, mut acted) = if runs_to_end(&method) {
        match tokio::spawn(work).await {
            Ok(done) => done,
            Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
            // Cancelled: only when the runtime shuts down.
            Err(_) => {
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_closing",
                    "the server is shutting down; retry",
                );
            }
        }
    } else {
        work.await
    };
    if metering {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(started);
        acted.finished(&state.catalog, elapsed, now);
        state.http_metrics.record(
            response
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str),
            &method,
            response.status().as_u16(),
            acted.model(),
            elapsed,
        );
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    // Whatever the handler left of the body is read first, so a client still sending it gets
    // this answer rather than a reset connection.
    if !leftover.drain(drain::DRAIN_CAP, drain::DRAIN_WITHIN).await {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if !metering {
        return response;
    }
    let response = response
        .map(|body| metered::Counted::wrap(body, &mut acted, &state.catalog, metered::Side::Sent));
    acted.settle(&state.catalog);
    response
}

/// Whether a request with this method changes something, and so runs to its end once begun.
fn runs_to_end(method: &axum::http::Method) -> bool {
    use axum::http::Method;
    [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(method)
}

/// A request's headers as OpenTelemetry's propagators read them.
struct TraceHeaders<'a>(&'a axum::http::HeaderMap);

impl opentelemetry::propagation::Extractor for TraceHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

/// The request within its context: its body reserved from the server's budget
/// ([`budget::admit`]) while it runs, and its error answers normalised.
async fn admitted(
    budget: std::sync::Arc<tokio::sync::Semaphore>,
    body_limit: u64,
    request: Request,
    next: Next,
) -> Response {
    let (request, held) = match budget::admit(&budget, body_limit, request) {
        Ok(admitted) => admitted,
        Err(busy) => return busy.into_response(),
    };
    let response = next.run(request).await;
    let refused = held.refused();
    held.release();
    if refused {
        // The body outgrew what the budget had left: nothing was applied from it.
        return budget::Busy.into_response();
    }
    normalise_errors(response).await
}

/// Error responses made by layers or by axum's own rejections (timeouts, panics, wrong
/// methods, undecodable paths) get the standard body. A short plain-text message from axum is
/// kept, since it names the problem.
async fn normalise_errors(response: Response) -> Response {
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes().to_vec());
    let is_json = content_type
        .as_deref()
        .is_some_and(|v| v.starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (_, code, default_message) = kind_of(status);
    let allow = response.headers().get(header::ALLOW).cloned();
    let is_text = content_type
        .as_deref()
        .is_some_and(|v| v.starts_with(b"text/plain"));
    let message = if is_text && status.is_client_error() {
        match axum::body::to_bytes(response.into_body(), 2048).await {
            Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
            _ => default_message.to_owned(),
        }
    } else {
        default_message.to_owned()
    };
    let mut normalised = error_response(status, code, &message);
    if let Some(allow) = allow {
        normalised.headers_mut().insert(header::ALLOW, allow);
    }
    normalised
}

/// Serves until `shutdown` completes, then stops accepting and drains in-flight requests
/// (see [`listen`]: connection cap and header/idle timeout).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = listen::Limits {
        max_connections: state.config.max_connections,
        header_timeout: state.config.header_timeout,
        tls: state.config.tls.clone(),
    };
    // Change feeds never end on their own: they end first, so the drain does not wait.
    let catalog = state.catalog.clone();
    let shutdown = async move {
        shutdown.await;
        catalog.close_watchers();
    };
    listen::serve(listener, router(state), limits, shutdown).await
}
