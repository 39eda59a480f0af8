//! Metering: `GET /v1/usage` (what each tenant used per hour or day, with its storage),
//! `GET /v1/usage/top` (the heaviest tenants by one measure) and `POST /v1/usage/storage`
//! (measure every tenant's storage now, or one tenant's with `?tenant=`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bulkhead_api::{
    CostQuery, CostReport, Page, QuotaView, StorageSampled, TopQuery, UsagePeriod, UsageQuery,
    UsageTop,
};
use bulkhead_core::TenantId;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, NamedTenant};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_usage))
        .routes(routes!(top))
        .routes(routes!(sample_storage))
        .routes(routes!(quota))
        .routes(routes!(costs))
}

#[utoipa::path(
    get, path = "/v1/usage", operation_id = "list_usage", tag = "usage", params(UsageQuery),
    responses((status = 200, description = "A page of tenant periods, newest period first", body = Page<UsagePeriod>))
)]
async fn list_usage(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    Ok(axum::Json(state.catalog.list_usage(&ctx, &query).await?).into_response())
}

#[utoipa::path(
    get, path = "/v1/usage/top", operation_id = "usage_top", tag = "usage", params(TopQuery),
    responses((status = 200, description = "The heaviest tenants, heaviest first", body = UsageTop))
)]
async fn top(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<TopQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    Ok(axum::Json(state.catalog.usage_top(&ctx, &query).await?).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SampleQuery {
    /// Only this tenant's storage (default: every tenant's).
    tenant: Option<TenantId>,
}

#[utoipa::path(
    post, path = "/v1/usage/storage", operation_id = "sample_storage", tag = "usage", params(SampleQuery),
    responses((status = 200, description = "Measured", body = StorageSampled))
)]
async fn sample_storage(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<SampleQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    let sampled = state
        .catalog
        .sample_storage_now(&ctx, query.tenant.as_ref())
        .await?;
    Ok(axum::Json(sampled).into_response())
}

/// A tenant's use of its storage quota: a tenant credential's own, or the tenant a platform
/// admin names with the `bulkhead-tenant` header.
#[utoipa::path(
    get, path = "/v1/quota", operation_id = "quota", tag = "usage",
    params(("Bulkhead-Tenant" = Option<TenantId>, Header, nullable = false, description = "The tenant, for a platform admin (a tenant credential's own tenant otherwise)")),
    responses((status = 200, description = "The tenant's use of its tier's storage quota", body = QuotaView))
)]
async fn quota(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    NamedTenant(named): NamedTenant,
) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.quota_view(&ctx, named.as_ref()).await?).into_response())
}

#[utoipa::path(
    get, path = "/v1/costs", operation_id = "cost_report", tag = "costs", params(CostQuery),
    responses((status = 200, description = "Costs, prices and margins over the window", body = CostReport))
)]
async fn costs(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<CostQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    Ok(axum::Json(state.catalog.cost_report(&ctx, &query).await?).into_response())
}
