//! The audit log: its entries (`GET /v1/audit`), its hash chain's check
//! (`GET /v1/audit/verify`) and an NDJSON export that verifies offline
//! (`GET /v1/audit/export`). Platform admins and operators.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bulkhead_api::{
    AuditEntry, AuditExportQuery, AuditQuery, AuditVerification, AuditVerifyQuery, Page,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::Auth;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(verify_audit))
        .routes(routes!(export_audit))
}

#[utoipa::path(
    get, path = "/v1/audit", operation_id = "list_audit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "A page of entries, newest first", body = Page<AuditEntry>))
)]
async fn list_audit(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    Ok(axum::Json(state.catalog.list_audit(&ctx, &query).await?).into_response())
}

#[utoipa::path(
    get, path = "/v1/audit/verify", operation_id = "verify_audit", tag = "audit", params(AuditVerifyQuery),
    responses((status = 200, description = "The chain, walked from its anchor", body = AuditVerification))
)]
async fn verify_audit(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<AuditVerifyQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    Ok(axum::Json(state.catalog.verify_audit(&ctx, &query).await?).into_response())
}

fn ndjson(entries: &[AuditEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        // Serialising an entry cannot fail.
        let _ = serde_json::to_writer(&mut out, entry);
        out.push(b'\n');
    }
    out
}

/// Entries oldest first, one JSON object per line, with their hashes. The first page is
/// read before answering (a refusal is a plain error); an error later ends the stream with
/// one `{"error": {...}}` line, which offline verification rejects.
#[utoipa::path(
    get, path = "/v1/audit/export", operation_id = "export_audit", tag = "audit", params(AuditExportQuery),
    responses((
        status = 200,
        description = "NDJSON: one entry per line, oldest first, with its hashes. An error \
                       after the first page ends the stream with one line holding an \
                       `ErrorBody`.",
        content_type = "application/x-ndjson",
        body = AuditEntry,
    ))
)]
async fn export_audit(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<AuditExportQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    let (first, next) = state.catalog.export_audit_page(&ctx, &query, None).await?;
    let pages =
        futures_util::stream::unfold((Some(ndjson(&first)), next), move |(ready, after)| {
            let (catalog, ctx, query) = (state.catalog.clone(), ctx.clone(), query.clone());
            async move {
                if let Some(chunk) = ready {
                    return Some((Ok::<_, std::convert::Infallible>(chunk), (None, after)));
                }
                let after = after?;
                match catalog.export_audit_page(&ctx, &query, Some(after)).await {
                    Ok((entries, next)) => Some((Ok(ndjson(&entries)), (None, next))),
                    Err(e) => {
                        let line = serde_json::json!({"error": {
                            "code": e.code, "message": e.message, "request_id": ctx.request_id,
                            "status": e.kind.status(),
                        }});
                        Some((Ok(format!("{line}\n").into_bytes()), (None, None)))
                    }
                }
            }
        });
    // Fused, as the records export: gzip polls an ended body again.
    let mut response =
        axum::body::Body::from_stream(futures_util::StreamExt::fuse(pages)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}
