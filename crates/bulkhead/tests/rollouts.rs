//! Collection changes roll out as background jobs: `202` with a rollout, progress at
//! `GET /v1/rollouts/{id}`, waves (canary label, then tiers in the configured order) in the
//! audit log, and a rollout cut off by `kill -9` finished after the restart from the ledger.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bulkhead_api::{CreateTenant, RolloutView};
use bulkhead_client::Client;
use bulkhead_core::{CollectionName, TierName};
use common::{Server, audit_rows, notes, notes_spec, tid};
use serde_json::json;

async fn tenant(admin: &Client, id: &str, tier: &str, canary: bool) {
    let mut labels = BTreeMap::new();
    if canary {
        labels.insert("canary".to_owned(), "true".to_owned());
    }
    admin
        .create_tenant(&CreateTenant {
            id: tid(id),
            name: id.to_owned(),
            tier: TierName::parse(tier).unwrap(),
            labels: labels.into_iter().collect(),
        })
        .await
        .unwrap();
}

/// `chunks × per` premium silo tenants, `silo-{chunk}-{i:02}`, made by `chunks` tasks at once.
async fn silos(admin: &Client, chunks: usize, per: usize) {
    let mut creating = tokio::task::JoinSet::new();
    for chunk in 0..chunks {
        let admin = admin.clone();
        creating.spawn(async move {
            for i in 0..per {
                tenant(&admin, &format!("silo-{chunk}-{i:02}"), "premium", false).await;
            }
        });
    }
    while let Some(done) = creating.join_next().await {
        done.unwrap();
    }
}

async fn until_done(admin: &Client, id: &str, seen: &mut Vec<RolloutView>) -> RolloutView {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let view = admin.get_rollout(id).await.unwrap();
        seen.push(view.clone());
        if view.state == "done" {
            return view;
        }
        assert!(Instant::now() < deadline, "rollout stuck: {view:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_answers_202_and_rolls_out_in_waves_canary_first_then_tiers_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            ("BULKHEAD_ROLLOUT_TIER_ORDER", "premium,standard,free"),
            ("BULKHEAD_ROLLOUT_CANARY_COUNT", "1"),
            ("BULKHEAD_ROLLOUT_PARALLELISM", "3"),
        ],
    );
    let admin = server.admin();
    admin
        .put_collection(&notes(), &notes_spec(false))
        .await
        .unwrap();
    for (tier, n) in [("free", 3), ("standard", 3), ("premium", 6)] {
        for i in 0..n {
            tenant(
                &admin,
                &format!("{tier}-{i}"),
                tier,
                tier == "standard" && i == 0,
            )
            .await;
        }
    }
    // The answer comes at once: 202 with the rollout to follow.
    let raw = admin
        .raw(
            bulkhead_client::Method::PUT,
            "/v1/collections/notes",
            Some(serde_json::to_vec(&notes_spec(true)).unwrap()),
            Some("application/json"),
        )
        .await
        .unwrap();
    assert_eq!(raw.status, 202, "{raw:?}");
    let view: bulkhead_api::CollectionView = raw.json().unwrap();
    let rollout = view.rollout.expect("a rollout");
    assert_eq!(rollout.version, 2);
    // The pool's three tenants share one unit (their tables) but count as three placements.
    assert_eq!(rollout.placements_total, 12, "{rollout:?}");
    let mut seen = Vec::new();
    let done = until_done(&admin, &rollout.id, &mut seen).await;
    assert_eq!(done.placements_left, 0);
    assert_eq!(done.placements_done, 12);
    assert_eq!(done.placements_failed, 0);
    assert!(done.finished_at.is_some() && done.eta_seconds.is_none());
    // Listed, newest first.
    let listed = admin.list_rollouts().await.unwrap();
    assert_eq!(listed.items[0].id, rollout.id);
    // The waves, in order, in the audit log.
    let waves: Vec<String> = audit_rows(&server.data_dir, |r| r.1 == "rollout.wave")
        .into_iter()
        .map(|r| r.2)
        .collect();
    assert_eq!(
        waves,
        ["canary", "tier premium", "tier standard", "tier free"],
        "{seen:#?}"
    );
    // The canary wave: the tenant labelled canary=true and, by count, the first dedicated
    // tenant by id (premium-0); the pool's three tenants are one unit in their tier's wave.
    let details: Vec<String> = {
        let conn = rusqlite::Connection::open(server.data_dir.join("catalog.db")).unwrap();
        let mut stmt = conn
            .prepare("SELECT detail FROM audit WHERE action = 'rollout.wave' ORDER BY seq")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert!(details[0].starts_with("2 placements"), "{details:?}");
    assert!(details[1].starts_with("5 placements"), "{details:?}");
    assert!(details[2].starts_with("2 placements"), "{details:?}");
    assert!(details[3].starts_with("3 placements"), "{details:?}");
    // Every tenant has the new field.
    for tier in ["free", "standard", "premium"] {
        let client = admin.with_tenant(tid(&format!("{tier}-1")));
        let created = client
            .create_record(&notes(), &json!({"title": "x", "kind": "set"}))
            .await
            .unwrap();
        assert_eq!(created["kind"], "set");
    }
    // A rollout nobody has to wait for (no tenant is behind) is done as it is made.
    let again = admin
        .put_collection(&CollectionName::parse("empty").unwrap(), &notes_spec(false))
        .await
        .unwrap();
    let r = again.rollout.unwrap();
    assert!(r.state == "done" || r.placements_left == 0, "{r:?}");
    // Unknown rollouts are 404; tenant credentials cannot read rollouts.
    let missing = admin.get_rollout("ro-nope").await.unwrap_err();
    assert_eq!(missing.status(), Some(404));
    let key = common::key(&admin, "free-0", bulkhead_core::access::TenantRole::Admin).await;
    let denied = server
        .client(&key)
        .get_rollout(&rollout.id)
        .await
        .unwrap_err();
    assert_eq!(denied.status(), Some(403), "{denied}");
}

/// `kill -9` in the middle of a rollout: after the restart the same rollout is still there,
/// goes on from the placements the ledger says are left (none is done twice: the count of
/// those done never goes back) and ends done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_cut_off_by_kill_9_goes_on_after_the_restart_from_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin();
    admin
        .put_collection(&notes(), &notes_spec(false))
        .await
        .unwrap();
    for i in 0..80 {
        let id = format!("s-{i:02}");
        tenant(&admin, &id, "premium", false).await;
        let body: Vec<u8> = (0..1000)
            .flat_map(|r| format!("{{\"title\":\"record {r}\"}}\n").into_bytes())
            .collect();
        admin
            .with_tenant(tid(&id))
            .bulk(&notes(), body, true)
            .await
            .unwrap();
    }
    // A searchable text field with a default: each silo's search index is rebuilt, so the
    // rollout takes a while.
    let heavy: bulkhead_api::CollectionSpec = serde_json::from_value(json!({"fields": {
        "title": {"type": "text"},
        "note": {"type": "text", "default": "zebra"}
    }}))
    .unwrap();
    let submitted = admin.submit_collection(&notes(), &heavy).await.unwrap();
    let rollout = submitted.rollout.unwrap();
    assert_eq!(rollout.placements_total, 80);
    // Killed once some placements have it and some do not.
    let before = loop {
        let view = admin.get_rollout(&rollout.id).await.unwrap();
        if view.placements_done > 0 {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    server.kill_hard();
    assert!(
        before.placements_left > 0,
        "the rollout ended before the crash: {before:?}"
    );
    let server = Server::start(dir.path());
    let admin = server.admin();
    let after = admin.get_rollout(&rollout.id).await.unwrap();
    assert!(
        after.placements_done >= before.placements_done,
        "the ledger lost progress: {before:?} then {after:?}"
    );
    assert!(
        after.placements_left > 0,
        "the crash did not cut the rollout off: {after:?}"
    );
    let mut seen = Vec::new();
    let done = until_done(&admin, &rollout.id, &mut seen).await;
    assert_eq!(done.placements_done, 80);
    let mut last = 0;
    for view in &seen {
        assert!(
            view.placements_done >= last,
            "progress went back: {seen:#?}"
        );
        last = view.placements_done;
    }
}

/// The failure policy: with a PostgreSQL domain down, a rollout that fails more placements
/// than allowed stops (audited), leaves them on their definitions (no retry, even once the
/// database is back) until `resume`, then finishes. A done rollout cannot be cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn past_its_failure_limit_a_rollout_stops_until_resumed() {
    let Some(pg) = bulkhead_pg_testkit::require("rollout_failure_policy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            ("BULKHEAD_ROLLOUT_MAX_FAILURES", "1"),
            ("BULKHEAD_ROLLOUT_TIER_ORDER", "premium,pg-bridge"),
        ],
    );
    let admin = server.admin();
    common::put_pg_domain(&admin, &pg.url("postgres"), None).await;
    common::put_pg_tier(
        &admin,
        "pg-bridge",
        bulkhead_core::model::Isolation::Bridge,
        Default::default(),
    )
    .await;
    admin
        .put_collection(&notes(), &notes_spec(false))
        .await
        .unwrap();
    for i in 0..3 {
        tenant(&admin, &format!("pg-{i}"), "pg-bridge", false).await;
        tenant(&admin, &format!("local-{i}"), "premium", false).await;
    }
    pg.pause().unwrap();
    let rollout = admin
        .submit_collection(&notes(), &notes_spec(true))
        .await
        .unwrap()
        .rollout
        .unwrap();
    let stopped = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let view = admin.get_rollout(&rollout.id).await.unwrap();
            if view.state == "stopped" {
                break view;
            }
            assert!(Instant::now() < deadline, "never stopped: {view:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(stopped.placements_left, 3, "{stopped:?}");
    assert!(
        stopped
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("stopped after"),
        "{stopped:?}"
    );
    // The client waiting on it says so.
    let waited = admin.wait_rollout(&rollout.id).await.unwrap_err();
    assert_eq!(waited.code(), Some("rollout_stopped"), "{waited}");
    assert_eq!(
        audit_rows(&server.data_dir, |r| r.1 == "rollout.stopped").len(),
        1
    );
    // The database comes back; a stopped rollout is not retried on its own.
    pg.resume().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = admin.get_rollout(&rollout.id).await.unwrap();
    assert_eq!(
        (still.state.as_str(), still.placements_left),
        ("stopped", 3)
    );
    // Those tenants serve with the definition their storage has.
    admin
        .with_tenant(tid("pg-0"))
        .create_record(&notes(), &json!({"title": "old definition"}))
        .await
        .unwrap();
    let resumed = admin.resume_rollout(&rollout.id).await.unwrap();
    assert_eq!(resumed.state, "running");
    let mut seen = Vec::new();
    let done = until_done(&admin, &rollout.id, &mut seen).await;
    assert_eq!(done.placements_done, 6);
    let refused = admin.cancel_rollout(&rollout.id).await.unwrap_err();
    assert_eq!(refused.code(), Some("rollout_state"), "{refused}");
    assert_eq!(
        audit_rows(&server.data_dir, |r| r.1 == "rollout.resume").len(),
        1
    );
}

/// A rollout holds the schema lock a chunk of placements at a time, never for the whole pass:
/// a tenant created and one deleted while a long rollout runs are done long before it is,
/// and the new tenant starts on the new definition.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_are_created_and_deleted_while_a_long_rollout_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_ROLLOUT_PARALLELISM", "1")]);
    let admin = server.admin();
    admin
        .put_collection(&notes(), &notes_spec(false))
        .await
        .unwrap();
    silos(&admin, 8, 60).await;
    let rollout = admin
        .submit_collection(&notes(), &notes_spec(true))
        .await
        .unwrap()
        .rollout
        .unwrap();
    tenant(&admin, "newcomer", "premium", false).await;
    admin.delete_tenant(&tid("silo-3-07")).await.unwrap();
    let meanwhile = admin.get_rollout(&rollout.id).await.unwrap();
    assert_eq!(meanwhile.state, "running", "{meanwhile:?}");
    assert!(meanwhile.placements_left > 100, "{meanwhile:?}");
    // The newcomer serves the new field at once.
    admin
        .with_tenant(tid("newcomer"))
        .create_record(&notes(), &json!({"title": "t", "kind": "new"}))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let done = until_done(&admin, &rollout.id, &mut seen).await;
    assert_eq!(done.placements_left, 0, "{done:?}");
    assert_eq!(done.placements_failed, 0, "{done:?}");
    admin
        .with_tenant(tid("silo-7-59"))
        .create_record(&notes(), &json!({"title": "t", "kind": "new"}))
        .await
        .unwrap();
}

/// An operator changes a collection again while the first change still rolls out, and a
/// tenant is deleted and re-created under its id meanwhile: the runner brings every placement
/// (pool, bridge and silo) to the newest definition, each change's fields with their defaults
/// on the records written before either, both rollouts end `done`, and the re-created tenant
/// starts empty on the newest definition.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_change_and_a_re_creation_during_a_rollout_leave_every_tenant_on_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_ROLLOUT_PARALLELISM", "1")]);
    let admin = server.admin();
    admin
        .put_collection(&notes(), &notes_spec(false))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push((format!("pool-{i}"), "free"));
        ids.push((format!("bridge-{i}"), "standard"));
    }
    for chunk in 0..6 {
        for i in 0..40 {
            ids.push((format!("silo-{chunk}-{i:02}"), "premium"));
        }
    }
    let mut creating = tokio::task::JoinSet::new();
    for part in ids.chunks(ids.len().div_ceil(8)) {
        let (admin, part) = (admin.clone(), part.to_vec());
        creating.spawn(async move {
            for (id, tier) in part {
                tenant(&admin, &id, tier, false).await;
                admin
                    .with_tenant(tid(&id))
                    .create_record(&notes(), &json!({"id": "before", "title": "t"}))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = creating.join_next().await {
        done.unwrap();
    }
    let first = admin
        .submit_collection(&notes(), &notes_spec(true))
        .await
        .unwrap()
        .rollout
        .unwrap();
    let again = "silo-4-17";
    admin.delete_tenant(&tid(again)).await.unwrap();
    tenant(&admin, again, "premium", false).await;
    let mut newest = notes_spec(true);
    newest.fields.insert(
        bulkhead_core::FieldName::parse("size").unwrap(),
        serde_json::from_value(json!({"type": "integer", "default": 7, "index": true})).unwrap(),
    );
    let second = admin
        .submit_collection(&notes(), &newest)
        .await
        .unwrap()
        .rollout
        .unwrap();
    let meanwhile = admin.get_rollout(&first.id).await.unwrap();
    assert!(
        meanwhile.placements_left > 50,
        "the second change came while the first rolled out: {meanwhile:?}"
    );
    assert_ne!(first.id, second.id);
    let mut seen = Vec::new();
    let done = until_done(&admin, &second.id, &mut seen).await;
    assert_eq!(done.placements_failed, 0, "{done:?}");
    let first_done = until_done(&admin, &first.id, &mut seen).await;
    assert_eq!(first_done.placements_left, 0, "{first_done:?}");
    assert_eq!(
        admin
            .get_collection(&notes())
            .await
            .unwrap()
            .placements_behind,
        Some(0)
    );
    for (id, _) in &ids {
        let client = admin.with_tenant(tid(id));
        client
            .create_record(
                &notes(),
                &json!({"id": "after", "title": "t", "kind": "x", "size": 3}),
            )
            .await
            .unwrap_or_else(|e| panic!("{id}: the newest fields are served: {e}"));
        let page = client
            .list_records(
                &notes(),
                &bulkhead_client::ListRecords {
                    filter: Some("size = 7 && kind = \"k\"".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let found: Vec<&str> = page
            .items
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        let expected: &[&str] = if id == again { &[] } else { &["before"] };
        assert_eq!(
            found, expected,
            "{id}: records written before both changes have both defaults; a re-created tenant starts empty"
        );
    }
}

/// A write that needs what a rollout has not brought to its tenant yet (a new field, a new
/// collection) does not answer `503 schema_rolling_out`: its tenant's placement goes first,
/// ahead of the rollout, and the write lands. Single writes and a bulk body, silo and pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_needing_what_a_rollout_has_not_brought_yet_brings_its_tenant_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_ROLLOUT_PARALLELISM", "1")]);
    let admin = server.admin();
    admin
        .put_collection(&notes(), &notes_spec(false))
        .await
        .unwrap();
    silos(&admin, 8, 25).await;
    tenant(&admin, "zz-silo", "premium", false).await;
    tenant(&admin, "zz-pool", "free", false).await;
    let field = admin
        .submit_collection(&notes(), &notes_spec(true))
        .await
        .unwrap()
        .rollout
        .unwrap();
    // The new field, on tenants the rollout reaches last.
    for id in ["zz-silo", "zz-pool"] {
        admin
            .with_tenant(tid(id))
            .create_record(&notes(), &json!({"title": "t", "kind": "new"}))
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
    }
    // And a bulk body using it, on a tenant the rollout has not reached either.
    let report = admin
        .with_tenant(tid("silo-7-24"))
        .bulk(
            &notes(),
            b"{\"title\": \"b\", \"kind\": \"x\"}\n".to_vec(),
            false,
        )
        .await
        .unwrap();
    assert_eq!((report.created, report.failed), (1, 0), "{report:?}");
    let meanwhile = admin.get_rollout(&field.id).await.unwrap();
    assert!(
        meanwhile.placements_left > 50,
        "the writes went ahead of the rollout: {meanwhile:?}"
    );
    let mut seen = Vec::new();
    until_done(&admin, &field.id, &mut seen).await;
    // A new collection, by a bulk body, likewise.
    let fresh = CollectionName::parse("fresh").unwrap();
    let added = admin
        .submit_collection(&fresh, &notes_spec(true))
        .await
        .unwrap()
        .rollout
        .unwrap();
    for id in ["zz-silo", "zz-pool"] {
        let report = admin
            .with_tenant(tid(id))
            .bulk(
                &fresh,
                b"{\"title\": \"a\"}\n{\"title\": \"b\", \"kind\": \"x\"}\n".to_vec(),
                false,
            )
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!((report.created, report.failed), (2, 0), "{id}: {report:?}");
    }
    let meanwhile = admin.get_rollout(&added.id).await.unwrap();
    assert!(meanwhile.placements_left > 50, "{meanwhile:?}");
    let done = until_done(&admin, &added.id, &mut seen).await;
    assert_eq!(done.placements_failed, 0, "{done:?}");
    admin
        .with_tenant(tid("silo-0-00"))
        .create_record(&fresh, &json!({"title": "t", "kind": "k2"}))
        .await
        .unwrap();
}

/// A rollout paces itself by the latency of its domain's requests (the same controller as a
/// move's copy): while they are far slower than just before it, it slows down, says why in
/// `GET /v1/rollouts/{id}`, and still finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_slows_down_while_its_domains_requests_are_slower_than_before_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU8, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            ("BULKHEAD_ROLLOUT_PARALLELISM", "1"),
            ("BULKHEAD_ROLLOUT_PACE_TARGET", "1.3"),
            ("BULKHEAD_ROLLOUT_PACE_FLOOR", "0.05"),
        ],
    );
    let admin = server.admin();
    admin
        .put_collection(&notes(), &notes_spec(false))
        .await
        .unwrap();
    for i in 0..40 {
        tenant(&admin, &format!("silo-{i:02}"), "premium", false).await;
    }
    // A neighbour in the pool, on the same domain, with enough records for a slow query.
    common::create_tenant(&admin, "neighbour", "free").await;
    let neighbour = server.client(
        &common::key(
            &admin,
            "neighbour",
            bulkhead_core::access::TenantRole::Admin,
        )
        .await,
    );
    let body: Vec<u8> = (0..20_000)
        .flat_map(|i| {
            format!(
                "{{\"id\":\"r{i:05}\",\"title\":\"t{}\"}}\n",
                i * 7919 % 20_000
            )
            .into_bytes()
        })
        .collect();
    neighbour.bulk(&notes(), body, true).await.unwrap();
    // 0: fast reads by id; 1: a full-text search matching thousands; 2: stop.
    let mode = Arc::new(AtomicU8::new(0));
    // Four loops, so the pace has enough neighbour requests to judge by even when the searches
    // are slow (other tests of this binary share the two CPUs).
    let traffic: Vec<_> = (0..4)
        .map(|_| {
            let (neighbour, mode) = (neighbour.clone(), Arc::clone(&mode));
            tokio::spawn(async move {
                let mut i = 0;
                loop {
                    match mode.load(Ordering::Relaxed) {
                        0 => {
                            let id = bulkhead_core::RecordId::parse(&format!("r{:05}", i % 1000))
                                .unwrap();
                            neighbour.get_record(&notes(), &id).await.unwrap();
                        }
                        1 => {
                            let query = bulkhead_client::ListRecords {
                                q: Some("t1*".into()),
                                limit: Some(200),
                                ..Default::default()
                            };
                            neighbour.list_records(&notes(), &query).await.unwrap();
                        }
                        _ => return,
                    }
                    i += 1;
                }
            })
        })
        .collect();
    // The baseline: the 10 s before the rollout's pass, mostly fast reads.
    tokio::time::sleep(Duration::from_secs(8)).await;
    mode.store(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rollout = admin
        .submit_collection(&notes(), &notes_spec(true))
        .await
        .unwrap()
        .rollout
        .unwrap();
    let mut seen = Vec::new();
    let done = until_done(&admin, &rollout.id, &mut seen).await;
    mode.store(2, Ordering::Relaxed);
    for t in traffic {
        t.await.unwrap();
    }
    assert_eq!(done.placements_left, 0);
    assert!(done.pace.is_none(), "no pace once done: {done:?}");
    let slowed: Vec<_> = seen
        .iter()
        .filter_map(|v| v.pace.as_deref())
        .filter(|p| p.ratio.is_some_and(|r| r > p.target_ratio) && p.duty < 0.5)
        .collect();
    let paces: Vec<_> = seen.iter().filter_map(|v| v.pace.as_deref()).collect();
    assert!(
        !slowed.is_empty(),
        "the rollout never slowed down for its neighbours: {paces:?}"
    );
    let pace = slowed.last().unwrap();
    assert_eq!(pace.group.as_deref(), Some("domain"), "{pace:?}");
    assert_eq!(pace.target_ratio, 1.3);
    assert!(pace.reason.contains("neighbours on the domain"), "{pace:?}");
}
