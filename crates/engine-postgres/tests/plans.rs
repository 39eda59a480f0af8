//! Row-level security must not cost a pooled query its plan: the same query runs through
//! the policy (as the data role, tenant set) and with only its explicit `WHERE tenant_id`
//! (as a superuser, to whom the policy does not apply), and the two
//! plans use the same nodes and the same indexes.

use std::sync::Arc;

use bulkhead_core::RecordId;
use bulkhead_core::access::DataAction;
use bulkhead_core::model::Isolation;
use bulkhead_core::record::{NewRecord, validate_full};
use bulkhead_core::time::SystemClock;
use bulkhead_engine::Engine;
use bulkhead_engine::conformance::{items_collection, scope, target, tenant};
use bulkhead_engine_postgres::{PgConfig, PgEngine};
use serde_json::{Value, json};
use tokio_postgres::NoTls;

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// Node types and index names of a JSON plan, depth first, without the init plan that reads
/// the tenant setting once per statement (and the `Result` node that hosts it).
fn shape(plan: &Value, out: &mut Vec<String>) {
    if plan.get("Parent Relationship").and_then(Value::as_str) == Some("InitPlan") {
        return;
    }
    let children = plan.get("Plans").and_then(Value::as_array);
    let hosts_init_plan = children
        .into_iter()
        .flatten()
        .any(|c| c.get("Parent Relationship").and_then(Value::as_str) == Some("InitPlan"));
    let gate = plan.get("One-Time Filter").is_some();
    let node = plan.get("Node Type").and_then(Value::as_str);
    // A `Result` that only evaluates the init plan, or checks the policy once per statement
    // (PostgreSQL folds `tenant_id = <setting>` with the explicit `tenant_id = 't'` into a
    // one-time `<setting> = 't'`), is a gate in front of the same scan, not another plan.
    if let Some(node) = node.filter(|n| !(*n == "Result" && (hosts_init_plan || gate))) {
        let index = plan.get("Index Name").and_then(Value::as_str).unwrap_or("");
        out.push(format!("{node} {index}").trim().to_owned());
    }
    for child in plan
        .get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        shape(child, out);
    }
}

async fn plan(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let row = client
        .query_one(&format!("EXPLAIN (FORMAT JSON, COSTS OFF) {sql}"), &[])
        .await
        .expect("explain");
    let json: Value = row.get(0);
    let mut out = Vec::new();
    shape(&json[0]["Plan"], &mut out);
    out
}

#[tokio::test]
async fn rls_keeps_the_plan_of_the_explicit_tenant_predicate() {
    let Some(server) = bulkhead_pg_testkit::require("rls_plans") else {
        return;
    };
    let engine = PgEngine::connect(PgConfig::new(server.url("postgres")), Arc::new(SystemClock))
        .await
        .expect("engine");
    let c = items_collection();
    for i in 0..200 {
        let t = tenant(&format!("t{i:03}"));
        engine
            .provision(&target(&t, Isolation::Pool), std::slice::from_ref(&c))
            .await
            .expect("provision");
        let w = scope(&t, Isolation::Pool, DataAction::Write);
        let records: Vec<NewRecord> = (0..50)
            .map(|j| {
                let (_, fields, _) = validate_full(
                    &c,
                    &json!({"title": format!("quick {j}"), "n": j % 10}),
                    None,
                )
                .expect("valid");
                NewRecord {
                    id: RecordId::parse(&format!("r{j:03}")).expect("id"),
                    fields,
                }
            })
            .collect();
        engine.insert(&w, &c, records).await.expect("insert");
    }
    server
        .psql("postgres", "ANALYZE bk_pool.c_items")
        .expect("analyze");
    let data = connect(&format!(
        "postgres://{}@{}:{}/postgres",
        engine.data_role(),
        server.host(),
        server.port()
    ))
    .await;
    data.batch_execute("SET bulkhead.tenant_id = 't042'")
        .await
        .expect("set the tenant");
    let owner = connect(&server.url("postgres")).await;
    owner
        .batch_execute("SET row_security = off")
        .await
        .expect("owner reads without the policy");
    for sql in [
        "SELECT * FROM bk_pool.c_items r WHERE r.tenant_id = 't042' AND r.id = 'r007'",
        "SELECT * FROM bk_pool.c_items r WHERE r.tenant_id = 't042' AND r.f_n = 3 ORDER BY r.f_n NULLS FIRST, r.id LIMIT 50",
        "SELECT * FROM bk_pool.c_items r WHERE r.tenant_id = 't042' ORDER BY r.id LIMIT 50",
        "SELECT r.f_n, count(*) FROM bk_pool.c_items r WHERE r.tenant_id = 't042' GROUP BY 1",
    ] {
        let through_rls = plan(&data, sql).await;
        let explicit = plan(&owner, sql).await;
        assert_eq!(through_rls, explicit, "{sql}");
        assert!(
            through_rls.iter().any(|n| n.contains("Index")),
            "{sql}: uses an index: {through_rls:?}"
        );
    }
}
