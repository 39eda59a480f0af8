//! The isolation attack suite: tenants on all three models (two per model, so pool and bridge
//! neighbours share a file), every role, every data route, every foreign id. A foreign object
//! must be indistinguishable from a missing one, and nothing may change.
#![allow(clippy::unwrap_used)]

mod common;

use bulkhead_client::Method;
use bulkhead_client::{Client, RawResponse};
use bulkhead_core::access::TenantRole;
use common::{Server, create_tenant, key, put_items};
use serde_json::{Value, json};

const TENANTS: [(&str, &str); 6] = [
    ("pool-a", "free"),
    ("pool-b", "free"),
    ("bridge-a", "standard"),
    ("bridge-b", "standard"),
    ("silo-a", "premium"),
    ("silo-b", "premium"),
];
const ROLES: [TenantRole; 3] = [TenantRole::Admin, TenantRole::Member, TenantRole::Viewer];

/// Status and error body without the request id, which differs per request by design.
fn shape(response: &RawResponse) -> (u16, Value) {
    let mut body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    if let Some(error) = body.get_mut("error").and_then(Value::as_object_mut) {
        error.remove("request_id");
    }
    (response.status, body)
}

async fn call(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> RawResponse {
    // The client has no per-request headers; a named tenant goes through `with_tenant`.
    let client = match headers.iter().find(|(k, _)| *k == "bulkhead-tenant") {
        Some((_, t)) => client.with_tenant(common::tid(t)),
        None => client.clone(),
    };
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
    let content_type = bytes.as_ref().map(|_| "application/json");
    client.raw(method, path, bytes, content_type).await.unwrap()
}

#[tokio::test]
async fn no_role_of_any_tenant_reaches_another_tenants_records_on_any_model() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    let mut keys = Vec::new();
    for (tenant, tier) in TENANTS {
        create_tenant(&admin, tenant, tier).await;
        for role in ROLES {
            keys.push((
                tenant,
                role,
                server.client(&key(&admin, tenant, role).await),
            ));
        }
    }
    // Every tenant owns a record with the same id and one with its own id.
    for (tenant, _) in TENANTS {
        let owner = &keys
            .iter()
            .find(|(t, r, _)| *t == tenant && *r == TenantRole::Member)
            .unwrap()
            .2;
        for id in ["shared-id".to_owned(), format!("own-{tenant}")] {
            let body = json!({"id": id, "title": format!("secret of {tenant}"), "sku": id, "n": 1});
            owner.create_record(&common::items(), &body).await.unwrap();
        }
    }

    let mut checked = 0;
    for (attacker, role, client) in &keys {
        for (victim, _) in TENANTS.iter().filter(|(v, _)| v != attacker) {
            let foreign = format!("/v1/collections/items/records/own-{victim}");
            let missing = "/v1/collections/items/records/no-such-record".to_owned();
            let patch = Some(json!({"title": "pwned"}));
            let full = Some(json!({"title": "pwned", "n": 2}));
            for (method, body) in [
                (Method::GET, None),
                (Method::PUT, full.clone()),
                (Method::PATCH, patch.clone()),
                (Method::DELETE, None),
            ] {
                let got = call(client, method.clone(), &foreign, body.clone(), &[]).await;
                let reference = call(client, method.clone(), &missing, body.clone(), &[]).await;
                assert_eq!(
                    shape(&got),
                    shape(&reference),
                    "{attacker}/{role:?} {method} on {victim}'s record"
                );
                let expected = if *role == TenantRole::Viewer && method != Method::GET {
                    403
                } else {
                    404
                };
                assert_eq!(
                    got.status, expected,
                    "{attacker}/{role:?} {method} on {victim}'s record"
                );
                checked += 1;
            }

            // Naming the victim explicitly: the same answer as naming a tenant that does not exist.
            for method in [Method::GET, Method::DELETE] {
                let named = call(
                    client,
                    method.clone(),
                    &foreign,
                    None,
                    &[("bulkhead-tenant", victim)],
                )
                .await;
                let ghost = call(
                    client,
                    method.clone(),
                    &foreign,
                    None,
                    &[("bulkhead-tenant", "ghost-tenant")],
                )
                .await;
                assert_eq!(
                    shape(&named),
                    shape(&ghost),
                    "{attacker}/{role:?} naming {victim}"
                );
                assert!(
                    matches!(named.status, 403 | 404),
                    "{attacker}/{role:?} naming {victim}: {}",
                    named.status
                );
            }
            let created = call(
                client,
                Method::POST,
                "/v1/collections/items/records",
                Some(json!({"title": "x"})),
                &[("bulkhead-tenant", victim)],
            )
            .await;
            let ghost = call(
                client,
                Method::POST,
                "/v1/collections/items/records",
                Some(json!({"title": "x"})),
                &[("bulkhead-tenant", "ghost-tenant")],
            )
            .await;
            assert_eq!(
                shape(&created),
                shape(&ghost),
                "{attacker}/{role:?} creating in {victim}"
            );

            // Lists and filters never return a neighbour's rows.
            let filter = format!(
                "/v1/collections/items/records?filter={}",
                urlencode(&format!("title = \"secret of {victim}\""))
            );
            let listed = call(client, Method::GET, &filter, None, &[]).await;
            assert_eq!(listed.status, 200);
            let listed: Value = serde_json::from_slice(&listed.body).unwrap();
            assert_eq!(
                listed["items"],
                json!([]),
                "{attacker}/{role:?} filtering for {victim}"
            );

            // Key management of another tenant looks like a tenant that does not exist.
            let keys_of_victim = call(
                client,
                Method::GET,
                &format!("/v1/tenants/{victim}/keys"),
                None,
                &[],
            )
            .await;
            let keys_of_ghost = call(
                client,
                Method::GET,
                "/v1/tenants/ghost-tenant/keys",
                None,
                &[],
            )
            .await;
            assert_eq!(shape(&keys_of_victim), shape(&keys_of_ghost));
            assert_eq!(keys_of_victim.status, 404);
            let mint = Some(json!({"name": "x", "role": "viewer"}));
            let minted = call(
                client,
                Method::POST,
                &format!("/v1/tenants/{victim}/keys"),
                mint.clone(),
                &[],
            )
            .await;
            let minted_ghost = call(
                client,
                Method::POST,
                "/v1/tenants/ghost-tenant/keys",
                mint,
                &[],
            )
            .await;
            assert_eq!(shape(&minted), shape(&minted_ghost));
        }
    }
    assert_eq!(checked, 6 * 3 * 5 * 4);

    // Nothing changed: every tenant still sees exactly its own two records, at version 1.
    for (tenant, _) in TENANTS {
        let owner = &keys
            .iter()
            .find(|(t, r, _)| *t == tenant && *r == TenantRole::Viewer)
            .unwrap()
            .2;
        let page = owner
            .list_records(&common::items(), &Default::default())
            .await
            .unwrap();
        assert_eq!(page.items.len(), 2, "{tenant}");
        for record in &page.items {
            assert_eq!(record["title"], format!("secret of {tenant}"), "{tenant}");
            assert_eq!(record["version"], 1, "{tenant}");
        }
    }

    // Denials were audited.
    let denied = common::audit_rows(&server.data_dir, |row| row.4.starts_with("denied:"));
    assert!(denied.len() > 50, "denials in audit log: {}", denied.len());
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn requests_without_valid_credentials_never_reach_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    let anonymous = server.client("");
    for token in [
        "",
        "bk_k0000000000000000_forged",
        "not-a-key",
        common::ADMIN_KEY.trim_end_matches('f'),
    ] {
        let client = if token.is_empty() {
            anonymous.clone()
        } else {
            server.client(token)
        };
        for path in [
            "/v1/collections/items/records",
            "/v1/tenants",
            "/v1/tenants/acme/keys",
        ] {
            let response = client.raw(Method::GET, path, None, None).await.unwrap();
            assert_eq!(response.status, 401, "{token:?} {path}");
            let body: Value = serde_json::from_slice(&response.body).unwrap();
            assert!(
                body["error"]["code"]
                    .as_str()
                    .unwrap()
                    .ends_with("credentials")
            );
        }
    }
}
