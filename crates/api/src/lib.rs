//! Wire types of the HTTP API (`/v1`), shared by the server and the client crate so the two
//! cannot drift apart. Request bodies reject unknown fields: a typo in a request is an error,
//! not a silently ignored setting.

use bulkhead_core::access::{PlatformRole, TenantRole};
use bulkhead_core::model::{Isolation, Labels, MovePhase, Placement, TenantStatus};
use bulkhead_core::permissions::{Action, MemberRole, RoleSpec};
use bulkhead_core::schema::FieldSpec;
use bulkhead_core::time::Timestamp;
use bulkhead_core::{
    CollectionName, DomainName, FieldName, Incarnation, KeyId, RoleName, TenantId, TierName, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

mod archive;
mod backup;
mod listing;
mod placement;
pub use archive::*;
pub use listing::*;
pub use placement::*;
mod secops;
pub use backup::*;
mod usage;
pub use secops::*;
pub use usage::*;

pub use bulkhead_core::query::aggregate::AggregateRequest;

pub use bulkhead_core::model::{DomainSpec, TierSpec};
pub use bulkhead_core::schema::CollectionSpec;

/// Header a platform admin uses to name the tenant whose data it reaches.
pub const TENANT_HEADER: &str = "bulkhead-tenant";
/// Header carrying the request id (echoed back on every response).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// `{"error": {...}}`, the only error body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    pub request_id: String,
}

/// A page of a listing; pass `next_cursor` back as `cursor` for the next page.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub id: TenantId,
    pub name: String,
    pub tier: TierName,
    #[serde(default)]
    pub labels: Labels,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TenantStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: TenantId,
    pub name: String,
    pub tier: TierName,
    pub status: TenantStatus,
    pub labels: Labels,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub placement: Placement,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TierView {
    pub name: TierName,
    #[serde(flatten)]
    pub spec: TierSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DomainView {
    pub name: DomainName,
    /// The domain's spec with `url` and `data_url` redacted (passwords shown as `***`).
    #[serde(flatten)]
    pub spec: DomainSpec,
    /// Tenants placed on the domain, by isolation model.
    pub tenants: BTreeMap<Isolation, u64>,
    /// Whether this server has the domain's engine open (false when it could not be reached
    /// at start; its tenants get `503 domain_unavailable` until it is put again).
    #[serde(default)]
    pub available: bool,
    /// Empty silos ready on the current schema (the ready pool, `ready_silos`): the next
    /// that many silo tenants here are created by renaming one.
    #[serde(default)]
    pub spares_ready: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CollectionView {
    pub name: CollectionName,
    pub version: i64,
    pub fields: BTreeMap<FieldName, FieldSpec>,
    /// `GET /v1/collections/{name}`: tenants whose storage does not have this version yet
    /// (their rollout is retried in the background; a moving tenant is not counted: its move
    /// brings it up). They are served with the version their storage has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placements_behind: Option<i64>,
    /// `PUT`: the rollout the change started (answered `202` while placements are left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutView>,
}

/// A collection change's rollout to every placement, as `GET /v1/rollouts/{id}` shows it.
/// Progress is read from each placement's recorded generation (the ledger), so it is exact
/// after a crash and on every server sharing the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutView {
    pub id: String,
    pub collection: CollectionName,
    /// The collection's definition version this rollout brings every placement to.
    pub version: i64,
    /// The schema generation the change made.
    pub generation: i64,
    /// `running`, `done` (every placement has it, or a later change's rollout took it over),
    /// or `cancelled` (placements left stay on their definitions until a later change).
    pub state: String,
    /// Live placements when the change was made.
    pub placements_total: u64,
    /// Live placements that have this generation or a later one.
    pub placements_done: u64,
    /// Live placements still behind it (a moving tenant's counts once its move ends).
    pub placements_left: u64,
    /// Placements that failed in the last pass (retried with backoff).
    pub placements_failed: u64,
    /// The wave being applied: `canary` (tenants labelled `canary=true`), then one per tier.
    pub wave: Option<String>,
    /// Placements brought up per second since the rollout began.
    pub rate: f64,
    /// Seconds until done at the current rate, while running.
    pub eta_seconds: Option<f64>,
    /// The last failure, if the last pass had any.
    pub last_error: Option<String>,
    pub started_by: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// How the pass paces itself by the latency of the requests on the domain it works on
    /// (the domain that asked for the longest rest last), while the server answering runs
    /// it (absent on other servers, and between passes). Same shape as a move's pace, with
    /// `group` `domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace: Option<Box<MovePace>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    pub role: TenantRole,
    /// Seconds until the key stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlatformKey {
    pub name: String,
    pub role: PlatformRole,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

/// A key as listed: never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyView {
    pub id: KeyId,
    pub name: String,
    /// `owner`/`admin`/`member`/`viewer` for tenant keys, `admin`/`operator` for platform keys.
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    pub revoked: bool,
}

/// Answer to a key creation: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub view: KeyView,
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (`/healthz`); `ready` or `degraded` (`/readyz`: serving, with problems listed).
    pub status: String,
    /// What does not work right now while the rest is served: domains whose engine is not
    /// open, tenants whose interrupted provisioning or deletion waits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// `/readyz`: the version of the catalog's schema (its newest migration applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_schema: Option<i64>,
}

/// A page of aggregation groups, each a flat object of group keys and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AggregatePage {
    pub groups: Vec<Map<String, Value>>,
    pub next_cursor: Option<String>,
}

/// What a bulk request did, line by line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BulkReport {
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub failed: u64,
    pub results: Vec<BulkLine>,
    /// More lines had results than a report lists (10,000); the counts are still exact.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub results_truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BulkLine {
    /// 1-based line number in the request body.
    pub line: u64,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<LineError>,
}

/// Why a line failed: the error code and message a single request would have returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LineError {
    pub code: String,
    pub message: String,
}

/// `POST /v1/tenants/{tenant}/moves`: where to move the tenant. At least one of the two; a
/// missing one keeps the tenant's current value.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartMove {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainName>,
    /// Move only this life of the tenant: when the id names another by now (the tenant was
    /// deleted and re-created since the caller looked), `409 tenant_life_ended` and nothing
    /// starts. `bulkhead placement apply` sends the life its plan measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<Incarnation>,
}

/// A live move, as `GET /v1/moves/{move}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MoveView {
    pub id: String,
    pub tenant: TenantId,
    pub phase: MovePhase,
    pub source: Placement,
    pub target: Placement,
    /// The tier the tenant gets when the move switches (a move started by a tier change).
    pub target_tier: Option<TierName>,
    pub rows_copied: u64,
    pub rows_total: u64,
    /// Rows copied per second since the copy began.
    pub rate: f64,
    /// Seconds until the copy is done at the current rate, while copying.
    pub eta_seconds: Option<f64>,
    /// How long writes were held while the move switched placements, in milliseconds.
    pub freeze_ms: Option<u64>,
    /// Records compared source against target (full pass, then again under the freeze).
    pub rows_verified: u64,
    /// Why the move rolled back.
    pub error: Option<String>,
    pub started_by: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// How the copy paces itself by its neighbours' latency, while the server that runs the
    /// move copies or compares (absent on other servers, and before and after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace: Option<Box<MovePace>>,
}

/// A move's pace: the share of time its copy runs, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MovePace {
    /// Share of time the copy works (the rest it rests): between the floor and the ceiling.
    pub duty: f64,
    /// `unwatched` (no neighbour requests to judge by), `measuring` (a baseline, at the
    /// floor), `slowing`, `holding` or `rising`; a rollout's pace is `waiting` while a backup
    /// runs (no placement changes until it is done).
    pub state: String,
    /// The neighbours the decision turned on: `file` (tenants on the moving tenant's pool or
    /// bridge file, either side) or `domain` (tenants on either side's domain).
    pub group: Option<String>,
    /// Their p99 over the last window, in milliseconds, and before the move.
    pub p99_ms: Option<f64>,
    pub baseline_ms: Option<f64>,
    /// `p99_ms / baseline_ms`; the copy slows down above `target_ratio`.
    pub ratio: Option<f64>,
    pub target_ratio: f64,
    /// Neighbour requests in the window.
    pub samples: u64,
    pub reason: String,
}

/// `POST /v1/tenants/{t}/members`: by the identity provider's `(issuer, sub)`, or by email
/// (an invitation the person claims with their first token whose email is verified).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// The issuer's configured name or its exact `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub role: MemberRole,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    pub role: MemberRole,
}

/// A tenant member as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberView {
    pub user_id: UserId,
    pub tenant: TenantId,
    pub role: MemberRole,
    pub issuer: Option<String>,
    pub sub: Option<String>,
    pub email: Option<String>,
    /// `invited` until the person's first token claims the invitation.
    pub status: String,
    pub disabled: bool,
    pub created_at: Timestamp,
}

/// A user as platform admins see them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: UserId,
    pub issuer: Option<String>,
    pub sub: Option<String>,
    pub email: Option<String>,
    pub disabled: bool,
    pub created_at: Timestamp,
    pub memberships: Vec<MembershipView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MembershipView {
    pub tenant: TenantId,
    pub role: MemberRole,
}

/// `PATCH /v1/users/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub disabled: bool,
}

/// A tenant's custom role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoleView {
    pub tenant: TenantId,
    pub name: RoleName,
    #[serde(flatten)]
    pub spec: RoleSpec,
    pub updated_at: Timestamp,
}

/// `POST /v1/tokens`: a short-lived token narrower than the credential minting it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintToken {
    /// Collections the token may touch; all the parent may touch when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections: Option<Vec<CollectionName>>,
    #[schema(min_items = 1)]
    pub actions: Vec<Action>,
    /// An extra record rule, ANDed with the parent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Seconds; default 600, at most 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 86400)]
    pub expires_in: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MintedToken {
    pub token: String,
    pub tenant: TenantId,
    pub expires_at: Timestamp,
}

/// `GET /v1/me`: who the credential is and where it may go.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MeView {
    pub actor: String,
    /// `platform_admin`, `platform_operator`, `tenant_key`, `user` or `tenant_token`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub memberships: Vec<MembershipView>,
}

/// `GET /v1/collections/{c}/access`: what this credential may do on a collection (for UIs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccessView {
    pub tenant: TenantId,
    pub collection: CollectionName,
    pub actions: Vec<Action>,
    /// Whether a record rule narrows which records are visible.
    pub record_rule: bool,
    /// The fields this credential sees (system fields aside).
    pub fields: Vec<FieldName>,
}

/// One entry of the audit log (`GET /v1/audit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Position in the log: a later entry has a larger number.
    pub seq: i64,
    pub at: Timestamp,
    /// Who acted: `key:k…`, `user:u…`, `token:…(key:k…)`, `bootstrap-admin`, `system`.
    pub actor: String,
    /// What was done or attempted: `tenant.create`, `record.read`, `move.switched`, …
    pub action: String,
    pub target: String,
    pub tenant: Option<TenantId>,
    /// `ok`, or `denied:<code>`.
    pub outcome: String,
    pub request_id: String,
    pub detail: Option<String>,
    /// The client address of the request, where one was recorded (denials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The hash of the entry before this one (the chain's anchor for the first).
    #[serde(default)]
    pub prev_hash: Option<String>,
    /// SHA-256 over this entry's canonical encoding and `prev_hash` (docs/security.md).
    #[serde(default)]
    pub hash: Option<String>,
}

impl AuditEntry {
    /// The fields the entry's hash covers (`bulkhead_core::chain`).
    pub fn chain_fields(&self) -> bulkhead_core::chain::Fields<'_> {
        bulkhead_core::chain::Fields {
            seq: self.seq,
            at: self.at.as_micros(),
            actor: &self.actor,
            action: &self.action,
            target: &self.target,
            tenant: self.tenant.as_ref().map(TenantId::as_str),
            outcome: &self.outcome,
            request_id: &self.request_id,
            detail: self.detail.as_deref(),
            source: self.source.as_deref(),
        }
    }

    /// Checks NDJSON lines of exported entries (`bulkhead audit verify --file`): the first
    /// entry is trusted to follow what came before it; every later link is checked, and
    /// `head`, when given, must be among them or before them.
    pub fn verify_lines(
        lines: impl Iterator<Item = std::io::Result<String>>,
        head: Option<bulkhead_core::chain::Link>,
    ) -> Result<AuditVerification, String> {
        use bulkhead_core::chain::{GENESIS, Link, Verifier};
        let mut verifier: Option<Verifier> = None;
        let mut anchor = Link {
            seq: 0,
            hash: GENESIS.into(),
        };
        let mut broken = None;
        for (n, line) in lines.enumerate() {
            let line = line.map_err(|e| format!("reading line {}: {e}", n + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let e: AuditEntry = serde_json::from_str(&line)
                .map_err(|e| format!("line {} is not an audit entry: {e}", n + 1))?;
            let v = verifier.get_or_insert_with(|| {
                anchor = Link {
                    seq: e.seq - 1,
                    hash: e.prev_hash.clone().unwrap_or_default(),
                };
                Verifier::new(Some(&anchor.hash), head.clone())
            });
            if let Err(b) = v.check(&e.chain_fields(), e.prev_hash.as_deref(), e.hash.as_deref()) {
                broken = Some(b);
                break;
            }
        }
        let v = verifier.unwrap_or_else(|| Verifier::new(None, head));
        if broken.is_none() {
            broken = v.finish().err();
        }
        Ok(AuditVerification {
            ok: broken.is_none(),
            checked: v.checked(),
            anchor,
            head: v.last().cloned(),
            broken,
        })
    }
}

/// `GET /v1/audit/verify`: the hash chain walked from its anchor to its newest entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditVerification {
    /// True when every link holds (and the published head given, if any, is still there).
    pub ok: bool,
    /// Entries checked.
    pub checked: u64,
    /// Where the chain starts: the last entry retention removed, or 0 and the genesis hash.
    pub anchor: bulkhead_core::chain::Link,
    /// The newest entry checked (absent for an empty log).
    pub head: Option<bulkhead_core::chain::Link>,
    /// The first broken link.
    pub broken: Option<bulkhead_core::chain::Break>,
}

/// The query of `GET /v1/audit/verify`.
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
pub struct AuditVerifyQuery {
    /// A published head, `seq:hash`, the log must still hold.
    #[serde(default)]
    #[param(pattern = "^[0-9]{1,18}:[0-9a-fA-F]{64}$")]
    pub head: Option<String>,
}

/// The query of `GET /v1/audit/export`: entries oldest first as NDJSON.
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
pub struct AuditExportQuery {
    /// From the first entry at or after this time.
    #[serde(default)]
    pub from: Option<Timestamp>,
    /// Entries before this time (exclusive).
    #[serde(default)]
    pub to: Option<Timestamp>,
}

/// The filters of `GET /v1/audit`, all optional; an entry is listed when it matches every
/// one given. Entries come newest first.
#[derive(
    Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema, utoipa::IntoParams,
)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries about this tenant (it may since have been deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// An action (`tenant.create`), or a prefix ending in `*` (`move.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `ok`, `denied` (any denial) or one denial, `denied:<code>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// From this time on (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Timestamp>,
    /// Before this time (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Tenant storage that no live tenant incarnation owns (`GET /v1/doctor`): left by a crash
/// between a purge's steps, an interrupted move, or a write that raced a deletion on another
/// server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StorageOrphan {
    pub domain: DomainName,
    pub isolation: Isolation,
    /// The engine's name for it (file, tables, schema, database, or pooled rows).
    pub name: String,
    /// The tenant and the life it belonged to, when its name says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<Incarnation>,
    /// Whether `POST /v1/doctor/clean` can remove it (its name can be read back to a key).
    pub removable: bool,
}

/// What `bulkhead doctor` found (and, after `POST /v1/doctor/clean`, removed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct DoctorReport {
    pub orphans: Vec<StorageOrphan>,
    /// Domains whose engine is not open here, so their storage was not inspected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unchecked_domains: Vec<DomainName>,
    /// Orphans removed by this call (`clean` only).
    #[serde(default)]
    pub removed: u64,
}
