//! Group commit: writes that wait for a file's writer meanwhile share one transaction, each
//! in a savepoint of its own ([`super::Db::write_grouped`]).

use bulkhead_engine::EngineError;
use rusqlite::Connection;

use crate::StorageError;

/// A write waiting to join a group commit ([`Db::write_grouped`]): it runs inside the group's
/// transaction, in a savepoint of its own, and hands back how to answer its caller once the
/// group's commit succeeded or failed.
pub(super) type Joined = Box<dyn FnOnce(&Connection) -> Answer + Send>;
pub(super) type Answer = Box<dyn FnOnce(Result<(), GroupFailed>) + Send>;

/// Why a group commit wrote nothing: whether the disk was full, and the detail.
#[derive(Debug, Clone)]
pub(super) struct GroupFailed {
    full: bool,
    detail: String,
}

impl GroupFailed {
    fn new(what: &str, e: &rusqlite::Error) -> Self {
        GroupFailed {
            full: matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull),
            detail: format!("{what}: {e}"),
        }
    }
}

impl From<GroupFailed> for StorageError {
    fn from(failed: GroupFailed) -> Self {
        if failed.full {
            EngineError::StorageFull(failed.detail).into()
        } else {
            EngineError::Storage(failed.detail).into()
        }
    }
}

/// Writes one group commit holds at most.
pub(super) const GROUP_MAX: usize = 256;

/// Runs `f` inside a savepoint: kept when it succeeds, rolled back when it fails.
pub(super) fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    conn.prepare_cached("SAVEPOINT bk_write")?.execute([])?;
    match f(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE bk_write")?.execute([])?;
            Ok(value)
        }
        Err(e) => {
            conn.prepare_cached("ROLLBACK TO bk_write")?.execute([])?;
            conn.prepare_cached("RELEASE bk_write")?.execute([])?;
            Err(e)
        }
    }
}

/// One group commit: every write of `batch` in one immediate transaction. Returns whether it
/// committed (the error's text when not) and each write's answer.
pub(super) fn run_group(
    conn: &Connection,
    batch: Vec<Joined>,
) -> (Result<(), GroupFailed>, Vec<Answer>) {
    if batch.is_empty() {
        return (Ok(()), Vec::new());
    }
    if !conn.is_autocommit() {
        // Never expected: a transaction left open would fail every group from now on.
        let _ = conn.execute_batch("ROLLBACK");
    }
    if let Err(e) = conn
        .prepare_cached("BEGIN IMMEDIATE")
        .and_then(|mut s| s.execute([]))
    {
        // Nothing ran: dropping the writes drops their answers' senders, and each caller
        // reports that its write never began.
        drop(batch);
        return (
            Err(GroupFailed::new("could not begin a write transaction", &e)),
            Vec::new(),
        );
    }
    let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
    for joined in batch {
        // Another caller's write runs on this thread: a panic in it must not leave the group's
        // transaction (or its savepoint) open on the writer. Its caller, whose answer went
        // with the unwinding, is told the write failed; the others go on.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| joined(conn))) {
            Ok(answer) => answers.push(answer),
            Err(_) => {
                tracing::error!("a grouped write panicked; it is rolled back alone");
                let _ = conn.execute_batch("ROLLBACK TO bk_write; RELEASE bk_write");
            }
        }
    }
    let committed = conn
        .prepare_cached("COMMIT")
        .and_then(|mut s| s.execute([]))
        .map(drop)
        .map_err(|e| GroupFailed::new("the group commit failed", &e));
    if committed.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    (committed, answers)
}
