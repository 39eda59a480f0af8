//! Bulk ingest: an NDJSON body of creates, upserts and deletes, validated line by line and
//! applied in transactions of [`BULK_CHUNK`], each line reporting its own result. The caller's
//! permission applies per line (action, record rule, hidden fields).

use std::sync::Arc;

use bulkhead_api::{BulkLine, BulkReport, LineError};
use bulkhead_core::access::{DataAction, TenantScope};
use bulkhead_core::error::Error;
use bulkhead_core::permissions::{Action, Permission};
use bulkhead_core::query::{Predicate, eval};
use bulkhead_core::record::{NewRecord, validate_full};
use bulkhead_core::schema::Collection;
use bulkhead_core::{CollectionName, RecordId, TenantId};
use bulkhead_engine::{BulkOp, BulkOutcome, EngineError};
use serde::Deserialize;
use serde_json::Value;

use crate::quota::Adds;
use crate::{Catalog, Ctx};

/// Operations per transaction of a bulk request.
pub const BULK_CHUNK: usize = 1000;
/// A chunk is also applied once its lines add up to this many bytes, so one request holds a
/// bounded amount of parsed data whatever its lines' size.
pub const BULK_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Per-line results a report lists at most; past that the counts stay exact and the report
/// says `results_truncated` (ask for `results=errors` to see every failed line of a big body).
pub const MAX_RESULTS: usize = 10_000;

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
        // Authorized, not admitted: `bulk_begin` admits the request (rate, slot, metering)
        // once the body is known to fit.
        let (scope, _) = self
            .resolve_data(
                ctx,
                named,
                DataAction::Write,
                "record.bulk",
                collection.as_str(),
                crate::handle::Admit::Continuation,
            )
            .await?;
        let limits = self.tier_limits(scope.tier()).await?;
        Ok(limits
            .bulk_max_bytes
            .unwrap_or(self.inner().options.bulk_max_bytes))
    }

    /// Starts a bulk request: admits and authorizes it once (rate, concurrency slot, audit).
    /// Each chunk then passes the tenant's write gate and is routed afresh, so a body that
    /// streams in slowly never holds the gate between chunks, lands where the tenant is now
    /// (a move may switch meanwhile), and stops if the tenant's life the request began in
    /// ended. Lines are pushed one at a time as the body
    /// streams in ([`BulkSession::push_line`]); each is validated at once, valid ones commit
    /// in transactions of [`BULK_CHUNK`] lines (or [`BULK_CHUNK_BYTES`]), and a bad line fails
    /// alone, with its number. A line is either a record to create or an envelope
    /// `{"op": "create" | "upsert" | "delete", "id": …, "record": {…}}` (an envelope only when
    /// the collection has no field named `op`).
    pub async fn bulk_begin(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
        which: BulkResults,
    ) -> Result<BulkSession, Error> {
        let (mut scope, ticket) = self
            .write_scope(ctx, named, "record.bulk", collection.as_str())
            .await?;
        drop(ticket);
        // A collection (or a version of it) the tenant's placement does not have yet: the
        // placement goes first (bounded), so the body is read with the newest definition.
        let behind = match self.definition(collection, scope.placement().schema_version, None) {
            Ok(there) => self
                .collection(collection)
                .is_ok_and(|latest| latest.version > there.version),
            Err(e) => e.code == "schema_rolling_out",
        };
        if behind && self.roll_out_first(&scope).await {
            let (again, ticket) = self
                .write_scope_as(
                    ctx,
                    named,
                    "record.bulk",
                    collection.as_str(),
                    crate::handle::Admit::Continuation,
                )
                .await?;
            drop(ticket);
            scope = again;
        }
        let permission = scope.permission(collection);
        if ![Action::Create, Action::Update, Action::Delete]
            .into_iter()
            .any(|a| permission.allows(a))
        {
            self.permission(ctx, &scope, collection, Action::Create, "record.bulk")?;
        }
        let collection = self.definition(collection, scope.placement().schema_version, None)?;
        let view = permission.view(&collection);
        let rule = permission.rule(&collection)?;
        Ok(BulkSession {
            catalog: self.clone(),
            ctx: ctx.clone(),
            named: named.cloned(),
            scope,
            now: self.inner().clock.now(),
            permission,
            view,
            rule,
            collection,
            which,
            line: 0,
            pending: Vec::with_capacity(BULK_CHUNK),
            pending_bytes: 0,
            report: BulkReport::default(),
            refused: Vec::new(),
            refused_count: 0,
            stopped: None,
        })
    }

    /// A whole NDJSON body at once (see [`Catalog::bulk_begin`]).
    pub async fn bulk_records(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
        body: &[u8],
        which: BulkResults,
    ) -> Result<BulkReport, Error> {
        let mut session = self.bulk_begin(ctx, named, collection, which).await?;
        for raw in body.split(|b| *b == b'\n') {
            session.push_line(raw).await;
        }
        Ok(session.finish().await)
    }

    async fn apply_chunk(
        &self,
        engine: &dyn bulkhead_engine::Engine,
        scope: &TenantScope,
        ticket: &crate::moves::WriteTicket,
        collection: &Collection,
        chunk: Vec<(u64, BulkOp)>,
        out: &mut Vec<BulkLine>,
    ) -> Option<Arc<Collection>> {
        let mut numbers: Vec<(u64, Option<String>)> = chunk
            .iter()
            .map(|(line, op)| (*line, Some(op.id().as_str().to_owned())))
            .collect();
        let mut ops: Vec<BulkOp> = chunk.into_iter().map(|(_, op)| op).collect();
        let ids: Vec<RecordId> = ops.iter().map(|op| op.id().clone()).collect();
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
            return None;
        }
        // A watched collection: the chunk is ordered against its other changes, and the
        // records it replaces or deletes are read first, for the change feed.
        let watched = match self
            .inner()
            .feeds
            .batch(engine, scope, collection, &ops)
            .await
        {
            Ok(watched) => watched,
            Err(error) => {
                ticket.after(&collection.name, ids.iter()).await;
                for (line, id) in numbers {
                    out.push(failed(line, id, &error));
                }
                return None;
            }
        };
        // The storage quota: the records past what fits fail alone, before the engine. An
        // upsert of a record that exists adds none (as a `PUT` of it adds none); which do is
        // read only when the chunk would not fit were every upsert a new record.
        let worst = ops.iter().filter(|op| !op.removes()).count() as u64;
        let admitted = match self
            .bulk_adding(scope, engine, collection, &ops, worst)
            .await
        {
            Ok(adding) => {
                let adds = adding.iter().filter(|a| **a == Adds::Yes).count() as u64;
                self.quota_admit(scope, engine, adds, worst > 0)
                    .await
                    .map(|held| (held, adding, adds))
            }
            Err(error) => Err(error),
        };
        let (hold, allowed, adding, adds) = match admitted {
            Ok((Some((hold, allowed)), adding, adds)) => (Some(hold), allowed, adding, adds),
            Ok((None, adding, adds)) => (None, adds, adding, adds),
            Err(error) => {
                ticket.after(&collection.name, ids.iter()).await;
                for (line, id) in numbers {
                    out.push(failed(line, id, &error));
                }
                return None;
            }
        };
        let mut refused = Vec::new();
        if allowed < adds {
            let error = self.quota_refused(scope).await;
            let (mut kept_ops, mut kept_numbers, mut admitted) = (Vec::new(), Vec::new(), 0);
            let mut refused_ids = std::collections::HashSet::new();
            for ((op, number), adds) in ops.into_iter().zip(numbers).zip(adding) {
                let adding = match adds {
                    Adds::Yes => true,
                    Adds::No => false,
                    Adds::AsEarlier => refused_ids.contains(op.id()),
                };
                if adding && admitted >= allowed {
                    refused_ids.insert(op.id().clone());
                    refused.push(failed(number.0, number.1, &error));
                    continue;
                }
                admitted += u64::from(adding);
                kept_ops.push(op);
                kept_numbers.push(number);
            }
            ops = kept_ops;
            numbers = kept_numbers;
        }
        let mut definition = Arc::new(collection.clone());
        let mut attempt = 0;
        let applied = loop {
            attempt += 1;
            match engine.bulk(scope, &definition, ops.clone()).await {
                // The table moved to a newer definition (the schema fence; nothing was
                // written): the chunk goes again with it, new fields taking their defaults.
                Err(EngineError::SchemaMoved { stored }) if attempt < 3 => {
                    match self.definition(&collection.name, 0, Some(stored)) {
                        Ok(newer) => {
                            ops = ops
                                .into_iter()
                                .map(|op| with_defaults(op, &newer))
                                .collect();
                            definition = newer;
                        }
                        Err(_) => break Err(EngineError::SchemaMoved { stored }),
                    }
                }
                other => break other,
            }
        };
        if let (Some(watched), Ok(results)) = (watched, &applied) {
            watched.publish(results);
        }
        ticket.after(&collection.name, ids.iter()).await;
        let moved = (definition.version != collection.version).then_some(definition);
        if let Some(hold) = hold {
            let (mut created, mut deleted) = (0, 0);
            if let Ok(results) = &applied {
                for result in results {
                    match result {
                        Ok(BulkOutcome::Created(_)) => created += 1,
                        Ok(BulkOutcome::Deleted(_)) => deleted += 1,
                        _ => {}
                    }
                }
            }
            hold.settle(created, deleted);
        }
        let start = out.len();
        out.extend(refused);
        match applied {
            Ok(results) => {
                let written = results.iter().filter(|r| r.is_ok()).count();
                self.count_written(scope.tenant(), written as u64);
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
        // Lines refused for the quota go in their place, by line number.
        out[start..].sort_by_key(|l| l.line);
        moved
    }
}

/// A bulk request in progress (see [`Catalog::bulk_begin`]). Holds at most one chunk of
/// parsed lines, so memory stays bounded whatever the body's size.
pub struct BulkSession {
    catalog: Catalog,
    ctx: Ctx,
    named: Option<TenantId>,
    /// The scope the request was admitted with: it holds the tenant's concurrency slot to the
    /// end, and names the life every chunk must still belong to.
    scope: TenantScope,
    now: bulkhead_core::time::Timestamp,
    permission: Permission,
    view: Collection,
    rule: Option<Predicate>,
    collection: std::sync::Arc<Collection>,
    which: BulkResults,
    line: u64,
    pending: Vec<(u64, BulkOp)>,
    pending_bytes: usize,
    report: BulkReport,
    /// Lines refused for the caller's rights (403): audited once, when the request ends.
    refused: Vec<(u64, String)>,
    refused_count: u64,
    /// Why the request stopped, once its credential failed again between chunks.
    stopped: Option<Error>,
}

/// Refused lines an audit entry names at most (it counts them all).
const AUDITED_LINES: usize = 100;

impl BulkSession {
    /// One line of the body (without its `\n`); blank lines are skipped but counted.
    pub async fn push_line(&mut self, raw: &[u8]) {
        self.line += 1;
        let line = self.line;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let parsed = if self.permission.hidden().is_empty() {
            parse_line(&self.collection, raw)
        } else {
            parse_line(&self.view, raw).and_then(|_| parse_line(&self.collection, raw))
        };
        match parsed.and_then(|op| line_allowed(&self.permission, self.rule.as_ref(), op, self.now))
        {
            Ok(op) => {
                self.pending.push((line, op));
                self.pending_bytes += raw.len();
            }
            Err(e) => self.record(vec![failed(line, None, &e)]),
        }
        if self.pending.len() >= BULK_CHUNK || self.pending_bytes >= BULK_CHUNK_BYTES {
            self.flush().await;
        }
    }

    /// Fails one line that could not be read whole (too long, or past the body's limit).
    pub fn fail_line(&mut self, error: &Error) {
        self.line += 1;
        self.record(vec![failed(self.line, None, error)]);
    }

    /// Lines pushed so far.
    pub fn lines(&self) -> u64 {
        self.line
    }

    async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let chunk = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let mut out = Vec::with_capacity(chunk.len());
        // The credential is checked again for each chunk (and the context it gives is the
        // one this chunk writes with): a key revoked, a token expired or a member removed
        // while the body streams in stops the request here, as a new request would stop.
        // Once it has failed, every later line fails the same way without asking again.
        let ctx = match &self.stopped {
            Some(error) => Err(error.clone()),
            None => self.catalog.reauthenticate(&self.ctx).await,
        };
        if let Err(error) = &ctx {
            self.stopped = Some(error.clone());
        }
        let entered = match ctx {
            Ok(ctx) => {
                self.catalog
                    .write_scope_as(
                        &ctx,
                        self.named.as_ref(),
                        "record.bulk",
                        self.collection.name.as_str(),
                        crate::handle::Admit::Continuation,
                    )
                    .await
            }
            Err(error) => Err(error),
        }
        .and_then(|(scope, ticket)| {
            // Another life of the tenant id is another tenant: the request ends here.
            if scope.placement().incarnation != self.scope.placement().incarnation {
                return Err(crate::rows::tenants::tenant_not_found());
            }
            let engine = self.catalog.engine(&scope.placement().domain)?;
            Ok((scope, ticket, engine))
        });
        match entered {
            Ok((scope, ticket, engine)) => {
                let moved = self
                    .catalog
                    .apply_chunk(
                        engine.as_ref(),
                        &scope,
                        &ticket,
                        &self.collection,
                        chunk,
                        &mut out,
                    )
                    .await;
                // Later lines are read with the definition the storage has now.
                if let Some(newer) = moved {
                    self.view = self.permission.view(&newer);
                    self.collection = newer;
                }
            }
            Err(error) => {
                for (line, op) in chunk {
                    out.push(failed(line, Some(op_id(&op).to_owned()), &error));
                }
            }
        }
        self.record(out);
    }

    /// Counts results, and keeps those the caller asked for, up to [`MAX_RESULTS`].
    fn record(&mut self, lines: Vec<BulkLine>) {
        for line in lines {
            if line.status == 403 {
                self.refused_count += 1;
                if self.refused.len() < AUDITED_LINES {
                    let code = line
                        .error
                        .as_ref()
                        .map(|e| e.code.clone())
                        .unwrap_or_default();
                    self.refused.push((line.line, code));
                }
            }
            match line.status {
                201 => self.report.created += 1,
                200 => self.report.updated += 1,
                204 => self.report.deleted += 1,
                _ => self.report.failed += 1,
            }
            let wanted = match self.which {
                BulkResults::All => true,
                BulkResults::Errors => line.status >= 400,
            };
            if !wanted {
                continue;
            }
            if self.report.results.len() < MAX_RESULTS {
                self.report.results.push(line);
            } else {
                self.report.results_truncated = true;
            }
        }
    }

    /// Applies what is left and returns the report (results in line order).
    pub async fn finish(mut self) -> BulkReport {
        self.flush().await;
        if self.refused_count > 0 {
            // As the record routes audit each such refusal: one entry for the request,
            // naming the refused lines.
            let code = self.refused[0].1.clone();
            let detail = serde_json::json!({
                "refused": self.refused_count,
                "lines": self.refused,
            });
            self.catalog.audit_denied(
                self.ctx.principal.actor(),
                "record.bulk",
                self.collection.name.as_str(),
                Some(self.scope.tenant()),
                &code,
                &self.ctx.request_id,
                Some(detail.to_string()),
            );
        }
        let mut report = std::mem::take(&mut self.report);
        report.results.sort_by_key(|l| l.line);
        report
    }
}

fn op_id(op: &BulkOp) -> &str {
    op.id().as_str()
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
        BulkOp::Delete(_) | BulkOp::Retire { .. } => {
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

/// `op` as validating its line with `newer` would have made it: a definition change is
/// additive, so that is the same fields plus the defaults of fields the line could not name.
fn with_defaults(op: BulkOp, newer: &Collection) -> BulkOp {
    let fill = |mut record: NewRecord| {
        for (name, spec) in &newer.fields {
            if record.fields.contains_key(name) {
                continue;
            }
            if let Some(value) = spec
                .default
                .as_ref()
                .and_then(|d| bulkhead_core::record::coerce(spec.field_type, d).ok())
            {
                record.fields.insert(name.clone(), value);
            }
        }
        record
    };
    match op {
        BulkOp::Create(r) => BulkOp::Create(fill(r)),
        BulkOp::Upsert(r) => BulkOp::Upsert(fill(r)),
        delete @ (BulkOp::Delete(_) | BulkOp::Retire { .. }) => delete,
    }
}
