//! Tenant lifecycle through the API: create (idempotent), list with cursors, update,
//! suspend/resume, tiers and domains, delete — and deletion purging every byte.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use bulkhead_api::{CreateTenant, UpdateTenant};
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{Isolation, TenantStatus, TierSpec};
use bulkhead_core::{RecordId, TierName};
use common::{Server, create_tenant, items, key, put_items, tid};
use serde_json::json;

#[tokio::test]
async fn creating_a_tenant_is_idempotent_for_the_same_body_and_conflicts_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    let request = CreateTenant {
        id: tid("acme"),
        name: "Acme".into(),
        tier: TierName::parse("free").unwrap(),
        labels: [("region".to_owned(), "eu".to_owned())].into(),
    };
    let first = admin.create_tenant(&request).await.unwrap();
    assert_eq!(first.status, TenantStatus::Active);
    assert_eq!(first.placement.isolation, Isolation::Pool);
    let again = admin
        .raw(
            bulkhead_client::Method::POST,
            "/v1/tenants",
            Some(serde_json::to_vec(&request).unwrap()),
            Some("application/json"),
        )
        .await
        .unwrap();
    assert_eq!(again.status, 200, "identical replay");
    let other = CreateTenant {
        name: "Other".into(),
        ..request.clone()
    };
    let err = admin.create_tenant(&other).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(409), Some("tenant_exists"))
    );
    let bad_tier = CreateTenant {
        id: tid("nope"),
        tier: TierName::parse("gold").unwrap(),
        ..request
    };
    assert_eq!(
        admin.create_tenant(&bad_tier).await.unwrap_err().code(),
        Some("unknown_tier")
    );
}

#[tokio::test]
async fn tenants_list_in_pages_and_update_and_suspend() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    for i in 0..5 {
        create_tenant(&admin, &format!("t{i}"), "free").await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = admin
            .list_tenants(Some(2), cursor.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|t| t.id.to_string()));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["t0", "t1", "t2", "t3", "t4"]);

    let updated = admin
        .update_tenant(
            &tid("t1"),
            &UpdateTenant {
                name: Some("Renamed".into()),
                labels: Some([("plan".to_owned(), "x".to_owned())].into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.labels["plan"].as_str()),
        ("Renamed", "x")
    );

    let token = key(&admin, "t1", TenantRole::Member).await;
    let member = server.client(&token);
    member
        .create_record(&items(), &json!({"id": "r", "title": "before"}))
        .await
        .unwrap();
    let suspended = admin
        .update_tenant(
            &tid("t1"),
            &UpdateTenant {
                status: Some(TenantStatus::Suspended),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .applied()
        .unwrap();
    assert!(
        suspended.placement.epoch > updated.placement.epoch,
        "routing epoch moves with every change"
    );
    let err = member
        .create_record(&items(), &json!({"title": "during"}))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(403), Some("tenant_suspended"))
    );
    assert_eq!(
        member
            .get_record(&items(), &RecordId::parse("r").unwrap())
            .await
            .unwrap()["title"],
        "before",
        "reads still work"
    );
    admin
        .update_tenant(
            &tid("t1"),
            &UpdateTenant {
                status: Some(TenantStatus::Active),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    member
        .create_record(&items(), &json!({"title": "after"}))
        .await
        .unwrap();

    let err = admin
        .update_tenant(
            &tid("t1"),
            &UpdateTenant {
                status: Some(TenantStatus::Moving),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("invalid_status_change"));
    let started = admin
        .update_tenant(
            &tid("t1"),
            &UpdateTenant {
                tier: Some(TierName::parse("premium").unwrap()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .moving()
        .expect("a tier with another isolation model starts a move");
    assert_eq!(started.target.isolation, Isolation::Silo);
    assert_eq!(
        started.target_tier,
        Some(TierName::parse("premium").unwrap())
    );
}

#[tokio::test]
async fn tiers_can_be_defined_and_domains_listed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    let tiers = admin.list_tiers().await.unwrap();
    let names: Vec<_> = tiers
        .items
        .iter()
        .map(|t| (t.name.to_string(), t.spec.isolation))
        .collect();
    assert_eq!(
        names,
        [
            ("free".into(), Isolation::Pool),
            ("premium".into(), Isolation::Silo),
            ("standard".into(), Isolation::Bridge)
        ]
    );
    let gold = TierSpec {
        domains: vec![bulkhead_core::DomainName::parse("local").unwrap()],
        monthly_price: bulkhead_core::money::Amount::parse("999").unwrap(),
        description: "gold".into(),
        ..TierSpec::new(Isolation::Silo)
    };
    admin
        .put_tier(&TierName::parse("gold").unwrap(), &gold)
        .await
        .unwrap();
    create_tenant(&admin, "rich", "gold").await;
    assert_eq!(
        admin
            .get_tenant(&tid("rich"))
            .await
            .unwrap()
            .placement
            .isolation,
        Isolation::Silo
    );
    let pooled = TierSpec {
        retention: Default::default(),
        placement: Default::default(),
        pace: Default::default(),
        isolation: Isolation::Pool,
        ..gold.clone()
    };
    let err = admin
        .put_tier(&TierName::parse("gold").unwrap(), &pooled)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("tier_in_use"));
    let bad = TierSpec {
        retention: Default::default(),
        placement: Default::default(),
        pace: Default::default(),
        domains: vec![bulkhead_core::DomainName::parse("mars").unwrap()],
        ..gold
    };
    assert_eq!(
        admin
            .put_tier(&TierName::parse("x1").unwrap(), &bad)
            .await
            .unwrap_err()
            .code(),
        Some("unknown_domain")
    );
    let domains = admin.list_domains().await.unwrap();
    assert_eq!(domains.items.len(), 1);
    assert_eq!(domains.items[0].tenants.get(&Isolation::Silo), Some(&1));
}

#[tokio::test]
async fn bridge_tenants_fill_a_file_up_to_its_capacity_then_use_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_BRIDGE_TENANTS_PER_FILE", "2")]);
    let admin = server.admin();
    let mut namespaces = Vec::new();
    for i in 0..5 {
        create_tenant(&admin, &format!("b{i}"), "standard").await;
        namespaces.push(
            admin
                .get_tenant(&tid(&format!("b{i}")))
                .await
                .unwrap()
                .placement
                .namespace,
        );
    }
    assert_eq!(
        namespaces,
        [
            "bridge-0001",
            "bridge-0001",
            "bridge-0002",
            "bridge-0002",
            "bridge-0003"
        ]
    );
}

/// Every file under `dir`, read whole (database, WAL and shared-memory files alike).
fn bytes_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((
                    path.display().to_string(),
                    std::fs::read(&path).unwrap_or_default(),
                ));
            }
        }
    }
    out
}

fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    bytes_under(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .map(|(path, _)| path)
        .collect()
}

/// A word unique to a tenant, long enough to be found on disk: `Zqgonepoolzq…`.
fn search_token(tenant: &str) -> String {
    format!("Zq{}{}", tenant.replace('-', ""), "zq".repeat(12))
}

#[tokio::test]
async fn deleting_a_tenant_removes_every_byte_of_its_data_on_every_model() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    let cases = [
        ("gone-pool", "keep-pool", "free"),
        ("gone-bridge", "keep-bridge", "standard"),
        ("gone-silo", "keep-silo", "premium"),
    ];
    // Each tier also ages `signals` out into the tenants' cold archives.
    let signals = bulkhead_core::CollectionName::parse("signals").unwrap();
    let spec = serde_json::from_value(
        json!({"fields": {"ts": {"type": "timestamp"}, "note": {"type": "string"}}}),
    )
    .unwrap();
    admin.put_collection(&signals, &spec).await.unwrap();
    for tier in admin.list_tiers().await.unwrap().items {
        let mut spec = tier.spec;
        spec.retention.insert(
            signals.clone(),
            bulkhead_core::model::Retention {
                field: bulkhead_core::FieldName::parse("ts").unwrap(),
                hot_days: 30.try_into().unwrap(),
            },
        );
        admin.put_tier(&tier.name, &spec).await.unwrap();
    }
    for (gone, keep, tier) in cases {
        for tenant in [gone, keep] {
            create_tenant(&admin, tenant, tier).await;
            let client = server.client(&key(&admin, tenant, TenantRole::Member).await);
            for i in 0..5 {
                client
                    .create_record(&signals, &json!({"ts": format!("2025-0{}-01T00:00:00Z", i + 1), "note": format!("MARKER-{tenant}-cold")}))
                    .await
                    .unwrap();
            }
            for i in 0..50 {
                // The last word lands in the full-text index as a token of its own.
                let marker = format!(
                    "MARKER-{tenant}-{i:03}-{} {}",
                    "x".repeat(40),
                    search_token(tenant)
                );
                client
                    .create_record(&items(), &json!({"title": marker, "n": i}))
                    .await
                    .unwrap();
            }
        }
    }
    let archived = admin
        .run_retention_to_end(&Default::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(archived.report.archived, 30, "{archived:?}");
    let cold = server.data_dir.join("cold");
    for (gone, keep, _) in cases {
        assert!(
            !files_containing(&server.data_dir, &format!("MARKER-{gone}-")).is_empty(),
            "{gone}: data is on disk before"
        );
        // Archive files name their tenant in their (uncompressed) metadata.
        assert!(
            !files_containing(&cold, gone).is_empty(),
            "{gone}: the cold archive is on disk before"
        );
        // The search index holds the token (lowercased, in the pool behind the tenant id).
        let token = search_token(gone).to_lowercase();
        let indexed = files_containing(&server.data_dir, &token);
        assert!(
            !indexed.is_empty(),
            "{gone}: the token is in the search index before"
        );
        admin.delete_tenant(&tid(gone)).await.unwrap();
        let left = files_containing(&server.data_dir, &format!("MARKER-{gone}-"));
        assert!(left.is_empty(), "{gone}: bytes left in {left:?}");
        let left = files_containing(&server.data_dir, &token);
        assert!(left.is_empty(), "{gone}: search tokens left in {left:?}");
        let left = files_containing(&cold, gone);
        assert!(left.is_empty(), "{gone}: cold archive left in {left:?}");
        assert!(
            !cold.join(gone).exists(),
            "{gone}: not even its directory's name is left"
        );
        assert!(
            !files_containing(&cold, keep).is_empty(),
            "{keep}: its archive kept"
        );
        assert!(
            !files_containing(&server.data_dir, &format!("MARKER-{keep}-")).is_empty(),
            "{keep}: neighbour kept"
        );
        let err = admin.get_tenant(&tid(gone)).await.unwrap_err();
        assert_eq!(err.code(), Some("tenant_not_found"));
    }
    let silos: Vec<String> = std::fs::read_dir(server.data_dir.join("domains/local/silos"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !silos.iter().any(|f| f.starts_with("gone-silo")),
        "{silos:?}"
    );
    assert!(
        silos.iter().any(|f| f.starts_with("keep-silo_")),
        "silo files are named by the tenant's life: {silos:?}"
    );
    // The deleted tenant's keys are gone with it.
    let audit = common::audit_rows(&server.data_dir, |row| row.1 == "tenant.delete");
    assert_eq!(audit.len(), 3);
}

/// The data directory is private: a new one and everything in it (catalog, pool, bridge and
/// silo files with their WAL and shared memory, the admin key) are the server user's alone,
/// and a data directory its group or others may enter is refused at start, with the fix. A
/// local user who could read `catalog.db` could mint tenant tokens for any tenant.
#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_every_file_in_it_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    for (id, tier) in [("p", "free"), ("b", "standard"), ("s", "premium")] {
        create_tenant(&admin, &format!("private-{id}"), tier).await;
        let client =
            server.client(&key(&admin, &format!("private-{id}"), TenantRole::Member).await);
        client
            .create_record(&items(), &json!({"title": "mine"}))
            .await
            .unwrap();
    }
    fn walk(path: &std::path::Path, out: &mut Vec<(std::path::PathBuf, u32, bool)>) {
        let meta = std::fs::metadata(path).unwrap();
        out.push((
            path.to_owned(),
            meta.permissions().mode() & 0o777,
            meta.is_dir(),
        ));
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                walk(&entry.unwrap().path(), out);
            }
        }
    }
    let mut found = Vec::new();
    walk(&server.data_dir, &mut found);
    assert!(found.len() > 10, "{found:?}");
    for (path, mode, is_dir) in &found {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", path.display());
    }
    server.stop();
    std::fs::set_permissions(&server.data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(common::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&server.data_dir)
        .env("BULKHEAD_ADMIN_KEY", common::ADMIN_KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused to start");
    assert!(stderr.contains("chmod 0700"), "{stderr}");
    std::fs::set_permissions(&server.data_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let server = Server::start(dir.path());
    server.admin().get_tenant(&tid("private-s")).await.unwrap();
}

/// One tenant whose interrupted provisioning cannot be finished (here: its placement names
/// storage the engine refuses) used to keep the whole server from starting. Now the server
/// starts, serves everyone else, and that tenant answers 503 until it can be finished.
#[tokio::test]
async fn a_tenant_that_cannot_be_finished_at_start_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "healthy", "free").await;
    create_tenant(&admin, "broken", "premium").await;
    let healthy_key = key(&admin, "healthy", TenantRole::Member).await;
    let broken_key = key(&admin, "broken", TenantRole::Member).await;
    server.stop();
    {
        let conn = rusqlite::Connection::open(server.data_dir.join("catalog.db")).unwrap();
        conn.execute(
            "UPDATE tenants SET status = 'provisioning', updated_at = 0 WHERE id = 'broken'",
            [],
        )
        .unwrap();
        conn.execute(
            "UPDATE placements SET namespace = 'silo-../../elsewhere' WHERE tenant_id = 'broken'",
            [],
        )
        .unwrap();
    }
    let server = Server::start(dir.path());
    let healthy = server.client(&healthy_key);
    healthy
        .create_record(&items(), &json!({"title": "still served"}))
        .await
        .unwrap();
    let err = server
        .client(&broken_key)
        .create_record(&items(), &json!({"title": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
    // The background pass logs its failure when it gets to the tenant.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !server
        .log()
        .contains("could not finish the tenant's interrupted operation")
    {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Readiness says so, and stays 200: the server serves everyone else.
    let ready = server.admin().ready().await.unwrap();
    assert_eq!(ready.status, "degraded");
    assert_eq!(ready.problems, ["tenant broken waits in provisioning"]);
}

/// A record holding NUL from before NUL was refused cannot be moved (no engine but the
/// embedded one stores it): the move fails naming it and rolls back; the tenant keeps
/// serving from where it was.
#[tokio::test]
async fn a_move_meeting_a_record_with_nul_fails_naming_it_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), &[("BULKHEAD_MOVE_DRAIN_GRACE_MS", "100")]);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "legacy-nul", "free").await;
    let token = key(&admin, "legacy-nul", TenantRole::Member).await;
    let client = server.client(&token);
    for id in ["fine", "old"] {
        client
            .create_record(&items(), &json!({"id": id, "title": "x"}))
            .await
            .unwrap();
    }
    server.stop();
    {
        let pool =
            rusqlite::Connection::open(server.data_dir.join("domains/local/pool.db")).unwrap();
        let changed = pool
            .execute(
                "UPDATE c_items SET f_title = 'a' || char(0) || 'b' WHERE id = 'old'",
                [],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    let server = Server::start_with(dir.path(), &[("BULKHEAD_MOVE_DRAIN_GRACE_MS", "100")]);
    let admin = server.admin();
    let started = admin
        .start_move(
            &tid("legacy-nul"),
            &bulkhead_api::StartMove {
                isolation: Some(Isolation::Silo),
                domain: None,
                incarnation: None,
            },
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let ended = loop {
        let view = admin.get_move(&started.id).await.unwrap();
        if view.phase.is_final() {
            break view;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stuck in {}",
            view.phase
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(ended.phase, bulkhead_core::model::MovePhase::RolledBack);
    let why = ended.error.unwrap_or_default();
    assert!(why.contains("old") && why.contains("NUL"), "{why}");
    let tenant = admin.get_tenant(&tid("legacy-nul")).await.unwrap();
    assert_eq!(tenant.placement.isolation, Isolation::Pool);
    let client = server.client(&token);
    client
        .get_record(&items(), &RecordId::parse("fine").unwrap())
        .await
        .unwrap();
}
