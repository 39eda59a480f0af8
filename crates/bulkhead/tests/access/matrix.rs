//! Foreign ids on every data route, for every kind of tenant credential, in every isolation
//! model: the answer is always the one a missing id gets, and the foreign record is untouched.

use bulkhead_api::{AggregateRequest, MintToken};
use bulkhead_client::{Client, ClientError, ListRecords};
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{DomainSpec, Isolation, TierSpec};
use bulkhead_core::permissions::{Action, RoleSpec};
use bulkhead_core::{ConnectionUrl, DomainName, RecordId, RoleName, TierName};
use serde_json::{Value, json};

use crate::common::{create_tenant, items, key, put_items, tid};
use crate::{Env, add};

const TENANTS: [(&str, &str); 3] = [("acme", "free"), ("beta", "standard"), ("gamma", "premium")];

/// What one route answers for `id`, reduced to what a caller can observe.
async fn observe(client: &Client, id: &str) -> Vec<String> {
    let rid = RecordId::parse(id).unwrap();
    let show = |r: Result<Value, ClientError>| match r {
        Ok(v) => format!("ok {}", v.get("id").and_then(Value::as_str).unwrap_or("")),
        Err(e) => format!("{:?} {:?}", e.status(), e.code()),
    };
    let filter = ListRecords {
        filter: Some(format!("id = \"{id}\"")),
        ..Default::default()
    };
    let count: AggregateRequest = serde_json::from_value(
        json!({"filter": format!("id = \"{id}\""), "metrics": [{"op": "count", "as": "n"}]}),
    )
    .unwrap();
    let err = |e: ClientError| format!("{:?} {:?}", e.status(), e.code());
    // Reads first, then writes, the single delete last.
    let get = show(client.get_record(&items(), &rid).await);
    let list = match client.list_records(&items(), &filter).await {
        Ok(page) => format!("list {}", page.items.len()),
        Err(e) => err(e),
    };
    let counted = match client.aggregate(&items(), &count).await {
        Ok(page) => format!("count {}", page.groups[0]["n"]),
        Err(e) => err(e),
    };
    let export = match client
        .export(&items(), Some(&format!("id = \"{id}\"")))
        .await
    {
        Ok(records) => format!("export {}", records.len()),
        Err(e) => err(e),
    };
    let patch = show(
        client
            .patch_record(&items(), &rid, &json!({"n": 666}), None)
            .await,
    );
    let replace = show(
        client
            .replace_record(&items(), &rid, &json!({"title": "pwned"}), None)
            .await,
    );
    let line = format!("{}\n", json!({"op": "delete", "id": id})).into_bytes();
    let bulk = match client.bulk(&items(), line, false).await {
        Ok(report) => format!(
            "bulk {:?}",
            report
                .results
                .iter()
                .map(|l| (l.status, l.error.as_ref().map(|e| e.code.clone())))
                .collect::<Vec<_>>()
        ),
        Err(e) => err(e),
    };
    let delete = show(
        client
            .delete_record(&items(), &rid, None)
            .await
            .map(|()| Value::Null),
    );
    vec![get, list, counted, export, patch, replace, bulk, delete]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_ids_look_missing_on_every_route_role_and_model() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::start(dir.path());
    run_matrix(&env, &TENANTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_ids_look_missing_on_postgres_pool_bridge_and_silo() {
    let Some(pg) = bulkhead_pg_testkit::require("access_matrix_on_postgres") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = Env::start(dir.path());
    let admin = env.admin();
    let spec = DomainSpec {
        engine: "postgres".into(),
        url: Some(ConnectionUrl::new(pg.url("postgres"))),
        silos: true,
        ..DomainSpec::sqlite()
    };
    admin
        .put_domain(&DomainName::parse("pg").unwrap(), &spec)
        .await
        .unwrap();
    for (isolation, tier) in [
        (Isolation::Pool, "pg-pool"),
        (Isolation::Bridge, "pg-bridge"),
        (Isolation::Silo, "pg-silo"),
    ] {
        let spec = TierSpec {
            domains: vec![DomainName::parse("pg").unwrap()],
            ..TierSpec::new(isolation)
        };
        admin
            .put_tier(&TierName::parse(tier).unwrap(), &spec)
            .await
            .unwrap();
    }
    run_matrix(
        &env,
        &[
            ("acme", "pg-pool"),
            ("beta", "pg-bridge"),
            ("gamma", "pg-silo"),
        ],
    )
    .await;
}

/// Three tenants (one per tier given), every kind of tenant credential in each, every data
/// route probed with the other tenants' record ids.
async fn run_matrix(env: &Env, tenants: &[(&str, &str)]) {
    let admin = env.admin();
    put_items(&admin).await;
    let clerk: RoleSpec = serde_json::from_value(json!({"collections": {"items": {
        "actions": ["read", "create", "update", "delete", "aggregate", "export"],
        "rule": "n < 1000",
        "hidden_fields": ["sku"]
    }}}))
    .unwrap();
    let mut principals: Vec<(String, String, Client)> = Vec::new();
    for (tenant, tier) in tenants {
        let tenant = *tenant;
        create_tenant(&admin, tenant, tier).await;
        let owner = env
            .server
            .client(&key(&admin, tenant, TenantRole::Owner).await);
        owner
            .create_record(&items(), &json!({"id": format!("secret-{tenant}"), "title": "crown jewels", "sku": format!("sku-{tenant}"), "n": 7}))
            .await
            .unwrap();
        admin
            .put_role(&tid(tenant), &RoleName::parse("clerk").unwrap(), &clerk)
            .await
            .unwrap();
        for role in ["owner", "member", "viewer", "clerk"] {
            add(&admin, tenant, &format!("{role}-{tenant}"), role).await;
        }
        let token = owner
            .mint_token(&MintToken {
                collections: None,
                actions: vec![
                    Action::Read,
                    Action::Update,
                    Action::Delete,
                    Action::Aggregate,
                    Action::Export,
                ],
                rule: None,
                expires_in: Some(600),
            })
            .await
            .unwrap()
            .token;
        let keyed = |role| key(&admin, tenant, role);
        let admin_key = env.server.client(&keyed(TenantRole::Admin).await);
        let member_key = env.server.client(&keyed(TenantRole::Member).await);
        let viewer_key = env.server.client(&keyed(TenantRole::Viewer).await);
        for (kind, client) in [
            ("owner key", owner),
            ("admin key", admin_key),
            ("member key", member_key),
            ("viewer key", viewer_key),
            ("owner user", env.user(&format!("owner-{tenant}"))),
            ("member user", env.user(&format!("member-{tenant}"))),
            ("viewer user", env.user(&format!("viewer-{tenant}"))),
            ("custom-role user", env.user(&format!("clerk-{tenant}"))),
            ("tenant token", env.server.client(&token)),
        ] {
            principals.push((tenant.to_owned(), kind.to_owned(), client));
        }
    }
    for (home, kind, client) in &principals {
        let missing = observe(client, "no-such-record").await;
        for (victim, _) in tenants.iter().filter(|(t, _)| t != home) {
            let foreign = observe(client, &format!("secret-{victim}")).await;
            assert_eq!(foreign, missing, "{kind} of {home} probing {victim}");
        }
        // Their own record: visible to readers, never with a hidden field.
        let own = client
            .get_record(
                &items(),
                &RecordId::parse(&format!("secret-{home}")).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            own.get("sku").is_none(),
            kind == "custom-role user",
            "{kind}: {own}"
        );
    }
    // The probe can tell a visible record from a missing one (so equal answers above mean
    // something): the first owner key on a record of its own.
    let (_, _, first_owner) = &principals[0];
    first_owner
        .create_record(&items(), &json!({"id": "probe", "title": "p", "n": 1}))
        .await
        .unwrap();
    let own = observe(first_owner, "probe").await;
    let none = observe(first_owner, "no-such-record").await;
    // All but the last: the bulk line already deleted it.
    let differ = own.iter().zip(&none).filter(|(a, b)| a != b).count();
    assert_eq!(differ, own.len() - 1, "{own:?} vs {none:?}");
    // Nothing foreign was changed: every jewel is at version 1 with its own sku.
    for (tenant, _) in tenants {
        let owner = env
            .server
            .client(&key(&admin, tenant, TenantRole::Owner).await);
        let jewel = owner
            .get_record(
                &items(),
                &RecordId::parse(&format!("secret-{tenant}")).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            (jewel["version"].clone(), jewel["sku"].clone()),
            (json!(1), json!(format!("sku-{tenant}")))
        );
    }
}
