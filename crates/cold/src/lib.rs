//! Retention and the cold archive.
//!
//! A tier may keep a collection's records hot for a number of days, counted from a timestamp
//! field (`TierSpec::retention`). The retention job ([`runs`], [`pass`], [`batch`], [`recover`]) moves records past the window
//! into the tenant life's cold archive — Parquet files with zstd compression ([`format`]),
//! one per batch, collection and month, under `<cold dir>/<tenant>/<incarnation>/` — and
//! removes them from the hot store only after their file is written, synced and read back.
//! [`restore`] lists the archive and brings ranges back.
//!
//! Crash safety rests on the ledger ([`ledger`]): a batch's files are recorded `pending`
//! before they are written, and sealed once the hot copies are gone; a batch a crash left
//! pending is finished or undone by the next pass, judged by what the hot store still holds.
//! Nothing here constructs a tenant scope: the catalog's [`Curator`] reaches the records,
//! for one life at a time.

mod batch;
mod files;
pub mod format;
pub mod ledger;
mod pass;
mod progress;
mod recover;
pub mod restore;
pub mod runs;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bulkhead_catalog::{Catalog, Curator, Life};
use bulkhead_core::error::Error;

/// How the retention job runs.
#[derive(Debug, Clone)]
pub struct ColdSettings {
    /// How often a pass runs; `None`: only on demand (`POST /v1/retention:run`).
    pub every: Option<Duration>,
    /// Records read, archived and removed at once.
    pub batch: u32,
    /// How long a server may take over one batch before another may finish or undo it.
    pub lease: Duration,
    /// For crash tests (`BULKHEAD_RETENTION_CRASH`): the process aborts at this step of the
    /// first batch or restore that reaches it: `written` (files placed, nothing removed),
    /// `retired` (hot copies removed, batch not sealed) or `restored` (records written
    /// back, file not rewritten).
    pub crash_at: Option<String>,
}

impl Default for ColdSettings {
    fn default() -> Self {
        ColdSettings {
            every: Some(Duration::from_secs(3600)),
            batch: 10_000,
            lease: Duration::from_secs(120),
            crash_at: None,
        }
    }
}

/// The retention job and the archive's operations, for one server.
#[derive(Clone)]
pub struct Cold {
    curator: Curator,
    settings: ColdSettings,
    /// One pass or restore at a time on this server.
    running: Arc<tokio::sync::Mutex<()>>,
    /// The passes this server runs and ran lately.
    runs: Arc<parking_lot::Mutex<Vec<bulkhead_api::RetentionRun>>>,
}

impl Cold {
    pub fn new(catalog: &Catalog, settings: ColdSettings) -> Self {
        Cold {
            curator: catalog.curator(),
            settings,
            running: Arc::default(),
            runs: Arc::default(),
        }
    }

    /// Starts a pass every `settings.every` (the first after one interval) until the server
    /// stops; one already running (asked for on demand) makes it wait for the next interval.
    pub fn spawn(&self) {
        let Some(every) = self.settings.every else {
            return;
        };
        if self.curator.cold_dir().is_none() {
            return;
        }
        let cold = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = runs::start(&cold, None) {
                    tracing::info!(error = %e, "retention: no pass started this interval");
                }
            }
        });
    }

    /// Aborts the process at `step` when a crash test asked for it.
    fn crash_point(&self, step: &str) {
        if self.settings.crash_at.as_deref() == Some(step) {
            tracing::error!(step, "BULKHEAD_RETENTION_CRASH: aborting");
            std::process::abort();
        }
    }

    fn root(&self) -> Result<PathBuf, Error> {
        self.curator.cold_dir().ok_or_else(|| {
            Error::conflict(
                "no_cold_archive",
                "this server keeps no cold archive (set [retention] dir or run with a data directory)",
            )
        })
    }

    fn now_micros(&self) -> i64 {
        self.curator.now().as_micros()
    }

    fn lease_until(&self) -> i64 {
        let lease = i64::try_from(self.settings.lease.as_micros()).unwrap_or(i64::MAX);
        self.now_micros().saturating_add(lease)
    }
}

/// The directory of one collection and month of a life's archive, relative to the root.
fn month_dir(life: &Life, collection: &str, month: &str) -> PathBuf {
    bulkhead_catalog::life_dir(Path::new(""), life)
        .join(collection)
        .join(month)
}

fn io_error(what: &str, e: impl std::fmt::Display) -> Error {
    tracing::warn!(error = %e, "{what}");
    Error::internal().with_message(format!("{what}: {e}"))
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io_error("cold archive task", e))?
}

/// Removes `paths` (relative to `root`) and any write of theirs cut off, at the backup
/// fence: while an online backup runs, nothing it may copy disappears.
async fn remove_all(cold: &Cold, root: &Path, paths: Vec<String>) -> Result<(), Error> {
    if paths.is_empty() {
        return Ok(());
    }
    let fence = cold.curator.removal_fence().await;
    let root = root.to_path_buf();
    blocking(move || {
        let _fence = fence;
        for path in paths {
            let path = root.join(path);
            remove_file(&path)?;
            if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
                remove_file(&dir.join(format!(".{}.tmp", name.to_string_lossy())))?;
            }
        }
        Ok(())
    })
    .await
}

/// Removes a file, whether or not it is there.
fn remove_file(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("removing a cold archive file", e)),
    }
}

/// Syncs a directory, so a file created or renamed in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), Error> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing a cold archive directory", e))
}
