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

#[derive(Debug, clap::Args)]
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
    let engine = SqliteEngine::open(SqliteConfig::new(dir.path()), Arc::new(SystemClock))?;
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
    for (t, tenant) in tenants.iter().enumerate() {
        let scope = conformance::scope(tenant, Isolation::Pool, DataAction::Write);
        let rows = (0..args.rows)
            .map(|i| record(&c, t, i))
            .collect::<anyhow::Result<Vec<_>>>()?;
        engine.insert(&scope, &c, rows).await?;
        progress.inc(1);
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
    engine.shutdown().await;
    Ok(())
}
