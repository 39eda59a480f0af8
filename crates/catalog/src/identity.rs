//! Who is calling, beyond API keys: people from external identity providers (their JWTs are
//! verified by an [`IdentityProviders`] the binary supplies, then `(issuer, sub)` is mapped to
//! a catalog user and their memberships), and tenant tokens (signed by this catalog's token
//! secret). Memberships and a token's parent are read on every request, never cached, so
//! removing a member or revoking a parent key takes effect on the next request.
//!
//! Also the role facts of a data request: the caller's role in the tenant, the custom role's
//! definition, and the tier's ceiling.

use std::sync::Arc;

use bulkhead_core::access::{
    self, Membership, Principal, RoleFacts, TokenParent, UserIdentity, VerifiedPrincipal,
};
use bulkhead_core::error::Error;
use bulkhead_core::permissions::{MemberRole, RoleSpec};
use bulkhead_core::{TenantId, UserId};

use crate::store::{StoreResult, Tx, malformed, params};
use crate::{Catalog, Ctx};

/// A person's identity as an identity provider vouched for it in a verified JWT.
#[derive(Debug, Clone)]
pub struct ExternalIdentity {
    /// The token's `iss`.
    pub issuer: String,
    pub sub: String,
    pub email: Option<String>,
    pub email_verified: bool,
    /// The tenant named by the issuer's configured tenant claim, when it has one.
    pub tenant: Option<String>,
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// The configured JWT issuers (the binary implements this over `bulkhead-identity`).
#[async_trait::async_trait]
pub trait IdentityProviders: Send + Sync + 'static {
    /// Whether `token` is shaped like a JWT (and so should be verified here).
    fn accepts(&self, token: &str) -> bool;
    /// Verifies signature, issuer, audience and validity window. The error is a reason for
    /// the audit log, never shown to the caller.
    async fn verify(&self, token: &str) -> Result<ExternalIdentity, String>;
    /// The `iss` of the issuer called `name_or_iss` (its configured name, or the `iss` itself).
    fn resolve_issuer(&self, name_or_iss: &str) -> Option<String>;
    /// The `iss` of every configured issuer.
    fn issuers(&self) -> Vec<String>;
}

pub(crate) fn read_memberships(tx: &dyn Tx, user: &UserId) -> StoreResult<Vec<Membership>> {
    tx.query(
        "SELECT m.tenant_id, m.role, r.spec FROM memberships m LEFT JOIN roles r \
         ON r.tenant_id = m.tenant_id AND r.name = m.role WHERE m.user_id = ?1 \
         ORDER BY m.tenant_id",
        params![user.as_str()],
    )?
    .into_iter()
    .map(|row| {
        let tenant: String = row.get(0)?;
        let role: String = row.get(1)?;
        let spec: Option<String> = row.get(2)?;
        Ok(Membership {
            tenant: TenantId::parse(&tenant).map_err(|e| malformed(e.message))?,
            role: MemberRole::parse(&role).map_err(|e| malformed(e.message))?,
            custom: spec
                .map(|raw| serde_json::from_str::<RoleSpec>(&raw).map(Arc::new))
                .transpose()
                .map_err(malformed)?,
        })
    })
    .collect()
}

/// A user as cached by `(iss, sub)` with their memberships (`Inner::users`). Every change to
/// users, memberships or roles clears that cache in the same step (and, on a shared catalog,
/// on the other servers through the change feed), so a removal applies on the next request.
#[derive(Debug)]
pub(crate) struct CachedUser {
    id: UserId,
    disabled: bool,
    memberships: Vec<Membership>,
}

/// `(disabled)` of a user, `None` if there is no such user.
fn user_disabled(tx: &dyn Tx, user: &UserId) -> StoreResult<Option<bool>> {
    tx.query_opt(
        "SELECT disabled FROM users WHERE id = ?1",
        params![user.as_str()],
    )?
    .map(|row| Ok(row.get::<i64>(0)? != 0))
    .transpose()
}

impl Catalog {
    /// Verifies a JWT from a configured issuer and maps it to a user and memberships.
    pub(crate) async fn authenticate_user(&self, token: &str) -> Result<Ctx, String> {
        let Some(providers) = self.inner().options.identity.clone() else {
            return Err("no JWT issuers are configured".into());
        };
        let external = providers.verify(token).await?;
        let key = (external.issuer.clone(), external.sub.clone());
        let cached = self.inner().users.get(&key);
        let user = match cached {
            Some(user) => user,
            None => {
                let ticket = self.cache_ticket();
                let user = self.load_user(&external).await?;
                self.inner().users.fill(ticket, key, user, |_, _| false)
            }
        };
        if user.disabled {
            return Err("user is disabled".into());
        }
        let claimed_tenant = match &external.tenant {
            Some(raw) => Some(TenantId::parse(raw).map_err(|_| "tenant claim is not a tenant id")?),
            None => None,
        };
        let identity = UserIdentity {
            user: user.id.clone(),
            issuer: external.issuer,
            sub: external.sub,
            email: external.email,
            claims: external.claims,
            claimed_tenant,
        };
        Ok(Ctx {
            principal: self.inner().verifier.user(identity),
            request_id: String::new(),
            memberships: Arc::new(user.memberships.clone()),
            credential: None,
            source: None,
        })
    }

    /// Reads a user by `(iss, sub)`; known users in a read transaction, and only claiming an
    /// email invitation (once per person) writes.
    async fn load_user(&self, external: &ExternalIdentity) -> Result<Arc<CachedUser>, String> {
        let known = external.clone();
        let found = self
            .blocking(move |store| store.read(|tx| map_user(tx, &known, None)))
            .await
            .map_err(|e| e.message)?;
        let found = match found {
            None if external.email_verified && external.email.is_some() => {
                let external = external.clone();
                let claim = Claim {
                    single_issuer: self
                        .inner()
                        .options
                        .identity
                        .as_ref()
                        .is_some_and(|i| i.issuers().len() == 1),
                    at: self.inner().clock.now(),
                };
                let claimed = self
                    .blocking(move |store| store.write(|tx| map_user(tx, &external, Some(&claim))))
                    .await
                    .map_err(|e| e.message)?;
                if claimed.is_some() {
                    self.inner().users.forget_all();
                }
                claimed
            }
            other => other,
        };
        found
            .map(Arc::new)
            .ok_or_else(|| "no Bulkhead user for this identity".to_owned())
    }

    /// Verifies a tenant token and re-checks its parent: the key must still be valid and of
    /// the token's tenant, the user still enabled and a member of it.
    pub(crate) async fn authenticate_token(&self, token: &str) -> Result<Ctx, String> {
        let secret = self.token_secret().await.map_err(|e| e.message)?;
        let now = self.inner().clock.now();
        let principal = self
            .inner()
            .verifier
            .token(&secret, token, now)
            .map_err(|r| format!("tenant token: {r}"))?;
        let Principal::Token(claims) = principal.principal() else {
            return Err("tenant token: not a token".into());
        };
        let role = match &claims.parent {
            TokenParent::Key(id) => {
                let stored = self
                    .stored_key(id)
                    .await
                    .map_err(|e| e.message)?
                    .ok_or("tenant token: parent key is gone")?;
                if stored.revoked || stored.expires_at.is_some_and(|at| at <= now) {
                    return Err("tenant token: parent key is revoked or expired".into());
                }
                match &stored.owner {
                    access::KeyOwner::Tenant(tenant, role) if *tenant == claims.tenant => {
                        (MemberRole::Builtin(*role), None)
                    }
                    _ => return Err("tenant token: parent key is not of its tenant".into()),
                }
            }
            TokenParent::User(user) => {
                let (user, tenant) = (user.clone(), claims.tenant.clone());
                let found = self
                    .blocking(move |store| {
                        store.read(|tx| {
                            if user_disabled(tx, &user)? != Some(false) {
                                return Ok(None);
                            }
                            Ok(read_memberships(tx, &user)?
                                .into_iter()
                                .find(|m| m.tenant == tenant))
                        })
                    })
                    .await
                    .map_err(|e| e.message)?;
                let found =
                    found.ok_or("tenant token: parent user is disabled or no longer a member")?;
                (found.role, found.custom)
            }
        };
        let membership = Membership {
            tenant: claims.tenant.clone(),
            role: role.0,
            custom: role.1,
        };
        Ok(Ctx {
            principal,
            request_id: String::new(),
            memberships: Arc::new(vec![membership]),
            credential: None,
            source: None,
        })
    }

    /// The secret tenant tokens are signed with: made once per catalog (shared by every
    /// server using it), then kept in memory.
    pub(crate) async fn token_secret(&self) -> Result<Arc<Vec<u8>>, Error> {
        if let Some(secret) = self.inner().token_secret.get() {
            return Ok(Arc::clone(secret));
        }
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|_| Error::internal())?;
        let fresh = hex::encode(fresh);
        let stored = self
            .blocking(move |store| {
                store.write(|tx| {
                    if let Some(existing) = crate::store::get_meta(tx, "token_secret")? {
                        return Ok(existing);
                    }
                    crate::store::set_meta(tx, "token_secret", &fresh)?;
                    Ok(fresh)
                })
            })
            .await?;
        let secret = Arc::new(hex::decode(stored).map_err(|_| Error::internal())?);
        // Every server stores the same secret (the first one written wins in the catalog).
        Ok(Arc::clone(self.inner().token_secret.get_or_init(|| secret)))
    }

    /// The role facts of a data request on `tenant`, whose tier has `ceiling`.
    pub(crate) fn role_facts(
        ctx: &Ctx,
        tenant: &TenantId,
        ceiling: bulkhead_core::permissions::Ceiling,
    ) -> RoleFacts {
        let membership = match ctx.principal.principal() {
            Principal::User(_) | Principal::Token(_) => {
                ctx.memberships.iter().find(|m| &m.tenant == tenant)
            }
            Principal::TenantKey { .. } | Principal::Platform(_) => None,
        };
        let role = membership.map(|m| m.role.clone());
        let custom = membership.and_then(|m| m.custom.clone());
        RoleFacts {
            role,
            custom,
            ceiling,
        }
    }
}

/// Maps a verified identity to its user: by `(issuer, sub)`, else (when `claim_invitation`)
/// by claiming an email invitation, only with a verified email. `None` when no user exists.
/// May an email invitation be claimed, and who is claiming: the invitation must name the
/// claiming token's issuer (invitations from before issuers were named: only while a single
/// issuer is configured).
pub(crate) struct Claim {
    pub single_issuer: bool,
    pub at: bulkhead_core::time::Timestamp,
}

fn map_user(
    tx: &dyn Tx,
    external: &ExternalIdentity,
    claim_invitation: Option<&Claim>,
) -> StoreResult<Option<CachedUser>> {
    let found = tx.query_opt(
        "SELECT id, disabled FROM users WHERE issuer = ?1 AND sub = ?2",
        params![external.issuer.as_str(), external.sub.as_str()],
    )?;
    let (id, disabled) = match found {
        Some(row) => (row.get::<String>(0)?, row.get::<i64>(1)? != 0),
        None => {
            let invited = match (&external.email, external.email_verified, claim_invitation) {
                (Some(email), true, Some(claim)) => tx
                    .query_opt(
                        "SELECT id, disabled FROM users WHERE issuer IS NULL AND email = ?1 \
                         AND (invite_issuer = ?2 OR (invite_issuer IS NULL AND ?3 = 1)) \
                         ORDER BY created_at LIMIT 1",
                        params![
                            email.to_lowercase(),
                            external.issuer.as_str(),
                            i64::from(claim.single_issuer)
                        ],
                    )?
                    .map(|row| {
                        Ok::<_, crate::StoreError>((row.get::<String>(0)?, row.get::<i64>(1)? != 0))
                    })
                    .transpose()?,
                _ => None,
            };
            let Some((id, disabled)) = invited else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE users SET issuer = ?1, sub = ?2 WHERE id = ?3 AND issuer IS NULL",
                params![external.issuer.as_str(), external.sub.as_str(), id.as_str()],
            )?;
            crate::store::changed(tx, "members", "*")?;
            if let Some(claim) = claim_invitation {
                crate::rows::audit::insert(
                    tx,
                    &crate::AuditEvent {
                        at: claim.at,
                        actor: format!("user:{id}"),
                        action: "member.claim".into(),
                        target: id.clone(),
                        tenant: None,
                        outcome: "ok".into(),
                        request_id: String::new(),
                        detail: Some(
                            serde_json::json!({
                                "issuer": external.issuer,
                                "sub": external.sub,
                                "email": external.email,
                            })
                            .to_string(),
                        ),
                    },
                )?;
            }
            (id, disabled)
        }
    };
    let id = UserId::parse(&id).map_err(|e| malformed(e.message))?;
    let memberships = read_memberships(tx, &id)?;
    Ok(Some(CachedUser {
        id,
        disabled,
        memberships,
    }))
}

/// For audit: the caller's membership in `tenant`, if they are a user.
pub(crate) fn membership_in<'a>(ctx: &'a Ctx, tenant: &TenantId) -> Option<&'a Membership> {
    match ctx.principal.principal() {
        Principal::User(_) => ctx.memberships.iter().find(|m| &m.tenant == tenant),
        _ => None,
    }
}

/// The built-in role a tenant key or member holds in `tenant` (what they may delegate).
pub(crate) fn caller_role(ctx: &Ctx, tenant: &TenantId) -> Option<access::TenantRole> {
    match ctx.principal.principal() {
        Principal::TenantKey { role, .. } => Some(*role),
        Principal::User(_) => match membership_in(ctx, tenant).map(|m| &m.role) {
            Some(MemberRole::Builtin(role)) => Some(*role),
            _ => None,
        },
        _ => None,
    }
}

/// The principal as the `/v1/me` kind.
pub(crate) fn kind(principal: &VerifiedPrincipal) -> &'static str {
    match principal.principal() {
        Principal::Platform(access::PlatformRole::Admin) => "platform_admin",
        Principal::Platform(access::PlatformRole::Operator) => "platform_operator",
        Principal::TenantKey { .. } => "tenant_key",
        Principal::User(_) => "user",
        Principal::Token(_) => "tenant_token",
    }
}

/// The access authority, for verifying credentials only: a stored key against its secret, the
/// bootstrap admin key, a tenant token's signature, a user whose JWT the identity providers
/// verified. Only this room reads the authority inside.
pub(crate) struct Verifier(access::AccessAuthority, bulkhead_core::keys::SecretMemo);

impl Verifier {
    pub(crate) fn new(authority: access::AccessAuthority) -> Self {
        Verifier(authority, Default::default())
    }

    pub(crate) fn key(
        &self,
        secret: &str,
        stored: &access::StoredKey,
        now: bulkhead_core::time::Timestamp,
    ) -> Result<VerifiedPrincipal, access::Rejection> {
        access::verify_key_remembered(&self.0, secret, stored, now, &self.1)
    }

    pub(crate) fn bootstrap(&self, token: &str, expected_hash: &str) -> Option<VerifiedPrincipal> {
        access::verify_bootstrap_key(&self.0, token, expected_hash)
    }

    pub(crate) fn token(
        &self,
        secret: &[u8],
        token: &str,
        now: bulkhead_core::time::Timestamp,
    ) -> Result<VerifiedPrincipal, access::Rejection> {
        bulkhead_core::tokens::verify(&self.0, secret, token, now)
    }

    pub(crate) fn user(&self, identity: access::UserIdentity) -> VerifiedPrincipal {
        access::verified_user(&self.0, identity)
    }
}
