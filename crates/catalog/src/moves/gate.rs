//! The write gate: every write to a tenant passes its gate, which is how a move knows which
//! records changed while it copied, and how it holds writes for the moment of the switch.
//!
//! - A write enters the gate (a shared lock) before it resolves the tenant's route, and leaves
//!   after it has told the gate which records it touched. So when a move takes the gate
//!   exclusively, no write is in flight, and every write after it sees the new route.
//! - While a move tracks the tenant, the ids each write touched go into the journal, marked
//!   after the write finished (whatever its outcome). A copy or catch-up round that read a
//!   record before a write changed it will therefore find the id in a later round.
//! - A frozen gate queues writes; a write that waits longer than the bound gets `503
//!   tenant_moving` with `Retry-After`, and nothing of it was applied.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::{CollectionName, RecordId, TenantId};
use parking_lot::Mutex;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// Changed record ids per collection, since the journal was last drained.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    pub ids: HashMap<CollectionName, HashSet<RecordId>>,
}

impl Journal {
    pub fn len(&self) -> usize {
        self.ids.values().map(HashSet::len).sum()
    }
}

#[derive(Default)]
pub(crate) struct Gate {
    lock: Arc<RwLock<()>>,
    /// `Some` while a move this server runs tracks this tenant's writes.
    journal: Mutex<Option<Journal>>,
    /// Set when a write here could not journal its ids to the shared catalog while another
    /// server moved the tenant: this server then never acknowledges that move's freeze, so
    /// the move rolls back instead of switching without the write.
    pub poisoned: AtomicBool,
}

impl Gate {
    /// Starts recording touched ids. The caller then takes the gate once exclusively, so
    /// writes that began before tracking have finished before the copy starts.
    pub fn track(&self) {
        *self.journal.lock() = Some(Journal::default());
    }

    /// Stops recording (the move ended).
    pub fn untrack(&self) {
        *self.journal.lock() = None;
    }

    /// Takes the ids recorded so far, leaving an empty journal that keeps recording.
    pub fn drain(&self) -> Journal {
        self.journal
            .lock()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// True while a move this server runs tracks the tenant.
    pub fn tracking(&self) -> bool {
        self.journal.lock().is_some()
    }

    pub fn pending(&self) -> usize {
        self.journal.lock().as_ref().map_or(0, Journal::len)
    }

    /// Holds every write to the tenant; waits at most `wait` for writes in flight to finish.
    pub async fn freeze(&self, wait: Duration) -> Option<OwnedRwLockWriteGuard<()>> {
        tokio::time::timeout(wait, Arc::clone(&self.lock).write_owned())
            .await
            .ok()
    }

    fn touched<'a>(&self, collection: &CollectionName, ids: impl Iterator<Item = &'a RecordId>) {
        if let Some(journal) = self.journal.lock().as_mut() {
            let set = journal.ids.entry(collection.clone()).or_default();
            set.extend(ids.cloned());
        }
    }
}

/// Where a write journals the ids it touches while another server moves the tenant (the
/// shared catalog's journal, in `shared`).
#[async_trait::async_trait]
pub(crate) trait RemoteJournal: Send + Sync {
    async fn journal(&self, collection: &CollectionName, ids: Vec<String>) -> Result<(), Error>;

    /// The tenant whose writes it journals (for the log).
    fn tenant(&self) -> &TenantId;
}

/// A write's pass through the gate; hold it until the write has finished and the touched
/// ids are recorded.
pub(crate) struct WriteTicket {
    gate: Arc<Gate>,
    _guard: OwnedRwLockReadGuard<()>,
    remote: Option<Box<dyn RemoteJournal>>,
}

/// Attempts (and the pause between them) to journal a finished write's ids remotely.
const AFTER_ATTEMPTS: u32 = 5;
const AFTER_PAUSE: Duration = Duration::from_millis(200);

impl WriteTicket {
    /// Journals the ids a write is about to touch; an error means the write must not run.
    pub async fn before<'a>(
        &self,
        collection: &CollectionName,
        ids: impl Iterator<Item = &'a RecordId> + Clone,
    ) -> Result<(), Error> {
        self.gate.touched(collection, ids.clone());
        if let Some(remote) = &self.remote {
            remote.journal(collection, id_strings(ids)).await?;
        }
        Ok(())
    }

    /// Journals the ids a write touched, once it has finished (whether or not it succeeded).
    pub async fn after<'a>(
        &self,
        collection: &CollectionName,
        ids: impl Iterator<Item = &'a RecordId> + Clone,
    ) {
        self.gate.touched(collection, ids.clone());
        let Some(remote) = &self.remote else { return };
        for attempt in 1..=AFTER_ATTEMPTS {
            match remote.journal(collection, id_strings(ids.clone())).await {
                Ok(()) => return,
                Err(e) if attempt == AFTER_ATTEMPTS => {
                    tracing::error!(tenant = %remote.tenant(), error = %e, "a write's ids could not be journaled for the tenant's move; the move will roll back");
                    self.gate.poisoned.store(true, Ordering::Release);
                }
                Err(_) => tokio::time::sleep(AFTER_PAUSE).await,
            }
        }
    }

    /// True when a move run by this server tracks the tenant.
    pub fn tracked_here(&self) -> bool {
        self.gate.tracking()
    }

    /// From now on the write also journals to the shared catalog.
    pub fn journal_remotely(&mut self, remote: Box<dyn RemoteJournal>) {
        self.remote = Some(remote);
    }
}

/// The gates of the tenants this server has written to.
#[derive(Default)]
pub(crate) struct Gates {
    by_tenant: Mutex<HashMap<TenantId, Arc<Gate>>>,
}

pub(crate) fn tenant_moving(wait: Duration) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "tenant_moving",
        format!(
            "writes to this tenant are held while it switches placement, and this one waited {} ms; \
             nothing was applied, retry it",
            wait.as_millis()
        ),
    )
}

impl Gates {
    pub fn get(&self, tenant: &TenantId) -> Arc<Gate> {
        Arc::clone(self.by_tenant.lock().entry(tenant.clone()).or_default())
    }

    /// Enters the tenant's gate for one write, waiting at most `wait` while it is frozen.
    pub async fn enter(&self, tenant: &TenantId, wait: Duration) -> Result<WriteTicket, Error> {
        let gate = self.get(tenant);
        let lock = Arc::clone(&gate.lock);
        let guard = match Arc::clone(&lock).try_read_owned() {
            Ok(guard) => guard,
            Err(_) => tokio::time::timeout(wait, lock.read_owned())
                .await
                .map_err(|_| tenant_moving(wait))?,
        };
        Ok(WriteTicket {
            gate,
            _guard: guard,
            remote: None,
        })
    }
}

/// Ids touched by a write, as journal text.
pub(crate) fn id_strings<'a>(ids: impl Iterator<Item = &'a RecordId>) -> Vec<String> {
    let set: HashSet<&str> = ids.map(RecordId::as_str).collect();
    set.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[tokio::test]
    async fn journal_records_only_while_tracking_and_drain_keeps_recording() {
        let gates = Gates::default();
        let c = CollectionName::parse("items").unwrap();
        let a = RecordId::parse("a1").unwrap();
        gates
            .enter(&tenant(), Duration::from_secs(1))
            .await
            .unwrap()
            .before(&c, [&a].into_iter())
            .await
            .unwrap();
        let gate = gates.get(&tenant());
        assert_eq!(gate.pending(), 0, "nothing recorded before tracking");
        gate.track();
        gates
            .enter(&tenant(), Duration::from_secs(1))
            .await
            .unwrap()
            .before(&c, [&a].into_iter())
            .await
            .unwrap();
        assert_eq!(gate.drain().len(), 1);
        assert_eq!(gate.pending(), 0);
        gates
            .enter(&tenant(), Duration::from_secs(1))
            .await
            .unwrap()
            .before(&c, [&a].into_iter())
            .await
            .unwrap();
        assert_eq!(gate.pending(), 1, "still recording after a drain");
        gate.untrack();
        assert_eq!(gate.pending(), 0);
    }

    #[tokio::test]
    async fn a_frozen_gate_holds_writes_then_times_them_out_or_releases_them() {
        let gates = Arc::new(Gates::default());
        let gate = gates.get(&tenant());
        let frozen = gate
            .freeze(Duration::from_secs(1))
            .await
            .expect("free gate");
        let err = gates
            .enter(&tenant(), Duration::from_millis(50))
            .await
            .err()
            .expect("held past the bound");
        assert_eq!(err.code, "tenant_moving");
        assert_eq!(err.kind.status(), 503);
        let waiting = {
            let gates = Arc::clone(&gates);
            tokio::spawn(
                async move { gates.enter(&tenant(), Duration::from_secs(5)).await.is_ok() },
            )
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(frozen);
        assert!(waiting.await.unwrap(), "released when the freeze ends");
    }

    #[tokio::test]
    async fn freezing_waits_for_writes_in_flight() {
        let gates = Gates::default();
        let ticket = gates
            .enter(&tenant(), Duration::from_secs(1))
            .await
            .unwrap();
        let gate = gates.get(&tenant());
        assert!(gate.freeze(Duration::from_millis(30)).await.is_none());
        drop(ticket);
        assert!(gate.freeze(Duration::from_millis(30)).await.is_some());
    }
}
