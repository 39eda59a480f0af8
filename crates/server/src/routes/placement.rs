//! The placement planner: `GET /v1/placement/plan?window_days=` proposes live moves from
//! each tenant's load (`bulkhead-planner`).

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bulkhead_api::PlanQuery;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::Auth;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/placement/plan", get(plan))
}

async fn plan(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<PlanQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    let plan = bulkhead_planner::plan(&state.catalog, &ctx, &query).await?;
    Ok(axum::Json(plan).into_response())
}
