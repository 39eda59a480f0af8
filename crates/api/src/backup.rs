//! Online backups: `POST /v1/backups`, `GET /v1/backups/{id}`, and the manifest a backup
//! directory carries.

use bulkhead_core::time::Timestamp;
use serde::{Deserialize, Serialize};

/// `POST /v1/backups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBackup {
    /// An absolute directory on the server's machine, missing or empty.
    pub dir: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackupState {
    Running,
    Done,
    Failed,
}

/// What a backup holds of one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupDomain {
    pub name: String,
    pub engine: String,
    /// False for a domain on a database server (back it up with that server's tools).
    pub included: bool,
}

/// A backup, while it runs and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupView {
    pub id: String,
    pub dir: String,
    pub state: BackupState,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// Progress: database files known so far, copied, and bytes written.
    pub files_total: u64,
    pub files_done: u64,
    pub bytes: u64,
    pub domains: Vec<BackupDomain>,
    pub error: Option<String>,
}

/// One file of a backup, relative to its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupFile {
    pub path: String,
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
}

/// `manifest.json` of a backup directory, written last: a directory without it is not a
/// finished backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupManifest {
    /// This layout's version.
    pub format: u32,
    /// The release that wrote it.
    pub bulkhead: String,
    pub created_at: Timestamp,
    /// The catalog's schema version.
    pub catalog_schema: i64,
    pub domains: Vec<BackupDomain>,
    /// `catalog.db`, then each SQLite domain's files under `domains/<name>/`: the data
    /// directory's own layout.
    pub files: Vec<BackupFile>,
}

/// The manifest format this release writes and reads.
pub const BACKUP_FORMAT: u32 = 1;

/// `POST /v1/tenants/{tenant}/records:restore`: records written exactly as given (each with
/// `id`, `created_at`, `updated_at` and `version`), replacing any with the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRecords {
    pub collection: bulkhead_core::CollectionName,
    pub records: Vec<serde_json::Value>,
    /// The life of the tenant the records are for (its `placement.incarnation`): when the
    /// tenant id names another life by now (deleted, re-created or not), the answer is
    /// `409 tenant_life_ended` and nothing is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub incarnation: Option<bulkhead_core::Incarnation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestoredRecords {
    pub restored: u64,
}
