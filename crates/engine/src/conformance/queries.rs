//! Conformance for queries: filters against the reference semantics (`query::eval`), keyset
//! pages against an in-memory sort, full-text search, aggregations, bulk operations and query
//! budgets — on every isolation model, always next to a neighbour whose data would show up in
//! any leak.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use bulkhead_core::access::DataAction;
use bulkhead_core::model::Isolation;
use bulkhead_core::query::search::parse_search;
use bulkhead_core::query::sort::parse_sort;
use bulkhead_core::query::{self, eval};
use bulkhead_core::record::{FieldValue, Record};
use bulkhead_core::schema::Collection;
use bulkhead_core::time::Timestamp;
use serde_json::{Value, json};

use super::{MODELS, items_collection, new_record, provision, rid, scope};
use crate::{Engine, Hit, ListQuery};

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

pub(super) async fn seed(
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

pub(super) async fn all_records(
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
                    let ord = compare(
                        &eval::column_value(a, &key.column),
                        &eval::column_value(b, &key.column),
                    );
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
