//! The door through which crates built on the catalog (security operations, in
//! `bulkhead-secops`) reach what they share with it: the catalog's storage, control-plane
//! authorization, the audit log and the listings' cursors. Nothing here reaches tenant data:
//! that goes through `handle` (requests) or `curator` (retention) only.

use std::sync::{Arc, Weak};

use bulkhead_api::AuditEntry;
use bulkhead_core::TenantId;
use bulkhead_core::access::ControlAction;
use bulkhead_core::error::Error;
use bulkhead_core::time::Timestamp;

use crate::rows::audit::AuditEvent;
use crate::store::{Store, StoreResult, Tx};
use crate::{Catalog, Ctx, Inner};

/// See the module documentation.
#[derive(Clone)]
pub struct Door {
    catalog: Catalog,
}

/// A [`Door`] that does not keep the catalog open: background tasks hold one and stop once
/// [`WeakDoor::upgrade`] finds the catalog gone.
#[derive(Clone)]
pub struct WeakDoor(Weak<Inner>);

impl WeakDoor {
    pub fn upgrade(&self) -> Option<Door> {
        self.0.upgrade().map(|inner| Door {
            catalog: Catalog { inner },
        })
    }
}

impl Door {
    pub(crate) fn new(catalog: Catalog) -> Self {
        Door { catalog }
    }

    pub fn downgrade(&self) -> WeakDoor {
        WeakDoor(Arc::downgrade(&self.catalog.inner))
    }

    pub fn now(&self) -> Timestamp {
        self.catalog.inner().clock.now()
    }

    /// Checks that `ctx` may perform `action`; a refusal is audited as `op` on `target`.
    pub fn authorize(
        &self,
        ctx: &Ctx,
        action: ControlAction,
        op: &str,
        target: &str,
        tenant: Option<&TenantId>,
    ) -> Result<(), Error> {
        self.catalog.authorize(ctx, action, op, target, tenant)
    }

    /// The audit event of `ctx` doing `action` on `target` (for [`append_audit`]).
    pub fn event(
        &self,
        ctx: &Ctx,
        action: &str,
        target: &str,
        tenant: Option<&TenantId>,
        detail: Option<String>,
    ) -> AuditEvent {
        self.catalog.event(ctx, action, target, tenant, detail)
    }

    /// Runs `f` on the catalog's storage, on the blocking pool.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> StoreResult<T> + Send + 'static,
    ) -> Result<T, Error> {
        self.catalog.blocking(f).await
    }
}

/// Appends `event` to the audit log inside the caller's transaction (linked into the hash
/// chain there).
pub fn append_audit(tx: &dyn Tx, event: &AuditEvent) -> StoreResult<()> {
    crate::rows::audit::insert(tx, event)
}

/// Up to `limit` audit entries after position `after`, oldest first.
pub fn audit_after(tx: &dyn Tx, after: i64, limit: u32) -> StoreResult<Vec<AuditEntry>> {
    crate::rows::audit::read_after(tx, after, None, limit)
}

/// A listing's cursor for `position` (`kind` names the listing).
pub fn list_cursor(kind: &str, position: &str) -> String {
    crate::rows::paging::list_cursor(kind, position)
}

/// The position in a cursor [`list_cursor`] made for `kind`, or `400 invalid_cursor`.
pub fn list_position(kind: &str, cursor: &str) -> Result<String, Error> {
    crate::rows::paging::list_position(kind, cursor)
}

/// A page size asked for, checked (default 50, at most 1,000).
pub fn page_limit(limit: Option<u32>) -> Result<u32, Error> {
    crate::rows::paging::page_limit(limit)
}
