//! Retention and the cold archive: `GET /v1/tenants/{tenant}/archives` lists a tenant's
//! archive, `POST /v1/tenants/{tenant}/archives:restore` brings a range back, and `POST
//! /v1/retention:run` runs a retention pass now.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bulkhead_api::{ArchiveListing, ArchiveRestored, RestoreArchive, RetentionRun, RunRetention};
use bulkhead_core::{CollectionName, TenantId};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, Json};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(restore))
        .routes(routes!(run))
        .routes(routes!(run_progress))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListParams {
    /// One collection's archive.
    #[param(value_type = Option<CollectionName>)]
    collection: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/archives", operation_id = "list_archives", tag = "archives",
    params(("tenant" = TenantId, Path, description = "The tenant's id"), ListParams),
    responses((status = 200, description = "The tenant's cold archive, by collection and month", body = ArchiveListing))
)]
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

#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/archives:restore", operation_id = "restore_archive", tag = "archives",
    params(("tenant" = TenantId, Path, description = "The tenant's id")),
    request_body = RestoreArchive,
    responses((status = 200, description = "The range, back in the hot store", body = ArchiveRestored))
)]
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

#[utoipa::path(
    post, path = "/v1/retention:run", operation_id = "run_retention", tag = "retention",
    request_body = RunRetention,
    responses((status = 202, description = "The pass, started; follow it at `GET /v1/retention/runs/{id}`", body = RetentionRun))
)]
async fn run(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Json(body): Json<RunRetention>,
) -> ApiResult<Response> {
    let run = bulkhead_cold::runs::run_now(&state.cold, &ctx, body).await?;
    Ok((axum::http::StatusCode::ACCEPTED, axum::Json(run)).into_response())
}

#[utoipa::path(
    get, path = "/v1/retention/runs/{id}", operation_id = "get_retention_run", tag = "retention",
    params(("id" = String, Path, description = "The retention run's id")),
    responses((status = 200, description = "Where the pass stands", body = RetentionRun))
)]
async fn run_progress(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(bulkhead_cold::runs::get_run(&state.cold, &ctx, &id)?).into_response())
}
