//! What a read asks of an engine: a page (filter, sort, keyset, search), an aggregation,
//! and the budget a query runs under.

use std::time::Duration;

use bulkhead_core::query::aggregate::AggregatePlan;
use bulkhead_core::query::{Predicate, SearchQuery, SortKey};
use bulkhead_core::record::{FieldValue, Record};
use bulkhead_core::schema::{Collection, FieldType};
use bulkhead_core::{FieldName, RecordId};

/// How much work one query may do before it is stopped: wall-clock time, and rows the
/// engine looks at (matching or not). Comes from the tenant's tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryBudget {
    pub time: Duration,
    pub rows_examined: u64,
    /// Where the engine adds the rows the query examined, for metering.
    pub examined: Examined,
}

/// A counter the engine adds a query's examined rows to (shared by the clones of a budget).
/// Two are equal whatever they count: it is a place to report to, not part of the limit.
#[derive(Debug, Clone, Default)]
pub struct Examined(Option<std::sync::Arc<std::sync::atomic::AtomicU64>>);

impl Examined {
    /// A counter to read back with [`Examined::get`].
    pub fn counting() -> Self {
        Examined(Some(std::sync::Arc::default()))
    }

    pub fn add(&self, rows: u64) {
        if let Some(n) = &self.0 {
            n.fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.0
            .as_ref()
            .map_or(0, |n| n.load(std::sync::atomic::Ordering::Relaxed))
    }
}

impl PartialEq for Examined {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Examined {}

impl QueryBudget {
    /// No rows-examined limit, and no counting either: for the server's own exact scans (a
    /// move's counts while writes are held), which must not pay the per-row meter.
    pub const fn unmetered(time: Duration) -> Self {
        QueryBudget {
            time,
            rows_examined: u64::MAX,
            examined: Examined(None),
        }
    }

    /// False for [`QueryBudget::unmetered`]: engines then leave the row counter out.
    pub fn counts_rows(&self) -> bool {
        self.rows_examined != u64::MAX
    }
}

impl Default for QueryBudget {
    fn default() -> Self {
        QueryBudget {
            time: Duration::from_secs(5),
            rows_examined: 2_000_000,
            examined: Examined::default(),
        }
    }
}

/// Where the previous page ended: the last row's sort-key values (in `sort` order, `None` for
/// a missing value), its search score when ranked by relevance, and its id.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyset {
    pub values: Vec<Option<FieldValue>>,
    pub score: Option<f64>,
    pub id: RecordId,
}

/// A page request. Rows are ordered by `sort`, then by id (in the direction of the last sort
/// key); with a `search` and no `sort`, by relevance (best first), then id.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filter: Option<Predicate>,
    pub search: Option<SearchQuery>,
    pub sort: Vec<SortKey>,
    pub after: Option<Keyset>,
    pub limit: u32,
    /// Fields to return; `None` for all. System fields are always returned.
    pub fields: Option<Vec<FieldName>>,
    pub budget: QueryBudget,
}

impl ListQuery {
    /// Fields a page must read: the projection (or all) plus the sort fields, in schema order.
    pub fn read_fields(&self, collection: &Collection) -> Vec<(FieldName, FieldType)> {
        collection
            .fields
            .iter()
            .filter(|(name, _)| {
                self.fields.as_ref().is_none_or(|p| p.contains(name))
                    || self.sort.iter().any(|k| k.column.name() == name.as_str())
            })
            .map(|(name, spec)| (name.clone(), spec.field_type))
            .collect()
    }
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            filter: None,
            search: None,
            sort: Vec::new(),
            after: None,
            limit: 50,
            fields: None,
            budget: QueryBudget::default(),
        }
    }
}

/// One row of a page, with what the next page's [`Keyset`] needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub record: Record,
    /// The row's values of the query's sort keys, in order.
    pub sort_values: Vec<Option<FieldValue>>,
    /// Relevance (higher is better) when the query had a search.
    pub score: Option<f64>,
}

impl Hit {
    /// A hit for `query` from a record read with [`ListQuery::read_fields`]: its sort-key
    /// values, then the record cut down to the projection.
    pub fn of(mut record: Record, query: &ListQuery, score: Option<f64>) -> Hit {
        let sort_values = query
            .sort
            .iter()
            .map(|k| bulkhead_core::query::eval::column_value(&record, &k.column))
            .collect();
        if let Some(projection) = &query.fields {
            record.fields.retain(|name, _| projection.contains(name));
        }
        Hit {
            record,
            sort_values,
            score,
        }
    }

    pub fn keyset(&self) -> Keyset {
        Keyset {
            values: self.sort_values.clone(),
            score: self.score,
            id: self.record.id.clone(),
        }
    }
}

/// An aggregation: groups of `plan` in ascending group-key order, after `after` (the previous
/// page's last group key), at most `limit`.
#[derive(Debug, Clone)]
pub struct AggregateQuery {
    pub plan: AggregatePlan,
    pub after: Option<Vec<Option<FieldValue>>>,
    pub limit: u32,
    pub budget: QueryBudget,
}

/// One group: its key values (in `plan.groups` order) and metric values (in `plan.metrics`
/// order); `None` where there is no value (a missing group field, `min` of nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    pub key: Vec<Option<FieldValue>>,
    pub metrics: Vec<Option<FieldValue>>,
}
