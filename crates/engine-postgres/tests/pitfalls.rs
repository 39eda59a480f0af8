//! The published pitfalls of row-level security, designed out and attacked here:
//! a tenant setting carried by a pooled connection into another tenant's transaction
//! (through PgBouncer in transaction mode, with cancelled queries), policies that are missing
//! or always true, a data role that owns tables or bypasses RLS, and an absent setting that
//! means "all tenants".

use std::sync::Arc;
use std::time::Duration;

use bulkhead_core::access::DataAction;
use bulkhead_core::model::Isolation;
use bulkhead_core::record::{NewRecord, validate_full};
use bulkhead_core::schema::Collection;
use bulkhead_core::time::SystemClock;
use bulkhead_core::{RecordId, TenantId};
use bulkhead_engine::conformance::{items_collection, scope, target, tenant};
use bulkhead_engine::{Engine, ListQuery};
use bulkhead_engine_postgres::{PgConfig, PgEngine};
use bulkhead_pg_testkit::PgServer;
use serde_json::json;
use tokio_postgres::NoTls;

const MODELS: [Isolation; 3] = [Isolation::Pool, Isolation::Bridge, Isolation::Silo];

fn record(c: &Collection, id: &str, title: &str) -> NewRecord {
    let (_, fields, _) = validate_full(c, &json!({"title": title, "n": 1}), None).expect("valid");
    NewRecord {
        id: RecordId::parse(id).expect("id"),
        fields,
    }
}

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// Two tenants per model, each with records whose ids and titles name their tenant.
async fn populated(server: &PgServer) -> (PgEngine, Collection, Vec<(TenantId, Isolation)>) {
    let engine = PgEngine::connect(PgConfig::new(server.url("postgres")), Arc::new(SystemClock))
        .await
        .expect("engine");
    let c = items_collection();
    let mut tenants = Vec::new();
    for isolation in MODELS {
        for name in ["alpha", "beta"] {
            let t = tenant(&format!("{name}-{isolation}"));
            engine
                .provision(&target(&t, isolation), std::slice::from_ref(&c))
                .await
                .expect("provision");
            let w = scope(&t, isolation, DataAction::Write);
            let records = (0..20)
                .map(|i| record(&c, &format!("{name}{i}"), name))
                .collect();
            engine.insert(&w, &c, records).await.expect("insert");
            tenants.push((t, isolation));
        }
    }
    (engine, c, tenants)
}

/// (b) The catalog lint: every record table has RLS enabled and forced with a policy that
/// is not `true`; the data role owns nothing anywhere and can bypass nothing.
#[tokio::test]
async fn catalog_lint_rls_forced_and_data_role_powerless() {
    let Some(server) = bulkhead_pg_testkit::require("catalog_lint") else {
        return;
    };
    let (engine, _, _) = populated(&server).await;
    let role = engine.data_role().to_owned();
    for db in ["postgres", "bk_alpha-silo", "bk_beta-silo"] {
        let client = connect(&server.url(db)).await;
        let tables = client
            .query(
                "SELECT n.nspname::text, c.relname::text, c.relrowsecurity, c.relforcerowsecurity \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind = 'r' AND c.relname LIKE 'c\\_%' AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
                &[],
            )
            .await
            .expect("tables");
        assert!(!tables.is_empty(), "{db}: record tables exist");
        for t in &tables {
            let (schema, name): (String, String) = (t.get(0), t.get(1));
            assert!(
                t.get::<_, bool>(2) && t.get::<_, bool>(3),
                "{db} {schema}.{name}: RLS enabled and forced"
            );
            let policies = client
                .query(
                    "SELECT coalesce(qual, ''), coalesce(with_check, '') FROM pg_policies WHERE schemaname = $1 AND tablename = $2",
                    &[&schema, &name],
                )
                .await
                .expect("policies");
            assert_eq!(policies.len(), 1, "{db} {schema}.{name}: one policy");
            for p in &policies {
                let (using, check): (String, String) = (p.get(0), p.get(1));
                for clause in [&using, &check] {
                    assert!(
                        clause.contains("current_setting('bulkhead.tenant_id'"),
                        "{db} {schema}.{name}: {clause}"
                    );
                    assert_ne!(clause.trim(), "true");
                }
            }
        }
        let owned: i64 = client
            .query_one(
                "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid) \
                      + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid) \
                      + (SELECT count(*) FROM pg_proc WHERE proowner = r.oid) \
                      + (SELECT count(*) FROM pg_database WHERE datdba = r.oid) \
                 FROM pg_roles r WHERE r.rolname = $1",
                &[&role],
            )
            .await
            .expect("owned")
            .get(0);
        assert_eq!(owned, 0, "{db}: the data role owns nothing");
        let row = client
            .query_one("SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1", &[&role])
            .await
            .expect("role");
        assert!(
            !row.get::<_, bool>(0)
                && !row.get::<_, bool>(1)
                && !row.get::<_, bool>(2)
                && !row.get::<_, bool>(3),
            "the data role has no special powers"
        );
    }
}

/// (c) As the data role, straight to the database: without the tenant setting (absent or
/// empty) every table is empty; with a tenant set, only that tenant's rows appear, and
/// writing another tenant's row is refused by the policy's WITH CHECK.
#[tokio::test]
async fn without_the_tenant_setting_the_data_role_sees_nothing() {
    let Some(server) = bulkhead_pg_testkit::require("absent_setting") else {
        return;
    };
    let (engine, _, _) = populated(&server).await;
    let role = engine.data_role().to_owned();
    let data_url = |db: &str| format!("postgres://{role}@{}:{}/{db}", server.host(), server.port());
    for (db, table) in [
        ("postgres", "bk_pool.c_items"),
        ("postgres", "\"t_alpha-bridge\".c_items"),
        ("bk_alpha-silo", "bk_data.c_items"),
    ] {
        let mut client = connect(&data_url(db)).await;
        assert_eq!(count(&client, table).await, 0, "{table}: no setting");
        client
            .batch_execute("SET bulkhead.tenant_id = ''")
            .await
            .expect("set");
        assert_eq!(count(&client, table).await, 0, "{table}: empty setting");
        client
            .batch_execute("RESET bulkhead.tenant_id")
            .await
            .expect("reset");
        let tx = client.transaction().await.expect("tx");
        tx.execute(
            "SELECT set_config('bulkhead.tenant_id', 'beta-pool', true)",
            &[],
        )
        .await
        .expect("set");
        let visible: Vec<String> = tx
            .query(&format!("SELECT id FROM {table}"), &[])
            .await
            .expect("select")
            .iter()
            .map(|r| r.get(0))
            .collect();
        if table.starts_with("bk_pool") {
            assert_eq!(visible.len(), 20);
            assert!(
                visible.iter().all(|id| id.starts_with("beta")),
                "{visible:?}"
            );
            let denied = tx
                .execute(
                    "INSERT INTO bk_pool.c_items (tenant_id, id, created_at, updated_at, version, f_title) VALUES ('alpha-pool', 'x', 0, 0, 1, 'x')",
                    &[],
                )
                .await;
            let err = denied.expect_err("WITH CHECK refuses a foreign tenant id");
            let message = err
                .as_db_error()
                .map(|e| e.message().to_owned())
                .unwrap_or_default();
            assert!(message.contains("row-level security"), "{err:?}");
        } else {
            assert!(
                visible.is_empty(),
                "{table}: another tenant's setting sees nothing: {visible:?}"
            );
        }
        drop(tx);
        // The setting was transaction-local: gone after the transaction.
        assert_eq!(
            count(&client, table).await,
            0,
            "{table}: after the transaction"
        );
    }
}

/// (a) Through PgBouncer in transaction mode (four server connections shared by every
/// client), two tenants run thousands of interleaved transactions, many cancelled mid-query
/// by dropping them: not one row of the wrong tenant comes back, no tenant setting survives
/// its transaction on a shared server connection, and prepared statements left on those
/// connections (by another process, or by a cancelled request) never collide with ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_transaction_mode_never_mixes_tenants() {
    let Some(server) = bulkhead_pg_testkit::require("pgbouncer_pitfall") else {
        return;
    };
    server
        .psql(
            "postgres",
            "CREATE ROLE bulkhead_data LOGIN NOSUPERUSER NOBYPASSRLS",
        )
        .expect("role");
    let Some(bouncer) =
        bulkhead_pg_testkit::require_pgbouncer("pgbouncer_pitfall", &server, &["bulkhead_data"])
    else {
        return;
    };
    let mut config = PgConfig::new(server.url("postgres"));
    config.data_url = Some(bouncer.url("bulkhead_data", "postgres"));
    config.statement_cache = false;
    config.max_connections = 24;
    let engine = Arc::new(
        PgEngine::connect(config, Arc::new(SystemClock))
            .await
            .expect("engine"),
    );
    let c = items_collection();
    let tenants = [tenant("alpha-pool"), tenant("beta-pool")];
    for t in &tenants {
        engine
            .provision(&target(t, Isolation::Pool), std::slice::from_ref(&c))
            .await
            .expect("provision");
        let w = scope(t, Isolation::Pool, DataAction::Write);
        let name = t.as_str().trim_end_matches("-pool");
        let records = (0..50)
            .map(|i| record(&c, &format!("{name}{i}"), name))
            .collect();
        engine.insert(&w, &c, records).await.expect("insert");
    }
    let mut tasks = Vec::new();
    for worker in 0..16usize {
        let (engine, c, tenants) = (Arc::clone(&engine), c.clone(), tenants.clone());
        tasks.push(tokio::spawn(async move {
            let (mut seen, mut cancelled, mut wrong) = (0u64, 0u64, 0u64);
            for i in 0..150usize {
                let t = &tenants[(worker + i) % 2];
                let name = t.as_str().trim_end_matches("-pool");
                let r = scope(t, Isolation::Pool, DataAction::Write);
                let q = ListQuery {
                    limit: 100,
                    ..Default::default()
                };
                let list = engine.list(&r, &c, &q);
                // Every third transaction is abandoned mid-flight.
                let limit = if i % 3 == 0 {
                    Duration::from_micros(300)
                } else {
                    Duration::from_secs(30)
                };
                match tokio::time::timeout(limit, list).await {
                    Err(_) => cancelled += 1,
                    Ok(result) => {
                        for hit in result.expect("list") {
                            seen += 1;
                            if !hit.record.id.as_str().starts_with(name) {
                                wrong += 1;
                            }
                        }
                    }
                }
                if i % 10 == 0 {
                    let id = RecordId::parse(&format!("{name}w{worker}x{i}")).expect("id");
                    engine
                        .insert(&r, &c, vec![record(&c, id.as_str(), name)])
                        .await
                        .expect("write");
                }
            }
            (seen, cancelled, wrong)
        }));
    }
    let (mut seen, mut cancelled, mut wrong) = (0, 0, 0);
    for task in tasks {
        let (s, c, w) = task.await.expect("task");
        seen += s;
        cancelled += c;
        wrong += w;
    }
    assert_eq!(wrong, 0, "rows of the wrong tenant");
    assert!(seen > 50_000, "the test really read: {seen} rows");
    assert!(cancelled > 0, "some transactions were cancelled mid-flight");
    // Straight through the bouncer, as the data role, outside any of our transactions: no
    // setting is left behind on any shared server connection.
    for _ in 0..20 {
        let out = bouncer
            .psql(
                "bulkhead_data",
                "postgres",
                "SELECT count(*) FROM bk_pool.c_items",
            )
            .expect("psql");
        assert_eq!(
            out.trim(),
            "0",
            "a leftover tenant setting on a server connection"
        );
    }
    // Another process (or this one before a restart) left prepared statements on every
    // shared server connection under the names this process's client uses next (`s<n>`):
    // four sessions hold a transaction each, so the four server connections are all seeded.
    // Reads and writes go on without a name collision (42P05).
    let seeds = (0..4).map(|_| {
        let url = bouncer.url("bulkhead_data", "postgres");
        tokio::spawn(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            client
                .batch_execute(
                    "BEGIN; DO $$ BEGIN FOR n IN 0..20000 LOOP \
                     BEGIN EXECUTE format('PREPARE s%s AS SELECT 1', n); \
                     EXCEPTION WHEN duplicate_prepared_statement THEN NULL; END; \
                     END LOOP; END $$",
                )
                .await
                .expect("seed");
            client
        })
    });
    let mut seeded = Vec::new();
    for seed in seeds {
        seeded.push(seed.await.expect("seed task"));
    }
    for client in &seeded {
        client.batch_execute("COMMIT").await.expect("commit");
    }
    drop(seeded);
    for i in 0..100usize {
        let t = &tenants[i % 2];
        let name = t.as_str().trim_end_matches("-pool");
        let r = scope(t, Isolation::Pool, DataAction::Write);
        let q = ListQuery {
            limit: 10,
            ..Default::default()
        };
        engine
            .list(&r, &c, &q)
            .await
            .expect("a read after the seeding");
        let id = RecordId::parse(&format!("{name}after{i}")).expect("id");
        engine
            .insert(&r, &c, vec![record(&c, id.as_str(), name)])
            .await
            .expect("a write after the seeding");
    }
    // And every write landed with its own tenant.
    for (t, name) in tenants.iter().zip(["alpha", "beta"]) {
        let r = scope(t, Isolation::Pool, DataAction::Read);
        let all = engine
            .list(
                &r,
                &c,
                &ListQuery {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        assert!(all.len() > 50 && all.iter().all(|h| h.record.id.as_str().starts_with(name)));
    }
}
