//! `bulkhead-bench limit`: what the platform costs over the job itself. Bulkhead (a pool
//! tenant, a tenant key) and a bare axum + rusqlite handler doing the same work (`bare`) run
//! side by side in this process, each on its own two-worker runtime; the same HTTP load hits
//! both, in alternating rounds (A B, then B A), over 32 connections: create, get by id, a
//! filtered page (`n > 90`, 20 per page, id order) and a 1,000-line bulk. Ratios are
//! Bulkhead's throughput over the bare handler's.

mod bare;

use std::time::Duration;

use bulkhead_client::Client;
use bulkhead_core::CollectionName;
use bulkhead_core::schema::CollectionSpec;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::json;

use crate::pocketbase::in_process::{ADMIN_KEY, InProcess};
use crate::{percentile, timed};

#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Bulkhead without its background search-index upkeep (`--search-upkeep false`).
    #[arg(long)]
    no_search_upkeep: bool,
    /// Requests per system, op and round (bulk: a tenth of it, of 1,000 lines each).
    #[arg(long, default_value_t = 4_000)]
    requests: usize,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Records seeded into each before timing.
    #[arg(long, default_value_t = 10_000)]
    seed: usize,
    /// Both servers sync every commit to disk (Bulkhead's `--fsync`, the bare handler's
    /// `synchronous = FULL`), as a deployment that must survive power loss runs.
    #[arg(long)]
    fsync: bool,
    /// The bare handler's connections keep their plans whatever the bound values
    /// (`SQLITE_DBCONFIG_ENABLE_QPSG`), as Bulkhead's do: without it a cached statement with a
    /// range on an indexed field (the filtered page) is prepared again on every use.
    #[arg(long)]
    bare_stable_plans: bool,
    /// Only these ops (create, get, list, bulk), e.g. to profile one.
    #[arg(long, value_delimiter = ',')]
    ops: Vec<String>,
    /// Every request carries this `Accept-Encoding` (e.g. `gzip`, as browsers, `fetch` and
    /// Python's `requests` send by default). The bare handler compresses nothing.
    #[arg(long)]
    accept_encoding: Option<String>,
}

/// One system as the load sees it.
#[derive(Clone)]
pub(crate) struct Target {
    label: &'static str,
    /// Name prefix of the server's threads, for its CPU time.
    pub(crate) threads: &'static str,
    http: reqwest::Client,
    auth: HeaderValue,
    create: String,
    get_prefix: String,
    list: String,
    bulk: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Op {
    Create,
    Get,
    List,
    Bulk,
}

impl Op {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Get => "get by id",
            Op::List => "filtered page",
            Op::Bulk => "bulk 1,000 lines",
        }
    }
}

fn line(i: usize) -> serde_json::Value {
    let status = ["open", "closed", "pending"][i % 3];
    json!({"title": format!("record number {i} with some text"), "n": i % 1000, "status": status})
}

fn bulk_body(from: usize, ids: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(80_000);
    for i in from..from + 1000 {
        let mut value = line(i);
        if ids {
            value["id"] = json!(format!("s{i:07}"));
        }
        body.extend_from_slice(value.to_string().as_bytes());
        body.push(b'\n');
    }
    body
}

pub(crate) async fn send(target: &Target, op: Op, i: usize, seeded: usize) -> anyhow::Result<()> {
    let http = &target.http;
    let request = match op {
        Op::Create => http
            .post(&target.create)
            .header(CONTENT_TYPE, "application/json")
            .body(line(i).to_string()),
        Op::Get => http.get(format!("{}s{:07}", target.get_prefix, i % seeded)),
        Op::List => http.get(&target.list),
        // Ids past the seeded ones, so the lines are creates, as in the bare handler.
        Op::Bulk => http
            .post(&target.bulk)
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(bulk_body(10_000_000 + i * 1000, false)),
    };
    let response = request
        .header(AUTHORIZATION, target.auth.clone())
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    anyhow::ensure!(
        status.is_success(),
        "{} {}: {status} {}",
        target.label,
        op.name(),
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

pub(crate) struct Sample {
    pub requests: usize,
    pub seconds: f64,
    pub latencies: Vec<Duration>,
    /// The server's CPU seconds over the sample.
    pub cpu: f64,
}

pub(crate) async fn measure(
    target: &Target,
    op: Op,
    requests: usize,
    connections: usize,
    seeded: usize,
    offset: usize,
) -> anyhow::Result<Sample> {
    let t = target.clone();
    let what = format!("{} {}", target.label, op.name());
    let cpu = || crate::pocketbase::machine::threads_seconds(target.threads).unwrap_or(0.0);
    let cpu_before = cpu();
    let (rate, latencies) = timed(requests, connections, &what, move |k| {
        let t = t.clone();
        async move { send(&t, op, offset + k, seeded).await }
    })
    .await?;
    Ok(Sample {
        requests,
        seconds: requests as f64 / rate,
        latencies,
        cpu: cpu() - cpu_before,
    })
}

/// The load's HTTP client: `accept_encoding` on every request when given.
fn http_client(accept_encoding: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) = accept_encoding {
        headers.insert(
            reqwest::header::ACCEPT_ENCODING,
            HeaderValue::from_str(value)?,
        );
    }
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

pub(crate) async fn bulkhead_target(url: &str) -> anyhow::Result<Target> {
    let admin = Client::new(url, ADMIN_KEY)?;
    let spec: CollectionSpec = crate::items_spec()?;
    admin
        .put_collection(&CollectionName::parse("items")?, &spec)
        .await?;
    let key = crate::member_key(&admin, "limit", "free").await?;
    let base = format!("{url}/v1/collections/items/records");
    let list = reqwest::Url::parse_with_params(&base, [("filter", "n > 90"), ("limit", "20")])?;
    Ok(Target {
        label: "bulkhead",
        threads: crate::pocketbase::machine::SERVER_THREAD_NAME,
        http: reqwest::Client::new(),
        auth: HeaderValue::from_str(&format!("Bearer {key}"))?,
        create: base.clone(),
        get_prefix: format!("{base}/"),
        list: list.to_string(),
        bulk: format!("{base}:bulk"),
    })
}

fn bare_target(url: &str, accept_encoding: Option<&str>) -> anyhow::Result<Target> {
    Ok(Target {
        label: "bare",
        threads: bare::THREAD_NAME,
        http: http_client(accept_encoding)?,
        auth: HeaderValue::from_str(&format!("Bearer {}", bare::TOKEN))?,
        create: format!("{url}/items"),
        get_prefix: format!("{url}/items/"),
        list: format!("{url}/items?min_n=90&limit=20"),
        bulk: format!("{url}/items:bulk"),
    })
}

/// The `Content-Encoding` of `target`'s answer to a get of `url` ("none" without one).
async fn answer_encoding(
    http: &reqwest::Client,
    target: &Target,
    url: &str,
) -> anyhow::Result<String> {
    let response = http
        .get(url)
        .header(AUTHORIZATION, target.auth.clone())
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "{} {url}: {}",
        target.label,
        response.status()
    );
    Ok(response
        .headers()
        .get(reqwest::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned())
}

/// Seeds `count` records with ids `s0000000…` through each target's bulk route.
pub(crate) async fn seed(target: &Target, count: usize) -> anyhow::Result<()> {
    for from in (0..count).step_by(1000) {
        let response = target
            .http
            .post(&target.bulk)
            .header(AUTHORIZATION, target.auth.clone())
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(bulk_body(from, true))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "seeding {}: {}",
            target.label,
            response.text().await?
        );
    }
    Ok(())
}

pub async fn run(args: LimitArgs) -> anyhow::Result<()> {
    // 32 bulk bodies at once: the server's limit (16 by default) is raised to the load's.
    let bulkhead = InProcess::start_with(bulkhead::config::ServeArgs {
        bulk_in_flight: Some(args.connections.max(16)),
        fsync: args.fsync.then_some(true),
        search_upkeep: args.no_search_upkeep.then_some(false),
        ..Default::default()
    })
    .await?;
    let bare = bare::Bare::start(bare::Options {
        fsync: args.fsync,
        stable_plans: args.bare_stable_plans,
    })
    .await?;
    let encoding = args.accept_encoding.as_deref();
    let targets = [
        Target {
            http: http_client(encoding)?,
            ..bulkhead_target(&bulkhead.url).await?
        },
        bare_target(&bare.url, encoding)?,
    ];
    let seeded = args.seed.div_ceil(1000).max(1) * 1000;
    for target in &targets {
        seed(target, seeded).await?;
    }
    println!(
        "Bulkhead (pool tenant, tenant key) vs a bare axum + rusqlite handler, {} connections, {} rounds, {seeded} records seeded",
        args.connections, args.rounds
    );
    if let Some(asked) = encoding {
        for target in &targets {
            println!(
                "  Accept-Encoding: {asked}: {} answers a get with Content-Encoding {} and a page with {}",
                target.label,
                answer_encoding(
                    &target.http,
                    target,
                    &format!("{}s0000000", target.get_prefix)
                )
                .await?,
                answer_encoding(&target.http, target, &target.list).await?,
            );
        }
    }
    println!(
        "{:<18} {:>12} {:>12} {:>9} {:>16} {:>16} {:>20}",
        "op",
        "bulkhead/s",
        "bare/s",
        "ratio",
        "p50 bh / bare",
        "p99 bh / bare",
        "CPU µs/req bh / bare"
    );
    let mut offset = seeded * 10;
    let wanted = |op: Op| {
        let short = match op {
            Op::Create => "create",
            Op::Get => "get",
            Op::List => "list",
            Op::Bulk => "bulk",
        };
        args.ops.is_empty() || args.ops.iter().any(|o| o == short)
    };
    for op in [Op::Create, Op::Get, Op::List, Op::Bulk]
        .into_iter()
        .filter(|op| wanted(*op))
    {
        let requests = if op == Op::Bulk {
            (args.requests / 10).max(1)
        } else {
            args.requests
        };
        let mut samples = [
            Sample {
                requests: 0,
                seconds: 0.0,
                latencies: Vec::new(),
                cpu: 0.0,
            },
            Sample {
                requests: 0,
                seconds: 0.0,
                latencies: Vec::new(),
                cpu: 0.0,
            },
        ];
        for round in 0..args.rounds.max(1) {
            let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for t in order {
                let part =
                    measure(&targets[t], op, requests, args.connections, seeded, offset).await?;
                offset += requests;
                let sample = &mut samples[t];
                sample.requests += part.requests;
                sample.seconds += part.seconds;
                sample.latencies.extend(part.latencies);
                sample.cpu += part.cpu;
            }
        }
        for sample in &mut samples {
            sample.latencies.sort();
        }
        let rate = |s: &Sample| s.requests as f64 / s.seconds;
        let cpu = |s: &Sample| s.cpu * 1e6 / s.requests as f64;
        println!(
            "{:<18} {:>12.0} {:>12.0} {:>8.2}x {:>7.2} / {:<7.2} {:>7.2} / {:<7.2} {:>8.0} / {:<8.0}",
            op.name(),
            rate(&samples[0]),
            rate(&samples[1]),
            rate(&samples[0]) / rate(&samples[1]),
            percentile(&samples[0].latencies, 0.5),
            percentile(&samples[1].latencies, 0.5),
            percentile(&samples[0].latencies, 0.99),
            percentile(&samples[1].latencies, 0.99),
            cpu(&samples[0]),
            cpu(&samples[1]),
        );
    }
    bare.stop().await?;
    bulkhead.stop().await
}
