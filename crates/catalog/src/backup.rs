//! Online backups (`POST /v1/backups`): the catalog and every SQLite domain copied while the
//! server keeps serving, into a directory laid out like a data directory, with a manifest of
//! checksums written last.
//!
//! Consistency between the catalog and the data: the catalog is copied first, then each
//! database. Whatever the catalog's copy routes to exists when it is taken and is copied
//! after, so it is in the backup — as long as nothing is removed meanwhile: while a backup
//! runs, every removal of tenant storage (a deletion's purge, a move's clean-up of the side
//! it left, a doctor removal, a spare discarded) waits at the backup fence. So does every
//! change to the schema of storage the catalog knows (a rollout's placements, a move bringing
//! its tenant to the newest schema, a ready spare brought up): a database copied after the
//! catalog is never ahead of the definitions and the ledger the catalog's copy holds, so the
//! restored server writes to every tenant. Storage created
//! meanwhile (a new tenant, a spare) may be copied without its catalog row: an orphan the
//! restored server's doctor lists, never a route to missing data. Every write acknowledged
//! before the backup began is in it: each database is copied, in one read transaction, after
//! that moment.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bulkhead_api::{
    BACKUP_FORMAT, BackupDomain, BackupFile, BackupManifest, BackupState, BackupView, StartBackup,
};
use bulkhead_core::access::ControlAction;
use bulkhead_core::error::Error;
use bulkhead_core::time::Timestamp;
use bulkhead_engine::SnapshotProgress;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::store::Store;
use crate::{Catalog, Ctx};

/// One backup this server runs or ran.
struct Backup {
    id: String,
    dir: PathBuf,
    started_at: Timestamp,
    progress: Arc<SnapshotProgress>,
    outcome: Mutex<Outcome>,
}

#[derive(Default)]
struct Outcome {
    state: Option<Result<(), String>>,
    finished_at: Option<Timestamp>,
    domains: Vec<BackupDomain>,
}

/// The backups of this server (since its start), and the fence removals wait at.
#[derive(Default)]
pub(crate) struct Backups {
    runs: Mutex<HashMap<String, Arc<Backup>>>,
    fence: Arc<tokio::sync::RwLock<()>>,
}

impl Backups {
    /// Held by every removal of tenant storage: waits while a backup runs.
    pub(crate) async fn removal(&self) -> tokio::sync::OwnedRwLockReadGuard<()> {
        Arc::clone(&self.fence).read_owned().await
    }

    /// Held by every change to the schema of storage the catalog knows: waits while a backup
    /// runs. (Nothing that holds the fence waits for the schema lock, so a caller may wait
    /// here holding it; a rollout does not, see [`Backups::schema_change_now`].)
    pub(crate) async fn schema_change(&self) -> tokio::sync::OwnedRwLockReadGuard<()> {
        Arc::clone(&self.fence).read_owned().await
    }

    /// [`Backups::schema_change`] without waiting: `None` while a backup runs or is about to.
    pub(crate) fn schema_change_now(&self) -> Option<tokio::sync::OwnedRwLockReadGuard<()>> {
        Arc::clone(&self.fence).try_read_owned().ok()
    }
}

impl Backup {
    fn view(&self) -> BackupView {
        let outcome = self.outcome.lock();
        let (state, error) = match &outcome.state {
            None => (BackupState::Running, None),
            Some(Ok(())) => (BackupState::Done, None),
            Some(Err(e)) => (BackupState::Failed, Some(e.clone())),
        };
        BackupView {
            id: self.id.clone(),
            dir: self.dir.display().to_string(),
            state,
            started_at: self.started_at,
            finished_at: outcome.finished_at,
            files_total: self.progress.files_total.load(Ordering::Relaxed),
            files_done: self.progress.files_done.load(Ordering::Relaxed),
            bytes: self.progress.bytes.load(Ordering::Relaxed),
            domains: outcome.domains.clone(),
            error,
        }
    }
}

/// The SHA-256 of a file, in hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn checked_dir(dir: &str) -> Result<PathBuf, Error> {
    let path = PathBuf::from(dir);
    let bad = |why: &str| Error::bad_request("invalid_backup_dir", format!("{dir:?}: {why}"));
    if !path.is_absolute() {
        return Err(bad("give an absolute directory on the server's machine"));
    }
    match std::fs::read_dir(&path) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(bad("the directory is not empty"));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bad(&format!("cannot be read ({e})"))),
    }
    Ok(path)
}

impl Catalog {
    /// `POST /v1/backups`: starts an online backup into `dir` (platform admins). It runs as
    /// its own task; `GET /v1/backups/{id}` follows it.
    pub async fn start_backup(&self, ctx: &Ctx, request: StartBackup) -> Result<BackupView, Error> {
        self.authorize(
            ctx,
            ControlAction::Backups,
            "backup.create",
            &request.dir,
            None,
        )?;
        if self.is_shared() {
            return Err(Error::bad_request(
                "backup_unsupported",
                "this server's catalog is on PostgreSQL: back it up, and PostgreSQL domains, \
                 with PostgreSQL's own tools (docs/backup.md)",
            ));
        }
        let dir = checked_dir(&request.dir)?;
        // The backup holds every tenant's data and the catalog: its owner's only.
        {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .and_then(|()| {
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|e| {
                    Error::bad_request("invalid_backup_dir", format!("{}: {e}", request.dir))
                })?;
        }
        let backup = Arc::new(Backup {
            id: format!("b{}", uuid::Uuid::now_v7().simple()),
            dir,
            started_at: self.inner().clock.now(),
            progress: Arc::default(),
            outcome: Mutex::default(),
        });
        self.inner()
            .backups
            .runs
            .lock()
            .insert(backup.id.clone(), Arc::clone(&backup));
        let event = self.event(
            ctx,
            "backup.create",
            &request.dir,
            None,
            Some(backup.id.clone()),
        );
        self.inner().audit.record(event);
        // Held from here: a removal asked for after this answer waits for the backup.
        let fence = Arc::clone(&self.inner().backups.fence).write_owned().await;
        let (catalog, run) = (self.clone(), Arc::clone(&backup));
        tokio::spawn(async move {
            let result = catalog.run_backup(&run).await;
            if let Err(e) = &result {
                tracing::error!(backup = %run.id, error = %e, "backup failed");
            } else {
                tracing::info!(backup = %run.id, dir = %run.dir.display(), "backup done");
            }
            {
                let mut outcome = run.outcome.lock();
                outcome.state = Some(result);
                outcome.finished_at = Some(catalog.inner().clock.now());
            }
            // Removals go on only once the backup is recorded as finished.
            drop(fence);
        });
        Ok(backup.view())
    }

    /// `GET /v1/backups/{id}`.
    pub async fn get_backup(&self, ctx: &Ctx, id: &str) -> Result<BackupView, Error> {
        self.authorize(ctx, ControlAction::Backups, "backup.get", id, None)?;
        let runs = self.inner().backups.runs.lock();
        runs.get(id)
            .map(|b| b.view())
            .ok_or_else(|| Error::not_found("backup_not_found", "backup not found on this server"))
    }

    /// Runs while the caller holds the fence: no storage is removed until every file is
    /// copied.
    async fn run_backup(&self, backup: &Backup) -> Result<(), String> {
        let dir = backup.dir.clone();
        let progress = Arc::clone(&backup.progress);
        progress.files_total.fetch_add(1, Ordering::Relaxed);
        let catalog_bytes = {
            let store = Arc::clone(&self.inner().store);
            let to = dir.join("catalog.db");
            tokio::task::spawn_blocking(move || match &*store {
                Store::Sqlite(s) => s.snapshot_into(&to).map_err(|e| e.to_string()),
                Store::Postgres(_) => Err("the catalog is on PostgreSQL".to_owned()),
            })
            .await
            .map_err(|e| e.to_string())??
        };
        progress.files_done.fetch_add(1, Ordering::Relaxed);
        progress.bytes.fetch_add(catalog_bytes, Ordering::Relaxed);
        let mut files = vec![PathBuf::from("catalog.db")];
        let mut domains = Vec::new();
        let mut engines = self.inner().engines.snapshot();
        engines.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, engine) in engines {
            let root = PathBuf::from("domains").join(name.as_str());
            let copied = engine
                .snapshot(&dir.join(&root), Arc::clone(&progress))
                .await
                .map_err(|e| format!("domain {name}: {e}"))?;
            domains.push(BackupDomain {
                name: name.to_string(),
                engine: if copied.is_some() {
                    "sqlite"
                } else {
                    "postgres"
                }
                .into(),
                included: copied.is_some(),
            });
            for file in copied.into_iter().flatten() {
                files.push(root.join(file.path));
            }
            backup.outcome.lock().domains = domains.clone();
        }
        // The cold archive, after the databases: a batch whose hot copies a database copy
        // lacks had its files written before, and nothing is removed while the fence holds.
        if let Some(cold) = self.inner().options.cold_dir.clone() {
            let (to, progress) = (dir.join("cold"), Arc::clone(&progress));
            let copied = tokio::task::spawn_blocking(move || copy_tree(&cold, &to, &progress))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cold archive: {e}"))?;
            files.extend(copied.into_iter().map(|p| PathBuf::from("cold").join(p)));
        }
        let schema = self.inner().store.schema().version;
        let created_at = backup.started_at;
        tokio::task::spawn_blocking(move || {
            let mut listed = Vec::with_capacity(files.len());
            for relative in files {
                let path = dir.join(&relative);
                let bytes = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
                listed.push(BackupFile {
                    path: relative.to_string_lossy().replace('\\', "/"),
                    bytes,
                    sha256: file_sha256(&path).map_err(|e| e.to_string())?,
                });
            }
            let manifest = BackupManifest {
                format: BACKUP_FORMAT,
                bulkhead: env!("CARGO_PKG_VERSION").into(),
                created_at,
                catalog_schema: schema,
                domains,
                files: listed,
            };
            let text = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
            let path = dir.join("manifest.json");
            std::fs::write(&path, text).map_err(|e| e.to_string())?;
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// Copies every file under `from` (none that starts with `.`: writes not finished) to the same
/// place under `to`, synced; returns their paths relative to `from`. A missing `from` is empty.
fn copy_tree(from: &Path, to: &Path, progress: &SnapshotProgress) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let entries = match std::fs::read_dir(from.join(&relative)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = relative.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                stack.push(path);
                continue;
            }
            progress.files_total.fetch_add(1, Ordering::Relaxed);
            let target = to.join(&path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let bytes = std::fs::copy(entry.path(), &target)?;
            std::fs::File::open(&target)?.sync_all()?;
            progress.files_done.fetch_add(1, Ordering::Relaxed);
            progress.bytes.fetch_add(bytes, Ordering::Relaxed);
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
