//! Online backups: `POST /v1/backups` starts one (202), `GET /v1/backups/{id}` follows it.

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
