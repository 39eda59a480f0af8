//! Scheduled upkeep of the full-text indexes in shared (pool and bridge) files.
//!
//! Every write transaction that touches a searchable table leaves a new segment in its FTS5
//! index, and FTS5 merges them during writes only in steps of four (its `automerge`), so a
//! busy pool's index holds tens of segments, each of which a search probes. Merging the index
//! down to one segment brings a pooled search to a silo's speed (BENCHMARKS.md, issue 24).
//! Merging it during writes, though, holds the file's writer while other tenants wait.
//!
//! So a thread per engine looks at the shared files once a [`SearchUpkeep::tick`]. A file
//! written since its last upkeep gets a round once it has been quiet for a tick, or at the
//! latest [`SearchUpkeep::every`] after its last round if it is never quiet. A round merges
//! each of the file's indexes that holds [`SearchUpkeep::min_segments`] segments or more, in
//! steps of [`SearchUpkeep::step_pages`] pages, each its own short transaction on the writer:
//! a write waiting for the file gets the writer after the step in hand, and the round rests
//! between steps so that it holds the writer for [`SearchUpkeep::duty`] of the time at most.
//! A step is an FTS5 `merge` command: all or nothing, so a crash leaves the index as before
//! or after the step, and a search reads the same rows whatever the segments.
//!
//! The thread keeps normal priority, unlike the catalog's background runtime (nice 19): a
//! step holds the file's writer, and a low-priority thread preempted mid-step would hold
//! back every write to the file behind it. The duty cycle bounds its share of a CPU instead.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::db::Db;
use bulkhead_engine::EngineResult;
use rusqlite::OptionalExtension;

use crate::{Inner, SqliteEngine, StorageError};

/// How the search indexes of shared files are kept merged.
#[derive(Debug, Clone)]
pub struct SearchUpkeep {
    /// How often the files are looked at; a file with no write for one tick is quiet.
    pub tick: Duration,
    /// The longest a written file waits for a round when it is never quiet.
    pub every: Duration,
    /// Segments an index must hold before a round merges it.
    pub min_segments: usize,
    /// Index pages one step merges (FTS5 `merge` command).
    pub step_pages: u32,
    /// Share of the time a round holds the writer, between 0 (exclusive) and 1: after a step
    /// that took `t`, it rests `t × (1 − duty) / duty`.
    pub duty: f64,
}

impl Default for SearchUpkeep {
    fn default() -> Self {
        SearchUpkeep {
            tick: Duration::from_secs(1),
            every: Duration::from_secs(60),
            min_segments: 4,
            step_pages: 8,
            duty: 0.25,
        }
    }
}

/// What upkeep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpkeepReport {
    /// Search indexes looked at.
    pub indexes: usize,
    /// Of them, those merged.
    pub merged: usize,
    /// Segments of the merged indexes before and after.
    pub segments_before: usize,
    pub segments_after: usize,
    /// Merge steps run, and the time they held the writer.
    pub steps: u64,
    pub busy: Duration,
    /// The longest a step held the writer.
    pub longest: Duration,
}

impl UpkeepReport {
    fn add(&mut self, other: &UpkeepReport) {
        self.indexes += other.indexes;
        self.merged += other.merged;
        self.segments_before += other.segments_before;
        self.segments_after += other.segments_after;
        self.steps += other.steps;
        self.busy += other.busy;
        self.longest = self.longest.max(other.longest);
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The FTS5 tables of a file.
pub(crate) fn search_indexes(db: &Db) -> Result<Vec<String>, StorageError> {
    db.read(|tx| {
        let mut stmt = tx.prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' \
             AND sql LIKE 'CREATE VIRTUAL TABLE%USING fts5%' ORDER BY name",
        )?;
        let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(names.collect::<Result<Vec<_>, _>>()?)
    })
}

/// Segments of an FTS5 index: its `_idx` shadow table holds a row per leaf page of each
/// segment, keyed by segment.
pub(crate) fn segments(db: &Db, fts: &str) -> Result<usize, StorageError> {
    let idx = quote(&format!("{fts}_idx"));
    db.read(|tx| {
        let n: i64 = tx.query_row(
            &format!("SELECT count(DISTINCT segid) FROM {idx}"),
            [],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(0))
    })
}

/// FTS5's own `automerge` setting, which the index has outside a round.
const AUTOMERGE: i64 = 4;

/// Merges one index down, step by step, paced by `upkeep.duty`; `stop` ends it between
/// steps. The first step gathers every segment into one merge (a negative page count);
/// the next ones carry that merge on until a step finds nothing left to do (FTS5 then
/// reports fewer than two changes).
///
/// FTS5 lets every write carry on a merge in progress, a share of it per page written
/// (its `automerge`): left to them, a round's merge would land on the writers between
/// steps, tens of milliseconds each. So the first step turns `automerge` off and the last
/// turns it back on, in their own transactions: while a round runs, writes only add
/// segments (FTS5 still merges a level that reaches sixteen, its `crisismerge`). A round a
/// crash cut short leaves it off until the next round on that file, which turns it back on
/// whether or not the index needs merging.
fn merge_down(
    db: &Db,
    fts: &str,
    upkeep: &SearchUpkeep,
    stop: &dyn Fn() -> bool,
) -> Result<(u64, Duration, Duration), StorageError> {
    let table = quote(fts);
    let sql = format!("INSERT INTO {table}({table}, rank) VALUES ('merge', ?1)");
    let automerge = format!("INSERT INTO {table}({table}, rank) VALUES ('automerge', ?1)");
    let pages = i64::from(upkeep.step_pages.max(1));
    let rest = (1.0 - upkeep.duty.clamp(0.01, 1.0)) / upkeep.duty.clamp(0.01, 1.0);
    let (mut steps, mut busy, mut longest) = (0u64, Duration::ZERO, Duration::ZERO);
    let merged: Result<(), StorageError> = (|| loop {
        let n = if steps == 0 { -pages } else { pages };
        let started = Instant::now();
        let changes = db.upkeep_step(|tx| {
            if steps == 0 {
                tx.execute(&automerge, [0])?;
            }
            let before = tx.total_changes();
            tx.execute(&sql, [n])?;
            Ok(tx.total_changes() - before)
        })?;
        let took = started.elapsed();
        steps += 1;
        busy += took;
        longest = longest.max(took);
        if changes < 2 || stop() {
            return Ok(());
        }
        std::thread::sleep(took.mul_f64(rest).min(Duration::from_secs(1)));
        if stop() {
            return Ok(());
        }
    })();
    // Back on whether the round ended, was stopped or failed (unless the index is gone).
    let restored = db.upkeep_step(|tx| Ok(tx.execute(&automerge, [AUTOMERGE])?));
    merged?;
    restored?;
    Ok((steps, busy, longest))
}

/// Turns `automerge` back on where a round cut short left it off; reads only otherwise.
fn restore_automerge(db: &Db, fts: &str) -> Result<(), StorageError> {
    let config = quote(&format!("{fts}_config"));
    let off = db.read(|tx| {
        let v: Option<i64> = tx
            .query_row(
                &format!("SELECT v FROM {config} WHERE k = 'automerge'"),
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v == Some(0))
    })?;
    if off {
        let table = quote(fts);
        let sql = format!("INSERT INTO {table}({table}, rank) VALUES ('automerge', ?1)");
        db.upkeep_step(|tx| Ok(tx.execute(&sql, [AUTOMERGE])?))?;
    }
    Ok(())
}

/// One round over a file: each of its indexes with `min_segments` segments or more is
/// merged down. An index dropped meanwhile (its tenant purged, its collection removed) is
/// passed over.
pub(crate) fn upkeep_file(
    db: &Db,
    upkeep: &SearchUpkeep,
    stop: &dyn Fn() -> bool,
) -> Result<UpkeepReport, StorageError> {
    let mut report = UpkeepReport::default();
    for fts in search_indexes(db)? {
        if stop() {
            break;
        }
        let before = match segments(db, &fts) {
            Ok(n) => n,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        report.indexes += 1;
        if before < upkeep.min_segments.max(2) {
            // A round a crash cut short after its last merge step left `automerge` off on
            // an index that now needs no merge: this round ends it.
            match restore_automerge(db, &fts) {
                Ok(()) => continue,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        let (steps, busy, longest) = match merge_down(db, &fts, upkeep, stop) {
            Ok(done) => done,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        let after = segments(db, &fts).unwrap_or(0);
        report.merged += 1;
        report.segments_before += before;
        report.segments_after += after;
        report.steps += steps;
        report.busy += busy;
        report.longest = report.longest.max(longest);
    }
    Ok(report)
}

/// Whether an error says the table is no longer there.
fn gone(e: &StorageError) -> bool {
    e.to_string().contains("no such table")
}

impl Inner {
    /// A round over every open shared file now, whatever its schedule.
    pub(crate) fn upkeep_all(&self, upkeep: &SearchUpkeep) -> Result<UpkeepReport, StorageError> {
        let files: Vec<Arc<Db>> = self.shared.lock().values().cloned().collect();
        let mut report = UpkeepReport::default();
        let stop = || self.stopping.load(Ordering::Acquire);
        for db in files {
            report.add(&upkeep_file(&db, upkeep, &stop)?);
        }
        Ok(report)
    }
}

impl SqliteEngine {
    /// Search indexes the background upkeep has merged since the engine opened.
    pub fn search_upkeep_merges(&self) -> u64 {
        self.inner.upkeep_merged.load(Ordering::Relaxed)
    }

    /// Merges the search indexes of every open shared file now, paced as the background
    /// upkeep is (its settings, or the defaults when it is off), whatever their schedule.
    pub async fn upkeep_search(&self) -> EngineResult<UpkeepReport> {
        let upkeep = self.inner.config.search_upkeep.clone().unwrap_or_default();
        self.blocking(move |inner| inner.upkeep_all(&upkeep)).await
    }
}

impl Drop for SqliteEngine {
    /// Background upkeep ends with the engine (it holds the engine's state weakly, but a
    /// round in progress would otherwise run to its end).
    fn drop(&mut self) {
        self.inner.stopping.store(true, Ordering::Release);
    }
}

/// What the schedule remembers of a file.
struct Seen {
    /// Its write count at the last tick.
    at_tick: u64,
    /// Its write count when its last round began (or when first seen).
    settled: u64,
    /// When its last round ended (or when first seen).
    round: Instant,
}

impl Seen {
    /// A file seen for the first time, with `writes` so far: written, as far as anyone
    /// knows, so it gets a round once quiet.
    fn first(writes: u64, now: Instant) -> Seen {
        Seen {
            at_tick: writes,
            settled: u64::MAX,
            round: now,
        }
    }

    /// At a tick, with the file's write count now: whether it gets a round. It does when it
    /// was written since its last round began and either had no write since the last tick
    /// or its last round ended `every` ago. A round begins at once, so its writes count
    /// from now.
    fn due(&mut self, writes: u64, now: Instant, every: Duration) -> bool {
        let quiet = writes == self.at_tick;
        self.at_tick = writes;
        let due =
            writes != self.settled && (quiet || now.saturating_duration_since(self.round) >= every);
        if due {
            self.settled = writes;
        }
        due
    }
}

/// Starts the engine's upkeep thread. It holds the engine weakly and ends when the engine
/// is dropped or shut down.
pub(crate) fn spawn(inner: Weak<Inner>, upkeep: SearchUpkeep) {
    let started = std::thread::Builder::new()
        .name("bulkhead-search-upkeep".into())
        .spawn(move || run(&inner, &upkeep));
    if let Err(e) = started {
        tracing::warn!(error = %e, "the search upkeep thread could not start; indexes are merged only as FTS5 does during writes");
    }
}

fn run(inner: &Weak<Inner>, upkeep: &SearchUpkeep) {
    let mut seen: HashMap<PathBuf, Seen> = HashMap::new();
    loop {
        std::thread::sleep(upkeep.tick);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.stopping.load(Ordering::Acquire) {
            return;
        }
        let files: Vec<(PathBuf, Arc<Db>)> = inner
            .shared
            .lock()
            .values()
            .map(|db| (db.path().to_owned(), Arc::clone(db)))
            .collect();
        seen.retain(|path, _| files.iter().any(|(p, _)| p == path));
        let stop = || inner.stopping.load(Ordering::Acquire);
        for (path, db) in files {
            let writes = db.writes();
            let Some(file) = seen.get_mut(&path) else {
                // A file opened since the last tick: its first round waits for quiet.
                seen.insert(path, Seen::first(writes, Instant::now()));
                continue;
            };
            if !file.due(writes, Instant::now(), upkeep.every) {
                continue;
            }
            match upkeep_file(&db, upkeep, &stop) {
                Ok(report) if report.merged > 0 => {
                    inner
                        .upkeep_merged
                        .fetch_add(report.merged as u64, Ordering::Relaxed);
                    tracing::info!(
                    file = %path.display(),
                    indexes = report.merged,
                    segments_before = report.segments_before,
                    segments_after = report.segments_after,
                    steps = report.steps,
                    busy_ms = report.busy.as_secs_f64() * 1e3,
                    longest_step_ms = report.longest.as_secs_f64() * 1e3,
                    "search indexes merged"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "search index upkeep failed; tried again after the next write")
                }
            }
            file.round = Instant::now();
            if stop() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schedule: a written file gets a round once a tick passes without a write, a file
    /// never quiet gets one `every` after its last round, and a file with no write since its
    /// last round began gets none.
    #[test]
    fn a_written_file_gets_a_round_when_quiet_or_at_the_latest_every() {
        let every = Duration::from_secs(60);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut file = Seen::first(10, t0);
        // Written before it was first seen, then quiet: a round.
        assert!(file.due(10, at(1), every));
        // Nothing written since that round began: none, however long it stays so.
        assert!(!file.due(10, at(2), every));
        assert!(!file.due(10, at(500), every));
        file.round = at(500);
        // Written at every tick: no round while the writes go on...
        assert!(!file.due(11, at(501), every));
        assert!(!file.due(12, at(502), every));
        assert!(!file.due(40, at(559), every));
        // ...until `every` after the last round, even though still written.
        assert!(file.due(41, at(560), every));
        file.round = at(561);
        // Writes during that round and then a quiet tick: the next round.
        assert!(!file.due(45, at(562), every));
        assert!(file.due(45, at(563), every));
        file.round = at(563);
        assert!(!file.due(45, at(564), every));
    }
}
