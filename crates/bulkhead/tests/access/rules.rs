//! Custom roles: actions per collection, record rules with `@user.*`, hidden fields (no
//! oracle), and the tier ceiling over them.

use bulkhead_api::AggregateRequest;
use bulkhead_client::{ListRecords, TenantUpdated};
use bulkhead_core::access::TenantRole;
use bulkhead_core::permissions::{Action, RoleSpec};
use bulkhead_core::{CollectionName, RecordId, RoleName, TierName};
use serde_json::{Value, json};

use crate::common::{create_tenant, key, tid};
use crate::{Env, add, expect_err};

pub fn deals() -> CollectionName {
    CollectionName::parse("deals").unwrap()
}

pub async fn put_deals(admin: &bulkhead_client::Client) {
    let spec = serde_json::from_value(json!({"fields": {
        "title": {"type": "text", "required": true},
        "owner": {"type": "string", "index": true},
        "region": {"type": "string"},
        "amount": {"type": "integer"},
        "margin": {"type": "integer"},
    }}))
    .unwrap();
    admin.put_collection(&deals(), &spec).await.unwrap();
}

pub fn rep_role() -> RoleSpec {
    serde_json::from_value(json!({
        "description": "sales rep: own deals, margin hidden",
        "collections": {
            "deals": {
                "actions": ["read", "create", "update", "aggregate"],
                "rule": "owner = @user.id",
                "hidden_fields": ["margin"]
            }
        }
    }))
    .unwrap()
}

fn ids(page: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = page
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_rules_and_hidden_fields_hold_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::start(dir.path());
    let admin = env.admin();
    put_deals(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    let rep = RoleName::parse("rep").unwrap();
    admin
        .put_role(&tid("acme"), &rep, &rep_role())
        .await
        .unwrap();
    let alice_id = add(&admin, "acme", "alice", "rep").await;
    let carol_id = add(&admin, "acme", "carol", "rep").await;
    let owner = env
        .server
        .client(&key(&admin, "acme", TenantRole::Owner).await);
    for (id, who, amount, margin) in [
        ("a1", &alice_id, 10, 111),
        ("a2", &alice_id, 20, 222),
        ("c1", &carol_id, 40, 999),
    ] {
        owner
            .create_record(&deals(), &json!({"id": id, "title": format!("deal {id} zebra"), "owner": who.as_str(), "region": "eu", "amount": amount, "margin": margin}))
            .await
            .unwrap();
    }
    let alice = env.user("alice");
    let access = alice.access(&deals()).await.unwrap();
    assert_eq!(
        access.actions,
        [
            Action::Read,
            Action::Create,
            Action::Update,
            Action::Aggregate
        ]
    );
    assert!(access.record_rule);
    let fields: Vec<&str> = access.fields.iter().map(|f| f.as_str()).collect();
    assert_eq!(fields, ["amount", "owner", "region", "title"]);

    // Reads: only her records, never the hidden field.
    let page = alice
        .list_records(&deals(), &ListRecords::default())
        .await
        .unwrap();
    assert_eq!(ids(&page.items), ["a1", "a2"]);
    assert!(
        page.items.iter().all(|r| r.get("margin").is_none()),
        "{page:?}"
    );
    let a1 = alice
        .get_record(&deals(), &RecordId::parse("a1").unwrap())
        .await
        .unwrap();
    assert!(a1.get("margin").is_none() && a1["amount"] == 10);
    let foreign = expect_err(
        alice
            .get_record(&deals(), &RecordId::parse("c1").unwrap())
            .await,
    );
    let missing = expect_err(
        alice
            .get_record(&deals(), &RecordId::parse("zz").unwrap())
            .await,
    );
    assert_eq!(foreign, missing, "another rep's deal looks missing");
    // Search and counts stay inside the rule.
    let hits = alice
        .list_records(
            &deals(),
            &ListRecords {
                q: Some("zebra".into()),
                ..Default::default()
            },
        )
        .await;
    // Full-text search would reach no hidden text field here (margin is an integer).
    assert_eq!(ids(&hits.unwrap().items), ["a1", "a2"]);
    let total = alice
        .aggregate(&deals(), &serde_json::from_value::<AggregateRequest>(json!({"metrics": [{"op": "count", "as": "n"}, {"op": "sum", "field": "amount", "as": "sum"}]})).unwrap())
        .await
        .unwrap();
    assert_eq!(total.groups[0]["n"], 2);
    assert_eq!(total.groups[0]["sum"], 30);

    // The hidden field cannot be filtered, sorted, projected, grouped or aggregated: it is an
    // unknown field to this role, exactly like a field that does not exist.
    for (filter, sort, fields) in [
        (Some("margin > 500"), None, None),
        (None, Some("-margin"), None),
        (None, None, Some("margin")),
    ] {
        let query = ListRecords {
            filter: filter.map(str::to_owned),
            sort: sort.map(str::to_owned),
            fields: fields.map(str::to_owned),
            ..Default::default()
        };
        let hidden = expect_err(alice.list_records(&deals(), &query).await);
        let unknown = ListRecords {
            filter: filter.map(|f| f.replace("margin", "nosuch")),
            sort: sort.map(|f| f.replace("margin", "nosuch")),
            fields: fields.map(|f| f.replace("margin", "nosuch")),
            ..Default::default()
        };
        let nosuch = expect_err(alice.list_records(&deals(), &unknown).await);
        assert_eq!(hidden.0, 400);
        assert_eq!(hidden.1, nosuch.1, "{filter:?} {sort:?} {fields:?}");
    }
    for request in [
        json!({"group_by": ["margin"], "metrics": [{"op": "count", "as": "n"}]}),
        json!({"metrics": [{"op": "max", "field": "margin", "as": "m"}]}),
        json!({"filter": "margin = 999", "metrics": [{"op": "count", "as": "n"}]}),
    ] {
        let request: AggregateRequest = serde_json::from_value(request).unwrap();
        assert_eq!(
            expect_err(alice.aggregate(&deals(), &request).await).0,
            400,
            "{request:?}"
        );
    }

    // Writes: cannot create or move a record out of her scope, cannot write hidden fields.
    let (s, code) = expect_err(
        alice
            .create_record(&deals(), &json!({"title": "t", "owner": carol_id.as_str()}))
            .await,
    );
    assert_eq!((s, code.as_str()), (403, "outside_record_rule"));
    assert_eq!(
        expect_err(
            alice
                .create_record(
                    &deals(),
                    &json!({"title": "t", "owner": alice_id.as_str(), "margin": 5})
                )
                .await
        )
        .0,
        400
    );
    let mine = alice
        .create_record(
            &deals(),
            &json!({"id": "a3", "title": "new", "owner": alice_id.as_str()}),
        )
        .await
        .unwrap();
    assert!(mine.get("margin").is_none());
    let a1_id = RecordId::parse("a1").unwrap();
    let (s, code) = expect_err(
        alice
            .patch_record(&deals(), &a1_id, &json!({"owner": carol_id.as_str()}), None)
            .await,
    );
    assert_eq!((s, code.as_str()), (403, "outside_record_rule"));
    assert_eq!(
        expect_err(
            alice
                .patch_record(&deals(), &a1_id, &json!({"margin": 1}), None)
                .await
        )
        .0,
        400
    );
    assert_eq!(
        expect_err(
            alice
                .patch_record(
                    &deals(),
                    &RecordId::parse("c1").unwrap(),
                    &json!({"amount": 1}),
                    None
                )
                .await
        ),
        missing
    );
    // A replace sets every visible field and keeps the hidden one.
    alice
        .replace_record(
            &deals(),
            &a1_id,
            &json!({"title": "renamed", "owner": alice_id.as_str()}),
            None,
        )
        .await
        .unwrap();
    let stored = owner.get_record(&deals(), &a1_id).await.unwrap();
    assert_eq!(
        (
            stored["title"].clone(),
            stored["margin"].clone(),
            stored.get("amount")
        ),
        (json!("renamed"), json!(111), None)
    );
    // No delete action in the role.
    assert_eq!(
        expect_err(alice.delete_record(&deals(), &a1_id, None).await).0,
        403
    );
    // Bulk follows the same rules per line.
    let body = format!(
        "{}\n{}\n{}\n",
        json!({"title": "b1", "owner": alice_id.as_str()}),
        json!({"title": "b2", "owner": carol_id.as_str()}),
        json!({"op": "delete", "id": "c1"}),
    );
    let report = alice
        .bulk(&deals(), body.into_bytes(), false)
        .await
        .unwrap();
    let statuses: Vec<u16> = report.results.iter().map(|l| l.status).collect();
    assert_eq!(statuses, [201, 403, 403], "{report:?}");
    // The rep role has no export action; with it, an export keeps to the rule and fields.
    assert_eq!(expect_err(alice.export(&deals(), None).await).0, 403);
    let mut exporter = rep_role();
    if let Some(grant) = exporter.collections.get_mut("deals") {
        grant.actions.insert(Action::Export);
    }
    admin.put_role(&tid("acme"), &rep, &exporter).await.unwrap();
    let exported = alice.export(&deals(), None).await.unwrap();
    // a1, a2, a3 and b1 (created by the bulk request, with a generated id).
    assert_eq!(exported.len(), 4);
    assert!(
        ["a1", "a2", "a3"]
            .iter()
            .all(|id| ids(&exported).contains(&id.to_string()))
    );
    assert!(
        exported
            .iter()
            .all(|r| r.get("margin").is_none() && r["owner"] == alice_id.as_str())
    );
    // Carol's deal is untouched by all of it.
    let c1 = owner
        .get_record(&deals(), &RecordId::parse("c1").unwrap())
        .await
        .unwrap();
    assert_eq!(
        (c1["version"].clone(), c1["margin"].clone()),
        (json!(1), json!(999))
    );

    // Claims feed rules too, and a rule whose claim is missing matches nothing.
    let regional: RoleSpec = serde_json::from_value(json!({"collections": {"*": {"actions": ["read"], "rule": "region = @user.claims.region"}}})).unwrap();
    admin
        .put_role(
            &tid("acme"),
            &RoleName::parse("regional").unwrap(),
            &regional,
        )
        .await
        .unwrap();
    add(&admin, "acme", "rita", "regional").await;
    let eu = env.user_with("rita", json!({"region": "eu"}));
    // a1 lost its region in the replace above; a2 and c1 keep "eu".
    assert_eq!(
        ids(&eu
            .list_records(&deals(), &ListRecords::default())
            .await
            .unwrap()
            .items),
        ["a2", "c1"]
    );
    let us = env.user_with("rita", json!({"region": "us"}));
    assert_eq!(
        us.list_records(&deals(), &ListRecords::default())
            .await
            .unwrap()
            .items
            .len(),
        0
    );
    let none = env.user("rita");
    assert_eq!(
        none.list_records(&deals(), &ListRecords::default())
            .await
            .unwrap()
            .items
            .len(),
        0
    );
    assert_eq!(
        expect_err(eu.create_record(&deals(), &json!({"title": "x"})).await).0,
        403
    );

    // Bad role definitions are refused with the problem named.
    for (spec, code) in [
        (
            json!({"collections": {"deals": {"actions": ["read"], "rule": "owner = "}}}),
            "invalid_rule",
        ),
        (
            json!({"collections": {"deals": {"actions": ["read"], "hidden_fields": ["nosuch"]}}}),
            "unknown_field",
        ),
        (
            json!({"collections": {"nosuch": {"actions": ["read"]}}}),
            "unknown_collection",
        ),
        (
            json!({"collections": {"deals": {"actions": ["read"], "rule": "owner = @tenant.id"}}}),
            "invalid_rule",
        ),
    ] {
        let spec: RoleSpec = serde_json::from_value(spec).unwrap();
        let err = expect_err(
            admin
                .put_role(&tid("acme"), &RoleName::parse("bad").unwrap(), &spec)
                .await,
        );
        assert_eq!(err, (400, code.into()));
    }
    assert_eq!(
        expect_err(admin.delete_role(&tid("acme"), &rep).await),
        (409, "role_in_use".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_ceiling_caps_every_role() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::start(dir.path());
    let admin = env.admin();
    put_deals(&admin).await;
    let mut free = admin
        .list_tiers()
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|t| t.name.as_str() == "free")
        .unwrap()
        .spec;
    free.ceiling.forbid = [Action::Delete, Action::Aggregate, Action::Export].into();
    free.ceiling.custom_roles = false;
    admin
        .put_tier(&TierName::parse("free").unwrap(), &free)
        .await
        .unwrap();
    create_tenant(&admin, "acme", "free").await;
    let owner = env
        .server
        .client(&key(&admin, "acme", TenantRole::Owner).await);
    let rec = owner
        .create_record(&deals(), &json!({"title": "t"}))
        .await
        .unwrap();
    let id = RecordId::parse(rec["id"].as_str().unwrap()).unwrap();
    assert_eq!(
        expect_err(owner.delete_record(&deals(), &id, None).await).0,
        403
    );
    let count: AggregateRequest =
        serde_json::from_value(json!({"metrics": [{"op": "count", "as": "n"}]})).unwrap();
    assert_eq!(expect_err(owner.aggregate(&deals(), &count).await).0, 403);
    assert_eq!(expect_err(owner.export(&deals(), None).await).0, 403);
    let (s, code) = expect_err(
        admin
            .put_role(&tid("acme"), &RoleName::parse("rep").unwrap(), &rep_role())
            .await,
    );
    assert_eq!((s, code.as_str()), (403, "custom_roles_not_allowed"));
    // The same owner on a pooled tier without a ceiling may do both, at once.
    let mut open = free.clone();
    open.ceiling = Default::default();
    admin
        .put_tier(&TierName::parse("open").unwrap(), &open)
        .await
        .unwrap();
    let updated = admin
        .update_tenant(
            &tid("acme"),
            &serde_json::from_value(json!({"tier": "open"})).unwrap(),
        )
        .await
        .unwrap();
    assert!(matches!(updated, TenantUpdated::Applied(_)));
    assert!(owner.aggregate(&deals(), &count).await.is_ok());
    assert_eq!(owner.export(&deals(), None).await.unwrap().len(), 1);
    owner.delete_record(&deals(), &id, None).await.unwrap();
}
