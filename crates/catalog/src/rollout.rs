//! Finishing in the background what a request or a crash left half-done with placements: a
//! collection change whose rollout could not reach every placement (a domain down, a crash, a
//! server started on a catalog with placements behind) is retried here with backoff until
//! every placement has it, and a tenant creation cut off in `provisioning` is finished.
//! Placements behind keep serving meanwhile with the definitions of their own generation
//! (`collections`), so nothing waits for this: not start-up, not requests.

use std::sync::Weak;
use std::time::Duration;

use bulkhead_core::error::Error;

use crate::store::params;
use crate::{Catalog, Inner};

/// First wait after a failed attempt; doubled after each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often placements behind are looked for when nothing failed (a change made by another
/// server sharing the catalog, which stopped before finishing it).
const LOOK_EVERY: Duration = Duration::from_secs(10);

/// Runs the retrier for as long as the catalog lives; its first pass starts at once.
pub(crate) fn spawn(inner: Weak<Inner>, wake: std::sync::Arc<tokio::sync::Notify>) {
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let catalog = Catalog { inner: strong };
            if catalog.provisioning_waits().await.unwrap_or(false)
                && let Err(e) = catalog.resume_stalled_provisioning().await
            {
                tracing::warn!(error = %e, "could not resume interrupted creations; retrying");
            }
            let wait = match catalog.placements_behind().await {
                Ok(0) => {
                    backoff = FIRST_BACKOFF;
                    LOOK_EVERY
                }
                Ok(behind) => match catalog.rollout_pending().await {
                    Ok(()) => {
                        tracing::info!(
                            placements = behind,
                            "schema rollout finished in the background"
                        );
                        backoff = FIRST_BACKOFF;
                        LOOK_EVERY
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, code = %e.code, retry_in = ?backoff, "schema rollout incomplete; retrying");
                        let wait = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        wait
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "could not count placements behind; retrying");
                    backoff
                }
            };
            drop(catalog);
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    });
}

impl Catalog {
    /// Live placements whose tables are behind the catalog's schema generation (a moving
    /// tenant's placement waits for its move: the move brings its target up to date).
    pub async fn placements_behind(&self) -> Result<i64, Error> {
        self.placements_behind_of(i64::MAX).await
    }

    /// Live placements behind `generation` (or the catalog's, when that is older).
    pub(crate) async fn placements_behind_of(&self, generation: i64) -> Result<i64, Error> {
        self.blocking(move |store| {
            store.read(|tx| {
                let generation = crate::rows::collections::generation(tx)?.min(generation);
                tx.query_one(
                    "SELECT count(*) FROM placements p JOIN tenants t ON t.id = p.tenant_id \
                     WHERE p.schema_version < ?1 AND t.status NOT IN ('provisioning', 'deleting') \
                     AND t.id NOT IN (SELECT tenant_id FROM moves WHERE phase NOT IN ('done', 'rolled_back'))",
                    params![generation],
                )?
                .get::<i64>(0)
            })
        })
        .await
    }

    /// True when some tenant is still `provisioning` (a creation in progress, or one cut off).
    async fn provisioning_waits(&self) -> Result<bool, Error> {
        self.blocking(|store| {
            store.read(|tx| {
                Ok(tx
                    .query_opt(
                        "SELECT 1 FROM tenants WHERE status = 'provisioning' LIMIT 1",
                        &[],
                    )?
                    .is_some())
            })
        })
        .await
    }

    /// Asks the retrier for a pass now (a change could not reach every placement).
    pub(crate) fn retry_rollout_soon(&self) {
        self.inner().rollout_wake.notify_one();
    }
}
