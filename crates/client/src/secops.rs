//! Findings, webhooks and backups: the operations side.

use bulkhead_api::{Delivery, Finding, FindingQuery, FindingState, Page, WebhookSpec, WebhookView};
use reqwest::Method;
use serde::Deserialize;

use crate::{Client, ClientError, json_body};

#[derive(Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

impl Client {
    /// `GET /v1/findings`: one page, newest first.
    pub async fn list_findings(&self, query: &FindingQuery) -> Result<Page<Finding>, ClientError> {
        let state = query.state.map(|s| {
            match s {
                FindingState::Open => "open",
                FindingState::Acknowledged => "acknowledged",
            }
            .to_owned()
        });
        let url = self.url(
            &["v1", "findings"],
            &[
                ("state", state),
                ("kind", query.kind.map(|k| k.as_str().to_owned())),
                (
                    "tenant",
                    query.tenant.as_ref().map(|t| t.as_str().to_owned()),
                ),
                ("limit", query.limit.map(|l| l.to_string())),
                ("cursor", query.cursor.clone()),
            ],
        )?;
        self.call(Method::GET, url, None, None).await
    }

    /// `POST /v1/findings/{id}/acknowledge`.
    pub async fn acknowledge_finding(&self, id: &str) -> Result<Finding, ClientError> {
        let url = self.url(&["v1", "findings", id, "acknowledge"], &[])?;
        self.call(Method::POST, url, None, None).await
    }

    /// `PUT /v1/webhooks/{name}`: creates or changes it (a new one's made secret is in the
    /// answer, once).
    pub async fn put_webhook(
        &self,
        name: &str,
        spec: &WebhookSpec,
    ) -> Result<WebhookView, ClientError> {
        let url = self.url(&["v1", "webhooks", name], &[])?;
        self.call(Method::PUT, url, json_body(spec)?, None).await
    }

    /// `GET /v1/webhooks`.
    pub async fn list_webhooks(&self) -> Result<Vec<WebhookView>, ClientError> {
        let url = self.url(&["v1", "webhooks"], &[])?;
        let page: Items<WebhookView> = self.call(Method::GET, url, None, None).await?;
        Ok(page.items)
    }

    /// `GET /v1/webhooks/{name}`.
    pub async fn get_webhook(&self, name: &str) -> Result<WebhookView, ClientError> {
        let url = self.url(&["v1", "webhooks", name], &[])?;
        self.call(Method::GET, url, None, None).await
    }

    /// `DELETE /v1/webhooks/{name}`.
    pub async fn delete_webhook(&self, name: &str) -> Result<(), ClientError> {
        let url = self.url(&["v1", "webhooks", name], &[])?;
        self.send(Method::DELETE, url, None, None).await.map(drop)
    }

    /// `GET /v1/webhooks/{name}/deliveries`: the newest attempts first.
    pub async fn webhook_deliveries(
        &self,
        name: &str,
        limit: Option<u32>,
    ) -> Result<Vec<Delivery>, ClientError> {
        let url = self.url(
            &["v1", "webhooks", name, "deliveries"],
            &[("limit", limit.map(|l| l.to_string()))],
        )?;
        let page: Items<Delivery> = self.call(Method::GET, url, None, None).await?;
        Ok(page.items)
    }
}

impl Client {
    /// `POST /v1/backups`: starts an online backup into `dir` on the server's machine.
    pub async fn start_backup(&self, dir: &str) -> Result<bulkhead_api::BackupView, ClientError> {
        let url = self.url(&["v1", "backups"], &[])?;
        let body = bulkhead_api::StartBackup {
            dir: dir.to_owned(),
        };
        self.call(Method::POST, url, json_body(&body)?, None).await
    }

    /// `GET /v1/backups/{id}`.
    pub async fn get_backup(&self, id: &str) -> Result<bulkhead_api::BackupView, ClientError> {
        let url = self.url(&["v1", "backups", id], &[])?;
        self.call(Method::GET, url, None, None).await
    }
}

impl Client {
    /// `POST /v1/tenants/{tenant}/records:restore`: records written exactly as given.
    pub async fn restore_records(
        &self,
        tenant: &bulkhead_core::TenantId,
        request: &bulkhead_api::RestoreRecords,
    ) -> Result<bulkhead_api::RestoredRecords, ClientError> {
        let url = self.url(&["v1", "tenants", tenant.as_str(), "records:restore"], &[])?;
        self.call(Method::POST, url, json_body(request)?, None)
            .await
    }

    /// `GET /v1/collections/{c}/records:export`, each NDJSON line handed to `line` as it
    /// arrives (memory stays flat); returns the lines. An error the server reports
    /// mid-stream is returned as that error.
    pub async fn export_each(
        &self,
        collection: &bulkhead_core::CollectionName,
        filter: Option<&str>,
        mut line: impl FnMut(&[u8]) -> Result<(), ClientError>,
    ) -> Result<u64, ClientError> {
        let url = self.url(
            &["v1", "collections", collection.as_str(), "records:export"],
            &[("filter", filter.map(str::to_owned))],
        )?;
        self.stream_lines(Method::GET, url, &mut line).await
    }
}
