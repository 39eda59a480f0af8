//! The members API (people from identity providers in a tenant, with a role), custom roles,
//! and platform-wide user administration.
//!
//! Tenant owners and admins (keys or members) and platform admins manage a tenant's members
//! and roles; only owners and platform admins grant, change or remove the `owner` role, and a
//! tenant's last owner cannot be removed or demoted. Operators manage none of it.

use bulkhead_api::{AddMember, MemberView, MembershipView, RoleView, UserView};
use bulkhead_core::access::{self, ControlAction, TenantRole};
use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::model::TenantStatus;
use bulkhead_core::permissions::{MemberRole, RoleSpec};
use bulkhead_core::time::Timestamp;
use bulkhead_core::{RoleName, TenantId, UserId};

use crate::identity::{caller_role, read_memberships};
use crate::store::{Row, StoreResult, Tx, malformed, params};
use crate::{Catalog, Ctx};

fn member_not_found() -> Error {
    Error::not_found("member_not_found", "no such member in this tenant")
}

const MEMBER_SELECT: &str = "SELECT u.id, m.tenant_id, m.role, u.issuer, u.sub, u.email, \
     u.disabled, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id";

fn member_view(row: &Row) -> StoreResult<MemberView> {
    let id: String = row.get(0)?;
    let tenant: String = row.get(1)?;
    let role: String = row.get(2)?;
    let issuer: Option<String> = row.get(3)?;
    Ok(MemberView {
        user_id: UserId::parse(&id).map_err(|e| malformed(e.message))?,
        tenant: TenantId::parse(&tenant).map_err(|e| malformed(e.message))?,
        role: MemberRole::parse(&role).map_err(|e| malformed(e.message))?,
        status: if issuer.is_some() {
            "active"
        } else {
            "invited"
        }
        .into(),
        issuer,
        sub: row.get(4)?,
        email: row.get(5)?,
        disabled: row.get::<i64>(6)? != 0,
        created_at: Timestamp::from_micros(row.get(7)?),
    })
}

fn read_member(tx: &dyn Tx, tenant: &TenantId, user: &UserId) -> StoreResult<Option<MemberView>> {
    tx.query_opt(
        &format!("{MEMBER_SELECT} WHERE m.tenant_id = ?1 AND m.user_id = ?2"),
        params![tenant.as_str(), user.as_str()],
    )?
    .map(|r| member_view(&r))
    .transpose()
}

fn require_tenant(tx: &dyn Tx, tenant: &TenantId) -> StoreResult<()> {
    let status: Option<String> = tx
        .query_opt(
            "SELECT status FROM tenants WHERE id = ?1",
            params![tenant.as_str()],
        )?
        .map(|r| r.get(0))
        .transpose()?;
    if status.is_none_or(|s| s == TenantStatus::Deleting.as_str()) {
        return Err(Error::not_found("tenant_not_found", "tenant not found").into());
    }
    Ok(())
}

fn owners(tx: &dyn Tx, tenant: &TenantId) -> StoreResult<i64> {
    tx.query_one(
        "SELECT COUNT(*) FROM memberships WHERE tenant_id = ?1 AND role = 'owner'",
        params![tenant.as_str()],
    )?
    .get(0)
}

fn check_role_exists(tx: &dyn Tx, tenant: &TenantId, role: &MemberRole) -> StoreResult<()> {
    if let MemberRole::Custom(name) = role {
        let found = tx
            .query_opt(
                "SELECT 1 FROM roles WHERE tenant_id = ?1 AND name = ?2",
                params![tenant.as_str(), name.as_str()],
            )?
            .is_some();
        if !found {
            return Err(Error::bad_request(
                "unknown_role",
                format!("tenant '{tenant}' has no role '{name}'"),
            )
            .into());
        }
    }
    Ok(())
}

fn valid_email(email: &str) -> Result<String, Error> {
    let email = email.trim().to_lowercase();
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(email)
    } else {
        Err(Error::bad_request(
            "invalid_email",
            format!("{email:?} is not an email address"),
        ))
    }
}

impl Catalog {
    /// Runs a write to users, memberships or roles, then clears this server's user cache (the
    /// write itself tells other servers through the change feed).
    async fn members_write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::store::Store) -> StoreResult<T> + Send + 'static,
    ) -> Result<T, Error> {
        let result = self.blocking(f).await;
        self.inner().users.forget_all();
        result
    }

    /// Authorizes managing `tenant`'s members or roles; denials are audited.
    async fn tenant_admin(&self, ctx: &Ctx, tenant: &TenantId, op: &str) -> Result<(), Error> {
        self.authorize_tenant_admin(ctx, tenant, op, tenant.as_str())
            .await
            .map(drop)
    }

    /// Owners and platform admins only may touch the `owner` role.
    fn may_touch_owner(&self, ctx: &Ctx, tenant: &TenantId) -> bool {
        ctx.principal.platform_role() == Some(access::PlatformRole::Admin)
            || caller_role(ctx, tenant) == Some(TenantRole::Owner)
    }

    fn owner_guard(&self, ctx: &Ctx, tenant: &TenantId, op: &str) -> Result<(), Error> {
        if self.may_touch_owner(ctx, tenant) {
            return Ok(());
        }
        let err = Error::forbidden("forbidden", "only owners grant, change or remove owners");
        Err(self.denied(ctx, op, tenant.as_str(), Some(tenant), err))
    }

    async fn custom_roles_allowed(&self, tenant: &TenantId) -> Result<(), Error> {
        let tier = self.route(tenant).await?.tier.clone();
        if self.tier_policy(&tier).await?.ceiling.custom_roles {
            Ok(())
        } else {
            Err(Error::forbidden(
                "custom_roles_not_allowed",
                format!("tier '{tier}' does not allow custom roles"),
            ))
        }
    }

    pub async fn add_member(
        &self,
        ctx: &Ctx,
        tenant: &TenantId,
        request: AddMember,
    ) -> Result<MemberView, Error> {
        self.tenant_admin(ctx, tenant, "member.add").await?;
        if request.role == MemberRole::Builtin(TenantRole::Owner) {
            self.owner_guard(ctx, tenant, "member.add")?;
        }
        if matches!(request.role, MemberRole::Custom(_)) {
            self.custom_roles_allowed(tenant).await?;
        }
        let identity = self.inner().options.identity.clone();
        let resolve = |issuer: &str| {
            identity
                .as_ref()
                .and_then(|i| i.resolve_issuer(issuer))
                .ok_or_else(|| {
                    Error::bad_request(
                        "unknown_issuer",
                        format!("no JWT issuer {issuer:?} is configured"),
                    )
                })
        };
        let by_identity = match (&request.issuer, &request.sub) {
            (Some(issuer), Some(sub)) => {
                let iss = resolve(issuer)?;
                if sub.is_empty() || sub.len() > 255 {
                    return Err(Error::bad_request("invalid_sub", "sub must be 1-255 bytes"));
                }
                Some((iss, sub.clone()))
            }
            (None, Some(_)) => {
                return Err(Error::bad_request(
                    "invalid_member",
                    "give both issuer and sub, or an email",
                ));
            }
            _ => None,
        };
        let email = request.email.as_deref().map(valid_email).transpose()?;
        if by_identity.is_none() && email.is_none() {
            return Err(Error::bad_request(
                "invalid_member",
                "name the person by issuer and sub, or by email",
            ));
        }
        // An email invitation is claimed only through the issuer it names: the one given, or
        // the only one configured. With several, whoever controls one of them could otherwise
        // take over another tenant's pending invitation.
        let invite_issuer = match (&by_identity, &request.issuer) {
            (Some(_), _) => None,
            (None, Some(issuer)) => Some(resolve(issuer)?),
            (None, None) => {
                let all = identity.as_ref().map(|i| i.issuers()).unwrap_or_default();
                match all.as_slice() {
                    [only] => Some(only.clone()),
                    [] => {
                        return Err(Error::bad_request(
                            "no_issuer",
                            "no JWT issuer is configured, so an email invitation could never be \
                             claimed; configure one ([[issuers]]) or add the member by issuer and sub",
                        ));
                    }
                    _ => {
                        return Err(Error::bad_request(
                            "issuer_required",
                            "several JWT issuers are configured: name the one whose users may \
                             claim this invitation (issuer)",
                        ));
                    }
                }
            }
        };
        let now = self.inner().clock.now();
        let fresh = UserId::generate()?;
        let (tenant, role) = (tenant.clone(), request.role.clone());
        let event = self.event(ctx, "member.add", role.as_str(), Some(&tenant), None);
        self.members_write(move |store| {
            store.write(|tx| {
                crate::store::changed(tx, "members", "*")?;
                require_tenant(tx, &tenant)?;
                check_role_exists(tx, &tenant, &role)?;
                let existing: Option<String> = match (&by_identity, &email) {
                    (Some((iss, sub)), _) => tx
                        .query_opt(
                            "SELECT id FROM users WHERE issuer = ?1 AND sub = ?2",
                            params![iss.as_str(), sub.as_str()],
                        )?
                        .map(|r| r.get(0))
                        .transpose()?,
                    (None, Some(email)) => {
                        let rows = tx.query(
                            "SELECT id FROM users WHERE email = ?1 ORDER BY created_at LIMIT 2",
                            params![email.as_str()],
                        )?;
                        match rows.as_slice() {
                            [only] => Some(only.get(0)?),
                            _ => None,
                        }
                    }
                    (None, None) => None,
                };
                let user = match existing {
                    Some(id) => UserId::parse(&id).map_err(|e| malformed(e.message))?,
                    None => {
                        let (iss, sub) = by_identity.clone().unzip();
                        tx.execute(
                            "INSERT INTO users (id, issuer, sub, email, disabled, created_at, invite_issuer) \
                             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
                            params![
                                fresh.as_str(),
                                iss,
                                sub,
                                email.clone(),
                                now.as_micros(),
                                invite_issuer.clone()
                            ],
                        )?;
                        fresh.clone()
                    }
                };
                if read_member(tx, &tenant, &user)?.is_some() {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        "already_member",
                        format!("user {user} is already a member of '{tenant}'"),
                    )
                    .into());
                }
                tx.execute(
                    "INSERT INTO memberships (tenant_id, user_id, role, created_at) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        tenant.as_str(),
                        user.as_str(),
                        role.as_str(),
                        now.as_micros()
                    ],
                )?;
                let mut event = event;
                event.target = user.to_string();
                event.detail = Some(format!("role {role}"));
                crate::rows::audit::insert(tx, &event)?;
                read_member(tx, &tenant, &user)?.ok_or_else(|| malformed("member vanished"))
            })
        })
        .await
    }

    pub async fn list_members(
        &self,
        ctx: &Ctx,
        tenant: &TenantId,
    ) -> Result<Vec<MemberView>, Error> {
        self.tenant_admin(ctx, tenant, "member.list").await?;
        let tenant = tenant.clone();
        self.blocking(move |store| {
            store.read(|tx| {
                require_tenant(tx, &tenant)?;
                tx.query(
                    &format!("{MEMBER_SELECT} WHERE m.tenant_id = ?1 ORDER BY m.created_at, u.id"),
                    params![tenant.as_str()],
                )?
                .iter()
                .map(member_view)
                .collect()
            })
        })
        .await
    }

    /// Changes a member's role (`Some`) or removes the member (`None`).
    pub async fn change_member(
        &self,
        ctx: &Ctx,
        tenant: &TenantId,
        user: &UserId,
        role: Option<MemberRole>,
    ) -> Result<Option<MemberView>, Error> {
        let op = if role.is_some() {
            "member.update"
        } else {
            "member.remove"
        };
        self.tenant_admin(ctx, tenant, op).await?;
        if matches!(role, Some(MemberRole::Custom(_))) {
            self.custom_roles_allowed(tenant).await?;
        }
        let touches_owner_allowed = self.may_touch_owner(ctx, tenant);
        let (tenant, user) = (tenant.clone(), user.clone());
        let event = self.event(
            ctx,
            op,
            user.as_str(),
            Some(&tenant),
            role.as_ref().map(|r| format!("role {r}")),
        );
        self.members_write(move |store| {
            store.write(|tx| {
                crate::store::changed(tx, "members", "*")?;
                require_tenant(tx, &tenant)?;
                let current = read_member(tx, &tenant, &user)?.ok_or_else(member_not_found)?;
                let owner = MemberRole::Builtin(TenantRole::Owner);
                let touches_owner = current.role == owner || role.as_ref() == Some(&owner);
                if touches_owner && !touches_owner_allowed {
                    return Err(Error::forbidden(
                        "forbidden",
                        "only owners grant, change or remove owners",
                    )
                    .into());
                }
                if current.role == owner && role.as_ref() != Some(&owner) && owners(tx, &tenant)? <= 1 {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        "last_owner",
                        "a tenant keeps at least one owner; add another owner first",
                    )
                    .into());
                }
                match &role {
                    Some(role) => {
                        check_role_exists(tx, &tenant, role)?;
                        tx.execute(
                            "UPDATE memberships SET role = ?1 WHERE tenant_id = ?2 AND user_id = ?3",
                            params![role.as_str(), tenant.as_str(), user.as_str()],
                        )?;
                    }
                    None => {
                        tx.execute(
                            "DELETE FROM memberships WHERE tenant_id = ?1 AND user_id = ?2",
                            params![tenant.as_str(), user.as_str()],
                        )?;
                    }
                }
                crate::rows::audit::insert(tx, &event)?;
                read_member(tx, &tenant, &user)
            })
        })
        .await
    }

    pub async fn put_role(
        &self,
        ctx: &Ctx,
        tenant: &TenantId,
        name: &RoleName,
        spec: RoleSpec,
    ) -> Result<RoleView, Error> {
        self.tenant_admin(ctx, tenant, "role.put").await?;
        spec.validate()?;
        self.custom_roles_allowed(tenant).await?;
        let collections = self.collections_snapshot();
        for (collection, grant) in &spec.collections {
            if collection == "*" {
                continue;
            }
            let Some(known) = collections.iter().find(|(n, _)| n.as_str() == collection) else {
                return Err(Error::bad_request(
                    "unknown_collection",
                    format!("no collection '{collection}'"),
                ));
            };
            if let Some(field) = grant
                .hidden_fields
                .iter()
                .find(|f| !known.1.fields.contains_key(*f))
            {
                return Err(Error::bad_request(
                    "unknown_field",
                    format!("collection '{collection}' has no field '{field}' to hide"),
                ));
            }
        }
        let now = self.inner().clock.now();
        let raw = serde_json::to_string(&spec).map_err(|_| Error::internal())?;
        let view = RoleView {
            tenant: tenant.clone(),
            name: name.clone(),
            spec,
            updated_at: now,
        };
        let event = self.event(
            ctx,
            "role.put",
            name.as_str(),
            Some(tenant),
            Some(raw.clone()),
        );
        let (tenant, name) = (tenant.clone(), name.clone());
        self.members_write(move |store| {
            store.write(|tx| {
                crate::store::changed(tx, "members", "*")?;
                require_tenant(tx, &tenant)?;
                tx.execute(
                    "INSERT INTO roles (tenant_id, name, spec, updated_at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (tenant_id, name) DO UPDATE SET spec = excluded.spec, \
                     updated_at = excluded.updated_at",
                    params![
                        tenant.as_str(),
                        name.as_str(),
                        raw.as_str(),
                        now.as_micros()
                    ],
                )?;
                crate::rows::audit::insert(tx, &event)
            })
        })
        .await?;
        Ok(view)
    }

    pub async fn list_roles(&self, ctx: &Ctx, tenant: &TenantId) -> Result<Vec<RoleView>, Error> {
        self.tenant_admin(ctx, tenant, "role.list").await?;
        let tenant = tenant.clone();
        self.blocking(move |store| {
            store.read(|tx| {
                require_tenant(tx, &tenant)?;
                tx.query(
                    "SELECT name, spec, updated_at FROM roles WHERE tenant_id = ?1 ORDER BY name",
                    params![tenant.as_str()],
                )?
                .iter()
                .map(|row| {
                    let name: String = row.get(0)?;
                    let spec: String = row.get(1)?;
                    Ok(RoleView {
                        tenant: tenant.clone(),
                        name: RoleName::parse(&name).map_err(|e| malformed(e.message))?,
                        spec: serde_json::from_str(&spec).map_err(malformed)?,
                        updated_at: Timestamp::from_micros(row.get(2)?),
                    })
                })
                .collect()
            })
        })
        .await
    }

    pub async fn delete_role(
        &self,
        ctx: &Ctx,
        tenant: &TenantId,
        name: &RoleName,
    ) -> Result<(), Error> {
        self.tenant_admin(ctx, tenant, "role.delete").await?;
        let event = self.event(ctx, "role.delete", name.as_str(), Some(tenant), None);
        let (tenant, name) = (tenant.clone(), name.clone());
        self.members_write(move |store| {
            store.write(|tx| {
                crate::store::changed(tx, "members", "*")?;
                require_tenant(tx, &tenant)?;
                let holders: i64 = tx
                    .query_one(
                        "SELECT COUNT(*) FROM memberships WHERE tenant_id = ?1 AND role = ?2",
                        params![tenant.as_str(), name.as_str()],
                    )?
                    .get(0)?;
                if holders > 0 {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        "role_in_use",
                        format!(
                            "{holders} member(s) still hold role '{name}'; change their role first"
                        ),
                    )
                    .into());
                }
                let removed = tx.execute(
                    "DELETE FROM roles WHERE tenant_id = ?1 AND name = ?2",
                    params![tenant.as_str(), name.as_str()],
                )?;
                if removed == 0 {
                    return Err(
                        Error::not_found("role_not_found", format!("no role '{name}'")).into(),
                    );
                }
                crate::rows::audit::insert(tx, &event)
            })
        })
        .await
    }

    /// Platform admins: users, optionally those with one email.
    pub async fn list_users(
        &self,
        ctx: &Ctx,
        email: Option<String>,
    ) -> Result<Vec<UserView>, Error> {
        access::authorize_control(&ctx.principal, ControlAction::ManageUsers)
            .map_err(|e| self.denied(ctx, "user.list", "users", None, e))?;
        let email = email.map(|e| e.trim().to_lowercase());
        self.blocking(move |store| {
            store.read(|tx| {
                let rows = match &email {
                    Some(email) => tx.query(
                        "SELECT id, issuer, sub, email, disabled, created_at FROM users \
                         WHERE email = ?1 ORDER BY created_at LIMIT 1000",
                        params![email.as_str()],
                    )?,
                    None => tx.query(
                        "SELECT id, issuer, sub, email, disabled, created_at FROM users \
                         ORDER BY created_at LIMIT 1000",
                        &[],
                    )?,
                };
                rows.iter().map(|row| user_view(tx, row)).collect()
            })
        })
        .await
    }

    /// Platform admins: disables (or re-enables) a user everywhere, at once.
    pub async fn set_user_disabled(
        &self,
        ctx: &Ctx,
        user: &UserId,
        disabled: bool,
    ) -> Result<UserView, Error> {
        access::authorize_control(&ctx.principal, ControlAction::ManageUsers)
            .map_err(|e| self.denied(ctx, "user.update", user.as_str(), None, e))?;
        let op = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        let event = self.event(ctx, op, user.as_str(), None, None);
        let user = user.clone();
        self.members_write(move |store| {
            store.write(|tx| {
                crate::store::changed(tx, "members", "*")?;
                let changed = tx.execute(
                    "UPDATE users SET disabled = ?1 WHERE id = ?2",
                    params![i64::from(disabled), user.as_str()],
                )?;
                if changed == 0 {
                    return Err(Error::not_found("user_not_found", "no such user").into());
                }
                crate::rows::audit::insert(tx, &event)?;
                let row = tx.query_one(
                    "SELECT id, issuer, sub, email, disabled, created_at FROM users WHERE id = ?1",
                    params![user.as_str()],
                )?;
                user_view(tx, &row)
            })
        })
        .await
    }
}

fn user_view(tx: &dyn Tx, row: &Row) -> StoreResult<UserView> {
    let id: String = row.get(0)?;
    let id = UserId::parse(&id).map_err(|e| malformed(e.message))?;
    let memberships = read_memberships(tx, &id)?
        .into_iter()
        .map(|m| MembershipView {
            tenant: m.tenant,
            role: m.role,
        })
        .collect();
    Ok(UserView {
        id,
        issuer: row.get(1)?,
        sub: row.get(2)?,
        email: row.get(3)?,
        disabled: row.get::<i64>(4)? != 0,
        created_at: Timestamp::from_micros(row.get(5)?),
        memberships,
    })
}

/// Removes a purged tenant's memberships and roles (inside the purge transaction).
pub(crate) fn purge_tenant(tx: &dyn Tx, tenant: &TenantId) -> StoreResult<()> {
    for table in ["memberships", "roles"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE tenant_id = ?1"),
            params![tenant.as_str()],
        )?;
    }
    crate::store::changed(tx, "members", "*")
}
