//! Records written while an indexed text field with a default is added — by single writes and
//! by a bulk in flight, in every model, on SQLite and on PostgreSQL — are all found by a search
//! for that default afterwards (the schema fence), and no write fails for it.

#[allow(unused_imports)]
use super::*;

/// Writers (single creates) and one bulk per tenant run while `notes` gains a text field
/// with a default; then every record of every tenant is found by searching that default.
async fn writes_during_a_change_are_all_indexed(admin: &Client, server: &Server, tiers: &[&str]) {
    put_notes(admin).await;
    let mut clients = Vec::new();
    for (i, tier) in tiers.iter().enumerate() {
        let tenant = format!("racer-{i}");
        create_tenant(admin, &tenant, tier).await;
        clients.push(server.client(&key(admin, &tenant, TenantRole::Member).await));
    }
    // Other tenants in the same tiers make the rollout take a while.
    for n in 0..12 {
        create_tenant(admin, &format!("filler-{n}"), tiers[n % tiers.len()]).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, tenant_client) in clients.iter().enumerate() {
        let (client, stop) = (tenant_client.clone(), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut written = 0;
            while !stop.load(Ordering::Acquire) {
                client
                    .create_record(
                        &notes(),
                        &json!({"id": format!("w{i}-{written}"), "title": "single"}),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("a write during the change failed: {e}"));
                written += 1;
            }
            Ok(written)
        }));
        let client = tenant_client.clone();
        tasks.push(tokio::spawn(async move {
            let body: Vec<u8> = (0..6000)
                .flat_map(|n| format!("{{\"id\":\"b{i}-{n}\",\"title\":\"bulk\"}}\n").into_bytes())
                .collect();
            let report = client.bulk(&notes(), body, true).await.unwrap();
            if report.failed > 0 {
                return Err(format!(
                    "{} bulk lines failed, first: {:?}",
                    report.failed,
                    report.results.first()
                ));
            }
            Ok(report.created)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let changed = admin
        .put_collection(
            &notes(),
            &serde_json::from_value(json!({"fields": {
                "title": {"type": "text"},
                "kind": {"type": "text", "default": "zebra", "index": true}
            }}))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(changed.version, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Release);
    let mut written = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(n) => written += n,
            Err(e) => {
                let log = server.log();
                let errors: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("ERROR"))
                    .take(5)
                    .collect();
                panic!("{e}\nserver errors: {errors:#?}");
            }
        }
    }
    assert!(written > 0);
    for (i, client) in clients.iter().enumerate() {
        let all = ids(client, None).await;
        let found = ids(client, Some("zebra")).await;
        let missed: Vec<_> = all.difference(&found).take(5).collect();
        assert!(
            missed.is_empty(),
            "tenant racer-{i} ({}): {} of {} records are not found by searching the new field's default, e.g. {missed:?}",
            tiers[i],
            all.len() - found.len(),
            all.len()
        );
        assert!(all.len() >= 6000, "the bulk landed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_writes_and_a_bulk_racing_a_text_field_are_all_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    writes_during_a_change_are_all_indexed(&admin, &server, &["free", "standard", "premium"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_writes_and_a_bulk_racing_a_text_field_are_all_searchable() {
    let Some(pg) = bulkhead_pg_testkit::require("postgres_schema_race") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    pg_models(&admin, &pg).await;
    writes_during_a_change_are_all_indexed(&admin, &server, &["pg-pool", "pg-bridge", "pg-silo"])
        .await;
}
