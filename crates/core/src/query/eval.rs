//! The meaning of a [`Predicate`], evaluated on a record in memory. Engines compile
//! predicates to SQL; this is the reference they are tested against (the conformance suite
//! compares both on random data), and what access rules use to check a record about to be
//! written.

use std::cmp::Ordering;

use serde_json::Value;

use super::{CmpOp, Column, Operand, PathStep, Predicate, SystemField};
use crate::record::{FieldValue, Record};

/// Whether `record` satisfies `predicate`.
pub fn matches(predicate: &Predicate, record: &Record) -> bool {
    match predicate {
        Predicate::And(parts) => parts.iter().all(|p| matches(p, record)),
        Predicate::Or(parts) => parts.iter().any(|p| matches(p, record)),
        Predicate::Not(inner) => !matches(inner, record),
        Predicate::Compare { operand, op, value } => match read(operand, record) {
            Read::Missing => *op == CmpOp::Ne,
            Read::Column(v) => match compare_values(&v, value) {
                Some(ord) => holds(*op, ord),
                None => *op == CmpOp::Ne,
            },
            Read::Json(v) => {
                let eq_or_order = json_compare(&v, value);
                match (op, eq_or_order) {
                    (CmpOp::Ne, Some(ord)) => ord != Ordering::Equal,
                    (CmpOp::Ne, None) => true,
                    (_, Some(ord)) => holds(*op, ord),
                    (_, None) => false,
                }
            }
        },
        Predicate::In { operand, values } => values.iter().any(|v| {
            matches(
                &Predicate::Compare {
                    operand: operand.clone(),
                    op: CmpOp::Eq,
                    value: v.clone(),
                },
                record,
            )
        }),
        Predicate::Exists(operand) => match read(operand, record) {
            Read::Missing => false,
            Read::Column(_) => true,
            Read::Json(v) => !v.is_null(),
        },
        Predicate::StartsWith { operand, prefix } => {
            text_of(operand, record).is_some_and(|s| s.starts_with(prefix.as_str()))
        }
        Predicate::ContainsText { operand, needle } => {
            text_of(operand, record).is_some_and(|s| s.contains(needle.as_str()))
        }
        Predicate::ContainsElement { operand, value } => match read(operand, record) {
            Read::Json(Value::Array(items)) => items
                .iter()
                .any(|item| json_compare(item, value) == Some(Ordering::Equal)),
            _ => false,
        },
    }
}

enum Read {
    Missing,
    Column(FieldValue),
    Json(Value),
}

/// A record's value of a column (system fields always have one).
pub fn column_value(record: &Record, column: &Column) -> Option<FieldValue> {
    match column {
        Column::System(SystemField::Id) => Some(FieldValue::Text(record.id.as_str().to_owned())),
        Column::System(SystemField::CreatedAt) => Some(FieldValue::Timestamp(record.created_at)),
        Column::System(SystemField::UpdatedAt) => Some(FieldValue::Timestamp(record.updated_at)),
        Column::System(SystemField::Version) => Some(FieldValue::Integer(record.version)),
        Column::Field { name, .. } => record.fields.get(name).cloned(),
    }
}

fn read(operand: &Operand, record: &Record) -> Read {
    match operand {
        Operand::Column(column) => match column_value(record, column) {
            None => Read::Missing,
            Some(FieldValue::Json(v)) => Read::Json(v),
            Some(v) => Read::Column(v),
        },
        Operand::JsonPath { field, path } => match record.fields.get(field) {
            Some(FieldValue::Json(v)) => match walk(v, path) {
                Some(v) => Read::Json(v.clone()),
                None => Read::Missing,
            },
            _ => Read::Missing,
        },
    }
}

fn walk<'a>(mut value: &'a Value, path: &[PathStep]) -> Option<&'a Value> {
    for step in path {
        value = match (step, value) {
            (PathStep::Key(k), Value::Object(map)) => map.get(k)?,
            (PathStep::Index(i), Value::Array(items)) => items.get(*i as usize)?,
            _ => return None,
        };
    }
    Some(value)
}

fn text_of(operand: &Operand, record: &Record) -> Option<String> {
    match read(operand, record) {
        Read::Column(FieldValue::Text(s)) => Some(s),
        Read::Json(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn holds(op: CmpOp, ord: Ordering) -> bool {
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
    }
}

fn number(value: &FieldValue) -> Option<f64> {
    match value {
        FieldValue::Integer(i) => Some(*i as f64),
        FieldValue::Float(f) => Some(*f),
        _ => None,
    }
}

/// Orders a stored column value against a literal of the column's type.
fn compare_values(stored: &FieldValue, literal: &FieldValue) -> Option<Ordering> {
    match (stored, literal) {
        (FieldValue::Integer(a), FieldValue::Integer(b)) => Some(a.cmp(b)),
        (FieldValue::Text(a), FieldValue::Text(b)) => Some(a.as_str().cmp(b.as_str())),
        (FieldValue::Boolean(a), FieldValue::Boolean(b)) => Some(a.cmp(b)),
        (FieldValue::Timestamp(a), FieldValue::Timestamp(b)) => Some(a.cmp(b)),
        (a, b) => number(a)?.partial_cmp(&number(b)?),
    }
}

/// Orders a JSON value against a literal, when they are of the same kind.
fn json_compare(stored: &Value, literal: &FieldValue) -> Option<Ordering> {
    match (stored, literal) {
        (Value::String(a), FieldValue::Text(b)) => Some(a.as_str().cmp(b.as_str())),
        (Value::String(a), FieldValue::Timestamp(b)) => {
            Some(a.as_str().cmp(b.to_rfc3339().as_str()))
        }
        (Value::Bool(a), FieldValue::Boolean(b)) => Some(a.cmp(b)),
        (Value::Number(a), FieldValue::Integer(b)) => match a.as_i64() {
            Some(a) => Some(a.cmp(b)),
            None => a.as_f64()?.partial_cmp(&(*b as f64)),
        },
        (Value::Number(a), FieldValue::Float(b)) => a.as_f64()?.partial_cmp(b),
        _ => None,
    }
}
