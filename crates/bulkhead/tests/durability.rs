//! Invariant 3: an acknowledged write survives `kill -9` of the server, on every model.
#![allow(clippy::unwrap_used)]

mod common;

use bulkhead_core::RecordId;
use bulkhead_core::access::TenantRole;
use common::{Server, create_tenant, items, key, put_items};
use serde_json::json;

#[tokio::test]
async fn acknowledged_writes_survive_kill_dash_nine_on_every_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    let mut tenants = Vec::new();
    for (tenant, tier) in [
        ("pool-t", "free"),
        ("bridge-t", "standard"),
        ("silo-t", "premium"),
    ] {
        create_tenant(&admin, tenant, tier).await;
        tenants.push((tenant, key(&admin, tenant, TenantRole::Member).await));
    }
    // Write concurrently right up to the kill; remember only what was acknowledged.
    let mut tasks = Vec::new();
    for (tenant, token) in &tenants {
        let client = server.client(token);
        let tenant = tenant.to_string();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..20_000 {
                let body = json!({"id": format!("{tenant}-{i}"), "title": format!("{tenant} {i}"), "n": i});
                match client.create_record(&items(), &body).await {
                    Ok(_) => acked.push(format!("{tenant}-{i}")),
                    // The server is gone: stop writing.
                    Err(_) => break,
                }
                if i == 150 {
                    let patch = json!({"title": "updated before the crash"});
                    if client.patch_record(&items(), &RecordId::parse(&format!("{tenant}-0")).unwrap(), &patch, None).await.is_ok() {
                        acked.push("patched".into());
                    }
                }
            }
            acked
        }));
    }
    // Let the writers run for a moment, then kill the server with no warning.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.kill_hard();
    let mut acked = Vec::new();
    for task in tasks {
        acked.push(task.await.unwrap());
    }
    assert!(
        acked.iter().all(|a| !a.is_empty()),
        "every writer got some acknowledgements before the kill"
    );
    assert!(
        acked.iter().all(|a| a.len() < 20_000),
        "the kill landed while writers were still writing"
    );

    let server = Server::start(dir.path());
    for ((tenant, token), acked) in tenants.iter().zip(&acked) {
        let client = server.client(token);
        let mut stored = Vec::new();
        let mut cursor = None;
        loop {
            let page = client
                .list_records(
                    &items(),
                    &bulkhead_client::ListRecords {
                        limit: Some(1000),
                        cursor,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            stored.extend(
                page.items
                    .iter()
                    .map(|r| r["id"].as_str().unwrap().to_owned()),
            );
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        for id in acked.iter().filter(|a| *a != "patched") {
            assert!(
                stored.contains(id),
                "{tenant}: acknowledged record {id} lost after kill -9"
            );
        }
        if acked.iter().any(|a| a == "patched") {
            let first = client
                .get_record(&items(), &RecordId::parse(&format!("{tenant}-0")).unwrap())
                .await
                .unwrap();
            assert_eq!(
                first["title"], "updated before the crash",
                "{tenant}: acknowledged update lost"
            );
            assert_eq!(first["version"], 2);
        }
        assert!(
            stored.iter().all(|id| id.starts_with(*tenant)),
            "{tenant}: only its own records"
        );
    }
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Server::start(dir.path());
    let output = std::process::Command::new(common::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("BULKHEAD_ADMIN_KEY", common::ADMIN_KEY)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("another bulkhead server is using"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_graceful_stop_leaves_no_wal_behind_and_data_intact() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    let token = key(&admin, "acme", TenantRole::Member).await;
    server
        .client(&token)
        .create_record(&items(), &json!({"id": "kept", "title": "x"}))
        .await
        .unwrap();
    server.stop();
    let wal = server.data_dir.join("domains/local/pool.db-wal");
    assert!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0,
        "WAL checkpointed at shutdown"
    );
    let server = Server::start(dir.path());
    let record = server
        .client(&token)
        .get_record(&items(), &RecordId::parse("kept").unwrap())
        .await
        .unwrap();
    assert_eq!(record["title"], "x");
}

/// Group commit under `kill -9`: 24 writers at once on one pool file and on one silo (their
/// creates, updates and deletes share commits), killed mid-stream. After the restart every
/// acknowledged create, update and delete is there, and nothing unacknowledged is half-done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commits_lose_no_acknowledged_write_under_kill_dash_nine() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    let mut tenants = Vec::new();
    for (tenant, tier) in [("grouped-pool", "free"), ("grouped-silo", "premium")] {
        create_tenant(&admin, tenant, tier).await;
        tenants.push((tenant, key(&admin, tenant, TenantRole::Member).await));
    }
    #[derive(Debug, Default)]
    struct Acked {
        created: Vec<String>,
        updated: Vec<String>,
        deleted: Vec<String>,
        /// A write the kill cut off unanswered: it may or may not have happened.
        unknown: Option<String>,
    }
    let mut tasks = Vec::new();
    for (tenant, token) in &tenants {
        for writer in 0..12 {
            let client = server.client(token);
            let tenant = tenant.to_string();
            tasks.push(tokio::spawn(async move {
                let mut acked = Acked::default();
                for i in 0..100_000 {
                    let id = format!("{tenant}-{writer}-{i}");
                    let body = json!({"id": id, "title": "v1", "n": i});
                    if client.create_record(&items(), &body).await.is_err() {
                        break;
                    }
                    acked.created.push(id.clone());
                    let rid = RecordId::parse(&id).unwrap();
                    match i % 3 {
                        1 => match client
                            .patch_record(&items(), &rid, &json!({"title": "v2"}), None)
                            .await
                        {
                            Ok(_) => acked.updated.push(id),
                            Err(_) => {
                                acked.unknown = Some(id);
                                break;
                            }
                        },
                        2 => match client.delete_record(&items(), &rid, None).await {
                            Ok(()) => acked.deleted.push(id),
                            Err(_) => {
                                acked.unknown = Some(id);
                                break;
                            }
                        },
                        _ => {}
                    }
                }
                (tenant, acked)
            }));
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    server.kill_hard();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert!(results.iter().all(|(_, a)| !a.created.is_empty()));
    let server = Server::start(dir.path());
    for (tenant, token) in &tenants {
        let client = server.client(token);
        for (_, acked) in results.iter().filter(|(t, _)| t == tenant) {
            for id in &acked.created {
                if acked.unknown.as_ref() == Some(id) {
                    continue;
                }
                let rid = RecordId::parse(id).unwrap();
                let found = client.get_record(&items(), &rid).await;
                if acked.deleted.contains(id) {
                    let err = found.unwrap_err();
                    assert_eq!(err.code(), Some("record_not_found"), "{id}: deleted");
                } else {
                    let record = found.unwrap_or_else(|e| panic!("{id}: acknowledged, lost: {e}"));
                    if acked.updated.contains(id) {
                        assert_eq!(record["title"], "v2", "{id}: acknowledged update lost");
                    }
                }
            }
        }
    }
}
