//! `bulkhead-bench retention`: what aging records out into the cold archive costs and saves.
//!
//! `--tenants` pooled tenants each get `--per-tenant` signals by bulk ingest, all but one in
//! ten spread over ten months of last year; their tier keeps signals hot for 30 days. Storage is measured
//! (the usage sampler: each tenant's share of the pool by its rows' bytes), one retention
//! pass runs, and storage is measured again. Prints the ingest and archive rates, hot bytes
//! before and after, cold bytes, and the compression ratio of the archived records' hot
//! bytes to their Parquet bytes.

use std::collections::BTreeMap;
use std::time::Instant;

use bulkhead_api::{CreateKey, CreateTenant, RunRetention, UsageQuery};
use bulkhead_client::Client;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{Isolation, Retention, TierSpec};
use bulkhead_core::{CollectionName, FieldName, TenantId, TierName};

use crate::pocketbase::in_process::InProcess;

#[derive(Debug, clap::Args)]
pub struct RetentionArgs {
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    #[arg(long, default_value_t = 100_000)]
    per_tenant: usize,
}

fn signals() -> anyhow::Result<CollectionName> {
    Ok(CollectionName::parse("signals")?)
}

/// Hot records and bytes per tenant, measured now.
async fn measure(admin: &Client) -> anyhow::Result<BTreeMap<TenantId, (u64, u64, u64)>> {
    admin.sample_storage(None).await?;
    let mut out = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = admin
            .list_usage(&UsageQuery {
                cursor: cursor.clone(),
                limit: Some(1_000),
                ..Default::default()
            })
            .await?;
        for period in &page.items {
            if let Some(storage) = &period.storage {
                out.entry(period.tenant.clone()).or_insert((
                    storage.records,
                    storage.bytes,
                    storage.cold_bytes,
                ));
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}

pub async fn run(args: RetentionArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = InProcess::start_in(
        bulkhead::config::ServeArgs {
            retention_minutes: Some(0),
            storage_sample_minutes: Some(0),
            audit_watch_secs: Some(0),
            ..Default::default()
        },
        Some(dir.path().join("data")),
    )
    .await?;
    let admin = Client::new(&server.url, crate::pocketbase::in_process::ADMIN_KEY)?;
    let spec = serde_json::from_value(serde_json::json!({"fields": {
        "ts": {"type": "timestamp", "required": true, "index": true},
        "sensor": {"type": "string"},
        "site": {"type": "string"},
        "value": {"type": "float"},
        "ok": {"type": "boolean"}
    }}))?;
    admin.put_collection(&signals()?, &spec).await?;
    let tier = TierName::parse("iot")?;
    admin
        .put_tier(
            &tier,
            &TierSpec {
                retention: BTreeMap::from([(
                    signals()?,
                    Retention {
                        field: FieldName::parse("ts")?,
                        hot_days: 30.try_into()?,
                    },
                )]),
                ..TierSpec::new(Isolation::Pool)
            },
        )
        .await?;
    let total = args.tenants * args.per_tenant;
    let bar = crate::bar(total, "ingest");
    let started = Instant::now();
    let year_ago = time::OffsetDateTime::now_utc() - time::Duration::days(365);
    let today = time::OffsetDateTime::now_utc();
    for t in 0..args.tenants {
        let id = TenantId::parse(&format!("t{t:03}"))?;
        admin
            .create_tenant(&CreateTenant {
                id: id.clone(),
                name: id.to_string(),
                tier: tier.clone(),
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
            .await?
            .key;
        let client = Client::new(&server.url, &key)?;
        let mut done = 0;
        while done < args.per_tenant {
            let take = 10_000.min(args.per_tenant - done);
            let mut body = Vec::with_capacity(take * 120);
            for i in done..done + take {
                // One in ten recent; the rest spread over ten months of last year.
                let at = if i % 10 == 0 {
                    today - time::Duration::seconds((i % 86_400) as i64)
                } else {
                    year_ago
                        + time::Duration::days((i % 300) as i64)
                        + time::Duration::seconds((i % 86_400) as i64)
                };
                let ts = at.format(&time::format_description::well_known::Rfc3339)?;
                body.extend_from_slice(
                    format!(
                        "{{\"ts\":\"{ts}\",\"sensor\":\"s{}\",\"site\":\"plant-{}\",\"value\":{}.{},\"ok\":{}}}\n",
                        i % 64,
                        t % 7,
                        i % 1000,
                        i % 97,
                        i % 13 != 0
                    )
                    .as_bytes(),
                );
            }
            let report = client.bulk(&signals()?, body, true).await?;
            anyhow::ensure!(report.failed == 0, "ingest failed: {report:?}");
            done += take;
            bar.inc(take as u64);
        }
    }
    bar.finish_and_clear();
    let ingest = started.elapsed().as_secs_f64();
    let before = measure(&admin).await?;

    let started = Instant::now();
    let bar = crate::bar(args.tenants, "archive (tenant collections)");
    let run = admin
        .run_retention_to_end(&RunRetention::default(), |run| {
            bar.set_position(run.collections_done)
        })
        .await?;
    bar.finish_and_clear();
    anyhow::ensure!(
        run.state == bulkhead_api::RunState::Done,
        "retention: {run:?}"
    );
    let report = run.report;
    let archive = started.elapsed().as_secs_f64();
    anyhow::ensure!(report.failed == 0, "retention failed: {report:?}");
    let after = measure(&admin).await?;

    let sum = |m: &BTreeMap<TenantId, (u64, u64, u64)>, f: fn(&(u64, u64, u64)) -> u64| -> u64 {
        m.values().map(f).sum()
    };
    let (hot_before, hot_after) = (sum(&before, |v| v.1), sum(&after, |v| v.1));
    let cold = sum(&after, |v| v.2);
    let pool_file = std::fs::metadata(dir.path().join("data/domains/local/pool.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "## retention ({} tenants × {} signals)",
        args.tenants, args.per_tenant
    );
    println!(
        "ingest: {total} records in {ingest:.1} s ({:.0}/s)",
        total as f64 / ingest
    );
    println!(
        "archive pass: {} records into {} files in {archive:.1} s ({:.0} records/s)",
        report.archived,
        report.files,
        report.archived as f64 / archive
    );
    println!(
        "hot records: {} before, {} after",
        sum(&before, |v| v.0),
        sum(&after, |v| v.0)
    );
    println!(
        "hot bytes (tenants' measured share): {:.1} MB before, {:.1} MB after",
        mb(hot_before),
        mb(hot_after)
    );
    println!(
        "cold bytes (Parquet, zstd): {:.1} MB; ratio of the archived records' hot bytes to cold bytes: {:.1}×",
        mb(cold),
        (hot_before.saturating_sub(hot_after)) as f64 / cold.max(1) as f64
    );
    println!(
        "pool database file after the pass: {:.1} MB (freed pages are reused by later writes; VACUUM returns them)",
        mb(pool_file)
    );
    server.stop().await?;
    Ok(())
}
