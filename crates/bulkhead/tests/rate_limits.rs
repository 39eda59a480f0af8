//! Per-tenant request rates from the tier (`requests_per_second`, `request_burst`): a tenant
//! over its rate gets `429 rate_limited` with `Retry-After`, nothing of a refused write is
//! applied, other tenants are not touched, and a tier change applies at once.
#![allow(clippy::unwrap_used)]

mod common;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use bulkhead_api::ErrorBody;
use bulkhead_client::{Client, RawResponse};
use bulkhead_core::TierName;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::TierLimits;
use common::Server;
use serde_json::json;

const RECORDS: &str = "/v1/collections/items/records";

async fn set_rate(admin: &Client, tier: &str, rate: Option<u32>, burst: Option<u32>) {
    let name = TierName::parse(tier).unwrap();
    let tiers = admin.list_tiers().await.unwrap();
    let mut spec = tiers
        .items
        .into_iter()
        .find(|t| t.name == name)
        .unwrap()
        .spec;
    spec.limits = TierLimits {
        requests_per_second: rate.and_then(NonZeroU32::new),
        request_burst: burst.and_then(NonZeroU32::new),
        ..spec.limits
    };
    admin.put_tier(&name, &spec).await.unwrap();
}

async fn post(client: &Client, title: &str) -> RawResponse {
    let body = json!({ "title": title }).to_string().into_bytes();
    let method = "POST".parse().unwrap();
    client
        .raw(method, RECORDS, Some(body), Some("application/json"))
        .await
        .unwrap()
}

async fn count(client: &Client) -> usize {
    let all = bulkhead_client::ListRecords {
        limit: Some(1000),
        ..Default::default()
    };
    client
        .list_records(&common::items(), &all)
        .await
        .unwrap()
        .items
        .len()
}

#[tokio::test]
async fn a_tenant_over_its_tiers_rate_gets_429s_and_nothing_of_them_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    common::put_items(&admin).await;
    common::create_tenant(&admin, "acme", "free").await;
    common::create_tenant(&admin, "globex", "standard").await;
    let acme = server.client(&common::key(&admin, "acme", TenantRole::Member).await);
    let globex = server.client(&common::key(&admin, "globex", TenantRole::Member).await);
    set_rate(&admin, "free", Some(2), Some(10)).await;

    // A burst of 40 writes: the first 10 pass (plus the odd one the rate refills meanwhile),
    // the rest are refused with the standard body and a Retry-After.
    let started = Instant::now();
    let mut created = 0;
    let mut refused = 0;
    for i in 0..40 {
        let resp = post(&acme, &format!("w{i}")).await;
        match resp.status {
            201 => created += 1,
            429 => {
                refused += 1;
                let body: ErrorBody = resp.json().unwrap();
                assert_eq!(body.error.code, "rate_limited");
                assert!(body.error.message.contains("2 requests per second"));
                assert_eq!(resp.headers.get("retry-after").unwrap(), "1");
            }
            other => panic!("unexpected {other}"),
        }
    }
    let refills = (started.elapsed().as_secs_f64() * 2.0).ceil() as usize;
    assert!((10..=10 + refills).contains(&created), "{created} created");
    assert_eq!(created + refused, 40);
    // Only a machine so slow that the rate refilled every slot refuses nothing.
    assert!(refused > 0 || refills >= 30, "{started:?}");

    // Globex, on a tier without a rate, is not touched meanwhile.
    for i in 0..40 {
        assert_eq!(post(&globex, &format!("g{i}")).await.status, 201);
    }

    // After the wait the server named, acme is served again; only its accepted writes exist.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(count(&acme).await, created);

    // Lifting the rate applies at once.
    set_rate(&admin, "free", None, None).await;
    for i in 0..30 {
        assert_eq!(post(&acme, &format!("x{i}")).await.status, 201);
    }
}

#[tokio::test]
async fn a_zero_rate_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    let tiers = admin.list_tiers().await.unwrap();
    let free = tiers
        .items
        .iter()
        .find(|t| t.name.as_str() == "free")
        .unwrap();
    let mut spec = serde_json::to_value(&free.spec).unwrap();
    spec["limits"]["requests_per_second"] = json!(0);
    let body = Some(spec.to_string().into_bytes());
    let method = "PUT".parse().unwrap();
    let resp = admin
        .raw(method, "/v1/tiers/free", body, Some("application/json"))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    assert_eq!(resp.status, 400, "{text}");
    assert!(text.contains("requests_per_second"), "{text}");
    let after = admin.list_tiers().await.unwrap();
    let free_after = after
        .items
        .iter()
        .find(|t| t.name.as_str() == "free")
        .unwrap();
    assert_eq!(free_after.spec, free.spec);
}
