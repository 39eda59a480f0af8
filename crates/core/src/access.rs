//! The access layer: who is calling ([`VerifiedPrincipal`]) and what they may touch
//! ([`TenantScope`]).
//!
//! Invariant 1 lives here. A `TenantScope` has private fields and no public constructor: the
//! only way to get one is [`authorize_data`], which needs a `VerifiedPrincipal`, which in turn
//! only [`verify_key`] / [`verify_bootstrap_key`] produce from a presented credential. Storage
//! functions take a `&TenantScope`, so reaching tenant data without verified credentials does
//! not compile. A principal with no tenant context is an error, never "all tenants".

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};
use crate::ids::{KeyId, TenantId, TierName};
use crate::keys;
use crate::model::{Placement, TenantStatus, WriteState};
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformRole {
    /// Everything, including tenant data when the tenant is named explicitly (audited).
    Admin,
    /// Tenants and tiers, never tenant records or credentials.
    Operator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TenantRole {
    Viewer,
    Member,
    Admin,
    Owner,
}

impl FromStr for TenantRole {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "viewer" => Ok(TenantRole::Viewer),
            "member" => Ok(TenantRole::Member),
            "admin" => Ok(TenantRole::Admin),
            "owner" => Ok(TenantRole::Owner),
            other => Err(Error::bad_request(
                "invalid_role",
                format!("unknown tenant role {other:?}; expected owner, admin, member or viewer"),
            )),
        }
    }
}

impl FromStr for PlatformRole {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "admin" => Ok(PlatformRole::Admin),
            "operator" => Ok(PlatformRole::Operator),
            other => Err(Error::bad_request(
                "invalid_role",
                format!("unknown platform role {other:?}; expected admin or operator"),
            )),
        }
    }
}

impl TenantRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantRole::Viewer => "viewer",
            TenantRole::Member => "member",
            TenantRole::Admin => "admin",
            TenantRole::Owner => "owner",
        }
    }
}

impl PlatformRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PlatformRole::Admin => "admin",
            PlatformRole::Operator => "operator",
        }
    }
}

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
}

/// A caller whose credential has been checked. Only this module can construct one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPrincipal {
    actor: String,
    owner: KeyOwner,
}

impl VerifiedPrincipal {
    /// A stable description for logs and audit records (`key:k…`, `bootstrap-admin`).
    pub fn actor(&self) -> &str {
        &self.actor
    }

    pub fn owner(&self) -> &KeyOwner {
        &self.owner
    }

    pub fn platform_role(&self) -> Option<PlatformRole> {
        match self.owner {
            KeyOwner::Platform(role) => Some(role),
            KeyOwner::Tenant(..) => None,
        }
    }

    /// The tenant a tenant credential belongs to.
    pub fn home_tenant(&self) -> Option<&TenantId> {
        match &self.owner {
            KeyOwner::Tenant(tenant, _) => Some(tenant),
            KeyOwner::Platform(_) => None,
        }
    }
}

/// Why a presented credential was not accepted (never shown to the caller in detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    WrongSecret,
    Revoked,
    Expired,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejection::WrongSecret => "wrong secret",
            Rejection::Revoked => "revoked",
            Rejection::Expired => "expired",
        })
    }
}

/// Checks a presented secret against the stored key.
pub fn verify_key(
    secret: &str,
    stored: &StoredKey,
    now: Timestamp,
) -> Result<VerifiedPrincipal, Rejection> {
    if !keys::secret_matches(secret, &stored.secret_hash) {
        return Err(Rejection::WrongSecret);
    }
    if stored.revoked {
        return Err(Rejection::Revoked);
    }
    if stored.expires_at.is_some_and(|at| at <= now) {
        return Err(Rejection::Expired);
    }
    Ok(VerifiedPrincipal {
        actor: format!("key:{}", stored.id),
        owner: stored.owner.clone(),
    })
}

/// Checks a token against the hash of the operator-provided `BULKHEAD_ADMIN_KEY`.
pub fn verify_bootstrap_key(token: &str, expected_hash: &str) -> Option<VerifiedPrincipal> {
    keys::secret_matches(token, expected_hash).then(|| VerifiedPrincipal {
        actor: "bootstrap-admin".into(),
        owner: KeyOwner::Platform(PlatformRole::Admin),
    })
}

/// The scope under which the control plane's move executor copies one tenant's records
/// between its source and target placements. A move is started only by a verified platform
/// principal allowed to manage tenants (and recorded in the catalog with that actor); the
/// executor, which may resume it after a restart, acts as `system:move/<id>`. The scope reaches
/// exactly the one tenant of `route`, like any other.
pub fn move_scope(move_id: &str, route: &TenantRoute, action: DataAction) -> TenantScope {
    TenantScope {
        tenant: route.tenant.clone(),
        tier: route.tier.clone(),
        placement: route.placement.clone(),
        actor: format!("system:move/{move_id}"),
        action,
        platform_admin: false,
    }
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
    ReadAudit,
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

/// Managing a tenant's keys: platform admins, or the tenant's own `owner`/`admin` keys. Another
/// tenant's key gets the same answer as for a tenant that does not exist.
pub fn authorize_tenant_keys(
    principal: &VerifiedPrincipal,
    tenant: &TenantId,
) -> Result<(), Error> {
    match principal.owner() {
        KeyOwner::Platform(PlatformRole::Admin) => Ok(()),
        KeyOwner::Platform(PlatformRole::Operator) => Err(Error::forbidden(
            "forbidden",
            "operators cannot manage tenant credentials",
        )),
        KeyOwner::Tenant(home, _) if home != tenant => Err(not_found_tenant()),
        KeyOwner::Tenant(_, role) if *role >= TenantRole::Admin => Ok(()),
        KeyOwner::Tenant(..) => Err(Error::forbidden(
            "forbidden",
            "this role cannot manage keys",
        )),
    }
}

/// Which tenant a data request is about: a tenant credential's own tenant, or — for a
/// platform admin only — the tenant named explicitly by the request.
pub fn data_tenant(
    principal: &VerifiedPrincipal,
    named: Option<&TenantId>,
) -> Result<TenantId, Error> {
    match (principal.owner(), named) {
        (KeyOwner::Tenant(home, _), None) => Ok(home.clone()),
        (KeyOwner::Tenant(home, _), Some(named)) if named == home => Ok(home.clone()),
        (KeyOwner::Tenant(..), Some(_)) => Err(not_found_tenant()),
        (KeyOwner::Platform(PlatformRole::Admin), Some(named)) => Ok(named.clone()),
        (KeyOwner::Platform(PlatformRole::Admin), None) => Err(Error::bad_request(
            "tenant_required",
            "platform credentials reach tenant data only by naming the tenant in the \
             Bulkhead-Tenant header",
        )),
        (KeyOwner::Platform(PlatformRole::Operator), _) => Err(Error::forbidden(
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
/// Only [`authorize_data`] constructs it.
#[derive(Debug, Clone)]
pub struct TenantScope {
    tenant: TenantId,
    tier: TierName,
    placement: Placement,
    actor: String,
    action: DataAction,
    platform_admin: bool,
}

impl TenantScope {
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The tenant's tier, whose limits apply to this request.
    pub fn tier(&self) -> &TierName {
        &self.tier
    }

    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Whether the scope allows writing (a read scope cannot be used for a write).
    pub fn allows_write(&self) -> bool {
        self.action == DataAction::Write
    }

    /// True when a platform admin reaches tenant data; such access is always audited.
    pub fn is_platform_admin_access(&self) -> bool {
        self.platform_admin
    }
}

/// Decides whether `principal` may perform `action` on the routed tenant.
pub fn authorize_data(
    principal: &VerifiedPrincipal,
    route: &TenantRoute,
    action: DataAction,
) -> Result<TenantScope, Error> {
    let platform_admin = match principal.owner() {
        KeyOwner::Tenant(home, role) => {
            if home != &route.tenant {
                return Err(not_found_tenant());
            }
            if action == DataAction::Write && *role < TenantRole::Member {
                return Err(Error::forbidden("forbidden", "this role may only read"));
            }
            false
        }
        KeyOwner::Platform(PlatformRole::Admin) => true,
        KeyOwner::Platform(PlatformRole::Operator) => {
            return Err(Error::forbidden(
                "forbidden",
                "operators cannot access tenant records",
            ));
        }
    };
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
    Ok(TenantScope {
        tenant: route.tenant.clone(),
        tier: route.tier.clone(),
        placement: route.placement.clone(),
        actor: principal.actor().to_owned(),
        action,
        platform_admin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DomainName;
    use crate::model::Isolation;

    fn principal(owner: KeyOwner) -> VerifiedPrincipal {
        let key = keys::generate().unwrap();
        let stored = StoredKey {
            id: key.id,
            secret_hash: key.secret_hash,
            owner,
            expires_at: None,
            revoked: false,
        };
        let (_, secret) = keys::parse_token(&key.token).unwrap();
        verify_key(secret, &stored, Timestamp::from_micros(0)).unwrap()
    }

    fn route(tenant: &str, status: TenantStatus) -> TenantRoute {
        TenantRoute {
            tenant: TenantId::parse(tenant).unwrap(),
            tier: TierName::parse("free").unwrap(),
            status,
            placement: Placement {
                domain: DomainName::parse("local").unwrap(),
                isolation: Isolation::Pool,
                namespace: "pool".into(),
                write_state: WriteState::Open,
                epoch: 1,
                schema_version: 0,
            },
        }
    }

    #[test]
    fn a_tenant_key_never_reaches_another_tenant() {
        let acme = TenantId::parse("acme").unwrap();
        let p = principal(KeyOwner::Tenant(acme.clone(), TenantRole::Owner));
        let err = authorize_data(&p, &route("globex", TenantStatus::Active), DataAction::Read)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
        let other = TenantId::parse("globex").unwrap();
        assert_eq!(
            data_tenant(&p, Some(&other)).unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            authorize_tenant_keys(&p, &other).unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert!(
            authorize_data(&p, &route("acme", TenantStatus::Active), DataAction::Write).is_ok()
        );
    }

    #[test]
    fn roles_and_status_gate_writes() {
        let acme = TenantId::parse("acme").unwrap();
        let viewer = principal(KeyOwner::Tenant(acme.clone(), TenantRole::Viewer));
        assert!(
            authorize_data(
                &viewer,
                &route("acme", TenantStatus::Active),
                DataAction::Read
            )
            .is_ok()
        );
        assert_eq!(
            authorize_data(
                &viewer,
                &route("acme", TenantStatus::Active),
                DataAction::Write
            )
            .unwrap_err()
            .code,
            "forbidden"
        );
        let member = principal(KeyOwner::Tenant(acme, TenantRole::Member));
        assert_eq!(
            authorize_data(
                &member,
                &route("acme", TenantStatus::Suspended),
                DataAction::Write
            )
            .unwrap_err()
            .code,
            "tenant_suspended"
        );
        assert!(
            authorize_data(
                &member,
                &route("acme", TenantStatus::Suspended),
                DataAction::Read
            )
            .is_ok()
        );
    }

    #[test]
    fn platform_roles_reach_data_only_as_admin_and_only_by_name() {
        let admin = principal(KeyOwner::Platform(PlatformRole::Admin));
        assert_eq!(
            data_tenant(&admin, None).unwrap_err().code,
            "tenant_required"
        );
        let scope = authorize_data(
            &admin,
            &route("acme", TenantStatus::Active),
            DataAction::Read,
        )
        .unwrap();
        assert!(scope.is_platform_admin_access());
        let operator = principal(KeyOwner::Platform(PlatformRole::Operator));
        assert_eq!(
            authorize_data(
                &operator,
                &route("acme", TenantStatus::Active),
                DataAction::Read
            )
            .unwrap_err()
            .kind,
            ErrorKind::Forbidden
        );
        assert!(authorize_control(&operator, ControlAction::ManagePlatformKeys).is_err());
        assert!(authorize_control(&operator, ControlAction::ManageDomains).is_err());
        assert!(authorize_control(&operator, ControlAction::ReadCatalog).is_ok());
        assert!(authorize_control(&admin, ControlAction::ManageDomains).is_ok());
    }

    #[test]
    fn expired_and_revoked_keys_are_rejected() {
        let key = keys::generate().unwrap();
        let (_, secret) = keys::parse_token(&key.token).unwrap();
        let mut stored = StoredKey {
            id: key.id,
            secret_hash: key.secret_hash,
            owner: KeyOwner::Platform(PlatformRole::Admin),
            expires_at: Some(Timestamp::from_micros(10)),
            revoked: false,
        };
        assert_eq!(
            verify_key(secret, &stored, Timestamp::from_micros(10)).unwrap_err(),
            Rejection::Expired
        );
        stored.expires_at = None;
        stored.revoked = true;
        assert_eq!(
            verify_key(secret, &stored, Timestamp::from_micros(10)).unwrap_err(),
            Rejection::Revoked
        );
    }
}
