//! `kill -9` in every phase of a move: after a restart the move has ended — rolled back
//! before the switch, finished after it — and the tenant lives in exactly one placement with
//! every acknowledged write. Also: writes held at the switch, and cancel.

use std::time::Duration;

use bulkhead_client::Method;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{Isolation, MovePhase};
use serde_json::json;

use crate::common::{Server, audit_rows, create_tenant, items, key, put_items, tid};
use crate::{FAST, start, wait_for, workload};

/// Rows of `tenant` in the local pool, and whether its local silo file exists.
fn homes(server: &Server, tenant: &str) -> (i64, bool) {
    let local = server.data_dir.join("domains/local");
    let pool = rusqlite::Connection::open(local.join("pool.db")).unwrap();
    let rows: i64 = pool
        .query_row(
            // Storage is named by the tenant's life: `<tenant>_<incarnation>`.
            "SELECT count(*) FROM c_items WHERE substr(tenant_id, 1, length(?1) + 1) = ?1 || '_'",
            [tenant],
            |r| r.get(0),
        )
        .unwrap();
    let silo = std::fs::read_dir(local.join("silos"))
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains(tenant))
        })
        .unwrap_or(false);
    (rows, silo)
}

#[tokio::test]
async fn kill_9_in_every_phase_ends_with_the_tenant_in_exactly_one_place() {
    let phases = [
        MovePhase::Provisioning,
        MovePhase::Copying,
        MovePhase::CatchingUp,
        MovePhase::Verifying,
        MovePhase::Frozen,
        MovePhase::Switched,
        MovePhase::Cleaning,
    ];
    for phase in phases {
        let dir = tempfile::tempdir().unwrap();
        let hold = format!("{phase}:60000");
        let env = [FAST[0], ("BULKHEAD_MOVE_HOLD", hold.as_str())];
        let mut server = Server::start_with(dir.path(), &env);
        let admin = server.admin();
        put_items(&admin).await;
        create_tenant(&admin, "acme", "free").await;
        create_tenant(&admin, "globex", "free").await;
        let token = key(&admin, "acme", TenantRole::Member).await;
        let model = workload::seed(&server.client(&token), "a", 1500).await;
        let neighbour_token = key(&admin, "globex", TenantRole::Member).await;
        let neighbour = workload::seed(&server.client(&neighbour_token), "g", 100).await;
        let started = start(&admin, "acme", Isolation::Silo, None).await;
        let seen = wait_for(&admin, &started.id, Some(phase)).await;
        assert_eq!(seen.phase, phase, "reached the held phase");
        server.kill_hard();

        let server = Server::start_with(dir.path(), FAST);
        let admin = server.admin();
        let ended = wait_for(&admin, &started.id, None).await;
        let tenant = admin.get_tenant(&tid("acme")).await.unwrap();
        let (pool_rows, silo) = homes(&server, "acme");
        if phase >= MovePhase::Switched {
            assert_eq!(
                ended.phase,
                MovePhase::Done,
                "{phase}: finished after the switch"
            );
            assert_eq!(tenant.placement.isolation, Isolation::Silo);
            assert_eq!(
                (pool_rows, silo),
                (0, true),
                "{phase}: only the silo remains"
            );
        } else {
            assert_eq!(
                ended.phase,
                MovePhase::RolledBack,
                "{phase}: rolled back before the switch"
            );
            assert!(
                ended
                    .error
                    .as_deref()
                    .unwrap_or("")
                    .contains("server stopped"),
                "{ended:?}"
            );
            assert_eq!(tenant.placement.isolation, Isolation::Pool);
            assert_eq!(
                (pool_rows, silo),
                (1500, false),
                "{phase}: only the pool remains"
            );
        }
        assert_eq!(tenant.status.to_string(), "active");
        assert_eq!(tenant.placement.write_state.to_string(), "open");
        let client = server.client(&token);
        workload::assert_matches(
            &format!("after kill in {phase}"),
            &workload::stored(&client).await,
            &model,
        );
        workload::assert_matches(
            "neighbour",
            &workload::stored(&server.client(&neighbour_token)).await,
            &neighbour,
        );
        // The tenant takes writes again, and a new move of it can start and finish.
        client
            .create_record(&items(), &json!({"title": "after restart"}))
            .await
            .unwrap();
        let again = start(
            &admin,
            "acme",
            if phase >= MovePhase::Switched {
                Isolation::Bridge
            } else {
                Isolation::Silo
            },
            None,
        )
        .await;
        assert_eq!(
            wait_for(&admin, &again.id, None).await.phase,
            MovePhase::Done
        );
    }
}

#[tokio::test]
async fn writes_wait_at_the_switch_then_get_503_with_retry_after_and_nothing_applied() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        FAST[0],
        ("BULKHEAD_MOVE_HOLD", "frozen:2500"),
        ("BULKHEAD_MOVE_FREEZE_WAIT_MS", "400"),
    ];
    let server = Server::start_with(dir.path(), &env);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    create_tenant(&admin, "globex", "free").await;
    let client = server.client(&key(&admin, "acme", TenantRole::Member).await);
    let neighbour = server.client(&key(&admin, "globex", TenantRole::Member).await);
    workload::seed(&client, "a", 100).await;
    let started = start(&admin, "acme", Isolation::Bridge, None).await;
    wait_for(&admin, &started.id, Some(MovePhase::Frozen)).await;
    let t0 = std::time::Instant::now();
    let held = client
        .raw(
            Method::POST,
            "/v1/collections/items/records",
            Some(json!({"id": "held", "title": "x"}).to_string().into_bytes()),
            Some("application/json"),
        )
        .await
        .unwrap();
    let waited = t0.elapsed();
    assert_eq!(held.status, 503);
    assert_eq!(held.headers.get("retry-after").unwrap(), "1");
    assert_eq!(
        held.json::<serde_json::Value>().unwrap()["error"]["code"],
        "tenant_moving"
    );
    assert!(
        waited >= Duration::from_millis(350),
        "the write waited for the bound first ({waited:?})"
    );
    // Reads go on; the neighbour is not held.
    assert_eq!(
        client
            .get_record(
                &items(),
                &bulkhead_core::RecordId::parse("a-seed-000001").unwrap()
            )
            .await
            .unwrap()["n"],
        1
    );
    neighbour
        .create_record(&items(), &json!({"title": "not held"}))
        .await
        .unwrap();
    // A write that arrives during the freeze and waits less than the bound succeeds on the target.
    let done = wait_for(&admin, &started.id, None).await;
    assert_eq!(done.phase, MovePhase::Done);
    assert!(
        client
            .get_record(&items(), &bulkhead_core::RecordId::parse("held").unwrap())
            .await
            .is_err(),
        "the refused write was not applied"
    );
}

#[tokio::test]
async fn a_write_held_at_the_switch_lands_on_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let env = [FAST[0], ("BULKHEAD_MOVE_HOLD", "frozen:700")];
    let server = Server::start_with(dir.path(), &env);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    let client = server.client(&key(&admin, "acme", TenantRole::Member).await);
    workload::seed(&client, "a", 50).await;
    let started = start(&admin, "acme", Isolation::Silo, None).await;
    wait_for(&admin, &started.id, Some(MovePhase::Frozen)).await;
    let t0 = std::time::Instant::now();
    let created = client
        .create_record(
            &items(),
            &json!({"id": "during", "title": "held then applied"}),
        )
        .await
        .unwrap();
    assert_eq!(created["version"], 1);
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "it was held ({:?})",
        t0.elapsed()
    );
    let done = wait_for(&admin, &started.id, None).await;
    assert_eq!(done.phase, MovePhase::Done);
    assert_eq!(
        admin
            .get_tenant(&tid("acme"))
            .await
            .unwrap()
            .placement
            .isolation,
        Isolation::Silo
    );
    assert_eq!(
        client
            .get_record(&items(), &bulkhead_core::RecordId::parse("during").unwrap())
            .await
            .unwrap()["title"],
        "held then applied"
    );
    assert_eq!(homes(&server, "acme").0, 0, "nothing left in the pool");
}

#[tokio::test]
async fn cancel_before_the_switch_rolls_back_and_after_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let env = [FAST[0], ("BULKHEAD_MOVE_HOLD", "catching_up:1500")];
    let server = Server::start_with(dir.path(), &env);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    let client = server.client(&key(&admin, "acme", TenantRole::Member).await);
    let model = workload::seed(&client, "a", 300).await;
    let started = start(&admin, "acme", Isolation::Silo, None).await;
    wait_for(&admin, &started.id, Some(MovePhase::CatchingUp)).await;
    let cancelled = admin.cancel_move(&started.id).await.unwrap();
    let ended = wait_for(&admin, &cancelled.id, None).await;
    assert_eq!(ended.phase, MovePhase::RolledBack);
    assert!(ended.error.unwrap().contains("cancelled by"));
    assert_eq!(homes(&server, "acme"), (300, false));
    workload::assert_matches("acme", &workload::stored(&client).await, &model);
    // Deleting a moving tenant is refused; after the move it works.
    let again = start(&admin, "acme", Isolation::Bridge, None).await;
    assert_eq!(
        admin.delete_tenant(&tid("acme")).await.unwrap_err().code(),
        Some("tenant_moving")
    );
    // The refusal is audited.
    let refused = audit_rows(&server.data_dir, |r| {
        r.1 == "tenant.delete" && r.4 == "denied:tenant_moving"
    });
    assert_eq!(refused.len(), 1, "{refused:?}");
    wait_for(&admin, &again.id, None).await;
    admin.delete_tenant(&tid("acme")).await.unwrap();
}

/// A cancel asked for while the move is frozen (writes held, the final sync running) rolls it
/// back: the tenant stays where it was with every record and the write held meanwhile, and
/// the audit says the cancel took effect. (Before, the answer said 200 while the move
/// switched anyway.)
#[tokio::test]
async fn a_cancel_while_frozen_rolls_the_move_back() {
    let dir = tempfile::tempdir().unwrap();
    let env = [FAST[0], ("BULKHEAD_MOVE_HOLD", "frozen:1500")];
    let server = Server::start_with(dir.path(), &env);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    let client = server.client(&key(&admin, "acme", TenantRole::Member).await);
    workload::seed(&client, "a", 50).await;
    let started = start(&admin, "acme", Isolation::Silo, None).await;
    wait_for(&admin, &started.id, Some(MovePhase::Frozen)).await;
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .create_record(&items(), &json!({"id": "during", "title": "held"}))
                .await
        })
    };
    let cancelled = admin.cancel_move(&started.id).await.unwrap();
    assert_eq!(cancelled.phase, MovePhase::RolledBack, "{cancelled:?}");
    writer.await.unwrap().unwrap();
    let tenant = admin.get_tenant(&tid("acme")).await.unwrap();
    assert_eq!(tenant.placement.isolation, Isolation::Pool);
    let (rows, silo) = homes(&server, "acme");
    assert_eq!(rows, 51, "every record and the held write, in the pool");
    assert!(!silo, "the target was removed");
    let cancels = audit_rows(&server.data_dir, |r| r.1 == "move.cancel");
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    assert_eq!(cancels[0].4, "ok", "{cancels:?}");
    let moves = audit_rows(&server.data_dir, |r| r.1.starts_with("move."));
    assert!(!moves.iter().any(|r| r.1 == "move.switched"), "{moves:?}");
}
