//! Storage health: `GET /v1/doctor` lists tenant storage no live tenant incarnation owns;
//! `POST /v1/doctor/clean` removes it (platform admins; each removal audited).

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::Auth;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/doctor", get(inspect))
        .route("/v1/doctor/clean", post(clean))
}

async fn inspect(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.doctor(&ctx, false).await?).into_response())
}

async fn clean(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.doctor(&ctx, true).await?).into_response())
}
