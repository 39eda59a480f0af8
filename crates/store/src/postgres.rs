//! The catalog on PostgreSQL, shared by every `bulkhead serve` pointed at it.
//!
//! Tables live in schema `bulkhead_catalog` (no privileges for PUBLIC, so the data role of a
//! domain on the same server cannot read keys or routes). Correctness between servers rests
//! on three things:
//!
//! - Every write transaction first takes one transaction-scoped advisory lock, so catalog
//!   writes are serialised across servers exactly as the single SQLite writer serialises
//!   them in one — counts checked before an insert (capacity, tier use) stay true.
//! - Writes that change cached state append to `changes` and `NOTIFY bulkhead_catalog` in
//!   the same transaction. Each server listens and applies changes in `seq` order (and polls
//!   every second in case a notification is lost). Because writers are serialised, `seq`
//!   order is commit order: no change is skipped.
//! - Provisioning and schema rollouts hold a session advisory lock ([`PgStore::lock_schema`])
//!   so one server's new tenant never misses another server's collection change.
//!
//! The catalog API is synchronous (it runs on the blocking pool, like SQLite's); statements
//! run on the server's Tokio runtime through [`tokio::runtime::Handle::block_on`].

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::runtime::Handle;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{AsyncMessage, Client, IsolationLevel, NoTls};

use crate::migrations::{self, Dialect, SchemaState};
use crate::tx::{Row, StoreError, StoreResult, Tx, Val};

/// Advisory lock keys (one namespace: the first word spells "bulk").
const WRITE_LOCK: i64 = 0x6275_6c6b_0000_0001;
const SCHEMA_LOCK: i64 = 0x6275_6c6b_0000_0002;
const DDL_LOCK: i64 = 0x6275_6c6b_0000_0003;
pub const CHANNEL: &str = "bulkhead_catalog";

/// Made before the migrations run: the schema every catalog table lives in, closed to PUBLIC.
const PRELUDE: &str = "
CREATE SCHEMA IF NOT EXISTS bulkhead_catalog;
REVOKE ALL ON SCHEMA bulkhead_catalog FROM PUBLIC;
SET LOCAL search_path = bulkhead_catalog;
";

fn pg_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Postgres(e.to_string())
}

/// A statement's error with the server's code and message (tokio-postgres prints only
/// "db error").
fn db_err(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Postgres(format!("{} ({})", db.message(), db.code().code())),
        None => pg_err(e),
    }
}

/// `?N` placeholders to `$N`, outside quoted literals.
pub fn translate(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                _ => n.to_string().as_str().to_sql(ty, out),
            },
            Val::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn decode(row: &tokio_postgres::Row) -> StoreResult<Row> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let v = match *column.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i).map(|v| v.map(Val::Int)),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|n| Val::Int(n.into()))),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)
                .map(|v| v.map(|n| Val::Int(n.into()))),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)
                .map(|v| v.map(|b| Val::Int(b.into()))),
            Type::VOID => Ok(None),
            _ => row
                .try_get::<_, Option<String>>(i)
                .map(|v| v.map(Val::Text)),
        }
        .map_err(|e| {
            pg_err(format!(
                "column {} ({}): {e}",
                column.name(),
                column.type_()
            ))
        })?;
        values.push(v.unwrap_or(Val::Null));
    }
    Ok(Row(values))
}

struct PgTx<'a> {
    handle: &'a Handle,
    tx: deadpool_postgres::Transaction<'a>,
}

impl PgTx<'_> {
    fn params(params: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
        params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
    }
}

impl Tx for PgTx<'_> {
    fn execute(&self, sql: &str, params: &[Val]) -> StoreResult<u64> {
        let sql = translate(sql);
        self.handle.block_on(async {
            let stmt = self.tx.prepare_cached(&sql).await.map_err(db_err)?;
            self.tx
                .execute(&stmt, &Self::params(params))
                .await
                .map_err(db_err)
        })
    }

    fn query(&self, sql: &str, params: &[Val]) -> StoreResult<Vec<Row>> {
        let sql = translate(sql);
        let rows = self.handle.block_on(async {
            let stmt = self.tx.prepare_cached(&sql).await.map_err(db_err)?;
            self.tx
                .query(&stmt, &Self::params(params))
                .await
                .map_err(db_err)
        })?;
        rows.iter().map(decode).collect()
    }

    fn shared(&self) -> bool {
        true
    }
}

pub struct PgStore {
    handle: Handle,
    config: tokio_postgres::Config,
    pool: Pool,
    /// The connection that holds the schema lock (a session advisory lock) while held.
    lock_conn: Arc<tokio::sync::Mutex<Option<Client>>>,
    schema: SchemaState,
}

/// Held while provisioning or rolling out schema; released on drop.
pub struct SchemaGuard {
    conn: Option<tokio::sync::OwnedMutexGuard<Option<Client>>>,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            tokio::spawn(async move {
                let unlocked = match conn.as_ref() {
                    Some(client) => client
                        .execute("SELECT pg_advisory_unlock($1)", &[&SCHEMA_LOCK])
                        .await
                        .is_ok(),
                    None => true,
                };
                if !unlocked {
                    // Closing the session releases its locks.
                    *conn = None;
                }
            });
        }
    }
}

impl PgStore {
    pub fn open(url: &str, handle: Handle) -> StoreResult<PgStore> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| pg_err(format!("catalog url: {e}")))?;
        config.application_name("bulkhead-catalog");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.options("-c search_path=bulkhead_catalog -c client_min_messages=warning");
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(8)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(pg_err)?;
        let mut store = PgStore {
            handle,
            config,
            pool,
            lock_conn: Arc::new(tokio::sync::Mutex::new(None)),
            schema: SchemaState {
                found: 0,
                version: 0,
                applied: Vec::new(),
            },
        };
        store.schema = store.migrate()?;
        Ok(store)
    }

    async fn connect(
        &self,
    ) -> StoreResult<(
        Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    )> {
        self.config.connect(NoTls).await.map_err(pg_err)
    }

    /// Applies the catalog's migrations in one transaction, holding the DDL lock (servers
    /// starting together migrate once: the others wait, then find nothing to do) and the
    /// write lock (no catalog write of an older server interleaves).
    fn migrate(&self) -> StoreResult<SchemaState> {
        let mut client = self.handle.block_on(self.pool.get()).map_err(pg_err)?;
        let tx = self.handle.block_on(client.transaction()).map_err(pg_err)?;
        for lock in [DDL_LOCK, WRITE_LOCK] {
            self.handle
                .block_on(tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock]))
                .map_err(db_err)?;
        }
        self.handle
            .block_on(tx.batch_execute(PRELUDE))
            .map_err(db_err)?;
        let tx = PgTx {
            handle: &self.handle,
            tx,
        };
        let state = migrations::apply(
            &tx,
            Dialect::Postgres,
            migrations::MIGRATIONS,
            crate::tx::now_ms(),
        )?;
        self.handle.block_on(tx.tx.commit()).map_err(db_err)?;
        Ok(state)
    }

    pub fn schema(&self) -> &SchemaState {
        &self.schema
    }

    pub fn write<T>(&self, f: impl FnOnce(&dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
        let mut client = self.handle.block_on(self.pool.get()).map_err(pg_err)?;
        let tx = self.handle.block_on(client.transaction()).map_err(pg_err)?;
        self.handle
            .block_on(tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK]))
            .map_err(db_err)?;
        let tx = PgTx {
            handle: &self.handle,
            tx,
        };
        let out = f(&tx)?;
        self.handle.block_on(tx.tx.commit()).map_err(db_err)?;
        Ok(out)
    }

    pub fn read<T>(&self, f: impl FnOnce(&dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
        let mut client = self.handle.block_on(self.pool.get()).map_err(pg_err)?;
        let tx = self
            .handle
            .block_on(
                client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start(),
            )
            .map_err(pg_err)?;
        let tx = PgTx {
            handle: &self.handle,
            tx,
        };
        let out = f(&tx)?;
        self.handle.block_on(tx.tx.commit()).map_err(db_err)?;
        Ok(out)
    }

    /// Takes the catalog-wide schema lock (waits for other servers holding it).
    pub async fn lock_schema(&self) -> StoreResult<SchemaGuard> {
        let mut conn = Arc::clone(&self.lock_conn).lock_owned().await;
        for attempt in 0..2 {
            if conn.as_ref().is_none_or(Client::is_closed) {
                let (client, connection) = self.connect().await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!(error = %e, "catalog lock connection ended");
                    }
                });
                *conn = Some(client);
            }
            let client = conn.as_ref().expect("connected above");
            match client
                .execute("SELECT pg_advisory_lock($1)", &[&SCHEMA_LOCK])
                .await
            {
                Ok(_) => return Ok(SchemaGuard { conn: Some(conn) }),
                Err(e) if attempt == 0 => {
                    tracing::warn!(error = %e, "catalog lock connection failed; reconnecting");
                    *conn = None;
                }
                Err(e) => return Err(pg_err(e)),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Runs `f` on a pooled connection, on the catalog's runtime, outside any transaction and
    /// without the write lock: for the small statements servers exchange about live moves
    /// (heartbeats, journal entries, acknowledgements), which need no serialisation.
    pub async fn with_client<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c Client) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>
            + Send
            + 'static,
    {
        let pool = self.pool.clone();
        self.handle
            .spawn(async move {
                let client = pool.get().await.map_err(pg_err)?;
                f(&client).await.map_err(db_err)
            })
            .await
            .map_err(pg_err)?
    }

    /// Opens a connection that listens for catalog changes; `wake` is notified on each.
    /// Returns the client (dropping it closes the connection) once `LISTEN` runs.
    pub async fn listen(&self, wake: Arc<tokio::sync::Notify>) -> StoreResult<Client> {
        let (client, mut connection) = self.connect().await?;
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "catalog change listener ended");
                        break;
                    }
                }
            }
            // Wake the poller so it notices the closed client and reconnects.
            wake.notify_one();
        });
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(pg_err)?;
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::translate;

    #[test]
    fn placeholders_become_dollars_outside_literals() {
        assert_eq!(
            translate("SELECT '?1' FROM t WHERE a = ?1 AND b IN ('x', ?2)"),
            "SELECT '?1' FROM t WHERE a = $1 AND b IN ('x', $2)"
        );
    }
}
