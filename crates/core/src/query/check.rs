//! Types an [`Expr`] against a collection, producing a [`Predicate`].
//!
//! Invariants of the output: every column comes from the collection's schema or is a system
//! field (never `tenant_id`); every value is typed for the operand it meets (see
//! [`Predicate`]); `In` lists are never empty; `ContainsText` only ever reads a `string` or
//! `text` column (on json, `contains` is array membership: `ContainsElement`); `And`/`Or`
//! never directly hold a child of their own kind.

use super::ast::{Expr, Literal, Path, Spanned, Test, TestOp};
use super::literal::parse_timestamp;
use super::parse::error_at;
use super::{CmpOp, Column, Operand, PathStep, Predicate, SystemField};
use crate::error::Error;
use crate::record::FieldValue;
use crate::schema::{Collection, FieldType};

/// A guard for hand-built trees; parsed ones stay far below it.
const MAX_TREE_DEPTH: usize = 128;

/// Types `expr` against `collection`. Errors have code `invalid_filter` and the position of
/// the offending path, operator or value.
pub fn check_filter(expr: &Expr, collection: &Collection) -> Result<Predicate, Error> {
    Checker { collection }.expr(expr, 0)
}

struct Checker<'a> {
    collection: &'a Collection,
}

/// What a path reads, for typing its values.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Typed(FieldType),
    /// A `json` field as a whole.
    JsonField,
    /// A value inside a `json` field: the literal's JSON kind decides the type.
    JsonPath,
}

fn type_phrase(field_type: FieldType) -> &'static str {
    match field_type {
        FieldType::String => "a string",
        FieldType::Text => "text",
        FieldType::Integer => "an integer",
        FieldType::Float => "a float",
        FieldType::Boolean => "a boolean",
        FieldType::Timestamp => "a timestamp",
        FieldType::Json => "a json field",
    }
}

fn is_ordering(op: CmpOp) -> bool {
    !matches!(op, CmpOp::Eq | CmpOp::Ne)
}

impl Checker<'_> {
    fn expr(&self, expr: &Expr, depth: usize) -> Result<Predicate, Error> {
        if depth > MAX_TREE_DEPTH {
            return Err(error_at(expr.pos(), "filter is nested too deeply"));
        }
        match expr {
            Expr::And(items) | Expr::Or(items) => {
                let or = matches!(expr, Expr::Or(_));
                if items.is_empty() {
                    return Err(error_at(0, "empty conjunction or disjunction"));
                }
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match (self.expr(item, depth + 1)?, or) {
                        (Predicate::Or(inner), true) | (Predicate::And(inner), false) => {
                            out.extend(inner)
                        }
                        (other, _) => out.push(other),
                    }
                }
                Ok(if out.len() == 1 {
                    out.remove(0)
                } else if or {
                    Predicate::Or(out)
                } else {
                    Predicate::And(out)
                })
            }
            Expr::Not(inner) => Ok(Predicate::Not(Box::new(self.expr(inner, depth + 1)?))),
            Expr::Test(test) => self.test(test),
        }
    }

    fn resolve(&self, path: &Path) -> Result<(Operand, Target), Error> {
        let column = if let Some(system) = SystemField::parse(&path.name) {
            Column::System(system)
        } else if let Some((name, spec)) = self
            .collection
            .fields
            .iter()
            .find(|(name, _)| name.as_str() == path.name)
        {
            Column::Field {
                name: name.clone(),
                field_type: spec.field_type,
                not_null: spec.required,
            }
        } else {
            let shown: String = path.name.chars().take(64).collect();
            return Err(error_at(
                path.pos,
                format!(
                    "unknown field '{shown}' in collection '{}'",
                    self.collection.name
                ),
            ));
        };
        let field_type = column.field_type();
        match (field_type, path.steps.first()) {
            (FieldType::Json, Some(_)) => {
                let Column::Field { name, .. } = column else {
                    return Err(error_at(path.pos, "system fields are not json"));
                };
                let steps = path.steps.iter().map(|s| s.value.clone()).collect();
                Ok((
                    Operand::JsonPath {
                        field: name,
                        path: steps,
                    },
                    Target::JsonPath,
                ))
            }
            (FieldType::Json, None) => Ok((Operand::Column(column), Target::JsonField)),
            (_, Some(step)) => {
                let what = match step.value {
                    PathStep::Key(_) => "'.key'",
                    PathStep::Index(_) => "'[index]'",
                };
                Err(error_at(
                    step.pos,
                    format!(
                        "{} is {}; only json fields take steps like {what}",
                        path.name,
                        type_phrase(field_type)
                    ),
                ))
            }
            (_, None) => Ok((Operand::Column(column), Target::Typed(field_type))),
        }
    }

    fn test(&self, test: &Test) -> Result<Predicate, Error> {
        let (operand, target) = self.resolve(&test.path)?;
        let label = test.path.to_string();
        let op_error = |why: String| Err(error_at(test.op_pos, format!("{label}: {why}")));
        match &test.op {
            TestOp::Exists => Ok(Predicate::Exists(operand)),
            TestOp::Compare(op, value) if value.value == Literal::Null => match op {
                CmpOp::Eq => Ok(Predicate::Not(Box::new(Predicate::Exists(operand)))),
                CmpOp::Ne => Ok(Predicate::Exists(operand)),
                _ => Err(error_at(
                    value.pos,
                    format!(
                        "null only goes with '=' or '!=' (meaning 'is missing' and 'exists'), \
                         not '{}'",
                        op.symbol()
                    ),
                )),
            },
            TestOp::Compare(op, value) => {
                if target == Target::JsonField {
                    return op_error(whole_json_refusal(&label));
                }
                let typed = typed_value(&label, target, value, is_ordering(*op))?;
                if is_ordering(*op) && matches!(typed, FieldValue::Boolean(_)) {
                    return op_error(format!(
                        "'{}' does not apply to booleans; use '=', '!=' or 'in'",
                        op.symbol()
                    ));
                }
                Ok(Predicate::Compare {
                    operand,
                    op: *op,
                    value: typed,
                })
            }
            TestOp::In(values) => {
                if target == Target::JsonField {
                    return op_error(whole_json_refusal(&label));
                }
                if values.is_empty() {
                    return op_error("the list after 'in' needs at least one value".into());
                }
                let values = values
                    .iter()
                    .map(|v| typed_value(&label, target, v, false))
                    .collect::<Result<_, _>>()?;
                Ok(Predicate::In { operand, values })
            }
            TestOp::Contains(value) => match target {
                Target::Typed(FieldType::String | FieldType::Text) => Ok(Predicate::ContainsText {
                    operand,
                    needle: string_value(&label, value, "contains")?,
                }),
                Target::JsonField | Target::JsonPath => Ok(Predicate::ContainsElement {
                    operand,
                    value: typed_value(&label, Target::JsonPath, value, false)?,
                }),
                Target::Typed(other) => op_error(format!(
                    "'contains' applies to string, text and json fields, and {label} is {}",
                    type_phrase(other)
                )),
            },
            TestOp::StartsWith(value) => match target {
                Target::Typed(FieldType::String | FieldType::Text) | Target::JsonPath => {
                    Ok(Predicate::StartsWith {
                        operand,
                        prefix: string_value(&label, value, "starts_with")?,
                    })
                }
                Target::JsonField => op_error(whole_json_refusal(&label)),
                Target::Typed(other) => op_error(format!(
                    "'starts_with' applies to string and text fields and json paths, and {label} \
                     is {}",
                    type_phrase(other)
                )),
            },
        }
    }
}

fn whole_json_refusal(label: &str) -> String {
    format!(
        "a json field cannot be compared as a whole; compare a path inside it (like {label}.key \
         or {label}[0]), or use 'exists' or 'contains'"
    )
}

fn string_value(label: &str, value: &Spanned<Literal>, op: &str) -> Result<String, Error> {
    match &value.value {
        Literal::String(s) => Ok(s.clone()),
        other => Err(error_at(
            value.pos,
            format!(
                "{label}: '{op}' takes a string, found {}",
                other.kind_phrase()
            ),
        )),
    }
}

/// Types one literal for `target`. `ordering` allows a fractional number against an integer
/// column (`n > 1.5` is meaningful; `n = 1.5` is never true and refused).
fn typed_value(
    label: &str,
    target: Target,
    value: &Spanned<Literal>,
    ordering: bool,
) -> Result<FieldValue, Error> {
    let literal = &value.value;
    let mismatch = |expected: &str, found: &str| {
        let is = match target {
            Target::Typed(t) => type_phrase(t),
            Target::JsonField | Target::JsonPath => "inside a json field",
        };
        Err(error_at(
            value.pos,
            format!("{label} is {is}; expected {expected}, found {found}"),
        ))
    };
    if let Literal::Variable(path) = literal {
        return Err(error_at(
            value.pos,
            format!(
                "{label}: variables such as @{} are allowed only in record rules",
                path.join(".")
            ),
        ));
    }
    if *literal == Literal::Null {
        return mismatch(
            "a value",
            "null (use 'exists' or '= null' to test for a value)",
        );
    }
    match target {
        Target::JsonField | Target::JsonPath => match literal {
            Literal::String(s) => Ok(FieldValue::Text(s.clone())),
            Literal::Integer(i) => Ok(FieldValue::Integer(*i)),
            Literal::Float(f) => Ok(FieldValue::Float(*f)),
            Literal::Boolean(b) => Ok(FieldValue::Boolean(*b)),
            Literal::Timestamp(_) => mismatch(
                "a string, number or boolean",
                "a timestamp (json has no timestamps; quote it to compare as a string)",
            ),
            _ => mismatch("a string, number or boolean", literal.kind_phrase()),
        },
        Target::Typed(FieldType::String | FieldType::Text) => match literal {
            Literal::String(s) => Ok(FieldValue::Text(s.clone())),
            _ => mismatch("a string", literal.kind_phrase()),
        },
        Target::Typed(FieldType::Integer) => match literal {
            Literal::Integer(i) => Ok(FieldValue::Integer(*i)),
            Literal::Float(f) => {
                // -2^63 ..= 2^63 - 1: the f64 range that converts to i64 without saturating.
                let in_range =
                    *f >= -9_223_372_036_854_775_808.0 && *f < 9_223_372_036_854_775_808.0;
                if f.fract() == 0.0 && in_range {
                    Ok(FieldValue::Integer(*f as i64))
                } else if ordering {
                    Ok(FieldValue::Float(*f))
                } else if in_range {
                    mismatch(
                        "an integer",
                        "a fractional number (which only goes with <, <=, > and >=)",
                    )
                } else {
                    mismatch("an integer", "a number outside the 64-bit integer range")
                }
            }
            _ => mismatch("an integer", literal.kind_phrase()),
        },
        Target::Typed(FieldType::Float) => match literal {
            Literal::Integer(i) => Ok(FieldValue::Float(*i as f64)),
            Literal::Float(f) => Ok(FieldValue::Float(*f)),
            _ => mismatch("a number", literal.kind_phrase()),
        },
        Target::Typed(FieldType::Boolean) => match literal {
            Literal::Boolean(b) => Ok(FieldValue::Boolean(*b)),
            _ => mismatch("true or false", literal.kind_phrase()),
        },
        Target::Typed(FieldType::Timestamp) => match literal {
            Literal::Timestamp(t) => Ok(FieldValue::Timestamp(*t)),
            Literal::String(s) => match parse_timestamp(s) {
                Some(t) => Ok(FieldValue::Timestamp(t)),
                None => mismatch(
                    "a timestamp (RFC 3339)",
                    "a string that is not an RFC 3339 timestamp",
                ),
            },
            _ => mismatch("a timestamp (RFC 3339)", literal.kind_phrase()),
        },
        // Unreachable: resolve() maps json columns to JsonField/JsonPath.
        Target::Typed(FieldType::Json) => mismatch("a path inside the json field", "a value"),
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
