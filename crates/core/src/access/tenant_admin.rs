//! Who may manage a tenant's members, keys and custom roles, and the memberships that
//! decide it for users.

use std::sync::Arc;

use super::{PlatformRole, Principal, VerifiedPrincipal, not_found_tenant};
use crate::error::Error;
use crate::ids::{Incarnation, TenantId};
use crate::permissions::{MemberRole, RoleSpec};

/// A user's membership in a tenant, as the catalog stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub tenant: TenantId,
    pub role: MemberRole,
    /// The custom role's definition, read with the membership (`None` for built-in roles).
    pub custom: Option<Arc<RoleSpec>>,
}

/// Managing a tenant's members, keys and custom roles: platform admins, or the tenant's own
/// `owner`/`admin` keys and members (`membership` is the caller's membership in `tenant`, for
/// users). Another tenant's credential gets the same answer as for a tenant that does not
/// exist; tenant tokens never manage anything.
pub fn authorize_tenant_admin(
    principal: &VerifiedPrincipal,
    tenant: &TenantId,
    incarnation: &Incarnation,
    membership: Option<&Membership>,
) -> Result<(), Error> {
    let role = match principal.principal() {
        Principal::Platform(PlatformRole::Admin) => return Ok(()),
        Principal::Platform(PlatformRole::Operator) => {
            return Err(Error::forbidden(
                "forbidden",
                "operators cannot manage tenant credentials or members",
            ));
        }
        Principal::TenantKey { tenant: home, .. } if home != tenant => {
            return Err(not_found_tenant());
        }
        Principal::TenantKey {
            incarnation: own, ..
        } if own != incarnation => {
            return Err(not_found_tenant());
        }
        Principal::TenantKey { role, .. } => MemberRole::Builtin(*role),
        Principal::User(_) => match membership {
            Some(m) if &m.tenant == tenant => m.role.clone(),
            _ => return Err(not_found_tenant()),
        },
        Principal::Token(claims) if &claims.tenant != tenant => return Err(not_found_tenant()),
        Principal::Token(_) => {
            return Err(Error::forbidden(
                "forbidden",
                "tenant tokens reach records only",
            ));
        }
    };
    if role.manages_tenant() {
        Ok(())
    } else {
        Err(Error::forbidden(
            "forbidden",
            "only a tenant's owners and admins manage its members, keys and roles",
        ))
    }
}
