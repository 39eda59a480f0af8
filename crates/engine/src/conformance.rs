//! The engine conformance suite: every behaviour an engine must have, written once and run
//! against every engine (each engine crate's tests call these functions).
//!
//! The suite reaches data the way the server does: it mints scopes through the access layer
//! from a generated key, so it exercises the same types a request does.

use std::collections::BTreeMap;

use bulkhead_core::access::{
    self, DataAction, KeyOwner, StoredKey, TenantRole, TenantRoute, TenantScope,
};
use bulkhead_core::keys;
use bulkhead_core::model::{Isolation, Placement, TenantStatus, WriteState};
use bulkhead_core::query;
use bulkhead_core::record::{FieldValue, NewRecord, RecordChange, validate_full, validate_patch};
use bulkhead_core::schema::{Collection, CollectionSpec, plan_change};
use bulkhead_core::time::Timestamp;
use bulkhead_core::{
    CollectionName, DomainName, FieldName, Incarnation, RecordId, StorageKey, TenantId,
};
use serde_json::{Value, json};

use crate::{Engine, EngineError, ListQuery, PlacementRef};

mod aggregates;
mod incarnations;
mod limits;
mod measure;
mod queries;
mod restore;
mod search_refresh;
pub use aggregates::*;
pub use incarnations::*;
pub use limits::*;
pub use measure::*;
pub use queries::*;
pub use restore::*;
pub use search_refresh::*;

/// Engine-neutral namespace for a tenant incarnation placed with `isolation` (the catalog's
/// convention).
pub fn namespace_for(isolation: Isolation, key: &StorageKey) -> String {
    match isolation {
        Isolation::Pool => "pool".into(),
        Isolation::Bridge => "bridge-0001".into(),
        Isolation::Silo => format!("silo-{key}"),
    }
}

pub fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).expect("valid tenant id")
}

fn placement(tenant: &TenantId, incarnation: &Incarnation, isolation: Isolation) -> Placement {
    Placement {
        domain: DomainName::parse("local").expect("valid domain"),
        isolation,
        namespace: namespace_for(isolation, &StorageKey::of(tenant, incarnation)),
        write_state: WriteState::Open,
        epoch: 1,
        schema_version: 1,
        incarnation: incarnation.clone(),
    }
}

static AUTHORITY: std::sync::OnceLock<access::AccessAuthority> = std::sync::OnceLock::new();

/// The process's access authority for the suite: the one [`install`]ed, or else claimed on
/// first use (a test process has no catalog to hold it).
pub fn authority() -> access::AccessAuthority {
    AUTHORITY
        .get_or_init(|| {
            access::AccessAuthority::claim()
                .expect("the access authority was claimed elsewhere in this process; install it")
        })
        .clone()
}

/// Gives the suite the authority a process that also runs a catalog claimed first.
pub fn install(authority: access::AccessAuthority) {
    let _ = AUTHORITY.set(authority);
}

/// The demolition of one incarnation's placement of `tenant`.
pub fn demolition_of(
    tenant: &TenantId,
    incarnation: &Incarnation,
    isolation: Isolation,
) -> access::Demolition {
    authority().demolish(tenant, &placement(tenant, incarnation, isolation))
}

pub fn target(tenant: &TenantId, isolation: Isolation) -> PlacementRef {
    target_of(tenant, &Incarnation::legacy(), isolation)
}

/// The placement of one incarnation of `tenant`.
pub fn target_of(
    tenant: &TenantId,
    incarnation: &Incarnation,
    isolation: Isolation,
) -> PlacementRef {
    PlacementRef::of(tenant, &placement(tenant, incarnation, isolation))
}

/// Mints a scope through the real access path: a generated key, verified, then authorized.
pub fn scope(tenant: &TenantId, isolation: Isolation, action: DataAction) -> TenantScope {
    scope_of(tenant, &Incarnation::legacy(), isolation, action)
}

/// [`scope`] for one incarnation of `tenant`, with a key of that incarnation.
pub fn scope_of(
    tenant: &TenantId,
    incarnation: &Incarnation,
    isolation: Isolation,
    action: DataAction,
) -> TenantScope {
    let key = keys::generate().expect("random source");
    let stored = StoredKey {
        id: key.id,
        secret_hash: key.secret_hash,
        owner: KeyOwner::Tenant(tenant.clone(), TenantRole::Member),
        expires_at: None,
        revoked: false,
        incarnation: Some(incarnation.clone()),
    };
    let (_, secret) = keys::parse_token(&key.token).expect("own format");
    let principal = access::verify_key(&authority(), secret, &stored, Timestamp::from_micros(0))
        .expect("fresh key");
    let route = TenantRoute {
        tenant: tenant.clone(),
        tier: bulkhead_core::TierName::parse("free").expect("tier"),
        status: TenantStatus::Active,
        placement: placement(tenant, incarnation, isolation),
    };
    access::authorize_data(
        &authority(),
        &principal,
        &route,
        action,
        access::RoleFacts::default(),
    )
    .expect("own tenant")
}

pub fn items_collection() -> Collection {
    let spec: CollectionSpec = serde_json::from_value(json!({"fields": {
        "title": {"type": "text", "required": true},
        "sku": {"type": "string", "unique": true},
        "n": {"type": "integer", "index": true},
        "score": {"type": "float"},
        "done": {"type": "boolean", "default": false},
        "due": {"type": "timestamp"},
        "meta": {"type": "json"}
    }}))
    .expect("valid spec");
    plan_change(&CollectionName::parse("items").expect("name"), None, &spec)
        .expect("plan")
        .collection
}

fn new_record(collection: &Collection, body: Value) -> NewRecord {
    let (id, fields, _) = validate_full(collection, &body, None).expect("valid body");
    NewRecord {
        id: id.unwrap_or_else(RecordId::generate),
        fields,
    }
}

fn rid(id: &str) -> RecordId {
    RecordId::parse(id).expect("valid id")
}

const MODELS: [Isolation; 3] = [Isolation::Pool, Isolation::Bridge, Isolation::Silo];

async fn provision(
    engine: &dyn Engine,
    prefix: &str,
    isolation: Isolation,
    collection: &Collection,
) -> TenantId {
    let t = tenant(&format!("{prefix}-{isolation}"));
    engine
        .provision(&target(&t, isolation), std::slice::from_ref(collection))
        .await
        .expect("provision");
    t
}

/// Every field type survives a write and a read, on every isolation model.
pub async fn records_round_trip_on_every_model(engine: &dyn Engine) {
    let c = items_collection();
    for model in MODELS {
        let t = provision(engine, "round", model, &c).await;
        let w = scope(&t, model, DataAction::Write);
        let body = json!({"id": "r1", "title": "héllo \"world\"", "sku": "A-1", "n": -42, "score": 2.5,
                          "due": "2026-03-01T12:00:00.123456Z", "meta": {"tags": ["a", 1, null]}});
        let inserted = engine
            .insert(&w, &c, vec![new_record(&c, body)])
            .await
            .expect("insert");
        assert_eq!(inserted.len(), 1);
        let got = engine
            .get(&scope(&t, model, DataAction::Read), &c, &rid("r1"))
            .await
            .expect("get")
            .expect("found");
        assert_eq!(got, inserted[0], "{model}");
        assert_eq!(got.version, 1);
        let json = got.to_json();
        assert_eq!(json["title"], "héllo \"world\"");
        assert_eq!(json["n"], -42);
        assert_eq!(json["done"], false, "default applied");
        assert_eq!(json["due"], "2026-03-01T12:00:00.123456Z");
        assert_eq!(json["meta"], json!({"tags": ["a", 1, null]}));
    }
}

/// Two tenants sharing a namespace (pool, bridge file) never see each other's records, even
/// with identical record ids; every operation from the other scope behaves as "missing".
pub async fn neighbours_in_a_shared_namespace_are_invisible(engine: &dyn Engine) {
    let c = items_collection();
    for model in MODELS {
        let a = provision(engine, "left", model, &c).await;
        let b = provision(engine, "right", model, &c).await;
        let (wa, wb) = (
            scope(&a, model, DataAction::Write),
            scope(&b, model, DataAction::Write),
        );
        engine
            .insert(
                &wa,
                &c,
                vec![new_record(
                    &c,
                    json!({"id": "same", "title": "a", "sku": "S", "n": 1}),
                )],
            )
            .await
            .expect("a");
        engine
            .insert(
                &wb,
                &c,
                vec![new_record(
                    &c,
                    json!({"id": "same", "title": "b", "sku": "S", "n": 1}),
                )],
            )
            .await
            .expect("b: ids and unique values are per tenant");
        engine
            .insert(
                &wa,
                &c,
                vec![new_record(&c, json!({"id": "only-a", "title": "secret"}))],
            )
            .await
            .expect("a2");

        assert!(
            engine
                .get(&wb, &c, &rid("only-a"))
                .await
                .expect("get")
                .is_none(),
            "{model}: foreign get"
        );
        let patch = RecordChange::Patch(BTreeMap::from([(
            FieldName::parse("title").expect("f"),
            Some(FieldValue::Text("x".into())),
        )]));
        assert!(
            matches!(
                engine.update(&wb, &c, &rid("only-a"), patch, None).await,
                Err(EngineError::NotFound)
            ),
            "{model}: foreign update"
        );
        assert!(
            matches!(
                engine.delete(&wb, &c, &rid("only-a"), None).await,
                Err(EngineError::NotFound)
            ),
            "{model}: foreign delete"
        );
        let listed = engine
            .list(
                &wb,
                &c,
                &ListQuery {
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        assert_eq!(listed.len(), 1, "{model}: b sees only its own record");
        assert_eq!(listed[0].record.to_json()["title"], "b");
        let filtered = engine
            .list(
                &wb,
                &c,
                &ListQuery {
                    filter: query::filter("title = \"secret\"", &c).expect("f"),
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        assert!(
            filtered.is_empty(),
            "{model}: a filter never reaches a neighbour"
        );
        let still = engine
            .get(&wa, &c, &rid("only-a"))
            .await
            .expect("get")
            .expect("a's record untouched");
        assert_eq!(still.version, 1);
        assert_eq!(still.to_json()["title"], "secret");
    }
}

/// Duplicate ids and unique values conflict inside one tenant.
pub async fn duplicates_conflict_within_a_tenant(engine: &dyn Engine) {
    let c = items_collection();
    for model in MODELS {
        let t = provision(engine, "dup", model, &c).await;
        let w = scope(&t, model, DataAction::Write);
        engine
            .insert(
                &w,
                &c,
                vec![new_record(&c, json!({"id": "x", "title": "a", "sku": "U"}))],
            )
            .await
            .expect("first");
        let dup = engine
            .insert(
                &w,
                &c,
                vec![new_record(&c, json!({"id": "x", "title": "b"}))],
            )
            .await;
        assert!(
            matches!(dup, Err(EngineError::DuplicateId)),
            "{model}: {dup:?}"
        );
        let uniq = engine
            .insert(
                &w,
                &c,
                vec![new_record(&c, json!({"id": "y", "title": "b", "sku": "U"}))],
            )
            .await;
        assert!(
            matches!(&uniq, Err(EngineError::UniqueViolation(Some(f))) if f.as_str() == "sku"),
            "{model}: {uniq:?}"
        );
        // A failed batch writes nothing.
        let batch = vec![
            new_record(&c, json!({"id": "z1", "title": "ok"})),
            new_record(&c, json!({"id": "x", "title": "dup"})),
        ];
        assert!(engine.insert(&w, &c, batch).await.is_err());
        assert!(
            engine.get(&w, &c, &rid("z1")).await.expect("get").is_none(),
            "{model}: batch is atomic"
        );
    }
}

/// Versions increase by one per change and guard updates and deletes.
pub async fn versions_guard_changes(engine: &dyn Engine) {
    let c = items_collection();
    for model in MODELS {
        let t = provision(engine, "ver", model, &c).await;
        let w = scope(&t, model, DataAction::Write);
        engine
            .insert(
                &w,
                &c,
                vec![new_record(&c, json!({"id": "v", "title": "a", "n": 1}))],
            )
            .await
            .expect("insert");
        let (patch, _) =
            validate_patch(&c, &json!({"n": null, "score": 1.5}), &rid("v")).expect("patch");
        let updated = engine
            .update(&w, &c, &rid("v"), RecordChange::Patch(patch), Some(1))
            .await
            .expect("update");
        assert_eq!(updated.version, 2);
        assert!(
            !updated
                .to_json()
                .as_object()
                .expect("obj")
                .contains_key("n"),
            "null removes"
        );
        assert_eq!(updated.to_json()["title"], "a", "patch keeps other fields");
        let (_, fields, _) = validate_full(&c, &json!({"title": "replaced"}), None).expect("full");
        let stale = engine
            .update(
                &w,
                &c,
                &rid("v"),
                RecordChange::Replace(fields.clone()),
                Some(1),
            )
            .await;
        assert!(
            matches!(stale, Err(EngineError::VersionMismatch { current: 2 })),
            "{model}: {stale:?}"
        );
        let replaced = engine
            .update(&w, &c, &rid("v"), RecordChange::Replace(fields), None)
            .await
            .expect("replace");
        assert_eq!(replaced.version, 3);
        assert!(replaced.updated_at >= replaced.created_at);
        assert!(
            !replaced
                .to_json()
                .as_object()
                .expect("obj")
                .contains_key("score"),
            "replace drops fields"
        );
        assert!(matches!(
            engine.delete(&w, &c, &rid("v"), Some(2)).await,
            Err(EngineError::VersionMismatch { .. })
        ));
        engine
            .delete(&w, &c, &rid("v"), Some(3))
            .await
            .expect("delete");
        assert!(engine.get(&w, &c, &rid("v")).await.expect("get").is_none());
        assert!(matches!(
            engine.delete(&w, &c, &rid("v"), None).await,
            Err(EngineError::NotFound)
        ));
    }
}

/// Lists come in id order, page by `after`, and honour equality filters.
pub async fn lists_page_in_id_order_with_filters(engine: &dyn Engine) {
    let c = items_collection();
    for model in MODELS {
        let t = provision(engine, "list", model, &c).await;
        let w = scope(&t, model, DataAction::Write);
        let batch = (0..25)
            .map(|i| {
                new_record(
                    &c,
                    json!({"id": format!("r{i:03}"), "title": "t", "n": i % 3}),
                )
            })
            .collect();
        engine.insert(&w, &c, batch).await.expect("insert");
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = engine
                .list(
                    &w,
                    &c,
                    &ListQuery {
                        limit: 10,
                        after: after.clone(),
                        ..Default::default()
                    },
                )
                .await
                .expect("list");
            if page.is_empty() {
                break;
            }
            after = page.last().map(crate::Hit::keyset);
            seen.extend(page.into_iter().map(|h| h.record.id));
        }
        let expected: Vec<_> = (0..25).map(|i| rid(&format!("r{i:03}"))).collect();
        assert_eq!(seen, expected, "{model}");
        let filter = query::filter("n = 1 && title = \"t\"", &c).expect("filter");
        let ones = engine
            .list(
                &w,
                &c,
                &ListQuery {
                    filter,
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        assert_eq!(ones.len(), 8, "{model}");
    }
}

/// A read scope cannot write.
pub async fn read_scopes_cannot_write(engine: &dyn Engine) {
    let c = items_collection();
    for model in MODELS {
        let t = provision(engine, "ro", model, &c).await;
        let r = scope(&t, model, DataAction::Read);
        let res = engine
            .insert(&r, &c, vec![new_record(&c, json!({"title": "x"}))])
            .await;
        assert!(
            matches!(res, Err(EngineError::ReadOnlyScope)),
            "{model}: {res:?}"
        );
        assert!(matches!(
            engine.delete(&r, &c, &rid("x"), None).await,
            Err(EngineError::ReadOnlyScope)
        ));
    }
}

/// Additive schema changes apply to existing placements without touching existing records.
pub async fn schema_changes_apply_live(engine: &dyn Engine) {
    let c = items_collection();
    for model in MODELS {
        let t = provision(engine, "schema", model, &c).await;
        let w = scope(&t, model, DataAction::Write);
        engine
            .insert(
                &w,
                &c,
                vec![new_record(&c, json!({"id": "old", "title": "before"}))],
            )
            .await
            .expect("insert");
        let mut spec = CollectionSpec {
            fields: c.fields.clone(),
        };
        spec.fields.insert(
            FieldName::parse("color").expect("f"),
            serde_json::from_value(json!({"type": "string", "index": true, "default": "red"}))
                .expect("spec"),
        );
        spec.fields.insert(
            FieldName::parse("weight").expect("f"),
            serde_json::from_value(json!({"type": "float"})).expect("spec"),
        );
        let plan = plan_change(&c.name, Some(&c), &spec).expect("additive");
        let v2 = plan.collection;
        engine
            .ensure_collection(&target(&t, model), &v2)
            .await
            .expect("ensure");
        engine
            .ensure_collection(&target(&t, model), &v2)
            .await
            .expect("ensure is idempotent");
        let old = engine
            .get(&w, &c, &rid("old"))
            .await
            .expect("get")
            .expect("kept");
        assert_eq!(old.to_json()["title"], "before");
        let w2 = scope(&t, model, DataAction::Write);
        let old_v2 = engine
            .get(&w2, &v2, &rid("old"))
            .await
            .expect("get")
            .expect("kept");
        assert_eq!(
            old_v2.to_json()["color"],
            "red",
            "{model}: default visible on old records"
        );
        engine
            .insert(
                &w2,
                &v2,
                vec![new_record(
                    &v2,
                    json!({"id": "new", "title": "after", "color": "blue", "weight": 1.0}),
                )],
            )
            .await
            .expect("insert v2");
        let blue = engine
            .list(
                &w2,
                &v2,
                &ListQuery {
                    filter: query::filter("color = \"blue\"", &v2).expect("f"),
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        assert_eq!(blue.len(), 1);
    }
}

/// Destroying a placement removes the tenant and nothing of its neighbours.
pub async fn destroy_removes_only_that_tenant(engine: &dyn Engine) {
    let c = items_collection();
    for model in MODELS {
        let gone = provision(engine, "gone", model, &c).await;
        let stay = provision(engine, "stay", model, &c).await;
        for t in [&gone, &stay] {
            engine
                .insert(
                    &scope(t, model, DataAction::Write),
                    &c,
                    vec![new_record(&c, json!({"id": "k", "title": "x"}))],
                )
                .await
                .expect("insert");
        }
        engine
            .destroy(&demolition_of(&gone, &Incarnation::legacy(), model))
            .await
            .expect("destroy");
        engine
            .destroy(&demolition_of(&gone, &Incarnation::legacy(), model))
            .await
            .expect("destroy is idempotent");
        let kept = engine
            .get(&scope(&stay, model, DataAction::Read), &c, &rid("k"))
            .await
            .expect("get");
        assert!(kept.is_some(), "{model}: neighbour kept");
        let after = engine
            .get(&scope(&gone, model, DataAction::Read), &c, &rid("k"))
            .await;
        assert!(
            matches!(after, Ok(None) | Err(EngineError::PlacementMissing(_))),
            "{model}: {after:?}"
        );
    }
}

/// Runs the whole suite in order.
pub async fn run_all(engine: &dyn Engine) {
    records_round_trip_on_every_model(engine).await;
    neighbours_in_a_shared_namespace_are_invisible(engine).await;
    duplicates_conflict_within_a_tenant(engine).await;
    versions_guard_changes(engine).await;
    lists_page_in_id_order_with_filters(engine).await;
    read_scopes_cannot_write(engine).await;
    schema_changes_apply_live(engine).await;
    destroy_removes_only_that_tenant(engine).await;
    incarnations_of_one_tenant_id_share_nothing(engine).await;
    restore_keeps_system_fields_and_replaces_by_id(engine).await;
}
