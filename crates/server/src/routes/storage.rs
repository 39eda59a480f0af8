//! Storage health: `GET /v1/doctor` lists tenant storage no live tenant incarnation owns;
//! `POST /v1/doctor/clean` removes it (platform admins; each removal audited).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bulkhead_api::DoctorReport;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::Auth;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(inspect))
        .routes(routes!(clean))
}

#[utoipa::path(
    get, path = "/v1/doctor", operation_id = "doctor", tag = "doctor",
    responses((status = 200, description = "Tenant storage no live tenant incarnation owns", body = DoctorReport))
)]
async fn inspect(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.doctor(&ctx, false).await?).into_response())
}

#[utoipa::path(
    post, path = "/v1/doctor/clean", operation_id = "doctor_clean", tag = "doctor",
    responses((status = 200, description = "What was found, and how many were removed", body = DoctorReport))
)]
async fn clean(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.doctor(&ctx, true).await?).into_response())
}
