//! `bulkhead-bench query`: the cost of sharing. A pool holding many tenants against a silo
//! holding only one tenant's rows, the same rows in both, the same queries interleaved one by
//! one so both see the same machine: a filtered, sorted page on indexed fields, a full-text
//! search and an aggregation. Reported as p50/p99 and pool/silo ratios.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_core::access::DataAction;
use bulkhead_core::model::Isolation;
use bulkhead_core::query::aggregate::{self, AggregateRequest};
use bulkhead_core::query::search::parse_search;
use bulkhead_core::query::sort::parse_sort;
use bulkhead_core::query::{self};
use bulkhead_core::record::{NewRecord, validate_full};
use bulkhead_core::schema::{Collection, CollectionSpec, plan_change};
use bulkhead_core::time::SystemClock;
use bulkhead_core::{CollectionName, RecordId, TenantId};
use bulkhead_engine::{AggregateQuery, Engine, ListQuery, QueryBudget, conformance};
use bulkhead_engine_sqlite::{SqliteConfig, SqliteEngine};
use serde_json::json;

use crate::{bar, percentile};

#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// Tenants in the pool.
    #[arg(long, default_value_t = 10_000)]
    tenants: usize,
    /// Records per tenant.
    #[arg(long, default_value_t = 100)]
    rows: usize,
    /// Queries per measurement (each run on pool and silo).
    #[arg(long, default_value_t = 2_000)]
    queries: usize,
    /// Records per write transaction while filling the pool (tenants take turns); fewer
    /// per transaction leave the shared full-text index in more segments.
    #[arg(long)]
    batch: Option<usize>,
    /// After measuring, run the search upkeep on the pool (`SqliteEngine::upkeep_search`)
    /// this many times, each beside paced writers to pool tenants and between two spells of
    /// the same writers without it, then measure the queries again.
    #[arg(long, default_value_t = 0)]
    upkeep_rounds: usize,
    /// Writers beside the upkeep, each writing one record every `--writer-interval-ms`.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    #[arg(long, default_value_t = 5)]
    writer_interval_ms: u64,
    /// Index pages each upkeep step merges, and the share of time the upkeep holds the
    /// writer (`SearchUpkeep::step_pages`, `::duty`).
    #[arg(long, default_value_t = bulkhead_engine_sqlite::SearchUpkeep::default().step_pages)]
    step_pages: u32,
    #[arg(long, default_value_t = bulkhead_engine_sqlite::SearchUpkeep::default().duty)]
    duty: f64,
    /// Seconds of each spell of writers without the upkeep.
    #[arg(long, default_value_t = 4)]
    spell_secs: u64,
}

fn collection() -> anyhow::Result<Collection> {
    let spec: CollectionSpec = serde_json::from_value(json!({"fields": {
        "title": {"type": "text", "required": true},
        "status": {"type": "string", "index": true},
        "n": {"type": "integer", "index": true},
        "at": {"type": "timestamp", "index": true}
    }}))?;
    Ok(plan_change(&CollectionName::parse("tickets")?, None, &spec)?.collection)
}

const ADJECTIVES: [&str; 8] = [
    "quick", "lazy", "brown", "silent", "rapid", "broken", "urgent", "minor",
];
const NOUNS: [&str; 8] = [
    "printer", "login", "invoice", "server", "report", "export", "screen", "payment",
];

fn record(c: &Collection, tenant: usize, i: usize) -> anyhow::Result<NewRecord> {
    let mix = tenant * 31 + i * 7;
    let status = ["open", "closed", "pending"][i % 3];
    let body = json!({
        "id": format!("t{i:06}"),
        "title": format!("{} {} issue {} for customer {}", ADJECTIVES[mix % 8], NOUNS[(mix / 8) % 8], i, tenant),
        "status": status,
        "n": (mix % 1000) as i64,
        "at": bulkhead_core::time::Timestamp::from_micros(1_767_225_600_000_000 + (i as i64) * 60_000_000).to_rfc3339(),
    });
    let (id, fields, _) = validate_full(c, &body, None)?;
    Ok(NewRecord {
        id: id.unwrap_or_else(RecordId::generate),
        fields,
    })
}

struct Timings {
    pool: Vec<Duration>,
    silo: Vec<Duration>,
}

impl Timings {
    fn report(&mut self, what: &str) {
        self.pool.sort();
        self.silo.sort();
        let (p50, s50) = (percentile(&self.pool, 0.5), percentile(&self.silo, 0.5));
        let (p99, s99) = (percentile(&self.pool, 0.99), percentile(&self.silo, 0.99));
        println!(
            "{what:<34} {p50:>9.3} {s50:>9.3} {:>7.2} {p99:>9.3} {s99:>9.3} {:>7.2}",
            p50 / s50,
            p99 / s99
        );
    }
}

pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // The upkeep runs only where this bench calls it, not on its own schedule.
    let mut config = SqliteConfig::new(dir.path());
    config.search_upkeep = Some(bulkhead_engine_sqlite::SearchUpkeep {
        // A tick far longer than the run: the schedule never starts a round itself.
        tick: Duration::from_secs(365 * 24 * 3600),
        step_pages: args.step_pages,
        duty: args.duty,
        ..Default::default()
    });
    let engine = Arc::new(SqliteEngine::open(config, Arc::new(SystemClock))?);
    let c = collection()?;
    let tenants: Vec<TenantId> = (0..args.tenants)
        .map(|t| TenantId::parse(&format!("pool{t:05}")))
        .collect::<Result<_, _>>()?;
    engine
        .provision(
            &conformance::target(&tenants[0], Isolation::Pool),
            std::slice::from_ref(&c),
        )
        .await?;
    let progress = bar(args.tenants, "filling the pool");
    let started = Instant::now();
    let batch = args.batch.unwrap_or(args.rows).max(1);
    for start in (0..args.rows).step_by(batch) {
        for (t, tenant) in tenants.iter().enumerate() {
            let scope = conformance::scope(tenant, Isolation::Pool, DataAction::Write);
            let rows = (start..(start + batch).min(args.rows))
                .map(|i| record(&c, t, i))
                .collect::<anyhow::Result<Vec<_>>>()?;
            engine.insert(&scope, &c, rows).await?;
            if start + batch >= args.rows {
                progress.inc(1);
            }
        }
    }
    progress.finish_and_clear();
    let fill = started.elapsed();
    // The measured tenant sits in the middle of the pool; its twin silo holds the same rows.
    let middle = args.tenants / 2;
    let twin = TenantId::parse("silo-twin")?;
    engine
        .provision(
            &conformance::target(&twin, Isolation::Silo),
            std::slice::from_ref(&c),
        )
        .await?;
    let rows = (0..args.rows)
        .map(|i| record(&c, middle, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    engine
        .insert(
            &conformance::scope(&twin, Isolation::Silo, DataAction::Write),
            &c,
            rows,
        )
        .await?;
    let pool_read = conformance::scope(&tenants[middle], Isolation::Pool, DataAction::Read);
    let silo_read = conformance::scope(&twin, Isolation::Silo, DataAction::Read);
    println!(
        "pool: {} tenants x {} records ({} rows, filled in {:.1} s); silo: 1 tenant x {} records; {} queries each, interleaved\n",
        args.tenants,
        args.rows,
        args.tenants * args.rows,
        fill.as_secs_f64(),
        args.rows,
        args.queries
    );
    println!(
        "{:<34} {:>9} {:>9} {:>7} {:>9} {:>9} {:>7}",
        "query (ms)", "pool p50", "silo p50", "ratio", "pool p99", "silo p99", "ratio"
    );

    let page = ListQuery {
        filter: query::filter("status = \"open\"", &c)?,
        sort: parse_sort("-n", &c)?,
        limit: 20,
        ..Default::default()
    };
    let search = ListQuery {
        search: Some(parse_search("quick printer")?),
        limit: 20,
        ..Default::default()
    };
    let search_filtered = ListQuery {
        search: Some(parse_search("urgent")?),
        filter: query::filter("status != \"closed\"", &c)?,
        limit: 20,
        ..Default::default()
    };
    let request: AggregateRequest = serde_json::from_value(json!({
        "group_by": ["status"], "bucket": {"field": "at", "interval": "hour"},
        "metrics": [{"op": "count"}, {"op": "avg", "field": "n"}]
    }))?;
    let aggregation = AggregateQuery {
        plan: aggregate::check(&request, None, &c)?,
        after: None,
        limit: 1000,
        budget: QueryBudget::default(),
    };
    for pass in 0..2 {
        if pass == 1 {
            if args.upkeep_rounds == 0 {
                break;
            }
            upkeep_beside_writers(&engine, &c, &tenants, &args).await?;
            println!("\nafter the upkeep:");
        }
        for (what, list) in [
            ("filtered, sorted page (indexed)", Some(&page)),
            ("full-text search, 2 words", Some(&search)),
            ("full-text search + filter", Some(&search_filtered)),
            ("aggregation: status x hour", None),
        ] {
            let mut timings = Timings {
                pool: Vec::with_capacity(args.queries),
                silo: Vec::with_capacity(args.queries),
            };
            let progress = bar(args.queries, what);
            let mut sizes = (0, 0);
            for _ in 0..args.queries {
                for (scope, out, size) in [
                    (&pool_read, &mut timings.pool, &mut sizes.0),
                    (&silo_read, &mut timings.silo, &mut sizes.1),
                ] {
                    let t = Instant::now();
                    *size = match list {
                        Some(q) => engine.list(scope, &c, q).await?.len(),
                        None => engine.aggregate(scope, &c, &aggregation).await?.len(),
                    };
                    out.push(t.elapsed());
                }
                progress.inc(1);
            }
            progress.finish_and_clear();
            anyhow::ensure!(
                sizes.0 == sizes.1 && sizes.0 > 0,
                "{what}: pool returned {} rows, silo {}",
                sizes.0,
                sizes.1
            );
            timings.report(what);
        }
    }
    engine.shutdown().await;
    Ok(())
}

/// Writes one record at a time to random pool tenants, each writer every `interval`, until
/// `until` says stop; the latency of each write.
async fn writers(
    engine: &Arc<SqliteEngine>,
    c: &Collection,
    tenants: &[TenantId],
    args: &QueryArgs,
    until: impl Fn() -> bool + Clone + Send + 'static,
    salt: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let (engine, c, until) = (Arc::clone(engine), c.clone(), until.clone());
        let tenants = tenants.to_vec();
        let interval = Duration::from_millis(args.writer_interval_ms.max(1));
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut i = 0usize;
            while !until() {
                tick.tick().await;
                // Never the measured (middle) tenant, whose twin silo gets no writes.
                let mut t = (w * 7919 + i * 104_729 + salt) % tenants.len();
                if t == tenants.len() / 2 {
                    t = (t + 1) % tenants.len();
                }
                let scope = conformance::scope(&tenants[t], Isolation::Pool, DataAction::Write);
                let mut row = record(&c, t, i)?;
                row.id = RecordId::generate();
                let started = Instant::now();
                engine.insert(&scope, &c, vec![row]).await?;
                out.push(started.elapsed());
                i += 1;
            }
            anyhow::Ok(out)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort();
    Ok(all)
}

/// Rounds of: writers alone for a spell, then the same writers beside one upkeep round on
/// the pool; then writers alone once more. Prints each spell's p50/p99 and what the upkeep
/// did.
async fn upkeep_beside_writers(
    engine: &Arc<SqliteEngine>,
    c: &Collection,
    tenants: &[TenantId],
    args: &QueryArgs,
) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    println!(
        "\nwriters: {} x one record every {} ms to random pool tenants (write latency, ms)",
        args.writers, args.writer_interval_ms
    );
    println!(
        "{:<22} {:>7} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8} {:>9}",
        "spell", "writes", "p50", "p99", "segments", "after", "steps", "secs", "step max"
    );
    let spell = Duration::from_secs(args.spell_secs);
    let (mut alone, mut beside) = (Vec::new(), Vec::new());
    for round in 0..=args.upkeep_rounds {
        let end = Instant::now() + spell;
        let quiet = writers(
            engine,
            c,
            tenants,
            args,
            move || Instant::now() >= end,
            round,
        )
        .await?;
        println!(
            "{:<22} {:>7} {:>8.3} {:>8.3}",
            "without upkeep",
            quiet.len(),
            percentile(&quiet, 0.5),
            percentile(&quiet, 0.99)
        );
        alone.push(percentile(&quiet, 0.99));
        if round == args.upkeep_rounds {
            break;
        }
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let writing = {
            let (engine, c, tenants) = (Arc::clone(engine), c.clone(), tenants.to_vec());
            let args = args.clone();
            tokio::spawn(async move {
                writers(
                    &engine,
                    &c,
                    &tenants,
                    &args,
                    move || flag.load(Ordering::Acquire),
                    round + 1000,
                )
                .await
            })
        };
        let started = Instant::now();
        let report = engine.upkeep_search().await;
        done.store(true, Ordering::Release);
        let during = writing.await??;
        let report = report?;
        println!(
            "{:<22} {:>7} {:>8.3} {:>8.3} {:>9} {:>9} {:>8} {:>8.1} {:>9.1}",
            "beside the upkeep",
            during.len(),
            percentile(&during, 0.5),
            percentile(&during, 0.99),
            report.segments_before,
            report.segments_after,
            report.steps,
            started.elapsed().as_secs_f64(),
            report.longest.as_secs_f64() * 1e3
        );
        beside.push(percentile(&during, 0.99));
    }
    let started = Instant::now();
    let last = engine.upkeep_search().await?;
    println!(
        "{:<22} {:>7} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8.1} {:>9.1}",
        "upkeep, no writers",
        0,
        "-",
        "-",
        last.segments_before,
        last.segments_after,
        last.steps,
        started.elapsed().as_secs_f64(),
        last.longest.as_secs_f64() * 1e3
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "writers' p99 beside the upkeep / without it: {:.2}x (means of {} and {} spells)",
        mean(&beside) / mean(&alone),
        beside.len(),
        alone.len()
    );
    Ok(())
}
