//! One data request's hold on one tenant: everything a record operation may touch of it, in
//! one value. Opening it runs the whole access decision once — the tenant picked from the
//! credential, the route resolved, authorization (`core::access`, with the catalog's
//! authority), admission (the tenant's rate and an in-flight slot, which the scope holds until
//! the handle and every clone of its scope are gone) and metering — and, for a write, the
//! pass through the tenant's write gate. Record operations (`records`, `query`, `export`) then
//! talk to the tenant only through the handle: its scope, its placement's engine, the caller's
//! permission per collection (a refusal audited under the request's operation), the query
//! budget of the tenant's tier, and the ids a write touches (journaled while a move runs).

use std::collections::HashMap;
use std::sync::Arc;

use bulkhead_core::access::{self, DataAction, TenantRoute, TenantScope};
use bulkhead_core::error::Error;
use bulkhead_core::model::{TenantStatus, WriteState};
use bulkhead_core::permissions::{Action, Permission};
use bulkhead_core::schema::Collection;
use bulkhead_core::{CollectionName, RecordId, TenantId};
use bulkhead_engine::{Engine, QueryBudget};

use crate::moves::WriteTicket;
use crate::usage::Counter;
use crate::{Catalog, Ctx};

/// How often a write held by another server's move re-reads the tenant's route.
const FROZEN_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// Whether resolving a data scope admits a new request (rate, concurrency, metering,
/// platform-admin audit) or continues one already admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Request,
    Continuation,
}

pub(crate) struct TenantHandle {
    catalog: Catalog,
    ctx: Ctx,
    op: &'static str,
    scope: TenantScope,
    engine: Arc<dyn Engine>,
    /// A write's pass through the tenant's write gate, held until the handle is dropped.
    ticket: Option<WriteTicket>,
    /// Definition versions the storage reported for a collection (the schema fence), newer
    /// than the placement's recorded generation gives: a retried write uses them.
    learned: parking_lot::Mutex<HashMap<CollectionName, i64>>,
}

/// How often a write is tried again with the definition its storage reported meanwhile.
const SCHEMA_RETRIES: u32 = 3;

impl Catalog {
    /// Resolves and authorizes the tenant a data request acts on. Denials are audited; so is
    /// every platform-admin access, synchronously, before any data is read or written.
    pub(crate) async fn data_scope(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        action: DataAction,
        op: &str,
        target: &str,
    ) -> Result<TenantScope, Error> {
        Ok(self
            .resolve_data(ctx, named, action, op, target, Admit::Request)
            .await?
            .0)
    }

    /// [`Catalog::data_scope`], with the route the scope was built from.
    pub(crate) async fn resolve_data(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        action: DataAction,
        op: &str,
        target: &str,
        admit: Admit,
    ) -> Result<(TenantScope, Arc<TenantRoute>), Error> {
        let tenant = access::data_tenant(&ctx.principal, named, &ctx.memberships)
            .map_err(|e| self.denied(ctx, op, target, named, e))?;
        let route = self
            .route(&tenant)
            .await
            .map_err(|e| self.denied(ctx, op, target, Some(&tenant), e))?;
        // The tier's policy, read once: its ceiling bounds the grant, its limits admit.
        let policy = self.tier_policy(&route.tier).await?;
        let facts = Catalog::role_facts(ctx, &tenant, policy.ceiling);
        let scope = self
            .inner()
            .authorizer
            .authorize(&ctx.principal, &route, action, facts)
            .map_err(|e| self.denied(ctx, op, target, Some(&tenant), e))?
            .with_connection_cap(policy.limits.max_domain_connections.map(|n| n.get()));
        // The route first: the request's slot then needs no copy of the tenant's id.
        crate::usage::RequestTenant::note_route(&route);
        Catalog::tag_tenant(&tenant);
        if admit == Admit::Continuation {
            return Ok((scope, route));
        }
        let limits = &policy.limits;
        let admitted = (self.inner().rates.admit(&tenant, limits))
            .and_then(|()| self.inner().rates.enter(&tenant, limits));
        let scope = match admitted {
            Ok(Some(slot)) => scope.holding(slot),
            Ok(None) => scope,
            Err(e) => {
                let refused = if e.code == "too_many_concurrent_requests" {
                    Counter::RefusedConcurrency
                } else {
                    Counter::RefusedRate
                };
                self.count(&tenant, &[(refused, 1)]);
                return Err(e);
            }
        };
        match action {
            DataAction::Read => self.count(&tenant, &[(Counter::Requests, 1)]),
            DataAction::Write => {
                self.count(&tenant, &[(Counter::Requests, 1), (Counter::Writes, 1)]);
            }
        }
        if scope.is_platform_admin_access() {
            let event = self.event(
                ctx,
                &format!("admin_data_access.{op}"),
                target,
                Some(&tenant),
                None,
            );
            self.blocking(move |store| store.write(|tx| crate::rows::audit::insert(tx, &event)))
                .await?;
        }
        Ok((scope, route))
    }

    /// The scope of a write, with its pass through the tenant's write gate (held until the
    /// write has finished). The gate is entered before the route is resolved, so a write held
    /// during a move's switch lands on the placement the switch chose.
    ///
    /// With a shared catalog the same holds for moves other servers run: a write waits while
    /// the route it resolved is frozen (within the freeze bound), and journals its ids to the
    /// catalog while the route says the tenant is moving (`moves::shared`).
    pub(crate) async fn write_scope(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        op: &str,
        target: &str,
    ) -> Result<(TenantScope, WriteTicket), Error> {
        self.write_scope_as(ctx, named, op, target, Admit::Request)
            .await
    }

    /// [`Catalog::write_scope`] for the next part of a request already admitted (a bulk
    /// body's next chunk): authorized and routed afresh — so it lands where the tenant is
    /// now, and stops if the tenant was deleted — but not rate-limited or counted again.
    pub(crate) async fn write_scope_as(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        op: &str,
        target: &str,
        admit: Admit,
    ) -> Result<(TenantScope, WriteTicket), Error> {
        let tenant = access::data_tenant(&ctx.principal, named, &ctx.memberships)
            .map_err(|e| self.denied(ctx, op, target, named, e))?;
        self.check_lease()?;
        let wait = self.inner().options.moves.freeze_wait;
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut ticket = self
                .inner()
                .moves
                .gates
                .enter(&tenant, left)
                .await
                .map_err(|_| crate::moves::tenant_moving(wait))?;
            let (scope, route) = self
                .resolve_data(ctx, named, DataAction::Write, op, target, admit)
                .await?;
            if self.is_shared() && !ticket.tracked_here() {
                if route.placement.write_state == WriteState::Frozen {
                    drop(ticket);
                    if std::time::Instant::now() >= deadline {
                        return Err(crate::moves::tenant_moving(wait));
                    }
                    tokio::time::sleep(FROZEN_POLL).await;
                    continue;
                }
                if route.status == TenantStatus::Moving {
                    ticket.journal_remotely(Box::new(crate::moves::CatalogJournal {
                        catalog: self.clone(),
                        tenant: tenant.clone(),
                    }));
                }
            }
            return Ok((scope, ticket));
        }
    }

    /// The caller's permission on `collection` for `action`; a refusal is audited.
    pub(crate) fn permission(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        collection: &CollectionName,
        action: Action,
        op: &str,
    ) -> Result<Permission, Error> {
        let permission = scope.permission(collection);
        permission
            .require(action)
            .map_err(|e| self.denied(ctx, op, collection.as_str(), Some(scope.tenant()), e))?;
        Ok(permission)
    }

    /// Opens the tenant the caller reads for `op` (on `target`, for the audit).
    pub(crate) async fn open_read(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        op: &'static str,
        target: &str,
    ) -> Result<TenantHandle, Error> {
        let scope = self
            .data_scope(ctx, named, DataAction::Read, op, target)
            .await?;
        self.handle(ctx, op, scope, None)
    }

    /// Opens the tenant the caller writes for `op`: authorized for writing and through the
    /// tenant's write gate (so a move's switch waits for it, or it lands after the switch).
    pub(crate) async fn open_write(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        op: &'static str,
        target: &str,
    ) -> Result<TenantHandle, Error> {
        let (scope, ticket) = self.write_scope(ctx, named, op, target).await?;
        self.handle(ctx, op, scope, Some(ticket))
    }

    fn handle(
        &self,
        ctx: &Ctx,
        op: &'static str,
        scope: TenantScope,
        ticket: Option<WriteTicket>,
    ) -> Result<TenantHandle, Error> {
        let engine = self.engine(&scope.placement().domain)?;
        Ok(TenantHandle {
            catalog: self.clone(),
            ctx: ctx.clone(),
            op,
            scope,
            engine,
            ticket,
            learned: Default::default(),
        })
    }
}

impl TenantHandle {
    pub(crate) fn scope(&self) -> &TenantScope {
        &self.scope
    }

    pub(crate) fn tenant(&self) -> &TenantId {
        self.scope.tenant()
    }

    /// The engine of the tenant's placement.
    pub(crate) fn engine(&self) -> &dyn Engine {
        self.engine.as_ref()
    }

    /// The caller's permission for `action` on `collection`, with the collection; a refusal
    /// is audited.
    pub(crate) fn allow(
        &self,
        collection: &CollectionName,
        action: Action,
    ) -> Result<(Permission, Arc<Collection>), Error> {
        let permission =
            self.catalog
                .permission(&self.ctx, &self.scope, collection, action, self.op)?;
        Ok((permission, self.definition(collection)?))
    }

    /// The definition of `collection` this tenant's storage has: its placement's generation,
    /// or what the storage reported to a write of this request.
    pub(crate) fn definition(&self, collection: &CollectionName) -> Result<Arc<Collection>, Error> {
        let learned = self.learned.lock().get(collection).copied();
        self.catalog
            .definition(collection, self.scope.placement().schema_version, learned)
    }

    /// A body refused by `used` (the definition this tenant's storage has) that names a field
    /// only a newer definition has: the change is still being rolled out to this tenant, so
    /// the answer is `503 schema_rolling_out` (retry), not a `400`.
    pub(crate) fn not_yet(
        &self,
        used: &Collection,
        body: &serde_json::Value,
        error: Error,
    ) -> Error {
        let Ok(latest) = self.catalog.collection(&used.name) else {
            return error;
        };
        if error.kind != bulkhead_core::error::ErrorKind::BadRequest
            || latest.version <= used.version
        {
            return error;
        }
        let newer = body.as_object().and_then(|object| {
            object.keys().find(|key| {
                !used.fields.keys().any(|f| f.as_str() == key.as_str())
                    && latest.fields.keys().any(|f| f.as_str() == key.as_str())
            })
        });
        match newer {
            Some(field) => Error::new(
                bulkhead_core::error::ErrorKind::Unavailable,
                "schema_rolling_out",
                format!(
                    "field '{field}' of '{}' is still being added to this tenant's storage; retry shortly (Retry-After)",
                    used.name
                ),
            ),
            None => error,
        }
    }

    /// An engine's answer to a write on `collection`; a schema fence that moved is remembered,
    /// so [`TenantHandle::fenced`] runs the write again with the storage's definition.
    pub(crate) fn written<T>(
        &self,
        collection: &CollectionName,
        result: bulkhead_engine::EngineResult<T>,
    ) -> Result<T, Error> {
        match &result {
            Ok(_) => self
                .catalog
                .count(self.scope.tenant(), &[(Counter::RecordsWritten, 1)]),
            Err(bulkhead_engine::EngineError::SchemaMoved { stored }) => {
                self.learned.lock().insert(collection.clone(), *stored);
            }
            Err(_) => {}
        }
        Ok(result?)
    }

    /// Runs `write` (choose the definition, validate, write) until the storage takes it: a
    /// write refused by the schema fence because the collection's table moved to a newer
    /// definition meanwhile runs again with that definition, at most [`SCHEMA_RETRIES`] times;
    /// a write needing a collection or field the placement does not have yet brings the
    /// placement up first ([`Catalog::roll_out_first`]).
    pub(crate) async fn fenced<T, F, Fut>(
        &self,
        collection: &CollectionName,
        write: F,
    ) -> Result<T, Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let before = self.learned.lock().get(collection).copied();
            match write().await {
                Err(e) if e.code == "schema_rolling_out" && attempt < SCHEMA_RETRIES => {
                    if self.learned.lock().get(collection).copied() != before
                        || self.caught_up(collection).await
                    {
                        continue;
                    }
                    // Not there yet: this tenant's placement goes first, within a bound.
                    if self.catalog.roll_out_first(&self.scope).await
                        && self.caught_up(collection).await
                    {
                        continue;
                    }
                    return Err(e);
                }
                other => return other,
            }
        }
    }

    /// Whether the ledger already records this placement at a newer generation than its
    /// cached route says (a rollout recorded it a moment ago, and the route cache has not
    /// heard yet): the definition of that generation is then remembered for `collection`,
    /// so the write runs again with it. Read uncached; only on the refusal path.
    async fn caught_up(&self, collection: &CollectionName) -> bool {
        let placement = self.scope.placement();
        let (tenant, epoch, cached) = (
            self.scope.tenant().clone(),
            placement.epoch,
            placement.schema_version,
        );
        let stored = self
            .catalog
            .blocking(move |store| {
                store.read(|tx| crate::rows::tenants::placement_generation(tx, &tenant, epoch))
            })
            .await;
        let Ok(Some(generation)) = stored else {
            return false;
        };
        if generation <= cached {
            return false;
        }
        let Ok(newer) = self.catalog.definition(collection, generation, None) else {
            return false;
        };
        self.learned
            .lock()
            .insert(collection.clone(), newer.version);
        self.catalog.inner().routes.forget(self.scope.tenant());
        true
    }

    /// `error` as a refusal of this request on `target`, audited.
    pub(crate) fn denied(&self, target: &str, error: Error) -> Error {
        self.catalog
            .denied(&self.ctx, self.op, target, Some(self.scope.tenant()), error)
    }

    /// Runs one query's engine call and meters it: the rows it examined (which the engine
    /// adds to `budget`), its time, and a refusal for going over the budget.
    pub(crate) async fn metered<T>(
        &self,
        budget: &QueryBudget,
        query: impl std::future::Future<Output = bulkhead_engine::EngineResult<T>>,
    ) -> Result<T, Error> {
        let started = std::time::Instant::now();
        let before = budget.examined.get();
        let result = tracing::Instrument::instrument(
            query,
            crate::step_span(|| tracing::info_span!("engine", op = "query")),
        )
        .await;
        let tenant = self.scope.tenant();
        self.catalog
            .count_query(tenant, budget.examined.get() - before, started.elapsed());
        match result {
            Ok(found) => Ok(found),
            Err(e @ bulkhead_engine::EngineError::TooExpensive(_)) => {
                self.catalog.count(tenant, &[(Counter::RefusedBudget, 1)]);
                Err(e.into())
            }
            Err(e) => Err(self.read_failed(e).await),
        }
    }

    /// A read's engine error, unless the tenant's life ended meanwhile: a read racing the
    /// deletion (whose purge may remove the storage under it) answers `404 tenant_not_found`,
    /// as a read arriving a moment later does, not an internal error.
    pub(crate) async fn read_failed(&self, error: bulkhead_engine::EngineError) -> Error {
        match self.catalog.still_current(&self.scope).await {
            Err(ended) => ended,
            Ok(()) => error.into(),
        }
    }

    /// How much work one query may do: the tenant's tier's budget.
    pub(crate) async fn budget(&self) -> Result<QueryBudget, Error> {
        self.catalog.budget(&self.scope).await
    }

    /// Reports the ids a write is about to touch (a move journals them); an error means the
    /// write must not run.
    pub(crate) async fn before(
        &self,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<(), Error> {
        self.ticket()?.before(collection, std::iter::once(id)).await
    }

    /// Reports the ids a write touched, once it has finished (whether or not it succeeded).
    pub(crate) async fn after(&self, collection: &CollectionName, id: &RecordId) {
        if let Some(ticket) = &self.ticket {
            ticket.after(collection, std::iter::once(id)).await;
        }
    }

    fn ticket(&self) -> Result<&WriteTicket, Error> {
        self.ticket.as_ref().ok_or_else(|| {
            tracing::error!(op = self.op, "a write through a handle opened for reading");
            Error::internal()
        })
    }
}

/// The access authority, for authorizing data requests only (`access::authorize_data`). Only
/// this room reads the authority inside.
pub(crate) struct Authorizer(access::AccessAuthority);

impl Authorizer {
    pub(crate) fn new(authority: access::AccessAuthority) -> Self {
        Authorizer(authority)
    }

    fn authorize(
        &self,
        principal: &access::VerifiedPrincipal,
        route: &TenantRoute,
        action: DataAction,
        facts: access::RoleFacts,
    ) -> Result<TenantScope, Error> {
        access::authorize_data(&self.0, principal, route, action, facts)
    }
}
