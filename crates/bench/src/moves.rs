//! `bulkhead-bench move`: a tenant of N records moved pool → silo and back under a steady write
//! load, on an in-process server with the embedded engine (or, with `--postgres`, on a
//! throwaway PostgreSQL server).
//!
//! Reported, per direction: total time; the copy rate as a share of the rate at which the same
//! records were ingested over HTTP bulk into the same engine in the same run; the moving
//! tenant's write latencies during the move (the pause its clients see: p99 and max, plus how
//! long the executor held writes); the neighbours' write p99 during the move against their
//! p99 under the same load just before it, with the tenant still where the move takes it
//! from (`--baseline-secs`; also the moments the move's pace takes its baseline from), and
//! for reference their p99 just after it; and the copy's mean duty as its pace set it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bulkhead_api::StartMove;
use bulkhead_client::Client;
use bulkhead_core::model::{Isolation, MovePhase};
use bulkhead_core::schema::CollectionSpec;
use bulkhead_core::{CollectionName, RecordId, TenantId};
use serde_json::json;

use crate::pocketbase::in_process::{ADMIN_KEY, InProcess};
use crate::{bar, bench_collection, member_key, percentile, postgres_domain, row};

#[derive(Debug, clap::Args)]
pub struct MoveArgs {
    /// Records of the moving tenant.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Records of each of the two neighbours.
    #[arg(long, default_value_t = 20_000)]
    neighbour_records: usize,
    /// Writes per second on the moving tenant, and on each neighbour, during the runs.
    #[arg(long, default_value_t = 100)]
    write_rate: u64,
    /// Most share of time the move's copy may work (`serve --move-duty`); below it the copy
    /// paces itself by the neighbours' latency.
    #[arg(long, default_value_t = 0.75)]
    duty: f64,
    /// Records per copy page (`serve --move-chunk`).
    #[arg(long, default_value_t = 500)]
    chunk: u32,
    /// The neighbours' p99 a move keeps within, as a multiple of their p99 before it
    /// (`serve --move-pace-target`).
    #[arg(long, default_value_t = 1.5)]
    pace_target: f64,
    /// The least share of time the copy works (`serve --move-pace-floor`).
    #[arg(long, default_value_t = 0.05)]
    pace_floor: f64,
    /// Seconds of the same load without a move, just before it (the neighbours' baseline)
    /// and just after it (shown).
    #[arg(long, default_value_t = 30)]
    baseline_secs: u64,
    /// Print the move's pace and why, every second.
    #[arg(long)]
    show_pace: bool,
    /// Which moves to measure (`to-pool` first moves the tenant to a silo, unmeasured).
    #[arg(long, value_enum, default_value_t = Direction::Both)]
    direction: Direction,
    /// Place all three tenants on a throwaway PostgreSQL server (domain `pg`: its pool
    /// database, and a database of its own for a silo) instead of the embedded engine.
    #[arg(long)]
    postgres: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Direction {
    Both,
    ToSilo,
    ToPool,
}

/// A steady writer: its sorted latencies and how many writes were held out (503).
type Writer = tokio::task::JoinHandle<anyhow::Result<(Vec<Duration>, u64)>>;

struct Tenant {
    client: Client,
}

async fn tenant(admin: &Client, url: &str, id: &str, tier: &str) -> anyhow::Result<Tenant> {
    Ok(Tenant {
        client: Client::new(url, member_key(admin, id, tier).await?)?,
    })
}

/// Bulk-ingests `records` rows; returns records per second.
async fn ingest(client: &Client, records: usize, what: &str) -> anyhow::Result<f64> {
    let collection = CollectionName::parse("bench")?;
    let progress = bar(records, what);
    let started = Instant::now();
    for start in (0..records).step_by(5_000) {
        let mut body = Vec::new();
        for i in start..(start + 5_000).min(records) {
            body.extend_from_slice(row(i).to_string().as_bytes());
            body.push(b'\n');
        }
        let report = client.bulk(&collection, body, true).await?;
        anyhow::ensure!(
            report.failed == 0,
            "bulk lines failed: {:?}",
            report.results.first()
        );
        progress.inc(report.created);
    }
    progress.finish_and_clear();
    Ok(records as f64 / started.elapsed().as_secs_f64())
}

/// Writes at a steady rate (alternating creates and updates) until `stop`; returns latencies.
fn steady_writes(client: Client, rate: u64, stop: Arc<AtomicBool>, prefix: &'static str) -> Writer {
    tokio::spawn(async move {
        let collection = CollectionName::parse("bench")?;
        let every = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let in_flight = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            i += 1;
            let (client, collection, in_flight) =
                (client.clone(), collection.clone(), Arc::clone(&in_flight));
            in_flight.fetch_add(1, Ordering::Relaxed);
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                let outcome = if i.is_multiple_of(2) {
                    let id = RecordId::parse(&format!("r{:09}", i * 7 % 1000))?;
                    client
                        .patch_record(&collection, &id, &json!({"n": i as i64}), None)
                        .await
                        .map(drop)
                } else {
                    client
                        .create_record(&collection, &json!({"id": format!("{prefix}{i:09}"), "title": "steady", "n": 1, "score": 0.5}))
                        .await
                        .map(drop)
                };
                in_flight.fetch_sub(1, Ordering::Relaxed);
                let held_out = matches!(&outcome, Err(e) if e.status() == Some(503));
                if !held_out {
                    outcome?;
                }
                Ok::<_, anyhow::Error>((t.elapsed(), held_out))
            }));
        }
        let mut latencies = Vec::new();
        let mut held_out = 0;
        for t in tasks {
            let (latency, out) = t.await??;
            latencies.push(latency);
            held_out += u64::from(out);
        }
        latencies.sort();
        Ok((latencies, held_out))
    })
}

struct Load {
    stop: Arc<AtomicBool>,
    mover: Option<Writer>,
    neighbours: Vec<Writer>,
}

impl Load {
    fn start(
        mover: Option<&Tenant>,
        neighbours: &[Tenant],
        rate: u64,
        round: &'static str,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        Load {
            mover: mover.map(|m| steady_writes(m.client.clone(), rate, Arc::clone(&stop), round)),
            neighbours: neighbours
                .iter()
                .map(|n| steady_writes(n.client.clone(), rate, Arc::clone(&stop), round))
                .collect(),
            stop,
        }
    }

    async fn finish(self) -> anyhow::Result<(Vec<Duration>, u64, Vec<Duration>)> {
        self.stop.store(true, Ordering::Relaxed);
        let (mover, held) = match self.mover {
            Some(m) => m.await??,
            None => (Vec::new(), 0),
        };
        let mut neighbours = Vec::new();
        for n in self.neighbours {
            neighbours.extend(n.await??.0);
        }
        neighbours.sort();
        Ok((mover, held, neighbours))
    }
}

pub async fn run(args: MoveArgs) -> anyhow::Result<()> {
    let server = InProcess::start_with(bulkhead::config::ServeArgs {
        move_duty: Some(args.duty),
        move_pace_target: Some(args.pace_target),
        move_pace_floor: Some(args.pace_floor),
        move_chunk: Some(args.chunk),
        move_drain_grace_ms: Some(1_000),
        ..Default::default()
    })
    .await?;
    let url = server.url.clone();
    let admin = Client::new(&url, ADMIN_KEY)?;
    let spec = bench_collection()?;
    admin
        .put_collection(
            &CollectionName::parse("bench")?,
            &CollectionSpec {
                fields: spec.fields.clone(),
            },
        )
        .await?;
    // On PostgreSQL the tenants start in the `pg` domain's pool; a move keeps its domain.
    let (_pg, tier) = if args.postgres {
        let pg = postgres_domain(&admin, &[("pg-pool", Isolation::Pool)]).await?;
        (Some(pg), "pg-pool")
    } else {
        (None, "free")
    };
    let mover = tenant(&admin, &url, "mover", tier).await?;
    let neighbours = vec![
        tenant(&admin, &url, "nb-one", tier).await?,
        tenant(&admin, &url, "nb-two", tier).await?,
    ];
    for n in &neighbours {
        ingest(&n.client, args.neighbour_records, "seeding neighbours").await?;
    }
    let ingest_rate = ingest(&mover.client, args.records, "ingesting the moving tenant").await?;
    println!(
        "bench move: {} records on {}, HTTP bulk ingest into the pool {:.0} records/s",
        args.records,
        if args.postgres {
            "a PostgreSQL 15 domain"
        } else {
            "the embedded SQLite domain"
        },
        ingest_rate
    );
    println!(
        "steady load: {} writes/s on the moving tenant and on each of 2 neighbours ({} records each)",
        args.write_rate, args.neighbour_records
    );
    println!();
    println!(
        "| direction | total | copy rate | copy / ingest | writes held (executor) | mover write p99 / max during move | 503s | neighbour p99 before → during move | ratio | neighbour p99 after | during / worse of before and after | copy's mean duty (time slowing) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mover_id = TenantId::parse("mover")?;
    if args.direction == Direction::ToPool {
        let view = admin
            .start_move(
                &mover_id,
                &StartMove {
                    isolation: Some(Isolation::Silo),
                    domain: None,
                    incarnation: None,
                },
            )
            .await?;
        while !admin.get_move(&view.id).await?.phase.is_final() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for (from, to, round, base_round, after_round) in [
        (Isolation::Pool, Isolation::Silo, "a", "x", "xa"),
        (Isolation::Silo, Isolation::Pool, "b", "y", "ya"),
    ] {
        let measured = match args.direction {
            Direction::Both => true,
            Direction::ToSilo => to == Isolation::Silo,
            Direction::ToPool => to == Isolation::Pool,
        };
        if !measured {
            continue;
        }
        // The same load without a move first, with the tenant where the move takes it from:
        // the neighbours' baseline (and the moments the move's pace takes its own from).
        let base = Load::start(Some(&mover), &neighbours, args.write_rate, base_round);
        tokio::time::sleep(Duration::from_secs(args.baseline_secs)).await;
        let (_, _, without) = base.finish().await?;
        let started = Instant::now();
        let load = Load::start(Some(&mover), &neighbours, args.write_rate, round);
        let moved = admin
            .start_move(
                &mover_id,
                &StartMove {
                    isolation: Some(to),
                    domain: None,
                    incarnation: None,
                },
            )
            .await?;
        let progress = bar(args.records, &format!("moving to {to}"));
        let (mut duties, mut slowing) = (Vec::new(), 0usize);
        let view = loop {
            let view = admin.get_move(&moved.id).await?;
            progress.set_position(view.rows_copied);
            match &view.pace {
                Some(pace) => {
                    if args.show_pace && duties.len() % 10 == 0 {
                        eprintln!(
                            "{:6.1} s  duty {:.2}  {}",
                            started.elapsed().as_secs_f64(),
                            pace.duty,
                            pace.reason
                        );
                    }
                    duties.push(pace.duty);
                    slowing += usize::from(pace.state == "slowing");
                    progress.set_message(format!("{}, duty {:.2}", view.phase, pace.duty));
                }
                None => progress.set_message(view.phase.to_string()),
            }
            if view.phase.is_final() || view.phase >= MovePhase::Cleaning {
                break view;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let switched_after = started.elapsed();
        let (mover_lat, held_out, during) = load.finish().await?;
        progress.finish_and_clear();
        anyhow::ensure!(
            view.phase != MovePhase::RolledBack,
            "move rolled back: {:?}",
            view.error
        );
        let done = loop {
            let v = admin.get_move(&moved.id).await?;
            if v.phase.is_final() {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let total = started.elapsed();
        // And after, with the tenant where the move put it (shown, not compared: the
        // neighbours' load differs once the mover left or joined their file).
        let after = Load::start(Some(&mover), &neighbours, args.write_rate, after_round);
        tokio::time::sleep(Duration::from_secs(args.baseline_secs)).await;
        let (_, _, after) = after.finish().await?;
        let (p_with, p_without) = (percentile(&during, 0.99), percentile(&without, 0.99));
        let p_after = percentile(&after, 0.99);
        println!(
            "| {from} → {to} | {:.1} s to switch, {:.1} s done | {:.0} rows/s | {:.2} | {} ms | {:.1} / {:.1} ms | {held_out} | {p_without:.1} → {p_with:.1} ms | {:.2}× | {p_after:.1} ms | {:.2}× | {:.2} ({:.0} %) |",
            switched_after.as_secs_f64(),
            total.as_secs_f64(),
            done.rate,
            done.rate / ingest_rate,
            done.freeze_ms.unwrap_or(0),
            percentile(&mover_lat, 0.99),
            mover_lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            p_with / p_without.max(1e-9),
            p_with / p_without.max(p_after).max(1e-9),
            duties.iter().sum::<f64>() / duties.len().max(1) as f64,
            slowing as f64 * 100.0 / duties.len().max(1) as f64,
        );
    }
    server.stop().await
}
