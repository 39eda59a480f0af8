//! A tenant id names one life, for requests that run on: an export (by a tenant key or a
//! platform key naming its tenant) and a bulk body streaming in while the tenant is deleted
//! and re-created, its key revoked, or the tenant moved — black box through the binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bulkhead_api::StartMove;
use bulkhead_client::{Client, ListRecords};
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{Isolation, MovePhase};
use common::{
    Server, create_tenant, items, key, last_json_line, ndjson, put_items, slow_export, tid,
    wait_for_phase,
};
use serde_json::json;

/// The bug this guards: an export opened with a deleted tenant's key kept streaming, and
/// once the old records ran out it streamed the re-created tenant's records; revoking the
/// key did not stop it either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_export_ends_with_an_error_line_when_its_tenant_is_deleted_or_its_key_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    let padding = "x".repeat(400);
    for (id, tier) in [("exp-pool", "free"), ("exp-silo", "premium")] {
        create_tenant(&admin, id, tier).await;
        let old_key = key(&admin, id, TenantRole::Member).await;
        let old = server.client(&old_key);
        old.bulk(
            &items(),
            ndjson(30_000, &format!("earlier {padding}")),
            true,
        )
        .await
        .unwrap();
        let runtime = tokio::runtime::Handle::current();
        let (admin2, url, id2) = (admin.clone(), server.url.clone(), id.to_owned());
        let (head, rest) = tokio::task::spawn_blocking(move || {
            slow_export(&url, &old_key, 64 * 1024, || {
                runtime.block_on(async {
                    admin2.delete_tenant(&tid(&id2)).await.unwrap();
                    create_tenant(&admin2, &id2, tier).await;
                    let new = Client::new(
                        admin2.base_url().as_str(),
                        key(&admin2, &id2, TenantRole::Member).await,
                    )
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
        assert!(head.contains("earlier"), "{id}: the export had started");
        assert!(
            !rest.contains("LATERLIFE"),
            "{id}: the new tenant's records reached the old credential"
        );
        let last = last_json_line(&rest);
        assert!(
            last.contains("\"error\""),
            "{id}: the stream ends with an error line, not silently: {}",
            &last[..last.len().min(300)]
        );
    }
    // Revocation stops an export too.
    create_tenant(&admin, "exp-revoke", "free").await;
    let created = admin
        .create_key(
            &tid("exp-revoke"),
            &bulkhead_api::CreateKey {
                name: "exporter".into(),
                role: TenantRole::Member,
                expires_in: None,
            },
        )
        .await
        .unwrap();
    let exporter = server.client(&created.key);
    exporter
        .bulk(&items(), ndjson(30_000, &format!("kept {padding}")), true)
        .await
        .unwrap();
    let runtime = tokio::runtime::Handle::current();
    let (admin2, url, key_id) = (admin.clone(), server.url.clone(), created.view.id.clone());
    let token = created.key.clone();
    let (_, rest) = tokio::task::spawn_blocking(move || {
        slow_export(&url, &token, 64 * 1024, || {
            runtime.block_on(async {
                admin2
                    .revoke_key(&tid("exp-revoke"), &key_id)
                    .await
                    .unwrap();
            });
        })
    })
    .await
    .unwrap();
    let last = last_json_line(&rest);
    assert!(
        last.contains("invalid_credentials") && last.contains("\"status\":401"),
        "a revoked key's export ends with an error line: {}",
        &last[..last.len().min(300)]
    );
}

/// The bug this guards: an export by a platform key naming its tenant looked the tenant up
/// afresh on every page, so once the tenant was deleted and re-created under the same id
/// the stream went on with the new life's records after the old life's (a tenant key's
/// export stopped, since the key belongs to the earlier life). An export stays in the life
/// its first page was read from, in every isolation model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_keys_export_never_crosses_into_a_re_created_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    let padding = "x".repeat(400);
    for (id, tier) in [
        ("pexp-pool", "free"),
        ("pexp-bridge", "standard"),
        ("pexp-silo", "premium"),
    ] {
        create_tenant(&admin, id, tier).await;
        admin
            .with_tenant(tid(id))
            .bulk(
                &items(),
                ndjson(30_000, &format!("earlier {padding}")),
                true,
            )
            .await
            .unwrap();
        let runtime = tokio::runtime::Handle::current();
        let (admin2, url, id2) = (admin.clone(), server.url.clone(), id.to_owned());
        let (head, rest) = tokio::task::spawn_blocking(move || {
            common::slow_export_as(&url, common::ADMIN_KEY, Some(&id2), 64 * 1024, || {
                runtime.block_on(async {
                    admin2.delete_tenant(&tid(&id2)).await.unwrap();
                    create_tenant(&admin2, &id2, tier).await;
                    let new = admin2.with_tenant(tid(&id2));
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
        assert!(head.contains("earlier"), "{id}: the export had started");
        assert!(
            !rest.contains("LATERLIFE"),
            "{id}: the re-created tenant's records reached an export of the deleted one"
        );
        let last = last_json_line(&rest);
        assert!(
            last.contains("tenant_not_found") && last.contains("\"status\":404"),
            "{id}: the stream ends with an error line, not silently: {}",
            &last[..last.len().min(300)]
        );
    }
    // A move keeps the life: an export across a move's switch runs to its end.
    create_tenant(&admin, "pexp-moved", "free").await;
    let moved = admin.with_tenant(tid("pexp-moved"));
    moved
        .bulk(&items(), ndjson(30_000, &format!("kept {padding}")), true)
        .await
        .unwrap();
    let runtime = tokio::runtime::Handle::current();
    let (admin2, url) = (admin.clone(), server.url.clone());
    let (head, rest) = tokio::task::spawn_blocking(move || {
        common::slow_export_as(
            &url,
            common::ADMIN_KEY,
            Some("pexp-moved"),
            64 * 1024,
            || {
                runtime.block_on(async {
                    let started = admin2
                        .start_move(
                            &tid("pexp-moved"),
                            &StartMove {
                                isolation: Some(Isolation::Silo),
                                domain: None,
                                incarnation: None,
                            },
                        )
                        .await
                        .unwrap();
                    wait_for_phase(&admin2, &started.id, MovePhase::Done).await;
                });
            },
        )
    })
    .await
    .unwrap();
    assert!(
        !rest.contains("\"error\""),
        "an export across a move runs on: {}",
        last_json_line(&rest)
    );
    let whole = head + &rest;
    let ids: Vec<&str> = whole
        .split("\"id\":\"")
        .skip(1)
        .map(|tail| &tail[..8])
        .collect();
    let distinct: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(
        (ids.len(), distinct.len()),
        (30_000, 30_000),
        "every record once across the move's switch"
    );
}

/// The bug this guards: a bulk body kept writing with a revoked key until it ended (each
/// chunk checked the tenant's life, not the credential), where an export stopped at its next
/// page. Now each chunk checks the credential again: once the revocation is acknowledged, at
/// most the chunk already past its check lands, and every later line fails as the request
/// would now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_stops_at_its_next_chunk_once_its_key_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    for (id, tier) in [("brev-pool", "free"), ("brev-silo", "premium")] {
        create_tenant(&admin, id, tier).await;
        let created = admin
            .create_key(
                &tid(id),
                &bulkhead_api::CreateKey {
                    name: "ingest".into(),
                    role: TenantRole::Member,
                    expires_in: None,
                },
            )
            .await
            .unwrap();
        let writer = server.client(&created.key);
        let bulk = {
            let writer = writer.clone();
            tokio::spawn(async move { writer.bulk(&items(), ndjson(60_000, "bulk"), true).await })
        };
        let watcher = admin.with_tenant(tid(id));
        let newest = || async {
            let page = watcher
                .list_records(
                    &items(),
                    &ListRecords {
                        sort: Some("-id".into()),
                        limit: Some(1),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            page.items
                .first()
                .map(|r| r["id"].as_str().unwrap()[1..].parse::<u64>().unwrap() + 1)
                .unwrap_or(0)
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while newest().await == 0 {
            assert!(Instant::now() < deadline, "{id}: the bulk never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        admin.revoke_key(&tid(id), &created.view.id).await.unwrap();
        let at_revocation = newest().await;
        let report = bulk.await.unwrap().unwrap();
        let written = newest().await;
        assert!(
            at_revocation < 59_000,
            "{id}: the revocation came before the last chunk ({at_revocation} lines in)"
        );
        assert!(
            written <= at_revocation + 1_000,
            "{id}: {} lines landed after the revocation",
            written - at_revocation
        );
        assert_eq!(
            report.created, written,
            "{id}: the report counts what landed"
        );
        assert_eq!(
            report.failed,
            60_000 - written,
            "{id}: every later line failed"
        );
        assert!(
            report.results.iter().all(|l| l.status == 401
                && l.error
                    .as_ref()
                    .is_some_and(|e| e.code == "invalid_credentials")),
            "{id}: lines after the revocation fail as the request would now: {:?}",
            report.results.first()
        );
    }
}

/// A listing cursor names the life it was issued in: the same tenant id created again
/// refuses it (400 `invalid_cursor`) rather than paging the new life from the old one's
/// position; within one life it survives a move (the life's storage key does not change).
#[tokio::test]
async fn a_cursor_is_refused_by_the_next_life_of_its_tenant_and_kept_across_a_move() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin().with_tenant(tid("cur"));
    let platform = server.admin();
    put_items(&platform).await;
    create_tenant(&platform, "cur", "free").await;
    for i in 0..5 {
        admin
            .create_record(&items(), &json!({"id": format!("r{i}"), "title": "old"}))
            .await
            .unwrap();
    }
    let first = ListRecords {
        limit: Some(2),
        ..Default::default()
    };
    let page = admin.list_records(&items(), &first).await.unwrap();
    let cursor = page.next_cursor.unwrap();
    let next = ListRecords {
        limit: Some(2),
        cursor: Some(cursor.clone()),
        ..Default::default()
    };
    // Kept across a move of the same life.
    let moved = platform
        .start_move(
            &tid("cur"),
            &StartMove {
                isolation: Some(Isolation::Silo),
                domain: None,
                incarnation: None,
            },
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !platform.get_move(&moved.id).await.unwrap().phase.is_final() {
        assert!(Instant::now() < deadline, "the move did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after_move = admin.list_records(&items(), &next).await.unwrap();
    assert_eq!(after_move.items.len(), 2);
    // Refused by the next life.
    platform.delete_tenant(&tid("cur")).await.unwrap();
    create_tenant(&platform, "cur", "free").await;
    for i in 0..5 {
        admin
            .create_record(&items(), &json!({"id": format!("r{i}"), "title": "new"}))
            .await
            .unwrap();
    }
    let refused = admin.list_records(&items(), &next).await.unwrap_err();
    assert_eq!(refused.code(), Some("invalid_cursor"), "{refused}");
}
