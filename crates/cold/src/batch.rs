//! One batch of a retention pass, in order:
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
//! undone (`recover`). After, each record of the files is either gone from the hot store (it
//! stays archived) or hot at another version (a write came after the read: it leaves the
//! archive).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use bulkhead_catalog::Life;
use bulkhead_core::error::Error;
use bulkhead_core::record::Record;
use bulkhead_core::{CollectionName, RecordId};

use crate::files::{aged_at, file_row, measure, month_of, write_file};
use crate::format::{ColdFile, Columns, FileMeta};
use crate::ledger::{self, FileRow, State};
use crate::{Cold, blocking, remove_all};

/// What a batch left in the archive.
#[derive(Default)]
pub(crate) struct Done {
    pub(crate) records: u64,
    pub(crate) files: u64,
    pub(crate) bytes: u64,
}

pub(crate) async fn archive_batch(
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

/// Drops a batch that removed nothing: its files, then its rows.
pub(crate) async fn undo(
    cold: &Cold,
    root: &Path,
    batch: &str,
    paths: Vec<String>,
) -> Result<(), Error> {
    remove_all(cold, root, paths).await?;
    let batch = batch.to_owned();
    cold.curator
        .ledger(move |tx| ledger::delete_batch(tx, &batch))
        .await
}

/// Seals a batch with the records `removed` from the hot store: each file keeps only those
/// (rewritten when it held others, dropped when it holds none).
pub(crate) async fn finish(
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
