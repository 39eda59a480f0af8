//! A schema change while a live move sits in each of its phases never rolls the move back.

#[allow(unused_imports)]
use super::*;

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
                    incarnation: None,
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
