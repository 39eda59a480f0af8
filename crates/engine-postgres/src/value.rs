//! Values crossing the wire: one parameter type that adapts to the type PostgreSQL inferred
//! for its placeholder, and decoding of stored columns back into field values.

use std::error::Error as StdError;

use bulkhead_core::record::FieldValue;
use bulkhead_core::schema::FieldType;
use bulkhead_core::time::Timestamp;
use bulkhead_engine::sql::SqlParam;
use bytes::{BufMut, BytesMut};
use tokio_postgres::Row;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::PgError;
use crate::search::Lexemes;

type BoxError = Box<dyn StdError + Sync + Send>;

/// A bound parameter. The shared compiler produces untyped values (text, integer, float);
/// PostgreSQL tells us the type of each placeholder when it prepares a statement, and the
/// value is written in that type's binary form.
#[derive(Debug, Clone)]
pub enum PgValue {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Json(serde_json::Value),
    TsVector(Lexemes),
    /// A `text[]` (ids of a batch).
    TextArray(Vec<String>),
}

impl From<SqlParam> for PgValue {
    fn from(p: SqlParam) -> Self {
        match p {
            SqlParam::Null => PgValue::Null,
            SqlParam::Text(s) => PgValue::Text(s),
            SqlParam::Integer(i) => PgValue::Int(i),
            SqlParam::Float(f) => PgValue::Float(f),
        }
    }
}

/// How a field value is stored: booleans as booleans, timestamps as microseconds (`bigint`),
/// JSON as `jsonb`.
pub fn stored(value: &FieldValue) -> PgValue {
    match value {
        FieldValue::Text(s) => PgValue::Text(s.clone()),
        FieldValue::Integer(i) => PgValue::Int(*i),
        FieldValue::Float(f) => PgValue::Float(*f),
        FieldValue::Boolean(b) => PgValue::Bool(*b),
        FieldValue::Timestamp(t) => PgValue::Int(t.as_micros()),
        FieldValue::Json(v) => PgValue::Json(v.clone()),
    }
}

fn mismatch(value: &PgValue, ty: &Type) -> BoxError {
    format!("cannot bind {value:?} as {ty}").into()
}

impl ToSql for PgValue {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match (self, ty) {
            (PgValue::Null, _) => Ok(IsNull::Yes),
            (PgValue::Text(s), &Type::JSONB) => {
                // jsonb's binary form: a version byte, then the JSON text.
                out.put_u8(1);
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            (PgValue::Text(s), _) => s.as_str().to_sql(ty, out),
            (PgValue::Int(i), &Type::INT8) => i.to_sql(ty, out),
            (PgValue::Int(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (PgValue::Int(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (PgValue::Int(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (PgValue::Int(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (PgValue::Int(i), &Type::TEXT) => i.to_string().as_str().to_sql(ty, out),
            (PgValue::Float(f), &Type::FLOAT8) => f.to_sql(ty, out),
            (PgValue::Float(f), &Type::FLOAT4) => (*f as f32).to_sql(ty, out),
            (PgValue::Float(f), &Type::INT8) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
                (*f as i64).to_sql(ty, out)
            }
            (PgValue::Float(f), &Type::TEXT) => f.to_string().as_str().to_sql(ty, out),
            (PgValue::Bool(b), &Type::BOOL) => b.to_sql(ty, out),
            (PgValue::Json(v), &Type::JSONB | &Type::JSON) => v.to_sql(ty, out),
            (PgValue::TsVector(l), &Type::TS_VECTOR) => {
                l.write_binary(out)?;
                Ok(IsNull::No)
            }
            (PgValue::TextArray(a), &Type::TEXT_ARRAY) => a.to_sql(ty, out),
            (value, ty) => Err(mismatch(value, ty)),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// References for a statement's parameter slice.
pub fn refs(values: &[PgValue]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// Reads column `i` of `row` as a value of `field_type` (`None` for NULL).
pub fn decode(row: &Row, i: usize, field_type: FieldType) -> Result<Option<FieldValue>, PgError> {
    Ok(match field_type {
        FieldType::String | FieldType::Text => {
            row.try_get::<_, Option<String>>(i)?.map(FieldValue::Text)
        }
        FieldType::Integer => row.try_get::<_, Option<i64>>(i)?.map(FieldValue::Integer),
        FieldType::Float => row.try_get::<_, Option<f64>>(i)?.map(FieldValue::Float),
        FieldType::Boolean => row.try_get::<_, Option<bool>>(i)?.map(FieldValue::Boolean),
        FieldType::Timestamp => row
            .try_get::<_, Option<i64>>(i)?
            .map(|t| FieldValue::Timestamp(Timestamp::from_micros(t))),
        FieldType::Json => row
            .try_get::<_, Option<serde_json::Value>>(i)?
            .map(FieldValue::Json),
    })
}

/// The SQL type a field is stored as. Text sorts and compares by code point (`COLLATE "C"`),
/// as in the embedded engine, whatever the database's locale.
pub fn sql_type(field_type: FieldType) -> &'static str {
    match field_type {
        FieldType::String | FieldType::Text => "text COLLATE \"C\"",
        FieldType::Integer | FieldType::Timestamp => "bigint",
        FieldType::Float => "double precision",
        FieldType::Boolean => "boolean",
        FieldType::Json => "jsonb",
    }
}

/// A constant SQL literal for a column default (DDL takes no parameters). Text is quoted by
/// the server itself (`quote_literal`), whatever its `standard_conforming_strings`.
pub async fn sql_literal(
    client: &impl tokio_postgres::GenericClient,
    value: &FieldValue,
) -> Result<String, tokio_postgres::Error> {
    let quoted = |s: String| async move {
        client
            .query_one("SELECT quote_literal($1::text)", &[&s])
            .await
            .map(|row| row.get::<_, String>(0))
    };
    Ok(match value {
        FieldValue::Text(s) => quoted(s.clone()).await?,
        FieldValue::Integer(i) => i.to_string(),
        FieldValue::Float(f) => format!("{f:e}::double precision"),
        FieldValue::Boolean(b) => b.to_string(),
        FieldValue::Timestamp(t) => t.as_micros().to_string(),
        FieldValue::Json(v) => format!("{}::jsonb", quoted(v.to_string()).await?),
    })
}
