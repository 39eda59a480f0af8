//! One SQLite database file: a single writer connection, a small pool of read connections,
//! WAL, `busy_timeout` set first. All methods block; the engine calls them from
//! `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::time::Instant;

use bulkhead_engine::{BudgetHit, EngineError, QueryBudget};
use parking_lot::Mutex;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::StorageError;

/// Name of the SQL function every budgeted query calls once per row it examines.
pub const EXAMINE_FN: &str = "bk_examine";

/// VM instructions between two checks of the time budget.
const PROGRESS_STEPS: i32 = 2_000;

/// The budget of the query running on one read connection. Unlimited between queries.
struct Budget {
    rows_left: AtomicI64,
    rows_limit: AtomicI64,
    deadline: Mutex<Option<(Instant, Duration)>>,
    hit: Mutex<Option<BudgetHit>>,
}

impl Budget {
    fn unlimited() -> Self {
        Budget {
            rows_left: AtomicI64::new(i64::MAX),
            rows_limit: AtomicI64::new(i64::MAX),
            deadline: Mutex::new(None),
            hit: Mutex::new(None),
        }
    }

    fn arm(&self, budget: &QueryBudget) {
        let rows = i64::try_from(budget.rows_examined).unwrap_or(i64::MAX);
        self.rows_left.store(rows, Ordering::Relaxed);
        self.rows_limit.store(rows, Ordering::Relaxed);
        *self.deadline.lock() = Some((Instant::now() + budget.time, budget.time));
        *self.hit.lock() = None;
    }

    /// Ends the query's budget: whether it was hit, and the rows it examined.
    fn disarm(&self) -> (Option<BudgetHit>, u64) {
        let left = self.rows_left.swap(i64::MAX, Ordering::Relaxed);
        let limit = self.rows_limit.swap(i64::MAX, Ordering::Relaxed);
        let examined = u64::try_from(limit.saturating_sub(left.max(0))).unwrap_or(0);
        *self.deadline.lock() = None;
        (self.hit.lock().take(), examined)
    }
}

/// A read-only connection with its query budget installed.
struct Reader {
    conn: Connection,
    budget: Arc<Budget>,
}

impl Reader {
    fn open(path: &Path, options: &DbOptions) -> Result<Reader, StorageError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)?;
        configure(&conn, options)?;
        let budget = Arc::new(Budget::unlimited());
        let rows = Arc::clone(&budget);
        // Not deterministic, so SQLite calls it for every row the loop visits.
        conn.create_scalar_function(EXAMINE_FN, 1, FunctionFlags::SQLITE_UTF8, move |_| {
            if rows.rows_left.fetch_sub(1, Ordering::Relaxed) <= 0 {
                let limit = rows.rows_limit.load(Ordering::Relaxed);
                *rows.hit.lock() = Some(BudgetHit::RowsExamined(limit.max(0) as u64));
                return Err(rusqlite::Error::UserFunctionError(
                    "rows-examined budget exhausted".into(),
                ));
            }
            Ok(1i64)
        })?;
        let clock = Arc::clone(&budget);
        conn.progress_handler(
            PROGRESS_STEPS,
            Some(move || {
                let deadline = *clock.deadline.lock();
                match deadline {
                    Some((at, limit)) if Instant::now() >= at => {
                        *clock.hit.lock() = Some(BudgetHit::Time(limit));
                        true
                    }
                    _ => false,
                }
            }),
        )?;
        Ok(Reader { conn, budget })
    }
}

#[derive(Debug, Clone)]
pub struct DbOptions {
    /// `synchronous=FULL` (fsync every commit) instead of `NORMAL` (durable across a process
    /// crash; the last commits may be lost on power failure).
    pub fsync: bool,
    /// Overwrite deleted content with zeros, so purging a tenant from a shared file leaves no
    /// bytes behind.
    pub secure_delete: bool,
    pub busy_timeout: Duration,
    /// Idle readers kept for the next read (more may be open at once; those close after).
    pub max_readers: usize,
    /// WAL pages after which a commit is followed by a checkpoint ([`Db::checkpoint_if_due`]).
    pub checkpoint_pages: u32,
}

/// A write waiting to join a group commit ([`Db::write_grouped`]): it runs inside the group's
/// transaction, in a savepoint of its own, and hands back how to answer its caller once the
/// group's commit succeeded or failed.
type Joined = Box<dyn FnOnce(&Connection) -> Answer + Send>;
type Answer = Box<dyn FnOnce(Result<(), GroupFailed>) + Send>;

/// Why a group commit wrote nothing: whether the disk was full, and the detail.
#[derive(Debug, Clone)]
struct GroupFailed {
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
const GROUP_MAX: usize = 256;

pub struct Db {
    path: PathBuf,
    options: DbOptions,
    writer: Mutex<Connection>,
    /// Writes waiting for the next group commit.
    group: Mutex<Vec<Joined>>,
    /// Writes waiting for the writer connection (background work yields to them).
    waiting: AtomicUsize,
    readers: Mutex<Vec<Reader>>,
    /// Frames in the WAL after the writer's last commit (its WAL hook sets them).
    wal_pages: Arc<AtomicU32>,
    /// Held by the one checkpoint that runs at a time.
    checkpointing: Mutex<()>,
}

impl Db {
    /// Opens (and with `create`, creates) the database file.
    pub fn open(path: &Path, options: DbOptions, create: bool) -> Result<Db, StorageError> {
        if !create && !path.exists() {
            return Err(StorageError::Missing(path.display().to_string()));
        }
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let mut writer = Connection::open_with_flags(path, flags)?;
        configure(&writer, &options)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        // A commit on the writer never checkpoints (SQLite's automatic checkpoint runs inside
        // the commit, so every write of the file waited behind its copying and syncing, on a
        // pool other tenants' writes): the hook, which replaces the automatic checkpoint, only
        // notes the WAL's length, and the checkpoint runs after the commit on a connection of
        // its own, outside the writer ([`Db::checkpoint_if_due`]).
        let wal_pages = Arc::new(AtomicU32::new(0));
        let noted = Arc::clone(&wal_pages);
        writer.wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                noted.store(u32::try_from(pages).unwrap_or(0), Ordering::Release);
                Ok(())
            },
        ))?;
        Ok(Db {
            path: path.to_owned(),
            options,
            writer: Mutex::new(writer),
            group: Mutex::new(Vec::new()),
            waiting: AtomicUsize::new(0),
            readers: Mutex::new(Vec::new()),
            wal_pages,
            checkpointing: Mutex::new(()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in an immediate write transaction on the one writer connection and commits.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let out = {
            let mut conn = self.lock_writer();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            out
        };
        self.checkpoint_if_due(self.options.checkpoint_pages);
        Ok(out)
    }

    /// Runs `f` as one write of a group commit: the writes that wait for the writer meanwhile
    /// share one transaction (and one WAL append and, with `fsync`, one sync), each in a
    /// savepoint of its own, so one that fails (a duplicate id, a stale definition) rolls back
    /// alone. Each caller is answered only after the group's commit: with its own result when
    /// the commit succeeded, with an error when it did not (then nothing of the group was
    /// written). Whoever takes the writer runs what is queued, up to [`GROUP_MAX`] writes.
    pub fn write_grouped<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (answer, answered) = std::sync::mpsc::sync_channel::<Result<T, StorageError>>(1);
        let joined: Joined = Box::new(move |conn: &Connection| {
            let outcome = in_savepoint(conn, f);
            Box::new(move |committed: Result<(), GroupFailed>| {
                let result = match committed {
                    Ok(()) => outcome,
                    Err(why) => Err(why.into()),
                };
                let _ = answer.send(result);
            })
        });
        self.group.lock().push(joined);
        let settled = || match answered.try_recv() {
            Ok(result) => Some(result),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Some(Err(EngineError::Storage(
                "the write did not run: its group could not begin a transaction, or it panicked"
                    .into(),
            )
            .into())),
        };
        loop {
            let conn = self.lock_writer();
            // A group led by another write may have taken this one already.
            if let Some(result) = settled() {
                return result;
            }
            let batch: Vec<Joined> = {
                let mut queued = self.group.lock();
                let n = queued.len().min(GROUP_MAX);
                queued.drain(..n).collect()
            };
            let answers = run_group(&conn, batch);
            parking_lot::MutexGuard::unlock_fair(conn);
            let (committed, answers) = answers;
            for answer in answers {
                answer(committed.clone());
            }
            // The group's leader checkpoints, once the others are answered and the writer is
            // free for the next group.
            self.checkpoint_if_due(self.options.checkpoint_pages);
            if let Some(result) = settled() {
                return result;
            }
        }
    }

    /// The writer connection, counted in [`Db::waiting`] while it is awaited.
    fn lock_writer(&self) -> parking_lot::MutexGuard<'_, Connection> {
        if let Some(conn) = self.writer.try_lock() {
            return conn;
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let conn = self.writer.lock();
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        conn
    }

    /// Applies `items` in transactions of at most `per_tx` items each. A transaction also
    /// ends early, after the item in hand, as soon as another write is waiting for the file,
    /// and the writer is handed to it (a fair unlock). Background work on a file other
    /// tenants write to (a move copying into a pool) then delays their writes by about one
    /// item, not by a whole batch, while it still commits in large transactions when no one
    /// else writes. Not atomic as a whole: for work that is idempotent and checked afterwards.
    ///
    /// With `checkpoint_pages`, each of these commits is followed by a checkpoint once the WAL
    /// holds that many pages (other writes keep [`DbOptions::checkpoint_pages`]). `begin` runs first in each
    /// transaction; what it returns is handed to `f` with each item of that transaction.
    pub fn write_yielding<T, S>(
        &self,
        items: Vec<T>,
        per_tx: usize,
        checkpoint_pages: Option<u32>,
        mut begin: impl FnMut(&Transaction<'_>) -> Result<S, StorageError>,
        mut f: impl FnMut(&Transaction<'_>, &mut S, T) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let mut conn = self.lock_writer();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut state = begin(&tx)?;
            for item in items.by_ref().take(per_tx.max(1)) {
                f(&tx, &mut state, item)?;
                if self.waiting.load(Ordering::Acquire) > 0 {
                    break;
                }
            }
            tx.commit()?;
            parking_lot::MutexGuard::unlock_fair(conn);
            self.checkpoint_if_due(checkpoint_pages.unwrap_or(self.options.checkpoint_pages));
        }
        Ok(())
    }

    /// Runs `f` on the writer connection outside a transaction (DDL that manages its own).
    pub fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let out = f(&mut self.lock_writer());
        self.checkpoint_if_due(self.options.checkpoint_pages);
        out
    }

    /// After a commit, outside the writer: once the WAL holds `pages` pages or more, copies
    /// what it can back into the main file (a passive checkpoint) on a connection opened for
    /// it, while the writer goes on taking other writes. One checkpoint runs at a time; a
    /// commit that finds one running leaves it to it. A checkpoint that fails is logged and
    /// tried again after a later commit (the WAL keeps every commit meanwhile).
    pub(crate) fn checkpoint_if_due(&self, pages: u32) {
        if self.wal_pages.load(Ordering::Acquire) < pages.max(1) {
            return;
        }
        let Some(_alone) = self.checkpointing.try_lock() else {
            return;
        };
        if self.wal_pages.load(Ordering::Acquire) < pages.max(1) {
            return;
        }
        let done = (|| -> Result<(), StorageError> {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(&self.path, flags)?;
            configure(&conn, &self.options)?;
            conn.wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::PASSIVE)?;
            Ok(())
        })();
        match done {
            // The next commit notes the WAL's length again (a short one once the writer
            // restarted it from the beginning).
            Ok(()) => self.wal_pages.store(0, Ordering::Release),
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "a checkpoint failed; tried again after a later commit")
            }
        }
    }

    /// Runs `f` in a read transaction on a pooled read-only connection.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        self.read_within(None, f)
    }

    /// Like [`Db::read`], but the queries `f` runs are stopped once they use up `budget`:
    /// the time, or the rows counted by [`EXAMINE_FN`]. Then the result is
    /// [`EngineError::TooExpensive`], whatever error SQLite reported.
    pub fn read_within<T>(
        &self,
        budget: Option<&QueryBudget>,
        f: impl FnOnce(&Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let pooled = self.readers.lock().pop();
        let reader = match pooled {
            Some(reader) => reader,
            None => Reader::open(&self.path, &self.options)?,
        };
        if let Some(budget) = budget {
            reader.budget.arm(budget);
        }
        // The read transaction's two statements are prepared once per reader: `BEGIN` and
        // `ROLLBACK` through `execute_batch` were parsed again on every read (a few per cent
        // of a get by id, BENCHMARKS.md, issue 24).
        let result = (|| {
            reader.conn.prepare_cached("BEGIN DEFERRED")?.execute([])?;
            let out = f(&reader.conn);
            if !reader.conn.is_autocommit() {
                reader.conn.prepare_cached("ROLLBACK")?.execute([])?;
            }
            out
        })();
        let (hit, examined) = reader.budget.disarm();
        if let Some(budget) = budget {
            budget.examined.add(examined);
        }
        // A reader is kept only outside any transaction (an error could leave one open).
        if reader.conn.is_autocommit() {
            let mut readers = self.readers.lock();
            if readers.len() < self.options.max_readers {
                readers.push(reader);
            }
        }
        match (result, hit) {
            (Err(_), Some(hit)) => Err(EngineError::TooExpensive(hit).into()),
            (result, _) => result,
        }
    }

    /// Writes the WAL back into the main file and truncates it (after purges, at shutdown).
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        let conn = self.writer.lock();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

/// Runs `f` inside a savepoint: kept when it succeeds, rolled back when it fails.
fn in_savepoint<T>(
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
fn run_group(conn: &Connection, batch: Vec<Joined>) -> (Result<(), GroupFailed>, Vec<Answer>) {
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

fn configure(conn: &Connection, options: &DbOptions) -> Result<(), StorageError> {
    // busy_timeout first: every later statement may meet a lock.
    conn.busy_timeout(options.busy_timeout)?;
    conn.pragma_update(
        None,
        "synchronous",
        if options.fsync { "FULL" } else { "NORMAL" },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(
        None,
        "secure_delete",
        if options.secure_delete { "ON" } else { "OFF" },
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> DbOptions {
        DbOptions {
            fsync: false,
            secure_delete: false,
            busy_timeout: Duration::from_secs(5),
            max_readers: 2,
            checkpoint_pages: 1000,
        }
    }

    /// Concurrent writes share commits; one that fails (a unique value taken) rolls back
    /// alone, and every other is answered only once it is committed.
    #[test]
    fn grouped_writes_commit_together_and_a_failing_one_rolls_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let db = Arc::new(Db::open(&path, options(), true).unwrap());
        db.write(|tx| Ok(tx.execute_batch("CREATE TABLE t (v INTEGER UNIQUE, w INTEGER)")?))
            .unwrap();
        let threads: Vec<_> = (0..32)
            .map(|i: i64| {
                let db = Arc::clone(&db);
                std::thread::spawn(move || {
                    // 7 and 8 both write v = 7: one of them must fail, alone.
                    let v = if i == 8 { 7 } else { i };
                    db.write_grouped(move |tx| {
                        tx.execute("INSERT INTO t VALUES (?1, ?2)", [v, i])?;
                        // Two statements: a failure after the first must undo it too.
                        tx.execute("UPDATE t SET w = w + 100 WHERE v = ?1", [v])?;
                        Ok(i)
                    })
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
        assert_eq!(failed.len(), 1, "{results:?}");
        // Acknowledged means committed: a fresh connection sees each answered write whole.
        let check = Connection::open(&path).unwrap();
        let rows: i64 = check
            .query_row("SELECT count(*) FROM t WHERE w >= 100", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 31);
        let all: i64 = check
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(all, 31, "the failed write left nothing");
    }

    /// A write that panics inside a group fails alone; the writer stays usable.
    #[test]
    fn a_panicking_grouped_write_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(&dir.path().join("p.db"), options(), true).unwrap());
        db.write(|tx| Ok(tx.execute_batch("CREATE TABLE t (v INTEGER)")?))
            .unwrap();
        let panicked = db.write_grouped(|tx| -> Result<(), StorageError> {
            tx.execute("INSERT INTO t VALUES (1)", [])?;
            panic!("a bug in a write");
        });
        assert!(panicked.is_err());
        db.write_grouped(|tx| Ok(tx.execute("INSERT INTO t VALUES (2)", [])?))
            .unwrap();
        let rows: Vec<i64> = db
            .read(|conn| {
                let mut stmt = conn.prepare("SELECT v FROM t ORDER BY v")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .unwrap();
        assert_eq!(rows, vec![2], "the panicking write left nothing");
    }

    #[test]
    fn background_batches_step_aside_for_a_waiting_write_and_still_apply_everything() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(&dir.path().join("t.db"), options(), true).unwrap());
        db.write(|tx| Ok(tx.execute_batch("CREATE TABLE t (v INTEGER)")?))
            .unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let total = 2000;
        let batch = {
            let (db, done) = (Arc::clone(&db), Arc::clone(&done));
            std::thread::spawn(move || {
                // One transaction's worth, if nobody else came.
                db.write_yielding(
                    (0..total).collect(),
                    total,
                    None,
                    |_| Ok(()),
                    |tx, (), i| {
                        tx.execute("INSERT INTO t VALUES (?1)", [i as i64])?;
                        done.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(200));
                        Ok(())
                    },
                )
            })
        };
        while done.load(Ordering::SeqCst) < 10 {
            std::thread::yield_now();
        }
        // The foreground write gets in while the batch is still going.
        let seen = db
            .write(|tx| {
                tx.execute("INSERT INTO t VALUES (-1)", [])?;
                Ok(done.load(Ordering::SeqCst))
            })
            .unwrap();
        batch.join().unwrap().unwrap();
        assert!(
            seen < total,
            "the waiting write ran only after all {total} items ({seen})"
        );
        let rows: i64 = db
            .read(|tx| Ok(tx.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(rows, total as i64 + 1);
    }

    #[test]
    fn a_batch_checkpoints_at_its_own_threshold_and_leaves_other_writes_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path, options(), true).unwrap();
        db.write(|tx| Ok(tx.execute_batch("CREATE TABLE t (v BLOB)")?))
            .unwrap();
        let blob = vec![1u8; 3000];
        // Without a checkpoint, 600 single-record transactions leave 600+ pages in the WAL.
        db.write_yielding(
            (0..600).collect(),
            1,
            Some(50),
            |_| Ok(()),
            |tx, (), _: i32| {
                tx.execute("INSERT INTO t VALUES (?1)", [&blob])?;
                Ok(())
            },
        )
        .unwrap();
        let wal = std::fs::metadata(format!("{}-wal", path.display()))
            .unwrap()
            .len();
        assert!(
            wal < 200 * 4096,
            "the batch's commits checkpointed ({wal} bytes of WAL)"
        );
        // Single writes keep the file's own threshold (1000 pages): 300 of them grow the WAL.
        for _ in 0..300 {
            db.write(|tx| {
                tx.execute("INSERT INTO t VALUES (?1)", [&blob])
                    .map(drop)
                    .map_err(Into::into)
            })
            .unwrap();
        }
        let wal = std::fs::metadata(format!("{}-wal", path.display()))
            .unwrap()
            .len();
        assert!(
            wal > 250 * 4096,
            "other writes checkpointed at 50 pages ({wal} bytes of WAL)"
        );
    }

    /// A commit never checkpoints on the writer: while a checkpoint runs (here: is held),
    /// writes go on and the WAL grows past the threshold; the first commit after it ends
    /// checkpoints, and the writer then starts the WAL over.
    #[test]
    fn commits_leave_the_checkpoint_to_a_connection_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let db = Db::open(
            &path,
            DbOptions {
                checkpoint_pages: 100,
                ..options()
            },
            true,
        )
        .unwrap();
        db.write(|tx| Ok(tx.execute_batch("CREATE TABLE t (v BLOB)")?))
            .unwrap();
        let blob = vec![7u8; 3000];
        let insert = |db: &Db| {
            db.write_grouped({
                let blob = blob.clone();
                move |tx| {
                    tx.execute("INSERT INTO t VALUES (?1)", [blob])
                        .map(drop)
                        .map_err(Into::into)
                }
            })
            .unwrap()
        };
        {
            let _running = db.checkpointing.lock();
            for _ in 0..150 {
                insert(&db);
            }
            let pages = db.wal_pages.load(Ordering::Acquire);
            assert!(
                pages >= 150,
                "a commit checkpointed on the writer ({pages} pages)"
            );
        }
        insert(&db);
        assert_eq!(db.wal_pages.load(Ordering::Acquire), 0, "no checkpoint ran");
        insert(&db);
        let pages = db.wal_pages.load(Ordering::Acquire);
        assert!(pages < 10, "the WAL was not started over ({pages} pages)");
        let rows: i64 = db
            .read(|conn| Ok(conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(rows, 152);
    }
}
