//! Snapshots for backups: every database file of the domain copied with `VACUUM INTO`, which
//! reads one consistent state in one read transaction (WAL: writers go on meanwhile) and
//! writes a compact, self-contained file — no WAL beside it to lose.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use bulkhead_engine::{SnapshotFile, SnapshotProgress};
use rusqlite::{Connection, OpenFlags};

use crate::{Inner, StorageError};

/// The database files under `dir`: the pool, bridge files and silos (not their `-wal` and
/// `-shm` companions), sorted.
fn databases(dir: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let mut out = Vec::new();
    for sub in [dir.to_owned(), dir.join("silos")] {
        let entries = match std::fs::read_dir(&sub) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_file() && path.extension().is_some_and(|e| e == "db") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A consistent copy of one database file at `to`.
pub(crate) fn copy_database(from: &Path, to: &Path) -> Result<u64, StorageError> {
    let conn = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(30))?;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let target = to
        .to_str()
        .ok_or_else(|| StorageError::Corrupt(format!("{} is not UTF-8", to.display())))?;
    conn.execute("VACUUM INTO ?1", [target])?;
    let file = std::fs::File::open(to)?;
    file.sync_all()?;
    Ok(file.metadata()?.len())
}

impl Inner {
    pub(crate) fn snapshot(
        &self,
        dest: &Path,
        progress: &SnapshotProgress,
    ) -> Result<Vec<SnapshotFile>, StorageError> {
        let dir = &self.config.dir;
        let files = databases(dir)?;
        progress
            .files_total
            .fetch_add(files.len() as u64, Ordering::Relaxed);
        let mut out = Vec::with_capacity(files.len());
        for from in files {
            let relative = from
                .strip_prefix(dir)
                .map_err(|_| {
                    StorageError::Corrupt(format!("{} outside the domain", from.display()))
                })?
                .to_owned();
            // A silo removed since the listing (its tenant deleted before the backup began,
            // or a spare discarded) is not part of the snapshot.
            if !from.exists() {
                progress.files_done.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let bytes = match copy_database(&from, &dest.join(&relative)) {
                Ok(bytes) => bytes,
                // A ready-made spare renamed to its new tenant meanwhile: that tenant was
                // created after the catalog's copy, so it is not in the backup either.
                Err(_) if !from.exists() => {
                    progress.files_done.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => return Err(e),
            };
            progress.files_done.fetch_add(1, Ordering::Relaxed);
            progress.bytes.fetch_add(bytes, Ordering::Relaxed);
            out.push(SnapshotFile {
                path: relative,
                bytes,
            });
        }
        Ok(out)
    }
}
