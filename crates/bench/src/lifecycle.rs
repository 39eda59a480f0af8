//! `bulkhead-bench lifecycle`: backups and tenant archives.
//!
//! 1. **Archive**: `--records` records bulk-ingested into a pooled tenant (the ingest rate is
//!    the baseline), then `bulkhead tenant export` and `bulkhead tenant import --as` run as
//!    processes (the release `bulkhead` binary beside this one) under `/usr/bin/time`, for
//!    their rate as a share of the ingest rate and their peak memory.
//! 2. **Backup while serving**: a tenant filled with `--backup-mb` MB of 1 KB records, then
//!    an online backup of the whole server while a neighbour reads records by id; the
//!    neighbour's p99 during the backup over its p99 just before, and the backup's time.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bulkhead_api::{BackupState, CreateKey, CreateTenant};
use bulkhead_client::Client;
use bulkhead_core::access::TenantRole;
use bulkhead_core::{CollectionName, RecordId, TenantId, TierName};

use crate::percentile;
use crate::pocketbase::in_process::{ADMIN_KEY, InProcess};

#[derive(Debug, clap::Args)]
pub struct LifecycleArgs {
    /// Records of the archived tenant (0: skip the archive part).
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Megabytes of records for the backup part (0: skip it).
    #[arg(long, default_value_t = 2_000)]
    backup_mb: usize,
}

fn items() -> anyhow::Result<CollectionName> {
    Ok(CollectionName::parse("items")?)
}

async fn tenant(admin: &Client, url: &str, id: &str, tier: &str) -> anyhow::Result<Client> {
    admin
        .create_tenant(&CreateTenant {
            id: TenantId::parse(id)?,
            name: id.into(),
            tier: TierName::parse(tier)?,
            labels: Default::default(),
        })
        .await?;
    let key = admin
        .create_key(
            &TenantId::parse(id)?,
            &CreateKey {
                name: "bench".into(),
                role: TenantRole::Member,
                expires_in: None,
            },
        )
        .await?
        .key;
    Ok(Client::new(url, &key)?)
}

/// Bulk-ingests `n` records of `pad` bytes of text each; returns the seconds it took.
async fn ingest(client: &Client, n: usize, pad: usize, what: &str) -> anyhow::Result<f64> {
    let chunk = 10_000.min(n.max(1));
    let filler = "x".repeat(pad);
    let bar = crate::bar(n, what);
    let started = Instant::now();
    let mut done = 0;
    while done < n {
        let take = chunk.min(n - done);
        let body: Vec<u8> = (done..done + take)
            .flat_map(|i| format!("{{\"title\":\"r{i} {filler}\",\"n\":{i}}}\n").into_bytes())
            .collect();
        let report = client.bulk(&items()?, body, true).await?;
        anyhow::ensure!(report.failed == 0, "ingest failed: {report:?}");
        done += take;
        bar.inc(take as u64);
    }
    bar.finish_and_clear();
    Ok(started.elapsed().as_secs_f64())
}

/// Runs the release `bulkhead` binary under `/usr/bin/time`; returns seconds and peak KB.
fn timed_cli(url: &str, args: &[&str]) -> anyhow::Result<(f64, u64)> {
    let exe = std::env::current_exe()?;
    let bulkhead = exe.with_file_name("bulkhead");
    if !bulkhead.exists() {
        bail!(
            "{} is missing: build it first (cargo build --release -p bulkhead)",
            bulkhead.display()
        );
    }
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("peak_kb=%M")
        .arg(&bulkhead)
        .args(args)
        .env("BULKHEAD_URL", url)
        .env("BULKHEAD_TOKEN", ADMIN_KEY)
        .output()
        .context("running /usr/bin/time (apt-get install time)")?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("bulkhead {args:?} failed: {stderr}");
    }
    let peak = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak_kb="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok((seconds, peak))
}

/// Reads records by id from `client` for `seconds`; the latencies, sorted.
async fn reads(client: &Client, ids: &[RecordId], seconds: f64) -> anyhow::Result<Vec<Duration>> {
    let items = items()?;
    let mut out = Vec::new();
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        client.get_record(&items, &ids[i % ids.len()]).await?;
        out.push(t.elapsed());
        i += 1;
    }
    out.sort_unstable();
    Ok(out)
}

pub async fn run(args: LifecycleArgs) -> anyhow::Result<()> {
    let server = InProcess::start().await?;
    let admin = Client::new(&server.url, ADMIN_KEY)?;
    let spec = serde_json::from_value(serde_json::json!({"fields": {
        "title": {"type": "string"}, "n": {"type": "integer"}
    }}))?;
    admin.put_collection(&items()?, &spec).await?;
    let work = tempfile::tempdir()?;

    if args.records > 0 {
        let big = tenant(&admin, &server.url, "archived", "free").await?;
        let ingest_secs = ingest(&big, args.records, 40, "ingest").await?;
        let file: PathBuf = work.path().join("archived.bkt");
        let file_arg = file.display().to_string();
        let (export_secs, export_kb) = timed_cli(
            &server.url,
            &["tenant", "export", "archived", "-o", &file_arg],
        )?;
        let (import_secs, import_kb) = timed_cli(
            &server.url,
            &["tenant", "import", &file_arg, "--as", "archived-copy"],
        )?;
        let (silo_secs, silo_kb) = timed_cli(
            &server.url,
            &[
                "tenant",
                "import",
                &file_arg,
                "--as",
                "archived-silo",
                "--tier",
                "premium",
            ],
        )?;
        let n = args.records as f64;
        println!("## tenant archive ({} records)", args.records);
        println!();
        println!("| step | seconds | records/s | share of bulk ingest | peak memory |");
        println!("|---|---|---|---|---|");
        println!(
            "| bulk ingest (baseline) | {ingest_secs:.1} | {:.0} | 1.00 | (server) |",
            n / ingest_secs
        );
        for (what, secs, kb) in [
            ("tenant export", export_secs, export_kb),
            ("tenant import into the pool", import_secs, import_kb),
            ("tenant import into a silo", silo_secs, silo_kb),
        ] {
            println!(
                "| {what} | {secs:.1} | {:.0} | {:.2} | {} MB (the CLI) |",
                n / secs,
                ingest_secs / secs,
                kb / 1024
            );
        }
        println!(
            "| archive file | {:.1} MB | | | |",
            std::fs::metadata(&file)?.len() as f64 / 1e6
        );
        println!();
    }

    if args.backup_mb > 0 {
        let heavy = tenant(&admin, &server.url, "heavy", "premium").await?;
        let records = args.backup_mb * 1_000;
        ingest(&heavy, records, 960, "fill").await?;
        let neighbour = tenant(&admin, &server.url, "neighbour", "free").await?;
        let mut ids = Vec::new();
        for i in 0..200 {
            let r = neighbour
                .create_record(
                    &items()?,
                    &serde_json::json!({"title": format!("n{i}"), "n": i}),
                )
                .await?;
            ids.push(RecordId::parse(r["id"].as_str().unwrap_or_default())?);
        }
        let quiet = reads(&neighbour, &ids, 10.0).await?;
        let dir = work.path().join("backup");
        let started = Instant::now();
        let backup = admin.start_backup(&dir.display().to_string()).await?;
        let watcher = {
            let (admin, id) = (admin.clone(), backup.id.clone());
            tokio::spawn(async move {
                loop {
                    match admin.get_backup(&id).await {
                        Ok(v) if v.state == BackupState::Running => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        other => return (other, Instant::now()),
                    }
                }
            })
        };
        let mut during = Vec::new();
        while !watcher.is_finished() {
            during.extend(reads(&neighbour, &ids, 0.5).await?);
        }
        let (view, ended) = watcher.await?;
        let view = view?;
        anyhow::ensure!(view.state == BackupState::Done, "backup: {view:?}");
        during.sort_unstable();
        let (q99, d99) = (percentile(&quiet, 0.99), percentile(&during, 0.99));
        println!(
            "## online backup ({} MB of records, {} files)",
            args.backup_mb, view.files_done
        );
        println!();
        println!("| figure | measured |");
        println!("|---|---|");
        println!(
            "| backup of {:.0} MB | {:.1} s |",
            view.bytes as f64 / 1e6,
            ended.duration_since(started).as_secs_f64()
        );
        println!(
            "| neighbour get-by-id p50 quiet / during | {:.2} / {:.2} ms |",
            percentile(&quiet, 0.5),
            percentile(&during, 0.5)
        );
        println!(
            "| neighbour p99 quiet / during | {q99:.2} / {d99:.2} ms = {:.2}x ({} and {} reads) |",
            d99 / q99,
            quiet.len(),
            during.len()
        );
    }
    server.stop().await?;
    Ok(())
}
