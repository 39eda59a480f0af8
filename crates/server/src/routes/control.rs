//! Control-plane routes: tenants, tiers, domains, collections, keys. Each handler extracts,
//! calls one catalog operation and maps the result.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bulkhead_api::{
    CollectionView, CreateKey, CreatePlatformKey, CreateTenant, CreatedKey, DomainView, KeyView,
    MoveListQuery, MoveView, Page, RolloutView, StartMove, TenantListQuery, TenantView, TierView,
    UpdateTenant,
};
use bulkhead_catalog::TenantUpdate;
use bulkhead_core::model::{DomainSpec, TierSpec};
use bulkhead_core::schema::CollectionSpec;
use bulkhead_core::{CollectionName, DomainName, KeyId, TenantId, TierName};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, Json};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant, update_tenant, delete_tenant))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(list_moves, start_move))
        .routes(routes!(list_all_moves))
        .routes(routes!(get_move))
        .routes(routes!(cancel_move))
        .routes(routes!(list_rollouts))
        .routes(routes!(get_rollout))
        .routes(routes!(resume_rollout))
        .routes(routes!(cancel_rollout))
        .routes(routes!(revoke_key))
        .routes(routes!(list_platform_keys, create_platform_key))
        .routes(routes!(revoke_platform_key))
        .routes(routes!(list_tiers))
        .routes(routes!(put_tier))
        .routes(routes!(list_domains))
        .routes(routes!(put_domain))
        .routes(routes!(list_collections))
        .routes(routes!(get_collection, put_collection))
}

#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "Created", body = TenantView),
        (status = 200, description = "Already created with this body (an idempotent replay)", body = TenantView),
        (status = 202, description = "Provisioning is still under way", body = TenantView),
    )
)]
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

/// Tenants in id order, a page at a time. Filters narrow the listing (each one given must
/// match): `q` finds text in the id or name, ignoring case; `tier`, `status`, `domain` and
/// `isolation` match exactly. A page's `next_cursor` continues the same filtered listing.
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants", params(TenantListQuery),
    responses((status = 200, description = "A page of tenants", body = Page<TenantView>))
)]
async fn list_tenants(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<TenantListQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    Ok(axum::Json(state.catalog.list_tenants(&ctx, &query).await?).into_response())
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = TenantId, Path, description = "The tenant's id")),
    responses((status = 200, description = "The tenant", body = TenantView))
)]
async fn get_tenant(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<Response> {
    let tenant = TenantId::parse(&tenant)?;
    Ok(axum::Json(state.catalog.get_tenant(&ctx, &tenant).await?).into_response())
}

#[utoipa::path(
    patch, path = "/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = TenantId, Path, description = "The tenant's id")),
    request_body = UpdateTenant,
    responses(
        (status = 200, description = "Applied", body = TenantView),
        (status = 202, description = "A tier change that needs another isolation: the move it started", body = MoveView),
    )
)]
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

#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/moves", tag = "moves", params(("tenant" = TenantId, Path, description = "The tenant's id")),
    request_body = StartMove,
    responses(
        (status = 202, description = "The move, started", body = MoveView),
        (status = 409, description = "`move_in_progress`, `already_placed`, `tenant_not_active`, or `tenant_life_ended` (the id names another life than `incarnation`)", body = bulkhead_api::ErrorBody),
    )
)]
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

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/moves", tag = "moves", params(("tenant" = TenantId, Path, description = "The tenant's id")),
    responses((status = 200, description = "The tenant's moves", body = Page<MoveView>))
)]
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

/// Moves of every tenant, newest first, a page at a time: `active=true` keeps those still
/// under way (not `done` or `rolled_back`), `tenant` one tenant's.
#[utoipa::path(
    get, path = "/v1/moves", tag = "moves", params(MoveListQuery),
    responses((status = 200, description = "A page of moves, newest first", body = Page<MoveView>))
)]
async fn list_all_moves(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<MoveListQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    Ok(axum::Json(state.catalog.list_all_moves(&ctx, &query).await?).into_response())
}

#[utoipa::path(
    get, path = "/v1/moves/{move}", tag = "moves", params(("move" = String, Path, description = "The move's id")),
    responses((status = 200, description = "Where the move stands", body = MoveView))
)]
async fn get_move(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.get_move(&ctx, &id).await?).into_response())
}

#[utoipa::path(
    get, path = "/v1/rollouts/{rollout}", tag = "rollouts", params(("rollout" = String, Path, description = "The rollout's id")),
    responses((status = 200, description = "Where the rollout stands", body = RolloutView))
)]
async fn get_rollout(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.get_rollout(&ctx, &id).await?).into_response())
}

#[utoipa::path(
    post, path = "/v1/rollouts/{rollout}/resume", tag = "rollouts", params(("rollout" = String, Path, description = "The rollout's id")),
    responses((status = 200, description = "Resumed", body = RolloutView))
)]
async fn resume_rollout(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.resume_rollout(&ctx, &id).await?).into_response())
}

#[utoipa::path(
    post, path = "/v1/rollouts/{rollout}/cancel", tag = "rollouts", params(("rollout" = String, Path, description = "The rollout's id")),
    responses((status = 200, description = "Cancelled", body = RolloutView))
)]
async fn cancel_rollout(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.cancel_rollout(&ctx, &id).await?).into_response())
}

#[utoipa::path(
    get, path = "/v1/rollouts", tag = "rollouts",
    responses((status = 200, description = "Collection rollouts", body = Page<RolloutView>))
)]
async fn list_rollouts(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.list_rollouts(&ctx).await?).into_response())
}

#[utoipa::path(
    post, path = "/v1/moves/{move}/cancel", tag = "moves", params(("move" = String, Path, description = "The move's id")),
    responses((status = 200, description = "Cancelled (rolled back to the source)", body = MoveView))
)]
async fn cancel_move(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.cancel_move(&ctx, &id).await?).into_response())
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeleteTenantQuery {
    /// Delete only this life of the tenant (its `placement.incarnation`): when the id names
    /// another life by now, the answer is `409 tenant_life_ended` and nothing is deleted.
    #[param(value_type = Option<String>)]
    incarnation: Option<bulkhead_core::Incarnation>,
}

#[utoipa::path(
    delete, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = TenantId, Path, description = "The tenant's id"), DeleteTenantQuery),
    responses(
        (status = 204, description = "Deleted, with its data, keys and storage"),
        (status = 409, description = "`tenant_moving`, or `tenant_life_ended` (the id names another life than `incarnation`)", body = bulkhead_api::ErrorBody),
    )
)]
async fn delete_tenant(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
    query: Result<Query<DeleteTenantQuery>, QueryRejection>,
) -> ApiResult<StatusCode> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    let tenant = TenantId::parse(&tenant)?;
    state
        .catalog
        .delete_tenant(&ctx, &tenant, query.incarnation.as_ref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/keys", tag = "keys", params(("tenant" = TenantId, Path, description = "The tenant's id")),
    request_body = CreateKey,
    responses((status = 201, description = "The key; its secret is shown only here", body = CreatedKey))
)]
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

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/keys", tag = "keys", params(("tenant" = TenantId, Path, description = "The tenant's id")),
    responses((status = 200, description = "The tenant's keys (never their secrets)", body = Page<KeyView>))
)]
async fn list_keys(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<Response> {
    let tenant = TenantId::parse(&tenant)?;
    Ok(axum::Json(state.catalog.list_tenant_keys(&ctx, &tenant).await?).into_response())
}

#[utoipa::path(
    delete, path = "/v1/tenants/{tenant}/keys/{key}", tag = "keys", params(("tenant" = TenantId, Path, description = "The tenant's id"), ("key" = KeyId, Path, description = "The key's id")),
    responses((status = 204, description = "Revoked"))
)]
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

#[utoipa::path(
    post, path = "/v1/platform-keys", tag = "keys",
    request_body = CreatePlatformKey,
    responses((status = 201, description = "The key; its secret is shown only here", body = CreatedKey))
)]
async fn create_platform_key(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Json(body): Json<CreatePlatformKey>,
) -> ApiResult<Response> {
    let key = state.catalog.create_platform_key(&ctx, body).await?;
    Ok((StatusCode::CREATED, axum::Json(key)).into_response())
}

#[utoipa::path(
    get, path = "/v1/platform-keys", tag = "keys",
    responses((status = 200, description = "Platform keys (never their secrets)", body = Page<KeyView>))
)]
async fn list_platform_keys(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.list_platform_keys(&ctx).await?).into_response())
}

#[utoipa::path(
    delete, path = "/v1/platform-keys/{key}", tag = "keys", params(("key" = KeyId, Path, description = "The key's id")),
    responses((status = 204, description = "Revoked"))
)]
async fn revoke_platform_key(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    let key = KeyId::parse(&key)?;
    state.catalog.revoke_platform_key(&ctx, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/v1/tiers", tag = "tiers",
    responses((status = 200, description = "Tiers", body = Page<TierView>))
)]
async fn list_tiers(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.list_tiers(&ctx).await?).into_response())
}

#[utoipa::path(
    put, path = "/v1/tiers/{tier}", tag = "tiers", params(("tier" = TierName, Path, description = "The tier's name")),
    request_body = TierSpec,
    responses((status = 200, description = "The tier as stored", body = TierView))
)]
async fn put_tier(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tier): Path<String>,
    Json(spec): Json<TierSpec>,
) -> ApiResult<Response> {
    let tier = TierName::parse(&tier)?;
    Ok(axum::Json(state.catalog.put_tier(&ctx, &tier, spec).await?).into_response())
}

#[utoipa::path(
    get, path = "/v1/domains", tag = "domains",
    responses((status = 200, description = "Storage domains", body = Page<DomainView>))
)]
async fn list_domains(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.list_domains(&ctx).await?).into_response())
}

#[utoipa::path(
    put, path = "/v1/domains/{domain}", tag = "domains", params(("domain" = DomainName, Path, description = "The domain's name")),
    request_body = DomainSpec,
    responses((status = 200, description = "The domain as stored", body = DomainView))
)]
async fn put_domain(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(domain): Path<String>,
    Json(spec): Json<DomainSpec>,
) -> ApiResult<Response> {
    let domain = DomainName::parse(&domain)?;
    Ok(axum::Json(state.catalog.put_domain(&ctx, &domain, spec).await?).into_response())
}

#[utoipa::path(
    put, path = "/v1/collections/{collection}", tag = "collections", params(("collection" = CollectionName, Path, description = "The collection's name")),
    request_body = CollectionSpec,
    responses(
        (status = 201, description = "Created", body = CollectionView),
        (status = 200, description = "Changed (or unchanged), applied everywhere", body = CollectionView),
        (status = 202, description = "Changed; its rollout is under way", body = CollectionView),
    )
)]
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

#[utoipa::path(
    get, path = "/v1/collections/{collection}", tag = "collections", params(("collection" = CollectionName, Path, description = "The collection's name")),
    responses((status = 200, description = "The collection", body = CollectionView))
)]
async fn get_collection(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(collection): Path<String>,
) -> ApiResult<Response> {
    let collection = CollectionName::parse(&collection)?;
    Ok(axum::Json(state.catalog.get_collection(&ctx, &collection).await?).into_response())
}

#[utoipa::path(
    get, path = "/v1/collections", tag = "collections",
    responses((status = 200, description = "Collections", body = Page<CollectionView>))
)]
async fn list_collections(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.list_collections(&ctx).await?).into_response())
}
