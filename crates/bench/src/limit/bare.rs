//! The bare handler `bulkhead-bench limit` compares Bulkhead with: axum + rusqlite doing the
//! same work with nothing around it — one fixed bearer token, no tenancy, no validation beyond
//! parsing the JSON, no budgets, no audit, no metering. The table is the one Bulkhead's pool
//! uses (same columns, key, indexes and pragmas), the queries are the same.
//!
//! One writer connection behind a mutex and a small pool of readers, each call on the blocking
//! pool: what a careful hand-written server does.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Name of the bare server's runtime threads (workers and blocking pool).
pub const THREAD_NAME: &str = "bare-server";

/// The one credential the bare handler accepts.
pub const TOKEN: &str = "bare-token-0123456789";
/// Every row belongs to this one tenant (the pool table's key leads with it).
const TENANT: &str = "bare";

const DDL: &str = r#"
CREATE TABLE IF NOT EXISTS "c_items" (tenant_id TEXT NOT NULL, id TEXT NOT NULL,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, version INTEGER NOT NULL,
  "f_title" TEXT, "f_n" INTEGER, "f_status" TEXT, PRIMARY KEY (tenant_id, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "c_items__ix__i_n" ON "c_items" (tenant_id, "f_n", id);
CREATE INDEX IF NOT EXISTS "c_items__ix__i_status" ON "c_items" (tenant_id, "f_status", id);
"#;

struct Db {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next: std::sync::atomic::AtomicUsize,
}

impl Db {
    fn reader(&self) -> parking_lot::MutexGuard<'_, Connection> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.readers[i % self.readers.len()].lock()
    }
}

/// How the bare handler opens its file.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `synchronous = FULL` (every commit synced) rather than `NORMAL`.
    pub fsync: bool,
    /// `SQLITE_DBCONFIG_ENABLE_QPSG` on every connection, as Bulkhead's engine sets it.
    pub stable_plans: bool,
}

fn open(path: &std::path::Path, options: Options) -> rusqlite::Result<Connection> {
    let fsync = options.fsync;
    let conn = Connection::open(path)?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        options.stable_plans,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        == Some(TOKEN)
}

fn record(
    id: &str,
    created: i64,
    updated: i64,
    version: i64,
    title: Value,
    n: Value,
    status: Value,
) -> Value {
    json!({"id": id, "created_at": created, "updated_at": updated, "version": version,
           "title": title, "n": n, "status": status})
}

fn insert(conn: &Connection, body: &Value, id: Option<String>) -> rusqlite::Result<Value> {
    let id = id
        .or_else(|| body["id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| bulkhead_core::RecordId::generate().as_str().to_owned());
    let now = now_micros();
    let mut stmt = conn.prepare_cached(
        r#"INSERT INTO "c_items" (tenant_id, id, created_at, updated_at, version, "f_title", "f_n", "f_status")
           VALUES (?1, ?2, ?3, ?3, 1, ?4, ?5, ?6)"#,
    )?;
    stmt.execute(params![
        TENANT,
        id,
        now,
        body["title"].as_str(),
        body["n"].as_i64(),
        body["status"].as_str()
    ])?;
    Ok(record(
        &id,
        now,
        now,
        1,
        body["title"].clone(),
        body["n"].clone(),
        body["status"].clone(),
    ))
}

fn row_json(row: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    let id: String = row.get(0)?;
    let title: Option<String> = row.get(4)?;
    let n: Option<i64> = row.get(5)?;
    let status: Option<String> = row.get(6)?;
    Ok(record(
        &id,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        json!(title),
        json!(n),
        json!(status),
    ))
}

type Shared = Arc<Db>;

fn fail(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

async fn create(State(db): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let done = tokio::task::spawn_blocking(move || {
        let conn = db.writer.lock();
        insert(&conn, &value, None)
    })
    .await;
    match done {
        Ok(Ok(record)) => (StatusCode::CREATED, axum::Json(record)).into_response(),
        Ok(Err(e)) => fail(e),
        Err(e) => fail(e),
    }
}

async fn fetch(State(db): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let found = tokio::task::spawn_blocking(move || {
        let conn = db.reader();
        let mut stmt = conn.prepare_cached(
            r#"SELECT id, created_at, updated_at, version, "f_title", "f_n", "f_status" FROM "c_items"
               WHERE tenant_id = ?1 AND id = ?2"#,
        )?;
        stmt.query_row(params![TENANT, id], row_json).optional()
    })
    .await;
    match found {
        Ok(Ok(Some(record))) => axum::Json(record).into_response(),
        Ok(Ok(None)) => StatusCode::NOT_FOUND.into_response(),
        Ok(Err(e)) => fail(e),
        Err(e) => fail(e),
    }
}

#[derive(serde::Deserialize)]
struct Page {
    /// Only `n > N` is understood: the one filter the comparison uses.
    min_n: Option<i64>,
    limit: Option<usize>,
}

async fn list(State(db): State<Shared>, headers: HeaderMap, Query(page): Query<Page>) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let limit = page.limit.unwrap_or(20).min(1000);
    let listed = tokio::task::spawn_blocking(move || {
        let conn = db.reader();
        let mut stmt = conn.prepare_cached(
            r#"SELECT id, created_at, updated_at, version, "f_title", "f_n", "f_status" FROM "c_items"
               WHERE tenant_id = ?1 AND "f_n" > ?2 ORDER BY id LIMIT ?3"#,
        )?;
        let rows = stmt.query_map(
            params![TENANT, page.min_n.unwrap_or(i64::MIN), (limit + 1) as i64],
            row_json,
        )?;
        rows.collect::<rusqlite::Result<Vec<Value>>>()
    })
    .await;
    match listed {
        Ok(Ok(mut items)) => {
            let more = items.len() > limit;
            items.truncate(limit);
            let next = more
                .then(|| {
                    items
                        .last()
                        .and_then(|r| r["id"].as_str())
                        .map(str::to_owned)
                })
                .flatten();
            axum::Json(json!({"items": items, "next_cursor": next})).into_response()
        }
        Ok(Err(e)) => fail(e),
        Err(e) => fail(e),
    }
}

async fn bulk(State(db): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let lines: Vec<Value> = match body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice)
        .collect()
    {
        Ok(lines) => lines,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let done = tokio::task::spawn_blocking(move || -> rusqlite::Result<Value> {
        let mut conn = db.writer.lock();
        let tx = conn.transaction()?;
        let (mut created, mut failed) = (0u64, 0u64);
        for line in &lines {
            match insert(&tx, line, None) {
                Ok(_) => created += 1,
                Err(_) => failed += 1,
            }
        }
        tx.commit()?;
        Ok(json!({"created": created, "failed": failed}))
    })
    .await;
    match done {
        Ok(Ok(summary)) => axum::Json(summary).into_response(),
        Ok(Err(e)) => fail(e),
        Err(e) => fail(e),
    }
}

/// The bare server, on its own runtime thread (two workers, like the in-process Bulkhead).
pub struct Bare {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Bare {
    pub async fn start(options: Options) -> anyhow::Result<Bare> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bare.db");
        let writer = open(&path, options)?;
        writer.execute_batch(DDL)?;
        let readers = (0..4)
            .map(|_| open(&path, options).map(Mutex::new))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let db: Shared = Arc::new(Db {
            writer: Mutex::new(writer),
            readers,
            next: Default::default(),
        });
        let app = Router::new()
            .route("/items", post(create).get(list))
            .route("/items/{id}", get(fetch))
            .route("/items:bulk", post(bulk))
            .with_state(db);
        let (ready, is_ready) = oneshot::channel::<anyhow::Result<String>>();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bare-server".into())
            .spawn(move || -> anyhow::Result<()> {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(THREAD_NAME)
                    // Idle blocking threads stay, so their CPU time stays countable.
                    .thread_keep_alive(std::time::Duration::from_secs(3600))
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                    let _ = ready.send(Ok(format!("http://{}", listener.local_addr()?)));
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await?;
                    anyhow::Ok(())
                })
            })?;
        let url = is_ready.await??;
        Ok(Bare {
            url,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        })
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await?
                .map_err(|_| anyhow::anyhow!("the bare server thread panicked"))??;
        }
        Ok(())
    }
}
