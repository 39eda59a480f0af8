//! SQLite's side of the shared query compiler: `?N` placeholders, booleans as 0/1 and
//! timestamps as microseconds, JSON through `json_type`/`json_extract`/`json_each`, and
//! NULLs that already sort lowest.

use bulkhead_core::query::aggregate::Interval;
use bulkhead_core::query::{CmpOp, PathStep};
use bulkhead_core::record::FieldValue;
use bulkhead_engine::sql::{Dialect, JsonKind, Params, SqlParam, prefix_upper_bound};

pub struct Sqlite;

/// Monday 1969-12-29 00:00 UTC, in microseconds: weeks are counted from a Monday.
const MONDAY_EPOCH: i64 = -3 * 86_400_000_000;

/// `$."key"[3]`. Keys are `[A-Za-z0-9_]+` (the parser guarantees it), bound as a parameter
/// all the same.
fn json_path(path: &[PathStep]) -> SqlParam {
    let mut text = String::from("$");
    for step in path {
        match step {
            PathStep::Key(key) => {
                text.push_str(".\"");
                text.push_str(key);
                text.push('"');
            }
            PathStep::Index(i) => text.push_str(&format!("[{i}]")),
        }
    }
    SqlParam::Text(text)
}

fn kind_test(kind: JsonKind, type_expr: &str) -> String {
    match kind {
        JsonKind::String => format!("{type_expr} = 'text'"),
        JsonKind::Number => format!("{type_expr} IN ('integer', 'real')"),
        JsonKind::True => format!("{type_expr} = 'true'"),
        JsonKind::False => format!("{type_expr} = 'false'"),
    }
}

/// A literal as it appears inside JSON: timestamps are strings there.
fn json_param(value: &FieldValue) -> SqlParam {
    match value {
        FieldValue::Timestamp(t) => SqlParam::Text(t.to_rfc3339()),
        other => Sqlite.param(other),
    }
}

impl Dialect for Sqlite {
    fn placeholder(&self) -> fn(usize) -> String {
        |n| format!("?{n}")
    }

    fn distinct_from(&self, lhs: &str, rhs: &str) -> String {
        format!("({lhs} IS NOT {rhs})")
    }

    fn starts_with(&self, params: &mut Params, lhs: &str, prefix: &str) -> String {
        if prefix.is_empty() {
            return format!("({lhs} IS NOT NULL)");
        }
        let low = params.bind(SqlParam::Text(prefix.to_owned()));
        match prefix_upper_bound(prefix) {
            Some(high) => {
                let high = params.bind(SqlParam::Text(high));
                format!("({lhs} >= {low} AND {lhs} < {high})")
            }
            None => format!("({lhs} >= {low} AND substr({lhs}, 1, length({low})) = {low})"),
        }
    }

    fn contains_text(&self, params: &mut Params, lhs: &str, needle: &str) -> String {
        let needle = params.bind(SqlParam::Text(needle.to_owned()));
        format!("(instr({lhs}, {needle}) > 0)")
    }

    fn json_compare(
        &self,
        params: &mut Params,
        column: &str,
        path: &[PathStep],
        op: CmpOp,
        value: &FieldValue,
    ) -> String {
        let p = params.bind(json_path(path));
        let kind = JsonKind::of(value);
        let test = kind_test(kind, &format!("json_type({column}, {p})"));
        match kind {
            JsonKind::True | JsonKind::False => format!("({test})"),
            JsonKind::String | JsonKind::Number => {
                let v = params.bind(json_param(value));
                format!(
                    "({test} AND json_extract({column}, {p}) {} {v})",
                    op.symbol()
                )
            }
        }
    }

    fn json_exists(&self, params: &mut Params, column: &str, path: &[PathStep]) -> String {
        let p = params.bind(json_path(path));
        format!("(coalesce(json_type({column}, {p}), 'null') != 'null')")
    }

    fn json_contains_element(
        &self,
        params: &mut Params,
        column: &str,
        path: &[PathStep],
        value: &FieldValue,
    ) -> String {
        let p = params.bind(json_path(path));
        let kind = JsonKind::of(value);
        let element = match kind {
            JsonKind::True | JsonKind::False => kind_test(kind, "e.type"),
            JsonKind::String | JsonKind::Number => {
                let v = params.bind(json_param(value));
                format!("{} AND e.value = {v}", kind_test(kind, "e.type"))
            }
        };
        format!(
            "(json_type({column}, {p}) = 'array' AND EXISTS (SELECT 1 FROM json_each({column}, {p}) AS e WHERE {element}))"
        )
    }

    fn json_contains_text(
        &self,
        params: &mut Params,
        column: &str,
        path: &[PathStep],
        needle: &str,
    ) -> String {
        let p = params.bind(json_path(path));
        let n = params.bind(SqlParam::Text(needle.to_owned()));
        format!(
            "(json_type({column}, {p}) = 'text' AND instr(json_extract({column}, {p}), {n}) > 0)"
        )
    }

    fn json_starts_with(
        &self,
        params: &mut Params,
        column: &str,
        path: &[PathStep],
        prefix: &str,
    ) -> String {
        let p = params.bind(json_path(path));
        let n = params.bind(SqlParam::Text(prefix.to_owned()));
        format!(
            "(json_type({column}, {p}) = 'text' AND substr(json_extract({column}, {p}), 1, length({n})) = {n})"
        )
    }

    fn bucket(&self, column: &str, interval: Interval) -> String {
        match interval.fixed_micros() {
            Some(len) => {
                let offset = if interval == Interval::Week {
                    MONDAY_EPOCH
                } else {
                    0
                };
                // Floor towards minus infinity, also before 1970.
                format!("({column} - ((({column} - ({offset})) % {len}) + {len}) % {len})")
            }
            None => {
                let seconds = format!(
                    "(({column} - ((({column} % 1000000) + 1000000) % 1000000)) / 1000000)"
                );
                format!("(unixepoch(strftime('%Y-%m-01', {seconds}, 'unixepoch')) * 1000000)")
            }
        }
    }

    fn order_term(&self, expr: &str, descending: bool, _not_null: bool) -> String {
        // SQLite already sorts NULL lowest.
        if descending {
            format!("{expr} DESC")
        } else {
            expr.to_owned()
        }
    }
}
