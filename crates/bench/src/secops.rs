//! `bulkhead-bench secops`: what the tamper-evident audit and the webhooks cost.
//!
//! 1. **Chain work per control-plane write**: a tier `PUT` over HTTP (one catalog write
//!    with its audit entry), its median latency; beside it, on the same catalog file with
//!    `--entries` entries, what an append adds for the chain — reading the chain's tail and
//!    hashing one entry — timed over 20,000 appends' worth. A data read writes no audit entry
//!    (counted: the log does not grow over 1,000 reads), so the chain costs it nothing.
//! 2. **Verify**: `GET /v1/audit/verify` over the whole log (`--entries` entries added
//!    straight to the catalog, correctly chained, before the server starts).
//! 3. **Event to webhook**: tenants created one after another; for each, the time from the
//!    creation's answer to the signed delivery at a local receiver. p50 and p99.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bulkhead_api::{CreateTenant, WebhookFormat, WebhookSpec};
use bulkhead_client::Client;
use bulkhead_core::chain::{self, Fields};
use bulkhead_core::model::TierSpec;
use bulkhead_core::{TenantId, TierName};
use parking_lot::Mutex;

use crate::percentile;
use crate::pocketbase::in_process::{ADMIN_KEY, InProcess};

#[derive(Debug, clap::Args)]
pub struct SecopsArgs {
    /// Audit entries in the log for the verify and the tail read.
    #[arg(long, default_value_t = 1_000_000)]
    entries: usize,
    /// Control-plane writes timed.
    #[arg(long, default_value_t = 500)]
    writes: usize,
    /// Tenants created for the webhook latency.
    #[arg(long, default_value_t = 300)]
    events: usize,
}

fn entry_fields(seq: i64) -> Fields<'static> {
    Fields {
        seq,
        at: 1_764_900_000_000_000 + seq,
        actor: "key:k0123456789abcdef",
        action: "tenant.update",
        target: "acme-industries",
        tenant: Some("acme-industries"),
        outcome: "ok",
        request_id: "r-0123456789abcdef",
        detail: Some(r#"{"labels":{"plan":"gold"}}"#),
        source: None,
    }
}

/// Appends `n` correctly chained entries straight to the catalog file.
fn fill(catalog: &std::path::Path, n: usize) -> anyhow::Result<()> {
    let mut conn = rusqlite::Connection::open(catalog)?;
    let tx = conn.transaction()?;
    let (mut seq, mut prev): (i64, String) = tx.query_row(
        "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO audit (seq, at, actor, action, target, tenant_id, outcome, request_id, \
             detail, source, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        let bar = crate::bar(n, "audit entries");
        for _ in 0..n {
            seq += 1;
            let f = entry_fields(seq);
            let hash = chain::hash(&f, &prev);
            insert.execute(rusqlite::params![
                f.seq,
                f.at,
                f.actor,
                f.action,
                f.target,
                f.tenant,
                f.outcome,
                f.request_id,
                f.detail,
                f.source,
                prev,
                hash
            ])?;
            prev = hash;
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    tx.commit()?;
    Ok(())
}

/// What the chain adds to one append: the tail read and one hash, median of `n`.
fn chain_work(catalog: &std::path::Path, n: usize) -> anyhow::Result<Duration> {
    let conn = rusqlite::Connection::open(catalog)?;
    let mut tail = conn.prepare("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let (seq, prev): (i64, String) = tail.query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let f = entry_fields(seq + 1);
        std::hint::black_box(chain::hash(&f, &prev));
        times.push(started.elapsed());
    }
    times.sort_unstable();
    Ok(times[times.len() / 2])
}

/// A webhook receiver that notes when each tenant's `tenant.created` arrived.
async fn receiver() -> anyhow::Result<(String, Arc<Mutex<HashMap<String, Instant>>>)> {
    let got: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = Arc::clone(&seen);
            async move {
                let now = Instant::now();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                    && let Some(t) = v["data"]["tenant"].as_str()
                {
                    seen.lock().insert(t.to_owned(), now);
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, got))
}

pub async fn run(args: SecopsArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let serve_args = || bulkhead::config::ServeArgs {
        webhooks_allow_private: Some(true),
        audit_watch_secs: Some(0),
        ..Default::default()
    };
    // A catalog with a chain, then `--entries` more entries added to it.
    let server = InProcess::start_in(serve_args(), Some(data.clone())).await?;
    let admin = Client::new(&server.url, ADMIN_KEY)?;
    admin
        .create_tenant(&CreateTenant {
            id: TenantId::parse("seed")?,
            name: "seed".into(),
            tier: TierName::parse("free")?,
            labels: Default::default(),
        })
        .await?;
    server.stop().await?;
    let catalog = data.join("catalog.db");
    let entries = args.entries;
    let file = catalog.clone();
    tokio::task::spawn_blocking(move || fill(&file, entries)).await??;
    let file = catalog.clone();
    let append = tokio::task::spawn_blocking(move || chain_work(&file, 20_000)).await??;

    let server = InProcess::start_in(serve_args(), Some(data.clone())).await?;
    let admin = Client::new(&server.url, ADMIN_KEY)?;

    // 1. Control-plane writes.
    let tier = TierName::parse("bench")?;
    let spec: TierSpec = serde_json::from_value(serde_json::json!({"isolation": "pool"}))?;
    let mut writes = Vec::with_capacity(args.writes);
    for _ in 0..args.writes {
        let started = Instant::now();
        admin.put_tier(&tier, &spec).await?;
        writes.push(started.elapsed());
    }
    writes.sort_unstable();
    let write_p50 = percentile(&writes, 0.5);
    let notes = bulkhead_core::CollectionName::parse("notes")?;
    let notes_spec =
        serde_json::from_value(serde_json::json!({"fields": {"title": {"type": "string"}}}))?;
    admin.put_collection(&notes, &notes_spec).await?;
    let key = admin
        .create_key(
            &TenantId::parse("seed")?,
            &bulkhead_api::CreateKey {
                name: "reader".into(),
                role: bulkhead_core::access::TenantRole::Member,
                expires_in: None,
            },
        )
        .await?
        .key;
    let reader = Client::new(&server.url, &key)?;
    let before = admin.verify_audit(None).await?.checked;
    for _ in 0..1_000 {
        reader
            .list_records(&notes, &bulkhead_client::ListRecords::default())
            .await?;
    }
    let after = admin.verify_audit(None).await?.checked;

    // 2. Verify the whole log.
    let started = Instant::now();
    let verified = admin.verify_audit(None).await?;
    let verify_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(verified.ok, "the chain did not verify: {verified:?}");

    // 3. Event to webhook.
    let (url, got) = receiver().await?;
    admin
        .put_webhook(
            "bench",
            &WebhookSpec {
                url,
                events: vec!["tenant.created".into()],
                secret: None,
                format: WebhookFormat::Standard,
                disable_after: None,
                enabled: None,
            },
        )
        .await?;
    let mut answered = HashMap::new();
    let bar = crate::bar(args.events, "tenants → webhook");
    for i in 0..args.events {
        let id = format!("hook-{i:05}");
        admin
            .create_tenant(&CreateTenant {
                id: TenantId::parse(&id)?,
                name: id.clone(),
                tier: TierName::parse("free")?,
                labels: Default::default(),
            })
            .await?;
        answered.insert(id, Instant::now());
        bar.inc(1);
        // Spread out, as events come: one every 20 ms.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bar.finish_and_clear();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.lock().len() < args.events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrived = got.lock().clone();
    let mut latencies: Vec<Duration> = answered
        .iter()
        .filter_map(|(id, at)| arrived.get(id).map(|r| r.saturating_duration_since(*at)))
        .collect();
    latencies.sort_unstable();
    server.stop().await.context("stopping the server")?;

    println!("## secops ({} audit entries)", verified.checked);
    println!();
    println!("| figure | measured |");
    println!("|---|---|");
    println!(
        "| control-plane write (tier PUT) p50 | {write_p50:.3} ms over {} writes |",
        args.writes
    );
    println!(
        "| chain work per append (tail read + hash), median | {:.1} µs = {:.2} % of the write |",
        append.as_secs_f64() * 1e6,
        append.as_secs_f64() * 1e3 / write_p50 * 100.0
    );
    println!(
        "| audit entries written by 1,000 data reads | {} |",
        after.saturating_sub(before)
    );
    println!(
        "| verify {} entries | {verify_secs:.2} s ({:.0} entries/s) |",
        verified.checked,
        verified.checked as f64 / verify_secs
    );
    println!(
        "| event to webhook ({} of {} delivered) | p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms |",
        latencies.len(),
        args.events,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    Ok(())
}
