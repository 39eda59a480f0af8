//! Lives across servers: a deletion abandoned by a dead server is finished by a live one, and
//! lives stay apart when one server streams or moves while the other deletes.

use std::time::Duration;

use bulkhead_api::CreateTenant;
use bulkhead_client::Client;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{Isolation, TenantStatus};
use bulkhead_core::{RecordId, TierName};
use serde_json::json;

use super::eventually;
use crate::common;
use crate::common::{Server, items, key, put_items, tid};

/// A deletion whose server dies between marking the tenant `deleting` and purging it is
/// taken over: by a live server's sweep within seconds, or at once by a re-creation of the id
/// on another server (which used to answer 409 "already exists with other settings" until
/// the dead server came back). The re-created tenant starts empty and refuses the old key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_abandoned_by_a_dead_server_is_finished_by_a_live_one() {
    let Some(pg) = bulkhead_pg_testkit::require("shared_catalog_abandoned_deletion") else {
        return;
    };
    pg.psql("postgres", "CREATE DATABASE bulkhead").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url("bulkhead");
    for side in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(side)).unwrap();
    }
    let holding = [
        ("BULKHEAD_CATALOG", url.as_str()),
        ("BULKHEAD_DELETE_HOLD_MS", "60000"),
    ];
    let mut a = Server::start_with(&dir.path().join("a"), &holding);
    let b = Server::start_with(&dir.path().join("b"), &[("BULKHEAD_CATALOG", url.as_str())]);
    let (admin_a, admin_b) = (a.admin(), b.admin());
    put_items(&admin_a).await;
    eventually(Duration::from_secs(5), "collection on B", || async {
        admin_b.get_collection(&items()).await.is_ok()
    })
    .await;
    let request = |id: &str| CreateTenant {
        id: tid(id),
        name: format!("{id} inc"),
        tier: TierName::parse("premium").unwrap(),
        labels: Default::default(),
    };
    for (round, id) in ["swept", "recreated"].into_iter().enumerate() {
        if round == 1 {
            a = Server::start_with(&dir.path().join("a"), &holding);
        }
        let admin_a = a.admin();
        admin_a.create_tenant(&request(id)).await.unwrap();
        let old_key = key(&admin_a, id, TenantRole::Member).await;
        a.client(&old_key)
            .create_record(&items(), &json!({"id": "old", "title": "earlier life"}))
            .await
            .unwrap();
        let deleting = {
            let admin_a = admin_a.clone();
            let id = tid(id);
            tokio::spawn(async move { admin_a.delete_tenant(&id).await })
        };
        eventually(Duration::from_secs(5), "deleting seen on B", || async {
            admin_b
                .get_tenant(&tid(id))
                .await
                .is_ok_and(|t| t.status == TenantStatus::Deleting)
        })
        .await;
        a.kill_hard();
        assert!(deleting.await.unwrap().is_err(), "A died before answering");
        if id == "swept" {
            eventually(Duration::from_secs(30), "B finishes the purge", || async {
                admin_b
                    .get_tenant(&tid(id))
                    .await
                    .is_err_and(|e| e.status() == Some(404))
            })
            .await;
            admin_b.create_tenant(&request(id)).await.unwrap();
        } else {
            // At once, with the very same body: the re-creation finishes the purge first.
            let created = admin_b.create_tenant(&request(id)).await.unwrap();
            assert_eq!(created.status, TenantStatus::Active);
        }
        let new = b.client(&key(&admin_b, id, TenantRole::Member).await);
        let page = new
            .list_records(&items(), &Default::default())
            .await
            .unwrap();
        assert!(page.items.is_empty(), "{id}: the new life starts empty");
        let err = b
            .client(&old_key)
            .get_record(&items(), &RecordId::parse("old").unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(401), "{id}: the old key is gone");
    }
    let report = admin_b.doctor().await.unwrap();
    assert!(report.orphans.is_empty(), "{report:#?}");
    drop((a, b));
}

/// One server streams an export and runs a move while the other deletes the tenants and
/// re-creates them: the stream ends with an error line and never carries a record of the new
/// life; a deletion in the move's clean-up purges both copies and the move's late clean-up
/// on the first server spares the new tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lives_stay_apart_when_one_server_streams_or_moves_and_the_other_deletes() {
    let Some(pg) = bulkhead_pg_testkit::require("shared_catalog_lives") else {
        return;
    };
    pg.psql("postgres", "CREATE DATABASE bulkhead").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url("bulkhead");
    for side in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(side)).unwrap();
    }
    let a = Server::start_with(
        &dir.path().join("a"),
        &[
            ("BULKHEAD_CATALOG", url.as_str()),
            ("BULKHEAD_MOVE_DRAIN_GRACE_MS", "3000"),
        ],
    );
    let b = Server::start_with(&dir.path().join("b"), &[("BULKHEAD_CATALOG", url.as_str())]);
    let (admin_a, admin_b) = (a.admin(), b.admin());
    put_items(&admin_a).await;
    eventually(Duration::from_secs(5), "collection on B", || async {
        admin_b.get_collection(&items()).await.is_ok()
    })
    .await;
    let request = |id: &str, tier: &str| CreateTenant {
        id: tid(id),
        name: format!("{id} inc"),
        tier: TierName::parse(tier).unwrap(),
        labels: Default::default(),
    };

    // A streams while B deletes and re-creates.
    admin_a
        .create_tenant(&request("streamed", "standard"))
        .await
        .unwrap();
    let old_key = key(&admin_a, "streamed", TenantRole::Member).await;
    let padding = "x".repeat(400);
    let body: Vec<u8> = (0..20_000)
        .flat_map(|i| {
            format!("{{\"id\": \"b{i:07}\", \"title\": \"earlier {padding}\"}}\n").into_bytes()
        })
        .collect();
    a.client(&old_key).bulk(&items(), body, true).await.unwrap();
    let runtime = tokio::runtime::Handle::current();
    let (admin_b2, b_url, a_url) = (admin_b.clone(), b.url.clone(), a.url.clone());
    let (head, rest) = tokio::task::spawn_blocking(move || {
        common::slow_export(&a_url, &old_key, 64 * 1024, || {
            runtime.block_on(async {
                admin_b2.delete_tenant(&tid("streamed")).await.unwrap();
                admin_b2
                    .create_tenant(&CreateTenant {
                        id: tid("streamed"),
                        name: "streamed inc".into(),
                        tier: TierName::parse("standard").unwrap(),
                        labels: Default::default(),
                    })
                    .await
                    .unwrap();
                let new = Client::new(&b_url, key(&admin_b2, "streamed", TenantRole::Member).await)
                    .unwrap();
                for n in 0..600 {
                    new.create_record(
                        &items(),
                        &json!({"id": format!("z{n:07}"), "title": "LATERLIFE"}),
                    )
                    .await
                    .unwrap();
                }
            });
        })
    })
    .await
    .unwrap();
    assert!(head.contains("earlier"), "the export had started");
    assert!(
        !rest.contains("LATERLIFE"),
        "the new life's records reached the old stream"
    );
    assert!(
        common::last_json_line(&rest).contains("\"error\""),
        "the stream ends with an error line"
    );

    // A moves while B deletes during the move's clean-up and re-creates.
    admin_a
        .create_tenant(&request("moved", "free"))
        .await
        .unwrap();
    let old = a.client(&key(&admin_a, "moved", TenantRole::Member).await);
    for n in 0..20 {
        old.create_record(
            &items(),
            &json!({"id": format!("o{n}"), "title": "earlier life"}),
        )
        .await
        .unwrap();
    }
    let moved = admin_a
        .start_move(
            &tid("moved"),
            &bulkhead_api::StartMove {
                isolation: Some(Isolation::Bridge),
                domain: None,
                incarnation: None,
            },
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(60), "the move cleans up", || async {
        admin_a.get_move(&moved.id).await.unwrap().phase
            == bulkhead_core::model::MovePhase::Cleaning
    })
    .await;
    admin_b.delete_tenant(&tid("moved")).await.unwrap();
    admin_b
        .create_tenant(&request("moved", "free"))
        .await
        .unwrap();
    let new = b.client(&key(&admin_b, "moved", TenantRole::Member).await);
    for n in 0..10 {
        new.create_record(
            &items(),
            &json!({"id": format!("n{n}"), "title": "later life"}),
        )
        .await
        .unwrap();
    }
    eventually(Duration::from_secs(30), "the old move ends", || async {
        admin_a.get_move(&moved.id).await.unwrap().phase.is_final()
    })
    .await;
    for client in [
        &new,
        &a.client(&key(&admin_a, "moved", TenantRole::Member).await),
    ] {
        let page = client
            .list_records(
                &items(),
                &bulkhead_client::ListRecords {
                    limit: Some(100),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            page.items.len(),
            10,
            "the new life keeps its writes after the old clean-up"
        );
        assert!(page.items.iter().all(|r| r["title"] == "later life"));
    }
    let report = admin_b.doctor().await.unwrap();
    assert!(report.orphans.is_empty(), "{report:#?}");
    drop((a, b));
}
