//! Guardrails (query budgets, size limits) and bad input.

use super::*;

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
