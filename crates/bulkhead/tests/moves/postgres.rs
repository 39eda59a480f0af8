//! Moves between engines: the embedded SQLite domain and a PostgreSQL domain, both ways,
//! under concurrent writers.

use bulkhead_api::DomainSpec;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::Isolation;
use bulkhead_core::{ConnectionUrl, DomainName};

use crate::common::{Server, create_tenant, key, put_items, tid};
use crate::{FAST, move_under_load, workload};

#[tokio::test]
async fn sqlite_to_postgres_and_back_under_concurrent_writers() {
    let Some(pg) = bulkhead_pg_testkit::require("moves_between_engines") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), FAST);
    let admin = server.admin();
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
    put_items(&admin).await;
    create_tenant(&admin, "mover", "free").await;
    create_tenant(&admin, "neighbour", "free").await;
    let mover = server.client(&key(&admin, "mover", TenantRole::Member).await);
    let neighbour = server.client(&key(&admin, "neighbour", TenantRole::Member).await);
    let mut m = workload::seed(&mover, "m", 2000).await;
    let mut n = workload::seed(&neighbour, "nb", 300).await;
    for (to, domain) in [
        (Isolation::Silo, "pg"),
        (Isolation::Pool, "pg"),
        (Isolation::Bridge, "local"),
        (Isolation::Bridge, "pg"),
        (Isolation::Pool, "local"),
    ] {
        let done = move_under_load(
            &server,
            &admin,
            (&mover, &mut m),
            (&neighbour, &mut n),
            to,
            Some(domain),
        )
        .await;
        assert_eq!(
            (done.target.isolation, done.target.domain.as_str()),
            (to, domain)
        );
        let t = admin.get_tenant(&tid("mover")).await.unwrap();
        assert_eq!(
            (t.placement.isolation, t.placement.domain.as_str()),
            (to, domain)
        );
    }
}
