//! The recorded history: one event per operation the simulator invoked, with what it sent,
//! what came back and when. Saved as NDJSON so a failed run can be checked again
//! (`bulkhead simulate --check FILE`).

use serde::{Deserialize, Serialize};

/// What became of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acknowledged (2xx): it happened.
    Ok,
    /// Refused with a 4xx: it did not happen.
    Refused,
    /// No answer, or a 5xx (a timeout, a reset, a crash): it may or may not have happened.
    Unknown,
}

impl Outcome {
    pub fn of_status(status: Option<u16>) -> Outcome {
        match status {
            Some(s) if (200..300).contains(&s) => Outcome::Ok,
            Some(s) if (400..500).contains(&s) && s != 408 => Outcome::Refused,
            _ => Outcome::Unknown,
        }
    }
}

/// A record as the simulator writes it: whose it is, in which of the tenant id's lives, and
/// a value no other write ever used (so an observed state names the write that made it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub id: String,
    pub owner: String,
    pub life: u32,
    pub n: i64,
    pub version: i64,
    /// The writer that owns it (a tenant token's rule selects by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub w: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteKind {
    Create,
    Replace,
    Patch,
    Delete,
    /// One line of a bulk upsert.
    Upsert,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A write of one record (`n` is the value it sets; none for a delete).
    Write {
        id: String,
        kind: WriteKind,
        n: Option<i64>,
        if_match: Option<i64>,
        /// The version the server acknowledged.
        version: Option<i64>,
    },
    /// A read of one record by id: what it returned (`None`: not found).
    Read {
        id: String,
        seen: Option<Seen>,
    },
    /// The writer's own records, listed with the filter `w = <w>`: `ids` are all it owns,
    /// `seen` what the listing returned.
    Snapshot {
        ids: Vec<String>,
        seen: Vec<Seen>,
    },
    /// A full-text search for the word of value `n`, which record `id` was last set to.
    Search {
        id: String,
        n: i64,
        seen: Vec<Seen>,
    },
    /// `count` of the writer's records, aggregated with the filter `w = <w>` over its `ids`.
    Count {
        ids: Vec<String>,
        count: u64,
    },
    /// A page read by a JWT user whose custom role has the rule `w = <w>` and hides `n`:
    /// `shown_hidden` lists the records that came with `n` anyway.
    UserList {
        w: i64,
        seen: Vec<Seen>,
        shown_hidden: Vec<String>,
    },
    /// A page read with a tenant token whose record rule is `w = <w>`.
    TokenList {
        w: i64,
        seen: Vec<Seen>,
    },
    /// A page of the tenant's records (or the final export): every record returned.
    List {
        seen: Vec<Seen>,
        complete: bool,
    },
    /// The run began on this many servers (sharing one catalog when more than one).
    Started {
        servers: usize,
    },
    /// A tenant's life began (created, or created again under the same id).
    Created,
    /// The tenant was deleted (its life ended).
    Deleted,
    Suspended,
    Resumed,
    /// A live move was started to `isolation`.
    Move {
        isolation: String,
    },
    /// A key was revoked; `status` is what a request with it got right after.
    Revoked {
        status_after: Option<u16>,
    },
    /// The collection was changed (a schema rollout began) to `version`.
    Rollout {
        version: Option<i64>,
    },
    /// A fault the simulator injected.
    Fault {
        kind: String,
    },
    /// The audit chain was verified from its anchor.
    AuditVerified {
        ok: bool,
        checked: u64,
    },
    /// Records written to the tenant id (all its lives) as its metered usage counts them.
    Usage {
        metered: u64,
    },
    /// The tenant's quota counter against the real count of its records.
    Quota {
        counted: u64,
        real: u64,
    },
}

/// One operation: invoked at `start_ms`, answered at `end_ms` (milliseconds since the run
/// began), by `worker` on `tenant` in its life `life`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub start_ms: u64,
    pub end_ms: u64,
    pub worker: String,
    pub tenant: String,
    pub life: u32,
    pub outcome: Outcome,
    pub status: Option<u16>,
    #[serde(flatten)]
    pub op: Op,
}
