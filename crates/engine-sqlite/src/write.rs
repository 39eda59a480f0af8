//! Record writes inside a transaction, shared by single and bulk operations: each keeps the
//! table's search index in step.

use bulkhead_core::RecordId;
use bulkhead_core::record::{Fields, NewRecord, Record};
use bulkhead_core::time::Timestamp;
use bulkhead_engine::EngineError;
use rusqlite::params_from_iter;

use crate::StorageError;
use crate::layout::TableName;
use crate::search::next_seq;
use crate::sql::RecordSql;

pub(crate) fn fetch(
    tx: &rusqlite::Connection,
    sql: &RecordSql<'_>,
    id: &RecordId,
) -> Result<Option<Record>, StorageError> {
    let text = sql.get_text();
    let mut stmt = tx.prepare_cached(&text)?;
    let mut rows = match sql.pooled_tenant() {
        Some(tenant) => stmt.query((tenant, id.as_str()))?,
        None => stmt.query((id.as_str(),))?,
    };
    match rows.next()? {
        Some(row) => Ok(Some(sql.decode(row)?)),
        None => Ok(None),
    }
}

/// Inserts one record (and its search tokens) inside a write transaction.
pub(crate) fn create(
    tx: &rusqlite::Connection,
    sql: &RecordSql<'_>,
    insert_text: &str,
    record: NewRecord,
    now: Timestamp,
    seq: &mut i64,
) -> Result<Record, StorageError> {
    let record = Record {
        id: record.id,
        created_at: now,
        updated_at: now,
        version: 1,
        fields: record.fields,
    };
    create_exact(tx, sql, insert_text, record, seq)
}

/// Inserts a record with its system fields as given (and its search tokens).
pub(crate) fn create_exact(
    tx: &rusqlite::Connection,
    sql: &RecordSql<'_>,
    insert_text: &str,
    record: Record,
    seq: &mut i64,
) -> Result<Record, StorageError> {
    insert_exact(tx, sql, insert_text, &record, seq)?;
    Ok(record)
}

/// [`create_exact`] without handing the record back; nothing is written when it fails.
pub(crate) fn insert_exact(
    tx: &rusqlite::Connection,
    sql: &RecordSql<'_>,
    insert_text: &str,
    record: &Record,
    seq: &mut i64,
) -> Result<(), StorageError> {
    tx.prepare_cached(insert_text)?
        .execute(params_from_iter(sql.insert_params_exact(
            &record.id,
            (record.created_at, record.updated_at, record.version),
            &record.fields,
            Some(*seq),
        )))?;
    if sql.search {
        sql.reindex(tx, *seq, Some(&record.fields), false)?;
        *seq += 1;
    }
    Ok(())
}

/// Writes new fields over an existing record, one version up, and re-indexes its text.
pub(crate) fn replace(
    tx: &rusqlite::Connection,
    table: &TableName,
    sql: &RecordSql<'_>,
    current: Record,
    fields: Fields,
    now: Timestamp,
) -> Result<Record, StorageError> {
    let version = current
        .next_version()
        .ok_or_else(|| bulkhead_engine::version_out_of_range(&current))?;
    let (text, params) = sql.update(&current.id, now, version, &fields);
    tx.prepare_cached(&text)?
        .execute(params_from_iter(params))?;
    if sql.search {
        let (text, params) = sql.seq(&current.id);
        let seq: Option<i64> = tx
            .prepare_cached(&text)?
            .query_row(params_from_iter(params), |r| r.get(0))?;
        match seq {
            Some(seq) => sql.reindex(tx, seq, Some(&fields), true)?,
            None => {
                // Numbered when the table became searchable; this is only a safety net.
                let seq = next_seq(tx, table)?;
                let (set, values) =
                    crate::search::number_row(table, Some(sql.tenant()), current.id.as_str(), seq);
                tx.execute(&set, params_from_iter(values))?;
                sql.reindex(tx, seq, Some(&fields), false)?;
            }
        }
    }
    Ok(Record {
        id: current.id,
        created_at: current.created_at,
        updated_at: now,
        version,
        fields,
    })
}

/// Deletes a record and its search tokens.
pub(crate) fn remove(
    tx: &rusqlite::Connection,
    sql: &RecordSql<'_>,
    id: &RecordId,
) -> Result<(), StorageError> {
    let seq = if sql.search {
        let (text, params) = sql.seq(id);
        let mut stmt = tx.prepare_cached(&text)?;
        let mut rows = stmt.query(params_from_iter(params))?;
        match rows.next()? {
            Some(row) => row.get::<_, Option<i64>>(0)?,
            None => return Err(EngineError::NotFound.into()),
        }
    } else {
        None
    };
    // The tokens first: the index is reached only through the tenant's row.
    if let Some(seq) = seq {
        sql.reindex(tx, seq, None, true)?;
    }
    let (text, params) = sql.delete(id);
    let deleted = tx
        .prepare_cached(&text)?
        .execute(params_from_iter(params))?;
    if deleted == 0 {
        return Err(EngineError::NotFound.into());
    }
    Ok(())
}
