//! SQL from checked queries, shared by every SQL engine. The parts that differ between
//! databases (placeholders, how values are stored, JSON access, string prefix tests, time
//! buckets, null ordering) are behind [`Dialect`]; the logic — what a predicate means, how a
//! keyset page continues — is written once, here.
//!
//! Identifiers come only from the schema (`f_<field>` and the fixed system columns); every
//! value, including JSON paths, is a bound parameter.

use bulkhead_core::FieldName;
use bulkhead_core::query::aggregate::{GroupKey, Interval, Metric, MetricOp};
use bulkhead_core::query::{CmpOp, Column, Operand, PathStep, Predicate, SortKey, SystemField};
use bulkhead_core::record::FieldValue;

/// A bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlParam {
    Null,
    Text(String),
    Integer(i64),
    Float(f64),
}

/// Parameters of one statement, numbered from 1 in the order they are bound.
pub struct Params {
    placeholder: fn(usize) -> String,
    pub values: Vec<SqlParam>,
}

impl Params {
    pub fn new(placeholder: fn(usize) -> String) -> Self {
        Params {
            placeholder,
            values: Vec::new(),
        }
    }

    /// Binds a value and returns its placeholder.
    pub fn bind(&mut self, value: SqlParam) -> String {
        self.values.push(value);
        (self.placeholder)(self.values.len())
    }
}

/// Kinds of JSON value a predicate on a JSON path can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    String,
    Number,
    True,
    False,
}

impl JsonKind {
    /// The kind a literal must meet: `meta.n > 5` holds only where `meta.n` is a number.
    pub fn of(value: &FieldValue) -> JsonKind {
        match value {
            FieldValue::Integer(_) | FieldValue::Float(_) => JsonKind::Number,
            FieldValue::Boolean(true) => JsonKind::True,
            FieldValue::Boolean(false) => JsonKind::False,
            FieldValue::Text(_) | FieldValue::Timestamp(_) | FieldValue::Json(_) => {
                JsonKind::String
            }
        }
    }
}

pub trait Dialect {
    /// The quoted column of a field. Each engine names columns `f_<field>`; one whose
    /// identifiers are bounded (PostgreSQL: 63 bytes) shortens long ones its own way.
    fn field_column(&self, field: &FieldName) -> String {
        format!("\"f_{field}\"")
    }

    /// The placeholder of the n-th parameter (1-based).
    fn placeholder(&self) -> fn(usize) -> String;

    /// How a value of a column is bound. Both engines store booleans as integers bound 0/1
    /// (PostgreSQL converts one bound to a boolean column), timestamps as microseconds and
    /// JSON as its text; an engine storing them otherwise overrides this.
    fn param(&self, value: &FieldValue) -> SqlParam {
        match value {
            FieldValue::Text(s) => SqlParam::Text(s.clone()),
            FieldValue::Integer(i) => SqlParam::Integer(*i),
            FieldValue::Float(f) => SqlParam::Float(*f),
            FieldValue::Boolean(b) => SqlParam::Integer(i64::from(*b)),
            FieldValue::Timestamp(t) => SqlParam::Integer(t.as_micros()),
            FieldValue::Json(v) => SqlParam::Text(v.to_string()),
        }
    }

    /// `lhs` differs from the parameter `rhs`, where NULL differs from every value.
    fn distinct_from(&self, lhs: &str, rhs: &str) -> String;

    /// `lhs` starts with `prefix` (case-sensitive), in a form the database can serve from an
    /// index on `lhs` where it can.
    fn starts_with(&self, params: &mut Params, lhs: &str, prefix: &str) -> String;

    /// `lhs` contains `needle` (case-sensitive substring).
    fn contains_text(&self, params: &mut Params, lhs: &str, needle: &str) -> String;

    /// The JSON value at `path` inside `column` has `kind` and compares with `value` by `op`
    /// (`Eq`, `Gt`, `Ge`, `Lt`, `Le`; booleans only `Eq`). NULL or false otherwise.
    fn json_compare(
        &self,
        params: &mut Params,
        column: &str,
        path: &[PathStep],
        op: CmpOp,
        value: &FieldValue,
    ) -> String;

    /// There is a non-null JSON value at `path`.
    fn json_exists(&self, params: &mut Params, column: &str, path: &[PathStep]) -> String;

    /// The JSON value at `path` is an array with an element equal to `value` (same kind).
    fn json_contains_element(
        &self,
        params: &mut Params,
        column: &str,
        path: &[PathStep],
        value: &FieldValue,
    ) -> String;

    /// The JSON value at `path` is a string with `needle` in it.
    fn json_contains_text(
        &self,
        params: &mut Params,
        column: &str,
        path: &[PathStep],
        needle: &str,
    ) -> String;

    /// The JSON value at `path` is a string starting with `prefix`.
    fn json_starts_with(
        &self,
        params: &mut Params,
        column: &str,
        path: &[PathStep],
        prefix: &str,
    ) -> String;

    /// The start of the UTC interval holding the timestamp in `column`, as a stored timestamp.
    fn bucket(&self, column: &str, interval: Interval) -> String;

    /// An `ORDER BY` term where missing values sort lowest (first ascending, last descending).
    /// `not_null` says the expression can never be NULL, so no NULL placement is needed.
    fn order_term(&self, expr: &str, descending: bool, not_null: bool) -> String;

    /// The selected expression of `metric`, whose column (if any) is `column`: the aggregate,
    /// plus whatever the database needs to return it in the metric's value type.
    fn metric_select(&self, metric: &Metric, column: Option<&str>) -> String {
        self.metric(metric.op, column)
    }

    /// The SQL aggregate for a metric over `column` (`None` only for a row count).
    fn metric(&self, op: MetricOp, column: Option<&str>) -> String {
        match (op, column) {
            (MetricOp::Count, None) => "count(*)".into(),
            (MetricOp::Count, Some(c)) => format!("count({c})"),
            (MetricOp::CountDistinct, Some(c)) => format!("count(DISTINCT {c})"),
            (MetricOp::Sum, Some(c)) => format!("sum({c})"),
            (MetricOp::Avg, Some(c)) => format!("avg({c})"),
            (MetricOp::Min, Some(c)) => format!("min({c})"),
            (MetricOp::Max, Some(c)) => format!("max({c})"),
            (_, None) => "count(*)".into(),
        }
    }
}

/// The smallest string greater than every string that starts with `prefix` (code-point
/// order, which is SQLite's BINARY order on UTF-8), if there is one.
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The column of a record table, qualified by `alias`.
pub fn column_sql(d: &dyn Dialect, alias: &str, column: &Column) -> String {
    match column {
        Column::System(SystemField::Id) => format!("{alias}.id"),
        Column::System(SystemField::CreatedAt) => format!("{alias}.created_at"),
        Column::System(SystemField::UpdatedAt) => format!("{alias}.updated_at"),
        Column::System(SystemField::Version) => format!("{alias}.version"),
        Column::Field { name, .. } => format!("{alias}.{}", d.field_column(name)),
    }
}

/// Compiles a predicate over the table aliased `alias`.
pub fn predicate(d: &dyn Dialect, params: &mut Params, alias: &str, p: &Predicate) -> String {
    match p {
        Predicate::And(parts) if parts.is_empty() => "(1 = 1)".into(),
        Predicate::Or(parts) if parts.is_empty() => "(1 = 0)".into(),
        Predicate::And(parts) => join(d, params, alias, parts, " AND "),
        Predicate::Or(parts) => join(d, params, alias, parts, " OR "),
        // Two-valued: a comparison with a missing value is NULL, and NOT must make it true.
        Predicate::Not(inner) => format!("(({}) IS NOT TRUE)", predicate(d, params, alias, inner)),
        Predicate::Compare { operand, op, value } => compare(d, params, alias, operand, *op, value),
        Predicate::In { operand, values } => match operand {
            Operand::Column(c) => {
                let lhs = column_sql(d, alias, c);
                let marks: Vec<String> = values.iter().map(|v| params.bind(d.param(v))).collect();
                format!("({lhs} IN ({}))", marks.join(", "))
            }
            Operand::JsonPath { .. } => {
                let parts: Vec<String> = values
                    .iter()
                    .map(|v| compare(d, params, alias, operand, CmpOp::Eq, v))
                    .collect();
                format!("({})", parts.join(" OR "))
            }
        },
        Predicate::Exists(operand) => match json_target(d, alias, operand) {
            None => format!("({} IS NOT NULL)", operand_column(d, alias, operand)),
            Some((col, path)) => d.json_exists(params, &col, path),
        },
        Predicate::StartsWith { operand, prefix } => match json_target(d, alias, operand) {
            None => d.starts_with(params, &operand_column(d, alias, operand), prefix),
            Some((col, path)) => d.json_starts_with(params, &col, path, prefix),
        },
        Predicate::ContainsText { operand, needle } => match json_target(d, alias, operand) {
            None => d.contains_text(params, &operand_column(d, alias, operand), needle),
            Some((col, path)) => d.json_contains_text(params, &col, path, needle),
        },
        Predicate::ContainsElement { operand, value } => {
            let (col, path) = json_target(d, alias, operand)
                .unwrap_or_else(|| (operand_column(d, alias, operand), &[]));
            d.json_contains_element(params, &col, path, value)
        }
    }
}

fn join(
    d: &dyn Dialect,
    params: &mut Params,
    alias: &str,
    parts: &[Predicate],
    op: &str,
) -> String {
    let parts: Vec<String> = parts
        .iter()
        .map(|p| predicate(d, params, alias, p))
        .collect();
    format!("({})", parts.join(op))
}

fn operand_column(d: &dyn Dialect, alias: &str, operand: &Operand) -> String {
    match operand {
        Operand::Column(c) => column_sql(d, alias, c),
        Operand::JsonPath { field, .. } => format!("{alias}.{}", d.field_column(field)),
    }
}

/// The JSON column and path an operand reads, when it reads inside JSON (a bare `json`
/// column counts, with an empty path).
fn json_target<'a>(
    d: &dyn Dialect,
    alias: &str,
    operand: &'a Operand,
) -> Option<(String, &'a [PathStep])> {
    match operand {
        Operand::JsonPath { field, path } => {
            Some((format!("{alias}.{}", d.field_column(field)), path))
        }
        Operand::Column(c @ Column::Field { .. })
            if c.field_type() == bulkhead_core::schema::FieldType::Json =>
        {
            Some((column_sql(d, alias, c), &[]))
        }
        Operand::Column(_) => None,
    }
}

fn compare(
    d: &dyn Dialect,
    params: &mut Params,
    alias: &str,
    operand: &Operand,
    op: CmpOp,
    value: &FieldValue,
) -> String {
    if let Some((col, path)) = json_target(d, alias, operand) {
        return match op {
            // A missing or differently-typed value is "not equal".
            CmpOp::Ne => format!(
                "(({}) IS NOT TRUE)",
                d.json_compare(params, &col, path, CmpOp::Eq, value)
            ),
            _ => d.json_compare(params, &col, path, op, value),
        };
    }
    let lhs = operand_column(d, alias, operand);
    let rhs = params.bind(d.param(value));
    match op {
        CmpOp::Ne => d.distinct_from(&lhs, &rhs),
        _ => format!("({lhs} {} {rhs})", op.symbol()),
    }
}

/// One key of an ordering: an expression, its direction, and whether it can be NULL.
#[derive(Debug, Clone)]
pub struct OrderKey {
    pub expr: String,
    pub descending: bool,
    pub not_null: bool,
}

impl OrderKey {
    pub fn of(d: &dyn Dialect, alias: &str, key: &SortKey) -> OrderKey {
        OrderKey {
            expr: column_sql(d, alias, &key.column),
            descending: key.descending,
            not_null: key.column.not_null(),
        }
    }
}

/// `ORDER BY` terms for `keys`.
pub fn order_by(d: &dyn Dialect, keys: &[OrderKey]) -> String {
    keys.iter()
        .map(|k| d.order_term(&k.expr, k.descending, k.not_null))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows that come strictly after the row whose key values are `after`, in the order of
/// `keys` (missing values lowest). `after` has one value per key; `None` is a missing value.
///
/// When every key is NOT NULL and all go the same way, this is one row-value comparison,
/// which databases serve from an index; otherwise the usual expansion
/// `k1 > v1 OR (k1 = v1 AND k2 > v2) OR ...` with NULLs placed explicitly.
pub fn keyset_after(params: &mut Params, keys: &[OrderKey], after: &[SqlParam]) -> String {
    let uniform = keys
        .iter()
        .all(|k| k.not_null && k.descending == keys[0].descending)
        && after.iter().all(|v| *v != SqlParam::Null);
    if uniform && !keys.is_empty() {
        let lhs: Vec<&str> = keys.iter().map(|k| k.expr.as_str()).collect();
        let rhs: Vec<String> = after.iter().map(|v| params.bind(v.clone())).collect();
        let op = if keys[0].descending { "<" } else { ">" };
        return if keys.len() == 1 {
            format!("({} {op} {})", lhs[0], rhs[0])
        } else {
            format!("(({}) {op} ({}))", lhs.join(", "), rhs.join(", "))
        };
    }
    let mut alternatives = Vec::new();
    for i in 0..keys.len().min(after.len()) {
        let (key, value) = (&keys[i], &after[i]);
        // Nothing sorts after a missing value in descending order: no alternative here (and
        // no parameters bound for it — some databases reject a parameter no term uses).
        if *value == SqlParam::Null && key.descending {
            continue;
        }
        let mut terms = Vec::new();
        for (key, value) in keys[..i].iter().zip(after) {
            terms.push(match value {
                SqlParam::Null => format!("{} IS NULL", key.expr),
                v => format!("{} = {}", key.expr, params.bind(v.clone())),
            });
        }
        terms.push(match (value, key.descending) {
            (SqlParam::Null, _) => format!("{} IS NOT NULL", key.expr),
            (v, false) => format!("{} > {}", key.expr, params.bind(v.clone())),
            (v, true) if key.not_null => format!("{} < {}", key.expr, params.bind(v.clone())),
            (v, true) => format!(
                "({} < {} OR {} IS NULL)",
                key.expr,
                params.bind(v.clone()),
                key.expr
            ),
        });
        alternatives.push(format!("({})", terms.join(" AND ")));
    }
    if alternatives.is_empty() {
        "(1 = 0)".into()
    } else {
        format!("({})", alternatives.join(" OR "))
    }
}

/// The keyset values of a cursor, in the order of a list's keys: sort values, the score when
/// ranked by relevance, the id. `Err` names what does not fit the query.
pub fn keyset_values(
    d: &dyn Dialect,
    query: &crate::ListQuery,
    after: &crate::Keyset,
) -> Result<Vec<SqlParam>, &'static str> {
    if after.values.len() != query.sort.len() {
        return Err("cursor does not fit the query");
    }
    let mut values: Vec<SqlParam> = after
        .values
        .iter()
        .map(|v| v.as_ref().map_or(SqlParam::Null, |v| d.param(v)))
        .collect();
    if query.sort.is_empty() && query.search.is_some() {
        values.push(SqlParam::Float(after.score.ok_or("cursor has no score")?));
    }
    values.push(SqlParam::Text(after.id.as_str().to_owned()));
    Ok(values)
}

/// The SQL expression of a group key over the table aliased `alias`.
pub fn group_expr(d: &dyn Dialect, alias: &str, key: &GroupKey) -> String {
    match key {
        GroupKey::Column(c) => column_sql(d, alias, c),
        GroupKey::Bucket { column, interval } => d.bucket(&column_sql(d, alias, column), *interval),
    }
}

/// Whether a group key can be NULL.
pub fn group_not_null(key: &GroupKey) -> bool {
    match key {
        GroupKey::Column(c) | GroupKey::Bucket { column: c, .. } => c.not_null(),
    }
}

/// The SQL expression of a metric over the table aliased `alias`.
pub fn metric_expr(d: &dyn Dialect, alias: &str, metric: &Metric) -> String {
    let column = metric.column.as_ref().map(|c| column_sql(d, alias, c));
    d.metric_select(metric, column.as_deref())
}

/// One page of an aggregation over `table` (aliased `r`): group keys then metrics, in plan
/// order, groups in key order (missing values lowest), continuing after `query.after`.
/// `scope` are the terms the engine already bound into `params` — the tenant predicate
/// first, then its row meter — and they stay first in the `WHERE`.
pub fn aggregate(
    d: &dyn Dialect,
    params: &mut Params,
    scope: Vec<String>,
    table: &str,
    query: &crate::AggregateQuery,
) -> String {
    let plan = &query.plan;
    let mut terms = scope;
    if let Some(filter) = &plan.filter {
        terms.push(predicate(d, params, "r", filter));
    }
    let keys: Vec<OrderKey> = plan
        .groups
        .iter()
        .map(|g| OrderKey {
            expr: group_expr(d, "r", g),
            descending: false,
            not_null: group_not_null(g),
        })
        .collect();
    if let Some(after) = &query.after {
        let values: Vec<SqlParam> = after
            .iter()
            .map(|v| v.as_ref().map_or(SqlParam::Null, |v| d.param(v)))
            .collect();
        terms.push(keyset_after(params, &keys, &values));
    }
    let mut cols: Vec<String> = keys.iter().map(|k| k.expr.clone()).collect();
    cols.extend(plan.metrics.iter().map(|m| metric_expr(d, "r", m)));
    if terms.is_empty() {
        terms.push("1 = 1".into());
    }
    let mut sql = format!(
        "SELECT {} FROM {table} AS r WHERE {}",
        cols.join(", "),
        terms.join(" AND ")
    );
    if !keys.is_empty() {
        let positions: Vec<String> = (1..=keys.len()).map(|i| i.to_string()).collect();
        let order: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| d.order_term(&(i + 1).to_string(), false, k.not_null))
            .collect();
        sql.push_str(&format!(
            " GROUP BY {} ORDER BY {}",
            positions.join(", "),
            order.join(", ")
        ));
    }
    let limit = params.bind(SqlParam::Integer(i64::from(query.limit)));
    sql.push_str(&format!(" LIMIT {limit}"));
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Plain;

    impl Dialect for Plain {
        fn placeholder(&self) -> fn(usize) -> String {
            |n| format!("?{n}")
        }
        fn param(&self, value: &FieldValue) -> SqlParam {
            match value {
                FieldValue::Integer(i) => SqlParam::Integer(*i),
                other => SqlParam::Text(format!("{other:?}")),
            }
        }
        fn distinct_from(&self, lhs: &str, rhs: &str) -> String {
            format!("({lhs} IS NOT {rhs})")
        }
        fn starts_with(&self, _: &mut Params, lhs: &str, _: &str) -> String {
            lhs.into()
        }
        fn contains_text(&self, _: &mut Params, lhs: &str, _: &str) -> String {
            lhs.into()
        }
        fn json_compare(
            &self,
            _: &mut Params,
            c: &str,
            _: &[PathStep],
            _: CmpOp,
            _: &FieldValue,
        ) -> String {
            c.into()
        }
        fn json_exists(&self, _: &mut Params, c: &str, _: &[PathStep]) -> String {
            c.into()
        }
        fn json_contains_element(
            &self,
            _: &mut Params,
            c: &str,
            _: &[PathStep],
            _: &FieldValue,
        ) -> String {
            c.into()
        }
        fn json_contains_text(&self, _: &mut Params, c: &str, _: &[PathStep], _: &str) -> String {
            c.into()
        }
        fn json_starts_with(&self, _: &mut Params, c: &str, _: &[PathStep], _: &str) -> String {
            c.into()
        }
        fn bucket(&self, c: &str, _: Interval) -> String {
            c.into()
        }
        fn order_term(&self, expr: &str, descending: bool, _: bool) -> String {
            format!("{expr}{}", if descending { " DESC" } else { "" })
        }
    }

    #[test]
    fn prefix_bounds_cover_exactly_the_prefix() {
        assert_eq!(prefix_upper_bound("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
    }

    fn key(expr: &str, descending: bool, not_null: bool) -> OrderKey {
        OrderKey {
            expr: expr.into(),
            descending,
            not_null,
        }
    }

    #[test]
    fn uniform_not_null_keys_use_one_row_value() {
        let mut p = Params::new(Plain.placeholder());
        let sql = keyset_after(
            &mut p,
            &[key("a", true, true), key("id", true, true)],
            &[SqlParam::Integer(3), SqlParam::Text("r1".into())],
        );
        assert_eq!(sql, "((a, id) < (?1, ?2))");
        assert_eq!(p.values.len(), 2);
    }

    #[test]
    fn nullable_keys_expand_with_nulls_lowest() {
        let mut p = Params::new(Plain.placeholder());
        let sql = keyset_after(
            &mut p,
            &[key("a", false, false), key("id", false, true)],
            &[SqlParam::Null, SqlParam::Text("r1".into())],
        );
        assert_eq!(sql, "((a IS NOT NULL) OR (a IS NULL AND id > ?1))");
        let mut p = Params::new(Plain.placeholder());
        let sql = keyset_after(
            &mut p,
            &[key("a", true, false), key("id", true, true)],
            &[SqlParam::Integer(5), SqlParam::Text("r1".into())],
        );
        assert_eq!(sql, "(((a < ?1 OR a IS NULL)) OR (a = ?2 AND id < ?3))");
        // After a missing value in descending order only the ties remain.
        let mut p = Params::new(Plain.placeholder());
        let sql = keyset_after(
            &mut p,
            &[key("a", true, false), key("id", true, true)],
            &[SqlParam::Null, SqlParam::Text("r1".into())],
        );
        assert_eq!(sql, "((a IS NULL AND id < ?1))");
    }
}
