//! The ready pool: empty silos kept ready per domain, taken by silo tenant creations (a
//! rename, not a build), refilled in the background, brought to each new schema version,
//! never holding data, never visible as tenants or as orphans — on SQLite and PostgreSQL, and
//! after `kill -9`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use bulkhead_api::CreateTenant;
use bulkhead_client::Client;
use bulkhead_core::TierName;
use bulkhead_core::model::Isolation;
use common::{Server, items, put_items, tid};
use serde_json::json;

async fn create(admin: &Client, id: &str, tier: &str) {
    admin
        .create_tenant(&CreateTenant {
            id: tid(id),
            name: id.to_owned(),
            tier: TierName::parse(tier).unwrap(),
            labels: Default::default(),
        })
        .await
        .unwrap();
}

/// Waits until domain `domain` has `want` spares ready on the current schema.
async fn until_ready(admin: &Client, domain: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let domains = admin.list_domains().await.unwrap().items;
        let d = domains.iter().find(|d| d.name.as_str() == domain).unwrap();
        if d.spares_ready == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "domain {domain} never had {want} spares ready: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The spare silo files in a local SQLite domain.
fn spare_files(data_dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(data_dir.join("domains/local/silos"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("bk-spare_") && f.ends_with(".db"))
        .collect()
}

async fn no_orphans(admin: &Client) {
    let report = admin.doctor().await.unwrap();
    assert!(report.orphans.is_empty(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silo_tenant_takes_a_ready_spare_and_the_pool_refills_on_the_new_schema() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_READY_SILOS", "3")]);
    let admin = server.admin();
    put_items(&admin).await;
    until_ready(&admin, "local", 3).await;
    let before = spare_files(&server.data_dir);
    assert_eq!(before.len(), 3, "{before:?}");
    no_orphans(&admin).await;

    create(&admin, "acme", "premium").await;
    let acme = admin.with_tenant(tid("acme"));
    acme.create_record(&items(), &json!({"title": "first", "n": 1}))
        .await
        .unwrap();
    let page = acme
        .list_records(&items(), &Default::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1, "a spare holds no data: {page:?}");
    until_ready(&admin, "local", 3).await;
    let after = spare_files(&server.data_dir);
    assert_eq!(after.len(), 3);
    assert_eq!(
        before.difference(&after).count(),
        1,
        "one spare was adopted: {before:?} → {after:?}"
    );
    // Not a tenant, not an orphan.
    let tenants = admin.list_tenants(None, None).await.unwrap().items;
    assert_eq!(tenants.len(), 1, "{tenants:?}");
    no_orphans(&admin).await;

    // A schema change: spares come up to it before any is handed out again.
    let mut spec = common::items_spec();
    spec["fields"]["kind"] = json!({"type": "string", "default": "plain", "index": true});
    admin
        .put_collection(&items(), &serde_json::from_value(spec).unwrap())
        .await
        .unwrap();
    until_ready(&admin, "local", 3).await;
    create(&admin, "beta", "premium").await;
    let made = admin
        .with_tenant(tid("beta"))
        .create_record(&items(), &json!({"title": "t", "kind": "special"}))
        .await
        .unwrap();
    assert_eq!(made["kind"], "special");

    // More creations at once than spares: every one succeeds (the rest are built).
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..8 {
        let admin = admin.clone();
        burst.spawn(async move { create(&admin, &format!("burst-{i}"), "premium").await });
    }
    while let Some(done) = burst.join_next().await {
        done.unwrap();
    }
    for i in 0..8 {
        admin
            .with_tenant(tid(&format!("burst-{i}")))
            .create_record(&items(), &json!({"title": "t", "kind": "k"}))
            .await
            .unwrap();
    }
    until_ready(&admin, "local", 3).await;
    no_orphans(&admin).await;

    // The ready pool's storage name is no tenant's to take.
    let refused = admin
        .create_tenant(&CreateTenant {
            id: tid("bk-spare"),
            name: "x".into(),
            tier: TierName::parse("premium").unwrap(),
            labels: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("reserved_tenant_id"), "{refused}");
}

/// `kill -9` while creations take spares and the keeper builds new ones: after the restart
/// every tenant acknowledged serves, the pool is back to its number, and no storage is left
/// that the catalog does not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_kill_9_the_pool_is_whole_and_nothing_is_orphaned() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("BULKHEAD_READY_SILOS", "4")];
    let mut server = Server::start_with(dir.path(), &env);
    let admin = server.admin();
    put_items(&admin).await;
    until_ready(&admin, "local", 4).await;
    let mut acknowledged = Vec::new();
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..6 {
        let admin = admin.clone();
        burst.spawn(async move {
            let id = format!("t-{i}");
            create(&admin, &id, "premium").await;
            id
        });
    }
    // Two are in; kill while the rest and the refill run.
    for _ in 0..2 {
        acknowledged.push(burst.join_next().await.unwrap().unwrap());
    }
    server.kill_hard();
    burst.abort_all();
    while let Some(done) = burst.join_next().await {
        if let Ok(id) = done {
            acknowledged.push(id);
        }
    }
    let server = Server::start_with(dir.path(), &env);
    let admin = server.admin();
    until_ready(&admin, "local", 4).await;
    for id in &acknowledged {
        admin
            .with_tenant(tid(id))
            .create_record(&items(), &json!({"title": "after"}))
            .await
            .unwrap();
    }
    // Creations cut off are finished in the background; then nothing is orphaned.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tenants = admin.list_tenants(None, None).await.unwrap().items;
        if tenants
            .iter()
            .all(|t| t.status == bulkhead_core::model::TenantStatus::Active)
        {
            break;
        }
        assert!(Instant::now() < deadline, "{tenants:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    no_orphans(&admin).await;
    assert_eq!(spare_files(&server.data_dir).len(), 4);
}

/// On PostgreSQL a spare is a database, adopted by renaming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_silo_tenant_adopts_a_ready_database() {
    let Some(pg) = bulkhead_pg_testkit::require("ready_pool_postgres") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_READY_SILOS", "0")]);
    let admin = server.admin();
    put_items(&admin).await;
    let spec = bulkhead_core::model::DomainSpec {
        engine: "postgres".into(),
        url: Some(bulkhead_core::ConnectionUrl::new(pg.url("postgres"))),
        silos: true,
        ready_silos: 2,
        ..bulkhead_core::model::DomainSpec::sqlite()
    };
    admin
        .put_domain(&bulkhead_core::DomainName::parse("pg").unwrap(), &spec)
        .await
        .unwrap();
    common::put_pg_tier(&admin, "pg-silo", Isolation::Silo, Default::default()).await;
    until_ready(&admin, "pg", 2).await;
    let spares = |pg: &bulkhead_pg_testkit::PgServer| {
        pg.psql(
            "postgres",
            "SELECT datname FROM pg_database WHERE datname LIKE 'bk_bk-spare_%' ORDER BY 1",
        )
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect::<BTreeSet<_>>()
    };
    let before = spares(&pg);
    assert_eq!(before.len(), 2, "{before:?}");
    create(&admin, "acme", "pg-silo").await;
    let acme = admin.with_tenant(tid("acme"));
    if let Err(e) = acme
        .create_record(&items(), &json!({"title": "in postgres"}))
        .await
    {
        panic!("{e}\n{}", server.log());
    }
    assert_eq!(
        acme.list_records(&items(), &Default::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    until_ready(&admin, "pg", 2).await;
    let after = spares(&pg);
    assert_eq!(after.len(), 2);
    assert_eq!(
        before.difference(&after).count(),
        1,
        "{before:?} → {after:?}"
    );
    let tenant_dbs = pg
        .psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'bk_acme_%'",
        )
        .unwrap();
    assert_eq!(tenant_dbs.trim(), "1", "{tenant_dbs}");
    no_orphans(&admin).await;

    // Lowering the number removes what is left over.
    let fewer = bulkhead_core::model::DomainSpec {
        ready_silos: 0,
        ..spec
    };
    admin
        .put_domain(&bulkhead_core::DomainName::parse("pg").unwrap(), &fewer)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !spares(&pg).is_empty() {
        assert!(Instant::now() < deadline, "{:?}", spares(&pg));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    no_orphans(&admin).await;
    acme.get_record(&items(), &bulkhead_core::RecordId::parse("x").unwrap())
        .await
        .unwrap_err();
}
