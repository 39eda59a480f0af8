//! A running retention pass's entry in the server's list of runs (`Cold::runs`): what the
//! pass has done so far, as `GET /v1/retention/runs/{id}` shows it.

use bulkhead_api::{RetentionReport, RetentionRun};

use crate::Cold;

/// A running pass's entry in `Cold::runs`.
pub(crate) struct Progress(pub(crate) String);

impl Progress {
    pub(crate) fn update(
        &self,
        cold: &Cold,
        f: impl FnOnce(&mut RetentionRun),
    ) -> Option<RetentionRun> {
        let mut runs = cold.runs.lock();
        let run = runs.iter_mut().find(|r| r.id == self.0)?;
        f(run);
        Some(run.clone())
    }

    pub(crate) fn report(&self, cold: &Cold, f: impl FnOnce(&mut RetentionReport)) {
        self.update(cold, |run| f(&mut run.report));
    }
}
