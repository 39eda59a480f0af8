//! Bad input (invariant 4): every malformed request gets a clear 4xx with the standard error
//! body naming the problem, nothing panics, and nothing is half-applied.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use bulkhead_api::ErrorBody;
use bulkhead_client::{Client, ListRecords, RawResponse};
use common::{items, tid};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

const RECORDS: &str = "/v1/collections/items/records";

async fn send(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    ct: Option<&str>,
) -> RawResponse {
    let method = method.parse().unwrap();
    client.raw(method, path, body, ct).await.unwrap()
}

async fn get(client: &Client, path: &str) -> RawResponse {
    send(client, "GET", path, None, None).await
}

async fn json_to(client: &Client, method: &str, path: &str, body: &Value) -> RawResponse {
    let body = Some(body.to_string().into_bytes());
    send(client, method, path, body, Some("application/json")).await
}

/// Checks the status and the standard error body (with the request id of the header);
/// returns the message.
fn error(resp: &RawResponse, status: u16, code: &str) -> String {
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    assert_eq!(resp.status, status, "{text}");
    let body: ErrorBody = resp.json().unwrap_or_else(|e| panic!("{e}: {text}"));
    let e = body.error;
    assert_eq!(e.code, code, "{text}");
    assert!(!e.message.is_empty(), "{text}");
    let header = resp.headers.get("x-request-id").unwrap().to_str().unwrap();
    assert_eq!(e.request_id, header, "{text}");
    e.message
}

fn query(filter: Option<&str>, limit: Option<u32>, cursor: Option<&str>) -> ListRecords {
    let filter = filter.map(str::to_owned);
    let cursor = cursor.map(str::to_owned);
    ListRecords {
        filter,
        limit,
        cursor,
        ..Default::default()
    }
}

/// Every record of the tenant's `items`, in id order.
async fn all_items(client: &Client) -> Vec<Value> {
    let all = query(None, Some(1000), None);
    let page = client.list_records(&items(), &all).await.unwrap();
    assert!(page.next_cursor.is_none());
    page.items
}

async fn create(client: &Client, record: Value) -> Value {
    client.create_record(&items(), &record).await.unwrap()
}

#[derive(Clone)]
struct Probe {
    method: &'static str,
    collection: String,
    id: Option<String>,
    body: Option<Vec<u8>>,
    content_type: Option<String>,
    named_tenant: Option<&'static str>,
}

/// A failing case names its body by length and head: a megabyte of it would push the
/// failure's message out of any log.
impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = self.body.as_ref().map(|b| {
            let head = String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned();
            format!("{} bytes: {head:?}", b.len())
        });
        f.debug_struct("Probe")
            .field("method", &self.method)
            .field("collection", &self.collection)
            .field("id", &self.id)
            .field("body", &body)
            .field("content_type", &self.content_type)
            .field("named_tenant", &self.named_tenant)
            .finish()
    }
}

/// Percent-encodes every byte, so the segment reaches the server exactly as generated.
fn encode(raw: &str) -> String {
    raw.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// A path segment: the real collection, traversal attempts, broken escapes, random unicode,
/// very long, empty.
fn segment() -> impl Strategy<Value = String> {
    let odd = vec![
        "%2e%2e",
        "%2E%2E%2F",
        "..%2F..",
        "%00",
        "%ff%fe",
        "%",
        "%20",
        "%09%0A",
        "Items",
        "records",
        "",
    ];
    prop_oneof![
        12 => Just("items".to_owned()),
        8 => prop::sample::select(odd).prop_map(str::to_owned),
        1 => Just("%2e%2e%2F%2e%2e%2Fadmin.key".to_owned()),
        2 => "\\PC{1,40}".prop_map(|s| encode(&s)),
        2 => "[a-z_]{1,70}",
        1 => "[a-zA-Z0-9]{64,3000}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,30}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let known = vec!["title", "n", "sku", "done", "id", "version", "tenant_id"];
        let key = prop_oneof![
            prop::sample::select(known).prop_map(str::to_owned),
            "\\PC{0,10}"
        ];
        let object = prop::collection::btree_map(key, inner.clone(), 0..6);
        prop_oneof![
            prop::collection::vec(inner, 0..6).prop_map(Value::Array),
            object.prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    Some(value.to_string().into_bytes())
}

fn body() -> impl Strategy<Value = Option<Vec<u8>>> {
    let huge = prop::sample::select(vec![10_000usize, 300_000, 1_100_000]);
    prop_oneof![
        1 => Just(None),
        2 => prop::collection::vec(any::<u8>(), 0..512).prop_map(Some),
        4 => json_value().prop_map(bytes),
        // Wrong types for known fields, and the id/version/tenant_id system fields.
        2 => (json_value(), json_value(), json_value()).prop_map(|(t, n, id)| {
            bytes(json!({"title": t, "n": n, "done": id, "id": id, "version": t}))
        }),
        1 => huge.prop_map(|len| bytes(json!({"title": "x".repeat(len), "n": "1"}))),
        1 => "\\PC{0,200}".prop_map(|s| Some(format!("{{\"title\": \"{s}").into_bytes())),
        // Nearly (sometimes fully) valid records.
        4 => ("\\PC{0,40}", any::<i64>(), prop::option::of(json_value())).prop_map(
            |(title, n, sku)| bytes(json!({"title": title, "n": n, "sku": sku}))
        ),
    ]
}

fn probe() -> impl Strategy<Value = Probe> {
    // Record ids: mostly well-formed (so the request gets as far as validation and storage;
    // never one of the real records'), sometimes anything.
    let id = || prop_oneof![3 => "x[A-Za-z0-9_-]{0,120}", 1 => segment()];
    let writes = prop::sample::select(vec!["PUT", "PATCH", "DELETE"]);
    let any_method = prop::sample::select(vec![
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "FOO", "PROPFIND",
    ]);
    // Mostly methods the route serves, sometimes any method at either route.
    let target = prop_oneof![
        5 => Just(("POST", None)),
        2 => (Just("GET"), prop::option::of(id())),
        6 => (writes, id().prop_map(Some)),
        2 => (any_method, prop::option::of(id())),
    ];
    let content_type = prop_oneof![
        6 => Just(Some("application/json".to_owned())),
        1 => Just(None),
        1 => Just(Some("text/plain".to_owned())),
        1 => Just(Some("application/json; charset=utf-8".to_owned())),
        1 => "[a-z]{1,8}/[a-z+]{1,8}".prop_map(Some),
    ];
    let named = prop::sample::select(vec![None, None, None, None, Some("acme"), Some("globex")]);
    let parts = (target, segment(), body(), content_type, named);
    parts.prop_map(
        |((method, id), collection, body, content_type, named_tenant)| Probe {
            method,
            collection,
            id,
            body,
            content_type,
            named_tenant,
        },
    )
}

/// What every answer must be: no 5xx, and every error in the standard body.
fn check(p: &Probe, path: &str, resp: &RawResponse) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    let what = format!("{} {path} -> {}: {text}", p.method, resp.status);
    prop_assert!(resp.status < 500, "{}", what);
    // A HEAD answer has no body by definition.
    if resp.status < 400 || p.method == "HEAD" {
        return Ok(());
    }
    let body: ErrorBody = serde_json::from_slice(&resp.body)
        .map_err(|e| TestCaseError::fail(format!("not an error body ({e}): {what}")))?;
    let e = body.error;
    let filled = !e.code.is_empty() && !e.message.is_empty() && !e.request_id.is_empty();
    prop_assert!(filled, "{}", what);
    let snake = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    prop_assert!(e.code.bytes().all(snake), "{}", what);
    let header = resp
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok());
    prop_assert_eq!(Some(e.request_id.as_str()), header, "{}", what);
    Ok(())
}

#[test]
fn random_requests_at_record_routes_never_fail_the_server_and_always_get_the_standard_error_body() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_dir, server, acme, globex) = runtime.block_on(async {
        let (dir, server, acme, globex) = common::acme_and_globex(&[]).await;
        for (i, title) in ["one", "two", "three"].iter().enumerate() {
            let id = format!("keep-{i}");
            create(&acme, json!({"id": id, "title": title, "n": i})).await;
        }
        create(&globex, json!({"id": "theirs", "title": "globex"})).await;
        (dir, server, acme, globex)
    });
    let before = runtime.block_on(all_items(&acme));
    let globex_before = runtime.block_on(all_items(&globex));
    let (created, deleted) = (AtomicUsize::new(0), AtomicUsize::new(0));

    let mut config = Config::with_cases(64);
    config.failure_persistence = None;
    config.max_shrink_iters = 256;
    let mut runner = TestRunner::new(config);
    let result = runner.run(&probe(), |p| {
        let client = match p.named_tenant {
            Some(t) => acme.with_tenant(tid(t)),
            None => acme.clone(),
        };
        let mut path = format!("/v1/collections/{}/records", p.collection);
        if let Some(id) = &p.id {
            path = format!("{path}/{id}");
        }
        let (body, ct) = (p.body.clone(), p.content_type.as_deref());
        let resp = runtime.block_on(send(&client, p.method, &path, body, ct));
        check(&p, &path, &resp)?;
        match (p.method, resp.status) {
            ("POST", 201) => created.fetch_add(1, Ordering::SeqCst),
            ("DELETE", 204) => deleted.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        Ok(())
    });
    if let Err(err) = result {
        panic!("{err}");
    }

    runtime.block_on(async {
        assert_eq!(server.admin().health().await.unwrap().status, "ok");
        let after = all_items(&acme).await;
        for record in &before {
            assert!(after.contains(record), "{record} changed: {after:?}");
        }
        let (created, deleted) = (created.into_inner(), deleted.into_inner());
        assert_eq!(after.len(), before.len() + created - deleted);
        assert_eq!(all_items(&globex).await, globex_before);
    });
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413_and_nothing_is_written() {
    let (_dir, server, acme, _) = common::acme_and_globex(&[("BULKHEAD_BODY_LIMIT", "4096")]).await;
    let small = json_to(&acme, "POST", RECORDS, &json!({"title": "x".repeat(3000)})).await;
    assert_eq!(small.status, 201);
    let big = json_to(&acme, "POST", RECORDS, &json!({"title": "x".repeat(5000)})).await;
    let message = error(&big, 413, "payload_too_large");
    assert!(message.contains("size limit"), "{message}");
    assert_eq!(all_items(&acme).await.len(), 1);
    // The limit covers every route, not only records.
    let admin = server.admin();
    let tenant = json!({"id": "big", "name": "y".repeat(5000), "tier": "free"});
    let resp = json_to(&admin, "POST", "/v1/tenants", &tenant).await;
    error(&resp, 413, "payload_too_large");
    let missing = admin.get_tenant(&tid("big")).await.unwrap_err();
    assert_eq!(missing.code(), Some("tenant_not_found"));
}

/// A route that answers without reading the body (a 404, a 405, a GET or DELETE that carries
/// one, a 413 past the limit) still gets its answer to a client that is still sending: the
/// server reads the rest instead of resetting the connection under it (before, about one in
/// six of these requests failed with a broken pipe).
#[tokio::test]
async fn a_client_still_sending_a_body_the_route_ignores_gets_the_answer() {
    let (_dir, _server, acme, _) = common::acme_and_globex(&[]).await;
    let body = json!({"title": "x".repeat(1_100_000), "n": "1"}).to_string();
    let routes = [
        ("GET", RECORDS.to_owned(), 200),
        ("DELETE", format!("{RECORDS}/nobody"), 404),
        ("PUT", RECORDS.to_owned(), 405),
        ("GET", "/v1/collections/nothing/records".to_owned(), 404),
        ("POST", RECORDS.to_owned(), 413),
    ];
    for (method, path, status) in routes {
        for _ in 0..40 {
            let body = Some(body.clone().into_bytes());
            let method_ = method.parse().unwrap();
            let resp = acme
                .raw(method_, &path, body, Some("application/json"))
                .await;
            let resp = resp.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            assert_eq!(resp.status, status, "{method} {path}");
        }
    }
    assert_eq!(all_items(&acme).await, Vec::<Value>::new());
}

#[tokio::test]
async fn an_unknown_field_in_a_tenant_body_is_a_400_naming_the_field() {
    let (_dir, server, _, _) = common::acme_and_globex(&[]).await;
    let admin = server.admin();
    let body = json!({"id": "initech", "name": "Initech", "tier": "free", "plan": "gold"});
    let resp = json_to(&admin, "POST", "/v1/tenants", &body).await;
    let message = error(&resp, 400, "invalid_body");
    assert!(message.contains("plan"), "{message}");
    let missing = admin.get_tenant(&tid("initech")).await.unwrap_err();
    assert_eq!(missing.code(), Some("tenant_not_found"));
}

/// serde reads a struct from an array of its fields in order; no client means that, and a
/// PATCH of `[null, null]` once answered 200 having changed nothing.
#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_a_400_and_changes_nothing() {
    let (_dir, server, acme, _) = common::acme_and_globex(&[]).await;
    let admin = server.admin();
    let before = admin.get_tenant(&tid("acme")).await.unwrap();
    for body in [
        json!([null, null]),
        json!(["Renamed"]),
        json!("x"),
        json!(7),
        json!(null),
    ] {
        let resp = json_to(&admin, "PATCH", "/v1/tenants/acme", &body).await;
        let message = error(&resp, 400, "invalid_body");
        assert!(message.contains("JSON object"), "{body}: {message}");
        let resp = json_to(&acme, "POST", "/v1/collections/items/records", &body).await;
        error(&resp, 400, "validation_failed");
    }
    let after = admin.get_tenant(&tid("acme")).await.unwrap();
    assert_eq!(
        (after.name, after.updated_at),
        (before.name, before.updated_at)
    );
    assert_eq!(all_items(&acme).await, Vec::<Value>::new());
    // Not JSON at all is still named as such.
    let resp = send(
        &admin,
        "PATCH",
        "/v1/tenants/acme",
        Some(b"{nope".to_vec()),
        Some("application/json"),
    )
    .await;
    error(&resp, 400, "invalid_json");
}

#[tokio::test]
async fn an_invalid_tenant_id_is_a_400_naming_the_id() {
    let (_dir, server, _, _) = common::acme_and_globex(&[]).await;
    let admin = server.admin();
    for path in ["/v1/tenants/Not_A_Slug", "/v1/tenants/Not_A_Slug/keys"] {
        let message = error(&get(&admin, path).await, 400, "invalid_tenant_id");
        assert!(message.contains("Not_A_Slug"), "{message}");
    }
    let body = json!({"id": "Not_A_Slug", "name": "Bad", "tier": "free"});
    let resp = json_to(&admin, "POST", "/v1/tenants", &body).await;
    assert_eq!(resp.status, 400);
    let message = resp.json::<ErrorBody>().unwrap().error.message;
    let named = message.contains("invalid tenant id") && message.contains("Not_A_Slug");
    assert!(named, "{message}");
    assert_eq!(admin.list_tenants(None, None).await.unwrap().items.len(), 2);
}

#[tokio::test]
async fn a_filter_that_does_not_parse_or_type_is_refused_with_its_position() {
    let (_dir, _server, acme, _) = common::acme_and_globex(&[]).await;
    create(&acme, json!({"title": "a", "n": 2})).await;
    // `n = true`: an integer compared with a boolean.
    let resp = get(&acme, &format!("{RECORDS}?filter=n%20%3D%20true")).await;
    let message = error(&resp, 400, "invalid_filter");
    assert!(message.contains("position 4"), "{message}");
    // `n >> 1`: not an operator.
    let resp = get(&acme, &format!("{RECORDS}?filter=n%20%3E%3E%201")).await;
    let message = error(&resp, 400, "invalid_filter");
    assert!(message.contains("position"), "{message}");
    let unknown = query(Some("nope = 1"), None, None);
    let err = acme.list_records(&items(), &unknown).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(400), Some("invalid_filter"))
    );
    let message = err.to_string();
    assert!(
        message.contains("position 0") && message.contains("nope"),
        "{message}"
    );
}

#[tokio::test]
async fn a_cursor_replayed_by_another_tenant_or_made_up_is_refused() {
    let (_dir, _server, acme, globex) = common::acme_and_globex(&[]).await;
    for i in 0..3 {
        create(&acme, json!({"title": format!("a{i}")})).await;
        create(&globex, json!({"title": format!("g{i}")})).await;
    }
    let first = query(None, Some(1), None);
    let page = acme.list_records(&items(), &first).await.unwrap();
    let cursor = page.next_cursor.unwrap();
    let next = query(None, Some(1), Some(&cursor));
    let page = acme.list_records(&items(), &next).await.unwrap();
    assert_eq!(page.items.len(), 1);

    let resp = get(&globex, &format!("{RECORDS}?limit=1&cursor={cursor}")).await;
    let message = error(&resp, 400, "invalid_cursor");
    assert!(message.contains("another tenant"), "{message}");
    // Bound to the query too: the same tenant with another filter cannot reuse it.
    let other = query(Some(r#"title = "a1""#), Some(1), Some(&cursor));
    let err = acme.list_records(&items(), &other).await.unwrap_err();
    assert_eq!(err.code(), Some("invalid_cursor"));
    for garbage in ["garbage", "cjE6eHl6", "%FF%FE", "AAAA"] {
        let resp = get(&acme, &format!("{RECORDS}?cursor={garbage}")).await;
        error(&resp, 400, "invalid_cursor");
    }
}

#[tokio::test]
async fn a_body_not_declared_as_json_gets_415_and_nothing_is_written() {
    let (_dir, _server, acme, _) = common::acme_and_globex(&[]).await;
    let body = Some(br#"{"title":"hello"}"#.to_vec());
    let form = Some("application/x-www-form-urlencoded");
    for content_type in [Some("text/plain"), form, None] {
        let resp = send(&acme, "POST", RECORDS, body.clone(), content_type).await;
        error(&resp, 415, "unsupported_media_type");
    }
    assert!(all_items(&acme).await.is_empty());
}

#[tokio::test]
async fn a_limit_of_zero_or_above_the_maximum_is_refused() {
    let (_dir, server, acme, _) = common::acme_and_globex(&[]).await;
    for limit in ["0", "5000", "1001"] {
        let resp = get(&acme, &format!("{RECORDS}?limit={limit}")).await;
        let message = error(&resp, 400, "invalid_limit");
        assert!(message.contains("limit"), "{message}");
    }
    let most = get(&acme, &format!("{RECORDS}?limit=1000")).await;
    assert_eq!(most.status, 200);
    let negative = get(&acme, &format!("{RECORDS}?limit=-1")).await;
    let message = error(&negative, 400, "invalid_query");
    assert!(message.contains("limit"), "{message}");
    let tenants = get(&server.admin(), "/v1/tenants?limit=0").await;
    error(&tenants, 400, "invalid_limit");
}

#[tokio::test]
async fn a_wrongly_typed_field_is_named_by_its_path() {
    let (_dir, _server, acme, _) = common::acme_and_globex(&[]).await;
    for (body, expected) in [
        (json!({"title": 5}), "title: expected text"),
        (json!({"title": "ok", "n": "seven"}), "n: expected integer"),
        (json!({"title": "ok", "n": 1.5}), "n: expected integer"),
        (json!({"title": "ok", "colour": 1}), "colour: unknown field"),
        (json!(["title"]), "$: expected a JSON object"),
    ] {
        let resp = json_to(&acme, "POST", RECORDS, &body).await;
        let message = error(&resp, 400, "validation_failed");
        assert!(message.starts_with(expected), "{message}");
    }
    let record = create(&acme, json!({"title": "ok", "n": 1})).await;
    let path = format!("{RECORDS}/{}", record["id"].as_str().unwrap());
    let patch = json_to(&acme, "PATCH", &path, &json!({"done": "yes"})).await;
    let message = error(&patch, 400, "validation_failed");
    assert!(message.starts_with("done: expected boolean"), "{message}");
    assert_eq!(all_items(&acme).await, vec![record]);
}

#[tokio::test]
async fn a_record_missing_a_required_field_is_refused_and_nothing_is_written() {
    let (_dir, _server, acme, _) = common::acme_and_globex(&[]).await;
    let existing = create(&acme, json!({"title": "keep", "n": 1})).await;
    for body in [
        json!({"n": 2}),
        json!({"title": null, "n": 2, "sku": "s-1"}),
    ] {
        let resp = json_to(&acme, "POST", RECORDS, &body).await;
        let message = error(&resp, 400, "validation_failed");
        assert_eq!(message, "title: required field is missing");
    }
    let path = format!("{RECORDS}/{}", existing["id"].as_str().unwrap());
    let put = json_to(&acme, "PUT", &path, &json!({"n": 9})).await;
    let message = error(&put, 400, "validation_failed");
    assert_eq!(message, "title: required field is missing");
    assert_eq!(all_items(&acme).await, vec![existing]);
    // The refused sku was not reserved either.
    create(&acme, json!({"title": "t", "sku": "s-1"})).await;
}
