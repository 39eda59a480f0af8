//! The audit log's hash chain: its check and its NDJSON export.

use bulkhead_api::{AuditExportQuery, AuditVerification};
use bulkhead_core::chain::Link;
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `GET /v1/audit/verify`: the chain checked from its anchor; with `head`, a published
    /// head the log must still hold.
    pub async fn verify_audit(
        &self,
        head: Option<&Link>,
    ) -> Result<AuditVerification, ClientError> {
        let url = self.url(
            &["v1", "audit", "verify"],
            &[("head", head.map(Link::to_string))],
        )?;
        self.call(Method::GET, url, None, None).await
    }

    /// `GET /v1/audit/export`: entries oldest first, one JSON object per line, written to
    /// `out` as they arrive; returns the lines written. An error the server reports
    /// mid-stream is returned as that error (the lines before it are written).
    pub async fn export_audit(
        &self,
        query: &AuditExportQuery,
        out: &mut impl std::io::Write,
    ) -> Result<u64, ClientError> {
        let url = self.url(
            &["v1", "audit", "export"],
            &[
                ("from", query.from.map(|t| t.to_rfc3339())),
                ("to", query.to.map(|t| t.to_rfc3339())),
            ],
        )?;
        let write = |e: std::io::Error| ClientError::Decode(format!("writing the export: {e}"));
        let lines = self
            .stream_lines(Method::GET, url, &mut |line| {
                out.write_all(line).map_err(write)?;
                out.write_all(b"\n").map_err(write)
            })
            .await?;
        out.flush().map_err(write)?;
        Ok(lines)
    }
}
