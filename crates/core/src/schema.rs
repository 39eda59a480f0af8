//! Collection schemas and how they may change.
//!
//! A collection is shared by every tenant; each placement holds its own copy of the tables.
//! [`plan_change`] decides whether a new definition can be rolled out live (additive changes)
//! or must be refused because it would lose or invalidate data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{CollectionName, FieldName};

/// Names the system owns on every record; no collection may define them.
pub const SYSTEM_FIELDS: [&str; 5] = ["id", "created_at", "updated_at", "version", "tenant_id"];
pub const MAX_FIELDS: usize = 200;

pub use crate::value::FieldType;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// Unique per tenant.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unique: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub index: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl FieldSpec {
    /// Whether the storage keeps an index on this field (explicit, or implied by `unique`).
    pub fn indexed(&self) -> bool {
        self.index || self.unique
    }
}

/// The body of `PUT /v1/collections/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionSpec {
    pub fields: BTreeMap<FieldName, FieldSpec>,
}

/// A collection as the catalog stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Collection {
    pub name: CollectionName,
    pub version: i64,
    pub fields: BTreeMap<FieldName, FieldSpec>,
}

impl Collection {
    /// Whether records can be searched: the collection has a `text` field.
    pub fn searchable(&self) -> bool {
        self.fields
            .values()
            .any(|spec| spec.field_type == FieldType::Text)
    }
}

impl CollectionSpec {
    /// Checks the definition on its own: field count, reserved names, defaults that match types.
    pub fn validate(&self) -> Result<(), Error> {
        if self.fields.len() > MAX_FIELDS {
            return Err(Error::bad_request(
                "invalid_schema",
                format!("a collection has at most {MAX_FIELDS} fields"),
            ));
        }
        for (name, spec) in &self.fields {
            if SYSTEM_FIELDS.contains(&name.as_str()) {
                return Err(Error::bad_request(
                    "invalid_schema",
                    format!("fields.{name}: '{name}' is a system field and cannot be defined"),
                ));
            }
            if let Some(default) = &spec.default {
                if default.is_null() {
                    return Err(Error::bad_request(
                        "invalid_schema",
                        format!("fields.{name}.default: null is not a default; omit it instead"),
                    ));
                }
                crate::value::coerce(spec.field_type, default).map_err(|why| {
                    Error::bad_request("invalid_schema", format!("fields.{name}.default: {why}"))
                })?;
            }
            if spec.unique && spec.default.is_some() {
                return Err(Error::bad_request(
                    "invalid_schema",
                    format!("fields.{name}: a unique field cannot have a default"),
                ));
            }
            if spec.field_type == FieldType::Json && spec.indexed() {
                return Err(Error::bad_request(
                    "invalid_schema",
                    format!("fields.{name}: json fields cannot be indexed or unique"),
                ));
            }
        }
        Ok(())
    }
}

/// One storage step of a rollout. Steps are additive: none of them can lose data.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaStep {
    CreateCollection,
    AddField { field: FieldName, spec: FieldSpec },
    CreateIndex { field: FieldName, unique: bool },
    DropIndex { field: FieldName },
}

/// What `PUT /v1/collections/{name}` will do.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaPlan {
    pub collection: Collection,
    pub steps: Vec<SchemaStep>,
    /// False when the new definition equals the old one: nothing is rolled out.
    pub changed: bool,
}

/// Compares the current definition (if any) with the requested one and returns the steps, or
/// an error explaining why the change would lose or invalidate data.
pub fn plan_change(
    name: &CollectionName,
    current: Option<&Collection>,
    requested: &CollectionSpec,
) -> Result<SchemaPlan, Error> {
    requested.validate()?;
    let refuse = |msg: String| Error::conflict("schema_change_refused", msg);
    let Some(current) = current else {
        return Ok(SchemaPlan {
            collection: Collection {
                name: name.clone(),
                version: 1,
                fields: requested.fields.clone(),
            },
            steps: vec![SchemaStep::CreateCollection],
            changed: true,
        });
    };
    if current.fields == requested.fields {
        return Ok(SchemaPlan {
            collection: current.clone(),
            steps: Vec::new(),
            changed: false,
        });
    }
    let mut steps = Vec::new();
    for (field, old) in &current.fields {
        let Some(new) = requested.fields.get(field) else {
            return Err(refuse(format!(
                "removing field '{field}' would lose its data; keep it in the definition"
            )));
        };
        if new.field_type != old.field_type {
            return Err(refuse(format!(
                "changing field '{field}' from {} to {} could lose data; add a new field instead",
                old.field_type, new.field_type
            )));
        }
        if new.required && !old.required {
            return Err(refuse(format!(
                "making field '{field}' required would invalidate existing records that lack it"
            )));
        }
        if new.unique && !old.unique {
            return Err(refuse(format!(
                "making existing field '{field}' unique could fail on existing duplicates; \
                 add a new unique field instead"
            )));
        }
        match (old.indexed(), new.indexed()) {
            (false, true) => steps.push(SchemaStep::CreateIndex {
                field: field.clone(),
                unique: false,
            }),
            (true, false) => steps.push(SchemaStep::DropIndex {
                field: field.clone(),
            }),
            (true, true) if old.unique && !new.unique => {
                steps.push(SchemaStep::DropIndex {
                    field: field.clone(),
                });
                steps.push(SchemaStep::CreateIndex {
                    field: field.clone(),
                    unique: false,
                });
            }
            _ => {}
        }
    }
    for (field, new) in &requested.fields {
        if current.fields.contains_key(field) {
            continue;
        }
        if new.required && new.default.is_none() {
            return Err(refuse(format!(
                "new field '{field}' is required but has no default, so existing records would \
                 be invalid; give it a default or make it optional"
            )));
        }
        // A new unique field is safe: existing records hold no value, and absent values never
        // collide in a unique index.
        steps.push(SchemaStep::AddField {
            field: field.clone(),
            spec: new.clone(),
        });
        if new.indexed() {
            steps.push(SchemaStep::CreateIndex {
                field: field.clone(),
                unique: new.unique,
            });
        }
    }
    Ok(SchemaPlan {
        collection: Collection {
            name: name.clone(),
            version: current.version + 1,
            fields: requested.fields.clone(),
        },
        steps,
        changed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> CollectionSpec {
        serde_json::from_value(json).unwrap()
    }

    fn items() -> CollectionName {
        CollectionName::parse("items").unwrap()
    }

    #[test]
    fn a_new_collection_is_created_at_version_one() {
        let plan = plan_change(
            &items(),
            None,
            &spec(serde_json::json!({"fields": {"title": {"type": "text"}}})),
        )
        .unwrap();
        assert_eq!(plan.collection.version, 1);
        assert_eq!(plan.steps, vec![SchemaStep::CreateCollection]);
    }

    #[test]
    fn additive_changes_apply_and_lossy_ones_are_refused() {
        let first = plan_change(
            &items(),
            None,
            &spec(serde_json::json!({"fields": {"title": {"type": "text", "required": true}}})),
        )
        .unwrap()
        .collection;
        let add = spec(
            serde_json::json!({"fields": {"title": {"type": "text", "required": true}, "n": {"type": "integer", "index": true}}}),
        );
        let plan = plan_change(&items(), Some(&first), &add).unwrap();
        assert_eq!(plan.collection.version, 2);
        assert_eq!(plan.steps.len(), 2);

        let removed = spec(serde_json::json!({"fields": {}}));
        let err = plan_change(&items(), Some(&first), &removed).unwrap_err();
        assert_eq!(err.code, "schema_change_refused");
        assert!(err.message.contains("removing field 'title'"));

        let retyped =
            spec(serde_json::json!({"fields": {"title": {"type": "integer", "required": true}}}));
        assert!(
            plan_change(&items(), Some(&first), &retyped)
                .unwrap_err()
                .message
                .contains("from text to integer")
        );

        let required = spec(
            serde_json::json!({"fields": {"title": {"type": "text", "required": true}, "n": {"type": "integer", "required": true}}}),
        );
        assert!(plan_change(&items(), Some(&first), &required).is_err());

        let same = plan_change(
            &items(),
            Some(&first),
            &spec(serde_json::json!({"fields": {"title": {"type": "text", "required": true}}})),
        )
        .unwrap();
        assert!(!same.changed);
    }

    #[test]
    fn system_field_names_and_bad_defaults_are_rejected() {
        let err = plan_change(
            &items(),
            None,
            &spec(serde_json::json!({"fields": {"version": {"type": "integer"}}})),
        )
        .unwrap_err();
        assert!(err.message.contains("system field"));
        let err = plan_change(
            &items(),
            None,
            &spec(serde_json::json!({"fields": {"n": {"type": "integer", "default": "x"}}})),
        )
        .unwrap_err();
        assert!(err.message.contains("fields.n.default"));
    }
}
