//! The access authority: the one capability that turns facts the catalog looked up into
//! principals, scopes and demolitions.
//!
//! Every constructor in this module tree that takes raw facts — a stored key row, a verified
//! identity, a route and role facts, a recorded move, a placement to destroy — also takes an
//! [`AccessAuthority`]. There is one per process: [`AccessAuthority::claim`] hands it out
//! once, and the binary gives it to the catalog at start, which keeps it in a private field.
//! Code elsewhere in the process that wants to build a scope from facts of its own making
//! cannot get one (the claim answers `None`), and cannot make one (its field is private):
//!
//! ```compile_fail,E0451
//! // Outside `core::access`, an authority cannot be built by hand…
//! let forged = bulkhead_core::access::AccessAuthority { _sealed: () };
//! ```
//!
//! ```compile_fail,E0451
//! // …nor can a scope, a principal or a demolition.
//! use bulkhead_core::access::TenantScope;
//! let forged = TenantScope { tenant: bulkhead_core::TenantId::parse("acme").unwrap() };
//! ```
//!
//! ```compile_fail,E0451
//! // Destroying storage takes a demolition, which only the authority makes.
//! use bulkhead_core::access::Demolition;
//! let forged = Demolition { namespace: "pool".to_owned() };
//! ```
//!
//! ```compile_fail,E0061
//! // The functions that turn facts into a scope or a principal want the authority.
//! use bulkhead_core::access::{self, DataAction, RoleFacts, TenantRoute, VerifiedPrincipal};
//! fn forge(p: &VerifiedPrincipal, route: &TenantRoute) {
//!     let _ = access::authorize_data(p, route, DataAction::Write, RoleFacts::default());
//! }
//! ```
//!
//! ```
//! // Only the first claim in a process succeeds.
//! use bulkhead_core::access::AccessAuthority;
//! let first = AccessAuthority::claim();
//! assert!(first.is_some());
//! assert!(AccessAuthority::claim().is_none(), "a second claim gets nothing");
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::ids::{StorageKey, TenantId};
use crate::model::{Isolation, Placement};

static CLAIMED: AtomicBool = AtomicBool::new(false);

/// The right to turn looked-up facts into access decisions. Cloning it shares the right;
/// hand it only to code that looks facts up from the catalog.
#[derive(Clone)]
pub struct AccessAuthority {
    _sealed: (),
}

impl AccessAuthority {
    /// The process's authority, to the first caller; `None` to every later one.
    pub fn claim() -> Option<AccessAuthority> {
        (!CLAIMED.swap(true, Ordering::SeqCst)).then_some(AccessAuthority { _sealed: () })
    }

    /// For this crate's own tests.
    #[cfg(test)]
    pub(crate) const fn for_tests() -> AccessAuthority {
        AccessAuthority { _sealed: () }
    }

    /// The capability to destroy one piece of tenant storage: a placement of `tenant` (its
    /// storage is named by the placement's life). Tenant deletion and a move's clean-up or
    /// rollback ask for it.
    pub fn demolish(&self, tenant: &TenantId, placement: &Placement) -> Demolition {
        Demolition {
            key: placement.storage_key(tenant),
            isolation: placement.isolation,
            namespace: placement.namespace.clone(),
        }
    }

    /// The capability to destroy storage no live placement owns (an orphan `doctor` found):
    /// named by the storage key the engine found and where it found it.
    pub fn demolish_orphan(
        &self,
        key: StorageKey,
        isolation: Isolation,
        namespace: String,
    ) -> Demolition {
        Demolition {
            key,
            isolation,
            namespace,
        }
    }
}

impl fmt::Debug for AccessAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessAuthority")
    }
}

/// What `Engine::destroy` takes: one piece of tenant storage that the holder of the access
/// authority decided may go. Only [`AccessAuthority::demolish`] and
/// [`AccessAuthority::demolish_orphan`] make one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demolition {
    key: StorageKey,
    isolation: Isolation,
    namespace: String,
}

impl Demolition {
    /// The storage key of the life whose storage goes.
    pub fn key(&self) -> &StorageKey {
        &self.key
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// The engine-neutral namespace (`pool`, `bridge-0001`, `silo-…`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}
