//! A rollout cut off on one server is finished by the other.

use std::time::Duration;

use bulkhead_api::CreateTenant;
use bulkhead_core::TierName;
use serde_json::json;

use super::{eventually, start_pair};
use crate::common::{items, put_items, tid};

/// A rollout started on one server and cut off by its `kill -9` is finished by the other
/// server sharing the catalog: its progress is read from the placements (the ledger), and
/// the other server's background pass takes the rollout over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_cut_off_on_one_server_is_finished_by_the_other() {
    let Some(pg) = bulkhead_pg_testkit::require("shared_catalog_rollout") else {
        return;
    };
    pg.psql("postgres", "CREATE DATABASE bulkhead").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut a, b) = start_pair(dir.path(), &pg.url("bulkhead"));
    let (admin_a, admin_b) = (a.admin(), b.admin());
    put_items(&admin_a).await;
    for i in 0..60 {
        admin_a
            .create_tenant(&CreateTenant {
                id: tid(&format!("bridge-{i:02}")),
                name: format!("bridge {i}"),
                tier: TierName::parse("standard").unwrap(),
                labels: Default::default(),
            })
            .await
            .unwrap();
    }
    let spec = serde_json::from_value(json!({"fields": {
        "title": {"type": "text", "required": true},
        "sku": {"type": "string", "unique": true},
        "n": {"type": "integer", "index": true},
        "done": {"type": "boolean", "default": false},
        "note": {"type": "text", "default": "zebra", "index": true}
    }}))
    .unwrap();
    let rollout = admin_a
        .submit_collection(&items(), &spec)
        .await
        .unwrap()
        .rollout
        .unwrap();
    assert_eq!(rollout.placements_total, 60);
    let before = loop {
        let view = admin_a.get_rollout(&rollout.id).await.unwrap();
        if view.placements_done > 0 {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    a.kill_hard();
    assert!(
        before.placements_left > 0,
        "ended before the crash: {before:?}"
    );
    // B sees the same rollout, where A left it, and finishes it.
    let seen = admin_b.get_rollout(&rollout.id).await.unwrap();
    assert!(
        seen.placements_done >= before.placements_done,
        "{before:?} then {seen:?}"
    );
    eventually(Duration::from_secs(60), "the rollout finished on B", || {
        let admin_b = admin_b.clone();
        let id = rollout.id.clone();
        async move {
            let view = admin_b.get_rollout(&id).await.unwrap();
            view.placements_left == 0 && view.placements_done == 60
        }
    })
    .await;
    // Every tenant has the new field, served by B.
    for i in [0, 30, 59] {
        let created = admin_b
            .with_tenant(tid(&format!("bridge-{i:02}")))
            .create_record(&items(), &json!({"title": "x", "note": "okapi"}))
            .await
            .unwrap();
        assert_eq!(created["note"], "okapi");
    }
}
