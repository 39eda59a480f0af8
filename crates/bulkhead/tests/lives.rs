//! A tenant id names one life: deletion racing moves, bulk ingest and single writes, then
//! re-creation under the same id — black box through the binary (exports and long bulk
//! bodies: `lives_streams.rs`). A re-created tenant starts empty, nothing of the deleted one
//! reaches it (records, keys, streams, a move's late clean-up), and `bulkhead doctor` finds no
//! storage left without a live owner.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bulkhead_api::{StartMove, TenantView};
use bulkhead_client::{Client, ListRecords};
use bulkhead_core::RecordId;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{Isolation, MovePhase, TenantStatus};
use common::{
    Server, audit_rows, create_tenant, items, key, ndjson, put_items, tid, wait_for_phase,
};
use serde_json::json;

/// Every record a client sees in `items`, by id, with its title.
async fn all_titles(client: &Client) -> Vec<(String, String)> {
    common::all_titles(client).await.into_iter().collect()
}

/// No tenant storage is left that no live tenant owns.
async fn assert_no_orphans(admin: &Client) {
    let report = admin.doctor().await.unwrap();
    assert!(
        report.orphans.is_empty() && report.unchecked_domains.is_empty(),
        "orphaned storage: {report:#?}"
    );
}

async fn tenant(admin: &Client, id: &str) -> TenantView {
    admin.get_tenant(&tid(id)).await.unwrap()
}

/// The bug this guards: a deletion while a move cleans up used to destroy only the new copy,
/// hand the old storage to a tenant re-created under the id, and let the old move's clean-up
/// destroy the new tenant's storage later (also at a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_during_a_moves_clean_up_purges_both_copies_and_the_late_clean_up_spares_the_new_tenant()
 {
    let dir = tempfile::tempdir().unwrap();
    // The clean-up waits 3 s after the switch: long enough to delete and re-create in between.
    let mut server = Server::start_with(dir.path(), &[("BULKHEAD_MOVE_DRAIN_GRACE_MS", "3000")]);
    let admin = server.admin();
    put_items(&admin).await;
    let directions = [
        ("p2s", "free", Isolation::Silo),
        ("s2b", "premium", Isolation::Bridge),
        ("b2p", "standard", Isolation::Pool),
    ];
    let mut survivors = Vec::new();
    for (id, tier, to) in directions {
        create_tenant(&admin, id, tier).await;
        let old_key = key(&admin, id, TenantRole::Member).await;
        let old = server.client(&old_key);
        for n in 0..20 {
            old.create_record(
                &items(),
                &json!({"id": format!("old-{n}"), "title": "earlier life", "n": n}),
            )
            .await
            .unwrap();
        }
        let first_life = tenant(&admin, id).await.placement.incarnation;
        let moved = admin
            .start_move(
                &tid(id),
                &StartMove {
                    isolation: Some(to),
                    domain: None,
                    incarnation: None,
                },
            )
            .await
            .unwrap();
        wait_for_phase(&admin, &moved.id, MovePhase::Cleaning).await;
        admin.delete_tenant(&tid(id)).await.unwrap();
        create_tenant(&admin, id, tier).await;
        let second_life = tenant(&admin, id).await.placement.incarnation;
        assert_ne!(first_life, second_life, "{id}: a new life");
        let new = server.client(&key(&admin, id, TenantRole::Member).await);
        assert!(all_titles(&new).await.is_empty(), "{id}: starts empty");
        let err = new
            .get_record(&items(), &RecordId::parse("old-1").unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(404), "{id}: old record is missing");
        let err = old
            .list_records(&items(), &ListRecords::default())
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(401), "{id}: old key is gone");
        for n in 0..10 {
            new.create_record(
                &items(),
                &json!({"id": format!("new-{n}"), "title": "later life", "n": n}),
            )
            .await
            .unwrap();
        }
        // The old move's clean-up runs now; it must not touch the new tenant.
        wait_for_phase(&admin, &moved.id, MovePhase::Done).await;
        let titles = all_titles(&new).await;
        assert_eq!(
            titles.len(),
            10,
            "{id}: new writes survive the old clean-up"
        );
        assert!(titles.iter().all(|(_, t)| t == "later life"), "{id}");
        // The deletion, the purge and the old move's end are audited with the life they
        // belong to.
        for action in ["tenant.delete", "tenant.purge", "move.done"] {
            let entries = admin
                .list_audit(&bulkhead_api::AuditQuery {
                    tenant: Some(tid(id)),
                    action: Some(action.into()),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert!(
                entries.items.iter().any(|e| e
                    .detail
                    .as_deref()
                    .is_some_and(|d| d.contains(first_life.as_str()))),
                "{id}: {action} names the first life: {:?}",
                entries.items
            );
        }
        survivors.push((id, new));
    }
    assert_no_orphans(&admin).await;
    // Deletions and purges are audited with the life they ended.
    let purges = audit_rows(&server.data_dir, |r| r.1 == "tenant.purge");
    assert!(purges.len() >= 3, "{purges:?}");
    server.kill_hard();
    let server = Server::start(dir.path());
    let admin = server.admin();
    for (id, _) in &survivors {
        let new = server.client(&key(&admin, id, TenantRole::Member).await);
        assert_eq!(
            all_titles(&new).await.len(),
            10,
            "{id}: after kill -9 and restart"
        );
    }
    assert_no_orphans(&admin).await;
}

/// The bug this guards: a bulk request kept writing after its tenant was deleted, leaving
/// orphaned rows in the pool (counted by a re-created tenant as its own) or landing chunks in
/// the re-created tenant's silo or bridge tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_racing_deletion_leaves_nothing_behind_and_reaches_no_new_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    for tier in ["free", "standard", "premium"] {
        let id = format!("bulk-{tier}");
        create_tenant(&admin, &id, tier).await;
        let old = server.client(&key(&admin, &id, TenantRole::Member).await);
        let body = ndjson(60_000, "earlier life");
        let bulk = {
            let old = old.clone();
            tokio::spawn(async move { old.bulk(&items(), body, true).await })
        };
        // Delete once the bulk is visibly under way.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let page = old
                .list_records(
                    &items(),
                    &ListRecords {
                        limit: Some(1),
                        ..Default::default()
                    },
                )
                .await;
            if page.is_ok_and(|p| !p.items.is_empty()) {
                break;
            }
            assert!(Instant::now() < deadline, "{id}: the bulk never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        admin.delete_tenant(&tid(&id)).await.unwrap();
        create_tenant(&admin, &id, tier).await;
        let new = server.client(&key(&admin, &id, TenantRole::Member).await);
        new.create_record(&items(), &json!({"id": "mine", "title": "later life"}))
            .await
            .unwrap();
        let report = bulk.await.unwrap().unwrap();
        assert!(
            report.failed > 0,
            "{id}: the deletion stopped the bulk ({} created)",
            report.created
        );
        assert!(
            report
                .results
                .iter()
                .all(|l| l.status == 404 || l.status == 401),
            "{id}: lines after the deletion fail as for a missing tenant: {:?}",
            report.results.first()
        );
        assert_eq!(
            all_titles(&new).await,
            vec![("mine".to_owned(), "later life".to_owned())],
            "{id}: nothing of the bulk reached the new tenant"
        );
    }
    assert_no_orphans(&admin).await;
}

/// The bug this guards: a record written with a deleted tenant's key, in flight across the
/// deletion and a re-creation, appeared in the new tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_writes_in_flight_across_deletion_and_re_creation_never_reach_the_new_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    for tier in ["free", "standard", "premium"] {
        let id = format!("race-{tier}");
        create_tenant(&admin, &id, tier).await;
        let old = server.client(&key(&admin, &id, TenantRole::Member).await);
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (old, stop, acknowledged) =
                    (old.clone(), Arc::clone(&stop), Arc::clone(&acknowledged));
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let body = json!({"id": format!("w{w}-{n}"), "title": "earlier life"});
                        if old.create_record(&items(), &body).await.is_ok() {
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        while acknowledged.load(Ordering::Relaxed) < 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        admin.delete_tenant(&tid(&id)).await.unwrap();
        create_tenant(&admin, &id, tier).await;
        let new = server.client(&key(&admin, &id, TenantRole::Member).await);
        let mut mine = 0;
        for n in 0..30 {
            new.create_record(
                &items(),
                &json!({"id": format!("n-{n}"), "title": "later life"}),
            )
            .await
            .unwrap();
            mine += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        let titles = all_titles(&new).await;
        assert_eq!(titles.len(), mine, "{id}: only the new life's writes");
        assert!(titles.iter().all(|(_, t)| t == "later life"), "{id}");
    }
    assert_no_orphans(&admin).await;
}

/// `kill -9` at any moment of deletions, on the embedded catalog, in every isolation model:
/// after the restart each tenant is either whole (its deletion had not begun) or gone with
/// every byte of its storage (a deletion begun is finished at the start), and a tenant
/// re-created under its id starts empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_cut_by_kill_9_are_finished_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    put_items(&server.admin()).await;
    let (mut whole, mut gone) = (0, 0);
    for (round, delay_ms) in [0u64, 3, 8, 15, 30, 60].into_iter().enumerate() {
        let admin = server.admin();
        let ids: Vec<String> = ["free", "standard", "premium"]
            .iter()
            .map(|tier| format!("kd{round}-{tier}"))
            .collect();
        for (id, tier) in ids.iter().zip(["free", "standard", "premium"]) {
            create_tenant(&admin, id, tier).await;
            admin
                .with_tenant(tid(id))
                .bulk(&items(), ndjson(2_000, "earlier life"), true)
                .await
                .unwrap();
        }
        let deleting: Vec<_> = ids
            .iter()
            .map(|id| {
                let (admin, id) = (admin.clone(), id.clone());
                tokio::spawn(async move { admin.delete_tenant(&tid(&id)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        server.kill_hard();
        for d in deleting {
            let _ = d.await;
        }
        server = Server::start(dir.path());
        let admin = server.admin();
        for (id, tier) in ids.iter().zip(["free", "standard", "premium"]) {
            let client = admin.with_tenant(tid(id));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match admin.get_tenant(&tid(id)).await {
                    Ok(view) if view.status == TenantStatus::Active => {
                        assert_eq!(all_titles(&client).await.len(), 2_000, "{id}: whole");
                        whole += 1;
                        break;
                    }
                    Err(e) if e.to_string().contains("tenant_not_found") => {
                        // Finished at the start (or finishing: a re-creation waits for it).
                        create_tenant(&admin, id, tier).await;
                        assert!(all_titles(&client).await.is_empty(), "{id}: starts empty");
                        gone += 1;
                        break;
                    }
                    other => {
                        assert!(Instant::now() < deadline, "{id}: {other:?}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
    }
    assert!(
        gone > 0,
        "some deletions had begun ({whole} whole, {gone} gone)"
    );
    assert_no_orphans(&server.admin()).await;
}

/// `bulkhead doctor` through the CLI: storage whose catalog entry vanished (here: removed
/// from the catalog file by hand, as a crash or an operator might leave it) is listed with
/// its tenant and life, kept without `--yes`, removed with it, and audited; live tenants'
/// storage is never listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_lists_storage_no_live_tenant_owns_and_removes_it_on_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    for (id, tier) in [
        ("ghost-pool", "free"),
        ("ghost-bridge", "standard"),
        ("ghost-silo", "premium"),
        ("kept", "free"),
    ] {
        create_tenant(&admin, id, tier).await;
        let client = server.client(&key(&admin, id, TenantRole::Member).await);
        client
            .create_record(&items(), &json!({"title": "data"}))
            .await
            .unwrap();
    }
    assert_no_orphans(&admin).await;
    server.stop();
    {
        let conn = rusqlite::Connection::open(server.data_dir.join("catalog.db")).unwrap();
        for id in ["ghost-pool", "ghost-bridge", "ghost-silo"] {
            conn.execute("DELETE FROM api_keys WHERE tenant_id = ?1", [id])
                .unwrap();
            conn.execute("DELETE FROM placements WHERE tenant_id = ?1", [id])
                .unwrap();
            conn.execute("DELETE FROM tenants WHERE id = ?1", [id])
                .unwrap();
        }
    }
    let server = Server::start(dir.path());
    let admin = server.admin();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(common::binary())
            .args(args)
            .env("BULKHEAD_URL", &server.url)
            .env("BULKHEAD_TOKEN", common::ADMIN_KEY)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = cli(&["doctor", "--json"]);
    assert!(ok, "{stderr}");
    let report: bulkhead_api::DoctorReport = serde_json::from_str(&stdout).unwrap();
    let mut ghosts: Vec<String> = report
        .orphans
        .iter()
        .map(|o| o.tenant.as_ref().unwrap().to_string())
        .collect();
    ghosts.sort();
    assert_eq!(
        ghosts,
        ["ghost-bridge", "ghost-pool", "ghost-silo"],
        "{report:#?}"
    );
    assert!(
        report
            .orphans
            .iter()
            .all(|o| o.removable && o.incarnation.is_some())
    );
    // Without --yes and without a terminal to ask on, nothing is removed.
    let (ok, _, stderr) = cli(&["doctor", "--remove"]);
    assert!(!ok && stderr.contains("--yes"), "{stderr}");
    assert_eq!(admin.doctor().await.unwrap().orphans.len(), 3);
    let (ok, stdout, stderr) = cli(&["doctor", "--remove", "--yes"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("removed 3"), "{stdout}");
    assert_no_orphans(&admin).await;
    let silos: Vec<_> = std::fs::read_dir(server.data_dir.join("domains/local/silos"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("ghost"))
        .collect();
    assert!(silos.is_empty(), "the silo file is gone");
    let kept = server.client(&key(&admin, "kept", TenantRole::Member).await);
    assert_eq!(
        all_titles(&kept).await.len(),
        1,
        "the live tenant is untouched"
    );
    let removals = audit_rows(&server.data_dir, |r| r.1 == "storage.remove");
    assert_eq!(removals.len(), 3, "{removals:?}");
}
