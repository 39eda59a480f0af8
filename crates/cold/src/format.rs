//! The cold archive's files: Parquet with zstd compression, one row group, the format analysts
//! open with DuckDB, pandas or Spark.
//!
//! Columns: `id` (string), `created_at` and `updated_at` (timestamp, microseconds, UTC),
//! `version` (int64), then each field of the collection's definition in name order, optional,
//! typed: `string` and `text` as UTF-8 strings, `integer` as int64, `float` as double,
//! `boolean`, `timestamp` as a UTC timestamp in microseconds, `json` as a JSON string.
//! The file's key-value metadata names the tenant, its incarnation, the collection, the
//! definition version and the retention field (`bulkhead.*`), and the format version.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use bulkhead_core::record::{FieldValue, Record};
use bulkhead_core::schema::{Collection, FieldType};
use bulkhead_core::time::Timestamp;
use bulkhead_core::{FieldName, RecordId};
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical, ZstdLevel};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::schema::types::Type;

/// The version of this layout, in the file's metadata as `bulkhead.format`.
pub const FORMAT: &str = "1";
/// zstd level: a good ratio at a speed far above the hot store's.
const ZSTD_LEVEL: i32 = 3;

/// What a file holds, from its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub tenant: String,
    pub incarnation: String,
    pub collection: String,
    /// The definition version the records were read with.
    pub version: i64,
    /// The retention field the records aged by.
    pub field: String,
}

/// A file that is not one of ours, or damaged.
#[derive(Debug)]
pub struct FormatError(pub String);

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<parquet::errors::ParquetError> for FormatError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        FormatError(format!("parquet: {e}"))
    }
}

impl From<std::io::Error> for FormatError {
    fn from(e: std::io::Error) -> Self {
        FormatError(format!("io: {e}"))
    }
}

fn column(
    name: &str,
    physical: Physical,
    logical: Option<LogicalType>,
    required: bool,
) -> Result<Arc<Type>, FormatError> {
    let repetition = if required {
        Repetition::REQUIRED
    } else {
        Repetition::OPTIONAL
    };
    Ok(Arc::new(
        Type::primitive_type_builder(name, physical)
            .with_repetition(repetition)
            .with_logical_type(logical)
            .build()?,
    ))
}

fn timestamp() -> Option<LogicalType> {
    Some(LogicalType::timestamp(true, TimeUnit::MICROS))
}

fn field_column(name: &str, field_type: FieldType) -> Result<Arc<Type>, FormatError> {
    match field_type {
        FieldType::String | FieldType::Text => {
            column(name, Physical::BYTE_ARRAY, Some(LogicalType::String), false)
        }
        FieldType::Integer => column(name, Physical::INT64, None, false),
        FieldType::Float => column(name, Physical::DOUBLE, None, false),
        FieldType::Boolean => column(name, Physical::BOOLEAN, None, false),
        FieldType::Timestamp => column(name, Physical::INT64, timestamp(), false),
        FieldType::Json => column(name, Physical::BYTE_ARRAY, Some(LogicalType::Json), false),
    }
}

/// The fields a file has columns for, in name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns(pub Vec<(FieldName, FieldType)>);

impl Columns {
    /// The definition a file's records were read with, as far as the file tells: its
    /// fields and their types (constraints and defaults are not kept).
    pub fn definition(
        &self,
        collection: &bulkhead_core::CollectionName,
        version: i64,
    ) -> Collection {
        Collection {
            name: collection.clone(),
            version,
            fields: self
                .0
                .iter()
                .map(|(name, field_type)| {
                    (
                        name.clone(),
                        bulkhead_core::schema::FieldSpec {
                            field_type: *field_type,
                            required: false,
                            unique: false,
                            index: false,
                            default: None,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Every field of a definition.
    pub fn of(definition: &Collection) -> Self {
        Columns(
            definition
                .fields
                .iter()
                .map(|(name, spec)| (name.clone(), spec.field_type))
                .collect(),
        )
    }
}

/// Writes `records` to `path` with a column for each of `columns`, and syncs it.
pub fn write(
    path: &Path,
    meta: &FileMeta,
    columns: &Columns,
    records: &[Record],
) -> Result<(), FormatError> {
    let definition = columns;
    let mut columns = vec![
        column("id", Physical::BYTE_ARRAY, Some(LogicalType::String), true)?,
        column("created_at", Physical::INT64, timestamp(), true)?,
        column("updated_at", Physical::INT64, timestamp(), true)?,
        column("version", Physical::INT64, None, true)?,
    ];
    for (name, field_type) in &definition.0 {
        columns.push(field_column(name.as_str(), *field_type)?);
    }
    let schema = Arc::new(
        Type::group_type_builder("record")
            .with_fields(columns)
            .build()?,
    );
    let kv = |k: &str, v: String| KeyValue::new(k.to_owned(), v);
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
        .set_created_by(format!("bulkhead {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![
            kv("bulkhead.format", FORMAT.into()),
            kv("bulkhead.tenant", meta.tenant.clone()),
            kv("bulkhead.incarnation", meta.incarnation.clone()),
            kv("bulkhead.collection", meta.collection.clone()),
            kv("bulkhead.version", meta.version.to_string()),
            kv("bulkhead.field", meta.field.clone()),
        ]))
        .build();
    let file = File::create(path)?;
    let mut writer = SerializedFileWriter::new(file, schema, Arc::new(props))?;
    let mut group = writer.next_row_group()?;
    // System columns, then the fields in the schema's order.
    let mut index = 0usize;
    while let Some(mut col) = group.next_column()? {
        match index {
            0 => {
                let values: Vec<ByteArray> = records
                    .iter()
                    .map(|r| ByteArray::from(r.id.as_str()))
                    .collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&values, None, None)?;
            }
            1..=3 => {
                let values: Vec<i64> = records
                    .iter()
                    .map(|r| match index {
                        1 => r.created_at.as_micros(),
                        2 => r.updated_at.as_micros(),
                        _ => r.version,
                    })
                    .collect();
                col.typed::<Int64Type>().write_batch(&values, None, None)?;
            }
            _ => {
                let Some((name, field_type)) = definition.0.get(index - 4) else {
                    return Err(FormatError("more columns than fields".into()));
                };
                write_field(&mut col, name, *field_type, records)?;
            }
        }
        col.close()?;
        index += 1;
    }
    group.close()?;
    let file = writer.into_inner()?;
    file.sync_all()?;
    Ok(())
}

fn write_field(
    col: &mut parquet::file::writer::SerializedColumnWriter<'_>,
    name: &FieldName,
    field_type: FieldType,
    records: &[Record],
) -> Result<(), FormatError> {
    let values = records.iter().map(|r| r.fields.get(name));
    let defs: Vec<i16> = values.clone().map(|v| i16::from(v.is_some())).collect();
    let mismatch = || FormatError(format!("field {name}: a value of another type"));
    match field_type {
        FieldType::String | FieldType::Text | FieldType::Json => {
            let mut out = Vec::new();
            for value in values.flatten() {
                out.push(match value {
                    FieldValue::Text(s) => ByteArray::from(s.as_str()),
                    FieldValue::Json(v) => ByteArray::from(v.to_string().as_str()),
                    _ => return Err(mismatch()),
                });
            }
            col.typed::<ByteArrayType>()
                .write_batch(&out, Some(&defs), None)?;
        }
        FieldType::Integer | FieldType::Timestamp => {
            let mut out = Vec::new();
            for value in values.flatten() {
                out.push(match value {
                    FieldValue::Integer(i) => *i,
                    FieldValue::Timestamp(t) => t.as_micros(),
                    _ => return Err(mismatch()),
                });
            }
            col.typed::<Int64Type>()
                .write_batch(&out, Some(&defs), None)?;
        }
        FieldType::Float => {
            let mut out = Vec::new();
            for value in values.flatten() {
                match value {
                    FieldValue::Float(f) => out.push(*f),
                    _ => return Err(mismatch()),
                }
            }
            col.typed::<DoubleType>()
                .write_batch(&out, Some(&defs), None)?;
        }
        FieldType::Boolean => {
            let mut out = Vec::new();
            for value in values.flatten() {
                match value {
                    FieldValue::Boolean(b) => out.push(*b),
                    _ => return Err(mismatch()),
                }
            }
            col.typed::<BoolType>()
                .write_batch(&out, Some(&defs), None)?;
        }
    }
    Ok(())
}

/// How a column's values map back to a record.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Json,
    Integer,
    Float,
    Boolean,
    Timestamp,
}

/// A file read back.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdFile {
    pub meta: FileMeta,
    pub columns: Columns,
    pub records: Vec<Record>,
}

impl Kind {
    fn field_type(self) -> FieldType {
        match self {
            Kind::Text => FieldType::Text,
            Kind::Json => FieldType::Json,
            Kind::Integer => FieldType::Integer,
            Kind::Float => FieldType::Float,
            Kind::Boolean => FieldType::Boolean,
            Kind::Timestamp => FieldType::Timestamp,
        }
    }
}

/// Reads a file back: its metadata, its columns and every record.
pub fn read(path: &Path) -> Result<ColdFile, FormatError> {
    let reader = SerializedFileReader::new(File::open(path)?)?;
    let file = reader.metadata().file_metadata();
    let kv: BTreeMap<&str, &str> = file
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv.key.as_str(), kv.value.as_deref()?)))
        .collect();
    let get = |k: &str| {
        kv.get(k)
            .map(|v| (*v).to_owned())
            .ok_or_else(|| FormatError(format!("not a cold archive file: no {k} in its metadata")))
    };
    if get("bulkhead.format")? != FORMAT {
        return Err(FormatError(format!(
            "cold archive format {} is not {FORMAT}",
            get("bulkhead.format")?
        )));
    }
    let meta = FileMeta {
        tenant: get("bulkhead.tenant")?,
        incarnation: get("bulkhead.incarnation")?,
        collection: get("bulkhead.collection")?,
        version: get("bulkhead.version")?
            .parse()
            .map_err(|_| FormatError("bulkhead.version is not a number".into()))?,
        field: get("bulkhead.field")?,
    };
    let mut kinds: BTreeMap<String, Kind> = BTreeMap::new();
    let mut fields = Vec::new();
    for col in file.schema_descr().columns() {
        let kind = match (col.physical_type(), col.logical_type_ref()) {
            (Physical::BYTE_ARRAY, Some(LogicalType::Json)) => Kind::Json,
            (Physical::BYTE_ARRAY, _) => Kind::Text,
            (Physical::INT64, Some(LogicalType::Timestamp { .. })) => Kind::Timestamp,
            (Physical::INT64, _) => Kind::Integer,
            (Physical::DOUBLE, _) => Kind::Float,
            (Physical::BOOLEAN, _) => Kind::Boolean,
            (other, _) => {
                return Err(FormatError(format!(
                    "column {} has type {other}, which no field has",
                    col.name()
                )));
            }
        };
        kinds.insert(col.name().to_owned(), kind);
        if !matches!(col.name(), "id" | "created_at" | "updated_at" | "version") {
            let name = FieldName::parse(col.name())
                .map_err(|_| FormatError(format!("column {} is no field name", col.name())))?;
            fields.push((name, kind.field_type()));
        }
    }
    let mut records = Vec::with_capacity(usize::try_from(file.num_rows()).unwrap_or(0));
    for row in reader.get_row_iter(None)? {
        records.push(decode(&row?, &kinds)?);
    }
    Ok(ColdFile {
        meta,
        columns: Columns(fields),
        records,
    })
}

fn decode(
    row: &parquet::record::Row,
    kinds: &BTreeMap<String, Kind>,
) -> Result<Record, FormatError> {
    let bad = |what: &str| FormatError(format!("a row's {what} is missing or malformed"));
    let (mut id, mut created, mut updated, mut version) = (None, None, None, None);
    let mut fields = BTreeMap::new();
    for (name, value) in row.get_column_iter() {
        match (name.as_str(), value) {
            ("id", Field::Str(s)) => id = Some(RecordId::parse(s).map_err(|_| bad("id"))?),
            ("created_at", Field::TimestampMicros(t)) => created = Some(Timestamp::from_micros(*t)),
            ("updated_at", Field::TimestampMicros(t)) => updated = Some(Timestamp::from_micros(*t)),
            ("version", Field::Long(v)) => version = Some(*v),
            (_, Field::Null) => {}
            (name, value) => {
                let field = FieldName::parse(name).map_err(|_| bad(name))?;
                let kind = kinds.get(name).copied().ok_or_else(|| bad(name))?;
                let typed = match (kind, value) {
                    (Kind::Text, Field::Str(s)) => FieldValue::Text(s.clone()),
                    (Kind::Json, Field::Str(s)) => {
                        FieldValue::Json(serde_json::from_str(s).map_err(|_| bad(name))?)
                    }
                    (Kind::Integer, Field::Long(i)) => FieldValue::Integer(*i),
                    (Kind::Timestamp, Field::TimestampMicros(t)) => {
                        FieldValue::Timestamp(Timestamp::from_micros(*t))
                    }
                    (Kind::Float, Field::Double(f)) => FieldValue::Float(*f),
                    (Kind::Boolean, Field::Bool(b)) => FieldValue::Boolean(*b),
                    _ => return Err(bad(name)),
                };
                fields.insert(field, typed);
            }
        }
    }
    Ok(Record {
        id: id.ok_or_else(|| bad("id"))?,
        created_at: created.ok_or_else(|| bad("created_at"))?,
        updated_at: updated.ok_or_else(|| bad("updated_at"))?,
        version: version.ok_or_else(|| bad("version"))?,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn definition() -> Collection {
        serde_json::from_value(serde_json::json!({"name": "c", "version": 3, "fields": {
            "s": {"type": "string"}, "t": {"type": "text"}, "i": {"type": "integer"},
            "f": {"type": "float"}, "b": {"type": "boolean"}, "ts": {"type": "timestamp"},
            "j": {"type": "json"}
        }}))
        .expect("definition")
    }

    fn meta() -> FileMeta {
        FileMeta {
            tenant: "acme".into(),
            incarnation: "0196".into(),
            collection: "c".into(),
            version: 3,
            field: "ts".into(),
        }
    }

    fn value() -> impl Strategy<Value = Option<FieldValue>> {
        prop_oneof![
            Just(None),
            any::<i64>().prop_map(|i| Some(FieldValue::Integer(i)))
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        /// Whatever the records hold, a file gives them back exactly.
        #[test]
        fn records_come_back_exactly(
            rows in proptest::collection::vec(
                ("[a-z0-9]{1,12}", any::<i64>(), 1i64..1_000_000, value(),
                 proptest::option::of(any::<f64>().prop_filter("finite", |f| f.is_finite())),
                 proptest::option::of(any::<bool>()), proptest::option::of("\\PC{0,40}"),
                 proptest::option::of(-62_135_596_800_000_000i64..253_402_300_799_000_000)),
                0..40)
        ) {
            let dir = tempfile::tempdir().expect("dir");
            let path = dir.path().join("f.parquet");
            let mut seen = std::collections::BTreeSet::new();
            let records: Vec<Record> = rows.into_iter().filter(|r| seen.insert(r.0.clone())).map(|(id, at, version, i, f, b, s, ts)| {
                let mut fields = BTreeMap::new();
                let name = |n: &str| FieldName::parse(n).expect("name");
                if let Some(i) = i { fields.insert(name("i"), i); }
                if let Some(f) = f { fields.insert(name("f"), FieldValue::Float(f)); }
                if let Some(b) = b { fields.insert(name("b"), FieldValue::Boolean(b)); }
                if let Some(s) = &s {
                    fields.insert(name("s"), FieldValue::Text(s.clone()));
                    fields.insert(name("j"), FieldValue::Json(serde_json::json!({"s": s, "n": [1, 2.5]})));
                }
                if let Some(ts) = ts { fields.insert(name("ts"), FieldValue::Timestamp(Timestamp::from_micros(ts))); }
                Record {
                    id: RecordId::parse(&id).expect("id"),
                    created_at: Timestamp::from_micros(at / 7),
                    updated_at: Timestamp::from_micros(at / 3),
                    version,
                    fields,
                }
            }).collect();
            let columns = Columns::of(&definition());
            write(&path, &meta(), &columns, &records).expect("write");
            let back = read(&path).expect("read");
            prop_assert_eq!(&back.meta, &meta());
            prop_assert_eq!(&back.records, &records);
            // Written again from what was read, the file reads the same.
            let again = dir.path().join("g.parquet");
            write(&again, &back.meta, &back.columns, &back.records).expect("rewrite");
            prop_assert_eq!(read(&again).expect("read").records, back.records);
        }
    }

    #[test]
    fn a_file_that_is_not_ours_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("x.parquet");
        std::fs::write(&path, b"PAR1 not really").expect("write");
        assert!(read(&path).is_err());
        // A truncated file of ours is refused as well.
        let good = dir.path().join("g.parquet");
        write(&good, &meta(), &Columns::of(&definition()), &[]).expect("write");
        let bytes = std::fs::read(&good).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 9]).expect("write");
        assert!(read(&path).is_err());
    }
}
