//! Tenant tokens (`POST /v1/tokens`) and `GET /v1/me`.

use std::collections::BTreeSet;

use bulkhead_api::{MeView, MembershipView, MintToken, MintedToken};
use bulkhead_core::TenantId;
use bulkhead_core::access::{self, Principal};
use bulkhead_core::error::Error;
use bulkhead_core::permissions::{self, MemberRole, Narrowing};
use bulkhead_core::tokens::{self, TokenClaims, TokenParent};

use crate::{Catalog, Ctx};

/// Default lifetime of a tenant token, in seconds.
const DEFAULT_TOKEN_TTL: u64 = 600;

impl Catalog {
    /// `POST /v1/tokens`: a tenant key or member mints a token narrower than itself.
    pub async fn mint_token(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        request: MintToken,
    ) -> Result<MintedToken, Error> {
        let parent = match ctx.principal.principal() {
            Principal::TenantKey { key, .. } => TokenParent::Key(key.clone()),
            Principal::User(identity) => TokenParent::User(identity.user.clone()),
            Principal::Token(_) | Principal::Platform(_) => {
                let err = Error::forbidden(
                    "forbidden",
                    "only tenant keys and tenant members mint tenant tokens",
                );
                return Err(self.denied(ctx, "token.create", "token", named, err));
            }
        };
        let tenant = access::data_tenant(&ctx.principal, named, &ctx.memberships)
            .map_err(|e| self.denied(ctx, "token.create", "token", named, e))?;
        // The parent must still be allowed to read the tenant at all; the token belongs to
        // the life of the tenant the parent was authorized in.
        let scope = self
            .data_scope(
                ctx,
                Some(&tenant),
                access::DataAction::Read,
                "token.create",
                "token",
            )
            .await?;
        if request.actions.is_empty() {
            return Err(Error::bad_request(
                "invalid_token_request",
                "actions must not be empty",
            ));
        }
        let ttl = request.expires_in.unwrap_or(DEFAULT_TOKEN_TTL);
        if ttl == 0 || ttl > tokens::MAX_TTL_SECS {
            return Err(Error::bad_request(
                "invalid_expiry",
                format!("expires_in must be 1 to {} seconds", tokens::MAX_TTL_SECS),
            ));
        }
        if let Some(rule) = &request.rule {
            permissions::parse_rule(rule)?;
        }
        // A token only narrows its parent: asking for what the parent may not do is an error
        // now, not a token that fails on use.
        let named: Vec<bulkhead_core::CollectionName> = match &request.collections {
            Some(named) => named.clone(),
            None => self.collections_snapshot().keys().cloned().collect(),
        };
        let lacking: Vec<String> = request
            .actions
            .iter()
            .filter_map(|action| {
                let missing: Vec<&str> = named
                    .iter()
                    .filter(|c| !scope.permission(c).allows(*action))
                    .map(|c| c.as_str())
                    .collect();
                let refused = !named.is_empty()
                    && match &request.collections {
                        Some(_) => !missing.is_empty(),
                        // Over every collection: refused where the parent may do it nowhere.
                        None => missing.len() == named.len(),
                    };
                refused.then(|| match &request.collections {
                    Some(_) => format!("{} on {}", action.as_str(), missing.join(", ")),
                    None => action.as_str().to_owned(),
                })
            })
            .collect();
        // The rule is typed against the collections it narrows as they are now, so a rule that
        // names what they do not have is refused here rather than on every use: it must fit
        // each collection the token names, or (a token over every collection) at least one.
        if let Some(rule) = &request.rule {
            let collections = self.collections_snapshot();
            let checks: Vec<Result<(), Error>> = named
                .iter()
                .filter_map(|name| {
                    let collection = collections.get(name)?;
                    Some(scope.permission(name).check_rule(rule, collection))
                })
                .collect();
            let fits_one = checks.iter().any(Result::is_ok);
            for check in checks {
                if let Err(e) = check
                    && (request.collections.is_some() || !fits_one)
                {
                    return Err(e);
                }
            }
        }
        if !lacking.is_empty() {
            return Err(Error::bad_request(
                "token_exceeds_parent",
                format!(
                    "a token only narrows its parent, which may not: {}",
                    lacking.join("; ")
                ),
            ));
        }
        let now = self.inner().clock.now();
        let mut id = [0u8; 12];
        getrandom::fill(&mut id).map_err(|_| Error::internal())?;
        let claims = TokenClaims {
            id: hex::encode(id),
            tenant: tenant.clone(),
            incarnation: scope.placement().incarnation.clone(),
            parent,
            narrowing: Narrowing {
                collections: request
                    .collections
                    .map(|c| c.into_iter().collect::<BTreeSet<_>>()),
                actions: request.actions.into_iter().collect(),
                rule: request.rule,
            },
            user: match ctx.principal.principal() {
                Principal::User(identity) => Some(identity.vars()),
                _ => None,
            },
            issued_at: now,
            expires_at: now.plus_seconds(ttl as i64),
        };
        let secret = self.token_secret().await?;
        let token = tokens::mint(&secret, &claims)?;
        let detail = serde_json::to_string(&claims.narrowing).ok();
        self.inner().audit.record(self.event(
            ctx,
            "token.create",
            &claims.id,
            Some(&tenant),
            detail,
        ));
        Ok(MintedToken {
            token,
            tenant,
            expires_at: claims.expires_at,
        })
    }

    /// `GET /v1/me`.
    pub fn me(&self, ctx: &Ctx) -> MeView {
        let (user_id, email) = match ctx.principal.principal() {
            Principal::User(identity) => (Some(identity.user.clone()), identity.email.clone()),
            _ => (None, None),
        };
        let memberships = match ctx.principal.principal() {
            Principal::TenantKey { tenant, role, .. } => vec![MembershipView {
                tenant: tenant.clone(),
                role: MemberRole::Builtin(*role),
            }],
            _ => ctx
                .memberships
                .iter()
                .map(|m| MembershipView {
                    tenant: m.tenant.clone(),
                    role: m.role.clone(),
                })
                .collect(),
        };
        MeView {
            actor: ctx.principal.actor().to_owned(),
            kind: crate::identity::kind(&ctx.principal).into(),
            user_id,
            email,
            memberships,
        }
    }
}
