//! Filters, sorting, projection and cursors.

use super::*;

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
/// A cursor written by hand for the life `life` (the tenant's storage key: a cursor is bound
/// to its tenant's life).
fn forged(life: &str, filter: &str, sort: &str, body: Value) -> String {
    let binding = bulkhead_core::keys::hash_secret(&format!(
        "{life}\u{0}notes\u{0}list\u{0}{filter}\u{0}{sort}\u{0}"
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
        let placement = admin
            .get_tenant(&bulkhead_core::TenantId::parse(&p.me).unwrap())
            .await
            .unwrap()
            .placement;
        let life = bulkhead_core::StorageKey::of(
            &bulkhead_core::TenantId::parse(&p.me).unwrap(),
            &placement.incarnation,
        )
        .to_string();
        let fitting = forged(&life, filter, sort, json!({"v": [5], "id": "r03"}));
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
            let forged = forged(&life, filter, sort, body.clone());
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
