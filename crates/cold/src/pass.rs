//! One retention pass: finish or undo what a crashed pass left, sweep files no life owns,
//! then archive every retained collection of every active tenant, a batch at a time.
//!
//! A batch, in order:
//! 1. its files are recorded `pending` in the ledger (only while the life is current and
//!    active, and no other batch of the collection is unsealed);
//! 2. each file is written beside its place, synced, read back and compared, then renamed
//!    into place (and its directory synced);
//! 3. the records are removed from the hot store in one transaction, each only while it is
//!    still at the version archived;
//! 4. files are rewritten without any record a write kept hot (or removed when none is
//!    left), and the batch is sealed — or, when the life ended meanwhile, its files removed.
//!
//! A crash before 3 committed leaves every record hot at its archived version: the batch is
//! undone. After, each record of the files is either gone from the hot store (it stays
//! archived) or hot at another version (a write came after the read: it leaves the archive).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bulkhead_api::{RetentionReport, RetentionRun, RunState};
use bulkhead_catalog::Life;
use bulkhead_core::error::Error;
use bulkhead_core::model::{Retention, TenantStatus};
use bulkhead_core::record::{FieldValue, Record};
use bulkhead_core::time::Timestamp;
use bulkhead_core::{CollectionName, Incarnation, RecordId, TenantId};

use crate::format::{self, ColdFile, Columns, FileMeta};
use crate::ledger::{self, FileRow, State};
use crate::{Cold, blocking, io_error, month_dir, remove_all, remove_file, sync_dir};

const DAY_MICROS: i64 = 86_400_000_000;

/// `POST /v1/retention:run`: starts a pass now (`202`), for a platform principal allowed to
/// manage tenants. One pass at a time per server: while one runs, `409 retention_running`
/// names it.
pub async fn run_now(
    cold: &Cold,
    ctx: &bulkhead_catalog::Ctx,
    request: bulkhead_api::RunRetention,
) -> Result<RetentionRun, Error> {
    cold.curator.authorize(
        ctx,
        bulkhead_core::access::ControlAction::ManageTenants,
        "retention.run",
        request.tenant.as_ref(),
    )?;
    cold.root()?;
    if let Some(tenant) = &request.tenant
        && cold.curator.life_of(tenant).await?.is_none()
    {
        return Err(Error::not_found(
            "tenant_not_found",
            format!("tenant '{tenant}' does not exist"),
        ));
    }
    start(cold, request.tenant)
}

/// `GET /v1/retention/runs/{id}`: a pass this server runs or ran (the last 20 are kept).
pub fn get_run(cold: &Cold, ctx: &bulkhead_catalog::Ctx, id: &str) -> Result<RetentionRun, Error> {
    cold.curator.authorize(
        ctx,
        bulkhead_core::access::ControlAction::ReadTenants,
        "retention.get",
        None,
    )?;
    cold.runs
        .lock()
        .iter()
        .find(|r| r.id == id)
        .cloned()
        .ok_or_else(|| {
            Error::not_found(
                "retention_run_not_found",
                "no such retention run on this server",
            )
        })
}

/// Runs kept per server, the one running included.
const RUNS_KEPT: usize = 20;

/// Starts a pass in the background, over every tenant or only `only`.
pub(crate) fn start(cold: &Cold, only: Option<TenantId>) -> Result<RetentionRun, Error> {
    let run = {
        let mut runs = cold.runs.lock();
        if let Some(running) = runs.iter().find(|r| r.state == RunState::Running) {
            return Err(Error::conflict(
                "retention_running",
                format!("retention run {} is under way on this server", running.id),
            ));
        }
        let run = RetentionRun {
            id: uuid::Uuid::now_v7().simple().to_string(),
            state: RunState::Running,
            tenant: only.clone(),
            started_at: cold.curator.now(),
            finished_at: None,
            collections_total: 0,
            collections_done: 0,
            report: RetentionReport::default(),
            error: None,
        };
        runs.push(run.clone());
        let excess = runs.len().saturating_sub(RUNS_KEPT);
        runs.drain(..excess);
        run
    };
    let (cold, progress) = (cold.clone(), Progress(run.id.clone()));
    tokio::spawn(async move {
        let started = Instant::now();
        let result = pass(&cold, only.as_ref(), &progress).await;
        let finished = cold.curator.now();
        let view = progress.update(&cold, |run| {
            run.report.elapsed_ms =
                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            run.finished_at = Some(finished);
            match &result {
                Ok(()) => run.state = RunState::Done,
                Err(e) => {
                    run.state = RunState::Failed;
                    run.error = Some(e.message.clone());
                }
            }
        });
        if let Some(run) = view {
            let r = &run.report;
            match &result {
                Ok(()) => tracing::info!(
                    archived = r.archived,
                    files = r.files,
                    busy = r.busy,
                    failed = r.failed,
                    recovered = r.recovered,
                    swept = r.swept,
                    elapsed_ms = r.elapsed_ms,
                    "retention pass"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "retention pass failed; next at the next interval")
                }
            }
        }
    });
    Ok(run)
}

/// A running pass's entry in `Cold::runs`.
pub(crate) struct Progress(String);

impl Progress {
    fn update(&self, cold: &Cold, f: impl FnOnce(&mut RetentionRun)) -> Option<RetentionRun> {
        let mut runs = cold.runs.lock();
        let run = runs.iter_mut().find(|r| r.id == self.0)?;
        f(run);
        Some(run.clone())
    }

    fn report(&self, cold: &Cold, f: impl FnOnce(&mut RetentionReport)) {
        self.update(cold, |run| f(&mut run.report));
    }
}

/// One pass, over every tenant or only `only`.
async fn pass(cold: &Cold, only: Option<&TenantId>, progress: &Progress) -> Result<(), Error> {
    let root = cold.root()?;
    let _one = cold.running.lock().await;
    let recovered = recover(cold, &root).await?;
    let swept = sweep(cold, &root).await?;
    progress.report(cold, |r| {
        r.recovered = recovered;
        r.swept = swept;
    });
    let retained: Vec<_> = cold
        .curator
        .retained()
        .await?
        .into_iter()
        .filter(|r| only.is_none_or(|t| *t == r.life.tenant))
        .collect();
    let total = retained
        .iter()
        .filter(|r| r.status == TenantStatus::Active)
        .map(|r| r.rules.len() as u64)
        .sum();
    progress.update(cold, |run| run.collections_total = total);
    for retained in retained {
        if retained.status != TenantStatus::Active {
            progress.report(cold, |r| r.busy += 1);
            continue;
        }
        for (collection, rule) in &retained.rules {
            let result =
                archive_collection(cold, &root, &retained.life, collection, rule, progress).await;
            progress.update(cold, |run| {
                run.collections_done += 1;
                run.report.collections += 1;
                match &result {
                    Ok(()) => {}
                    Err(e) if e.code == "tenant_busy" => run.report.busy += 1,
                    Err(e) if e.code == "tenant_life_ended" => {}
                    Err(_) => run.report.failed += 1,
                }
            });
            if let Err(e) = result
                && !matches!(&*e.code, "tenant_busy" | "tenant_life_ended")
            {
                tracing::warn!(
                    tenant = %retained.life.tenant,
                    collection = %collection,
                    error = %e,
                    "retention: archiving failed; tried again next pass"
                );
            }
        }
    }
    Ok(())
}

/// The value a record ages by.
pub(crate) fn aged_at(record: &Record, field: &str) -> Option<Timestamp> {
    match field {
        "created_at" => Some(record.created_at),
        "updated_at" => Some(record.updated_at),
        name => match record.fields.iter().find(|(n, _)| n.as_str() == name) {
            Some((_, FieldValue::Timestamp(t))) => Some(*t),
            _ => None,
        },
    }
}

fn month_of(at: Timestamp) -> String {
    at.to_rfc3339().chars().take(7).collect()
}

/// The first instant of `at`'s month (UTC).
fn month_start(at: Timestamp) -> Timestamp {
    let month = month_of(at);
    Timestamp::parse_rfc3339(&format!("{month}-01T00:00:00Z")).unwrap_or(at)
}

/// The first instant of the month after the one `from` starts.
fn next_month(from: Timestamp) -> Timestamp {
    let text = month_of(from);
    let (year, month) = text.split_once('-').unwrap_or(("0", "0"));
    let (year, month): (i64, u32) = (year.parse().unwrap_or(0), month.parse().unwrap_or(0));
    let (year, month) = if month >= 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    Timestamp::parse_rfc3339(&format!("{year:04}-{month:02}-01T00:00:00Z"))
        // Past year 9999: no month follows.
        .unwrap_or(Timestamp::from_micros(i64::MAX))
}

async fn archive_collection(
    cold: &Cold,
    root: &Path,
    life: &Life,
    collection: &CollectionName,
    rule: &Retention,
    progress: &Progress,
) -> Result<(), Error> {
    let definition = cold.curator.definition(life, collection).await?;
    rule.validate(collection, Some(&definition))?;
    let now = cold.now_micros();
    let cutoff = Timestamp::from_micros(
        now.saturating_sub(i64::from(rule.hot_days.get()).saturating_mul(DAY_MICROS)),
    );
    let holds = {
        let (life, collection) = (life.clone(), collection.clone());
        cold.curator
            .ledger(move |tx| ledger::holds(tx, &life, &collection, now))
            .await?
    };
    let field = rule.field.as_str();
    let mut filter = format!("{field} < {}", cutoff.to_rfc3339());
    for hold in &holds {
        filter.push_str(&format!(
            " && !({field} >= {} && {field} < {})",
            Timestamp::from_micros(hold.from).to_rfc3339(),
            Timestamp::from_micros(hold.to).to_rfc3339()
        ));
    }
    // Month by month from the oldest aged record, so each batch fills one month's file.
    let oldest = cold
        .curator
        .first(life, collection, &filter, field)
        .await?
        .and_then(|r| aged_at(&r, field));
    let mut month = oldest.map(month_start);
    let mut after: Option<RecordId> = None;
    let mut here = Done::default();
    let result = loop {
        let Some(from) = month.filter(|m| *m < cutoff) else {
            break Ok(());
        };
        let to = next_month(from);
        let bounded = format!(
            "{filter} && {field} >= {} && {field} < {}",
            from.to_rfc3339(),
            to.to_rfc3339()
        );
        let page = match cold
            .curator
            .page(
                life,
                collection,
                &bounded,
                after.clone(),
                cold.settings.batch,
            )
            .await
        {
            Ok(page) => page,
            Err(e) => break Err(e),
        };
        let full = page.len() == cold.settings.batch as usize;
        let Some(last) = page.last() else {
            (month, after) = (Some(to), None);
            continue;
        };
        after = Some(last.id.clone());
        let meta = FileMeta {
            tenant: life.tenant.to_string(),
            incarnation: life.incarnation.to_string(),
            collection: collection.to_string(),
            version: definition.version,
            field: field.to_owned(),
        };
        let done = match archive_batch(cold, root, life, meta, Columns::of(&definition), page).await
        {
            Ok(done) => done,
            Err(e) => break Err(e),
        };
        here.records += done.records;
        here.files += done.files;
        here.bytes += done.bytes;
        progress.report(cold, |r| {
            r.archived += done.records;
            r.files += done.files;
            r.bytes += done.bytes;
        });
        if !full {
            (month, after) = (Some(to), None);
        }
    };
    if here.records > 0 {
        cold.curator
            .audit(
                None,
                "retention.archive",
                life,
                serde_json::json!({
                    "collection": collection,
                    "records": here.records,
                    "files": here.files,
                    "bytes": here.bytes,
                    "before": cutoff,
                }),
            )
            .await?;
    }
    result
}

/// What a batch left in the archive.
#[derive(Default)]
struct Done {
    records: u64,
    files: u64,
    bytes: u64,
}

async fn archive_batch(
    cold: &Cold,
    root: &Path,
    life: &Life,
    meta: FileMeta,
    columns: Columns,
    records: Vec<Record>,
) -> Result<Done, Error> {
    let collection = CollectionName::parse(&meta.collection)?;
    let batch = uuid::Uuid::now_v7().simple().to_string();
    let mut months: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for record in records {
        let Some(at) = aged_at(&record, &meta.field) else {
            continue;
        };
        months.entry(month_of(at)).or_default().push(record);
    }
    let lease_until = cold.lease_until();
    let files: Vec<(FileRow, ColdFile)> = months
        .into_iter()
        .map(|(month, records)| {
            let row = file_row(
                &batch,
                life,
                &collection,
                &month,
                &meta.field,
                &records,
                lease_until,
            );
            let file = ColdFile {
                meta: meta.clone(),
                columns: columns.clone(),
                records,
            };
            (row, file)
        })
        .collect();
    // 1. Recorded before anything is written.
    let claimed = {
        let (life, collection, rows) = (
            life.clone(),
            collection.clone(),
            files.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
        );
        let now = cold.now_micros();
        cold.curator
            .ledger(move |tx| {
                if !ledger::is_current(tx, &life, true)? || ledger::busy(tx, &life, &collection)? {
                    return Ok(false);
                }
                for row in &rows {
                    ledger::insert(tx, row, now)?;
                }
                Ok(true)
            })
            .await?
    };
    if !claimed {
        return Err(Error::conflict(
            "tenant_busy",
            "another batch of this collection is unfinished",
        ));
    }
    // 2. Written, synced, read back.
    let written = {
        let (root, files) = (root.to_path_buf(), files.clone());
        blocking(move || {
            for (row, file) in &files {
                write_file(&root, &row.path, file)?;
            }
            Ok(())
        })
        .await
    };
    if let Err(e) = written {
        undo(
            cold,
            root,
            &batch,
            files.iter().map(|(r, _)| r.path.clone()).collect(),
        )
        .await?;
        return Err(e);
    }
    cold.crash_point("written");
    // 3. The hot copies removed, each only at the version archived. An error leaves the
    //    batch pending: the next pass after the lease finds out what was removed.
    let versions: Vec<(RecordId, i64)> = files
        .iter()
        .flat_map(|(_, f)| f.records.iter().map(|r| (r.id.clone(), r.version)))
        .collect();
    let removed: HashSet<RecordId> = cold
        .curator
        .retire(life, &collection, &versions)
        .await?
        .into_iter()
        .collect();
    cold.crash_point("retired");
    // 4. Sealed with what was removed.
    finish(cold, root, life, &batch, files, &removed).await
}

pub(crate) fn file_row(
    batch: &str,
    life: &Life,
    collection: &CollectionName,
    month: &str,
    field: &str,
    records: &[Record],
    lease_until: i64,
) -> FileRow {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let path = month_dir(life, collection.as_str(), month).join(format!("{id}.parquet"));
    let ats = records
        .iter()
        .filter_map(|r| aged_at(r, field))
        .map(|t| t.as_micros());
    FileRow {
        id,
        batch: batch.to_owned(),
        life: life.clone(),
        collection: collection.clone(),
        month: month.to_owned(),
        path: path.to_string_lossy().into_owned(),
        records: records.len() as u64,
        bytes: 0,
        min_at: ats.clone().min().unwrap_or(0),
        max_at: ats.max().unwrap_or(0),
        sha256: String::new(),
        state: State::Pending,
        lease_until,
    }
}

/// Writes `file` at `rel` under `root`: beside its place first, synced, read back and
/// compared, then renamed into place. Returns its size and SHA-256.
pub(crate) fn write_file(root: &Path, rel: &str, file: &ColdFile) -> Result<(u64, String), Error> {
    let path = root.join(rel);
    let dir = path
        .parent()
        .ok_or_else(|| Error::internal().with_message("a cold file path without a directory"))?;
    std::fs::create_dir_all(dir).map_err(|e| io_error("creating a cold archive directory", e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let fail = |e: format::FormatError| io_error("writing a cold archive file", e);
    format::write(&tmp, &file.meta, &file.columns, &file.records).map_err(fail)?;
    let back = format::read(&tmp).map_err(fail)?;
    if back.records != file.records {
        remove_file(&tmp)?;
        return Err(Error::internal()
            .with_message("a cold archive file read back differs from what was written"));
    }
    std::fs::rename(&tmp, &path).map_err(|e| io_error("placing a cold archive file", e))?;
    sync_dir(dir)?;
    let bytes = std::fs::metadata(&path)
        .map_err(|e| io_error("reading a cold archive file's size", e))?
        .len();
    let sha = bulkhead_catalog::file_sha256(&path)
        .map_err(|e| io_error("hashing a cold archive file", e))?;
    Ok((bytes, sha))
}

/// Drops a batch that removed nothing: its files, then its rows.
async fn undo(cold: &Cold, root: &Path, batch: &str, paths: Vec<String>) -> Result<(), Error> {
    remove_all(cold, root, paths).await?;
    let batch = batch.to_owned();
    cold.curator
        .ledger(move |tx| ledger::delete_batch(tx, &batch))
        .await
}

/// Seals a batch with the records `removed` from the hot store: each file keeps only those
/// (rewritten when it held others, dropped when it holds none).
async fn finish(
    cold: &Cold,
    root: &Path,
    life: &Life,
    batch: &str,
    files: Vec<(FileRow, ColdFile)>,
    removed: &HashSet<RecordId>,
) -> Result<Done, Error> {
    let lease_until = cold.lease_until();
    let (root_buf, removed) = (root.to_path_buf(), removed.clone());
    let (finals, superseded, created) = blocking(move || {
        let (mut finals, mut superseded, mut created) = (Vec::new(), Vec::new(), Vec::new());
        for (row, mut file) in files {
            let before = file.records.len();
            file.records.retain(|r| removed.contains(&r.id));
            if file.records.is_empty() {
                superseded.push(row.path);
                continue;
            }
            let mut sealed = if file.records.len() == before {
                row
            } else {
                superseded.push(row.path.clone());
                let month = row.month.clone();
                let fresh = file_row(
                    &row.batch,
                    &row.life,
                    &row.collection,
                    &month,
                    &file.meta.field,
                    &file.records,
                    lease_until,
                );
                write_file(&root_buf, &fresh.path, &file)?;
                created.push(fresh.path.clone());
                fresh
            };
            let (bytes, sha) = measure(&root_buf.join(&sealed.path))?;
            sealed.bytes = bytes;
            sealed.sha256 = sha;
            sealed.state = State::Sealed;
            finals.push(sealed);
        }
        Ok((finals, superseded, created))
    })
    .await?;
    let done = Done {
        records: finals.iter().map(|r| r.records).sum(),
        files: finals.len() as u64,
        bytes: finals.iter().map(|r| r.bytes).sum(),
    };
    let sealed = {
        let (life, batch, rows) = (life.clone(), batch.to_owned(), finals.clone());
        let now = cold.now_micros();
        cold.curator
            .ledger(move |tx| {
                if !ledger::is_current(tx, &life, false)? {
                    ledger::delete_batch(tx, &batch)?;
                    return Ok(false);
                }
                ledger::delete_batch(tx, &batch)?;
                for row in &rows {
                    ledger::insert(tx, row, now)?;
                }
                Ok(true)
            })
            .await?
    };
    let doomed: Vec<String> = if sealed {
        superseded
    } else {
        // The life ended while the batch was written: nothing of it stays.
        superseded
            .into_iter()
            .chain(created)
            .chain(finals.into_iter().map(|r| r.path))
            .collect()
    };
    remove_all(cold, root, doomed).await?;
    Ok(if sealed { done } else { Done::default() })
}

fn measure(path: &Path) -> Result<(u64, String), Error> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| io_error("reading a cold archive file's size", e))?
        .len();
    let sha = bulkhead_catalog::file_sha256(path)
        .map_err(|e| io_error("hashing a cold archive file", e))?;
    Ok((bytes, sha))
}

/// Finishes or undoes the batches and restores whose lease ran out. Returns how many.
async fn recover(cold: &Cold, root: &Path) -> Result<u64, Error> {
    let now = cold.now_micros();
    let rows = cold
        .curator
        .ledger(move |tx| ledger::abandoned(tx, now))
        .await?;
    let mut batches: BTreeMap<String, Vec<FileRow>> = BTreeMap::new();
    for row in rows {
        batches.entry(row.batch.clone()).or_default().push(row);
    }
    let mut recovered = 0;
    for (batch, rows) in batches {
        let (b, until) = (batch.clone(), cold.lease_until());
        let taken = cold
            .curator
            .ledger(move |tx| ledger::take_over(tx, &b, now, until))
            .await?;
        if !taken {
            continue;
        }
        let result = if rows.iter().any(|r| r.state == State::Restoring) {
            crate::restore::recover(cold, root, rows).await
        } else {
            recover_batch(cold, root, &batch, rows).await
        };
        match result {
            Ok(()) => recovered += 1,
            Err(e) => {
                tracing::warn!(batch = %batch, error = %e, "retention: an unfinished batch could not be settled yet")
            }
        }
    }
    Ok(recovered)
}

async fn recover_batch(
    cold: &Cold,
    root: &Path,
    batch: &str,
    rows: Vec<FileRow>,
) -> Result<(), Error> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let (life, collection) = (first.life.clone(), first.collection.clone());
    let paths: Vec<String> = rows.iter().map(|r| r.path.clone()).collect();
    let current = {
        let life = life.clone();
        cold.curator
            .ledger(move |tx| ledger::is_current(tx, &life, false))
            .await?
    };
    if !current {
        return undo(cold, root, batch, paths).await;
    }
    // Every file must be whole: the removal comes only after all are written.
    let files = {
        let (root, rows) = (root.to_path_buf(), rows.clone());
        blocking(move || {
            Ok(rows
                .into_iter()
                .map(|row| {
                    let file = format::read(&root.join(&row.path)).ok();
                    (row, file)
                })
                .collect::<Vec<_>>())
        })
        .await?
    };
    if files.iter().any(|(_, f)| f.is_none()) {
        return undo(cold, root, batch, paths).await;
    }
    let files: Vec<(FileRow, ColdFile)> = files
        .into_iter()
        .filter_map(|(row, file)| Some((row, file?)))
        .collect();
    let archived: HashMap<RecordId, &Record> = files
        .iter()
        .flat_map(|(_, f)| f.records.iter().map(|r| (r.id.clone(), r)))
        .collect();
    let ids: Vec<RecordId> = archived.keys().cloned().collect();
    let hot = match cold.curator.hot(&life, &collection, &ids).await {
        Ok(hot) => hot,
        Err(e) if e.code == "tenant_life_ended" => return undo(cold, root, batch, paths).await,
        Err(e) => return Err(e),
    };
    let untouched = hot.iter().any(|(id, (version, updated_at))| {
        archived
            .get(id)
            .is_some_and(|r| r.version == *version && r.updated_at == *updated_at)
    });
    if untouched {
        // The removal never committed: every record is still hot as archived.
        return undo(cold, root, batch, paths).await;
    }
    let removed: HashSet<RecordId> = ids.into_iter().filter(|id| !hot.contains_key(id)).collect();
    finish(cold, root, &life, batch, files, &removed)
        .await
        .map(|_| ())
}

/// Removes what no current life owns: directories of ended lives, and files the ledger does
/// not know that are older than the lease (a write cut off before it was recorded or placed).
async fn sweep(cold: &Cold, root: &Path) -> Result<u64, Error> {
    let root_buf = root.to_path_buf();
    let lives: Vec<(Life, PathBuf)> = blocking(move || {
        let mut out = Vec::new();
        let Ok(tenants) = std::fs::read_dir(&root_buf) else {
            return Ok(out);
        };
        for tenant in tenants.flatten() {
            let Ok(id) = TenantId::parse(&tenant.file_name().to_string_lossy()) else {
                continue;
            };
            let Ok(lives) = std::fs::read_dir(tenant.path()) else {
                continue;
            };
            for life in lives.flatten() {
                if let Ok(incarnation) = Incarnation::parse(&life.file_name().to_string_lossy()) {
                    out.push((
                        Life {
                            tenant: id.clone(),
                            incarnation,
                        },
                        life.path(),
                    ));
                }
            }
        }
        Ok(out)
    })
    .await?;
    let mut swept = 0;
    let grace = cold.settings.lease.saturating_mul(2);
    for (life, dir) in lives {
        let (l, life_for_paths) = (life.clone(), life.clone());
        let (current, known) = cold
            .curator
            .ledger(move |tx| {
                let current = ledger::is_current(tx, &l, false)?;
                Ok((current, ledger::paths(tx, &life_for_paths)?))
            })
            .await?;
        let root = root.to_path_buf();
        let fence = cold.curator.removal_fence().await;
        swept += blocking(move || {
            let _fence = fence;
            if !current {
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| io_error("removing an ended life's cold archive", e))?;
                if let Some(tenant) = dir.parent() {
                    // Named by the tenant id: gone too when no other life is in it.
                    let _ = std::fs::remove_dir(tenant);
                }
                return Ok(1);
            }
            let known: HashSet<String> = known.into_iter().collect();
            let mut swept = 0;
            let mut stack = vec![dir];
            while let Some(dir) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                        continue;
                    }
                    let rel = path
                        .strip_prefix(&root)
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let old = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|m| m.elapsed().ok())
                        .is_some_and(|age| age > grace);
                    if old && !known.contains(&rel) {
                        remove_file(&path)?;
                        swept += 1;
                    }
                }
            }
            Ok(swept)
        })
        .await?;
    }
    Ok(swept)
}
