//! A probe of 200 foreign record ids raises exactly one finding and one delivery.

use std::time::Duration;

use bulkhead_api::{FindingKind, FindingQuery, FindingState};
use bulkhead_core::access::TenantRole;
use serde_json::json;

use super::{Receiver, SECRET, allow_private, spec, wait_until};
use crate::common;
use crate::common::{Server, create_tenant, key, put_items, tid};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_probe_of_200_foreign_ids_raises_one_finding_and_one_delivery() {
    let receiver = Receiver::start(SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &allow_private());
    let admin = server.admin();
    admin
        .put_webhook("secops", &spec(&receiver.url, &["finding.opened"]))
        .await
        .unwrap();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    create_tenant(&admin, "globex", "premium").await;
    let globex = server.client(&key(&admin, "globex", TenantRole::Member).await);
    let mut foreign = Vec::new();
    for i in 0..200 {
        let r = globex
            .create_record(
                &common::items(),
                &json!({"title": format!("secret plan {i}")}),
            )
            .await
            .unwrap();
        foreign.push(r["id"].as_str().unwrap().to_owned());
    }
    let acme_key = key(&admin, "acme", TenantRole::Member).await;
    let acme = server.client(&acme_key);
    for id in &foreign {
        let err = acme
            .get_record(
                &common::items(),
                &bulkhead_core::RecordId::parse(id).unwrap(),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("record_not_found"), "{err}");
    }
    wait_until(
        "the finding's delivery",
        Duration::from_secs(20),
        async || !receiver.got().is_empty(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let findings = admin
        .list_findings(&FindingQuery {
            state: Some(FindingState::Open),
            ..FindingQuery::default()
        })
        .await
        .unwrap()
        .items;
    let enumeration: Vec<_> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::Enumeration)
        .collect();
    assert_eq!(enumeration.len(), 1, "{findings:#?}");
    assert_eq!(enumeration[0].tenant, Some(tid("acme")));
    assert!(
        enumeration[0].principal.starts_with("key:"),
        "{findings:#?}"
    );
    assert!(
        findings.iter().all(|f| f.kind != FindingKind::Probing),
        "not-found is not a denial: {findings:#?}"
    );
    let got = receiver.got();
    let opened: Vec<_> = got
        .iter()
        .filter(|g| g.body["data"]["kind"] == "enumeration")
        .collect();
    assert_eq!(opened.len(), 1, "{got:#?}");
    assert!(opened[0].signature_ok);
    // Nothing of the records' contents in findings or deliveries.
    let all = serde_json::to_string(&findings).unwrap()
        + &got.iter().map(|g| g.body.to_string()).collect::<String>();
    assert!(!all.contains("secret plan"), "{all}");

    // 60 denied requests from one key: a probing finding, folded into one.
    for _ in 0..60 {
        assert!(acme.list_tenants(None, None).await.is_err());
    }
    wait_until("the probing finding", Duration::from_secs(20), async || {
        admin
            .list_findings(&FindingQuery {
                kind: Some(FindingKind::Probing),
                ..FindingQuery::default()
            })
            .await
            .unwrap()
            .items
            .iter()
            .any(|f| f.count >= 60)
    })
    .await;
    let probing = admin
        .list_findings(&FindingQuery {
            kind: Some(FindingKind::Probing),
            ..FindingQuery::default()
        })
        .await
        .unwrap()
        .items;
    let by_key: Vec<_> = probing
        .iter()
        .filter(|f| f.principal.starts_with("key:"))
        .collect();
    assert_eq!(by_key.len(), 1, "{probing:#?}");
    assert!(
        probing.iter().any(|f| f.principal.starts_with("address:")),
        "by address too: {probing:#?}"
    );
    // Acknowledged, it stays acknowledged; the CLI lists it.
    let acked = admin.acknowledge_finding(&by_key[0].id).await.unwrap();
    assert_eq!(acked.state, FindingState::Acknowledged);
    let (ok, out) = common::cli(&server, &["findings", "list", "--kind", "probing"]);
    assert!(ok && out.contains("acknowledged"), "{out}");
}
