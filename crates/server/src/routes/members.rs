//! Members, custom roles, users, tenant tokens and `/v1/me`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bulkhead_api::{
    AddMember, MeView, MemberView, MintToken, MintedToken, Page, RoleView, UpdateMember,
    UpdateUser, UserView,
};
use bulkhead_core::permissions::RoleSpec;
use bulkhead_core::{RoleName, TenantId, UserId};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, Json, NamedTenant};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_members, add_member))
        .routes(routes!(update_member, remove_member))
        .routes(routes!(list_roles))
        .routes(routes!(put_role, delete_role))
        .routes(routes!(list_users))
        .routes(routes!(update_user))
        .routes(routes!(mint_token))
        .routes(routes!(me))
}

fn page<T>(items: Vec<T>) -> Page<T> {
    Page {
        items,
        next_cursor: None,
    }
}

#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/members", tag = "members", params(("tenant" = TenantId, Path, description = "The tenant's id")),
    request_body = AddMember,
    responses((status = 201, description = "The member (`invited` when added by email)", body = MemberView))
)]
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

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/members", tag = "members", params(("tenant" = TenantId, Path, description = "The tenant's id")),
    responses((status = 200, description = "The tenant's members", body = Page<MemberView>))
)]
async fn list_members(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<Response> {
    let tenant = TenantId::parse(&tenant)?;
    Ok(axum::Json(page(state.catalog.list_members(&ctx, &tenant).await?)).into_response())
}

#[utoipa::path(
    patch, path = "/v1/tenants/{tenant}/members/{user}", tag = "members", params(("tenant" = TenantId, Path, description = "The tenant's id"), ("user" = UserId, Path, description = "The user's id")),
    request_body = UpdateMember,
    responses((status = 200, description = "The member with its new role", body = MemberView))
)]
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

#[utoipa::path(
    delete, path = "/v1/tenants/{tenant}/members/{user}", tag = "members", params(("tenant" = TenantId, Path, description = "The tenant's id"), ("user" = UserId, Path, description = "The user's id")),
    responses((status = 204, description = "Removed"))
)]
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

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/roles", tag = "roles", params(("tenant" = TenantId, Path, description = "The tenant's id")),
    responses((status = 200, description = "The tenant's custom roles", body = Page<RoleView>))
)]
async fn list_roles(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<Response> {
    let tenant = TenantId::parse(&tenant)?;
    Ok(axum::Json(page(state.catalog.list_roles(&ctx, &tenant).await?)).into_response())
}

#[utoipa::path(
    put, path = "/v1/tenants/{tenant}/roles/{role}", tag = "roles", params(("tenant" = TenantId, Path, description = "The tenant's id"), ("role" = RoleName, Path, description = "The custom role's name")),
    request_body = RoleSpec,
    responses((status = 200, description = "The role as stored (created or replaced)", body = RoleView))
)]
async fn put_role(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path((tenant, role)): Path<(String, String)>,
    Json(body): Json<RoleSpec>,
) -> ApiResult<Response> {
    let (tenant, role) = (TenantId::parse(&tenant)?, RoleName::parse(&role)?);
    Ok(axum::Json(state.catalog.put_role(&ctx, &tenant, &role, body).await?).into_response())
}

#[utoipa::path(
    delete, path = "/v1/tenants/{tenant}/roles/{role}", tag = "roles", params(("tenant" = TenantId, Path, description = "The tenant's id"), ("role" = RoleName, Path, description = "The custom role's name")),
    responses((status = 204, description = "Deleted"))
)]
async fn delete_role(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    Path((tenant, role)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (tenant, role) = (TenantId::parse(&tenant)?, RoleName::parse(&role)?);
    state.catalog.delete_role(&ctx, &tenant, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct UsersQuery {
    /// Only the user with this email (compared case-insensitively).
    email: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/users", tag = "users", params(UsersQuery),
    responses((status = 200, description = "Users (at most 1000, oldest first), with their memberships", body = Page<UserView>))
)]
async fn list_users(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    query: Result<Query<UsersQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(super::query_error)?;
    Ok(axum::Json(page(state.catalog.list_users(&ctx, query.email).await?)).into_response())
}

#[utoipa::path(
    patch, path = "/v1/users/{user}", tag = "users", params(("user" = UserId, Path, description = "The user's id")),
    request_body = UpdateUser,
    responses((status = 200, description = "The user", body = UserView))
)]
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

#[utoipa::path(
    post, path = "/v1/tokens", tag = "tokens",
    params(("Bulkhead-Tenant" = Option<TenantId>, Header, nullable = false, description = "The tenant the token is for: required for a user who is a member of several tenants; a tenant key may only name its own")),
    request_body = MintToken,
    responses((status = 201, description = "The token; it is shown only here", body = MintedToken))
)]
async fn mint_token(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    NamedTenant(named): NamedTenant,
    Json(body): Json<MintToken>,
) -> ApiResult<Response> {
    let minted = state.catalog.mint_token(&ctx, named.as_ref(), body).await?;
    Ok((StatusCode::CREATED, axum::Json(minted)).into_response())
}

#[utoipa::path(
    get, path = "/v1/me", tag = "me",
    responses((status = 200, description = "Who the credential is and where it may go", body = MeView))
)]
async fn me(State(state): State<AppState>, Auth(ctx): Auth) -> ApiResult<Response> {
    Ok(axum::Json(state.catalog.me(&ctx)).into_response())
}
