//! Queries and ingest, black box: filters, sorting, projection, cursors, full-text search,
//! aggregations, NDJSON bulk ingest, query budgets and the CLI's import and aggregate.
//!
//! Every scenario runs on all three isolation models (pool, bridge, silo). Each subject tenant
//! has a neighbour in the same model holding look-alike data (the same ids, titles, words and
//! machines), so a leak shows up as an extra id, a wrong owner or a wrong count.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod aggregations;
mod bulk;
mod cli;
mod limits;
mod lists;
mod search;

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use bulkhead_api::{AggregatePage, AggregateRequest, BulkReport, ErrorBody, TierSpec};
use bulkhead_client::{Client, ClientError, ListRecords, Method, RawResponse};
use bulkhead_core::access::TenantRole;
use bulkhead_core::{CollectionName, RecordId, TierName};
use common::{Server, create_tenant, key};
use serde_json::{Map, Value, json};

/// Isolation model and the default tier that gives it.
const MODELS: [(&str, &str); 3] = [
    ("pool", "free"),
    ("bridge", "standard"),
    ("silo", "premium"),
];
const SYSTEM_FIELDS: [&str; 4] = ["id", "version", "created_at", "updated_at"];

// ----- harness ---------------------------------------------------------------------------

fn notes() -> CollectionName {
    CollectionName::parse("notes").unwrap()
}

fn signals() -> CollectionName {
    CollectionName::parse("signals").unwrap()
}

fn plain() -> CollectionName {
    CollectionName::parse("plain").unwrap()
}

/// `notes` has a field of every type: a sortable string, full text, an indexed integer, an
/// unindexed float, a timestamp, a boolean with a default, a json field.
async fn put_collections(admin: &Client) {
    let specs = [
        (
            notes(),
            json!({"fields": {
                "title": {"type": "string", "required": true},
                "body": {"type": "text"},
                "n": {"type": "integer", "index": true},
                "score": {"type": "float"},
                "at": {"type": "timestamp"},
                "done": {"type": "boolean", "default": false},
                "tag": {"type": "string"},
                "meta": {"type": "json"}
            }}),
        ),
        (
            signals(),
            json!({"fields": {
                "machine": {"type": "string", "index": true},
                "at": {"type": "timestamp", "required": true, "index": true},
                "temp": {"type": "float"}
            }}),
        ),
        // No text field: nothing to search.
        (
            plain(),
            json!({"fields": {"name": {"type": "string"}, "n": {"type": "integer"}}}),
        ),
    ];
    for (name, spec) in specs {
        let spec = serde_json::from_value(spec).unwrap();
        admin.put_collection(&name, &spec).await.unwrap();
    }
}

/// A subject tenant and its neighbour in the same isolation model, with a member key each.
struct Pair {
    model: &'static str,
    me: String,
    nb: String,
    mine: Client,
    theirs: Client,
}

async fn start(extra: &[(&str, &str)]) -> (tempfile::TempDir, Server, Client) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), extra);
    let admin = server.admin();
    put_collections(&admin).await;
    (dir, server, admin)
}

/// `{model}-a` (the subject) and `{model}-b` (its neighbour) on each model's default tier.
async fn pairs(server: &Server, admin: &Client) -> Vec<Pair> {
    let mut out = Vec::new();
    for (model, tier) in MODELS {
        let (me, nb) = (format!("{model}-a"), format!("{model}-b"));
        create_tenant(admin, &me, tier).await;
        create_tenant(admin, &nb, tier).await;
        out.push(Pair {
            model,
            mine: server.client(&key(admin, &me, TenantRole::Member).await),
            theirs: server.client(&key(admin, &nb, TenantRole::Member).await),
            me,
            nb,
        });
    }
    out
}

async fn put_tier(admin: &Client, name: &str, spec: Value) {
    let spec: TierSpec = serde_json::from_value(spec).unwrap();
    admin
        .put_tier(&TierName::parse(name).unwrap(), &spec)
        .await
        .unwrap();
}

/// Percent-encodes everything but unreserved characters.
fn enc(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn list_path(collection: &CollectionName, params: &[(&str, &str)]) -> String {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    format!("/v1/collections/{collection}/records?{}", query.join("&"))
}

async fn get(client: &Client, path: &str) -> RawResponse {
    client.raw(Method::GET, path, None, None).await.unwrap()
}

async fn post(client: &Client, path: &str, body: Vec<u8>, content_type: &str) -> RawResponse {
    client
        .raw(Method::POST, path, Some(body), Some(content_type))
        .await
        .unwrap()
}

async fn aggregate_raw(client: &Client, collection: &CollectionName, body: &Value) -> RawResponse {
    let path = format!("/v1/collections/{collection}/aggregate");
    post(
        client,
        &path,
        body.to_string().into_bytes(),
        "application/json",
    )
    .await
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

/// The status, code and message of a failed client call.
fn api_error<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String, String) {
    match result {
        Err(ClientError::Api {
            status,
            code,
            message,
            ..
        }) => (status, code, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn strs(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// Follows `next_cursor` to the end; returns the pages. Every page but a lone first one is
/// non-empty and within the limit.
async fn walk(
    client: &Client,
    collection: &CollectionName,
    query: &ListRecords,
) -> Vec<Vec<Value>> {
    let mut query = query.clone();
    let mut pages: Vec<Vec<Value>> = Vec::new();
    loop {
        let page = client
            .list_records(collection, &query)
            .await
            .unwrap_or_else(|e| panic!("{query:?}: {e}"));
        if let Some(limit) = query.limit {
            assert!(page.items.len() <= limit as usize, "{query:?}");
        }
        assert!(
            pages.is_empty() || !page.items.is_empty(),
            "{query:?}: a cursor led to an empty page"
        );
        pages.push(page.items);
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
        assert!(pages.len() <= 200, "{query:?}: runaway cursor");
    }
    pages
}

async fn walk_ids(
    client: &Client,
    collection: &CollectionName,
    query: &ListRecords,
) -> Vec<String> {
    ids(&walk(client, collection, query).await.concat())
}

fn q(filter: &str, sort: &str, limit: u32) -> ListRecords {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    ListRecords {
        filter: some(filter),
        sort: some(sort),
        limit: Some(limit),
        ..Default::default()
    }
}

fn assert_no_panic(server: &Server) {
    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}

fn ndjson(lines: &[String]) -> Vec<u8> {
    let mut body = lines.join("\n");
    body.push('\n');
    body.into_bytes()
}

// ----- the `notes` data set and a reference ordering --------------------------------------

/// One note: id, title, n, score, at (as sent, and in UTC for the reference), done, tag.
type Seed = (
    &'static str,
    &'static str,
    Option<i64>,
    Option<f64>,
    Option<(&'static str, &'static str)>,
    bool,
    Option<&'static str>,
);

const SEEDS: [Seed; 13] = [
    (
        "r01",
        "delta",
        Some(5),
        Some(0.5),
        Some(("2025-01-05T10:00:00Z", "2025-01-05T10:00:00Z")),
        false,
        Some("red"),
    ),
    (
        "r02",
        "alpha",
        Some(3),
        Some(2.25),
        Some(("2025-01-03T10:00:00Z", "2025-01-03T10:00:00Z")),
        false,
        Some("blue"),
    ),
    (
        "r03",
        "charlie",
        Some(5),
        Some(-1.0),
        None,
        false,
        Some("red"),
    ),
    (
        "r04",
        "bravo",
        Some(1),
        Some(9.75),
        Some(("2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z")),
        false,
        None,
    ),
    (
        "r05",
        "echo",
        None,
        Some(0.5),
        Some(("2025-01-02T00:00:00Z", "2025-01-02T00:00:00Z")),
        false,
        Some("blue"),
    ),
    (
        "r06",
        "alpha",
        Some(3),
        None,
        Some(("2025-01-03T10:00:00Z", "2025-01-03T10:00:00Z")),
        false,
        Some("red"),
    ),
    // Sent with an offset: 2025-01-03T22:00:00Z.
    (
        "r07",
        "foxtrot",
        Some(5),
        Some(3.0),
        Some(("2025-01-04T00:00:00+02:00", "2025-01-03T22:00:00Z")),
        false,
        Some("green"),
    ),
    (
        "r08",
        "golf",
        Some(2),
        Some(1.0),
        Some(("2025-01-06T00:00:00Z", "2025-01-06T00:00:00Z")),
        true,
        Some("red"),
    ),
    ("r09", "hotel", Some(4), Some(7.5), None, false, None),
    (
        "r10",
        "india",
        None,
        None,
        Some(("2025-01-07T00:00:00Z", "2025-01-07T00:00:00Z")),
        true,
        Some("blue"),
    ),
    (
        "r11",
        "juliet",
        Some(3),
        Some(4.0),
        Some(("2025-01-08T00:00:00Z", "2025-01-08T00:00:00Z")),
        false,
        Some("green"),
    ),
    (
        "r12",
        "kilo",
        Some(2),
        Some(0.25),
        Some(("2025-01-09T00:00:00Z", "2025-01-09T00:00:00Z")),
        false,
        Some("red"),
    ),
    (
        "r13",
        "hotel",
        Some(4),
        Some(7.5),
        Some(("2025-01-10T00:00:00Z", "2025-01-10T00:00:00Z")),
        false,
        Some("blue"),
    ),
];

/// The record to send (`utc == false`) or its reference copy with `at` in UTC.
fn seed_record(seed: &Seed, owner: &str, k: usize, utc: bool) -> Value {
    let (id, title, n, score, at, done, tag) = *seed;
    let mut record = Map::new();
    record.insert("id".into(), json!(id));
    record.insert("title".into(), json!(title));
    record.insert("done".into(), json!(done));
    record.insert("meta".into(), json!({"owner": owner, "k": k}));
    if let Some(n) = n {
        record.insert("n".into(), json!(n));
    }
    if let Some(score) = score {
        record.insert("score".into(), json!(score));
    }
    if let Some((sent, in_utc)) = at {
        record.insert("at".into(), json!(if utc { in_utc } else { sent }));
    }
    if let Some(tag) = tag {
        record.insert("tag".into(), json!(tag));
    }
    Value::Object(record)
}

/// Creates the 13 notes for `owner`; returns the reference copies.
async fn seed_notes(client: &Client, owner: &str) -> Vec<Value> {
    let mut reference = Vec::new();
    for (k, seed) in SEEDS.iter().enumerate() {
        client
            .create_record(&notes(), &seed_record(seed, owner, k, false))
            .await
            .unwrap();
        reference.push(seed_record(seed, owner, k, true));
    }
    reference
}

/// Compares two present values of one field (numbers, strings, booleans).
fn cmp_value(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap()
            .partial_cmp(&y.as_f64().unwrap())
            .unwrap(),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => panic!("incomparable {a} and {b}"),
    }
}

/// The documented order: each key ascending or (`-`) descending with missing values lowest,
/// then the id in the direction of the last key.
fn reference_order(records: &[Value], sort: &str) -> Vec<String> {
    let keys: Vec<(String, bool)> = sort
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| match k.strip_prefix('-') {
            Some(name) => (name.to_owned(), true),
            None => (k.trim_start_matches('+').to_owned(), false),
        })
        .collect();
    let id_descending = keys.last().is_some_and(|(_, d)| *d);
    let mut sorted: Vec<&Value> = records.iter().collect();
    sorted.sort_by(|a, b| {
        for (name, descending) in &keys {
            let order = match (a.get(name), b.get(name)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => cmp_value(x, y),
            };
            let order = if *descending { order.reverse() } else { order };
            if order != Ordering::Equal {
                return order;
            }
        }
        let order = a["id"].as_str().cmp(&b["id"].as_str());
        if id_descending {
            order.reverse()
        } else {
            order
        }
    });
    ids(&sorted.into_iter().cloned().collect::<Vec<_>>())
}

fn num(r: &Value, f: &str) -> Option<f64> {
    r.get(f).and_then(Value::as_f64)
}

fn text<'a>(r: &'a Value, f: &str) -> Option<&'a str> {
    r.get(f).and_then(Value::as_str)
}

/// Filters with their meaning written out in Rust, over the reference copies.
/// What a filter keeps, written in Rust.
type Keep = Box<dyn Fn(&Value) -> bool>;

fn reference_filters(me: &str, nb: &str) -> Vec<(String, Keep)> {
    let owner = |r: &Value| r["meta"]["owner"].as_str().unwrap().to_owned();
    let (me, nb) = (me.to_owned(), nb.to_owned());
    vec![
        (String::new(), Box::new(|_: &Value| true)),
        (
            "n >= 2 && done = false".into(),
            Box::new(|r: &Value| num(r, "n").is_some_and(|n| n >= 2.0) && r["done"] == false),
        ),
        (
            r#"tag in ["red", "green"] && score > 0.4"#.into(),
            Box::new(|r: &Value| {
                matches!(text(r, "tag"), Some("red" | "green"))
                    && num(r, "score").is_some_and(|s| s > 0.4)
            }),
        ),
        (
            "at >= 2025-01-04T00:00:00Z".into(),
            Box::new(|r: &Value| text(r, "at").is_some_and(|t| t >= "2025-01-04T00:00:00Z")),
        ),
        (
            // 2025-01-03T23:00:00Z: keeps r07, sent as 2025-01-04T00:00:00+02:00.
            r#"at < "2025-01-04T01:00:00+02:00""#.into(),
            Box::new(|r: &Value| text(r, "at").is_some_and(|t| t < "2025-01-03T23:00:00Z")),
        ),
        (
            "!(n > 2)".into(),
            Box::new(|r: &Value| !num(r, "n").is_some_and(|n| n > 2.0)),
        ),
        (
            "n != 3".into(),
            Box::new(|r: &Value| num(r, "n") != Some(3.0)),
        ),
        (
            r#"title starts_with "h" || meta.k >= 11"#.into(),
            Box::new(|r: &Value| {
                text(r, "title").is_some_and(|t| t.starts_with('h'))
                    || r["meta"]["k"].as_u64().unwrap() >= 11
            }),
        ),
        (
            "tag = null".into(),
            Box::new(|r: &Value| r.get("tag").is_none()),
        ),
        (
            format!("meta.owner = {}", json!(me)),
            Box::new(move |r: &Value| owner(r) == me),
        ),
        // The neighbour's owner value: nothing of the neighbour's is reachable.
        (
            format!("meta.owner = {}", json!(nb)),
            Box::new(move |r: &Value| r["meta"]["owner"] == nb.as_str()),
        ),
    ]
}
