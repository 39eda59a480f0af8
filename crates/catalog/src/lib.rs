//! The control plane: tenants, tiers, domains, the routing table, collections, keys, audit,
//! and the transport-agnostic operations the HTTP layer calls (one function per endpoint).
//!
//! Invariants kept here: every data operation resolves its tenant through the routing table
//! and reaches an engine only with a `TenantScope` from the access layer (1); a foreign tenant
//! looks exactly like a missing one (2); every control-plane change, every denial and every
//! platform-admin data access is audited (5).

mod audit;
mod auth_failures;
mod background;
mod backup;
mod bulk;
mod caches;
mod collections;
mod cost;
mod curator;
mod deletion;
mod doctor;
mod domains;
mod door;
mod export;
mod handle;
mod health;
mod identity;
mod keys;
mod members;
mod moves;
mod observe;
mod options;
mod paced;
mod placement;
mod probes;
mod query;
mod quota;
mod rate;
mod records;
mod restore;
mod rollout;
mod rows;
mod schema_lock;
mod spares;
mod steps;
mod store;
mod sync;
mod tenants;
mod tiers;
mod tokens;
mod usage;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;

use bulkhead_core::access::{self, Membership, StoredKey, TenantRoute, VerifiedPrincipal};
use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::model::{DomainSpec, Isolation, TierLimits, TierSpec};
use bulkhead_core::time::Clock;
use bulkhead_core::{DomainName, KeyId, TenantId, TierName};
use bulkhead_engine::Engine;

pub use audit::{AuditEvent, AuditQueue};
pub use backup::file_sha256;
pub use bulk::{BULK_CHUNK_BYTES, BulkResults, BulkSession};
pub use curator::{Curator, Life, Retained, life_dir};
pub use domains::EngineFactory;
pub use door::{Door, WeakDoor, append_audit, audit_after, list_cursor, list_position, page_limit};
pub use export::ExportCursor;
pub use identity::{ExternalIdentity, IdentityProviders};
pub use moves::MoveSettings;
pub use observe::{EngineFigures, OTHER, Observed, REFUSAL_KINDS, TenantFigures};
pub use options::CatalogOptions;
pub use paced::DomainPace;
pub use query::ListParams;
pub use records::{UpdateKind, parse_if_match};
pub use steps::{step_span, trace_steps};
pub use store::{Location, StoreError};
pub use tenants::TenantUpdate;
pub use usage::{BodyBytes, RequestTenant};
pub use watch::{REAUTH_EVERY, WatchEvent, WatchSettings, Watcher};

/// Who is asking, and the id of the request (carried into audit records and logs).
#[derive(Debug, Clone)]
pub struct Ctx {
    pub principal: VerifiedPrincipal,
    pub request_id: String,
    /// A user's memberships, or a tenant token's parent's role in its tenant: read from the
    /// catalog for this request (never cached, so removals apply at once). Empty for keys.
    pub memberships: Arc<Vec<Membership>>,
    /// The credential as presented, kept so a long answer (an export stream) can check it
    /// again as it goes: revoked, expired, removed or of a deleted tenant, it stops.
    pub(crate) credential: Option<Credential>,
    /// The client's address, when the server knows it: recorded with the request's denials.
    pub(crate) source: Option<Arc<str>>,
}

/// A presented credential, kept in memory for the length of one request; never printed.
#[derive(Clone)]
pub(crate) struct Credential(Arc<str>);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(redacted)")
    }
}

impl Credential {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl Ctx {
    /// A context for a principal that carries its own rights (keys, the bootstrap admin).
    pub fn for_key(principal: VerifiedPrincipal, request_id: &str) -> Ctx {
        Ctx {
            principal,
            request_id: request_id.to_owned(),
            memberships: Arc::new(Vec::new()),
            credential: None,
            source: None,
        }
    }
}

/// What a tier says about requests: limits and the permission ceiling.
#[derive(Debug, Clone, Default)]
pub(crate) struct TierPolicy {
    pub limits: TierLimits,
    pub ceiling: bulkhead_core::permissions::Ceiling,
}

/// The engines the binary opens itself before the catalog (the `local` domain), with their
/// specs. Their specs are written to the catalog at every start; domains registered at
/// runtime are opened through [`EngineFactory`] instead.
#[derive(Clone, Default)]
pub struct Engines {
    by_domain: HashMap<DomainName, (DomainSpec, Arc<dyn Engine>)>,
}

impl Engines {
    pub fn register(&mut self, name: DomainName, spec: DomainSpec, engine: Arc<dyn Engine>) {
        self.by_domain.insert(name, (spec, engine));
    }

    /// The pre-registered engines only; [`Catalog::shutdown`] also closes those added later.
    pub fn all(&self) -> impl Iterator<Item = (&DomainName, &Arc<dyn Engine>)> {
        self.by_domain
            .iter()
            .map(|(name, (_, engine))| (name, engine))
    }
}

/// A routing-table entry as cached in memory, shared with the requests that read it.
pub(crate) type RouteEntry = TenantRoute;

/// Handle to the catalog; cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub store: Arc<store::Store>,
    pub clock: Arc<dyn Clock>,
    /// The engine serving each domain now (pre-registered and runtime-added).
    pub engines: domains::LiveEngines,
    /// The engines the binary registered before opening the catalog, with their specs.
    pub preconfigured: Engines,
    pub options: CatalogOptions,
    /// Invalidations of the caches below (see [`caches`]).
    pub fresh: caches::Freshness,
    /// The routing table's cache. Entries only move forward in epoch (see `publish_route`).
    pub routes: caches::Cache<TenantId, Arc<RouteEntry>>,
    pub collections: caches::Slot<Arc<collections::Definitions>>,
    /// Verified keys by id; revocation updates it in the same step as the catalog row.
    pub keys: caches::Cache<KeyId, Arc<StoredKey>>,
    /// Serialises provisioning and schema rollouts, so every placement ends up with every
    /// collection at its latest version. Taken through [`Catalog::lock_schema`], which also
    /// takes the catalog-wide lock when servers share the catalog.
    pub schema_lock: schema_lock::SchemaLock,
    /// Serialises `PUT /v1/domains/{name}` (taken before `schema_lock`, never after it).
    pub domain_lock: tokio::sync::Mutex<()>,
    pub audit: AuditQueue,
    /// Limits and ceiling of each tier, read once and dropped whenever a tier changes.
    pub tier_policy: caches::Cache<TierName, TierPolicy>,
    /// Users and their memberships by `(iss, sub)`; cleared by every change to them.
    pub users: caches::Cache<(String, String), Arc<identity::CachedUser>>,
    /// The key tenant tokens are signed with (see [`Catalog::token_secret`]).
    pub token_secret: std::sync::OnceLock<Arc<Vec<u8>>>,
    /// The runtime the catalog was opened on (requests run there at normal priority; live
    /// moves run on the low-priority background runtime and come back here for their freeze).
    pub main: tokio::runtime::Handle,
    /// Write gates and the moves this server runs.
    pub moves: moves::Registry,
    /// Each tenant's request rate on this server (its tier's `requests_per_second`).
    pub rates: rate::RateLimits,
    /// Usage counts not yet added to the catalog, and each tenant's since start.
    pub meter: usage::Meter,
    /// Each tenant life's record counter, for storage quotas (`quota`).
    pub quotas: quota::Quotas,
    /// Whether usage is metered (on unless a benchmark turns it off to measure its cost).
    pub metering: std::sync::atomic::AtomicBool,
    /// The tenants with metrics series of their own (`observe`).
    pub observed: observe::Chosen,
    /// When this server last caught up with a shared catalog's changes (µs since the epoch).
    pub synced_at: std::sync::atomic::AtomicI64,
    /// Wakes the background rollout retrier (`rollout`).
    pub rollout_wake: Arc<tokio::sync::Notify>,
    /// The pace of the rollout pass running on this server, if one is.
    pub rollout_pace: parking_lot::Mutex<Option<bulkhead_api::MovePace>>,
    /// Wakes the ready pool's keeper (`spares`).
    pub spares_wake: Arc<tokio::sync::Notify>,
    /// Failed authentications being counted per source and reason.
    pub auth_failures: auth_failures::AuthFailures,
    /// Not-found answers on record ids being counted per principal (`probes`).
    pub probes: probes::Probes,
    /// Recent data requests' latency per domain and file, which paced work (a move's copy)
    /// watches.
    pub latency: Arc<bulkhead_pace::Board>,
    /// The change feeds watched on this server (`watch`).
    pub feeds: watch::Feeds,
    /// This server's backups, and the fence storage removals wait at while one runs.
    pub backups: backup::Backups,
    /// The process's access authority, split by room: each wrapper's authority can be used
    /// only by the room that defines it (its field is private there), for that room's one
    /// purpose — verifying credentials (`identity`), authorizing data requests (`handle`),
    /// a recorded move's scopes and clean-up (`moves`), a deletion's purge (`deletion`), an
    /// orphan's removal (`doctor`).
    pub verifier: identity::Verifier,
    pub authorizer: handle::Authorizer,
    pub move_authority: moves::MoveAuthority,
    pub deletion_authority: deletion::DeletionAuthority,
    pub retention_authority: curator::RetentionAuthority,
    pub orphan_authority: doctor::OrphanAuthority,
}

impl Catalog {
    /// Opens (creating if needed) the catalog at `location`, seeds default tiers and registers the
    /// pre-registered engines' domains, opens the other stored domains through the engine
    /// factory (one that fails stays unavailable), then finishes any provisioning or deletion
    /// a crash interrupted.
    /// `authority` is the process's [`access::AccessAuthority`] (the binary claims it once and
    /// hands it over): the catalog alone turns what it looks up into principals and scopes.
    pub async fn open(
        location: &Location,
        clock: Arc<dyn Clock>,
        engines: Engines,
        options: CatalogOptions,
        authority: access::AccessAuthority,
    ) -> Result<Catalog, Error> {
        let location = location.clone();
        let fsync = options.fsync;
        let handle = tokio::runtime::Handle::current();
        let store = Arc::new(
            tokio::task::spawn_blocking(move || store::Store::open(&location, fsync, handle))
                .await
                .map_err(|e| {
                    Error::internal().with_message(format!("catalog open task failed: {e}"))
                })??,
        );
        let schema = store.schema();
        if schema.applied.is_empty() {
            tracing::info!(version = schema.version, "catalog schema is current");
        } else {
            tracing::info!(
                from = schema.found,
                to = schema.version,
                applied = ?schema.applied,
                "catalog schema migrated"
            );
        }
        {
            let store = Arc::clone(&store);
            tokio::task::spawn_blocking(move || audit::chain::link_existing(&store))
                .await
                .map_err(|e| Error::internal().with_message(format!("audit link task: {e}")))??;
        }
        let audit = audit::spawn_writer(Arc::clone(&store));
        let fresh = caches::Freshness::default();
        let watch = options.watch;
        let started_at = clock.now().as_micros();
        let catalog = Catalog {
            inner: Arc::new(Inner {
                store,
                clock,
                engines: domains::LiveEngines::new(&engines),
                preconfigured: engines,
                options,
                routes: fresh.map(),
                collections: fresh.slot(Arc::default()),
                keys: fresh.map(),
                schema_lock: schema_lock::SchemaLock::default(),
                main: tokio::runtime::Handle::current(),
                domain_lock: tokio::sync::Mutex::new(()),
                audit,
                tier_policy: fresh.map(),
                rates: rate::RateLimits::default(),
                meter: usage::Meter::default(),
                quotas: quota::Quotas::default(),
                metering: std::sync::atomic::AtomicBool::new(true),
                observed: observe::Chosen::default(),
                synced_at: std::sync::atomic::AtomicI64::new(started_at),
                users: fresh.map(),
                token_secret: std::sync::OnceLock::new(),
                moves: moves::Registry::default(),
                auth_failures: auth_failures::AuthFailures::default(),
                probes: probes::Probes::default(),
                latency: Arc::default(),
                feeds: watch::Feeds::new(watch),
                backups: backup::Backups::default(),
                rollout_wake: Arc::default(),
                rollout_pace: parking_lot::Mutex::new(None),
                spares_wake: Arc::default(),
                fresh,
                verifier: identity::Verifier::new(authority.clone()),
                authorizer: handle::Authorizer::new(authority.clone()),
                move_authority: moves::MoveAuthority::new(authority.clone()),
                deletion_authority: deletion::DeletionAuthority::new(authority.clone()),
                retention_authority: curator::RetentionAuthority::new(authority.clone()),
                orphan_authority: doctor::OrphanAuthority::new(authority),
            }),
        };
        catalog.seed().await?;
        let changes = sync::start(&catalog).await?;
        let unreachable = catalog.open_stored_domains().await?;
        catalog.load_collections().await?;
        catalog.reconcile().await?;
        catalog.recover_moves().await?;
        domains::spawn_reopener(Arc::downgrade(&catalog.inner), unreachable);
        if let Some(changes) = changes {
            changes.run();
        }
        rollout::spawn(
            Arc::downgrade(&catalog.inner),
            Arc::clone(&catalog.inner.rollout_wake),
        );
        spares::spawn(
            Arc::downgrade(&catalog.inner),
            Arc::clone(&catalog.inner.spares_wake),
        );
        usage::spawn_flusher(Arc::downgrade(&catalog.inner));
        if let Some(every) = catalog.inner.options.storage_sample_every {
            usage::spawn_sampler(Arc::downgrade(&catalog.inner), every);
        }
        auth_failures::spawn_flusher(Arc::downgrade(&catalog.inner));
        if let Some(keep) = catalog.inner.options.audit_retention {
            audit::spawn_retention(Arc::downgrade(&catalog.inner), keep);
        }
        if let Some(every) = catalog.inner.options.audit_watch_every {
            audit::chain::spawn_watch(Arc::downgrade(&catalog.inner), every);
        }
        if catalog.is_shared() {
            deletion::spawn_sweeper(Arc::downgrade(&catalog.inner));
        }
        Ok(catalog)
    }

    /// The door security operations reach the catalog's storage and audit through (`door`).
    pub fn door(&self) -> Door {
        Door::new(self.clone())
    }

    /// The door the retention job reaches tenant records through (`curator`).
    pub fn curator(&self) -> Curator {
        Curator::new(self.clone())
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// True when other servers may share this catalog.
    pub fn is_shared(&self) -> bool {
        self.inner.store.postgres().is_some()
    }

    /// Take before reading what a cache fill will store (see [`caches`]).
    pub(crate) fn cache_ticket(&self) -> caches::Ticket {
        self.inner.fresh.ticket()
    }

    /// Takes the schema lock: this server's, then (shared catalog) the catalog-wide one,
    /// after which the collections are re-read so work done under the lock sees every
    /// change another server committed.
    pub(crate) async fn lock_schema(&self) -> Result<schema_lock::SchemaGuard<'_>, Error> {
        let local = self.inner.schema_lock.lock_counted().await;
        let shared = match self.inner.store.postgres() {
            Some(pg) => {
                let guard = pg.lock_schema().await?;
                self.load_collections().await?;
                Some(guard)
            }
            None => None,
        };
        Ok(schema_lock::SchemaGuard::new(shared, local))
    }

    /// Whether someone waits for the schema lock on this server right now.
    pub(crate) fn schema_wanted(&self) -> bool {
        self.inner.schema_lock.wanted()
    }

    /// Runs catalog I/O on the blocking pool of the caller's runtime: background work
    /// ([`background`]) writes the catalog at its own priority. Run on the server's runtime,
    /// a rollout's line in the ledger per placement (a catalog commit each) made its
    /// neighbours' p99 during a 10,000-silo rollout worse (BENCHMARKS.md); a step
    /// starved for a CPU is raised to normal priority with its catalog write ([`background::Lane`]).
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&store::Store) -> store::StoreResult<T> + Send + 'static,
    ) -> Result<T, Error> {
        let store = Arc::clone(&self.inner.store);
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(result) => result.map_err(Error::from),
            Err(e) => {
                tracing::error!(error = %e, "catalog task failed");
                Err(Error::internal())
            }
        }
    }

    async fn seed(&self) -> Result<(), Error> {
        let now = self.inner.clock.now();
        let domains: Vec<(DomainName, DomainSpec)> = self
            .inner
            .preconfigured
            .by_domain
            .iter()
            .map(|(n, (s, _))| (n.clone(), s.clone().with_engine_defaults()))
            .collect();
        self.blocking(move |store| {
            store.write(|tx| {
                for (name, isolation, price) in
                    [("free", Isolation::Pool, 0), ("standard", Isolation::Bridge, 49), ("premium", Isolation::Silo, 499)]
                {
                    let monthly_price = bulkhead_core::money::Amount::of(price.into()).map_err(store::malformed)?;
                    let spec = TierSpec { monthly_price, ..TierSpec::new(isolation) };
                    tx.execute(
                        "INSERT INTO tiers (name, spec, updated_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
                        store::params![name, serde_json::to_string(&spec).map_err(store::malformed)?, now.as_micros()],
                    )?;
                }
                for (name, spec) in &domains {
                    tx.execute(
                        "INSERT INTO domains (name, spec) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET spec = excluded.spec",
                        store::params![name.as_str(), serde_json::to_string(spec).map_err(store::malformed)?],
                    )?;
                }
                Ok(())
            })
        })
        .await
    }

    /// True until [`Catalog::mark_initialized`] has run once for this catalog.
    pub async fn is_initialized(&self) -> Result<bool, Error> {
        self.blocking(|store| store.read(|tx| Ok(store::get_meta(tx, "initialized")?.is_some())))
            .await
    }

    pub async fn mark_initialized(&self) -> Result<(), Error> {
        self.blocking(|store| store.write(|tx| store::set_meta(tx, "initialized", "1")))
            .await
    }

    /// Verifies a bearer credential — an API key, a tenant token or a JWT from a configured
    /// issuer — and returns who is calling. Failures are audited and all look the same.
    pub async fn authenticate(&self, token: Option<&str>, request_id: &str) -> Result<Ctx, Error> {
        self.authenticate_from(token, request_id, None).await
    }

    /// [`Catalog::authenticate`] for a request from `source` (the client's address): its
    /// failures are audited per source, aggregated (`auth_failures`).
    pub async fn authenticate_from(
        &self,
        token: Option<&str>,
        request_id: &str,
        source: Option<Arc<str>>,
    ) -> Result<Ctx, Error> {
        let unauthenticated = |code: &'static str, msg: &str| {
            Error::new(ErrorKind::Unauthenticated, code, msg.to_owned())
        };
        let Some(token) = token else {
            return Err(unauthenticated(
                "missing_credentials",
                "send a credential as 'Authorization: Bearer <key>'",
            ));
        };
        // A key this server has cached whose secret matches is that key: the bootstrap
        // key's check below (one more SHA-256 of the whole token) is for everything else.
        // (Only a bootstrap key set to an existing key's own token would be told apart.)
        let known = bulkhead_core::keys::parse_token(token).and_then(|(id, secret)| {
            let stored = self.inner().keys.get(&id)?;
            let verified = self
                .inner
                .verifier
                .key(secret, &stored, self.inner.clock.now());
            verified.ok().map(|p| Ctx::for_key(p, request_id))
        });
        let bootstrap = self.inner.options.bootstrap_admin_hash.as_deref();
        if known.is_none()
            && let Some(principal) =
                bootstrap.and_then(|hash| self.inner.verifier.bootstrap(token, hash))
        {
            return Ok(Ctx::for_key(principal, request_id));
        }
        let identity = self.inner.options.identity.clone();
        let outcome = if let Some(ctx) = known {
            Ok(ctx)
        } else if let Some((id, secret)) = bulkhead_core::keys::parse_token(token) {
            match self.stored_key(&id).await? {
                Some(stored) => self
                    .inner
                    .verifier
                    .key(secret, &stored, self.inner.clock.now())
                    .map(|p| Ctx::for_key(p, request_id))
                    .map_err(|r| r.to_string()),
                None => Err("unknown key".to_owned()),
            }
        } else if bulkhead_core::tokens::looks_like_token(token) {
            self.authenticate_token(token).await
        } else if identity.is_some_and(|i| i.accepts(token)) {
            self.authenticate_user(token).await
        } else {
            Err("not a Bulkhead key, tenant token or JWT of a configured issuer".to_owned())
        };
        match outcome {
            Ok(mut ctx) => {
                ctx.request_id = request_id.to_owned();
                ctx.credential = Some(Credential(Arc::from(token)));
                ctx.source = source;
                Ok(ctx)
            }
            Err(why) => {
                self.audit_auth_failure(source.as_deref().unwrap_or("unknown"), &why, request_id);
                Err(unauthenticated(
                    "invalid_credentials",
                    "the credential is not valid",
                ))
            }
        }
    }

    /// The request's credential checked again, for work that runs on after the request was
    /// let in (an export's later pages, a bulk body's later chunks): revoked, expired, of a
    /// member removed or of a deleted life, it fails now as a new request would. A context
    /// built in process, without a presented credential, stands as it is.
    pub(crate) async fn reauthenticate(&self, ctx: &Ctx) -> Result<Ctx, Error> {
        match &ctx.credential {
            Some(credential) => {
                self.authenticate_from(
                    Some(credential.expose()),
                    &ctx.request_id,
                    ctx.source.clone(),
                )
                .await
            }
            None => Ok(ctx.clone()),
        }
    }

    /// Queues an audit record of a denied request.
    #[allow(clippy::too_many_arguments)]
    pub fn audit_denied(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        tenant: Option<&TenantId>,
        code: &str,
        request_id: &str,
        detail: Option<String>,
    ) {
        self.inner.audit.record(AuditEvent {
            at: self.inner.clock.now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            tenant: tenant.cloned(),
            outcome: format!("denied:{code}"),
            request_id: request_id.to_owned(),
            detail,
        });
    }

    /// Audits `err` as a denial when it is one (authorization, not-found on a named tenant),
    /// and passes it on unchanged.
    pub(crate) fn denied(
        &self,
        ctx: &Ctx,
        action: &str,
        target: &str,
        tenant: Option<&TenantId>,
        err: Error,
    ) -> Error {
        if matches!(
            err.kind,
            ErrorKind::Forbidden | ErrorKind::NotFound | ErrorKind::Unauthenticated
        ) {
            self.inner.audit.record_from(
                AuditEvent {
                    at: self.inner.clock.now(),
                    actor: ctx.principal.actor().to_owned(),
                    action: action.to_owned(),
                    target: target.to_owned(),
                    tenant: tenant.cloned(),
                    outcome: format!("denied:{}", err.code),
                    request_id: ctx.request_id.clone(),
                    detail: None,
                },
                ctx.source.clone(),
            );
        }
        err
    }

    /// Names the tenant on the current request span, for logs.
    pub(crate) fn tag_tenant(tenant: &TenantId) {
        if usage::RequestTenant::first_tag() {
            tracing::Span::current().record("tenant", tenant.as_str());
        }
        usage::RequestTenant::note(tenant);
    }

    pub(crate) fn event(
        &self,
        ctx: &Ctx,
        action: &str,
        target: &str,
        tenant: Option<&TenantId>,
        detail: Option<String>,
    ) -> AuditEvent {
        AuditEvent {
            at: self.inner.clock.now(),
            actor: ctx.principal.actor().to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            tenant: tenant.cloned(),
            outcome: "ok".into(),
            request_id: ctx.request_id.clone(),
            detail,
        }
    }

    /// The audit log, oldest first, optionally for one tenant. Flushes queued events first.
    pub async fn audit_log(
        &self,
        tenant: Option<TenantId>,
    ) -> Result<Vec<bulkhead_api::AuditEntry>, Error> {
        self.flush_audit().await;
        self.blocking(move |store| {
            store.read(|tx| crate::rows::audit::read_all(tx, tenant.as_ref()))
        })
        .await
    }

    /// Waits until every audit event queued so far is committed.
    pub async fn flush_audit(&self) {
        self.inner.audit.flush().await;
    }

    /// Drains the audit queue and the usage counts, closes engines and checkpoints the catalog.
    pub async fn shutdown(&self) {
        self.flush_auth_failures();
        self.flush_audit().await;
        self.flush_usage().await;
        self.leave().await;
        for (_, engine) in self.inner.engines.snapshot() {
            engine.shutdown().await;
        }
        if let Err(e) = self.blocking(|store| store.checkpoint()).await {
            tracing::warn!(error = %e, "catalog checkpoint at shutdown failed");
        }
    }

    /// The engine serving `domain`, or `503 domain_unavailable`.
    pub(crate) fn engine(&self, domain: &DomainName) -> Result<Arc<dyn Engine>, Error> {
        self.inner.engines.get(domain)
    }
}
