//! `GET /v1/usage` (and `bulkhead usage`): each tenant's metered data requests, writes and
//! rate refusals per UTC hour or day; platform admins and operators only; kept across a
//! restart; the same on a PostgreSQL catalog.
#![allow(clippy::unwrap_used)]

mod common;

use std::num::NonZeroU32;

use bulkhead_api::{Granularity, UsagePeriod, UsageQuery};
use bulkhead_client::Client;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::TierLimits;
use bulkhead_core::time::Timestamp;
use bulkhead_core::{RecordId, TierName};
use common::{Server, items, tid};
use serde_json::json;

/// What a tenant's requests should add up to.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    requests: u64,
    writes: u64,
    rate_limited: u64,
}

/// Every period matching `q`, `page` at a time.
async fn all(client: &Client, q: &UsageQuery, page: u32) -> Vec<UsagePeriod> {
    let mut q = UsageQuery {
        limit: Some(page),
        ..q.clone()
    };
    let mut out = Vec::new();
    loop {
        let got = client.list_usage(&q).await.unwrap();
        out.extend(got.items);
        match got.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
}

fn sum(periods: &[UsagePeriod], tenant: &str) -> Expected {
    let mut total = Expected::default();
    for p in periods.iter().filter(|p| p.tenant.as_str() == tenant) {
        total.requests += p.requests;
        total.writes += p.writes;
        total.rate_limited += p.rate_limited;
    }
    total
}

/// Tenants acme (free, held to 1 request/s with a burst of 4) and globex (standard); acme
/// writes and reads past its burst, globex reads. Returns what each should have used.
async fn traffic(server: &Server) -> (Expected, Expected) {
    let admin = server.admin();
    common::put_items(&admin).await;
    common::create_tenant(&admin, "acme", "free").await;
    common::create_tenant(&admin, "globex", "standard").await;
    let free = TierName::parse("free").unwrap();
    let mut spec = admin.list_tiers().await.unwrap().items[0].spec.clone();
    assert_eq!(admin.list_tiers().await.unwrap().items[0].name, free);
    spec.limits = TierLimits {
        requests_per_second: NonZeroU32::new(1),
        request_burst: NonZeroU32::new(4),
        ..spec.limits
    };
    admin.put_tier(&free, &spec).await.unwrap();
    let acme = server.client(&common::key(&admin, "acme", TenantRole::Member).await);
    let globex = server.client(&common::key(&admin, "globex", TenantRole::Member).await);

    let mut used = Expected::default();
    for i in 0..3 {
        match acme
            .create_record(&items(), &json!({"title": format!("a{i}")}))
            .await
        {
            Ok(_) => {
                used.requests += 1;
                used.writes += 1;
            }
            Err(e) if e.status() == Some(429) => used.rate_limited += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let missing = RecordId::parse("nothing").unwrap();
    for _ in 0..5 {
        match acme.get_record(&items(), &missing).await {
            Err(e) if e.status() == Some(404) => used.requests += 1,
            Err(e) if e.status() == Some(429) => used.rate_limited += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(used.rate_limited > 0, "{used:?}");
    for _ in 0..4 {
        let none = globex.get_record(&items(), &missing).await.unwrap_err();
        assert_eq!(none.status(), Some(404));
    }
    // Requests naming a tenant that does not exist are usage of no tenant: no row is kept for
    // the id they named (rows of ids that never were used to pile up, one per typo).
    for path in [
        "/v1/tenants/ghost",
        "/v1/tenants/ghost/moves",
        "/v1/tenants/ghost/archives",
    ] {
        let answer = admin
            .raw(bulkhead_client::Method::GET, path, None, None)
            .await
            .unwrap();
        assert!(answer.status >= 400, "{path}: {}", answer.status);
    }
    let theirs = Expected {
        requests: 4,
        ..Expected::default()
    };
    (used, theirs)
}

async fn check(admin: &Client, acme: &Expected, globex: &Expected) {
    let hours = all(admin, &UsageQuery::default(), 1000).await;
    assert!(
        hours.iter().all(|p| p.tenant.as_str() != "ghost"),
        "{hours:?}"
    );
    assert_eq!(&sum(&hours, "acme"), acme);
    assert_eq!(&sum(&hours, "globex"), globex);
    for p in &hours {
        let span = p.to.as_micros() - p.from.as_micros();
        assert_eq!(span, 3_600_000_000);
        assert_eq!(p.from.as_micros() % 3_600_000_000, 0);
    }
    // Newest period first, then by tenant; paging by one walks the same rows.
    let order: Vec<_> = hours
        .iter()
        .map(|p| (-p.from.as_micros(), p.tenant.clone()))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{hours:?}");
    assert_eq!(all(admin, &UsageQuery::default(), 1).await, hours);

    let days = UsageQuery {
        granularity: Some(Granularity::Day),
        ..UsageQuery::default()
    };
    let days = all(admin, &days, 1000).await;
    assert_eq!(&sum(&days, "acme"), acme);
    assert!(
        days.iter()
            .all(|p| p.from.as_micros() % 86_400_000_000 == 0)
    );

    let only_globex = UsageQuery {
        tenant: Some(tid("globex")),
        ..UsageQuery::default()
    };
    let theirs = all(admin, &only_globex, 1000).await;
    assert!(theirs.iter().all(|p| p.tenant == tid("globex")));
    assert_eq!(&sum(&theirs, "globex"), globex);

    let later = UsageQuery {
        from: Some(Timestamp::parse_rfc3339("2999-01-01T00:00:00Z").unwrap()),
        ..UsageQuery::default()
    };
    assert!(all(admin, &later, 10).await.is_empty());
}

#[tokio::test]
async fn usage_counts_each_tenants_requests_writes_and_refusals_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let (acme, globex) = traffic(&server).await;
    check(&server.admin(), &acme, &globex).await;

    // Counts taken after the last read are written at shutdown, not lost.
    let reader = server.client(&common::key(&server.admin(), "globex", TenantRole::Viewer).await);
    reader
        .get_record(&items(), &RecordId::parse("x").unwrap())
        .await
        .unwrap_err();
    server.stop();
    let server = Server::start(dir.path());
    let globex_after = Expected {
        requests: globex.requests + 1,
        ..Expected::default()
    };
    check(&server.admin(), &acme, &globex_after).await;
}

#[tokio::test]
async fn usage_reads_a_postgres_catalog_the_same_way() {
    let Some(pg) = bulkhead_pg_testkit::require("usage") else {
        return;
    };
    pg.psql("postgres", "CREATE DATABASE bulkhead").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = pg.url("bulkhead");
    let server = Server::start_with(dir.path(), &[("BULKHEAD_CATALOG", &catalog)]);
    let (acme, globex) = traffic(&server).await;
    check(&server.admin(), &acme, &globex).await;
}

#[tokio::test]
async fn only_platform_admins_and_operators_read_usage_and_bad_queries_are_400s() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    common::create_tenant(&admin, "acme", "free").await;
    let owner = server.client(&common::key(&admin, "acme", TenantRole::Owner).await);
    let err = owner.list_usage(&UsageQuery::default()).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(403), Some("forbidden")));

    let cases = [
        ("granularity=week", "invalid_query", "granularity"),
        ("tenant=Acme!", "invalid_query", "tenant"),
        ("from=today", "invalid_query", "from"),
        ("cursor=bm9wZQ", "invalid_cursor", "cursor"),
        ("limit=100000", "invalid_limit", "limit"),
        ("tenants=acme", "invalid_query", "tenants"),
        (
            "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            "invalid_time_range",
            "before",
        ),
    ];
    common::assert_bad_queries(&admin, "/v1/usage", &cases).await;
}
