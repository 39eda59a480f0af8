//! A pooled read-only connection with its query budget (rows examined, time).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bulkhead_engine::{BudgetHit, QueryBudget};
use parking_lot::Mutex;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags};

use super::{DbOptions, configure};
use crate::StorageError;

/// Name of the SQL function every budgeted query calls once per row it examines.
pub const EXAMINE_FN: &str = "bk_examine";

/// VM instructions between two checks of the time budget.
const PROGRESS_STEPS: i32 = 2_000;

/// The budget of the query running on one read connection. Unlimited between queries.
pub(super) struct Budget {
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

    pub(super) fn arm(&self, budget: &QueryBudget) {
        let rows = i64::try_from(budget.rows_examined).unwrap_or(i64::MAX);
        self.rows_left.store(rows, Ordering::Relaxed);
        self.rows_limit.store(rows, Ordering::Relaxed);
        *self.deadline.lock() = Some((Instant::now() + budget.time, budget.time));
        *self.hit.lock() = None;
    }

    /// Ends the query's budget: whether it was hit, and the rows it examined.
    pub(super) fn disarm(&self) -> (Option<BudgetHit>, u64) {
        let left = self.rows_left.swap(i64::MAX, Ordering::Relaxed);
        let limit = self.rows_limit.swap(i64::MAX, Ordering::Relaxed);
        let examined = u64::try_from(limit.saturating_sub(left.max(0))).unwrap_or(0);
        *self.deadline.lock() = None;
        (self.hit.lock().take(), examined)
    }
}

/// A read-only connection with its query budget installed.
pub(super) struct Reader {
    pub(super) conn: Connection,
    pub(super) budget: Arc<Budget>,
}

impl Reader {
    pub(super) fn open(path: &Path, options: &DbOptions) -> Result<Reader, StorageError> {
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
