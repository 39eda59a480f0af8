//! Retention and the cold archive: `GET /v1/tenants/{tenant}/archives` lists a tenant's
//! archive, `POST /v1/tenants/{tenant}/archives:restore` brings a range back, and `POST
//! /v1/retention:run` runs a retention pass now.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bulkhead_api::{RestoreArchive, RunRetention};
use bulkhead_core::{CollectionName, TenantId};
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, Json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{tenant}/archives", get(list))
        .route("/v1/tenants/{tenant}/archives:restore", post(restore))
        .route("/v1/retention:run", post(run))
        .route("/v1/retention/runs/{id}", get(run_progress))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    collection: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(params) = params.map_err(crate::routes::query_error)?;
    let tenant = TenantId::parse(&tenant)?;
    let collection = params
        .collection
        .as_deref()
        .map(CollectionName::parse)
        .transpose()?;
    let listing = bulkhead_cold::restore::list(&state.cold, &ctx, &tenant, collection).await?;
    Ok(axum::Json(listing).into_response())
}

async fn restore(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
    Json(body): Json<RestoreArchive>,
) -> ApiResult<Response> {
    let tenant = TenantId::parse(&tenant)?;
    let done = bulkhead_cold::restore::restore(&state.cold, &ctx, &tenant, body).await?;
    Ok(axum::Json(done).into_response())
}

async fn run(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Json(body): Json<RunRetention>,
) -> ApiResult<Response> {
    let run = bulkhead_cold::runs::run_now(&state.cold, &ctx, body).await?;
    Ok((axum::http::StatusCode::ACCEPTED, axum::Json(run)).into_response())
}

async fn run_progress(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(bulkhead_cold::runs::get_run(&state.cold, &ctx, &id)?).into_response())
}
