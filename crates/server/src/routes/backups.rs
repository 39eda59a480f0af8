//! The data lifecycle: `POST /v1/backups` starts an online backup (202), `GET
//! /v1/backups/{id}` follows it; `POST /v1/tenants/{tenant}/records:restore` writes records
//! exactly as given (a tenant archive's import).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bulkhead_api::StartBackup;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, Json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/backups", post(start))
        .route("/v1/backups/{id}", get(progress))
        .route("/v1/tenants/{tenant}/records:restore", post(restore))
}

async fn restore(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
    Json(body): Json<bulkhead_api::RestoreRecords>,
) -> ApiResult<Response> {
    let tenant = bulkhead_core::TenantId::parse(&tenant)?;
    Ok(axum::Json(state.catalog.restore_records(&ctx, &tenant, body).await?).into_response())
}

async fn start(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Json(body): Json<StartBackup>,
) -> ApiResult<Response> {
    let view = state.catalog.start_backup(&ctx, body).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(view)).into_response())
}

async fn progress(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.get_backup(&ctx, &id).await?).into_response())
}
