//! Finishing in the background what a request or a crash left half-done with placements: a
//! collection change whose rollout could not reach every placement (a domain down, a crash, a
//! server started on a catalog with placements behind) is retried here with backoff until
//! every placement has it, and a tenant creation cut off in `provisioning` is finished.
//! Placements behind keep serving meanwhile with the definitions of their own generation
//! (`collections`), so nothing waits for this: not start-up, not requests.

use std::sync::Weak;
use std::time::Duration;

use bulkhead_core::error::Error;

use crate::{Catalog, Ctx, Inner};

mod run;

/// First wait after a failed attempt; doubled after each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often placements behind are looked for when nothing failed (a change made by another
/// server sharing the catalog, which stopped before finishing it).
const LOOK_EVERY: Duration = Duration::from_secs(10);

/// Runs the retrier for as long as the catalog lives; its first pass starts at once.
pub(crate) fn spawn(inner: Weak<Inner>, wake: std::sync::Arc<tokio::sync::Notify>) {
    crate::background::spawn(crate::background::Priority::Idle, async move {
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
                    // Rollouts whose last placements came up another way (a move's switch,
                    // another server's pass) end here.
                    if let Err(e) = catalog.record_pass(i64::MAX, None, 0, None).await {
                        tracing::warn!(error = %e, "could not close finished rollouts");
                    }
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
                crate::rows::rollouts::behind(tx, generation)
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

    /// A rollout as it stands (progress counted from the placements).
    pub(crate) async fn rollout_view(&self, id: &str) -> Result<bulkhead_api::RolloutView, Error> {
        let (id, now) = (id.to_owned(), self.inner().clock.now());
        let mut view = self
            .blocking(move |store| store.read(|tx| crate::rows::rollouts::read(tx, &id, now)))
            .await?
            .ok_or_else(|| Error::not_found("rollout_not_found", "rollout not found"))?;
        if view.state == "running" {
            view.pace = self.inner().rollout_pace.lock().clone().map(Box::new);
        }
        Ok(view)
    }

    /// `GET /v1/rollouts/{id}`.
    pub async fn get_rollout(
        &self,
        ctx: &Ctx,
        id: &str,
    ) -> Result<bulkhead_api::RolloutView, Error> {
        self.may_read_rollouts(ctx, "rollout.get", id)?;
        self.rollout_view(id).await
    }

    /// Rollouts are the platform's: platform credentials that may read the catalog.
    fn may_read_rollouts(&self, ctx: &Ctx, action: &str, target: &str) -> Result<(), Error> {
        bulkhead_core::access::authorize_control(
            &ctx.principal,
            bulkhead_core::access::ControlAction::ReadCatalog,
        )
        .map_err(|e| self.denied(ctx, action, target, None, e))
    }

    /// `GET /v1/rollouts`: the newest first, at most 100.
    pub async fn list_rollouts(
        &self,
        ctx: &Ctx,
    ) -> Result<bulkhead_api::Page<bulkhead_api::RolloutView>, Error> {
        self.may_read_rollouts(ctx, "rollout.list", "rollouts")?;
        let now = self.inner().clock.now();
        let items = self
            .blocking(move |store| store.read(|tx| crate::rows::rollouts::list(tx, 100, now)))
            .await?;
        Ok(bulkhead_api::Page {
            items,
            next_cursor: None,
        })
    }

    /// `POST /v1/rollouts/{id}/resume`: a stopped or cancelled rollout runs again.
    pub async fn resume_rollout(
        &self,
        ctx: &Ctx,
        id: &str,
    ) -> Result<bulkhead_api::RolloutView, Error> {
        self.steer_rollout(
            ctx,
            id,
            "rollout.resume",
            &["stopped", "cancelled"],
            "running",
        )
        .await
    }

    /// `POST /v1/rollouts/{id}/cancel`: a running or stopped rollout applies nothing more;
    /// placements left keep their definitions until a later change's rollout reaches them.
    pub async fn cancel_rollout(
        &self,
        ctx: &Ctx,
        id: &str,
    ) -> Result<bulkhead_api::RolloutView, Error> {
        self.steer_rollout(
            ctx,
            id,
            "rollout.cancel",
            &["running", "stopped"],
            "cancelled",
        )
        .await
    }

    async fn steer_rollout(
        &self,
        ctx: &Ctx,
        id: &str,
        action: &'static str,
        from: &'static [&'static str],
        to: &'static str,
    ) -> Result<bulkhead_api::RolloutView, Error> {
        bulkhead_core::access::authorize_control(
            &ctx.principal,
            bulkhead_core::access::ControlAction::ManageCollections,
        )
        .map_err(|e| self.denied(ctx, action, id, None, e))?;
        let current = self.rollout_view(id).await?;
        let event = self.event(ctx, action, id, None, None);
        let (key, now) = (id.to_owned(), self.inner().clock.now());
        let moved = self
            .blocking(move |store| {
                store.write(|tx| {
                    let moved = crate::rows::rollouts::transition(tx, &key, from, to, now)?;
                    if moved {
                        crate::rows::audit::insert(tx, &event)?;
                    }
                    Ok(moved)
                })
            })
            .await?;
        if !moved {
            return Err(Error::conflict(
                "rollout_state",
                format!(
                    "rollout {id} is {}; only a {} rollout can be {}",
                    current.state,
                    from.join(" or "),
                    if to == "running" {
                        "resumed"
                    } else {
                        "cancelled"
                    }
                ),
            ));
        }
        self.retry_rollout_soon();
        self.rollout_view(id).await
    }
}
