//! Findings and signed webhooks, with a local receiver: signatures checked by an HMAC
//! written here from the specification; a receiver that fails for a while, and a `kill -9`
//! with deliveries pending, lose nothing and double nothing, in order per tenant; a probe
//! of 200 foreign record ids raises exactly one finding and one delivery; targets,
//! roles, Slack bodies and automatic disabling.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use bulkhead_api::{
    CreatePlatformKey, FindingKind, FindingQuery, FindingState, UpdateTenant, WebhookFormat,
    WebhookSpec,
};
use bulkhead_client::Client;
use bulkhead_core::access::{PlatformRole, TenantRole};
use bulkhead_core::model::TenantStatus;
use common::{Server, create_tenant, key, put_items, tid};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// HMAC-SHA256 (RFC 2104), from SHA-256 alone.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Whether one of the `v1,` signatures in `header` signs `id.timestamp.body` with `secret`.
fn signed(secret: &str, id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.trim_start_matches("whsec_")).unwrap();
    let mut message = format!("{id}.{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    let expected = format!("v1,{}", b64.encode(hmac_sha256(&key, &message)));
    header.split(' ').any(|s| s == expected)
}

/// What the receiver accepted.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    body: Value,
    signature_ok: bool,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    failing: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Got>>>,
    refused: Arc<Mutex<u64>>,
}

impl Receiver {
    async fn start(secret: &'static str) -> Receiver {
        let failing = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0));
        let (f, g, r) = (Arc::clone(&failing), Arc::clone(&got), Arc::clone(&refused));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (f, g, r) = (Arc::clone(&f), Arc::clone(&g), Arc::clone(&r));
                async move {
                    if f.load(Ordering::SeqCst) {
                        *r.lock() += 1;
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let h = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let id = h("webhook-id");
                    g.lock().push(Got {
                        signature_ok: signed(
                            secret,
                            &id,
                            &h("webhook-timestamp"),
                            &body,
                            &h("webhook-signature"),
                        ),
                        id,
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    });
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url,
            failing,
            got,
            refused,
        }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().clone()
    }
}

fn allow_private() -> [(&'static str, &'static str); 2] {
    [
        ("BULKHEAD_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("BULKHEAD_AUDIT_WATCH_SECS", "0"),
    ]
}

fn spec(url: &str, events: &[&str]) -> WebhookSpec {
    WebhookSpec {
        url: url.to_owned(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        secret: Some(SECRET.into()),
        format: WebhookFormat::Standard,
        disable_after: None,
        enabled: None,
    }
}

async fn wait_until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn set_status(admin: &Client, id: &str, status: TenantStatus) {
    admin
        .update_tenant(
            &tid(id),
            &UpdateTenant {
                status: Some(status),
                ..UpdateTenant::default()
            },
        )
        .await
        .unwrap();
}

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

#[tokio::test]
async fn targets_roles_and_specs_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    let admin = server.admin();
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "https://10.0.0.1/",
        "http://[::1]/",
        "ftp://example.com/",
    ] {
        let err = admin
            .put_webhook("w", &spec(url, &["tenant.created"]))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("invalid_webhook_url"),
            "{url}: {err}"
        );
    }
    let bad_events = admin
        .put_webhook(
            "w",
            &spec("https://hooks.example.com/", &["tenant.exploded"]),
        )
        .await
        .unwrap_err();
    assert!(bad_events.to_string().contains("invalid_webhook_events"));
    let mut bad_secret = spec("https://hooks.example.com/", &["*"]);
    bad_secret.secret = Some("hunter2".into());
    let err = admin.put_webhook("w", &bad_secret).await.unwrap_err();
    assert!(err.to_string().contains("invalid_webhook_secret"), "{err}");
    // A new webhook without a secret gets one, shown once; later reads show a fingerprint.
    let mut fresh = spec("https://hooks.example.com/", &["*"]);
    fresh.secret = None;
    let made = admin.put_webhook("w", &fresh).await.unwrap();
    let secret = made.secret.clone().unwrap();
    assert!(secret.starts_with("whsec_"));
    let read = admin.get_webhook("w").await.unwrap();
    assert_eq!(read.secret, None);
    assert!(!serde_json::to_string(&read).unwrap().contains(&secret[6..]));
    // Operators and tenants may not touch webhooks; operators may read findings.
    let operator = server.client(
        &admin
            .create_platform_key(&CreatePlatformKey {
                name: "ops".into(),
                role: PlatformRole::Operator,
                expires_in: None,
            })
            .await
            .unwrap()
            .key,
    );
    assert!(operator.list_webhooks().await.is_err());
    assert!(operator.put_webhook("x", &fresh).await.is_err());
    assert!(
        operator
            .list_findings(&FindingQuery::default())
            .await
            .is_ok()
    );
    create_tenant(&admin, "acme", "free").await;
    let tenant = server.client(&key(&admin, "acme", TenantRole::Owner).await);
    assert!(tenant.list_webhooks().await.is_err());
    assert!(
        tenant
            .list_findings(&FindingQuery::default())
            .await
            .is_err()
    );
    // The owner key just made is a privileged grant.
    wait_until(
        "the privileged grant finding",
        Duration::from_secs(10),
        async || {
            admin
                .list_findings(&FindingQuery {
                    kind: Some(FindingKind::PrivilegedGrant),
                    ..FindingQuery::default()
                })
                .await
                .unwrap()
                .items
                .iter()
                .any(|f| f.tenant == Some(tid("acme")))
        },
    )
    .await;
    admin.delete_webhook("w").await.unwrap();
    assert!(admin.get_webhook("w").await.is_err());
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

/// Webhooks in the platform file: created, then unchanged, then changed (events, and a
/// secret rotated through the environment, compared by fingerprint); a missing variable is
/// named and nothing is applied.
#[tokio::test]
async fn webhooks_in_the_platform_file_plan_and_apply() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &allow_private());
    let admin = server.admin();
    let file = dir.path().join("platform.toml");
    let path = file.to_str().unwrap().to_owned();
    let run = |verb: &str, secret: Option<&str>| {
        let mut command = std::process::Command::new(common::binary());
        command
            .args([verb, "-f", &path, "--json"])
            .env("BULKHEAD_URL", &server.url)
            .env("BULKHEAD_TOKEN", common::ADMIN_KEY)
            .env_remove("HOOK_SECRET");
        if let Some(secret) = secret {
            command.env("HOOK_SECRET", secret);
        }
        let out = command.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let action = |text: &str| -> String {
        let plan: Value = serde_json::from_str(text.lines().next().unwrap_or("[]"))
            .or_else(|_| serde_json::from_str(text))
            .unwrap_or_else(|e| panic!("{e}: {text}"));
        plan.as_array()
            .unwrap()
            .iter()
            .find(|i| i["kind"] == "webhook")
            .map(|i| {
                format!(
                    "{} {}",
                    i["action"].as_str().unwrap(),
                    i["detail"].as_str().unwrap()
                )
            })
            .unwrap()
    };
    let write = |events: &str| {
        std::fs::write(
            &file,
            format!(
                "[webhooks.billing]\nurl = \"https://hooks.example.com/in\"\nevents = [{events}]\nsecret = \"${{HOOK_SECRET}}\"\n"
            ),
        )
        .unwrap();
    };
    write(r#""tenant.created""#);
    let (ok, out) = run("plan", Some(SECRET));
    assert!(ok, "{out}");
    assert!(action(&out).starts_with("create"), "{out}");
    assert!(
        admin.list_webhooks().await.unwrap().is_empty(),
        "a plan changes nothing"
    );
    let (ok, out) = run("apply", Some(SECRET));
    assert!(ok, "{out}");
    let live = admin.get_webhook("billing").await.unwrap();
    assert_eq!(live.events, ["tenant.created"]);
    let (ok, out) = run("plan", Some(SECRET));
    assert!(ok && action(&out).starts_with("unchanged"), "{out}");
    write(r#""tenant.created", "tenant.deleted""#);
    let (ok, out) = run("plan", Some(SECRET));
    assert!(ok && action(&out).starts_with("change events"), "{out}");
    let rotated = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3";
    let (ok, out) = run("plan", Some(rotated));
    assert!(ok && action(&out).contains("secret rotated"), "{out}");
    let (ok, out) = run("apply", Some(rotated));
    assert!(ok, "{out}");
    let live = admin.get_webhook("billing").await.unwrap();
    assert_eq!(live.events, ["tenant.created", "tenant.deleted"]);
    assert_eq!(
        live.secret_fingerprint,
        bulkhead_core::keys::fingerprint(rotated)
    );
    let (ok, out) = run("apply", None);
    assert!(!ok && out.contains("HOOK_SECRET"), "{out}");
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
