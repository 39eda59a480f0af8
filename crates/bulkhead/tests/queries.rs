//! Queries and ingest, black box: filters, sorting, projection, cursors, full-text search,
//! aggregations, NDJSON bulk ingest, query budgets and the CLI's import and aggregate.
//!
//! Every scenario runs on all three isolation models (pool, bridge, silo). Each subject tenant
//! has a neighbour in the same model holding look-alike data (the same ids, titles, words and
//! machines), so a leak shows up as an extra id, a wrong owner or a wrong count.
#![allow(clippy::unwrap_used)]

mod common;

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

// ----- 1. filters, sort, projection --------------------------------------------------------

#[tokio::test]
async fn filtered_sorted_page_walks_return_exactly_the_expected_ids_on_every_model() {
    let (_dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    let mut references = Vec::new();
    for p in &pairs {
        references.push(seed_notes(&p.mine, &p.me).await);
        // The neighbour: the same ids and titles, plus records that match every filter below.
        seed_notes(&p.theirs, &p.nb).await;
        for i in 0..3 {
            let extra = json!({"id": format!("x0{i}"), "title": "alpha", "n": 5, "score": 5.0,
                "at": "2025-01-05T00:00:00Z", "tag": "red", "meta": {"owner": p.nb, "k": 20 + i}});
            p.theirs.create_record(&notes(), &extra).await.unwrap();
        }
    }

    for (p, reference) in pairs.iter().zip(&references) {
        let model = p.model;
        // The brief's case, written out by hand: n desc, then title, then id.
        let pages = walk(
            &p.mine,
            &notes(),
            &q("n >= 2 && done = false", "-n,title", 3),
        )
        .await;
        let pages: Vec<Vec<String>> = pages.iter().map(|page| ids(page)).collect();
        assert_eq!(
            pages,
            vec![
                strs(&["r03", "r01", "r07"]),
                strs(&["r09", "r13", "r02"]),
                strs(&["r06", "r11", "r12"]),
            ],
            "{model}"
        );
        // Descending with missing values last, the id tie-break descending too; a page ends
        // right after a missing value.
        let pages = walk(&p.mine, &notes(), &q("", "-n", 3)).await;
        let pages: Vec<Vec<String>> = pages.iter().map(|page| ids(page)).collect();
        assert_eq!(
            pages,
            vec![
                strs(&["r07", "r03", "r01"]),
                strs(&["r13", "r09", "r11"]),
                strs(&["r06", "r02", "r12"]),
                strs(&["r08", "r04", "r10"]),
                strs(&["r05"]),
            ],
            "{model}"
        );

        // Every filter with every sort and several page sizes, against the reference.
        let sorts = [
            "",
            "-n,title",
            "n",
            "-n",
            "title,-at",
            "-score",
            "done,-n",
            "tag,-score,title",
            "at",
            " +title , -id ",
        ];
        for (filter, keep) in reference_filters(&p.me, &p.nb) {
            let kept: Vec<Value> = reference.iter().filter(|r| keep(r)).cloned().collect();
            for sort in sorts {
                let expected = reference_order(&kept, sort);
                for limit in [1, 4, 1000] {
                    let got = walk_ids(&p.mine, &notes(), &q(&filter, sort, limit)).await;
                    assert_eq!(
                        got, expected,
                        "{model}: filter {filter:?} sort {sort:?} limit {limit}"
                    );
                }
            }
        }

        // Full records come back as stored (the timestamp in UTC), all of them the caller's.
        let all = p
            .mine
            .list_records(&notes(), &q("", "", 1000))
            .await
            .unwrap();
        assert_eq!(all.items.len(), 13, "{model}");
        for (got, want) in all.items.iter().zip(reference) {
            for (name, value) in want.as_object().unwrap() {
                match name.as_str() {
                    "at" => assert_eq!(
                        got["at"].as_str().unwrap().replace(".000000", ""),
                        value.as_str().unwrap(),
                        "{model}"
                    ),
                    _ => assert_eq!(&got[name], value, "{model}: {name} of {}", got["id"]),
                }
            }
            assert_eq!(got["meta"]["owner"], p.me.as_str(), "{model}");
        }
    }
    assert_no_panic(&server);
}

#[tokio::test]
async fn projection_returns_only_the_named_fields_and_the_system_fields() {
    let (_dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    for p in &pairs {
        seed_notes(&p.mine, &p.me).await;
        seed_notes(&p.theirs, &p.nb).await;
    }
    for p in &pairs {
        let model = p.model;
        let cases: [(&str, &str, &[&str]); 6] = [
            ("title", "", &["title"]),
            // Sorting on a field does not add it to the projection, across pages too.
            ("title", "-n,title", &["title"]),
            ("title,meta", "-score", &["title", "meta"]),
            ("title,title,id", "", &["title"]),
            ("id", "n", &[]),
            (" n , at ", "-at", &["n", "at"]),
        ];
        for (fields, sort, wanted) in cases {
            for limit in [3, 1000] {
                let query = ListRecords {
                    fields: Some(fields.to_owned()),
                    ..q("", sort, limit)
                };
                let pages = walk(&p.mine, &notes(), &query).await;
                let items = pages.concat();
                assert_eq!(items.len(), 13, "{model}: fields {fields:?}");
                for item in &items {
                    let keys: BTreeSet<&str> = item
                        .as_object()
                        .unwrap()
                        .keys()
                        .map(String::as_str)
                        .collect();
                    for system in SYSTEM_FIELDS {
                        assert!(keys.contains(system), "{model}: fields {fields:?}: {item}");
                    }
                    for key in &keys {
                        assert!(
                            SYSTEM_FIELDS.contains(key) || wanted.contains(key),
                            "{model}: fields {fields:?} sort {sort:?} returned {key}: {item}"
                        );
                    }
                    if wanted.contains(&"meta") {
                        assert_eq!(item["meta"]["owner"], p.me.as_str(), "{model}");
                    }
                }
                // Same records and order as without a projection.
                let full = walk_ids(&p.mine, &notes(), &q("", sort, limit)).await;
                assert_eq!(ids(&items), full, "{model}: fields {fields:?}");
            }
        }
        // `title` is required, so every projected record has it, with the stored value.
        let page = p
            .mine
            .list_records(
                &notes(),
                &ListRecords {
                    fields: Some("title".into()),
                    ..q("id = \"r07\"", "", 10)
                },
            )
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0]["title"], "foxtrot", "{model}");
        assert_eq!(page.items[0]["version"], 1, "{model}");
    }
    assert_no_panic(&server);
}

/// Floats whose shortest text has 17 significant digits: a JSON parser that is not exact
/// (serde_json without `float_roundtrip`) reads each of them one ulp off.
const HARD_FLOATS: [&str; 8] = [
    "117.79312028613029",
    "205.95950686061374",
    "427.59287807709717",
    "980.1748673177347",
    "385.79205665526837",
    "957.7312462327873",
    "103.53799017323057",
    "9.532062391681111e-7",
];

/// A float the client writes is stored one ulp off (`{"score": 205.95950686061374}`
/// comes back as `205.95950686061377`), so `filter=score = 205.95950686061374` misses the
/// record just written with that value. Cause: request bodies are parsed by serde_json without
/// its `float_roundtrip` feature. (Walks sorted by a stored float still work, since the stored
/// values already went through the same parse; relevance scores do not, see
/// `search_results_by_relevance_page_through_every_hit_once`.)
#[tokio::test]
async fn float_values_round_trip_exactly_through_writes_filters_and_cursors() {
    let (_dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    let mut wrong = Vec::new();
    for p in &pairs {
        let model = p.model;
        for (i, literal) in HARD_FLOATS.iter().enumerate() {
            // Written as text, so nothing on the client side rounds it.
            let body = format!(r#"{{"id":"h{i}","title":"h","score":{literal}}}"#);
            let resp = post(
                &p.mine,
                "/v1/collections/notes/records",
                body.into_bytes(),
                "application/json",
            )
            .await;
            assert_eq!(resp.status, 201, "{model}");
            // The neighbour holds the same values.
            let body = format!(r#"{{"id":"h{i}","title":"h","score":{literal}}}"#);
            let resp = post(
                &p.theirs,
                "/v1/collections/notes/records",
                body.into_bytes(),
                "application/json",
            )
            .await;
            assert_eq!(resp.status, 201, "{model}");
        }
        for (i, literal) in HARD_FLOATS.iter().enumerate() {
            let resp = get(&p.mine, &format!("/v1/collections/notes/records/h{i}")).await;
            let text = String::from_utf8_lossy(&resp.body).into_owned();
            if !text.contains(&format!("\"score\":{literal}")) {
                wrong.push(format!("{model}: wrote {literal}, read back {text}"));
            }
            let resp = get(
                &p.mine,
                &list_path(&notes(), &[("filter", &format!("score = {literal}"))]),
            )
            .await;
            let page: Value = serde_json::from_slice(&resp.body).unwrap();
            if page["items"].as_array().map(Vec::len) != Some(1) {
                wrong.push(format!(
                    "{model}: filter score = {literal} found {}",
                    page["items"]
                ));
            }
        }
        // Walks by the float, one row per page: every row once, in order.
        let mut sorted: Vec<(f64, String)> = HARD_FLOATS
            .iter()
            .enumerate()
            .map(|(i, l)| (l.parse::<f64>().unwrap(), format!("h{i}")))
            .collect();
        sorted.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        let ascending: Vec<String> = sorted.into_iter().map(|(_, id)| id).collect();
        let descending: Vec<String> = ascending.iter().rev().cloned().collect();
        for (sort, expected) in [("score", ascending), ("-score", descending)] {
            let mut query = q("", sort, 1);
            let mut got = Vec::new();
            for _ in 0..=expected.len() {
                let page = p.mine.list_records(&notes(), &query).await.unwrap();
                got.extend(ids(&page.items));
                match page.next_cursor {
                    Some(cursor) => query.cursor = Some(cursor),
                    None => break,
                }
            }
            if got != expected {
                wrong.push(format!(
                    "{model}: sort={sort} limit 1: got {got:?}, expected {expected:?}"
                ));
            }
        }
    }
    // Was a bug (serde_json without float_roundtrip), e.g. "pool: wrote 205.95950686061374, read back {..."score":205.95950686061377...}".
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_no_panic(&server);
}

// ----- 2. cursors ----------------------------------------------------------------------------

/// Base64url without padding, as the server writes cursors.
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

/// A cursor whose binding is right for `tenant` and the query, with hostile contents. Cursors
/// are not signed (their binding is a plain hash), so a client can write one: the server must
/// still answer 400, never 500.
fn forged(tenant: &str, filter: &str, sort: &str, body: Value) -> String {
    let binding = bulkhead_core::keys::hash_secret(&format!(
        "{tenant}\u{0}notes\u{0}list\u{0}{filter}\u{0}{sort}\u{0}"
    ))[..24]
        .to_owned();
    let mut body = body;
    body["b"] = json!(binding);
    b64(body.to_string().as_bytes())
}

#[tokio::test]
async fn cursors_are_bound_to_tenant_collection_and_query() {
    let (_dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    for p in &pairs {
        seed_notes(&p.mine, &p.me).await;
        seed_notes(&p.theirs, &p.nb).await;
        p.mine
            .create_record(&plain(), &json!({"id": "r01", "name": "x", "n": 5}))
            .await
            .unwrap();
    }
    let (filter, sort) = ("n >= 2", "-n");
    let mut all_cursors = Vec::new();
    for p in &pairs {
        let model = p.model;
        let base = q(filter, sort, 2);
        let first = p.mine.list_records(&notes(), &base).await.unwrap();
        let cursor = first.next_cursor.clone().unwrap();
        all_cursors.push((p.me.clone(), cursor.clone()));
        let with = |query: ListRecords| ListRecords {
            cursor: Some(cursor.clone()),
            ..query
        };
        // The owner continues; another limit or projection keeps the position.
        let second = p
            .mine
            .list_records(&notes(), &with(base.clone()))
            .await
            .unwrap();
        assert_eq!(ids(&second.items), strs(&["r01", "r13"]), "{model}");
        let wider = ListRecords {
            fields: Some("title".into()),
            ..with(q(filter, sort, 100))
        };
        let rest = p.mine.list_records(&notes(), &wider).await.unwrap();
        assert_eq!(
            ids(&rest.items),
            strs(&["r01", "r13", "r09", "r11", "r06", "r02", "r12", "r08"]),
            "{model}"
        );

        // The neighbour replays it with its own key: 400, never its page or ours.
        let path = |f: &str, s: &str, c: &str| {
            list_path(
                &notes(),
                &[("filter", f), ("sort", s), ("limit", "2"), ("cursor", c)],
            )
        };
        let replay = get(&p.theirs, &path(filter, sort, &cursor)).await;
        let message = error(&replay, 400, "invalid_cursor");
        assert!(message.contains("cursor"), "{model}: {message}");

        // The same cursor with another filter, sort or search: 400.
        for (f, s, extra) in [
            ("n >= 3", sort, None),
            ("n > 2", sort, None),
            ("", sort, None),
            (filter, "n", None),
            (filter, "-n,title", None),
            (filter, "", None),
            (filter, sort, Some(("q", "alpha"))),
        ] {
            let mut params = vec![
                ("filter", f),
                ("sort", s),
                ("limit", "2"),
                ("cursor", cursor.as_str()),
            ];
            params.extend(extra);
            let resp = get(&p.mine, &list_path(&notes(), &params)).await;
            error(&resp, 400, "invalid_cursor");
        }
        // Another collection with the same query text.
        let other = get(
            &p.mine,
            &list_path(
                &plain(),
                &[("filter", filter), ("sort", sort), ("cursor", &cursor)],
            ),
        )
        .await;
        error(&other, 400, "invalid_cursor");
        // Into an aggregation, and an aggregation's cursor into a listing.
        let agg = aggregate_raw(
            &p.mine,
            &notes(),
            &json!({"group_by": ["n"], "metrics": [{"op": "count"}], "cursor": cursor}),
        )
        .await;
        error(&agg, 400, "invalid_cursor");
        let groups: AggregatePage = p
            .mine
            .aggregate(
                &notes(),
                &serde_json::from_value(json!({"filter": filter, "group_by": ["n"],
                    "metrics": [{"op": "count"}], "limit": 1}))
                .unwrap(),
            )
            .await
            .unwrap();
        let group_cursor = groups.next_cursor.unwrap();
        error(
            &get(&p.mine, &path(filter, sort, &group_cursor)).await,
            400,
            "invalid_cursor",
        );

        // Made up and garbled.
        let garbled = [
            "garbage!".to_owned(),
            String::new(),
            "x".to_owned(),
            "AAAA".to_owned(),
            "%%%".to_owned(),
            "ünïcödé".to_owned(),
            "a".repeat(5000),
            b64(b"{}"),
            b64(b"null"),
            b64(b"[1,2,3]"),
            b64(br#"{"b":"000000000000000000000000","v":[5],"id":"r01"}"#),
            cursor[..cursor.len() - 1].to_owned(),
            cursor[4..].to_owned(),
            format!("{cursor}A"),
            cursor.to_uppercase(),
            cursor.chars().rev().collect(),
        ];
        for bad in &garbled {
            let resp = get(&p.mine, &path(filter, sort, bad)).await;
            error(&resp, 400, "invalid_cursor");
        }
        // Written with the right binding but contents that do not fit the query.
        let hostile = [
            json!({"v": [], "id": "r01"}),
            json!({"v": [5, 6], "id": "r01"}),
            json!({"v": ["five"], "id": "r01"}),
            json!({"v": [1e300], "id": "r01"}),
            json!({"v": [{"a": 1}], "id": "r01"}),
            json!({"v": [5]}),
            json!({"v": [5], "id": "../../admin.key"}),
            json!({"v": [5], "id": 7}),
            json!({"v": [5], "id": "r01", "s": 1.5}),
            json!({"v": "5", "id": "r01"}),
        ];
        // A control: the same binding with a fitting position is taken (so the hostile ones
        // above are refused for their contents, not their binding).
        let fitting = forged(&p.me, filter, sort, json!({"v": [5], "id": "r03"}));
        let resp = get(&p.mine, &path(filter, sort, &fitting)).await;
        assert_eq!(
            resp.status,
            200,
            "{model}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        let page: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(page["items"][0]["id"], "r01", "{model}");
        for body in hostile {
            let forged = forged(&p.me, filter, sort, body.clone());
            let resp = get(&p.mine, &path(filter, sort, &forged)).await;
            assert_eq!(
                resp.status,
                400,
                "{model}: {body}: {}",
                String::from_utf8_lossy(&resp.body)
            );
        }
    }
    // Every tenant's cursor, replayed by every other tenant (any model): 400.
    for p in &pairs {
        for (owner, cursor) in &all_cursors {
            if *owner == p.me {
                continue;
            }
            let path = list_path(
                &notes(),
                &[
                    ("filter", filter),
                    ("sort", sort),
                    ("limit", "2"),
                    ("cursor", cursor),
                ],
            );
            error(&get(&p.mine, &path).await, 400, "invalid_cursor");
        }
    }
    assert_no_panic(&server);
}

#[tokio::test]
async fn a_cursor_survives_changes_to_the_data_behind_it() {
    let (_dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    for p in &pairs {
        let model = p.model;
        seed_notes(&p.mine, &p.me).await;
        seed_notes(&p.theirs, &p.nb).await;
        let base = q("", "title", 3);
        // alpha r02, alpha r06, bravo r04 | charlie r03, delta r01, ...
        let first = p.mine.list_records(&notes(), &base).await.unwrap();
        assert_eq!(ids(&first.items), strs(&["r02", "r06", "r04"]), "{model}");
        // The last row of the page goes away, and a new one sorts before the position.
        p.mine
            .delete_record(&notes(), &RecordId::parse("r04").unwrap(), None)
            .await
            .unwrap();
        p.mine
            .create_record(&notes(), &json!({"id": "r00", "title": "aardvark"}))
            .await
            .unwrap();
        // The neighbour's changes are invisible.
        p.theirs
            .create_record(&notes(), &json!({"id": "r99", "title": "charlie"}))
            .await
            .unwrap();
        let rest = walk_ids(
            &p.mine,
            &notes(),
            &ListRecords {
                cursor: first.next_cursor,
                ..base
            },
        )
        .await;
        assert_eq!(
            rest,
            strs(&[
                "r03", "r01", "r05", "r07", "r08", "r09", "r13", "r10", "r11", "r12"
            ]),
            "{model}"
        );
    }
    assert_no_panic(&server);
}

// ----- 3. full-text search -------------------------------------------------------------------

const TEXTS: [(&str, &str, i64); 8] = [
    ("s01", "Borrow checker, lifetime rules and async code", 1),
    (
        "s02",
        "Async Rust: asynchronous programming with lifetime rules",
        2,
    ),
    ("s03", "The rules of a lifetime are strict", 3),
    ("s04", "E-mail delivery for async jobs", 4),
    ("s05", "Nothing relevant here", 5),
    ("s06", "ASYNCHRONOUS Lifetime-Rules, shouted", 6),
    ("s07", "borrowed books and borrowers", 7),
    ("s08", "mail e delivery", 8),
];

#[tokio::test]
async fn full_text_search_finds_words_phrases_and_prefixes_of_the_callers_records_only() {
    let (_dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    for p in &pairs {
        for (owner, client) in [(&p.me, &p.mine), (&p.nb, &p.theirs)] {
            for (id, body, n) in TEXTS {
                let record = json!({"id": id, "title": format!("zebra {id}"), "body": body,
                    "n": n, "meta": {"owner": owner}});
                client.create_record(&notes(), &record).await.unwrap();
            }
        }
        // The neighbour also has records that would match every search below.
        for (id, body) in [
            ("s90", "borrow lifetime rules async asynchronous e-mail"),
            ("s91", "Borrow checker, lifetime rules and async code"),
        ] {
            let record = json!({"id": id, "title": "x", "body": body, "n": 3});
            p.theirs.create_record(&notes(), &record).await.unwrap();
        }
    }
    let cases: [(&str, &str, &str, &[&str]); 15] = [
        ("lifetime", "", "", &["s01", "s02", "s03", "s06"]),
        ("LIFETIME", "", "", &["s01", "s02", "s03", "s06"]),
        ("\"lifetime rules\"", "", "", &["s01", "s02", "s06"]),
        ("rules lifetime", "", "", &["s01", "s02", "s03", "s06"]),
        ("\"rules lifetime\"", "", "", &[]),
        ("async", "", "", &["s01", "s02", "s04"]),
        ("async*", "", "", &["s01", "s02", "s04", "s06"]),
        ("borrow*", "", "", &["s01", "s07"]),
        ("borrow", "", "", &["s01"]),
        ("borrow \"lifetime rules\" async*", "", "", &["s01"]),
        // `e-mail` is the phrase "e mail": s08 has both words, but not in that order.
        ("e-mail", "", "", &["s04"]),
        // Only `text` fields are searched; `title` is a string.
        ("zebra", "", "", &[]),
        // With a filter and a sort.
        ("lifetime", "n >= 2", "-n", &["s06", "s03", "s02"]),
        (
            "async*",
            "n != 2 && n <= 6",
            "title",
            &["s01", "s04", "s06"],
        ),
        (
            "\"lifetime rules\" async*",
            "meta.owner exists",
            "-id",
            &["s06", "s02", "s01"],
        ),
    ];
    for p in &pairs {
        let model = p.model;
        for (search, filter, sort, expected) in cases {
            // Unsorted results come by relevance; compare them as a set.
            let sort_or_id = if sort.is_empty() { "id" } else { sort };
            for limit in [1, 2, 100] {
                let query = ListRecords {
                    q: Some(search.to_owned()),
                    ..q(filter, sort_or_id, limit)
                };
                let got = walk_ids(&p.mine, &notes(), &query).await;
                assert_eq!(
                    got,
                    strs(expected),
                    "{model}: q={search:?} filter={filter:?} sort={sort_or_id:?} limit {limit}"
                );
            }
            // By relevance, in one page: the same records.
            let ranked = ListRecords {
                q: Some(search.to_owned()),
                ..q(filter, "", 100)
            };
            let page = p.mine.list_records(&notes(), &ranked).await.unwrap();
            assert!(page.next_cursor.is_none(), "{model}");
            let mut got = ids(&page.items);
            got.sort();
            let mut want = strs(expected);
            want.sort();
            assert_eq!(got, want, "{model}: ranked q={search:?} filter={filter:?}");
        }
        // The records found are the caller's own.
        let page = p
            .mine
            .list_records(
                &notes(),
                &ListRecords {
                    q: Some("lifetime".into()),
                    ..q("", "", 100)
                },
            )
            .await
            .unwrap();
        for item in &page.items {
            assert_eq!(item["meta"]["owner"], p.me.as_str(), "{model}: {item}");
        }

        // No text field to search: 400.
        let resp = get(&p.mine, &list_path(&plain(), &[("q", "lifetime")])).await;
        let message = error(&resp, 400, "invalid_search");
        assert!(message.contains("plain"), "{model}: {message}");
        // Bad search text names the position.
        for (search, wanted) in [
            ("a \"b c", "position 2: unterminated quote"),
            ("--", "position 0: expected at least one word"),
            ("a *b", "position 2: '*' must directly follow a word"),
            ("fo*o", "position 2: '*' marks a prefix"),
            (
                "\"a b\"*",
                "position 5: '*' must directly follow a word, not a phrase",
            ),
            ("e-mail*", "position 0: a prefix must be a single word"),
        ] {
            let resp = get(&p.mine, &list_path(&notes(), &[("q", search)])).await;
            let message = error(&resp, 400, "invalid_search");
            assert!(message.contains(wanted), "{model}: q={search:?}: {message}");
        }
    }
    assert_no_panic(&server);
}

/// Walking search results by relevance (`q=` without `sort=`) visits every hit once. The
/// cursor carries the last hit's bm25 score as a JSON float, which must parse back exactly
/// (serde_json's `float_roundtrip`): one ulp off, the keyset `(score, id) < (s, id)` let the
/// same hit through again and `next_cursor` repeated forever.
#[tokio::test]
async fn search_results_by_relevance_page_through_every_hit_once() {
    let (_dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    // Hits of many lengths, so many different scores.
    let mut lines: Vec<String> = TEXTS
        .iter()
        .map(|(id, body, n)| json!({"id": id, "title": id, "body": body, "n": n}).to_string())
        .collect();
    for i in 0..24 {
        let body = format!("lifetime rules {}", vec!["filler"; i].join(" "));
        lines.push(json!({"id": format!("f{i:02}"), "title": "f", "body": body}).to_string());
    }
    for p in &pairs {
        for client in [&p.mine, &p.theirs] {
            let report = client.bulk(&notes(), ndjson(&lines), true).await.unwrap();
            assert_eq!(report.created, 32);
        }
    }
    let mut wrong = Vec::new();
    for p in &pairs {
        for search in ["lifetime", "async*", "rules", "\"lifetime rules\""] {
            let one_page = ListRecords {
                q: Some(search.to_owned()),
                ..q("", "", 100)
            };
            let expected = ids(&p
                .mine
                .list_records(&notes(), &one_page)
                .await
                .unwrap()
                .items);
            assert!(expected.len() >= 3, "{}: {search}", p.model);
            for limit in [1, 2] {
                let mut query = ListRecords {
                    limit: Some(limit),
                    ..one_page.clone()
                };
                let mut got = Vec::new();
                for _ in 0..=expected.len() {
                    let page = p.mine.list_records(&notes(), &query).await.unwrap();
                    got.extend(ids(&page.items));
                    match page.next_cursor {
                        Some(cursor) => query.cursor = Some(cursor),
                        None => break,
                    }
                }
                if got != expected {
                    wrong.push(format!(
                        "{}: q={search:?} limit {limit}: got {got:?}, expected {expected:?}",
                        p.model
                    ));
                }
            }
        }
    }
    // Was a bug (a score parsed one ulp off in the cursor): a hit repeated forever, e.g. q="lifetime rules" limit 1: ..., f17, f18, f18, f18, ...
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_no_panic(&server);
}

/// Relevance on bridge and silo depends on the tenant's own rows only. In a pool, FTS5's bm25
/// takes the document count and average document length of the whole shared index, so a
/// neighbour's volume can shift the order of a tenant's own matches: a documented limitation
/// of pooled search (docs/query.md). Matches themselves never change, and nothing of the
/// neighbour is returned, on any model.
#[tokio::test]
async fn search_matches_never_depend_on_neighbours_nor_ranking_on_bridge_or_silo() {
    let (_dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    let docs = [
        ("d1", "alpha".to_owned()),
        ("d2", "alpha alpha w1 w2 w3 w4 w5 w6 w7 w8".to_owned()),
    ];
    for p in &pairs {
        for client in [&p.mine, &p.theirs] {
            for (id, body) in &docs {
                let record = json!({"id": id, "title": id, "body": body});
                client.create_record(&notes(), &record).await.unwrap();
            }
        }
    }
    let ranked = ListRecords {
        q: Some("alpha".into()),
        ..q("", "", 1)
    };
    let mut before = Vec::new();
    for p in &pairs {
        let page = p.mine.list_records(&notes(), &ranked).await.unwrap();
        before.push((ids(&page.items), page.next_cursor));
    }
    // The neighbours add long documents that do not even contain the word.
    let long = vec!["lorem"; 200].join(" ");
    for p in &pairs {
        let lines: Vec<String> = (0..30)
            .map(|i| json!({"id": format!("long{i}"), "title": "x", "body": long}).to_string())
            .collect();
        let report = p.theirs.bulk(&notes(), ndjson(&lines), true).await.unwrap();
        assert_eq!(report.created, 30);
    }
    let mut changed = Vec::new();
    for (p, before) in pairs.iter().zip(before) {
        let all = ListRecords {
            q: Some("alpha".into()),
            ..q("", "", 100)
        };
        let mut matches = ids(&p.mine.list_records(&notes(), &all).await.unwrap().items);
        matches.sort();
        assert_eq!(
            matches,
            vec!["d1", "d2"],
            "{}: the matches never change",
            p.model
        );
        if p.model == "pool" {
            continue;
        }
        let page = p.mine.list_records(&notes(), &ranked).await.unwrap();
        let after = (ids(&page.items), page.next_cursor);
        if after != before {
            changed.push(format!("{}: before {before:?}, after {after:?}", p.model));
        }
    }
    assert!(
        changed.is_empty(),
        "a neighbour's writes changed this tenant's search results:\n{}",
        changed.join("\n")
    );
    assert_no_panic(&server);
}

// ----- 4. aggregations -----------------------------------------------------------------------

/// machine, at, temp. Offsets and the last microsecond of an hour are on purpose.
const SIGNALS: [(Option<&str>, &str, Option<f64>); 11] = [
    (Some("m1"), "2025-03-10T08:05:00Z", Some(20.0)),
    (Some("m1"), "2025-03-10T08:40:00Z", Some(22.0)),
    (Some("m1"), "2025-03-10T09:15:00Z", Some(30.0)),
    (Some("m2"), "2025-03-10T08:59:59.999999Z", Some(10.0)),
    (Some("m2"), "2025-03-10T09:00:00Z", Some(11.0)),
    (Some("m2"), "2025-03-10T09:30:00Z", Some(13.0)),
    (Some("m2"), "2025-03-11T23:59:00Z", Some(5.0)),
    // Before the week asked about.
    (Some("m1"), "2025-03-01T08:10:00Z", Some(99.0)),
    // 06:10 UTC.
    (Some("m3"), "2025-03-10T08:10:00+02:00", Some(7.5)),
    // No temperature: counted, not averaged.
    (Some("m3"), "2025-03-10T06:50:00Z", None),
    // No machine.
    (None, "2025-03-10T10:00:00Z", Some(1.0)),
];

fn signal(machine: Option<&str>, at: &str, temp: Option<f64>) -> Value {
    let mut record = json!({"at": at});
    if let Some(machine) = machine {
        record["machine"] = json!(machine);
    }
    if let Some(temp) = temp {
        record["temp"] = json!(temp);
    }
    record
}

fn iot_request(extra: Value) -> AggregateRequest {
    let mut request = json!({
        "filter": "at >= 2025-03-03T00:00:00Z",
        "group_by": ["machine"],
        "bucket": {"field": "at", "interval": "hour"},
        "metrics": [{"op": "count"}, {"op": "avg", "field": "temp"}]
    });
    for (k, v) in extra.as_object().unwrap() {
        request[k] = v.clone();
    }
    serde_json::from_value(request).unwrap()
}

fn group(machine: Option<&str>, hour: &str, count: i64, avg: f64) -> Value {
    json!({"machine": machine, "at": hour, "count": count, "avg_temp": avg})
}

#[tokio::test]
async fn signals_per_machine_per_hour_over_the_last_week_is_one_call() {
    let (_dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    for p in &pairs {
        for (machine, at, temp) in SIGNALS {
            p.mine
                .create_record(&signals(), &signal(machine, at, temp))
                .await
                .unwrap();
            // The neighbour: the same machines and hours, other temperatures, more rows.
            p.theirs
                .create_record(&signals(), &signal(machine, at, temp.map(|t| t + 100.0)))
                .await
                .unwrap();
        }
        for (machine, at) in [
            ("m1", "2025-03-10T08:30:00Z"),
            ("m4", "2025-03-10T08:30:00Z"),
        ] {
            p.theirs
                .create_record(&signals(), &signal(Some(machine), at, Some(1000.0)))
                .await
                .unwrap();
        }
    }
    let expected = vec![
        group(None, "2025-03-10T10:00:00.000000Z", 1, 1.0),
        group(Some("m1"), "2025-03-10T08:00:00.000000Z", 2, 21.0),
        group(Some("m1"), "2025-03-10T09:00:00.000000Z", 1, 30.0),
        group(Some("m2"), "2025-03-10T08:00:00.000000Z", 1, 10.0),
        group(Some("m2"), "2025-03-10T09:00:00.000000Z", 2, 12.0),
        group(Some("m2"), "2025-03-11T23:00:00.000000Z", 1, 5.0),
        group(Some("m3"), "2025-03-10T06:00:00.000000Z", 2, 7.5),
    ];
    for p in &pairs {
        let model = p.model;
        let page = p
            .mine
            .aggregate(&signals(), &iot_request(json!({})))
            .await
            .unwrap();
        let groups: Vec<Value> = page.groups.into_iter().map(Value::Object).collect();
        assert_eq!(groups, expected, "{model}");
        assert!(page.next_cursor.is_none(), "{model}");

        // Groups page by `limit` and `next_cursor`, across the group without a machine too.
        for limit in [1, 2, 3, 7] {
            let mut request = iot_request(json!({"limit": limit}));
            let mut got = Vec::new();
            let mut pages = 0;
            loop {
                let page = p.mine.aggregate(&signals(), &request).await.unwrap();
                assert!(page.groups.len() <= limit, "{model}");
                assert!(
                    !page.groups.is_empty(),
                    "{model}: limit {limit}: empty page"
                );
                got.extend(page.groups.into_iter().map(Value::Object));
                pages += 1;
                match page.next_cursor {
                    Some(cursor) => request.cursor = Some(cursor),
                    None => break,
                }
                assert!(pages < 20, "{model}: runaway");
            }
            assert_eq!(got, expected, "{model}: limit {limit}");
            assert_eq!(
                pages,
                expected.len().div_ceil(limit),
                "{model}: limit {limit}"
            );
        }

        // A group cursor replayed by the neighbour, or with another question: 400.
        let first = p
            .mine
            .aggregate(&signals(), &iot_request(json!({"limit": 2})))
            .await
            .unwrap();
        let cursor = first.next_cursor.unwrap();
        let replay = iot_request(json!({"limit": 2, "cursor": cursor}));
        let (status, code, _) = api_error(p.theirs.aggregate(&signals(), &replay).await);
        assert_eq!((status, code.as_str()), (400, "invalid_cursor"), "{model}");
        for change in [
            json!({"filter": "at >= 2025-03-04T00:00:00Z"}),
            json!({"bucket": {"field": "at", "interval": "day"}}),
            json!({"metrics": [{"op": "count"}]}),
        ] {
            let mut other = iot_request(change.clone());
            other.cursor = Some(cursor.clone());
            let (status, code, _) = api_error(p.mine.aggregate(&signals(), &other).await);
            assert_eq!(
                (status, code.as_str()),
                (400, "invalid_cursor"),
                "{model}: {change}"
            );
        }

        // Other shapes: no groups at all, buckets alone, more metrics.
        let total: AggregateRequest = serde_json::from_value(json!({
            "filter": "at >= 2025-03-03T00:00:00Z",
            "metrics": [{"op": "count"}, {"op": "max", "field": "temp", "as": "hottest"},
                {"op": "min", "field": "at"}, {"op": "count_distinct", "field": "machine"},
                {"op": "sum", "field": "temp"}]
        }))
        .unwrap();
        let page = p.mine.aggregate(&signals(), &total).await.unwrap();
        assert_eq!(
            page.groups
                .into_iter()
                .map(Value::Object)
                .collect::<Vec<_>>(),
            vec![
                json!({"count": 10, "hottest": 30.0, "min_at": "2025-03-10T06:10:00.000000Z",
                "count_distinct_machine": 3, "sum_temp": 119.5})
            ],
            "{model}"
        );
        let daily: AggregateRequest = serde_json::from_value(json!({
            "bucket": {"field": "at", "interval": "day"},
            "metrics": [{"op": "count"}]
        }))
        .unwrap();
        let page = p.mine.aggregate(&signals(), &daily).await.unwrap();
        assert_eq!(
            page.groups
                .into_iter()
                .map(Value::Object)
                .collect::<Vec<_>>(),
            vec![
                json!({"at": "2025-03-01T00:00:00.000000Z", "count": 1}),
                json!({"at": "2025-03-10T00:00:00.000000Z", "count": 9}),
                json!({"at": "2025-03-11T00:00:00.000000Z", "count": 1}),
            ],
            "{model}"
        );

        // Calendar buckets: weeks start on Monday (2025-03-10 is one), months on the 1st,
        // also before 1970 and in year 1, where a truncating division would go wrong.
        for at in [
            "1969-12-31T23:30:00Z",
            "1969-12-29T00:00:00Z",
            "1969-12-28T23:59:59.999999Z",
            "0001-02-03T04:05:06Z",
        ] {
            p.mine
                .create_record(&signals(), &signal(Some("old"), at, Some(1.0)))
                .await
                .unwrap();
        }
        let buckets = |filter: &str, interval: &str| -> AggregateRequest {
            serde_json::from_value(json!({"filter": filter,
                "bucket": {"field": "at", "interval": interval}, "metrics": [{"op": "count"}]}))
            .unwrap()
        };
        let recent = "machine != \"old\"";
        let old = "machine = \"old\"";
        let cases = [
            (recent, "week", vec![("2025-02-24", 1), ("2025-03-10", 10)]),
            (recent, "month", vec![("2025-03-01", 11)]),
            (
                old,
                "week",
                vec![("0001-01-29", 1), ("1969-12-22", 1), ("1969-12-29", 2)],
            ),
            (old, "month", vec![("0001-02-01", 1), ("1969-12-01", 3)]),
            (
                old,
                "day",
                vec![
                    ("0001-02-03", 1),
                    ("1969-12-28", 1),
                    ("1969-12-29", 1),
                    ("1969-12-31", 1),
                ],
            ),
        ];
        for (filter, interval, want) in cases {
            let page = p
                .mine
                .aggregate(&signals(), &buckets(filter, interval))
                .await
                .unwrap();
            let want: Vec<Value> = want
                .into_iter()
                .map(
                    |(day, count)| json!({"at": format!("{day}T00:00:00.000000Z"), "count": count}),
                )
                .collect();
            let got: Vec<Value> = page.groups.into_iter().map(Value::Object).collect();
            assert_eq!(got, want, "{model}: {filter} by {interval}");
        }
        let page = p
            .mine
            .aggregate(&signals(), &buckets(old, "hour"))
            .await
            .unwrap();
        let hours: Vec<&str> = page
            .groups
            .iter()
            .map(|g| g["at"].as_str().unwrap())
            .collect();
        assert_eq!(
            hours,
            vec![
                "0001-02-03T04:00:00.000000Z",
                "1969-12-28T23:00:00.000000Z",
                "1969-12-29T00:00:00.000000Z",
                "1969-12-31T23:00:00.000000Z",
            ],
            "{model}"
        );
    }
    assert_no_panic(&server);
}

#[tokio::test]
async fn bad_aggregations_are_400s_naming_the_problem() {
    let (_dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    let count = json!([{"op": "count"}]);
    let cases = [
        (
            json!({"group_by": ["nope"], "metrics": count}),
            "invalid_aggregation",
            vec!["unknown field 'nope'", "group_by[0]"],
        ),
        (
            json!({"metrics": [{"op": "sum", "field": "machine"}]}),
            "invalid_aggregation",
            vec!["'sum' does not apply to 'machine'", "metrics[0]"],
        ),
        (
            json!({"metrics": [{"op": "count"}, {"op": "avg", "field": "nope"}]}),
            "invalid_aggregation",
            vec!["unknown field 'nope'", "metrics[1]"],
        ),
        (
            json!({"bucket": {"field": "temp", "interval": "hour"}, "metrics": count}),
            "invalid_aggregation",
            vec!["bucket.field", "'temp'", "timestamp"],
        ),
        (
            json!({"bucket": {"field": "machine", "interval": "day"}, "metrics": count}),
            "invalid_aggregation",
            vec!["'machine'", "timestamp"],
        ),
        (
            json!({"metrics": []}),
            "invalid_aggregation",
            vec!["at least one"],
        ),
        (
            json!({"group_by": ["machine"]}),
            "invalid_aggregation",
            vec!["at least one"],
        ),
        (
            json!({"metrics": [{"op": "avg"}]}),
            "invalid_aggregation",
            vec!["needs a field"],
        ),
        (
            json!({"group_by": ["machine"], "metrics": [{"op": "count", "as": "machine"}]}),
            "invalid_aggregation",
            vec!["'machine' names two columns"],
        ),
        (
            json!({"metrics": [{"op": "count", "as": "bad name"}]}),
            "invalid_aggregation",
            vec!["metrics[0].as"],
        ),
        (
            json!({"filter": "nope = 1", "metrics": count}),
            "invalid_filter",
            vec!["position 0", "unknown field 'nope'"],
        ),
        (
            json!({"filter": "at >= 2025-03-03", "metrics": count}),
            "invalid_filter",
            vec!["position 6", "2025-03-03"],
        ),
        (
            json!({"metrics": count, "limit": 0}),
            "invalid_limit",
            vec!["limit"],
        ),
        (
            json!({"metrics": count, "limit": 10001}),
            "invalid_limit",
            vec!["10000"],
        ),
    ];
    for p in &pairs {
        for (body, code, wanted) in &cases {
            let resp = aggregate_raw(&p.mine, &signals(), body).await;
            let message = error(&resp, 400, code);
            for w in wanted {
                assert!(
                    message.contains(w),
                    "{}: {body}: {message:?} lacks {w:?}",
                    p.model
                );
            }
        }
        // Malformed bodies are 400s with the standard error body, whatever the code.
        for body in [
            json!({"metrics": count, "metric": 1}),
            json!({"metrics": [{"op": "median", "field": "temp"}]}),
            json!({"bucket": {"field": "at", "interval": "fortnight"}, "metrics": count}),
            json!({"group_by": "machine", "metrics": count}),
            json!([1, 2]),
        ] {
            let resp = aggregate_raw(&p.mine, &signals(), &body).await;
            assert_eq!(resp.status, 400, "{}: {body}", p.model);
            let parsed: ErrorBody = resp.json().unwrap();
            assert!(!parsed.error.message.is_empty());
        }
        let resp = post(
            &p.mine,
            "/v1/collections/signals/aggregate",
            b"{not json".to_vec(),
            "application/json",
        )
        .await;
        assert_eq!(resp.status, 400, "{}", p.model);
    }
    assert_no_panic(&server);
}

// ----- 5. bulk NDJSON ---------------------------------------------------------------------------

#[tokio::test]
async fn bulk_ndjson_reports_every_line_and_stores_only_the_good_ones() {
    let (_dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    for p in &pairs {
        let model = p.model;
        for id in ["r01", "r02", "r03"] {
            let record = json!({"id": id, "title": format!("{id} of {}", p.me), "n": 1});
            p.mine.create_record(&notes(), &record).await.unwrap();
        }
        for id in ["r01", "r02", "r03", "nb-only", "nb-gone", "nb-up"] {
            let record = json!({"id": id, "title": format!("{id} of {}", p.nb), "n": 1});
            p.theirs.create_record(&notes(), &record).await.unwrap();
        }
        let lines = [
            r#"{"id":"b1","title":"bulk one","n":1,"body":"searchable words"}"#,
            r#"{"op":"upsert","id":"r01","record":{"title":"upserted","n":7}}"#,
            r#"{"op":"delete","id":"r02"}"#,
            r#"{"id":"b2","title":"#,
            r#"{"id":"b3","title":"wrong type","n":"seven"}"#,
            r#"{"id":"b1","title":"same id as line 1"}"#,
            "",
            // Exists only in the neighbour's data: missing here.
            r#"{"op":"delete","id":"nb-gone"}"#,
            r#"{"op":"upsert","id":"b4","record":{"title":"upsert creates","n":4}}"#,
            r#"{"op":"create","id":"r03","record":{"title":"r03 exists"}}"#,
            // The neighbour's id is free here.
            r#"{"id":"nb-only","title":"mine now","n":11}"#,
            r#"{"title":"generated id","n":12}"#,
            "   \t ",
            r#"[1,2]"#,
            "{\"id\":\"b5\",\"title\":\"crlf\"}\r",
            r#"{"op":"upsert","id":"b6","record":{"title":"x"},"extra":1}"#,
            r#"{"op":"delete","id":"r03","record":{"title":"x"}}"#,
            r#"{"op":"explode","id":"r03"}"#,
            r#"{"id":"b7","n":1}"#,
            // The neighbour's id again: created here, the neighbour's record untouched.
            r#"{"op":"upsert","id":"nb-up","record":{"title":"upserted here"}}"#,
        ];
        let mut body = ndjson(&lines.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>());
        // Line 21 is not UTF-8.
        body.extend_from_slice(b"{\"id\":\"b8\",\"title\":\"\xff\xfe\"}\n");
        let report = p.mine.bulk(&notes(), body, false).await.unwrap();
        let got: Vec<(u64, u16)> = report.results.iter().map(|l| (l.line, l.status)).collect();
        assert_eq!(
            got,
            vec![
                (1, 201),
                (2, 200),
                (3, 204),
                (4, 400),
                (5, 400),
                (6, 409),
                (8, 404),
                (9, 201),
                (10, 409),
                (11, 201),
                (12, 201),
                (14, 400),
                (15, 201),
                (16, 400),
                (17, 400),
                (18, 400),
                (19, 400),
                (20, 201),
                (21, 400),
            ],
            "{model}: {report:#?}"
        );
        assert_eq!(
            (
                report.created,
                report.updated,
                report.deleted,
                report.failed
            ),
            (6, 1, 1, 11),
            "{model}"
        );
        for line in &report.results {
            match line.status {
                200 | 201 => {
                    assert!(
                        line.id.is_some() && line.version.is_some(),
                        "{model}: {line:?}"
                    );
                    assert!(line.error.is_none(), "{model}: {line:?}");
                }
                204 => assert_eq!(line.id.as_deref(), Some("r02"), "{model}"),
                _ => {
                    let e = line.error.as_ref().unwrap();
                    assert!(
                        e.message.starts_with(&format!("line {}: ", line.line)),
                        "{model}: {line:?}"
                    );
                }
            }
        }
        let by_line = |n: u64| report.results.iter().find(|l| l.line == n).unwrap();
        assert_eq!(by_line(2).version, Some(2), "{model}");
        assert_eq!(by_line(1).id.as_deref(), Some("b1"), "{model}");
        let codes: Vec<(u64, &str)> = report
            .results
            .iter()
            .filter_map(|l| l.error.as_ref().map(|e| (l.line, e.code.as_str())))
            .collect();
        assert_eq!(
            codes,
            vec![
                (4, "invalid_line"),
                (5, "validation_failed"),
                (6, "duplicate_id"),
                (8, "record_not_found"),
                (10, "duplicate_id"),
                (14, "invalid_line"),
                (16, "invalid_line"),
                (17, "invalid_line"),
                (18, "invalid_line"),
                (19, "validation_failed"),
                (21, "invalid_line"),
            ],
            "{model}"
        );
        let message = &by_line(5).error.as_ref().unwrap().message;
        assert!(message.contains('n'), "{model}: {message}");
        let generated = by_line(12).id.clone().unwrap();

        // What is stored: exactly the good lines.
        let all = p
            .mine
            .list_records(&notes(), &q("", "", 1000))
            .await
            .unwrap();
        let mut stored = ids(&all.items);
        stored.sort();
        let mut want = strs(&["b1", "b4", "b5", "nb-only", "nb-up", "r01", "r03"]);
        want.push(generated.clone());
        want.sort();
        assert_eq!(stored, want, "{model}");
        let get = |id: &str| all.items.iter().find(|r| r["id"] == id).unwrap().clone();
        assert_eq!(get("r01")["title"], "upserted", "{model}");
        assert_eq!(get("r01")["n"], 7, "{model}");
        assert_eq!(get("r01")["version"], 2, "{model}");
        assert_eq!(get("b1")["title"], "bulk one", "{model}");
        assert_eq!(get("r03")["title"], format!("r03 of {}", p.me), "{model}");
        assert_eq!(get("nb-only")["title"], "mine now", "{model}");
        assert_eq!(get("nb-up")["title"], "upserted here", "{model}");
        assert_eq!(get("nb-up")["version"], 1, "{model}");
        assert_eq!(get(&generated)["title"], "generated id", "{model}");
        // Bulk-written text is searchable.
        let found = p
            .mine
            .list_records(
                &notes(),
                &ListRecords {
                    q: Some("searchable".into()),
                    ..q("", "", 10)
                },
            )
            .await
            .unwrap();
        assert_eq!(ids(&found.items), strs(&["b1"]), "{model}");

        // The neighbour's records are untouched.
        let theirs = p
            .theirs
            .list_records(&notes(), &q("", "", 1000))
            .await
            .unwrap();
        let mut their_ids = ids(&theirs.items);
        their_ids.sort();
        assert_eq!(
            their_ids,
            strs(&["nb-gone", "nb-only", "nb-up", "r01", "r02", "r03"]),
            "{model}"
        );
        for record in &theirs.items {
            assert!(
                record["title"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("of {}", p.nb)),
                "{model}: {record}"
            );
            assert_eq!(record["version"], 1, "{model}");
        }

        // `?results=errors`: only the failed lines, the counts still for all.
        let lines = [
            r#"{"id":"e1","title":"ok"}"#,
            "nope",
            r#"{"id":"e1","title":"dup"}"#,
            r#"{"id":"e2","title":"ok"}"#,
        ];
        let body = ndjson(&lines.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>());
        let report = p.mine.bulk(&notes(), body, true).await.unwrap();
        let got: Vec<(u64, u16)> = report.results.iter().map(|l| (l.line, l.status)).collect();
        assert_eq!(got, vec![(2, 400), (3, 409)], "{model}");
        assert_eq!((report.created, report.failed), (2, 2), "{model}");
        for id in ["e1", "e2"] {
            p.mine
                .get_record(&notes(), &RecordId::parse(id).unwrap())
                .await
                .unwrap();
        }
        // An empty body, or only blank lines: nothing to do, nothing reported.
        for body in [&b""[..], b"\n\n  \n"] {
            let report = p.mine.bulk(&notes(), body.to_vec(), false).await.unwrap();
            assert_eq!(report, BulkReport::default(), "{model}");
        }
    }
    assert_no_panic(&server);
}

#[tokio::test]
async fn bulk_is_refused_to_readers_and_over_the_tiers_size_limit() {
    let (_dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    const LIMIT: usize = 256;
    let mut tiny = Vec::new();
    for (model, _) in MODELS {
        let tier = format!("tiny-{model}");
        put_tier(
            &admin,
            &tier,
            json!({"isolation": model, "limits": {"bulk_max_bytes": LIMIT}}),
        )
        .await;
        let tenant = format!("tiny-{model}-a");
        create_tenant(&admin, &tenant, &tier).await;
        tiny.push((
            model,
            server.client(&key(&admin, &tenant, TenantRole::Member).await),
        ));
    }
    // Viewers read, never write: 403 and nothing stored.
    for p in &pairs {
        let viewer = server.client(&key(&admin, &p.me, TenantRole::Viewer).await);
        let body = ndjson(&[r#"{"id":"v1","title":"by a viewer"}"#.to_owned()]);
        let resp = post(
            &viewer,
            "/v1/collections/notes/records:bulk",
            body.clone(),
            "application/x-ndjson",
        )
        .await;
        error(&resp, 403, "forbidden");
        let (status, _, _) = api_error(viewer.bulk(&notes(), body, false).await);
        assert_eq!(status, 403, "{}", p.model);
        let all = p.mine.list_records(&notes(), &q("", "", 10)).await.unwrap();
        assert!(all.items.is_empty(), "{}: {:?}", p.model, all.items);
    }
    // A body of exactly the limit is taken; one byte more is 413 and writes nothing.
    let line = |id: &str, len: usize| {
        let head = format!(r#"{{"id":"{id}","title":""#);
        let pad = len - head.len() - 3;
        format!("{head}{}\"}}\n", "x".repeat(pad))
    };
    for (model, client) in &tiny {
        let exact = line("fits", LIMIT);
        assert_eq!(exact.len(), LIMIT);
        let report = client
            .bulk(&notes(), exact.into_bytes(), false)
            .await
            .unwrap();
        assert_eq!(report.created, 1, "{model}");
        let over = line("over", LIMIT + 1);
        let resp = post(
            client,
            "/v1/collections/notes/records:bulk",
            over.into_bytes(),
            "application/x-ndjson",
        )
        .await;
        let message = error(&resp, 413, "payload_too_large");
        assert!(message.contains(&LIMIT.to_string()), "{model}: {message}");
        // Many small good lines over the limit: none of them is written.
        let lines: Vec<String> = (0..20)
            .map(|i| format!(r#"{{"id":"many{i}","title":"t"}}"#))
            .collect();
        let (status, code, _) = api_error(client.bulk(&notes(), ndjson(&lines), false).await);
        assert_eq!(
            (status, code.as_str()),
            (413, "payload_too_large"),
            "{model}"
        );
        let all = client
            .list_records(&notes(), &q("", "", 100))
            .await
            .unwrap();
        assert_eq!(ids(&all.items), strs(&["fits"]), "{model}");
    }
    // The default tiers take bodies far larger than the JSON body limit (1 MiB), in many
    // transactions; line numbers stay right across them.
    for p in &pairs {
        let pad = "y".repeat(400);
        let mut lines: Vec<String> = (0..3000)
            .map(|i| format!(r#"{{"id":"big{i:04}","title":"{pad}","n":{i}}}"#))
            .collect();
        lines[1499] = r#"{"id":"big0010","title":"duplicate"}"#.to_owned();
        lines[2500] = "{broken".to_owned();
        let body = ndjson(&lines);
        assert!(body.len() > 1024 * 1024);
        let report = p.mine.bulk(&notes(), body, true).await.unwrap();
        let got: Vec<(u64, u16)> = report.results.iter().map(|l| (l.line, l.status)).collect();
        assert_eq!(got, vec![(1500, 409), (2501, 400)], "{}", p.model);
        assert_eq!((report.created, report.failed), (2998, 2), "{}", p.model);
        let stored = p
            .mine
            .aggregate(
                &notes(),
                &serde_json::from_value(
                    json!({"filter": "id starts_with \"big\"", "metrics": [{"op": "count"}]}),
                )
                .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(stored.groups[0]["count"], 2998, "{}", p.model);
    }
    assert_no_panic(&server);
}

// ----- 6. guardrails ------------------------------------------------------------------------------

async fn bulk_notes(client: &Client, count: usize) {
    let lines: Vec<String> = (0..count)
        .map(|i| {
            json!({"id": format!("g{i:03}"), "title": format!("t{i}"), "n": i % 100,
                "score": i as f64, "body": "common words everywhere"})
            .to_string()
        })
        .collect();
    let report = client.bulk(&notes(), ndjson(&lines), true).await.unwrap();
    assert_eq!(report.created, count as u64, "{report:?}");
}

fn too_expensive(result: Result<impl std::fmt::Debug, ClientError>, limit: u64, what: &str) {
    let (status, code, message) = api_error(result);
    assert_eq!(
        (status, code.as_str()),
        (422, "query_too_expensive"),
        "{what}: {message}"
    );
    assert!(
        message.contains(&format!("{limit} rows")),
        "{what}: {message}"
    );
}

#[tokio::test]
async fn a_tiers_rows_examined_budget_stops_unindexed_queries_of_its_tenants_only() {
    let (_dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    let mut capped = Vec::new();
    for (model, _) in MODELS {
        let tier = format!("capped-{model}");
        put_tier(
            &admin,
            &tier,
            json!({"isolation": model, "limits": {"query_rows_examined": 50}}),
        )
        .await;
        let (big, small) = (format!("cap-{model}"), format!("cap-{model}-small"));
        create_tenant(&admin, &big, &tier).await;
        create_tenant(&admin, &small, &tier).await;
        capped.push((
            model,
            tier,
            server.client(&key(&admin, &big, TenantRole::Member).await),
            server.client(&key(&admin, &small, TenantRole::Member).await),
        ));
    }
    for ((_, _, big, small), p) in capped.iter().zip(&pairs) {
        bulk_notes(big, 300).await;
        bulk_notes(small, 40).await;
        // Default-tier neighbours in the same model, with the same and more data.
        bulk_notes(&p.mine, 300).await;
        bulk_notes(&p.theirs, 600).await;
    }
    let unindexed = q("score > 1000", "", 50);
    let count: AggregateRequest =
        serde_json::from_value(json!({"metrics": [{"op": "count"}]})).unwrap();
    for ((model, tier, big, small), p) in capped.iter().zip(&pairs) {
        // Unindexed, over 300 rows: stopped, and the message names the limit.
        too_expensive(big.list_records(&notes(), &unindexed).await, 50, model);
        too_expensive(big.aggregate(&notes(), &count).await, 50, model);
        let search = ListRecords {
            q: Some("common".into()),
            ..q("", "-score", 10)
        };
        too_expensive(big.list_records(&notes(), &search).await, 50, model);
        let resp = get(big, &list_path(&notes(), &[("filter", "score > 1000")])).await;
        error(&resp, 422, "query_too_expensive");
        // An indexed equality examines only its matches.
        let few = big
            .list_records(&notes(), &q("n = 3", "", 50))
            .await
            .unwrap();
        assert_eq!(ids(&few.items), strs(&["g003", "g103", "g203"]), "{model}");
        let none = big
            .list_records(&notes(), &q("n = 3 && score > 1000", "", 50))
            .await
            .unwrap();
        assert!(none.items.is_empty(), "{model}");
        let agg: AggregateRequest = serde_json::from_value(
            json!({"filter": "n = 3", "metrics": [{"op": "sum", "field": "score"}]}),
        )
        .unwrap();
        let sum = big.aggregate(&notes(), &agg).await.unwrap();
        assert_eq!(sum.groups[0]["sum_score"], 309.0, "{model}");
        // A short page stops early; the connection still works after a refusal.
        let head = big.list_records(&notes(), &q("", "", 10)).await.unwrap();
        assert_eq!(head.items.len(), 10, "{model}");
        // The same tier with fewer rows than the budget: fine, whatever the neighbours hold.
        let small_page = small.list_records(&notes(), &unindexed).await.unwrap();
        assert!(small_page.items.is_empty(), "{model}");
        small.aggregate(&notes(), &count).await.unwrap();
        // Tenants on other tiers in the same model run the same query.
        for client in [&p.mine, &p.theirs] {
            let page = client.list_records(&notes(), &unindexed).await.unwrap();
            assert!(page.items.is_empty(), "{model}");
            let total = client.aggregate(&notes(), &count).await.unwrap();
            assert!(total.groups[0]["count"].as_i64().unwrap() >= 300, "{model}");
        }
        // Raising the tier's limit takes effect at once.
        put_tier(
            &admin,
            tier,
            json!({"isolation": model, "limits": {"query_rows_examined": 100000}}),
        )
        .await;
        let page = big.list_records(&notes(), &unindexed).await.unwrap();
        assert!(page.items.is_empty(), "{model}");
    }
    assert_no_panic(&server);
}

#[tokio::test]
async fn server_wide_defaults_apply_to_tiers_that_set_no_limits() {
    let (_dir, server, admin) = start(&[
        ("BULKHEAD_QUERY_ROWS_EXAMINED", "50"),
        ("BULKHEAD_BULK_MAX_BYTES", "20000"),
    ])
    .await;
    let pairs = pairs(&server, &admin).await;
    let mut roomy = Vec::new();
    for (model, _) in MODELS {
        let tier = format!("roomy-{model}");
        put_tier(
            &admin,
            &tier,
            json!({"isolation": model, "limits": {"query_rows_examined": 1000000, "bulk_max_bytes": 1000000}}),
        )
        .await;
        let tenant = format!("roomy-{model}");
        create_tenant(&admin, &tenant, &tier).await;
        roomy.push(server.client(&key(&admin, &tenant, TenantRole::Member).await));
    }
    let lines: Vec<String> = (0..300)
        .map(|i| json!({"id": format!("g{i:03}"), "title": "t".repeat(50), "n": i % 100, "score": i as f64})
            .to_string())
        .collect();
    let body = ndjson(&lines);
    assert!(body.len() > 20000);
    for (p, roomy) in pairs.iter().zip(&roomy) {
        let model = p.model;
        // The server's bulk default: one body is too big, three smaller ones are fine.
        let (status, code, message) = api_error(p.mine.bulk(&notes(), body.clone(), false).await);
        assert_eq!(
            (status, code.as_str()),
            (413, "payload_too_large"),
            "{model}"
        );
        assert!(message.contains("20000"), "{model}: {message}");
        assert!(
            p.mine
                .list_records(&notes(), &q("", "", 10))
                .await
                .unwrap()
                .items
                .is_empty()
        );
        for chunk in lines.chunks(100) {
            let report = p.mine.bulk(&notes(), ndjson(chunk), true).await.unwrap();
            assert_eq!(report.created, 100, "{model}");
        }
        let report = roomy.bulk(&notes(), body.clone(), true).await.unwrap();
        assert_eq!(report.created, 300, "{model}");

        // The server's rows-examined default.
        too_expensive(
            p.mine
                .list_records(&notes(), &q("score > 1000", "", 50))
                .await,
            50,
            model,
        );
        let few = p
            .mine
            .list_records(&notes(), &q("n = 7", "", 50))
            .await
            .unwrap();
        assert_eq!(ids(&few.items), strs(&["g007", "g107", "g207"]), "{model}");
        // A tier's own limit wins over the server's default.
        let page = roomy
            .list_records(&notes(), &q("score > 1000", "", 50))
            .await
            .unwrap();
        assert!(page.items.is_empty(), "{model}");
    }
    assert_no_panic(&server);
}

// ----- 7. bad input --------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_list_parameters_are_400s_with_the_standard_error_body() {
    let (_dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    for p in &pairs {
        seed_notes(&p.mine, &p.me).await;
    }
    let deep = format!("{}n = 1{}", "(".repeat(40), ")".repeat(40));
    let long = vec!["n = 1"; 700].join(" || ");
    // Query parameters, the error code, and what the message must mention.
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            vec![("filter", "n == 1")],
            "invalid_filter",
            vec!["position 2", "'=='"],
        ),
        (
            vec![("filter", r#"title = "x" and n = 1"#)],
            "invalid_filter",
            vec!["position 12", "'and'"],
        ),
        (
            vec![("filter", "(n = 1")],
            "invalid_filter",
            vec!["position 6", "position 0"],
        ),
        (
            vec![("filter", "nope = 1")],
            "invalid_filter",
            vec!["position 0", "unknown field 'nope'"],
        ),
        (
            vec![("filter", r#"tenant_id = "pool-b""#)],
            "invalid_filter",
            vec!["position 0", "tenant_id"],
        ),
        (
            vec![("filter", "n = 2.5")],
            "invalid_filter",
            vec!["position 4"],
        ),
        (
            vec![("filter", "title = abc")],
            "invalid_filter",
            vec!["position 8", "'abc'"],
        ),
        (vec![("filter", "meta = 1")], "invalid_filter", vec!["meta"]),
        (
            vec![("filter", "done > true")],
            "invalid_filter",
            vec!["position 5"],
        ),
        (
            vec![("filter", "at > 2025-01-01")],
            "invalid_filter",
            vec!["position 5", "2025-01-01"],
        ),
        (
            vec![("filter", "n in []")],
            "invalid_filter",
            vec!["at least one"],
        ),
        (
            vec![("filter", "title = \"abc")],
            "invalid_filter",
            vec!["position 8", "unterminated string"],
        ),
        (
            vec![("filter", &deep)],
            "invalid_filter",
            vec!["position 32"],
        ),
        (vec![("filter", &long)], "invalid_filter", vec!["4096"]),
        (
            vec![("sort", "nope")],
            "invalid_sort",
            vec!["unknown field 'nope'"],
        ),
        (
            vec![("sort", "title,nope")],
            "invalid_sort",
            vec!["position 6", "nope"],
        ),
        (vec![("sort", "meta")], "invalid_sort", vec!["meta"]),
        (
            vec![("sort", "-body")],
            "invalid_sort",
            vec!["body", "text"],
        ),
        (
            vec![("sort", "n,,title")],
            "invalid_sort",
            vec!["position 2"],
        ),
        (
            vec![("sort", "title,-title")],
            "invalid_sort",
            vec!["title"],
        ),
        (
            vec![("sort", "tenant_id")],
            "invalid_sort",
            vec!["tenant_id"],
        ),
        (
            vec![("fields", "nope")],
            "invalid_fields",
            vec!["unknown field 'nope'"],
        ),
        (
            vec![("fields", "title,")],
            "invalid_fields",
            vec!["position"],
        ),
        (
            vec![("fields", "tenant_id")],
            "invalid_fields",
            vec!["tenant_id"],
        ),
        (vec![("limit", "0")], "invalid_limit", vec!["limit"]),
        (vec![("limit", "1001")], "invalid_limit", vec!["1000"]),
        (vec![("limit", "-1")], "invalid_query", vec!["limit"]),
        (vec![("limit", "ten")], "invalid_query", vec!["limit"]),
        (
            vec![("limit", "99999999999999999999")],
            "invalid_query",
            vec!["limit"],
        ),
        (vec![("nope", "1")], "invalid_query", vec!["nope"]),
        (vec![("q", "a \"b c")], "invalid_search", vec!["position 2"]),
    ];
    let before: Vec<Vec<String>> = {
        let mut out = Vec::new();
        for p in &pairs {
            out.push(ids(&p
                .mine
                .list_records(&notes(), &q("", "", 1000))
                .await
                .unwrap()
                .items));
        }
        out
    };
    for (p, before) in pairs.iter().zip(before) {
        for (params, code, wanted) in &cases {
            let resp = get(&p.mine, &list_path(&notes(), params)).await;
            let message = error(&resp, 400, code);
            for w in wanted {
                assert!(
                    message.contains(w),
                    "{}: {params:?}: {message:?} lacks {w:?}",
                    p.model
                );
            }
        }
        // Blank parameters mean none.
        let resp = get(
            &p.mine,
            &list_path(&notes(), &[("q", ""), ("filter", " "), ("sort", "")]),
        )
        .await;
        assert_eq!(resp.status, 200, "{}: blank parameters", p.model);
        // Undecodable query strings: still a 400 with the standard body.
        for raw in ["filter=%FF%FE", "filter=%", "limit=1&limit=2", "sort=%00"] {
            let path = format!("/v1/collections/notes/records?{raw}");
            let resp = get(&p.mine, &path).await;
            assert_eq!(
                resp.status,
                400,
                "{}: {raw}: {}",
                p.model,
                String::from_utf8_lossy(&resp.body)
            );
            let body: ErrorBody = resp.json().unwrap();
            assert!(!body.error.message.is_empty());
        }
        // An unknown collection is a 404, whatever the query.
        let resp = get(&p.mine, "/v1/collections/nope/records?filter=n%20%3D%201").await;
        assert_eq!(resp.status, 404, "{}", p.model);
        // Nothing changed.
        let after = ids(&p
            .mine
            .list_records(&notes(), &q("", "", 1000))
            .await
            .unwrap()
            .items);
        assert_eq!(after, before, "{}", p.model);
    }
    assert_no_panic(&server);
}

// ----- 8. the CLI ----------------------------------------------------------------------------------

fn cli(server: &Server, token: &str, args: &[&str]) -> Output {
    let mut command = Command::new(common::binary());
    command
        .args(args)
        .args(["--url", &server.url, "--token", token])
        .stdin(Stdio::null());
    for name in [
        "BULKHEAD_URL",
        "BULKHEAD_TOKEN",
        "BULKHEAD_DATA_DIR",
        "BULKHEAD_TENANT",
        "BULKHEAD_ADMIN_KEY",
        "BULKHEAD_CONFIG",
    ] {
        command.env_remove(name);
    }
    command.output().unwrap()
}

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn cli_import_reports_the_bad_lines_number_and_keeps_the_others() {
    let (dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    for p in &pairs {
        let model = p.model;
        let token = key(&admin, &p.me, TenantRole::Member).await;
        let file = write_file(
            dir.path(),
            &format!("{model}.ndjson"),
            concat!(
                "{\"id\":\"c1\",\"title\":\"one\",\"n\":1}\n",
                "{\"id\":\"c2\",\"title\":\"two\",\"n\":2}\n",
                "\n",
                "{\"id\":\"c3\",\"title\":\"three\",\"n\":\"three\"}\n",
                "{\"id\":\"c4\",\"title\":\"four\",\"n\":4}\n",
                "{\"id\":\"c5\",\"title\":\"five\",\"n\":5}",
            ),
        );
        let output = cli(&server, &token, &["record", "import", "notes", &file]);
        let text = output_text(&output);
        assert!(!output.status.success(), "{model}: {text}");
        assert!(text.contains("line 4"), "{model}: {text}");
        for other in ["line 1:", "line 2:", "line 3:", "line 5:", "line 6:"] {
            assert!(!text.contains(other), "{model}: {other} in {text}");
        }
        assert!(!text.contains("panicked"), "{model}: {text}");
        let stored = walk_ids(&p.mine, &notes(), &q("", "", 100)).await;
        assert_eq!(stored, strs(&["c1", "c2", "c4", "c5"]), "{model}");
        let theirs = p
            .theirs
            .list_records(&notes(), &q("", "", 100))
            .await
            .unwrap();
        assert!(theirs.items.is_empty(), "{model}");

        // In batches of two lines, the numbers are still the file's; --json lists them.
        let file = write_file(
            dir.path(),
            &format!("{model}-2.ndjson"),
            concat!(
                "{\"id\":\"d1\",\"title\":\"one\"}\n",
                "{\"id\":\"d2\",\"title\":\"two\"}\n",
                "{\"id\":\"d3\",\"title\":\"three\"}\n",
                "{\"id\":\"d4\",\"title\":\"four\"}\n",
                "{\"id\":\"d5\"}\n",
                "{\"id\":\"d6\",\"title\":\"six\"}\n",
                "{\"id\":\"d1\",\"title\":\"again\"}\n",
            ),
        );
        let output = cli(
            &server,
            &token,
            &["record", "import", "notes", &file, "--batch", "2", "--json"],
        );
        assert!(
            !output.status.success(),
            "{model}: {}",
            output_text(&output)
        );
        let summary: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{model}: {e}: {}", output_text(&output)));
        let failures: Vec<(u64, u64)> = summary["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["line"].as_u64().unwrap(), f["status"].as_u64().unwrap()))
            .collect();
        assert_eq!(failures, vec![(5, 400), (7, 409)], "{model}: {summary}");
        assert_eq!(summary["created"], 5, "{model}: {summary}");
        let stored = walk_ids(&p.mine, &notes(), &q("id starts_with \"d\"", "", 100)).await;
        assert_eq!(stored, strs(&["d1", "d2", "d3", "d4", "d6"]), "{model}");

        // A clean file: success.
        let file = write_file(
            dir.path(),
            &format!("{model}-3.ndjson"),
            "{\"id\":\"e1\",\"title\":\"x\"}\n",
        );
        let output = cli(&server, &token, &["record", "import", "notes", &file]);
        assert!(output.status.success(), "{model}: {}", output_text(&output));
    }
    assert_no_panic(&server);
}

#[tokio::test]
async fn cli_aggregate_prints_the_groups() {
    let (_dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    for p in &pairs {
        for (machine, at, temp) in SIGNALS {
            p.mine
                .create_record(&signals(), &signal(machine, at, temp))
                .await
                .unwrap();
            p.theirs
                .create_record(&signals(), &signal(Some("m9"), at, temp))
                .await
                .unwrap();
        }
    }
    let request = r#"{"filter": "at >= 2025-03-03T00:00:00Z", "group_by": ["machine"],
        "metrics": [{"op": "count"}, {"op": "avg", "field": "temp"}]}"#;
    for p in &pairs {
        let model = p.model;
        let token = key(&admin, &p.me, TenantRole::Viewer).await;
        let output = cli(
            &server,
            &token,
            &["record", "aggregate", "signals", request],
        );
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{model}: {}", output_text(&output));
        for wanted in [
            "machine", "count", "avg_temp", "m1", "m2", "m3", "24", "9.75", "7.5",
        ] {
            assert!(
                text.contains(wanted),
                "{model}: {wanted} missing in\n{text}"
            );
        }
        assert!(
            !text.contains("m9"),
            "{model}: the neighbour's machine in\n{text}"
        );
        let output = cli(
            &server,
            &token,
            &["record", "aggregate", "signals", request, "--json"],
        );
        assert!(output.status.success(), "{model}: {}", output_text(&output));
        let page: AggregatePage = serde_json::from_slice(&output.stdout).unwrap();
        let groups: Vec<Value> = page.groups.into_iter().map(Value::Object).collect();
        assert_eq!(
            groups,
            vec![
                json!({"machine": null, "count": 1, "avg_temp": 1.0}),
                json!({"machine": "m1", "count": 3, "avg_temp": 24.0}),
                json!({"machine": "m2", "count": 4, "avg_temp": 9.75}),
                json!({"machine": "m3", "count": 2, "avg_temp": 7.5}),
            ],
            "{model}"
        );
        // A bad aggregation: exit 1 and the server's message.
        let output = cli(
            &server,
            &token,
            &[
                "record",
                "aggregate",
                "signals",
                r#"{"metrics": [{"op": "sum", "field": "machine"}]}"#,
            ],
        );
        assert!(!output.status.success(), "{model}");
        let text = output_text(&output);
        assert!(text.contains("does not apply"), "{model}: {text}");
        assert!(!text.contains("panicked"), "{model}: {text}");
    }
    assert_no_panic(&server);
}

/// `bulkhead record aggregate` once printed groups with the record table: empty `id`,
/// `version` and `updated_at` columns, and it drops `next_cursor`, so when there are more
/// groups than one page (1000 by default) the rest are silently missing; `record list` says
/// "more results: repeat the command with --cursor ..." in the same situation.
#[tokio::test]
async fn cli_aggregate_shows_only_group_columns_and_says_when_groups_are_left_out() {
    let (_dir, server, admin) = start(&[]).await;
    let pairs = pairs(&server, &admin).await;
    let mut wrong = Vec::new();
    for p in &pairs {
        let model = p.model;
        // 1001 machines: one more than the server's default page of groups.
        let lines: Vec<String> = (0..1001)
            .map(|i| {
                json!({"machine": format!("m{i:04}"), "at": "2025-03-10T08:00:00Z"}).to_string()
            })
            .collect();
        let report = p.mine.bulk(&signals(), ndjson(&lines), true).await.unwrap();
        assert_eq!(report.created, 1001, "{model}");
        let token = key(&admin, &p.me, TenantRole::Viewer).await;
        let request = r#"{"group_by": ["machine"], "metrics": [{"op": "count"}]}"#;
        let output = cli(
            &server,
            &token,
            &["record", "aggregate", "signals", request],
        );
        assert!(output.status.success(), "{model}: {}", output_text(&output));
        let text = output_text(&output);
        let header = text
            .lines()
            .find(|l| l.contains("machine"))
            .unwrap_or_default()
            .to_owned();
        for column in ["id", "version", "updated_at"] {
            if header
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .any(|w| w == column)
            {
                wrong.push(format!(
                    "{model}: the group table has an empty '{column}' column: {header}"
                ));
            }
        }
        let all_shown = text.contains("m1000");
        let says_more = text.contains("--cursor") || text.contains("more");
        if !all_shown && !says_more {
            wrong.push(format!(
                "{model}: 1001 groups, the table stops at {} without saying more are left",
                text.lines().filter(|l| l.contains("m0")).count()
            ));
        }
        // An explicit page size: the rest must be reachable.
        let request = r#"{"group_by": ["machine"], "metrics": [{"op": "count"}], "limit": 2}"#;
        let output = cli(
            &server,
            &token,
            &["record", "aggregate", "signals", request],
        );
        let text = output_text(&output);
        if !text.contains("--cursor") && !text.contains("cursor") {
            wrong.push(format!(
                "{model}: limit 2 of 1001 groups, no cursor shown:\n{text}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_no_panic(&server);
}
