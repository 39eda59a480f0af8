//! Field types and typed field values: what a record's fields hold once validated, and the
//! conversion of JSON into them by field type. Below both `schema` (which checks defaults with it) and
//! `record`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::FieldName;
use crate::time::Timestamp;

/// The type of a collection's field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Text,
    Integer,
    Float,
    Boolean,
    Timestamp,
    Json,
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldType::String => "string",
            FieldType::Text => "text",
            FieldType::Integer => "integer",
            FieldType::Float => "float",
            FieldType::Boolean => "boolean",
            FieldType::Timestamp => "timestamp",
            FieldType::Json => "json",
        })
    }
}

/// Longest value a `string` field takes; `text` is bounded only by the request size limit.
pub const MAX_STRING_BYTES: usize = 65_535;

/// A typed field value. Absent optional fields are simply not in the map.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Timestamp(Timestamp),
    Json(Value),
}

impl FieldValue {
    pub fn to_json(&self) -> Value {
        match self {
            FieldValue::Text(s) => Value::String(s.clone()),
            FieldValue::Integer(i) => Value::from(*i),
            FieldValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            FieldValue::Boolean(b) => Value::Bool(*b),
            FieldValue::Timestamp(t) => Value::String(t.to_rfc3339()),
            FieldValue::Json(v) => v.clone(),
        }
    }
}

/// The same JSON as [`FieldValue::to_json`], written without building it.
impl Serialize for FieldValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldValue::Text(text) => s.serialize_str(text),
            FieldValue::Integer(i) => s.serialize_i64(*i),
            FieldValue::Float(f) if f.is_finite() => s.serialize_f64(*f),
            FieldValue::Float(_) => s.serialize_unit(),
            FieldValue::Boolean(b) => s.serialize_bool(*b),
            FieldValue::Timestamp(t) => t.serialize(s),
            FieldValue::Json(v) => v.serialize(s),
        }
    }
}

/// Converts one JSON value to the field's type, or says what was expected.
pub fn coerce(field_type: FieldType, value: &Value) -> Result<FieldValue, String> {
    let got = || json_kind(value);
    match field_type {
        FieldType::String | FieldType::Text => match value {
            Value::String(s) if field_type == FieldType::String && s.len() > MAX_STRING_BYTES => {
                Err(format!(
                    "string longer than {MAX_STRING_BYTES} bytes; use a text field"
                ))
            }
            Value::String(s) if s.contains('\0') => Err(crate::query::parse::NUL_REFUSED.into()),
            Value::String(s) => Ok(FieldValue::Text(s.clone())),
            _ => Err(format!(
                "expected {field_type} (a JSON string), got {}",
                got()
            )),
        },
        FieldType::Integer => match value.as_i64() {
            Some(i) => Ok(FieldValue::Integer(i)),
            // JSON parsers read `-0` as a float (negative zero).
            None if value
                .as_f64()
                .is_some_and(|f| f == 0.0 && f.is_sign_negative()) =>
            {
                Err("expected integer, got -0 (a float to JSON parsers); send 0".into())
            }
            None if value.is_number() => {
                Err("expected integer, got a fraction or out-of-range number".into())
            }
            None => Err(format!("expected integer, got {}", got())),
        },
        FieldType::Float => match value.as_f64() {
            Some(f) if f.is_finite() => Ok(FieldValue::Float(f)),
            _ => Err(format!("expected float, got {}", got())),
        },
        FieldType::Boolean => match value {
            Value::Bool(b) => Ok(FieldValue::Boolean(*b)),
            _ => Err(format!("expected boolean, got {}", got())),
        },
        FieldType::Timestamp => match value {
            Value::String(s) => Timestamp::parse_rfc3339(s)
                .map(FieldValue::Timestamp)
                .ok_or_else(|| format!("expected an RFC 3339 timestamp, got {:?}", truncate(s))),
            _ => Err(format!(
                "expected timestamp (an RFC 3339 string), got {}",
                got()
            )),
        },
        FieldType::Json => match nul_in(value) {
            Some(at) => Err(format!("at {at}: {}", crate::query::parse::NUL_REFUSED)),
            None => Ok(FieldValue::Json(value.clone())),
        },
    }
}

/// Whether stored fields hold a NUL character (written before it was refused everywhere):
/// such a record cannot be moved to an engine that cannot store it.
pub fn holds_nul(fields: &Fields) -> bool {
    fields.values().any(|value| match value {
        FieldValue::Text(s) => s.contains('\0'),
        FieldValue::Json(v) => nul_in(v).is_some(),
        _ => false,
    })
}

/// The JSON path (`$.a[2].b`) of the first string or key with a NUL character in `value`.
fn nul_in(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &mut String) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(key, item)| {
                let len = path.len();
                path.push_str(&format!(".{}", key.replace('\0', "\\u0000")));
                let found = key.contains('\0') || walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = "$".to_owned();
    walk(value, &mut path).then_some(path)
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub type Fields = BTreeMap<FieldName, FieldValue>;
