//! Findings: stored, folded and acknowledged. A new observation of a kind, tenant and
//! principal that already has an open finding adds to its count and last-seen time; else it
//! opens a finding (and a `finding.opened` event for the webhooks).

use bulkhead_api::{Finding, FindingKind, FindingQuery, FindingState, Page};
use bulkhead_core::TenantId;
use bulkhead_core::access::ControlAction;
use bulkhead_core::error::Error;
use bulkhead_core::time::Timestamp;
use serde::{Deserialize, Serialize};

use bulkhead_catalog::{Ctx, append_audit, list_cursor, list_position, page_limit};
use bulkhead_store::{Row, StoreResult, Tx, Val, malformed, params};

use crate::Secops;

/// Thresholds of the detectors that count (`[findings]` in the configuration file), and the
/// kinds switched off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FindingRules {
    /// Denied requests from one principal or one address within the window.
    pub probing_denials: u64,
    pub probing_window_secs: u64,
    /// Not-found answers on record ids to one principal within the window.
    pub enumeration_not_found: u64,
    pub enumeration_window_secs: u64,
    /// Failed credential verifications from one address within the window.
    pub auth_failures: u64,
    pub auth_failures_window_secs: u64,
    /// Kinds never raised.
    pub off: Vec<FindingKind>,
}

impl Default for FindingRules {
    fn default() -> Self {
        FindingRules {
            probing_denials: 20,
            probing_window_secs: 60,
            enumeration_not_found: 50,
            enumeration_window_secs: 60,
            auth_failures: 20,
            auth_failures_window_secs: 60,
            off: Vec::new(),
        }
    }
}

impl FindingRules {
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("probing_denials", self.probing_denials),
            ("probing_window_secs", self.probing_window_secs),
            ("enumeration_not_found", self.enumeration_not_found),
            ("enumeration_window_secs", self.enumeration_window_secs),
            ("auth_failures", self.auth_failures),
            ("auth_failures_window_secs", self.auth_failures_window_secs),
        ] {
            if value == 0 {
                return Err(format!("findings.{name} must be at least 1"));
            }
        }
        Ok(())
    }

    pub(crate) fn on(&self, kind: FindingKind) -> bool {
        !self.off.contains(&kind)
    }
}

/// Something a detector saw, to fold into a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observation {
    pub kind: FindingKind,
    pub tenant: Option<TenantId>,
    pub principal: String,
    pub at: Timestamp,
    pub seq: i64,
    /// Occurrences it stands for.
    pub count: u64,
    pub summary: String,
}

const COLUMNS: &str = "id, kind, severity, tenant_id, principal, state, first_seen, last_seen, \
                       count, summary, first_seq, last_seq, acknowledged_by, acknowledged_at";

fn finding(r: &Row) -> StoreResult<Finding> {
    let kind: String = r.get(1)?;
    let state: String = r.get(5)?;
    Ok(Finding {
        id: r.get(0)?,
        kind: FindingKind::parse(&kind).ok_or_else(|| malformed(format!("finding kind {kind}")))?,
        severity: FindingKind::parse(&kind)
            .map(FindingKind::severity)
            .ok_or_else(|| malformed("finding severity"))?,
        tenant: r
            .get::<Option<String>>(3)?
            .and_then(|t| TenantId::parse(&t).ok()),
        principal: r.get(4)?,
        state: if state == "open" {
            FindingState::Open
        } else {
            FindingState::Acknowledged
        },
        first_seen: Timestamp::from_micros(r.get(6)?),
        last_seen: Timestamp::from_micros(r.get(7)?),
        count: r.get::<i64>(8)?.max(0) as u64,
        summary: r.get(9)?,
        first_seq: r.get(10)?,
        last_seq: r.get(11)?,
        acknowledged_by: r.get(12)?,
        acknowledged_at: r.get::<Option<i64>>(13)?.map(Timestamp::from_micros),
    })
}

/// The open finding of this kind, principal and tenant.
pub(crate) fn open_one(
    tx: &dyn Tx,
    kind: FindingKind,
    principal: &str,
    tenant: Option<&TenantId>,
) -> StoreResult<Option<Finding>> {
    tx.query_opt(
        &format!(
            "SELECT {COLUMNS} FROM findings WHERE kind = ?1 AND principal = ?2 \
             AND ((CAST(?3 AS TEXT) IS NULL AND tenant_id IS NULL) OR tenant_id = ?3) \
             AND state = 'open'"
        ),
        params![kind.as_str(), principal, tenant.map(TenantId::as_str)],
    )?
    .as_ref()
    .map(finding)
    .transpose()
}

/// Folds `o` into its open finding, or opens one (returned, for `finding.opened`).
pub(crate) fn fold(tx: &dyn Tx, o: &Observation, id: &str) -> StoreResult<Option<Finding>> {
    if let Some(open) = open_one(tx, o.kind, &o.principal, o.tenant.as_ref())? {
        tx.execute(
            "UPDATE findings SET count = count + ?2, last_seen = ?3, last_seq = ?4, summary = ?5 \
             WHERE id = ?1",
            params![
                &open.id,
                o.count as i64,
                o.at.as_micros().max(open.last_seen.as_micros()),
                o.seq,
                &o.summary
            ],
        )?;
        return Ok(None);
    }
    tx.execute(
        &format!(
            "INSERT INTO findings ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6, ?6, ?7, ?8, ?9, ?9, NULL, NULL)"
        ),
        params![
            id,
            o.kind.as_str(),
            o.kind.severity().as_str(),
            o.tenant.as_ref().map(TenantId::as_str),
            &o.principal,
            o.at.as_micros(),
            o.count as i64,
            &o.summary,
            o.seq
        ],
    )?;
    let row = tx.query_one(
        &format!("SELECT {COLUMNS} FROM findings WHERE id = ?1"),
        params![id],
    )?;
    finding(&row).map(Some)
}

fn encode_cursor(id: &str) -> String {
    list_cursor("findings", id)
}

impl Secops {
    /// `GET /v1/findings`: newest first, filtered by state, kind and tenant (platform admins
    /// and operators).
    pub async fn list_findings(
        &self,
        ctx: &Ctx,
        query: &FindingQuery,
    ) -> Result<Page<Finding>, Error> {
        self.door.authorize(
            ctx,
            ControlAction::ReadAudit,
            "finding.list",
            "findings",
            None,
        )?;
        let limit = page_limit(query.limit)?;
        let before = query
            .cursor
            .as_deref()
            .map(|c| list_position("findings", c))
            .transpose()?;
        let mut terms = Vec::new();
        let mut values: Vec<Val> = Vec::new();
        let mut push = |term: &str, value: Val| {
            values.push(value);
            terms.push(term.replace("{}", &format!("?{}", values.len())));
        };
        if let Some(state) = query.state {
            let state = match state {
                FindingState::Open => "open",
                FindingState::Acknowledged => "acknowledged",
            };
            push("state = {}", state.into());
        }
        if let Some(kind) = query.kind {
            push("kind = {}", kind.as_str().into());
        }
        if let Some(tenant) = &query.tenant {
            push("tenant_id = {}", tenant.as_str().into());
        }
        if let Some(before) = before {
            push("id < {}", before.into());
        }
        values.push(Val::Int(i64::from(limit) + 1));
        let where_ = if terms.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", terms.join(" AND "))
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM findings {where_} ORDER BY id DESC LIMIT ?{}",
            values.len()
        );
        let mut items: Vec<Finding> = self
            .door
            .blocking(move |store| {
                store.read(|tx| tx.query(&sql, &values)?.iter().map(finding).collect())
            })
            .await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = more
            .then(|| items.last().map(|f: &Finding| encode_cursor(&f.id)))
            .flatten();
        Ok(Page { items, next_cursor })
    }

    /// `POST /v1/findings/{id}/acknowledge`: the finding stops folding repeats (a new one
    /// opens for them). Audited; acknowledging twice changes nothing.
    pub async fn acknowledge_finding(&self, ctx: &Ctx, id: &str) -> Result<Finding, Error> {
        self.door.authorize(
            ctx,
            ControlAction::AcknowledgeFindings,
            "finding.acknowledge",
            id,
            None,
        )?;
        let event = self.door.event(ctx, "finding.acknowledge", id, None, None);
        let (id, now, actor) = (
            id.to_owned(),
            self.door.now(),
            ctx.principal.actor().to_owned(),
        );
        self.door
            .blocking(move |store| {
                store.write(|tx| {
                    let changed = tx.execute(
                        "UPDATE findings SET state = 'acknowledged', acknowledged_by = ?2, \
                     acknowledged_at = ?3 WHERE id = ?1 AND state = 'open'",
                        params![&id, &actor, now.as_micros()],
                    )?;
                    let row = tx
                        .query_opt(
                            &format!("SELECT {COLUMNS} FROM findings WHERE id = ?1"),
                            params![&id],
                        )?
                        .ok_or_else(|| {
                            Error::not_found("finding_not_found", "finding not found")
                        })?;
                    if changed > 0 {
                        append_audit(tx, &event)?;
                    }
                    finding(&row)
                })
            })
            .await
    }
}
