//! Where placements live in a PostgreSQL domain and what their objects are called.
//!
//! - pool: schema `bk_pool` in the domain's database; tables `c_<collection>` with `tenant_id`
//!   leading every key and index, row-level security enabled and forced;
//! - bridge: one schema per tenant incarnation (`t_<key>`) in the domain's database;
//! - silo: one database per tenant incarnation (`bk_<key>`), tables in its schema `bk_data`.
//!
//! `<key>` is the incarnation's [`StorageKey`], so a re-created tenant never meets an earlier
//! life's schema, database or pooled rows. Every name is derived from validated ids only
//! (storage keys are `[a-z0-9][a-z0-9_-]*`,
//! collection and field names `[a-z][a-z0-9_]*`) and is always double-quoted in SQL. Names
//! longer than PostgreSQL's 63-byte identifier limit are shortened with a hash of the id, so
//! two tenants can never share one.

use bulkhead_core::model::Isolation;
use bulkhead_core::{CollectionName, FieldName, StorageKey};
use sha2::{Digest, Sha256};

/// The schema of pooled tables.
pub const POOL_SCHEMA: &str = "bk_pool";
/// The schema of a silo database's tables.
pub const SILO_SCHEMA: &str = "bk_data";
/// Bulkhead's own functions and bookkeeping, in every database it uses.
pub const META_SCHEMA: &str = "bulkhead";
/// PostgreSQL truncates identifiers longer than this many bytes.
const MAX_IDENTIFIER: usize = 63;

/// `prefix` + `id`, or, when that is too long, a prefix of it plus a hash of the whole id.
fn bounded(prefix: &str, id: &str) -> String {
    let full = format!("{prefix}{id}");
    if full.len() <= MAX_IDENTIFIER {
        return full;
    }
    let hash = hex::encode(&Sha256::digest(id.as_bytes())[..8]);
    let keep = MAX_IDENTIFIER - prefix.len() - hash.len() - 1;
    format!("{prefix}{}_{hash}", &id[..keep])
}

pub fn bridge_schema(tenant: &StorageKey) -> String {
    bounded("t_", tenant.as_str())
}

pub fn silo_database(tenant: &StorageKey) -> String {
    bounded("bk_", tenant.as_str())
}

/// A double-quoted identifier. Only ever called with names built in this module or by the
/// id types, which contain no quote; doubling quotes keeps it safe regardless.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The column of a field.
pub fn column(field: &FieldName) -> String {
    format!("\"f_{field}\"")
}

/// Which database of the domain holds a placement: the domain's own (`None`) or a silo's.
pub fn database_of(isolation: Isolation, tenant: &StorageKey) -> Option<String> {
    (isolation == Isolation::Silo).then(|| silo_database(tenant))
}

/// The physical table holding one collection for one placement.
#[derive(Debug, Clone)]
pub struct Table {
    pub schema: String,
    /// Unquoted table name (`c_<collection>`).
    pub name: String,
    /// Rows of several tenants share the table: every statement carries the tenant predicate.
    pub pooled: bool,
}

impl Table {
    pub fn new(isolation: Isolation, tenant: &StorageKey, collection: &CollectionName) -> Self {
        let schema = match isolation {
            Isolation::Pool => POOL_SCHEMA.to_owned(),
            Isolation::Bridge => bridge_schema(tenant),
            Isolation::Silo => SILO_SCHEMA.to_owned(),
        };
        Table {
            schema,
            name: format!("c_{collection}"),
            pooled: isolation == Isolation::Pool,
        }
    }

    pub fn quoted(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.name))
    }

    /// Prefix of every index Bulkhead manages on this table.
    pub fn index_prefix(&self) -> String {
        format!("{}__", self.name)
    }

    /// `c_items__u_sku` for a unique index, `c_items__ix_n` otherwise. Collection and field
    /// names are at most 63 bytes together only when short; longer ones are hashed.
    pub fn index_name(&self, field: &FieldName, unique: bool) -> String {
        let kind = if unique { "u_" } else { "ix_" };
        bounded(&format!("{}{kind}", self.index_prefix()), field.as_str())
    }

    pub fn search_index_name(&self) -> String {
        format!("{}search", self.index_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ids_get_distinct_bounded_names() {
        use bulkhead_core::{Incarnation, TenantId};
        let key =
            |id: &str| StorageKey::of(&TenantId::parse(id).expect("id"), &Incarnation::legacy());
        let a = key(&format!("{}a", "x".repeat(62)));
        let b = key(&format!("{}b", "x".repeat(62)));
        let (sa, sb) = (bridge_schema(&a), bridge_schema(&b));
        assert!(sa.len() <= MAX_IDENTIFIER && sb.len() <= MAX_IDENTIFIER);
        assert_ne!(sa, sb);
        assert_ne!(silo_database(&a), silo_database(&b));
        let (acme, reborn) = (
            TenantId::parse("acme").expect("id"),
            Incarnation::generate(),
        );
        let later = StorageKey::of(&acme, &reborn);
        assert_ne!(bridge_schema(&later), "t_acme");
        assert_ne!(silo_database(&later), "bk_acme");
        let long = TenantId::parse(&"y".repeat(63)).expect("id");
        let (l1, l2) = (
            StorageKey::of(&long, &Incarnation::generate()),
            StorageKey::of(&long, &Incarnation::generate()),
        );
        assert_ne!(bridge_schema(&l1), bridge_schema(&l2));
        assert!(bridge_schema(&l1).len() <= MAX_IDENTIFIER);
        let short = key("acme");
        assert_eq!(bridge_schema(&short), "t_acme");
        assert_eq!(silo_database(&short), "bk_acme");
    }
}
