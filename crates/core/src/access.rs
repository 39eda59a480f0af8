//! The access layer: who is calling ([`VerifiedPrincipal`]) and what they may touch
//! ([`TenantScope`]).
//!
//! Invariant 1 lives here. A `TenantScope` has private fields and no public constructor: the
//! only ways to get one are [`authorize_data`], which needs a `VerifiedPrincipal` (which only
//! the verifiers here produce from a presented credential), and [`move_scope`], for a move the
//! catalog recorded. Every function that turns looked-up facts (a stored key, a route, role
//! facts, a move) into a principal or a scope also takes the process's [`AccessAuthority`],
//! which only the catalog holds, so code elsewhere cannot make one from facts of its own
//! (the doc tests of `AccessAuthority` show it failing to compile). Storage functions take a `&TenantScope`, and
//! destroying storage takes a [`Demolition`], which only the authority makes. A principal with
//! no tenant context is an error, never "all tenants".

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, ErrorKind};
use crate::ids::{Incarnation, KeyId, StorageKey, TenantId, TierName, UserId};
use crate::keys;
use crate::model::{Placement, TenantStatus, WriteState};
use crate::permissions::{Ceiling, Grant, MemberRole, Permission, RoleSpec};
use crate::query::vars::UserVars;
use crate::time::Timestamp;
pub use crate::tokens::{TokenClaims, TokenParent};

mod authority;
mod tenant_admin;
pub use authority::{AccessAuthority, Demolition};
pub use tenant_admin::{Membership, authorize_tenant_admin};

pub use crate::roles::{PlatformRole, TenantRole};

/// Whose key it is, as the catalog stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOwner {
    Platform(PlatformRole),
    Tenant(TenantId, TenantRole),
}

/// A key as stored in the catalog (the secret's hash, never the secret).
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub id: KeyId,
    pub secret_hash: String,
    pub owner: KeyOwner,
    pub expires_at: Option<Timestamp>,
    pub revoked: bool,
    /// The life of its tenant a tenant key belongs to (`None` for platform keys): no later
    /// tenant under the same id accepts it.
    pub incarnation: Option<Incarnation>,
}

/// A person from an external identity provider, mapped to a catalog user. Their memberships
/// are not part of the principal: the catalog reads them on every request, so removing
/// someone takes effect at once.
#[derive(Debug, Clone, PartialEq)]
pub struct UserIdentity {
    pub user: UserId,
    /// The issuer's `iss`.
    pub issuer: String,
    pub sub: String,
    pub email: Option<String>,
    /// Every claim of the token, for `@user.claims.*` in record rules.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The tenant named by the issuer's configured tenant claim, if any.
    pub claimed_tenant: Option<TenantId>,
}

impl UserIdentity {
    pub fn vars(&self) -> UserVars {
        UserVars {
            id: Some(self.user.as_str().to_owned()),
            email: self.email.clone(),
            claims: self.claims.clone(),
        }
    }
}

/// Who a caller is, once verified.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    Platform(PlatformRole),
    TenantKey {
        key: KeyId,
        tenant: TenantId,
        role: TenantRole,
        incarnation: Incarnation,
    },
    User(Arc<UserIdentity>),
    /// A tenant token: its parent credential, narrowed. The parent is re-checked per request.
    Token(Arc<TokenClaims>),
}

/// A caller whose credential has been checked. Only this crate constructs one: from a key
/// ([`verify_key`]), the bootstrap admin key, a tenant token whose signature
/// [`crate::tokens::verify`] checked, or a user whose JWT the identity layer verified and the
/// catalog mapped ([`verified_user`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedPrincipal {
    actor: String,
    principal: Principal,
}

impl VerifiedPrincipal {
    /// A stable description for logs and audit records (`key:k…`, `user:u…`,
    /// `token:…(key:k…)`, `bootstrap-admin`).
    pub fn actor(&self) -> &str {
        &self.actor
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn platform_role(&self) -> Option<PlatformRole> {
        match self.principal {
            Principal::Platform(role) => Some(role),
            _ => None,
        }
    }

    /// The tenant a key or token belongs to (a user's tenants are memberships, read per
    /// request).
    pub fn home_tenant(&self) -> Option<&TenantId> {
        match &self.principal {
            Principal::TenantKey { tenant, .. } => Some(tenant),
            Principal::Token(claims) => Some(&claims.tenant),
            Principal::User(_) | Principal::Platform(_) => None,
        }
    }

    /// The life of its tenant a key or token belongs to (a user's memberships are read per
    /// request and belong to the tenant's current life; platform credentials to none).
    pub fn incarnation(&self) -> Option<&Incarnation> {
        match &self.principal {
            Principal::TenantKey { incarnation, .. } => Some(incarnation),
            Principal::Token(claims) => Some(&claims.incarnation),
            Principal::User(_) | Principal::Platform(_) => None,
        }
    }

    /// Whether this credential can never write records (refused before a body is read).
    pub fn is_read_only(&self) -> bool {
        match &self.principal {
            Principal::Platform(role) => *role == PlatformRole::Operator,
            Principal::TenantKey { role, .. } => *role < TenantRole::Member,
            Principal::Token(claims) => !claims.narrowing.actions.iter().any(|a| a.is_write()),
            Principal::User(_) => false,
        }
    }

    pub(crate) fn from_token(claims: TokenClaims) -> VerifiedPrincipal {
        VerifiedPrincipal {
            actor: format!("token:{}({})", claims.id, claims.parent),
            principal: Principal::Token(Arc::new(claims)),
        }
    }
}

/// A user whose identity-provider token has been verified (signature, issuer, audience,
/// validity window) and whose `(issuer, sub)` the catalog mapped to `identity.user`.
pub fn verified_user(_authority: &AccessAuthority, identity: UserIdentity) -> VerifiedPrincipal {
    VerifiedPrincipal {
        actor: format!("user:{}", identity.user),
        principal: Principal::User(Arc::new(identity)),
    }
}

/// Why a presented credential was not accepted (never shown to the caller in detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    WrongSecret,
    Revoked,
    Expired,
    /// Not well formed, or a signature that does not verify.
    Invalid,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejection::WrongSecret => "wrong secret",
            Rejection::Revoked => "revoked",
            Rejection::Expired => "expired",
            Rejection::Invalid => "malformed or bad signature",
        })
    }
}

/// Checks a presented secret against the stored key.
pub fn verify_key(
    authority: &AccessAuthority,
    secret: &str,
    stored: &StoredKey,
    now: Timestamp,
) -> Result<VerifiedPrincipal, Rejection> {
    let matches = keys::secret_matches(secret, &stored.secret_hash);
    verified_key(authority, matches, stored, now)
}

/// [`verify_key`], the secret checked through `memo` (a key's repeated requests skip the
/// SHA-256; see [`keys::SecretMemo`]).
pub fn verify_key_remembered(
    authority: &AccessAuthority,
    secret: &str,
    stored: &StoredKey,
    now: Timestamp,
    memo: &keys::SecretMemo,
) -> Result<VerifiedPrincipal, Rejection> {
    let matches = memo.matches(secret, &stored.secret_hash);
    verified_key(authority, matches, stored, now)
}

fn verified_key(
    _authority: &AccessAuthority,
    secret_matches: bool,
    stored: &StoredKey,
    now: Timestamp,
) -> Result<VerifiedPrincipal, Rejection> {
    if !secret_matches {
        return Err(Rejection::WrongSecret);
    }
    if stored.revoked {
        return Err(Rejection::Revoked);
    }
    if stored.expires_at.is_some_and(|at| at <= now) {
        return Err(Rejection::Expired);
    }
    let principal = match &stored.owner {
        KeyOwner::Platform(role) => Principal::Platform(*role),
        KeyOwner::Tenant(tenant, role) => Principal::TenantKey {
            key: stored.id.clone(),
            tenant: tenant.clone(),
            role: *role,
            incarnation: stored.incarnation.clone().unwrap_or_default(),
        },
    };
    Ok(VerifiedPrincipal {
        actor: format!("key:{}", stored.id),
        principal,
    })
}

/// Checks a token against the hash of the operator-provided `BULKHEAD_ADMIN_KEY`.
pub fn verify_bootstrap_key(
    _authority: &AccessAuthority,
    token: &str,
    expected_hash: &str,
) -> Option<VerifiedPrincipal> {
    keys::secret_matches(token, expected_hash).then(|| VerifiedPrincipal {
        actor: "bootstrap-admin".into(),
        principal: Principal::Platform(PlatformRole::Admin),
    })
}

/// The scope under which the control plane's move executor copies one tenant's records
/// between its source and target placements. A move is started only by a verified platform
/// principal allowed to manage tenants (and recorded in the catalog with that actor); the
/// executor, which may resume it after a restart, acts as `system:move/<id>`. The scope reaches
/// exactly the one tenant of `route`, like any other.
pub fn move_scope(
    _authority: &AccessAuthority,
    move_id: &str,
    route: &TenantRoute,
    action: DataAction,
) -> TenantScope {
    system_scope(format!("system:move/{move_id}"), route, action)
}

/// The scope under which the retention job moves one tenant's aged records into its cold
/// archive, and brings archived ranges back when a platform principal allowed to manage
/// tenants asks. It acts as `system:retention` and reaches exactly the one tenant (and life)
/// of `route`, like any other.
pub fn retention_scope(
    _authority: &AccessAuthority,
    route: &TenantRoute,
    action: DataAction,
) -> TenantScope {
    system_scope("system:retention".into(), route, action)
}

fn system_scope(actor: String, route: &TenantRoute, action: DataAction) -> TenantScope {
    TenantScope(Arc::new(ScopeParts {
        tenant: route.tenant.clone(),
        storage: route.placement.storage_key(&route.tenant),
        tier: route.tier.clone(),
        placement: route.placement.clone(),
        actor,
        action,
        platform_admin: false,
        grant: Arc::new(Grant::unrestricted()),
        held: None,
        connection_cap: None,
    }))
}

/// What a data-plane request wants to do with a tenant's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataAction {
    Read,
    Write,
}

/// What a control-plane request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlAction {
    ReadTenants,
    ManageTenants,
    DeleteTenants,
    ReadCatalog,
    ManageTiers,
    /// Registering and changing storage domains (they hold connection credentials): admin only.
    ManageDomains,
    ManageCollections,
    ManagePlatformKeys,
    /// Listing, disabling and re-enabling users platform-wide: admin only.
    ManageUsers,
    ReadAudit,
    /// Reading metered usage (`GET /v1/usage`).
    ReadUsage,
    /// Acknowledging security findings: admins and operators.
    AcknowledgeFindings,
    /// Webhooks (their targets and signing secrets): admin only.
    ManageWebhooks,
    /// Online backups (they copy every tenant's data): admin only.
    Backups,
    /// Writing records exactly as given, system fields included (a tenant archive's
    /// import): admin only.
    RestoreData,
}

fn not_found_tenant() -> Error {
    Error::not_found("tenant_not_found", "tenant not found")
}

/// Decides a control-plane action for a platform credential. Tenant credentials have no
/// control-plane rights (their own keys are governed by [`authorize_tenant_keys`]).
pub fn authorize_control(
    principal: &VerifiedPrincipal,
    action: ControlAction,
) -> Result<(), Error> {
    let allowed = match principal.platform_role() {
        Some(PlatformRole::Admin) => true,
        Some(PlatformRole::Operator) => matches!(
            action,
            ControlAction::ReadTenants
                | ControlAction::ManageTenants
                | ControlAction::ReadCatalog
                | ControlAction::ManageTiers
                | ControlAction::ReadAudit
                | ControlAction::ReadUsage
                | ControlAction::AcknowledgeFindings
        ),
        None => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::forbidden(
            "forbidden",
            "this credential may not perform this action",
        ))
    }
}

/// Which tenant a data request is about: a key's or token's own tenant; for a user, the
/// tenant named by the issuer's tenant claim, else by the `Bulkhead-Tenant` header, else
/// their only membership (`memberships` are the user's); for a platform admin only, the
/// tenant named explicitly by the request. A user without a membership in the tenant gets
/// the same answer as for a tenant that does not exist.
pub fn data_tenant(
    principal: &VerifiedPrincipal,
    named: Option<&TenantId>,
    memberships: &[Membership],
) -> Result<TenantId, Error> {
    let own = |home: &TenantId| match named {
        Some(named) if named != home => Err(not_found_tenant()),
        _ => Ok(home.clone()),
    };
    match principal.principal() {
        Principal::TenantKey { tenant, .. } => own(tenant),
        Principal::Token(claims) => own(&claims.tenant),
        Principal::User(user) => {
            let pick = match (&user.claimed_tenant, named) {
                (Some(claimed), _) => own(claimed)?,
                (None, Some(named)) => named.clone(),
                (None, None) => match memberships {
                    [only] => only.tenant.clone(),
                    [] => return Err(not_found_tenant()),
                    _ => {
                        return Err(Error::bad_request(
                            "tenant_required",
                            "you belong to several tenants: name one in the Bulkhead-Tenant \
                             header",
                        ));
                    }
                },
            };
            if memberships.iter().any(|m| m.tenant == pick) {
                Ok(pick)
            } else {
                Err(not_found_tenant())
            }
        }
        Principal::Platform(PlatformRole::Admin) => match named {
            Some(named) => Ok(named.clone()),
            None => Err(Error::bad_request(
                "tenant_required",
                "platform credentials reach tenant data only by naming the tenant in the \
                 Bulkhead-Tenant header",
            )),
        },
        Principal::Platform(PlatformRole::Operator) => Err(Error::forbidden(
            "forbidden",
            "operators cannot access tenant records",
        )),
    }
}

/// The routing facts the access decision needs about the tenant.
#[derive(Debug, Clone)]
pub struct TenantRoute {
    pub tenant: TenantId,
    pub tier: TierName,
    pub status: TenantStatus,
    pub placement: Placement,
}

/// Proof that a verified principal may act on one tenant's data, and where that data is.
/// Only [`authorize_data`] constructs it. Cloning it shares it (a request's engine calls each
/// take a copy; copying the names inside cost a get by id a few per cent, issue 24).
#[derive(Debug, Clone)]
pub struct TenantScope(Arc<ScopeParts>);

#[derive(Debug, Clone)]
struct ScopeParts {
    tenant: TenantId,
    /// What the tenant's storage is named by: its id and the incarnation of the route.
    storage: StorageKey,
    tier: TierName,
    placement: Placement,
    actor: String,
    action: DataAction,
    platform_admin: bool,
    grant: Arc<Grant>,
    /// What the scope keeps taken while it is in use (a tenant's concurrency slot).
    held: Option<Held>,
    /// Connections of a shared database server the tenant may hold at once (its tier's
    /// `max_domain_connections`); engines with a shared pool enforce it.
    connection_cap: Option<u32>,
}

/// Something a [`TenantScope`] keeps alive until its last clone is dropped.
#[derive(Clone)]
pub struct Held(pub Arc<dyn std::any::Any + Send + Sync>);

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Held")
    }
}

impl TenantScope {
    /// Keeps `held` (say, a concurrency slot) taken for as long as the scope or a clone of it
    /// lives: to the end of the request, or of a streamed answer. Changes nothing the scope
    /// reaches.
    pub fn holding(mut self, held: Held) -> Self {
        Arc::make_mut(&mut self.0).held = Some(held);
        self
    }

    /// Caps the shared database connections this tenant's work may hold at once. Changes
    /// nothing the scope reaches.
    pub fn with_connection_cap(mut self, cap: Option<u32>) -> Self {
        Arc::make_mut(&mut self.0).connection_cap = cap;
        self
    }

    pub fn connection_cap(&self) -> Option<u32> {
        self.0.connection_cap
    }

    pub fn tenant(&self) -> &TenantId {
        &self.0.tenant
    }

    /// The name of the tenant's storage in this incarnation: engines key every file, table,
    /// schema, database and pooled row by it, never by the bare tenant id.
    pub fn storage_key(&self) -> &StorageKey {
        &self.0.storage
    }

    pub fn placement(&self) -> &Placement {
        &self.0.placement
    }

    /// The tenant's tier, whose limits apply to this request.
    pub fn tier(&self) -> &TierName {
        &self.0.tier
    }

    pub fn actor(&self) -> &str {
        &self.0.actor
    }

    /// Whether the scope allows writing (a read scope cannot be used for a write).
    pub fn allows_write(&self) -> bool {
        self.0.action == DataAction::Write
    }

    /// True when a platform admin reaches tenant data; such access is always audited.
    pub fn is_platform_admin_access(&self) -> bool {
        self.0.platform_admin
    }

    /// What this request may do on `collection`.
    pub fn permission(&self, collection: &crate::CollectionName) -> Permission {
        self.0.grant.permission(collection)
    }
}

/// The role facts the catalog looked up for a request: the caller's role in the tenant (a
/// user's membership role, or a tenant token's parent's role; keys carry their own), the
/// custom role's definition when the role is custom, and the tier's ceiling.
#[derive(Debug, Clone, Default)]
pub struct RoleFacts {
    pub role: Option<MemberRole>,
    pub custom: Option<Arc<RoleSpec>>,
    pub ceiling: Ceiling,
}

/// Decides whether `principal` may perform `action` on the routed tenant, and with which
/// rights ([`Grant`]); per-collection actions, rules and hidden fields are then applied
/// through [`TenantScope::permission`].
pub fn authorize_data(
    _authority: &AccessAuthority,
    principal: &VerifiedPrincipal,
    route: &TenantRoute,
    action: DataAction,
    facts: RoleFacts,
) -> Result<TenantScope, Error> {
    let (grant, platform_admin) = match principal.principal() {
        Principal::Platform(PlatformRole::Admin) => (Grant::unrestricted(), true),
        Principal::Platform(PlatformRole::Operator) => {
            return Err(Error::forbidden(
                "forbidden",
                "operators cannot access tenant records",
            ));
        }
        other => {
            let (home, role, narrowing, user) = match other {
                Principal::TenantKey { tenant, role, .. } => (
                    tenant,
                    Some(MemberRole::Builtin(*role)),
                    None,
                    UserVars::default(),
                ),
                Principal::User(identity) => {
                    let home = identity.claimed_tenant.as_ref().unwrap_or(&route.tenant);
                    (home, facts.role, None, identity.vars())
                }
                Principal::Token(claims) => (
                    &claims.tenant,
                    facts.role,
                    Some(Arc::new(claims.narrowing.clone())),
                    claims.user.clone().unwrap_or_default(),
                ),
                Principal::Platform(_) => return Err(not_found_tenant()),
            };
            let Some(role) = role else {
                return Err(not_found_tenant());
            };
            if home != &route.tenant {
                return Err(not_found_tenant());
            }
            // A key or token of an earlier life of this tenant id: as if the tenant were
            // missing (a later tenant under the same id is another tenant).
            if principal
                .incarnation()
                .is_some_and(|own| own != &route.placement.incarnation)
            {
                return Err(not_found_tenant());
            }
            let grant = Grant {
                role,
                custom: facts.custom,
                ceiling: facts.ceiling,
                narrowing,
                user: Arc::new(user),
                unrestricted: false,
            };
            (grant, false)
        }
    };
    if action == DataAction::Write
        && !grant.unrestricted
        && (grant.role == MemberRole::Builtin(TenantRole::Viewer)
            || grant
                .narrowing
                .as_ref()
                .is_some_and(|n| !n.actions.iter().any(|a| a.is_write())))
    {
        return Err(Error::forbidden(
            "forbidden",
            "this credential may only read",
        ));
    }
    match route.status {
        TenantStatus::Deleting => return Err(not_found_tenant()),
        TenantStatus::Provisioning => {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "tenant_provisioning",
                "tenant is still being provisioned",
            ));
        }
        TenantStatus::Suspended if action == DataAction::Write => {
            return Err(Error::forbidden(
                "tenant_suspended",
                "tenant is suspended; writes are refused",
            ));
        }
        _ => {}
    }
    if action == DataAction::Write && route.placement.write_state == WriteState::ReadOnly {
        return Err(Error::forbidden(
            "tenant_read_only",
            "tenant's placement is read-only",
        ));
    }
    Ok(TenantScope(Arc::new(ScopeParts {
        tenant: route.tenant.clone(),
        storage: route.placement.storage_key(&route.tenant),
        tier: route.tier.clone(),
        placement: route.placement.clone(),
        actor: principal.actor().to_owned(),
        action,
        platform_admin,
        grant: Arc::new(grant),
        held: None,
        connection_cap: None,
    })))
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
