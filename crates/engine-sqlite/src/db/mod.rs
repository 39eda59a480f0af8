//! One SQLite database file: a single writer connection, a small pool of read connections,
//! WAL, `busy_timeout` set first. All methods block; the engine calls them from
//! `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bulkhead_engine::{EngineError, QueryBudget};
use parking_lot::Mutex;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::StorageError;

mod group;
mod reader;

use group::{GROUP_MAX, GroupFailed, Joined, in_savepoint, run_group};
pub use reader::EXAMINE_FN;
use reader::Reader;

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
    /// The WAL's length (in frames) when the last checkpoint after a commit ran: the next is
    /// due once the WAL holds the threshold's worth of frames past it, or, once the WAL
    /// started over, the threshold's worth in all.
    checkpointed: AtomicU32,
    /// Held by the one checkpoint that runs at a time, with the connection checkpoints
    /// after commits run on, opened by the first of them and kept (opening and configuring
    /// one per checkpoint was a tenth of a create's CPU under 32 writers, issue 24).
    checkpointing: Mutex<Option<Connection>>,
    /// Times the writer was taken for a write: the search upkeep ([`crate::upkeep`]) reads
    /// it to tell a file written since its last look, and a quiet one, without a clock.
    writes: AtomicU64,
    /// Checkpoints after commits that ran (see [`Db::checkpoint_if_due`]).
    checkpoints: AtomicU64,
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
            checkpointed: AtomicU32::new(0),
            checkpointing: Mutex::new(None),
            writes: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
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
        // Its answer's sender dropped unanswered: the group never began, or the write panicked.
        let never_ran = || -> Result<T, StorageError> {
            Err(EngineError::Storage(
                "the write did not run: its group could not begin a transaction, or it panicked"
                    .into(),
            )
            .into())
        };
        let settled = || match answered.try_recv() {
            Ok(result) => Some(result),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Some(never_ran()),
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
            if batch.is_empty() {
                // Nothing queued, not answered: a group led by another write holds this one
                // and has let the writer go, its answers on their way. Wait for ours without
                // the writer (taking it again and again meanwhile, as every write of that
                // group did, spun on the lock: thousands of turns a write under 32
                // connections, issue 24).
                drop(conn);
                return answered.recv().unwrap_or_else(|_| never_ran());
            }
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
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.hold_writer()
    }

    /// The writer connection, counted in [`Db::waiting`] while it is awaited, not as a write.
    fn hold_writer(&self) -> parking_lot::MutexGuard<'_, Connection> {
        if let Some(conn) = self.writer.try_lock() {
            return conn;
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let conn = self.writer.lock();
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        conn
    }

    /// Writes taken on this file since it was opened (see [`Db::upkeep_step`]).
    pub(crate) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// One step of background upkeep on the writer, without counting as a write: `f` runs
    /// in an immediate transaction that commits. A write that waits meanwhile gets the
    /// writer next (a fair unlock), so upkeep delays it by one step at most.
    pub(crate) fn upkeep_step<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut conn = self.writer.lock();
        let out = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })();
        parking_lot::MutexGuard::unlock_fair(conn);
        if out.is_ok() {
            self.checkpoint_if_due(self.options.checkpoint_pages);
        }
        out
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

    /// After a commit, outside the writer: once the WAL holds `pages` pages past its length
    /// at the last checkpoint, copies what it can back into the main file (a passive
    /// checkpoint) on a connection opened for it, while the writer goes on taking other
    /// writes. One checkpoint runs at a time; a commit that finds one running leaves it to it.
    /// A checkpoint that fails is logged and tried again after a later commit (the WAL keeps
    /// every commit meanwhile).
    ///
    /// The writer starts the WAL over only at a transaction that begins with all of it
    /// written back, which writes that never pause, landing during each checkpoint, would
    /// put off for ever: due by the WAL's length alone, a checkpoint then ran after every
    /// commit, writing the same hot pages back again and again, and the WAL grew without
    /// bound (issue 24); and while a read holds an old snapshot, a checkpoint cannot write
    /// back past it either. So the threshold counts pages since the last checkpoint, and once
    /// the WAL is twice the threshold long the checkpoint, after writing back what it finds,
    /// holds the writer to write back what was committed meanwhile (a short pass), which
    /// lets the next write start the WAL over.
    pub(crate) fn checkpoint_if_due(&self, pages: u32) {
        let pages = pages.max(1);
        if !self.checkpoint_due(pages) {
            return;
        }
        let Some(mut checkpointer) = self.checkpointing.try_lock() else {
            return;
        };
        if !self.checkpoint_due(pages) {
            return;
        }
        let overdue = self.wal_pages.load(Ordering::Acquire) >= pages.saturating_mul(2);
        let done = (|| -> Result<i32, StorageError> {
            let conn = match checkpointer.take() {
                Some(conn) => conn,
                None => {
                    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                    let conn = Connection::open_with_flags(&self.path, flags)?;
                    configure(&conn, &self.options)?;
                    conn
                }
            };
            let passive =
                || conn.wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::PASSIVE);
            let (mut seen, written_back) = passive()?;
            // Beside the writer, that pass wrote back the bulk (and synced it). If it wrote
            // back all it saw (no read holds an older snapshot), a pass with the writer held
            // writes back the commits landed meanwhile, and the next write starts the WAL
            // over; a read that holds a snapshot would keep the pass from that, so it waits
            // for a later checkpoint rather than hold the writer for nothing.
            if overdue && written_back == seen {
                let _writer = self.hold_writer();
                (seen, _) = passive()?;
            }
            self.checkpoints.fetch_add(1, Ordering::Relaxed);
            // Kept only after a checkpoint that worked: one that failed opens afresh.
            *checkpointer = Some(conn);
            Ok(seen)
        })();
        match done {
            // The next commit notes the WAL's length again (a short one once the writer
            // restarted it from the beginning).
            Ok(seen) => {
                self.checkpointed
                    .store(u32::try_from(seen).unwrap_or(0), Ordering::Release);
                self.wal_pages.store(0, Ordering::Release);
            }
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "a checkpoint failed; tried again after a later commit")
            }
        }
    }

    /// Whether the WAL holds `pages` pages past its length at the last checkpoint (all of it
    /// counts once it is shorter than that: the writer started it over since).
    fn checkpoint_due(&self, pages: u32) -> bool {
        let (wal, seen) = (
            self.wal_pages.load(Ordering::Acquire),
            self.checkpointed.load(Ordering::Acquire),
        );
        let new = if wal < seen { wal } else { wal - seen };
        new >= pages
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
        self.read_on_reader(budget, true, f)
    }

    /// Like [`Db::read_within`] for `f` that runs **one** statement: SQLite reads a statement
    /// run outside a transaction in a read transaction of its own, from its first step until
    /// it is reset, so the `BEGIN` and `ROLLBACK` around it (two statements more, a third of a
    /// get by id's time in SQLite, issue 24) are left out. Two statements in `f` would each
    /// see their own snapshot: use [`Db::read`] for those.
    pub fn read_statement<T>(
        &self,
        budget: Option<&QueryBudget>,
        f: impl FnOnce(&Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        self.read_on_reader(budget, false, f)
    }

    fn read_on_reader<T>(
        &self,
        budget: Option<&QueryBudget>,
        transaction: bool,
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
            if transaction {
                reader.conn.prepare_cached("BEGIN DEFERRED")?.execute([])?;
            }
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
    /// It waits for a checkpoint after a commit to end first: SQLite refuses a second
    /// checkpoint while one runs, without waiting, and a purge's must not be skipped.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        let _alone = self.checkpointing.lock();
        let conn = self.writer.lock();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
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
    // Plans never depend on bound values. Without this, a cached statement with a range on
    // an indexed field (`n > ?`) was prepared again on every use: SQLite notes that such a
    // plan may depend on the bound value, and rusqlite clears a statement's bindings when it
    // goes back to the cache, which then marks it stale. That was a sixth of a filtered
    // page's CPU (issue 24). The plans come from the statistics the engine writes itself
    // (`sql::planner_hints`), never from values, so nothing is lost.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

#[cfg(test)]
mod tests;
