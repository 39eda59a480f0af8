//! Record operations: create, get, replace or patch, delete, and what a credential may do on
//! a collection. Each opens the tenant through a `TenantHandle` (`handle`: access decision,
//! admission, metering and the write gate, once) and reaches the tenant's data only through
//! it. Platform-admin access to tenant data is audited before the data is touched.

use std::collections::BTreeMap;

use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::permissions::{Action, Permission};
use bulkhead_core::query::eval;
use bulkhead_core::record::{
    BodyPreconditions, Fields, NewRecord, Record, RecordChange, apply_change, validate_full,
    validate_patch,
};
use bulkhead_core::schema::Collection;
use bulkhead_core::{CollectionName, RecordId, TenantId};
use serde_json::Value;

use tracing::Instrument as _;

use crate::handle::TenantHandle;
use crate::{Catalog, Ctx};

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
    /// What the caller may do on `collection`: actions, whether a record rule applies, and
    /// the fields they see. The full access decision runs (membership, role, ceiling, token
    /// narrowing, rule compilation), nothing is read from the tenant's data.
    pub async fn access_view(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
    ) -> Result<bulkhead_api::AccessView, Error> {
        let tenant = self
            .open_read(ctx, named, "access.view", collection.as_str())
            .await?;
        let permission = tenant.scope().permission(collection);
        let collection = self.collection(collection)?;
        permission.rule(&collection)?;
        Ok(bulkhead_api::AccessView {
            tenant: tenant.tenant().clone(),
            collection: collection.name.clone(),
            actions: permission.actions().iter().copied().collect(),
            record_rule: permission.has_rule(),
            fields: permission.view(&collection).fields.into_keys().collect(),
        })
    }

    pub async fn create_record(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
        body: &Value,
    ) -> Result<Record, Error> {
        let tenant = self
            .open_write(ctx, named, "record.create", collection.as_str())
            .await?;
        tenant
            .fenced(collection, || self.create_in(&tenant, collection, body))
            .await
    }

    async fn create_in(
        &self,
        tenant: &TenantHandle,
        collection: &CollectionName,
        body: &Value,
    ) -> Result<Record, Error> {
        let (permission, collection) = tenant.allow(collection, Action::Create)?;
        let (id, fields, _) = validate_visible(&permission, &collection, body, None)
            .map_err(|e| tenant.not_yet(&collection, body, e))?;
        let record = NewRecord {
            id: id.unwrap_or_else(RecordId::generate),
            fields,
        };
        if let Some(rule) = permission.rule(&collection)? {
            let candidate = record.as_created(self.inner().clock.now());
            if !eval::matches(&rule, &candidate) {
                return Err(tenant.denied(collection.name.as_str(), outside_rule()));
            }
        }
        let id = record.id.clone();
        // Ordered (and published) for the change feed when the collection is watched.
        let watched = self.watched(tenant, &collection, &id, false).await?;
        let hold = self.quota(tenant.scope(), tenant.engine(), 1, true).await?;
        tenant.before(&collection.name, &id).await?;
        let created = tenant
            .engine()
            .insert(tenant.scope(), &collection, vec![record])
            .instrument(crate::step_span(|| {
                tracing::info_span!("engine", op = "insert")
            }))
            .await;
        if let (Some(watched), Ok(records)) = (watched, &created) {
            watched.publish(&id, records.first());
        }
        tenant.after(&collection.name, &id).await;
        if let Some(hold) = hold {
            hold.settle(u64::from(created.is_ok()), 0);
        }
        let mut created = tenant
            .written(&collection.name, created)?
            .pop()
            .ok_or_else(|| {
                tracing::error!("engine returned no record for a single insert");
                Error::internal()
            })?;
        permission.redact(&mut created);
        Ok(created)
    }

    pub async fn get_record(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<Record, Error> {
        let tenant = self
            .open_read(ctx, named, "record.get", collection.as_str())
            .await?;
        let (permission, collection) = tenant.allow(collection, Action::Read)?;
        let rule = permission.rule(&collection)?;
        let found = visible(&tenant, &collection, id, rule.as_ref()).await;
        let mut record = self.watch_not_found(ctx, Some(tenant.tenant()), found)?;
        permission.redact(&mut record);
        Ok(record)
    }

    /// PUT (`Replace`: every field) or PATCH (`Patch`: JSON merge-patch at the top level, `null`
    /// removes an optional field). `if_match` comes from the `If-Match` header; a `version` in
    /// the body acts the same way. Under a record rule, the record must be visible before the
    /// change (else 404) and still visible after it (else 403, nothing applied); a field hidden
    /// from the caller cannot be written and keeps its value on a replace.
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
        let tenant = self.open_write(ctx, named, op, collection.as_str()).await?;
        let updated = tenant
            .fenced(collection, || {
                self.update_in(&tenant, collection, id, kind, body, if_match)
            })
            .await;
        self.watch_not_found(ctx, Some(tenant.tenant()), updated)
    }

    async fn update_in(
        &self,
        tenant: &TenantHandle,
        collection: &CollectionName,
        id: &RecordId,
        kind: UpdateKind,
        body: &Value,
        if_match: Option<i64>,
    ) -> Result<Record, Error> {
        let (permission, collection) = tenant.allow(collection, Action::Update)?;
        let view = permission.view(&collection);
        let (change, pre) = match kind {
            UpdateKind::Replace if permission.hidden().is_empty() => {
                let (_, fields, pre) = validate_full(&collection, body, Some(id))
                    .map_err(|e| tenant.not_yet(&collection, body, e))?;
                (RecordChange::Replace(fields), pre)
            }
            UpdateKind::Replace => {
                // Every visible field is set or removed; hidden ones keep their values.
                let (_, fields, pre) = validate_full(&view, body, Some(id))
                    .map_err(|e| tenant.not_yet(&collection, body, e))?;
                let mut patch: BTreeMap<_, _> = view
                    .fields
                    .keys()
                    .map(|name| (name.clone(), None))
                    .collect();
                patch.extend(fields.into_iter().map(|(k, v)| (k, Some(v))));
                (RecordChange::Patch(patch), pre)
            }
            UpdateKind::Patch => {
                let (patch, pre) = validate_patch(&view, body, id)
                    .map_err(|e| tenant.not_yet(&collection, body, e))?;
                (RecordChange::Patch(patch), pre)
            }
        };
        let expected = precondition(if_match, pre.version)?;
        let rule = permission.rule(&collection)?;
        let mut attempts = 0;
        let updated = loop {
            attempts += 1;
            // Under a rule: read, check before and after, then write only that version.
            let guarded = match &rule {
                None => expected,
                Some(rule) => {
                    let existing = visible(tenant, &collection, id, Some(rule)).await?;
                    let mut after = existing.clone();
                    after.fields = apply_change(&existing.fields, change.clone());
                    if !eval::matches(rule, &after) {
                        return Err(tenant.denied(collection.name.as_str(), outside_rule()));
                    }
                    Some(expected.unwrap_or(existing.version))
                }
            };
            let watched = self.watched(tenant, &collection, id, true).await?;
            // A replace or patch adds no record, but may add data.
            let hold = self.quota(tenant.scope(), tenant.engine(), 0, true).await?;
            tenant.before(&collection.name, id).await?;
            let updated = tenant
                .engine()
                .update(tenant.scope(), &collection, id, change.clone(), guarded)
                .instrument(crate::step_span(|| {
                    tracing::info_span!("engine", op = "update")
                }))
                .await;
            if let (Some(watched), Ok(record)) = (watched, &updated) {
                watched.publish(id, Some(record));
            }
            tenant.after(&collection.name, id).await;
            if let Some(hold) = hold {
                hold.settle(0, 0);
            }
            match updated {
                Err(e)
                    if rule.is_some()
                        && expected.is_none()
                        && attempts < RULE_RETRIES
                        && is_conflict(&e) =>
                {
                    continue;
                }
                other => break tenant.written(&collection.name, other)?,
            }
        };
        let mut updated = updated;
        permission.redact(&mut updated);
        Ok(updated)
    }

    pub async fn delete_record(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
        id: &RecordId,
        if_match: Option<i64>,
    ) -> Result<(), Error> {
        let tenant = self
            .open_write(ctx, named, "record.delete", collection.as_str())
            .await?;
        let deleted = tenant
            .fenced(collection, || {
                self.delete_in(&tenant, collection, id, if_match)
            })
            .await;
        self.watch_not_found(ctx, Some(tenant.tenant()), deleted)
    }

    async fn delete_in(
        &self,
        tenant: &TenantHandle,
        collection: &CollectionName,
        id: &RecordId,
        if_match: Option<i64>,
    ) -> Result<(), Error> {
        let (permission, collection) = tenant.allow(collection, Action::Delete)?;
        let rule = permission.rule(&collection)?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let guarded = match &rule {
                None => if_match,
                Some(rule) => {
                    let existing = visible(tenant, &collection, id, Some(rule)).await?;
                    Some(if_match.unwrap_or(existing.version))
                }
            };
            let watched = self.watched(tenant, &collection, id, true).await?;
            // Never refused (a tenant over its quota may delete); counted.
            let hold = self
                .quota(tenant.scope(), tenant.engine(), 0, false)
                .await?;
            tenant.before(&collection.name, id).await?;
            let deleted = tenant
                .engine()
                .delete(tenant.scope(), &collection, id, guarded)
                .instrument(crate::step_span(|| {
                    tracing::info_span!("engine", op = "delete")
                }))
                .await;
            if let (Some(watched), Ok(())) = (watched, &deleted) {
                watched.publish(id, None);
            }
            tenant.after(&collection.name, id).await;
            if let Some(hold) = hold {
                hold.settle(0, u64::from(deleted.is_ok()));
            }
            match deleted {
                Err(e)
                    if rule.is_some()
                        && if_match.is_none()
                        && attempts < RULE_RETRIES
                        && is_conflict(&e) =>
                {
                    continue;
                }
                other => return tenant.written(&collection.name, other),
            }
        }
    }
}

/// Attempts of a write under a record rule whose checked version changed meanwhile (only
/// when the caller gave no `If-Match`).
const RULE_RETRIES: u32 = 5;

fn record_not_found() -> Error {
    Error::not_found("record_not_found", "record not found")
}

/// The stored record, if it exists and `rule` (when there is one) lets the caller see it;
/// otherwise the same `404` as for a missing record.
async fn visible(
    tenant: &TenantHandle,
    collection: &Collection,
    id: &RecordId,
    rule: Option<&bulkhead_core::query::Predicate>,
) -> Result<Record, Error> {
    let found = match tenant
        .engine()
        .get(tenant.scope(), collection, id)
        .instrument(crate::step_span(|| {
            tracing::info_span!("engine", op = "get")
        }))
        .await
    {
        Ok(found) => found,
        Err(e) => return Err(tenant.read_failed(e).await),
    };
    found
        .filter(|r| rule.is_none_or(|rule| eval::matches(rule, r)))
        .ok_or_else(record_not_found)
}

/// A write whose result the caller could not read back.
pub(crate) fn outside_rule() -> Error {
    Error::forbidden(
        "outside_record_rule",
        "the record would be outside what this credential may read (its record rule)",
    )
}

fn is_conflict(e: &bulkhead_engine::EngineError) -> bool {
    matches!(e, bulkhead_engine::EngineError::VersionMismatch { .. })
}

/// Validates a new record's body against the fields the caller may see (a hidden field in
/// the body is an unknown field), then against the whole collection, which fills hidden
/// fields' defaults.
pub(crate) fn validate_visible(
    permission: &Permission,
    collection: &Collection,
    body: &Value,
    expected_id: Option<&RecordId>,
) -> Result<(Option<RecordId>, Fields, BodyPreconditions), Error> {
    if permission.hidden().is_empty() {
        return validate_full(collection, body, expected_id);
    }
    validate_full(&permission.view(collection), body, expected_id)?;
    validate_full(collection, body, expected_id)
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
