//! Two `bulkhead serve` processes sharing one PostgreSQL catalog (`--catalog postgres://…`):
//! what one writes, the other serves — tenants, keys, collections, routes; what one revokes,
//! suspends or deletes, the other refuses; concurrent creates on both never double-place or
//! lose a tenant; the audit log holds both servers' changes; the data role of the default
//! domain cannot read the catalog.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bulkhead_api::{CreateTenant, TenantListQuery, UpdateTenant};
use bulkhead_client::Client;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{Isolation, TenantStatus};
use bulkhead_core::{RecordId, TierName};
use common::{Server, items, key, put_items, tid};
use serde_json::json;

fn start_pair(dir: &std::path::Path, catalog: &str) -> (Server, Server) {
    let env = [("BULKHEAD_CATALOG", catalog)];
    for side in ["a", "b"] {
        std::fs::create_dir_all(dir.join(side)).unwrap();
    }
    let a = Server::start_with(&dir.join("a"), &env);
    let b = Server::start_with(&dir.join("b"), &env);
    (a, b)
}

/// Retries `check` until it holds, for at most `within`; returns how long it took.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{what}: not seen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn status_of(result: Result<serde_json::Value, bulkhead_client::ClientError>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(e) => e.status().unwrap_or(0),
    }
}

#[tokio::test]
async fn two_servers_share_one_postgres_catalog() {
    let Some(pg) = bulkhead_pg_testkit::require("shared_catalog") else {
        return;
    };
    pg.psql("postgres", "CREATE DATABASE bulkhead").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = start_pair(dir.path(), &pg.url("bulkhead"));
    let (admin_a, admin_b) = (a.admin(), b.admin());

    // Both see the one default domain, on PostgreSQL, its URL redacted.
    let domains = admin_b.list_domains().await.unwrap();
    let local = domains
        .items
        .iter()
        .find(|d| d.name.as_str() == "local")
        .unwrap();
    assert_eq!(local.spec.engine, "postgres");

    // A collection put on A is served by B once A's rollout is done and announced.
    put_items(&admin_a).await;
    let waited = eventually(Duration::from_secs(3), "collection on B", || async {
        admin_b.get_collection(&items()).await.is_ok()
    })
    .await;
    println!("collection visible on B after {waited:?}");

    // Tenants created on either server, concurrently, in every model: each exists once, and
    // both servers list all of them.
    let mut creates = Vec::new();
    for i in 0..12 {
        let (admin, tier) = match i % 3 {
            0 => (admin_a.clone(), "free"),
            1 => (admin_b.clone(), "standard"),
            _ => (
                if i % 2 == 0 {
                    admin_a.clone()
                } else {
                    admin_b.clone()
                },
                "premium",
            ),
        };
        creates.push(tokio::spawn(async move {
            admin
                .create_tenant(&CreateTenant {
                    id: tid(&format!("t{i:02}")),
                    name: format!("Tenant {i}"),
                    tier: TierName::parse(tier).unwrap(),
                    labels: Default::default(),
                })
                .await
                .unwrap()
        }));
    }
    // The same id created on both at once: one creates it, the other finds it (idempotent).
    let same = |admin: Client| async move {
        admin
            .create_tenant(&CreateTenant {
                id: tid("twice"),
                name: "Twice".into(),
                tier: TierName::parse("standard").unwrap(),
                labels: Default::default(),
            })
            .await
            .unwrap()
    };
    let (x, y) = tokio::join!(same(admin_a.clone()), same(admin_b.clone()));
    assert_eq!(x.placement, y.placement, "one placement for one tenant");
    for c in creates {
        let t = c.await.unwrap();
        assert_eq!(t.status, TenantStatus::Active);
    }
    for admin in [&admin_a, &admin_b] {
        let listed = admin.list_tenants(Some(100), None).await.unwrap();
        assert_eq!(listed.items.len(), 13);
    }
    let models: Vec<Isolation> = admin_a
        .list_tenants(Some(100), None)
        .await
        .unwrap()
        .items
        .iter()
        .map(|t| t.placement.isolation)
        .collect();
    for model in [Isolation::Pool, Isolation::Bridge, Isolation::Silo] {
        assert!(models.contains(&model), "{model} placed");
    }
    // Filters run in the catalog's SQL, on PostgreSQL too: `q` ignores case, its `_` is no
    // wildcard, and a filtered listing pages with its cursor.
    let matching = |query: TenantListQuery| {
        let admin = admin_b.clone();
        async move {
            let mut ids = Vec::new();
            let mut cursor = None;
            loop {
                let page = admin
                    .list_tenants_matching(&TenantListQuery {
                        cursor,
                        ..query.clone()
                    })
                    .await
                    .unwrap();
                ids.extend(page.items.into_iter().map(|t| t.id.to_string()));
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => return ids,
                }
            }
        }
    };
    let search = |q: &str| TenantListQuery {
        q: Some(q.to_owned()),
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(matching(search("TENANT 1")).await, ["t01", "t10", "t11"]);
    assert!(matching(search("_")).await.is_empty());
    assert_eq!(
        matching(TenantListQuery {
            tier: Some(TierName::parse("standard").unwrap()),
            status: Some(TenantStatus::Active),
            ..search("tenant 1")
        })
        .await,
        ["t01", "t10"]
    );
    assert_eq!(
        matching(TenantListQuery {
            isolation: Some(Isolation::Silo),
            domain: Some(bulkhead_core::DomainName::parse("local").unwrap()),
            ..Default::default()
        })
        .await,
        ["t02", "t05", "t08", "t11"]
    );

    // A key minted on A works on B; data written through A is read through B, and the
    // neighbour sees none of it through either server.
    for (i, t) in ["t00", "t01", "t02"].into_iter().enumerate() {
        let token = key(&admin_a, t, TenantRole::Member).await;
        let (on_a, on_b) = (a.client(&token), b.client(&token));
        on_a.create_record(
            &items(),
            &json!({"id": "r1", "title": format!("of {t}"), "n": i}),
        )
        .await
        .unwrap();
        let got = on_b
            .get_record(&items(), &RecordId::parse("r1").unwrap())
            .await
            .unwrap();
        assert_eq!(got["title"], format!("of {t}"));
    }
    let neighbour = key(&admin_b, "t03", TenantRole::Owner).await;
    for server in [&a, &b] {
        let err = server
            .client(&neighbour)
            .get_record(&items(), &RecordId::parse("r1").unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(404));
    }

    // Revoked on A: refused by B, promptly, and never accepted again.
    let token = key(&admin_a, "t00", TenantRole::Member).await;
    let on_b = b.client(&token);
    on_b.get_record(&items(), &RecordId::parse("r1").unwrap())
        .await
        .unwrap(); // now cached on B
    let listed = admin_a
        .list_keys(&tid("t00"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", a.log()));
    let newest = listed.items.iter().max_by_key(|k| k.created_at).unwrap();
    admin_a.revoke_key(&tid("t00"), &newest.id).await.unwrap();
    let waited = eventually(Duration::from_secs(3), "revocation on B", || async {
        status_of(
            on_b.get_record(&items(), &RecordId::parse("r1").unwrap())
                .await,
        )
        .await
            == 401
    })
    .await;
    println!("revocation refused by B after {waited:?}");
    for _ in 0..20 {
        let status = status_of(
            on_b.get_record(&items(), &RecordId::parse("r1").unwrap())
                .await,
        )
        .await;
        assert_eq!(status, 401, "a revoked key stays refused");
    }

    // Suspended on B: writes refused by A.
    let token = key(&admin_b, "t01", TenantRole::Member).await;
    let on_a = a.client(&token);
    on_a.create_record(&items(), &json!({"id": "r2", "title": "before", "n": 2}))
        .await
        .unwrap();
    admin_b
        .update_tenant(
            &tid("t01"),
            &UpdateTenant {
                status: Some(TenantStatus::Suspended),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(3), "suspension on A", || async {
        on_a.create_record(&items(), &json!({"id": "r3", "title": "after", "n": 3}))
            .await
            .is_err()
    })
    .await;

    // A field added on B is accepted by A.
    let mut spec = common::items_spec();
    spec["fields"]["color"] = json!({"type": "string"});
    admin_b
        .put_collection(&items(), &serde_json::from_value(spec).unwrap())
        .await
        .unwrap();
    let token = key(&admin_b, "t02", TenantRole::Member).await;
    let on_a = a.client(&token);
    eventually(Duration::from_secs(3), "new field on A", || async {
        on_a.create_record(
            &items(),
            &json!({"id": "c1", "title": "colored", "n": 1, "color": "red"}),
        )
        .await
        .is_ok()
    })
    .await;

    // Deleted on A: gone on B.
    let token = key(&admin_a, "t05", TenantRole::Member).await;
    let on_b = b.client(&token);
    on_b.create_record(&items(), &json!({"id": "d1", "title": "doomed", "n": 1}))
        .await
        .unwrap();
    admin_a.delete_tenant(&tid("t05")).await.unwrap();
    eventually(Duration::from_secs(3), "deletion on B", || async {
        matches!(
            status_of(
                on_b.get_record(&items(), &RecordId::parse("d1").unwrap())
                    .await
            )
            .await,
            401 | 404
        )
    })
    .await;
    let err = admin_b.get_tenant(&tid("t05")).await.unwrap_err();
    assert_eq!(err.status(), Some(404));

    // One audit log holds both servers' changes.
    let audit = pg
        .psql(
            "bulkhead",
            "SELECT action, count(*) FROM bulkhead_catalog.audit GROUP BY action ORDER BY action",
        )
        .unwrap();
    assert!(audit.contains("tenant.create|13"), "{audit}");
    assert!(audit.contains("collection.put|2"), "{audit}");
    assert!(audit.contains("key.revoke|1"), "{audit}");
    assert!(audit.contains("tenant.delete|1"), "{audit}");

    // The data role the default domain's tenant queries use cannot read the catalog.
    let denied = pg.psql(
        "bulkhead",
        "SET ROLE bulkhead_data; SELECT count(*) FROM bulkhead_catalog.api_keys;",
    );
    let message = format!("{denied:?}");
    assert!(message.contains("permission denied"), "{message}");
    drop((a, b));
}

#[tokio::test]
async fn servers_starting_together_create_one_first_admin_key() {
    let Some(pg) = bulkhead_pg_testkit::require("shared_catalog_first_start") else {
        return;
    };
    pg.psql("postgres", "CREATE DATABASE bulkhead").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url("bulkhead");
    let start = |name: &str| {
        let data = dir.path().join(name);
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        let url = url.clone();
        std::thread::spawn(move || {
            std::process::Command::new(common::binary())
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(&data)
                .env("BULKHEAD_CATALOG", url)
                .env_remove("BULKHEAD_ADMIN_KEY")
                .env("BULKHEAD_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap()
        })
    };
    let (x, y) = (start("x"), start("y"));
    let mut children = [x.join().unwrap(), y.join().unwrap()];
    let deadline = Instant::now() + Duration::from_secs(20);
    let count = loop {
        let out = pg
            .psql(
                "bulkhead",
                // One statement, one snapshot: the key and the mark commit together.
                "SELECT (SELECT count(*) FROM bulkhead_catalog.api_keys), \
                        (SELECT count(*) FROM bulkhead_catalog.meta WHERE key = 'initialized');",
            )
            .unwrap_or_default();
        if out.trim().ends_with("|1") || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let logs = ["x", "y"]
        .map(|n| std::fs::read_to_string(dir.path().join(format!("{n}.log"))).unwrap_or_default());
    assert_eq!(
        count.trim(),
        "1|1",
        "one admin key, and the catalog marked initialized: {count}\n{logs:?}"
    );
    let files = ["x", "y"]
        .iter()
        .filter(|n| dir.path().join(n).join("admin.key").exists())
        .count();
    assert_eq!(
        files, 1,
        "the key is shown by the server that created it only"
    );
}

/// A deletion whose server dies between marking the tenant `deleting` and purging it is
/// taken over: by a live server's sweep within seconds, or at once by a re-creation of the id
/// on another server (which used to answer 409 "already exists with other settings" until
/// the dead server came back). The re-created tenant starts empty and refuses the old key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_abandoned_by_a_dead_server_is_finished_by_a_live_one() {
    let Some(pg) = bulkhead_pg_testkit::require("shared_catalog_abandoned_deletion") else {
        return;
    };
    pg.psql("postgres", "CREATE DATABASE bulkhead").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url("bulkhead");
    for side in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(side)).unwrap();
    }
    let holding = [
        ("BULKHEAD_CATALOG", url.as_str()),
        ("BULKHEAD_DELETE_HOLD_MS", "60000"),
    ];
    let mut a = Server::start_with(&dir.path().join("a"), &holding);
    let b = Server::start_with(&dir.path().join("b"), &[("BULKHEAD_CATALOG", url.as_str())]);
    let (admin_a, admin_b) = (a.admin(), b.admin());
    put_items(&admin_a).await;
    eventually(Duration::from_secs(5), "collection on B", || async {
        admin_b.get_collection(&items()).await.is_ok()
    })
    .await;
    let request = |id: &str| CreateTenant {
        id: tid(id),
        name: format!("{id} inc"),
        tier: TierName::parse("premium").unwrap(),
        labels: Default::default(),
    };
    for (round, id) in ["swept", "recreated"].into_iter().enumerate() {
        if round == 1 {
            a = Server::start_with(&dir.path().join("a"), &holding);
        }
        let admin_a = a.admin();
        admin_a.create_tenant(&request(id)).await.unwrap();
        let old_key = key(&admin_a, id, TenantRole::Member).await;
        a.client(&old_key)
            .create_record(&items(), &json!({"id": "old", "title": "earlier life"}))
            .await
            .unwrap();
        let deleting = {
            let admin_a = admin_a.clone();
            let id = tid(id);
            tokio::spawn(async move { admin_a.delete_tenant(&id).await })
        };
        eventually(Duration::from_secs(5), "deleting seen on B", || async {
            admin_b
                .get_tenant(&tid(id))
                .await
                .is_ok_and(|t| t.status == TenantStatus::Deleting)
        })
        .await;
        a.kill_hard();
        assert!(deleting.await.unwrap().is_err(), "A died before answering");
        if id == "swept" {
            eventually(Duration::from_secs(30), "B finishes the purge", || async {
                admin_b
                    .get_tenant(&tid(id))
                    .await
                    .is_err_and(|e| e.status() == Some(404))
            })
            .await;
            admin_b.create_tenant(&request(id)).await.unwrap();
        } else {
            // At once, with the very same body: the re-creation finishes the purge first.
            let created = admin_b.create_tenant(&request(id)).await.unwrap();
            assert_eq!(created.status, TenantStatus::Active);
        }
        let new = b.client(&key(&admin_b, id, TenantRole::Member).await);
        let page = new
            .list_records(&items(), &Default::default())
            .await
            .unwrap();
        assert!(page.items.is_empty(), "{id}: the new life starts empty");
        let err = b
            .client(&old_key)
            .get_record(&items(), &RecordId::parse("old").unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(401), "{id}: the old key is gone");
    }
    let report = admin_b.doctor().await.unwrap();
    assert!(report.orphans.is_empty(), "{report:#?}");
    drop((a, b));
}

/// One server streams an export and runs a move while the other deletes the tenants and
/// re-creates them: the stream ends with an error line and never carries a record of the new
/// life; a deletion in the move's clean-up purges both copies and the move's late clean-up
/// on the first server spares the new tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lives_stay_apart_when_one_server_streams_or_moves_and_the_other_deletes() {
    let Some(pg) = bulkhead_pg_testkit::require("shared_catalog_lives") else {
        return;
    };
    pg.psql("postgres", "CREATE DATABASE bulkhead").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url("bulkhead");
    for side in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(side)).unwrap();
    }
    let a = Server::start_with(
        &dir.path().join("a"),
        &[
            ("BULKHEAD_CATALOG", url.as_str()),
            ("BULKHEAD_MOVE_DRAIN_GRACE_MS", "3000"),
        ],
    );
    let b = Server::start_with(&dir.path().join("b"), &[("BULKHEAD_CATALOG", url.as_str())]);
    let (admin_a, admin_b) = (a.admin(), b.admin());
    put_items(&admin_a).await;
    eventually(Duration::from_secs(5), "collection on B", || async {
        admin_b.get_collection(&items()).await.is_ok()
    })
    .await;
    let request = |id: &str, tier: &str| CreateTenant {
        id: tid(id),
        name: format!("{id} inc"),
        tier: TierName::parse(tier).unwrap(),
        labels: Default::default(),
    };

    // A streams while B deletes and re-creates.
    admin_a
        .create_tenant(&request("streamed", "standard"))
        .await
        .unwrap();
    let old_key = key(&admin_a, "streamed", TenantRole::Member).await;
    let padding = "x".repeat(400);
    let body: Vec<u8> = (0..20_000)
        .flat_map(|i| {
            format!("{{\"id\": \"b{i:07}\", \"title\": \"earlier {padding}\"}}\n").into_bytes()
        })
        .collect();
    a.client(&old_key).bulk(&items(), body, true).await.unwrap();
    let runtime = tokio::runtime::Handle::current();
    let (admin_b2, b_url, a_url) = (admin_b.clone(), b.url.clone(), a.url.clone());
    let (head, rest) = tokio::task::spawn_blocking(move || {
        common::slow_export(&a_url, &old_key, 64 * 1024, || {
            runtime.block_on(async {
                admin_b2.delete_tenant(&tid("streamed")).await.unwrap();
                admin_b2
                    .create_tenant(&CreateTenant {
                        id: tid("streamed"),
                        name: "streamed inc".into(),
                        tier: TierName::parse("standard").unwrap(),
                        labels: Default::default(),
                    })
                    .await
                    .unwrap();
                let new = Client::new(&b_url, key(&admin_b2, "streamed", TenantRole::Member).await)
                    .unwrap();
                for n in 0..600 {
                    new.create_record(
                        &items(),
                        &json!({"id": format!("z{n:07}"), "title": "LATERLIFE"}),
                    )
                    .await
                    .unwrap();
                }
            });
        })
    })
    .await
    .unwrap();
    assert!(head.contains("earlier"), "the export had started");
    assert!(
        !rest.contains("LATERLIFE"),
        "the new life's records reached the old stream"
    );
    assert!(
        common::last_json_line(&rest).contains("\"error\""),
        "the stream ends with an error line"
    );

    // A moves while B deletes during the move's clean-up and re-creates.
    admin_a
        .create_tenant(&request("moved", "free"))
        .await
        .unwrap();
    let old = a.client(&key(&admin_a, "moved", TenantRole::Member).await);
    for n in 0..20 {
        old.create_record(
            &items(),
            &json!({"id": format!("o{n}"), "title": "earlier life"}),
        )
        .await
        .unwrap();
    }
    let moved = admin_a
        .start_move(
            &tid("moved"),
            &bulkhead_api::StartMove {
                isolation: Some(Isolation::Bridge),
                domain: None,
                incarnation: None,
            },
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(60), "the move cleans up", || async {
        admin_a.get_move(&moved.id).await.unwrap().phase
            == bulkhead_core::model::MovePhase::Cleaning
    })
    .await;
    admin_b.delete_tenant(&tid("moved")).await.unwrap();
    admin_b
        .create_tenant(&request("moved", "free"))
        .await
        .unwrap();
    let new = b.client(&key(&admin_b, "moved", TenantRole::Member).await);
    for n in 0..10 {
        new.create_record(
            &items(),
            &json!({"id": format!("n{n}"), "title": "later life"}),
        )
        .await
        .unwrap();
    }
    eventually(Duration::from_secs(30), "the old move ends", || async {
        admin_a.get_move(&moved.id).await.unwrap().phase.is_final()
    })
    .await;
    for client in [
        &new,
        &a.client(&key(&admin_a, "moved", TenantRole::Member).await),
    ] {
        let page = client
            .list_records(
                &items(),
                &bulkhead_client::ListRecords {
                    limit: Some(100),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            page.items.len(),
            10,
            "the new life keeps its writes after the old clean-up"
        );
        assert!(page.items.iter().all(|r| r["title"] == "later life"));
    }
    let report = admin_b.doctor().await.unwrap();
    assert!(report.orphans.is_empty(), "{report:#?}");
    drop((a, b));
}

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
