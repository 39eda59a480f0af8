//! Webhook configuration: targets, roles and specs checked through the API, and webhooks
//! declared in the platform file.

use std::time::Duration;

use bulkhead_api::{CreatePlatformKey, FindingKind, FindingQuery};
use bulkhead_core::access::{PlatformRole, TenantRole};
use serde_json::Value;

use super::{SECRET, allow_private, spec, wait_until};
use crate::common;
use crate::common::{Server, create_tenant, key, tid};

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

/// Only the server knows whether a webhook may deliver inward, so `apply` sends webhooks
/// first: one it refuses stops the apply before any tier, domain or collection of the file
/// changes, and the error says what was applied and what was not.
#[tokio::test]
async fn a_webhook_the_server_refuses_stops_apply_before_anything_else_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    let file = dir.path().join("platform.toml");
    let text = "[tiers.silver]\nisolation = \"bridge\"\n\n\
                [collections.notes.fields]\ntitle = { type = \"text\" }\n\n\
                [webhooks.inward]\nurl = \"http://127.0.0.1:9/in\"\nevents = [\"*\"]\n";
    std::fs::write(&file, text).unwrap();
    let apply = || {
        std::process::Command::new(common::binary())
            .args(["apply", "-f", file.to_str().unwrap()])
            .env("BULKHEAD_URL", &server.url)
            .env("BULKHEAD_TOKEN", common::ADMIN_KEY)
            .output()
            .unwrap()
    };
    let out = apply();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("webhook inward was refused")
            && err.contains("applied before it: none")
            && err.contains("not applied: tier silver, collection notes"),
        "{err}"
    );
    assert!(admin.list_webhooks().await.unwrap().is_empty());
    assert!(
        !admin
            .list_tiers()
            .await
            .unwrap()
            .items
            .iter()
            .any(|t| t.name.as_str() == "silver")
    );
    assert!(admin.list_collections().await.unwrap().items.is_empty());

    std::fs::write(
        &file,
        text.replace("http://127.0.0.1:9/in", "https://hooks.example.com/in"),
    )
    .unwrap();
    let out = apply();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(admin.list_webhooks().await.unwrap().len(), 1);
    assert_eq!(admin.list_collections().await.unwrap().items.len(), 1);
}
