//! Where placements live on disk and how their tables are named.
//!
//! - pool: `<dir>/pool.db`, tables `c_<collection>` with `tenant_id` leading every key;
//! - bridge: `<dir>/bridge-NNNN.db`, tables `t_<key>__<collection>` owned by one tenant
//!   incarnation (storage keys contain at most one `_` and never two in a row, so the prefix
//!   `t_<key>__` is unambiguous);
//! - silo: `<dir>/silos/<key>.db`, tables `c_<collection>`.
//!
//! `<key>` is the tenant incarnation's [`StorageKey`] (the bare tenant id for tenants created
//! before incarnations, `<tenant>_<incarnation>` after), never the tenant id alone, so a
//! tenant re-created under a deleted one's id can never open the deleted one's storage.
//!
//! Names are built only from validated ids and are always double-quoted in SQL.

use std::path::{Path, PathBuf};

use bulkhead_core::model::Isolation;
use bulkhead_core::{CollectionName, FieldName, StorageKey};

use crate::StorageError;

/// Which database file a namespace maps to.
pub fn db_path(
    dir: &Path,
    isolation: Isolation,
    namespace: &str,
    tenant: &StorageKey,
) -> Result<PathBuf, StorageError> {
    let bad = || StorageError::BadNamespace(namespace.to_owned());
    match isolation {
        Isolation::Pool if namespace == "pool" => Ok(dir.join("pool.db")),
        Isolation::Bridge => {
            let n = namespace.strip_prefix("bridge-").ok_or_else(bad)?;
            if n.len() != 4 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            Ok(dir.join(format!("{namespace}.db")))
        }
        Isolation::Silo if namespace == format!("silo-{tenant}") => {
            Ok(dir.join("silos").join(format!("{tenant}.db")))
        }
        _ => Err(bad()),
    }
}

/// The physical table holding one collection for one placement.
#[derive(Debug, Clone)]
pub struct TableName {
    /// Unquoted table name.
    pub raw: String,
    /// Whether rows of several tenants share the table (pool): then every statement carries the
    /// tenant predicate.
    pub pooled: bool,
}

impl TableName {
    pub fn new(isolation: Isolation, tenant: &StorageKey, collection: &CollectionName) -> Self {
        match isolation {
            Isolation::Pool => TableName {
                raw: format!("c_{collection}"),
                pooled: true,
            },
            Isolation::Bridge => TableName {
                raw: format!("{}{collection}", bridge_prefix(tenant)),
                pooled: false,
            },
            Isolation::Silo => TableName {
                raw: format!("c_{collection}"),
                pooled: false,
            },
        }
    }

    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.raw)
    }

    /// The table's full-text index (FTS5). `-` cannot occur in a collection name, so this
    /// never collides with a record table; bridge names keep the tenant's prefix.
    pub fn fts_raw(&self) -> String {
        format!("{}-fts", self.raw)
    }

    pub fn fts_quoted(&self) -> String {
        format!("\"{}\"", self.fts_raw())
    }

    /// Prefix of every index this table owns.
    pub fn index_prefix(&self) -> String {
        format!("{}__ix__", self.raw)
    }

    pub fn index_name(&self, field: &FieldName, unique: bool) -> String {
        format!(
            "{}{}{field}",
            self.index_prefix(),
            if unique { "u_" } else { "i_" }
        )
    }
}

/// Every table of a bridge tenant starts with this.
pub fn bridge_prefix(tenant: &StorageKey) -> String {
    format!("t_{tenant}__")
}

pub fn column(field: &FieldName) -> String {
    format!("\"f_{field}\"")
}
