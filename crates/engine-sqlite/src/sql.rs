//! SQL for one collection table: DDL that makes a table match its collection, and the record
//! statements. Every statement over a pooled table is built by [`RecordSql`], which puts the
//! tenant predicate first and binds the tenant as the first parameter; there is no other way
//! to build record SQL in this crate.

use std::collections::BTreeSet;

use bulkhead_core::RecordId;
use bulkhead_core::record::{FieldValue, Fields, Record};
use bulkhead_core::schema::{Collection, FieldSpec, FieldType};
use bulkhead_core::time::Timestamp;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, Row};

use crate::StorageError;
use crate::layout::{TableName, column};

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
    for name in present.difference(&wanted) {
        tx.execute_batch(&format!("DROP INDEX IF EXISTS \"{name}\""))?;
    }
    tx.commit()?;
    Ok(())
}

/// Record statements for one table, bound to one tenant.
pub struct RecordSql<'a> {
    table: &'a TableName,
    tenant: &'a str,
    collection: &'a Collection,
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
        }
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
        let count = 4 + usize::from(self.table.pooled) + self.collection.fields.len();
        let marks = (1..=count)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {} ({cols}) VALUES ({marks})",
            self.table.quoted()
        )
    }

    /// Parameters for [`RecordSql::insert_sql`], tenant first on pooled tables.
    pub fn insert_params(&self, id: &RecordId, now: Timestamp, fields: &Fields) -> Vec<SqlValue> {
        let (_, mut params) = self.scoped();
        params.extend([
            SqlValue::Text(id.as_str().to_owned()),
            SqlValue::Integer(now.as_micros()),
            SqlValue::Integer(now.as_micros()),
            SqlValue::Integer(1),
        ]);
        for field in self.collection.fields.keys() {
            params.push(fields.get(field).map_or(SqlValue::Null, to_sql));
        }
        params
    }

    pub fn get(&self, id: &RecordId) -> (String, Vec<SqlValue>) {
        let (pred, mut params) = self.scoped();
        params.push(SqlValue::Text(id.as_str().to_owned()));
        let n = params.len();
        (
            format!(
                "SELECT {} FROM {} WHERE {pred} AND id = ?{n}",
                select_list(self.collection),
                self.table.quoted()
            ),
            params,
        )
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

    pub fn list(&self, query: &bulkhead_engine::ListQuery) -> (String, Vec<SqlValue>) {
        let (pred, mut params) = self.scoped();
        let mut sql = format!(
            "SELECT {} FROM {} WHERE {pred}",
            select_list(self.collection),
            self.table.quoted()
        );
        if let Some(after) = &query.after {
            params.push(SqlValue::Text(after.as_str().to_owned()));
            sql.push_str(&format!(" AND id > ?{}", params.len()));
        }
        for (field, value) in &query.filter.terms {
            params.push(to_sql(value));
            sql.push_str(&format!(" AND {} = ?{}", column(field), params.len()));
        }
        params.push(SqlValue::Integer(i64::from(query.limit)));
        sql.push_str(&format!(" ORDER BY id LIMIT ?{}", params.len()));
        (sql, params)
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
