//! Bulk NDJSON ingest.

use super::*;

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
