//! The catch-up: syncing the ids the tenant's writers touched since the copy (or the last
//! round) from the source to the target, at normal priority, until few are left.

use std::sync::Arc;
use std::time::Instant;

use bulkhead_core::RecordId;
use bulkhead_core::error::Error;
use bulkhead_core::schema::Collection;

use super::Live;
use super::copy::{self, Sides};
use super::gate::{Gate, Journal};
use crate::Catalog;
use crate::background::Lane;

/// Catch-up rounds stop once fewer ids than this are pending (the rest waits for the freeze).
const SMALL_ENOUGH: usize = 500;
/// Rounds at most, however they go.
const MAX_ROUNDS: usize = 50;
/// Rounds in a row that did not shrink the backlog before the catch-up gives way to the freeze.
const STALLED_ROUNDS: u32 = 3;

/// Whether catch-up rounds still get smaller: a round counts as progress when it synced at
/// most three quarters of the smallest round so far.
#[derive(Debug, Default)]
struct Convergence {
    smallest: Option<usize>,
    stalled: u32,
}

impl Convergence {
    /// Records a round of `n` ids; false once `STALLED_ROUNDS` rounds in a row did not shrink.
    fn shrinking(&mut self, n: usize) -> bool {
        match self.smallest {
            Some(best) if n * 4 > best * 3 => self.stalled += 1,
            _ => {
                self.smallest = Some(n);
                self.stalled = 0;
            }
        }
        self.stalled < STALLED_ROUNDS
    }
}

/// Journaled ids to sync, by collection.
pub(super) type JournalWork = Vec<(Arc<Collection>, Vec<RecordId>)>;

impl Catalog {
    /// The journal's ids by collection.
    pub(super) fn journal_work(
        &self,
        sides: &Sides,
        journal: Journal,
    ) -> Result<JournalWork, Error> {
        journal
            .ids
            .into_iter()
            .map(|(name, ids)| {
                let c = sides.defs.iter().find(|c| c.name == name).ok_or_else(|| {
                    tracing::error!(collection = %name, "a write to a collection the moving placement does not have");
                    Error::internal()
                })?;
                Ok((Arc::clone(c), ids.into_iter().collect()))
            })
            .collect()
    }

    /// Makes the target match the source for every id in `journal`, at normal priority: it
    /// races the tenant's writers.
    pub(super) async fn sync_journal(
        &self,
        lane: &Lane,
        sides: &Sides,
        journal: Journal,
    ) -> Result<(), Error> {
        let work = self.journal_work(sides, journal)?;
        let (catalog, sides) = (self.clone(), sides.clone());
        lane.normal(async move {
            for (c, ids) in &work {
                copy::sync_ids(&catalog, &sides, c, ids).await?;
            }
            Ok(())
        })
        .await
    }

    /// Syncs journaled ids until few are left. Stops early when the rounds stop shrinking
    /// (the tenant's writers keep pace with the sync, so more rounds would not get smaller):
    /// the freeze then syncs what is left while writes are held.
    pub(super) async fn catch_up(
        &self,
        lane: &Lane,
        sides: &Sides,
        gate: &Gate,
        tenant: &bulkhead_core::TenantId,
        live: &Live,
    ) -> Result<(), Error> {
        let mut progress = Convergence::default();
        for _ in 0..MAX_ROUNDS {
            Catalog::check_cancel(live)?;
            let journal = self.drain_journal(gate, tenant).await?;
            let n = journal.len();
            let started = Instant::now();
            self.sync_journal(lane, sides, journal).await?;
            tracing::debug!(%tenant, synced = n, ms = started.elapsed().as_millis() as u64, "catch-up round");
            if n < SMALL_ENOUGH && gate.pending() < SMALL_ENOUGH {
                break;
            }
            if !progress.shrinking(n) {
                tracing::info!(%tenant, synced = n, "catch-up no longer shrinks; the freeze takes the rest");
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Convergence;

    #[test]
    fn catch_up_stops_once_rounds_stop_shrinking() {
        let mut c = Convergence::default();
        assert!(c.shrinking(10_000));
        assert!(c.shrinking(5_000), "halved");
        assert!(c.shrinking(4_000), "not a quarter smaller: stalled once");
        assert!(c.shrinking(5_200), "stalled twice");
        assert!(
            !c.shrinking(4_100),
            "three rounds in a row without shrinking"
        );

        let mut c = Convergence::default();
        for n in [8_000, 5_000, 4_500, 3_000, 2_900, 2_000, 1_400, 1_000] {
            assert!(c.shrinking(n), "shrinking now and then is progress ({n})");
        }
    }
}
