//! Aggregations.

use super::*;

// ----- 4. aggregations -----------------------------------------------------------------------

/// machine, at, temp. Offsets and the last microsecond of an hour are on purpose.
pub(super) const SIGNALS: [(Option<&str>, &str, Option<f64>); 11] = [
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

pub(super) fn signal(machine: Option<&str>, at: &str, temp: Option<f64>) -> Value {
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
