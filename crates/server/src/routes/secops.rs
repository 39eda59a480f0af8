//! Security operations: findings (`GET /v1/findings`, `POST /v1/findings/{id}/acknowledge`)
//! and webhooks (`PUT/GET/DELETE /v1/webhooks/{name}`, `GET /v1/webhooks/{name}/deliveries`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bulkhead_api::{Delivery, Finding, FindingQuery, Page, WebhookSpec, WebhookView};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, Json};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_findings))
        .routes(routes!(acknowledge))
        .routes(routes!(list_webhooks))
        .routes(routes!(get_webhook, put_webhook, delete_webhook))
        .routes(routes!(deliveries))
}

/// `GET /v1/webhooks`: every webhook, in one answer.
#[derive(Serialize, utoipa::ToSchema)]
struct WebhookList {
    items: Vec<WebhookView>,
}

/// `GET /v1/webhooks/{name}/deliveries`: the newest delivery attempts.
#[derive(Serialize, utoipa::ToSchema)]
struct DeliveryList {
    items: Vec<Delivery>,
}

#[utoipa::path(
    get, path = "/v1/findings", operation_id = "list_findings", tag = "findings", params(FindingQuery),
    responses((status = 200, description = "A page of findings, newest first", body = Page<Finding>))
)]
async fn list_findings(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<FindingQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    Ok(axum::Json(state.secops.list_findings(&ctx, &query).await?).into_response())
}

#[utoipa::path(
    post, path = "/v1/findings/{id}/acknowledge", operation_id = "acknowledge_finding", tag = "findings",
    params(("id" = String, Path, description = "The finding's id")),
    responses((status = 200, description = "The finding, acknowledged", body = Finding))
)]
async fn acknowledge(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(state.secops.acknowledge_finding(&ctx, &id).await?).into_response())
}

#[utoipa::path(
    get, path = "/v1/webhooks", operation_id = "list_webhooks", tag = "webhooks",
    responses((status = 200, description = "Every webhook (never their secrets)", body = WebhookList))
)]
async fn list_webhooks(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    let items = state.secops.list_webhooks(&ctx).await?;
    Ok(axum::Json(WebhookList { items }).into_response())
}

#[utoipa::path(
    get, path = "/v1/webhooks/{name}", operation_id = "get_webhook", tag = "webhooks",
    params(("name" = String, Path, description = "The webhook's name: 1 to 64 of a-z, 0-9, - and _")),
    responses((status = 200, description = "The webhook (never its secret)", body = WebhookView))
)]
async fn get_webhook(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(state.secops.get_webhook(&ctx, &name).await?).into_response())
}

#[utoipa::path(
    put, path = "/v1/webhooks/{name}", operation_id = "put_webhook", tag = "webhooks",
    params(("name" = String, Path, description = "The webhook's name: 1 to 64 of a-z, 0-9, - and _")),
    request_body = WebhookSpec,
    responses(
        (status = 201, description = "Created; a secret made for it is shown only here", body = WebhookView),
        (status = 200, description = "Replaced", body = WebhookView),
    )
)]
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

#[utoipa::path(
    delete, path = "/v1/webhooks/{name}", operation_id = "delete_webhook", tag = "webhooks",
    params(("name" = String, Path, description = "The webhook's name: 1 to 64 of a-z, 0-9, - and _")),
    responses((status = 204, description = "Deleted, with its waiting messages"))
)]
async fn delete_webhook(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    state.secops.delete_webhook(&ctx, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    /// How many attempts, newest first.
    limit: Option<u32>,
}

#[utoipa::path(
    get, path = "/v1/webhooks/{name}/deliveries", operation_id = "list_webhook_deliveries", tag = "webhooks",
    params(("name" = String, Path, description = "The webhook's name: 1 to 64 of a-z, 0-9, - and _"), DeliveriesQuery),
    responses((status = 200, description = "The webhook's newest delivery attempts", body = DeliveryList))
)]
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
    Ok(axum::Json(DeliveryList { items }).into_response())
}
