//! The catalog's schema, defined once as numbered migrations applied in order on SQLite and
//! PostgreSQL.
//!
//! Each migration is a list of steps written in the subset of SQL both backends understand,
//! with three tokens for what they spell differently (`{int}`, `{serial}`, `{now}`), and
//! idempotent column additions (SQLite has no `ADD COLUMN IF NOT EXISTS`). Table
//! `schema_migrations` records every migration applied (version, name, when, by which
//! binary). The runner applies the missing ones in one transaction — on PostgreSQL under an
//! advisory lock, so servers starting together on one shared catalog migrate it exactly once
//! — and refuses a catalog that has migrations this binary does not know.
//!
//! Migration 1 is the catalog of release 0.1.0, the last one made before versions were
//! recorded: it creates what is missing (`IF NOT EXISTS`) and adds the columns that 0.1.0's
//! own ad-hoc upgrades added, so a catalog of any earlier build is adopted as it is. Never
//! edit a released migration: add the next one, and a fixture for the release
//! (`crates/bulkhead/tests/upgrade.rs`).

use crate::tx::{StoreError, StoreResult, Tx, Val};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

pub enum Step {
    /// A statement; `{int}` is a 64-bit integer type, `{serial}` an auto-numbered 64-bit
    /// primary key, `{now}` the current time as a column default.
    Sql(&'static str),
    /// `ALTER TABLE table ADD COLUMN column decl`, unless the column exists.
    AddColumn {
        table: &'static str,
        column: &'static str,
        decl: &'static str,
    },
}

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub steps: &'static [Step],
}

use Step::{AddColumn, Sql};

/// Every migration this binary knows, in order. Append only.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "the catalog of release 0.1.0",
        steps: &[
            Sql("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"),
            Sql(
                "CREATE TABLE IF NOT EXISTS tiers (name TEXT PRIMARY KEY, spec TEXT NOT NULL, \
             updated_at {int} NOT NULL)",
            ),
            Sql("CREATE TABLE IF NOT EXISTS domains (name TEXT PRIMARY KEY, spec TEXT NOT NULL)"),
            Sql("CREATE TABLE IF NOT EXISTS tenants (
                id TEXT PRIMARY KEY, name TEXT NOT NULL, tier TEXT NOT NULL, status TEXT NOT NULL,
                labels TEXT NOT NULL, created_at {int} NOT NULL, updated_at {int} NOT NULL)"),
            Sql("CREATE TABLE IF NOT EXISTS placements (
                tenant_id TEXT PRIMARY KEY REFERENCES tenants(id), domain TEXT NOT NULL,
                isolation TEXT NOT NULL, namespace TEXT NOT NULL, write_state TEXT NOT NULL,
                epoch {int} NOT NULL, schema_version {int} NOT NULL,
                incarnation TEXT NOT NULL DEFAULT '0')"),
            Sql("CREATE INDEX IF NOT EXISTS placements_by_namespace \
             ON placements (domain, isolation, namespace)"),
            Sql("CREATE TABLE IF NOT EXISTS collections (
                name TEXT PRIMARY KEY, version {int} NOT NULL, spec TEXT NOT NULL,
                updated_at {int} NOT NULL)"),
            Sql("CREATE TABLE IF NOT EXISTS api_keys (
                id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_hash TEXT NOT NULL, tenant_id TEXT,
                role TEXT NOT NULL, created_at {int} NOT NULL, expires_at {int}, revoked_at {int},
                incarnation TEXT)"),
            Sql("CREATE INDEX IF NOT EXISTS api_keys_by_tenant ON api_keys (tenant_id, id)"),
            Sql("CREATE TABLE IF NOT EXISTS audit (
                seq {serial}, at {int} NOT NULL, actor TEXT NOT NULL,
                action TEXT NOT NULL, target TEXT NOT NULL, tenant_id TEXT, outcome TEXT NOT NULL,
                request_id TEXT NOT NULL, detail TEXT)"),
            Sql("CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit (tenant_id, seq)"),
            Sql("CREATE INDEX IF NOT EXISTS audit_by_actor ON audit (actor, seq)"),
            Sql("CREATE INDEX IF NOT EXISTS audit_by_action ON audit (action, seq)"),
            Sql("CREATE TABLE IF NOT EXISTS usage (
                tenant_id TEXT NOT NULL, bucket {int} NOT NULL, requests {int} NOT NULL,
                writes {int} NOT NULL, rate_limited {int} NOT NULL,
                PRIMARY KEY (tenant_id, bucket))"),
            Sql("CREATE INDEX IF NOT EXISTS usage_by_bucket ON usage (bucket)"),
            Sql("CREATE TABLE IF NOT EXISTS moves (
                id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, phase TEXT NOT NULL,
                source TEXT NOT NULL, target_domain TEXT NOT NULL, target_isolation TEXT NOT NULL,
                target_namespace TEXT NOT NULL, target_tier TEXT, rows_copied {int} NOT NULL,
                rows_total {int} NOT NULL, rows_verified {int} NOT NULL, copy_ms {int},
                freeze_ms {int}, error TEXT, started_by TEXT NOT NULL,
                created_at {int} NOT NULL, updated_at {int} NOT NULL)"),
            Sql("CREATE INDEX IF NOT EXISTS moves_by_tenant ON moves (tenant_id, created_at)"),
            Sql("CREATE TABLE IF NOT EXISTS users (
                id TEXT PRIMARY KEY, issuer TEXT, sub TEXT, email TEXT,
                disabled {int} NOT NULL DEFAULT 0, created_at {int} NOT NULL, invite_issuer TEXT,
                UNIQUE (issuer, sub))"),
            Sql("CREATE INDEX IF NOT EXISTS users_by_email ON users (email)"),
            Sql("CREATE TABLE IF NOT EXISTS memberships (
                tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL,
                created_at {int} NOT NULL, PRIMARY KEY (tenant_id, user_id))"),
            Sql(
                "CREATE INDEX IF NOT EXISTS memberships_by_user ON memberships (user_id, tenant_id)",
            ),
            Sql("CREATE TABLE IF NOT EXISTS roles (
                tenant_id TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL,
                updated_at {int} NOT NULL, PRIMARY KEY (tenant_id, name))"),
            // What servers sharing one catalog tell each other (unused by a catalog one server
            // owns; kept in one schema so both backends have the same tables).
            Sql("CREATE TABLE IF NOT EXISTS servers (
                id TEXT PRIMARY KEY, started_at {int} NOT NULL, beat_at {int} NOT NULL)"),
            Sql("CREATE TABLE IF NOT EXISTS move_runs (
                move_id TEXT PRIMARY KEY, runner TEXT NOT NULL, started_at {int} NOT NULL,
                cancel TEXT)"),
            Sql("CREATE TABLE IF NOT EXISTS move_journal (
                seq {serial}, tenant_id TEXT NOT NULL, collection TEXT NOT NULL,
                record_id TEXT NOT NULL)"),
            Sql(
                "CREATE INDEX IF NOT EXISTS move_journal_by_tenant ON move_journal (tenant_id, seq)",
            ),
            Sql("CREATE TABLE IF NOT EXISTS move_acks (
                move_id TEXT NOT NULL, stage TEXT NOT NULL, server_id TEXT NOT NULL,
                PRIMARY KEY (move_id, stage, server_id))"),
            Sql("CREATE TABLE IF NOT EXISTS changes (
                seq {serial}, kind TEXT NOT NULL, id TEXT NOT NULL, at {now})"),
            // Lives purged on a shared catalog, purged once more when writes that other servers
            // had in flight at the deletion can no longer land (the sweep), then forgotten.
            Sql("CREATE TABLE IF NOT EXISTS purged_lives (
                tenant_id TEXT NOT NULL, incarnation TEXT NOT NULL, placements TEXT NOT NULL,
                purged_at {int} NOT NULL, PRIMARY KEY (tenant_id, incarnation))"),
            // Catalogs made before tenant incarnations: every existing tenant and key is legacy.
            AddColumn {
                table: "placements",
                column: "incarnation",
                decl: "TEXT NOT NULL DEFAULT '0'",
            },
            AddColumn {
                table: "api_keys",
                column: "incarnation",
                decl: "TEXT",
            },
            // Email invitations name the issuer allowed to claim them.
            AddColumn {
                table: "users",
                column: "invite_issuer",
                decl: "TEXT",
            },
        ],
    },
    Migration {
        version: 2,
        name: "every version of every collection's definition",
        steps: &[
            // Each placement is served with the definitions of the generation it was brought to
            // (`placements.schema_version`); versions from before this table are known from
            // generation 0 on.
            Sql("CREATE TABLE IF NOT EXISTS collection_versions (
                name TEXT NOT NULL, version {int} NOT NULL, generation {int} NOT NULL,
                spec TEXT NOT NULL, PRIMARY KEY (name, version))"),
            Sql(
                "INSERT INTO collection_versions (name, version, generation, spec)
                SELECT name, version, 0, spec FROM collections WHERE true
                ON CONFLICT (name, version) DO NOTHING",
            ),
        ],
    },
    Migration {
        version: 3,
        name: "rollouts: one row per collection change, its progress read from the placements",
        steps: &[
            // Each placement's applied generation (`placements.schema_version`) is the
            // ledger; this row is the job: what it rolls out, where it stands, what failed.
            Sql("CREATE TABLE IF NOT EXISTS rollouts (
                id TEXT PRIMARY KEY, collection TEXT NOT NULL, version {int} NOT NULL,
                generation {int} NOT NULL, state TEXT NOT NULL, total {int} NOT NULL,
                failed {int} NOT NULL, wave TEXT, last_error TEXT, started_by TEXT NOT NULL,
                created_at {int} NOT NULL, updated_at {int} NOT NULL, finished_at {int})"),
            Sql("CREATE INDEX IF NOT EXISTS rollouts_by_state ON rollouts (state, generation)"),
        ],
    },
    Migration {
        version: 4,
        name: "spares: the ready pool of empty silo placements, per domain",
        steps: &[
            // `state`: preparing → ready → claimed (by a tenant's storage key, while it is
            // created) or discarding; a row goes once its storage is adopted or removed.
            Sql("CREATE TABLE IF NOT EXISTS spares (
                id TEXT PRIMARY KEY, domain TEXT NOT NULL, state TEXT NOT NULL,
                schema_version {int} NOT NULL, claimed_by TEXT, updated_at {int} NOT NULL)"),
            Sql(
                "CREATE INDEX IF NOT EXISTS spares_by_domain ON spares (domain, state, schema_version)",
            ),
        ],
    },
    Migration {
        version: 5,
        name: "usage by volume (records, bytes, query work, refusals by kind) and storage samples",
        steps: &[
            AddColumn {
                table: "usage",
                column: "records_written",
                decl: "BIGINT NOT NULL DEFAULT 0",
            },
            AddColumn {
                table: "usage",
                column: "bytes_in",
                decl: "BIGINT NOT NULL DEFAULT 0",
            },
            AddColumn {
                table: "usage",
                column: "bytes_out",
                decl: "BIGINT NOT NULL DEFAULT 0",
            },
            AddColumn {
                table: "usage",
                column: "rows_examined",
                decl: "BIGINT NOT NULL DEFAULT 0",
            },
            AddColumn {
                table: "usage",
                column: "query_micros",
                decl: "BIGINT NOT NULL DEFAULT 0",
            },
            AddColumn {
                table: "usage",
                column: "refused_concurrency",
                decl: "BIGINT NOT NULL DEFAULT 0",
            },
            AddColumn {
                table: "usage",
                column: "refused_quota",
                decl: "BIGINT NOT NULL DEFAULT 0",
            },
            AddColumn {
                table: "usage",
                column: "refused_budget",
                decl: "BIGINT NOT NULL DEFAULT 0",
            },
            // The last storage sample of each tenant per UTC hour (`bucket`); `collections`
            // is a JSON object of records per collection.
            Sql("CREATE TABLE IF NOT EXISTS storage_usage (
                tenant_id TEXT NOT NULL, bucket {int} NOT NULL, sampled_at {int} NOT NULL,
                records {int} NOT NULL, bytes {int} NOT NULL, collections TEXT NOT NULL,
                PRIMARY KEY (tenant_id, bucket))"),
            Sql("CREATE INDEX IF NOT EXISTS storage_usage_by_bucket ON storage_usage (bucket)"),
        ],
    },
    Migration {
        version: 6,
        name: "the audit log's hash chain, and the client address of a request's entry",
        steps: &[
            AddColumn {
                table: "audit",
                column: "source",
                decl: "TEXT",
            },
            AddColumn {
                table: "audit",
                column: "prev_hash",
                decl: "TEXT",
            },
            AddColumn {
                table: "audit",
                column: "hash",
                decl: "TEXT",
            },
            // One row: whether the entries from before the chain were linked (once, at the
            // first start of this version), and the anchor the first entry follows — the
            // last entry retention removed (0 and the genesis hash while none was).
            Sql("CREATE TABLE IF NOT EXISTS audit_chain (
                id {int} PRIMARY KEY, linked {int} NOT NULL, anchor_seq {int} NOT NULL,
                anchor_hash TEXT NOT NULL)"),
            Sql(
                "INSERT INTO audit_chain (id, linked, anchor_seq, anchor_hash) VALUES (1, 0, 0, \
                '0000000000000000000000000000000000000000000000000000000000000000') \
                ON CONFLICT (id) DO NOTHING",
            ),
        ],
    },
    Migration {
        version: 7,
        name: "security operations: findings from the audit stream, webhooks and their outbox",
        steps: &[
            Sql("CREATE INDEX IF NOT EXISTS audit_by_source ON audit (source, seq)"),
            // How far each reader of the audit stream has read (one batch per write
            // transaction, so each entry is read once across servers).
            Sql("CREATE TABLE IF NOT EXISTS audit_readers (
                name TEXT PRIMARY KEY, seq {int} NOT NULL)"),
            // Repeats fold into the open finding of the same kind, tenant and principal.
            Sql("CREATE TABLE IF NOT EXISTS findings (
                id TEXT PRIMARY KEY, kind TEXT NOT NULL, severity TEXT NOT NULL,
                tenant_id TEXT, principal TEXT NOT NULL, state TEXT NOT NULL,
                first_seen {int} NOT NULL, last_seen {int} NOT NULL, count {int} NOT NULL,
                summary TEXT NOT NULL, first_seq {int} NOT NULL, last_seq {int} NOT NULL,
                acknowledged_by TEXT, acknowledged_at {int})"),
            Sql("CREATE INDEX IF NOT EXISTS findings_open \
                ON findings (kind, principal, tenant_id, state)"),
            Sql("CREATE INDEX IF NOT EXISTS findings_by_seen ON findings (last_seen)"),
            // `spec`: url, events, format; `secrets`: the signing secrets, newest first, each
            // with the time it stops signing (the previous one keeps signing a while).
            Sql("CREATE TABLE IF NOT EXISTS webhooks (
                name TEXT PRIMARY KEY, spec TEXT NOT NULL, secrets TEXT NOT NULL,
                enabled {int} NOT NULL, failures {int} NOT NULL, disabled_reason TEXT,
                created_at {int} NOT NULL, updated_at {int} NOT NULL)"),
            // One message per webhook and event; `lane` orders a tenant's messages (one at a
            // time per lane), `lease_until` claims one for a delivery attempt.
            Sql("CREATE TABLE IF NOT EXISTS outbox (
                seq {serial}, id TEXT NOT NULL, webhook TEXT NOT NULL, lane TEXT NOT NULL,
                event TEXT NOT NULL, body TEXT NOT NULL, created_at {int} NOT NULL,
                attempts {int} NOT NULL, next_at {int} NOT NULL, lease_until {int},
                state TEXT NOT NULL, last_error TEXT)"),
            Sql("CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at)"),
            Sql("CREATE INDEX IF NOT EXISTS outbox_lane ON outbox (webhook, lane, state, seq)"),
            Sql("CREATE TABLE IF NOT EXISTS deliveries (
                seq {serial}, webhook TEXT NOT NULL, message TEXT NOT NULL, event TEXT NOT NULL,
                at {int} NOT NULL, attempt {int} NOT NULL, status {int}, error TEXT,
                millis {int} NOT NULL)"),
            Sql("CREATE INDEX IF NOT EXISTS deliveries_by_webhook ON deliveries (webhook, seq)"),
        ],
    },
    Migration {
        version: 8,
        name: "retention: the cold archive's files and the ranges brought back from it",
        steps: &[
            // One Parquet file of a tenant's life, collection and month. A batch's files are
            // `pending` (leased by the server writing them) until the hot copies are gone.
            Sql("CREATE TABLE IF NOT EXISTS cold_files (
                id TEXT PRIMARY KEY, batch TEXT NOT NULL, tenant_id TEXT NOT NULL,
                incarnation TEXT NOT NULL, collection TEXT NOT NULL, month TEXT NOT NULL,
                path TEXT NOT NULL, records {int} NOT NULL, bytes {int} NOT NULL,
                min_at {int} NOT NULL, max_at {int} NOT NULL, sha256 TEXT NOT NULL,
                state TEXT NOT NULL, lease_until {int} NOT NULL, created_at {int} NOT NULL)"),
            Sql(
                "CREATE INDEX IF NOT EXISTS cold_files_by_tenant ON cold_files (tenant_id, collection, month)",
            ),
            Sql("CREATE INDEX IF NOT EXISTS cold_files_by_batch ON cold_files (batch)"),
            // Ranges brought back into the hot store: kept hot until `until`.
            Sql("CREATE TABLE IF NOT EXISTS cold_holds (
                tenant_id TEXT NOT NULL, incarnation TEXT NOT NULL, collection TEXT NOT NULL,
                from_at {int} NOT NULL, to_at {int} NOT NULL, until {int} NOT NULL)"),
            Sql(
                "CREATE INDEX IF NOT EXISTS cold_holds_by_tenant ON cold_holds (tenant_id, collection)",
            ),
            // Each storage sample counts the cold archive apart from the hot store.
            AddColumn {
                table: "storage_usage",
                column: "cold_records",
                decl: "BIGINT NOT NULL DEFAULT 0",
            },
            AddColumn {
                table: "storage_usage",
                column: "cold_bytes",
                decl: "BIGINT NOT NULL DEFAULT 0",
            },
        ],
    },
];

/// The newest migration this binary knows.
#[cfg(test)]
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

fn spell(sql: &str, dialect: Dialect) -> String {
    let (int, serial, now) = match dialect {
        Dialect::Sqlite => (
            "INTEGER",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP",
        ),
        Dialect::Postgres => (
            "BIGINT",
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            "TIMESTAMPTZ NOT NULL DEFAULT now()",
        ),
    };
    sql.replace("{int}", int)
        .replace("{serial}", serial)
        .replace("{now}", now)
}

fn column_exists(tx: &dyn Tx, dialect: Dialect, table: &str, column: &str) -> StoreResult<bool> {
    let row = match dialect {
        Dialect::Sqlite => tx.query_one(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
            &[table.into(), column.into()],
        )?,
        Dialect::Postgres => tx.query_one(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = ?1 AND column_name = ?2",
            &[table.into(), column.into()],
        )?,
    };
    Ok(row.get::<i64>(0)? > 0)
}

/// What [`apply`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaState {
    /// The catalog's version before this start (0: new, or made before versions were kept).
    pub found: i64,
    /// Its version now.
    pub version: i64,
    /// Migrations this start applied.
    pub applied: Vec<i64>,
}

/// Brings the catalog to [`latest`]: applies, in order, every migration of `migrations` not
/// yet recorded. Call inside one write transaction (and, on a shared catalog, under the
/// lock that serialises migrations between servers). Refuses a catalog with a migration
/// this binary does not know.
pub fn apply(
    tx: &dyn Tx,
    dialect: Dialect,
    migrations: &[Migration],
    now_ms: i64,
) -> StoreResult<SchemaState> {
    tx.execute(
        &spell(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version {int} PRIMARY KEY, name TEXT NOT NULL, applied_at {int} NOT NULL,
                applied_by TEXT NOT NULL)",
            dialect,
        ),
        &[],
    )?;
    let done: Vec<i64> = tx
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )?
        .iter()
        .map(|r| r.get::<i64>(0))
        .collect::<StoreResult<_>>()?;
    let known = migrations.last().map_or(0, |m| m.version);
    let found = done.last().copied().unwrap_or(0);
    if let Some(unknown) = done
        .iter()
        .find(|v| !migrations.iter().any(|m| m.version == **v))
    {
        return Err(StoreError::TooNew {
            found: (*unknown).max(found),
            known,
        });
    }
    let mut applied = Vec::new();
    for migration in migrations {
        if done.contains(&migration.version) {
            continue;
        }
        for step in migration.steps {
            match step {
                Sql(sql) => {
                    tx.execute(&spell(sql, dialect), &[])?;
                }
                AddColumn {
                    table,
                    column,
                    decl,
                } => {
                    if !column_exists(tx, dialect, table, column)? {
                        tx.execute(
                            &format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"),
                            &[],
                        )?;
                    }
                }
            }
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at, applied_by) \
             VALUES (?1, ?2, ?3, ?4)",
            &[
                Val::Int(migration.version),
                migration.name.into(),
                Val::Int(now_ms),
                format!("bulkhead {}", env!("CARGO_PKG_VERSION")).into(),
            ],
        )?;
        applied.push(migration.version);
    }
    Ok(SchemaState {
        found,
        version: known.max(found),
        applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteTx;
    use rusqlite::Connection;

    fn apply_all(conn: &mut Connection, migrations: &[Migration]) -> StoreResult<SchemaState> {
        let tx = conn.transaction()?;
        let state = apply(&SqliteTx(&tx), Dialect::Sqlite, migrations, 1)?;
        tx.commit()?;
        Ok(state)
    }

    fn recorded(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn has_column(conn: &Connection, table: &str, column: &str) -> bool {
        conn.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            > 0
    }

    #[test]
    fn a_new_catalog_gets_every_migration_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        let first = apply_all(&mut conn, MIGRATIONS).unwrap();
        assert_eq!(first.found, 0);
        assert_eq!(first.version, latest());
        assert_eq!(first.applied.len(), MIGRATIONS.len());
        let again = apply_all(&mut conn, MIGRATIONS).unwrap();
        assert_eq!(again.found, latest());
        assert!(again.applied.is_empty(), "nothing is applied twice");
        assert_eq!(recorded(&conn).len(), MIGRATIONS.len());
    }

    #[test]
    fn a_catalog_made_before_versions_and_incarnations_is_adopted() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE placements (tenant_id TEXT PRIMARY KEY, domain TEXT NOT NULL,
                 isolation TEXT NOT NULL, namespace TEXT NOT NULL, write_state TEXT NOT NULL,
                 epoch INTEGER NOT NULL, schema_version INTEGER NOT NULL);
             INSERT INTO placements VALUES ('acme', 'local', 'pool', 'pool', 'open', 1, 1);
             CREATE TABLE users (id TEXT PRIMARY KEY, issuer TEXT, sub TEXT, email TEXT,
                 disabled INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL);",
        )
        .unwrap();
        let state = apply_all(&mut conn, MIGRATIONS).unwrap();
        assert_eq!((state.found, state.version), (0, latest()));
        assert!(has_column(&conn, "placements", "incarnation"));
        assert!(has_column(&conn, "users", "invite_issuer"));
        assert!(has_column(&conn, "api_keys", "incarnation"));
        let incarnation: String = conn
            .query_row("SELECT incarnation FROM placements", [], |r| r.get(0))
            .unwrap();
        assert_eq!(incarnation, "0", "existing tenants are legacy lives");
    }

    #[test]
    fn a_catalog_newer_than_the_binary_is_refused_with_a_clear_message() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply_all(&mut conn, MIGRATIONS).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?1, 'from the future', 0, 'bulkhead 9')",
            [latest() + 1],
        )
        .unwrap();
        let err = apply_all(&mut conn, MIGRATIONS).unwrap_err();
        assert!(
            matches!(err, StoreError::TooNew { found, known } if found == latest() + 1 && known == latest()),
            "{err:?}"
        );
        assert!(err.to_string().contains("newer than this binary knows"));
    }

    #[test]
    fn a_failing_migration_leaves_nothing_half_done_and_the_next_start_retries_it() {
        static BROKEN: &[Migration] = &[
            Migration {
                version: 1,
                name: "one",
                steps: &[Sql("CREATE TABLE one (a {int})")],
            },
            Migration {
                version: 2,
                name: "two",
                steps: &[Sql("CREATE TABLE two (a {int})"), Sql("NOT SQL AT ALL")],
            },
        ];
        static FIXED: &[Migration] = &[
            Migration {
                version: 1,
                name: "one",
                steps: &[Sql("CREATE TABLE one (a {int})")],
            },
            Migration {
                version: 2,
                name: "two",
                steps: &[Sql("CREATE TABLE two (a {int})")],
            },
        ];
        let mut conn = Connection::open_in_memory().unwrap();
        assert!(apply_all(&mut conn, BROKEN).is_err());
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('one', 'two', 'schema_migrations')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "the failed start changed nothing");
        let state = apply_all(&mut conn, FIXED).unwrap();
        assert_eq!(state.applied, vec![1, 2]);
        assert_eq!(recorded(&conn), vec![1, 2]);
    }

    #[test]
    fn versions_are_strictly_increasing_and_spelled_for_both_backends() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        for m in MIGRATIONS {
            for step in m.steps {
                if let Sql(sql) = step {
                    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
                        let spelled = spell(sql, dialect);
                        assert!(!spelled.contains('{'), "{spelled}");
                        assert!(!spelled.contains(';'), "one statement per step: {spelled}");
                    }
                }
            }
        }
    }
}
