//! Validated identifiers. A bare `String` never crosses a service boundary: every id is parsed
//! once, here, and its grammar is what makes it safe to use in file names and SQL identifiers
//! (which are always quoted as well).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $code:literal, $check:path, $pattern:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, Error> {
                match $check(raw) {
                    Ok(()) => Ok($name(raw.into())),
                    Err(why) => Err(Error::bad_request(
                        $code,
                        format!("invalid {} {:?}: {}", $what, truncate(raw), why),
                    )),
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                $name::parse(&raw).map_err(|e| serde::de::Error::custom(e.message))
            }
        }

        /// In the API description: a string of the id's grammar.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some($pattern))
                    .description(Some(concat!("The ", $what, ".")))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

fn truncate(raw: &str) -> String {
    raw.chars().take(80).collect()
}

/// `[a-z0-9][a-z0-9-]{1,62}`: a slug that is safe in paths, file names and identifiers.
fn check_slug(raw: &str) -> Result<(), &'static str> {
    let bytes = raw.as_bytes();
    if bytes.len() < 2 || bytes.len() > 63 {
        return Err("must be 2 to 63 characters");
    }
    if !(bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit()) {
        return Err("must start with a lowercase letter or a digit");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    {
        return Err("may contain only lowercase letters, digits and '-'");
    }
    Ok(())
}

/// `[a-z][a-z0-9_]{0,62}`: a name usable as part of a SQL identifier.
fn check_snake(raw: &str) -> Result<(), &'static str> {
    let bytes = raw.as_bytes();
    if bytes.is_empty() || bytes.len() > 63 {
        return Err("must be 1 to 63 characters");
    }
    if !bytes[0].is_ascii_lowercase() {
        return Err("must start with a lowercase letter");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
    {
        return Err("may contain only lowercase letters, digits and '_'");
    }
    Ok(())
}

/// `[A-Za-z0-9_-]{1,128}`: client-chosen or generated record ids.
fn check_record_id(raw: &str) -> Result<(), &'static str> {
    let bytes = raw.as_bytes();
    if bytes.is_empty() || bytes.len() > 128 {
        return Err("must be 1 to 128 characters");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
    {
        return Err("may contain only letters, digits, '_' and '-'");
    }
    Ok(())
}

/// `k` followed by 16 lowercase hex digits.
fn check_key_id(raw: &str) -> Result<(), &'static str> {
    check_prefixed_hex(raw, b'k').map_err(|()| "must be 'k' followed by 16 hex digits")
}

/// `u` followed by 16 lowercase hex digits.
fn check_user_id(raw: &str) -> Result<(), &'static str> {
    check_prefixed_hex(raw, b'u').map_err(|()| "must be 'u' followed by 16 hex digits")
}

fn check_prefixed_hex(raw: &str, prefix: u8) -> Result<(), ()> {
    let bytes = raw.as_bytes();
    if bytes.len() != 17 || bytes[0] != prefix {
        return Err(());
    }
    if !bytes[1..]
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return Err(());
    }
    Ok(())
}

/// A custom role's name: a slug that is not one of the built-in roles.
fn check_role_name(raw: &str) -> Result<(), &'static str> {
    check_slug(raw)?;
    if ["owner", "admin", "member", "viewer"].contains(&raw) {
        return Err("is a built-in role");
    }
    Ok(())
}

id_type!(
    /// A tenant's immutable id.
    TenantId, "tenant id", "invalid_tenant_id", check_slug, "^[a-z0-9][a-z0-9-]{1,62}$"
);
id_type!(
    /// A tier's name (`free`, `standard`, `premium`, or one an operator defines).
    TierName, "tier name", "invalid_tier_name", check_slug, "^[a-z0-9][a-z0-9-]{1,62}$"
);
id_type!(
    /// A storage domain's name.
    DomainName, "domain name", "invalid_domain_name", check_slug, "^[a-z0-9][a-z0-9-]{1,62}$"
);
id_type!(
    /// A collection's name.
    CollectionName, "collection name", "invalid_collection_name", check_snake, "^[a-z][a-z0-9_]{0,62}$"
);
id_type!(
    /// A field's name inside a collection.
    FieldName, "field name", "invalid_field_name", check_snake, "^[a-z][a-z0-9_]{0,62}$"
);
id_type!(
    /// A record's id, unique per tenant and collection.
    RecordId, "record id", "invalid_record_id", check_record_id, "^[A-Za-z0-9_-]{1,128}$"
);
id_type!(
    /// The public id of an API key (the secret part is never stored).
    KeyId, "key id", "invalid_key_id", check_key_id, "^k[0-9a-f]{16}$"
);

id_type!(
    /// A user known to the catalog: an identity provider's `(issuer, sub)`, or an invitation
    /// by email not yet claimed.
    UserId, "user id", "invalid_user_id", check_user_id, "^u[0-9a-f]{16}$"
);
id_type!(
    /// The name of a tenant's custom role.
    RoleName, "role name", "invalid_role_name", check_role_name, "^[a-z0-9][a-z0-9-]{1,62}$"
);

/// `0` (a tenant created before incarnations existed) or 32 lowercase hex digits.
fn check_incarnation(raw: &str) -> Result<(), &'static str> {
    if raw == LEGACY_INCARNATION {
        return Ok(());
    }
    if raw.len() != 32
        || !raw
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("must be '0' or 32 lowercase hex digits");
    }
    Ok(())
}

/// The incarnation of every tenant created before incarnations existed: its storage keeps
/// the names it had (the bare tenant id), so upgrading moves no data.
const LEGACY_INCARNATION: &str = "0";

id_type!(
    /// One life of a tenant. Each creation of a tenant gets a new one; storage, credentials
    /// and background jobs belong to it, so nothing of an earlier life under the same id
    /// (a key, a token, a move's clean-up, a bulk still running) can reach a later one.
    Incarnation, "incarnation", "invalid_incarnation", check_incarnation, "^(0|[0-9a-f]{32})$"
);

impl Incarnation {
    /// A fresh incarnation: a UUIDv7 (time-ordered, 74 random bits), never reused.
    pub fn generate() -> Self {
        Incarnation(uuid::Uuid::now_v7().simple().to_string().into())
    }

    /// The incarnation of tenants created before incarnations existed.
    pub fn legacy() -> Self {
        Incarnation(LEGACY_INCARNATION.into())
    }

    pub fn is_legacy(&self) -> bool {
        &*self.0 == LEGACY_INCARNATION
    }
}

impl Default for Incarnation {
    /// Rows and tokens written before incarnations existed belong to the legacy one.
    fn default() -> Self {
        Incarnation::legacy()
    }
}

/// The tenant id ready-pool storage is named under; no tenant may take it.
pub const SPARE_TENANT: &str = "bk-spare";

/// What storage is named by: one incarnation of one tenant. The bare tenant id for the legacy
/// incarnation, `<tenant>_<incarnation>` for every later one. Tenant ids contain no `_`, so a
/// key with `_` is never a legacy key, and two incarnations never share a key. Engines name
/// files, tables, schemas, databases, pooled rows and pooled search tokens by this key only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageKey(std::sync::Arc<str>);

impl StorageKey {
    pub fn of(tenant: &TenantId, incarnation: &Incarnation) -> Self {
        if incarnation.is_legacy() {
            StorageKey(tenant.as_str().into())
        } else {
            StorageKey(format!("{tenant}_{incarnation}").into())
        }
    }

    /// The storage of an empty placement kept ready for a tenant not yet created (the ready
    /// pool): `bk-spare_<id>`. A tenant's storage takes a key of its own when it adopts one.
    pub fn spare(id: &Incarnation) -> Self {
        StorageKey(format!("{SPARE_TENANT}_{id}").into())
    }

    /// Whether this key names ready-pool storage rather than a tenant's.
    pub fn is_spare(&self) -> bool {
        self.0
            .strip_prefix(SPARE_TENANT)
            .is_some_and(|rest| rest.starts_with('_'))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key written as text (a file or table name), when it is one.
    pub fn read(raw: &str) -> Option<StorageKey> {
        let (tenant, incarnation) = StorageKey::parse(raw)?;
        Some(StorageKey::of(&tenant, &incarnation))
    }

    /// The tenant and incarnation a key names (`None` for text no key has).
    pub fn parse(raw: &str) -> Option<(TenantId, Incarnation)> {
        match raw.split_once('_') {
            None => Some((TenantId::parse(raw).ok()?, Incarnation::legacy())),
            Some((tenant, incarnation)) => {
                let incarnation = Incarnation::parse(incarnation).ok()?;
                (!incarnation.is_legacy()).then_some((TenantId::parse(tenant).ok()?, incarnation))
            }
        }
    }
}

impl fmt::Display for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StorageKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl UserId {
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|_| Error::internal())?;
        Ok(UserId(format!("u{}", hex::encode(bytes)).into()))
    }
}

impl RecordId {
    /// A fresh, time-ordered id (UUIDv7, 32 hex digits), so new records append to the index.
    pub fn generate() -> Self {
        RecordId(uuid::Uuid::now_v7().simple().to_string().into())
    }
}

impl KeyId {
    pub(crate) fn from_random(bytes: [u8; 8]) -> Self {
        KeyId(format!("k{}", hex::encode(bytes)).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_follow_the_slug_grammar() {
        for ok in ["acme", "a1", "0x", "acme-corp", &"a".repeat(63)] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "Acme",
            "-acme",
            "acme_corp",
            "acme corp",
            "ac/me",
            &"a".repeat(64),
            "é1",
        ] {
            let err = TenantId::parse(bad).unwrap_err();
            assert_eq!(err.code, "invalid_tenant_id", "{bad}");
        }
    }

    #[test]
    fn storage_keys_of_different_incarnations_never_meet() {
        let acme = TenantId::parse("acme").unwrap();
        let legacy = StorageKey::of(&acme, &Incarnation::legacy());
        assert_eq!(legacy.as_str(), "acme");
        let (a, b) = (Incarnation::generate(), Incarnation::generate());
        assert_ne!(a, b);
        let (ka, kb) = (StorageKey::of(&acme, &a), StorageKey::of(&acme, &b));
        assert_ne!(ka, kb);
        assert_ne!(ka, legacy);
        assert_eq!(
            StorageKey::parse(ka.as_str()),
            Some((acme.clone(), a.clone()))
        );
        assert_eq!(
            StorageKey::parse("acme"),
            Some((acme, Incarnation::legacy()))
        );
        // No tenant id can spell a later incarnation's key.
        assert!(TenantId::parse(ka.as_str()).is_err());
        for bad in ["acme_0", "acme_", "_x", "acme_XYZ", "a_b_c"] {
            assert_eq!(StorageKey::parse(bad), None, "{bad}");
        }
        assert!(Incarnation::parse("0").is_ok());
        assert!(Incarnation::parse(a.as_str()).is_ok());
        assert!(Incarnation::parse("00").is_err());
    }

    #[test]
    fn generated_record_ids_are_valid_and_ordered() {
        let a = RecordId::generate();
        let b = RecordId::generate();
        assert!(RecordId::parse(a.as_str()).is_ok());
        assert!(a < b);
    }

    #[test]
    fn field_names_are_snake_case() {
        assert!(FieldName::parse("created_by").is_ok());
        assert!(FieldName::parse("1x").is_err());
        assert!(FieldName::parse("a\"b").is_err());
    }
}
