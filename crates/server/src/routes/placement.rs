//! The placement planner: `GET /v1/placement/plan?window_days=` proposes live moves from
//! each tenant's load (`bulkhead-planner`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bulkhead_api::{PlacementPlan, PlanQuery};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::Auth;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(plan))
}

#[utoipa::path(
    get, path = "/v1/placement/plan", operation_id = "placement_plan", tag = "placement", params(PlanQuery),
    responses((status = 200, description = "The moves proposed (none is started), and each domain's load before and after", body = PlacementPlan))
)]
async fn plan(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<PlanQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    let plan = bulkhead_planner::plan(&state.catalog, &ctx, &query).await?;
    Ok(axum::Json(plan).into_response())
}
