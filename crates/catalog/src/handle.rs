//! One data request's hold on one tenant: everything a record operation may touch of it, in
//! one value. Opening it runs the whole access decision once — the tenant picked from the
//! credential, the route resolved, authorization (`core::access`, with the catalog's
//! authority), admission (the tenant's rate and an in-flight slot, which the scope holds until
//! the handle and every clone of its scope are gone) and metering — and, for a write, the
//! pass through the tenant's write gate. Record operations (`records`, `query`, `export`) then
//! talk to the tenant only through the handle: its scope, its placement's engine, the caller's
//! permission per collection (a refusal audited under the request's operation), the query
//! budget of the tenant's tier, and the ids a write touches (journaled while a move runs).

use std::sync::Arc;

use bulkhead_core::access::{DataAction, TenantScope};
use bulkhead_core::error::Error;
use bulkhead_core::permissions::{Action, Permission};
use bulkhead_core::schema::Collection;
use bulkhead_core::{CollectionName, RecordId, TenantId};
use bulkhead_engine::{Engine, QueryBudget};

use crate::moves::WriteTicket;
use crate::{Catalog, Ctx};

pub(crate) struct TenantHandle {
    catalog: Catalog,
    ctx: Ctx,
    op: &'static str,
    scope: TenantScope,
    engine: Arc<dyn Engine>,
    /// A write's pass through the tenant's write gate, held until the handle is dropped.
    ticket: Option<WriteTicket>,
}

impl Catalog {
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
        Ok((permission, self.catalog.collection(collection)?))
    }

    /// `error` as a refusal of this request on `target`, audited.
    pub(crate) fn denied(&self, target: &str, error: Error) -> Error {
        self.catalog
            .denied(&self.ctx, self.op, target, Some(self.scope.tenant()), error)
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
