//! `bulkhead-bench postgres`: the PostgreSQL engine's figures, each compared side by side in
//! one run against the same server.
//!
//! - `rls`: a pooled query through row-level security (data role, tenant set) against the same
//!   query with only its explicit `WHERE tenant_id` (a superuser, to whom no policy applies),
//!   interleaved one by one, same transaction shape.
//! - `copy`: engine ingest (binary COPY into a staging table, then one INSERT under the
//!   policy) against `psql \copy` of the same rows into the same table.
//! - `bridge`: many bridge tenants (one schema each) against a pool holding the same tenants,
//!   an indexed page for a hot set of tenants, through the engine; server memory afterwards.
//!
//! - `http`: create, get by id and a filtered list over HTTP against an in-process server,
//!   for a pooled tenant on the local SQLite domain and one on a PostgreSQL domain.
//!
//! - `flood`: one pooled tenant runs many concurrent expensive queries on a PostgreSQL domain
//!   while a neighbour on the same domain reads one record at a time; the neighbour's p95
//!   against its p95 with nobody flooding, for several shares of the domain's pool
//!   (`max_domain_connections`), in alternating rounds.
//!
//! Without `--pg-url` a throwaway server is started (PostgreSQL binaries must be installed).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bulkhead_core::access::DataAction;
use bulkhead_core::model::Isolation;
use bulkhead_core::query::{self, sort::parse_sort};
use bulkhead_core::record::{NewRecord, validate_full};
use bulkhead_core::schema::{Collection, CollectionSpec, plan_change};
use bulkhead_core::time::SystemClock;
use bulkhead_core::{CollectionName, RecordId, TenantId};
use bulkhead_engine::{Engine, ListQuery, conformance};
use bulkhead_engine_postgres::{PgConfig, PgEngine};
use serde_json::json;
use tokio_postgres::NoTls;

use crate::{bar, percentile};

#[derive(Debug, clap::Args)]
pub struct PostgresArgs {
    /// Superuser URL of a server to use (default: start a throwaway one).
    #[arg(long)]
    pg_url: Option<String>,
    /// Which measurement: rls, copy, bridge, http, flood or all.
    #[arg(long, default_value = "all")]
    only: String,
    /// rls: tenants in the pool and rows per tenant; queries per side.
    #[arg(long, default_value_t = 2_000)]
    rls_tenants: usize,
    #[arg(long, default_value_t = 100)]
    rls_rows: usize,
    #[arg(long, default_value_t = 4_000)]
    queries: usize,
    /// copy: rows per round (three rounds each side).
    #[arg(long, default_value_t = 200_000)]
    copy_rows: usize,
    /// copy: records per engine insert call.
    #[arg(long, default_value_t = 10_000)]
    copy_batch: usize,
    /// bridge: tenants (each one schema), rows per tenant, hot-set size.
    #[arg(long, default_value_t = 10_000)]
    bridge_tenants: usize,
    #[arg(long, default_value_t = 20)]
    bridge_rows: usize,
    #[arg(long, default_value_t = 100)]
    hot: usize,
    /// http: requests per operation and side, concurrent clients.
    #[arg(long, default_value_t = 5_000)]
    requests: usize,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[command(flatten)]
    flood: crate::flood::FloodArgs,
}

fn collection(name: &str, fields: serde_json::Value) -> anyhow::Result<Collection> {
    let spec: CollectionSpec = serde_json::from_value(json!({ "fields": fields }))?;
    Ok(plan_change(&CollectionName::parse(name)?, None, &spec)?.collection)
}

fn tickets() -> anyhow::Result<Collection> {
    collection(
        "tickets",
        json!({
            "status": {"type": "string", "index": true},
            "n": {"type": "integer", "index": true},
            "title": {"type": "string"}
        }),
    )
}

fn ticket(c: &Collection, tenant: usize, i: usize) -> anyhow::Result<NewRecord> {
    let status = ["open", "closed", "pending"][i % 3];
    let body = json!({
        "status": status,
        "n": ((tenant * 31 + i * 7) % 1000) as i64,
        "title": format!("ticket {i} of customer {tenant}"),
    });
    let (_, fields, _) = validate_full(c, &body, None)?;
    Ok(NewRecord {
        id: RecordId::parse(&format!("t{i:06}"))?,
        fields,
    })
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn with_user(url: &str, user: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url.split_once("://").context("url without scheme")?;
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    Ok(format!("{scheme}://{user}@{host}"))
}

fn ratio_line(what: &str, a: &mut [Duration], b: &mut [Duration]) {
    a.sort();
    b.sort();
    let (a50, b50) = (percentile(a, 0.5), percentile(b, 0.5));
    let (a99, b99) = (percentile(a, 0.99), percentile(b, 0.99));
    println!(
        "{what:<40} {a50:>8.3} {b50:>8.3} {:>6.2} {a99:>8.3} {b99:>8.3} {:>6.2}",
        a50 / b50,
        a99 / b99
    );
}

pub async fn run(args: PostgresArgs) -> anyhow::Result<()> {
    let server = match &args.pg_url {
        Some(_) => None,
        None => Some(bulkhead_pg_testkit::PgServer::start().context(
            "starting a throwaway PostgreSQL (install the server binaries, or pass --pg-url)",
        )?),
    };
    let url = match (&args.pg_url, &server) {
        (Some(url), _) => url.clone(),
        (None, Some(s)) => s.url("postgres"),
        (None, None) => anyhow::bail!("no server"),
    };
    let engine = PgEngine::connect(PgConfig::new(url.clone()), Arc::new(SystemClock)).await?;
    let all = args.only == "all";
    if all || args.only == "rls" {
        rls(&args, &engine, &url).await?;
    }
    if all || args.only == "copy" {
        copy(&args, &engine, &url, server.as_ref()).await?;
    }
    if all || args.only == "http" {
        http(&args, &url).await?;
    }
    if all || args.only == "bridge" {
        bridge(&args, &engine, &url).await?;
    }
    if all || args.only == "flood" {
        crate::flood::run(&args.flood, &url).await?;
    }
    engine.shutdown().await;
    Ok(())
}

async fn fill_pool(
    engine: &PgEngine,
    c: &Collection,
    prefix: &str,
    tenants: usize,
    rows: usize,
) -> anyhow::Result<Vec<TenantId>> {
    let ids: Vec<TenantId> = (0..tenants)
        .map(|t| TenantId::parse(&format!("{prefix}{t:05}")))
        .collect::<Result<_, _>>()?;
    engine
        .provision(
            &conformance::target(&ids[0], Isolation::Pool),
            std::slice::from_ref(c),
        )
        .await?;
    let progress = bar(tenants, "filling the pool");
    for (t, tenant) in ids.iter().enumerate() {
        let scope = conformance::scope(tenant, Isolation::Pool, DataAction::Write);
        let records = (0..rows)
            .map(|i| ticket(c, t, i))
            .collect::<anyhow::Result<Vec<_>>>()?;
        engine.insert(&scope, c, records).await?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok(ids)
}

async fn rls(args: &PostgresArgs, engine: &PgEngine, url: &str) -> anyhow::Result<()> {
    let c = tickets()?;
    let ids = fill_pool(engine, &c, "rls", args.rls_tenants, args.rls_rows).await?;
    let admin = connect(url).await?;
    admin.batch_execute("ANALYZE bk_pool.c_tickets").await?;
    let mut data = connect(&with_user(url, engine.data_role())?).await?;
    let mut plain = connect(url).await?;
    let queries = [
        (
            "indexed page (status, -n), 20 rows",
            "SELECT id, created_at, updated_at, version, f_n, f_status, f_title FROM bk_pool.c_tickets r \
             WHERE r.tenant_id = $1 AND r.f_status = 'open' ORDER BY r.f_n DESC NULLS LAST, r.id DESC LIMIT 20",
        ),
        (
            "get by id",
            "SELECT id, created_at, updated_at, version, f_n, f_status, f_title FROM bk_pool.c_tickets r \
             WHERE r.tenant_id = $1 AND r.id = 't000042'",
        ),
    ];
    println!(
        "\nRLS: pool of {} tenants x {} rows; each query {} times per side, interleaved (ms)",
        args.rls_tenants, args.rls_rows, args.queries
    );
    println!(
        "{:<40} {:>8} {:>8} {:>6} {:>8} {:>8} {:>6}",
        "query", "rls p50", "where", "ratio", "rls p99", "where", "ratio"
    );
    for (what, sql) in queries {
        let (mut through, mut explicit) = (Vec::new(), Vec::new());
        let s_data = data.prepare(sql).await?;
        let s_plain = plain.prepare(sql).await?;
        for i in 0..args.queries {
            let tenant = ids[(i * 7919) % ids.len()].as_str().to_owned();
            for (client, stmt, out) in [
                (&mut data, &s_data, &mut through),
                (&mut plain, &s_plain, &mut explicit),
            ] {
                let t = Instant::now();
                let tx = client.transaction().await?;
                tx.execute(
                    "SELECT set_config('bulkhead.tenant_id', $1, true)",
                    &[&tenant],
                )
                .await?;
                let rows = tx.query(stmt, &[&tenant]).await?;
                tx.commit().await?;
                out.push(t.elapsed());
                anyhow::ensure!(!rows.is_empty(), "{what}: no rows");
            }
        }
        ratio_line(what, &mut through, &mut explicit);
    }
    Ok(())
}

async fn copy(
    args: &PostgresArgs,
    engine: &PgEngine,
    url: &str,
    server: Option<&bulkhead_pg_testkit::PgServer>,
) -> anyhow::Result<()> {
    let Some(server) = server else {
        println!("\ncopy: skipped (needs the throwaway server's psql; run without --pg-url)");
        return Ok(());
    };
    let c = collection(
        "ingest",
        json!({
            "sku": {"type": "string"}, "n": {"type": "integer"},
            "price": {"type": "float"}, "meta": {"type": "json"}
        }),
    )?;
    let first = TenantId::parse("ingest-engine-0")?;
    engine
        .provision(
            &conformance::target(&first, Isolation::Pool),
            std::slice::from_ref(&c),
        )
        .await?;
    let body = |i: usize| json!({"sku": format!("sku-{i}"), "n": i as i64, "price": i as f64 * 0.25, "meta": {"k": i % 7}});
    println!(
        "\nCOPY ingest: {} rows per round into the pooled table, 3 rounds each, alternating",
        args.copy_rows
    );
    let (mut engine_rates, mut psql_rates) = (Vec::new(), Vec::new());
    for round in 0..3 {
        // Engine: batches of `--copy-batch` records (binary COPY + INSERT under the policy).
        let tenant = TenantId::parse(&format!("ingest-engine-{round}"))?;
        let scope = conformance::scope(&tenant, Isolation::Pool, DataAction::Write);
        let mut records = Vec::with_capacity(args.copy_rows);
        for i in 0..args.copy_rows {
            let (_, fields, _) = validate_full(&c, &body(i), None)?;
            records.push(NewRecord {
                id: RecordId::parse(&format!("r{i:08}"))?,
                fields,
            });
        }
        let t = Instant::now();
        let mut rest = records;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(args.copy_batch));
            engine.insert(&scope, &c, rest).await?;
            rest = tail;
        }
        engine_rates.push(args.copy_rows as f64 / t.elapsed().as_secs_f64());
        // psql \copy of the same rows (CSV), as a superuser.
        let file = tempfile::NamedTempFile::new()?;
        {
            let mut out = std::io::BufWriter::new(file.as_file());
            for i in 0..args.copy_rows {
                let meta = body(i)["meta"].to_string().replace('"', "\"\"");
                writeln!(
                    out,
                    "ingest-psql-{round},r{i:08},0,0,1,sku-{i},{i},{},\"{meta}\"",
                    i as f64 * 0.25
                )?;
            }
        }
        let path = file.path().display().to_string();
        let t = Instant::now();
        server.psql(
            "postgres",
            &format!("\\copy bk_pool.c_ingest (tenant_id, id, created_at, updated_at, version, \"f_sku\", \"f_n\", \"f_price\", \"f_meta\") FROM '{path}' WITH (FORMAT csv)"),
        )?;
        psql_rates.push(args.copy_rows as f64 / t.elapsed().as_secs_f64());
    }
    let check = connect(url).await?;
    let n: i64 = check
        .query_one("SELECT count(*) FROM bk_pool.c_ingest", &[])
        .await?
        .get(0);
    anyhow::ensure!(n as usize == 6 * args.copy_rows, "ingested {n} rows");
    engine_rates.sort_by(f64::total_cmp);
    psql_rates.sort_by(f64::total_cmp);
    let (e, p) = (engine_rates[1], psql_rates[1]);
    println!("engine (binary COPY via staging): {e:>10.0} rows/s (median of 3)");
    println!("psql \\copy (CSV, superuser):     {p:>10.0} rows/s (median of 3)");
    println!("ratio engine / psql:              {:>10.2}", e / p);
    Ok(())
}

/// Resident memory of every process named `postgres`, in MiB.
fn server_memory() -> f64 {
    let mut kib = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let status = entry.path().join("status");
        let Ok(text) = std::fs::read_to_string(status) else {
            continue;
        };
        let name = text
            .lines()
            .next()
            .map(|l| l.trim_start_matches("Name:").trim());
        if name != Some("postgres") {
            continue;
        }
        if let Some(rss) = text.lines().find_map(|l| l.strip_prefix("VmRSS:")) {
            kib += rss
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
        }
    }
    kib as f64 / 1024.0
}

async fn bridge(args: &PostgresArgs, engine: &PgEngine, url: &str) -> anyhow::Result<()> {
    let c = tickets()?;
    let pool = fill_pool(engine, &c, "pool", args.bridge_tenants, args.bridge_rows).await?;
    let bridge: Vec<TenantId> = (0..args.bridge_tenants)
        .map(|t| TenantId::parse(&format!("bridge{t:05}")))
        .collect::<Result<_, _>>()?;
    let progress = bar(bridge.len(), "bridge tenants");
    let started = Instant::now();
    for (t, tenant) in bridge.iter().enumerate() {
        engine
            .provision(
                &conformance::target(tenant, Isolation::Bridge),
                std::slice::from_ref(&c),
            )
            .await?;
        let scope = conformance::scope(tenant, Isolation::Bridge, DataAction::Write);
        let records = (0..args.bridge_rows)
            .map(|i| ticket(&c, t, i))
            .collect::<anyhow::Result<Vec<_>>>()?;
        engine.insert(&scope, &c, records).await?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    let provisioning = started.elapsed();
    connect(url).await?.batch_execute("ANALYZE").await?;
    let page = ListQuery {
        filter: query::filter("status = \"open\"", &c)?,
        sort: parse_sort("-n", &c)?,
        limit: 20,
        ..Default::default()
    };
    let (mut b, mut p) = (Vec::new(), Vec::new());
    for i in 0..args.queries {
        let k = (i * 7919) % args.hot.min(args.bridge_tenants);
        for (tenant, isolation, out) in [
            (&bridge[k], Isolation::Bridge, &mut b),
            (&pool[k], Isolation::Pool, &mut p),
        ] {
            let scope = conformance::scope(tenant, isolation, DataAction::Read);
            let t = Instant::now();
            let hits = engine.list(&scope, &c, &page).await?;
            out.push(t.elapsed());
            anyhow::ensure!(!hits.is_empty(), "no rows");
        }
    }
    let schemas: i64 = connect(url)
        .await?
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't\\_%'",
            &[],
        )
        .await?
        .get(0);
    println!(
        "\nbridge: {} tenants (one schema each, {schemas} schemas; provisioned in {:.0} s) vs pool of {} tenants; hot set {}, {} queries per side through the engine (ms)",
        args.bridge_tenants,
        provisioning.as_secs_f64(),
        args.bridge_tenants,
        args.hot,
        args.queries
    );
    println!(
        "{:<40} {:>8} {:>8} {:>6} {:>8} {:>8} {:>6}",
        "query", "bridge", "pool", "ratio", "bridge99", "pool99", "ratio"
    );
    ratio_line("indexed page (status, -n), 20 rows", &mut b, &mut p);
    println!(
        "server memory (RSS of all postgres processes): {:.0} MiB",
        server_memory()
    );
    Ok(())
}

async fn http(args: &PostgresArgs, url: &str) -> anyhow::Result<()> {
    use crate::pocketbase::in_process::{ADMIN_KEY, InProcess};
    use crate::{bench_collection, row, timed};
    use bulkhead_client::{Client, ListRecords};
    use bulkhead_core::model::{DomainSpec, TierSpec};
    use bulkhead_core::{ConnectionUrl, DomainName, TierName};

    let server = InProcess::start().await?;
    let admin = Client::new(&server.url, ADMIN_KEY)?;
    let domain = DomainName::parse("pg")?;
    let spec = DomainSpec {
        engine: "postgres".into(),
        url: Some(ConnectionUrl::new(url)),
        ..DomainSpec::sqlite()
    };
    admin.put_domain(&domain, &spec).await?;
    let tier = TierSpec {
        domains: vec![domain],
        ..TierSpec::new(Isolation::Pool)
    };
    admin.put_tier(&TierName::parse("pg-free")?, &tier).await?;
    let collection = CollectionName::parse("bench")?;
    admin
        .put_collection(
            &collection,
            &CollectionSpec {
                fields: bench_collection()?.fields,
            },
        )
        .await?;
    let mut clients = Vec::new();
    for (tenant, tier) in [("http-sqlite", "free"), ("http-pg", "pg-free")] {
        let key = crate::member_key(&admin, tenant, tier).await?;
        clients.push((tenant, Client::new(&server.url, key)?));
    }
    println!(
        "\nHTTP, pooled tenant, {} requests per row, {} concurrent clients, same in-process server",
        args.requests, args.concurrency
    );
    println!(
        "{:<10} {:<14} {:>10} {:>8} {:>8}",
        "engine", "op", "req/s", "p50 ms", "p99 ms"
    );
    let mut rates = std::collections::BTreeMap::new();
    for op in ["create", "get", "filtered list"] {
        for (tenant, client) in &clients {
            let (c, coll) = (client.clone(), collection.clone());
            let n = args.requests;
            let (rate, lat) = timed(n, args.concurrency, &format!("{tenant} {op}"), move |i| {
                let (c, coll) = (c.clone(), coll.clone());
                async move {
                    match op {
                        "create" => drop(c.create_record(&coll, &row(i)).await?),
                        "get" => drop(
                            c.get_record(
                                &coll,
                                &RecordId::parse(&format!("r{:09}", (i * 7919) % n))?,
                            )
                            .await?,
                        ),
                        _ => {
                            let q = ListRecords {
                                filter: Some(format!("n = {}", i % 1000)),
                                sort: Some("-n".into()),
                                limit: Some(20),
                                ..Default::default()
                            };
                            drop(c.list_records(&coll, &q).await?);
                        }
                    }
                    Ok(())
                }
            })
            .await?;
            let engine = if *tenant == "http-pg" {
                "postgres"
            } else {
                "sqlite"
            };
            println!(
                "{engine:<10} {op:<14} {rate:>10.0} {:>8.2} {:>8.2}",
                percentile(&lat, 0.5),
                percentile(&lat, 0.99)
            );
            rates.insert((op, engine), rate);
        }
    }
    for op in ["create", "get", "filtered list"] {
        println!(
            "{op:<14} postgres / sqlite throughput: {:.2}",
            rates[&(op, "postgres")] / rates[&(op, "sqlite")]
        );
    }
    server.stop().await?;
    Ok(())
}
