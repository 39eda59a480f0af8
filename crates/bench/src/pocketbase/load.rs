//! The load generator of `bulkhead-bench pocketbase`, one for both systems: raw HTTP requests
//! from a plain `reqwest::Client`, round-robin over the tenants, every status checked.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::json;

use super::machine::ServerCpu;
use crate::{percentile, timed};

#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
    Create,
    List,
}

/// One system as the generator sees it: per-tenant credentials and URLs.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) label: &'static str,
    pub(super) http: reqwest::Client,
    /// `Bearer <credential>` per tenant.
    pub(super) auth: Arc<[HeaderValue]>,
    pub(super) create_url: Url,
    pub(super) list_urls: Arc<[Url]>,
    /// PocketBase's create rule checks the tenant named in the body; Bulkhead takes the
    /// tenant from the key, so its bodies carry none.
    pub(super) body_tenants: Option<Arc<[String]>>,
    /// Where the server's CPU time is read, for the CPU-per-request column.
    pub(super) server: ServerCpu,
}

/// Latencies and wall time of one target over one op, summed over its rounds.
#[derive(Default)]
pub(super) struct Sample {
    pub(super) requests: usize,
    pub(super) seconds: f64,
    pub(super) latencies: Vec<Duration>,
    /// CPU seconds the server spent, `None` where it cannot be read.
    pub(super) server_cpu: Option<f64>,
}

impl Sample {
    pub(super) fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
    pub(super) fn p99(&self) -> f64 {
        percentile(&self.latencies, 0.99)
    }
    /// Server CPU milliseconds per request: unlike req/s, barely moved by other work on the
    /// machine.
    pub(super) fn cpu_ms_per_request(&self) -> Option<f64> {
        Some(self.server_cpu? * 1e3 / self.requests as f64)
    }
}

#[derive(Default)]
struct Errors {
    count: AtomicUsize,
    first: Mutex<Option<String>>,
}

impl Errors {
    fn note(&self, what: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first.lock() {
            first.get_or_insert(what);
        }
    }
}

pub(super) fn payload(i: usize, tenant: Option<&str>) -> Vec<u8> {
    let status = ["open", "closed", "pending"][i % 3];
    let mut body = json!({"title": format!("record number {i} with some text"), "n": i % 1000, "status": status});
    if let Some(tenant) = tenant {
        body["tenant"] = json!(tenant);
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

pub(super) fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()?)
}

pub(super) fn bearer(credential: &str) -> anyhow::Result<HeaderValue> {
    Ok(HeaderValue::from_str(&format!("Bearer {credential}"))?)
}

async fn send(target: &Target, op: Op, i: usize, errors: &Errors) {
    let t = i % target.auth.len();
    let request = match op {
        Op::Create => {
            let tenant = target.body_tenants.as_ref().map(|names| names[t].as_str());
            target
                .http
                .post(target.create_url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(payload(i, tenant))
        }
        Op::List => target.http.get(target.list_urls[t].clone()),
    };
    match request
        .header(AUTHORIZATION, target.auth[t].clone())
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status();
            match response.bytes().await {
                Ok(_) if status.is_success() => {}
                Ok(body) => errors.note(format!("{status}: {}", String::from_utf8_lossy(&body))),
                Err(e) => errors.note(format!("reading the body: {e}")),
            }
        }
        Err(e) => errors.note(format!("{e}")),
    }
}

/// Runs `indices` against one target; any failed request fails the run, loudly.
pub(super) async fn measure(
    target: &Target,
    op: Op,
    indices: Range<usize>,
    concurrency: usize,
    what: &str,
) -> anyhow::Result<Sample> {
    let errors = Arc::new(Errors::default());
    let (t, e, start) = (target.clone(), Arc::clone(&errors), indices.start);
    let requests = indices.len();
    let cpu_before = target.server.seconds();
    let (rate, latencies) = timed(requests, concurrency, what, move |k| {
        let (t, e) = (t.clone(), Arc::clone(&e));
        async move {
            send(&t, op, start + k, &e).await;
            Ok(())
        }
    })
    .await?;
    let server_cpu = match (cpu_before, target.server.seconds()) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    let failed = errors.count.load(Ordering::Relaxed);
    if failed > 0 {
        let first = errors
            .first
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        eprintln!("\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        eprintln!(
            "!!! {what}: {failed} of {requests} requests FAILED ({:.2}% error rate)",
            100.0 * failed as f64 / requests as f64
        );
        eprintln!("!!! first failure: {first}");
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n");
        bail!("{what}: {failed} of {requests} requests failed; the run is void");
    }
    Ok(Sample {
        requests,
        seconds: requests as f64 / rate,
        latencies,
        server_cpu,
    })
}

/// Runs `op` over all targets in `rounds` slices, in A B … B A order (reversed every other
/// round), so that no target always goes first and background noise is spread over all.
pub(super) async fn compare(
    targets: &[&Target],
    op: Op,
    indices: Range<usize>,
    rounds: usize,
    concurrency: usize,
    name: &str,
) -> anyhow::Result<Vec<Sample>> {
    let rounds = rounds.clamp(1, indices.len().max(1));
    let per_round = indices.len().div_ceil(rounds);
    let mut samples: Vec<Sample> = targets.iter().map(|_| Sample::default()).collect();
    for round in 0..rounds {
        let from = (indices.start + round * per_round).min(indices.end);
        let slice = from..(from + per_round).min(indices.end);
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for t in order {
            let what = format!("{} {name} {}/{rounds}", targets[t].label, round + 1);
            let part = measure(targets[t], op, slice.clone(), concurrency, &what).await?;
            let sample = &mut samples[t];
            sample.requests += part.requests;
            sample.seconds += part.seconds;
            sample.latencies.extend(part.latencies);
            sample.server_cpu = match (round, sample.server_cpu, part.server_cpu) {
                (0, _, Some(part)) => Some(part),
                (_, Some(sum), Some(part)) => Some(sum + part),
                _ => None,
            };
        }
    }
    for sample in &mut samples {
        sample.latencies.sort();
    }
    Ok(samples)
}
