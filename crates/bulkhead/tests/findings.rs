//! The detectors one by one, with thresholds and a kind switched off in the configuration
//! file: failed authentications from one address, a weakened tier ceiling, a quota reached,
//! a whole-collection export, an owner key, and a chain break raised by the watch; the
//! switched-off kind (platform-admin data access) raises nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bulkhead_api::{Finding, FindingKind, FindingQuery};
use bulkhead_client::Client;
use bulkhead_core::TierName;
use bulkhead_core::access::TenantRole;
use common::{Server, create_tenant, items, key, put_items, tid};
use serde_json::json;

async fn kinds(admin: &Client) -> Vec<Finding> {
    admin
        .list_findings(&FindingQuery {
            limit: Some(1000),
            ..FindingQuery::default()
        })
        .await
        .unwrap()
        .items
}

async fn wait_for(admin: &Client, kind: FindingKind) -> Finding {
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        if let Some(f) = kinds(admin).await.into_iter().find(|f| f.kind == kind) {
            return f;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} finding: {:#?}",
            kinds(admin).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_detector_raises_its_finding_and_a_kind_switched_off_raises_none() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bulkhead.toml");
    std::fs::write(
        &config,
        "[findings]\nauth_failures = 3\nprobing_denials = 1000\noff = [\"admin_data_access\"]\n",
    )
    .unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            ("BULKHEAD_CONFIG", config.to_str().unwrap()),
            ("BULKHEAD_AUDIT_WATCH_SECS", "1"),
        ],
    );
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;

    // Failed credential checks from one address: 3 within the window (the configured
    // threshold; the first is audited at once, the rest when its 10 s window closes).
    let stranger = server.client("bk_nope_nope");
    for _ in 0..5 {
        assert!(stranger.list_tenants(None, None).await.is_err());
    }
    let auth = wait_for(&admin, FindingKind::AuthFailures).await;
    assert!(auth.principal.starts_with("address:127.0.0.1"), "{auth:?}");

    // A weakened ceiling: forbid export, then allow it again.
    let free = TierName::parse("free").unwrap();
    let mut spec = admin
        .list_tiers()
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|t| t.name == free)
        .unwrap()
        .spec;
    spec.ceiling
        .forbid
        .insert(bulkhead_core::permissions::Action::Export);
    admin.put_tier(&free, &spec).await.unwrap();
    spec.ceiling.forbid.clear();
    spec.limits.max_records = Some(2);
    admin.put_tier(&free, &spec).await.unwrap();
    let weakened = wait_for(&admin, FindingKind::CeilingWeakened).await;
    assert!(weakened.summary.contains("export"), "{weakened:?}");

    // A quota reached.
    let acme = server.client(&key(&admin, "acme", TenantRole::Owner).await);
    for i in 0..2 {
        acme.create_record(&items(), &json!({"title": format!("r{i}")}))
            .await
            .unwrap();
    }
    let refused = acme
        .create_record(&items(), &json!({"title": "one too many"}))
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(507), "{refused}");
    let quota = wait_for(&admin, FindingKind::QuotaExceeded).await;
    assert_eq!(quota.tenant, Some(tid("acme")));

    // An owner key, and a whole collection exported.
    assert_eq!(
        wait_for(&admin, FindingKind::PrivilegedGrant).await.tenant,
        Some(tid("acme"))
    );
    acme.export(&items(), None).await.unwrap();
    let export = wait_for(&admin, FindingKind::CollectionExport).await;
    assert_eq!(export.tenant, Some(tid("acme")));
    // Filtered exports are not whole collections.
    acme.export(&items(), Some("title = \"r0\"")).await.unwrap();

    // Platform-admin data access is switched off in the file: none, though the admin read.
    admin
        .with_tenant(tid("acme"))
        .export(&items(), None)
        .await
        .unwrap();

    // A second whole export by the same key folds into its finding.
    acme.export(&items(), None).await.unwrap();

    // A cut tail, found by the watch (it saw the head a moment ago).
    tokio::time::sleep(Duration::from_secs(3)).await;
    rusqlite::Connection::open(server.data_dir.join("catalog.db"))
        .unwrap()
        .execute(
            "DELETE FROM audit WHERE seq >= (SELECT max(seq) - 1 FROM audit)",
            [],
        )
        .unwrap();
    let broken = wait_for(&admin, FindingKind::ChainBroken).await;
    assert_eq!(broken.severity, bulkhead_api::Severity::Critical);
    let all = kinds(&admin).await;
    assert!(
        all.iter().all(|f| f.kind != FindingKind::AdminDataAccess),
        "{all:#?}"
    );
    let by_acme: Vec<&Finding> = all
        .iter()
        .filter(|f| f.kind == FindingKind::CollectionExport && f.principal == export.principal)
        .collect();
    assert_eq!(
        by_acme.len(),
        1,
        "repeats fold into the open finding: {all:#?}"
    );
    assert_eq!(by_acme[0].count, 2, "{all:#?}");
}
