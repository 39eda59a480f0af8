//! Keeping this server's caches true while other servers share the catalog (PostgreSQL).
//!
//! Writers append to `changes` in the changing transaction and notify; this task listens,
//! reads the changes after the last one it applied, in `seq` order, and drops or reloads
//! what they name: a key (revocation), a tenant's keys (deletion), a route (status, tier,
//! deletion), the collections, a tier's limits, a domain's engine. It also polls once a second,
//! so a lost notification delays a change by at most that. Locally made changes come back
//! too; applying them again only costs a re-read.
//!
//! Applying a change invalidates through the caches' own methods, so a fill that read the
//! catalog before the change is not stored after it (see `caches`).

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bulkhead_core::access::KeyOwner;
use bulkhead_core::error::Error;
use bulkhead_core::{DomainName, KeyId, TenantId, TierName};
use tokio::sync::Notify;

use crate::store::{StoreResult, params};
use crate::{Catalog, Inner};

/// Fallback poll interval when no notification arrives.
const POLL: Duration = Duration::from_secs(1);
/// Changes older than this are pruned (a server away longer reloads everything).
const RETAIN: &str = "1 hour";
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How often this server beats in `servers` (well within the write lease).
const BEAT_EVERY: Duration = Duration::from_millis(300);
/// How often it looks for moves whose server fell silent.
const ADOPT_EVERY: Duration = Duration::from_secs(2);

pub(crate) struct Changes {
    inner: Weak<Inner>,
    last_seen: i64,
    wake: Arc<Notify>,
}

/// Prepares change tracking for a shared catalog (nothing for SQLite): notes where the
/// change log is now, so only later changes are applied.
pub(crate) async fn start(catalog: &Catalog) -> Result<Option<Changes>, Error> {
    if !catalog.is_shared() {
        return Ok(None);
    }
    catalog.beat().await?;
    let last_seen = catalog
        .blocking(|store| {
            store.read(|tx| {
                tx.query_one("SELECT coalesce(max(seq), 0) FROM changes", &[])?
                    .get::<i64>(0)
            })
        })
        .await?;
    Ok(Some(Changes {
        inner: Arc::downgrade(&catalog.inner),
        last_seen,
        wake: Arc::new(Notify::new()),
    }))
}

struct Change {
    seq: i64,
    kind: String,
    id: String,
}

impl Changes {
    pub(crate) fn run(self) {
        tokio::spawn(self.follow());
    }

    async fn follow(mut self) {
        let mut listener = None;
        let mut last_prune = Instant::now();
        let mut last_beat = Instant::now();
        let mut last_adopt = Instant::now();
        if let Some(catalog) = self.catalog() {
            catalog.acknowledge_running_moves().await;
        }
        loop {
            let Some(catalog) = self.catalog() else {
                return;
            };
            let pg = catalog
                .inner()
                .store
                .postgres()
                .expect("shared catalogs are PostgreSQL");
            if listener
                .as_ref()
                .is_none_or(tokio_postgres::Client::is_closed)
            {
                listener = match pg.listen(Arc::clone(&self.wake)).await {
                    Ok(client) => Some(client),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for catalog changes; polling");
                        None
                    }
                };
            }
            // The beat comes first, so the changes read after it are at least as recent as the
            // lease it renews: a server never writes on a lease younger than what it applied.
            let beat_due = last_beat.elapsed() >= BEAT_EVERY;
            let mut beat = None;
            if beat_due {
                match catalog.beat_started().await {
                    Ok(at) => beat = Some(at),
                    Err(e) => tracing::warn!(error = %e, "catalog heartbeat failed"),
                }
            }
            let reading = catalog.inner().clock.now().as_micros();
            match self.apply_new(&catalog).await {
                Ok(()) => {
                    // Caught up with every change made before `reading` (metrics: sync lag).
                    catalog
                        .inner()
                        .synced_at
                        .store(reading, std::sync::atomic::Ordering::Relaxed);
                    if let Some(at) = beat {
                        last_beat = Instant::now();
                        catalog.renew_lease(at);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading catalog changes failed; retrying"),
            }
            if last_adopt.elapsed() >= ADOPT_EVERY {
                last_adopt = Instant::now();
                if let Err(e) = catalog.adopt_orphaned_moves().await {
                    tracing::warn!(error = %e, "looking for orphaned moves failed");
                }
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = Instant::now();
                if let Err(e) = prune(&catalog).await {
                    tracing::warn!(error = %e, "pruning catalog changes failed");
                }
            }
            drop(catalog);
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL.min(BEAT_EVERY)) => {}
            }
        }
    }

    fn catalog(&self) -> Option<Catalog> {
        self.inner.upgrade().map(|inner| Catalog { inner })
    }

    async fn apply_new(&mut self, catalog: &Catalog) -> Result<(), Error> {
        let after = self.last_seen;
        let (pruned_through, changes) = catalog
            .blocking(move |store| {
                store.read(|tx| {
                    let pruned: i64 = crate::store::get_meta(tx, "changes_pruned_through")?
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let rows = tx.query(
                        "SELECT seq, kind, id FROM changes WHERE seq > ?1 ORDER BY seq LIMIT 10000",
                        params![after],
                    )?;
                    let changes = rows
                        .iter()
                        .map(|r| {
                            Ok(Change {
                                seq: r.get(0)?,
                                kind: r.get(1)?,
                                id: r.get(2)?,
                            })
                        })
                        .collect::<StoreResult<Vec<_>>>()?;
                    Ok((pruned, changes))
                })
            })
            .await?;
        if pruned_through > after {
            tracing::warn!(
                "catalog changes were pruned before this server read them; reloading every cache"
            );
            catalog.forget_everything().await;
        } else {
            apply(catalog, &changes).await;
        }
        if let Some(last) = changes.last() {
            self.last_seen = last.seq;
        } else if pruned_through > after {
            self.last_seen = pruned_through;
        }
        Ok(())
    }
}

async fn apply(catalog: &Catalog, changes: &[Change]) {
    let inner = catalog.inner();
    let mut collections = false;
    let mut domains = BTreeSet::new();
    for change in changes {
        match change.kind.as_str() {
            "key" => match KeyId::parse(&change.id) {
                Ok(id) => inner.keys.forget(&id),
                Err(_) => inner.keys.forget_all(),
            },
            "tenant_keys" => inner.keys.forget_where(
                |_, k| matches!(&k.owner, KeyOwner::Tenant(t, _) if t.as_str() == change.id),
            ),
            "route" => match TenantId::parse(&change.id) {
                Ok(id) => inner.routes.forget(&id),
                Err(_) => inner.routes.forget_all(),
            },
            "tier" => match TierName::parse(&change.id) {
                Ok(name) => inner.tier_policy.forget(&name),
                Err(_) => inner.tier_policy.forget_all(),
            },
            "members" => inner.users.forget_all(),
            "collections" => collections = true,
            "move" => {
                // `<move>:<stage>`: acknowledge once in-flight writes are out of the way.
                if let Some((id, stage)) = change.id.split_once(':') {
                    let (c, id, stage) = (catalog.clone(), id.to_owned(), stage.to_owned());
                    tokio::spawn(async move { c.acknowledge_stage(id, stage).await });
                }
            }
            "domain" => {
                if let Ok(name) = DomainName::parse(&change.id) {
                    domains.insert(name);
                }
            }
            other => tracing::warn!(kind = other, "unknown catalog change kind ignored"),
        }
    }
    if collections {
        inner.collections.invalidate();
    }
    if collections && let Err(e) = catalog.load_collections().await {
        tracing::warn!(error = %e, "reloading collections after a change failed");
    }
    for name in domains {
        catalog.refresh_domain(&name).await;
    }
}

impl Catalog {
    /// Drops every cache and reloads collections and domains (after missing changes).
    async fn forget_everything(&self) {
        let inner = self.inner();
        inner.keys.forget_all();
        inner.routes.forget_all();
        inner.tier_policy.forget_all();
        inner.users.forget_all();
        inner.collections.invalidate();
        if let Err(e) = self.load_collections().await {
            tracing::warn!(error = %e, "reloading collections failed");
        }
        let stored = self
            .blocking(|store| store.read(|tx| crate::rows::domains::read_domains(tx)))
            .await;
        for (name, _) in stored.unwrap_or_default() {
            self.refresh_domain(&name).await;
        }
    }
}

/// Deletes changes older than [`RETAIN`] and records how far it went.
async fn prune(catalog: &Catalog) -> Result<(), Error> {
    if let Some(pg) = catalog.pg() {
        crate::moves::shared::prune_servers(pg).await?;
    }
    catalog
        .blocking(|store| {
            store.write(|tx| {
                let through: Option<i64> = tx
                    .query_one(
                        &format!(
                            "SELECT max(seq) FROM changes WHERE at < now() - interval '{RETAIN}'"
                        ),
                        &[],
                    )?
                    .get(0)?;
                if let Some(through) = through {
                    tx.execute("DELETE FROM changes WHERE seq <= ?1", params![through])?;
                    crate::store::set_meta(tx, "changes_pruned_through", &through.to_string())?;
                }
                Ok(())
            })
        })
        .await
}
