//! A change abandoned by its client, then `kill -9` mid-rollout: no tenant ever answers 5xx.

#[allow(unused_imports)]
use super::*;

/// A change abandoned by its client while it rolls out to many silos, a tenant created
/// meanwhile, then `kill -9` in the middle: the restarted server answers `/healthz` at once
/// (it does not wait for the rollout), no tenant ever answers 5xx on the collection, and the
/// background retrier brings every placement to the new definition without another change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abandoned_change_and_a_crash_leave_no_tenant_on_5xx() {
    abandoned_change_and_crash(None, 120).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_an_abandoned_change_and_a_crash_leave_no_tenant_on_5xx() {
    let Some(pg) = bulkhead_pg_testkit::require("postgres_abandoned_change") else {
        return;
    };
    abandoned_change_and_crash(Some(&pg), 40).await;
}

/// `count` tenants, one in ten pooled and the rest dedicated (SQLite silos, or PostgreSQL
/// bridge schemas on `pg`).
async fn abandoned_change_and_crash(pg: Option<&bulkhead_pg_testkit::PgServer>, count: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin();
    let (pooled, dedicated) = match pg {
        Some(pg) => {
            put_pg_domain(&admin, &pg.url("postgres"), None).await;
            put_pg_tier(&admin, "pg-pool", Isolation::Pool, Default::default()).await;
            put_pg_tier(&admin, "pg-bridge", Isolation::Bridge, Default::default()).await;
            ("pg-pool", "pg-bridge")
        }
        None => ("free", "premium"),
    };
    put_notes(&admin).await;
    let mut tenants = Vec::new();
    for n in 0..count {
        let id = format!("silo-{n:03}");
        create_tenant(&admin, &id, if n % 10 == 0 { pooled } else { dedicated }).await;
        // Records make each placement's rollout take a while (index, search rebuild).
        let body: Vec<u8> = (0..1500)
            .flat_map(|r| format!("{{\"title\":\"record {r}\"}}\n").into_bytes())
            .collect();
        let report = admin
            .with_tenant(common::tid(&id))
            .bulk(&notes(), body, true)
            .await
            .unwrap();
        assert_eq!(report.created, 1500);
        tenants.push(id);
    }
    // The change, abandoned by its client after 100 ms.
    let change = {
        let admin = admin.clone();
        tokio::spawn(async move {
            admin
                .put_collection(
                    &notes(),
                    &serde_json::from_value(json!({"fields": {
                        "title": {"type": "text"},
                        "kind": {"type": "text", "default": "zebra", "index": true}
                    }}))
                    .unwrap(),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    change.abort();
    // A tenant created and one moved meanwhile (both wait for the rollout's lock), then the
    // crash.
    let late = {
        let admin = admin.clone();
        // Its answer may be cut off by the crash: the test looks for the tenant afterwards.
        tokio::spawn(async move {
            admin
                .create_tenant(&bulkhead_api::CreateTenant {
                    id: common::tid("late"),
                    name: "late inc".into(),
                    tier: bulkhead_core::TierName::parse(dedicated).unwrap(),
                    labels: Default::default(),
                })
                .await
        })
    };
    let moved = admin
        .start_move(
            &common::tid("silo-001"),
            &bulkhead_api::StartMove {
                isolation: Some(Isolation::Pool),
                domain: None,
                incarnation: None,
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.kill_hard();
    let _ = late.await;
    let restarted = std::time::Instant::now();
    let server = Server::start(dir.path());
    let admin = server.admin();
    admin.health().await.unwrap();
    let up = restarted.elapsed();
    assert!(
        up < Duration::from_secs(2),
        "/healthz answered after {up:?}"
    );
    let ready = admin.ready().await.unwrap();
    assert!(
        ready.problems.iter().any(|p| p.contains("schema rollout")),
        "the crash came after the rollout finished; the test did not race it: {ready:?}"
    );
    // The late creation's answer was cut off by the crash: if it reached the catalog, the
    // background pass finishes it (until then it is `provisioning`, answering 503 with
    // Retry-After, as a creation in progress does), and from then on it serves like the rest.
    if admin.get_tenant(&common::tid("late")).await.is_ok() {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while admin.get_tenant(&common::tid("late")).await.unwrap().status
            == bulkhead_core::model::TenantStatus::Provisioning
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the late creation was not finished in the background\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tenants.push("late".into());
    }
    // Every tenant serves the collection at once (with the definition its storage has), and
    // the rollout keeps bringing tenants up until every one has the new field: the test
    // fails only after a minute in which none was brought up (a slow machine is slow, not
    // stuck).
    let mut deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut fewest_behind = usize::MAX;
    loop {
        let mut behind = 0;
        for id in &tenants {
            let client = admin.with_tenant(common::tid(id));
            let page = client
                .list_records(&notes(), &ListRecords::default())
                .await
                .unwrap_or_else(|e| panic!("{id}: list after the crash: {e}\n{}", server.log()));
            assert!(page.items.is_empty() || page.items[0].get("id").is_some());
            match client
                .create_record(&notes(), &json!({"title": "t", "kind": "okapi"}))
                .await
            {
                Ok(_) => {}
                Err(e) if e.to_string().contains("schema_rolling_out") => behind += 1,
                // The moved tenant's writes may be held at its switch.
                Err(e) if e.to_string().contains("tenant_moving") => behind += 1,
                Err(e) => panic!("{id}: a write after the crash: {e}\n{}", server.log()),
            }
        }
        if behind == 0 {
            break;
        }
        if behind < fewest_behind {
            fewest_behind = behind;
            deadline = std::time::Instant::now() + Duration::from_secs(60);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{behind} tenants still without the new field, none brought up for 60 s\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The move ended one way or the other (the crash may have rolled it back), and its
    // tenant serves the new field wherever it is now.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let view = admin.get_move(&moved.id).await.unwrap();
        if view.phase.is_final() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "move stuck in {}",
            view.phase
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin
        .with_tenant(common::tid("silo-001"))
        .create_record(&notes(), &json!({"title": "t", "kind": "okapi"}))
        .await
        .unwrap();
    no_placement_waits(&admin).await;
}
