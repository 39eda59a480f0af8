//! API keys: platform keys (admin, operator) and tenant keys (owner, admin, member, viewer).
//!
//! Only the hash of a key's secret is stored, and the secret is returned once, at creation.
//! Verified keys are cached in memory; revoking a key updates the cache in the same step as
//! the catalog row, so a revoked key fails on the very next request.

use std::sync::Arc;

use bulkhead_api::{CreateKey, CreatePlatformKey, CreatedKey, KeyView, Page};
use bulkhead_core::access::{self, ControlAction, KeyOwner, PlatformRole, StoredKey, TenantRole};
use bulkhead_core::error::Error;
use bulkhead_core::keys;
use bulkhead_core::model::TenantStatus;
use bulkhead_core::time::Timestamp;
use bulkhead_core::{Incarnation, KeyId, TenantId};

use crate::store::{Row, StoreResult, Tx, malformed, params};
use crate::{Catalog, Ctx};

/// Longest lifetime a key may be given: ten years.
const MAX_EXPIRES_IN: u64 = 10 * 365 * 24 * 3600;

const KEY_COLUMNS: &str =
    "id, name, secret_hash, tenant_id, role, created_at, expires_at, revoked_at, incarnation";

struct KeyRow {
    stored: StoredKey,
    name: String,
    created_at: Timestamp,
}

type RawKey = (
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn read_key(row: &Row) -> StoreResult<RawKey> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

fn decode(
    (id, name, secret_hash, tenant, role, created_at, expires_at, revoked_at, incarnation): RawKey,
) -> StoreResult<KeyRow> {
    // Tenant keys made before incarnations belong to the legacy one.
    let incarnation = match (&tenant, incarnation) {
        (None, _) => None,
        (Some(_), None) => Some(Incarnation::legacy()),
        (Some(_), Some(raw)) => Some(Incarnation::parse(&raw).map_err(|e| malformed(e.message))?),
    };
    let owner = match tenant {
        Some(tenant) => KeyOwner::Tenant(
            TenantId::parse(&tenant).map_err(|e| malformed(e.message))?,
            role.parse::<TenantRole>()
                .map_err(|e| malformed(e.message))?,
        ),
        None => KeyOwner::Platform(
            role.parse::<PlatformRole>()
                .map_err(|e| malformed(e.message))?,
        ),
    };
    Ok(KeyRow {
        stored: StoredKey {
            id: KeyId::parse(&id).map_err(|e| malformed(e.message))?,
            secret_hash,
            owner,
            expires_at: expires_at.map(Timestamp::from_micros),
            revoked: revoked_at.is_some(),
            incarnation,
        },
        name,
        created_at: Timestamp::from_micros(created_at),
    })
}

fn key_view(row: KeyRow) -> KeyView {
    let (role, tenant) = match &row.stored.owner {
        KeyOwner::Platform(role) => (role.as_str().to_owned(), None),
        KeyOwner::Tenant(tenant, role) => (role.as_str().to_owned(), Some(tenant.clone())),
    };
    KeyView {
        id: row.stored.id,
        name: row.name,
        role,
        tenant,
        created_at: row.created_at,
        expires_at: row.stored.expires_at,
        revoked: row.stored.revoked,
    }
}

fn insert_key(tx: &dyn Tx, row: &KeyRow) -> StoreResult<()> {
    let (tenant, role) = match &row.stored.owner {
        KeyOwner::Platform(role) => (None, role.as_str()),
        KeyOwner::Tenant(tenant, role) => (Some(tenant.as_str()), role.as_str()),
    };
    tx.execute(
        &format!(
            "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8)"
        ),
        params![
            row.stored.id.as_str(),
            &row.name,
            &row.stored.secret_hash,
            tenant,
            role,
            row.created_at.as_micros(),
            row.stored.expires_at.map(Timestamp::as_micros),
            row.stored.incarnation.as_ref().map(Incarnation::as_str)
        ],
    )?;
    Ok(())
}

fn validate_key_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(Error::bad_request(
            "invalid_name",
            "key name must be 1-100 bytes of printable text",
        ));
    }
    Ok(())
}

fn expiry(now: Timestamp, expires_in: Option<u64>) -> Result<Option<Timestamp>, Error> {
    match expires_in {
        None => Ok(None),
        Some(0) => Err(Error::bad_request(
            "invalid_expiry",
            "expires_in must be at least 1 second",
        )),
        Some(s) if s > MAX_EXPIRES_IN => Err(Error::bad_request(
            "invalid_expiry",
            format!("expires_in must be at most {MAX_EXPIRES_IN} seconds"),
        )),
        Some(s) => Ok(Some(now.plus_seconds(s as i64))),
    }
}

impl Catalog {
    /// Authorizes managing `tenant`'s keys, members or roles (denials audited) and returns
    /// the life of the tenant the caller was authorized for: a credential of an earlier life
    /// under the same id manages nothing of a later one.
    pub(crate) async fn authorize_tenant_admin(
        &self,
        ctx: &Ctx,
        tenant: &TenantId,
        op: &str,
        target: &str,
    ) -> Result<Incarnation, Error> {
        let deny = |e| self.denied(ctx, op, target, Some(tenant), e);
        // A missing tenant and a foreign one answer the same 404 (`tenant_not_found`).
        let route = self.route(tenant).await.map_err(deny)?;
        let incarnation = route.placement.incarnation.clone();
        access::authorize_tenant_admin(
            &ctx.principal,
            tenant,
            &incarnation,
            crate::identity::membership_in(ctx, tenant),
        )
        .map_err(deny)?;
        Ok(incarnation)
    }

    /// A key by id: from the cache, or from the catalog (then cached).
    pub(crate) async fn stored_key(&self, id: &KeyId) -> Result<Option<Arc<StoredKey>>, Error> {
        if let Some(key) = self.inner().keys.get(id) {
            return Ok(Some(key));
        }
        let ticket = self.cache_ticket();
        let row = self.read_key_row(id).await?;
        // Cached only when no change from another server was applied meanwhile (it may have
        // been this key's revocation, committed after the read). Never overwrite: a local
        // revocation that raced this read has already put the newer row.
        Ok(row.map(|row| {
            self.inner()
                .keys
                .fill(ticket, id.clone(), Arc::new(row.stored), |_, _| true)
        }))
    }

    async fn read_key_row(&self, id: &KeyId) -> Result<Option<KeyRow>, Error> {
        let key_id = id.clone();
        self.blocking(move |store| {
            store.read(|tx| {
                tx.query_opt(
                    &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"),
                    params![key_id.as_str()],
                )?
                .map(|r| decode(read_key(&r)?))
                .transpose()
            })
        })
        .await
    }

    async fn insert_new_key(
        &self,
        ctx: Option<&Ctx>,
        owner: KeyOwner,
        incarnation: Option<Incarnation>,
        name: String,
        expires_in: Option<u64>,
    ) -> Result<Option<CreatedKey>, Error> {
        validate_key_name(&name)?;
        let now = self.inner().clock.now();
        let expires_at = expiry(now, expires_in)?;
        let generated = keys::generate()?;
        let row = KeyRow {
            stored: StoredKey {
                id: generated.id,
                secret_hash: generated.secret_hash,
                owner,
                expires_at,
                revoked: false,
                incarnation,
            },
            name,
            created_at: now,
        };
        let tenant = match &row.stored.owner {
            KeyOwner::Tenant(t, _) => Some(t.clone()),
            KeyOwner::Platform(_) => None,
        };
        let first_start = ctx.is_none();
        let event = match ctx {
            Some(ctx) => self.event(
                ctx,
                "key.create",
                row.stored.id.as_str(),
                tenant.as_ref(),
                Some(
                    serde_json::json!({
                        "name": row.name,
                        "role": match &row.stored.owner {
                            KeyOwner::Tenant(_, role) => role.as_str(),
                            KeyOwner::Platform(role) => role.as_str(),
                        },
                        "platform": matches!(row.stored.owner, KeyOwner::Platform(_)),
                    })
                    .to_string(),
                ),
            ),
            None => crate::AuditEvent {
                at: now,
                actor: "system".into(),
                action: "key.create".into(),
                target: row.stored.id.to_string(),
                tenant: None,
                outcome: "ok".into(),
                request_id: String::new(),
                detail: Some("first-start platform admin key".into()),
            },
        };
        let view = self
            .blocking(move |store| {
                store.write(|tx| {
                    if first_start {
                        if crate::store::get_meta(tx, "initialized")?.is_some() {
                            return Ok(None);
                        }
                        crate::store::set_meta(tx, "initialized", "1")?;
                    }
                    if let Some(tenant) = &tenant {
                        // The key belongs to the life of the tenant its creator was
                        // authorized for: if that one is gone, so is the tenant.
                        let current = crate::rows::tenants::read_tenant(tx, tenant)?;
                        let alive = current.is_some_and(|(t, p)| {
                            t.status != TenantStatus::Deleting
                                && Some(&p.incarnation) == row.stored.incarnation.as_ref()
                        });
                        if !alive {
                            return Err(
                                Error::not_found("tenant_not_found", "tenant not found").into()
                            );
                        }
                    }
                    insert_key(tx, &row)?;
                    crate::rows::audit::insert(tx, &event)?;
                    Ok(Some(key_view(row)))
                })
            })
            .await?;
        Ok(view.map(|view| CreatedKey {
            view,
            key: generated.token,
        }))
    }

    /// Creates the first platform admin key and marks the catalog initialized, in one
    /// transaction; `None` when the catalog was already initialized (another server sharing
    /// it got there first).
    pub async fn create_first_admin_key(&self) -> Result<Option<CreatedKey>, Error> {
        self.insert_new_key(
            None,
            KeyOwner::Platform(PlatformRole::Admin),
            None,
            "first-start admin".into(),
            None,
        )
        .await
    }

    pub async fn create_tenant_key(
        &self,
        ctx: &Ctx,
        tenant: &TenantId,
        request: CreateKey,
    ) -> Result<CreatedKey, Error> {
        let incarnation = self
            .authorize_tenant_admin(ctx, tenant, "key.create", tenant.as_str())
            .await?;
        // A tenant key may not mint a key more powerful than itself.
        if let Some(own) = crate::identity::caller_role(ctx, tenant)
            && request.role > own
        {
            let message = format!(
                "a {} key cannot create a {} key",
                own.as_str(),
                request.role.as_str()
            );
            let err = Error::forbidden("forbidden", message);
            return Err(self.denied(ctx, "key.create", tenant.as_str(), Some(tenant), err));
        }
        self.insert_new_key(
            Some(ctx),
            KeyOwner::Tenant(tenant.clone(), request.role),
            Some(incarnation),
            request.name,
            request.expires_in,
        )
        .await?
        .ok_or_else(Error::internal)
    }

    pub async fn create_platform_key(
        &self,
        ctx: &Ctx,
        request: CreatePlatformKey,
    ) -> Result<CreatedKey, Error> {
        access::authorize_control(&ctx.principal, ControlAction::ManagePlatformKeys)
            .map_err(|e| self.denied(ctx, "platform_key.create", "platform-keys", None, e))?;
        self.insert_new_key(
            Some(ctx),
            KeyOwner::Platform(request.role),
            None,
            request.name,
            request.expires_in,
        )
        .await?
        .ok_or_else(Error::internal)
    }

    async fn list_keys_where(&self, tenant: Option<TenantId>) -> Result<Page<KeyView>, Error> {
        let items = self
            .blocking(move |store| {
                store.read(|tx| {
                    let sql = format!(
                        "SELECT {KEY_COLUMNS} FROM api_keys WHERE (CAST(?1 AS TEXT) IS NULL AND tenant_id IS NULL) OR tenant_id = ?1 ORDER BY created_at, id"
                    );
                    tx.query(&sql, params![tenant.as_ref().map(TenantId::as_str)])?
                        .iter()
                        .map(|r| decode(read_key(r)?).map(key_view))
                        .collect::<StoreResult<Vec<_>>>()
                })
            })
            .await?;
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    pub async fn list_tenant_keys(
        &self,
        ctx: &Ctx,
        tenant: &TenantId,
    ) -> Result<Page<KeyView>, Error> {
        self.authorize_tenant_admin(ctx, tenant, "key.list", tenant.as_str())
            .await?;
        self.list_keys_where(Some(tenant.clone())).await
    }

    pub async fn list_platform_keys(&self, ctx: &Ctx) -> Result<Page<KeyView>, Error> {
        access::authorize_control(&ctx.principal, ControlAction::ManagePlatformKeys)
            .map_err(|e| self.denied(ctx, "platform_key.list", "platform-keys", None, e))?;
        self.list_keys_where(None).await
    }

    async fn revoke(&self, ctx: &Ctx, tenant: Option<&TenantId>, id: &KeyId) -> Result<(), Error> {
        let not_found = || Error::not_found("key_not_found", "key not found");
        let event = self.event(ctx, "key.revoke", id.as_str(), tenant, None);
        let now = self.inner().clock.now();
        let (key_id, owner_tenant) = (id.clone(), tenant.cloned());
        self.blocking(move |store| {
            store.write(|tx| {
                let changed = tx.execute(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?3) WHERE id = ?1 AND \
                     ((CAST(?2 AS TEXT) IS NULL AND tenant_id IS NULL) OR tenant_id = ?2)",
                    params![
                        key_id.as_str(),
                        owner_tenant.as_ref().map(TenantId::as_str),
                        now.as_micros()
                    ],
                )?;
                if changed == 0 {
                    return Err(not_found().into());
                }
                crate::store::changed(tx, "key", key_id.as_str())?;
                crate::rows::audit::insert(tx, &event)
            })
        })
        .await?;
        // Replace the cached entry with the committed row, so the next request sees the revocation.
        if let Some(row) = self.read_key_row(id).await? {
            self.inner().keys.put(id.clone(), Arc::new(row.stored));
        }
        Ok(())
    }

    pub async fn revoke_tenant_key(
        &self,
        ctx: &Ctx,
        tenant: &TenantId,
        id: &KeyId,
    ) -> Result<(), Error> {
        self.authorize_tenant_admin(ctx, tenant, "key.revoke", tenant.as_str())
            .await?;
        // A tenant key may not revoke a key more powerful than itself (as it may not mint one).
        if let Some(own) = crate::identity::caller_role(ctx, tenant)
            && let Some(KeyOwner::Tenant(owner, role)) =
                self.read_key_row(id).await?.map(|r| r.stored.owner)
            && owner == *tenant
            && role > own
        {
            let message = format!(
                "a {} key cannot revoke a {} key",
                own.as_str(),
                role.as_str()
            );
            let err = Error::forbidden("forbidden", message);
            return Err(self.denied(ctx, "key.revoke", id.as_str(), Some(tenant), err));
        }
        self.revoke(ctx, Some(tenant), id).await
    }

    pub async fn revoke_platform_key(&self, ctx: &Ctx, id: &KeyId) -> Result<(), Error> {
        access::authorize_control(&ctx.principal, ControlAction::ManagePlatformKeys)
            .map_err(|e| self.denied(ctx, "platform_key.revoke", id.as_str(), None, e))?;
        self.revoke(ctx, None, id).await
    }
}
