//! The change feed under record rules and hidden fields, on every isolation model, beside a
//! neighbour writing the same ids: no foreign event, no rule-hidden event, no hidden field,
//! and a record changed out of a watcher's rule arrives as a removal.

use std::time::Duration;

use bulkhead_client::{Client, FeedEvent, Watch};
use bulkhead_core::access::TenantRole;
use bulkhead_core::{RecordId, RoleName};
use serde_json::json;

use crate::Env;
use crate::add;
use crate::common::{create_tenant, key, tid};
use crate::rules::{deals, put_deals, rep_role};

/// Events up to and including the one for record `until`, as `(event, record id)`; each
/// record event's data is checked for the hidden field (`margin`), absent when `hidden`.
async fn until(watch: &mut Watch, until: &str, hidden: bool) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    loop {
        let event: FeedEvent = tokio::time::timeout(Duration::from_secs(20), watch.next())
            .await
            .unwrap_or_else(|_| panic!("no event for {until} within 20 s; saw {seen:?}"))
            .unwrap()
            .expect("the feed ended");
        if matches!(event.event.as_str(), "created" | "updated") {
            assert_eq!(
                event.data.get("margin").is_none(),
                hidden,
                "the hidden field in a feed event: {event:?}"
            );
        }
        let id = event.data["id"].as_str().unwrap_or("").to_owned();
        if event.event == "ready" {
            continue;
        }
        let done = id == until;
        seen.push((event.event, id));
        if done {
            return seen;
        }
    }
}

fn ev(kind: &str, id: &str) -> (String, String) {
    (kind.to_owned(), id.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_keep_to_rules_hidden_fields_and_tenants_on_every_model() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::start(dir.path());
    let admin = env.admin();
    put_deals(&admin).await;
    let rep = RoleName::parse("rep").unwrap();
    for (n, tier) in [(1, "free"), (2, "standard"), (3, "premium")] {
        let (acme, globex) = (format!("acme{n}"), format!("globex{n}"));
        create_tenant(&admin, &acme, tier).await;
        create_tenant(&admin, &globex, tier).await;
        admin
            .put_role(&tid(&acme), &rep, &rep_role())
            .await
            .unwrap();
        let alice_id = add(&admin, &acme, &format!("alice{n}"), "rep").await;
        let carol_id = add(&admin, &acme, &format!("carol{n}"), "rep").await;
        let owner = env
            .server
            .client(&key(&admin, &acme, TenantRole::Owner).await);
        let neighbour = env
            .server
            .client(&key(&admin, &globex, TenantRole::Owner).await);
        let alice: Client = env.user(&format!("alice{n}"));
        let carol: Client = env.user(&format!("carol{n}"));

        let mut alice_feed = alice.watch(&deals(), None, None).await.unwrap();
        let mut carol_feed = carol.watch(&deals(), None, None).await.unwrap();
        let mut owner_feed = owner.watch(&deals(), None, None).await.unwrap();
        let mut neighbour_feed = neighbour.watch(&deals(), None, None).await.unwrap();
        // Alice filters on top of her rule: her filter never widens it.
        let mut alice_big = alice
            .watch(&deals(), Some("amount >= 100"), None)
            .await
            .unwrap();

        let deal = |id: &str, owner: &str, amount: i64| {
            json!({"id": id, "title": format!("deal {id}"), "owner": owner, "region": "eu",
                   "amount": amount, "margin": 999})
        };
        let (alice_s, carol_s) = (alice_id.as_str(), carol_id.as_str());
        // The neighbour writes the same ids, owned by the same user ids.
        for client in [&owner, &neighbour] {
            client
                .create_record(&deals(), &deal("a1", alice_s, 10))
                .await
                .unwrap();
            client
                .create_record(&deals(), &deal("c1", carol_s, 20))
                .await
                .unwrap();
            let a1 = RecordId::parse("a1").unwrap();
            client
                .patch_record(&deals(), &a1, &json!({"amount": 150}), None)
                .await
                .unwrap();
            // Out of alice's rule, into carol's.
            client
                .patch_record(&deals(), &a1, &json!({"owner": carol_s}), None)
                .await
                .unwrap();
            client
                .delete_record(&deals(), &RecordId::parse("c1").unwrap(), None)
                .await
                .unwrap();
            let lines = [
                json!({"op": "create", "record": deal("a2", alice_s, 300)}),
                json!({"op": "upsert", "id": "a1", "record": deal("a1", alice_s, 5)}),
                json!({"op": "delete", "id": "a2"}),
            ]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>();
            let report = client
                .bulk(&deals(), lines.into_bytes(), false)
                .await
                .unwrap();
            assert_eq!(report.failed, 0, "{report:?}");
        }
        // Each watcher's last event: a record only it sees (the neighbour's own sentinel
        // comes after every acme write).
        owner
            .create_record(&deals(), &deal("end-a", alice_s, 1000))
            .await
            .unwrap();
        owner
            .create_record(&deals(), &deal("end-c", carol_s, 1))
            .await
            .unwrap();
        neighbour
            .create_record(&deals(), &deal("end-g", "nobody", 1))
            .await
            .unwrap();

        assert_eq!(
            until(&mut alice_feed, "end-a", true).await,
            [
                ev("created", "a1"),
                ev("updated", "a1"),
                ev("deleted", "a1"),
                ev("created", "a2"),
                ev("created", "a1"),
                ev("deleted", "a2"),
                ev("created", "end-a"),
            ],
            "{tier}: alice sees her records only, leaving as removals"
        );
        assert_eq!(
            until(&mut alice_big, "end-a", true).await,
            [
                ev("created", "a1"),
                ev("deleted", "a1"),
                ev("created", "a2"),
                ev("deleted", "a2"),
                ev("created", "end-a"),
            ],
            "{tier}: the filter narrows within the rule"
        );
        assert_eq!(
            until(&mut carol_feed, "end-c", true).await,
            [
                ev("created", "c1"),
                ev("created", "a1"),
                ev("deleted", "c1"),
                ev("deleted", "a1"),
                ev("created", "end-c"),
            ],
            "{tier}: carol gets a1 when it moves to her"
        );
        let all = until(&mut owner_feed, "end-c", false).await;
        assert_eq!(
            all.len(),
            10,
            "{tier}: the owner sees every change: {all:?}"
        );
        let theirs = until(&mut neighbour_feed, "end-g", false).await;
        assert_eq!(
            theirs.len(),
            9,
            "{tier}: the neighbour sees its own writes only: {theirs:?}"
        );
        assert!(
            !theirs
                .iter()
                .any(|(_, id)| id.starts_with("end-a") || id == "end-c")
        );
    }
}
