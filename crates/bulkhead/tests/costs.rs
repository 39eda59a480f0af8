//! Cost and margin (`GET /v1/costs`, `bulkhead cost report`): a domain's monthly cost over a
//! window split among its tenants by its rule (storage by default, requests when so set),
//! each tenant's price and margin, each tier's marginal cost of one more tenant; amounts are
//! decimal strings, never floats.
#![allow(clippy::unwrap_used)]

mod common;

use bulkhead_api::CostQuery;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{CostRule, DomainSpec, Isolation, TierSpec};
use bulkhead_core::money::Amount;
use bulkhead_core::{DomainName, TierName};
use common::{Server, create_tenant, items, key, put_items};
use rust_decimal::Decimal;
use serde_json::json;

fn dec(a: &Amount) -> Decimal {
    a.value()
}

#[tokio::test]
async fn a_domains_cost_is_split_by_its_rule_and_set_against_prices() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    // Domain east costs 730 a month: 1.00 an hour.
    let east = DomainName::parse("east").unwrap();
    let mut spec = DomainSpec {
        monthly_cost: Amount::parse("730").unwrap(),
        ..DomainSpec::sqlite()
    };
    admin.put_domain(&east, &spec).await.unwrap();
    for (tier, isolation, price) in [
        ("east-pool", Isolation::Pool, "73"),
        ("east-silo", Isolation::Silo, "730"),
    ] {
        let tier_spec = TierSpec {
            domains: vec![east.clone()],
            monthly_price: Amount::parse(price).unwrap(),
            ..TierSpec::new(isolation)
        };
        admin
            .put_tier(&TierName::parse(tier).unwrap(), &tier_spec)
            .await
            .unwrap();
    }
    let mut clients = Vec::new();
    for (t, tier, n) in [
        ("small", "east-pool", 50),
        ("large", "east-pool", 500),
        ("own", "east-silo", 5),
    ] {
        create_tenant(&admin, t, tier).await;
        let client = server.client(&key(&admin, t, TenantRole::Member).await);
        let body: Vec<u8> = (0..n)
            .flat_map(|i| format!("{{\"title\":\"{t} {i} {}\"}}\n", "x".repeat(200)).into_bytes())
            .collect();
        client.bulk(&items(), body, true).await.unwrap();
        clients.push(client);
    }
    // The small tenant makes most of the requests.
    for i in 0..30 {
        clients[0]
            .create_record(&items(), &json!({"title": format!("chatty {i}")}))
            .await
            .unwrap();
    }
    admin.sample_storage(None).await.unwrap();

    let now = bulkhead_core::time::Clock::now(&bulkhead_core::time::SystemClock);
    let window = CostQuery {
        from: Some(now.plus_seconds(-2 * 3600)),
        to: Some(now),
    };
    let report = admin.cost_report(&window).await.unwrap();
    assert!((report.hours - 2.0).abs() < 1e-6, "{report:?}");
    let east_cost = report.domains.iter().find(|d| d.domain == east).unwrap();
    assert_eq!(east_cost.cost.to_string(), "2", "two hours at 1.00");
    assert_eq!(east_cost.tenants, 3);
    let of = |t: &str| {
        report
            .tenants
            .iter()
            .find(|c| c.tenant.as_str() == t)
            .unwrap()
            .clone()
    };
    let (small, large, own) = (of("small"), of("large"), of("own"));
    let total = dec(&small.cost) + dec(&large.cost) + dec(&own.cost);
    assert!(
        (total - Decimal::from(2)).abs() <= Decimal::new(3, 6),
        "shares add up: {total}"
    );
    assert!(
        dec(&large.cost) > dec(&small.cost),
        "by storage: {large:?} vs {small:?}"
    );
    // Prices over the part of the window each existed (moments): small, with a sign.
    for c in [&small, &large, &own] {
        let margin: Decimal = c.margin.as_deref().unwrap().parse().unwrap();
        assert_eq!(margin, dec(&c.price) - dec(&c.cost), "{c:?}");
    }
    // Amounts are decimal strings on the wire.
    let raw = serde_json::to_value(&report).unwrap();
    assert!(raw["domains"][0]["cost"].is_string(), "{raw}");
    // Tiers: an empty silo is measured; one more silo tenant costs more than nothing.
    let silo = report
        .tiers
        .iter()
        .find(|t| t.tier.as_str() == "east-silo")
        .unwrap();
    assert!(silo.empty_placement_bytes.unwrap() > 0, "{silo:?}");
    assert!(dec(&silo.marginal_cost) > Decimal::ZERO, "{silo:?}");
    let pool = report
        .tiers
        .iter()
        .find(|t| t.tier.as_str() == "east-pool")
        .unwrap();
    assert_eq!(pool.empty_placement_bytes, Some(0));
    assert_eq!(pool.tenants, 2);

    // Split by requests instead: the chatty small tenant now carries the most.
    spec.cost_rule = CostRule {
        storage: 0,
        requests: 1,
        query_time: 0,
    };
    admin.put_domain(&east, &spec).await.unwrap();
    let report = admin.cost_report(&window).await.unwrap();
    let of = |t: &str| {
        report
            .tenants
            .iter()
            .find(|c| c.tenant.as_str() == t)
            .unwrap()
            .clone()
    };
    assert!(
        dec(&of("small").cost) > dec(&of("large").cost),
        "{report:?}"
    );

    // The CLI: CSV, one row per tenant.
    let (ok, text) = common::cli(&server, &["cost", "report", "--from", "2h", "--csv"]);
    assert!(ok, "{text}");
    assert!(text.starts_with("tenant,tier,domain,cost"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("large,east-pool,east,")),
        "{text}"
    );
    // Bad input: a window the wrong way round; a negative price.
    let bad = admin
        .cost_report(&CostQuery {
            from: window.to,
            to: window.from,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Some("invalid_time_range"));
    let negative: Result<TierSpec, _> =
        serde_json::from_value(json!({"isolation": "pool", "monthly_price": "-1"}));
    assert!(negative.is_err());
    // Tenants may not read costs.
    assert_eq!(
        clients[0].cost_report(&window).await.unwrap_err().status(),
        Some(403)
    );
}
