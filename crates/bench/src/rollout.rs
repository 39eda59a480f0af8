//! `bulkhead-bench rollout`: a collection change rolled out to many SQLite silos (an added
//! indexed field), timed from the `PUT` to the rollout's end, while a neighbour tenant in
//! the pool reads by id. Its latency during the rollout is compared with the same reads
//! without it, just before and just after, in the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bulkhead_api::CreateTenant;
use bulkhead_client::Client;
use bulkhead_core::model::Isolation;
use bulkhead_core::schema::CollectionSpec;
use bulkhead_core::{CollectionName, RecordId, TenantId, TierName};
use futures_util::StreamExt;
use serde_json::json;

use crate::pocketbase::in_process::{ADMIN_KEY, InProcess};
use crate::{bar, member_key, percentile, postgres_domain};

#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    /// SQLite silo tenants the change rolls out to.
    #[arg(long, default_value_t = 2_000)]
    silos: usize,
    /// Placements changed at once (the server's `--rollout-parallelism`; default: the
    /// server's, half the CPUs).
    #[arg(long)]
    parallelism: Option<usize>,
    /// PostgreSQL bridge tenants (a schema each) on a throwaway PostgreSQL server.
    #[arg(long, default_value_t = 0)]
    pg_bridges: usize,
    /// PostgreSQL silo tenants (a database each) on the same server.
    #[arg(long, default_value_t = 0)]
    pg_silos: usize,
    /// Run the server without fsync (to see what the rollout's syncs cost its neighbours).
    #[arg(long)]
    no_fsync: bool,
    /// The neighbour's tier: `free` (pool) or `premium` (a silo of its own, sharing the
    /// engine's open-file cache with the silos the rollout changes).
    #[arg(long, default_value = "free")]
    neighbour_tier: String,
    /// Seconds of the neighbour's reads without a rollout, both before it and after it
    /// (its p99 without the rollout is taken over both).
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
    /// The server's `--rollout-pace-target` (0: full speed) [default: the server's].
    #[arg(long)]
    pace_target: Option<f64>,
    /// The server's `--rollout-pace-floor` [default: the server's].
    #[arg(long)]
    pace_floor: Option<f64>,
}

/// Creates `count` tenants `<prefix>-NNNNN` on `tier`, 8 at a time, with a progress bar.
async fn create_many(admin: &Client, prefix: &str, tier: &str, count: usize) -> anyhow::Result<()> {
    let creating = bar(count, &format!("{prefix} tenants"));
    let mut created = futures_util::stream::iter(0..count)
        .map(|i| {
            let admin = admin.clone();
            let (id, tier) = (format!("{prefix}-{i:05}"), tier.to_owned());
            async move {
                admin
                    .create_tenant(&CreateTenant {
                        id: TenantId::parse(&id)?,
                        name: id.clone(),
                        tier: TierName::parse(&tier)?,
                        labels: Default::default(),
                    })
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(8);
    while let Some(result) = created.next().await {
        result?;
        creating.inc(1);
    }
    creating.finish_and_clear();
    Ok(())
}

/// The neighbour's reads for as long as `stop` is not set: latencies, sorted.
async fn reads(client: Client, stop: Arc<AtomicBool>) -> anyhow::Result<Vec<Duration>> {
    let collection = CollectionName::parse("bench")?;
    let mut out = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        client
            .get_record(&collection, &RecordId::parse(&format!("r{:04}", i % 1000))?)
            .await?;
        out.push(started.elapsed());
        i += 1;
    }
    out.sort();
    Ok(out)
}

pub async fn run(args: RolloutArgs) -> anyhow::Result<()> {
    let server = InProcess::start_with(bulkhead::config::ServeArgs {
        rollout_parallelism: args.parallelism.map(|p| p.max(1)),
        fsync: args.no_fsync.then_some(false),
        rollout_pace_target: args.pace_target,
        rollout_pace_floor: args.pace_floor,
        ..Default::default()
    })
    .await?;
    let admin = Client::new(&server.url, ADMIN_KEY)?;
    let collection = CollectionName::parse("bench")?;
    let before: CollectionSpec = serde_json::from_value(json!({"fields": {
        "title": {"type": "string", "required": true},
        "n": {"type": "integer"}
    }}))?;
    admin.put_collection(&collection, &before).await?;
    create_many(&admin, "silo", "premium", args.silos).await?;
    let pg = if args.pg_bridges + args.pg_silos > 0 {
        let pg = postgres_domain(
            &admin,
            &[
                ("pg-bridge", Isolation::Bridge),
                ("pg-silo", Isolation::Silo),
            ],
        )
        .await?;
        create_many(&admin, "pgb", "pg-bridge", args.pg_bridges).await?;
        create_many(&admin, "pgs", "pg-silo", args.pg_silos).await?;
        Some(pg)
    } else {
        None
    };
    // The neighbour: a tenant with 1,000 records (pooled by default), read by id.
    let key = member_key(&admin, "neighbour", &args.neighbour_tier).await?;
    let neighbour = Client::new(&server.url, key)?;
    let body: Vec<u8> = (0..1000)
        .flat_map(|i| format!("{{\"id\":\"r{i:04}\",\"title\":\"t{i}\",\"n\":{i}}}\n").into_bytes())
        .collect();
    neighbour.bulk(&collection, body, true).await?;
    // Without the rollout: the same reads for `idle_seconds` before it (and after it).
    let quiet = |seconds: u64| {
        let neighbour = neighbour.clone();
        async move {
            let stop = Arc::new(AtomicBool::new(false));
            let reading = tokio::spawn(reads(neighbour, Arc::clone(&stop)));
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            stop.store(true, Ordering::Relaxed);
            reading.await?
        }
    };
    let quiet_before = quiet(args.idle_seconds).await?;
    // The change, and the reads during its rollout.
    let after: CollectionSpec = serde_json::from_value(json!({"fields": {
        "title": {"type": "string", "required": true},
        "n": {"type": "integer"},
        "tag": {"type": "string", "index": true, "default": "x"}
    }}))?;
    let stop = Arc::new(AtomicBool::new(false));
    let during = tokio::spawn(reads(neighbour.clone(), Arc::clone(&stop)));
    let started = Instant::now();
    let submitted = admin.submit_collection(&collection, &after).await?;
    let answered = started.elapsed();
    let rollout = submitted
        .rollout
        .ok_or_else(|| anyhow::anyhow!("the change started no rollout"))?;
    let progress = bar(
        args.silos + args.pg_bridges + args.pg_silos + 1,
        "placements",
    );
    let done = loop {
        let view = admin.get_rollout(&rollout.id).await?;
        progress.set_position(view.placements_done);
        if view.placements_left == 0 {
            break view;
        }
        if view.state != "running" {
            anyhow::bail!("the rollout {}: {:?}", view.state, view.last_error);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let during = during.await??;
    progress.finish_and_clear();
    let quiet_after = quiet(args.idle_seconds).await?;
    let mut idle: Vec<Duration> = quiet_before.iter().chain(&quiet_after).copied().collect();
    idle.sort();
    println!(
        "rollout of an added indexed field to {} SQLite silos, {} PostgreSQL bridge schemas and {} PostgreSQL silo databases (+1 pool), parallelism {}",
        args.silos,
        args.pg_bridges,
        args.pg_silos,
        args.parallelism
            .map_or_else(|| "the server's default".to_owned(), |p| p.to_string())
    );
    println!(
        "  PUT answered (202) in {:.1} ms",
        answered.as_secs_f64() * 1e3
    );
    println!(
        "  rollout done in {:.1} s: {} placements, {:.0} placements/s",
        took.as_secs_f64(),
        done.placements_done,
        done.placements_done as f64 / took.as_secs_f64()
    );
    println!(
        "  neighbour get p50 / p99: idle {:.2} / {:.2} ms ({} reads), during {:.2} / {:.2} ms ({} reads)",
        percentile(&idle, 0.5),
        percentile(&idle, 0.99),
        idle.len(),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
        during.len()
    );
    println!(
        "  neighbour p99 without the rollout: {:.2} ms before it, {:.2} ms after it",
        percentile(&quiet_before, 0.99),
        percentile(&quiet_after, 0.99),
    );
    println!(
        "  neighbour p99 during / without (before and after): {:.2}x; during / before: {:.2}x",
        percentile(&during, 0.99) / percentile(&idle, 0.99),
        percentile(&during, 0.99) / percentile(&quiet_before, 0.99)
    );
    server.stop().await?;
    drop(pg);
    Ok(())
}
