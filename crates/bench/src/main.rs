//! `bulkhead-bench`: the measurements recorded in BENCHMARKS.md, kept out of the shipped
//! `bulkhead` binary. Everything compared runs side by side in one process and one run, and
//! results are reported as ratios too, because this machine is noisy.
//!
//! - `bulkhead-bench engine`: batched creates through the SQLite engine vs the same rows
//!   inserted with raw rusqlite into an identical table (DDL copied from the engine's), same
//!   batch size.
//! - `bulkhead-bench http`: single-record create and get-by-id through HTTP on pool, bridge and
//!   silo, against an in-process server on a loopback port.
//! - `query`, `pocketbase`, `postgres`, `move`, `auth`, `rollout`, `onboard`, `limit`,
//!   `metering`, `secops`, `lifecycle`, `retention` and `planner`:
//!   see their modules.
//!
//! The in-process server is the `bulkhead` library's own start-up (`bulkhead::config`,
//! `bulkhead::serve::open`), served by `bulkhead_server::serve`.

mod auth;
mod flood;
mod hiccup;
mod lifecycle;
mod limit;
mod metering;
mod moves;
mod onboard;
mod planner;
mod pocketbase;
mod postgres;
mod query;
mod retention;
mod rollout;
mod secops;
mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use crate::pocketbase::in_process::{ADMIN_KEY, InProcess};
use bulkhead_api::{CreateKey, CreateTenant};
use bulkhead_client::Client;
use bulkhead_core::access::{DataAction, TenantRole};
use bulkhead_core::model::Isolation;
use bulkhead_core::record::{NewRecord, validate_full};
use bulkhead_core::schema::{CollectionSpec, plan_change};
use bulkhead_core::time::SystemClock;
use bulkhead_core::{CollectionName, RecordId, TenantId, TierName};
use bulkhead_engine::Engine;
use bulkhead_engine::conformance;
use bulkhead_engine_sqlite::{SqliteConfig, SqliteEngine};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

/// Measure Bulkhead's throughput and latency (see BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "bulkhead-bench", version)]
enum BenchKind {
    /// Batched creates: engine vs raw rusqlite.
    Engine {
        #[arg(long, default_value_t = 100_000)]
        records: usize,
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
    },
    /// Queries on a pool of many tenants vs a silo with one tenant's rows.
    Query(crate::query::QueryArgs),
    /// Single-record create and get-by-id over HTTP, per isolation model.
    Http {
        #[arg(long, default_value_t = 2_000)]
        requests: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// HTTP create and filtered list: Bulkhead vs PocketBase, both pooled multi-tenant.
    Pocketbase(crate::pocketbase::PocketbaseArgs),
    /// PostgreSQL engine: RLS vs explicit WHERE, COPY ingest vs psql, bridge vs pool.
    Postgres(crate::postgres::PostgresArgs),
    /// A live move of a large tenant, pool → silo and back, under a steady write load.
    Move(crate::moves::MoveArgs),
    /// Authentication + authorization per request (keys, JWTs, custom roles, tenant tokens)
    /// as a share of a get-by-id request.
    Auth(crate::auth::AuthArgs),
    /// Change feeds: event delivery latency with many watchers, and what watching costs writes.
    Watch(crate::watch::WatchArgs),
    /// A collection change rolled out to many SQLite silos, and a neighbour's reads meanwhile.
    Rollout(crate::rollout::RolloutArgs),
    /// Tenant creation per tier with the ready pool and without it; many silos in one run.
    Onboard(crate::onboard::OnboardArgs),
    /// Bulkhead vs a bare axum + rusqlite handler doing the same work, over HTTP.
    Limit(crate::limit::LimitArgs),
    /// What metering and metrics cost per request; a scrape with many tenants; storage
    /// sampling of many silos and pool tenants, and a neighbour's p99 meanwhile.
    Metering(crate::metering::MeteringArgs),
    /// The audit chain's cost per control-plane write, verifying a large log, and the time
    /// from an event to its webhook delivery.
    Secops(crate::secops::SecopsArgs),
    /// Tenant export and import against bulk ingest; an online backup and a neighbour's p99.
    Lifecycle(crate::lifecycle::LifecycleArgs),
    /// Signals aged out into the cold archive: archive rate, hot bytes before and after,
    /// cold bytes and the compression ratio.
    Retention(crate::retention::RetentionArgs),
    /// How long a placement plan over many tenants takes.
    Planner(crate::planner::PlannerArgs),
    /// How late a sleeping thread wakes with nothing else running: the machine's own floor
    /// under the p99 figures of the other benches.
    Hiccup(crate::hiccup::HiccupArgs),
}

async fn run(what: BenchKind) -> anyhow::Result<()> {
    match what {
        BenchKind::Engine { records, batch } => engine_bench(records, batch.max(1)).await,
        BenchKind::Query(args) => crate::query::run(args).await,
        BenchKind::Http {
            requests,
            concurrency,
        } => http_bench(requests, concurrency.max(1)).await,
        BenchKind::Pocketbase(args) => crate::pocketbase::run(args).await,
        BenchKind::Postgres(args) => crate::postgres::run(args).await,
        BenchKind::Move(args) => crate::moves::run(args).await,
        BenchKind::Auth(args) => crate::auth::run(args).await,
        BenchKind::Watch(args) => crate::watch::run(args).await,
        BenchKind::Rollout(args) => crate::rollout::run(args).await,
        BenchKind::Onboard(args) => crate::onboard::run(args).await,
        BenchKind::Limit(args) => crate::limit::run(args).await,
        BenchKind::Metering(args) => crate::metering::run(args).await,
        BenchKind::Secops(args) => crate::secops::run(args).await,
        BenchKind::Lifecycle(args) => crate::lifecycle::run(args).await,
        BenchKind::Retention(args) => crate::retention::run(args).await,
        BenchKind::Planner(args) => crate::planner::run(args).await,
        BenchKind::Hiccup(args) => crate::hiccup::run(args).await,
    }
}

fn main() {
    let what = BenchKind::parse();
    // The benchmarks' own plain HTTP clients: reqwest is built without a default TLS
    // provider (the client crate passes its own), so one is installed for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(err) = runtime.block_on(run(what)) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

pub(crate) fn bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>24} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

pub(crate) fn bench_collection() -> anyhow::Result<bulkhead_core::schema::Collection> {
    // `title` is a string, not text: the raw baseline inserts into the same table and has no
    // search index to keep, so neither may the engine.
    let spec: CollectionSpec = serde_json::from_value(json!({"fields": {
        "title": {"type": "string", "required": true},
        "n": {"type": "integer", "index": true},
        "score": {"type": "float"}
    }}))?;
    Ok(plan_change(&CollectionName::parse("bench")?, None, &spec)?.collection)
}

/// The collection the HTTP comparisons use: a title, an indexed number and an indexed status.
pub(crate) fn items_spec() -> anyhow::Result<bulkhead_core::schema::CollectionSpec> {
    Ok(serde_json::from_value(json!({"fields": {
        "title": {"type": "string", "required": true},
        "n": {"type": "integer", "index": true},
        "status": {"type": "string", "index": true}
    }}))?)
}

/// Creates a tenant on `tier` and returns a member key of it.
pub(crate) async fn member_key(admin: &Client, tenant: &str, tier: &str) -> anyhow::Result<String> {
    let id = TenantId::parse(tenant)?;
    admin
        .create_tenant(&CreateTenant {
            id: id.clone(),
            name: tenant.into(),
            tier: TierName::parse(tier)?,
            labels: Default::default(),
        })
        .await?;
    let key = admin
        .create_key(
            &id,
            &CreateKey {
                name: "bench".into(),
                role: TenantRole::Member,
                expires_in: None,
            },
        )
        .await?;
    Ok(key.key)
}

/// Registers a throwaway PostgreSQL server as domain `pg` (silos allowed) with one tier on it
/// per `(name, isolation)`.
pub(crate) async fn postgres_domain(
    admin: &Client,
    tiers: &[(&str, Isolation)],
) -> anyhow::Result<bulkhead_pg_testkit::PgServer> {
    use bulkhead_core::model::{DomainSpec, TierSpec};
    let pg = bulkhead_pg_testkit::PgServer::start()?;
    let domain = bulkhead_core::DomainName::parse("pg")?;
    let spec = DomainSpec {
        engine: "postgres".into(),
        url: Some(bulkhead_core::ConnectionUrl::new(pg.url("postgres"))),
        silos: true,
        ..DomainSpec::sqlite()
    };
    admin.put_domain(&domain, &spec).await?;
    for (name, isolation) in tiers {
        let tier = TierSpec {
            domains: vec![domain.clone()],
            ..TierSpec::new(*isolation)
        };
        admin.put_tier(&TierName::parse(name)?, &tier).await?;
    }
    Ok(pg)
}

pub(crate) fn row(i: usize) -> serde_json::Value {
    json!({"id": format!("r{i:09}"), "title": format!("record number {i} with some text"), "n": i as i64 % 1000, "score": i as f64 * 0.5})
}

async fn engine_bench(records: usize, batch: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = SqliteEngine::open(
        SqliteConfig::new(dir.path().join("engine")),
        Arc::new(SystemClock),
    )?;
    let collection = bench_collection()?;
    println!("batched creates: {records} records, {batch} per transaction\n");
    println!(
        "{:<24} {:>12} {:>14} {:>10}",
        "path", "seconds", "records/s", "vs raw"
    );

    let raw_rate = raw_rusqlite(dir.path(), &engine, &collection, records, batch).await?;
    println!(
        "{:<24} {:>12.3} {:>14.0} {:>10}",
        "raw rusqlite",
        records as f64 / raw_rate,
        raw_rate,
        "1.00"
    );
    for model in [Isolation::Pool, Isolation::Silo] {
        let tenant = TenantId::parse(&format!("bench-{model}"))?;
        engine
            .provision(
                &conformance::target(&tenant, model),
                std::slice::from_ref(&collection),
            )
            .await?;
        let scope = conformance::scope(&tenant, model, DataAction::Write);
        // Rows are validated before the clock starts: this measures the engine, as the raw
        // path measures rusqlite. (JSON validation is part of the HTTP figures.)
        let mut batches = Vec::new();
        for chunk_start in (0..records).step_by(batch) {
            let mut rows = Vec::with_capacity(batch);
            for i in chunk_start..(chunk_start + batch).min(records) {
                let (id, fields, _) = validate_full(&collection, &row(i), None)?;
                rows.push(NewRecord {
                    id: id.unwrap_or_else(RecordId::generate),
                    fields,
                });
            }
            batches.push(rows);
        }
        let progress = bar(records, &format!("engine {model}"));
        let started = Instant::now();
        for rows in batches {
            let n = rows.len() as u64;
            engine.insert(&scope, &collection, rows).await?;
            progress.inc(n);
        }
        let elapsed = started.elapsed().as_secs_f64();
        progress.finish_and_clear();
        let rate = records as f64 / elapsed;
        println!(
            "{:<24} {:>12.3} {:>14.0} {:>10.2}",
            format!("engine ({model})"),
            elapsed,
            rate,
            rate / raw_rate
        );
    }
    engine.shutdown().await;
    let rate = http_bulk(records).await?;
    println!(
        "{:<24} {:>12.3} {:>14.0} {:>10.2}",
        "HTTP bulk NDJSON (pool)",
        records as f64 / rate,
        rate,
        rate / raw_rate
    );
    Ok(())
}

/// The same rows through `POST /records:bulk` on an in-process server, 5,000 lines per
/// request, two requests in flight: JSON parsing, validation and HTTP included.
async fn http_bulk(records: usize) -> anyhow::Result<f64> {
    let server = InProcess::start().await?;
    let url = server.url.clone();
    let admin = Client::new(&url, ADMIN_KEY)?;
    let collection = CollectionName::parse("bench")?;
    let spec = bench_collection()?;
    admin
        .put_collection(
            &collection,
            &CollectionSpec {
                fields: spec.fields.clone(),
            },
        )
        .await?;
    let client = Client::new(&url, member_key(&admin, "bench-bulk", "free").await?)?;
    let bodies: Vec<Vec<u8>> = (0..records)
        .step_by(5_000)
        .map(|start| {
            let mut body = Vec::new();
            for i in start..(start + 5_000).min(records) {
                body.extend_from_slice(row(i).to_string().as_bytes());
                body.push(b'\n');
            }
            body
        })
        .collect();
    let progress = bar(records, "HTTP bulk");
    let started = Instant::now();
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (queue, client, collection, progress) = (
            Arc::clone(&queue),
            client.clone(),
            collection.clone(),
            progress.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let report = client.bulk(&collection, body, true).await?;
                anyhow::ensure!(
                    report.failed == 0,
                    "bulk lines failed: {:?}",
                    report.results.first()
                );
                progress.inc(report.created);
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let rate = records as f64 / started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    server.stop().await?;
    Ok(rate)
}

/// Inserts the same rows with plain rusqlite into a table created with the engine's own DDL.
async fn raw_rusqlite(
    dir: &std::path::Path,
    engine: &SqliteEngine,
    collection: &bulkhead_core::schema::Collection,
    records: usize,
    batch: usize,
) -> anyhow::Result<f64> {
    let tenant = TenantId::parse("bench-ddl")?;
    engine
        .provision(
            &conformance::target(&tenant, Isolation::Pool),
            std::slice::from_ref(collection),
        )
        .await?;
    let pool_file = dir.join("engine").join("pool.db");
    let ddl: Vec<String> = {
        let conn = rusqlite::Connection::open(&pool_file)?;
        let mut stmt = conn.prepare(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND tbl_name = 'c_bench'",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let raw_path = dir.join("raw.db");
    tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        let mut conn = rusqlite::Connection::open(&raw_path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        for statement in &ddl {
            conn.execute_batch(statement)?;
        }
        let progress = bar(records, "raw rusqlite");
        let started = Instant::now();
        for chunk_start in (0..records).step_by(batch) {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO c_bench (tenant_id, id, created_at, updated_at, version, f_n, f_score, f_title) VALUES (?1, ?2, ?3, ?3, 1, ?4, ?5, ?6)",
                )?;
                for i in chunk_start..(chunk_start + batch).min(records) {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as i64;
                    stmt.execute(rusqlite::params![
                        "bench-raw",
                        format!("r{i:09}"),
                        now,
                        i as i64 % 1000,
                        i as f64 * 0.5,
                        format!("record number {i} with some text")
                    ])?;
                }
            }
            tx.commit()?;
            progress.inc(batch.min(records - chunk_start) as u64);
        }
        progress.finish_and_clear();
        Ok(records as f64 / started.elapsed().as_secs_f64())
    })
    .await
    .context("raw rusqlite task")?
}

/// The `items` collection of `limit` and `metering`.
pub(crate) fn limit_items() -> anyhow::Result<CollectionName> {
    Ok(CollectionName::parse("items")?)
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

pub(crate) async fn timed<F, Fut>(
    total: usize,
    concurrency: usize,
    what: &str,
    op: F,
) -> anyhow::Result<(f64, Vec<Duration>)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let progress = bar(total, what);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (op, next, progress) = (Arc::clone(&op), Arc::clone(&next), progress.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let t = Instant::now();
                op(i).await?;
                latencies.push(t.elapsed());
                progress.inc(1);
            }
        }));
    }
    let mut all = Vec::with_capacity(total);
    for worker in workers {
        all.extend(worker.await??);
    }
    progress.finish_and_clear();
    let rate = total as f64 / started.elapsed().as_secs_f64();
    all.sort();
    Ok((rate, all))
}

async fn http_bench(requests: usize, concurrency: usize) -> anyhow::Result<()> {
    let server = InProcess::start().await?;
    let url = server.url.clone();
    let admin = Client::new(&url, ADMIN_KEY)?;
    admin
        .put_collection(
            &CollectionName::parse("bench")?,
            &CollectionSpec {
                fields: bench_collection()?.fields,
            },
        )
        .await?;
    println!(
        "HTTP single-record operations: {requests} requests per row, {concurrency} concurrent clients\n"
    );
    println!(
        "{:<8} {:<8} {:>10} {:>10} {:>10}",
        "model", "op", "req/s", "p50 ms", "p99 ms"
    );
    for (tier, model) in [
        ("free", "pool"),
        ("standard", "bridge"),
        ("premium", "silo"),
    ] {
        let key = member_key(&admin, &format!("bench-{model}"), tier).await?;
        let client = Client::new(&url, key)?;
        let collection = CollectionName::parse("bench")?;
        let (c, coll) = (client.clone(), collection.clone());
        let (rate, lat) = timed(
            requests,
            concurrency,
            &format!("{model} create"),
            move |i| {
                let (c, coll) = (c.clone(), coll.clone());
                async move {
                    c.create_record(&coll, &row(i)).await?;
                    Ok(())
                }
            },
        )
        .await?;
        println!(
            "{:<8} {:<8} {:>10.0} {:>10.2} {:>10.2}",
            model,
            "create",
            rate,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        let (c, coll) = (client.clone(), collection.clone());
        let (rate, lat) = timed(requests, concurrency, &format!("{model} get"), move |i| {
            let (c, coll) = (c.clone(), coll.clone());
            async move {
                c.get_record(&coll, &RecordId::parse(&format!("r{i:09}"))?)
                    .await?;
                Ok(())
            }
        })
        .await?;
        println!(
            "{:<8} {:<8} {:>10.0} {:>10.2} {:>10.2}",
            model,
            "get",
            rate,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
    }
    server.stop().await?;
    Ok(())
}
