//! Moves when several servers share the catalog (PostgreSQL).
//!
//! On one server the write gate sees every write to the tenant. With a shared catalog writes
//! also arrive at the other servers; these make them as safe:
//!
//! - **A journal in the catalog.** A server that does not run the move writes the ids its
//!   writes touch into `move_journal`, before and after the engine call, whenever the route
//!   it resolved says the tenant is moving. The executor drains it with its own journal.
//! - **Acknowledged stages.** When a move starts tracking writes, and each time it freezes,
//!   the executor announces it (change kind `move`, id `<move>:<stage>`) and waits until
//!   every live server has acknowledged it in `move_acks`. A server acknowledges after it
//!   re-read the tenant's route and waited out its writes in flight, so no write that
//!   resolved the older route is still running anywhere. While the route is frozen, writes
//!   wait on every server (within the freeze bound), then go to the placement the switch chose.
//! - **Leases.** Every server beats in `servers`, by the catalog's clock. A server that has
//!   not reached the catalog for [`MoveSettings::lease`] refuses writes; one silent for
//!   [`MoveSettings::silent_after`] no longer counts for acknowledgements. If a server that
//!   was up during a move falls silent before its freeze is acknowledged, the move rolls back
//!   (that server's last writes may be missing from the journal). A move whose executor falls
//!   silent is adopted by another server: rolled back before its switch, finished after it.
//!
//! [`MoveSettings::lease`]: super::MoveSettings::lease
//! [`MoveSettings::silent_after`]: super::MoveSettings::silent_after

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::{CollectionName, RecordId, TenantId};

use super::gate::Journal;
use crate::Catalog;
use crate::store::PgStore;

/// The catalog's clock, in microseconds.
pub(crate) const NOW_US: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

/// What the servers' acknowledgements of a stage say so far.
#[derive(Debug, Default)]
pub(crate) struct StageAcks {
    /// Live servers that have not acknowledged yet.
    pub waiting: Vec<String>,
    /// Servers that took part in the move (up since it began, or acknowledged a stage of it)
    /// and have fallen silent.
    pub silent: Vec<String>,
}

fn silent_us(silent_after: Duration) -> i64 {
    i64::try_from(silent_after.as_micros()).unwrap_or(i64::MAX)
}

pub(crate) async fn register(pg: &PgStore, me: &str) -> Result<(), Error> {
    let me = me.to_owned();
    pg.with_client(move |c| {
        Box::pin(async move {
            c.execute(
                &format!(
                    "INSERT INTO servers (id, started_at, beat_at) VALUES ($1, {NOW_US}, {NOW_US}) \
                     ON CONFLICT (id) DO UPDATE SET beat_at = excluded.beat_at"
                ),
                &[&me],
            )
            .await
        })
    })
    .await?;
    Ok(())
}

pub(crate) async fn deregister(pg: &PgStore, me: &str) -> Result<(), Error> {
    let me = me.to_owned();
    pg.with_client(move |c| {
        Box::pin(async move { c.execute("DELETE FROM servers WHERE id = $1", &[&me]).await })
    })
    .await?;
    Ok(())
}

/// Journals ids a write on this server touches while another server moves the tenant.
pub(crate) async fn journal(
    pg: &PgStore,
    tenant: &TenantId,
    collection: &CollectionName,
    ids: Vec<String>,
) -> Result<(), Error> {
    let (tenant, collection) = (tenant.as_str().to_owned(), collection.as_str().to_owned());
    pg.with_client(move |c| {
        Box::pin(async move {
            c.execute(
                "INSERT INTO move_journal (tenant_id, collection, record_id) \
                 SELECT $1, $2, unnest($3::text[])",
                &[&tenant, &collection, &ids],
            )
            .await
        })
    })
    .await?;
    Ok(())
}

/// Takes (and deletes) the ids other servers journaled for the tenant.
pub(crate) async fn drain(pg: &PgStore, tenant: &TenantId) -> Result<Journal, Error> {
    let tenant = tenant.as_str().to_owned();
    let rows = pg
        .with_client(move |c| {
            Box::pin(async move {
                c.query(
                    "DELETE FROM move_journal WHERE tenant_id = $1 RETURNING collection, record_id",
                    &[&tenant],
                )
                .await
            })
        })
        .await?;
    let mut journal = Journal::default();
    for row in rows {
        let (collection, id): (String, String) = (row.get(0), row.get(1));
        match (CollectionName::parse(&collection), RecordId::parse(&id)) {
            (Ok(c), Ok(id)) => {
                journal.ids.entry(c).or_default().insert(id);
            }
            _ => tracing::error!(%collection, %id, "malformed move journal entry ignored"),
        }
    }
    Ok(journal)
}

pub(crate) async fn acknowledge(
    pg: &PgStore,
    move_id: &str,
    stage: &str,
    me: &str,
) -> Result<(), Error> {
    let (m, s, me) = (move_id.to_owned(), stage.to_owned(), me.to_owned());
    pg.with_client(move |c| {
        Box::pin(async move {
            c.execute(
                "INSERT INTO move_acks (move_id, stage, server_id) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                &[&m, &s, &me],
            )
            .await
        })
    })
    .await?;
    Ok(())
}

/// Which servers still owe an acknowledgement of `stage`, and which fell silent after the
/// move began.
pub(crate) async fn stage_acks(
    pg: &PgStore,
    move_id: &str,
    stage: &str,
    me: &str,
    silent_after: Duration,
) -> Result<StageAcks, Error> {
    let (m, s, me) = (move_id.to_owned(), stage.to_owned(), me.to_owned());
    let silent = silent_us(silent_after);
    let rows = pg
        .with_client(move |c| {
            Box::pin(async move {
                c.query(
                    &format!(
                        "SELECT s.id, s.beat_at > {NOW_US} - $4 AS live, \
                                (s.beat_at >= coalesce(r.started_at, 0) OR EXISTS (SELECT 1 FROM move_acks p \
                                        WHERE p.move_id = $1 AND p.server_id = s.id)) AS took_part, \
                                EXISTS (SELECT 1 FROM move_acks a \
                                        WHERE a.move_id = $1 AND a.stage = $2 AND a.server_id = s.id) AS acked \
                         FROM servers s LEFT JOIN move_runs r ON r.move_id = $1 \
                         WHERE s.id <> $3"
                    ),
                    &[&m, &s, &me, &silent],
                )
                .await
            })
        })
        .await?;
    let mut acks = StageAcks::default();
    for row in rows {
        let (id, live, took_part, acked): (String, bool, bool, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if live && !acked {
            acks.waiting.push(id);
        } else if !live && took_part {
            acks.silent.push(id);
        }
    }
    Ok(acks)
}

/// Asks the server running the move to cancel it.
pub(crate) async fn request_cancel(pg: &PgStore, move_id: &str, why: &str) -> Result<(), Error> {
    let (m, why) = (move_id.to_owned(), why.to_owned());
    pg.with_client(move |c| {
        Box::pin(async move {
            c.execute(
                "UPDATE move_runs SET cancel = $2 WHERE move_id = $1",
                &[&m, &why],
            )
            .await
        })
    })
    .await?;
    Ok(())
}

pub(crate) async fn cancel_requested(pg: &PgStore, move_id: &str) -> Result<Option<String>, Error> {
    let m = move_id.to_owned();
    let row = pg
        .with_client(move |c| {
            Box::pin(async move {
                c.query_opt("SELECT cancel FROM move_runs WHERE move_id = $1", &[&m])
                    .await
            })
        })
        .await?;
    Ok(row.and_then(|r| r.get(0)))
}

/// Unfinished moves whose executor is silent (or gone): `(move, runner)`.
pub(crate) async fn orphaned(
    pg: &PgStore,
    silent_after: Duration,
) -> Result<Vec<(String, String)>, Error> {
    let silent = silent_us(silent_after);
    let rows = pg
        .with_client(move |c| {
            Box::pin(async move {
                c.query(
                    &format!(
                        "SELECT m.id, r.runner FROM moves m JOIN move_runs r ON r.move_id = m.id \
                         LEFT JOIN servers s ON s.id = r.runner \
                         WHERE m.phase NOT IN ('done', 'rolled_back') \
                           AND (s.id IS NULL OR s.beat_at <= {NOW_US} - $1) \
                         ORDER BY m.created_at"
                    ),
                    &[&silent],
                )
                .await
            })
        })
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Makes this server the move's executor if `previous` still is; true when it did.
pub(crate) async fn adopt(
    pg: &PgStore,
    move_id: &str,
    previous: &str,
    me: &str,
) -> Result<bool, Error> {
    let (m, p, me) = (move_id.to_owned(), previous.to_owned(), me.to_owned());
    let n = pg
        .with_client(move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE move_runs SET runner = $3 WHERE move_id = $1 AND runner = $2",
                    &[&m, &p, &me],
                )
                .await
            })
        })
        .await?;
    Ok(n == 1)
}

/// Forgets servers silent for an hour.
pub(crate) async fn prune_servers(pg: &PgStore) -> Result<(), Error> {
    pg.with_client(move |c| {
        Box::pin(async move {
            c.execute(
                &format!("DELETE FROM servers WHERE beat_at < {NOW_US} - 3600000000"),
                &[],
            )
            .await
        })
    })
    .await?;
    Ok(())
}

pub(crate) fn catalog_unreachable(lease: Duration) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "catalog_unreachable",
        format!(
            "this server has not reached the shared catalog for over {} ms; it refuses writes \
             until it does, since another server may be moving tenants. Retry, or use another server",
            lease.as_millis()
        ),
    )
}

/// This server's standing with the shared catalog.
pub(crate) struct ServerLease {
    /// This server's id in `servers` (new at every start).
    pub me: String,
    /// When the catalog last answered this server's heartbeat.
    pub last_beat: parking_lot::Mutex<Instant>,
}

impl ServerLease {
    pub fn new() -> Self {
        ServerLease {
            me: format!("srv{}", uuid::Uuid::now_v7().simple()),
            last_beat: parking_lot::Mutex::new(Instant::now()),
        }
    }
}

impl Catalog {
    pub(crate) fn pg(&self) -> Option<&PgStore> {
        self.inner().store.postgres()
    }

    pub(crate) fn server_id(&self) -> &str {
        &self.inner().moves.lease.me
    }

    /// Refuses writes once this server has been out of touch with a shared catalog for
    /// longer than its lease.
    pub(crate) fn check_lease(&self) -> Result<(), Error> {
        if !self.is_shared() {
            return Ok(());
        }
        let lease = self.inner().options.moves.lease;
        if self.inner().moves.lease.last_beat.lock().elapsed() > lease {
            return Err(catalog_unreachable(lease));
        }
        Ok(())
    }

    /// Registers this server (at start) and takes its first lease.
    pub(crate) async fn beat(&self) -> Result<(), Error> {
        let at = self.beat_started().await?;
        self.renew_lease(at);
        Ok(())
    }

    /// Heartbeat: returns when it was sent; the lease is renewed from then, once the
    /// changes published before it are applied too ([`Catalog::renew_lease`]).
    pub(crate) async fn beat_started(&self) -> Result<Instant, Error> {
        let before = Instant::now();
        if let Some(pg) = self.pg() {
            register(pg, self.server_id()).await?;
        }
        Ok(before)
    }

    pub(crate) fn renew_lease(&self, at: Instant) {
        let mut last = self.inner().moves.lease.last_beat.lock();
        if at > *last {
            *last = at;
        }
    }

    /// At shutdown: leaves the shared catalog's server list, so moves stop waiting for it.
    pub(crate) async fn leave(&self) {
        if let Some(pg) = self.pg()
            && let Err(e) = deregister(pg, self.server_id()).await
        {
            tracing::warn!(error = %e, "could not leave the shared catalog's server list");
        }
    }

    /// Takes every id journaled since the last drain: this server's and (shared catalog)
    /// the other servers'.
    pub(crate) async fn drain_journal(
        &self,
        gate: &super::gate::Gate,
        tenant: &TenantId,
    ) -> Result<Journal, Error> {
        let mut journal = gate.drain();
        if let Some(pg) = self.pg() {
            for (c, ids) in drain(pg, tenant).await?.ids {
                journal.ids.entry(c).or_default().extend(ids);
            }
        }
        Ok(journal)
    }

    /// Waits until every live server acknowledged `stage` of the move. `Ok(false)` when
    /// `within` ran out first; an error when a server that took part fell silent and
    /// `strict` (the freeze: its writes might be unjournaled).
    pub(crate) async fn await_stage(
        &self,
        move_id: &str,
        stage: &str,
        within: Duration,
        strict: bool,
    ) -> Result<bool, Error> {
        let Some(pg) = self.pg() else {
            return Ok(true);
        };
        let silent_after = self.inner().options.moves.silent_after;
        let deadline = Instant::now() + within;
        loop {
            let acks = stage_acks(pg, move_id, stage, self.server_id(), silent_after).await?;
            if strict && let Some(first) = acks.silent.first() {
                return Err(Error::conflict(
                    "move_server_lost",
                    format!(
                        "server {first} served writes during the move and then fell silent; \
                         its last writes cannot be accounted for, so the move rolls back"
                    ),
                ));
            }
            if acks.waiting.is_empty() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                tracing::warn!(r#move = move_id, stage, waiting = ?acks.waiting, "servers did not acknowledge in time");
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A server that does not run the move acknowledges one of its stages: it re-reads the
    /// tenant's route, waits out its writes in flight, then records the acknowledgement.
    pub(crate) async fn acknowledge_stage(&self, move_id: String, stage: String) {
        if self.inner().moves.live.lock().contains_key(&move_id) {
            return;
        }
        let Some(pg) = self.pg() else { return };
        let outcome: Result<(), Error> = async {
            let Some(row) = self.read_move(&move_id).await? else {
                return Ok(());
            };
            if row.phase.is_final() {
                return Ok(());
            }
            self.load_tenant(&row.tenant).await?;
            let gate = self.inner().moves.gates.get(&row.tenant);
            if stage == "track" {
                gate.poisoned.store(false, Ordering::Release);
            } else if gate.poisoned.load(Ordering::Acquire) {
                return Err(Error::internal().with_message(
                    "a write's journal entry could not be recorded; not acknowledging the freeze"
                        .to_owned(),
                ));
            }
            let Some(drained) = gate.freeze(Duration::from_secs(60)).await else {
                return Err(Error::internal()
                    .with_message("writes in flight did not finish within 60 s".to_owned()));
            };
            drop(drained);
            acknowledge(pg, &move_id, &stage, self.server_id()).await
        }
        .await;
        if let Err(e) = outcome {
            tracing::warn!(r#move = %move_id, %stage, error = %e, "could not acknowledge a move stage");
        }
    }

    /// At start: acknowledges the start of moves already running, whose announcement came
    /// before this server listened. Its routes are read fresh, so it journals their writes
    /// from its first request.
    pub(crate) async fn acknowledge_running_moves(&self) {
        let running = self.blocking(|store| store.read(super::unfinished)).await;
        match running {
            Ok(moves) => {
                for m in moves.into_iter().filter(|m| !m.phase.is_switched()) {
                    self.acknowledge_stage(m.id, "track".into()).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read running moves"),
        }
    }

    /// Polls the catalog for a cancel asked on another server, while the move runs here.
    pub(crate) fn watch_cancel(&self, move_id: &str, live: &Arc<super::Live>) {
        let Some(_) = self.pg() else { return };
        let (catalog, id, live) = (self.clone(), move_id.to_owned(), Arc::clone(live));
        self.inner().main.spawn(async move {
            while catalog.inner().moves.live.lock().contains_key(&id) {
                if let Some(pg) = catalog.pg()
                    && let Ok(Some(why)) = cancel_requested(pg, &id).await
                {
                    live.cancel.lock().get_or_insert(why);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    /// Moves whose executor fell silent: this server adopts them and rolls them back (before
    /// their switch) or finishes them (after it).
    pub(crate) async fn adopt_orphaned_moves(&self) -> Result<(), Error> {
        let Some(pg) = self.pg() else { return Ok(()) };
        for (id, runner) in orphaned(pg, self.inner().options.moves.silent_after).await? {
            if !adopt(pg, &id, &runner, self.server_id()).await? {
                continue;
            }
            let Some(row) = self.read_move(&id).await? else {
                continue;
            };
            tracing::warn!(r#move = %id, tenant = %row.tenant, phase = %row.phase, %runner, "adopting a move whose server fell silent");
            let outcome = if row.phase.is_switched() {
                self.clean_source(&row).await
            } else {
                let why = format!(
                    "the server running the move ({runner}) fell silent during {}; rolled back to \
                     the source, which kept every write",
                    row.phase
                );
                self.roll_back(&row, &why).await
            };
            if let Err(e) = outcome {
                tracing::error!(r#move = %id, error = %e, "could not finish an adopted move");
            }
        }
        Ok(())
    }

    /// True when this server may act on the move (a single server always may).
    pub(crate) fn runs_move(
        tx: &dyn crate::store::Tx,
        move_id: &str,
        me: &str,
    ) -> crate::store::StoreResult<bool> {
        if !tx.shared() {
            return Ok(true);
        }
        let runner: Option<String> = tx
            .query_opt(
                "SELECT runner FROM move_runs WHERE move_id = ?1",
                crate::store::params![move_id],
            )?
            .map(|r| r.get(0))
            .transpose()?;
        Ok(runner.is_none_or(|r| r == me))
    }
}

/// The shared catalog's journal of one tenant's writes, for a move another server runs.
pub(crate) struct CatalogJournal {
    pub catalog: crate::Catalog,
    pub tenant: TenantId,
}

#[async_trait::async_trait]
impl super::gate::RemoteJournal for CatalogJournal {
    async fn journal(&self, collection: &CollectionName, ids: Vec<String>) -> Result<(), Error> {
        let Some(pg) = self.catalog.pg() else {
            return Ok(());
        };
        journal(pg, &self.tenant, collection, ids).await
    }

    fn tenant(&self) -> &TenantId {
        &self.tenant
    }
}
