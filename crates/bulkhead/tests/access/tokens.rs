//! Tenant tokens: minted by tenant keys and members, only ever narrower, good on every data
//! endpoint, dead as soon as their parent is.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulkhead_api::{AggregateRequest, MintToken};
use bulkhead_client::ListRecords;
use bulkhead_core::access::TenantRole;
use bulkhead_core::permissions::Action;
use bulkhead_core::{KeyId, RecordId};
use serde_json::{Value, json};

use crate::common::{create_tenant, items, key, put_items, tid};
use crate::rules::{deals, put_deals};
use crate::{Env, add, expect_err};

fn mint(actions: &[Action], collections: Option<&[&str]>, rule: Option<&str>) -> MintToken {
    MintToken {
        collections: collections.map(|c| c.iter().map(|n| n.parse_collection()).collect()),
        actions: actions.to_vec(),
        rule: rule.map(str::to_owned),
        expires_in: Some(120),
    }
}

trait ParseCollection {
    fn parse_collection(&self) -> bulkhead_core::CollectionName;
}

impl ParseCollection for &str {
    fn parse_collection(&self) -> bulkhead_core::CollectionName {
        bulkhead_core::CollectionName::parse(self).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_tokens_only_narrow_and_die_with_their_parent() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::start(dir.path());
    let admin = env.admin();
    put_items(&admin).await;
    put_deals(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    create_tenant(&admin, "globex", "free").await;
    let member_key = key(&admin, "acme", TenantRole::Member).await;
    let member = env.server.client(&member_key);
    for n in 1..=8 {
        member
            .create_record(
                &items(),
                &json!({"id": format!("i{n}"), "title": "t", "n": n}),
            )
            .await
            .unwrap();
    }
    member
        .create_record(&deals(), &json!({"title": "d"}))
        .await
        .unwrap();

    // Read-only on items, rows with n > 5 only.
    let minted = member
        .mint_token(&mint(
            &[Action::Read, Action::Aggregate],
            Some(&["items"]),
            Some("n > 5"),
        ))
        .await
        .unwrap();
    assert_eq!(minted.tenant.as_str(), "acme");
    let browser = env.server.client(&minted.token);
    let page = browser
        .list_records(&items(), &ListRecords::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(
        expect_err(
            browser
                .get_record(&items(), &RecordId::parse("i1").unwrap())
                .await
        )
        .0,
        404
    );
    assert!(
        browser
            .get_record(&items(), &RecordId::parse("i7").unwrap())
            .await
            .is_ok()
    );
    let count: AggregateRequest =
        serde_json::from_value(json!({"metrics": [{"op": "count", "as": "n"}]})).unwrap();
    assert_eq!(
        browser.aggregate(&items(), &count).await.unwrap().groups[0]["n"],
        3
    );
    assert_eq!(
        expect_err(
            browser
                .create_record(&items(), &json!({"title": "x"}))
                .await
        )
        .0,
        403
    );
    assert_eq!(
        expect_err(
            browser
                .list_records(&deals(), &ListRecords::default())
                .await
        )
        .0,
        403
    );
    // It names its tenant; a header cannot move it.
    let other = expect_err(
        browser
            .with_tenant(tid("globex"))
            .list_records(&items(), &ListRecords::default())
            .await,
    );
    assert_eq!(other, (404, "tenant_not_found".into()));
    // Tokens cannot mint tokens, nor manage anything.
    assert_eq!(
        expect_err(browser.mint_token(&mint(&[Action::Read], None, None)).await).0,
        403
    );
    assert_eq!(expect_err(browser.list_members(&tid("acme")).await).0, 403);

    // A rule that does not fit what the token names is refused when asked for, not on every
    // use: a field the collection lacks, a comparison of the wrong type, `tenant_id` (not a
    // field; the token's tenant is its parent's). Over every collection, a rule must fit
    // one of them (`n` is a field of items, not of deals).
    for (collections, rule, named) in [
        (Some(&["items"][..]), "tenant_id = \"globex\"", "tenant_id"),
        (Some(&["items"][..]), "nope = 1", "nope"),
        (Some(&["items"][..]), "n = \"five\"", "n is an integer"),
        (Some(&["items", "deals"][..]), "n > 5", "deals"),
        (None, "nope = 1", "nope"),
    ] {
        let (status, code) = expect_err(
            member
                .mint_token(&mint(&[Action::Read], collections, Some(rule)))
                .await,
        );
        assert_eq!((status, code.as_str()), (400, "invalid_rule"), "{rule}");
        let err = member
            .mint_token(&mint(&[Action::Read], collections, Some(rule)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(named), "{rule}: {err}");
    }
    let over_all = member
        .mint_token(&mint(&[Action::Read], None, Some("n > 5")))
        .await
        .unwrap();
    let over_all = env.server.client(&over_all.token);
    let page = over_all
        .list_records(&items(), &ListRecords::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);

    // A token that may write does so on every write path, within its rule.
    let writer = member
        .mint_token(&mint(
            &[Action::Read, Action::Create, Action::Update, Action::Delete],
            Some(&["items"]),
            Some("n >= 100"),
        ))
        .await
        .unwrap();
    let writer = env.server.client(&writer.token);
    writer
        .create_record(&items(), &json!({"id": "w1", "title": "w", "n": 100}))
        .await
        .unwrap();
    assert_eq!(
        expect_err(
            writer
                .create_record(&items(), &json!({"title": "w", "n": 1}))
                .await
        )
        .0,
        403
    );
    writer
        .patch_record(
            &items(),
            &RecordId::parse("w1").unwrap(),
            &json!({"n": 101}),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        expect_err(
            writer
                .patch_record(
                    &items(),
                    &RecordId::parse("i1").unwrap(),
                    &json!({"n": 1}),
                    None
                )
                .await
        )
        .0,
        404
    );
    writer
        .delete_record(&items(), &RecordId::parse("w1").unwrap(), None)
        .await
        .unwrap();

    // Widening by editing the payload breaks the signature.
    let (signed, mac) = minted.token.rsplit_once('.').unwrap();
    let payload = signed.strip_prefix("bkt_").unwrap();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["narrowing"]["actions"] =
        json!(["read", "create", "update", "delete", "aggregate", "export"]);
    claims["narrowing"]["rule"] = Value::Null;
    claims["tenant"] = json!("globex");
    let forged = format!(
        "bkt_{}.{mac}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    assert_eq!(
        expect_err(
            env.server
                .client(&forged)
                .list_records(&items(), &ListRecords::default())
                .await
        )
        .0,
        401
    );

    // A narrower parent cannot be widened by its token: asking for more is refused at mint
    // time, naming what the parent lacks.
    let viewer = env
        .server
        .client(&key(&admin, "acme", TenantRole::Viewer).await);
    let sneaky = viewer
        .mint_token(&mint(&[Action::Read, Action::Create], None, None))
        .await
        .unwrap_err();
    assert_eq!(
        (sneaky.status(), sneaky.code()),
        (Some(400), Some("token_exceeds_parent")),
        "{sneaky}"
    );
    assert!(sneaky.to_string().contains("create"), "{sneaky}");
    let on_items = viewer
        .mint_token(&mint(&[Action::Delete], Some(&["items"]), None))
        .await
        .unwrap_err();
    assert!(
        on_items.to_string().contains("delete on items"),
        "{on_items}"
    );
    // What it may do, it may hand on.
    let reader = viewer
        .mint_token(&mint(&[Action::Read], None, None))
        .await
        .unwrap();
    assert_eq!(
        expect_err(
            env.server
                .client(&reader.token)
                .create_record(&items(), &json!({"title": "x"}))
                .await
        )
        .0,
        403
    );
    // Another tenant's token reaches only its own tenant's (empty) data.
    let globex = env
        .server
        .client(&key(&admin, "globex", TenantRole::Member).await);
    let theirs = globex
        .mint_token(&mint(&[Action::Read, Action::Delete], None, None))
        .await
        .unwrap();
    let theirs = env.server.client(&theirs.token);
    assert_eq!(
        theirs
            .list_records(&items(), &ListRecords::default())
            .await
            .unwrap()
            .items
            .len(),
        0
    );
    assert_eq!(
        expect_err(
            theirs
                .get_record(&items(), &RecordId::parse("i7").unwrap())
                .await
        )
        .0,
        404
    );
    assert_eq!(
        expect_err(
            theirs
                .delete_record(&items(), &RecordId::parse("i7").unwrap(), None)
                .await
        )
        .0,
        404
    );

    // Revoking the parent key kills its tokens on the next request.
    let key_id = KeyId::parse(member_key.split('_').nth(1).unwrap()).unwrap();
    admin.revoke_key(&tid("acme"), &key_id).await.unwrap();
    assert_eq!(
        expect_err(
            browser
                .list_records(&items(), &ListRecords::default())
                .await
        )
        .0,
        401
    );

    // Members mint tokens too; removing the member kills them.
    let uid = add(&admin, "acme", "alice", "member").await;
    let from_user = env
        .user("alice")
        .mint_token(&mint(&[Action::Read], None, None))
        .await
        .unwrap();
    let from_user = env.server.client(&from_user.token);
    assert_eq!(
        from_user
            .list_records(&items(), &ListRecords::default())
            .await
            .unwrap()
            .items
            .len(),
        8
    );
    admin.remove_member(&tid("acme"), &uid).await.unwrap();
    assert_eq!(
        expect_err(
            from_user
                .list_records(&items(), &ListRecords::default())
                .await
        )
        .0,
        401
    );

    // Platform credentials do not mint tenant tokens; bad requests are named.
    assert_eq!(
        expect_err(
            admin
                .with_tenant(tid("acme"))
                .mint_token(&mint(&[Action::Read], None, None))
                .await
        )
        .0,
        403
    );
    let owner = env
        .server
        .client(&key(&admin, "acme", TenantRole::Owner).await);
    let mut bad = mint(&[Action::Read], None, None);
    bad.expires_in = Some(0);
    assert_eq!(
        expect_err(owner.mint_token(&bad).await),
        (400, "invalid_expiry".into())
    );
    bad.expires_in = Some(90_000);
    assert_eq!(
        expect_err(owner.mint_token(&bad).await),
        (400, "invalid_expiry".into())
    );
    assert_eq!(
        expect_err(owner.mint_token(&mint(&[], None, None)).await).0,
        400
    );
    assert_eq!(
        expect_err(
            owner
                .mint_token(&mint(&[Action::Read], None, Some("n >")))
                .await
        )
        .0,
        400
    );
}

/// A token belongs to the life of the tenant it was minted in: after the tenant is deleted
/// and re-created under the same id, it is refused — even once the same person is a member
/// of the new tenant, whose own fresh tokens work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_a_deleted_tenant_is_refused_by_its_re_created_namesake() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::start(dir.path());
    let admin = env.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    add(&admin, "acme", "ann", "member").await;
    let ann = env.user("ann");
    ann.create_record(&items(), &json!({"id": "old", "title": "earlier life"}))
        .await
        .unwrap();
    let old_token = ann
        .mint_token(&mint(&[Action::Read, Action::Create], None, None))
        .await
        .unwrap()
        .token;
    let old_key = key(&admin, "acme", TenantRole::Member).await;
    admin.delete_tenant(&tid("acme")).await.unwrap();
    create_tenant(&admin, "acme", "free").await;
    add(&admin, "acme", "ann", "member").await;
    let reborn = env.server.client(&old_token);
    assert_eq!(
        expect_err(reborn.list_records(&items(), &ListRecords::default()).await).0,
        404,
        "the old life's token reaches nothing of the new one"
    );
    assert_eq!(
        expect_err(
            reborn
                .create_record(&items(), &json!({"title": "smuggled"}))
                .await
        )
        .0,
        404
    );
    assert_eq!(
        expect_err(
            env.server
                .client(&old_key)
                .list_records(&items(), &ListRecords::default())
                .await
        )
        .0,
        401,
        "the old life's key is gone"
    );
    // Ann herself, as a member of the new tenant, sees its (empty) data, and her new token works.
    assert!(
        ann.list_records(&items(), &ListRecords::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let fresh = ann
        .mint_token(&mint(&[Action::Read], None, None))
        .await
        .unwrap()
        .token;
    let page = env
        .server
        .client(&fresh)
        .list_records(&items(), &ListRecords::default())
        .await
        .unwrap();
    assert!(page.items.is_empty(), "the new life starts empty");
}
