//! `bulkhead-bench watch`: the change feed under many watchers. One server in this process;
//! `--watchers` SSE connections spread over `--tenants` pool tenants (each watches its
//! tenant's `items`); writers create records at `--rate` per second, round-robin over the
//! tenants. Reported:
//! - delivery latency: from the start of a write's request to the moment each watcher of its
//!   tenant has the event (so it includes the write itself), p50 / p99 / max over every
//!   delivery, and the deliveries per second;
//! - what watching costs the writers: the same paced writes with no watcher first, then with
//!   every watcher connected, write latency p50 / p99 side by side (ratio).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bulkhead_client::Client;
use bulkhead_core::CollectionName;
use bulkhead_core::schema::CollectionSpec;
use parking_lot::Mutex;
use serde_json::json;

use crate::pocketbase::in_process::{ADMIN_KEY, InProcess};
use crate::{bar, percentile};

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Change feeds open at once.
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// Tenants the watchers and writes are spread over.
    #[arg(long, default_value_t = 10)]
    tenants: usize,
    /// Records written in each phase.
    #[arg(long, default_value_t = 2_000)]
    writes: usize,
    /// Writes per second (paced, as an application's traffic).
    #[arg(long, default_value_t = 200)]
    rate: u64,
}

/// When each write's request started, by record id.
type Started = Arc<Mutex<HashMap<String, Instant>>>;

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.tenants > 0 && args.watchers >= args.tenants,
        "at least one watcher per tenant"
    );
    let per_tenant = args.watchers / args.tenants;
    let server = InProcess::start_with(bulkhead::config::ServeArgs {
        max_watchers_per_tenant: Some(per_tenant.max(1)),
        ..Default::default()
    })
    .await?;
    let admin = Client::new(&server.url, ADMIN_KEY)?;
    let items = CollectionName::parse("items")?;
    let spec: CollectionSpec = serde_json::from_value(json!({"fields": {
        "title": {"type": "text", "required": true},
        "n": {"type": "integer", "index": true}
    }}))?;
    admin.put_collection(&items, &spec).await?;
    let mut clients = Vec::new();
    for t in 0..args.tenants {
        let key = crate::member_key(&admin, &format!("w{t:03}"), "free").await?;
        clients.push(Client::new(&server.url, &key)?);
    }
    println!(
        "change feed: {} watchers over {} pool tenants ({per_tenant} each), {} writes at {}/s per phase",
        per_tenant * args.tenants,
        args.tenants,
        args.writes,
        args.rate
    );

    // Phase 1: nobody watches.
    let started: Started = Arc::default();
    let alone = write_paced(&clients, &items, &args, "w-alone", &started).await?;

    // Phase 2: every watcher connected, then the same writes.
    let progress = bar(per_tenant * args.tenants, "connecting");
    let mut tasks = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(args.watchers);
    for client in &clients {
        for _ in 0..per_tenant {
            let mut feed = client.watch(&items, None, None).await?;
            let (started, ready_tx) = (Arc::clone(&started), ready_tx.clone());
            tasks.push(tokio::spawn(async move {
                let mut delays = Vec::new();
                while let Some(event) = feed.next().await? {
                    match event.event.as_str() {
                        "ready" => {
                            let _ = ready_tx.send(()).await;
                        }
                        "created" => {
                            let id = event.data["id"].as_str().unwrap_or_default();
                            if id.starts_with("end") {
                                break;
                            }
                            if let Some(at) = started.lock().get(id) {
                                delays.push(at.elapsed());
                            }
                        }
                        "resync" => anyhow::bail!("a watcher was told to resync: {:?}", event.data),
                        _ => {}
                    }
                }
                anyhow::Ok(delays)
            }));
            progress.inc(1);
        }
    }
    drop(ready_tx);
    for _ in 0..tasks.len() {
        ready_rx
            .recv()
            .await
            .context("a watcher ended before it was ready")?;
    }
    progress.finish_and_clear();
    let watched_from = Instant::now();
    let watched = write_paced(&clients, &items, &args, "w-watched", &started).await?;
    for client in &clients {
        client
            .create_record(&items, &json!({"id": "end", "title": "end", "n": 0}))
            .await?;
    }
    let mut delays = Vec::with_capacity(args.writes * per_tenant);
    for task in tasks {
        delays.extend(task.await??);
    }
    let span = watched_from.elapsed();
    delays.sort();
    let want = args.writes * per_tenant;
    println!(
        "  delivery (write start → watcher has it): {} of {want} events; p50 / p99 / max {:.2} / {:.2} / {:.2} ms; {:.0} deliveries/s",
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        delays.len() as f64 / span.as_secs_f64()
    );
    println!(
        "  writes: unwatched p50 / p99 {:.2} / {:.2} ms; watched {:.2} / {:.2} ms (p50 {:.2}x, p99 {:.2}x)",
        percentile(&alone, 0.5),
        percentile(&alone, 0.99),
        percentile(&watched, 0.5),
        percentile(&watched, 0.99),
        percentile(&watched, 0.5) / percentile(&alone, 0.5),
        percentile(&watched, 0.99) / percentile(&alone, 0.99),
    );
    anyhow::ensure!(
        delays.len() == want,
        "events were lost: {} of {want}",
        delays.len()
    );
    server.stop().await?;
    Ok(())
}

/// `args.writes` creates at `args.rate` per second, round-robin over the tenants, each from
/// its own task (so a slow write does not hold the pace); their latencies, sorted.
async fn write_paced(
    clients: &[Client],
    items: &CollectionName,
    args: &WatchArgs,
    prefix: &str,
    started: &Started,
) -> anyhow::Result<Vec<Duration>> {
    let progress = bar(args.writes, prefix);
    let every = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let mut tick = tokio::time::interval(every);
    let mut writes = Vec::with_capacity(args.writes);
    for i in 0..args.writes {
        tick.tick().await;
        let client = clients[i % clients.len()].clone();
        let (items, started) = (items.clone(), Arc::clone(started));
        let id = format!("{prefix}-{i:06}");
        writes.push(tokio::spawn(async move {
            let at = Instant::now();
            started.lock().insert(id.clone(), at);
            client
                .create_record(&items, &json!({"id": id, "title": "event", "n": i}))
                .await?;
            anyhow::Ok(at.elapsed())
        }));
        progress.inc(1);
    }
    let mut latencies = Vec::with_capacity(args.writes);
    for write in writes {
        latencies.push(write.await??);
    }
    progress.finish_and_clear();
    latencies.sort();
    Ok(latencies)
}
