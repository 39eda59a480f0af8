//! `Engine::restore`, the write a move copies records with: system fields kept exactly,
//! replacing by id without duplicates, search following the new text, all or none, and never
//! touching a neighbour.

use bulkhead_core::access::DataAction;
use bulkhead_core::query::search::parse_search;
use bulkhead_core::record::Record;
use bulkhead_core::time::Timestamp;
use serde_json::json;

use super::{MODELS, items_collection, new_record, provision, rid, scope};
use crate::{Engine, ListQuery};

fn record(
    c: &bulkhead_core::schema::Collection,
    id: &str,
    title: &str,
    sku: &str,
    version: i64,
) -> Record {
    let body = json!({"id": id, "title": title, "sku": sku, "n": version, "meta": {"v": version}});
    let new = new_record(c, body);
    Record {
        id: new.id,
        created_at: Timestamp::from_micros(1_000_000 + version),
        updated_at: Timestamp::from_micros(9_000_000 + version),
        version,
        fields: new.fields,
    }
}

async fn ids(
    engine: &dyn Engine,
    s: &bulkhead_core::access::TenantScope,
    q: Option<&str>,
) -> Vec<String> {
    let c = items_collection();
    engine
        .list(
            s,
            &c,
            &ListQuery {
                search: q.map(|q| parse_search(q).expect("search")),
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .expect("list")
        .into_iter()
        .map(|h| h.record.id.to_string())
        .collect()
}

pub async fn restore_keeps_system_fields_and_replaces_by_id(engine: &dyn Engine) {
    let c = items_collection();
    for model in MODELS {
        let t = provision(engine, "restore", model, &c).await;
        let n = provision(engine, "restorenb", model, &c).await;
        let (w, r) = (
            scope(&t, model, DataAction::Write),
            scope(&t, model, DataAction::Read),
        );
        let wn = scope(&n, model, DataAction::Write);
        let theirs = engine
            .insert(
                &wn,
                &c,
                vec![new_record(
                    &c,
                    json!({"id": "r1", "title": "neighbour words", "sku": "s1"}),
                )],
            )
            .await
            .expect("neighbour insert");

        // Enough records that engines with a bulk path (PostgreSQL's COPY) take it.
        let mut batch = vec![record(&c, "r1", "alpha bravo", "s1", 7)];
        batch.extend((2..=20).map(|i| record(&c, &format!("r{i}"), "filler", &format!("s{i}"), 3)));
        engine
            .restore(&w, &c, batch.clone())
            .await
            .expect("restore");
        let got = engine
            .get(&r, &c, &rid("r1"))
            .await
            .expect("get")
            .expect("found");
        assert_eq!(
            got, batch[0],
            "{model}: restored exactly, system fields included"
        );
        assert_eq!(ids(engine, &r, Some("alpha")).await, ["r1"], "{model}");

        // Restoring again replaces: one record per id, the new text searchable, the old gone.
        let newer = record(&c, "r1", "charlie delta", "s1", 8);
        engine
            .restore(&w, &c, vec![newer.clone()])
            .await
            .expect("restore again");
        let got = engine
            .get(&r, &c, &rid("r1"))
            .await
            .expect("get")
            .expect("found");
        assert_eq!(got, newer, "{model}");
        assert_eq!(
            ids(engine, &r, None).await.len(),
            20,
            "{model}: no duplicates"
        );
        assert!(
            ids(engine, &r, Some("alpha")).await.is_empty(),
            "{model}: old text gone"
        );
        assert_eq!(ids(engine, &r, Some("charlie")).await, ["r1"], "{model}");

        // All or none: a batch whose second record breaks a unique value changes nothing.
        let bad = vec![
            record(&c, "r1", "echo", "s1", 9),
            record(&c, "r99", "foxtrot", "s2", 1),
        ];
        assert!(
            engine.restore(&w, &c, bad).await.is_err(),
            "{model}: unique sku"
        );
        let got = engine
            .get(&r, &c, &rid("r1"))
            .await
            .expect("get")
            .expect("found");
        assert_eq!(got, newer, "{model}: nothing half-applied");
        assert!(
            engine
                .get(&r, &c, &rid("r99"))
                .await
                .expect("get")
                .is_none()
        );

        // A read scope cannot restore; the neighbour never changed.
        assert!(
            engine.restore(&r, &c, vec![newer.clone()]).await.is_err(),
            "{model}"
        );
        let still = engine
            .get(&scope(&n, model, DataAction::Read), &c, &rid("r1"))
            .await
            .expect("get")
            .expect("neighbour's record");
        assert_eq!(still, theirs[0], "{model}: neighbour untouched");
    }
}
