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
/// Hex digits of the hash that ends a shortened identifier (64 bits).
const HASH_HEX: usize = 16;

/// Every table, column and index name Bulkhead gives PostgreSQL: `raw` itself when it fits in
/// 63 bytes, else its first 46 bytes, `_` and 16 hex digits of the SHA-256 of all of it. So it
/// never exceeds the limit (PostgreSQL would silently truncate, and two long names would meet)
/// and never panics, whatever the lengths of the names it is made of. Names are ASCII (built
/// from validated ids), so any byte is a character boundary.
pub fn ident(raw: &str) -> String {
    if raw.len() <= MAX_IDENTIFIER {
        return raw.to_owned();
    }
    let hash = hex::encode(&Sha256::digest(raw.as_bytes())[..HASH_HEX / 2]);
    let keep = MAX_IDENTIFIER - HASH_HEX - 1;
    let mut cut = keep.min(raw.len());
    while !raw.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hash}", &raw[..cut])
}

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

/// Whether `name` is one [`ident`] shortened (it then ends with `_` and the hash).
pub fn is_shortened(name: &str) -> bool {
    name.len() == MAX_IDENTIFIER
        && name.as_bytes()[MAX_IDENTIFIER - HASH_HEX - 1] == b'_'
        && name.as_bytes()[MAX_IDENTIFIER - HASH_HEX..]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// The column of a field, quoted.
pub fn column(field: &FieldName) -> String {
    quote(&column_name(field))
}

/// The column of a field, unquoted (as the system catalogs list it).
pub fn column_name(field: &FieldName) -> String {
    ident(&format!("f_{field}"))
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
    /// The table's key in `bulkhead.search_fields` and `bulkhead.table_versions`.
    pub fn versions_key(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    pub fn new(isolation: Isolation, tenant: &StorageKey, collection: &CollectionName) -> Self {
        let schema = match isolation {
            Isolation::Pool => POOL_SCHEMA.to_owned(),
            Isolation::Bridge => bridge_schema(tenant),
            Isolation::Silo => SILO_SCHEMA.to_owned(),
        };
        Table {
            schema,
            name: ident(&format!("c_{collection}")),
            pooled: isolation == Isolation::Pool,
        }
    }

    pub fn quoted(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.name))
    }

    /// `u:sku:c_items` for a unique index, `ix:n:c_items` otherwise ([`ident`]: long ones
    /// are shortened with a hash of the whole name). Index names share a schema with each
    /// other and with tables, so they must never meet: `:` occurs in no table or field name,
    /// so the parts cannot be re-cut into another collection's (`c_x__u_y` + `z` and `c_x` +
    /// `y__u_z` would), and no table name starts with `u:`, `ix:` or `search:`. The field
    /// leads, so a unique violation can name it even from a shortened name.
    pub fn index_name(&self, field: &FieldName, unique: bool) -> String {
        let kind = if unique { "u" } else { "ix" };
        ident(&format!("{kind}:{field}:{}", self.name))
    }

    pub fn search_index_name(&self) -> String {
        ident(&format!("search:{}", self.name))
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
    fn name(prefix: &str, len: usize, tail: char) -> String {
        let mut s: String = prefix
            .chars()
            .chain(std::iter::repeat('a'))
            .take(len - 1)
            .collect();
        s.push(tail);
        s
    }

    /// Every identifier a collection and field of any lengths 1–63 make, for both tails.
    fn identifiers(collection: &str, field: &str) -> Vec<String> {
        let c = CollectionName::parse(collection).expect("collection");
        let f = FieldName::parse(field).expect("field");
        let table = Table::new(
            Isolation::Pool,
            &StorageKey::of(
                &bulkhead_core::TenantId::parse("acme").expect("id"),
                &bulkhead_core::Incarnation::legacy(),
            ),
            &c,
        );
        vec![
            table.name.clone(),
            column_name(&f),
            table.index_name(&f, true),
            table.index_name(&f, false),
            table.search_index_name(),
        ]
    }

    #[test]
    fn every_name_length_gives_bounded_identifiers_that_never_panic() {
        for len in 1..=63 {
            for other in [1, 30, 50, 62, 63] {
                for id in identifiers(&name("c", len, 'x'), &name("f", other, 'y'))
                    .into_iter()
                    .chain(identifiers(&name("c", other, 'x'), &name("f", len, 'y')))
                {
                    assert!(id.len() <= MAX_IDENTIFIER, "{id} is {} bytes", id.len());
                }
            }
        }
    }

    #[test]
    fn names_sharing_all_but_their_last_character_stay_apart_at_every_length() {
        for len in 1..=63 {
            let (a, b) = (name("c", len, 'x'), name("c", len, 'z'));
            let (fa, fb) = (name("f", len, 'x'), name("f", len, 'z'));
            let ia = identifiers(&a, &fa);
            let ib = identifiers(&b, &fb);
            for (x, y) in ia.iter().zip(&ib) {
                assert_ne!(x, y, "length {len}");
            }
            // Index names share a schema: two collections' never meet, however the names
            // could be re-cut.
            let (x, y) = (identifiers("x__u_y", "z"), identifiers("x", "y__u_z"));
            assert_ne!(x[2], y[2]);
            assert_ne!(x[3], y[3]);
            // And a collection's identifiers never meet each other.
            let unique: std::collections::BTreeSet<_> = ia.iter().collect();
            assert_eq!(unique.len(), ia.len(), "length {len}: {ia:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn distinct_names_give_distinct_bounded_identifiers(
            c1 in "[a-z][a-z0-9_]{0,62}",
            c2 in "[a-z][a-z0-9_]{0,62}",
            f1 in "[a-z][a-z0-9_]{0,62}",
            f2 in "[a-z][a-z0-9_]{0,62}",
        ) {
            let (i1, i2) = (identifiers(&c1, &f1), identifiers(&c2, &f2));
            for id in i1.iter().chain(&i2) {
                proptest::prop_assert!(id.len() <= MAX_IDENTIFIER);
            }
            if c1 != c2 {
                proptest::prop_assert_ne!(&i1[0], &i2[0]);
                proptest::prop_assert_ne!(&i1[4], &i2[4]);
            }
            if f1 != f2 {
                proptest::prop_assert_ne!(&i1[1], &i2[1]);
            }
            if (c1 != c2) || (f1 != f2) {
                proptest::prop_assert_ne!(&i1[2], &i2[2]);
                proptest::prop_assert_ne!(&i1[3], &i2[3]);
            }
        }
    }
}
