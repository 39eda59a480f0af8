//! The catalog's [`IdentityProviders`] over the configured JWT issuers (`bulkhead-identity`).
//!
//! A browser sends the same JWT with every request, so a verified token is remembered (by the
//! SHA-256 of its whole text) for at most [`VERIFIED_TTL_SECS`] and never past its `exp`: the
//! signature check then runs once a minute per token instead of on every request. Only the
//! signature and claims are cached; the catalog still reads the user and their memberships on
//! every request, so removing a member or disabling a user applies at once.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bulkhead_catalog::{ExternalIdentity, IdentityProviders};
use bulkhead_identity::{IssuerConfig, Issuers, VerifiedToken};
use parking_lot::Mutex;

/// Longest a verified token is trusted without checking its signature again.
const VERIFIED_TTL_SECS: u64 = 60;
/// Verified tokens remembered at once.
const VERIFIED_CAP: usize = 10_000;

struct Providers {
    issuers: Issuers,
    /// `(name, iss)` of every configured issuer.
    names: Vec<(String, String)>,
    /// SHA-256 of a token → the verified token and until when (unix seconds) it is trusted.
    verified: Mutex<lru::LruCache<String, (VerifiedToken, u64)>>,
}

/// The configured issuers, `None` when there are none (then only keys and tenant tokens
/// authenticate).
pub async fn providers(
    configs: &[IssuerConfig],
) -> anyhow::Result<Option<Arc<dyn IdentityProviders>>> {
    if configs.is_empty() {
        return Ok(None);
    }
    let names = configs
        .iter()
        .map(|c| (c.name.clone(), c.issuer.clone()))
        .collect();
    let issuers = Issuers::new(configs.to_vec())
        .await
        .map_err(|e| anyhow::anyhow!("JWT issuers: {e}"))?;
    let cap = NonZeroUsize::new(VERIFIED_CAP).unwrap_or(NonZeroUsize::MIN);
    Ok(Some(Arc::new(Providers {
        issuers,
        names,
        verified: Mutex::new(lru::LruCache::new(cap)),
    })))
}

#[async_trait::async_trait]
impl IdentityProviders for Providers {
    fn accepts(&self, token: &str) -> bool {
        bulkhead_identity::looks_like_jwt(token)
    }

    async fn verify(&self, token: &str) -> Result<ExternalIdentity, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let digest = bulkhead_core::keys::hash_secret(token);
        let cached = self
            .verified
            .lock()
            .get(&digest)
            .filter(|(v, until)| now < *until && now < v.expires_at)
            .map(|(v, _)| v.clone());
        let verified = match cached {
            Some(verified) => verified,
            None => {
                let verified = self
                    .issuers
                    .verify(token, now)
                    .await
                    .map_err(|r| format!("JWT rejected: {r}"))?;
                let until = verified.expires_at.min(now + VERIFIED_TTL_SECS);
                self.verified.lock().put(digest, (verified.clone(), until));
                verified
            }
        };
        Ok(ExternalIdentity {
            issuer: verified.issuer,
            sub: verified.sub,
            email: verified.email.map(|e| e.to_lowercase()),
            email_verified: verified.email_verified,
            tenant: verified.tenant,
            claims: verified.claims,
        })
    }

    fn issuers(&self) -> Vec<String> {
        self.names.iter().map(|(_, iss)| iss.clone()).collect()
    }

    fn resolve_issuer(&self, name_or_iss: &str) -> Option<String> {
        self.names
            .iter()
            .find(|(name, iss)| name == name_or_iss || iss == name_or_iss)
            .map(|(_, iss)| iss.clone())
    }
}
