//! Members, custom roles, users, tenant tokens and `/v1/me`.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use bulkhead_api::{AddMember, MintToken, Page, UpdateMember, UpdateUser};
use bulkhead_core::permissions::RoleSpec;
use bulkhead_core::{RoleName, TenantId, UserId};
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, Json, NamedTenant};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/members",
            get(list_members).post(add_member),
        )
        .route(
            "/v1/tenants/{tenant}/members/{user}",
            patch(update_member).delete(remove_member),
        )
        .route("/v1/tenants/{tenant}/roles", get(list_roles))
        .route(
            "/v1/tenants/{tenant}/roles/{role}",
            put(put_role).delete(delete_role),
        )
        .route("/v1/users", get(list_users))
        .route("/v1/users/{user}", patch(update_user))
        .route("/v1/tokens", post(mint_token))
        .route("/v1/me", get(me))
}

fn page<T>(items: Vec<T>) -> Page<T> {
    Page {
        items,
        next_cursor: None,
    }
}

async fn add_member(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
    Json(body): Json<AddMember>,
) -> ApiResult<Response> {
    let tenant = TenantId::parse(&tenant)?;
    let member = state.catalog.add_member(&ctx, &tenant, body).await?;
    Ok((StatusCode::CREATED, axum::Json(member)).into_response())
}

async fn list_members(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<Response> {
    let tenant = TenantId::parse(&tenant)?;
    Ok(axum::Json(page(state.catalog.list_members(&ctx, &tenant).await?)).into_response())
}

async fn update_member(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path((tenant, user)): Path<(String, String)>,
    Json(body): Json<UpdateMember>,
) -> ApiResult<Response> {
    let (tenant, user) = (TenantId::parse(&tenant)?, UserId::parse(&user)?);
    let member = state
        .catalog
        .change_member(&ctx, &tenant, &user, Some(body.role))
        .await?;
    Ok(axum::Json(member).into_response())
}

async fn remove_member(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path((tenant, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (tenant, user) = (TenantId::parse(&tenant)?, UserId::parse(&user)?);
    state
        .catalog
        .change_member(&ctx, &tenant, &user, None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_roles(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<Response> {
    let tenant = TenantId::parse(&tenant)?;
    Ok(axum::Json(page(state.catalog.list_roles(&ctx, &tenant).await?)).into_response())
}

async fn put_role(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path((tenant, role)): Path<(String, String)>,
    Json(body): Json<RoleSpec>,
) -> ApiResult<Response> {
    let (tenant, role) = (TenantId::parse(&tenant)?, RoleName::parse(&role)?);
    Ok(axum::Json(state.catalog.put_role(&ctx, &tenant, &role, body).await?).into_response())
}

async fn delete_role(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path((tenant, role)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (tenant, role) = (TenantId::parse(&tenant)?, RoleName::parse(&role)?);
    state.catalog.delete_role(&ctx, &tenant, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersQuery {
    email: Option<String>,
}

async fn list_users(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<UsersQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(super::query_error)?;
    Ok(axum::Json(page(state.catalog.list_users(&ctx, query.email).await?)).into_response())
}

async fn update_user(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(user): Path<String>,
    Json(body): Json<UpdateUser>,
) -> ApiResult<Response> {
    let user = UserId::parse(&user)?;
    let view = state
        .catalog
        .set_user_disabled(&ctx, &user, body.disabled)
        .await?;
    Ok(axum::Json(view).into_response())
}

async fn mint_token(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    NamedTenant(named): NamedTenant,
    Json(body): Json<MintToken>,
) -> ApiResult<Response> {
    let minted = state.catalog.mint_token(&ctx, named.as_ref(), body).await?;
    Ok((StatusCode::CREATED, axum::Json(minted)).into_response())
}

async fn me(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.me(&ctx)).into_response())
}
