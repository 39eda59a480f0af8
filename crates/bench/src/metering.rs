//! `bulkhead-bench metering`: what knowing every tenant costs.
//!
//! 1. **Overhead**: get by id and a 1,000-line bulk on a pool tenant over HTTP (32
//!    connections), in alternating rounds with metering on and off in the same server
//!    (`Catalog::set_metering`: usage counts, bytes in and out, query work, request metrics).
//!    Reports throughput and server CPU µs per request each way, and the cost in per cent:
//!    the median of each round's on/off ratio (a paired comparison; the host's own swings
//!    between rounds are larger than the cost).
//! 2. **Scrape**: `GET /metrics` with `--tenants` tenants that each made a request.
//! 3. **Storage sampling**: every tenant's storage measured (`POST /v1/usage/storage`) with
//!    `--silos` silo tenants besides the pool ones, while a neighbour reads; the neighbour's
//!    p99 with the sampling running over its p99 without.

use std::time::{Duration, Instant};

use bulkhead_api::CreateTenant;
use bulkhead_client::Client;
use bulkhead_core::{RecordId, TenantId, TierName};

use crate::limit::{Op, Sample, bulkhead_target, measure, seed};
use crate::pocketbase::in_process::{ADMIN_KEY, InProcess};
use crate::{percentile, timed};

const METRICS_TOKEN: &str = "bench-metrics-token";

#[derive(Debug, clap::Args)]
pub struct MeteringArgs {
    /// Requests per op, mode and round (bulk: a tenth of it).
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Rounds per op (on/off alternate: on off, off on, …). Each round's two halves run back
    /// to back, so the host's slower drift touches both alike: the cost is the median over
    /// the rounds of the ratio of their CPU per request (shown with its interquartile range).
    #[arg(long, default_value_t = 16)]
    rounds: usize,
    /// Pool tenants that each make one request before the scrape (0: skip the scrape).
    #[arg(long, default_value_t = 10_000)]
    tenants: usize,
    /// Silo tenants besides them for the storage sampling (0 with --tenants 0: skip it).
    #[arg(long, default_value_t = 10_000)]
    silos: usize,
    /// What the overhead part turns on and off between rounds: `metering`, or `log` (the
    /// log lines `bulkhead serve` writes at its default level `info`, through its own log
    /// writer, against the level `off`; metering stays on). Run `--compare log` with stderr
    /// sent where a server's log goes (`2>/dev/null`, or a file).
    #[arg(long, value_enum, default_value_t = Compare::Metering)]
    compare: Compare,
    /// Both "modes" with metering on: the noise floor of the comparison.
    #[arg(long)]
    aa: bool,
    /// Print this many of the neighbour's slowest gets during each sampling pass, with when
    /// they were sent from the pass's start (with `--neighbour-rate 0`, when their batch of
    /// 500 began).
    #[arg(long, default_value_t = 0)]
    show_slowest: usize,
    /// The server without its background search-index upkeep (`--search-upkeep false`).
    #[arg(long)]
    no_search_upkeep: bool,
    /// Both "modes" with metering off: for profiling the path without it beside a run with
    /// `--aa`.
    #[arg(long, conflicts_with = "aa")]
    bb: bool,
    /// Only these ops of the overhead part (`get`, `bulk`).
    #[arg(long, value_delimiter = ',')]
    ops: Vec<String>,
    /// Seconds the neighbour reads without sampling (with it: as long as it runs).
    #[arg(long, default_value_t = 10)]
    neighbour_seconds: u64,
    /// The neighbour's gets per second, sent on a schedule whatever the answers' pace (an
    /// open loop, as a service's traffic arrives). 0: as fast as 8 connections go, one
    /// request each at a time (a closed loop that keeps both cores busy).
    #[arg(long, default_value_t = 0)]
    neighbour_rate: u64,
    /// The paced sampling pass's target ratio and floor.
    #[arg(long, default_value_t = 1.2)]
    sample_pace_target: f64,
    #[arg(long, default_value_t = 0.1)]
    sample_pace_floor: f64,
    /// The sampling passes, in order: `full` (at full speed), `paced`, or `restart` (the
    /// server stopped and started again on its data, then a paced pass). The first pass reads
    /// every tenant's storage; later ones reuse what did not change since, also across a
    /// restart.
    #[arg(long, value_delimiter = ',', default_value = "paced,paced,full")]
    passes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Compare {
    Metering,
    Log,
}

fn empty() -> Sample {
    Sample {
        requests: 0,
        seconds: 0.0,
        latencies: Vec::new(),
        cpu: 0.0,
    }
}

pub async fn run(args: MeteringArgs) -> anyhow::Result<()> {
    let serve_args = || bulkhead::config::ServeArgs {
        bulk_in_flight: Some(args.connections.max(16)),
        metrics_token: Some(METRICS_TOKEN.into()),
        search_upkeep: args.no_search_upkeep.then_some(false),
        ..Default::default()
    };
    // The server's data outlives a restart (`--passes …,restart`).
    let data = tempfile::tempdir()?;
    let data_dir = data.path().join("data");
    let mut server = InProcess::start_in(serve_args(), Some(data_dir.clone())).await?;
    let mut target = bulkhead_target(&server.url).await?;
    let seeded = 10_000;
    seed(&target, seeded).await?;
    // `--compare log`: the server's own log (stderr, its writer thread), level set per round.
    let logging = match args.compare {
        Compare::Metering => None,
        Compare::Log => {
            let dir = tempfile::tempdir()?;
            let config = bulkhead::config::Config::load(
                &bulkhead::config::ServeArgs::default(),
                Some(&dir.path().join("data")),
                Some(ADMIN_KEY.into()),
            )?;
            // The log's writer thread (`bulkhead-log`) counts as the server's.
            target.threads = "bulkhead-";
            Some(bulkhead::logging::init(&config)?)
        }
    };
    println!(
        "{} on vs {}, one server, {} connections, {} rounds; CPU per request: the median round each way; cost: the median of the rounds' on/off ratios (interquartile range)",
        match args.compare {
            Compare::Metering => "Metering",
            Compare::Log => "Log lines at info (metering on in both)",
        },
        match (args.aa, args.bb) {
            (true, _) => "on (noise floor)",
            (_, true) => "off (here both halves off)",
            _ => "off",
        },
        args.connections,
        args.rounds
    );
    println!(
        "{:<18} {:>10} {:>10} {:>14} {:>16} {:>8}",
        "op", "on/s", "off/s", "p99 on / off", "CPU µs on / off", "cost"
    );
    let mut offset = seeded * 10;
    let wanted = |op: Op| {
        let short = if op == Op::Get { "get" } else { "bulk" };
        args.ops.is_empty() || args.ops.iter().any(|o| o == short)
    };
    for op in [Op::Get, Op::Bulk].into_iter().filter(|op| wanted(*op)) {
        let requests = if op == Op::Bulk {
            (args.requests / 10).max(1)
        } else {
            args.requests
        };
        let mut samples = [empty(), empty()];
        let mut per_round: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for round in 0..args.rounds.max(2) {
            let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for mode in order {
                let on = (mode == 0 || args.aa) && !args.bb;
                match &logging {
                    None => server.catalog.set_metering(on),
                    Some(log) => log.set_level(if on { "info" } else { "off" })?,
                }
                let part = measure(&target, op, requests, args.connections, seeded, offset).await?;
                offset += requests;
                per_round[mode].push(part.cpu * 1e6 / part.requests as f64);
                let sample = &mut samples[mode];
                sample.requests += part.requests;
                sample.seconds += part.seconds;
                sample.latencies.extend(part.latencies);
                sample.cpu += part.cpu;
            }
        }
        server.catalog.set_metering(true);
        for sample in &mut samples {
            sample.latencies.sort();
        }
        let rate = |s: &Sample| s.requests as f64 / s.seconds;
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let mut ratios: Vec<f64> = per_round[0]
            .iter()
            .zip(&per_round[1])
            .map(|(on, off)| on / off)
            .collect();
        ratios.sort_by(f64::total_cmp);
        let quartile = |q: usize| (ratios[(ratios.len() - 1) * q / 4] - 1.0) * 100.0;
        let (cost, low, high) = (quartile(2), quartile(1), quartile(3));
        let (on, off) = (median(&mut per_round[0]), median(&mut per_round[1]));
        println!(
            "{:<18} {:>10.0} {:>10.0} {:>6.2} / {:<6.2} {:>7.0} / {:<7.0} {:>7.1}% ({low:.1}% … {high:.1}%)",
            op.name(),
            rate(&samples[0]),
            rate(&samples[1]),
            percentile(&samples[0].latencies, 0.99),
            percentile(&samples[1].latencies, 0.99),
            on,
            off,
            cost,
        );
    }

    let admin = Client::new(&server.url, ADMIN_KEY)?;
    if args.tenants > 0 {
        let a = admin.clone();
        let (rate, _) = timed(
            args.tenants,
            args.connections,
            "pool tenants, one request each",
            move |i| {
                let admin = a.clone();
                async move {
                    let id = TenantId::parse(&format!("p{i:06}"))?;
                    create(&admin, &id, "free").await?;
                    let missing = admin
                        .with_tenant(id)
                        .get_record(&crate::limit_items()?, &RecordId::parse("r")?)
                        .await;
                    anyhow::ensure!(missing.is_err_and(|e| e.status() == Some(404)));
                    Ok(())
                }
            },
        )
        .await?;
        println!(
            "\n{} pool tenants created and used at {rate:.0}/s",
            args.tenants
        );
        let scraper = Client::new(&server.url, METRICS_TOKEN)?;
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..50 {
            let started = Instant::now();
            size = scraper.metrics().await?.len();
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "GET /metrics with {} tenants: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {size} bytes",
            args.tenants,
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times.last().map_or(0.0, |t| t.as_secs_f64() * 1e3),
        );
    }

    if args.silos > 0 || args.tenants > 0 {
        if args.silos > 0 {
            let a = admin.clone();
            let (rate, _) =
                timed(args.silos, 8, "silo tenants", move |i| {
                    let admin = a.clone();
                    async move {
                        create(&admin, &TenantId::parse(&format!("s{i:06}"))?, "premium").await
                    }
                })
                .await?;
            println!("{} silo tenants created at {rate:.0}/s", args.silos);
        }
        let rate = args.neighbour_rate;
        let neighbour = |target: &crate::limit::Target, seconds: u64| {
            let target = target.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(seconds);
                let mut all = if rate > 0 {
                    steady_gets(&target, rate, deadline, seeded).await?
                } else {
                    let mut all = Vec::new();
                    let mut k = 0;
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        let part = measure(&target, Op::Get, 500, 8, seeded, k).await?;
                        k += 500;
                        all.extend(part.latencies.into_iter().map(|l| (started, l)));
                    }
                    all
                };
                all.sort_by_key(|&(_, latency)| latency);
                anyhow::Ok(all)
            }
        };
        // Paced by the neighbours' latency (the server's default) or at full speed, each
        // beside a neighbour that reads; a quiet spell of its own before each.
        let mut paces = Vec::new();
        for (i, pass) in args.passes.iter().enumerate() {
            let pace = match pass.as_str() {
                "full" => None,
                "paced" | "restart" => Some(bulkhead_catalog::DomainPace {
                    target_ratio: args.sample_pace_target,
                    floor: args.sample_pace_floor,
                }),
                other => anyhow::bail!("unknown pass {other:?}: full, paced or restart"),
            };
            let when = if i == 0 { "first pass" } else { "again" };
            paces.push((format!("{pass}, {when}"), pace, pass == "restart"));
        }
        for (name, pace, restart) in paces {
            if restart {
                server.stop().await?;
                let started = Instant::now();
                server = InProcess::start_in(serve_args(), Some(data_dir.clone())).await?;
                target = bulkhead_target(&server.url).await?;
                println!(
                    "restarted on the same data in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
            let quiet: Vec<Duration> = neighbour(&target, args.neighbour_seconds)
                .await?
                .into_iter()
                .map(|(_, latency)| latency)
                .collect();
            // The scheduled sampler's path (the background runtime), timed to its end.
            let catalog = server.catalog.clone();
            let pass_started = Instant::now();
            let sampling = tokio::spawn(async move {
                let started = Instant::now();
                let done = catalog.sample_storage_paced(None, pace).await;
                (started.elapsed(), done)
            });
            let mut busy = Vec::new();
            while !sampling.is_finished() {
                busy.extend(neighbour(&target, 1).await?);
            }
            busy.sort_by_key(|&(_, latency)| latency);
            let (took, done) = sampling.await?;
            let done = done?;
            // When the slowest gets were sent, from the pass's start: a few stalls at one
            // moment of the pass and a tail spread over all of it call for different cures.
            let slowest: Vec<String> = busy
                .iter()
                .rev()
                .take(args.show_slowest)
                .map(|&(sent, latency)| {
                    format!(
                        "{:.1} ms at +{:.0} ms",
                        latency.as_secs_f64() * 1e3,
                        sent.saturating_duration_since(pass_started).as_secs_f64() * 1e3
                    )
                })
                .collect();
            let busy: Vec<Duration> = busy.into_iter().map(|(_, latency)| latency).collect();
            println!(
                "{name}: storage of {} tenants ({} failed) sampled in {:.1} s; a neighbour's get p99 {:.2} ms meanwhile vs {:.2} ms without ({:.2}x)",
                done.tenants,
                done.failed,
                took.as_secs_f64(),
                percentile(&busy, 0.99),
                percentile(&quiet, 0.99),
                percentile(&busy, 0.99) / percentile(&quiet, 0.99),
            );
            if !slowest.is_empty() {
                println!("  slowest gets meanwhile: {}", slowest.join(", "));
            }
        }
    }
    server.stop().await
}

/// Gets by id at `rate` a second until `deadline`, each sent on schedule (not waiting for
/// the ones before it); their latencies.
async fn steady_gets(
    target: &crate::limit::Target,
    rate: u64,
    deadline: Instant,
    seeded: usize,
) -> anyhow::Result<Vec<(Instant, Duration)>> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = tokio::task::JoinSet::new();
    let mut k = 0usize;
    while Instant::now() < deadline {
        tick.tick().await;
        let target = target.clone();
        k += 1;
        sent.spawn(async move {
            let started = Instant::now();
            crate::limit::send(&target, Op::Get, k, seeded).await?;
            anyhow::Ok((started, started.elapsed()))
        });
    }
    let mut out = Vec::new();
    while let Some(done) = sent.join_next().await {
        out.push(done??);
    }
    Ok(out)
}

async fn create(admin: &Client, id: &TenantId, tier: &str) -> anyhow::Result<()> {
    admin
        .create_tenant(&CreateTenant {
            id: id.clone(),
            name: id.as_str().to_owned(),
            tier: TierName::parse(tier)?,
            labels: Default::default(),
        })
        .await?;
    Ok(())
}
