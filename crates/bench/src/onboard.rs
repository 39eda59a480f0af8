//! `bulkhead-bench onboard`: tenant creation latency per tier, with the ready pool and without
//! it, side by side in one run (two in-process servers, creations alternating between them),
//! and — with `--silos N` — N silo tenants created in one run while the process's open file
//! descriptors are sampled, to show the silo handle cap holds.
//!
//! Creations are paced (`--interval-ms`), as sign-ups arrive, so the pool has time to refill
//! between them; `--interval-ms 0` shows back-to-back creations, where the pool runs dry and
//! the rest are built.

use std::time::{Duration, Instant};

use bulkhead_api::CreateTenant;
use bulkhead_client::Client;
use bulkhead_core::schema::CollectionSpec;
use bulkhead_core::{CollectionName, TenantId, TierName};
use serde_json::json;

use crate::pocketbase::in_process::{ADMIN_KEY, InProcess};
use crate::{bar, percentile};

#[derive(Debug, clap::Args)]
pub struct OnboardArgs {
    /// Tenants created per tier and server.
    #[arg(long, default_value_t = 200)]
    tenants: usize,
    /// Pause between two creations on one server, in milliseconds.
    #[arg(long, default_value_t = 50)]
    interval_ms: u64,
    /// Empty silos the pooled server keeps ready.
    #[arg(long, default_value_t = 4)]
    ready: u32,
    /// Then create this many silo tenants in one run (8 at a time) and report open files.
    #[arg(long, default_value_t = 0)]
    silos: usize,
    /// The silo handle cap of that run.
    #[arg(long, default_value_t = 256)]
    handle_cap: usize,
}

async fn server(ready: u32, handle_cap: usize) -> anyhow::Result<(InProcess, Client)> {
    let server = InProcess::start_with(bulkhead::config::ServeArgs {
        ready_silos: Some(ready),
        silo_handle_cap: Some(handle_cap),
        ..Default::default()
    })
    .await?;
    let admin = Client::new(&server.url, ADMIN_KEY)?;
    // A collection with an index, a unique field and full-text search: real work to build.
    let spec: CollectionSpec = serde_json::from_value(json!({"fields": {
        "title": {"type": "text", "required": true},
        "sku": {"type": "string", "unique": true},
        "n": {"type": "integer", "index": true},
        "at": {"type": "timestamp", "index": true}
    }}))?;
    admin
        .put_collection(&CollectionName::parse("items")?, &spec)
        .await?;
    Ok((server, admin))
}

async fn create(admin: &Client, id: &str, tier: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    admin
        .create_tenant(&CreateTenant {
            id: TenantId::parse(id)?,
            name: id.to_owned(),
            tier: TierName::parse(tier)?,
            labels: Default::default(),
        })
        .await?;
    Ok(started.elapsed())
}

/// Waits until the local domain has `want` spares ready.
async fn ready(admin: &Client, want: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let domains = admin.list_domains().await?.items;
        if domains
            .iter()
            .any(|d| d.name.as_str() == "local" && d.spares_ready >= u64::from(want))
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the ready pool never filled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Open file descriptors of this process (the in-process servers included).
fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

pub async fn run(args: OnboardArgs) -> anyhow::Result<()> {
    let (bare, bare_admin) = server(0, args.handle_cap).await?;
    let (pooled, pooled_admin) = server(args.ready, args.handle_cap).await?;
    ready(&pooled_admin, args.ready).await?;
    println!(
        "tenant creation over HTTP, {} per tier and server, one every {} ms; ready pool of {} silos vs none",
        args.tenants, args.interval_ms, args.ready
    );
    for tier in ["free", "standard", "premium"] {
        let progress = bar(args.tenants, tier);
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for i in 0..args.tenants {
            let id = format!("{tier}-{i:05}");
            without.push(create(&bare_admin, &id, tier).await?);
            with.push(create(&pooled_admin, &id, tier).await?);
            progress.inc(1);
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
        progress.finish_and_clear();
        without.sort();
        with.sort();
        println!(
            "  {tier:>8}: without ready pool p50 / p99 {:.2} / {:.2} ms; with it {:.2} / {:.2} ms (p50 {:.2}x)",
            percentile(&without, 0.5),
            percentile(&without, 0.99),
            percentile(&with, 0.5),
            percentile(&with, 0.99),
            percentile(&with, 0.5) / percentile(&without, 0.5)
        );
    }
    bare.stop().await?;
    if args.silos > 0 {
        let baseline = open_files();
        let progress = bar(args.silos, "silo tenants");
        let started = Instant::now();
        let mut most = baseline;
        let mut next = 0usize;
        let mut latencies = Vec::with_capacity(args.silos);
        while next < args.silos {
            let batch: Vec<_> = (next..(next + 8).min(args.silos))
                .map(|i| {
                    let admin = pooled_admin.clone();
                    async move { create(&admin, &format!("many-{i:05}"), "premium").await }
                })
                .collect();
            for took in futures_util::future::join_all(batch).await {
                latencies.push(took?);
            }
            next = (next + 8).min(args.silos);
            progress.set_position(next as u64);
            most = most.max(open_files());
        }
        progress.finish_and_clear();
        latencies.sort();
        println!(
            "  {} silo tenants created in {:.1} s (8 at a time, ready pool of {}): p50 / p99 {:.2} / {:.2} ms",
            args.silos,
            started.elapsed().as_secs_f64(),
            args.ready,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
        println!(
            "  open files: {baseline} before, at most {most} during (silo handle cap {}, each open silo holds its file and WAL)",
            args.handle_cap
        );
    }
    pooled.stop().await?;
    Ok(())
}
