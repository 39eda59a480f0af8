//! Aggregations: the request a caller sends to `POST /v1/collections/{c}/aggregate`, and the
//! checked plan engines compile. "Signals per machine per hour over the last week" is
//! `{"filter": "at >= 2026-11-14T00:00:00Z", "group_by": ["machine"],
//!   "bucket": {"field": "at", "interval": "hour"}, "metrics": [{"op": "count"}]}`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Column, Predicate};
use crate::error::Error;
use crate::schema::{Collection, FieldType};

/// Most group-by fields (the bucket counts as one).
pub const MAX_GROUPS: usize = 8;
pub const MAX_METRICS: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateRequest {
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub group_by: Vec<String>,
    #[serde(default)]
    pub bucket: Option<BucketSpec>,
    #[serde(default)]
    #[schema(required = true, min_items = 1)]
    pub metrics: Vec<MetricSpec>,
    /// Groups per page (default 1000, at most 10000).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    pub field: String,
    pub interval: Interval,
}

/// Calendar intervals, in UTC. Weeks start on Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

impl Interval {
    /// Length in microseconds, for the fixed-length intervals.
    pub fn fixed_micros(self) -> Option<i64> {
        const MINUTE: i64 = 60_000_000;
        match self {
            Interval::Minute => Some(MINUTE),
            Interval::Hour => Some(60 * MINUTE),
            Interval::Day => Some(24 * 60 * MINUTE),
            Interval::Week => Some(7 * 24 * 60 * MINUTE),
            Interval::Month => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub op: MetricOp,
    #[serde(default)]
    pub field: Option<String>,
    /// Name of the metric in the result (default `count`, or `<op>_<field>`).
    #[serde(default, rename = "as")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricOp {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    CountDistinct,
}

impl MetricOp {
    pub fn name(self) -> &'static str {
        match self {
            MetricOp::Count => "count",
            MetricOp::Sum => "sum",
            MetricOp::Avg => "avg",
            MetricOp::Min => "min",
            MetricOp::Max => "max",
            MetricOp::CountDistinct => "count_distinct",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum GroupKey {
    Column(Column),
    Bucket { column: Column, interval: Interval },
}

impl GroupKey {
    /// The name the key has in a result row.
    pub fn name(&self) -> &str {
        match self {
            GroupKey::Column(c) | GroupKey::Bucket { column: c, .. } => c.name(),
        }
    }

    /// The type of the key's values.
    pub fn value_type(&self) -> FieldType {
        match self {
            GroupKey::Column(c) => c.field_type(),
            GroupKey::Bucket { .. } => FieldType::Timestamp,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub op: MetricOp,
    /// `None` only for `count` (rows).
    pub column: Option<Column>,
}

impl Metric {
    /// The type of the metric's values: `Integer` for counts (and sums of integers), `Float`
    /// for averages and float sums, the column's own type for min and max.
    pub fn value_type(&self) -> FieldType {
        match (self.op, &self.column) {
            (MetricOp::Count | MetricOp::CountDistinct, _) => FieldType::Integer,
            (MetricOp::Avg, _) => FieldType::Float,
            (MetricOp::Sum, Some(c)) if c.field_type() == FieldType::Integer => FieldType::Integer,
            (MetricOp::Sum, _) => FieldType::Float,
            (MetricOp::Min | MetricOp::Max, Some(c)) => c.field_type(),
            (MetricOp::Min | MetricOp::Max, None) => FieldType::Float,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggregatePlan {
    pub filter: Option<Predicate>,
    pub groups: Vec<GroupKey>,
    pub metrics: Vec<Metric>,
}

fn invalid(message: String) -> Error {
    Error::bad_request("invalid_aggregation", message)
}

fn column(collection: &Collection, name: &str, what: &str) -> Result<Column, Error> {
    Column::resolve(name, collection).ok_or_else(|| {
        invalid(format!(
            "{what}: unknown field '{name}' in collection '{}'",
            collection.name
        ))
    })
}

/// Checks a request against the collection. The filter is checked by the caller's filter
/// function so that access rules can be added to it.
pub fn check(
    request: &AggregateRequest,
    filter: Option<Predicate>,
    collection: &Collection,
) -> Result<AggregatePlan, Error> {
    let mut groups = Vec::new();
    for (i, name) in request.group_by.iter().enumerate() {
        let what = format!("group_by[{i}]");
        let col = column(collection, name, &what)?;
        if matches!(col.field_type(), FieldType::Text | FieldType::Json) {
            return Err(invalid(format!(
                "{what}: '{name}' is a {} field; group by string, integer, float, boolean or \
                 timestamp fields",
                col.field_type()
            )));
        }
        groups.push(GroupKey::Column(col));
    }
    if let Some(bucket) = &request.bucket {
        let col = column(collection, &bucket.field, "bucket.field")?;
        if col.field_type() != FieldType::Timestamp {
            return Err(invalid(format!(
                "bucket.field: '{}' is a {} field; buckets need a timestamp field",
                bucket.field,
                col.field_type()
            )));
        }
        groups.push(GroupKey::Bucket {
            column: col,
            interval: bucket.interval,
        });
    }
    if groups.len() > MAX_GROUPS {
        return Err(invalid(format!(
            "at most {MAX_GROUPS} group keys (group_by plus bucket)"
        )));
    }
    if request.metrics.is_empty() {
        return Err(invalid(
            "metrics: name at least one, e.g. [{\"op\": \"count\"}]".into(),
        ));
    }
    if request.metrics.len() > MAX_METRICS {
        return Err(invalid(format!("metrics: at most {MAX_METRICS}")));
    }
    let mut metrics = Vec::new();
    for (i, spec) in request.metrics.iter().enumerate() {
        let what = format!("metrics[{i}]");
        let col = match (&spec.field, spec.op) {
            (None, MetricOp::Count) => None,
            (None, op) => {
                return Err(invalid(format!("{what}: '{}' needs a field", op.name())));
            }
            (Some(name), op) => {
                let col = column(collection, name, &what)?;
                let ty = col.field_type();
                let fits = match op {
                    MetricOp::Count | MetricOp::CountDistinct => ty != FieldType::Json,
                    MetricOp::Sum | MetricOp::Avg => {
                        matches!(ty, FieldType::Integer | FieldType::Float)
                    }
                    MetricOp::Min | MetricOp::Max => matches!(
                        ty,
                        FieldType::Integer
                            | FieldType::Float
                            | FieldType::Timestamp
                            | FieldType::String
                    ),
                };
                if !fits {
                    return Err(invalid(format!(
                        "{what}: '{}' does not apply to '{name}', a {ty} field",
                        op.name()
                    )));
                }
                Some(col)
            }
        };
        let name = match (&spec.name, &col) {
            (Some(name), _) => {
                let ok = !name.is_empty()
                    && name.len() <= 63
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !ok {
                    return Err(invalid(format!(
                        "{what}.as: names are 1-63 letters, digits or '_'"
                    )));
                }
                name.clone()
            }
            (None, None) => "count".to_owned(),
            (None, Some(c)) => format!("{}_{}", spec.op.name(), c.name()),
        };
        metrics.push(Metric {
            name,
            op: spec.op,
            column: col,
        });
    }
    let mut seen = BTreeSet::new();
    for name in groups
        .iter()
        .map(GroupKey::name)
        .chain(metrics.iter().map(|m| m.name.as_str()))
    {
        if !seen.insert(name.to_owned()) {
            return Err(invalid(format!(
                "'{name}' names two columns of the result; rename a metric with \"as\""
            )));
        }
    }
    Ok(AggregatePlan {
        filter,
        groups,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CollectionName;
    use crate::schema::{CollectionSpec, plan_change};

    fn signals() -> Collection {
        let spec: CollectionSpec = serde_json::from_value(serde_json::json!({"fields": {
            "machine": {"type": "string", "index": true},
            "at": {"type": "timestamp", "required": true, "index": true},
            "temp": {"type": "float"},
            "note": {"type": "text"}
        }}))
        .unwrap();
        plan_change(&CollectionName::parse("signals").unwrap(), None, &spec)
            .unwrap()
            .collection
    }

    fn request(value: serde_json::Value) -> AggregateRequest {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_iot_question_is_one_plan() {
        let plan = check(
            &request(serde_json::json!({
                "group_by": ["machine"],
                "bucket": {"field": "at", "interval": "hour"},
                "metrics": [{"op": "count"}, {"op": "avg", "field": "temp"}]
            })),
            None,
            &signals(),
        )
        .unwrap();
        assert_eq!(plan.groups.len(), 2);
        assert_eq!(plan.groups[1].name(), "at");
        assert_eq!(plan.metrics[0].name, "count");
        assert_eq!(plan.metrics[1].name, "avg_temp");
        assert_eq!(plan.metrics[1].value_type(), FieldType::Float);
    }

    #[test]
    fn refusals_name_the_problem() {
        let c = signals();
        let err = |v| check(&request(v), None, &c).unwrap_err().message;
        assert!(err(serde_json::json!({"metrics": []})).contains("at least one"));
        assert!(
            err(serde_json::json!({"group_by": ["nope"], "metrics": [{"op": "count"}]}))
                .contains("unknown field 'nope'")
        );
        assert!(
            err(serde_json::json!({"metrics": [{"op": "sum", "field": "machine"}]}))
                .contains("does not apply")
        );
        assert!(
            err(
                serde_json::json!({"bucket": {"field": "temp", "interval": "day"},
                "metrics": [{"op": "count"}]})
            )
            .contains("timestamp")
        );
        assert!(
            err(serde_json::json!({"group_by": ["note"], "metrics": [{"op": "count"}]}))
                .contains("text field")
        );
        assert!(
            err(serde_json::json!({"group_by": ["machine"],
                "metrics": [{"op": "count", "as": "machine"}]}))
            .contains("names two columns")
        );
        assert!(err(serde_json::json!({"metrics": [{"op": "avg"}]})).contains("needs a field"));
    }
}
