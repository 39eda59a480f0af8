//! Domains registered at runtime, driven through the catalog with a fake engine factory (it
//! opens a SQLite engine whatever the spec's kind says), so `postgres` specs with passwords
//! can be stored and reopened without a PostgreSQL server.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bulkhead_api::{CreatePlatformKey, CreateTenant, TierSpec};
use bulkhead_catalog::{Catalog, CatalogOptions, Ctx, EngineFactory, Engines};
use bulkhead_core::access::PlatformRole;
use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::model::{DomainSpec, Isolation};
use bulkhead_core::time::SystemClock;
use bulkhead_core::{CollectionName, DomainName, RecordId, TenantId, TierName};
use bulkhead_engine::Engine;
use bulkhead_engine_sqlite::{SqliteConfig, SqliteEngine};
use parking_lot::Mutex;
use serde_json::json;

const ADMIN: &str = "catalog-test-admin-key-0123456789";
const OWNER_PASSWORD: &str = "OwnerPw-71x";
const DATA_PASSWORD: &str = "DataPw-93y";

/// Opens SQLite engines under `dir`; can be told to fail, and then quotes the URL in its
/// error the way a careless driver might.
struct FakeFactory {
    dir: PathBuf,
    fail: AtomicBool,
    opened: Mutex<Vec<(DomainName, Option<String>)>>,
}

#[async_trait::async_trait]
impl EngineFactory for FakeFactory {
    async fn open(&self, name: &DomainName, spec: &DomainSpec) -> Result<Arc<dyn Engine>, Error> {
        let url = spec.url.as_ref().map(|u| u.expose().to_owned());
        self.opened.lock().push((name.clone(), url.clone()));
        if self.fail.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Unprocessable,
                "connect",
                format!("connecting to {} refused", url.unwrap_or_default()),
            ));
        }
        let config = SqliteConfig::new(self.dir.join(name.as_str()));
        let engine = SqliteEngine::open(config, Arc::new(SystemClock)).unwrap();
        Ok(Arc::new(engine))
    }
}

fn factory(dir: &Path) -> Arc<FakeFactory> {
    Arc::new(FakeFactory {
        dir: dir.join("domains"),
        fail: AtomicBool::new(false),
        opened: Mutex::new(Vec::new()),
    })
}

async fn open(dir: &Path, factory: &Arc<FakeFactory>) -> (Catalog, Ctx) {
    let local = SqliteEngine::open(
        SqliteConfig::new(dir.join("domains/local")),
        Arc::new(SystemClock),
    )
    .unwrap();
    let mut engines = Engines::default();
    engines.register(name("local"), DomainSpec::sqlite(), Arc::new(local));
    let options = CatalogOptions {
        bootstrap_admin_hash: Some(bulkhead_core::keys::hash_secret(ADMIN)),
        engine_factory: Some(Arc::clone(factory) as Arc<dyn EngineFactory>),
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
    let ctx = ctx(&catalog, ADMIN).await;
    (catalog, ctx)
}

async fn ctx(catalog: &Catalog, token: &str) -> Ctx {
    catalog.authenticate(Some(token), "test").await.unwrap()
}

fn name(raw: &str) -> DomainName {
    DomainName::parse(raw).unwrap()
}

fn postgres(extra: serde_json::Value) -> DomainSpec {
    let mut spec = json!({
        "engine": "postgres",
        "url": format!("postgres://owner:{OWNER_PASSWORD}@db.example:5432/app"),
        "data_url": format!("postgresql://app:{DATA_PASSWORD}@db.example/app?sslmode=require"),
    });
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(spec).unwrap()
}

fn assert_no_password(what: &str, text: &str) {
    for password in [OWNER_PASSWORD, DATA_PASSWORD] {
        assert!(!text.contains(password), "{what} shows a password: {text}");
    }
}

async fn put_tier(
    catalog: &Catalog,
    ctx: &Ctx,
    tier: &str,
    isolation: Isolation,
    domains: &[&str],
) {
    let spec = TierSpec {
        domains: domains.iter().map(|d| name(d)).collect(),
        ..TierSpec::new(isolation)
    };
    catalog
        .put_tier(ctx, &TierName::parse(tier).unwrap(), spec)
        .await
        .unwrap();
}

async fn create(catalog: &Catalog, ctx: &Ctx, id: &str, tier: &str) -> Result<DomainName, Error> {
    let request = CreateTenant {
        id: TenantId::parse(id).unwrap(),
        name: id.into(),
        tier: TierName::parse(tier).unwrap(),
        labels: Default::default(),
    };
    Ok(catalog
        .create_tenant(ctx, request)
        .await?
        .0
        .placement
        .domain)
}

#[tokio::test]
async fn a_put_domain_keeps_its_urls_but_shows_and_audits_them_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let factory = factory(dir.path());
    let (catalog, admin) = open(dir.path(), &factory).await;

    let view = catalog
        .put_domain(&admin, &name("pg1"), postgres(json!({})))
        .await
        .unwrap();
    assert_eq!(
        view.spec.url.as_ref().unwrap().expose(),
        "postgres://owner:***@db.example:5432/app"
    );
    assert_eq!(
        view.spec.max_dedicated_tenants, 5000,
        "postgres default capacity"
    );
    assert!(view.available);
    assert_no_password("PUT response", &serde_json::to_string(&view).unwrap());
    let listed = catalog.list_domains(&admin).await.unwrap();
    assert_eq!(listed.items.len(), 2);
    assert_no_password("GET /v1/domains", &serde_json::to_string(&listed).unwrap());
    let audit = catalog.audit_log(None).await.unwrap();
    let put = audit.iter().find(|e| e.action == "domain.put").unwrap();
    assert!(
        put.detail.as_deref().unwrap().contains("owner:***@"),
        "{put:?}"
    );
    assert_no_password("audit log", &format!("{audit:?}"));
    assert_eq!(
        factory.opened.lock().last().unwrap().1.as_deref(),
        Some(format!("postgres://owner:{OWNER_PASSWORD}@db.example:5432/app").as_str()),
        "the engine gets the real URL"
    );

    // Operators read domains but may not put them.
    let operator_key = catalog
        .create_platform_key(
            &admin,
            CreatePlatformKey {
                name: "ops".into(),
                role: PlatformRole::Operator,
                expires_in: None,
            },
        )
        .await
        .unwrap();
    let operator = ctx(&catalog, &operator_key.key).await;
    assert!(catalog.list_domains(&operator).await.is_ok());
    let err = catalog
        .put_domain(&operator, &name("pg2"), postgres(json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Forbidden);

    // An unreachable server: refused, nothing stored, and the driver's message is scrubbed.
    factory.fail.store(true, Ordering::SeqCst);
    let err = catalog
        .put_domain(&admin, &name("pg2"), postgres(json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.code.as_ref()),
        (ErrorKind::Unprocessable, "domain_unreachable")
    );
    assert!(err.message.contains("db.example"), "{}", err.message);
    assert_no_password("factory error", &err.message);
    let listed = catalog.list_domains(&admin).await.unwrap();
    assert!(listed.items.iter().all(|d| d.name.as_str() != "pg2"));

    let err = catalog
        .put_domain(&admin, &name("local"), DomainSpec::sqlite())
        .await
        .unwrap_err();
    assert_eq!(err.code, "domain_preconfigured");
    catalog.shutdown().await;
}

#[tokio::test]
async fn a_stored_domain_that_cannot_be_opened_at_start_waits_until_it_is_put_again() {
    let dir = tempfile::tempdir().unwrap();
    let factory = factory(dir.path());
    let (catalog, admin) = open(dir.path(), &factory).await;
    catalog
        .put_domain(&admin, &name("pg1"), postgres(json!({})))
        .await
        .unwrap();
    let items = CollectionName::parse("items").unwrap();
    let spec = serde_json::from_value(json!({"fields": {"title": {"type": "text"}}})).unwrap();
    catalog.put_collection(&admin, &items, spec).await.unwrap();
    put_tier(&catalog, &admin, "pgpool", Isolation::Pool, &["pg1"]).await;
    assert_eq!(
        create(&catalog, &admin, "acme", "pgpool").await.unwrap(),
        name("pg1")
    );
    let acme = TenantId::parse("acme").unwrap();
    catalog
        .create_record(
            &admin,
            Some(&acme),
            &items,
            &json!({"id": "r1", "title": "kept"}),
        )
        .await
        .unwrap();
    catalog.shutdown().await;
    drop(catalog);

    factory.fail.store(true, Ordering::SeqCst);
    let (catalog, admin) = open(dir.path(), &factory).await;
    let listed = catalog.list_domains(&admin).await.unwrap();
    let pg1 = listed
        .items
        .iter()
        .find(|d| d.name.as_str() == "pg1")
        .unwrap();
    assert!(!pg1.available);
    let r1 = RecordId::parse("r1").unwrap();
    let err = catalog
        .get_record(&admin, Some(&acme), &items, &r1)
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.code.as_ref()),
        (ErrorKind::Unavailable, "domain_unavailable")
    );

    factory.fail.store(false, Ordering::SeqCst);
    let view = catalog
        .put_domain(&admin, &name("pg1"), postgres(json!({})))
        .await
        .unwrap();
    assert!(view.available);
    let record = catalog
        .get_record(&admin, Some(&acme), &items, &r1)
        .await
        .unwrap();
    assert_eq!(record.to_json()["title"], json!("kept"));

    // The same spec again keeps the engine; a new engine kind under a tenant is refused.
    let opened = factory.opened.lock().len();
    catalog
        .put_domain(&admin, &name("pg1"), postgres(json!({})))
        .await
        .unwrap();
    assert_eq!(
        factory.opened.lock().len(),
        opened,
        "no reconnect for an unchanged spec"
    );
    let err = catalog
        .put_domain(&admin, &name("pg1"), DomainSpec::sqlite())
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.code.as_ref()),
        (ErrorKind::Conflict, "domain_in_use")
    );
    assert_eq!(
        factory.opened.lock().len(),
        opened,
        "refused before connecting"
    );
    catalog.shutdown().await;
}

#[tokio::test]
async fn silos_go_only_where_allowed_and_dedicated_domains_take_only_their_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let factory = factory(dir.path());
    let (catalog, admin) = open(dir.path(), &factory).await;
    catalog
        .put_domain(&admin, &name("pg1"), postgres(json!({})))
        .await
        .unwrap();
    put_tier(&catalog, &admin, "pgsilo", Isolation::Silo, &["pg1"]).await;
    let err = create(&catalog, &admin, "acme", "pgsilo")
        .await
        .unwrap_err();
    assert_eq!(err.code, "no_capacity");
    assert!(err.message.contains("silos"), "{}", err.message);
    catalog
        .put_domain(&admin, &name("pg1"), postgres(json!({"silos": true})))
        .await
        .unwrap();
    assert_eq!(
        create(&catalog, &admin, "acme", "pgsilo").await.unwrap(),
        name("pg1")
    );

    catalog
        .put_domain(
            &admin,
            &name("vip-db"),
            postgres(json!({"dedicated_to": "vip"})),
        )
        .await
        .unwrap();
    // `premium` lists no domains: the tenant's own server comes first, and only it goes there.
    assert_eq!(
        create(&catalog, &admin, "vip", "premium").await.unwrap(),
        name("vip-db")
    );
    assert_eq!(
        create(&catalog, &admin, "other", "premium").await.unwrap(),
        name("local")
    );
    put_tier(&catalog, &admin, "vip-only", Isolation::Bridge, &["vip-db"]).await;
    let err = create(&catalog, &admin, "stranger", "vip-only")
        .await
        .unwrap_err();
    assert_eq!(err.code, "no_capacity");
    catalog.shutdown().await;
}
