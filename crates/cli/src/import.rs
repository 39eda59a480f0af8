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
            let report = client
                .bulk(collection, std::mem::take(&mut body), true)
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
            bar.set_message(format!(
                "{} lines, {} failed",
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
