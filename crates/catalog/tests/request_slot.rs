//! A request's slot (`RequestTenant`): the bytes of its streamed bodies reach the meter of
//! the tenant it acted on, whether the request settles or is dropped unfinished (a timeout,
//! a connection gone), and a request that names no tenant meters nothing.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bulkhead_api::{CreateTenant, UsageQuery};
use bulkhead_catalog::{Catalog, CatalogOptions, Ctx, Engines, RequestTenant};
use bulkhead_core::model::DomainSpec;
use bulkhead_core::time::SystemClock;
use bulkhead_core::{DomainName, TenantId, TierName};
use bulkhead_engine_sqlite::{SqliteConfig, SqliteEngine};

const ADMIN: &str = "catalog-test-admin-key-0123456789";

async fn open(dir: &std::path::Path) -> (Catalog, Ctx) {
    let local = SqliteEngine::open(
        SqliteConfig::new(dir.join("domains/local")),
        Arc::new(SystemClock),
    )
    .unwrap();
    let mut engines = Engines::default();
    engines.register(
        DomainName::parse("local").unwrap(),
        DomainSpec::sqlite(),
        Arc::new(local),
    );
    let options = CatalogOptions {
        bootstrap_admin_hash: Some(bulkhead_core::keys::hash_secret(ADMIN)),
        ..CatalogOptions::default()
    };
    let catalog = Catalog::open(
        &bulkhead_catalog::Location::Sqlite(dir.join("catalog.db")),
        Arc::new(SystemClock),
        engines,
        options,
        bulkhead_engine::conformance::authority(),
    )
    .await
    .unwrap();
    let ctx = catalog.authenticate(Some(ADMIN), "test").await.unwrap();
    (catalog, ctx)
}

async fn bytes(catalog: &Catalog, ctx: &Ctx, tenant: &TenantId) -> (u64, u64) {
    catalog.flush_usage().await;
    let page = catalog
        .list_usage(
            ctx,
            &UsageQuery {
                tenant: Some(tenant.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    page.items
        .iter()
        .fold((0, 0), |(i, o), p| (i + p.bytes_in, o + p.bytes_out))
}

#[tokio::test]
async fn streamed_bytes_reach_the_tenant_whether_the_request_settles_or_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (catalog, ctx) = open(dir.path()).await;
    let acme = TenantId::parse("acme").unwrap();
    catalog
        .create_tenant(
            &ctx,
            CreateTenant {
                id: acme.clone(),
                name: "Acme".into(),
                tier: TierName::parse("free").unwrap(),
                labels: Default::default(),
            },
        )
        .await
        .unwrap();
    let before = bytes(&catalog, &ctx, &acme).await;

    // Settled: a body read in part before the tenant is known, the rest after; an answer of
    // known size.
    let mut slot = RequestTenant::new("req".into());
    let body = slot.streamed(&catalog);
    body.received(100);
    {
        let mut scoped = std::pin::pin!(slot.enter(async {
            catalog.get_tenant(&ctx, &acme).await.unwrap();
            body.received(20);
        }));
        scoped.as_mut().await;
        slot.leave(scoped);
    }
    assert_eq!(slot.get(), Some(&acme));
    slot.sent_sized(7);
    slot.settle(&catalog);
    body.received(3);
    drop((slot, body));
    let settled = bytes(&catalog, &ctx, &acme).await;
    assert_eq!(
        (settled.0 - before.0, settled.1 - before.1),
        (123, 7),
        "every byte once, also those after the settling"
    );

    // Dropped unfinished: the request names its tenant, then waits forever for its body.
    let mut slot = RequestTenant::new("req".into());
    let body = slot.streamed(&catalog);
    body.received(500);
    let waited = tokio::time::timeout(
        Duration::from_millis(50),
        slot.enter(async {
            catalog.get_tenant(&ctx, &acme).await.unwrap();
            std::future::pending::<()>().await;
        }),
    )
    .await;
    assert!(waited.is_err());
    drop((slot, body));
    let dropped = bytes(&catalog, &ctx, &acme).await;
    assert_eq!(
        dropped.0 - settled.0,
        500,
        "a dropped request's bytes count"
    );

    // A request that never names a tenant meters nothing.
    let mut slot = RequestTenant::new("req".into());
    let body = slot.streamed(&catalog);
    body.received(9);
    let mut scoped = std::pin::pin!(slot.enter(async {}));
    scoped.as_mut().await;
    slot.leave(scoped);
    slot.sent_sized(9);
    slot.settle(&catalog);
    drop((slot, body));
    assert_eq!(bytes(&catalog, &ctx, &acme).await, dropped);
}
