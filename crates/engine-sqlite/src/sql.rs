//! SQL for one collection table: DDL that makes a table match its collection, and the record
//! statements. Every statement over a pooled table is built by [`RecordSql`], which puts the
//! tenant predicate first and binds the tenant as the first parameter; there is no other way
//! to build record SQL in this crate.

use std::collections::BTreeSet;

use bulkhead_core::query::aggregate::AggregatePlan;
use bulkhead_core::record::{FieldValue, Fields, Record};
use bulkhead_core::schema::{Collection, FieldSpec, FieldType};
use bulkhead_core::time::Timestamp;
use bulkhead_core::{FieldName, RecordId};
use bulkhead_engine::sql::{self as q, Dialect, OrderKey, Params, SqlParam};
use bulkhead_engine::{AggregateQuery, EngineError, ListQuery};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, Row, Transaction};

use crate::StorageError;
use crate::db::EXAMINE_FN;
use crate::dialect::Sqlite;
use crate::layout::{TableName, column};
use crate::search::{ensure_search_index, match_expression, search_tokens};

mod get;

fn sql_type(field_type: FieldType) -> &'static str {
    match field_type {
        FieldType::String | FieldType::Text | FieldType::Json => "TEXT",
        FieldType::Integer | FieldType::Boolean | FieldType::Timestamp => "INTEGER",
        FieldType::Float => "REAL",
    }
}

pub fn to_sql(value: &FieldValue) -> SqlValue {
    match value {
        FieldValue::Text(s) => SqlValue::Text(s.clone()),
        FieldValue::Integer(i) => SqlValue::Integer(*i),
        FieldValue::Float(f) => SqlValue::Real(*f),
        FieldValue::Boolean(b) => SqlValue::Integer(i64::from(*b)),
        FieldValue::Timestamp(t) => SqlValue::Integer(t.as_micros()),
        FieldValue::Json(v) => SqlValue::Text(v.to_string()),
    }
}

/// A constant SQL literal for a column default (SQLite's `ADD COLUMN ... DEFAULT` needs one).
fn sql_literal(value: &FieldValue) -> String {
    match to_sql(value) {
        SqlValue::Text(s) => format!("'{}'", s.replace('\'', "''")),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) => format!("{f:e}"),
        SqlValue::Null | SqlValue::Blob(_) => "NULL".into(),
    }
}

fn from_sql(
    field_type: FieldType,
    value: ValueRef<'_>,
) -> Result<Option<FieldValue>, StorageError> {
    let corrupt = || {
        StorageError::Corrupt(format!(
            "unexpected {:?} for a {field_type} column",
            value.data_type()
        ))
    };
    Ok(Some(match (field_type, value) {
        (_, ValueRef::Null) => return Ok(None),
        (FieldType::String | FieldType::Text, ValueRef::Text(t)) => {
            FieldValue::Text(String::from_utf8(t.to_vec()).map_err(|_| corrupt())?)
        }
        (FieldType::Integer, ValueRef::Integer(i)) => FieldValue::Integer(i),
        (FieldType::Float, ValueRef::Real(f)) => FieldValue::Float(f),
        (FieldType::Float, ValueRef::Integer(i)) => FieldValue::Float(i as f64),
        (FieldType::Boolean, ValueRef::Integer(i)) => FieldValue::Boolean(i != 0),
        (FieldType::Timestamp, ValueRef::Integer(i)) => {
            FieldValue::Timestamp(Timestamp::from_micros(i))
        }
        (FieldType::Json, ValueRef::Text(t)) => {
            FieldValue::Json(serde_json::from_slice(t).map_err(|_| corrupt())?)
        }
        _ => return Err(corrupt()),
    }))
}

fn column_def(field: &bulkhead_core::FieldName, spec: &FieldSpec) -> Result<String, StorageError> {
    let mut def = format!("{} {}", column(field), sql_type(spec.field_type));
    if let Some(default) = &spec.default {
        let value = bulkhead_core::record::coerce(spec.field_type, default)
            .map_err(StorageError::Corrupt)?;
        def.push_str(" DEFAULT ");
        def.push_str(&sql_literal(&value));
    }
    Ok(def)
}

/// Makes the table match the collection: creates it, adds missing columns, creates wanted
/// indexes and drops unwanted ones. Runs in one transaction, so a crash leaves either the old
/// or the new shape. Never drops a column.
pub fn ensure_table(
    conn: &mut Connection,
    table: &TableName,
    collection: &Collection,
) -> Result<(), StorageError> {
    let tx = conn.transaction()?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS bk_versions (tbl TEXT PRIMARY KEY, version INTEGER NOT NULL)",
    )?;
    if stored_version(&tx, table)?.is_some_and(|stored| stored > collection.version) {
        // The storage is at a newer definition already; it never goes back.
        return Ok(());
    }
    let tenant_col = if table.pooled {
        "tenant_id TEXT NOT NULL, "
    } else {
        ""
    };
    let key = if table.pooled { "tenant_id, id" } else { "id" };
    let mut columns = String::new();
    for (field, spec) in &collection.fields {
        columns.push_str(", ");
        columns.push_str(&column_def(field, spec)?);
    }
    let search = collection.searchable();
    if search {
        columns.push_str(", seq INTEGER");
    }
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {} ({tenant_col}id TEXT NOT NULL, created_at INTEGER NOT NULL, \
         updated_at INTEGER NOT NULL, version INTEGER NOT NULL{columns}, PRIMARY KEY ({key})) WITHOUT ROWID",
        table.quoted()
    ))?;

    let existing: BTreeSet<String> = {
        let mut stmt = tx.prepare(&format!(
            "SELECT name FROM pragma_table_info('{}')",
            table.raw
        ))?;
        let names = stmt.query_map([], |row| row.get::<_, String>(0))?;
        names.collect::<Result<_, _>>()?
    };
    if search && !existing.contains("seq") {
        tx.execute_batch(&format!(
            "ALTER TABLE {} ADD COLUMN seq INTEGER",
            table.quoted()
        ))?;
    }
    for (field, spec) in &collection.fields {
        if !existing.contains(&format!("f_{field}")) {
            tx.execute_batch(&format!(
                "ALTER TABLE {} ADD COLUMN {}",
                table.quoted(),
                column_def(field, spec)?
            ))?;
        }
    }

    let present: BTreeSet<String> = {
        let mut stmt = tx.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND substr(name, 1, length(?2)) = ?2",
        )?;
        let names = stmt.query_map([&table.raw, &table.index_prefix()], |row| {
            row.get::<_, String>(0)
        })?;
        names.collect::<Result<_, _>>()?
    };
    let mut wanted = BTreeSet::new();
    for (field, spec) in collection.fields.iter().filter(|(_, s)| s.indexed()) {
        let name = table.index_name(field, spec.unique);
        if !present.contains(&name) {
            let cols = if table.pooled {
                format!("tenant_id, {}", column(field))
            } else {
                column(field)
            };
            tx.execute_batch(&format!(
                "CREATE {}INDEX IF NOT EXISTS \"{name}\" ON {} ({cols})",
                if spec.unique { "UNIQUE " } else { "" },
                table.quoted()
            ))?;
        }
        wanted.insert(name);
    }
    if search {
        let name = format!("{}seq", table.index_prefix());
        tx.execute_batch(&format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS \"{name}\" ON {} (seq)",
            table.quoted()
        ))?;
        wanted.insert(name);
    }
    for name in present.difference(&wanted) {
        tx.execute_batch(&format!("DROP INDEX IF EXISTS \"{name}\""))?;
    }
    if search {
        ensure_search_index(&tx, table, collection)?;
    }
    planner_hints(&tx, table, &wanted)?;
    tx.execute(
        "INSERT INTO bk_versions (tbl, version) VALUES (?1, ?2) \
         ON CONFLICT (tbl) DO UPDATE SET version = max(version, excluded.version)",
        rusqlite::params![table.raw, collection.version],
    )?;
    tx.commit()?;
    Ok(())
}

/// The definition version `table` was last brought to; `None` for a table made before
/// versions were recorded (it gets one at its next change).
fn stored_version(tx: &Connection, table: &TableName) -> Result<Option<i64>, StorageError> {
    let mut stmt = match tx.prepare_cached("SELECT version FROM bk_versions WHERE tbl = ?1") {
        Ok(stmt) => stmt,
        Err(rusqlite::Error::SqliteFailure(_, Some(msg))) if msg.contains("no such table") => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let mut rows = stmt.query([&table.raw])?;
    Ok(match rows.next()? {
        Some(row) => Some(row.get(0)?),
        None => None,
    })
}

/// The schema fence (see `Engine::ensure_collection`): a write transaction made with
/// definition `version` of the table's collection goes on only if the table is at it. The
/// writer connection serialises this with every change to the table.
pub fn fence(tx: &Connection, table: &TableName, version: i64) -> Result<(), StorageError> {
    match stored_version(tx, table)? {
        Some(stored) if stored > version => Err(EngineError::SchemaMoved { stored }.into()),
        Some(stored) if stored < version => Err(EngineError::SchemaBehind { stored }.into()),
        _ => Ok(()),
    }
}

/// Tells SQLite's planner what our indexes are for, so plans do not depend on statistics a
/// young or skewed table does not have: in a pool a tenant holds many rows (the primary key's
/// tenant prefix selects ~1000) and an indexed value selects few (~10). Without this, SQLite
/// may walk a tenant's whole primary key to return rows in id order instead of using the index
/// on the filtered field. Written into `sqlite_stat1` the way the SQLite docs describe.
fn planner_hints(
    tx: &Transaction<'_>,
    table: &TableName,
    indexes: &BTreeSet<String>,
) -> Result<(), StorageError> {
    // Creates sqlite_stat1 when missing without analysing any record table.
    tx.execute_batch("ANALYZE sqlite_schema")?;
    tx.execute("DELETE FROM sqlite_stat1 WHERE tbl = ?1", [&table.raw])?;
    let (pk, unique, plain) = if table.pooled {
        ("1000000 1000 1", "1000000 1000 1", "1000000 1000 10")
    } else {
        ("100000 1", "100000 1", "100000 10")
    };
    let mut insert = tx.prepare("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?1, ?2, ?3)")?;
    insert.execute([table.raw.as_str(), table.raw.as_str(), pk])?;
    for index in indexes {
        let stat = if index.ends_with("__ix__seq") {
            if table.pooled {
                "1000000 1"
            } else {
                "100000 1"
            }
        } else if index.contains("__ix__u_") {
            unique
        } else {
            plain
        };
        insert.execute([table.raw.as_str(), index.as_str(), stat])?;
    }
    Ok(())
}

/// Converts a shared-compiler parameter for rusqlite.
pub fn sql_value(param: SqlParam) -> SqlValue {
    match param {
        SqlParam::Null => SqlValue::Null,
        SqlParam::Text(s) => SqlValue::Text(s),
        SqlParam::Integer(i) => SqlValue::Integer(i),
        SqlParam::Float(f) => SqlValue::Real(f),
    }
}

/// Removes every row of `tenant` from the pooled record table `table` (raw name) and its
/// tokens from the table's search index (when `with_search`): the tenant predicate first.
pub fn purge_pooled(table: &str, tenant: &str, with_search: bool) -> Vec<(String, Vec<SqlValue>)> {
    let table = TableName {
        raw: table.to_owned(),
        pooled: true,
    };
    let key = vec![SqlValue::Text(tenant.to_owned())];
    let mut out = Vec::new();
    if with_search {
        out.push((
            format!(
                "DELETE FROM {} WHERE rowid IN (SELECT seq FROM {} WHERE tenant_id = ?1)",
                table.fts_quoted(),
                table.quoted()
            ),
            key.clone(),
        ));
    }
    out.push((
        format!("DELETE FROM {} WHERE tenant_id = ?1", table.quoted()),
        key,
    ));
    out
}

/// Record statements for one table, bound to one tenant.
pub struct RecordSql<'a> {
    table: &'a TableName,
    tenant: &'a str,
    collection: &'a Collection,
    /// The table has a search index to keep in step.
    pub search: bool,
}

/// The select list shared by every read, in the order [`RecordSql::decode`] expects.
fn select_list(collection: &Collection) -> String {
    let mut cols = String::from("id, created_at, updated_at, version");
    for field in collection.fields.keys() {
        cols.push_str(", ");
        cols.push_str(&column(field));
    }
    cols
}

impl<'a> RecordSql<'a> {
    pub fn new(table: &'a TableName, tenant: &'a str, collection: &'a Collection) -> Self {
        RecordSql {
            table,
            tenant,
            collection,
            search: collection.searchable(),
        }
    }

    pub fn tenant(&self) -> &str {
        self.tenant
    }

    /// The scope predicate and its parameters; everything else is appended after it.
    fn scoped(&self) -> (String, Vec<SqlValue>) {
        if self.table.pooled {
            (
                "tenant_id = ?1".into(),
                vec![SqlValue::Text(self.tenant.to_owned())],
            )
        } else {
            ("1 = 1".into(), Vec::new())
        }
    }

    /// The INSERT statement, the same for every row of a batch.
    pub fn insert_sql(&self) -> String {
        let mut cols = String::new();
        if self.table.pooled {
            cols.push_str("tenant_id, ");
        }
        cols.push_str("id, created_at, updated_at, version");
        for field in self.collection.fields.keys() {
            cols.push_str(", ");
            cols.push_str(&column(field));
        }
        if self.search {
            cols.push_str(", seq");
        }
        let count = 4
            + usize::from(self.table.pooled)
            + self.collection.fields.len()
            + usize::from(self.search);
        let marks = (1..=count)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {} ({cols}) VALUES ({marks})",
            self.table.quoted()
        )
    }

    /// Parameters for [`RecordSql::insert_sql`], tenant first on pooled tables; `seq` only for
    /// searchable tables.
    /// Parameters for [`RecordSql::insert_sql`], tenant first on pooled tables; `seq` only for
    /// searchable tables. The system fields are given: `(created_at, updated_at, version)`.
    pub fn insert_params_exact(
        &self,
        id: &RecordId,
        (created_at, updated_at, version): (Timestamp, Timestamp, i64),
        fields: &Fields,
        seq: Option<i64>,
    ) -> Vec<SqlValue> {
        let (_, mut params) = self.scoped();
        params.extend([
            SqlValue::Text(id.as_str().to_owned()),
            SqlValue::Integer(created_at.as_micros()),
            SqlValue::Integer(updated_at.as_micros()),
            SqlValue::Integer(version),
        ]);
        for field in self.collection.fields.keys() {
            params.push(fields.get(field).map_or(SqlValue::Null, to_sql));
        }
        if self.search {
            params.push(seq.map_or(SqlValue::Null, SqlValue::Integer));
        }
        params
    }

    pub fn update(
        &self,
        id: &RecordId,
        now: Timestamp,
        version: i64,
        fields: &Fields,
    ) -> (String, Vec<SqlValue>) {
        let (pred, mut params) = self.scoped();
        let mut sets = Vec::new();
        params.push(SqlValue::Integer(now.as_micros()));
        sets.push(format!("updated_at = ?{}", params.len()));
        params.push(SqlValue::Integer(version));
        sets.push(format!("version = ?{}", params.len()));
        for field in self.collection.fields.keys() {
            params.push(fields.get(field).map_or(SqlValue::Null, to_sql));
            sets.push(format!("{} = ?{}", column(field), params.len()));
        }
        params.push(SqlValue::Text(id.as_str().to_owned()));
        let n = params.len();
        (
            format!(
                "UPDATE {} SET {} WHERE {pred} AND id = ?{n}",
                self.table.quoted(),
                sets.join(", ")
            ),
            params,
        )
    }

    pub fn delete(&self, id: &RecordId) -> (String, Vec<SqlValue>) {
        let (pred, mut params) = self.scoped();
        params.push(SqlValue::Text(id.as_str().to_owned()));
        let n = params.len();
        (
            format!(
                "DELETE FROM {} WHERE {pred} AND id = ?{n}",
                self.table.quoted()
            ),
            params,
        )
    }

    /// The row's sequence number in the search index.
    pub fn seq(&self, id: &RecordId) -> (String, Vec<SqlValue>) {
        let (pred, mut params) = self.scoped();
        params.push(SqlValue::Text(id.as_str().to_owned()));
        let n = params.len();
        (
            format!(
                "SELECT seq FROM {} WHERE {pred} AND id = ?{n}",
                self.table.quoted()
            ),
            params,
        )
    }

    /// Keeps the search index in step with a written row (`fields: None` after a delete).
    /// Call while the row is in the table (before deleting it): both statements reach the
    /// index only through this tenant's row numbered `seq`, tenant predicate first.
    pub fn reindex(
        &self,
        tx: &Connection,
        seq: i64,
        fields: Option<&Fields>,
        replacing: bool,
    ) -> Result<(), StorageError> {
        let fts = self.table.fts_quoted();
        let table = self.table.quoted();
        let (pred, mut params) = self.scoped();
        params.push(SqlValue::Integer(seq));
        let n = params.len();
        if replacing {
            tx.prepare_cached(&format!(
                "DELETE FROM {fts} WHERE rowid IN (SELECT seq FROM {table} WHERE {pred} AND seq = ?{n})"
            ))?
            .execute(rusqlite::params_from_iter(&params))?;
        }
        if let Some(fields) = fields {
            let tenant = self.table.pooled.then_some(self.tenant);
            params.push(SqlValue::Text(search_tokens(
                self.collection,
                fields,
                tenant,
            )));
            tx.prepare_cached(&format!(
                "INSERT INTO {fts}(rowid, body) SELECT seq, ?{} FROM {table} WHERE {pred} AND seq = ?{n}",
                n + 1
            ))?
            .execute(rusqlite::params_from_iter(&params))?;
        }
        Ok(())
    }

    /// Starts the parameters and WHERE terms of a query over the table aliased `r`: the tenant
    /// first (as `?1`), then the row counter of the query budget (unless it is unmetered).
    fn query_scope(&self, budget: &bulkhead_engine::QueryBudget) -> (Params, Vec<String>) {
        let mut params = Params::new(Sqlite.placeholder());
        let mut terms = Vec::new();
        if self.table.pooled {
            let t = params.bind(SqlParam::Text(self.tenant.to_owned()));
            terms.push(format!("r.tenant_id = {t}"));
        }
        if budget.counts_rows() {
            terms.push(format!("{EXAMINE_FN}(r.id)"));
        } else if terms.is_empty() {
            // Statements join the terms after WHERE, so there is always one.
            terms.push("1 = 1".into());
        }
        (params, terms)
    }

    /// A page of a list query. Returns the SQL, its parameters and the fields selected (the
    /// projection plus the sort fields), in the order [`RecordSql::decode_hit`] expects.
    pub fn list(&self, query: &ListQuery) -> Result<ListStatement, StorageError> {
        let d = Sqlite;
        let (mut params, mut terms) = self.query_scope(&query.budget);
        let mut with = String::new();
        let mut from = format!("{} AS r", self.table.quoted());
        let ranked = query.search.is_some();
        if let Some(search) = &query.search {
            if !self.search {
                return Err(StorageError::Corrupt(
                    "search on a collection without text fields".into(),
                ));
            }
            let fts = self.table.fts_quoted();
            let tenant = self.table.pooled.then_some(self.tenant);
            let m = params.bind(SqlParam::Text(match_expression(search, tenant)));
            with = format!(
                "WITH hits AS MATERIALIZED (SELECT rowid AS seq, -bm25({fts}) AS score \
                 FROM {fts} WHERE {fts} MATCH {m}) "
            );
            from = format!("hits JOIN {} AS r ON r.seq = hits.seq", self.table.quoted());
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
                expr: "hits.score".into(),
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
            let values = q::keyset_values(&d, query, after)
                .map_err(|why| StorageError::Corrupt(why.into()))?;
            terms.push(q::keyset_after(&mut params, &keys, &values));
        }
        let selected = query.read_fields(self.collection);
        let mut cols = String::from("r.id, r.created_at, r.updated_at, r.version");
        for (field, _) in &selected {
            cols.push_str(", r.");
            cols.push_str(&column(field));
        }
        if ranked {
            cols.push_str(", hits.score");
        }
        let limit = params.bind(SqlParam::Integer(i64::from(query.limit)));
        let sql = format!(
            "{with}SELECT {cols} FROM {from} WHERE {} ORDER BY {} LIMIT {limit}",
            terms.join(" AND "),
            q::order_by(&d, &keys)
        );
        Ok(ListStatement {
            sql,
            params: params.values.into_iter().map(sql_value).collect(),
            selected,
            ranked,
        })
    }

    /// Turns a row of [`RecordSql::list`] into a hit: the record (with only the projected
    /// fields), its sort-key values and its score.
    pub fn decode_hit(
        &self,
        row: &Row<'_>,
        statement: &ListStatement,
        query: &ListQuery,
    ) -> Result<bulkhead_engine::Hit, StorageError> {
        let id: String = row.get(0)?;
        let mut fields = Fields::new();
        for (i, (field, field_type)) in statement.selected.iter().enumerate() {
            if let Some(value) = from_sql(*field_type, row.get_ref(i + 4)?)? {
                fields.insert(field.clone(), value);
            }
        }
        let score = if statement.ranked {
            Some(row.get::<_, f64>(4 + statement.selected.len())?)
        } else {
            None
        };
        let record = Record {
            id: RecordId::parse(&id).map_err(|e| StorageError::Corrupt(e.message))?,
            created_at: Timestamp::from_micros(row.get(1)?),
            updated_at: Timestamp::from_micros(row.get(2)?),
            version: row.get(3)?,
            fields,
        };
        Ok(bulkhead_engine::Hit::of(record, query, score))
    }

    /// An aggregation page: group keys then metrics, in plan order (the shared compiler,
    /// after this table's tenant predicate).
    pub fn aggregate(&self, query: &AggregateQuery) -> (String, Vec<SqlValue>) {
        let (mut params, terms) = self.query_scope(&query.budget);
        let sql = q::aggregate(&Sqlite, &mut params, terms, &self.table.quoted(), query);
        (sql, params.values.into_iter().map(sql_value).collect())
    }

    /// Turns a row of [`RecordSql::aggregate`] into a group.
    pub fn decode_group(
        &self,
        row: &Row<'_>,
        plan: &AggregatePlan,
    ) -> Result<bulkhead_engine::GroupRow, StorageError> {
        let mut key = Vec::with_capacity(plan.groups.len());
        for (i, g) in plan.groups.iter().enumerate() {
            key.push(from_sql(g.value_type(), row.get_ref(i)?)?);
        }
        let mut metrics = Vec::with_capacity(plan.metrics.len());
        for (i, m) in plan.metrics.iter().enumerate() {
            let value = from_sql(m.value_type(), row.get_ref(plan.groups.len() + i)?)?;
            // SQLite sums floats past f64::MAX to infinity, which JSON cannot carry (it would
            // read as "no value"); PostgreSQL refuses the same sum.
            if let Some(FieldValue::Float(f)) = &value
                && !f.is_finite()
            {
                return Err(
                    EngineError::OutOfRange(bulkhead_engine::SUM_OUT_OF_RANGE.into()).into(),
                );
            }
            metrics.push(value);
        }
        Ok(bulkhead_engine::GroupRow { key, metrics })
    }

    /// Turns a row of [`select_list`] into a record.
    pub fn decode(&self, row: &Row<'_>) -> Result<Record, StorageError> {
        let id: String = row.get(0)?;
        let mut fields = Fields::new();
        for (i, (field, spec)) in self.collection.fields.iter().enumerate() {
            if let Some(value) = from_sql(spec.field_type, row.get_ref(i + 4)?)? {
                fields.insert(field.clone(), value);
            }
        }
        Ok(Record {
            id: RecordId::parse(&id).map_err(|e| StorageError::Corrupt(e.message))?,
            created_at: Timestamp::from_micros(row.get(1)?),
            updated_at: Timestamp::from_micros(row.get(2)?),
            version: row.get(3)?,
            fields,
        })
    }
}

/// A compiled list query.
pub struct ListStatement {
    pub sql: String,
    pub params: Vec<SqlValue>,
    pub selected: Vec<(FieldName, FieldType)>,
    pub ranked: bool,
}
