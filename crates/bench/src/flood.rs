//! `bulkhead-bench postgres --only flood`: one pooled tenant runs many concurrent expensive
//! queries on a PostgreSQL domain while a neighbour on the same domain reads one record at a
//! time; the neighbour's p95 against its p95 with nobody flooding, for several shares of the
//! domain's pool (the tier's `max_domain_connections`), in alternating rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bulkhead_core::model::Isolation;
use bulkhead_core::schema::CollectionSpec;
use bulkhead_core::{CollectionName, RecordId};
use serde_json::json;

use crate::{bar, percentile};

/// The flood's sizes: the domain's pool, the noisy tenant's records and concurrent queries,
/// the neighbour's reads per sample, and rounds (each round measures every share once).
#[derive(Debug, clap::Args)]
pub(crate) struct FloodArgs {
    #[arg(long, default_value_t = 8)]
    pub(crate) flood_pool: u32,
    #[arg(long, default_value_t = 30_000)]
    pub(crate) flood_records: usize,
    #[arg(long, default_value_t = 32)]
    pub(crate) flood_queries: usize,
    #[arg(long, default_value_t = 200)]
    pub(crate) flood_reads: usize,
    #[arg(long, default_value_t = 3)]
    pub(crate) flood_rounds: usize,
}

/// One tenant floods a PostgreSQL domain with expensive queries; how much slower do its
/// neighbour's reads get, per share of the pool the tier allows the noisy tenant?
pub(crate) async fn run(args: &FloodArgs, url: &str) -> anyhow::Result<()> {
    use crate::pocketbase::in_process::{ADMIN_KEY, InProcess};
    use crate::{bench_collection, row};
    use bulkhead_client::{Client, ListRecords};
    use bulkhead_core::model::{DomainSpec, TierLimits, TierSpec};
    use bulkhead_core::{ConnectionUrl, DomainName, TierName};
    use std::num::NonZeroU32;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let server = InProcess::start().await?;
    let admin = Client::new(&server.url, ADMIN_KEY)?;
    let domain = DomainName::parse("pg-flood")?;
    admin
        .put_domain(
            &domain,
            &DomainSpec {
                engine: "postgres".into(),
                url: Some(ConnectionUrl::new(url)),
                pool_size: Some(args.flood_pool),
                ..DomainSpec::sqlite()
            },
        )
        .await?;
    let tier_name = TierName::parse("pg-flood")?;
    let put_tier = |share: Option<u32>| {
        let (admin, domain, tier_name) = (admin.clone(), domain.clone(), tier_name.clone());
        async move {
            let tier = TierSpec {
                domains: vec![domain],
                limits: TierLimits {
                    max_domain_connections: share.and_then(NonZeroU32::new),
                    ..Default::default()
                },
                ..TierSpec::new(Isolation::Pool)
            };
            admin.put_tier(&tier_name, &tier).await
        }
    };
    put_tier(None).await?;
    let collection = CollectionName::parse("bench")?;
    admin
        .put_collection(
            &collection,
            &CollectionSpec {
                fields: bench_collection()?.fields,
            },
        )
        .await?;
    let noisy = Client::new(
        &server.url,
        crate::member_key(&admin, "flood-noisy", "pg-flood").await?,
    )?;
    let quiet = Client::new(
        &server.url,
        crate::member_key(&admin, "flood-quiet", "pg-flood").await?,
    )?;
    let progress = bar(args.flood_records, "noisy tenant's records");
    for start in (0..args.flood_records).step_by(5_000) {
        let end = (start + 5_000).min(args.flood_records);
        let mut body = Vec::new();
        for i in start..end {
            body.extend_from_slice(row(i).to_string().as_bytes());
            body.push(b'\n');
        }
        noisy.bulk(&collection, body, true).await?;
        progress.inc((end - start) as u64);
    }
    progress.finish_and_clear();
    quiet
        .create_record(&collection, &json!({"id": "q1", "title": "quiet", "n": 1}))
        .await?;
    let q1 = RecordId::parse("q1")?;
    let reads = args.flood_reads;
    let sample = |label: String| {
        let (quiet, collection, q1) = (quiet.clone(), collection.clone(), q1.clone());
        async move {
            let mut took = Vec::with_capacity(reads);
            for _ in 0..reads {
                let start = Instant::now();
                quiet
                    .get_record(&collection, &q1)
                    .await
                    .with_context(|| format!("{label}: the neighbour's read failed"))?;
                took.push(start.elapsed());
            }
            took.sort();
            anyhow::Ok(took)
        }
    };
    let default_share = (args.flood_pool / 4).max(1);
    let shares: Vec<(String, Option<u32>)> = vec![
        ("1".into(), Some(1)),
        (format!("{default_share} (default)"), None),
        (
            format!("{} (whole pool)", args.flood_pool),
            Some(args.flood_pool),
        ),
    ];
    let mut idle: Vec<Duration> = Vec::new();
    let mut loaded: Vec<Vec<Duration>> = vec![Vec::new(); shares.len()];
    let mut noisy_done = vec![0u64; shares.len()];
    let mut noisy_time = vec![Duration::ZERO; shares.len()];
    println!(
        "\nflood: pool of {}, noisy tenant {} records, {} concurrent `title contains \"zzz\"` scans; \
         neighbour: {} reads by id per sample, {} rounds",
        args.flood_pool, args.flood_records, args.flood_queries, reads, args.flood_rounds
    );
    for round in 0..args.flood_rounds {
        idle.extend(sample(format!("round {round}, idle")).await?);
        for (i, (label, share)) in shares.iter().enumerate() {
            put_tier(*share).await?;
            let stop = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicU64::new(0));
            let flood: Vec<_> = (0..args.flood_queries)
                .map(|_| {
                    let (noisy, stop, done) = (noisy.clone(), stop.clone(), done.clone());
                    let collection = collection.clone();
                    tokio::spawn(async move {
                        while !stop.load(Ordering::Relaxed) {
                            let q = ListRecords {
                                filter: Some("title contains \"zzz\"".into()),
                                ..Default::default()
                            };
                            if noisy.list_records(&collection, &q).await.is_ok() {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let started = Instant::now();
            let before = done.load(Ordering::Relaxed);
            loaded[i].extend(sample(format!("round {round}, share {label}")).await?);
            noisy_done[i] += done.load(Ordering::Relaxed) - before;
            noisy_time[i] += started.elapsed();
            stop.store(true, Ordering::Relaxed);
            for task in flood {
                task.await?;
            }
        }
    }
    idle.sort();
    let idle95 = percentile(&idle, 0.95);
    println!(
        "{:<22} {:>10} {:>10} {:>8} {:>14}",
        "noisy tenant's share", "p50 ms", "p95 ms", "p95 ×", "noisy scans/s"
    );
    println!(
        "{:<22} {:>10.2} {:>10.2} {:>8} {:>14}",
        "nobody flooding",
        percentile(&idle, 0.5),
        idle95,
        "1.00",
        "-"
    );
    for (i, (label, _)) in shares.iter().enumerate() {
        loaded[i].sort();
        let p95 = percentile(&loaded[i], 0.95);
        println!(
            "{label:<22} {:>10.2} {p95:>10.2} {:>8.2} {:>14.1}",
            percentile(&loaded[i], 0.5),
            p95 / idle95,
            noisy_done[i] as f64 / noisy_time[i].as_secs_f64()
        );
    }
    server.stop().await?;
    Ok(())
}
