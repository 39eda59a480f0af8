//! The ready pool: empty silo placements kept ready on each domain that asks for them
//! (`DomainSpec::ready_silos`), so creating a silo tenant renames one instead of building
//! its storage.
//!
//! A spare is storage under a key no tenant has ([`StorageKey::spare`]), with a row in the
//! catalog (`rows::spares`). The keeper, on the background runtime, fills each domain to its
//! number, brings spares to each new schema generation, and removes what is left over:
//! spares a domain no longer wants, preparations a crash cut off, and spares claimed by a
//! creation that ended (adopted: nothing left; failed or cut off: the spare's storage).
//!
//! Creating a silo tenant claims a ready spare of its domain on the current generation in the
//! transaction that records the tenant, then renames the spare's storage to the tenant's
//! ([`Engine::adopt_spare`]). A spare is never handed out behind the current generation, never
//! holds data (no scope ever names a spare key), and is never visible as a tenant.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bulkhead_core::error::Error;
use bulkhead_core::schema::Collection;
use bulkhead_core::{DomainName, Incarnation, StorageKey};
use bulkhead_engine::PlacementRef;

use crate::rows::spares::{self as rows, SpareRow, SpareState};
use crate::{Catalog, Inner};

/// How often the keeper looks when nothing woke it.
const LOOK_EVERY: Duration = Duration::from_secs(5);
/// A spare still `preparing` after this long was cut off (by a crash): it is removed.
const PREPARING_STALE: Duration = Duration::from_secs(300);

/// Runs the keeper for as long as the catalog lives; its first pass starts at once.
pub(crate) fn spawn(inner: Weak<Inner>, wake: Arc<tokio::sync::Notify>) {
    crate::background::spawn(crate::background::Priority::Idle, async move {
        let mut first = true;
        loop {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let catalog = Catalog { inner: strong };
            // At start, on a catalog no other server uses, a spare still `preparing` was
            // cut off by this server's own end: it goes at once.
            let cut_off_before =
                (first && !catalog.is_shared()).then(|| catalog.inner().clock.now());
            first = false;
            if let Err(e) = Spares(&catalog).keep(cut_off_before).await {
                tracing::warn!(error = %e, code = %e.code, "could not keep the ready pool; retrying");
            }
            drop(catalog);
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(LOOK_EVERY) => {}
            }
        }
    });
}

/// The ready pool's operations on the catalog.
pub(crate) struct Spares<'a>(pub(crate) &'a Catalog);

impl Spares<'_> {
    /// Asks the keeper for a pass now (a spare was taken, or the schema changed).
    pub(crate) fn refill_soon(&self) {
        self.0.inner().spares_wake.notify_one();
    }

    /// Gives `target` (a new silo) the storage of the spare claimed for it, if any. False when
    /// there is none or it could not be adopted: the caller then provisions as usual (the
    /// keeper removes a spare left behind).
    pub(crate) async fn adopt(
        &self,
        spare: Option<&Incarnation>,
        target: &PlacementRef,
        domain: &DomainName,
    ) -> bool {
        let Some(spare) = spare else {
            return false;
        };
        self.refill_soon();
        let adopted = match self.0.engine(domain) {
            Ok(engine) => {
                engine
                    .adopt_spare(&PlacementRef::spare(spare), target)
                    .await
            }
            Err(e) => Err(bulkhead_engine::EngineError::Storage(e.message)),
        };
        match adopted {
            Ok(adopted) => adopted,
            Err(e) => {
                tracing::warn!(%domain, spare = %spare, error = %e, "a ready spare could not be adopted; provisioning instead");
                false
            }
        }
    }

    /// The spare claimed for the tenant storage `key` (a creation cut off after its claim).
    pub(crate) async fn claimed_for(&self, key: &StorageKey) -> Result<Option<Incarnation>, Error> {
        let key = key.clone();
        self.0
            .blocking(move |store| store.read(|tx| rows::claimed_for(tx, &key)))
            .await
    }

    /// One pass of the keeper. Spares `preparing` since before `cut_off_before` (or for
    /// longer than [`PREPARING_STALE`]) are taken as cut off.
    pub(crate) async fn keep(
        &self,
        cut_off_before: Option<bulkhead_core::time::Timestamp>,
    ) -> Result<(), Error> {
        let catalog = self.0;
        let (generation, collections, spares, domains) = catalog
            .blocking(|store| {
                store.read(|tx| {
                    Ok((
                        crate::rows::collections::generation(tx)?,
                        crate::rows::collections::read_collections(tx)?,
                        rows::list(tx)?,
                        crate::rows::domains::read_domains(tx)?,
                    ))
                })
            })
            .await?;
        let wanted: BTreeMap<DomainName, u32> = domains
            .into_iter()
            .filter(|(_, spec)| spec.ready_silos > 0 && spec.dedicated_to.is_none())
            .map(|(name, spec)| (name, spec.ready_silos))
            .collect();
        let now = catalog.inner().clock.now();
        let mut kept: BTreeMap<DomainName, u32> = BTreeMap::new();
        let mut behind = Vec::new();
        for spare in spares {
            let leftover = match spare.state {
                SpareState::Discarding => true,
                SpareState::Claimed => match &spare.claimed_by {
                    Some(key) => {
                        let key = key.clone();
                        !catalog
                            .blocking(move |store| {
                                store.read(|tx| rows::still_provisioning(tx, &key))
                            })
                            .await?
                    }
                    None => true,
                },
                SpareState::Preparing => {
                    let age = now.as_micros() - spare.updated_at.as_micros();
                    let orphaned = cut_off_before.is_some_and(|t| spare.updated_at < t);
                    if orphaned || age > PREPARING_STALE.as_micros() as i64 {
                        true
                    } else {
                        *kept.entry(spare.domain.clone()).or_default() += 1;
                        false
                    }
                }
                SpareState::Ready => {
                    let have = kept.entry(spare.domain.clone()).or_default();
                    if *have >= wanted.get(&spare.domain).copied().unwrap_or(0) {
                        true
                    } else {
                        *have += 1;
                        if spare.schema_version < generation {
                            behind.push(spare.clone());
                        }
                        false
                    }
                }
            };
            if leftover {
                self.discard(&spare).await;
            }
        }
        for spare in behind {
            self.bring_up(&spare, generation, &collections).await;
        }
        for (domain, want) in wanted {
            let have = kept.get(&domain).copied().unwrap_or(0);
            for _ in have..want {
                if !self
                    .prepare(&domain, want, generation, &collections)
                    .await?
                {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Builds one more spare on `domain`; false when the domain has enough or cannot now.
    async fn prepare(
        &self,
        domain: &DomainName,
        want: u32,
        generation: i64,
        collections: &[Collection],
    ) -> Result<bool, Error> {
        let Ok(engine) = self.0.engine(domain) else {
            return Ok(false);
        };
        let (id, now) = (Incarnation::generate(), self.0.inner().clock.now());
        let (row_id, row_domain) = (id.clone(), domain.clone());
        let recorded = self
            .0
            .blocking(move |store| {
                store.write(|tx| {
                    rows::insert_preparing(tx, &row_id, &row_domain, want, generation, now)
                })
            })
            .await?;
        if !recorded {
            return Ok(false);
        }
        let prepared = engine
            .prepare_spare(&PlacementRef::spare(&id), collections)
            .await;
        let now = self.0.inner().clock.now();
        let ready = prepared.is_ok();
        let row_id = id.clone();
        self.0
            .blocking(move |store| {
                store.write(|tx| {
                    let to = if ready {
                        SpareState::Ready
                    } else {
                        SpareState::Discarding
                    };
                    rows::transition(tx, &row_id, SpareState::Preparing, to, None, now)
                })
            })
            .await?;
        match prepared {
            Ok(()) => {
                tracing::debug!(%domain, spare = %id, generation, "ready spare prepared");
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(%domain, error = %e, "could not prepare a ready spare");
                let row = SpareRow {
                    id,
                    domain: domain.clone(),
                    state: SpareState::Discarding,
                    schema_version: generation,
                    claimed_by: None,
                    updated_at: now,
                };
                self.discard(&row).await;
                Ok(false)
            }
        }
    }

    /// Brings a ready spare to schema `generation`. Its row says the older generation until
    /// its storage has the newer one, so no creation takes it meanwhile.
    async fn bring_up(&self, spare: &SpareRow, generation: i64, collections: &[Collection]) {
        let Ok(engine) = self.0.engine(&spare.domain) else {
            return;
        };
        // Not while a backup runs: its catalog has the spare at the older generation.
        let _no_backup = self.0.inner().backups.schema_change().await;
        if let Err(e) = engine
            .prepare_spare(&PlacementRef::spare(&spare.id), collections)
            .await
        {
            tracing::warn!(domain = %spare.domain, spare = %spare.id, error = %e, "could not bring a ready spare to the new schema; retrying");
            return;
        }
        let (id, now) = (spare.id.clone(), self.0.inner().clock.now());
        let recorded = self
            .0
            .blocking(move |store| store.write(|tx| rows::brought_up(tx, &id, generation, now)))
            .await;
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "could not record a ready spare's new schema");
        }
    }

    /// Removes a spare's storage and then its row. A spare still `ready` is first marked
    /// `discarding`, so no creation claims it meanwhile.
    async fn discard(&self, spare: &SpareRow) {
        let catalog = self.0;
        if spare.state == SpareState::Ready {
            let (id, now) = (spare.id.clone(), catalog.inner().clock.now());
            let marked = catalog
                .blocking(move |store| {
                    store.write(|tx| {
                        rows::transition(
                            tx,
                            &id,
                            SpareState::Ready,
                            SpareState::Discarding,
                            None,
                            now,
                        )
                    })
                })
                .await;
            if !matches!(marked, Ok(true)) {
                // Claimed meanwhile, or the catalog cannot be written: nothing to do now.
                return;
            }
        }
        let Ok(engine) = catalog.engine(&spare.domain) else {
            return;
        };
        let removal = catalog.inner().backups.removal().await;
        let discarded = engine.discard_spare(&PlacementRef::spare(&spare.id)).await;
        drop(removal);
        if let Err(e) = discarded {
            tracing::warn!(domain = %spare.domain, spare = %spare.id, error = %e, "could not remove a spare; retrying");
            return;
        }
        let id = spare.id.clone();
        if let Err(e) = catalog
            .blocking(move |store| store.write(|tx| rows::delete(tx, &id)))
            .await
        {
            tracing::warn!(error = %e, "could not forget a removed spare");
        }
    }
}
