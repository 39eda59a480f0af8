//! The full-text index of a record table: an FTS5 table (`<table>-fts`) fed with the tokens
//! of every `text` field, keyed by the table's `seq` column. Contentless with `secure-delete`:
//! it keeps tokens, not text, and a deleted row's tokens leave the index at once. In a pool
//! each token carries its tenant, so a lookup reads only that tenant's postings.

use bulkhead_core::FieldName;
use bulkhead_core::query::search::tokenize;
use bulkhead_core::query::{SearchQuery, SearchTerm};
use bulkhead_core::record::{FieldValue, Fields};
use bulkhead_core::schema::{Collection, FieldType};
use rusqlite::Transaction;
use rusqlite::types::Value as SqlValue;

use crate::StorageError;
use crate::layout::{TableName, column};

/// The `text` fields a collection's search index covers, as stored in `bk_fts_fields`.
fn text_fields(collection: &Collection) -> String {
    collection
        .fields
        .iter()
        .filter(|(_, spec)| spec.field_type == FieldType::Text)
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The tokens a record puts in the search index: every `text` field through the shared
/// tokenizer. In a pooled table each token carries its tenant (`acme_word`), so a lookup
/// finds only that tenant's rows: the tenant is part of the full-text match itself.
pub fn search_tokens(collection: &Collection, fields: &Fields, tenant: Option<&str>) -> String {
    let mut out = String::new();
    for (name, spec) in &collection.fields {
        if spec.field_type != FieldType::Text {
            continue;
        }
        if let Some(FieldValue::Text(text)) = fields.get(name) {
            for token in tokenize(text) {
                if !out.is_empty() {
                    out.push(' ');
                }
                if let Some(tenant) = tenant {
                    out.push_str(tenant);
                    out.push('_');
                }
                out.push_str(&token);
            }
        }
    }
    out
}

/// The FTS5 query for a search: each term a quoted phrase of (tenant-qualified) tokens.
/// Tokens are letters and digits only, so nothing in them needs escaping.
pub fn match_expression(search: &SearchQuery, tenant: Option<&str>) -> String {
    let qualify = |token: &str| match tenant {
        Some(t) => format!("{t}_{token}"),
        None => token.to_owned(),
    };
    search
        .terms
        .iter()
        .map(|term| match term {
            SearchTerm::Word(w) => format!("\"{}\"", qualify(w)),
            SearchTerm::Prefix(p) => format!("\"{}\"*", qualify(p)),
            SearchTerm::Phrase(words) => format!(
                "\"{}\"",
                words
                    .iter()
                    .map(|w| qualify(w))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}
/// Creates the table's FTS5 index, and rebuilds it when the set of `text` fields changed (a
/// new text field may come with a default that existing rows now have).
///
/// The index is contentless (it keeps tokens, not text) with `secure-delete`, so deleting a
/// row removes its tokens from the index at once; a purged tenant leaves none behind.
pub fn ensure_search_index(
    tx: &Transaction<'_>,
    table: &TableName,
    collection: &Collection,
) -> Result<(), StorageError> {
    let fts = table.fts_quoted();
    tx.execute_batch(&format!(
        "CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5(body, content='', \
         contentless_delete=1, tokenize=\"unicode61 remove_diacritics 2 tokenchars '-_'\");
         INSERT INTO {fts}({fts}, rank) VALUES ('secure-delete', 1);
         CREATE TABLE IF NOT EXISTS bk_fts_fields (tbl TEXT PRIMARY KEY, fields TEXT NOT NULL);"
    ))?;
    let indexed: Option<String> = tx
        .query_row(
            "SELECT fields FROM bk_fts_fields WHERE tbl = ?1",
            [&table.raw],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    let wanted = text_fields(collection);
    if indexed.as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    tx.execute_batch(&format!("INSERT INTO {fts}({fts}) VALUES ('delete-all')"))?;
    let tenant_col = if table.pooled { "tenant_id" } else { "NULL" };
    // Rows from before the table was searchable get their sequence numbers first.
    let unnumbered: Vec<(Option<String>, String)> = {
        let mut stmt = tx.prepare(&format!(
            "SELECT {tenant_col}, id FROM {} WHERE seq IS NULL",
            table.quoted()
        ))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let first = next_seq(tx, table)?;
    for (next, (tenant, id)) in (first..).zip(unnumbered) {
        let (sql, params) = number_row(table, tenant.as_deref(), &id, next);
        tx.execute(&sql, rusqlite::params_from_iter(params))?;
    }
    let texts: Vec<(FieldName, usize)> = collection
        .fields
        .iter()
        .filter(|(_, s)| s.field_type == FieldType::Text)
        .enumerate()
        .map(|(i, (f, _))| (f.clone(), i + 2))
        .collect();
    let cols: Vec<String> = texts.iter().map(|(f, _)| column(f)).collect();
    let mut stmt = tx.prepare(&format!(
        "SELECT {tenant_col}, seq, {} FROM {}",
        cols.join(", "),
        table.quoted()
    ))?;
    let mut insert = tx.prepare(&format!("INSERT INTO {fts}(rowid, body) VALUES (?1, ?2)"))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let tenant: Option<String> = row.get(0)?;
        let seq: i64 = row.get(1)?;
        let mut fields = Fields::new();
        for (field, i) in &texts {
            if let Some(text) = row.get::<_, Option<String>>(*i)? {
                fields.insert(field.clone(), FieldValue::Text(text));
            }
        }
        let body = search_tokens(collection, &fields, tenant.as_deref());
        insert.execute(rusqlite::params![seq, body])?;
    }
    tx.execute(
        "INSERT INTO bk_fts_fields (tbl, fields) VALUES (?1, ?2) \
         ON CONFLICT (tbl) DO UPDATE SET fields = excluded.fields",
        [&table.raw, &wanted],
    )?;
    Ok(())
}

/// The next free sequence number of a searchable table.
pub fn next_seq(tx: &rusqlite::Connection, table: &TableName) -> Result<i64, StorageError> {
    let max: Option<i64> = tx
        .prepare_cached(&format!("SELECT max(seq) FROM {}", table.quoted()))?
        .query_row([], |r| r.get(0))?;
    Ok(max.unwrap_or(0) + 1)
}

/// Gives the row `id` of `tenant` (`None` outside a pool) search number `seq`: the tenant
/// predicate first, like every statement over a pooled table.
pub fn number_row(
    table: &TableName,
    tenant: Option<&str>,
    id: &str,
    seq: i64,
) -> (String, Vec<SqlValue>) {
    let mut params = Vec::new();
    let mut pred = String::new();
    if let (true, Some(tenant)) = (table.pooled, tenant) {
        params.push(SqlValue::Text(tenant.to_owned()));
        pred.push_str("tenant_id = ?1 AND ");
    }
    params.push(SqlValue::Text(id.to_owned()));
    params.push(SqlValue::Integer(seq));
    (
        format!(
            "UPDATE {} SET seq = ?{} WHERE {pred}id = ?{}",
            table.quoted(),
            params.len(),
            params.len() - 1
        ),
        params,
    )
}
