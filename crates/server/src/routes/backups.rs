//! The data lifecycle: `POST /v1/backups` starts an online backup (202), `GET
//! /v1/backups/{id}` follows it; `POST /v1/tenants/{tenant}/records:restore` writes records
//! exactly as given (a tenant archive's import).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bulkhead_api::{BackupView, RestoreRecords, RestoredRecords, StartBackup};
use bulkhead_core::TenantId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, Json};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(progress))
        .routes(routes!(restore))
}

#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/records:restore", operation_id = "restore_records", tag = "backups",
    params(("tenant" = TenantId, Path, description = "The tenant's id")),
    request_body = RestoreRecords,
    responses((status = 200, description = "Written as given", body = RestoredRecords))
)]
async fn restore(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
    Json(body): Json<RestoreRecords>,
) -> ApiResult<Response> {
    let tenant = TenantId::parse(&tenant)?;
    Ok(axum::Json(state.catalog.restore_records(&ctx, &tenant, body).await?).into_response())
}

#[utoipa::path(
    post, path = "/v1/backups", operation_id = "start_backup", tag = "backups",
    request_body = StartBackup,
    responses((status = 202, description = "The backup, started; follow it at `GET /v1/backups/{id}`", body = BackupView))
)]
async fn start(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Json(body): Json<StartBackup>,
) -> ApiResult<Response> {
    let view = state.catalog.start_backup(&ctx, body).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(view)).into_response())
}

#[utoipa::path(
    get, path = "/v1/backups/{id}", operation_id = "get_backup", tag = "backups",
    params(("id" = String, Path, description = "The backup's id")),
    responses((status = 200, description = "Where the backup stands", body = BackupView))
)]
async fn progress(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.get_backup(&ctx, &id).await?).into_response())
}
