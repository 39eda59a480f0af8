//! Collections roll out to every placement: additive changes live, lossy ones refused.
#![allow(clippy::unwrap_used)]

mod common;

use bulkhead_core::RecordId;
use bulkhead_core::access::TenantRole;
use common::{Server, create_tenant, items, key, put_items};
use serde_json::json;

#[tokio::test]
async fn additive_changes_reach_every_existing_placement_and_new_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    let mut clients = Vec::new();
    for (tenant, tier) in [("p", "free"), ("b", "standard"), ("s", "premium")] {
        let tenant = format!("{tenant}-tenant");
        create_tenant(&admin, &tenant, tier).await;
        let client = server.client(&key(&admin, &tenant, TenantRole::Member).await);
        client
            .create_record(&items(), &json!({"id": "old", "title": "before"}))
            .await
            .unwrap();
        clients.push(client);
    }
    let v2 = serde_json::from_value(json!({"fields": {
        "title": {"type": "text", "required": true},
        "sku": {"type": "string", "unique": true},
        "n": {"type": "integer"},
        "done": {"type": "boolean", "default": false},
        "color": {"type": "string", "index": true, "default": "red"},
        "due": {"type": "timestamp"}
    }}))
    .unwrap();
    let view = admin.put_collection(&items(), &v2).await.unwrap();
    assert_eq!(view.version, 2);
    create_tenant(&admin, "late-tenant", "premium").await;
    clients.push(server.client(&key(&admin, "late-tenant", TenantRole::Member).await));
    for client in &clients {
        if let Ok(old) = client
            .get_record(&items(), &RecordId::parse("old").unwrap())
            .await
        {
            assert_eq!(
                old["color"], "red",
                "existing records read the new field's default"
            );
        }
        let created = client
            .create_record(
                &items(),
                &json!({"title": "after", "color": "blue", "due": "2026-01-02T03:04:05Z"}),
            )
            .await
            .unwrap();
        assert_eq!(created["color"], "blue");
        let page = client
            .list_records(
                &items(),
                &bulkhead_client::ListRecords {
                    filter: Some("color = \"blue\"".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1);
    }
    // The same definition again changes nothing.
    assert_eq!(
        admin.put_collection(&items(), &v2).await.unwrap().version,
        2
    );
}

#[tokio::test]
async fn changes_that_would_lose_or_invalidate_data_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    let cases = [
        (
            json!({"fields": {"title": {"type": "text", "required": true}}}),
            "removing field",
        ),
        (
            json!({"fields": {"title": {"type": "integer", "required": true}, "sku": {"type": "string", "unique": true}, "n": {"type": "integer", "index": true}, "done": {"type": "boolean", "default": false}}}),
            "from text to integer",
        ),
        (
            json!({"fields": {"title": {"type": "text", "required": true}, "sku": {"type": "string", "unique": true}, "n": {"type": "integer", "index": true}, "done": {"type": "boolean", "default": false}, "extra": {"type": "string", "required": true}}}),
            "no default",
        ),
    ];
    for (spec, reason) in cases {
        let err = admin
            .put_collection(&items(), &serde_json::from_value(spec).unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(409));
        assert_eq!(err.code(), Some("schema_change_refused"));
        assert!(err.to_string().contains(reason), "{err}");
    }
    assert_eq!(
        admin.get_collection(&items()).await.unwrap().version,
        1,
        "nothing was applied"
    );
    let err = admin
        .raw(
            bulkhead_client::Method::PUT,
            "/v1/collections/bad",
            Some(br#"{"fields": {"id": {"type": "string"}}}"#.to_vec()),
            Some("application/json"),
        )
        .await
        .unwrap();
    assert_eq!(err.status, 400);
    let missing = server.client(&{
        create_tenant(&admin, "acme", "free").await;
        key(&admin, "acme", TenantRole::Member).await
    });
    let err = missing
        .list_records(
            &bulkhead_core::CollectionName::parse("nope").unwrap(),
            &Default::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(404), Some("collection_not_found"))
    );
}
