//! PostgreSQL's side of the shared query compiler: `$N` placeholders, values in their stored
//! types (timestamps as microseconds), JSON through `jsonb` and SQL/JSON paths in strict mode
//! (so `a[0]` never matches an object key `"0"`), NULLs placed lowest explicitly, and string
//! comparisons in code-point order (`COLLATE "C"`).
//!
//! JSON values are tested for their kind inside `CASE`, which PostgreSQL evaluates in order,
//! so a cast is never attempted on a value of another kind.

use bulkhead_core::query::aggregate::{Interval, Metric, MetricOp};
use bulkhead_core::query::{CmpOp, PathStep};
use bulkhead_core::record::FieldValue;
use bulkhead_core::schema::FieldType;
use bulkhead_engine::sql::{Dialect, JsonKind, Params, SqlParam, prefix_upper_bound};

pub struct Postgres;

/// Monday 1969-12-29 00:00 UTC, in microseconds: weeks are counted from a Monday.
const MONDAY_EPOCH: i64 = -3 * 86_400_000_000;

/// `strict $."key"[3]`. Keys are `[A-Za-z0-9_]+` (the parser guarantees it), bound as a
/// parameter all the same.
fn json_path(path: &[PathStep]) -> SqlParam {
    let mut text = String::from("strict $");
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

/// The JSON value at `path` in `column` (SQL NULL when there is none).
fn json_value(params: &mut Params, column: &str, path: &[PathStep]) -> String {
    if path.is_empty() {
        return column.to_owned();
    }
    let p = params.bind(json_path(path));
    format!("jsonb_path_query_first({column}, ({p}::text)::jsonpath, '{{}}'::jsonb, true)")
}

/// A literal as it appears inside JSON: timestamps are strings there.
fn json_param(value: &FieldValue) -> SqlParam {
    match value {
        FieldValue::Timestamp(t) => SqlParam::Text(t.to_rfc3339()),
        other => Postgres.param(other),
    }
}

/// `value` (a JSON expression) has `kind` and, for strings and numbers, compares with the
/// parameter by `op`. NULL when the kind differs.
fn json_test(params: &mut Params, value: &str, op: CmpOp, literal: &FieldValue) -> String {
    match JsonKind::of(literal) {
        JsonKind::True => {
            format!("(jsonb_typeof({value}) = 'boolean' AND {value} = 'true'::jsonb)")
        }
        JsonKind::False => {
            format!("(jsonb_typeof({value}) = 'boolean' AND {value} = 'false'::jsonb)")
        }
        JsonKind::String => {
            let v = params.bind(json_param(literal));
            format!(
                "(CASE WHEN jsonb_typeof({value}) = 'string' THEN ({value} #>> '{{}}') COLLATE \"C\" {} {v}::text END)",
                op.symbol()
            )
        }
        JsonKind::Number => {
            // Through numeric, so large integers compare exactly.
            let v = params.bind(match json_param(literal) {
                SqlParam::Integer(i) => SqlParam::Text(i.to_string()),
                SqlParam::Float(f) => SqlParam::Text(format!("{f:e}")),
                other => other,
            });
            format!(
                "(CASE WHEN jsonb_typeof({value}) = 'number' THEN ({value})::numeric {} ({v}::text)::numeric END)",
                op.symbol()
            )
        }
    }
}

impl Dialect for Postgres {
    fn metric_select(&self, metric: &Metric, column: Option<&str>) -> String {
        let boolean = metric
            .column
            .as_ref()
            .is_some_and(|c| c.field_type() == FieldType::Boolean);
        let expr = match (metric.op, column) {
            // PostgreSQL has no min/max over booleans; false < true makes them and/or.
            (MetricOp::Min, Some(c)) if boolean => format!("bool_and({c})"),
            (MetricOp::Max, Some(c)) if boolean => format!("bool_or({c})"),
            (op, c) => self.metric(op, c),
        };
        // Sums and averages of bigints are numeric in PostgreSQL; bring them back.
        match metric.value_type() {
            FieldType::Integer => format!("({expr})::bigint"),
            FieldType::Float => format!("({expr})::float8"),
            _ => expr,
        }
    }

    fn field_column(&self, field: &bulkhead_core::FieldName) -> String {
        crate::names::column(field)
    }

    fn placeholder(&self) -> fn(usize) -> String {
        |n| format!("${n}")
    }

    fn distinct_from(&self, lhs: &str, rhs: &str) -> String {
        format!("({lhs} IS DISTINCT FROM {rhs})")
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
            None => format!("({lhs} >= {low} AND starts_with({lhs}, {low}))"),
        }
    }

    fn contains_text(&self, params: &mut Params, lhs: &str, needle: &str) -> String {
        let needle = params.bind(SqlParam::Text(needle.to_owned()));
        format!("(strpos({lhs}, {needle}::text) > 0)")
    }

    fn json_compare(
        &self,
        params: &mut Params,
        column: &str,
        path: &[PathStep],
        op: CmpOp,
        value: &FieldValue,
    ) -> String {
        let v = json_value(params, column, path);
        json_test(params, &v, op, value)
    }

    fn json_exists(&self, params: &mut Params, column: &str, path: &[PathStep]) -> String {
        let v = json_value(params, column, path);
        format!("(coalesce(jsonb_typeof({v}), 'null') <> 'null')")
    }

    fn json_contains_element(
        &self,
        params: &mut Params,
        column: &str,
        path: &[PathStep],
        value: &FieldValue,
    ) -> String {
        let v = json_value(params, column, path);
        let element = json_test(params, "e.v", CmpOp::Eq, value);
        format!(
            "(CASE WHEN jsonb_typeof({v}) = 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements({v}) AS e(v) WHERE {element}) END)"
        )
    }

    fn json_contains_text(
        &self,
        params: &mut Params,
        column: &str,
        path: &[PathStep],
        needle: &str,
    ) -> String {
        let v = json_value(params, column, path);
        let n = params.bind(SqlParam::Text(needle.to_owned()));
        format!("(jsonb_typeof({v}) = 'string' AND strpos({v} #>> '{{}}', {n}::text) > 0)")
    }

    fn json_starts_with(
        &self,
        params: &mut Params,
        column: &str,
        path: &[PathStep],
        prefix: &str,
    ) -> String {
        let v = json_value(params, column, path);
        let n = params.bind(SqlParam::Text(prefix.to_owned()));
        format!("(jsonb_typeof({v}) = 'string' AND starts_with({v} #>> '{{}}', {n}::text))")
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
                format!(
                    "({column} - ((({column} - ({offset}::bigint)) % {len}::bigint) + {len}::bigint) % {len}::bigint)"
                )
            }
            None => {
                let seconds = format!(
                    "(({column} - ((({column} % 1000000) + 1000000) % 1000000)) / 1000000)"
                );
                format!(
                    "((extract(epoch FROM date_trunc('month', to_timestamp({seconds}) AT TIME ZONE 'UTC')))::bigint * 1000000)"
                )
            }
        }
    }

    fn order_term(&self, expr: &str, descending: bool, not_null: bool) -> String {
        match (descending, not_null) {
            (false, true) => expr.to_owned(),
            (true, true) => format!("{expr} DESC"),
            (false, false) => format!("{expr} NULLS FIRST"),
            (true, false) => format!("{expr} DESC NULLS LAST"),
        }
    }
}
