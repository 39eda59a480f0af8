//! Verification of JSON Web Tokens issued by configured external identity
//! providers (Amazon Cognito, Auth0, Keycloak, Microsoft Entra ID, …).
//!
//! # Design
//!
//! The server configures a list of [`IssuerConfig`]s (TOML `[[issuers]]`
//! tables). [`Issuers::new`] validates them, parses the static keys, builds one
//! HTTP client and fetches each issuer's JWKS once. [`Issuers::verify`] then
//! checks a compact JWT in this order:
//!
//! 1. **Shape.** At most 16 KiB, three base64url segments ([`looks_like_jwt`]).
//!    The header is parsed as JSON first: its `alg` must be one of the twelve
//!    algorithms this crate knows (so `none` and anything exotic are refused),
//!    and a `crit` header is refused because no extension is understood.
//!    Header fields that point at keys (`jku`, `x5u`, `jwk`, `x5c`) are
//!    ignored: keys come only from the configuration and the configured JWKS
//!    URL.
//! 2. **Issuer selection.** The payload is decoded *without* verification only
//!    to read the `iss` string, which must equal a configured `issuer`
//!    exactly. That value selects the issuer and nothing else; the verified
//!    decode checks `iss` again.
//! 3. **Algorithm pinning.** The header `alg` must be in the issuer's
//!    `algorithms` list. HMAC algorithms are only accepted with an explicitly
//!    configured `hs256_secret`, and the secret is the *only* HMAC key: a
//!    public key is never used as an HMAC secret, which defeats the classic
//!    RS256→HS256 confusion attack.
//! 4. **Key selection.** Asymmetric keys come from the static `keys` and the
//!    JWKS, and are looked up by `kid` in a map (a `kid` is never used as a
//!    path, query or anything else). A token without `kid` is accepted only
//!    when exactly one configured key fits its algorithm. A key fits when its
//!    type and curve match the algorithm and, if the key names an `alg`, it is
//!    the same one. Symmetric (`oct`) JWKs are refused everywhere.
//! 5. **Signature and claims** via `jsonwebtoken` with a [`jsonwebtoken::Validation`]
//!    pinned to the header algorithm, the issuer, the audiences and the leeway,
//!    with `exp`, `iss`, `aud` and `sub` required and `exp`/`nbf` validated
//!    (`jsonwebtoken` ≥ 10.3 rejects `exp`/`nbf` of the wrong JSON type).
//! 6. **Own checks** on the verified claims: `exp`/`nbf` again against the
//!    caller's `now_unix` (see *Time* below), `sub` non-empty and at most
//!    255 bytes, the tenant claim a non-empty string when present.
//!
//! # Time
//!
//! `jsonwebtoken` reads the system clock for `exp`/`nbf` and cannot be given
//! a time. This crate therefore checks time twice: `jsonwebtoken` against the
//! system clock, and this crate against the `now_unix` argument, with the same
//! leeway. In production both are the same clock, so the double check costs
//! nothing; tests (and callers that want one clock reading per request) can
//! use `now_unix` to move the verifier's notion of "now" *forward or back*, but
//! a token must be valid at both instants to be accepted.
//!
//! # JWKS refresh
//!
//! Each JWKS-backed issuer keeps its last good key set.
//!
//! * **Unknown `kid`** (or no fitting key): one refresh is done *inline*, but
//!   only if the last attempt is older than `jwks_cooldown_secs` (the
//!   start-up fetch counts as an attempt). Refreshes
//!   are single-flight: concurrent requests wait for the one fetch in
//!   progress and then look the key up again. The fetch runs in a spawned
//!   task, so a caller that gives up does not cancel it. Still missing →
//!   [`TokenRejection::UnknownKey`], or [`TokenRejection::KeysUnavailable`]
//!   when the latest attempt failed (the key might exist, we can't tell).
//! * **Stale keys** (last success older than `jwks_refresh_secs`): a refresh is
//!   started in the *background* and the request is served with the keys at
//!   hand (stale-while-revalidate); the cooldown applies here too.
//! * A **failed fetch** (network error, timeout, status other than 200, body
//!   over `jwks_max_bytes`, invalid JSON, or no usable key) keeps the last
//!   good keys and counts as an attempt for the cooldown. Keys within a JWKS
//!   that fail to parse are skipped with a log line.
//! * The HTTP client (hyper + rustls) has a 5 s timeout for the whole
//!   request, follows no redirects, speaks HTTP/1.1, and verifies
//!   certificates with the platform verifier (system trust store). The rustls
//!   `ring` provider is passed to it explicitly: nothing is installed
//!   process-wide, there is no aws-lc, and `reqwest`'s TLS features (shared
//!   with the rest of the workspace through feature unification) are left
//!   alone.

mod config;
mod jwks;
mod keys;
mod verify;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

pub use config::{ConfigError, IssuerConfig};
pub use verify::{TokenRejection, VerifiedToken};

use jsonwebtoken::{Algorithm, DecodingKey};

use crate::jwks::JwksSource;
use crate::keys::KeySet;

/// Largest compact JWT accepted by [`Issuers::verify`], in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The configured identity providers. Cheap to clone (an [`Arc`] inside).
#[derive(Clone)]
pub struct Issuers {
    inner: Arc<Inner>,
}

struct Inner {
    /// Keyed by the exact `iss` value.
    by_iss: HashMap<String, Arc<Issuer>>,
}

/// One issuer, ready to verify tokens.
pub(crate) struct Issuer {
    pub(crate) name: String,
    pub(crate) issuer: String,
    pub(crate) audience: Vec<String>,
    pub(crate) algorithms: Vec<Algorithm>,
    /// Present iff `hs256_secret` was configured (and then an HS* alg is pinned).
    pub(crate) hmac_key: Option<DecodingKey>,
    pub(crate) static_keys: KeySet,
    pub(crate) jwks: Option<Arc<JwksSource>>,
    pub(crate) leeway_secs: u64,
    pub(crate) tenant_claim: Option<String>,
}

impl Issuers {
    /// Validates the configs, parses static keys, builds the HTTP client
    /// (timeout 5 s) and tries one JWKS fetch per issuer, concurrently.
    ///
    /// A failed first fetch is logged with `tracing::warn!` and retried on
    /// demand; it does not fail start-up. Must be called within a Tokio
    /// runtime.
    pub async fn new(configs: Vec<IssuerConfig>) -> Result<Issuers, ConfigError> {
        let mut names = HashSet::new();
        let mut issuers_seen = HashSet::new();
        for config in &configs {
            config.validate()?;
            if !names.insert(config.name.as_str()) {
                return Err(config.error(format!(
                    "duplicate issuer name `{}`: names must be unique",
                    config.name
                )));
            }
            if !issuers_seen.insert(config.issuer.as_str()) {
                return Err(config.error(format!(
                    "duplicate issuer `{}`: another [[issuers]] entry has the same `issuer`",
                    config.issuer
                )));
            }
        }

        // Pin jsonwebtoken's crypto backend explicitly, so that feature
        // unification elsewhere in a build can never leave it undecided.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();

        let client = if configs.iter().any(|c| c.jwks_url.is_some()) {
            Some(jwks::build_http_client().map_err(ConfigError::HttpClient)?)
        } else {
            None
        };

        let mut by_iss = HashMap::new();
        let mut sources = Vec::new();
        for config in configs {
            let issuer = Issuer::from_config(config, client.as_ref())?;
            if let Some(source) = &issuer.jwks {
                sources.push(Arc::clone(source));
            }
            by_iss.insert(issuer.issuer.clone(), Arc::new(issuer));
        }

        let mut first_fetches = tokio::task::JoinSet::new();
        for source in sources {
            first_fetches.spawn(async move { source.refresh_initial().await });
        }
        while first_fetches.join_next().await.is_some() {}

        Ok(Issuers {
            inner: Arc::new(Inner { by_iss }),
        })
    }

    /// True when no issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.inner.by_iss.is_empty()
    }

    /// Verifies a compact JWT. Never panics on any input.
    ///
    /// `now_unix` is the caller's current time in seconds since the epoch; the
    /// token must be within its validity window at `now_unix` *and* at the
    /// system time (see the crate docs, *Time*).
    pub async fn verify(
        &self,
        token: &str,
        now_unix: u64,
    ) -> Result<VerifiedToken, TokenRejection> {
        verify::verify(self, token, now_unix).await
    }

    pub(crate) fn issuer_for(&self, iss: &str) -> Option<&Arc<Issuer>> {
        self.inner.by_iss.get(iss)
    }
}

impl fmt::Debug for Issuers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self
            .inner
            .by_iss
            .values()
            .map(|i| i.name.as_str())
            .collect();
        names.sort_unstable();
        f.debug_struct("Issuers").field("names", &names).finish()
    }
}

impl Issuer {
    fn from_config(
        config: IssuerConfig,
        client: Option<&jwks::HttpClient>,
    ) -> Result<Issuer, ConfigError> {
        let algorithms = config.parsed_algorithms()?;
        let mut static_keys = KeySet::default();
        for (index, text) in config.keys.iter().enumerate() {
            let key = keys::parse_static_key(text)
                .map_err(|problem| config.error(format!("keys[{index}]: {problem}")))?;
            static_keys.insert(key);
        }
        let hmac_key = config
            .hs256_secret
            .as_deref()
            .map(|secret| DecodingKey::from_secret(secret.as_bytes()));
        let jwks = match (&config.jwks_url, client) {
            (Some(url), Some(client)) => Some(Arc::new(JwksSource::new(
                config.name.clone(),
                url.clone(),
                client.clone(),
                &config,
            ))),
            (Some(_), None) => {
                return Err(config.error("internal: no HTTP client for the JWKS URL".to_owned()));
            }
            (None, _) => None,
        };
        Ok(Issuer {
            name: config.name,
            issuer: config.issuer,
            audience: config.audience,
            algorithms,
            hmac_key,
            static_keys,
            jwks,
            leeway_secs: config.leeway_secs,
            tenant_claim: config.tenant_claim,
        })
    }
}

/// True when `token` is three non-empty base64url segments separated by dots:
/// a cheap syntactic check used to route a bearer credential. It says nothing
/// about validity.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut segments = 0;
    for segment in token.split('.') {
        segments += 1;
        if segments > 3 || segment.is_empty() || !segment.bytes().all(is_base64url_byte) {
            return false;
        }
    }
    segments == 3
}

fn is_base64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}
