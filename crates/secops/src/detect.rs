//! The detectors: what a batch of audit entries means — observations to fold into findings,
//! and lifecycle events for the webhooks. Bursts are counted in the audit log itself over
//! each detector's window, so servers sharing a catalog count together.

use std::collections::BTreeMap;

use bulkhead_api::{AuditEntry, FindingKind};
use bulkhead_core::time::Timestamp;
use serde_json::{Value, json};

use bulkhead_store::{StoreResult, Tx, params};

use crate::findings::{FindingRules, Observation, open_one};

/// A lifecycle event a webhook may subscribe to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub kind: &'static str,
    pub entry: AuditEntry,
}

fn denied(e: &AuditEntry) -> bool {
    e.outcome.starts_with("denied:")
}

fn detail_json(e: &AuditEntry) -> Value {
    e.detail
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(Value::Null)
}

/// The webhook event an entry is, if any (successful control-plane changes only).
pub(crate) fn lifecycle(e: &AuditEntry) -> Option<Event> {
    if denied(e) {
        return None;
    }
    let kind = match e.action.as_str() {
        "tenant.create" => "tenant.created",
        "tenant.update" => {
            if detail_json(e)["status"] == "suspended" {
                "tenant.suspended"
            } else {
                "tenant.updated"
            }
        }
        "tenant.delete" => "tenant.deleted",
        "move.start" => "move.started",
        "move.switched" => "move.switched",
        "move.done" => "move.done",
        "move.rolled_back" => "move.rolled_back",
        "rollout.done" => "rollout.done",
        "rollout.stopped" => "rollout.failed",
        "quota.exceeded" => "quota.exceeded",
        "key.create" => "key.created",
        "key.revoke" => "key.revoked",
        "webhook.disabled" => "webhook.disabled",
        // A plan that proposes moves (the moves it starts are `move.*` events of their own).
        "placement.plan"
            if detail_json(e)["moves"]
                .as_array()
                .is_some_and(|m| !m.is_empty()) =>
        {
            "placement.planned"
        }
        _ => return None,
    };
    Some(Event {
        kind,
        entry: e.clone(),
    })
}

/// One entry's own finding (the kinds that need no counting).
fn single(e: &AuditEntry) -> Option<(FindingKind, String)> {
    if denied(e) {
        return None;
    }
    let action = e.action.as_str();
    let summary = |what: &str| format!("{what} ({} by {})", e.target, e.actor);
    let found = match action {
        _ if action.starts_with("admin_data_access.") => (
            FindingKind::AdminDataAccess,
            format!(
                "platform admin accessed tenant data: {}",
                action.trim_start_matches("admin_data_access.")
            ),
        ),
        "key.create" => {
            let d = detail_json(e);
            let role = d["role"].as_str().unwrap_or_default();
            if !matches!(role, "owner" | "admin") {
                return None;
            }
            let scope = if d["platform"] == true {
                "platform"
            } else {
                "tenant"
            };
            (
                FindingKind::PrivilegedGrant,
                summary(&format!("{scope} key created with role {role}")),
            )
        }
        "member.add" | "member.invite" | "member.update" => {
            if !matches!(e.target.as_str(), "owner" | "admin") {
                return None;
            }
            (
                FindingKind::PrivilegedGrant,
                format!("member given role {} by {}", e.target, e.actor),
            )
        }
        "tier.ceiling_weakened" => (
            FindingKind::CeilingWeakened,
            format!(
                "tier {} ceiling weakened by {}: {}",
                e.target,
                e.actor,
                e.detail.as_deref().unwrap_or_default()
            ),
        ),
        "record.export" => (
            FindingKind::CollectionExport,
            summary("whole collection exported"),
        ),
        "move.rolled_back" => (FindingKind::MoveRolledBack, summary("move rolled back")),
        "quota.exceeded" => (
            FindingKind::QuotaExceeded,
            format!(
                "storage quota reached: {}",
                e.detail.as_deref().unwrap_or_default()
            ),
        ),
        "audit.chain_broken" => (
            FindingKind::ChainBroken,
            format!(
                "audit chain broken: {}",
                e.detail.as_deref().unwrap_or_default()
            ),
        ),
        "webhook.disabled" => (
            FindingKind::WebhookDisabled,
            summary("webhook disabled after failed deliveries"),
        ),
        "probe.enumeration" => {
            let n = detail_json(e)["not_found"].as_u64().unwrap_or(1);
            (
                FindingKind::Enumeration,
                format!("{n} not-found answers on record ids to {}", e.actor),
            )
        }
        _ => return None,
    };
    Some(found)
}

/// A burst counted per principal: the batch's occurrences, the last one, and how to count
/// the window in the log.
struct Burst<'a> {
    count: u64,
    last: &'a AuditEntry,
}

fn group<'a>(
    batch: &'a [AuditEntry],
    key: impl Fn(&AuditEntry) -> Option<(String, u64)>,
) -> BTreeMap<String, Burst<'a>> {
    let mut out: BTreeMap<String, Burst<'a>> = BTreeMap::new();
    for e in batch {
        if let Some((k, weight)) = key(e) {
            let burst = out.entry(k).or_insert(Burst { count: 0, last: e });
            burst.count += weight;
            burst.last = e;
        }
    }
    out
}

fn window_start(at: Timestamp, secs: u64) -> i64 {
    at.as_micros() - (secs as i64).saturating_mul(1_000_000)
}

/// Folds a counted burst: into the open finding when there is one, else a new one once the
/// window holds `threshold`.
#[allow(clippy::too_many_arguments)]
fn counted(
    tx: &dyn Tx,
    kind: FindingKind,
    principal: String,
    burst: &Burst<'_>,
    threshold: u64,
    in_window: impl FnOnce() -> StoreResult<u64>,
    summary: impl Fn(u64) -> String,
    out: &mut Vec<Observation>,
) -> StoreResult<()> {
    let open = open_one(tx, kind, &principal, None)?.is_some();
    let count = if open {
        burst.count
    } else {
        let n = in_window()?;
        if n < threshold {
            return Ok(());
        }
        n
    };
    out.push(Observation {
        kind,
        tenant: None,
        principal,
        at: burst.last.at,
        seq: burst.last.seq,
        count,
        summary: summary(count),
    });
    Ok(())
}

/// Denied requests (not failed authentications) whose `column` (`actor` or `source`) is
/// `value`, in the window of `secs` up to the burst's last entry.
fn denials(
    tx: &dyn Tx,
    column: &str,
    value: &str,
    burst: &Burst<'_>,
    secs: u64,
) -> StoreResult<u64> {
    let n: i64 = tx
        .query_one(
            &format!(
                "SELECT count(*) FROM audit WHERE {column} = ?1 AND seq <= ?2 AND at >= ?3 \
                 AND substr(outcome, 1, 7) = 'denied:' AND action <> 'authenticate'"
            ),
            params![value, burst.last.seq, window_start(burst.last.at, secs)],
        )?
        .get(0)?;
    Ok(n.max(0) as u64)
}

/// What `batch` (entries in order) shows.
pub(crate) fn detect(
    tx: &dyn Tx,
    rules: &FindingRules,
    batch: &[AuditEntry],
) -> StoreResult<Vec<Observation>> {
    let mut out = Vec::new();
    for e in batch {
        if let Some((kind, summary)) = single(e)
            && rules.on(kind)
        {
            out.push(Observation {
                kind,
                tenant: e.tenant.clone(),
                principal: e.actor.clone(),
                at: e.at,
                seq: e.seq,
                count: 1,
                summary,
            });
        }
    }
    let refused = |e: &AuditEntry| denied(e) && e.action != "authenticate" && e.actor != "-";
    if rules.on(FindingKind::Probing) {
        let window = rules.probing_window_secs;
        for (actor, burst) in group(batch, |e| refused(e).then(|| (e.actor.clone(), 1))) {
            counted(
                tx,
                FindingKind::Probing,
                actor.clone(),
                &burst,
                rules.probing_denials,
                || denials(tx, "actor", &actor, &burst, window),
                |n| format!("{n} denied requests from {actor} within {window} s"),
                &mut out,
            )?;
        }
        let by_source = group(batch, |e| {
            refused(e)
                .then(|| e.source.clone())
                .flatten()
                .map(|s| (s, 1))
        });
        for (source, burst) in by_source {
            counted(
                tx,
                FindingKind::Probing,
                format!("address:{source}"),
                &burst,
                rules.probing_denials,
                || denials(tx, "source", &source, &burst, window),
                |n| format!("{n} denied requests from address {source} within {window} s"),
                &mut out,
            )?;
        }
    }
    if rules.on(FindingKind::AuthFailures) {
        let window = rules.auth_failures_window_secs;
        // A failure row stands for itself and the repeats its window folded into it.
        let weight = |e: &AuditEntry| 1 + detail_json(e)["repeated"].as_u64().unwrap_or(0);
        let failures = group(batch, |e| {
            (e.action == "authenticate" && denied(e)).then(|| (e.target.clone(), weight(e)))
        });
        for (source, burst) in failures {
            counted(
                tx,
                FindingKind::AuthFailures,
                format!("address:{source}"),
                &burst,
                rules.auth_failures,
                || {
                    let rows = tx.query(
                        "SELECT detail FROM audit WHERE action = 'authenticate' AND target = ?1 \
                         AND seq <= ?2 AND at >= ?3 AND substr(outcome, 1, 7) = 'denied:'",
                        params![&source, burst.last.seq, window_start(burst.last.at, window)],
                    )?;
                    let mut n = 0;
                    for row in &rows {
                        let detail: Option<String> = row.get(0)?;
                        let repeated = detail
                            .and_then(|d| serde_json::from_str::<Value>(&d).ok())
                            .and_then(|d| d["repeated"].as_u64())
                            .unwrap_or(0);
                        n += 1 + repeated;
                    }
                    Ok(n)
                },
                |n| format!("{n} failed credential checks from {source} within {window} s"),
                &mut out,
            )?;
        }
    }
    Ok(out)
}

/// The data of a lifecycle event's message: who did what to what, never record contents.
pub(crate) fn event_data(e: &AuditEntry) -> Value {
    json!({
        "audit_seq": e.seq,
        "actor": e.actor,
        "target": e.target,
        "tenant": e.tenant,
        "request_id": e.request_id,
        "detail": detail_json(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str, detail: Value) -> AuditEntry {
        AuditEntry {
            seq: 1,
            at: Timestamp::from_micros(0),
            actor: "key:k1".into(),
            action: action.into(),
            target: "placement".into(),
            tenant: None,
            outcome: "ok".into(),
            request_id: "r1".into(),
            detail: Some(detail.to_string()),
            source: None,
            prev_hash: None,
            hash: None,
        }
    }

    #[test]
    fn a_plan_with_moves_is_an_event_and_an_empty_one_is_not() {
        let planned = entry(
            "placement.plan",
            json!({"window_days": 7, "moves": [{"tenant": "acme", "reason": "promote"}]}),
        );
        assert_eq!(
            lifecycle(&planned).map(|e| e.kind),
            Some("placement.planned")
        );
        let empty = entry("placement.plan", json!({"window_days": 7, "moves": []}));
        assert_eq!(lifecycle(&empty), None);
        let refused = AuditEntry {
            outcome: "denied:forbidden".into(),
            ..planned
        };
        assert_eq!(lifecycle(&refused), None);
        assert!(bulkhead_api::WEBHOOK_EVENTS.contains(&"placement.planned"));
    }
}
