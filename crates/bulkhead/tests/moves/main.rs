//! Live moves, black box through the binary: every direction under concurrent writers on the
//! moving tenant and its neighbour (0 lost, 0 duplicated, 0 misplaced), `kill -9` in every
//! phase, writes held at the switch, cancel, the API's refusals, and the listing of every
//! tenant's moves.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod crash;
mod listing;
mod pace;
mod postgres;
mod shared;
mod workload;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bulkhead_api::{MoveView, StartMove};
use bulkhead_client::{Client, Method};
use bulkhead_core::DomainName;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{Isolation, MovePhase};
use common::{Server, audit_rows, create_tenant, items, key, put_items, tid};
use serde_json::json;

/// Test servers wait only briefly before removing a moved tenant's old placement, and log
/// what the move executor does (catch-up rounds, starved steps) for a failure to show.
pub const FAST: &[(&str, &str)] = &[
    ("BULKHEAD_MOVE_DRAIN_GRACE_MS", "100"),
    (
        "BULKHEAD_LOG",
        "warn,bulkhead_catalog::moves=debug,bulkhead_catalog::background=debug",
    ),
];

/// The admin, and member clients of tenants `mover` and `neighbour` (tier free, collection
/// `items`).
pub async fn mover_and_neighbour(server: &Server) -> (Client, Client, Client) {
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "mover", "free").await;
    create_tenant(&admin, "neighbour", "free").await;
    let mover = server.client(&key(&admin, "mover", TenantRole::Member).await);
    let neighbour = server.client(&key(&admin, "neighbour", TenantRole::Member).await);
    (admin, mover, neighbour)
}

/// [`FAST`], with a copy of half a second a page of 50 records: writers create far more than
/// that meanwhile.
fn slow_copy() -> Vec<(&'static str, &'static str)> {
    let mut env = FAST.to_vec();
    env.extend([
        ("BULKHEAD_MOVE_CHUNK", "50"),
        ("BULKHEAD_MOVE_COPY_RATE", "100"),
    ]);
    env
}

/// Polls a move until it has ended (or `phase` is reached).
pub async fn wait_for(admin: &Client, id: &str, phase: Option<MovePhase>) -> MoveView {
    wait_or_show(admin, id, phase, String::new).await
}

/// [`wait_for`], and a move that does not end shows `log()` (the server's) in the failure.
async fn wait_or_show(
    admin: &Client,
    id: &str,
    phase: Option<MovePhase>,
    log: impl Fn() -> String,
) -> MoveView {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let view = admin.get_move(id).await.unwrap();
        if view.phase.is_final() || Some(view.phase) == phase {
            return view;
        }
        if Instant::now() >= deadline {
            let log = log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "move stuck in {}: {view:?}; the server's log ends:\n{}",
                view.phase,
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn start(
    admin: &Client,
    tenant: &str,
    isolation: Isolation,
    domain: Option<&str>,
) -> MoveView {
    admin
        .start_move(
            &tid(tenant),
            &StartMove {
                isolation: Some(isolation),
                domain: domain.map(|d| DomainName::parse(d).unwrap()),
                incarnation: None,
            },
        )
        .await
        .unwrap()
}

/// One move of `mover` to `to` under writers on it and on `neighbour`; then both tenants
/// hold exactly what their acknowledged writes imply.
/// One move under writers at a time in this binary: each such test races a paced copy against
/// its own writers, and on two cores several at once leave none of them the rates they assume.
static UNDER_LOAD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn move_under_load(
    server: &Server,
    admin: &Client,
    (mover, mover_model): (&Client, &mut workload::Model),
    (neighbour, neighbour_model): (&Client, &mut workload::Model),
    to: Isolation,
    domain: Option<&str>,
) -> MoveView {
    let _alone = UNDER_LOAD.lock().await;
    let stop = Arc::new(AtomicBool::new(false));
    let a = tokio::spawn(workload::run(
        mover.clone(),
        "m",
        4,
        mover_model.clone(),
        Arc::clone(&stop),
    ));
    let b = tokio::spawn(workload::run(
        neighbour.clone(),
        "nb",
        2,
        neighbour_model.clone(),
        Arc::clone(&stop),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = start(admin, "mover", to, domain).await;
    let done = wait_or_show(admin, &started.id, None, || server.log()).await;
    // Writes keep going against the new placement for a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(done.phase, MovePhase::Done, "{done:?}\n{}", server.log());
    assert!(
        a.failures.is_empty() && b.failures.is_empty(),
        "{:?} {:?}",
        a.failures,
        b.failures
    );
    assert!(a.writes > 20, "writers ran ({} writes)", a.writes);
    workload::assert_matches("moving tenant", &workload::stored(mover).await, &a.model);
    workload::assert_matches("neighbour", &workload::stored(neighbour).await, &b.model);
    eprintln!(
        "{} -> {}: {} rows, {} writes on it during the move (slowest {:.0} ms, {} held out), writes held {:?} ms",
        done.source.isolation,
        done.target.isolation,
        done.rows_copied,
        a.writes,
        a.max_ms(),
        a.held_out,
        done.freeze_ms
    );
    *mover_model = a.model;
    *neighbour_model = b.model;
    done
}

#[tokio::test]
async fn every_direction_under_concurrent_writers_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), FAST);
    let (admin, mover, neighbour) = mover_and_neighbour(&server).await;
    let mut m = workload::seed(&mover, "m", 3000).await;
    let mut n = workload::seed(&neighbour, "nb", 500).await;
    let chain = [
        Isolation::Bridge,
        Isolation::Silo,
        Isolation::Pool,
        Isolation::Silo,
        Isolation::Bridge,
        Isolation::Pool,
    ];
    let mut from = Isolation::Pool;
    for to in chain {
        let done = move_under_load(
            &server,
            &admin,
            (&mover, &mut m),
            (&neighbour, &mut n),
            to,
            None,
        )
        .await;
        assert_eq!((done.source.isolation, done.target.isolation), (from, to));
        let t = admin.get_tenant(&tid("mover")).await.unwrap();
        assert_eq!(t.placement.isolation, to);
        assert_eq!(t.status.to_string(), "active");
        assert!(done.rows_verified >= 3000, "{done:?}");
        from = to;
    }
    // Every phase of every move is in the audit log.
    let actions: Vec<String> = audit_rows(&server.data_dir, |r| r.1.starts_with("move."))
        .into_iter()
        .map(|r| r.1)
        .collect();
    for phase in [
        "start",
        "provisioning",
        "copying",
        "catching_up",
        "verifying",
        "verified",
        "frozen",
        "switched",
        "cleaning",
        "done",
    ] {
        let n = actions
            .iter()
            .filter(|a| **a == format!("move.{phase}"))
            .count();
        assert_eq!(
            n,
            chain.len(),
            "move.{phase} audited once per move: {actions:?}"
        );
    }
    // The old placements are gone: the pool holds no rows of the mover, no silo file is left
    // (the ready pool's empty spares are no tenant's).
    let silos = server.data_dir.join("domains/local/silos");
    let left: Vec<String> = std::fs::read_dir(&silos)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|f| !f.starts_with("bk-spare_"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "silo file left behind: {left:?}");
}

/// Writers that keep creating ids past the copy's cursor (time-ordered ids, as UUIDv7 and the
/// server's own are) faster than the copy takes a page once kept a move in `copying` for
/// good: every page came back full. The copy now stops at the highest id there was when it
/// began; the catch-up brings what was written since.
#[tokio::test]
async fn a_slow_copy_does_not_chase_writers_appending_ids_past_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let env = slow_copy();
    let server = Server::start_with(dir.path(), &env);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "mover", "free").await;
    let mover = server.client(&key(&admin, "mover", TenantRole::Member).await);
    let seeded = workload::seed(&mover, "m", 120).await;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // One move: the appenders would leave a second one far more to copy at this rate.
    for to in [Isolation::Silo] {
        let stop = Arc::new(AtomicBool::new(false));
        let appenders: Vec<_> = (0..3)
            .map(|_| {
                let (client, stop, next) = (mover.clone(), Arc::clone(&stop), Arc::clone(&next));
                tokio::spawn(async move {
                    let mut acknowledged = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let id = format!("z-{n:08}");
                        match client
                            .create_record(&items(), &json!({"id": id, "title": "new", "n": n}))
                            .await
                        {
                            Ok(_) => acknowledged.push(id),
                            Err(e) if e.code() == Some("tenant_moving") => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    acknowledged
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = start(&admin, "mover", to, None).await;
        let done = wait_or_show(&admin, &started.id, None, || server.log()).await;
        stop.store(true, Ordering::Relaxed);
        assert_eq!(done.phase, MovePhase::Done, "{done:?}");
        let mut acknowledged = Vec::new();
        for a in appenders {
            acknowledged.extend(a.await.unwrap());
        }
        let stored = workload::stored(&mover).await;
        let lost: Vec<_> = seeded
            .keys()
            .chain(acknowledged.iter())
            .filter(|id| !stored.contains_key(*id))
            .take(5)
            .collect();
        assert!(lost.is_empty(), "lost after the move to {to}: {lost:?}");
        assert!(
            done.rows_copied < 2_000,
            "the copy chased the writers: {done:?}"
        );
    }
}

/// Writers whose ids interleave below the copy's bound (four writers, each its own id
/// sequence) add rows ahead of its cursor faster than a page a half-second copies them. Once
/// the copy has copied well past what there was, it drops its pace and rate and finishes.
#[tokio::test]
async fn a_copy_chasing_writers_below_its_bound_stops_pacing_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    // Slower than `slow_copy`'s 100 rows/s: at that rate, with the machine to itself, the
    // copy could end a page short of the chase.
    let mut env = slow_copy();
    env.retain(|(k, _)| *k != "BULKHEAD_MOVE_COPY_RATE");
    env.push(("BULKHEAD_MOVE_COPY_RATE", "40"));
    let server = Server::start_with(dir.path(), &env);
    let (admin, mover, neighbour) = mover_and_neighbour(&server).await;
    let mut m = workload::seed(&mover, "m", 120).await;
    let mut n = workload::seed(&neighbour, "nb", 50).await;
    let done = move_under_load(
        &server,
        &admin,
        (&mover, &mut m),
        (&neighbour, &mut n),
        Isolation::Silo,
        None,
    )
    .await;
    assert_eq!(done.target.isolation, Isolation::Silo);
    assert!(
        server
            .log()
            .contains("the copy is chasing the tenant's writers"),
        "the copy did not chase: {done:?}"
    );
}

#[tokio::test]
async fn a_tier_change_moves_the_tenant_and_sets_the_tier_at_the_switch() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), FAST);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    let client = server.client(&key(&admin, "acme", TenantRole::Member).await);
    let model = workload::seed(&client, "a", 200).await;
    let started = admin
        .update_tenant(
            &tid("acme"),
            &bulkhead_api::UpdateTenant {
                tier: Some(bulkhead_core::TierName::parse("premium").unwrap()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .moving()
        .expect("202 with the move");
    let done = wait_for(&admin, &started.id, None).await;
    assert_eq!(done.phase, MovePhase::Done);
    let t = admin.get_tenant(&tid("acme")).await.unwrap();
    assert_eq!(
        (t.tier.as_str(), t.placement.isolation),
        ("premium", Isolation::Silo)
    );
    workload::assert_matches("acme", &workload::stored(&client).await, &model);
}

#[tokio::test]
async fn refusals_name_the_problem_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), FAST);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    create_tenant(&admin, "globex", "free").await;
    let member = server.client(&key(&admin, "acme", TenantRole::Owner).await);
    let post = |c: &Client, path: &str, body: &str| {
        let (c, path, body) = (c.clone(), path.to_owned(), body.to_owned());
        async move {
            let r = c
                .raw(
                    Method::POST,
                    &path,
                    Some(body.into_bytes()),
                    Some("application/json"),
                )
                .await
                .unwrap();
            let code = r
                .json::<serde_json::Value>()
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
            (r.status, code.unwrap_or_default())
        }
    };
    let cases = [
        ("{}", 400, "invalid_move"),
        (r#"{"isolation":"cluster"}"#, 400, ""),
        (r#"{"isolation":"silo","speed":"max"}"#, 400, ""),
        (r#"{"domain":"nowhere"}"#, 400, "unknown_domain"),
        (r#"{"isolation":"pool"}"#, 409, "already_placed"),
    ];
    for (body, status, code) in cases {
        let (s, c) = post(&admin, "/v1/tenants/acme/moves", body).await;
        assert_eq!(s, status, "{body}: {c}");
        if !code.is_empty() {
            assert_eq!(c, code, "{body}");
        }
    }
    assert_eq!(
        post(
            &admin,
            "/v1/tenants/nobody/moves",
            r#"{"isolation":"silo"}"#
        )
        .await
        .0,
        404
    );
    // Tenant credentials, even an owner's, cannot move tenants or read moves.
    assert_eq!(
        post(&member, "/v1/tenants/acme/moves", r#"{"isolation":"silo"}"#)
            .await
            .0,
        403
    );
    assert_eq!(
        post(
            &member,
            "/v1/tenants/globex/moves",
            r#"{"isolation":"silo"}"#
        )
        .await
        .0,
        403
    );
    // A suspended tenant does not move.
    admin
        .update_tenant(
            &tid("globex"),
            &bulkhead_api::UpdateTenant {
                status: Some(bulkhead_core::model::TenantStatus::Suspended),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        post(
            &admin,
            "/v1/tenants/globex/moves",
            r#"{"isolation":"silo"}"#
        )
        .await,
        (409, "tenant_not_active".into())
    );
    assert!(
        admin
            .list_moves(&tid("acme"))
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing was started"
    );
    assert_eq!(
        admin
            .get_tenant(&tid("acme"))
            .await
            .unwrap()
            .placement
            .isolation,
        Isolation::Pool
    );
    // An operator may move tenants (no record is ever shown to it); it sees the move.
    let operator_key = admin
        .create_platform_key(&bulkhead_api::CreatePlatformKey {
            name: "ops".into(),
            role: bulkhead_core::access::PlatformRole::Operator,
            expires_in: None,
        })
        .await
        .unwrap()
        .key;
    let operator = server.client(&operator_key);
    let started = start(&operator, "acme", Isolation::Bridge, None).await;
    assert_eq!(
        member
            .raw(
                Method::GET,
                &format!("/v1/moves/{}", started.id),
                None,
                None
            )
            .await
            .unwrap()
            .status,
        403
    );
    let done = wait_for(&operator, &started.id, None).await;
    assert_eq!(done.phase, MovePhase::Done);
    assert_eq!(
        operator.get_move("mvnothing").await.unwrap_err().status(),
        Some(404)
    );
    assert_eq!(
        operator.cancel_move(&started.id).await.unwrap_err().code(),
        Some("move_finished")
    );
}
