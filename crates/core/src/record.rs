//! Records and their validation against a collection.
//!
//! Input arrives as JSON; it leaves this module as typed [`FieldValue`]s that every engine can
//! bind without guessing. Validation names the field path and what was expected, and never
//! panics on any input (see the property tests below).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::ids::{FieldName, RecordId};
use crate::schema::{Collection, FieldType};
use crate::time::Timestamp;

use crate::value::json_kind;
pub use crate::value::{FieldValue, Fields, MAX_STRING_BYTES, coerce, holds_nul};

/// A validated record about to be inserted.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    pub id: RecordId,
    pub fields: Fields,
}

impl NewRecord {
    /// The record as it will be once created at `now` (version 1), e.g. to check a record
    /// rule before inserting it.
    pub fn as_created(&self, now: Timestamp) -> Record {
        Record {
            id: self.id.clone(),
            created_at: now,
            updated_at: now,
            version: 1,
            fields: self.fields.clone(),
        }
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: RecordId,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
    pub fields: Fields,
}

impl Record {
    /// The largest version a record may have: 2^53 − 1, the largest integer a JavaScript
    /// client (the TypeScript SDK, a browser) reads exactly. A restore refuses a version past
    /// it; from a version at most this, no count of updates reaches `i64::MAX`.
    pub const MAX_VERSION: i64 = (1 << 53) - 1;

    /// The version a change of this record gets, or `None` once the record is at
    /// [`Record::MAX_VERSION`] (only reachable through a restore made before the limit).
    pub fn next_version(&self) -> Option<i64> {
        self.version
            .checked_add(1)
            .filter(|next| *next <= Self::MAX_VERSION)
    }

    /// The record as definition `newer` of its collection would hold it, when it was written
    /// with `older`: the fields `newer` added take their defaults, as `ALTER TABLE … ADD
    /// COLUMN … DEFAULT` gives the rows already in a table. A default that does not fit its
    /// type (never stored: schemas are checked) is left out.
    pub fn upgrade(&mut self, older: &Collection, newer: &Collection) {
        for (name, spec) in &newer.fields {
            if older.fields.contains_key(name) || self.fields.contains_key(name) {
                continue;
            }
            if let Some(value) = spec
                .default
                .as_ref()
                .and_then(|d| coerce(spec.field_type, d).ok())
            {
                self.fields.insert(name.clone(), value);
            }
        }
    }

    pub fn to_json(&self) -> Value {
        let mut map = Map::with_capacity(self.fields.len() + 4);
        map.insert("id".into(), Value::String(self.id.as_str().to_owned()));
        map.insert(
            "created_at".into(),
            Value::String(self.created_at.to_rfc3339()),
        );
        map.insert(
            "updated_at".into(),
            Value::String(self.updated_at.to_rfc3339()),
        );
        map.insert("version".into(), Value::from(self.version));
        for (name, value) in &self.fields {
            map.insert(name.as_str().to_owned(), value.to_json());
        }
        Value::Object(map)
    }
}

/// The same text as [`Record::to_json`] turned to a string (keys in the same order: `Value`'s
/// map is sorted), written straight from the record without building a `Value` first: every
/// answer that carries records goes through it (issue 24).
impl serde::Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        // System fields, by name (schemas cannot define fields of these names).
        const SYSTEM: [&str; 4] = ["created_at", "id", "updated_at", "version"];
        let mut map = s.serialize_map(Some(self.fields.len() + SYSTEM.len()))?;
        let mut system = SYSTEM.iter().peekable();
        let put_system = |map: &mut S::SerializeMap, name: &str| match name {
            "created_at" => map.serialize_entry(name, &self.created_at),
            "id" => map.serialize_entry(name, self.id.as_str()),
            "updated_at" => map.serialize_entry(name, &self.updated_at),
            _ => map.serialize_entry(name, &self.version),
        };
        for (name, value) in &self.fields {
            while let Some(next) = system.next_if(|next| **next < name.as_str()) {
                put_system(&mut map, next)?;
            }
            map.serialize_entry(name.as_str(), value)?;
        }
        for next in system {
            put_system(&mut map, next)?;
        }
        map.end()
    }
}

/// The change a PUT or PATCH asks for, already validated field by field.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordChange {
    /// The complete new set of fields (PUT).
    Replace(Fields),
    /// Fields to set (`Some`) or remove (`None`) (PATCH, JSON merge-patch at the top level).
    Patch(BTreeMap<FieldName, Option<FieldValue>>),
}

/// What the body said about system fields that callers may send back unchanged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BodyPreconditions {
    /// `version` in the body acts like `If-Match`.
    pub version: Option<i64>,
}

fn validation(path: &str, why: impl std::fmt::Display) -> Error {
    Error::bad_request("validation_failed", format!("{path}: {why}"))
}

fn as_object(body: &Value) -> Result<&Map<String, Value>, Error> {
    body.as_object().ok_or_else(|| {
        validation(
            "$",
            format!("expected a JSON object, got {}", json_kind(body)),
        )
    })
}

/// Splits system fields off a body. `id` must match `expected_id` when one is given;
/// `created_at`/`updated_at` are read-only and ignored so a fetched record can be sent back.
fn take_system_fields(
    object: &Map<String, Value>,
    expected_id: Option<&RecordId>,
) -> Result<(Option<RecordId>, BodyPreconditions), Error> {
    let mut id = None;
    let mut pre = BodyPreconditions::default();
    if let Some(raw) = object.get("id") {
        let raw = raw
            .as_str()
            .ok_or_else(|| validation("id", "expected a string"))?;
        let parsed = RecordId::parse(raw).map_err(|e| validation("id", e.message))?;
        if expected_id.is_some_and(|expected| expected != &parsed) {
            return Err(validation("id", "does not match the id in the path"));
        }
        id = Some(parsed);
    }
    if let Some(raw) = object.get("version") {
        pre.version = Some(
            raw.as_i64()
                .ok_or_else(|| validation("version", "expected an integer"))?,
        );
    }
    if object.contains_key("tenant_id") {
        return Err(validation(
            "tenant_id",
            "is implied by the credential and cannot be set",
        ));
    }
    Ok((id, pre))
}

fn is_system(key: &str) -> bool {
    matches!(key, "id" | "version" | "created_at" | "updated_at")
}

fn field_name<'a>(
    collection: &'a Collection,
    key: &str,
) -> Result<(&'a FieldName, FieldType), Error> {
    collection
        .fields
        .iter()
        .find(|(name, _)| name.as_str() == key)
        .map(|(name, spec)| (name, spec.field_type))
        .ok_or_else(|| {
            validation(
                key,
                format!("unknown field in collection '{}'", collection.name),
            )
        })
}

/// Validates a full record body (POST, PUT): every key known, every type right, required
/// fields present; defaults filled in for absent fields.
pub fn validate_full(
    collection: &Collection,
    body: &Value,
    expected_id: Option<&RecordId>,
) -> Result<(Option<RecordId>, Fields, BodyPreconditions), Error> {
    let object = as_object(body)?;
    let (id, pre) = take_system_fields(object, expected_id)?;
    let mut fields = Fields::new();
    for (key, value) in object {
        if is_system(key) {
            continue;
        }
        let (name, field_type) = field_name(collection, key)?;
        if value.is_null() {
            continue;
        }
        fields.insert(
            name.clone(),
            coerce(field_type, value).map_err(|why| validation(key, why))?,
        );
    }
    for (name, spec) in &collection.fields {
        if fields.contains_key(name) {
            continue;
        }
        if let Some(default) = &spec.default {
            let value =
                coerce(spec.field_type, default).map_err(|why| validation(name.as_str(), why))?;
            fields.insert(name.clone(), value);
        } else if spec.required {
            return Err(validation(name.as_str(), "required field is missing"));
        }
    }
    Ok((id, fields, pre))
}

/// Validates a PATCH body: known fields, right types; `null` removes an optional field.
pub fn validate_patch(
    collection: &Collection,
    body: &Value,
    expected_id: &RecordId,
) -> Result<(BTreeMap<FieldName, Option<FieldValue>>, BodyPreconditions), Error> {
    let object = as_object(body)?;
    let (_, pre) = take_system_fields(object, Some(expected_id))?;
    let mut patch = BTreeMap::new();
    for (key, value) in object {
        if is_system(key) {
            continue;
        }
        let (name, field_type) = field_name(collection, key)?;
        if value.is_null() {
            if collection.fields[name].required {
                return Err(validation(key, "required field cannot be removed"));
            }
            patch.insert(name.clone(), None);
        } else {
            patch.insert(
                name.clone(),
                Some(coerce(field_type, value).map_err(|why| validation(key, why))?),
            );
        }
    }
    Ok((patch, pre))
}

/// Applies a validated change to the stored fields and returns the new field set.
pub fn apply_change(existing: &Fields, change: RecordChange) -> Fields {
    match change {
        RecordChange::Replace(fields) => fields,
        RecordChange::Patch(patch) => {
            let mut fields = existing.clone();
            for (name, value) in patch {
                match value {
                    Some(value) => fields.insert(name, value),
                    None => fields.remove(&name),
                };
            }
            fields
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CollectionName;
    use crate::schema::{CollectionSpec, plan_change};
    use proptest::prelude::*;
    use serde_json::json;

    fn collection() -> Collection {
        let spec: CollectionSpec = serde_json::from_value(json!({"fields": {
            "title": {"type": "text", "required": true},
            "n": {"type": "integer", "default": 7},
            "score": {"type": "float"},
            "done": {"type": "boolean"},
            "due": {"type": "timestamp"},
            "meta": {"type": "json"}
        }}))
        .unwrap();
        plan_change(&CollectionName::parse("items").unwrap(), None, &spec)
            .unwrap()
            .collection
    }

    #[test]
    fn a_valid_body_is_typed_and_defaults_are_filled() {
        let (id, fields, _) = validate_full(
            &collection(),
            &json!({"title": "hi", "due": "2026-01-01T00:00:00Z", "meta": {"a": [1]}}),
            None,
        )
        .unwrap();
        assert!(id.is_none());
        assert_eq!(
            fields[&FieldName::parse("n").unwrap()],
            FieldValue::Integer(7)
        );
        assert!(matches!(
            fields[&FieldName::parse("due").unwrap()],
            FieldValue::Timestamp(_)
        ));
    }

    #[test]
    fn an_upgraded_record_takes_only_the_added_fields_defaults() {
        let name = CollectionName::parse("items").unwrap();
        let older = collection();
        let spec: CollectionSpec = serde_json::from_value(json!({"fields": {
            "title": {"type": "text", "required": true},
            "n": {"type": "integer", "default": 7},
            "score": {"type": "float"},
            "done": {"type": "boolean"},
            "due": {"type": "timestamp"},
            "meta": {"type": "json"},
            "kind": {"type": "text", "default": "zebra"},
            "size": {"type": "integer"}
        }}))
        .unwrap();
        let newer = plan_change(&name, Some(&older), &spec).unwrap().collection;
        let (_, fields, _) = validate_full(&older, &json!({"title": "t"}), None).unwrap();
        let mut record = Record {
            id: RecordId::parse("r1").unwrap(),
            created_at: Timestamp::from_micros(1),
            updated_at: Timestamp::from_micros(1),
            version: 1,
            fields,
        };
        // A field the older definition had but the record left out stays out.
        record.fields.remove(&FieldName::parse("n").unwrap());
        record.upgrade(&older, &newer);
        let field = |f: &str| record.fields.get(&FieldName::parse(f).unwrap()).cloned();
        assert_eq!(field("kind"), Some(FieldValue::Text("zebra".into())));
        assert_eq!(field("size"), None, "no default, no value");
        assert_eq!(field("n"), None, "not added by the newer definition");
        assert_eq!(field("title"), Some(FieldValue::Text("t".into())));
    }

    #[test]
    fn errors_name_the_field_and_what_was_expected() {
        let c = collection();
        let err = validate_full(&c, &json!({"n": 1}), None).unwrap_err();
        assert_eq!(err.message, "title: required field is missing");
        let err = validate_full(&c, &json!({"title": "x", "n": 1.5}), None).unwrap_err();
        assert!(
            err.message.starts_with("n: expected integer"),
            "{}",
            err.message
        );
        // `-0` is read as a float: the message says so rather than "a fraction".
        let body: serde_json::Value = serde_json::from_str(r#"{"title": "x", "n": -0}"#).unwrap();
        let err = validate_full(&c, &body, None).unwrap_err();
        assert_eq!(
            err.message,
            "n: expected integer, got -0 (a float to JSON parsers); send 0"
        );
        let err = validate_full(&c, &json!({"title": "x", "nope": 1}), None).unwrap_err();
        assert!(err.message.starts_with("nope: unknown field"));
        let err =
            validate_full(&c, &json!({"title": "x", "tenant_id": "other"}), None).unwrap_err();
        assert!(err.message.starts_with("tenant_id:"));
        let err = validate_full(&c, &json!([1]), None).unwrap_err();
        assert!(err.message.starts_with("$: expected a JSON object"));
    }

    #[test]
    fn patch_removes_optional_fields_but_not_required_ones() {
        let c = collection();
        let id = RecordId::parse("r1").unwrap();
        let (patch, _) = validate_patch(&c, &json!({"n": null, "done": true}), &id).unwrap();
        let (_, existing, _) = validate_full(&c, &json!({"title": "x"}), None).unwrap();
        let merged = apply_change(&existing, RecordChange::Patch(patch));
        assert!(!merged.contains_key(&FieldName::parse("n").unwrap()));
        assert_eq!(
            merged[&FieldName::parse("done").unwrap()],
            FieldValue::Boolean(true)
        );
        assert!(validate_patch(&c, &json!({"title": null}), &id).is_err());
        assert!(validate_patch(&c, &json!({"id": "other"}), &id).is_err());
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{0,8}|title|n|due|id|version", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_field_value() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            ".{0,12}".prop_map(FieldValue::Text),
            any::<i64>().prop_map(FieldValue::Integer),
            prop_oneof![
                any::<f64>(),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(-0.0)
            ]
            .prop_map(FieldValue::Float),
            any::<bool>().prop_map(FieldValue::Boolean),
            (-62_135_596_800_000_000i64..253_402_300_799_999_999)
                .prop_map(|us| FieldValue::Timestamp(Timestamp::from_micros(us))),
            arb_json().prop_map(FieldValue::Json),
        ]
    }

    proptest! {
        /// The record written straight to text is the text of its JSON value, byte for byte.
        #[test]
        fn a_record_serialises_as_its_json_value_does(
            fields in prop::collection::btree_map(
                "[a-z][a-z0-9_]{0,9}|ic|id_|idx|updated_a|vers|z|created_at_x",
                arb_field_value(),
                0..10,
            ),
            id in "[a-zA-Z0-9_-]{1,20}",
            created in -62_135_596_800_000_000i64..253_402_300_799_999_999,
            updated in any::<i64>(),
            version in any::<i64>(),
        ) {
            let fields: Fields = fields
                .into_iter()
                .filter(|(name, _)| !crate::schema::SYSTEM_FIELDS.contains(&name.as_str()))
                .filter_map(|(name, value)| FieldName::parse(&name).ok().map(|n| (n, value)))
                .collect();
            let record = Record {
                id: RecordId::parse(&id).unwrap(),
                created_at: Timestamp::from_micros(created),
                updated_at: Timestamp::from_micros(updated),
                version,
                fields,
            };
            prop_assert_eq!(
                serde_json::to_string(&record).unwrap(),
                record.to_json().to_string()
            );
        }

        #[test]
        fn validation_never_panics_and_accepted_records_round_trip(body in arb_json()) {
            let c = collection();
            if let Ok((_, fields, _)) = validate_full(&c, &body, None) {
                // Whatever was accepted must validate again from its own JSON form.
                let mut map = Map::new();
                for (k, v) in &fields { map.insert(k.to_string(), v.to_json()); }
                let again = validate_full(&c, &Value::Object(map), None).unwrap().1;
                prop_assert_eq!(again, fields);
            }
            let _ = validate_patch(&c, &body, &RecordId::parse("x").unwrap());
        }
    }
}
