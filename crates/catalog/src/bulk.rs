//! Bulk ingest: an NDJSON body of creates, upserts and deletes, validated line by line and
//! applied in transactions of [`BULK_CHUNK`], each line reporting its own result. The caller's
//! permission applies per line (action, record rule, hidden fields).

use bulkhead_api::{BulkLine, BulkReport, LineError};
use bulkhead_core::access::{DataAction, TenantScope};
use bulkhead_core::error::Error;
use bulkhead_core::permissions::{Action, Permission};
use bulkhead_core::query::{Predicate, eval};
use bulkhead_core::record::{NewRecord, validate_full};
use bulkhead_core::schema::Collection;
use bulkhead_core::{CollectionName, RecordId, TenantId};
use bulkhead_engine::{BulkOp, BulkOutcome};
use serde::Deserialize;
use serde_json::Value;

use crate::{Catalog, Ctx};

/// Operations per transaction of a bulk request.
pub const BULK_CHUNK: usize = 1000;

/// Which lines a bulk report lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkResults {
    #[default]
    All,
    Errors,
}

impl Catalog {
    /// Resolves the caller's tenant for a bulk request and returns its body size limit, so the
    /// body is read only after the caller is known, and never beyond the tier's limit.
    pub async fn bulk_limit(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
    ) -> Result<u64, Error> {
        let scope = self
            .data_scope(
                ctx,
                named,
                DataAction::Write,
                "record.bulk",
                collection.as_str(),
            )
            .await?;
        let limits = self.tier_limits(scope.tier()).await?;
        Ok(limits
            .bulk_max_bytes
            .unwrap_or(self.inner().options.bulk_max_bytes))
    }

    /// Applies an NDJSON body: each line a record to create, or an envelope
    /// `{"op": "create" | "upsert" | "delete", "id": …, "record": {…}}` (an envelope only when
    /// the collection has no field named `op`). Lines are validated one by one; valid ones
    /// commit in transactions of [`BULK_CHUNK`]; a bad line fails alone, with its number.
    pub async fn bulk_records(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
        body: &[u8],
        which: BulkResults,
    ) -> Result<BulkReport, Error> {
        let (scope, ticket) = self
            .write_scope(ctx, named, "record.bulk", collection.as_str())
            .await?;
        let permission = scope.permission(collection);
        if ![Action::Create, Action::Update, Action::Delete]
            .into_iter()
            .any(|a| permission.allows(a))
        {
            self.permission(ctx, &scope, collection, Action::Create, "record.bulk")?;
        }
        let collection = self.collection(collection)?;
        let view = permission.view(&collection);
        let rule = permission.rule(&collection)?;
        let now = self.inner().clock.now();
        let engine = self.engine(&scope.placement().domain)?;
        let mut report = BulkReport::default();
        let mut pending: Vec<(u64, BulkOp)> = Vec::with_capacity(BULK_CHUNK);
        let mut lines = Vec::new();
        for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
            let line = i as u64 + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = if permission.hidden().is_empty() {
                parse_line(&collection, raw)
            } else {
                parse_line(&view, raw).and_then(|_| parse_line(&collection, raw))
            };
            match parsed.and_then(|op| line_allowed(&permission, rule.as_ref(), op, now)) {
                Ok(op) => pending.push((line, op)),
                Err(e) => lines.push(failed(line, None, &e)),
            }
            if pending.len() >= BULK_CHUNK {
                let chunk = std::mem::take(&mut pending);
                self.apply_chunk(
                    engine.as_ref(),
                    &scope,
                    &ticket,
                    &collection,
                    chunk,
                    &mut lines,
                )
                .await;
            }
        }
        if !pending.is_empty() {
            self.apply_chunk(
                engine.as_ref(),
                &scope,
                &ticket,
                &collection,
                pending,
                &mut lines,
            )
            .await;
        }
        lines.sort_by_key(|l| l.line);
        for line in &lines {
            match line.status {
                201 => report.created += 1,
                200 => report.updated += 1,
                204 => report.deleted += 1,
                _ => report.failed += 1,
            }
        }
        report.results = match which {
            BulkResults::All => lines,
            BulkResults::Errors => lines.into_iter().filter(|l| l.status >= 400).collect(),
        };
        Ok(report)
    }

    async fn apply_chunk(
        &self,
        engine: &dyn bulkhead_engine::Engine,
        scope: &TenantScope,
        ticket: &crate::moves::WriteTicket,
        collection: &Collection,
        chunk: Vec<(u64, BulkOp)>,
        out: &mut Vec<BulkLine>,
    ) {
        let numbers: Vec<(u64, Option<String>)> = chunk
            .iter()
            .map(|(line, op)| {
                let id = match op {
                    BulkOp::Create(r) | BulkOp::Upsert(r) => r.id.as_str(),
                    BulkOp::Delete(id) => id.as_str(),
                };
                (*line, Some(id.to_owned()))
            })
            .collect();
        let ops: Vec<BulkOp> = chunk.into_iter().map(|(_, op)| op).collect();
        let ids: Vec<RecordId> = ops
            .iter()
            .map(|op| match op {
                BulkOp::Create(r) | BulkOp::Upsert(r) => r.id.clone(),
                BulkOp::Delete(id) => id.clone(),
            })
            .collect();
        // Each chunk re-checks that the tenant's life the request was authorized for still
        // stands: a deletion that began meanwhile waits for this request, which stops here.
        let fenced = match self.still_current(scope).await {
            Ok(()) => ticket.before(&collection.name, ids.iter()).await,
            Err(e) => Err(e),
        };
        if let Err(error) = fenced {
            for (line, id) in numbers {
                out.push(failed(line, id, &error));
            }
            return;
        }
        let applied = engine.bulk(scope, collection, ops).await;
        ticket.after(&collection.name, ids.iter()).await;
        match applied {
            Ok(results) => {
                for ((line, id), result) in numbers.into_iter().zip(results) {
                    out.push(match result {
                        Ok(BulkOutcome::Created(r)) => done(line, 201, &r.id, Some(r.version)),
                        Ok(BulkOutcome::Updated(r)) => done(line, 200, &r.id, Some(r.version)),
                        Ok(BulkOutcome::Deleted(id)) => done(line, 204, &id, None),
                        Err(e) => failed(line, id, &Error::from(e)),
                    });
                }
            }
            // The whole chunk rolled back: every line of it failed, and says why.
            Err(e) => {
                let error = Error::from(e);
                for (line, id) in numbers {
                    out.push(failed(line, id, &error));
                }
            }
        }
    }
}

fn done(line: u64, status: u16, id: &RecordId, version: Option<i64>) -> BulkLine {
    BulkLine {
        line,
        status,
        id: Some(id.as_str().to_owned()),
        version,
        error: None,
    }
}

fn failed(line: u64, id: Option<String>, error: &Error) -> BulkLine {
    BulkLine {
        line,
        status: error.kind.status(),
        id,
        version: None,
        error: Some(LineError {
            code: error.code.to_string(),
            message: format!("line {line}: {}", error.message),
        }),
    }
}

fn line_error(message: impl Into<String>) -> Error {
    Error::bad_request("invalid_line", message)
}

/// One NDJSON line as an operation, validated against the collection.
/// Whether the caller may apply one bulk line. Under a record rule or with hidden fields,
/// upserts and deletes go through the record endpoints, which check the stored record first.
fn line_allowed(
    permission: &Permission,
    rule: Option<&Predicate>,
    op: BulkOp,
    now: bulkhead_core::time::Timestamp,
) -> Result<BulkOp, Error> {
    match &op {
        BulkOp::Create(record) => {
            permission.require(Action::Create)?;
            if let Some(rule) = rule
                && !eval::matches(rule, &record.as_created(now))
            {
                return Err(crate::records::outside_rule());
            }
        }
        BulkOp::Upsert(_) => {
            permission.require(Action::Create)?;
            permission.require(Action::Update)?;
            if !permission.is_plain() {
                return Err(Error::forbidden(
                    "use_record_endpoints",
                    "under a record rule or hidden fields, upsert records with PUT or PATCH",
                ));
            }
        }
        BulkOp::Delete(_) => {
            permission.require(Action::Delete)?;
            if rule.is_some() {
                return Err(Error::forbidden(
                    "use_record_endpoints",
                    "under a record rule, delete records with DELETE on each record",
                ));
            }
        }
    }
    Ok(op)
}

fn parse_line(collection: &Collection, raw: &[u8]) -> Result<BulkOp, Error> {
    let value: Value =
        serde_json::from_slice(raw).map_err(|e| line_error(format!("not valid JSON: {e}")))?;
    let Value::Object(object) = &value else {
        return Err(line_error("expected a JSON object"));
    };
    let envelope =
        object.contains_key("op") && !collection.fields.keys().any(|f| f.as_str() == "op");
    if !envelope {
        let (id, fields, _) = validate_full(collection, &value, None)?;
        return Ok(BulkOp::Create(NewRecord {
            id: id.unwrap_or_else(RecordId::generate),
            fields,
        }));
    }
    if let Some(key) = object
        .keys()
        .find(|k| !["op", "id", "record"].contains(&k.as_str()))
    {
        return Err(line_error(format!(
            "unknown key '{key}' in an operation; expected op, id and record"
        )));
    }
    let id = match object.get("id") {
        None => None,
        Some(Value::String(s)) => Some(RecordId::parse(s)?),
        Some(_) => return Err(line_error("id must be a string")),
    };
    let record = object.get("record");
    match object.get("op").and_then(Value::as_str) {
        Some("create") => {
            let record = record.ok_or_else(|| line_error("create needs a record"))?;
            let (body_id, fields, _) = validate_full(collection, record, id.as_ref())?;
            Ok(BulkOp::Create(NewRecord {
                id: id.or(body_id).unwrap_or_else(RecordId::generate),
                fields,
            }))
        }
        Some("upsert") => {
            let record = record.ok_or_else(|| line_error("upsert needs a record"))?;
            let (body_id, fields, _) = validate_full(collection, record, id.as_ref())?;
            let id = id
                .or(body_id)
                .ok_or_else(|| line_error("upsert needs an id"))?;
            Ok(BulkOp::Upsert(NewRecord { id, fields }))
        }
        Some("delete") => {
            if record.is_some() {
                return Err(line_error("delete takes an id and no record"));
            }
            Ok(BulkOp::Delete(
                id.ok_or_else(|| line_error("delete needs an id"))?,
            ))
        }
        _ => Err(line_error(
            "op must be \"create\", \"upsert\" or \"delete\"",
        )),
    }
}
