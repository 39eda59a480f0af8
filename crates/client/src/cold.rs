//! Retention and the cold archive, and the placement planner.

use bulkhead_api::{
    ArchiveListing, ArchiveRestored, RestoreArchive, RetentionRun, RunRetention, RunState,
};
use bulkhead_core::{CollectionName, TenantId};
use reqwest::Method;

use crate::{Client, ClientError, json_body};

impl Client {
    /// `GET /v1/tenants/{tenant}/archives`: the tenant's cold archive by collection and month.
    pub async fn list_archives(
        &self,
        tenant: &TenantId,
        collection: Option<&CollectionName>,
    ) -> Result<ArchiveListing, ClientError> {
        let url = self.url(
            &["v1", "tenants", tenant.as_str(), "archives"],
            &[("collection", collection.map(|c| c.as_str().to_owned()))],
        )?;
        self.call(Method::GET, url, None, None).await
    }

    /// `POST /v1/tenants/{tenant}/archives:restore`: brings a range back into the hot store.
    pub async fn restore_archive(
        &self,
        tenant: &TenantId,
        request: &RestoreArchive,
    ) -> Result<ArchiveRestored, ClientError> {
        let url = self.url(&["v1", "tenants", tenant.as_str(), "archives:restore"], &[])?;
        self.call(Method::POST, url, json_body(request)?, None)
            .await
    }

    /// `POST /v1/retention:run`: starts a retention pass now.
    pub async fn run_retention(&self, request: &RunRetention) -> Result<RetentionRun, ClientError> {
        let url = self.url(&["v1", "retention:run"], &[])?;
        self.call(Method::POST, url, json_body(request)?, None)
            .await
    }

    /// `GET /v1/retention/runs/{id}`: a pass's progress, or what it did.
    pub async fn retention_run(&self, id: &str) -> Result<RetentionRun, ClientError> {
        let url = self.url(&["v1", "retention", "runs", id], &[])?;
        self.call(Method::GET, url, None, None).await
    }

    /// Starts a pass and follows it to its end (every 200 ms); `on_progress` sees each view.
    pub async fn run_retention_to_end(
        &self,
        request: &RunRetention,
        mut on_progress: impl FnMut(&RetentionRun),
    ) -> Result<RetentionRun, ClientError> {
        let mut run = self.run_retention(request).await?;
        while run.state == RunState::Running {
            on_progress(&run);
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            run = self.retention_run(&run.id).await?;
        }
        on_progress(&run);
        Ok(run)
    }

    /// `GET /v1/placement/plan`: the moves the placement planner proposes.
    pub async fn placement_plan(
        &self,
        query: &bulkhead_api::PlanQuery,
    ) -> Result<bulkhead_api::PlacementPlan, ClientError> {
        let url = self.url(
            &["v1", "placement", "plan"],
            &[
                ("window_days", query.window_days.map(|d| d.to_string())),
                ("hold_hours", query.hold_hours.map(|h| h.to_string())),
            ],
        )?;
        self.call(Method::GET, url, None, None).await
    }
}
