//! Deliveries: a failing receiver and a `kill -9` lose nothing and double nothing, in order per
//! tenant; a webhook failing in a row is disabled and delivers again once re-enabled; servers
//! sharing a catalog deliver each event once.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bulkhead_api::{FindingKind, FindingQuery, WebhookFormat};
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::TenantStatus;
use serde_json::json;

use super::{Receiver, SECRET, allow_private, set_status, spec, wait_until};
use crate::common;
use crate::common::{Server, create_tenant, key, tid};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_receiver_and_a_kill_lose_nothing_double_nothing_and_keep_each_tenants_order() {
    let receiver = Receiver::start(SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), &allow_private());
    let admin = server.admin();
    admin
        .put_webhook(
            "billing",
            &spec(
                &receiver.url,
                &[
                    "tenant.created",
                    "tenant.updated",
                    "tenant.suspended",
                    "key.created",
                ],
            ),
        )
        .await
        .unwrap();
    receiver.failing.store(true, Ordering::SeqCst);
    let tenants = ["t-a", "t-b", "t-c"];
    for t in tenants {
        create_tenant(&admin, t, "free").await;
        set_status(&admin, t, TenantStatus::Suspended).await;
        set_status(&admin, t, TenantStatus::Active).await;
        key(&admin, t, TenantRole::Member).await;
    }
    // 4 events each; most wait in the outbox while the receiver fails.
    wait_until("12 messages pending", Duration::from_secs(20), async || {
        admin.get_webhook("billing").await.unwrap().pending >= 12
    })
    .await;
    // The kill comes once a delivery was attempted, refused and its attempt recorded, not
    // merely queued (an attempt the kill cuts short is retried, and never logged).
    wait_until(
        "a refused delivery recorded",
        Duration::from_secs(20),
        async || {
            admin
                .webhook_deliveries("billing", Some(500))
                .await
                .unwrap()
                .iter()
                .any(|d| d.status == Some(503))
        },
    )
    .await;
    assert!(*receiver.refused.lock() > 0, "deliveries were attempted");
    server.kill_hard();
    let server = Server::start_with(dir.path(), &allow_private());
    let admin = server.admin();
    receiver.failing.store(false, Ordering::SeqCst);
    wait_until("all 12 delivered", Duration::from_secs(90), async || {
        receiver.got().len() >= 12
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = receiver.got();
    let mut ids: Vec<&str> = got.iter().map(|g| g.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), got.len(), "each message once: {got:#?}");
    assert_eq!(got.len(), 12, "{got:#?}");
    assert!(got.iter().all(|g| g.signature_ok), "{got:#?}");
    let mut by_tenant: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in &got {
        let tenant = g.body["data"]["tenant"].as_str().unwrap().to_owned();
        by_tenant
            .entry(tenant)
            .or_default()
            .push(g.body["type"].as_str().unwrap().to_owned());
    }
    for t in tenants {
        assert_eq!(
            by_tenant[t],
            [
                "tenant.created",
                "tenant.suspended",
                "tenant.updated",
                "key.created"
            ],
            "{t}: in order"
        );
        // `tenant.created` names the life it began, and the updates the life they changed.
        let life = admin
            .get_tenant(&tid(t))
            .await
            .unwrap()
            .placement
            .incarnation;
        for kind in ["tenant.suspended", "tenant.updated"] {
            let event = got
                .iter()
                .find(|g| g.body["type"] == kind && g.body["data"]["tenant"] == t)
                .unwrap();
            assert_eq!(
                event.body["data"]["detail"]["incarnation"],
                life.to_string(),
                "{kind}: {}",
                event.body
            );
        }
        let created = got
            .iter()
            .find(|g| g.body["type"] == "tenant.created" && g.body["data"]["tenant"] == t)
            .unwrap();
        let detail = &created.body["data"]["detail"];
        assert_eq!(detail["incarnation"], life.to_string(), "{detail}");
        assert_eq!(
            (&detail["tier"], &detail["isolation"]),
            (&json!("free"), &json!("pool")),
            "{detail}"
        );
    }
    let view = admin.get_webhook("billing").await.unwrap();
    assert_eq!((view.pending, view.failures), (0, 0), "{view:?}");
    let log = admin
        .webhook_deliveries("billing", Some(500))
        .await
        .unwrap();
    assert!(log.iter().any(|d| d.status == Some(503)), "failures logged");
    assert_eq!(log.iter().filter(|d| d.status == Some(200)).count(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_failing_in_a_row_is_disabled_raised_and_delivers_once_re_enabled() {
    let receiver = Receiver::start(SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &allow_private());
    let admin = server.admin();
    let mut flaky = spec(&receiver.url, &["tenant.created"]);
    flaky.disable_after = Some(2);
    admin.put_webhook("flaky", &flaky).await.unwrap();
    let mut slack = spec(&receiver.url, &["tenant.created"]);
    slack.format = WebhookFormat::Slack;
    receiver.failing.store(true, Ordering::SeqCst);
    create_tenant(&admin, "acme", "free").await;
    wait_until(
        "the webhook disabled",
        Duration::from_secs(30),
        async || !admin.get_webhook("flaky").await.unwrap().enabled,
    )
    .await;
    wait_until(
        "the webhook_disabled finding",
        Duration::from_secs(10),
        async || {
            admin
                .list_findings(&FindingQuery {
                    kind: Some(FindingKind::WebhookDisabled),
                    ..FindingQuery::default()
                })
                .await
                .unwrap()
                .items
                .len()
                == 1
        },
    )
    .await;
    receiver.failing.store(false, Ordering::SeqCst);
    let (ok, out) = common::cli(
        &server,
        &[
            "webhook",
            "put",
            "flaky",
            "--target",
            &receiver.url,
            "--events",
            "tenant.created",
            "--secret",
            SECRET,
            "--enable",
        ],
    );
    assert!(ok, "{out}");
    wait_until(
        "the waiting message delivered",
        Duration::from_secs(20),
        async || receiver.got().len() == 1,
    )
    .await;
    assert_eq!(receiver.got()[0].body["type"], "tenant.created");
    // Slack's shape: text and blocks.
    admin.put_webhook("slack", &slack).await.unwrap();
    create_tenant(&admin, "globex", "free").await;
    wait_until("the Slack body", Duration::from_secs(20), async || {
        receiver
            .got()
            .iter()
            .any(|g| g.body.get("blocks").is_some())
    })
    .await;
    let got = receiver.got();
    let s = got.iter().find(|g| g.body.get("blocks").is_some()).unwrap();
    assert!(s.body["text"].as_str().unwrap().contains("globex"), "{s:?}");
    assert!(s.signature_ok);
}

/// Two servers sharing a PostgreSQL catalog read the audit stream together: each event is
/// delivered once, whichever server wrote it and whichever reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_sharing_a_catalog_deliver_each_event_once() {
    let Some(pg) = bulkhead_pg_testkit::require("webhooks_shared") else {
        return;
    };
    let receiver = Receiver::start(SECRET).await;
    let url = pg.url("postgres");
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let env = [
        ("BULKHEAD_CATALOG", url.as_str()),
        ("BULKHEAD_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("BULKHEAD_AUDIT_WATCH_SECS", "0"),
    ];
    let servers: Vec<Server> = dirs
        .iter()
        .map(|d| Server::start_with(d.path(), &env))
        .collect();
    servers[0]
        .admin()
        .put_webhook("shared", &spec(&receiver.url, &["tenant.created"]))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (s, server) in servers.iter().enumerate() {
        let admin = server.admin();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                create_tenant(&admin, &format!("s{s}-{i:02}"), "free").await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    wait_until("20 deliveries", Duration::from_secs(30), async || {
        receiver.got().len() >= 20
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = receiver.got();
    let mut tenants: Vec<String> = got
        .iter()
        .map(|g| g.body["data"]["tenant"].as_str().unwrap().to_owned())
        .collect();
    tenants.sort();
    let before = tenants.len();
    tenants.dedup();
    assert_eq!((before, tenants.len()), (20, 20), "each once: {got:#?}");
    assert!(got.iter().all(|g| g.signature_ok));
}
