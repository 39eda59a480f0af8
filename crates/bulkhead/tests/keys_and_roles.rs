//! Credentials and roles: revocation and expiry take effect at once, tenant roles gate writes
//! and key management, platform operators never reach tenant data, and platform admins reach
//! it only by naming the tenant, with an audit record. Denials are audited too.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bulkhead_api::{CreateKey, CreatePlatformKey, ErrorBody, UpdateTenant};
use bulkhead_client::{Client, ListRecords, RawResponse};
use bulkhead_core::access::{PlatformRole, TenantRole};
use bulkhead_core::model::TenantStatus;
use common::{Server, items, tid};
use serde_json::{Value, json};

const RECORDS: &str = "/v1/collections/items/records";

async fn send(client: &Client, method: &str, path: &str, body: Option<Value>) -> RawResponse {
    let body = body.map(|b| b.to_string().into_bytes());
    let ct = body.as_ref().map(|_| "application/json");
    let method = method.parse().unwrap();
    client.raw(method, path, body, ct).await.unwrap()
}

/// Asserts the status and the standard error body; returns (code, message).
fn error(resp: &RawResponse, status: u16, code: &str) -> (String, String) {
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    assert_eq!(resp.status, status, "{text}");
    let body: ErrorBody = resp.json().unwrap_or_else(|e| panic!("{e}: {text}"));
    let e = body.error;
    assert_eq!(e.code, code, "{text}");
    assert!(!e.message.is_empty() && !e.request_id.is_empty(), "{text}");
    (e.code, e.message)
}

/// Sends a request that must fail with `status` and `code`.
async fn refused(
    client: &Client,
    (method, path, body): (&str, &str, Option<Value>),
    status: u16,
    code: &str,
) -> (String, String) {
    error(&send(client, method, path, body).await, status, code)
}

async fn all_items(client: &Client) -> Vec<Value> {
    let query = ListRecords {
        limit: Some(1000),
        ..ListRecords::default()
    };
    client.list_records(&items(), &query).await.unwrap().items
}

type AuditRow = (String, String, String, Option<String>, String);

/// The audit rows matching `pred`, once at least `n` are there (denials are written by a
/// background writer, in batches).
fn audit_at_least(server: &Server, n: usize, pred: impl Fn(&AuditRow) -> bool) -> Vec<AuditRow> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = common::audit_rows(&server.data_dir, &pred);
        if rows.len() >= n || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn new_key(role: TenantRole, expires_in: Option<u64>) -> CreateKey {
    let name = format!("{role:?} key");
    CreateKey {
        name,
        role,
        expires_in,
    }
}

fn status(status: TenantStatus) -> UpdateTenant {
    let status = Some(status);
    UpdateTenant {
        status,
        ..UpdateTenant::default()
    }
}

async fn key_count(admin: &Client, tenant: &str) -> usize {
    admin.list_keys(&tid(tenant)).await.unwrap().items.len()
}

/// A server with `items`, tenants acme and globex, a member key of acme and one acme record.
async fn start() -> (tempfile::TempDir, Server, Client, Value) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    common::put_items(&admin).await;
    common::create_tenant(&admin, "acme", "free").await;
    common::create_tenant(&admin, "globex", "free").await;
    let member = server.client(&common::key(&admin, "acme", TenantRole::Member).await);
    let body = json!({"title": "hello", "n": 1});
    let record = member.create_record(&items(), &body).await.unwrap();
    (dir, server, member, record)
}

fn record_path(record: &Value) -> String {
    format!("{RECORDS}/{}", record["id"].as_str().unwrap())
}

#[tokio::test]
async fn a_revoked_key_fails_on_the_next_request() {
    let (_dir, server, _, record) = start().await;
    let admin = server.admin();
    let request = new_key(TenantRole::Member, None);
    let created = admin.create_key(&tid("acme"), &request).await.unwrap();
    let app = server.client(&created.key);
    assert_eq!(all_items(&app).await, vec![record]);

    let (acme, kid) = (tid("acme"), &created.view.id);
    admin.revoke_key(&acme, kid).await.unwrap();
    let resp = send(&app, "GET", RECORDS, None).await;
    error(&resp, 401, "invalid_credentials");
    let challenge = resp.headers.get("www-authenticate").unwrap();
    assert_eq!(challenge.to_str().unwrap(), "Bearer");
    let listed = admin.list_keys(&tid("acme")).await.unwrap().items;
    assert!(listed.iter().any(|k| &k.id == kid && k.revoked));
    // Revoking twice is harmless; the key stays dead.
    admin.revoke_key(&acme, kid).await.unwrap();
    refused(&app, ("GET", RECORDS, None), 401, "invalid_credentials").await;
}

#[tokio::test]
async fn a_key_created_to_expire_in_one_second_stops_working_after_two() {
    let (_dir, server, _, _) = start().await;
    let request = new_key(TenantRole::Viewer, Some(1));
    let admin = server.admin();
    let created = admin.create_key(&tid("acme"), &request).await.unwrap();
    assert!(created.view.expires_at.is_some());
    let short = server.client(&created.key);
    assert_eq!(all_items(&short).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    refused(&short, ("GET", RECORDS, None), 401, "invalid_credentials").await;
}

#[tokio::test]
async fn a_viewer_key_reads_but_every_write_is_forbidden_audited_and_changes_nothing() {
    let (_dir, server, member, record) = start().await;
    let viewer = server.client(&common::key(&server.admin(), "acme", TenantRole::Viewer).await);
    let path = record_path(&record);
    let read = send(&viewer, "GET", &path, None).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json::<Value>().unwrap(), record);
    assert_eq!(all_items(&viewer).await, vec![record.clone()]);

    for write in [
        ("POST", RECORDS, Some(json!({"title": "new"}))),
        ("PUT", path.as_str(), Some(json!({"title": "replaced"}))),
        ("PATCH", path.as_str(), Some(json!({"title": "patched"}))),
        ("DELETE", path.as_str(), None),
    ] {
        refused(&viewer, write, 403, "forbidden").await;
    }
    assert_eq!(all_items(&member).await, vec![record]);
    let denied = audit_at_least(&server, 4, |(_, action, _, tenant, outcome)| {
        let acme = tenant.as_deref() == Some("acme");
        action == "record.write" && acme && outcome == "denied:forbidden"
    });
    assert_eq!(denied.len(), 4, "{denied:?}");
    assert!(
        denied.iter().all(|r| r.0.starts_with("key:k")),
        "{denied:?}"
    );
}

#[tokio::test]
async fn a_tenant_admin_manages_its_own_keys_while_another_tenants_look_missing() {
    let (_dir, server, _, _) = start().await;
    let platform = server.admin();
    let acme_admin = server.client(&common::key(&platform, "acme", TenantRole::Admin).await);
    let request = new_key(TenantRole::Member, None);
    let globex_key = platform.create_key(&tid("globex"), &request).await.unwrap();

    let minted = acme_admin.create_key(&tid("acme"), &request).await.unwrap();
    let view = &minted.view;
    assert_eq!(view.role, "member");
    assert_eq!(view.tenant, Some(tid("acme")));
    let ci = server.client(&minted.key);
    assert_eq!(all_items(&ci).await.len(), 1);
    let listed = acme_admin.list_keys(&tid("acme")).await.unwrap().items;
    assert!(listed.iter().any(|k| k.id == view.id && !k.revoked));
    assert!(listed.iter().all(|k| k.tenant == Some(tid("acme"))));
    acme_admin.revoke_key(&tid("acme"), &view.id).await.unwrap();
    refused(&ci, ("GET", RECORDS, None), 401, "invalid_credentials").await;

    // Another tenant's keys: exactly the answer for a tenant that does not exist.
    let nosuch = ("GET", "/v1/tenants/nosuch/keys", None);
    let missing = refused(&platform, nosuch, 404, "tenant_not_found").await;
    let body = json!({"name": "x", "role": "member"});
    let revoke = format!("/v1/tenants/globex/keys/{}", globex_key.view.id);
    for probe in [
        ("GET", "/v1/tenants/globex/keys", None),
        ("POST", "/v1/tenants/globex/keys", Some(body.clone())),
        ("DELETE", revoke.as_str(), None),
        ("GET", "/v1/tenants/nosuch/keys", None),
        ("POST", "/v1/tenants/nosuch/keys", Some(body)),
    ] {
        let answer = refused(&acme_admin, probe, 404, "tenant_not_found").await;
        assert_eq!(answer, missing);
    }
    // Nor can it reach a globex key through its own tenant's path.
    let revoke = format!("/v1/tenants/acme/keys/{}", globex_key.view.id);
    refused(&acme_admin, ("DELETE", &revoke, None), 404, "key_not_found").await;
    let globex = server.client(&globex_key.key);
    assert_eq!(send(&globex, "GET", RECORDS, None).await.status, 200);
    assert_eq!(key_count(&platform, "globex").await, 1);
}

#[tokio::test]
async fn a_member_key_cannot_manage_keys_and_an_admin_key_cannot_mint_an_owner() {
    let (_dir, server, member, _) = start().await;
    let platform = server.admin();
    let before = platform.list_keys(&tid("acme")).await.unwrap().items;
    let revoke = format!("/v1/tenants/acme/keys/{}", before[0].id);
    let viewer = json!({"name": "x", "role": "viewer"});
    for probe in [
        ("GET", "/v1/tenants/acme/keys", None),
        ("POST", "/v1/tenants/acme/keys", Some(viewer)),
        ("DELETE", revoke.as_str(), None),
    ] {
        refused(&member, probe, 403, "forbidden").await;
    }
    let acme_admin = server.client(&common::key(&platform, "acme", TenantRole::Admin).await);
    let owner = Some(json!({"name": "boss", "role": "owner"}));
    let mint = ("POST", "/v1/tenants/acme/keys", owner);
    let (_, message) = refused(&acme_admin, mint, 403, "forbidden").await;
    assert!(message.contains("owner"), "{message}");
    let after = platform.list_keys(&tid("acme")).await.unwrap().items;
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    assert!(after.iter().all(|k| k.role != "owner" && !k.revoked));
}

#[tokio::test]
async fn tenant_keys_are_forbidden_on_control_plane_routes() {
    let (_dir, server, _, _) = start().await;
    let platform = server.admin();
    let owner = server.client(&common::key(&platform, "acme", TenantRole::Owner).await);
    let tenant = json!({"id": "evil", "name": "Evil", "tier": "free"});
    let spec = json!({"fields": {"secret": {"type": "text"}}});
    let admin_key = json!({"name": "x", "role": "admin"});
    for probe in [
        ("GET", "/v1/tenants", None),
        ("GET", "/v1/tenants/acme", None),
        ("POST", "/v1/tenants", Some(tenant)),
        ("PUT", "/v1/tiers/gold", Some(json!({"isolation": "silo"}))),
        ("PUT", "/v1/collections/secrets", Some(spec)),
        ("POST", "/v1/platform-keys", Some(admin_key)),
    ] {
        refused(&owner, probe, 403, "forbidden").await;
    }
    let tiers = platform.list_tiers().await.unwrap().items;
    assert!(tiers.iter().all(|t| t.name.as_str() != "gold"));
    let collections = platform.list_collections().await.unwrap().items;
    let names: Vec<&str> = collections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["items"]);
    let tenants = platform.list_tenants(None, None).await.unwrap().items;
    assert_eq!(tenants.len(), 2);
    assert_eq!(platform.list_platform_keys().await.unwrap().items.len(), 0);
}

#[tokio::test]
async fn an_operator_manages_tenants_but_never_reaches_records_credentials_or_deletion() {
    let (_dir, server, member, record) = start().await;
    let platform = server.admin();
    let (name, role) = ("ops".to_owned(), PlatformRole::Operator);
    let request = CreatePlatformKey {
        name,
        role,
        expires_in: None,
    };
    let created = platform.create_platform_key(&request).await.unwrap();
    let view = &created.view;
    assert!(view.role == "operator" && view.tenant.is_none(), "{view:?}");
    let operator = server.client(&created.key);

    let tenants = operator.list_tenants(None, None).await.unwrap();
    assert_eq!(tenants.items.len(), 2);
    let (globex, suspended) = (tid("globex"), status(TenantStatus::Suspended));
    let view = operator
        .update_tenant(&globex, &suspended)
        .await
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(view.status, TenantStatus::Suspended);

    let path = record_path(&record);
    let named = operator.with_tenant(tid("acme"));
    for client in [&operator, &named] {
        for probe in [
            ("GET", RECORDS, None),
            ("GET", path.as_str(), None),
            ("POST", RECORDS, Some(json!({"title": "ops"}))),
            ("DELETE", path.as_str(), None),
        ] {
            refused(client, probe, 403, "forbidden").await;
        }
    }
    let spec = json!({"fields": {"title": {"type": "text"}, "extra": {"type": "text"}}});
    let owner_key = json!({"name": "x", "role": "owner"});
    let admin_key = json!({"name": "x", "role": "admin"});
    for probe in [
        ("POST", "/v1/tenants/acme/keys", Some(owner_key)),
        ("GET", "/v1/tenants/acme/keys", None),
        ("POST", "/v1/platform-keys", Some(admin_key)),
        ("DELETE", "/v1/tenants/acme", None),
        ("PUT", "/v1/collections/items", Some(spec)),
    ] {
        refused(&operator, probe, 403, "forbidden").await;
    }
    let acme = platform.get_tenant(&tid("acme")).await.unwrap();
    assert_eq!(acme.status, TenantStatus::Active);
    assert_eq!(all_items(&member).await, vec![record]);
    let collection = platform.get_collection(&items()).await.unwrap();
    assert_eq!(collection.fields.len(), 4);
    assert_eq!(platform.list_platform_keys().await.unwrap().items.len(), 1);
    assert_eq!(key_count(&platform, "acme").await, 1);
    // Platform keys are revoked as promptly as tenant keys.
    platform
        .revoke_platform_key(&created.view.id)
        .await
        .unwrap();
    refused(
        &operator,
        ("GET", "/v1/tenants", None),
        401,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn a_platform_admin_reads_records_only_by_naming_the_tenant_and_is_audited() {
    let (_dir, server, _, record) = start().await;
    let admin = server.admin();
    let unnamed = ("GET", RECORDS, None);
    let (_, message) = refused(&admin, unnamed, 400, "tenant_required").await;
    assert!(message.contains("Bulkhead-Tenant"), "{message}");
    let all = common::audit_rows(&server.data_dir, |_| true);
    let accesses = all.iter().filter(|r| r.1.starts_with("admin_data_access"));
    assert_eq!(accesses.count(), 0, "{all:?}");

    let named = admin.with_tenant(tid("acme"));
    assert_eq!(all_items(&named).await, vec![record]);
    let globex = all_items(&admin.with_tenant(tid("globex"))).await;
    assert!(globex.is_empty(), "{globex:?}");
    let rows = common::audit_rows(&server.data_dir, |(_, action, _, tenant, _)| {
        action.starts_with("admin_data_access") && tenant.as_deref() == Some("acme")
    });
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (actor, action, target, _, outcome) = &rows[0];
    assert_eq!(action, "admin_data_access.record.list");
    assert_eq!([actor, target, outcome], ["bootstrap-admin", "items", "ok"]);
}

#[tokio::test]
async fn denied_requests_appear_in_the_audit_log() {
    let (_dir, server, member, record) = start().await;
    let real = common::key(&server.admin(), "acme", TenantRole::Member).await;
    // A real key id with a wrong secret, and something that is not a key at all.
    for token in [format!("{}wrong-secret", &real[..21]), "not-a-key".into()] {
        let forged = server.client(&token);
        refused(&forged, ("GET", RECORDS, None), 401, "invalid_credentials").await;
    }
    let rows = audit_at_least(&server, 2, |row| row.4 == "denied:invalid_credentials");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let anonymous = |r: &AuditRow| r.0 == "-" && r.1 == "authenticate" && r.3.is_none();
    assert!(rows.iter().all(anonymous), "{rows:?}");

    let path = record_path(&record);
    refused(&member, ("GET", "/v1/tenants", None), 403, "forbidden").await;
    let viewer = server.client(&common::key(&server.admin(), "acme", TenantRole::Viewer).await);
    refused(&viewer, ("DELETE", &path, None), 403, "forbidden").await;
    let forbidden = audit_at_least(&server, 2, |row| row.4 == "denied:forbidden");
    let mut actions: Vec<&str> = forbidden.iter().map(|r| r.1.as_str()).collect();
    actions.sort_unstable();
    assert_eq!(actions, ["record.write", "tenant.list"], "{forbidden:?}");
    // A foreign tenant's data looks missing, and the probe is audited as a denial.
    let globex = server.client(&common::key(&server.admin(), "globex", TenantRole::Owner).await);
    let probe = globex.with_tenant(tid("acme"));
    refused(&probe, ("GET", &path, None), 404, "tenant_not_found").await;
    let probes = audit_at_least(&server, 1, |row| row.4 == "denied:tenant_not_found");
    assert_eq!(probes.len(), 1, "{probes:?}");
    assert_eq!(probes[0].3.as_deref(), Some("acme"), "{probes:?}");
    assert_eq!(all_items(&member).await, vec![record]);
}

#[tokio::test]
async fn a_suspended_tenant_refuses_writes_but_serves_reads_until_resumed() {
    let (_dir, server, member, record) = start().await;
    let admin = server.admin();
    let suspended = status(TenantStatus::Suspended);
    let acme = admin
        .update_tenant(&tid("acme"), &suspended)
        .await
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(acme.status, TenantStatus::Suspended);

    let path = record_path(&record);
    for write in [
        ("POST", RECORDS, Some(json!({"title": "new"}))),
        ("PUT", path.as_str(), Some(json!({"title": "replaced"}))),
        ("PATCH", path.as_str(), Some(json!({"n": 2}))),
        ("DELETE", path.as_str(), None),
    ] {
        refused(&member, write, 403, "tenant_suspended").await;
    }
    assert_eq!(all_items(&member).await, vec![record.clone()]);
    assert_eq!(send(&member, "GET", &path, None).await.status, 200);

    let active = status(TenantStatus::Active);
    let acme = admin
        .update_tenant(&tid("acme"), &active)
        .await
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(acme.status, TenantStatus::Active);
    let patched = send(&member, "PATCH", &path, Some(json!({"n": 2}))).await;
    assert_eq!(patched.status, 200);
    let created = send(&member, "POST", RECORDS, Some(json!({"title": "new"}))).await;
    assert_eq!(created.status, 201);
    assert_eq!(all_items(&member).await.len(), 2);
}

#[tokio::test]
async fn a_tenant_admin_cannot_revoke_an_owner_key_but_can_revoke_its_peers() {
    let (_dir, server, _, _) = start().await;
    let admin = server.admin();
    let owner = admin
        .create_key(&tid("acme"), &new_key(TenantRole::Owner, None))
        .await
        .unwrap();
    let peer = admin
        .create_key(&tid("acme"), &new_key(TenantRole::Admin, None))
        .await
        .unwrap();
    let tenant_admin = server.client(&common::key(&admin, "acme", TenantRole::Admin).await);
    let err = tenant_admin
        .revoke_key(&tid("acme"), &owner.view.id)
        .await
        .unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(403), Some("forbidden")));
    server
        .client(&owner.key)
        .list_keys(&tid("acme"))
        .await
        .expect("the owner key still works");
    tenant_admin
        .revoke_key(&tid("acme"), &peer.view.id)
        .await
        .unwrap();
    assert_eq!(
        server
            .client(&peer.key)
            .list_keys(&tid("acme"))
            .await
            .unwrap_err()
            .status(),
        Some(401)
    );
}

/// The bug this guards: every failed authentication wrote its own audit row (4,000 bad
/// tokens in two seconds, 4,000 rows). Now the first of each kind is written at once and the
/// rest of the window is one row with their count: nothing is lost, the log stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_credentials_is_counted_not_written_row_by_row() {
    let (_dir, mut server, _member, _record) = start().await;
    let began = std::time::Instant::now();
    let flood: Vec<_> = (0..4)
        .map(|w| {
            let url = server.url.clone();
            tokio::spawn(async move {
                for i in 0..500 {
                    let client = bulkhead_client::Client::new(
                        &url,
                        format!("bk_k{:016x}_{}", w * 1000 + i, "s".repeat(32)),
                    )
                    .unwrap();
                    let err = client.me().await.unwrap_err();
                    assert_eq!(err.status(), Some(401));
                }
            })
        })
        .collect();
    for task in flood {
        task.await.unwrap();
    }
    // Each 10 s window of one source writes its first failure and one summary row; a slow
    // machine spreads the flood over more windows.
    let windows = began.elapsed().as_secs() / 10 + 2;
    server.stop();
    let conn = rusqlite::Connection::open(server.data_dir.join("catalog.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT detail FROM audit WHERE action = 'authenticate'")
        .unwrap();
    let details: Vec<Option<String>> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        details.len() as u64 <= 2 * windows,
        "{} rows for one flood over {windows} windows",
        details.len()
    );
    let counted: u64 = details
        .iter()
        .map(|d| {
            d.as_deref()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .and_then(|d| d["repeated"].as_u64())
                .unwrap_or(1)
        })
        .sum();
    assert_eq!(counted, 2000, "every failure is counted: {details:?}");
}

/// Two Authorization headers are refused (400), never served as the first or the last: a
/// proxy and this server could otherwise disagree about who is calling.
#[tokio::test]
async fn two_authorization_headers_are_refused() {
    use std::io::{Read, Write};
    let (_dir, server, _member, _record) = start().await;
    let real = common::key(&server.admin(), "acme", TenantRole::Member).await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let response = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET /v1/collections/items/records HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {real}\r\nAuthorization: Bearer other\r\n\
             Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("ambiguous_credentials"), "{response}");
}
