//! Schema work, always as the owner role: Bulkhead's own schema and functions, placement
//! schemas and databases, record tables with their indexes, row-level security and grants.
//! Every step is idempotent and runs in a transaction holding an advisory lock, so several
//! `bulkhead serve` processes (or a provisioning retried after a crash) can run it at once.
//!
//! Row-level security is enabled and forced on every record table, not only pooled ones:
//! a pooled table compares each row's `tenant_id` with the transaction's tenant setting; a
//! bridge or silo table compares the setting with the one tenant it belongs to. An empty or
//! missing setting matches nothing.

use std::collections::BTreeSet;

use bulkhead_core::schema::{Collection, FieldSpec, FieldType};
use bulkhead_core::{FieldName, StorageKey};
use tokio_postgres::GenericClient;

use crate::PgError;
use crate::names::{self, META_SCHEMA, Table, column, quote};
use crate::records::SEARCH_COLUMN;
use crate::search::Lexemes;
use crate::value::{PgValue, sql_literal, sql_type};

/// Key of the advisory lock serialising Bulkhead's DDL within one database.
const DDL_LOCK: i64 = 0x0b0c_6b68_6561_6401;

/// The setting every data transaction carries (`set_config(.., true)`: transaction-local).
pub const TENANT_SETTING: &str = "bulkhead.tenant_id";
/// Name of the row-level security policy on every record table.
pub const POLICY: &str = "bk_tenant_isolation";

/// SQLSTATE raised when a query examines more rows than its budget.
pub const ROWS_BUDGET_STATE: &str = "54B01";

pub async fn lock(client: &impl GenericClient) -> Result<(), PgError> {
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])
        .await?;
    Ok(())
}

/// Bulkhead's schema in a database: the row counter of query budgets, the bookkeeping of
/// search columns and the definition version of each record table (the schema fence). The
/// data role may call the function and read the versions, nothing else here.
pub async fn bootstrap_database(
    client: &impl GenericClient,
    data_role: &str,
) -> Result<(), PgError> {
    let role = quote(data_role);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {META_SCHEMA};
             CREATE OR REPLACE FUNCTION {META_SCHEMA}.examine(budget bigint) RETURNS boolean
             LANGUAGE plpgsql VOLATILE COST 0.0001 AS $fn$
             DECLARE n bigint;
             BEGIN
               n := coalesce(nullif(pg_catalog.current_setting('bulkhead.examined', true), ''), '0')::bigint + 1;
               IF n > budget THEN
                 RAISE EXCEPTION USING ERRCODE = '{ROWS_BUDGET_STATE}',
                   MESSAGE = 'query examined more rows than its budget allows';
               END IF;
               PERFORM pg_catalog.set_config('bulkhead.examined', n::text, true);
               RETURN true;
             END $fn$;
             CREATE TABLE IF NOT EXISTS {META_SCHEMA}.search_fields (tbl text PRIMARY KEY, fields text NOT NULL);
             REVOKE ALL ON {META_SCHEMA}.search_fields FROM PUBLIC;
             CREATE TABLE IF NOT EXISTS {META_SCHEMA}.table_versions (tbl text PRIMARY KEY, version bigint NOT NULL);
             REVOKE ALL ON {META_SCHEMA}.table_versions FROM PUBLIC;
             GRANT SELECT ON {META_SCHEMA}.table_versions TO {role};
             GRANT USAGE ON SCHEMA {META_SCHEMA} TO {role};
             GRANT EXECUTE ON FUNCTION {META_SCHEMA}.examine(bigint) TO {role};"
        ))
        .await?;
    Ok(())
}

/// A schema for record tables that the data role may use (not create in).
pub async fn ensure_schema(
    client: &impl GenericClient,
    schema: &str,
    data_role: &str,
) -> Result<(), PgError> {
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s}; GRANT USAGE ON SCHEMA {s} TO {r};",
            s = quote(schema),
            r = quote(data_role)
        ))
        .await?;
    Ok(())
}

async fn column_def(
    client: &impl GenericClient,
    field: &FieldName,
    spec: &FieldSpec,
) -> Result<String, PgError> {
    let mut def = format!("{} {}", column(field), sql_type(spec.field_type));
    if let Some(default) = &spec.default {
        let value =
            bulkhead_core::record::coerce(spec.field_type, default).map_err(PgError::Corrupt)?;
        def.push_str(" DEFAULT ");
        def.push_str(&sql_literal(client, &value).await?);
    }
    Ok(def)
}

/// The policy's condition: a pooled row belongs to the transaction's tenant; every row of a
/// dedicated table belongs to `tenant`.
fn policy_condition(table: &Table, tenant: &StorageKey) -> String {
    if table.pooled {
        format!("tenant_id = {}", tenant_setting())
    } else {
        dedicated_condition(tenant)
    }
}

/// The transaction's tenant, `NULL` when unset or empty.
fn tenant_setting() -> String {
    format!("nullif((SELECT current_setting('{TENANT_SETTING}', true)), '')")
}

/// A dedicated table's condition: the transaction's tenant is `tenant`.
fn dedicated_condition(tenant: &StorageKey) -> String {
    // Storage keys are `[a-z0-9_-]`: nothing to escape.
    format!("{} = '{tenant}'", tenant_setting())
}

/// Points every dedicated table's policy in `schema` at `tenant`: a ready-pool silo's tables
/// name the spare's key until a tenant adopts the database. Idempotent.
pub async fn repoint_policies(
    client: &impl GenericClient,
    schema: &str,
    tenant: &StorageKey,
) -> Result<(), PgError> {
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_policies WHERE schemaname = $1 AND policyname = $2",
            &[&schema, &POLICY],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let condition = dedicated_condition(tenant);
    for table in tables {
        client
            .batch_execute(&format!(
                "ALTER POLICY {POLICY} ON {}.{} USING ({condition}) WITH CHECK ({condition})",
                quote(schema),
                quote(&table)
            ))
            .await?;
    }
    Ok(())
}

/// Makes the table match the collection: creates it, adds missing columns, creates wanted
/// indexes and drops unwanted ones, enables and forces row-level security, grants the data
/// role its four privileges and refreshes the search column when the text fields changed.
/// Runs in the caller's transaction, so a crash leaves the old shape or the new one.
pub async fn ensure_table(
    client: &impl GenericClient,
    table: &Table,
    tenant: &StorageKey,
    collection: &Collection,
    data_role: &str,
) -> Result<(), PgError> {
    let quoted = table.quoted();
    let (tenant_col, key) = if table.pooled {
        (
            "tenant_id text COLLATE \"C\" NOT NULL CHECK (tenant_id <> ''), ",
            "tenant_id, id",
        )
    } else {
        ("", "id")
    };
    let mut columns = String::new();
    for (field, spec) in &collection.fields {
        columns.push_str(", ");
        columns.push_str(&column_def(client, field, spec).await?);
    }
    let search = collection.searchable();
    if search {
        columns.push_str(&format!(", {SEARCH_COLUMN} tsvector"));
    }
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {quoted} ({tenant_col}id text COLLATE \"C\" NOT NULL, \
             created_at bigint NOT NULL, updated_at bigint NOT NULL, version bigint NOT NULL{columns}, \
             PRIMARY KEY ({key}))"
        ))
        .await?;
    if stored_version(client, table)
        .await?
        .is_some_and(|stored| stored >= collection.version)
    {
        // The storage has this definition, or a newer one already: it never goes back.
        // (Changes to a table are serialised by the caller's DDL lock.)
        return Ok(());
    }
    // Requests in flight on the table finish first, and later ones wait for this change
    // (writers then see its version in their fence and write nothing). The strongest lock
    // at once: taking a weaker one and then `ALTER TABLE`'s would deadlock with a writer
    // that read the table before writing it (a bulk's staging copy).
    client
        .batch_execute(&format!("LOCK TABLE {quoted} IN ACCESS EXCLUSIVE MODE"))
        .await?;

    let existing: BTreeSet<String> = client
        .query(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
            &[&table.schema, &table.name],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if search && !existing.contains(SEARCH_COLUMN) {
        client
            .batch_execute(&format!(
                "ALTER TABLE {quoted} ADD COLUMN {SEARCH_COLUMN} tsvector"
            ))
            .await?;
    }
    for (field, spec) in &collection.fields {
        if !existing.contains(&names::column_name(field)) {
            client
                .batch_execute(&format!(
                    "ALTER TABLE {quoted} ADD COLUMN {}",
                    column_def(client, field, spec).await?
                ))
                .await?;
        }
    }

    let present: BTreeSet<String> = client
        .query(
            // Every index of the table but its primary key: all are Bulkhead's, whatever
            // scheme named them (an index of an earlier naming is dropped and made again).
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = $1 AND t.relname = $2 AND NOT i.indisprimary",
            &[&table.schema, &table.name],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut wanted = BTreeSet::new();
    let lead = if table.pooled { "tenant_id, " } else { "" };
    for (field, spec) in collection.fields.iter().filter(|(_, s)| s.indexed()) {
        let name = table.index_name(field, spec.unique);
        if !present.contains(&name) {
            // Plain indexes end with the id, so a sorted page continues from the index alone;
            // NULLs first, which is where missing values sort.
            let cols = if spec.unique {
                format!("{lead}{}", column(field))
            } else {
                format!("{lead}{} NULLS FIRST, id", column(field))
            };
            client
                .batch_execute(&format!(
                    "CREATE {}INDEX IF NOT EXISTS {} ON {quoted} ({cols})",
                    if spec.unique { "UNIQUE " } else { "" },
                    quote(&name)
                ))
                .await?;
        }
        wanted.insert(name);
    }
    if search {
        let name = table.search_index_name();
        client
            .batch_execute(&format!(
                "CREATE INDEX IF NOT EXISTS {} ON {quoted} USING gin ({SEARCH_COLUMN})",
                quote(&name)
            ))
            .await?;
        wanted.insert(name);
    }
    for name in present.difference(&wanted) {
        client
            .batch_execute(&format!(
                "DROP INDEX IF EXISTS {}.{}",
                quote(&table.schema),
                quote(name)
            ))
            .await?;
    }

    let has_policy = client
        .query_opt(
            "SELECT 1 FROM pg_policies WHERE schemaname = $1 AND tablename = $2 AND policyname = $3",
            &[&table.schema, &table.name, &POLICY],
        )
        .await?
        .is_some();
    if !has_policy {
        let condition = policy_condition(table, tenant);
        client
            .batch_execute(&format!(
                "ALTER TABLE {quoted} ENABLE ROW LEVEL SECURITY;
                 ALTER TABLE {quoted} FORCE ROW LEVEL SECURITY;
                 CREATE POLICY {POLICY} ON {quoted} AS PERMISSIVE FOR ALL TO PUBLIC
                   USING ({condition}) WITH CHECK ({condition});
                 REVOKE ALL ON {quoted} FROM PUBLIC;
                 GRANT SELECT, INSERT, UPDATE, DELETE ON {quoted} TO {};",
                quote(data_role)
            ))
            .await?;
    }
    if search {
        refresh_search(client, table, collection).await?;
    }
    client
        .execute(
            &format!(
                "INSERT INTO {META_SCHEMA}.table_versions (tbl, version) VALUES ($1, $2) \
                 ON CONFLICT (tbl) DO UPDATE SET version = greatest({META_SCHEMA}.table_versions.version, excluded.version)"
            ),
            &[&table.versions_key(), &collection.version],
        )
        .await?;
    Ok(())
}

/// The definition version `table` was last brought to; `None` for a table made before
/// versions were recorded (it gets one at its next change).
pub async fn stored_version(
    client: &impl GenericClient,
    table: &Table,
) -> Result<Option<i64>, PgError> {
    Ok(client
        .query_opt(
            &format!("SELECT version FROM {META_SCHEMA}.table_versions WHERE tbl = $1"),
            &[&table.versions_key()],
        )
        .await?
        .map(|row| row.get(0)))
}

/// Rows read and written back per statement by [`refresh_search`].
const REFRESH_PAGE: usize = 1_000;

/// Recomputes the search column of every row when the set of text fields changed (a new text
/// field may come with a default that existing rows now have). The owner is subject to the
/// forced policy like anyone else, so it lifts the force for the length of this transaction;
/// `ALTER TABLE` holds an exclusive lock until commit, so nobody sees the table unforced.
async fn refresh_search(
    client: &impl GenericClient,
    table: &Table,
    collection: &Collection,
) -> Result<(), PgError> {
    let text_fields: Vec<&FieldName> = collection
        .fields
        .iter()
        .filter(|(_, s)| s.field_type == FieldType::Text)
        .map(|(n, _)| n)
        .collect();
    let signature = text_fields
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let key = table.versions_key();
    let stored: Option<String> = client
        .query_opt(
            &format!("SELECT fields FROM {META_SCHEMA}.search_fields WHERE tbl = $1"),
            &[&key],
        )
        .await?
        .map(|r| r.get(0));
    if stored.as_deref() == Some(signature.as_str()) {
        return Ok(());
    }
    let quoted = table.quoted();
    client
        .batch_execute(&format!("ALTER TABLE {quoted} NO FORCE ROW LEVEL SECURITY"))
        .await?;
    // Keyset pages of `REFRESH_PAGE` rows, each written back in one statement: the table is
    // locked until commit, so one round trip per row would hold every reader of the table
    // for as long as the whole table takes.
    let cols: Vec<String> = text_fields.iter().map(|f| column(f)).collect();
    let (tenant_col, after, order, joined) = if table.pooled {
        (
            "tenant_id",
            "(tenant_id, id) > ($1, $2)",
            "tenant_id, id",
            "t.tenant_id = u.tenant AND t.id = u.id",
        )
    } else {
        ("''::text", "$1::text = '' AND id > $2", "id", "t.id = u.id")
    };
    let select = format!(
        "SELECT {tenant_col}, id{}{} FROM {quoted} WHERE {after} ORDER BY {order} LIMIT {REFRESH_PAGE}",
        if cols.is_empty() { "" } else { ", " },
        cols.join(", ")
    );
    let update = format!(
        "UPDATE {quoted} AS t SET {SEARCH_COLUMN} = u.lexemes \
         FROM unnest($1::text[], $2::text[], $3::tsvector[]) AS u(tenant, id, lexemes) \
         WHERE {joined}"
    );
    let (mut last_tenant, mut last_id) = (String::new(), String::new());
    loop {
        let rows = client.query(&select, &[&last_tenant, &last_id]).await?;
        let mut tenants = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        let mut lexemes = Vec::with_capacity(rows.len());
        for row in &rows {
            let tenant: String = row.try_get(0)?;
            let id: String = row.try_get(1)?;
            let mut fields = bulkhead_core::record::Fields::new();
            for (i, name) in text_fields.iter().enumerate() {
                if let Some(text) = row.try_get::<_, Option<String>>(i + 2)? {
                    fields.insert(
                        (*name).clone(),
                        bulkhead_core::record::FieldValue::Text(text),
                    );
                }
            }
            lexemes.push(PgValue::TsVector(Lexemes::of(
                collection,
                &fields,
                table.pooled.then_some(tenant.as_str()),
            )));
            tenants.push(tenant);
            ids.push(id);
        }
        let Some((tenant, id)) = tenants.last().zip(ids.last()) else {
            break;
        };
        (last_tenant, last_id) = (tenant.clone(), id.clone());
        client.execute(&update, &[&tenants, &ids, &lexemes]).await?;
        if rows.len() < REFRESH_PAGE {
            break;
        }
    }
    client
        .batch_execute(&format!("ALTER TABLE {quoted} FORCE ROW LEVEL SECURITY"))
        .await?;
    client
        .execute(
            &format!(
                "INSERT INTO {META_SCHEMA}.search_fields (tbl, fields) VALUES ($1, $2) \
                 ON CONFLICT (tbl) DO UPDATE SET fields = excluded.fields"
            ),
            &[&key, &signature],
        )
        .await?;
    Ok(())
}
