//! The audit log's hash chain: its check and its NDJSON export.

use bulkhead_api::{AuditExportQuery, AuditVerification};
use bulkhead_core::chain::Link;
use reqwest::Method;

use bulkhead_api::REQUEST_ID_HEADER;

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
        let mut response = self
            .request(Method::GET, url)
            .send()
            .await
            .map_err(|e| ClientError::transport(&e))?;
        let status = response.status();
        let request_id = response
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if !status.is_success() {
            let body = response
                .bytes()
                .await
                .map_err(|e| ClientError::transport(&e))?;
            return Err(ClientError::from_response(
                status.as_u16(),
                &body,
                request_id.as_deref(),
            ));
        }
        let write = |e: std::io::Error| ClientError::Decode(format!("writing the export: {e}"));
        let mut pending = Vec::new();
        let mut lines = 0;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ClientError::transport(&e))?
        {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if line.starts_with(b"{\"error\"") {
                    return Err(ClientError::from_response(
                        500,
                        &line,
                        request_id.as_deref(),
                    ));
                }
                out.write_all(&line).map_err(write)?;
                lines += 1;
            }
        }
        out.flush().map_err(write)?;
        Ok(lines)
    }
}
