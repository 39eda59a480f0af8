//! Usage by volume: records written (each bulk line), bytes in and out, rows examined and
//! query time, refusals by kind, storage per tenant (records per collection and bytes, per
//! model), and the ranking of the heaviest tenants — through the API and the CLI. A pool
//! tenant's measured share is checked against the bytes the same records take alone.
#![allow(clippy::unwrap_used)]

mod common;

use std::num::NonZeroU64;

use bulkhead_api::{TopBy, TopQuery, UsagePeriod, UsageQuery};
use bulkhead_client::{Client, ListRecords};
use bulkhead_core::TierName;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{Isolation, TierLimits};
use common::{Server, create_tenant, items, key, put_items, tid};
use serde_json::json;

/// Every period of `tenant`, summed.
async fn totals(admin: &Client, tenant: &str) -> UsagePeriod {
    let page = admin
        .list_usage(&UsageQuery {
            tenant: Some(tid(tenant)),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut items = page.items.into_iter();
    let mut total = items
        .next()
        .unwrap_or_else(|| panic!("no usage for {tenant}"));
    for p in items {
        total.requests += p.requests;
        total.writes += p.writes;
        total.records_written += p.records_written;
        total.bytes_in += p.bytes_in;
        total.bytes_out += p.bytes_out;
        total.rows_examined += p.rows_examined;
        total.query_ms += p.query_ms;
        total.refused.budget += p.refused.budget;
        total.storage = total.storage.or(p.storage);
    }
    total
}

/// `n` bulk lines of about `size` bytes each.
fn lines(prefix: &str, n: usize, size: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            let title = format!("{prefix} {i} {}", "w".repeat(size));
            format!("{{\"id\":\"{prefix}{i}\",\"title\":\"{title}\",\"n\":{i}}}\n").into_bytes()
        })
        .collect()
}

#[tokio::test]
async fn volume_is_metered_per_tenant_and_the_heavy_ingester_ranks_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "ingest", "free").await;
    create_tenant(&admin, "chatty", "standard").await;
    create_tenant(&admin, "quiet", "premium").await;
    let ingest = server.client(&key(&admin, "ingest", TenantRole::Member).await);
    let chatty = server.client(&key(&admin, "chatty", TenantRole::Member).await);
    let quiet = server.client(&key(&admin, "quiet", TenantRole::Member).await);

    // ingest: two bulk requests, 3,000 records.
    let mut sent = 0u64;
    for half in ["a", "b"] {
        let body = lines(half, 1_500, 150);
        sent += body.len() as u64;
        assert_eq!(
            ingest.bulk(&items(), body, true).await.unwrap().created,
            1_500
        );
    }
    // chatty: many small requests, and queries that examine rows.
    for i in 0..40 {
        chatty
            .create_record(&items(), &json!({"title": format!("c{i}"), "n": i}))
            .await
            .unwrap();
    }
    for _ in 0..5 {
        chatty
            .list_records(
                &items(),
                &ListRecords {
                    filter: Some("title = \"c7\"".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    quiet
        .create_record(&items(), &json!({"title": "one"}))
        .await
        .unwrap();
    // A query over chatty's tier budget is refused and counted as such.
    let standard = TierName::parse("standard").unwrap();
    let mut tier = admin
        .list_tiers()
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|t| t.name == standard)
        .unwrap()
        .spec;
    tier.limits = TierLimits {
        query_rows_examined: NonZeroU64::new(5).map(|n| n.get()),
        ..tier.limits
    };
    admin.put_tier(&standard, &tier).await.unwrap();
    let refused = chatty
        .list_records(
            &items(),
            &ListRecords {
                filter: Some("title = \"c9\"".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("query_too_expensive"));

    let i = totals(&admin, "ingest").await;
    assert_eq!((i.requests, i.writes), (2, 2), "{i:?}");
    assert_eq!(i.records_written, 3_000, "each bulk line counts: {i:?}");
    assert_eq!(i.bytes_in, sent, "every body byte received: {i:?}");
    assert!(i.bytes_out > 0, "{i:?}");
    let c = totals(&admin, "chatty").await;
    assert_eq!(c.records_written, 40, "{c:?}");
    assert!(
        c.rows_examined >= 5 * 40,
        "five unindexed filters over 40: {c:?}"
    );
    assert!(c.query_ms > 0.0, "{c:?}");
    assert_eq!(c.refused.budget, 1, "{c:?}");
    assert!(c.bytes_in > 0 && c.bytes_out > 0, "{c:?}");

    // Storage, measured on demand, in every model.
    let sampled = admin.sample_storage(None).await.unwrap();
    assert_eq!((sampled.tenants, sampled.failed), (3, 0), "{sampled:?}");
    for (tenant, records) in [("ingest", 3_000), ("chatty", 40), ("quiet", 1)] {
        let s = totals(&admin, tenant).await.storage.unwrap();
        assert_eq!(s.records, records, "{tenant}: {s:?}");
        assert_eq!(
            s.collections.get(&items()),
            Some(&records),
            "{tenant}: {s:?}"
        );
        assert!(s.bytes > 0, "{tenant}: {s:?}");
    }
    let ingest_bytes = totals(&admin, "ingest").await.storage.unwrap().bytes;
    assert!(
        ingest_bytes >= 3_000 * 150,
        "the pool tenant's share holds at least its data: {ingest_bytes}"
    );

    // The ranking, through the API …
    let by = |by| TopQuery {
        by,
        from: None,
        to: None,
        limit: None,
    };
    let records = admin.usage_top(&by(TopBy::Records)).await.unwrap();
    let order: Vec<&str> = records.items.iter().map(|t| t.tenant.as_str()).collect();
    assert_eq!(order, ["ingest", "chatty", "quiet"]);
    assert_eq!(records.items[0].value, 3_000.0);
    let requests = admin.usage_top(&by(TopBy::Requests)).await.unwrap();
    assert_eq!(requests.items[0].tenant.as_str(), "chatty");
    let stored = admin.usage_top(&by(TopBy::StoredRecords)).await.unwrap();
    assert_eq!(stored.items[0].tenant.as_str(), "ingest");
    assert_eq!(stored.items[0].value, 3_000.0);
    // … and the CLI.
    let (ok, text) = common::cli(
        &server,
        &["usage", "top", "--by", "records", "--from", "7d"],
    );
    assert!(ok, "{text}");
    let at = |t: &str| {
        text.find(t)
            .unwrap_or_else(|| panic!("{t} missing:\n{text}"))
    };
    assert!(
        at("ingest") < at("chatty") && at("chatty") < at("quiet"),
        "{text}"
    );
    let (ok, text) = common::cli(&server, &["usage", "--tenant-id", "ingest"]);
    assert!(ok && text.contains("3000"), "{text}");
    // Tenants cannot read usage or make the server measure.
    assert_eq!(
        ingest.sample_storage(None).await.unwrap_err().status(),
        Some(403)
    );
    // Bad input names the problem.
    let bad = admin
        .usage_top(&TopQuery {
            limit: Some(0),
            ..by(TopBy::Bytes)
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Some("invalid_limit"));
    assert_eq!(
        admin
            .sample_storage(Some(&tid("nobody")))
            .await
            .unwrap_err()
            .code(),
        Some("tenant_not_found")
    );
}

/// The records of "alone": of varied sizes, as the same bulk body in both servers.
fn alone_records() -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..800 {
        let size = 20 + (i * 37) % 700;
        body.extend(
            format!(
                "{{\"id\":\"r{i:04}\",\"title\":\"{}\",\"n\":{i}}}\n",
                "t".repeat(size)
            )
            .into_bytes(),
        );
    }
    body
}

async fn measured_alone(with_neighbours: bool, pg: Option<&bulkhead_pg_testkit::PgServer>) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    let tier = match pg {
        Some(pg) => {
            let database = if with_neighbours { "mixed" } else { "alone" };
            pg.psql("postgres", &format!("CREATE DATABASE {database}"))
                .unwrap();
            common::put_pg_domain(&admin, &pg.url(database), None).await;
            common::put_pg_tier(&admin, "pg-pool", Isolation::Pool, Default::default()).await;
            "pg-pool"
        }
        None => "free",
    };
    let mut tenants = vec![("alone", alone_records())];
    if with_neighbours {
        tenants.push(("big", lines("b", 2_000, 400)));
        tenants.push(("small", lines("s", 3_000, 10)));
        tenants.push(("mid", lines("m", 500, 120)));
    }
    for (t, body) in tenants {
        create_tenant(&admin, t, tier).await;
        let client = server.client(&key(&admin, t, TenantRole::Member).await);
        client.bulk(&items(), body, true).await.unwrap();
    }
    admin.sample_storage(None).await.unwrap();
    totals(&admin, "alone").await.storage.unwrap().bytes
}

async fn pool_share_within_ten_percent(pg: Option<&bulkhead_pg_testkit::PgServer>) {
    let alone = measured_alone(false, pg).await;
    let share = measured_alone(true, pg).await;
    let off = (share as f64 - alone as f64).abs() / alone as f64;
    eprintln!(
        "pool share: {share} B among neighbours, {alone} B alone ({:.1}% off)",
        off * 100.0
    );
    assert!(
        off <= 0.10,
        "the pool share of 'alone' among neighbours is {share} B, alone it takes {alone} B ({:.1}% off)",
        off * 100.0
    );
}

#[tokio::test]
async fn a_pool_tenants_share_is_within_ten_percent_of_what_its_records_take_alone() {
    pool_share_within_ten_percent(None).await;
}

#[tokio::test]
async fn on_postgres_a_pool_tenants_share_is_within_ten_percent_of_its_records_alone() {
    let Some(pg) = bulkhead_pg_testkit::require("postgres_pool_share") else {
        return;
    };
    pool_share_within_ten_percent(Some(&pg)).await;
}

/// A bulk body the client stops sending midway still counts what arrived, for its tenant:
/// the server gives up waiting for the rest (the report's last line `time_limit`), and the
/// bytes it read are metered. (A
/// request dropped unfinished is covered in the catalog's `request_slot` test.)
#[tokio::test]
async fn a_body_stalled_midway_is_metered_for_what_arrived() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bulkhead.toml");
    std::fs::write(&config, "[limits]\nrequest_timeout_secs = 1\n").unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_CONFIG", config.to_str().unwrap())]);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "stalled", "free").await;
    let token = key(&admin, "stalled", TenantRole::Member).await;

    let part = lines("x", 200, 100);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/collections/items/records:bulk HTTP/1.1\r\nhost: {addr}\r\n\
         authorization: Bearer {token}\r\ncontent-type: application/x-ndjson\r\n\
         content-length: {}\r\n\r\n",
        part.len() * 10
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&part).await.unwrap();
    stream.flush().await.unwrap();
    // Nothing more is sent: the server stops waiting and answers.
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers and closes")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    // The bulk stops waiting before the request's time runs out, and reports what it
    // applied with a last line saying where it stopped.
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("time_limit"), "{answer}");
    drop(stream);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = admin
            .list_usage(&UsageQuery {
                tenant: Some(tid("stalled")),
                ..Default::default()
            })
            .await
            .unwrap();
        let bytes_in: u64 = page.items.iter().map(|p| p.bytes_in).sum();
        if bytes_in == part.len() as u64 {
            break;
        }
        assert!(
            bytes_in < part.len() as u64 && std::time::Instant::now() < deadline,
            "bytes in {bytes_in}, sent {}",
            part.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
