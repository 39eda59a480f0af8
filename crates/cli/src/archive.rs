//! A portable tenant archive: `bulkhead tenant export ID -o FILE` and `bulkhead tenant import
//! FILE [--as ID] [--tier T]`.
//!
//! The file is gzip-compressed NDJSON: a header line (format, tenant, tier, source model,
//! domain and engine, the collections with their versions and fields), one line per record
//! (`{"collection", "record"}` with the record's id, timestamps, version and fields), and an
//! end line (records per collection, and the SHA-256 of every record line). Export streams
//! each collection from the server as it writes (memory stays flat); import reads the whole
//! file once to check it before it writes anything, then creates the tenant and restores
//! the records exactly (`POST /v1/tenants/{id}/records:restore`) into whatever model its
//! tier gives — deleting the tenant again if anything fails, so nothing is left half-done.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{Context, bail};
use bulkhead_api::{CreateTenant, RestoreRecords};
use bulkhead_client::{Client, ClientError};
use bulkhead_core::schema::FieldSpec;
use bulkhead_core::{CollectionName, FieldName, Incarnation, TenantId, TierName};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::printer::Printer;

/// The archive format this release writes and reads.
pub const FORMAT: u32 = 1;
/// Records per restore request, and the bytes of one at most.
const BATCH: usize = 10_000;
const BATCH_BYTES: usize = 900 * 1024;
/// Restore requests in flight at once.
const IN_FLIGHT: usize = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    bulkhead_tenant_archive: u32,
    tenant: TenantId,
    name: String,
    tier: TierName,
    isolation: String,
    domain: String,
    engine: String,
    exported_at: String,
    collections: Vec<ArchivedCollection>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ArchivedCollection {
    name: CollectionName,
    version: i64,
    fields: BTreeMap<FieldName, FieldSpec>,
}

#[derive(Debug, Serialize, Deserialize)]
struct End {
    records: BTreeMap<CollectionName, u64>,
    sha256: String,
}

#[derive(Debug, Deserialize)]
struct Line<'a> {
    collection: CollectionName,
    #[serde(borrow)]
    record: &'a RawValue,
}

fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {pos} records {per_sec}") {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

/// `bulkhead tenant export`.
pub(crate) async fn export(
    client: &Client,
    out: &Printer,
    id: &TenantId,
    file: &Path,
    hot_only: bool,
) -> anyhow::Result<()> {
    let tenant = client.get_tenant(id).await?;
    // Records retention moved to the cold archive are not in a tenant archive: an export that
    // left them out silently was lost data after a delete and an import.
    let cold = client.list_archives(id, None).await?;
    if cold.records > 0 && cold.incarnation == tenant.placement.incarnation && !hot_only {
        anyhow::bail!(
            "tenant {id} has {} records in the cold archive, which a tenant archive does not \
             hold: bring them back first (`bulkhead archive restore {id} COLLECTION --from … \
             --to …`, see `bulkhead archive list {id}`), or pass --hot-only to export the hot \
             records alone",
            cold.records
        );
    }
    let domain = tenant.placement.domain.clone();
    let engine = client
        .list_domains()
        .await?
        .items
        .into_iter()
        .find(|d| d.name == domain)
        .map(|d| d.spec.engine.to_string())
        .unwrap_or_default();
    let collections: Vec<ArchivedCollection> = client
        .list_collections()
        .await?
        .items
        .into_iter()
        .map(|c| ArchivedCollection {
            name: c.name,
            version: c.version,
            fields: c.fields,
        })
        .collect();
    let header = Header {
        bulkhead_tenant_archive: FORMAT,
        tenant: id.clone(),
        name: tenant.name.clone(),
        tier: tenant.tier.clone(),
        isolation: tenant.placement.isolation.to_string(),
        domain: domain.to_string(),
        engine,
        exported_at: bulkhead_core::time::Clock::now(&bulkhead_core::time::SystemClock)
            .to_rfc3339(),
        collections,
    };
    // An archive that could not be finished is removed: a file is either whole or absent.
    let end = match write_archive(client, id, &tenant.placement.incarnation, &header, file).await {
        Ok(end) => end,
        Err(e) => {
            let _ = std::fs::remove_file(file);
            return Err(e);
        }
    };
    let total: u64 = end.records.values().sum();
    out.show(
        &serde_json::json!({"tenant": id, "file": file.display().to_string(), "records": end.records}),
        |_| format!("exported {total} records of tenant {id} to {}", file.display()),
    )
}

/// Writes the archive of `id`'s life `life` to `file`: the header, each collection's records
/// as they stream in, and the end line; fails if the tenant's life changed meanwhile.
async fn write_archive(
    client: &Client,
    id: &TenantId,
    life: &Incarnation,
    header: &Header,
    file: &Path,
) -> anyhow::Result<End> {
    let written =
        std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?;
    let mut gz = GzEncoder::new(std::io::BufWriter::new(written), Compression::default());
    serde_json::to_writer(&mut gz, header)?;
    gz.write_all(b"\n")?;
    let data = client.with_tenant(id.clone());
    let bar = spinner("exporting");
    let mut hasher = Sha256::new();
    let mut counts = BTreeMap::new();
    for c in &header.collections {
        let prefix = format!("{{\"collection\":\"{}\",\"record\":", c.name);
        let mut n = 0u64;
        data.export_each(&c.name, None, |record| {
            let write = |e: std::io::Error| ClientError::Decode(format!("writing: {e}"));
            for part in [prefix.as_bytes(), record, b"}\n"] {
                gz.write_all(part).map_err(write)?;
                hasher.update(part);
            }
            n += 1;
            bar.inc(1);
            Ok(())
        })
        .await
        .with_context(|| format!("exporting collection {} of tenant {id}", c.name))?;
        counts.insert(c.name.clone(), n);
    }
    // Each collection's stream stays in one life of the tenant; the same life before and
    // after all of them means the archive holds that one life only.
    let after = match client.get_tenant(id).await {
        Ok(now) => Some(now.placement.incarnation),
        Err(ClientError::Api { status: 404, .. }) => None,
        Err(e) => return Err(e.into()),
    };
    if after.as_ref() != Some(life) {
        bail!(
            "tenant {id} was deleted while it was exported (its life {life} ended): the archive would not be one tenant's, so {} was removed",
            file.display()
        );
    }
    let end = End {
        records: counts,
        sha256: hex::encode(hasher.finalize()),
    };
    serde_json::to_writer(&mut gz, &serde_json::json!({ "end": end }))?;
    gz.write_all(b"\n")?;
    let inner = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
    inner.sync_all()?;
    bar.finish_and_clear();
    Ok(end)
}

/// What the first pass found in an archive.
struct Checked {
    header: Header,
    end: End,
}

fn lines(file: &Path) -> anyhow::Result<impl Iterator<Item = std::io::Result<String>>> {
    let reader =
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    // Every gzip member is read: an archive with another appended (`cat a b`) shows its
    // second header after the end line and is refused, rather than read in part.
    Ok(BufReader::new(MultiGzDecoder::new(BufReader::new(reader))).lines())
}

/// Reads the whole archive and checks it: format, every line, counts and checksum.
fn check(file: &Path) -> anyhow::Result<Checked> {
    let damaged = |why: String| {
        anyhow::anyhow!(
            "{} is not a whole Bulkhead tenant archive: {why}",
            file.display()
        )
    };
    let mut lines = lines(file)?;
    let first = lines
        .next()
        .ok_or_else(|| damaged("it is empty".into()))?
        .map_err(|e| damaged(e.to_string()))?;
    let format = serde_json::from_str::<serde_json::Value>(&first)
        .ok()
        .and_then(|v| v["bulkhead_tenant_archive"].as_u64())
        .ok_or_else(|| damaged("no archive header".into()))?;
    if format != u64::from(FORMAT) {
        bail!(
            "{} is a tenant archive of format {format}; this release reads format {FORMAT}",
            file.display()
        );
    }
    let header: Header =
        serde_json::from_str(&first).map_err(|e| damaged(format!("header: {e}")))?;
    let known: Vec<&CollectionName> = header.collections.iter().map(|c| &c.name).collect();
    let mut hasher = Sha256::new();
    let mut counts: BTreeMap<CollectionName, u64> = BTreeMap::new();
    // 16 bytes of the SHA-256 of each (collection, record id): about 50 bytes a record.
    let mut ids: std::collections::HashSet<[u8; 16]> = std::collections::HashSet::new();
    let mut end = None;
    for (n, line) in lines.enumerate() {
        let line = line.map_err(|e| damaged(format!("line {}: {e}", n + 2)))?;
        if end.is_some() {
            return Err(damaged(format!("line {} follows the end line", n + 2)));
        }
        if line.starts_with("{\"end\"") {
            #[derive(Deserialize)]
            struct Wrapped {
                end: End,
            }
            let w: Wrapped =
                serde_json::from_str(&line).map_err(|e| damaged(format!("end line: {e}")))?;
            end = Some(w.end);
            continue;
        }
        let parsed: Line<'_> =
            serde_json::from_str(&line).map_err(|e| damaged(format!("line {}: {e}", n + 2)))?;
        if !known.contains(&&parsed.collection) {
            return Err(damaged(format!(
                "line {} is of collection {}, which the header does not list",
                n + 2,
                parsed.collection
            )));
        }
        #[derive(Deserialize)]
        struct Id<'a> {
            #[serde(borrow)]
            id: std::borrow::Cow<'a, str>,
        }
        let record: Id<'_> = serde_json::from_str(parsed.record.get())
            .map_err(|e| damaged(format!("line {}: record: {e}", n + 2)))?;
        // A record twice would be restored once and counted twice.
        let key: [u8; 16] = Sha256::new()
            .chain_update(parsed.collection.as_str())
            .chain_update([0])
            .chain_update(record.id.as_bytes())
            .finalize()[..16]
            .try_into()
            .map_err(|_| damaged("record key".into()))?;
        if !ids.insert(key) {
            return Err(damaged(format!(
                "line {} repeats record {} of collection {}",
                n + 2,
                record.id,
                parsed.collection
            )));
        }
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
        *counts.entry(parsed.collection).or_default() += 1;
    }
    let end = end.ok_or_else(|| damaged("it ends before its end line (truncated)".into()))?;
    let sum = hex::encode(hasher.finalize());
    let counted: BTreeMap<_, _> = end.records.iter().filter(|(_, n)| **n > 0).collect();
    let seen: BTreeMap<_, _> = counts.iter().collect();
    if sum != end.sha256 || counted != seen {
        return Err(damaged(
            "its records do not match the counts and checksum of its end line (edited)".into(),
        ));
    }
    Ok(Checked { header, end })
}

/// `bulkhead tenant import`.
pub(crate) async fn import(
    client: &Client,
    out: &Printer,
    file: &Path,
    rename: Option<TenantId>,
    tier: Option<TierName>,
) -> anyhow::Result<()> {
    let path = file.to_owned();
    let Checked { header, end } = tokio::task::spawn_blocking(move || check(&path)).await??;
    let id = rename.unwrap_or_else(|| header.tenant.clone());
    // Every archived field must be live, with the same type.
    let live = client.list_collections().await?.items;
    for c in &header.collections {
        let Some(now) = live.iter().find(|l| l.name == c.name) else {
            if end.records.get(&c.name).copied().unwrap_or(0) > 0 {
                bail!(
                    "collection {} is not defined on this server: create it first",
                    c.name
                );
            }
            continue;
        };
        for (field, spec) in &c.fields {
            match now.fields.get(field) {
                Some(s) if s.field_type == spec.field_type => {}
                _ => bail!(
                    "field {field} of collection {} is not on this server as {}: the archive's records would not fit",
                    c.name,
                    spec.field_type
                ),
            }
        }
    }
    match client.get_tenant(&id).await {
        Ok(_) => {
            bail!("tenant {id} exists: an import creates its tenant (choose another id with --as)")
        }
        Err(ClientError::Api { status: 404, .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let created = client
        .create_tenant(&CreateTenant {
            id: id.clone(),
            name: header.name.clone(),
            tier: tier.unwrap_or_else(|| header.tier.clone()),
            labels: Default::default(),
        })
        .await?;
    // Every write names the life this import created: if the tenant is deleted (and maybe
    // re-created by someone else) meanwhile, nothing reaches the other life.
    let life = created.placement.incarnation;
    let total: u64 = end.records.values().sum();
    let restored = restore_all(client, file, &id, &life, total).await;
    if let Err(e) = restored {
        // Nothing half-done: the tenant the import made goes again (that life only).
        return Err(match client.delete_tenant_life(&id, &life).await {
            Ok(()) => e.context(format!(
                "import into {id} failed; the tenant was removed again"
            )),
            Err(gone) => e.context(format!(
                "import into {id} failed; the tenant it created was not removed ({gone})"
            )),
        });
    }
    out.show(
        &serde_json::json!({"tenant": id, "records": end.records}),
        |_| {
            format!(
                "imported {total} records into tenant {id} (from {} {} on {})",
                header.isolation, header.engine, header.domain
            )
        },
    )
}

async fn restore_all(
    client: &Client,
    file: &Path,
    id: &TenantId,
    life: &Incarnation,
    total: u64,
) -> anyhow::Result<()> {
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("importing [{bar:30}] {pos}/{len} records {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(CollectionName, Vec<serde_json::Value>)>(4);
    let path = file.to_owned();
    // The file is read on a blocking thread, a batch at a time.
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut batch: Vec<serde_json::Value> = Vec::new();
        let mut bytes = 0;
        let mut current: Option<CollectionName> = None;
        for line in lines(&path)?.skip(1) {
            let line = line?;
            if line.starts_with("{\"end\"") {
                break;
            }
            let parsed: Line<'_> = serde_json::from_str(&line)?;
            let full = batch.len() >= BATCH || bytes + line.len() > BATCH_BYTES;
            if current.as_ref() != Some(&parsed.collection) || full {
                if let Some(c) = current.take()
                    && !batch.is_empty()
                    && tx.blocking_send((c, std::mem::take(&mut batch))).is_err()
                {
                    return Ok(());
                }
                bytes = 0;
            }
            current = Some(parsed.collection);
            bytes += line.len();
            batch.push(serde_json::from_str(parsed.record.get())?);
        }
        if let Some(c) = current
            && !batch.is_empty()
        {
            let _ = tx.blocking_send((c, batch));
        }
        Ok(())
    });
    // A few requests in flight (a restore replaces by id, so their order does not matter).
    let mut inflight = tokio::task::JoinSet::new();
    while let Some((collection, records)) = rx.recv().await {
        while inflight.len() >= IN_FLIGHT {
            if let Some(done) = inflight.join_next().await {
                bar.inc(done??);
            }
        }
        let (client, id, life) = (client.clone(), id.clone(), life.clone());
        inflight.spawn(async move {
            let n = records.len() as u64;
            let request = RestoreRecords {
                collection,
                records,
                incarnation: Some(life),
            };
            client.restore_records(&id, &request).await?;
            Ok::<u64, ClientError>(n)
        });
    }
    while let Some(done) = inflight.join_next().await {
        bar.inc(done??);
    }
    reader.await??;
    bar.finish_and_clear();
    Ok(())
}
