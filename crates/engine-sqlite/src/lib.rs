//! The embedded engine: placements in SQLite files under one local directory.
//!
//! Pool and bridge files stay open for the life of the engine; silo files are opened on demand
//! and kept in an LRU with a fixed cap, so ten thousand silo tenants need a bounded number of
//! open files. Each file has one writer connection and a small read pool (see [`db`]). All
//! SQLite calls run on tokio's blocking pool, never on the async runtime.

mod db;
mod dialect;
mod engine;
mod error;
mod files;
mod inventory;
mod layout;
mod measure;
mod search;
mod snapshot;
mod sql;
mod upkeep;
mod write;

pub use error::StorageError;
pub use upkeep::{SearchUpkeep, UpkeepReport};

use bulkhead_core::shard::HotMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bulkhead_core::StorageKey;
use bulkhead_core::access::TenantScope;
use bulkhead_core::model::Isolation;
use bulkhead_core::schema::Collection;
use bulkhead_core::time::Clock;
use bulkhead_engine::{EngineError, EngineResult, ListQuery};
use lru::LruCache;
use parking_lot::Mutex;
use rusqlite::params_from_iter;

use db::{Db, DbOptions};
pub use layout::db_path;

use layout::TableName;
use sql::RecordSql;

/// Idle readers a shared (pool or bridge) file keeps at least.
const SHARED_READERS: usize = 32;

#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The domain's directory.
    pub dir: PathBuf,
    pub fsync: bool,
    /// Silo files kept open at once.
    pub silo_handle_cap: usize,
    pub readers_per_db: usize,
    pub busy_timeout: Duration,
    /// How the shared files' search indexes are kept merged in the background
    /// ([`SearchUpkeep`]); `None`: only as FTS5 merges during writes.
    pub search_upkeep: Option<SearchUpkeep>,
}

impl SqliteConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            dir: dir.into(),
            fsync: false,
            silo_handle_cap: 256,
            readers_per_db: 4,
            busy_timeout: Duration::from_secs(5),
            search_upkeep: Some(SearchUpkeep::default()),
        }
    }
}

pub struct SqliteEngine {
    inner: Arc<Inner>,
}

struct Inner {
    config: SqliteConfig,
    clock: Arc<dyn Clock>,
    /// Pool and bridge files, keyed by namespace (`pool`, `bridge-0001`): the file is
    /// `<dir>/<namespace>.db`. Found per request by the namespace's text, without building
    /// the path or hashing it (issue 24).
    shared: Mutex<HotMap<Box<str>, Arc<Db>>>,
    silos: Mutex<LruCache<PathBuf, Arc<Db>>>,
    /// What the last storage measurements found, for the next pass to reuse.
    memo: Mutex<measure::Memo>,
    /// Held while what the memo keeps is written to its file (one writer at a time).
    saving: Mutex<()>,
    /// Set when the engine shuts down or is dropped: background upkeep stops.
    stopping: std::sync::atomic::AtomicBool,
    /// Search indexes the background upkeep has merged since the engine opened.
    upkeep_merged: std::sync::atomic::AtomicU64,
}

impl SqliteEngine {
    pub fn open(config: SqliteConfig, clock: Arc<dyn Clock>) -> Result<Self, StorageError> {
        std::fs::create_dir_all(config.dir.join("silos"))?;
        let cap = NonZeroUsize::new(config.silo_handle_cap.max(1)).unwrap_or(NonZeroUsize::MIN);
        let upkeep = config.search_upkeep.clone();
        let inner = Arc::new(Inner {
            clock,
            shared: Mutex::new(HotMap::default()),
            silos: Mutex::new(LruCache::new(cap)),
            memo: Mutex::new(measure::Memo::load(&config.dir)),
            saving: Mutex::new(()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            upkeep_merged: std::sync::atomic::AtomicU64::new(0),
            config,
        });
        if let Some(upkeep) = upkeep {
            upkeep::spawn(Arc::downgrade(&inner), upkeep);
        }
        Ok(SqliteEngine { inner })
    }

    /// Runs blocking work on the blocking pool and flattens its errors.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StorageError> + Send + 'static,
    ) -> EngineResult<T> {
        let inner = Arc::clone(&self.inner);
        match tokio::task::spawn_blocking(move || f(&inner)).await {
            Ok(result) => result.map_err(EngineError::from),
            Err(join) => Err(EngineError::Storage(format!("storage task failed: {join}"))),
        }
    }
}

impl Drop for Inner {
    /// What the storage passes kept is written for the next start.
    fn drop(&mut self) {
        self.save_memo(std::time::Duration::ZERO);
    }
}

impl Inner {
    fn options(&self, isolation: Isolation) -> DbOptions {
        DbOptions {
            fsync: self.config.fsync,
            // Shared files must not keep a purged tenant's bytes in free pages.
            secure_delete: isolation != Isolation::Silo,
            busy_timeout: self.config.busy_timeout,
            // A pool or bridge file serves many tenants' reads at once: opening a reader per
            // read past the kept ones (its pragmas, its schema, its statements) cost a get by
            // id about a tenth of its time under 32 connections (BENCHMARKS.md, issue 24).
            max_readers: if isolation == Isolation::Silo {
                self.config.readers_per_db
            } else {
                self.config.readers_per_db.max(SHARED_READERS)
            },
            checkpoint_pages: 1000,
        }
    }

    /// An existing pool or bridge file, by its namespace.
    fn shared_db(&self, isolation: Isolation, namespace: &str) -> Result<Arc<Db>, StorageError> {
        self.open_shared(namespace, isolation, false)
    }

    fn open_shared(
        &self,
        namespace: &str,
        isolation: Isolation,
        create: bool,
    ) -> Result<Arc<Db>, StorageError> {
        let mut shared = self.shared.lock();
        if let Some(db) = shared.get(namespace) {
            return Ok(Arc::clone(db));
        }
        let path = self.config.dir.join(format!("{namespace}.db"));
        let db = Arc::new(Db::open(&path, self.options(isolation), create)?);
        shared.insert(namespace.into(), Arc::clone(&db));
        Ok(db)
    }

    /// The open database of a placement; `create` only when provisioning.
    fn db(
        &self,
        isolation: Isolation,
        namespace: &str,
        tenant: &StorageKey,
        create: bool,
    ) -> Result<Arc<Db>, StorageError> {
        if isolation != Isolation::Silo {
            layout::check_shared(isolation, namespace)?;
            return self.open_shared(namespace, isolation, create);
        }
        let path = db_path(&self.config.dir, isolation, namespace, tenant)?;
        if let Some(db) = self.silos.lock().get(&path) {
            return Ok(Arc::clone(db));
        }
        // Opening a file (and closing the one it replaces, which folds that file's WAL into
        // it) takes milliseconds: done outside the lock, so a rollout or a burst of cold silos
        // never holds up the requests of silos already open.
        let db = Arc::new(Db::open(&path, self.options(isolation), create)?);
        let evicted = {
            let mut silos = self.silos.lock();
            if let Some(raced) = silos.get(&path) {
                // Another request opened it meanwhile: use that one (ours closes unused).
                return Ok(Arc::clone(raced));
            }
            let evicted = if silos.len() >= silos.cap().get() {
                // Prefer closing an idle handle. Closing a busy one is still safe: its request
                // finishes on it, and SQLite's file locks serialise the brief second writer.
                let idle = silos
                    .iter()
                    .rev()
                    .find(|(_, db)| Arc::strong_count(db) == 1)
                    .map(|(k, _)| k.clone());
                match idle {
                    Some(key) => silos.pop(&key),
                    None => silos.pop_lru().map(|(_, db)| db),
                }
            } else {
                None
            };
            silos.put(path, Arc::clone(&db));
            evicted
        };
        drop(evicted);
        Ok(db)
    }

    fn scoped_db(&self, scope: &TenantScope) -> Result<Arc<Db>, StorageError> {
        let p = scope.placement();
        self.db(p.isolation, &p.namespace, scope.storage_key(), false)
    }
}

fn table_of(scope: &TenantScope, collection: &Collection) -> TableName {
    TableName::new(
        scope.placement().isolation,
        scope.storage_key(),
        &collection.name,
    )
}

impl SqliteEngine {
    /// SQLite's plan for a list query (`EXPLAIN QUERY PLAN`), one line per step: how tests
    /// show that indexed filters and sorts never scan other tenants' rows.
    pub async fn explain_list(
        &self,
        scope: &TenantScope,
        collection: &Collection,
        query: &ListQuery,
    ) -> EngineResult<Vec<String>> {
        let (scope, collection, query) = (scope.clone(), collection.clone(), query.clone());
        self.blocking(move |inner| {
            let db = inner.scoped_db(&scope)?;
            let table = table_of(&scope, &collection);
            let sql = RecordSql::new(&table, scope.storage_key().as_str(), &collection);
            let statement = sql.list(&query)?;
            db.read(|tx| {
                let mut stmt = tx.prepare(&format!("EXPLAIN QUERY PLAN {}", statement.sql))?;
                let rows = stmt.query_map(params_from_iter(statement.params.iter()), |r| {
                    r.get::<_, String>(3)
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
        })
        .await
    }
}

/// Exposed for benchmarks: where a placement's file is.
pub fn placement_file(
    dir: &Path,
    isolation: Isolation,
    namespace: &str,
    tenant: &StorageKey,
) -> Option<PathBuf> {
    db_path(dir, isolation, namespace, tenant).ok()
}
