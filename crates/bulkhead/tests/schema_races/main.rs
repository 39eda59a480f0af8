//! Schema changes racing what runs over time, one race per module: writes and bulks
//! (`search`), each phase of a live move (`moves`), an abandoned change and `kill -9`
//! (`crash`), and a domain outage (`outage`). The helpers every race uses are here.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
mod crash;
mod moves;
mod outage;
mod search;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bulkhead_client::{Client, ListRecords};
use bulkhead_core::CollectionName;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::Isolation;
use common::{Server, create_tenant, key, put_pg_domain, put_pg_tier};
use serde_json::json;

fn notes() -> CollectionName {
    CollectionName::parse("notes").unwrap()
}

/// The collection every test here starts from: one text field.
async fn put_notes(admin: &Client) {
    admin
        .put_collection(
            &notes(),
            &serde_json::from_value(json!({"fields": {"title": {"type": "text"}}})).unwrap(),
        )
        .await
        .unwrap();
}

/// Domain `pg` on `pg`, with tiers `pg-pool`, `pg-bridge` and `pg-silo` placing tenants there.
async fn pg_models(admin: &Client, pg: &bulkhead_pg_testkit::PgServer) {
    put_pg_domain(admin, &pg.url("postgres"), None).await;
    for (isolation, name) in [
        (Isolation::Pool, "pg-pool"),
        (Isolation::Bridge, "pg-bridge"),
        (Isolation::Silo, "pg-silo"),
    ] {
        put_pg_tier(admin, name, isolation, Default::default()).await;
    }
}

/// `/readyz` lists no placement waiting for a schema rollout.
async fn no_placement_waits(admin: &Client) {
    let ready = admin.ready().await.unwrap();
    assert!(
        ready.problems.iter().all(|p| !p.contains("schema rollout")),
        "{ready:?}"
    );
}

/// Every id `client` finds in `notes`, with a search when `q` is given.
async fn ids(client: &Client, q: Option<&str>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor = None;
    loop {
        let page = client
            .list_records(
                &notes(),
                &ListRecords {
                    q: q.map(str::to_owned),
                    limit: Some(1000),
                    cursor,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        out.extend(
            page.items
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}
