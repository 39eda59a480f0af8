//! What tenant storage the engine's directory holds, read from the files themselves: silo
//! files (`silos/<key>.db`), bridge tables (`t_<key>__…` in `bridge-NNNN.db`) and the storage
//! keys with rows in the pool's tables. `bulkhead doctor` compares it with the catalog.

use std::collections::BTreeSet;
use std::path::Path;

use bulkhead_core::StorageKey;
use bulkhead_core::model::Isolation;
use bulkhead_engine::StoredPlacement;

use crate::{Inner, StorageError};

/// The name [`Inner::inventory`] reports for the storage of key `key` in a namespace.
pub(crate) fn name_of(dir: &Path, isolation: Isolation, namespace: &str, key: &str) -> String {
    let dir = dir.display();
    match isolation {
        Isolation::Pool => format!("{dir}/{namespace}.db rows of {key}"),
        Isolation::Bridge => format!("{dir}/{namespace}.db tables t_{key}__*"),
        Isolation::Silo => format!("{dir}/silos/{key}.db"),
    }
}

impl Inner {
    pub(crate) fn inventory(&self) -> Result<Vec<StoredPlacement>, StorageError> {
        let mut found = Vec::new();
        let dir = &self.config.dir;
        let mut files: Vec<String> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        files.sort();
        for file in files {
            let Some(namespace) = file.strip_suffix(".db") else {
                continue;
            };
            let isolation = if namespace == "pool" {
                Isolation::Pool
            } else if namespace.starts_with("bridge-") {
                Isolation::Bridge
            } else {
                continue;
            };
            let db = self.shared_db(isolation, namespace)?;
            let tables: Vec<String> = db.read(|tx| {
                let mut stmt = tx.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })?;
            if isolation == Isolation::Pool {
                let mut keys = BTreeSet::new();
                for table in tables
                    .iter()
                    .filter(|t| t.starts_with("c_") && !t.contains('-'))
                {
                    db.read(|tx| {
                        let mut stmt =
                            tx.prepare(&format!("SELECT DISTINCT tenant_id FROM \"{table}\""))?;
                        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
                        for key in rows {
                            keys.insert(key?);
                        }
                        Ok(())
                    })?;
                }
                found.extend(keys.into_iter().map(|raw| StoredPlacement {
                    isolation,
                    namespace: namespace.to_owned(),
                    key: StorageKey::read(&raw),
                    name: name_of(dir, isolation, namespace, &raw),
                }));
            } else {
                let keys: BTreeSet<&str> = tables
                    .iter()
                    .filter_map(|t| t.strip_prefix("t_")?.split_once("__").map(|(k, _)| k))
                    .collect();
                found.extend(keys.into_iter().map(|raw| StoredPlacement {
                    isolation,
                    namespace: namespace.to_owned(),
                    key: StorageKey::read(raw),
                    name: name_of(dir, isolation, namespace, raw),
                }));
            }
        }
        let mut silos: Vec<String> = std::fs::read_dir(dir.join("silos"))?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|f| f.strip_suffix(".db").map(str::to_owned))
            .collect();
        silos.sort();
        found.extend(silos.into_iter().map(|raw| StoredPlacement {
            isolation: Isolation::Silo,
            namespace: format!("silo-{raw}"),
            key: StorageKey::read(&raw),
            name: name_of(dir, Isolation::Silo, "", &raw),
        }));
        Ok(found)
    }
}
