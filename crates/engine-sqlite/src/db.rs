//! One SQLite database file: a single writer connection, a small pool of read connections,
//! WAL, `busy_timeout` set first. All methods block; the engine calls them from
//! `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::StorageError;

#[derive(Debug, Clone)]
pub struct DbOptions {
    /// `synchronous=FULL` (fsync every commit) instead of `NORMAL` (durable across a process
    /// crash; the last commits may be lost on power failure).
    pub fsync: bool,
    /// Overwrite deleted content with zeros, so purging a tenant from a shared file leaves no
    /// bytes behind.
    pub secure_delete: bool,
    pub busy_timeout: Duration,
    pub max_readers: usize,
}

pub struct Db {
    path: PathBuf,
    options: DbOptions,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
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
        let writer = Connection::open_with_flags(path, flags)?;
        configure(&writer, &options)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        Ok(Db {
            path: path.to_owned(),
            options,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
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
        let mut conn = self.writer.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` on the writer connection outside a transaction (DDL that manages its own).
    pub fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        f(&mut self.writer.lock())
    }

    /// Runs `f` in a read transaction on a pooled read-only connection.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let pooled = self.readers.lock().pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(&self.path, flags)?;
                configure(&conn, &self.options)?;
                conn
            }
        };
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let out = f(&tx)?;
            tx.finish()?;
            Ok(out)
        })();
        let mut readers = self.readers.lock();
        if readers.len() < self.options.max_readers {
            readers.push(conn);
        }
        result
    }

    /// Writes the WAL back into the main file and truncates it (after purges, at shutdown).
    pub fn checkpoint(&self) -> Result<(), StorageError> {
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
    Ok(())
}
