//! `bulkhead backup create|verify|restore`. `create` asks the running server for an online
//! backup (`POST /v1/backups`) and follows it with a progress bar; `verify` and `restore`
//! work on a backup directory alone, with no server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use bulkhead_api::{BACKUP_FORMAT, BackupManifest, BackupState};
use bulkhead_cli::ClientOptions;
use bulkhead_core::model::Isolation;
use bulkhead_core::{Incarnation, StorageKey, TenantId};

#[derive(Debug, clap::Subcommand)]
pub enum BackupCmd {
    /// Take an online backup of the server into DIR (on the server's machine; missing or
    /// empty) while it keeps serving: the catalog and every SQLite domain, with a manifest
    /// of checksums (platform admins).
    Create {
        dir: PathBuf,
        /// Answer with the backup's id at once instead of following it.
        #[arg(long)]
        no_wait: bool,
    },
    /// Check a backup directory: the manifest, every file's size and SHA-256, each
    /// database's integrity, and that every tenant the catalog routes has its data there.
    Verify { dir: PathBuf },
    /// Make a new data directory, `--data-dir NEW` (missing or empty), from a backup
    /// (verified first); then `bulkhead serve --data-dir NEW` serves the same records and
    /// credentials.
    Restore { dir: PathBuf },
}

pub async fn run(options: &ClientOptions, cmd: BackupCmd) -> anyhow::Result<()> {
    match cmd {
        BackupCmd::Create { dir, no_wait } => create(options, &dir, no_wait).await,
        BackupCmd::Verify { dir } => {
            let manifest = tokio::task::spawn_blocking(move || verify(&dir)).await??;
            if options.json {
                let files = manifest.files.len();
                println!(
                    "{}",
                    serde_json::json!({"intact": true, "files": files, "manifest": manifest})
                );
            } else {
                println!(
                    "backup intact: {} files, catalog schema {}, taken {}",
                    manifest.files.len(),
                    manifest.catalog_schema,
                    manifest.created_at
                );
            }
            Ok(())
        }
        BackupCmd::Restore { dir } => {
            let Some(into) = options.data_dir.clone() else {
                bail!(
                    "name the data directory to make: bulkhead backup restore DIR --data-dir NEW"
                );
            };
            let to = into.clone();
            tokio::task::spawn_blocking(move || restore(&dir, &to)).await??;
            if options.json {
                println!("{}", serde_json::json!({"restored_into": into}));
            } else {
                println!(
                    "restored into {}; start it with: bulkhead serve --data-dir {}",
                    into.display(),
                    into.display()
                );
            }
            Ok(())
        }
    }
}

async fn create(options: &ClientOptions, dir: &Path, no_wait: bool) -> anyhow::Result<()> {
    let client = bulkhead_cli::connect(options)?;
    let dir = std::path::absolute(dir).context("making the backup directory absolute")?;
    let started = client
        .start_backup(&dir.display().to_string())
        .await
        .map_err(anyhow::Error::from)?;
    if no_wait {
        if options.json {
            println!("{}", serde_json::to_string(&started)?);
        } else {
            println!("{}", started.id);
        }
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "backup [{bar:30}] {pos}/{len} files {msg} {elapsed}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    loop {
        let view = client.get_backup(&started.id).await?;
        bar.set_length(view.files_total);
        bar.set_position(view.files_done);
        bar.set_message(format!("{} MB", view.bytes / 1_000_000));
        match view.state {
            BackupState::Running => tokio::time::sleep(Duration::from_millis(200)).await,
            BackupState::Done => {
                bar.finish_and_clear();
                if options.json {
                    println!("{}", serde_json::to_string(&view)?);
                    return Ok(());
                }
                println!(
                    "backup {} done: {} files, {} bytes in {}",
                    view.id, view.files_done, view.bytes, view.dir
                );
                for domain in view.domains.iter().filter(|d| !d.included) {
                    println!(
                        "domain {} ({}) is not in it: back it up with PostgreSQL's tools (docs/backup.md)",
                        domain.name, domain.engine
                    );
                }
                return Ok(());
            }
            BackupState::Failed => {
                bar.abandon();
                bail!(
                    "backup {} failed: {}",
                    view.id,
                    view.error.unwrap_or_default()
                );
            }
        }
    }
}

/// Reads and checks a backup directory; returns its manifest.
pub fn verify(dir: &Path) -> anyhow::Result<BackupManifest> {
    let text = std::fs::read(dir.join("manifest.json")).with_context(|| {
        format!(
            "{} has no manifest.json: not a finished backup",
            dir.display()
        )
    })?;
    let manifest: BackupManifest =
        serde_json::from_slice(&text).context("manifest.json is not a backup manifest")?;
    if manifest.format != BACKUP_FORMAT {
        bail!(
            "this backup's format is {}; this release reads format {BACKUP_FORMAT}",
            manifest.format
        );
    }
    for file in &manifest.files {
        if file.path.contains("..") || Path::new(&file.path).is_absolute() {
            bail!("manifest lists a path outside the backup: {}", file.path);
        }
        let path = dir.join(&file.path);
        let bytes = std::fs::metadata(&path)
            .with_context(|| format!("{} is missing", file.path))?
            .len();
        if bytes != file.bytes {
            bail!(
                "{} has {bytes} bytes; the manifest says {}",
                file.path,
                file.bytes
            );
        }
        let sum = bulkhead_catalog::file_sha256(&path)?;
        if sum != file.sha256 {
            bail!("{} does not match its checksum", file.path);
        }
        if file.path.starts_with("cold/") {
            // A cold archive file (docs/retention.md): it must read back whole.
            bulkhead_cold::format::read(&path).map_err(|e| {
                anyhow::anyhow!("{} is not a readable archive file: {e}", file.path)
            })?;
            continue;
        }
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if check != "ok" {
            bail!("{} fails SQLite's integrity check: {check}", file.path);
        }
    }
    if !manifest.files.iter().any(|f| f.path == "catalog.db") {
        bail!("the backup holds no catalog.db");
    }
    every_route_has_its_data(dir, &manifest)?;
    Ok(manifest)
}

/// Every placement the catalog routes to an included domain has its database file.
fn every_route_has_its_data(dir: &Path, manifest: &BackupManifest) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("catalog.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut rows = conn
        .prepare("SELECT tenant_id, domain, isolation, namespace, incarnation FROM placements")?;
    let placements = rows.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let listed: std::collections::BTreeSet<&str> =
        manifest.files.iter().map(|f| f.path.as_str()).collect();
    // Every archive file the catalog has sealed (or is restoring from) is in the backup.
    // (Catalogs from before the cold archive have no such table.)
    let has_archive: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'cold_files'",
        [],
        |r| r.get(0),
    )?;
    if has_archive > 0 {
        let mut archived = conn.prepare("SELECT path FROM cold_files WHERE state <> 'pending'")?;
        for path in archived.query_map([], |r| r.get::<_, String>(0))? {
            let relative = format!("cold/{}", path?);
            if !listed.contains(relative.as_str()) {
                bail!("the catalog lists the archive file {relative}, which the backup lacks");
            }
        }
    }
    for placement in placements {
        let (tenant, domain, isolation, namespace, incarnation) = placement?;
        if !manifest
            .domains
            .iter()
            .any(|d| d.name == domain && d.included)
        {
            continue;
        }
        let isolation: Isolation = serde_json::from_value(serde_json::json!(isolation))
            .with_context(|| format!("tenant {tenant}: isolation {isolation:?}"))?;
        let key = StorageKey::of(
            &TenantId::parse(&tenant)?,
            &Incarnation::parse(&incarnation)?,
        );
        let path = bulkhead_engine_sqlite::db_path(Path::new(""), isolation, &namespace, &key)
            .map_err(|e| anyhow::anyhow!("tenant {tenant}: {e}"))?;
        let relative = format!("domains/{domain}/{}", path.display());
        if !listed.contains(relative.as_str()) {
            bail!("tenant {tenant} is routed to {relative}, which the backup lacks");
        }
    }
    Ok(())
}

/// Copies a verified backup into a new data directory.
pub fn restore(dir: &Path, into: &Path) -> anyhow::Result<()> {
    let manifest = verify(dir)?;
    if let Ok(mut entries) = std::fs::read_dir(into)
        && entries.next().is_some()
    {
        bail!(
            "{} is not empty: restore into a new directory",
            into.display()
        );
    }
    // Private, as the server requires of its data directory.
    private_dir(into)?;
    for file in &manifest.files {
        let to = into.join(&file.path);
        if let Some(parent) = to.parent() {
            private_dir(parent)?;
        }
        std::fs::copy(dir.join(&file.path), &to)
            .with_context(|| format!("copying {}", file.path))?;
        std::fs::File::open(&to)?.sync_all()?;
    }
    Ok(())
}

/// Makes `dir` (and its missing parents) readable by its owner only.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}
