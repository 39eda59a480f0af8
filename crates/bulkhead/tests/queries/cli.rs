//! The CLI: import and aggregate.

use super::*;
use crate::aggregations::{SIGNALS, signal};

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
