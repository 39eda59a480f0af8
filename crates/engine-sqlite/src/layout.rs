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
    if isolation != Isolation::Silo {
        check_shared(isolation, namespace)?;
        return Ok(dir.join(format!("{namespace}.db")));
    }
    if namespace.strip_prefix("silo-") == Some(tenant.as_str()) {
        Ok(dir.join("silos").join(format!("{tenant}.db")))
    } else {
        Err(StorageError::BadNamespace(namespace.to_owned()))
    }
}

/// Checks that `namespace` names a shared file of `isolation`: `pool` for the pool,
/// `bridge-NNNN` for a bridge file. The file is `<dir>/<namespace>.db`.
pub fn check_shared(isolation: Isolation, namespace: &str) -> Result<(), StorageError> {
    let shared = match isolation {
        Isolation::Pool => namespace == "pool",
        Isolation::Bridge => namespace
            .strip_prefix("bridge-")
            .is_some_and(|n| n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit())),
        Isolation::Silo => false,
    };
    if shared {
        Ok(())
    } else {
        Err(StorageError::BadNamespace(namespace.to_owned()))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each model's namespace names its own kind of file and no other: a pool namespace
    /// given as a bridge, a bridge one as the pool, a malformed bridge number or another
    /// tenant's silo is refused before any file is looked up.
    #[test]
    fn a_namespace_names_only_its_own_kind_of_file() {
        let dir = Path::new("/d");
        let key = StorageKey::read("acme").unwrap();
        let path = |i, ns: &str| db_path(dir, i, ns, &key).ok();
        assert_eq!(path(Isolation::Pool, "pool"), Some(dir.join("pool.db")));
        assert_eq!(
            path(Isolation::Bridge, "bridge-0007"),
            Some(dir.join("bridge-0007.db"))
        );
        assert_eq!(
            path(Isolation::Silo, "silo-acme"),
            Some(dir.join("silos").join("acme.db"))
        );
        for (isolation, ns) in [
            (Isolation::Pool, "bridge-0007"),
            (Isolation::Pool, "pool2"),
            (Isolation::Bridge, "pool"),
            (Isolation::Bridge, "bridge-07"),
            (Isolation::Bridge, "bridge-00a7"),
            (Isolation::Bridge, "bridge-0007/../pool"),
            (Isolation::Silo, "silo-other"),
            (Isolation::Silo, "pool"),
            (Isolation::Silo, "silo-acme2"),
        ] {
            assert!(path(isolation, ns).is_none(), "{isolation:?} {ns}");
            if isolation != Isolation::Silo {
                assert!(check_shared(isolation, ns).is_err(), "{isolation:?} {ns}");
            }
        }
    }
}
