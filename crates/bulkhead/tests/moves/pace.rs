//! A move paces its copy by its neighbours' latency: the moving tenant's tier sets the
//! target and the floor, and `GET /v1/moves/{id}` shows the pace and why while neighbours
//! write (the controller's reactions themselves are tested deterministically in
//! `bulkhead-pace`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{Isolation, MovePhase};

use super::{FAST, start, workload};
use crate::common::{Server, cli, create_tenant, key, put_items};

#[tokio::test]
async fn the_tier_sets_the_pace_and_the_move_shows_it_while_neighbours_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = FAST.to_vec();
    // Small pages: many steps, each a chance for the pace to be seen.
    env.push(("BULKHEAD_MOVE_CHUNK", "50"));
    let server = Server::start_with(dir.path(), &env);
    let admin = server.admin();
    put_items(&admin).await;

    // Bad settings are refused, naming the setting.
    for (flag, value, named) in [
        ("--pace-target", "1", "pace.target_ratio"),
        ("--pace-target", "101", "pace.target_ratio"),
        ("--pace-floor", "0", "pace.floor"),
        ("--pace-floor", "1.5", "pace.floor"),
    ] {
        let (ok, out) = cli(
            &server,
            &["tier", "put", "paced", "--isolation", "pool", flag, value],
        );
        assert!(
            !ok && out.contains(named) && out.contains("invalid_tier"),
            "{out}"
        );
    }
    let (ok, out) = cli(
        &server,
        &[
            "tier",
            "put",
            "paced",
            "--isolation",
            "pool",
            "--pace-target",
            "1.3",
            "--pace-floor",
            "0.1",
            "--json",
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("\"target_ratio\": 1.3") || out.contains("\"target_ratio\":1.3"),
        "{out}"
    );

    create_tenant(&admin, "mover", "paced").await;
    create_tenant(&admin, "neighbour", "free").await;
    let mover = server.client(&key(&admin, "mover", TenantRole::Member).await);
    let neighbour = server.client(&key(&admin, "neighbour", TenantRole::Member).await);
    workload::seed(&mover, "m", 8000).await;
    let seeded = workload::seed(&neighbour, "nb", 300).await;

    // The neighbour writes before the move (its baseline) and all through it.
    let stop = Arc::new(AtomicBool::new(false));
    let writers = tokio::spawn(workload::run(
        neighbour.clone(),
        "nb",
        3,
        seeded,
        Arc::clone(&stop),
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = start(&admin, "mover", Isolation::Silo, None).await;
    let mut paces = Vec::new();
    let done = loop {
        let view = admin.get_move(&started.id).await.unwrap();
        if view.phase.is_final() {
            break view;
        }
        if let Some(pace) = view.pace.clone() {
            paces.push((view.phase, pace));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let report = writers.await.unwrap();
    assert_eq!(done.phase, MovePhase::Done, "{done:?}\n{}", server.log());
    assert!(done.pace.is_none(), "no pace once the move is over");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    workload::assert_matches(
        "neighbour",
        &workload::stored(&neighbour).await,
        &report.model,
    );

    assert!(!paces.is_empty(), "the pace was shown while copying");
    let mut last = String::new();
    for (phase, pace) in &paces {
        if pace.reason != last {
            eprintln!("{phase}: duty {:.3}: {}", pace.duty, pace.reason);
            last.clone_from(&pace.reason);
        }
    }
    for (phase, pace) in &paces {
        assert!(
            matches!(
                phase,
                MovePhase::Copying | MovePhase::CatchingUp | MovePhase::Verifying
            ),
            "{phase}"
        );
        assert_eq!(pace.target_ratio, 1.3, "the tier's target");
        assert!(
            (0.1 - 1e-9..=0.75 + 1e-9).contains(&pace.duty),
            "between the tier's floor and the server's ceiling: {pace:?}"
        );
        assert!(!pace.reason.is_empty());
        assert!(
            ["unwatched", "measuring", "slowing", "holding", "rising"]
                .contains(&pace.state.as_str()),
            "{pace:?}"
        );
    }
    // The neighbour's requests were seen, against a baseline from before the move.
    let watched: Vec<_> = paces
        .iter()
        .filter(|(_, p)| p.baseline_ms.is_some() && p.samples > 0)
        .collect();
    assert!(
        !watched.is_empty(),
        "the neighbours were watched: {:?}",
        paces.iter().map(|(_, p)| &p.reason).collect::<Vec<_>>()
    );
    let (_, p) = watched[0];
    assert!(p.p99_ms.unwrap() > 0.0 && p.ratio.unwrap() > 0.0, "{p:?}");
    assert!(p.group.is_some(), "{p:?}");
    assert!(p.reason.contains("neighbours on the"), "{p:?}");
}
