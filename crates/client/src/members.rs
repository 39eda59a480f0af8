//! Members, custom roles, users, tenant tokens and `/v1/me`.

use bulkhead_api::{
    AddMember, MeView, MemberView, MintToken, MintedToken, Page, RoleView, UpdateMember,
    UpdateUser, UserView,
};
use bulkhead_core::permissions::{MemberRole, RoleSpec};
use bulkhead_core::{RoleName, TenantId, UserId};
use reqwest::Method;

use crate::{Client, ClientError, json_body};

impl Client {
    /// `POST /v1/tenants/{tenant}/members`.
    pub async fn add_member(
        &self,
        tenant: &TenantId,
        member: &AddMember,
    ) -> Result<MemberView, ClientError> {
        let url = self.url(&["v1", "tenants", tenant.as_str(), "members"], &[])?;
        self.call(Method::POST, url, json_body(member)?, None).await
    }

    pub async fn list_members(&self, tenant: &TenantId) -> Result<Page<MemberView>, ClientError> {
        let url = self.url(&["v1", "tenants", tenant.as_str(), "members"], &[])?;
        self.call(Method::GET, url, None, None).await
    }

    pub async fn set_member_role(
        &self,
        tenant: &TenantId,
        user: &UserId,
        role: MemberRole,
    ) -> Result<MemberView, ClientError> {
        let url = self.url(
            &["v1", "tenants", tenant.as_str(), "members", user.as_str()],
            &[],
        )?;
        self.call(Method::PATCH, url, json_body(&UpdateMember { role })?, None)
            .await
    }

    pub async fn remove_member(&self, tenant: &TenantId, user: &UserId) -> Result<(), ClientError> {
        let url = self.url(
            &["v1", "tenants", tenant.as_str(), "members", user.as_str()],
            &[],
        )?;
        self.send(Method::DELETE, url, None, None).await.map(drop)
    }

    /// `PUT /v1/tenants/{tenant}/roles/{name}`: creates or replaces a custom role.
    pub async fn put_role(
        &self,
        tenant: &TenantId,
        name: &RoleName,
        spec: &RoleSpec,
    ) -> Result<RoleView, ClientError> {
        let url = self.url(
            &["v1", "tenants", tenant.as_str(), "roles", name.as_str()],
            &[],
        )?;
        self.call(Method::PUT, url, json_body(spec)?, None).await
    }

    pub async fn list_roles(&self, tenant: &TenantId) -> Result<Page<RoleView>, ClientError> {
        let url = self.url(&["v1", "tenants", tenant.as_str(), "roles"], &[])?;
        self.call(Method::GET, url, None, None).await
    }

    pub async fn delete_role(&self, tenant: &TenantId, name: &RoleName) -> Result<(), ClientError> {
        let url = self.url(
            &["v1", "tenants", tenant.as_str(), "roles", name.as_str()],
            &[],
        )?;
        self.send(Method::DELETE, url, None, None).await.map(drop)
    }

    /// `GET /v1/users[?email=]` (platform admins).
    pub async fn list_users(&self, email: Option<&str>) -> Result<Page<UserView>, ClientError> {
        let url = self.url(&["v1", "users"], &[("email", email.map(str::to_owned))])?;
        self.call(Method::GET, url, None, None).await
    }

    /// `PATCH /v1/users/{id}`: disables (or re-enables) a user platform-wide.
    pub async fn set_user_disabled(
        &self,
        user: &UserId,
        disabled: bool,
    ) -> Result<UserView, ClientError> {
        let url = self.url(&["v1", "users", user.as_str()], &[])?;
        self.call(
            Method::PATCH,
            url,
            json_body(&UpdateUser { disabled })?,
            None,
        )
        .await
    }

    /// `POST /v1/tokens`: a short-lived token narrower than this client's credential.
    pub async fn mint_token(&self, request: &MintToken) -> Result<MintedToken, ClientError> {
        let url = self.url(&["v1", "tokens"], &[])?;
        self.call(Method::POST, url, json_body(request)?, None)
            .await
    }

    /// `GET /v1/collections/{c}/access`: what this credential may do there.
    pub async fn access(
        &self,
        collection: &bulkhead_core::CollectionName,
    ) -> Result<bulkhead_api::AccessView, ClientError> {
        let url = self.url(&["v1", "collections", collection.as_str(), "access"], &[])?;
        self.call(Method::GET, url, None, None).await
    }

    /// `GET /v1/collections/{c}/records:export`: every record this credential may export, in
    /// id order. An error the server reports mid-stream is returned as that error.
    pub async fn export(
        &self,
        collection: &bulkhead_core::CollectionName,
        filter: Option<&str>,
    ) -> Result<Vec<serde_json::Value>, ClientError> {
        let url = self.url(
            &["v1", "collections", collection.as_str(), "records:export"],
            &[("filter", filter.map(str::to_owned))],
        )?;
        let body = self.send(Method::GET, url, None, None).await?;
        let mut records = Vec::new();
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let value: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| ClientError::Decode(format!("export line is not JSON: {e}")))?;
            if value.get("error").is_some() && value.get("id").is_none() {
                return Err(ClientError::from_response(500, line, None));
            }
            records.push(value);
        }
        Ok(records)
    }

    /// `GET /v1/me`.
    pub async fn me(&self) -> Result<MeView, ClientError> {
        let url = self.url(&["v1", "me"], &[])?;
        self.call(Method::GET, url, None, None).await
    }
}
