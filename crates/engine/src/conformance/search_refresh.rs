//! A text field added to a collection with records: every existing row becomes searchable by
//! its default, however many rows the table holds, and a neighbour's rows stay its own.

use bulkhead_core::FieldName;
use bulkhead_core::access::DataAction;
use bulkhead_core::query::search::parse_search;
use bulkhead_core::schema::{CollectionSpec, plan_change};
use serde_json::json;

use super::{MODELS, items_collection, new_record, provision, scope, target};
use crate::{Engine, ListQuery};

/// More than one page of the engines' refresh (1,000 rows), so a refresh that stops after
/// its first page leaves rows unsearchable.
const ROWS: usize = 1_250;

pub async fn an_added_text_field_is_searchable_on_every_row(engine: &dyn Engine) {
    let c = items_collection();
    for isolation in MODELS {
        let t = provision(engine, "refresh", isolation, &c).await;
        let neighbour = provision(engine, "refresh-other", isolation, &c).await;
        for (tenant, n) in [(&t, ROWS), (&neighbour, 10)] {
            let w = scope(tenant, isolation, DataAction::Write);
            let records = (0..n)
                .map(|i| new_record(&c, json!({"id": format!("r{i:05}"), "title": "plain"})))
                .collect();
            engine.insert(&w, &c, records).await.expect("insert");
        }
        let mut spec = CollectionSpec {
            fields: c.fields.clone(),
        };
        spec.fields.insert(
            FieldName::parse("kind").expect("f"),
            serde_json::from_value(json!({"type": "text", "default": "zebra"})).expect("spec"),
        );
        let v2 = plan_change(&c.name, Some(&c), &spec)
            .expect("additive")
            .collection;
        for tenant in [&t, &neighbour] {
            engine
                .ensure_collection(&target(tenant, isolation), &v2)
                .await
                .expect("ensure");
        }
        for (tenant, n) in [(&t, ROWS), (&neighbour, 10)] {
            let found = engine
                .list(
                    &scope(tenant, isolation, DataAction::Read),
                    &v2,
                    &ListQuery {
                        search: Some(parse_search("zebra").expect("search")),
                        limit: 2 * ROWS as u32,
                        ..Default::default()
                    },
                )
                .await
                .expect("search");
            assert_eq!(
                found.len(),
                n,
                "{isolation}: {tenant} rows found by the new field"
            );
        }
    }
}
