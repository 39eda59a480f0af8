//! Storage domains registered at runtime with `PUT /v1/domains/{name}`: a second SQLite domain
//! that takes tenants and comes back after a restart, who may put one, what a bad spec gets,
//! an unreachable PostgreSQL server whose password never shows anywhere, domains dedicated to
//! one tenant, and the CLI.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use bulkhead_api::CreatePlatformKey;
use bulkhead_client::Method;
use bulkhead_core::access::{PlatformRole, TenantRole};
use bulkhead_core::model::{DomainSpec, Isolation, TierSpec};
use bulkhead_core::{DomainName, RecordId, TierName};
use common::{Server, create_tenant, items, key, put_items, tid};
use serde_json::json;

const PASSWORD: &str = "Pw-d0-not-SHOW-4711";
const DATA_PASSWORD: &str = "Data-pw-NEVER-0815";

fn domain(name: &str) -> DomainName {
    DomainName::parse(name).unwrap()
}

async fn put_tier(
    admin: &bulkhead_client::Client,
    name: &str,
    isolation: Isolation,
    domains: &[&str],
) {
    let spec = TierSpec {
        domains: domains.iter().map(|d| domain(d)).collect(),
        ..TierSpec::new(isolation)
    };
    admin
        .put_tier(&TierName::parse(name).unwrap(), &spec)
        .await
        .unwrap();
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test]
async fn a_second_sqlite_domain_takes_a_tiers_tenants_and_comes_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin();
    let east = DomainSpec {
        monthly_cost: bulkhead_core::money::Amount::parse("30").unwrap(),
        ..DomainSpec::sqlite()
    };
    let view = admin.put_domain(&domain("east"), &east).await.unwrap();
    assert_eq!((view.name.as_str(), view.available), ("east", true));
    assert!(view.tenants.is_empty());
    put_tier(&admin, "eastern", Isolation::Pool, &["east"]).await;
    put_items(&admin).await;
    create_tenant(&admin, "acme", "eastern").await;
    let tenant = admin.get_tenant(&tid("acme")).await.unwrap();
    assert_eq!(tenant.placement.domain.as_str(), "east");

    let member = server.client(&key(&admin, "acme", TenantRole::Member).await);
    let marker = "written-to-the-east-domain";
    member
        .create_record(&items(), &json!({"id": "r1", "title": marker}))
        .await
        .unwrap();
    let r1 = RecordId::parse("r1").unwrap();
    assert_eq!(
        member.get_record(&items(), &r1).await.unwrap()["title"],
        marker
    );
    let domains_dir = server.data_dir.join("domains");
    let holders = files_containing(&domains_dir, marker);
    assert!(!holders.is_empty(), "the record is in no domain file");
    let east_dir = domains_dir.join("east").display().to_string();
    assert!(
        holders.iter().all(|f| f.starts_with(&east_dir)),
        "{holders:?}"
    );

    server.stop();
    let server = Server::start(dir.path());
    let member = server.client(&key(&server.admin(), "acme", TenantRole::Viewer).await);
    assert_eq!(
        member.get_record(&items(), &r1).await.unwrap()["title"],
        marker
    );
    let listed = server.admin().list_domains().await.unwrap();
    let east = listed
        .items
        .iter()
        .find(|d| d.name.as_str() == "east")
        .unwrap();
    assert!(east.available, "the domain is reopened from the catalog");
    assert_eq!(east.tenants.get(&Isolation::Pool), Some(&1));
    assert_eq!(east.spec.monthly_cost.to_string(), "30");
    let audited = common::audit_rows(&server.data_dir, |row| row.1 == "domain.put");
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].2, "east");
}

#[tokio::test]
async fn only_a_platform_admin_may_put_a_domain_and_bad_specs_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    let operator_key = admin
        .create_platform_key(&CreatePlatformKey {
            name: "ops".into(),
            role: PlatformRole::Operator,
            expires_in: None,
        })
        .await
        .unwrap();
    let operator = server.client(&operator_key.key);
    let err = operator
        .put_domain(&domain("east"), &DomainSpec::sqlite())
        .await
        .unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(403), Some("forbidden")));
    assert_eq!(
        operator.list_domains().await.unwrap().items.len(),
        1,
        "operators still read"
    );
    let tenant_key = {
        create_tenant(&admin, "acme", "free").await;
        key(&admin, "acme", TenantRole::Owner).await
    };
    let err = server
        .client(&tenant_key)
        .put_domain(&domain("east"), &DomainSpec::sqlite())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));

    let url = format!("postgres://owner:{PASSWORD}@127.0.0.1:1/app");
    for (body, field) in [
        (json!({"engine": "mysql"}), "engine"),
        (json!({"engine": "postgres"}), "url"),
        (
            json!({"engine": "postgres", "url": "mysql://owner@db/x"}),
            "url",
        ),
        (json!({"engine": "sqlite", "url": url}), "url"),
        (json!({"engine": "sqlite", "data_url": url}), "data_url"),
        (
            json!({"engine": "sqlite", "bridge_tenants_per_file": 0}),
            "bridge_tenants_per_file",
        ),
    ] {
        let answer = admin
            .raw(
                Method::PUT,
                "/v1/domains/east",
                Some(serde_json::to_vec(&body).unwrap()),
                Some("application/json"),
            )
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        assert_eq!(answer.status, 400, "{body}: {text}");
        let error: serde_json::Value = answer.json().unwrap();
        assert_eq!(error["error"]["code"], "invalid_domain", "{body}: {text}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{field}:")),
            "{body}: {message}"
        );
        assert!(!text.contains(PASSWORD), "{text}");
    }
    let answer = admin
        .raw(
            Method::PUT,
            "/v1/domains/east",
            Some(br#"{"engine": "sqlite", "region": "eu"}"#.to_vec()),
            Some("application/json"),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 400);
    assert!(String::from_utf8_lossy(&answer.body).contains("region"));
    let err = admin
        .put_domain(&domain("local"), &DomainSpec::sqlite())
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(409), Some("domain_preconfigured"))
    );
    assert_eq!(
        admin.list_domains().await.unwrap().items.len(),
        1,
        "nothing stored"
    );
}

#[tokio::test]
async fn an_unreachable_postgres_domain_is_refused_and_its_passwords_never_show() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    let body = json!({
        "engine": "postgres",
        // Port 1 on loopback: nothing listens there.
        "url": format!("postgres://owner:{PASSWORD}@127.0.0.1:1/app"),
        "data_url": format!("postgres://app:{DATA_PASSWORD}@127.0.0.1:1/app"),
        "silos": true,
    });
    let answer = admin
        .raw(
            Method::PUT,
            "/v1/domains/pg1",
            Some(serde_json::to_vec(&body).unwrap()),
            Some("application/json"),
        )
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    assert_eq!(answer.status, 422, "{text}");
    let error: serde_json::Value = answer.json().unwrap();
    assert_eq!(error["error"]["code"], "domain_unreachable", "{text}");

    let listed = admin
        .raw(Method::GET, "/v1/domains", None, None)
        .await
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.body).into_owned();
    assert!(!listed.contains("pg1"), "nothing is stored: {listed}");
    // The audit log has no HTTP route yet: the whole catalog (and its WAL) is searched, and
    // so is the server's log.
    server.admin().list_tiers().await.unwrap();
    for password in [PASSWORD, DATA_PASSWORD] {
        assert!(!text.contains(password), "PUT answer: {text}");
        assert!(!listed.contains(password), "GET /v1/domains: {listed}");
        let stored = files_containing(&server.data_dir, password);
        assert!(stored.is_empty(), "{stored:?}");
        assert!(!server.log().contains(password), "server log");
    }
}

#[tokio::test]
async fn a_dedicated_domain_receives_only_its_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    let vip = DomainSpec {
        dedicated_to: Some(tid("vip")),
        ..DomainSpec::sqlite()
    };
    admin.put_domain(&domain("vip-east"), &vip).await.unwrap();
    for (tenant, tier, expected) in [
        ("other", "premium", "local"),
        ("vip", "premium", "vip-east"),
        ("plain", "standard", "local"),
        ("cheap", "free", "local"),
    ] {
        create_tenant(&admin, tenant, tier).await;
        let placement = admin.get_tenant(&tid(tenant)).await.unwrap().placement;
        assert_eq!(placement.domain.as_str(), expected, "{tenant} on {tier}");
    }
    put_tier(&admin, "vip-only", Isolation::Bridge, &["vip-east"]).await;
    let err = admin
        .create_tenant(&bulkhead_api::CreateTenant {
            id: tid("stranger"),
            name: "Stranger".into(),
            tier: TierName::parse("vip-only").unwrap(),
            labels: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(507), Some("no_capacity")));
    let listed = admin.list_domains().await.unwrap();
    let vip = listed
        .items
        .iter()
        .find(|d| d.name.as_str() == "vip-east")
        .unwrap();
    assert_eq!(vip.spec.dedicated_to, Some(tid("vip")));
    assert_eq!(vip.tenants.values().sum::<u64>(), 1);
}

#[tokio::test]
async fn the_cli_puts_and_lists_domains_and_takes_the_url_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let cli = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = Command::new(common::binary());
        command
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .env_remove("BULKHEAD_DATA_DIR")
            .env_remove("BULKHEAD_TENANT")
            .env_remove("BULKHEAD_DOMAIN_URL")
            .env_remove("BULKHEAD_DOMAIN_DATA_URL")
            .env("BULKHEAD_URL", &server.url)
            .env("BULKHEAD_TOKEN", common::ADMIN_KEY);
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    let out = cli(
        &[
            "domain",
            "put",
            "east",
            "--engine",
            "sqlite",
            "--capacity",
            "3",
            "--monthly-cost",
            "12.5",
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("east"), "{stdout}");
    let listed = server.admin().list_domains().await.unwrap();
    let east = listed
        .items
        .iter()
        .find(|d| d.name.as_str() == "east")
        .unwrap();
    assert_eq!(
        (
            east.spec.max_dedicated_tenants,
            east.spec.monthly_cost.to_string()
        ),
        (3, "12.5".to_owned())
    );

    let url = format!("postgres://owner:{PASSWORD}@127.0.0.1:1/app");
    let out = cli(
        &["domain", "put", "pg1", "--engine", "postgres", "--silos"],
        &[("BULKHEAD_DOMAIN_URL", url.as_str())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("domain_unreachable"),
        "the URL came from the environment: {stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");

    let out = cli(&["domain", "list"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("east") && stdout.contains("local"),
        "{stdout}"
    );
    let out = cli(&["domain", "list", "--json"], &[]);
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
}

/// A server starts while its PostgreSQL domain is down: the domain's tenants get `503
/// domain_unavailable` (the rest of the server works), and once PostgreSQL is back the
/// server opens the domain by itself — no restart, no second `PUT` — and serves them again.
#[tokio::test]
async fn a_postgres_domain_down_at_start_is_opened_once_it_is_back() {
    let Some(pg) = bulkhead_pg_testkit::require("domain_down_at_start") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin();
    common::put_pg_domain(&admin, &pg.url("postgres"), None).await;
    common::put_pg_tier(&admin, "on-pg", Isolation::Pool, Default::default()).await;
    put_items(&admin).await;
    create_tenant(&admin, "late", "on-pg").await;
    let token = key(&admin, "late", TenantRole::Member).await;
    server
        .client(&token)
        .create_record(&items(), &json!({"id": "r1", "title": "kept"}))
        .await
        .unwrap();
    server.stop();

    pg.pause().unwrap();
    let server = Server::start(dir.path());
    let member = server.client(&token);
    let r1 = RecordId::parse("r1").unwrap();
    let refused = member.get_record(&items(), &r1).await.unwrap_err();
    assert_eq!(refused.status(), Some(503), "{refused}");
    assert!(
        refused.to_string().contains("domain_unavailable"),
        "{refused}"
    );
    server.admin().list_tiers().await.unwrap();

    pg.resume().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match member.get_record(&items(), &r1).await {
            Ok(record) => {
                assert_eq!(record["title"], "kept");
                break;
            }
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "the domain was not reopened: {e}\n{}",
                server.log()
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let listed = server.admin().list_domains().await.unwrap();
    let pg_domain = listed.items.iter().find(|d| d.name.as_str() == "pg");
    assert!(pg_domain.is_some_and(|d| d.available), "{listed:?}");
}
