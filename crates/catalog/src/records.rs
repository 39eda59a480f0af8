//! Data-plane operations: every record request resolves its tenant through the routing table,
//! gets a `TenantScope` from the access layer, and only then reaches the tenant's engine.
//! Platform-admin access to tenant data is audited before the data is touched.

use bulkhead_core::access::{self, DataAction, TenantScope};
use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::record::{NewRecord, Record, RecordChange, validate_full, validate_patch};
use bulkhead_core::{CollectionName, RecordId, TenantId};
use serde_json::Value;

use crate::moves::WriteTicket;
use crate::{Catalog, Ctx, audit};

/// Whether an update replaces the record (PUT) or patches it (PATCH).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    Replace,
    Patch,
}

fn precondition(header: Option<i64>, body: Option<i64>) -> Result<Option<i64>, Error> {
    match (header, body) {
        (Some(h), Some(b)) if h != b => Err(Error::bad_request(
            "conflicting_preconditions",
            format!("If-Match says version {h} but the body says version {b}"),
        )),
        (h, b) => Ok(h.or(b)),
    }
}

impl Catalog {
    /// Resolves and authorizes the tenant a data request acts on. Denials are audited; so is
    /// every platform-admin access, synchronously, before any data is read or written.
    pub(crate) async fn data_scope(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        action: DataAction,
        op: &str,
        target: &str,
    ) -> Result<TenantScope, Error> {
        let tenant = access::data_tenant(&ctx.principal, named)
            .map_err(|e| self.denied(ctx, op, target, named, e))?;
        let route = self
            .route(&tenant)
            .await
            .map_err(|e| self.denied(ctx, op, target, Some(&tenant), e))?;
        let scope = access::authorize_data(&ctx.principal, &route, action)
            .map_err(|e| self.denied(ctx, op, target, Some(&tenant), e))?;
        Catalog::tag_tenant(&tenant);
        if scope.is_platform_admin_access() {
            let event = self.event(
                ctx,
                &format!("admin_data_access.{op}"),
                target,
                Some(&tenant),
                None,
            );
            self.blocking(move |store| store.write(|tx| audit::insert(tx, &event)))
                .await?;
        }
        Ok(scope)
    }

    /// The scope of a write, with its pass through the tenant's write gate (held until the
    /// write has finished). The gate is entered before the route is resolved, so a write held
    /// during a move's switch lands on the placement the switch chose.
    pub(crate) async fn write_scope(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        op: &str,
        target: &str,
    ) -> Result<(TenantScope, WriteTicket), Error> {
        let tenant = access::data_tenant(&ctx.principal, named)
            .map_err(|e| self.denied(ctx, op, target, named, e))?;
        let wait = self.inner().options.moves.freeze_wait;
        let ticket = self.inner().moves.gates.enter(&tenant, wait).await?;
        let scope = self
            .data_scope(ctx, named, DataAction::Write, op, target)
            .await?;
        Ok((scope, ticket))
    }

    pub async fn create_record(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
        body: &Value,
    ) -> Result<Record, Error> {
        let (scope, ticket) = self
            .write_scope(ctx, named, "record.create", collection.as_str())
            .await?;
        let collection = self.collection(collection)?;
        let (id, fields, _) = validate_full(&collection, body, None)?;
        let record = NewRecord {
            id: id.unwrap_or_else(RecordId::generate),
            fields,
        };
        let id = record.id.clone();
        let engine = self.engine(&scope.placement().domain)?;
        ticket.touched(&collection.name, std::iter::once(&id));
        let created = engine.insert(&scope, &collection, vec![record]).await;
        ticket.touched(&collection.name, std::iter::once(&id));
        created?.pop().ok_or_else(|| {
            tracing::error!("engine returned no record for a single insert");
            Error::internal()
        })
    }

    pub async fn get_record(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<Record, Error> {
        let scope = self
            .data_scope(
                ctx,
                named,
                DataAction::Read,
                "record.get",
                collection.as_str(),
            )
            .await?;
        let collection = self.collection(collection)?;
        let engine = self.engine(&scope.placement().domain)?;
        engine
            .get(&scope, &collection, id)
            .await?
            .ok_or_else(|| Error::not_found("record_not_found", "record not found"))
    }

    /// PUT (`Replace`: every field) or PATCH (`Patch`: JSON merge-patch at the top level, `null`
    /// removes an optional field). `if_match` comes from the `If-Match` header; a `version` in
    /// the body acts the same way.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_record(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
        id: &RecordId,
        kind: UpdateKind,
        body: &Value,
        if_match: Option<i64>,
    ) -> Result<Record, Error> {
        let op = match kind {
            UpdateKind::Replace => "record.replace",
            UpdateKind::Patch => "record.patch",
        };
        let (scope, ticket) = self
            .write_scope(ctx, named, op, collection.as_str())
            .await?;
        let collection = self.collection(collection)?;
        let (change, pre) = match kind {
            UpdateKind::Replace => {
                let (_, fields, pre) = validate_full(&collection, body, Some(id))?;
                (RecordChange::Replace(fields), pre)
            }
            UpdateKind::Patch => {
                let (patch, pre) = validate_patch(&collection, body, id)?;
                (RecordChange::Patch(patch), pre)
            }
        };
        let expected = precondition(if_match, pre.version)?;
        let engine = self.engine(&scope.placement().domain)?;
        ticket.touched(&collection.name, std::iter::once(id));
        let updated = engine
            .update(&scope, &collection, id, change, expected)
            .await;
        ticket.touched(&collection.name, std::iter::once(id));
        Ok(updated?)
    }

    pub async fn delete_record(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
        id: &RecordId,
        if_match: Option<i64>,
    ) -> Result<(), Error> {
        let (scope, ticket) = self
            .write_scope(ctx, named, "record.delete", collection.as_str())
            .await?;
        let collection = self.collection(collection)?;
        let engine = self.engine(&scope.placement().domain)?;
        ticket.touched(&collection.name, std::iter::once(id));
        let deleted = engine.delete(&scope, &collection, id, if_match).await;
        ticket.touched(&collection.name, std::iter::once(id));
        Ok(deleted?)
    }
}

/// Parses an `If-Match` value: `"3"`, `3` or `W/"3"`; `*` means "any version".
pub fn parse_if_match(raw: &str) -> Result<Option<i64>, Error> {
    let trimmed = raw.trim();
    if trimmed == "*" {
        return Ok(None);
    }
    let unquoted = trimmed.trim_start_matches("W/").trim_matches('"');
    unquoted.parse::<i64>().map(Some).map_err(|_| {
        Error::new(
            ErrorKind::BadRequest,
            "invalid_if_match",
            format!("If-Match must be a record version such as \"3\", got {trimmed:?}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_accepts_etag_forms() {
        assert_eq!(parse_if_match("\"3\"").unwrap(), Some(3));
        assert_eq!(parse_if_match("W/\"4\"").unwrap(), Some(4));
        assert_eq!(parse_if_match("*").unwrap(), None);
        assert!(parse_if_match("abc").is_err());
    }
}
