//! Readiness details: what does not work right now while the rest of the server is served
//! (`/readyz` answers `degraded` with these).

use bulkhead_core::error::Error;

use crate::Catalog;
use crate::store::params;

impl Catalog {
    /// What does not work right now while the rest is served (`/readyz`): domains whose
    /// engine is not open here, and tenants whose interrupted provisioning or deletion waits.
    /// The catalog schema's version: its newest migration applied.
    pub fn schema_version(&self) -> i64 {
        self.inner().store.schema().version
    }

    pub async fn problems(&self) -> Result<Vec<String>, Error> {
        // Waiting: in that state for more than a few seconds (a creation or deletion in
        // progress is not a problem).
        let before = self.inner().clock.now().as_micros() - 5_000_000;
        let (domains, waiting) = self
            .blocking(move |store| {
                store.read(|tx| {
                    let domains = crate::rows::domains::read_domains(tx)?;
                    let rows = tx.query(
                        "SELECT id, status FROM tenants WHERE status IN ('provisioning', 'deleting') \
                         AND updated_at < ?1 ORDER BY id LIMIT 20",
                        params![before],
                    )?;
                    let waiting = rows
                        .iter()
                        .map(|r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)))
                        .collect::<crate::store::StoreResult<Vec<_>>>()?;
                    Ok((domains, waiting))
                })
            })
            .await?;
        let mut problems: Vec<String> = domains
            .into_iter()
            .filter(|(name, _)| !self.inner().engines.contains(name))
            .map(|(name, _)| format!("domain {name} is unavailable"))
            .collect();
        problems.extend(
            waiting
                .into_iter()
                .map(|(id, status)| format!("tenant {id} waits in {status}")),
        );
        let behind = self.placements_behind().await?;
        if behind > 0 {
            problems.push(format!(
                "{behind} placements wait for a schema rollout (served with their previous definitions; retried in the background)"
            ));
        }
        Ok(problems)
    }
}
