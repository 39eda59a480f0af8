//! What one server writes the other serves, and what one revokes, suspends or deletes the
//! other refuses; servers starting together create one first admin key.

use std::time::{Duration, Instant};

use bulkhead_api::{CreateTenant, TenantListQuery, UpdateTenant};
use bulkhead_client::Client;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{Isolation, TenantStatus};
use bulkhead_core::{RecordId, TierName};
use serde_json::json;

use super::{eventually, start_pair, status_of};
use crate::common;
use crate::common::{items, key, put_items, tid};

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
