//! Per-tenant request rates and concurrency from the tier (`requests_per_second`,
//! `request_burst`, `max_concurrent_requests`): a tenant over its rate gets `429 rate_limited`,
//! one with too many requests in flight `429 too_many_concurrent_requests`, both with
//! `Retry-After`; nothing of a refused write is applied, other tenants are not touched, slots
//! are given back, and a tier change applies at once.
#![allow(clippy::unwrap_used)]

mod common;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use bulkhead_api::ErrorBody;
use bulkhead_client::{Client, RawResponse};
use bulkhead_core::TierName;
use bulkhead_core::model::TierLimits;
use common::Server;
use serde_json::json;

const RECORDS: &str = "/v1/collections/items/records";

async fn set_limits(admin: &Client, tier: &str, limits: TierLimits) {
    let name = TierName::parse(tier).unwrap();
    let tiers = admin.list_tiers().await.unwrap();
    let found = tiers.items.into_iter().find(|t| t.name == name);
    let mut spec = found.unwrap().spec;
    spec.limits = limits;
    admin.put_tier(&name, &spec).await.unwrap();
}

async fn set_rate(admin: &Client, tier: &str, rate: Option<u32>, burst: Option<u32>) {
    let limits = TierLimits {
        requests_per_second: rate.and_then(NonZeroU32::new),
        request_burst: burst.and_then(NonZeroU32::new),
        ..TierLimits::default()
    };
    set_limits(admin, tier, limits).await;
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
    let (_dir, server, acme, globex) = common::acme_and_globex(&[]).await;
    let admin = server.admin();
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

/// Statuses of `n` concurrent scans of every record of the client's tenant.
async fn concurrent_scans(client: &Client, n: usize) -> Vec<(u16, String)> {
    let scan = bulkhead_client::ListRecords {
        filter: Some(r#"title contains "nowhere""#.into()),
        limit: Some(10),
        ..Default::default()
    };
    let scans = (0..n).map(|_| {
        let (client, scan) = (client.clone(), scan.clone());
        tokio::spawn(async move {
            match client.list_records(&common::items(), &scan).await {
                Ok(_) => (200, String::new()),
                Err(e) => (e.status().unwrap_or(0), e.code().unwrap_or("").to_owned()),
            }
        })
    });
    let mut out = Vec::new();
    for scan in scans.collect::<Vec<_>>() {
        out.push(scan.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_with_too_many_requests_in_flight_gets_429s_and_its_slots_come_back() {
    let (_dir, server, acme, globex) = common::acme_and_globex(&[]).await;
    let admin = server.admin();
    // Enough records that a scan of all of them takes a while.
    let lines: String = (0..20_000)
        .map(|i| format!("{{\"title\": \"record number {i}\", \"n\": {i}}}\n"))
        .collect();
    for client in [&acme, &globex] {
        let report = client
            .bulk(&common::items(), lines.clone().into_bytes(), true)
            .await;
        assert_eq!(report.unwrap().failed, 0);
    }
    let two = TierLimits {
        max_concurrent_requests: NonZeroU32::new(2),
        ..TierLimits::default()
    };
    set_limits(&admin, "free", two).await;

    let answers = concurrent_scans(&acme, 16).await;
    let served = answers.iter().filter(|a| a.0 == 200).count();
    let refused: Vec<_> = answers.iter().filter(|a| a.0 != 200).collect();
    assert!(served >= 2, "{answers:?}");
    assert!(
        !refused.is_empty(),
        "16 scans at once never had more than 2 in flight?"
    );
    assert!(
        refused
            .iter()
            .all(|a| a.0 == 429 && a.1 == "too_many_concurrent_requests"),
        "{answers:?}"
    );
    // Globex, on a tier without the limit, is never refused.
    let theirs = concurrent_scans(&globex, 16).await;
    assert!(theirs.iter().all(|a| a.0 == 200), "{theirs:?}");
    // Every slot came back: one at a time, acme is always served.
    for _ in 0..10 {
        assert!(concurrent_scans(&acme, 1).await.iter().all(|a| a.0 == 200));
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
