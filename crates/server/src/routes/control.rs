//! Control-plane routes: tenants, tiers, domains, collections, keys. Each handler extracts,
//! calls one catalog operation and maps the result.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use bulkhead_api::{CreateKey, CreatePlatformKey, CreateTenant, Page, StartMove, UpdateTenant};
use bulkhead_catalog::TenantUpdate;
use bulkhead_core::model::{DomainSpec, TierSpec};
use bulkhead_core::schema::CollectionSpec;
use bulkhead_core::{CollectionName, DomainName, KeyId, TenantId, TierName};
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, Json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", get(list_tenants).post(create_tenant))
        .route(
            "/v1/tenants/{tenant}",
            get(get_tenant).patch(update_tenant).delete(delete_tenant),
        )
        .route("/v1/tenants/{tenant}/keys", get(list_keys).post(create_key))
        .route(
            "/v1/tenants/{tenant}/moves",
            get(list_moves).post(start_move),
        )
        .route("/v1/moves/{move}", get(get_move))
        .route("/v1/moves/{move}/cancel", post(cancel_move))
        .route("/v1/rollouts", get(list_rollouts))
        .route("/v1/rollouts/{rollout}", get(get_rollout))
        .route("/v1/rollouts/{rollout}/resume", post(resume_rollout))
        .route("/v1/rollouts/{rollout}/cancel", post(cancel_rollout))
        .route("/v1/tenants/{tenant}/keys/{key}", delete(revoke_key))
        .route(
            "/v1/platform-keys",
            get(list_platform_keys).post(create_platform_key),
        )
        .route("/v1/platform-keys/{key}", delete(revoke_platform_key))
        .route("/v1/tiers", get(list_tiers))
        .route("/v1/tiers/{tier}", put(put_tier))
        .route("/v1/domains", get(list_domains))
        .route("/v1/domains/{domain}", put(put_domain))
        .route("/v1/collections", get(list_collections))
        .route(
            "/v1/collections/{collection}",
            get(get_collection).put(put_collection),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

async fn create_tenant(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Json(body): Json<CreateTenant>,
) -> ApiResult<Response> {
    let (tenant, created) = state.catalog.create_tenant(&ctx, body).await?;
    // A replay for a tenant whose provisioning is still not done: where it stands.
    let status = if tenant.status == bulkhead_core::model::TenantStatus::Provisioning {
        StatusCode::ACCEPTED
    } else if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(tenant)).into_response())
}

async fn list_tenants(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    let page = state
        .catalog
        .list_tenants(&ctx, query.limit, query.cursor.as_deref())
        .await?;
    Ok(axum::Json(page).into_response())
}

async fn get_tenant(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<Response> {
    let tenant = TenantId::parse(&tenant)?;
    Ok(axum::Json(state.catalog.get_tenant(&ctx, &tenant).await?).into_response())
}

async fn update_tenant(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
    Json(body): Json<UpdateTenant>,
) -> ApiResult<Response> {
    let tenant = TenantId::parse(&tenant)?;
    Ok(
        match state.catalog.update_tenant(&ctx, &tenant, body).await? {
            TenantUpdate::Applied(view) => axum::Json(view).into_response(),
            TenantUpdate::Moving(started) => {
                (StatusCode::ACCEPTED, axum::Json(started)).into_response()
            }
        },
    )
}

async fn start_move(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
    Json(body): Json<StartMove>,
) -> ApiResult<Response> {
    let tenant = TenantId::parse(&tenant)?;
    let started = state.catalog.start_move(&ctx, &tenant, body).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(started)).into_response())
}

async fn list_moves(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<Response> {
    let tenant = TenantId::parse(&tenant)?;
    let items = state.catalog.list_moves(&ctx, &tenant).await?;
    Ok(axum::Json(Page {
        items,
        next_cursor: None,
    })
    .into_response())
}

async fn get_move(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.get_move(&ctx, &id).await?).into_response())
}

async fn get_rollout(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.get_rollout(&ctx, &id).await?).into_response())
}

async fn resume_rollout(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.resume_rollout(&ctx, &id).await?).into_response())
}

async fn cancel_rollout(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.cancel_rollout(&ctx, &id).await?).into_response())
}

async fn list_rollouts(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.list_rollouts(&ctx).await?).into_response())
}

async fn cancel_move(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.cancel_move(&ctx, &id).await?).into_response())
}

async fn delete_tenant(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<StatusCode> {
    let tenant = TenantId::parse(&tenant)?;
    state.catalog.delete_tenant(&ctx, &tenant).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_key(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
    Json(body): Json<CreateKey>,
) -> ApiResult<Response> {
    let tenant = TenantId::parse(&tenant)?;
    let key = state.catalog.create_tenant_key(&ctx, &tenant, body).await?;
    Ok((StatusCode::CREATED, axum::Json(key)).into_response())
}

async fn list_keys(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<Response> {
    let tenant = TenantId::parse(&tenant)?;
    Ok(axum::Json(state.catalog.list_tenant_keys(&ctx, &tenant).await?).into_response())
}

async fn revoke_key(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path((tenant, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let tenant = TenantId::parse(&tenant)?;
    let key = KeyId::parse(&key)?;
    state.catalog.revoke_tenant_key(&ctx, &tenant, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_platform_key(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Json(body): Json<CreatePlatformKey>,
) -> ApiResult<Response> {
    let key = state.catalog.create_platform_key(&ctx, body).await?;
    Ok((StatusCode::CREATED, axum::Json(key)).into_response())
}

async fn list_platform_keys(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.list_platform_keys(&ctx).await?).into_response())
}

async fn revoke_platform_key(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    let key = KeyId::parse(&key)?;
    state.catalog.revoke_platform_key(&ctx, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_tiers(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.list_tiers(&ctx).await?).into_response())
}

async fn put_tier(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tier): Path<String>,
    Json(spec): Json<TierSpec>,
) -> ApiResult<Response> {
    let tier = TierName::parse(&tier)?;
    Ok(axum::Json(state.catalog.put_tier(&ctx, &tier, spec).await?).into_response())
}

async fn list_domains(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.list_domains(&ctx).await?).into_response())
}

async fn put_domain(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(domain): Path<String>,
    Json(spec): Json<DomainSpec>,
) -> ApiResult<Response> {
    let domain = DomainName::parse(&domain)?;
    Ok(axum::Json(state.catalog.put_domain(&ctx, &domain, spec).await?).into_response())
}

async fn put_collection(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(collection): Path<String>,
    Json(spec): Json<CollectionSpec>,
) -> ApiResult<Response> {
    let collection = CollectionName::parse(&collection)?;
    let (view, created) = state
        .catalog
        .put_collection(&ctx, &collection, spec)
        .await?;
    // A change whose rollout has placements left answers at once: 202, with the rollout to
    // follow at `GET /v1/rollouts/{id}`.
    let rolling = view.rollout.as_ref().is_some_and(|r| r.placements_left > 0);
    let status = if rolling {
        StatusCode::ACCEPTED
    } else if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(view)).into_response())
}

async fn get_collection(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(collection): Path<String>,
) -> ApiResult<Response> {
    let collection = CollectionName::parse(&collection)?;
    Ok(axum::Json(state.catalog.get_collection(&ctx, &collection).await?).into_response())
}

async fn list_collections(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.list_collections(&ctx).await?).into_response())
}
