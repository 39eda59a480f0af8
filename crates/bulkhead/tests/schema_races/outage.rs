//! A change made while a PostgreSQL domain is down reaches it once it is back.

#[allow(unused_imports)]
use super::*;

/// A change made while a PostgreSQL domain is down: it answers `503 rollout_incomplete`, the
/// tenants elsewhere have it at once, and once the database is back (no restart, no other
/// change) the retrier brings its tenants up; none of them ever answers 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_during_a_domain_outage_reaches_it_when_it_is_back() {
    let Some(pg) = bulkhead_pg_testkit::require("postgres_outage_change") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    pg_models(&admin, &pg).await;
    put_notes(&admin).await;
    let on_pg = ["pg-pool", "pg-bridge", "pg-silo"];
    for (i, tier) in on_pg.iter().enumerate() {
        create_tenant(&admin, &format!("pg-{i}"), tier).await;
    }
    create_tenant(&admin, "local-0", "premium").await;
    pg.pause().unwrap();
    let refused = admin
        .put_collection(
            &notes(),
            &serde_json::from_value(json!({"fields": {
                "title": {"type": "text"},
                "kind": {"type": "text", "default": "zebra"}
            }}))
            .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("rollout_incomplete"),
        "{refused}"
    );
    let during = admin.get_collection(&notes()).await.unwrap();
    assert_eq!(during.version, 2);
    assert_eq!(
        during.placements_behind,
        Some(3),
        "the three tenants on the domain"
    );
    let local = admin.with_tenant(common::tid("local-0"));
    local
        .create_record(&notes(), &json!({"title": "t", "kind": "okapi"}))
        .await
        .unwrap();
    pg.resume().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut waiting = Vec::new();
        for i in 0..on_pg.len() {
            let client = admin.with_tenant(common::tid(&format!("pg-{i}")));
            let outcome = client
                .create_record(&notes(), &json!({"title": "t", "kind": "okapi"}))
                .await;
            match outcome {
                Ok(_) => {}
                // By status and code: the text also holds the request id, whose hex can
                // spell "500" (it once did, failing a 503 as a 500).
                Err(e) if e.status() == Some(500) || e.code() == Some("internal") => {
                    panic!(
                        "pg-{i} answered 500 after the outage: {e}\n{}",
                        server.log()
                    )
                }
                Err(e) => waiting.push(format!("pg-{i}: {e}")),
            }
        }
        if waiting.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "60 s after the database came back: {waiting:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    no_placement_waits(&admin).await;
    let after = admin.get_collection(&notes()).await.unwrap();
    assert_eq!(after.placements_behind, Some(0));
}

/// A silo creation cut off by a database outage stays `provisioning` only until the database
/// is back: a replayed `POST` meanwhile answers 202 with where it stands, and the creation is
/// finished in the background without any request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_creation_cut_off_by_an_outage_is_finished_in_the_background() {
    let Some(pg) = bulkhead_pg_testkit::require("postgres_outage_creation") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_pg_domain(&admin, &pg.url("postgres"), None).await;
    put_pg_tier(&admin, "pg-silo", Isolation::Silo, Default::default()).await;
    put_notes(&admin).await;
    pg.pause().unwrap();
    let request = bulkhead_api::CreateTenant {
        id: common::tid("cut-off"),
        name: "cut off".into(),
        tier: bulkhead_core::TierName::parse("pg-silo").unwrap(),
        labels: Default::default(),
    };
    let failed = admin.create_tenant(&request).await.unwrap_err();
    assert!(failed.to_string().contains("503"), "{failed}");
    let replay = admin
        .raw(
            bulkhead_client::Method::POST,
            "/v1/tenants",
            Some(serde_json::to_vec(&request).unwrap()),
            Some("application/json"),
        )
        .await
        .unwrap();
    assert_eq!(replay.status, 202, "{replay:?}");
    let where_it_stands: serde_json::Value = replay.json().unwrap();
    assert_eq!(where_it_stands["status"], "provisioning");
    pg.resume().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let tenant = admin.get_tenant(&common::tid("cut-off")).await.unwrap();
        if tenant.status == bulkhead_core::model::TenantStatus::Active {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {:?} 60 s after the database came back\n{}",
            tenant.status,
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    admin
        .with_tenant(common::tid("cut-off"))
        .create_record(&notes(), &json!({"title": "works"}))
        .await
        .unwrap();
    // Replaying it now is the plain idempotent answer.
    let again = admin.create_tenant(&request).await.unwrap();
    assert_eq!(again.status, bulkhead_core::model::TenantStatus::Active);
}
