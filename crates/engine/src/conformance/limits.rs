//! Conformance for bulk operations (a failing operation fails alone) and query budgets.

use std::time::Duration;

use bulkhead_core::access::DataAction;
use bulkhead_core::query::aggregate::{self, AggregateRequest};
use bulkhead_core::query::search::parse_search;
use bulkhead_core::query::{self};
use bulkhead_core::record::FieldValue;
use serde_json::json;

use super::queries::{all_records, seed};
use super::{MODELS, items_collection, new_record, rid, scope};
use crate::{
    AggregateQuery, BudgetHit, BulkOp, BulkOutcome, Engine, EngineError, ListQuery, QueryBudget,
};

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
        // A batch of deletes only: each reported as op by op would, the neighbour untouched.
        let deletes = ["c", "missing", "c", "theirs"]
            .into_iter()
            .map(|id| BulkOp::Delete(rid(id)))
            .collect();
        let results = engine.bulk(&w, &c, deletes).await.expect("deletes");
        assert!(
            matches!(&results[..], [
                Ok(BulkOutcome::Deleted(first)),
                Err(EngineError::NotFound),
                Err(EngineError::NotFound),
                Err(EngineError::NotFound),
            ] if first.as_str() == "c"),
            "{isolation}: {results:?}"
        );
        let own = all_records(engine, &t, isolation, &c).await;
        let ids: Vec<&str> = own.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, vec!["a"], "{isolation}");
        assert!(
            engine
                .get(&rn, &c, &rid("theirs"))
                .await
                .expect("get")
                .is_some(),
            "{isolation}: a delete batch leaves the neighbour's record"
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
            examined: Default::default(),
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
            examined: Default::default(),
        })
        .await;
        assert!(
            matches!(time, Err(EngineError::TooExpensive(BudgetHit::Time(_)))),
            "{isolation}: {time:?}"
        );
        let fine = run(QueryBudget {
            time: Duration::from_secs(30),
            rows_examined: 1_000,
            examined: Default::default(),
        })
        .await;
        assert!(
            matches!(&fine, Ok(v) if v.is_empty()),
            "{isolation}: {fine:?}"
        );
        // An indexed lookup examines only its matches, so a small budget suffices.
        let examined = crate::Examined::counting();
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
                        examined: examined.clone(),
                    },
                    ..Default::default()
                },
            )
            .await;
        assert!(
            matches!(&few, Ok(v) if !v.is_empty()),
            "{isolation}: {few:?}"
        );
        let found = few.as_ref().map_or(0, Vec::len) as u64;
        assert!(
            (found..=80).contains(&examined.get()),
            "{isolation}: an indexed lookup of {found} examined {}",
            examined.get()
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
                        examined: Default::default(),
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
        for budget in [
            QueryBudget {
                examined: crate::Examined::counting(),
                ..QueryBudget::default()
            },
            // The server's own exact counts: no per-row meter, and exactly as correct.
            QueryBudget::unmetered(Duration::from_secs(30)),
        ] {
            let agg = engine
                .aggregate(
                    &r,
                    &c,
                    &AggregateQuery {
                        plan: plan.clone(),
                        after: None,
                        limit: 1,
                        budget: budget.clone(),
                    },
                )
                .await
                .expect("agg");
            assert_eq!(
                agg[0].metrics[0],
                Some(FieldValue::Integer(400)),
                "{isolation} {budget:?}"
            );
            if budget.counts_rows() {
                // The engine reports what it examined (metering): every one of the 400.
                let examined = budget.examined.get();
                assert!(
                    (400..=800).contains(&examined),
                    "{isolation}: examined {examined}"
                );
            }
        }
        // Unmetered still means the tenant's rows only, and the time limit still holds.
        let filtered = engine
            .list(
                &r,
                &c,
                &ListQuery {
                    filter: filter.clone(),
                    limit: 1000,
                    budget: QueryBudget::unmetered(Duration::from_secs(30)),
                    ..Default::default()
                },
            )
            .await
            .expect("unmetered list");
        assert!(filtered.is_empty(), "{isolation}: {filtered:?}");
        let late = run(QueryBudget::unmetered(Duration::ZERO)).await;
        assert!(
            matches!(late, Err(EngineError::TooExpensive(BudgetHit::Time(_)))),
            "{isolation}: {late:?}"
        );
    }
}

/// `BulkOp::Retire` removes a record only at the version given: one written since stays, as
/// does a neighbour's record under the same id; the others in the call still go.
pub async fn retire_removes_only_the_version_read(engine: &dyn Engine) {
    for isolation in MODELS {
        let c = items_collection();
        let t = super::provision(engine, "ret", isolation, &c).await;
        let neighbour = super::provision(engine, "retn", isolation, &c).await;
        let w = scope(&t, isolation, DataAction::Write);
        let wn = scope(&neighbour, isolation, DataAction::Write);
        for (s, id) in [(&w, "a"), (&w, "b"), (&w, "c"), (&wn, "a")] {
            engine
                .insert(s, &c, vec![new_record(&c, json!({"id": id, "title": "t"}))])
                .await
                .expect("insert");
        }
        let changed = crate::RecordChange::Patch(
            [(
                bulkhead_core::FieldName::parse("title").expect("f"),
                Some(FieldValue::Text("newer".into())),
            )]
            .into_iter()
            .collect(),
        );
        engine
            .update(&w, &c, &rid("b"), changed, None)
            .await
            .expect("update");
        let results = engine
            .bulk(
                &w,
                &c,
                vec![
                    BulkOp::Retire {
                        id: rid("a"),
                        version: 1,
                    },
                    BulkOp::Retire {
                        id: rid("b"),
                        version: 1,
                    },
                    BulkOp::Retire {
                        id: rid("missing"),
                        version: 1,
                    },
                    BulkOp::Retire {
                        id: rid("c"),
                        version: 1,
                    },
                ],
            )
            .await
            .expect("bulk");
        assert!(
            matches!(&results[0], Ok(BulkOutcome::Deleted(id)) if id.as_str() == "a"),
            "{isolation}: {:?}",
            results[0]
        );
        assert!(
            matches!(results[1], Err(EngineError::VersionMismatch { current: 2 })),
            "{isolation}: {:?}",
            results[1]
        );
        assert!(
            matches!(results[2], Err(EngineError::NotFound)),
            "{isolation}"
        );
        assert!(
            matches!(results[3], Ok(BulkOutcome::Deleted(_))),
            "{isolation}"
        );
        let own = all_records(engine, &t, isolation, &c).await;
        assert_eq!(
            own.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            vec!["b"],
            "{isolation}: the record written since stays"
        );
        let rn = scope(&neighbour, isolation, DataAction::Read);
        assert!(
            engine.get(&rn, &c, &rid("a")).await.expect("get").is_some(),
            "{isolation}: the neighbour's record under the same id stays"
        );
    }
}
