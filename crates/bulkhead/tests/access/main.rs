//! Identity and access through the binary: JWT issuers (and attacks on them), memberships,
//! the members API, custom roles with record and field rules, tier ceilings, tenant tokens,
//! platform roles, and foreign ids on every data route for every kind of credential and
//! isolation model.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
mod idp;
mod matrix;
mod members;
mod rules;
mod tokens;
mod watch;

use std::path::Path;

use bulkhead_api::AddMember;
use bulkhead_client::{Client, ClientError};
use bulkhead_core::UserId;
use bulkhead_core::permissions::MemberRole;
use common::{Server, tid};

/// A server with two issuers: `idp` (RS256 with a static PEM key and a JWKS-less setup) and
/// `org` (HS256 with an explicit secret, tenant taken from its `org` claim).
pub struct Env {
    pub server: Server,
    pub idp: idp::Idp,
}

impl Env {
    pub fn start(dir: &Path) -> Env {
        let idp = idp::Idp::generate(dir);
        let config = dir.join("bulkhead.toml");
        std::fs::write(&config, idp.config()).unwrap();
        let server = Server::start_with(dir, &[("BULKHEAD_CONFIG", config.to_str().unwrap())]);
        Env { server, idp }
    }

    pub fn admin(&self) -> Client {
        self.server.admin()
    }

    /// A client holding a JWT from `idp` for `sub` (valid for 10 minutes).
    pub fn user(&self, sub: &str) -> Client {
        self.server
            .client(&self.idp.token(sub, serde_json::json!({})))
    }

    pub fn user_with(&self, sub: &str, extra: serde_json::Value) -> Client {
        self.server.client(&self.idp.token(sub, extra))
    }
}

/// Adds `sub` of the `idp` issuer to `tenant` with `role`; returns the user id.
pub async fn add(admin: &Client, tenant: &str, sub: &str, role: &str) -> UserId {
    admin
        .add_member(
            &tid(tenant),
            &AddMember {
                issuer: Some("idp".into()),
                sub: Some(sub.into()),
                email: None,
                role: MemberRole::parse(role).unwrap(),
            },
        )
        .await
        .unwrap()
        .user_id
}

/// `(status, code)` of a failed call.
pub fn status(err: ClientError) -> (u16, String) {
    (
        err.status().unwrap_or(0),
        err.code().unwrap_or("").to_owned(),
    )
}

pub fn expect_err<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String) {
    status(result.expect_err("expected a refusal"))
}
