//! Conformance for aggregations: groups, buckets and metrics against an in-memory reference.

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_core::access::DataAction;
use bulkhead_core::model::Isolation;
use bulkhead_core::query::aggregate::{self, AggregateRequest};
use bulkhead_core::query::{self, eval};
use bulkhead_core::record::{FieldValue, Record};
use bulkhead_core::time::Timestamp;
use serde_json::json;

use super::queries::{all_records, seed};
use super::{MODELS, items_collection, new_record, scope};
use crate::{AggregateQuery, Engine, QueryBudget};

/// Aggregations group, bucket and compute metrics exactly as the reference does.
pub async fn aggregations_match_the_reference(engine: &dyn Engine) {
    for isolation in MODELS {
        let (t, c) = seed(engine, "agg", isolation, 60).await;
        let own = all_records(engine, &t, isolation, &c).await;
        let r = scope(&t, isolation, DataAction::Read);
        let request: AggregateRequest = serde_json::from_value(json!({
            "group_by": ["done"],
            "bucket": {"field": "due", "interval": "day"},
            "metrics": [{"op": "count"}, {"op": "sum", "field": "n"}, {"op": "avg", "field": "score"},
                        {"op": "min", "field": "sku"}, {"op": "max", "field": "due"},
                        {"op": "count_distinct", "field": "n"}]
        }))
        .expect("request");
        let filter = query::filter("n != 6", &c).expect("filter");
        let plan = aggregate::check(&request, filter.clone(), &c).expect("plan");
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let page = engine
                .aggregate(
                    &r,
                    &c,
                    &AggregateQuery {
                        plan: plan.clone(),
                        after: after.clone(),
                        limit: 4,
                        budget: QueryBudget::default(),
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("{isolation}: {e}"));
            if page.is_empty() {
                break;
            }
            after = page.last().map(|g| g.key.clone());
            pages.extend(page);
        }
        // The reference: group in memory.
        let day = 86_400_000_000i64;
        let mut groups: BTreeMap<(Option<bool>, Option<i64>), Vec<&Record>> = BTreeMap::new();
        for rec in own
            .iter()
            .filter(|rec| eval::matches(filter.as_ref().expect("f"), rec))
        {
            let done = match rec
                .fields
                .get(&bulkhead_core::FieldName::parse("done").expect("f"))
            {
                Some(FieldValue::Boolean(b)) => Some(*b),
                _ => None,
            };
            let due = match rec
                .fields
                .get(&bulkhead_core::FieldName::parse("due").expect("f"))
            {
                Some(FieldValue::Timestamp(t)) => Some(t.as_micros().div_euclid(day) * day),
                _ => None,
            };
            groups.entry((done, due)).or_default().push(rec);
        }
        assert_eq!(pages.len(), groups.len(), "{isolation}: group count");
        for (row, ((done, due), recs)) in pages.iter().zip(&groups) {
            assert_eq!(row.key[0], done.map(FieldValue::Boolean), "{isolation}");
            assert_eq!(
                row.key[1],
                due.map(|d| FieldValue::Timestamp(Timestamp::from_micros(d))),
                "{isolation}"
            );
            assert_eq!(
                row.metrics[0],
                Some(FieldValue::Integer(recs.len() as i64)),
                "{isolation}: count"
            );
            let field = |r: &Record, f: &str| {
                r.fields
                    .get(&bulkhead_core::FieldName::parse(f).expect("f"))
                    .cloned()
            };
            let ns: Vec<i64> = recs
                .iter()
                .filter_map(|r| match field(r, "n") {
                    Some(FieldValue::Integer(n)) => Some(n),
                    _ => None,
                })
                .collect();
            let sum = if ns.is_empty() {
                None
            } else {
                Some(FieldValue::Integer(ns.iter().sum()))
            };
            assert_eq!(row.metrics[1], sum, "{isolation}: sum");
            let scores: Vec<f64> = recs
                .iter()
                .filter_map(|r| match field(r, "score") {
                    Some(FieldValue::Float(s)) => Some(s),
                    _ => None,
                })
                .collect();
            match (&row.metrics[2], scores.is_empty()) {
                (None, true) => {}
                (Some(FieldValue::Float(avg)), false) => {
                    let want = scores.iter().sum::<f64>() / scores.len() as f64;
                    assert!(
                        (avg - want).abs() < 1e-9,
                        "{isolation}: avg {avg} vs {want}"
                    );
                }
                (got, _) => panic!("{isolation}: avg {got:?} for {scores:?}"),
            }
            let min_sku = recs
                .iter()
                .filter_map(|r| match field(r, "sku") {
                    Some(FieldValue::Text(s)) => Some(s),
                    _ => None,
                })
                .min();
            assert_eq!(
                row.metrics[3],
                min_sku.map(FieldValue::Text),
                "{isolation}: min"
            );
            let max_due = recs
                .iter()
                .filter_map(|r| match field(r, "due") {
                    Some(FieldValue::Timestamp(t)) => Some(t),
                    _ => None,
                })
                .max();
            assert_eq!(
                row.metrics[4],
                max_due.map(FieldValue::Timestamp),
                "{isolation}: max"
            );
            let distinct: BTreeSet<i64> = ns.iter().copied().collect();
            assert_eq!(
                row.metrics[5],
                Some(FieldValue::Integer(distinct.len() as i64)),
                "{isolation}: count_distinct"
            );
        }
        // Without groups: one row over everything, even when nothing matches.
        let empty: AggregateRequest = serde_json::from_value(
            json!({"metrics": [{"op": "count"}, {"op": "max", "field": "n"}]}),
        )
        .expect("r");
        let none = query::filter("n > 1000", &c).expect("f");
        let plan = aggregate::check(&empty, none, &c).expect("plan");
        let rows = engine
            .aggregate(
                &r,
                &c,
                &AggregateQuery {
                    plan,
                    after: None,
                    limit: 10,
                    budget: QueryBudget::default(),
                },
            )
            .await
            .expect("aggregate");
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].metrics,
            vec![Some(FieldValue::Integer(0)), None],
            "{isolation}: neighbours' n > 100 are not counted"
        );
    }
}

/// Month and week buckets follow the calendar (UTC, weeks from Monday), also before 1970.
pub async fn calendar_buckets(engine: &dyn Engine) {
    let c = items_collection();
    let t = super::provision(engine, "cal", Isolation::Silo, &c).await;
    let w = scope(&t, Isolation::Silo, DataAction::Write);
    let stamps = [
        "1969-12-31T23:59:59.5Z",
        "2024-02-29T12:00:00Z",
        "2024-03-03T23:00:00Z",
        "2024-03-04T00:00:00Z",
    ];
    let records = stamps
        .iter()
        .enumerate()
        .map(|(i, s)| new_record(&c, json!({"id": format!("c{i}"), "title": "t", "due": s})))
        .collect();
    engine.insert(&w, &c, records).await.expect("insert");
    let r = scope(&t, Isolation::Silo, DataAction::Read);
    for (interval, want) in [
        (
            "month",
            vec![
                "1969-12-01T00:00:00.000000Z",
                "2024-02-01T00:00:00.000000Z",
                "2024-03-01T00:00:00.000000Z",
            ],
        ),
        (
            "week",
            vec![
                "1969-12-29T00:00:00.000000Z",
                "2024-02-26T00:00:00.000000Z",
                "2024-03-04T00:00:00.000000Z",
            ],
        ),
        (
            "hour",
            vec![
                "1969-12-31T23:00:00.000000Z",
                "2024-02-29T12:00:00.000000Z",
                "2024-03-03T23:00:00.000000Z",
                "2024-03-04T00:00:00.000000Z",
            ],
        ),
    ] {
        let request: AggregateRequest = serde_json::from_value(
            json!({"bucket": {"field": "due", "interval": interval}, "metrics": [{"op": "count"}]}),
        )
        .expect("r");
        let plan = aggregate::check(&request, None, &c).expect("plan");
        let rows = engine
            .aggregate(
                &r,
                &c,
                &AggregateQuery {
                    plan,
                    after: None,
                    limit: 10,
                    budget: QueryBudget::default(),
                },
            )
            .await
            .expect("agg");
        let got: Vec<String> = rows
            .iter()
            .filter_map(|g| match &g.key[0] {
                Some(FieldValue::Timestamp(t)) => Some(t.to_rfc3339()),
                _ => None,
            })
            .collect();
        assert_eq!(got, want, "{interval}");
    }
}
