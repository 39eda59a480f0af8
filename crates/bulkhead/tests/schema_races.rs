//! A schema change racing writes: records written while an indexed text field with a default is
//! added — by single writes and by a bulk in flight, in every model, on SQLite and on
//! PostgreSQL — are all found by a search for that default afterwards (the schema fence), and
//! no write fails for it.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bulkhead_client::{Client, ListRecords};
use bulkhead_core::CollectionName;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::Isolation;
use common::{Server, create_tenant, key, put_pg_domain, put_pg_tier};
use serde_json::json;

fn notes() -> CollectionName {
    CollectionName::parse("notes").unwrap()
}

/// The collection every test here starts from: one text field.
async fn put_notes(admin: &Client) {
    admin
        .put_collection(
            &notes(),
            &serde_json::from_value(json!({"fields": {"title": {"type": "text"}}})).unwrap(),
        )
        .await
        .unwrap();
}

/// Domain `pg` on `pg`, with tiers `pg-pool`, `pg-bridge` and `pg-silo` placing tenants there.
async fn pg_models(admin: &Client, pg: &bulkhead_pg_testkit::PgServer) {
    put_pg_domain(admin, &pg.url("postgres"), None).await;
    for (isolation, name) in [
        (Isolation::Pool, "pg-pool"),
        (Isolation::Bridge, "pg-bridge"),
        (Isolation::Silo, "pg-silo"),
    ] {
        put_pg_tier(admin, name, isolation, Default::default()).await;
    }
}

/// `/readyz` lists no placement waiting for a schema rollout.
async fn no_placement_waits(admin: &Client) {
    let ready = admin.ready().await.unwrap();
    assert!(
        ready.problems.iter().all(|p| !p.contains("schema rollout")),
        "{ready:?}"
    );
}

/// Every id `client` finds in `notes`, with a search when `q` is given.
async fn ids(client: &Client, q: Option<&str>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor = None;
    loop {
        let page = client
            .list_records(
                &notes(),
                &ListRecords {
                    q: q.map(str::to_owned),
                    limit: Some(1000),
                    cursor,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        out.extend(
            page.items
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

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

/// A field and a collection added while a move copies, catches up or verifies: the move ends
/// `done` (never rolled back), every record is there, the new field reads its default and
/// the new collection works on the tenant's new placement.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_during_each_move_phase_never_rolls_the_move_back() {
    change_during_each_move_phase(None, false).await;
}

/// Into a pool the change reaches (through a neighbour) while the move copies: the pool's
/// tables are newer than the definitions the move started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_that_reaches_the_target_pool_during_each_move_phase_never_rolls_the_move_back() {
    change_during_each_move_phase(None, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_a_change_that_reaches_the_target_pool_during_a_move_never_rolls_it_back() {
    let Some(pg) = bulkhead_pg_testkit::require("postgres_change_reaching_target_pool") else {
        return;
    };
    change_during_each_move_phase(Some(&pg), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_a_change_during_each_move_phase_never_rolls_the_move_back() {
    let Some(pg) = bulkhead_pg_testkit::require("postgres_change_during_move") else {
        return;
    };
    change_during_each_move_phase(Some(&pg), false).await;
}

/// Moves a pool tenant to a silo (on `pg` when given: its pool to its silo) and changes the
/// schema while the move sits in each phase. `into_pool` turns it round: a silo tenant moves
/// into a pool whose neighbour the change reaches before the move goes on.
async fn change_during_each_move_phase(
    pg: Option<&bulkhead_pg_testkit::PgServer>,
    into_pool: bool,
) {
    use bulkhead_api::StartMove;
    use bulkhead_core::model::MovePhase;
    for (phase, hold) in [
        ("copying", MovePhase::Copying),
        ("catching_up", MovePhase::CatchingUp),
        ("verifying", MovePhase::Verifying),
    ] {
        let dir = tempfile::tempdir().unwrap();
        // Into a pool, the hold must outlast the change's rollout to the neighbour (a
        // loaded machine takes seconds on PostgreSQL).
        let hold_ms = if into_pool { 6_000 } else { 1_500 };
        let hold_env = format!("{phase}:{hold_ms}");
        let server = Server::start_with(
            dir.path(),
            &[
                ("BULKHEAD_MOVE_HOLD", hold_env.as_str()),
                ("BULKHEAD_MOVE_DRAIN_GRACE_MS", "100"),
            ],
        );
        let admin = server.admin();
        let (pool_tier, silo_tier, to_domain) = match pg {
            Some(pg) => {
                // A database of its own each round: the last round's pool is newer than this
                // round's fresh catalog.
                let database = format!("round_{phase}");
                pg.psql("postgres", &format!("CREATE DATABASE {database}"))
                    .unwrap();
                put_pg_domain(&admin, &pg.url(&database), None).await;
                for (isolation, name) in
                    [(Isolation::Pool, "pg-pool"), (Isolation::Silo, "pg-silo")]
                {
                    put_pg_tier(&admin, name, isolation, Default::default()).await;
                }
                (
                    "pg-pool",
                    "pg-silo",
                    Some(bulkhead_core::DomainName::parse("pg").unwrap()),
                )
            }
            None => ("free", "premium", None),
        };
        let (from_tier, to) = if into_pool {
            (silo_tier, Isolation::Pool)
        } else {
            (pool_tier, Isolation::Silo)
        };
        put_notes(&admin).await;
        create_tenant(&admin, "mover", from_tier).await;
        let neighbour = if into_pool {
            create_tenant(&admin, "neighbour", pool_tier).await;
            let n = server.client(&key(&admin, "neighbour", TenantRole::Member).await);
            n.create_record(&notes(), &json!({"title": "next door"}))
                .await
                .unwrap();
            Some(n)
        } else {
            None
        };
        let client = server.client(&key(&admin, "mover", TenantRole::Member).await);
        let body: Vec<u8> = (0..3000)
            .flat_map(|n| format!("{{\"id\":\"r{n}\",\"title\":\"before\"}}\n").into_bytes())
            .collect();
        assert_eq!(
            client.bulk(&notes(), body, true).await.unwrap().created,
            3000
        );
        let started = admin
            .start_move(
                &common::tid("mover"),
                &StartMove {
                    isolation: Some(to),
                    domain: to_domain.clone(),
                },
            )
            .await
            .unwrap();
        // Wait for the held phase, then change the schema while the move sits in it.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let view = admin.get_move(&started.id).await.unwrap();
            if view.phase == hold {
                break;
            }
            assert!(
                !view.phase.is_final(),
                "move ended before {phase}: {view:?}"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "move never reached {phase}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A write during the move, then the change.
        client
            .create_record(&notes(), &json!({"id": "during", "title": "during"}))
            .await
            .unwrap();
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
            .unwrap();
        let extra = CollectionName::parse("extra").unwrap();
        admin
            .put_collection(
                &extra,
                &serde_json::from_value(json!({"fields": {"x": {"type": "integer"}}})).unwrap(),
            )
            .await
            .unwrap();
        if let Some(n) = &neighbour {
            // The change reaches the pool (through the neighbour) while the move still holds.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while let Err(e) = n
                .create_record(&notes(), &json!({"title": "later", "kind": "gnu"}))
                .await
            {
                assert_eq!(e.code(), Some("schema_rolling_out"), "{e}");
                assert!(
                    std::time::Instant::now() < deadline,
                    "the pool never got the change"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let view = admin.get_move(&started.id).await.unwrap();
            assert_eq!(
                view.phase, hold,
                "the change reached the pool within the hold"
            );
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let done = loop {
            let view = admin.get_move(&started.id).await.unwrap();
            if view.phase.is_final() {
                break view;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "move stuck in {}",
                view.phase
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            done.phase,
            MovePhase::Done,
            "a change during {phase} rolled the move back: {done:?}\n{}",
            server.log()
        );
        let all = ids(&client, None).await;
        assert_eq!(all.len(), 3001, "every record moved ({phase})");
        let found = ids(&client, Some("zebra")).await;
        assert_eq!(
            found.len(),
            3001,
            "the new field's default is searchable ({phase})"
        );
        let after = client
            .create_record(&notes(), &json!({"title": "after", "kind": "okapi"}))
            .await
            .unwrap();
        assert_eq!(after["kind"], "okapi");
        client
            .create_record(&extra, &json!({"x": 1}))
            .await
            .unwrap_or_else(|e| panic!("the new collection on the moved tenant ({phase}): {e}"));
        no_placement_waits(&admin).await;
    }
}

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
    if admin.get_tenant(&common::tid("late")).await.is_ok() {
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
                Err(e) if e.to_string().contains("500") || e.to_string().contains("internal") => {
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
