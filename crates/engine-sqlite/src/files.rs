//! The ready pool's silo files, and removing a placement's storage: what `Inner` does with
//! whole files and tables rather than records.

use std::path::{Path, PathBuf};

use bulkhead_core::model::Isolation;
use bulkhead_engine::PlacementRef;

use crate::layout::{bridge_prefix, db_path};
use crate::{Inner, StorageError, sql};

impl Inner {
    /// Lets go of this engine's handle on a silo file (the file's WAL is folded into it
    /// when the last handle closes).
    pub(crate) fn release(&self, path: &Path) {
        // Closed after the lock is let go: closing folds the WAL into the file.
        let released = self.silos.lock().pop(path);
        drop(released);
    }

    /// Renames the spare silo's file (and a WAL a crash left beside it) to the target's.
    pub(crate) fn adopt_spare(
        &self,
        spare: &PlacementRef,
        target: &PlacementRef,
    ) -> Result<bool, StorageError> {
        let dir = &self.config.dir;
        let from = db_path(dir, Isolation::Silo, &spare.namespace, &spare.key)?;
        let to = db_path(dir, Isolation::Silo, &target.namespace, &target.key)?;
        self.release(&from);
        self.memo.lock().forget(&from);
        self.memo.lock().forget(&to);
        if !from.exists() {
            return Ok(false);
        }
        let beside =
            |path: &Path, suffix: &str| PathBuf::from(format!("{}{suffix}", path.display()));
        // A WAL holds the spare's last commits when its handle was not closed cleanly.
        let wal = beside(&from, "-wal");
        if wal.exists() {
            std::fs::rename(&wal, beside(&to, "-wal"))?;
        }
        match std::fs::remove_file(beside(&from, "-shm")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        // A hard link fails when the target exists: a tenant's storage is never replaced.
        std::fs::hard_link(&from, &to)?;
        std::fs::remove_file(&from)?;
        if self.config.fsync {
            std::fs::File::open(dir.join("silos"))?.sync_all()?;
        }
        Ok(true)
    }

    pub(crate) fn destroy(&self, target: &PlacementRef) -> Result<(), StorageError> {
        let path = db_path(
            &self.config.dir,
            target.isolation,
            &target.namespace,
            &target.key,
        )?;
        match target.isolation {
            Isolation::Silo => {
                // Close our handle first; then remove the file and its WAL and shared memory.
                let closed = self.silos.lock().pop(&path);
                drop(closed);
                self.memo.lock().forget(&path);
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let file = PathBuf::from(format!("{}{suffix}", path.display()));
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(())
            }
            Isolation::Pool | Isolation::Bridge => {
                if !path.exists() {
                    return Ok(());
                }
                let db = self.db(target.isolation, &target.namespace, &target.key, false)?;
                db.write(|tx| {
                    let tables: Vec<String> = {
                        let mut stmt =
                            tx.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
                        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
                        rows.collect::<Result<_, _>>()?
                    };
                    let prefix = bridge_prefix(&target.key);
                    let exists = |name: &str| tables.iter().any(|t| t == name);
                    match target.isolation {
                        Isolation::Pool => {
                            // Record tables are `c_<collection>`; `-` marks search indexes.
                            for table in tables
                                .iter()
                                .filter(|t| t.starts_with("c_") && !t.contains('-'))
                            {
                                let with_search = exists(&format!("{table}-fts"));
                                for (text, params) in
                                    sql::purge_pooled(table, target.key.as_str(), with_search)
                                {
                                    tx.execute(&text, rusqlite::params_from_iter(params))?;
                                }
                            }
                        }
                        Isolation::Bridge => {
                            // Search indexes first: dropping one drops its shadow tables.
                            let mut own: Vec<&String> =
                                tables.iter().filter(|t| t.starts_with(&prefix)).collect();
                            own.sort_by_key(|t| !t.ends_with("-fts"));
                            for table in own {
                                tx.execute_batch(&format!("DROP TABLE IF EXISTS \"{table}\""))?;
                            }
                            if exists("bk_fts_fields") {
                                tx.execute(
                                    "DELETE FROM bk_fts_fields WHERE substr(tbl, 1, length(?1)) = ?1",
                                    [&prefix],
                                )?;
                            }
                        }
                        Isolation::Silo => {}
                    }
                    Ok(())
                })?;
                // Zeroed pages reach the main file and the WAL is emptied, so no copy of the
                // tenant's rows is left in either.
                db.checkpoint()
            }
        }
    }
}
