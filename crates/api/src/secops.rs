//! Security operations on the wire: findings raised from the audit stream, and webhooks
//! that deliver findings and lifecycle events.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bulkhead_core::TenantId;
use bulkhead_core::error::Error;
use bulkhead_core::time::Timestamp;
use serde::{Deserialize, Serialize};

/// What a finding is about.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A burst of denied requests from one principal or one client address.
    Probing,
    /// Many not-found answers on record ids from one principal (ids of other tenants look
    /// missing; the pattern does not stay hidden).
    Enumeration,
    /// A burst of failed credential verifications from one address.
    AuthFailures,
    /// A platform admin read or wrote a tenant's data.
    AdminDataAccess,
    /// A key or member created with the owner or admin role.
    PrivilegedGrant,
    /// A tier's permission ceiling was weakened.
    CeilingWeakened,
    /// A whole collection was exported.
    CollectionExport,
    /// A live move was rolled back.
    MoveRolledBack,
    /// A tenant reached its storage quota.
    QuotaExceeded,
    /// The audit log's hash chain is broken (or its tail was cut).
    ChainBroken,
    /// A webhook was disabled after a run of failed deliveries.
    WebhookDisabled,
}

impl FindingKind {
    pub const ALL: [FindingKind; 11] = [
        FindingKind::Probing,
        FindingKind::Enumeration,
        FindingKind::AuthFailures,
        FindingKind::AdminDataAccess,
        FindingKind::PrivilegedGrant,
        FindingKind::CeilingWeakened,
        FindingKind::CollectionExport,
        FindingKind::MoveRolledBack,
        FindingKind::QuotaExceeded,
        FindingKind::ChainBroken,
        FindingKind::WebhookDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Probing => "probing",
            FindingKind::Enumeration => "enumeration",
            FindingKind::AuthFailures => "auth_failures",
            FindingKind::AdminDataAccess => "admin_data_access",
            FindingKind::PrivilegedGrant => "privileged_grant",
            FindingKind::CeilingWeakened => "ceiling_weakened",
            FindingKind::CollectionExport => "collection_export",
            FindingKind::MoveRolledBack => "move_rolled_back",
            FindingKind::QuotaExceeded => "quota_exceeded",
            FindingKind::ChainBroken => "chain_broken",
            FindingKind::WebhookDisabled => "webhook_disabled",
        }
    }

    pub fn parse(s: &str) -> Option<FindingKind> {
        FindingKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// How serious a finding of this kind is.
    pub fn severity(self) -> Severity {
        match self {
            FindingKind::ChainBroken => Severity::Critical,
            FindingKind::Probing
            | FindingKind::Enumeration
            | FindingKind::AuthFailures
            | FindingKind::CeilingWeakened => Severity::High,
            FindingKind::PrivilegedGrant
            | FindingKind::CollectionExport
            | FindingKind::MoveRolledBack
            | FindingKind::WebhookDisabled => Severity::Medium,
            FindingKind::AdminDataAccess | FindingKind::QuotaExceeded => Severity::Low,
        }
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FindingState {
    Open,
    Acknowledged,
}

/// One finding: repeats of the same kind, tenant and principal fold into it while it is
/// open. Never holds record contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Finding {
    pub id: String,
    pub kind: FindingKind,
    pub severity: Severity,
    pub tenant: Option<TenantId>,
    /// Who or where: an actor (`key:k…`, `user:u…`) or a client address (`address:…`).
    pub principal: String,
    pub state: FindingState,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// Occurrences folded into it.
    pub count: u64,
    pub summary: String,
    /// The audit entries it was raised from: the first and the last.
    pub first_seq: i64,
    pub last_seq: i64,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<Timestamp>,
}

/// The filters of `GET /v1/findings`, newest first.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    utoipa::IntoParams,
)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FindingQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<FindingState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FindingKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// How a webhook's body is shaped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{"type", "timestamp", "data"}`, signed per the Standard Webhooks specification.
    #[default]
    Standard,
    /// A body Slack's incoming webhooks accept: `text` plus blocks (also signed).
    Slack,
}

/// `PUT /v1/webhooks/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// `http://` or `https://`; loopback and private targets are refused unless the server
    /// allows them.
    pub url: String,
    /// Event types (`tenant.created`, `finding.opened`, …), or `*` for every one.
    pub events: Vec<String>,
    /// `whsec_` and base64 of 24 to 64 random bytes. Omitted on creation: one is made and
    /// shown once. A new one replaces the old, which keeps signing for 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default)]
    pub format: WebhookFormat,
    /// Failed deliveries in a row after which the webhook is disabled (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_after: Option<u32>,
    /// `true` re-enables a disabled webhook (its waiting messages are then delivered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// The longest webhook name.
pub const MAX_WEBHOOK_NAME: usize = 64;

/// The prefix of a webhook secret.
pub const WEBHOOK_SECRET_PREFIX: &str = "whsec_";

/// Checks a webhook's name: 1 to 64 of a-z, 0-9, `-` and `_`.
pub fn validate_webhook_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= MAX_WEBHOOK_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(
            "invalid_webhook_name",
            format!("a webhook name is 1 to {MAX_WEBHOOK_NAME} of a-z, 0-9, - and _"),
        ))
    }
}

/// The key bytes of a `whsec_` secret, or why it is not one.
pub fn webhook_secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix(WEBHOOK_SECRET_PREFIX)
        .ok_or_else(|| format!("a webhook secret starts with {WEBHOOK_SECRET_PREFIX}"))?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| "a webhook secret is whsec_ and base64".to_owned())?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!(
            "a webhook secret encodes 24 to 64 bytes, not {}",
            key.len()
        ));
    }
    Ok(key)
}

impl WebhookSpec {
    /// Checks what the spec alone decides: its events, secret and `disable_after`. The URL
    /// is checked by the server, which alone knows whether private targets are allowed.
    pub fn validate(&self) -> Result<(), Error> {
        if self.events.is_empty() {
            return Err(Error::bad_request(
                "invalid_webhook_events",
                format!(
                    "events: name one or more of {}, or *",
                    WEBHOOK_EVENTS.join(", ")
                ),
            ));
        }
        if let Some(unknown) = self
            .events
            .iter()
            .find(|e| *e != "*" && !WEBHOOK_EVENTS.contains(&e.as_str()))
        {
            return Err(Error::bad_request(
                "invalid_webhook_events",
                format!(
                    "events: {unknown:?} is not one of {}, or *",
                    WEBHOOK_EVENTS.join(", ")
                ),
            ));
        }
        if let Some(secret) = &self.secret {
            webhook_secret_key(secret)
                .map_err(|why| Error::bad_request("invalid_webhook_secret", why))?;
        }
        if self.disable_after == Some(0) {
            return Err(Error::bad_request(
                "invalid_webhook_spec",
                "disable_after must be at least 1",
            ));
        }
        Ok(())
    }
}

/// A webhook as the API shows it: never its secret, only a fingerprint of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub format: WebhookFormat,
    pub disable_after: u32,
    pub enabled: bool,
    /// Failed deliveries in a row.
    pub failures: u64,
    pub disabled_reason: Option<String>,
    /// The first 16 hex characters of the SHA-256 of the current secret.
    pub secret_fingerprint: String,
    /// Messages waiting to be delivered.
    pub pending: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The secret made for a new webhook; shown in this answer only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// One delivery attempt, from a webhook's delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    /// The message id (`webhook-id`), the same on every attempt.
    pub message: String,
    pub event: String,
    pub at: Timestamp,
    pub attempt: u32,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub millis: u64,
}

/// The event types a webhook may subscribe to.
pub const WEBHOOK_EVENTS: [&str; 16] = [
    "tenant.created",
    "tenant.updated",
    "tenant.suspended",
    "tenant.deleted",
    "move.started",
    "move.switched",
    "move.done",
    "move.rolled_back",
    "rollout.done",
    "rollout.failed",
    "quota.exceeded",
    "key.created",
    "key.revoked",
    "finding.opened",
    "webhook.disabled",
    "placement.planned",
];
