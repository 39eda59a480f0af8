//! Metering: `GET /v1/usage` (what each tenant used per hour or day, with its storage),
//! `GET /v1/usage/top` (the heaviest tenants by one measure) and `POST /v1/usage/storage`
//! (measure every tenant's storage now, or one tenant's with `?tenant=`).

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bulkhead_api::{CostQuery, TopQuery, UsageQuery};
use bulkhead_core::TenantId;
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, NamedTenant};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/usage", get(list_usage))
        .route("/v1/usage/top", get(top))
        .route("/v1/usage/storage", post(sample_storage))
        .route("/v1/quota", get(quota))
        .route("/v1/costs", get(costs))
}

async fn list_usage(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    Ok(axum::Json(state.catalog.list_usage(&ctx, &query).await?).into_response())
}

async fn top(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<TopQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    Ok(axum::Json(state.catalog.usage_top(&ctx, &query).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleQuery {
    tenant: Option<TenantId>,
}

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
async fn quota(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    NamedTenant(named): NamedTenant,
) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.quota_view(&ctx, named.as_ref()).await?).into_response())
}

async fn costs(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<CostQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    Ok(axum::Json(state.catalog.cost_report(&ctx, &query).await?).into_response())
}
