//! Conformance for tenant incarnations: two lives of one tenant id are two tenants to the
//! engine. A later incarnation starts empty (records, search index, unique values), never
//! sees the earlier one's rows, and destroying either leaves the other whole — in every
//! model, including the pool, where both share tables.

use bulkhead_core::access::DataAction;
use bulkhead_core::query::search::parse_search;
use bulkhead_core::record::FieldValue;
use bulkhead_core::{FieldName, Incarnation};
use serde_json::json;

use super::{MODELS, items_collection, new_record, rid, scope_of, target_of, tenant};
use crate::{Engine, EngineError, ListQuery};

/// A re-created tenant id shares nothing with its earlier life, and their destructions are
/// independent.
pub async fn incarnations_of_one_tenant_id_share_nothing(engine: &dyn Engine) {
    let c = items_collection();
    for model in MODELS {
        let id = tenant(&format!("life-{model}"));
        let (old, new) = (Incarnation::legacy(), Incarnation::generate());
        for inc in [&old, &new] {
            engine
                .provision(&target_of(&id, inc, model), std::slice::from_ref(&c))
                .await
                .expect("provision");
        }
        let write_old = scope_of(&id, &old, model, DataAction::Write);
        engine
            .insert(
                &write_old,
                &c,
                vec![new_record(
                    &c,
                    json!({"id": "secret", "title": "earlier life", "sku": "s-1"}),
                )],
            )
            .await
            .expect("insert into the earlier life");
        let read_new = scope_of(&id, &new, model, DataAction::Read);
        let everything = ListQuery {
            limit: 100,
            ..Default::default()
        };
        assert!(
            engine
                .list(&read_new, &c, &everything)
                .await
                .expect("list")
                .is_empty(),
            "{model}: a later life starts empty"
        );
        assert!(
            engine
                .get(&read_new, &c, &rid("secret"))
                .await
                .expect("get")
                .is_none(),
            "{model}: an earlier life's record is missing to a later one"
        );
        let search = ListQuery {
            search: Some(parse_search("earlier").expect("search")),
            limit: 100,
            ..Default::default()
        };
        assert!(
            engine
                .list(&read_new, &c, &search)
                .await
                .expect("search")
                .is_empty(),
            "{model}: search finds nothing of an earlier life"
        );
        // Ids and unique values are per life: the later one may reuse both.
        let write_new = scope_of(&id, &new, model, DataAction::Write);
        engine
            .insert(
                &write_new,
                &c,
                vec![new_record(
                    &c,
                    json!({"id": "secret", "title": "later life", "sku": "s-1"}),
                )],
            )
            .await
            .expect("the later life reuses an id and a unique value");
        // The earlier life's clean-up runs late: it must not touch the later one.
        engine
            .destroy(&super::demolition_of(&id, &old, model))
            .await
            .expect("destroy the earlier life");
        let kept = engine
            .get(&read_new, &c, &rid("secret"))
            .await
            .expect("get")
            .expect("the later life's record survives the earlier one's destruction");
        assert_eq!(
            kept.fields.get(&FieldName::parse("title").expect("field")),
            Some(&FieldValue::Text("later life".into())),
            "{model}: the later life's own record"
        );
        let hits = engine.list(&read_new, &c, &search).await.expect("search");
        assert!(
            hits.is_empty(),
            "{model}: the later life has no 'earlier' text"
        );
        let later = ListQuery {
            search: Some(parse_search("later").expect("search")),
            limit: 100,
            ..Default::default()
        };
        assert_eq!(
            engine
                .list(&read_new, &c, &later)
                .await
                .expect("search")
                .len(),
            1,
            "{model}: the later life's index survives"
        );
        let gone = engine
            .get(
                &scope_of(&id, &old, model, DataAction::Read),
                &c,
                &rid("secret"),
            )
            .await;
        assert!(
            matches!(gone, Ok(None) | Err(EngineError::PlacementMissing(_))),
            "{model}: the earlier life is gone: {gone:?}"
        );
        engine
            .destroy(&super::demolition_of(&id, &new, model))
            .await
            .expect("destroy the later life");
    }
}
