//! The schema fence on PostgreSQL (see `Engine::ensure_collection`): every write
//! transaction commits only if its table is still at the definition version it was made with
//! (`bulkhead.table_versions`, written by the change in its own transaction). Silo databases
//! made before the fence get that table on first use (`PgEngine::bookkeeping`).

use bulkhead_engine::EngineError;
use deadpool_postgres::Transaction;

use crate::PgError;
use crate::names::Table;
use crate::records::Statement;
use crate::value::PgValue;

/// Commits a write transaction made with definition `version` of `table`'s collection, if
/// the table is still at that version (the schema fence, see `Engine::ensure_collection`).
/// Read after the transaction's statements took their lock on the table, so a change either
/// waited for this write or committed before it and is seen here.
pub(crate) async fn commit_fenced(
    tx: Transaction<'_>,
    table: &Table,
    version: i64,
    cache: bool,
) -> Result<(), PgError> {
    let read = Statement {
        sql: format!(
            "SELECT version FROM {}.table_versions WHERE tbl = $1",
            crate::names::META_SCHEMA
        ),
        params: vec![PgValue::Text(table.versions_key())],
    };
    let stored: Option<i64> = crate::tx::query(&tx, &read, cache)
        .await?
        .first()
        .map(|row| row.try_get(0))
        .transpose()?;
    match stored {
        Some(stored) if stored > version => {
            Err(PgError::Engine(EngineError::SchemaMoved { stored }))
        }
        Some(stored) if stored < version => {
            Err(PgError::Engine(EngineError::SchemaBehind { stored }))
        }
        _ => Ok(tx.commit().await?),
    }
}
