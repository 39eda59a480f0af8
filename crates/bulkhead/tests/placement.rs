//! The placement planner through the binary: a pooled tenant far heavier than its pool is
//! proposed for a silo (its tier's `promote_to`), with the reason and the domains' load;
//! `placement apply` moves it live while it writes, and no acknowledged write is lost or
//! doubled. Only platform principals plan, and each plan is audited.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bulkhead_client::Client;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::Isolation;
use common::{Server, cli, create_tenant, items, key, put_items, tid};
use serde_json::{Value, json};

/// Tier `grow`: pooled tenants, promoted to a silo past twice their pool's mean load.
fn put_grow_tier(server: &Server) {
    let (ok, text) = cli(
        server,
        &[
            "tier",
            "put",
            "grow",
            "--isolation",
            "pool",
            "--promote-to",
            "silo",
            "--promote-factor",
            "2",
        ],
    );
    assert!(ok, "{text}");
}

/// `writes` records written by a member of `id`; its client.
async fn writes(server: &Server, admin: &Client, id: &str, writes: usize) -> Client {
    let client = server.client(&key(admin, id, TenantRole::Member).await);
    for i in 0..writes {
        client
            .create_record(&items(), &json!({"title": format!("{id} {i}")}))
            .await
            .unwrap();
    }
    client
}

/// The JSON detail of the newest audit entry with `action`.
async fn latest_audit_detail(admin: &Client, action: &str) -> Value {
    let entries = admin
        .list_audit(&bulkhead_api::AuditQuery {
            action: Some(action.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let detail = entries.items[0].detail.as_deref();
    serde_json::from_str(detail.unwrap_or_else(|| panic!("{action} has no detail"))).unwrap()
}

/// Three quiet `grow` tenants (3 writes each) and a heavy one (120); the heavy one's client.
async fn grow_tenants(server: &Server, admin: &Client) -> Client {
    for id in ["quiet-a", "quiet-b", "quiet-c"] {
        create_tenant(admin, id, "grow").await;
        writes(server, admin, id, 3).await;
    }
    create_tenant(admin, "heavy", "grow").await;
    writes(server, admin, "heavy", 120).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_heavy_pooled_tenant_is_promoted_live_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    let admin = server.admin();
    put_items(&admin).await;
    put_grow_tier(&server);
    let heavy = grow_tenants(&server, &admin).await;

    let (ok, text) = cli(&server, &["--json", "placement", "plan"]);
    assert!(ok, "{text}");
    let plan: Value = serde_json::from_str(&text).unwrap();
    let moves = plan["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 1, "{plan}");
    assert_eq!(moves[0]["tenant"], "heavy");
    assert_eq!(moves[0]["reason"], "promote");
    assert_eq!(
        moves[0]["to"],
        json!({"domain": "local", "isolation": "silo"})
    );
    assert!(
        moves[0]["detail"].as_str().unwrap().contains("mean"),
        "{plan}"
    );
    assert_eq!(plan["domains_before"][0]["dedicated"], 0);
    assert_eq!(plan["domains_after"][0]["dedicated"], 1);
    // Without --yes nothing moves.
    let (ok, text) = cli(&server, &["placement", "apply"]);
    assert!(!ok && text.contains("--yes"), "{text}");
    assert_eq!(
        admin
            .get_tenant(&tid("heavy"))
            .await
            .unwrap()
            .placement
            .isolation,
        Isolation::Pool
    );

    // Applied while the tenant keeps writing.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, stop) = (heavy.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                if let Ok(r) = client
                    .create_record(&items(), &json!({"title": format!("during {n}")}))
                    .await
                {
                    acked.push(r["id"].as_str().unwrap().to_owned());
                }
            }
            acked
        })
    };
    let (ok, text) = cli(&server, &["--json", "placement", "apply", "--yes"]);
    stop.store(true, Ordering::SeqCst);
    let acked = writer.await.unwrap();
    assert!(ok, "{text}");
    assert!(text.contains("\"done\""), "{text}");
    let view = admin.get_tenant(&tid("heavy")).await.unwrap();
    assert_eq!(view.placement.isolation, Isolation::Silo);
    // The move's start names the life it moved (as its `move.started` webhook does).
    let detail = latest_audit_detail(&admin, "move.start").await;
    assert_eq!(
        detail["incarnation"],
        view.placement.incarnation.to_string(),
        "{detail}"
    );
    let all: Vec<String> = heavy
        .export(&items(), None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let unique: std::collections::BTreeSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "no record twice");
    assert!(!acked.is_empty());
    for id in &acked {
        assert!(unique.contains(id), "acknowledged write {id} is there");
    }
    assert_eq!(all.len(), 120 + acked.len());

    // A fresh plan proposes nothing more; only platform principals plan; plans are audited.
    let (ok, text) = cli(&server, &["--json", "placement", "plan"]);
    assert!(ok, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["moves"],
        json!([])
    );
    let err = heavy.placement_plan(&Default::default()).await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    let (ok, text) = cli(&server, &["placement", "plan", "--window-days", "0"]);
    assert!(!ok && text.contains("window_days"), "{text}");
    let plans = admin
        .list_audit(&bulkhead_api::AuditQuery {
            action: Some("placement.plan".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(plans.items.len() >= 3, "{:?}", plans.items);
}

/// A tenant moved within the hold is not proposed again: the plan lists it as held, with
/// what it would have proposed; without a hold it is proposed and applied; a hold out of
/// range is 400; a tenant created since the window began is not demoted for being idle.
#[tokio::test]
async fn a_tenant_moved_within_the_hold_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_MOVE_DRAIN_GRACE_MS", "100")]);
    let admin = server.admin();
    put_items(&admin).await;
    for args in [
        &[
            "tier",
            "put",
            "grow",
            "--isolation",
            "pool",
            "--promote-to",
            "silo",
            "--promote-factor",
            "2",
        ][..],
        &[
            "tier",
            "put",
            "shrink",
            "--isolation",
            "silo",
            "--demote-to",
            "pool",
        ][..],
    ] {
        let (ok, text) = cli(&server, args);
        assert!(ok, "{text}");
    }
    for (id, n) in [("quiet-a", 3), ("quiet-b", 3), ("heavy", 60)] {
        create_tenant(&admin, id, "grow").await;
        writes(&server, &admin, id, n).await;
    }
    // Idle, but created a moment ago: not demoted (it was not there for the window).
    create_tenant(&admin, "newcomer", "shrink").await;
    let plan_json = |args: &[&str]| {
        let mut all = vec!["--json", "placement", "plan"];
        all.extend_from_slice(args);
        let (ok, text) = cli(&server, &all);
        assert!(ok, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let plan = plan_json(&[]);
    assert_eq!(plan["moves"].as_array().unwrap().len(), 1, "{plan:#}");
    assert_eq!(plan["moves"][0]["tenant"], "heavy");

    // Moved by hand to a bridge and back just now: its promotion is held for 24 h.
    for to in ["bridge", "pool"] {
        let (ok, text) = cli(&server, &["tenant", "move", "heavy", "--to", to, "--wait"]);
        assert!(ok, "{text}");
    }
    let plan = plan_json(&[]);
    assert_eq!(plan["moves"], json!([]), "{plan:#}");
    assert_eq!(plan["held"].as_array().unwrap().len(), 1, "{plan:#}");
    assert_eq!(plan["held"][0]["proposal"]["tenant"], "heavy", "{plan:#}");
    assert_eq!(plan["held"][0]["proposal"]["reason"], "promote");
    assert!(plan["held"][0]["placed_at"].is_string(), "{plan:#}");
    let (ok, text) = cli(&server, &["placement", "plan"]);
    assert!(
        ok && text.contains("held") && text.contains("heavy"),
        "{text}"
    );
    let (ok, text) = cli(&server, &["placement", "apply", "--yes"]);
    assert!(ok && text.contains("nothing to move"), "{text}");

    // Without a hold it is proposed, and applied.
    assert_eq!(
        plan_json(&["--hold-hours", "0"])["moves"][0]["tenant"],
        "heavy"
    );
    let (ok, text) = cli(
        &server,
        &["placement", "apply", "--yes", "--hold-hours", "0"],
    );
    assert!(ok && text.contains("1 moved"), "{text}");
    let view = admin.get_tenant(&tid("heavy")).await.unwrap();
    assert_eq!(view.placement.isolation, Isolation::Silo);

    // The hold is the life's: re-created under the id and as heavy again, the tenant is
    // proposed at once, though its old life moved a moment ago.
    admin.delete_tenant(&tid("heavy")).await.unwrap();
    create_tenant(&admin, "heavy", "grow").await;
    writes(&server, &admin, "heavy", 60).await;
    let plan = plan_json(&[]);
    assert_eq!(plan["held"], json!([]), "{plan:#}");
    assert_eq!(plan["moves"].as_array().unwrap().len(), 1, "{plan:#}");
    assert_eq!(plan["moves"][0]["tenant"], "heavy");

    // A hold out of range names the problem; the plans' audit records the hold.
    let (ok, text) = cli(&server, &["placement", "plan", "--hold-hours", "9000"]);
    assert!(
        !ok && text.contains("invalid_hold") && text.contains("hold_hours"),
        "{text}"
    );
    let plans = admin
        .list_audit(&bulkhead_api::AuditQuery {
            action: Some("placement.plan".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        plans.items.iter().any(|e| e
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("\"held\":[\"heavy\"]"))),
        "{:?}",
        plans.items
    );
}

/// A plan measures one life of each tenant, and its moves are for that life only. A heavy
/// tenant is proposed for a silo; it is deleted and re-created under the same id before the
/// plan is applied. The planned move answers `409 tenant_life_ended` and the new tenant stays
/// where its tier put it. A fresh plan (and the cost report) counts none of the deleted
/// life's work, though both lives wrote within the same hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plan_is_for_the_life_it_measured() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    put_grow_tier(&server);
    grow_tenants(&server, &admin).await;
    let old_life = admin
        .get_tenant(&tid("heavy"))
        .await
        .unwrap()
        .placement
        .incarnation;
    let plan = admin
        .placement_plan(&bulkhead_api::PlanQuery::default())
        .await
        .unwrap();
    assert_eq!(plan.moves.len(), 1, "{plan:?}");
    let planned = &plan.moves[0];
    assert_eq!(planned.tenant, tid("heavy"));
    assert_eq!(planned.incarnation, old_life);
    // Its audit entry (and `placement.planned` webhook) names the life too.
    let detail = latest_audit_detail(&admin, "placement.plan").await;
    assert_eq!(
        detail["moves"][0]["incarnation"],
        old_life.to_string(),
        "{detail}"
    );

    admin.delete_tenant(&tid("heavy")).await.unwrap();
    create_tenant(&admin, "heavy", "grow").await;
    writes(&server, &admin, "heavy", 3).await;
    let refused = admin
        .start_move(
            &tid("heavy"),
            &bulkhead_api::StartMove {
                isolation: Some(planned.to.isolation),
                domain: Some(planned.to.domain.clone()),
                incarnation: Some(planned.incarnation.clone()),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, bulkhead_client::ClientError::Api { status: 409, code, .. } if code == "tenant_life_ended"),
        "{refused}"
    );
    let view = admin.get_tenant(&tid("heavy")).await.unwrap();
    assert_eq!(view.placement.isolation, Isolation::Pool);
    assert_ne!(view.placement.incarnation, old_life);
    assert!(
        admin
            .list_moves(&tid("heavy"))
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // The new life did what the quiet ones did: nothing to promote.
    let plan = admin
        .placement_plan(&bulkhead_api::PlanQuery::default())
        .await
        .unwrap();
    assert_eq!(plan.moves, vec![], "{plan:?}");
    let costs = admin.cost_report(&Default::default()).await.unwrap();
    let requests = |id: &str| {
        costs
            .tenants
            .iter()
            .find(|t| t.tenant.as_str() == id)
            .unwrap_or_else(|| panic!("{id} in {costs:?}"))
            .requests
    };
    assert_eq!(requests("heavy"), requests("quiet-a"), "{costs:?}");
    assert!(requests("heavy") < 10, "{costs:?}");
}

/// The automatic mode (`placement apply --every`) runs as a service with a platform key. Once
/// that key is revoked, every round would be refused: the command stops with the refusal
/// instead of failing every round for ever.
#[tokio::test]
async fn the_automatic_mode_stops_once_its_key_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    let created = admin
        .create_platform_key(&bulkhead_api::CreatePlatformKey {
            name: "planner".into(),
            role: bulkhead_core::access::PlatformRole::Admin,
            expires_in: None,
        })
        .await
        .unwrap();
    admin.revoke_platform_key(&created.view.id).await.unwrap();
    let mut child = std::process::Command::new(common::binary())
        .args(["placement", "apply", "--yes", "--every", "1"])
        .env("BULKHEAD_URL", &server.url)
        .env("BULKHEAD_TOKEN", &created.key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("placement apply --every still running 30 s after its key was revoked");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("invalid_credentials") && err.contains("stops"),
        "{err}"
    );
}
