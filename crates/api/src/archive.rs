//! Retention and the cold archive: what a tenant has archived, bringing a range back, and a
//! retention pass run on demand.

use bulkhead_core::time::Timestamp;
use bulkhead_core::{CollectionName, Incarnation, TenantId};
use serde::{Deserialize, Serialize};

/// `GET /v1/tenants/{tenant}/archives`: the tenant's cold archive, by collection and month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArchiveListing {
    pub tenant: TenantId,
    pub incarnation: Incarnation,
    /// Records and bytes in the cold archive, all collections.
    pub records: u64,
    pub bytes: u64,
    pub items: Vec<ArchiveMonth>,
}

/// One collection's archive of one month (UTC, by the retention field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArchiveMonth {
    pub collection: CollectionName,
    /// `YYYY-MM`.
    pub month: String,
    pub files: u64,
    pub records: u64,
    pub bytes: u64,
    /// The oldest and newest retention-field values archived.
    pub from: Timestamp,
    pub to: Timestamp,
}

/// `POST /v1/tenants/{tenant}/archives:restore`: brings the records of `collection` whose
/// retention field is in `[from, to)` back into the hot store, and keeps them there for
/// `hold_days` (default 30) before retention may archive them again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreArchive {
    pub collection: CollectionName,
    pub from: Timestamp,
    pub to: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_days: Option<u32>,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArchiveRestored {
    pub tenant: TenantId,
    pub collection: CollectionName,
    /// Records written back into the hot store.
    pub restored: u64,
    /// Records of the range already hot under the same id (a newer write kept).
    pub already_hot: u64,
    /// Archive files rewritten or removed.
    pub files_changed: u64,
    /// Until when retention leaves the range hot.
    pub hold_until: Timestamp,
}

/// `POST /v1/retention:run`: one retention pass now, over every tenant or one (one pass at a
/// time per server: `409 retention_running` names the one under way).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRetention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
}

/// A retention pass on one server: `POST /v1/retention:run` answers `202` with it, and
/// `GET /v1/retention/runs/{id}` follows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetentionRun {
    pub id: String,
    pub state: RunState,
    /// The one tenant the pass was asked for, if any.
    pub tenant: Option<TenantId>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// Progress: the tenant collections the pass goes through (known once it has listed
    /// them), and those done.
    pub collections_total: u64,
    pub collections_done: u64,
    /// What it did so far.
    pub report: RetentionReport,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Done,
    Failed,
}

/// What a retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetentionReport {
    /// Tenant collections looked at.
    pub collections: u64,
    /// Records moved into the cold archive, the files written and their bytes.
    pub archived: u64,
    pub files: u64,
    pub bytes: u64,
    /// Tenants skipped because they were moving, suspended or frozen (tried next pass).
    pub busy: u64,
    /// Tenant collections whose archiving failed (logged; tried next pass).
    pub failed: u64,
    /// Batches a crashed pass left, finished or undone.
    pub recovered: u64,
    /// Files of ended lives or unfinished writes removed.
    pub swept: u64,
    pub elapsed_ms: u64,
}
