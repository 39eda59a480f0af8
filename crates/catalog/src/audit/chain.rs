//! Checking the audit log's hash chain: on demand (`GET /v1/audit/verify`), as an export
//! (`GET /v1/audit/export`, NDJSON that verifies offline), and by a watch that links each
//! new stretch of entries, logs the chain's head and checks that the last head it saw is
//! still there — a rewritten or cut log is audited as `audit.chain_broken` (a finding).

use std::time::Duration;

use bulkhead_api::{AuditEntry, AuditExportQuery, AuditVerification, AuditVerifyQuery};
use bulkhead_core::access::ControlAction;
use bulkhead_core::chain::{Break, BreakKind, Link, Verifier};
use bulkhead_core::error::Error;

use super::AuditEvent;
use crate::rows::audit::{anchor, hash_at, link_once, read_after, seq_before, tail};
use crate::store::{Store, StoreResult};
use crate::{Catalog, Ctx};

/// Entries read per statement while verifying or exporting.
const PAGE: u32 = 10_000;
/// Every this many passes the watch walks the whole chain from its anchor.
const FULL_EVERY: u64 = 60;

/// Walks the chain from `from` (the anchor when `None`) to its newest entry.
fn walk(store: &Store, from: Option<Link>, head: Option<Link>) -> StoreResult<AuditVerification> {
    let anchor = store.read(anchor)?;
    let start = from.unwrap_or_else(|| anchor.clone());
    let mut verifier = Verifier::new(Some(&start.hash), head);
    let mut after = start.seq;
    let mut broken = None;
    'pages: loop {
        let page = store.read(|tx| read_after(tx, after, None, PAGE))?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.seq;
        for e in &page {
            if let Err(b) =
                verifier.check(&e.chain_fields(), e.prev_hash.as_deref(), e.hash.as_deref())
            {
                broken = Some(b);
                break 'pages;
            }
        }
    }
    if broken.is_none() {
        broken = verifier.finish().err();
    }
    Ok(AuditVerification {
        ok: broken.is_none(),
        checked: verifier.checked(),
        anchor,
        head: verifier.last().cloned(),
        broken,
    })
}

/// The chain from `seen` (a head an earlier check saw) on: `seen` must still be there with
/// its hash, unless retention has removed it since.
fn check_since(store: &Store, seen: Option<Link>) -> StoreResult<AuditVerification> {
    let anchor = store.read(anchor)?;
    let from = seen.filter(|h| h.seq > anchor.seq);
    if let Some(head) = &from {
        let stored = store.read(|tx| hash_at(tx, head.seq))?;
        if stored.flatten().as_deref() != Some(head.hash.as_str()) {
            let last = store.read(tail)?;
            let broken = if last.seq < head.seq {
                Break {
                    seq: head.seq,
                    kind: BreakKind::Truncated,
                    detail: format!(
                        "the log ends at entry {}, before the head {head} seen before",
                        last.seq
                    ),
                }
            } else {
                Break {
                    seq: head.seq,
                    kind: BreakKind::HeadRewritten,
                    detail: format!("the head {head} seen before is no longer in the log"),
                }
            };
            return Ok(AuditVerification {
                ok: false,
                checked: 0,
                anchor,
                head: None,
                broken: Some(broken),
            });
        }
    }
    walk(store, from, None)
}

/// Links the entries a 0.2 catalog holds, once (see `rows::audit::link_once`).
pub(crate) fn link_existing(store: &Store) -> StoreResult<()> {
    let linked = store.write(link_once)?;
    if linked > 0 {
        tracing::info!(linked, "audit entries from before the hash chain linked");
    }
    Ok(())
}

impl Catalog {
    /// `GET /v1/audit/verify`: the whole chain checked from its anchor; with `head`, a
    /// published head the log must still hold.
    pub async fn verify_audit(
        &self,
        ctx: &Ctx,
        query: &AuditVerifyQuery,
    ) -> Result<AuditVerification, Error> {
        self.authorize(ctx, ControlAction::ReadAudit, "audit.verify", "audit", None)?;
        let head = query
            .head
            .as_deref()
            .map(|h| {
                h.parse::<Link>()
                    .map_err(|why| Error::bad_request("invalid_head", why))
            })
            .transpose()?;
        self.flush_audit().await;
        self.blocking(move |store| walk(store, None, head)).await
    }

    /// One page of `GET /v1/audit/export`: up to 10,000 entries after `after` (from the
    /// query's `from` when `None`), oldest first, and where the next page starts.
    pub async fn export_audit_page(
        &self,
        ctx: &Ctx,
        query: &AuditExportQuery,
        after: Option<i64>,
    ) -> Result<(Vec<AuditEntry>, Option<i64>), Error> {
        self.authorize(ctx, ControlAction::ReadAudit, "audit.export", "audit", None)?;
        if let (Some(from), Some(to)) = (query.from, query.to)
            && from >= to
        {
            return Err(Error::bad_request(
                "invalid_time_range",
                format!("from ({from}) must be before to ({to})"),
            ));
        }
        if after.is_none() {
            self.flush_audit().await;
        }
        let (from, to) = (query.from, query.to);
        self.blocking(move |store| {
            store.read(|tx| {
                let after = match (after, from) {
                    (Some(after), _) => after,
                    (None, Some(from)) => seq_before(tx, from)?,
                    (None, None) => 0,
                };
                let page = read_after(tx, after, to, PAGE)?;
                let next = (page.len() == PAGE as usize)
                    .then(|| page.last().map(|e| e.seq))
                    .flatten();
                Ok((page, next))
            })
        })
        .await
    }
}

/// Checks the chain every `every`: the first time from its anchor, then from the last head
/// seen (which must still be there, unless retention removed it). Each good check logs the
/// head; a break is logged as an error and audited once as `audit.chain_broken`.
pub(crate) fn spawn_watch(inner: std::sync::Weak<crate::Inner>, every: Duration) {
    tokio::spawn(async move {
        let mut seen: Option<Link> = None;
        let mut reported: Option<Break> = None;
        let mut passes: u64 = 0;
        loop {
            tokio::time::sleep(every).await;
            // Now and then the whole chain again, not only what is new (an old entry edited),
            // still holding the head seen last.
            let full = passes.is_multiple_of(FULL_EVERY);
            passes += 1;
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let catalog = Catalog { inner: strong };
            catalog.flush_audit().await;
            let from = seen.clone();
            let checked = catalog
                .blocking(move |store| {
                    if full {
                        walk(store, None, from.filter(|h| h.seq > 0))
                    } else {
                        check_since(store, from)
                    }
                })
                .await;
            match checked {
                Ok(v) => match v.broken {
                    None => {
                        if let Some(head) = &v.head {
                            tracing::info!(seq = head.seq, hash = %head.hash, "audit chain head");
                            seen = Some(head.clone());
                        }
                    }
                    Some(b) if reported.as_ref() != Some(&b) => {
                        tracing::error!(seq = b.seq, kind = %b.kind, detail = %b.detail, "audit chain broken");
                        catalog.inner().audit.record(AuditEvent {
                            at: catalog.inner().clock.now(),
                            actor: "system".into(),
                            action: "audit.chain_broken".into(),
                            target: "audit".into(),
                            tenant: None,
                            outcome: "ok".into(),
                            request_id: String::new(),
                            detail: Some(serde_json::json!(b).to_string()),
                        });
                        reported = Some(b);
                    }
                    Some(_) => {}
                },
                Err(e) => tracing::warn!(error = %e, "audit chain check failed; retried"),
            }
        }
    });
}
