//! The archive's files: which month a record belongs to, a file's ledger row, and writing a
//! file so that it is whole or absent (written beside its place, synced, read back and
//! compared, renamed into place).

use std::path::Path;

use bulkhead_catalog::Life;
use bulkhead_core::CollectionName;
use bulkhead_core::error::Error;
use bulkhead_core::record::{FieldValue, Record};
use bulkhead_core::time::Timestamp;

use crate::format::{self, ColdFile};
use crate::ledger::{FileRow, State};
use crate::{io_error, month_dir, remove_file, sync_dir};

/// The value a record ages by.
pub(crate) fn aged_at(record: &Record, field: &str) -> Option<Timestamp> {
    match field {
        "created_at" => Some(record.created_at),
        "updated_at" => Some(record.updated_at),
        name => match record.fields.iter().find(|(n, _)| n.as_str() == name) {
            Some((_, FieldValue::Timestamp(t))) => Some(*t),
            _ => None,
        },
    }
}

pub(crate) fn month_of(at: Timestamp) -> String {
    at.to_rfc3339().chars().take(7).collect()
}

/// The first instant of `at`'s month (UTC).
pub(crate) fn month_start(at: Timestamp) -> Timestamp {
    let month = month_of(at);
    Timestamp::parse_rfc3339(&format!("{month}-01T00:00:00Z")).unwrap_or(at)
}

/// The first instant of the month after the one `from` starts.
pub(crate) fn next_month(from: Timestamp) -> Timestamp {
    let text = month_of(from);
    let (year, month) = text.split_once('-').unwrap_or(("0", "0"));
    let (year, month): (i64, u32) = (year.parse().unwrap_or(0), month.parse().unwrap_or(0));
    let (year, month) = if month >= 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    Timestamp::parse_rfc3339(&format!("{year:04}-{month:02}-01T00:00:00Z"))
        // Past year 9999: no month follows.
        .unwrap_or(Timestamp::from_micros(i64::MAX))
}

pub(crate) fn file_row(
    batch: &str,
    life: &Life,
    collection: &CollectionName,
    month: &str,
    field: &str,
    records: &[Record],
    lease_until: i64,
) -> FileRow {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let path = month_dir(life, collection.as_str(), month).join(format!("{id}.parquet"));
    let ats = records
        .iter()
        .filter_map(|r| aged_at(r, field))
        .map(|t| t.as_micros());
    FileRow {
        id,
        batch: batch.to_owned(),
        life: life.clone(),
        collection: collection.clone(),
        month: month.to_owned(),
        path: path.to_string_lossy().into_owned(),
        records: records.len() as u64,
        bytes: 0,
        min_at: ats.clone().min().unwrap_or(0),
        max_at: ats.max().unwrap_or(0),
        sha256: String::new(),
        state: State::Pending,
        lease_until,
    }
}

/// Writes `file` at `rel` under `root`: beside its place first, synced, read back and
/// compared, then renamed into place. Returns its size and SHA-256.
pub(crate) fn write_file(root: &Path, rel: &str, file: &ColdFile) -> Result<(u64, String), Error> {
    let path = root.join(rel);
    let dir = path
        .parent()
        .ok_or_else(|| Error::internal().with_message("a cold file path without a directory"))?;
    std::fs::create_dir_all(dir).map_err(|e| io_error("creating a cold archive directory", e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let fail = |e: format::FormatError| io_error("writing a cold archive file", e);
    format::write(&tmp, &file.meta, &file.columns, &file.records).map_err(fail)?;
    let back = format::read(&tmp).map_err(fail)?;
    if back.records != file.records {
        remove_file(&tmp)?;
        return Err(Error::internal()
            .with_message("a cold archive file read back differs from what was written"));
    }
    std::fs::rename(&tmp, &path).map_err(|e| io_error("placing a cold archive file", e))?;
    sync_dir(dir)?;
    let bytes = std::fs::metadata(&path)
        .map_err(|e| io_error("reading a cold archive file's size", e))?
        .len();
    let sha = bulkhead_catalog::file_sha256(&path)
        .map_err(|e| io_error("hashing a cold archive file", e))?;
    Ok((bytes, sha))
}

pub(crate) fn measure(path: &Path) -> Result<(u64, String), Error> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| io_error("reading a cold archive file's size", e))?
        .len();
    let sha = bulkhead_catalog::file_sha256(path)
        .map_err(|e| io_error("hashing a cold archive file", e))?;
    Ok((bytes, sha))
}
