//! Security operations: findings (`GET /v1/findings`, `POST /v1/findings/{id}/acknowledge`)
//! and webhooks (`PUT/GET/DELETE /v1/webhooks/{name}`, `GET /v1/webhooks/{name}/deliveries`).

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bulkhead_api::{FindingQuery, WebhookSpec};
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, Json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/findings", get(list_findings))
        .route("/v1/findings/{id}/acknowledge", post(acknowledge))
        .route("/v1/webhooks", get(list_webhooks))
        .route(
            "/v1/webhooks/{name}",
            get(get_webhook).put(put_webhook).delete(delete_webhook),
        )
        .route("/v1/webhooks/{name}/deliveries", get(deliveries))
}

async fn list_findings(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<FindingQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    Ok(axum::Json(state.secops.list_findings(&ctx, &query).await?).into_response())
}

async fn acknowledge(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(state.secops.acknowledge_finding(&ctx, &id).await?).into_response())
}

async fn list_webhooks(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    let items = state.secops.list_webhooks(&ctx).await?;
    Ok(axum::Json(serde_json::json!({ "items": items })).into_response())
}

async fn get_webhook(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(state.secops.get_webhook(&ctx, &name).await?).into_response())
}

async fn put_webhook(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
    Json(spec): Json<WebhookSpec>,
) -> ApiResult<Response> {
    let (view, created) = state.secops.put_webhook(&ctx, &name, spec).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(view)).into_response())
}

async fn delete_webhook(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    state.secops.delete_webhook(&ctx, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    limit: Option<u32>,
}

async fn deliveries(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    let items = state
        .secops
        .webhook_deliveries(&ctx, &name, query.limit)
        .await?;
    Ok(axum::Json(serde_json::json!({ "items": items })).into_response())
}
