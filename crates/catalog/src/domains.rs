//! Storage domains: the live engine of each domain, domains registered at runtime
//! (`PUT /v1/domains/{name}`) and reopened at start through the binary's [`EngineFactory`].
//!
//! Invariants kept here: a domain is stored only after its engine opened (an unreachable
//! server is refused, nothing half-registered); connection URLs leave the catalog only
//! redacted — in views, audit records and error messages; a domain that cannot be opened at
//! start does not stop the server: its tenants get `503 domain_unavailable` while the server
//! keeps trying to open it in the background, until it opens (or is put again).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bulkhead_api::{DomainView, Page};
use bulkhead_core::DomainName;
use bulkhead_core::access::ControlAction;
use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::model::{DomainSpec, Isolation};
use bulkhead_engine::Engine;
use parking_lot::RwLock;

use crate::rows::domains::{read_domain, read_domains};
use crate::rows::parse;
use crate::store::{StoreResult, Tx, malformed, params};
use crate::{Catalog, Ctx, Engines, Inner};

/// The first and the longest wait between attempts to open a domain that was unreachable at
/// start.
const REOPEN_FIRST: Duration = Duration::from_millis(500);
const REOPEN_MAX: Duration = Duration::from_secs(30);

/// Opens the engine of a domain from its spec. The binary implements it: it alone knows
/// concrete engines.
#[async_trait::async_trait]
pub trait EngineFactory: Send + Sync + 'static {
    /// Opens (connects, checks) the engine for a domain. Errors are shown to the operator, so they must not contain credentials.
    async fn open(&self, name: &DomainName, spec: &DomainSpec) -> Result<Arc<dyn Engine>, Error>;
}

/// The engine serving each domain right now. Read on every data request: a lookup clones an
/// `Arc` under a read lock and nothing else.
pub(crate) struct LiveEngines {
    by_domain: RwLock<HashMap<DomainName, Arc<dyn Engine>>>,
    /// The spec each runtime-opened engine was opened with.
    specs: RwLock<HashMap<DomainName, DomainSpec>>,
}

impl LiveEngines {
    pub(crate) fn new(engines: &Engines) -> Self {
        LiveEngines {
            by_domain: RwLock::new(
                engines
                    .all()
                    .map(|(name, engine)| (name.clone(), Arc::clone(engine)))
                    .collect(),
            ),
            specs: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, domain: &DomainName) -> Result<Arc<dyn Engine>, Error> {
        if let Some(engine) = self.by_domain.read().get(domain) {
            return Ok(Arc::clone(engine));
        }
        tracing::error!(%domain, "no engine serves this domain");
        Err(Error::new(
            ErrorKind::Unavailable,
            "domain_unavailable",
            "the tenant's storage domain is not available",
        ))
    }

    pub(crate) fn contains(&self, domain: &DomainName) -> bool {
        self.by_domain.read().contains_key(domain)
    }

    /// Every live engine, the pre-registered ones and those added at runtime.
    pub(crate) fn snapshot(&self) -> Vec<(DomainName, Arc<dyn Engine>)> {
        self.by_domain
            .read()
            .iter()
            .map(|(name, engine)| (name.clone(), Arc::clone(engine)))
            .collect()
    }

    /// Installs `engine` for `domain`, returning the one it replaces.
    fn swap(
        &self,
        domain: DomainName,
        spec: DomainSpec,
        engine: Arc<dyn Engine>,
    ) -> Option<Arc<dyn Engine>> {
        let mut engines = self.by_domain.write();
        self.specs.write().insert(domain.clone(), spec);
        engines.insert(domain, engine)
    }

    fn spec(&self, domain: &DomainName) -> Option<DomainSpec> {
        self.specs.read().get(domain).cloned()
    }
}

/// A domain's engine kind may change only while no tenant is placed on it.
fn engine_change_allowed(tx: &dyn Tx, name: &DomainName, spec: &DomainSpec) -> StoreResult<()> {
    let Some(old) = read_domain(tx, name)? else {
        return Ok(());
    };
    if old.engine == spec.engine {
        return Ok(());
    }
    let placed: i64 = tx
        .query_one(
            "SELECT count(*) FROM placements WHERE domain = ?1",
            params![name.as_str()],
        )?
        .get(0)?;
    if placed > 0 {
        return Err(Error::conflict(
            "domain_in_use",
            format!(
                "{placed} tenants are placed on domain '{name}'; its engine cannot change from {} to {} under them",
                old.engine, spec.engine
            ),
        )
        .into());
    }
    Ok(())
}

/// Tenants placed on a domain, by isolation model, and its spares ready on the current schema.
fn tenant_counts(tx: &dyn Tx, name: &DomainName) -> StoreResult<(BTreeMap<Isolation, u64>, u64)> {
    let rows = tx.query(
        "SELECT isolation, count(*) FROM placements WHERE domain = ?1 GROUP BY isolation",
        params![name.as_str()],
    )?;
    let mut tenants = BTreeMap::new();
    for row in rows {
        let (isolation, count): (String, i64) = (row.get(0)?, row.get(1)?);
        tenants.insert(parse::<Isolation>(&isolation)?, count.max(0) as u64);
    }
    let spares: i64 = tx
        .query_one(
            "SELECT count(*) FROM spares WHERE domain = ?1 AND state = 'ready' AND schema_version = ?2",
            params![name.as_str(), crate::rows::collections::generation(tx)?],
        )?
        .get(0)?;
    Ok((tenants, spares.max(0) as u64))
}

/// What an operator sees of a domain: never its credentials.
fn view(
    name: DomainName,
    spec: &DomainSpec,
    (tenants, spares_ready): (BTreeMap<Isolation, u64>, u64),
    available: bool,
) -> DomainView {
    DomainView {
        name,
        spec: spec.redacted(),
        tenants,
        available,
        spares_ready,
    }
}

impl Catalog {
    fn factory_open_error(name: &DomainName, spec: &DomainSpec, err: Error) -> Error {
        Error::new(
            ErrorKind::Unprocessable,
            "domain_unreachable",
            format!("cannot open domain '{name}': {}", spec.scrub(&err.message)),
        )
    }

    async fn open_through_factory(
        &self,
        name: &DomainName,
        spec: &DomainSpec,
    ) -> Result<Arc<dyn Engine>, Error> {
        match &self.inner().options.engine_factory {
            Some(factory) => factory
                .open(name, spec)
                .await
                .map_err(|e| Catalog::factory_open_error(name, spec, e)),
            None => Err(Error::new(
                ErrorKind::Unprocessable,
                "domain_unreachable",
                format!("cannot open domain '{name}': this server cannot open engines at runtime"),
            )),
        }
    }

    /// At start: opens every stored domain the binary did not pre-register. One that fails
    /// is logged and left unavailable, and the server starts anyway; returns those, for
    /// [`spawn_reopener`].
    pub(crate) async fn open_stored_domains(&self) -> Result<Vec<DomainName>, Error> {
        let stored = self
            .blocking(|store| store.read(|tx| read_domains(tx)))
            .await?;
        let mut unreachable = Vec::new();
        for (name, spec) in stored {
            if self.inner().engines.contains(&name) {
                continue;
            }
            match self.open_through_factory(&name, &spec).await {
                Ok(engine) => {
                    self.inner()
                        .engines
                        .swap(name.clone(), spec.clone(), engine);
                    tracing::info!(domain = %name, engine = %spec.engine, "domain opened");
                }
                Err(e) => {
                    tracing::error!(
                        domain = %name,
                        error = %e.message,
                        "cannot open domain; its tenants get 503 until it is reachable (retrying)"
                    );
                    unreachable.push(name);
                }
            }
        }
        Ok(unreachable)
    }

    /// Opens a domain's engine with its stored spec when that differs from the live one (or
    /// none is live): after another server changed the domain, or when it was unreachable at
    /// start. A domain that cannot be opened keeps its old engine (or stays unavailable).
    /// True when there is nothing left to do: the live engine is the stored spec's, or the
    /// domain is no longer stored.
    pub(crate) async fn refresh_domain(&self, name: &DomainName) -> bool {
        if self.inner().preconfigured.by_domain.contains_key(name) {
            return true;
        }
        let _domains = self.inner().domain_lock.lock().await;
        let key = name.clone();
        let stored = match self
            .blocking(move |store| store.read(|tx| read_domain(tx, &key)))
            .await
        {
            Ok(Some(spec)) => spec,
            Ok(None) => return true,
            Err(e) => {
                tracing::warn!(domain = %name, error = %e, "cannot read a domain");
                return false;
            }
        };
        if self.inner().engines.spec(name).as_ref() == Some(&stored) {
            return true;
        }
        match self.open_through_factory(name, &stored).await {
            Ok(engine) => {
                let old = self
                    .inner()
                    .engines
                    .swap(name.clone(), stored.clone(), engine);
                tracing::info!(domain = %name, engine = %stored.engine, "domain opened with its stored spec");
                if let Some(old) = old {
                    old.shutdown().await;
                }
                true
            }
            Err(e) => {
                tracing::error!(domain = %name, error = %e.message, "cannot open the domain with its stored spec");
                false
            }
        }
    }

    pub async fn list_domains(&self, ctx: &Ctx) -> Result<Page<DomainView>, Error> {
        self.authorize(
            ctx,
            ControlAction::ReadCatalog,
            "domain.list",
            "domains",
            None,
        )?;
        let rows = self
            .blocking(|store| {
                store.read(|tx| {
                    let mut out = Vec::new();
                    for (name, spec) in read_domains(tx)? {
                        let tenants = tenant_counts(tx, &name)?;
                        out.push((name, spec, tenants));
                    }
                    Ok(out)
                })
            })
            .await?;
        let engines = &self.inner().engines;
        let items = rows
            .into_iter()
            .map(|(name, spec, tenants)| {
                let available = engines.contains(&name);
                view(name, &spec, tenants, available)
            })
            .collect();
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    /// `PUT /v1/domains/{name}`: registers or changes a storage domain. The engine is opened
    /// (and so the server reached) before anything is stored; then the spec is stored with
    /// its audit record and the new engine replaces the old one. A spec identical to the
    /// stored one of a live domain keeps its engine (no reconnect).
    pub async fn put_domain(
        &self,
        ctx: &Ctx,
        name: &DomainName,
        spec: DomainSpec,
    ) -> Result<DomainView, Error> {
        self.authorize(
            ctx,
            ControlAction::ManageDomains,
            "domain.put",
            name.as_str(),
            None,
        )?;
        let spec = spec.with_engine_defaults();
        spec.validate()?;
        if self.inner().preconfigured.by_domain.contains_key(name) {
            return Err(Error::conflict(
                "domain_preconfigured",
                format!(
                    "domain '{name}' is configured by the server at start (its settings come from the server configuration)"
                ),
            ));
        }
        // One PUT of a domain at a time, so the stored spec and the live engine never come
        // from two different requests.
        let _domains = self.inner().domain_lock.lock().await;
        let key = name.clone();
        let probe = spec.clone();
        // Checked again when storing; here it spares an engine connection that would be
        // refused anyway.
        let stored = self
            .blocking(move |store| {
                store.read(|tx| {
                    engine_change_allowed(tx, &key, &probe)?;
                    read_domain(tx, &key)
                })
            })
            .await?;
        let was_live = self.inner().engines.contains(name);
        let opened = if was_live && stored.as_ref() == Some(&spec) {
            None
        } else {
            Some(self.open_through_factory(name, &spec).await?)
        };
        let event = self.event(
            ctx,
            "domain.put",
            name.as_str(),
            None,
            serde_json::to_string(&spec.redacted()).ok(),
        );
        // Tenant creation allocates and provisions under the schema lock: holding it while
        // storing and swapping means no tenant is placed by the new spec on the old engine.
        let schema = self.lock_schema().await?;
        let (key, stored_spec) = (name.clone(), spec.clone());
        let written = self
            .blocking(move |store| {
                store.write(|tx| {
                    engine_change_allowed(tx, &key, &stored_spec)?;
                    let raw = serde_json::to_string(&stored_spec).map_err(malformed)?;
                    tx.execute(
                        "INSERT INTO domains (name, spec) VALUES (?1, ?2) \
                         ON CONFLICT (name) DO UPDATE SET spec = excluded.spec",
                        params![key.as_str(), raw],
                    )?;
                    crate::store::changed(tx, "domain", key.as_str())?;
                    crate::rows::audit::insert(tx, &event)?;
                    tenant_counts(tx, &key)
                })
            })
            .await;
        let tenants = match written {
            Ok(tenants) => tenants,
            Err(e) => {
                drop(schema);
                if let Some(engine) = opened {
                    engine.shutdown().await;
                }
                return Err(e);
            }
        };
        let replaced = opened.and_then(|engine| {
            self.inner()
                .engines
                .swap(name.clone(), spec.clone(), engine)
        });
        drop(schema);
        if let Some(old) = replaced {
            old.shutdown().await;
        }
        tracing::info!(domain = %name, engine = %spec.engine, "domain put");
        if !was_live && stored.is_some() {
            // The domain was stored but unreachable: finish what waited for it (provisioning,
            // deletions, schema rollouts).
            if let Err(e) = self.reconcile().await {
                tracing::warn!(domain = %name, error = %e, "resuming work on a recovered domain failed; retried at the next start");
            }
        }
        Ok(view(name.clone(), &spec, tenants, true))
    }
}

/// Keeps trying to open the domains that were unreachable at start, waiting longer between
/// rounds (up to [`REOPEN_MAX`]); once one opens, the work that waited for it (provisioning,
/// deletions, rollouts) is resumed.
pub(crate) fn spawn_reopener(inner: Weak<Inner>, mut unreachable: Vec<DomainName>) {
    if unreachable.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let mut wait = REOPEN_FIRST;
        while !unreachable.is_empty() {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(REOPEN_MAX);
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let catalog = Catalog { inner: strong };
            let before = unreachable.len();
            let mut left = Vec::new();
            for name in unreachable {
                if !catalog.refresh_domain(&name).await {
                    left.push(name);
                }
            }
            unreachable = left;
            if unreachable.len() < before
                && let Err(e) = catalog.reconcile().await
            {
                tracing::warn!(error = %e, "resuming work on a reopened domain failed; retried at the next start");
            }
        }
    });
}
