//! What a crash or a cut-off left: batches and restores whose lease ran out are finished or
//! undone, judged by what the hot store holds; files no ledger row names and the directories
//! of ended tenant lives are removed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use bulkhead_catalog::Life;
use bulkhead_core::error::Error;
use bulkhead_core::record::Record;
use bulkhead_core::{Incarnation, RecordId, TenantId};

use crate::batch::{finish, undo};
use crate::format::{self, ColdFile};
use crate::ledger::{self, FileRow, State};
use crate::{Cold, blocking, io_error, remove_file};

/// Finishes or undoes the batches and restores whose lease ran out. Returns how many.
pub(crate) async fn recover(cold: &Cold, root: &Path) -> Result<u64, Error> {
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
pub(crate) async fn sweep(cold: &Cold, root: &Path) -> Result<u64, Error> {
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
