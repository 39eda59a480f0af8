//! What a measuring pass learned, kept for the next: a silo whose files have not changed
//! since, or a pooled tenant whose rows have not, is not read again. An hourly pass over ten
//! thousand mostly idle silos then costs a `stat` of each instead of opening it, and a pool
//! pass one cheap scan of its keys instead of sizing every row (issue 16).
//!
//! A silo's mark is its database file's and write-ahead log's inode, length and modification
//! time (not the status change time: SQLite running as root changes the owner of the log it
//! opens, which moves that time without a write). A measurement is kept only when the files had rested `settle` before it began and did not
//! change while it ran: a write in the same tick of the file system's clock as the
//! measurement would leave the mark unchanged (git's "racily clean" index entries). A pooled
//! tenant's mark is its rows' count, newest update, and sums of versions and update times,
//! read in the same snapshot as its size: any create, delete, replace or patch moves it.
//! Whatever the marks say, a kept measurement serves at most `max_age`.
//!
//! What is kept outlives the process: it is saved in the engine's directory ([`FILE`]) at
//! most every [`SAVE_EVERY`] while passes change it, and when the engine closes, and read
//! when it opens. The marks hold across a restart (a file's inode, length and modification
//! time; a pooled tenant's rows), so the first pass after a restart reads only what changed
//! meanwhile. A missing, unreadable or foreign file is ignored: the pass then reads
//! everything, as after the first start.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bulkhead_core::CollectionName;
use serde::{Deserialize, Serialize};

/// How long a file must rest after its last change before a measurement of it is kept.
const SETTLE: Duration = Duration::from_secs(2);
/// How long a kept measurement serves before the storage is read again regardless.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// The file in the engine's directory that keeps measurements between runs.
pub(crate) const FILE: &str = "measured.json";
/// At most this often is [`FILE`] written while passes run.
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(10);
/// The layout of [`FILE`]; a file of another version is ignored.
const VERSION: u32 = 1;

/// One file's identity, length and times (`None` from [`FileMark::of`]: the file is absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct FileMark {
    inode: u64,
    len: u64,
    modified: SystemTime,
}

impl FileMark {
    fn of(path: &Path) -> std::io::Result<Option<Self>> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(FileMark {
                inode: m.ino(),
                len: m.len(),
                modified: m.modified()?,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A silo's database file and its write-ahead log (`None`: absent or empty, which a reader
/// opening the file may create).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SiloMark {
    db: FileMark,
    wal: Option<FileMark>,
}

impl SiloMark {
    /// The mark of the silo at `db` (`None`: it has no file).
    pub(crate) fn of(db: &Path) -> std::io::Result<Option<Self>> {
        let Some(file) = FileMark::of(db)? else {
            return Ok(None);
        };
        let wal =
            FileMark::of(&PathBuf::from(format!("{}-wal", db.display())))?.filter(|w| w.len > 0);
        Ok(Some(SiloMark { db: file, wal }))
    }

    /// Whether both files last changed `settle` or more before `began`.
    fn settled(&self, began: SystemTime, settle: Duration) -> bool {
        let last = self
            .wal
            .map_or(self.db.modified, |w| w.modified.max(self.db.modified));
        last.checked_add(settle).is_some_and(|t| t <= began)
    }
}

/// A pooled tenant's rows in one table: count, newest `updated_at`, and the sums of `version`
/// and of `updated_at` (as SQLite's `total`, a float, so it cannot overflow).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct RowsMark {
    pub rows: u64,
    pub newest: i64,
    pub versions: i64,
    pub stamps: f64,
}

/// A pooled tenant's rows as last measured: their mark and the bytes of the rows.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct PooledRows {
    pub mark: RowsMark,
    pub bytes: u64,
    at: SystemTime,
}

impl PooledRows {
    pub(crate) fn new(mark: RowsMark, bytes: u64) -> Self {
        PooledRows {
            mark,
            bytes,
            at: SystemTime::now(),
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct KeptSilo {
    mark: SiloMark,
    collections: Vec<CollectionName>,
    records: BTreeMap<CollectionName, u64>,
    bytes: u64,
    at: SystemTime,
}

/// Whether a measurement taken at `at` is younger than `max_age` (one from the future, after
/// the clock was set back, is not).
fn young(at: SystemTime, max_age: Duration) -> bool {
    at.elapsed().is_ok_and(|age| age < max_age)
}

/// [`FILE`]'s contents: paths are relative to the engine's directory, so a directory moved
/// whole keeps its measurements.
#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    silos: Vec<(PathBuf, KeptSilo)>,
    pooled: Vec<SavedTable>,
}

#[derive(Serialize, Deserialize)]
struct SavedTable {
    file: PathBuf,
    table: String,
    sizing: String,
    rows: HashMap<String, PooledRows>,
}

/// This engine's kept measurements (see the module's documentation).
pub(crate) struct Memo {
    pub(crate) settle: Duration,
    pub(crate) max_age: Duration,
    silos: HashMap<PathBuf, KeptSilo>,
    /// Per pooled table (file, table): how its rows were sized, and each tenant key's rows.
    pooled: HashMap<(PathBuf, String), (String, HashMap<String, PooledRows>)>,
    /// Silos and pooled tenants read, and those answered from what was kept.
    pub(crate) read: u64,
    pub(crate) reused: u64,
    /// Whether something changed since [`FILE`] was last written, and when that was.
    dirty: bool,
    saved: Option<Instant>,
}

impl Default for Memo {
    fn default() -> Self {
        Memo {
            settle: SETTLE,
            max_age: MAX_AGE,
            silos: HashMap::new(),
            pooled: HashMap::new(),
            read: 0,
            reused: 0,
            dirty: false,
            saved: None,
        }
    }
}

impl Memo {
    /// The kept measurement of the silo at `path` if its files still have `mark` and it
    /// counted the same `collections`: (records per collection, bytes).
    pub(crate) fn silo(
        &mut self,
        path: &Path,
        mark: &SiloMark,
        collections: &[CollectionName],
    ) -> Option<(BTreeMap<CollectionName, u64>, u64)> {
        let kept = self.silos.get(path)?;
        let fresh =
            kept.mark == *mark && kept.collections == collections && young(kept.at, self.max_age);
        if !fresh {
            self.silos.remove(path);
            self.dirty = true;
            return None;
        }
        self.reused += 1;
        Some((kept.records.clone(), kept.bytes))
    }

    /// Keeps a silo's measurement when its files rested before `began` and are the same
    /// after (`mark` before, `after` after).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn keep_silo(
        &mut self,
        path: &Path,
        began: SystemTime,
        mark: SiloMark,
        after: Option<SiloMark>,
        collections: &[CollectionName],
        records: &BTreeMap<CollectionName, u64>,
        bytes: u64,
    ) {
        self.read += 1;
        self.dirty = true;
        if after != Some(mark) || !mark.settled(began, self.settle) {
            self.silos.remove(path);
            return;
        }
        self.silos.insert(
            path.to_owned(),
            KeptSilo {
                mark,
                collections: collections.to_vec(),
                records: records.clone(),
                bytes,
                at: SystemTime::now(),
            },
        );
    }

    /// Forgets whatever was kept of the storage at `path` (a silo removed or replaced).
    pub(crate) fn forget(&mut self, path: &Path) {
        self.silos.remove(path);
        self.pooled.retain(|(file, _), _| file != path);
        self.dirty = true;
    }

    /// Takes the kept rows of every tenant in a pooled table, for a pass to reuse and then
    /// hand back ([`Memo::put_pooled`]). `sizing` is how the pass sizes rows (its
    /// statement): rows sized another way (before a column or an index was added) are not
    /// reused.
    pub(crate) fn take_pooled(
        &mut self,
        file: &Path,
        table: &str,
        sizing: &str,
    ) -> HashMap<String, PooledRows> {
        match self.pooled.remove(&(file.to_owned(), table.to_owned())) {
            Some((how, rows)) if how == sizing => rows,
            _ => HashMap::new(),
        }
    }

    /// Keeps what a pass measured or reused of a pooled table (the tenants it found there).
    pub(crate) fn put_pooled(
        &mut self,
        file: &Path,
        table: &str,
        sizing: &str,
        rows: HashMap<String, PooledRows>,
        read: u64,
        reused: u64,
    ) {
        self.read += read;
        self.reused += reused;
        self.dirty = true;
        self.pooled.insert(
            (file.to_owned(), table.to_owned()),
            (sizing.to_owned(), rows),
        );
    }

    /// Whether `kept` still answers for rows now marked `mark`.
    pub(crate) fn still(&self, kept: &PooledRows, mark: &RowsMark) -> bool {
        kept.mark == *mark && young(kept.at, self.max_age)
    }

    /// What the engine in `dir` kept when it last closed or saved (nothing if [`FILE`] is
    /// missing, unreadable or of another version; measurements older than `max_age` are
    /// dropped).
    pub(crate) fn load(dir: &Path) -> Self {
        let mut memo = Memo::default();
        let path = dir.join(FILE);
        let saved: Saved = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(saved) => saved,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e,
                        "kept storage measurements unreadable: the next pass reads everything");
                    return memo;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return memo,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "kept storage measurements unreadable: the next pass reads everything");
                return memo;
            }
        };
        if saved.version != VERSION {
            return memo;
        }
        let max_age = memo.max_age;
        memo.silos = saved
            .silos
            .into_iter()
            .filter(|(_, kept)| young(kept.at, max_age))
            .map(|(path, kept)| (dir.join(path), kept))
            .collect();
        memo.pooled = saved
            .pooled
            .into_iter()
            .map(|mut t| {
                t.rows.retain(|_, rows| young(rows.at, max_age));
                ((dir.join(t.file), t.table), (t.sizing, t.rows))
            })
            .collect();
        memo
    }

    /// [`FILE`]'s new contents when something changed since it was last written and `every`
    /// has passed since (`None`: nothing to write yet). Measurements past `max_age` are
    /// dropped first, and so are those of storage outside `dir`.
    pub(crate) fn due_contents(&mut self, dir: &Path, every: Duration) -> Option<Vec<u8>> {
        if !self.dirty || self.saved.is_some_and(|at| at.elapsed() < every) {
            return None;
        }
        let max_age = self.max_age;
        self.silos.retain(|_, kept| young(kept.at, max_age));
        for (_, rows) in self.pooled.values_mut() {
            rows.retain(|_, rows| young(rows.at, max_age));
        }
        let relative = |path: &Path| path.strip_prefix(dir).ok().map(Path::to_owned);
        let saved = Saved {
            version: VERSION,
            silos: self
                .silos
                .iter()
                .filter_map(|(path, kept)| Some((relative(path)?, kept.clone())))
                .collect(),
            pooled: self
                .pooled
                .iter()
                .filter_map(|((file, table), (sizing, rows))| {
                    Some(SavedTable {
                        file: relative(file)?,
                        table: table.clone(),
                        sizing: sizing.clone(),
                        rows: rows.clone(),
                    })
                })
                .collect(),
        };
        self.dirty = false;
        self.saved = Some(Instant::now());
        serde_json::to_vec(&saved).ok()
    }
}

/// Writes `contents` as [`FILE`] in `dir`: a new file renamed over the old, so a reader
/// never sees half of one. It is a cache: not synced, and a failure only logged.
pub(crate) fn save(dir: &Path, contents: &[u8]) {
    let path = dir.join(FILE);
    let new = dir.join(format!("{FILE}.new"));
    if let Err(e) = std::fs::write(&new, contents).and_then(|()| std::fs::rename(&new, &path)) {
        tracing::warn!(path = %path.display(), error = %e,
            "could not keep storage measurements for the next start");
    }
}
