//! `bulkhead record import`: streams an NDJSON file to the bulk endpoint in batches, with a
//! progress bar (bytes, lines, rate, ETA), and reports every failed line by its number in the
//! file.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context, bail};
use bulkhead_client::Client;
use bulkhead_core::CollectionName;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::printer::Printer;

/// Largest request body the import builds (the server's bulk limit is usually larger).
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Times one batch is sent again after the server refused it as a whole for now (429, 503).
const RETRIES: u32 = 8;

/// Sends one batch. A refusal of the whole request for now — `429` (rate, concurrency) or
/// `503` (busy, a move's switch, a rollout) — comes before any line is applied, so the batch
/// is sent again after a pause (1 s, doubling to at most 30 s; the server's `Retry-After`
/// is 1 s for these). Anything else, a lost connection included, is not retried: the
/// batch may have been applied.
async fn send(
    client: &Client,
    collection: &CollectionName,
    body: Vec<u8>,
    bar: &ProgressBar,
) -> Result<bulkhead_api::BulkReport, bulkhead_client::ClientError> {
    let mut pause = std::time::Duration::from_secs(1);
    let mut attempt = 0;
    loop {
        match client.bulk(collection, body.clone(), true).await {
            Err(e) if matches!(e.status(), Some(429 | 503)) && attempt < RETRIES => {
                attempt += 1;
                bar.set_message(format!(
                    "server busy ({}), retrying in {} s",
                    e.code().unwrap_or(""),
                    pause.as_secs()
                ));
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(30));
            }
            other => return other,
        }
    }
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    lines: u64,
    created: u64,
    updated: u64,
    deleted: u64,
    failed: u64,
    failures: Vec<Failure>,
}

#[derive(Debug, Serialize)]
struct Failure {
    line: u64,
    status: u16,
    code: String,
    message: String,
}

pub async fn run(
    client: &Client,
    out: &Printer,
    collection: &CollectionName,
    file: &Path,
    batch: usize,
) -> anyhow::Result<()> {
    let (reader, size): (Box<dyn Read>, Option<u64>) = if file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let f =
            std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    let mut reader = BufReader::new(reader);
    let bar = match size {
        Some(size) => {
            let bar = ProgressBar::new(size);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} importing [{bar:30}] {bytes}/{total_bytes} {msg} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        }
        None => ProgressBar::new_spinner(),
    };
    if out.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = std::time::Instant::now();
    let mut summary = Summary::default();
    let mut body = Vec::new();
    let mut lines_in_batch = 0usize;
    let mut first_line = 1u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .context("reading the import file")?;
        if read > 0 {
            summary.lines += 1;
            body.extend_from_slice(&line);
            if !line.ends_with(b"\n") {
                body.push(b'\n');
            }
            lines_in_batch += 1;
            bar.inc(read as u64);
        }
        let full = lines_in_batch >= batch || body.len() >= MAX_BATCH_BYTES;
        if (read == 0 || full) && lines_in_batch > 0 {
            let report = send(client, collection, std::mem::take(&mut body), &bar)
                .await
                .with_context(|| format!("sending lines {first_line}..{}", summary.lines))?;
            summary.created += report.created;
            summary.updated += report.updated;
            summary.deleted += report.deleted;
            summary.failed += report.failed;
            for failed in report.results {
                let line = first_line + failed.line - 1;
                let (code, message) = failed
                    .error
                    .map(|e| {
                        let local = format!("line {}: ", failed.line);
                        let message = e.message.strip_prefix(&local).unwrap_or(&e.message);
                        (e.code, message.to_owned())
                    })
                    .unwrap_or_default();
                summary.failures.push(Failure {
                    line,
                    status: failed.status,
                    code,
                    message,
                });
            }
            let rate = summary.lines as f64 / started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!(
                "{} lines ({rate:.0}/s), {} failed",
                summary.lines, summary.failed
            ));
            first_line = summary.lines + 1;
            lines_in_batch = 0;
        }
        if read == 0 {
            break;
        }
    }
    bar.finish_and_clear();
    let failed = summary.failed;
    out.show(&summary, |s| {
        let mut text = format!(
            "{} lines: {} created, {} updated, {} deleted, {} failed",
            s.lines, s.created, s.updated, s.deleted, s.failed
        );
        for f in &s.failures {
            text.push_str(&format!(
                "\nline {}: {} {}: {}",
                f.line, f.status, f.code, f.message
            ));
        }
        text
    })?;
    if failed > 0 {
        bail!("{failed} lines were not imported (the others were)");
    }
    Ok(())
}
