//! How a move ends: the cleaning after its switch (the source removed, the move done) or its
//! rollback before it (the target removed, the source open for writes again), retried until
//! it succeeds when storage fails on the way.

use std::time::Duration;

use bulkhead_core::error::Error;
use bulkhead_core::model::TenantStatus;
use serde_json::json;

use super::{MoveRow, read_move};
use crate::Catalog;
use crate::rows::tenants::{next_epoch, read_tenant};
use crate::store::params;

/// The first and the longest wait between attempts to end a move whose storage failed.
const END_RETRY_FIRST: Duration = Duration::from_millis(200);
const END_RETRY_MAX: Duration = Duration::from_secs(15);

impl Catalog {
    /// Runs `end` (a rollback or the cleaning after a switch) until it succeeds, waiting
    /// longer between attempts (up to [`END_RETRY_MAX`]).
    pub(super) async fn until_ended<F, Fut>(&self, id: &str, mut end: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), Error>>,
    {
        let mut wait = END_RETRY_FIRST;
        while let Err(e) = end().await {
            tracing::error!(r#move = %id, error = %e, retry_in = ?wait, "could not end the move; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(END_RETRY_MAX);
        }
    }

    /// After the switch: removes the source placement and ends the move.
    pub(crate) async fn clean_source(&self, row: &MoveRow) -> Result<(), Error> {
        let _removal = self.inner().backups.removal().await;
        self.engine(&row.source.domain)?
            .destroy(&self.inner().move_authority.demolish_source(row))
            .await?;
        let now = self.inner().clock.now();
        let event = self.move_event(
            row,
            "move.done",
            json!({"move": row.id, "freeze_ms": row.freeze_ms}),
        );
        let id = row.id.clone();
        self.blocking(move |store| {
            store.write(|tx| {
                let ended = tx.execute(
                    "UPDATE moves SET phase = 'done', updated_at = ?2 WHERE id = ?1 AND phase <> 'done'",
                    params![&id, now.as_micros()],
                )?;
                // Once: an earlier attempt may have committed with its answer lost.
                if ended == 0 {
                    return Ok(());
                }
                crate::rows::audit::insert(tx, &event)
            })
        })
        .await
    }

    /// Before the switch: removes the target, reopens the source for writes, ends the move.
    pub(crate) async fn roll_back(&self, row: &MoveRow, why: &str) -> Result<(), Error> {
        // Stop tracking first, so a new move of this tenant starts with a fresh journal.
        self.inner().moves.gates.get(&row.tenant).untrack();
        let _removal = self.inner().backups.removal().await;
        if let Err(e) = self
            .engine(&row.target.domain)?
            .destroy(&self.inner().move_authority.demolish_target(row))
            .await
        {
            tracing::error!(r#move = %row.id, error = %e, "could not remove the move's target placement");
        }
        let now = self.inner().clock.now();
        let event = self.move_event(
            row,
            "move.rolled_back",
            json!({"move": row.id, "phase": row.phase, "error": why}),
        );
        let (id, tenant, why) = (row.id.clone(), row.tenant.clone(), why.to_owned());
        let source_life = row.source.incarnation.clone();
        let me = self.server_id().to_owned();
        self.blocking(move |store| {
            store.write(|tx| {
                if !Catalog::runs_move(tx, &id, &me)? {
                    // Adopted by another server, which ends it.
                    return Ok(());
                }
                // Only the move still in force may touch the routing entry.
                let current = read_move(tx, &id)?;
                if current.as_ref().is_some_and(|m| m.phase.is_final()) {
                    // Ended already (an earlier attempt committed, but its answer was lost).
                    return Ok(());
                }
                forget_move_state(tx, &id, &tenant)?;
                if current.is_some_and(|m| !m.phase.is_switched() && !m.phase.is_final())
                    && let Some((t, _)) = read_tenant(tx, &tenant)?
                        .filter(|(_, p)| p.incarnation == source_life)
                {
                    tx.execute(
                        "UPDATE placements SET write_state = 'open', epoch = ?2 WHERE tenant_id = ?1",
                        params![tenant.as_str(), next_epoch(tx)?],
                    )?;
                    if t.status == TenantStatus::Moving {
                        tx.execute("UPDATE tenants SET status = 'active', updated_at = ?2 WHERE id = ?1", params![tenant.as_str(), now.as_micros()])?;
                    }
                    crate::store::changed(tx, "route", tenant.as_str())?;
                }
                tx.execute(
                    "UPDATE moves SET phase = 'rolled_back', error = ?2, updated_at = ?3 WHERE id = ?1",
                    params![&id, &why, now.as_micros()],
                )?;
                crate::rows::audit::insert(tx, &event)
            })
        })
        .await?;
        self.load_tenant(&row.tenant).await?;
        Ok(())
    }
}

/// Drops what servers exchanged about the move (shared catalog): its acknowledgements and
/// the tenant's remote journal.
pub(super) fn forget_move_state(
    tx: &dyn crate::store::Tx,
    move_id: &str,
    tenant: &bulkhead_core::TenantId,
) -> crate::store::StoreResult<()> {
    if tx.shared() {
        tx.execute("DELETE FROM move_acks WHERE move_id = ?1", params![move_id])?;
        tx.execute(
            "DELETE FROM move_journal WHERE tenant_id = ?1",
            params![tenant.as_str()],
        )?;
    }
    Ok(())
}
