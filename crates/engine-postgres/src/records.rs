//! Record statements for one table, bound to one tenant. Every statement over a pooled table
//! is built here with the tenant predicate first and the tenant as `$1` — on top of the
//! row-level security policy that enforces the same thing inside PostgreSQL.

use bulkhead_core::query::aggregate::AggregatePlan;
use bulkhead_core::record::{Fields, Record};
use bulkhead_core::schema::{Collection, FieldType};
use bulkhead_core::time::Timestamp;
use bulkhead_core::{FieldName, RecordId};
use bulkhead_engine::sql::{self as q, Dialect, OrderKey, Params, SqlParam};
use bulkhead_engine::{AggregateQuery, GroupRow, Hit, ListQuery};
use tokio_postgres::Row;

use crate::PgError;
use crate::dialect::Postgres;
use crate::names::{Table, column};
use crate::search::{Lexemes, tsquery};
use crate::value::{PgValue, decode, stored};

/// Name of the search column of searchable tables.
pub const SEARCH_COLUMN: &str = "bk_search";

pub struct RecordSql<'a> {
    pub table: &'a Table,
    tenant: &'a str,
    collection: &'a Collection,
    /// The table has a search column to keep in step.
    pub search: bool,
}

/// A statement and its parameters.
pub struct Statement {
    pub sql: String,
    pub params: Vec<PgValue>,
}

fn select_list(alias: &str, collection: &Collection) -> String {
    let mut cols = format!("{alias}.id, {alias}.created_at, {alias}.updated_at, {alias}.version");
    for field in collection.fields.keys() {
        cols.push_str(&format!(", {alias}.{}", column(field)));
    }
    cols
}

impl<'a> RecordSql<'a> {
    pub fn new(table: &'a Table, tenant: &'a str, collection: &'a Collection) -> Self {
        RecordSql {
            table,
            tenant,
            collection,
            search: collection.searchable(),
        }
    }

    /// The scope predicate (over alias `r`) and its parameters; everything else follows.
    fn scoped(&self) -> (String, Vec<PgValue>) {
        if self.table.pooled {
            (
                "r.tenant_id = $1".into(),
                vec![PgValue::Text(self.tenant.to_owned())],
            )
        } else {
            ("true".into(), Vec::new())
        }
    }

    fn lexemes(&self, fields: &Fields) -> PgValue {
        PgValue::TsVector(Lexemes::of(
            self.collection,
            fields,
            self.table.pooled.then_some(self.tenant),
        ))
    }

    /// Column names of an insert, in [`RecordSql::insert_row`] order.
    pub fn insert_columns(&self) -> Vec<String> {
        let mut cols = Vec::new();
        if self.table.pooled {
            cols.push("tenant_id".to_owned());
        }
        cols.extend(["id", "created_at", "updated_at", "version"].map(str::to_owned));
        cols.extend(self.collection.fields.keys().map(column));
        if self.search {
            cols.push(SEARCH_COLUMN.to_owned());
        }
        cols
    }

    /// The types of the collection's fields, in column order.
    pub fn field_types(&self) -> impl Iterator<Item = FieldType> + '_ {
        self.collection.fields.values().map(|s| s.field_type)
    }

    pub fn insert_sql(&self) -> String {
        let cols = self.insert_columns();
        let marks: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.table.quoted(),
            cols.join(", "),
            marks.join(", ")
        )
    }

    /// The values of one inserted row.
    /// The values of one inserted row, its system fields as the record has them.
    pub fn insert_row(&self, record: &Record) -> Vec<PgValue> {
        let mut row = Vec::with_capacity(self.collection.fields.len() + 6);
        if self.table.pooled {
            row.push(PgValue::Text(self.tenant.to_owned()));
        }
        row.extend([
            PgValue::Text(record.id.as_str().to_owned()),
            PgValue::Int(record.created_at.as_micros()),
            PgValue::Int(record.updated_at.as_micros()),
            PgValue::Int(record.version),
        ]);
        for field in self.collection.fields.keys() {
            row.push(record.fields.get(field).map_or(PgValue::Null, stored));
        }
        if self.search {
            row.push(self.lexemes(&record.fields));
        }
        row
    }

    /// Deletes the tenant's records with these ids (any that exist).
    pub fn delete_many(&self, ids: &[&RecordId]) -> Statement {
        let (pred, mut params) = self.scoped();
        let n = params.len() + 1;
        params.push(PgValue::TextArray(
            ids.iter().map(|id| id.as_str().to_owned()).collect(),
        ));
        Statement {
            sql: format!(
                "DELETE FROM {} AS r WHERE {pred} AND r.id = ANY(${n})",
                self.table.quoted()
            ),
            params,
        }
    }

    /// Deletes the given records and returns the ids it found.
    pub fn delete_many_returning(&self, ids: &[&RecordId]) -> Statement {
        let mut statement = self.delete_many(ids);
        statement.sql.push_str(" RETURNING r.id");
        statement
    }

    pub fn get(&self, id: &RecordId, for_update: bool) -> Statement {
        let (pred, mut params) = self.scoped();
        params.push(PgValue::Text(id.as_str().to_owned()));
        Statement {
            sql: format!(
                "SELECT {} FROM {} AS r WHERE {pred} AND r.id = ${}{}",
                select_list("r", self.collection),
                self.table.quoted(),
                params.len(),
                if for_update { " FOR UPDATE" } else { "" }
            ),
            params,
        }
    }

    pub fn update(
        &self,
        id: &RecordId,
        now: Timestamp,
        version: i64,
        fields: &Fields,
    ) -> Statement {
        let (pred, mut params) = self.scoped();
        let mut sets = Vec::new();
        params.push(PgValue::Int(now.as_micros()));
        sets.push(format!("updated_at = ${}", params.len()));
        params.push(PgValue::Int(version));
        sets.push(format!("version = ${}", params.len()));
        for field in self.collection.fields.keys() {
            params.push(fields.get(field).map_or(PgValue::Null, stored));
            sets.push(format!("{} = ${}", column(field), params.len()));
        }
        if self.search {
            params.push(self.lexemes(fields));
            sets.push(format!("{SEARCH_COLUMN} = ${}", params.len()));
        }
        params.push(PgValue::Text(id.as_str().to_owned()));
        Statement {
            sql: format!(
                "UPDATE {} AS r SET {} WHERE {pred} AND r.id = ${}",
                self.table.quoted(),
                sets.join(", "),
                params.len()
            ),
            params,
        }
    }

    pub fn delete(&self, id: &RecordId) -> Statement {
        let (pred, mut params) = self.scoped();
        params.push(PgValue::Text(id.as_str().to_owned()));
        Statement {
            sql: format!(
                "DELETE FROM {} AS r WHERE {pred} AND r.id = ${}",
                self.table.quoted(),
                params.len()
            ),
            params,
        }
    }

    /// Parameters and WHERE terms of a query: the tenant first (as `$1`), then the row
    /// counter of the query budget, which PostgreSQL evaluates before any other filter
    /// because it is declared the cheapest (left out for an unmetered budget).
    fn query_scope(&self, budget: &bulkhead_engine::QueryBudget) -> (Params, Vec<String>) {
        let mut params = Params::new(Postgres.placeholder());
        let mut terms = Vec::new();
        if self.table.pooled {
            let t = params.bind(SqlParam::Text(self.tenant.to_owned()));
            terms.push(format!("r.tenant_id = {t}"));
        }
        if budget.counts_rows() {
            let limit = params.bind(SqlParam::Integer(
                i64::try_from(budget.rows_examined).unwrap_or(i64::MAX),
            ));
            terms.push(format!("bulkhead.examine({limit})"));
        } else if terms.is_empty() {
            // Statements join the terms after WHERE, so there is always one.
            terms.push("1 = 1".into());
        }
        (params, terms)
    }

    pub fn list(&self, query: &ListQuery) -> Result<ListStatement, PgError> {
        let d = Postgres;
        let (mut params, mut terms) = self.query_scope(&query.budget);
        let ranked = query.search.is_some();
        let mut rank = String::new();
        if let Some(search) = &query.search {
            if !self.search {
                return Err(PgError::Corrupt(
                    "search on a collection without text fields".into(),
                ));
            }
            let tenant = self.table.pooled.then_some(self.tenant);
            let m = params.bind(SqlParam::Text(tsquery(search, tenant)));
            terms.push(format!("r.{SEARCH_COLUMN} @@ ({m}::text)::tsquery"));
            rank = format!("ts_rank(r.{SEARCH_COLUMN}, ({m}::text)::tsquery)::float8");
        }
        if let Some(filter) = &query.filter {
            terms.push(q::predicate(&d, &mut params, "r", filter));
        }
        let mut keys: Vec<OrderKey> = query
            .sort
            .iter()
            .map(|k| OrderKey::of(&d, "r", k))
            .collect();
        if keys.is_empty() && ranked {
            keys.push(OrderKey {
                expr: rank.clone(),
                descending: true,
                not_null: true,
            });
        }
        let tie_descending = keys.last().is_some_and(|k| k.descending);
        keys.push(OrderKey {
            expr: "r.id".into(),
            descending: tie_descending,
            not_null: true,
        });
        if let Some(after) = &query.after {
            let values =
                q::keyset_values(&d, query, after).map_err(|why| PgError::Corrupt(why.into()))?;
            terms.push(q::keyset_after(&mut params, &keys, &values));
        }
        let selected = query.read_fields(self.collection);
        let mut cols = String::from("r.id, r.created_at, r.updated_at, r.version");
        for (field, _) in &selected {
            cols.push_str(", r.");
            cols.push_str(&column(field));
        }
        if ranked {
            cols.push_str(", ");
            cols.push_str(&rank);
        }
        let limit = params.bind(SqlParam::Integer(i64::from(query.limit)));
        let sql = format!(
            "SELECT {cols} FROM {} AS r WHERE {} ORDER BY {} LIMIT {limit}",
            self.table.quoted(),
            terms.join(" AND "),
            q::order_by(&d, &keys)
        );
        Ok(ListStatement {
            statement: Statement {
                sql,
                params: params.values.into_iter().map(PgValue::from).collect(),
            },
            selected,
            ranked,
        })
    }

    pub fn decode_hit(
        &self,
        row: &Row,
        list: &ListStatement,
        query: &ListQuery,
    ) -> Result<Hit, PgError> {
        let mut fields = Fields::new();
        for (i, (field, field_type)) in list.selected.iter().enumerate() {
            if let Some(value) = decode(row, i + 4, *field_type)? {
                fields.insert(field.clone(), value);
            }
        }
        let score = if list.ranked {
            Some(row.try_get::<_, f64>(4 + list.selected.len())?)
        } else {
            None
        };
        Ok(Hit::of(head(row, fields)?, query, score))
    }

    /// An aggregation page (the shared compiler, after this table's tenant predicate).
    pub fn aggregate(&self, query: &AggregateQuery) -> Statement {
        let (mut params, terms) = self.query_scope(&query.budget);
        let sql = q::aggregate(&Postgres, &mut params, terms, &self.table.quoted(), query);
        Statement {
            sql,
            params: params.values.into_iter().map(PgValue::from).collect(),
        }
    }

    pub fn decode_group(&self, row: &Row, plan: &AggregatePlan) -> Result<GroupRow, PgError> {
        let mut key = Vec::with_capacity(plan.groups.len());
        for (i, g) in plan.groups.iter().enumerate() {
            key.push(decode(row, i, g.value_type())?);
        }
        let mut metrics = Vec::with_capacity(plan.metrics.len());
        for (i, m) in plan.metrics.iter().enumerate() {
            metrics.push(decode(row, plan.groups.len() + i, m.value_type())?);
        }
        Ok(GroupRow { key, metrics })
    }

    /// Turns a row of the full select list into a record.
    pub fn decode(&self, row: &Row) -> Result<Record, PgError> {
        let mut fields = Fields::new();
        for (i, (field, spec)) in self.collection.fields.iter().enumerate() {
            if let Some(value) = decode(row, i + 4, spec.field_type)? {
                fields.insert(field.clone(), value);
            }
        }
        head(row, fields)
    }
}

fn head(row: &Row, fields: Fields) -> Result<Record, PgError> {
    let id: String = row.try_get(0)?;
    Ok(Record {
        id: RecordId::parse(&id).map_err(|e| PgError::Corrupt(e.message))?,
        created_at: Timestamp::from_micros(row.try_get(1)?),
        updated_at: Timestamp::from_micros(row.try_get(2)?),
        version: row.try_get(3)?,
        fields,
    })
}

pub struct ListStatement {
    pub statement: Statement,
    pub selected: Vec<(FieldName, FieldType)>,
    pub ranked: bool,
}
