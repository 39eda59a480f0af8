//! Retention and the cold archive.

use bulkhead_api::{
    ArchiveListing, ArchiveRestored, RestoreArchive, RetentionReport, RunRetention,
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

    /// `POST /v1/retention:run`: a retention pass now.
    pub async fn run_retention(
        &self,
        request: &RunRetention,
    ) -> Result<RetentionReport, ClientError> {
        let url = self.url(&["v1", "retention:run"], &[])?;
        self.call(Method::POST, url, json_body(request)?, None)
            .await
    }
}
