//! Moves on a shared PostgreSQL catalog: several `serve` processes take writes for the moving
//! tenant while one of them runs the move, and both list the moves.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bulkhead_api::MoveListQuery;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{Isolation, MovePhase, TenantStatus};

use crate::common::{Server, create_tenant, key, put_items, tid};
use crate::{start, wait_for, workload};

/// Short leases, so lost servers are noticed within seconds.
const LEASES: [(&str, &str); 3] = [
    ("BULKHEAD_MOVE_DRAIN_GRACE_MS", "100"),
    ("BULKHEAD_SERVER_LEASE_MS", "1000"),
    ("BULKHEAD_SERVER_SILENT_MS", "3000"),
];

fn server(dir: &Path, name: &str, catalog: &str, extra: &[(&str, &str)]) -> Server {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut env = vec![("BULKHEAD_CATALOG", catalog)];
    env.extend(LEASES);
    env.extend(extra);
    Server::start_with(&dir, &env)
}

fn halves(model: workload::Model) -> (workload::Model, workload::Model) {
    let (mut a, mut b) = (workload::Model::new(), workload::Model::new());
    for (i, (k, v)) in model.into_iter().enumerate() {
        if i % 2 == 0 { &mut a } else { &mut b }.insert(k, v);
    }
    (a, b)
}

#[tokio::test]
async fn moves_run_on_one_server_while_both_take_writes_and_nothing_is_lost() {
    let Some(pg) = bulkhead_pg_testkit::require("moves_on_a_shared_catalog") else {
        return;
    };
    pg.psql("postgres", "CREATE DATABASE bulkhead").unwrap();
    let catalog = pg.url("bulkhead");
    let dir = tempfile::tempdir().unwrap();
    let a = server(dir.path(), "a", &catalog, &[]);
    let b = server(dir.path(), "b", &catalog, &[]);
    let (admin_a, admin_b) = (a.admin(), b.admin());
    put_items(&admin_a).await;
    create_tenant(&admin_a, "mover", "free").await;
    create_tenant(&admin_a, "neighbour", "free").await;
    let mover_key = key(&admin_a, "mover", TenantRole::Member).await;
    let neighbour_key = key(&admin_a, "neighbour", TenantRole::Member).await;
    let (mover_a, mover_b) = (a.client(&mover_key), b.client(&mover_key));
    let neighbour = b.client(&neighbour_key);
    let seeded = workload::seed(&mover_a, "m", 1500).await;
    let (mut on_a, mut on_b) = halves(seeded);
    let mut on_neighbour = workload::seed(&neighbour, "nb", 200).await;

    // Each move is started on one server and followed on the other.
    for (to, starter, follower) in [
        (Isolation::Bridge, &admin_a, &admin_b),
        (Isolation::Pool, &admin_b, &admin_a),
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let writers = [
            tokio::spawn(workload::run(
                mover_a.clone(),
                "ma",
                2,
                on_a.clone(),
                Arc::clone(&stop),
            )),
            tokio::spawn(workload::run(
                mover_b.clone(),
                "mb",
                2,
                on_b.clone(),
                Arc::clone(&stop),
            )),
            tokio::spawn(workload::run(
                neighbour.clone(),
                "nb",
                2,
                on_neighbour.clone(),
                Arc::clone(&stop),
            )),
        ];
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = start(starter, "mover", to, None).await;
        let done = wait_for(follower, &started.id, None).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::Relaxed);
        let mut reports = Vec::new();
        for w in writers {
            reports.push(w.await.unwrap());
        }
        assert_eq!(
            done.phase,
            MovePhase::Done,
            "{done:?}\n{}\n{}",
            a.log(),
            b.log()
        );
        for r in &reports {
            assert!(r.failures.is_empty(), "{:?}", r.failures);
            assert!(r.writes > 10, "writers ran ({} writes)", r.writes);
        }
        let [ra, rb, rn] = <[workload::Report; 3]>::try_from(reports).unwrap();
        eprintln!(
            "pool/bridge -> {to}: writes on A {} (held out {}), on B {} (held out {}), held {:?} ms",
            ra.writes, ra.held_out, rb.writes, rb.held_out, done.freeze_ms
        );
        let mut expected = ra.model.clone();
        expected.extend(rb.model.clone());
        // Read back through both servers: the same records, exactly what was acknowledged.
        workload::assert_matches(
            "moving tenant via A",
            &workload::stored(&mover_a).await,
            &expected,
        );
        workload::assert_matches(
            "moving tenant via B",
            &workload::stored(&mover_b).await,
            &expected,
        );
        workload::assert_matches("neighbour", &workload::stored(&neighbour).await, &rn.model);
        (on_a, on_b, on_neighbour) = (ra.model, rb.model, rn.model);
        let t = admin_b.get_tenant(&tid("mover")).await.unwrap();
        assert_eq!(
            (t.placement.isolation, t.status),
            (to, TenantStatus::Active)
        );
    }
    // Both servers list both moves from the one catalog, newest first, a page at a time;
    // none is active any more.
    for admin in [&admin_a, &admin_b] {
        let mut listed = Vec::new();
        let mut cursor = None;
        loop {
            let page = admin
                .list_all_moves(&MoveListQuery {
                    tenant: Some(tid("mover")),
                    limit: Some(1),
                    cursor,
                    ..Default::default()
                })
                .await
                .unwrap();
            listed.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let targets: Vec<Isolation> = listed.iter().map(|m| m.target.isolation).collect();
        assert_eq!(targets, [Isolation::Pool, Isolation::Bridge], "{listed:?}");
        let active = admin
            .list_all_moves(&MoveListQuery {
                active: Some(true),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(active.items.is_empty(), "{active:?}");
    }
    // The one audit log has every phase of both moves, and nothing servers exchanged about
    // them is left behind.
    let phases = pg
        .psql(
            "bulkhead",
            "SELECT action FROM bulkhead_catalog.audit WHERE action LIKE 'move.%' ORDER BY seq",
        )
        .unwrap();
    for phase in ["move.copying", "move.frozen", "move.switched", "move.done"] {
        assert_eq!(
            phases.matches(&format!("{phase}\n")).count(),
            2,
            "{phase}: {phases}"
        );
    }
    let left = pg
        .psql(
            "bulkhead",
            "SELECT (SELECT count(*) FROM bulkhead_catalog.move_journal) + (SELECT count(*) FROM bulkhead_catalog.move_acks)",
        )
        .unwrap();
    assert_eq!(left.trim(), "0", "journal and acknowledgements cleared");
}

#[tokio::test]
async fn a_silent_executor_is_adopted_and_a_silent_writer_rolls_the_move_back() {
    let Some(pg) = bulkhead_pg_testkit::require("moves_with_lost_servers") else {
        return;
    };
    pg.psql("postgres", "CREATE DATABASE bulkhead").unwrap();
    let catalog = pg.url("bulkhead");
    let dir = tempfile::tempdir().unwrap();
    // A holds its moves in `copying`; B holds its moves in `catching_up` for 3 s.
    let mut a = server(
        dir.path(),
        "a",
        &catalog,
        &[("BULKHEAD_MOVE_HOLD", "copying:60000")],
    );
    let b = server(
        dir.path(),
        "b",
        &catalog,
        &[("BULKHEAD_MOVE_HOLD", "catching_up:3000")],
    );
    let admin_b = b.admin();
    put_items(&admin_b).await;
    create_tenant(&admin_b, "mover", "free").await;
    let token = key(&admin_b, "mover", TenantRole::Member).await;
    let on_b = b.client(&token);
    let seeded = workload::seed(&on_b, "m", 300).await;

    // A runs the move and dies mid-copy: B adopts it once A has been silent, and rolls it
    // back; writes through B go on the whole time and all of them stay.
    let stop = Arc::new(AtomicBool::new(false));
    let writers = tokio::spawn(workload::run(
        on_b.clone(),
        "mb",
        2,
        seeded,
        Arc::clone(&stop),
    ));
    let started = start(&a.admin(), "mover", Isolation::Bridge, None).await;
    wait_for(&admin_b, &started.id, Some(MovePhase::Copying)).await;
    a.kill_hard();
    let ended = wait_for(&admin_b, &started.id, None).await;
    stop.store(true, Ordering::Relaxed);
    let report = writers.await.unwrap();
    assert_eq!(ended.phase, MovePhase::RolledBack, "{ended:?}\n{}", b.log());
    assert!(
        ended.error.as_deref().unwrap_or("").contains("fell silent"),
        "{ended:?}"
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    workload::assert_matches(
        "after the adopted rollback",
        &workload::stored(&on_b).await,
        &report.model,
    );
    let t = admin_b.get_tenant(&tid("mover")).await.unwrap();
    assert_eq!(
        (t.placement.isolation, t.status),
        (Isolation::Pool, TenantStatus::Active)
    );

    // B runs the next move; C, up when it began, dies before the freeze: its last writes
    // cannot be accounted for, so the move rolls back rather than switch.
    let mut c = server(dir.path(), "c", &catalog, &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = start(&admin_b, "mover", Isolation::Bridge, None).await;
    wait_for(&admin_b, &started.id, Some(MovePhase::CatchingUp)).await;
    c.kill_hard();
    let ended = wait_for(&admin_b, &started.id, None).await;
    assert_eq!(ended.phase, MovePhase::RolledBack, "{ended:?}\n{}", b.log());
    assert!(
        ended.error.as_deref().unwrap_or("").contains("fell silent"),
        "{ended:?}"
    );
    workload::assert_matches(
        "after the refused switch",
        &workload::stored(&on_b).await,
        &report.model,
    );

    // A move B runs is cancelled through another server.
    let d = server(dir.path(), "d", &catalog, &[]);
    let started = start(&admin_b, "mover", Isolation::Bridge, None).await;
    wait_for(&admin_b, &started.id, Some(MovePhase::CatchingUp)).await;
    d.admin().cancel_move(&started.id).await.unwrap();
    let ended = wait_for(&d.admin(), &started.id, None).await;
    assert_eq!(ended.phase, MovePhase::RolledBack, "{ended:?}\n{}", b.log());
    assert!(
        ended
            .error
            .as_deref()
            .unwrap_or("")
            .contains("cancelled by"),
        "{ended:?}"
    );

    // With every server answering, the same move goes through — and a server started in
    // the middle of it journals its writes from its first request.
    let started = start(&admin_b, "mover", Isolation::Bridge, None).await;
    wait_for(&admin_b, &started.id, Some(MovePhase::CatchingUp)).await;
    let e = server(dir.path(), "e", &catalog, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let late = workload::run(
        e.client(&token),
        "me",
        2,
        report.model.clone(),
        Arc::clone(&stop),
    );
    let stopper = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let late = late.await;
    stopper.await.unwrap();
    let ended = wait_for(&admin_b, &started.id, None).await;
    assert_eq!(ended.phase, MovePhase::Done, "{ended:?}\n{}", b.log());
    assert!(late.failures.is_empty(), "{:?}", late.failures);
    assert!(
        late.writes > 10,
        "the late server took writes ({})",
        late.writes
    );
    workload::assert_matches(
        "after the move",
        &workload::stored(&on_b).await,
        &late.model,
    );
    let t = admin_b.get_tenant(&tid("mover")).await.unwrap();
    assert_eq!(t.placement.isolation, Isolation::Bridge);
}

/// The shared catalog goes away while a move copies (its PostgreSQL server stopped): the move
/// fails, and so does its first attempt to roll back, since the rollback is written to the
/// catalog. The server keeps trying: once the catalog is back the move ends rolled back, with
/// no restart, and the tenant is served from where it was with every acknowledged write.
#[tokio::test]
async fn a_move_whose_rollback_meets_a_catalog_outage_ends_once_the_catalog_is_back() {
    let Some(pg) = bulkhead_pg_testkit::require("move_rollback_during_outage") else {
        return;
    };
    pg.psql("postgres", "CREATE DATABASE bulkhead").unwrap();
    let catalog = pg.url("bulkhead");
    let dir = tempfile::tempdir().unwrap();
    let a = server(
        dir.path(),
        "a",
        &catalog,
        &[("BULKHEAD_MOVE_HOLD", "copying:3000")],
    );
    let admin = a.admin();
    put_items(&admin).await;
    create_tenant(&admin, "mover", "free").await;
    let token = key(&admin, "mover", TenantRole::Member).await;
    let tenant = a.client(&token);
    let seeded = workload::seed(&tenant, "m", 200).await;

    let started = start(&admin, "mover", Isolation::Bridge, None).await;
    wait_for(&admin, &started.id, Some(MovePhase::Copying)).await;
    pg.pause().unwrap();
    // The hold ends while the catalog is away: the move fails, and its rollback with it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        a.log().contains("could not end the move; retrying"),
        "the rollback met the outage:\n{}",
        a.log()
    );
    pg.resume().unwrap();
    let ended = wait_for(&admin, &started.id, None).await;
    assert_eq!(ended.phase, MovePhase::RolledBack, "{ended:?}\n{}", a.log());
    let t = admin.get_tenant(&tid("mover")).await.unwrap();
    assert_eq!(
        (t.placement.isolation, t.status),
        (Isolation::Pool, TenantStatus::Active)
    );
    workload::assert_matches(
        "after the rollback",
        &workload::stored(&tenant).await,
        &seeded,
    );
    // The tenant moves again once the catalog is back.
    let again = start(&admin, "mover", Isolation::Bridge, None).await;
    let ended = wait_for(&admin, &again.id, None).await;
    assert_eq!(ended.phase, MovePhase::Done, "{ended:?}\n{}", a.log());
}
