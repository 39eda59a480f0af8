//! `GET /metrics`: Prometheus metrics in the OpenMetrics text format (`prometheus-client`).
//!
//! Requests by route template, method, status class and isolation model, as latency
//! histograms (recorded by the request layer); and, read from the catalog at each scrape
//! (`Catalog::observe`), the heaviest tenants' counts — at most `top` tenants with series of
//! their own, every other tenant summed into `tenant="_other"`, so the number of series is
//! bounded whatever the number of tenants — refusals by kind, open storage handles per
//! domain, the audit queue, moves by phase and the shared catalog's sync lag.
//!
//! Who may scrape: a bearer equal to the metrics token (`--metrics-token`), or a platform
//! admin or operator key; a separate listener (`--metrics-listen`) serves only this route,
//! with the token if one is set and without otherwise.

use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use bulkhead_catalog::{OTHER, Observed, REFUSAL_KINDS};
use bulkhead_core::model::Isolation;
use bulkhead_core::shard::{HotMap, HotSet, Padded, SHARDS};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::Auth;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The labels of one series of request latencies.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: &'static str,
    model: &'static str,
}

const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other",
];
const STATUSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const MODELS: [&str; 4] = ["pool", "bridge", "silo", "none"];

/// [`RequestLabels`] as a request records them: the route template by its interned text,
/// compared and hashed by address (each template is interned once, so equal addresses are
/// equal texts), the rest by index. Recording one allocates nothing and hashes no text.
#[derive(Clone, Copy, Debug)]
struct Key {
    route: Option<&'static str>,
    method: u8,
    status: u8,
    model: u8,
}

impl Key {
    fn address(&self) -> usize {
        self.route.map_or(0, |r| r.as_ptr() as usize)
    }

    fn labels(&self) -> RequestLabels {
        RequestLabels {
            route: self.route.unwrap_or("unmatched"),
            method: METHODS[usize::from(self.method)],
            status: STATUSES[usize::from(self.status)],
            model: MODELS[usize::from(self.model)],
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.address() == other.address()
            && (self.method, self.status, self.model) == (other.method, other.status, other.model)
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.address());
        state.write_u32(
            u32::from(self.method) | u32::from(self.status) << 8 | u32::from(self.model) << 16,
        );
    }
}

/// Each route template once, for the life of the process: there are as many as the router
/// has routes. A thread finds the ones it has seen in its own set, without the shared lock.
fn interned(route: &str) -> &'static str {
    thread_local! {
        static SEEN: std::cell::RefCell<HotSet<&'static str>> = Default::default();
    }
    if let Some(known) = SEEN.with_borrow(|seen| seen.get(route).copied()) {
        return known;
    }
    static ROUTES: std::sync::OnceLock<parking_lot::Mutex<HotSet<&'static str>>> =
        std::sync::OnceLock::new();
    let known = {
        let mut routes = ROUTES.get_or_init(Default::default).lock();
        match routes.get(route) {
            Some(known) => *known,
            None => {
                let leaked: &'static str = Box::leak(route.to_owned().into_boxed_str());
                routes.insert(leaked);
                leaked
            }
        }
    };
    SEEN.with_borrow_mut(|seen| seen.insert(known));
    known
}

/// One label set's latencies: each bucket's own count (not cumulative; the last one is
/// past every bound), their sum and count.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    buckets: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Tally {
    fn observe(&mut self, seconds: f64) {
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    fn merge(&mut self, other: &Tally) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

type Tallies = HotMap<Key, Tally>;

/// The request histograms as one scrape shows them: every shard's tallies merged.
#[derive(Debug)]
struct RequestHistograms(Vec<(RequestLabels, Tally)>);

impl prometheus_client::encoding::EncodeMetric for RequestHistograms {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        for (labels, tally) in &self.0 {
            let bounds = BUCKETS.iter().copied().chain(std::iter::once(f64::MAX));
            let buckets: Vec<(f64, u64)> = bounds.zip(tally.buckets).collect();
            encoder
                .encode_family(labels)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    tally.sum,
                    tally.count,
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

/// Reads how many log lines this process dropped (see [`count_log_drops`]).
type LogDrops = Box<dyn Fn() -> u64 + Send + Sync>;

/// The process's log writer, which drops lines when stderr's reader falls behind (the
/// `bulkhead` binary's logging). One per process, as the log itself is.
static LOG_DROPS: std::sync::OnceLock<LogDrops> = std::sync::OnceLock::new();

/// Has `/metrics` report `bulkhead_log_lines_dropped` from `read`. The first call wins: the
/// process has one log.
pub fn count_log_drops(read: LogDrops) {
    let _ = LOG_DROPS.set(read);
}

/// Log lines dropped so far by this process (0 when its log drops nothing).
fn log_lines_dropped() -> u64 {
    LOG_DROPS.get().map_or(0, |read| read())
}

/// Who may scrape, and how many tenants get series of their own.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// A bearer token that may scrape (besides platform admin and operator keys).
    pub token: Option<String>,
    /// Tenants with series of their own; the rest are summed into `_other`.
    pub top_tenants: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            token: None,
            top_tenants: 50,
        }
    }
}

/// The request latencies recorded so far; cheap to clone (shared). Kept per thread shard
/// ([`bulkhead_core::shard`]), so recording a request takes a lock no other core is
/// writing; a scrape merges the shards.
#[derive(Clone, Default)]
pub struct HttpMetrics {
    shards: std::sync::Arc<[Padded<parking_lot::Mutex<Tallies>>; SHARDS]>,
}

impl HttpMetrics {
    /// Every shard's tallies, merged.
    fn merged(&self) -> RequestHistograms {
        let mut all = Tallies::default();
        for shard in self.shards.iter() {
            for (key, tally) in shard.lock().iter() {
                all.entry(*key).or_default().merge(tally);
            }
        }
        RequestHistograms(all.iter().map(|(key, t)| (key.labels(), *t)).collect())
    }
}

impl HttpMetrics {
    /// Records one answered request. Routes are templates (`/v1/tenants/{tenant}`), never
    /// raw paths, so ids never become labels.
    pub(crate) fn record(
        &self,
        route: Option<&str>,
        method: &Method,
        status: u16,
        model: Option<Isolation>,
        took: Duration,
    ) {
        let method = match *method {
            Method::GET => 0,
            Method::POST => 1,
            Method::PUT => 2,
            Method::PATCH => 3,
            Method::DELETE => 4,
            Method::HEAD => 5,
            Method::OPTIONS => 6,
            _ => 7,
        };
        let labels = Key {
            route: route.map(interned),
            method,
            status: match status / 100 {
                1 => 0,
                2 => 1,
                3 => 2,
                4 => 3,
                _ => 4,
            },
            model: match model {
                Some(Isolation::Pool) => 0,
                Some(Isolation::Bridge) => 1,
                Some(Isolation::Silo) => 2,
                None => 3,
            },
        };
        self.shards[bulkhead_core::shard::this_thread()]
            .lock()
            .entry(labels)
            .or_default()
            .observe(took.as_secs_f64());
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantKind {
    tenant: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EngineLabels {
    domain: String,
    engine: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Phase {
    phase: String,
}

type Counters = Family<TenantLabel, Counter>;
type FloatCounters = Family<TenantLabel, Counter<f64, std::sync::atomic::AtomicU64>>;

/// The exposition of one scrape.
fn render(http: &HttpMetrics, observed: &Observed) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("bulkhead");
    registry.register(
        "http_request_duration_seconds",
        "Requests answered, by route template, method, status class and the tenant's isolation model",
        http.merged(),
    );
    let per_tenant = |name: &str,
                      help: &str,
                      value: &dyn Fn(&bulkhead_catalog::TenantFigures) -> u64,
                      registry: &mut Registry| {
        let family = Counters::default();
        for (tenant, f) in &observed.tenants {
            family
                .get_or_create(&TenantLabel {
                    tenant: tenant.clone(),
                })
                .inc_by(value(f));
        }
        registry.register(name, help, family);
    };
    let heaviest = format!(
        "since this server started; the heaviest tenants by requests each, the rest as tenant=\"{OTHER}\""
    );
    per_tenant(
        "tenant_requests",
        &format!("Data requests admitted, {heaviest}"),
        &|f| f.requests,
        &mut registry,
    );
    per_tenant(
        "tenant_writes",
        &format!("Write requests admitted, {heaviest}"),
        &|f| f.writes,
        &mut registry,
    );
    per_tenant(
        "tenant_records_written",
        &format!("Records created, replaced, patched or deleted, {heaviest}"),
        &|f| f.records_written,
        &mut registry,
    );
    per_tenant(
        "tenant_received_bytes",
        &format!("Request body bytes, {heaviest}"),
        &|f| f.bytes_in,
        &mut registry,
    );
    per_tenant(
        "tenant_sent_bytes",
        &format!("Response body bytes, {heaviest}"),
        &|f| f.bytes_out,
        &mut registry,
    );
    per_tenant(
        "tenant_rows_examined",
        &format!("Rows queries examined, {heaviest}"),
        &|f| f.rows_examined,
        &mut registry,
    );
    let query_seconds = FloatCounters::default();
    let refusals = Family::<TenantKind, Counter>::default();
    for (tenant, f) in &observed.tenants {
        query_seconds
            .get_or_create(&TenantLabel {
                tenant: tenant.clone(),
            })
            .inc_by(f.query_seconds);
        for (kind, n) in REFUSAL_KINDS.iter().zip(f.refused) {
            if n > 0 {
                refusals
                    .get_or_create(&TenantKind {
                        tenant: tenant.clone(),
                        kind: (*kind).to_owned(),
                    })
                    .inc_by(n);
            }
        }
    }
    registry.register(
        "tenant_query_seconds",
        format!("Time queries spent in the engine, {heaviest}"),
        query_seconds,
    );
    registry.register(
        "tenant_refusals",
        format!("Requests refused by kind (rate, concurrency, quota, budget), {heaviest}"),
        refusals,
    );
    let all_refusals = Family::<Kind, Counter>::default();
    for (kind, n) in REFUSAL_KINDS.iter().zip(observed.all.refused) {
        all_refusals
            .get_or_create(&Kind {
                kind: (*kind).to_owned(),
            })
            .inc_by(n);
    }
    registry.register(
        "refusals",
        "Requests refused by kind, all tenants, since this server started",
        all_refusals,
    );
    let metered = Gauge::<i64>::default();
    metered.set(i64::try_from(observed.tenants.len()).unwrap_or(i64::MAX));
    registry.register(
        "tenant_series",
        "Tenant rows in the tenant_* metrics (at most the configured top, plus _other)",
        metered,
    );
    let handles = Family::<EngineLabels, Gauge>::default();
    for e in &observed.engines {
        handles
            .get_or_create(&EngineLabels {
                domain: e.domain.clone(),
                engine: e.engine.to_owned(),
            })
            .set(i64::try_from(e.open_handles).unwrap_or(i64::MAX));
    }
    registry.register(
        "engine_open_handles",
        "Storage handles each domain's engine holds open (SQLite files, PostgreSQL pools)",
        handles,
    );
    let merges = Family::<EngineLabels, Counter>::default();
    for e in &observed.engines {
        merges
            .get_or_create(&EngineLabels {
                domain: e.domain.clone(),
                engine: e.engine.to_owned(),
            })
            .inc_by(e.search_merges);
    }
    registry.register(
        "engine_search_merges",
        "Search indexes each domain's engine merged in the background since it opened (SQLite pool and bridge files)",
        merges,
    );
    let queued = Gauge::<i64>::default();
    queued.set(i64::try_from(observed.audit_queued).unwrap_or(i64::MAX));
    registry.register(
        "audit_queue_depth",
        "Audit events waiting to be written",
        queued,
    );
    let watchers = Gauge::<i64>::default();
    watchers.set(i64::try_from(observed.watchers).unwrap_or(i64::MAX));
    registry.register(
        "watchers",
        "Change feeds (records:watch) open on this server",
        watchers,
    );
    let streams = Gauge::<i64>::default();
    streams.set(i64::try_from(observed.feed_streams).unwrap_or(i64::MAX));
    registry.register(
        "feed_streams",
        "Change-feed streams kept (a tenant's collection watched now or within the retention)",
        streams,
    );
    let dropped = Counter::<u64>::default();
    dropped.inc_by(observed.audit_dropped);
    registry.register(
        "audit_dropped",
        "Audit events dropped because the queue was full (each drop is logged in the audit)",
        dropped,
    );
    let log_dropped = Counter::<u64>::default();
    log_dropped.inc_by(log_lines_dropped());
    registry.register(
        "log_lines_dropped",
        "Log lines dropped because stderr's reader did not keep up (requests are never held for the log)",
        log_dropped,
    );
    let moves = Family::<Phase, Gauge>::default();
    for (phase, n) in &observed.moves {
        moves
            .get_or_create(&Phase {
                phase: phase.clone(),
            })
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    registry.register(
        "moves_running",
        "Live moves this server runs, by phase",
        moves,
    );
    if let Some(lag) = observed.catalog_sync_lag_seconds {
        let gauge = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        gauge.set(lag);
        registry.register(
            "catalog_sync_lag_seconds",
            "Seconds since this server last caught up with the shared catalog's changes",
            gauge,
        );
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Whether `parts` carry the metrics token as a bearer.
fn has_token(parts: &Parts, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return false;
    };
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| {
            given.len() == token.len()
                && given
                    .bytes()
                    .zip(token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
}

/// `GET /metrics`: a platform key (admin or operator) or the metrics token.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition (OpenMetrics)", content_type = "application/openmetrics-text", body = String)))]
pub(crate) async fn scrape(State(state): State<AppState>, mut parts: Parts) -> ApiResult<Response> {
    if !has_token(&parts, state.metrics_config.token.as_deref()) {
        let Auth(ctx) = Auth::from_request_parts(&mut parts, &state).await?;
        state.catalog.may_read_metrics(&ctx)?;
    }
    Ok(exposition(&state))
}

/// The separate metrics listener: the token if one is set, nobody else.
pub(crate) async fn scrape_open(State(state): State<AppState>, parts: Parts) -> Response {
    let token = state.metrics_config.token.as_deref();
    if token.is_some() && !has_token(&parts, token) {
        return crate::error::error_response(
            axum::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this listener needs the metrics token as a bearer",
        );
    }
    exposition(&state)
}

fn exposition(state: &AppState) -> Response {
    let observed = state.catalog.observe(state.metrics_config.top_tenants);
    match render(&state.http_metrics, &observed) {
        Ok(text) => {
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        Err(_) => crate::error::error_response(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "metrics could not be rendered",
        ),
    }
}

/// Serves only `GET /metrics` on a listener of its own, until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape_open))
        .with_state(state);
    axum::serve(listener, router).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(metrics: &HttpMetrics) -> Vec<(RequestLabels, u64)> {
        let mut all: Vec<_> = metrics
            .merged()
            .0
            .into_iter()
            .map(|(labels, tally)| (labels, tally.count))
            .collect();
        all.sort_by_key(|(l, _)| (l.route, l.method, l.status, l.model));
        all
    }

    #[test]
    fn requests_from_many_threads_land_in_one_series_per_label_set() {
        let metrics = HttpMetrics::default();
        // Templates arrive as fresh text each time (as axum hands them out); equal texts
        // are one series, whichever thread saw them first.
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let metrics = metrics.clone();
                std::thread::spawn(move || {
                    let get = String::from("/v1/collections/{collection}/records/{id}");
                    for _ in 0..10 {
                        metrics.record(
                            Some(&get),
                            &Method::GET,
                            200,
                            Some(Isolation::Pool),
                            Duration::from_micros(300),
                        );
                    }
                    metrics.record(
                        None,
                        &Method::from_bytes(b"PROPFIND").unwrap(),
                        404,
                        None,
                        Duration::from_millis(i + 1),
                    );
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        metrics.record(
            Some("/v1/collections/{collection}/records/{id}"),
            &Method::GET,
            503,
            Some(Isolation::Silo),
            Duration::from_millis(2),
        );
        let labels = |route, method, status, model| RequestLabels {
            route,
            method,
            status,
            model,
        };
        let route = "/v1/collections/{collection}/records/{id}";
        assert_eq!(
            series(&metrics),
            vec![
                (labels(route, "GET", "2xx", "pool"), 40),
                (labels(route, "GET", "5xx", "silo"), 1),
                (labels("unmatched", "other", "4xx", "none"), 4),
            ]
        );
    }
}
