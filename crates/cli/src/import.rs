//! `bulkhead record import`: streams an NDJSON file to the bulk endpoint in batches, with a
//! progress bar (bytes, lines, records per second, ETA), and reports every failed line by its
//! number in the file.
//!
//! An import of a file can be resumed (`--resume`) without duplicating a line:
//! - the state sits beside the file (`<file>.import-state`, or `--state`): lines and bytes
//!   acknowledged, the SHA-256 of those bytes (so another file is never skipped into), the
//!   tenant, collection and server, and the batch in flight;
//! - a create line without an id gets one from the import (a UUIDv7 from the batch's time and
//!   a hash of the import's nonce and the line number), so sending its batch again names the
//!   same record;
//! - on resume, the batch that was in flight is sent again: a create whose record now exists
//!   counts as imported when the import named it, or when the stored record has the line's
//!   values (else it is reported as the conflict it is); a delete of a missing record counts
//!   as done. Then the import goes on after it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bulkhead_client::Client;
use bulkhead_core::{CollectionName, RecordId};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::printer::Printer;

/// Largest request body the import builds (the server's bulk limit is usually larger).
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Times one batch is sent again after the server refused it as a whole for now (429, 503).
const RETRIES: u32 = 8;
/// For tests: the import stops dead right after this batch's answer, before recording it.
const CRASH_AFTER: &str = "BULKHEAD_IMPORT_CRASH_AFTER_BATCH";

/// How `bulkhead record import` runs.
pub struct ImportArgs<'a> {
    pub collection: &'a CollectionName,
    pub file: &'a Path,
    pub batch: usize,
    pub resume: bool,
    pub restart: bool,
    pub state: Option<PathBuf>,
}

/// Sends one batch. A refusal of the whole request for now — `429` (rate, concurrency) or
/// `503` (busy, a move's switch, a rollout) — comes before any line is applied, so the batch
/// is sent again after the server's `Retry-After` (at least 1 s, doubling to at most 30 s).
/// Anything else, a lost connection included, is not retried here: the batch may have been
/// applied (`--resume` settles that).
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

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Summary {
    lines: u64,
    created: u64,
    updated: u64,
    deleted: u64,
    /// Lines of a resumed batch the stopped import had already applied.
    #[serde(default)]
    already: u64,
    failed: u64,
    failures: Vec<Failure>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Failure {
    line: u64,
    status: u16,
    code: String,
    message: String,
}

/// What a resumable import keeps beside its file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    server: String,
    tenant: String,
    collection: String,
    /// Names the ids this import gives lines without one.
    nonce: String,
    /// Bytes and lines acknowledged, and the SHA-256 of those bytes.
    done_bytes: u64,
    done_lines: u64,
    done_sha256: String,
    /// The batch sent and not yet acknowledged.
    in_flight: Option<InFlight>,
    /// A record an acknowledged batch wrote and no later line removed: on resume it must
    /// still be there, or the tenant was deleted (maybe re-created) or emptied since, and
    /// skipping the lines already imported would lose them.
    #[serde(default)]
    probe: Option<String>,
    summary: Summary,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct InFlight {
    lines: u64,
    bytes: u64,
    /// The batch's time, in the ids it gives (ms since the Unix epoch).
    at_ms: u64,
}

impl State {
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("import-state.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?).with_context(|| {
            format!(
                "writing the import's progress to {} (--state PATH keeps it elsewhere)",
                tmp.display()
            )
        })?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }
}

/// The id an import gives line `line` of a batch at `at_ms`: time-ordered like the server's.
fn import_id(nonce: &str, line: u64, at_ms: u64) -> String {
    let hash = Sha256::digest(format!("{nonce}:{line}"));
    let mut random = [0u8; 10];
    random.copy_from_slice(&hash[..10]);
    uuid::Builder::from_unix_timestamp_millis(at_ms, &random)
        .into_uuid()
        .simple()
        .to_string()
}

/// A line as sent (without its newline): a create without an id gets the import's. Anything
/// else is sent as read (a line that is not a JSON object fails on the server, with its
/// number).
fn with_id(line: &[u8], id: impl FnOnce() -> String, op_is_field: bool) -> (Vec<u8>, bool) {
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(line) else {
        return (line.to_vec(), false);
    };
    let envelope = object.contains_key("op") && !op_is_field;
    let needs = if envelope {
        object.get("op").and_then(Value::as_str) == Some("create")
            && !object.contains_key("id")
            && object
                .get("record")
                .and_then(Value::as_object)
                .is_some_and(|r| !r.contains_key("id"))
    } else {
        !object.contains_key("id")
    };
    if !needs {
        return (line.to_vec(), false);
    }
    object.insert("id".into(), Value::String(id()));
    match serde_json::to_vec(&Value::Object(object)) {
        Ok(out) => (out, true),
        Err(_) => (line.to_vec(), false),
    }
}

/// One line of a batch: its number, the text sent, and whether the import named its record.
struct Line {
    number: u64,
    sent: Vec<u8>,
    named: bool,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub async fn run(client: &Client, out: &Printer, args: ImportArgs<'_>) -> anyhow::Result<()> {
    let ImportArgs {
        collection,
        file,
        batch,
        resume,
        restart,
        state,
    } = args;
    let stdin = file.as_os_str() == "-";
    if stdin && (resume || state.is_some()) {
        bail!("an import from standard input cannot be resumed: import a file");
    }
    let state_path = (!stdin).then(|| {
        state.unwrap_or_else(|| {
            let mut name = file.as_os_str().to_owned();
            name.push(".import-state");
            PathBuf::from(name)
        })
    });
    // Whose records these are, and whether `op` is a field (then no line is an envelope).
    let access = client.access(collection).await?;
    let op_is_field = access.fields.iter().any(|f| f.as_str() == "op");
    let here = (
        client.base_url().to_string(),
        access.tenant.to_string(),
        collection.to_string(),
    );

    let (reader, size): (Box<dyn Read>, Option<u64>) = if stdin {
        (Box::new(std::io::stdin()), None)
    } else {
        let f =
            std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    let mut reader = BufReader::new(reader);
    let mut hasher = Sha256::new();
    let mut state = match state_path.as_deref() {
        Some(path) if path.exists() && !restart => {
            if !resume {
                bail!(
                    "{} holds an unfinished import of this file: --resume to go on with it, \
                     or --restart to import the whole file again",
                    path.display()
                );
            }
            let saved: State = serde_json::from_slice(&std::fs::read(path)?)
                .with_context(|| format!("{} is not an import state", path.display()))?;
            if (
                saved.server.clone(),
                saved.tenant.clone(),
                saved.collection.clone(),
            ) != here
            {
                bail!(
                    "{} belongs to an import into {} of tenant {} on {}: resume it there",
                    path.display(),
                    saved.collection,
                    saved.tenant,
                    saved.server
                );
            }
            // The bytes already imported must be the ones the file still starts with.
            let mut prefix = (&mut reader).take(saved.done_bytes);
            let copied = std::io::copy(&mut prefix, &mut hasher)?;
            let digest = hex::encode(hasher.clone().finalize());
            if copied != saved.done_bytes || digest != saved.done_sha256 {
                bail!(
                    "{} no longer starts with the {} lines already imported: it changed since; \
                     --restart to import it again",
                    file.display(),
                    saved.done_lines
                );
            }
            if let Some(probe) = &saved.probe {
                let id = RecordId::parse(probe)?;
                match client.get_record(collection, &id).await {
                    Ok(_) => {}
                    Err(e) if e.status() == Some(404) => bail!(
                        "record {probe}, which this import wrote, is gone: the tenant was deleted \
                         (or emptied) since the import stopped, so the lines already imported are \
                         not there any more; --restart to import the whole file"
                    ),
                    Err(e) => return Err(e.into()),
                }
            }
            saved
        }
        _ => {
            if resume {
                bail!(
                    "there is no unfinished import of {} to resume",
                    file.display()
                );
            }
            let mut nonce = [0u8; 8];
            fresh_nonce(&mut nonce);
            State {
                server: here.0,
                tenant: here.1,
                collection: here.2,
                nonce: hex::encode(nonce),
                done_bytes: 0,
                done_lines: 0,
                done_sha256: hex::encode(Sha256::new().finalize()),
                in_flight: None,
                probe: None,
                summary: Summary::default(),
            }
        }
    };

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
    bar.set_position(state.done_bytes);
    let started = std::time::Instant::now();
    let resumed_lines = state.done_lines;
    let crash_after: Option<u64> = std::env::var(CRASH_AFTER).ok().and_then(|v| v.parse().ok());
    let mut batches = 0u64;
    // A batch that was in flight is read again with the same bounds and ids.
    let mut replay = state.in_flight.take();
    let mut raw = Vec::new();
    loop {
        let (limit_lines, limit_bytes, at_ms) = match replay {
            Some(f) => (f.lines, f.bytes, f.at_ms),
            None => (batch as u64, MAX_BATCH_BYTES as u64, now_ms()),
        };
        let mut lines = Vec::new();
        let (mut bytes, mut body) = (0u64, Vec::new());
        while (lines.len() as u64) < limit_lines && bytes < limit_bytes {
            raw.clear();
            let read = reader
                .read_until(b'\n', &mut raw)
                .context("reading the import file")?;
            if read == 0 {
                break;
            }
            bytes += read as u64;
            hasher.update(&raw);
            let number = state.done_lines + lines.len() as u64 + 1;
            let text: &[u8] = raw.strip_suffix(b"\n").unwrap_or(&raw);
            let (sent, named) = if stdin {
                (text.to_vec(), false)
            } else {
                with_id(text, || import_id(&state.nonce, number, at_ms), op_is_field)
            };
            body.extend_from_slice(&sent);
            body.push(b'\n');
            lines.push(Line {
                number,
                sent,
                named,
            });
        }
        if lines.is_empty() {
            break;
        }
        let flight = InFlight {
            lines: lines.len() as u64,
            bytes,
            at_ms,
        };
        if let Some(path) = &state_path {
            state.in_flight = Some(flight);
            state.save(path)?;
        }
        let first = lines[0].number;
        let last = first + flight.lines - 1;
        let report = send(client, collection, body, &bar)
            .await
            .with_context(|| {
                format!(
                    "sending lines {first}..{last}{}",
                    if state_path.is_some() {
                        "; run the same command with --resume to go on without duplicating a line"
                    } else {
                        ""
                    }
                )
            })?;
        batches += 1;
        if crash_after == Some(batches) {
            std::process::exit(137);
        }
        let replayed = replay.take().is_some();
        let failed: std::collections::HashSet<u64> =
            report.results.iter().map(|r| r.line).collect();
        state.probe = probe_after(state.probe.take(), &lines, &failed);
        record(
            client,
            collection,
            &mut state.summary,
            &lines,
            report,
            replayed,
        )
        .await;
        state.summary.lines += flight.lines;
        state.done_lines += flight.lines;
        state.done_bytes += flight.bytes;
        state.done_sha256 = hex::encode(hasher.clone().finalize());
        state.in_flight = None;
        if let Some(path) = &state_path {
            state.save(path)?;
        }
        bar.set_position(state.done_bytes);
        let rate =
            (state.done_lines - resumed_lines) as f64 / started.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!(
            "{} lines ({rate:.0} records/s), {} failed",
            state.summary.lines, state.summary.failed
        ));
    }
    bar.finish_and_clear();
    if let Some(path) = &state_path {
        // The whole file went through: nothing is left to resume.
        let _ = std::fs::remove_file(path);
    }
    let summary = state.summary;
    let failed = summary.failed;
    out.show(&summary, |s| {
        let mut text = format!(
            "{} lines: {} created, {} updated, {} deleted, {} failed",
            s.lines, s.created, s.updated, s.deleted, s.failed
        );
        if s.already > 0 {
            text.push_str(&format!(
                " ({} applied before the import was resumed)",
                s.already
            ));
        }
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

/// The record to look for on resume after this batch: the last one it created or replaced
/// (a line that did not fail) that no later line of it deletes; the previous probe unless
/// this batch deletes it.
fn probe_after(
    previous: Option<String>,
    lines: &[Line],
    failed: &std::collections::HashSet<u64>,
) -> Option<String> {
    let ops: Vec<(Option<String>, bool)> = lines
        .iter()
        .map(|line| match serde_json::from_slice::<Value>(&line.sent) {
            Ok(Value::Object(o)) => {
                let delete = o.get("op").and_then(Value::as_str) == Some("delete");
                let id = o
                    .get("id")
                    .or_else(|| o.get("record").and_then(|r| r.get("id")))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                (id, delete)
            }
            _ => (None, false),
        })
        .collect();
    let deleted = |id: &str, after: usize| {
        ops[after..]
            .iter()
            .any(|(other, delete)| *delete && other.as_deref() == Some(id))
    };
    let fresh = ops.iter().enumerate().rev().find_map(|(i, (id, delete))| {
        let id = id.as_deref()?;
        (!delete && !failed.contains(&(i as u64 + 1)) && !deleted(id, i + 1)).then(|| id.to_owned())
    });
    fresh.or_else(|| previous.filter(|p| !deleted(p, 0)))
}

fn fresh_nonce(out: &mut [u8; 8]) {
    // The nonce only needs to differ between imports: time and process id suffice.
    let seed = format!(
        "{}:{}:{:?}",
        now_ms(),
        std::process::id(),
        std::time::Instant::now()
    );
    out.copy_from_slice(&Sha256::digest(seed)[..8]);
}

/// Adds a batch's report to the summary. In a replayed batch, a create that finds its record
/// (the stopped import wrote it) and a delete that finds none count as already applied.
async fn record(
    client: &Client,
    collection: &CollectionName,
    summary: &mut Summary,
    lines: &[Line],
    report: bulkhead_api::BulkReport,
    replayed: bool,
) {
    summary.created += report.created;
    summary.updated += report.updated;
    summary.deleted += report.deleted;
    for failed in report.results {
        let Some(line) = lines.get((failed.line as usize).wrapping_sub(1)) else {
            continue;
        };
        let (code, message) = failed
            .error
            .map(|e| {
                let local = format!("line {}: ", failed.line);
                let message = e.message.strip_prefix(&local).unwrap_or(&e.message);
                (e.code, message.to_owned())
            })
            .unwrap_or_default();
        if replayed && already_applied(client, collection, line, failed.status).await {
            summary.already += 1;
            continue;
        }
        summary.failed += 1;
        summary.failures.push(Failure {
            line: line.number,
            status: failed.status,
            code,
            message,
        });
    }
}

/// Whether a line of a replayed batch that failed had been applied by the stopped import.
async fn already_applied(
    client: &Client,
    collection: &CollectionName,
    line: &Line,
    status: u16,
) -> bool {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&line.sent) else {
        return false;
    };
    let op = object.get("op").and_then(Value::as_str);
    match (status, op) {
        (404, Some("delete")) => true,
        (409, None | Some("create")) => {
            if line.named {
                return true;
            }
            let fields: Map<String, Value> = match object.get("record") {
                Some(Value::Object(record)) if op.is_some() => record.clone(),
                _ => object.clone(),
            };
            let id = object
                .get("id")
                .or_else(|| fields.get("id"))
                .and_then(Value::as_str)
                .and_then(|id| RecordId::parse(id).ok());
            let Some(id) = id else { return false };
            let Ok(stored) = client.get_record(collection, &id).await else {
                return false;
            };
            // The stored record has every value the line gave (timestamps compared as
            // instants, numbers as numbers).
            fields
                .iter()
                .filter(|(k, _)| k.as_str() != "id")
                .all(|(k, v)| same(stored.get(k), v))
        }
        _ => false,
    }
}

fn same(stored: Option<&Value>, given: &Value) -> bool {
    let Some(stored) = stored else {
        return given.is_null();
    };
    if stored == given {
        return true;
    }
    match (stored, given) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) => {
            match (chrono_like(a.as_str()), chrono_like(b.as_str())) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            }
        }
        _ => false,
    }
}

/// An RFC 3339 timestamp as an instant, through the core's parser.
fn chrono_like(text: &str) -> Option<i64> {
    bulkhead_core::time::Timestamp::parse_rfc3339(text).map(|t| t.as_micros())
}
