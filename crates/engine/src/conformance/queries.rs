//! Conformance for queries: filters against the reference semantics (`query::eval`), keyset
//! pages against an in-memory sort, full-text search, aggregations, bulk operations and query
//! budgets — on every isolation model, always next to a neighbour whose data would show up in
//! any leak.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bulkhead_core::access::DataAction;
use bulkhead_core::model::Isolation;
use bulkhead_core::query::aggregate::{self, AggregateRequest};
use bulkhead_core::query::search::parse_search;
use bulkhead_core::query::sort::parse_sort;
use bulkhead_core::query::{self, Column, SystemField, eval};
use bulkhead_core::record::{FieldValue, Record};
use bulkhead_core::schema::Collection;
use bulkhead_core::time::Timestamp;
use serde_json::{Value, json};

use super::{MODELS, items_collection, new_record, provision, rid, scope};
use crate::{
    AggregateQuery, BudgetHit, BulkOp, BulkOutcome, Engine, EngineError, Hit, ListQuery,
    QueryBudget,
};

/// A deterministic, varied record `i` for `tenant_shift` (0 for the tenant under test, 1 for
/// its neighbour, whose values differ so a leak is visible).
fn varied(i: usize, shift: usize) -> Value {
    let words = ["alpha", "beta", "gamma", "delta", "Alpha", "epsilon"];
    let mut record = json!({
        "id": format!("r{i:03}"),
        "title": format!("{} {} {}", words[i % 6], words[(i * 7 + shift) % 6], if shift == 0 { "own" } else { "other" }),
    });
    let o = record.as_object_mut().expect("object");
    if !i.is_multiple_of(4) {
        o.insert("sku".into(), json!(format!("s{i}-{shift}")));
    }
    if !i.is_multiple_of(5) {
        o.insert("n".into(), json!((i % 7 + shift * 100) as i64));
    }
    if !i.is_multiple_of(6) {
        o.insert("score".into(), json!(((i * 37) % 100) as f64 / 100.0));
    }
    if i % 3 != 2 {
        o.insert("done".into(), json!(i.is_multiple_of(3)));
    }
    if i % 4 != 1 {
        let t = Timestamp::from_micros(
            1_767_225_600_000_000 + (i as i64 % 10) * 86_400_000_000 + i as i64 * 3_600_000_000,
        );
        o.insert("due".into(), json!(t.to_rfc3339()));
    }
    let colors = ["red", "blue", "black", "green"];
    let meta = match i % 5 {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(json!({"color": colors[(i + shift) % 4], "size": "7", "tags": ["y"]})),
        _ => Some(json!({
            "color": if shift == 0 { colors[i % 4] } else { "red" },
            "size": i % 5,
            "tags": ["x", 3, i.is_multiple_of(2)],
            "flag": i.is_multiple_of(2),
            "nested": {"deep": if i.is_multiple_of(2) { "y" } else { "z" }}
        })),
    };
    if let Some(meta) = meta {
        o.insert("meta".into(), meta);
    }
    record
}

async fn seed(
    engine: &dyn Engine,
    prefix: &str,
    isolation: Isolation,
    count: usize,
) -> (bulkhead_core::TenantId, Collection) {
    let c = items_collection();
    let t = provision(engine, prefix, isolation, &c).await;
    let neighbour = provision(engine, &format!("{prefix}n"), isolation, &c).await;
    for (tenant, shift) in [(&t, 0), (&neighbour, 1)] {
        let w = scope(tenant, isolation, DataAction::Write);
        let records = (0..count)
            .map(|i| new_record(&c, varied(i, shift)))
            .collect();
        engine.insert(&w, &c, records).await.expect("seed");
    }
    (t, c)
}

async fn all_records(
    engine: &dyn Engine,
    t: &bulkhead_core::TenantId,
    isolation: Isolation,
    c: &Collection,
) -> Vec<Record> {
    let r = scope(t, isolation, DataAction::Read);
    let hits = engine
        .list(
            &r,
            c,
            &ListQuery {
                limit: 10_000,
                ..Default::default()
            },
        )
        .await
        .expect("list all");
    hits.into_iter().map(|h| h.record).collect()
}

const FILTERS: &[&str] = &[
    "n = 3",
    "n != 3",
    "n > 5",
    "n >= 5 && n < 8",
    "n in [1, 2, 3]",
    "!(n > 5)",
    "n = null",
    "n != null",
    "n exists",
    "score > 0.5",
    "score <= 0.25 || n = 1",
    "done = true",
    "done != true",
    "title contains \"lph\"",
    "title starts_with \"Al\"",
    "sku starts_with \"s1\"",
    "sku > \"s3\"",
    "due > 2026-01-05T00:00:00Z",
    "due <= \"2026-01-03T00:00:00Z\"",
    "meta.color = \"red\"",
    "meta.color != \"red\"",
    "meta.color in [\"red\", \"blue\"]",
    "meta.size > 2",
    "meta.size = \"7\"",
    "meta.tags contains \"x\"",
    "meta.tags contains 3",
    "meta.tags contains true",
    "meta.flag = true",
    "meta.flag != true",
    "meta.nested.deep = \"y\"",
    "meta.tags[0] = \"x\"",
    "meta.color exists",
    "!(meta.color exists)",
    "meta exists",
    "meta.color starts_with \"bl\"",
    "meta.color contains \"ee\"",
    "(n > 2 || done = true) && !(meta.color = \"red\")",
    "id in [\"r001\", \"r005\", \"r999\"]",
    "version = 1",
    "created_at > 2000-01-01T00:00:00Z",
];

/// Every filter returns exactly the tenant's records the reference semantics select.
pub async fn filters_match_the_reference_semantics(engine: &dyn Engine) {
    for isolation in MODELS {
        let (t, c) = seed(engine, "flt", isolation, 60).await;
        let own = all_records(engine, &t, isolation, &c).await;
        assert_eq!(own.len(), 60, "{isolation}");
        let r = scope(&t, isolation, DataAction::Read);
        for text in FILTERS {
            let predicate = query::filter(text, &c)
                .unwrap_or_else(|e| panic!("{text}: {}", e.message))
                .expect("non-empty");
            let expected: BTreeSet<String> = own
                .iter()
                .filter(|rec| eval::matches(&predicate, rec))
                .map(|rec| rec.id.as_str().to_owned())
                .collect();
            let got: BTreeSet<String> = engine
                .list(
                    &r,
                    &c,
                    &ListQuery {
                        filter: Some(predicate),
                        limit: 1000,
                        ..Default::default()
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("{isolation} {text}: {e}"))
                .into_iter()
                .map(|h| h.record.id.as_str().to_owned())
                .collect();
            assert_eq!(got, expected, "{isolation}: {text}");
        }
    }
}

fn sort_value(record: &Record, column: &Column) -> Option<FieldValue> {
    match column {
        Column::System(SystemField::Id) => Some(FieldValue::Text(record.id.as_str().to_owned())),
        Column::System(SystemField::CreatedAt) => Some(FieldValue::Timestamp(record.created_at)),
        Column::System(SystemField::UpdatedAt) => Some(FieldValue::Timestamp(record.updated_at)),
        Column::System(SystemField::Version) => Some(FieldValue::Integer(record.version)),
        Column::Field { name, .. } => record.fields.get(name).cloned(),
    }
}

/// Missing values lowest; values of one column compare by their type.
fn compare(a: &Option<FieldValue>, b: &Option<FieldValue>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => match (a, b) {
            (FieldValue::Integer(x), FieldValue::Integer(y)) => x.cmp(y),
            (FieldValue::Float(x), FieldValue::Float(y)) => x.total_cmp(y),
            (FieldValue::Text(x), FieldValue::Text(y)) => x.cmp(y),
            (FieldValue::Boolean(x), FieldValue::Boolean(y)) => x.cmp(y),
            (FieldValue::Timestamp(x), FieldValue::Timestamp(y)) => x.cmp(y),
            _ => Ordering::Equal,
        },
    }
}

/// Keyset pages in any sort order visit every record exactly once, in the reference order.
pub async fn sorted_pages_visit_every_record_once(engine: &dyn Engine) {
    for isolation in MODELS {
        let (t, c) = seed(engine, "srt", isolation, 45).await;
        let own = all_records(engine, &t, isolation, &c).await;
        let r = scope(&t, isolation, DataAction::Read);
        for text in [
            "-n",
            "score,-due",
            "done,sku",
            "-created_at",
            "sku",
            "-done,-n,score",
            "id",
        ] {
            let sort = parse_sort(text, &c).unwrap_or_else(|e| panic!("{text}: {}", e.message));
            let filter = query::filter("n != 4", &c).expect("filter");
            let mut expected: Vec<&Record> = own
                .iter()
                .filter(|rec| eval::matches(filter.as_ref().expect("some"), rec))
                .collect();
            let tie_desc = sort.last().is_some_and(|k| k.descending);
            expected.sort_by(|a, b| {
                for key in &sort {
                    let ord = compare(&sort_value(a, &key.column), &sort_value(b, &key.column));
                    let ord = if key.descending { ord.reverse() } else { ord };
                    if ord != Ordering::Equal {
                        return ord;
                    }
                }
                let ord = a.id.as_str().cmp(b.id.as_str());
                if tie_desc { ord.reverse() } else { ord }
            });
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let page: Vec<Hit> = engine
                    .list(
                        &r,
                        &c,
                        &ListQuery {
                            filter: filter.clone(),
                            sort: sort.clone(),
                            after: after.clone(),
                            limit: 7,
                            fields: Some(vec![]),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{isolation} {text}: {e}"));
                if page.is_empty() {
                    break;
                }
                assert!(
                    page.iter().all(|h| h.record.fields.is_empty()),
                    "projection to no fields"
                );
                after = page.last().map(Hit::keyset);
                seen.extend(page.into_iter().map(|h| h.record.id.as_str().to_owned()));
                assert!(
                    seen.len() <= expected.len(),
                    "{isolation} {text}: pages never end"
                );
            }
            let expected: Vec<String> = expected.iter().map(|r| r.id.as_str().to_owned()).collect();
            assert_eq!(seen, expected, "{isolation}: sort {text}");
        }
    }
}

/// Full-text search finds words, phrases and prefixes, ranks by relevance, combines with
/// filters and pages — and never returns a neighbour's record, even with identical words.
pub async fn search_ranks_within_the_tenant(engine: &dyn Engine) {
    for isolation in MODELS {
        let c = items_collection();
        let t = super::provision(engine, "fts", isolation, &c).await;
        let neighbour = super::provision(engine, "ftsn", isolation, &c).await;
        let docs = [
            ("d1", "The quick brown fox", 1),
            ("d2", "quick quick quick thinking", 2),
            ("d3", "A lazy dog, not quick", 3),
            ("d4", "Café crème for the brown bear", 4),
            ("d5", "Nothing to see here", 5),
        ];
        for (tenant, tag) in [(&t, "own"), (&neighbour, "other")] {
            let w = scope(tenant, isolation, DataAction::Write);
            let records = docs
                .iter()
                .map(|(id, text, n)| {
                    new_record(
                        &c,
                        json!({"id": id, "title": format!("{text} {tag}"), "n": n}),
                    )
                })
                .collect();
            engine.insert(&w, &c, records).await.expect("insert");
        }
        let r = scope(&t, isolation, DataAction::Read);
        let search = |q: &str, filter: Option<&str>| {
            let (q, filter) = (q.to_owned(), filter.map(str::to_owned));
            let (r, c) = (r.clone(), c.clone());
            async move {
                engine
                    .list(
                        &r,
                        &c,
                        &ListQuery {
                            search: Some(parse_search(&q).expect("search")),
                            filter: filter.and_then(|f| query::filter(&f, &c).expect("filter")),
                            limit: 100,
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("search")
                    .into_iter()
                    .map(|h| {
                        (
                            h.record.id.as_str().to_owned(),
                            h.record
                                .fields
                                .get(&bulkhead_core::FieldName::parse("title").expect("f"))
                                .cloned(),
                            h.score,
                        )
                    })
                    .collect::<Vec<_>>()
            }
        };
        let quick = search("quick", None).await;
        let ids: Vec<&str> = quick.iter().map(|(id, _, _)| id.as_str()).collect();
        assert_eq!(ids.len(), 3, "{isolation}: {quick:?}");
        assert_eq!(ids[0], "d2", "{isolation}: most occurrences rank first");
        assert!(
            quick.iter().all(
                |(_, title, _)| matches!(title, Some(FieldValue::Text(t)) if t.ends_with("own"))
            ),
            "{isolation}: only own records"
        );
        assert!(
            quick.windows(2).all(|w| w[0].2 >= w[1].2),
            "{isolation}: scores descend"
        );
        let ids = |v: Vec<(String, Option<FieldValue>, Option<f64>)>| {
            v.into_iter().map(|x| x.0).collect::<BTreeSet<_>>()
        };
        assert_eq!(
            ids(search("\"brown fox\"", None).await),
            BTreeSet::from(["d1".to_owned()]),
            "{isolation}: phrase"
        );
        assert_eq!(
            ids(search("qui*", None).await).len(),
            3,
            "{isolation}: prefix"
        );
        assert_eq!(
            ids(search("cafe", None).await),
            BTreeSet::from(["d4".to_owned()]),
            "{isolation}: diacritics fold"
        );
        assert_eq!(
            ids(search("quick brown", None).await),
            BTreeSet::from(["d1".to_owned()]),
            "{isolation}: all terms"
        );
        assert_eq!(
            ids(search("quick", Some("n >= 2")).await),
            BTreeSet::from(["d2".to_owned(), "d3".to_owned()]),
            "{isolation}: with a filter"
        );
        assert!(
            search("own", None).await.len() == 5 && search("other", None).await.is_empty(),
            "{isolation}: the neighbour's words are not ours"
        );
        // Pages by relevance.
        let mut after = None;
        let mut seen = Vec::new();
        loop {
            let page = engine
                .list(
                    &r,
                    &c,
                    &ListQuery {
                        search: Some(parse_search("quick").expect("q")),
                        after: after.clone(),
                        limit: 2,
                        ..Default::default()
                    },
                )
                .await
                .expect("page");
            if page.is_empty() {
                break;
            }
            after = page.last().map(Hit::keyset);
            seen.extend(page.into_iter().map(|h| h.record.id.as_str().to_owned()));
        }
        assert_eq!(
            seen,
            quick.iter().map(|x| x.0.clone()).collect::<Vec<_>>(),
            "{isolation}: paging by score"
        );
        // Updates and deletes keep the index in step.
        let w = scope(&t, isolation, DataAction::Write);
        engine
            .update(
                &w,
                &c,
                &rid("d5"),
                bulkhead_core::record::RecordChange::Patch(BTreeMap::from([(
                    bulkhead_core::FieldName::parse("title").expect("f"),
                    Some(FieldValue::Text("quick now".into())),
                )])),
                None,
            )
            .await
            .expect("update");
        engine
            .delete(&w, &c, &rid("d1"), None)
            .await
            .expect("delete");
        let after_writes = ids(search("quick", None).await);
        assert_eq!(
            after_writes,
            BTreeSet::from(["d2".to_owned(), "d3".to_owned(), "d5".to_owned()]),
            "{isolation}"
        );
        assert!(
            ids(search("nothing", None).await).is_empty(),
            "{isolation}: old text is gone"
        );
    }
}

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

/// A bulk call applies what it can: a failing operation fails alone.
pub async fn bulk_operations_fail_alone(engine: &dyn Engine) {
    for isolation in MODELS {
        let c = items_collection();
        let t = super::provision(engine, "blk", isolation, &c).await;
        let neighbour = super::provision(engine, "blkn", isolation, &c).await;
        let wn = scope(&neighbour, isolation, DataAction::Write);
        engine
            .insert(
                &wn,
                &c,
                vec![new_record(
                    &c,
                    json!({"id": "theirs", "title": "neighbour quick"}),
                )],
            )
            .await
            .expect("neighbour");
        let w = scope(&t, isolation, DataAction::Write);
        let ops = vec![
            BulkOp::Create(new_record(
                &c,
                json!({"id": "a", "title": "quick one", "sku": "s1"}),
            )),
            BulkOp::Create(new_record(&c, json!({"id": "a", "title": "duplicate"}))),
            BulkOp::Create(new_record(
                &c,
                json!({"id": "b", "title": "same sku", "sku": "s1"}),
            )),
            BulkOp::Upsert(new_record(
                &c,
                json!({"id": "a", "title": "quick replaced", "n": 2}),
            )),
            BulkOp::Upsert(new_record(&c, json!({"id": "c", "title": "upserted"}))),
            BulkOp::Delete(rid("missing")),
            BulkOp::Delete(rid("theirs")),
            BulkOp::Create(new_record(&c, json!({"id": "d", "title": "doomed"}))),
            BulkOp::Delete(rid("d")),
        ];
        let results = engine.bulk(&w, &c, ops).await.expect("bulk");
        assert!(
            matches!(&results[0], Ok(BulkOutcome::Created(r)) if r.version == 1),
            "{isolation}"
        );
        assert!(
            matches!(results[1], Err(EngineError::DuplicateId)),
            "{isolation}: {:?}",
            results[1]
        );
        assert!(
            matches!(results[2], Err(EngineError::UniqueViolation(_))),
            "{isolation}: {:?}",
            results[2]
        );
        assert!(
            matches!(&results[3], Ok(BulkOutcome::Updated(r)) if r.version == 2 && !r.fields.contains_key(&bulkhead_core::FieldName::parse("sku").expect("f"))),
            "{isolation}: upsert replaces"
        );
        assert!(
            matches!(&results[4], Ok(BulkOutcome::Created(_))),
            "{isolation}"
        );
        assert!(
            matches!(results[5], Err(EngineError::NotFound)),
            "{isolation}"
        );
        assert!(
            matches!(results[6], Err(EngineError::NotFound)),
            "{isolation}: a neighbour's id is not ours"
        );
        assert!(
            matches!(results[7], Ok(BulkOutcome::Created(_))),
            "{isolation}"
        );
        assert!(
            matches!(results[8], Ok(BulkOutcome::Deleted(_))),
            "{isolation}"
        );
        let own = all_records(engine, &t, isolation, &c).await;
        let ids: Vec<&str> = own.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, vec!["a", "c"], "{isolation}");
        let rn = scope(&neighbour, isolation, DataAction::Read);
        assert!(
            engine
                .get(&rn, &c, &rid("theirs"))
                .await
                .expect("get")
                .is_some(),
            "{isolation}"
        );
        // The search index followed the upsert.
        let r = scope(&t, isolation, DataAction::Read);
        let hits = engine
            .list(
                &r,
                &c,
                &ListQuery {
                    search: Some(parse_search("quick").expect("q")),
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .expect("search");
        assert_eq!(
            hits.iter()
                .map(|h| h.record.id.as_str())
                .collect::<Vec<_>>(),
            vec!["a"],
            "{isolation}"
        );
        let read_only = scope(&t, isolation, DataAction::Read);
        assert!(matches!(
            engine
                .bulk(&read_only, &c, vec![BulkOp::Delete(rid("a"))])
                .await,
            Err(EngineError::ReadOnlyScope)
        ));
    }
}

/// A query over its budget stops with the limit that was hit; within budget it runs.
pub async fn budgets_stop_expensive_queries(engine: &dyn Engine) {
    for isolation in MODELS {
        let (t, c) = seed(engine, "bdg", isolation, 400).await;
        let r = scope(&t, isolation, DataAction::Read);
        // `score` has no index: the engine must look at every row of the tenant.
        let filter = query::filter("score > 2", &c).expect("f");
        let run = |budget: QueryBudget| {
            let (r, c, filter) = (r.clone(), c.clone(), filter.clone());
            async move {
                engine
                    .list(
                        &r,
                        &c,
                        &ListQuery {
                            filter,
                            limit: 10,
                            budget,
                            ..Default::default()
                        },
                    )
                    .await
            }
        };
        let rows = run(QueryBudget {
            time: Duration::from_secs(30),
            rows_examined: 100,
        })
        .await;
        assert!(
            matches!(
                rows,
                Err(EngineError::TooExpensive(BudgetHit::RowsExamined(100)))
            ),
            "{isolation}: {rows:?}"
        );
        let time = run(QueryBudget {
            time: Duration::ZERO,
            rows_examined: 1_000_000,
        })
        .await;
        assert!(
            matches!(time, Err(EngineError::TooExpensive(BudgetHit::Time(_)))),
            "{isolation}: {time:?}"
        );
        let fine = run(QueryBudget {
            time: Duration::from_secs(30),
            rows_examined: 1_000,
        })
        .await;
        assert!(
            matches!(&fine, Ok(v) if v.is_empty()),
            "{isolation}: {fine:?}"
        );
        // An indexed lookup examines only its matches, so a small budget suffices.
        let indexed = query::filter("n = 3", &c).expect("f");
        let few = engine
            .list(
                &r,
                &c,
                &ListQuery {
                    filter: indexed,
                    limit: 100,
                    budget: QueryBudget {
                        time: Duration::from_secs(30),
                        rows_examined: 80,
                    },
                    ..Default::default()
                },
            )
            .await;
        assert!(
            matches!(&few, Ok(v) if !v.is_empty()),
            "{isolation}: {few:?}"
        );
        // Aggregations are budgeted too, and the connection is usable afterwards.
        let request: AggregateRequest =
            serde_json::from_value(json!({"metrics": [{"op": "count"}]})).expect("r");
        let plan = aggregate::check(&request, None, &c).expect("plan");
        let agg = engine
            .aggregate(
                &r,
                &c,
                &AggregateQuery {
                    plan: plan.clone(),
                    after: None,
                    limit: 1,
                    budget: QueryBudget {
                        time: Duration::from_secs(30),
                        rows_examined: 50,
                    },
                },
            )
            .await;
        assert!(
            matches!(
                agg,
                Err(EngineError::TooExpensive(BudgetHit::RowsExamined(50)))
            ),
            "{isolation}: {agg:?}"
        );
        let agg = engine
            .aggregate(
                &r,
                &c,
                &AggregateQuery {
                    plan,
                    after: None,
                    limit: 1,
                    budget: QueryBudget::default(),
                },
            )
            .await
            .expect("agg");
        assert_eq!(
            agg[0].metrics[0],
            Some(FieldValue::Integer(400)),
            "{isolation}"
        );
    }
}
