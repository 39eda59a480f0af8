//! Issuer configuration and its validation.

use std::fmt;
use std::net::IpAddr;

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Deserializer};

use crate::keys;

/// Largest accepted `leeway_secs`.
pub const MAX_LEEWAY_SECS: u64 = 300;
/// Shortest accepted `hs256_secret`, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// The algorithm names accepted in `algorithms`.
pub const ALGORITHM_NAMES: [&str; 12] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
];

/// Claims that the end user can edit at most identity providers (profile
/// fields, Auth0 `user_metadata`, Cognito user names): they must never name a
/// tenant.
const USER_EDITABLE_CLAIMS: [&str; 23] = [
    "sub",
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "picture",
    "profile",
    "website",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "phone_number",
    "phone_number_verified",
    "address",
    "updated_at",
    "user_metadata",
    "cognito:username",
    "username",
];

/// One configured issuer (a TOML `[[issuers]]` table).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Short label used in audit/actor strings, `[a-z0-9_-]{1,40}`.
    pub name: String,
    /// Exact `iss` value.
    pub issuer: String,
    /// Accepted `aud` values, at least one (a single string is accepted too).
    #[serde(deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// JWKS URL; `https` required unless the host is loopback.
    pub jwks_url: Option<String>,
    /// Static public keys: each a PEM (`PUBLIC KEY` / `RSA PUBLIC KEY`, RSA,
    /// EC P-256/P-384 or Ed25519) or a JWK JSON object as a string. PEM keys
    /// have no `kid`: give the key as a JWK with a `kid` to match tokens that
    /// carry one.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Pinned algorithms: any of RS256 RS384 RS512 PS256 PS384 PS512 ES256
    /// ES384 EdDSA HS256 HS384 HS512.
    pub algorithms: Vec<String>,
    /// HMAC secret. HMAC algorithms are allowed only with it, and it is then
    /// the only HMAC key (used for HS256, HS384 and HS512 alike).
    pub hs256_secret: Option<String>,
    /// Clock skew allowed on `exp`/`nbf`, at most 300.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// Optional top-level claim naming the tenant (exact name, no nesting).
    pub tenant_claim: Option<String>,
    /// Minimum time between JWKS fetches triggered by an unknown `kid`.
    #[serde(default = "default_jwks_cooldown_secs")]
    pub jwks_cooldown_secs: u64,
    /// Age after which JWKS keys are refreshed in the background.
    #[serde(default = "default_jwks_refresh_secs")]
    pub jwks_refresh_secs: u64,
    /// Hard cap on the JWKS response body.
    #[serde(default = "default_jwks_max_bytes")]
    pub jwks_max_bytes: usize,
}

fn default_leeway_secs() -> u64 {
    60
}
fn default_jwks_cooldown_secs() -> u64 {
    30
}
fn default_jwks_refresh_secs() -> u64 {
    3600
}
fn default_jwks_max_bytes() -> usize {
    262_144
}

/// A single string or a list of strings.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

impl fmt::Debug for IssuerConfig {
    /// Like a derived `Debug`, with the HMAC secret redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerConfig")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("jwks_url", &self.jwks_url)
            .field("keys", &self.keys)
            .field("algorithms", &self.algorithms)
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("leeway_secs", &self.leeway_secs)
            .field("tenant_claim", &self.tenant_claim)
            .field("jwks_cooldown_secs", &self.jwks_cooldown_secs)
            .field("jwks_refresh_secs", &self.jwks_refresh_secs)
            .field("jwks_max_bytes", &self.jwks_max_bytes)
            .finish()
    }
}

/// A configuration problem, naming the issuer concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// One issuer's configuration is invalid.
    #[error("identity issuer `{issuer}`: {problem}")]
    Issuer {
        /// The issuer's `name` (or its `issuer` when the name is empty).
        issuer: String,
        /// What is wrong.
        problem: String,
    },
    /// The HTTP client for JWKS fetches could not be built.
    #[error("identity issuers: cannot build the HTTP client for JWKS: {0}")]
    HttpClient(String),
}

impl IssuerConfig {
    /// Checks this issuer on its own (duplicates across issuers are checked
    /// by [`crate::Issuers::new`]). Static keys are parsed too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_name()?;
        if self.issuer.is_empty()
            || self.issuer.len() > 1024
            || self
                .issuer
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(self.error(
                "`issuer` must be a non-empty string (at most 1024 bytes, no whitespace)".into(),
            ));
        }
        if self.audience.is_empty() {
            return Err(self.error("`audience` is empty: list at least one accepted `aud`".into()));
        }
        if self.audience.iter().any(|a| a.is_empty()) {
            return Err(self.error("`audience` contains an empty string".into()));
        }

        let algorithms = self.parsed_algorithms()?;
        let hmac: Vec<&str> = self
            .algorithms
            .iter()
            .filter(|a| a.starts_with("HS"))
            .map(String::as_str)
            .collect();
        let asymmetric: Vec<&str> = self
            .algorithms
            .iter()
            .filter(|a| !a.starts_with("HS"))
            .map(String::as_str)
            .collect();
        let has_public_source = self.jwks_url.is_some() || !self.keys.is_empty();

        if !has_public_source && self.hs256_secret.is_none() {
            return Err(self.error(
                "no key source: set `jwks_url`, `keys` or (for HS256/HS384/HS512) `hs256_secret`"
                    .into(),
            ));
        }
        if !hmac.is_empty() && self.hs256_secret.is_none() {
            return Err(self.error(format!(
                "{} listed in `algorithms` but no `hs256_secret` is set: HMAC algorithms need an explicit secret",
                hmac.join(", ")
            )));
        }
        if let Some(secret) = &self.hs256_secret {
            if hmac.is_empty() {
                return Err(self.error(
                    "`hs256_secret` is set but no HS256/HS384/HS512 is listed in `algorithms`"
                        .into(),
                ));
            }
            if secret.len() < MIN_HMAC_SECRET_BYTES {
                return Err(self.error(format!(
                    "`hs256_secret` is too short: at least {MIN_HMAC_SECRET_BYTES} bytes"
                )));
            }
        }
        if !asymmetric.is_empty() && !has_public_source {
            return Err(self.error(format!(
                "{} listed in `algorithms` but only `hs256_secret` is set: public-key algorithms need `jwks_url` or `keys` (the secret is used for HMAC only)",
                asymmetric.join(", ")
            )));
        }
        if asymmetric.is_empty() && has_public_source {
            return Err(self.error(
                "`jwks_url`/`keys` are set but `algorithms` lists no public-key algorithm".into(),
            ));
        }

        if let Some(url) = &self.jwks_url {
            self.validate_jwks_url(url)?;
        }
        for (index, text) in self.keys.iter().enumerate() {
            let key = keys::parse_static_key(text)
                .map_err(|problem| self.error(format!("keys[{index}]: {problem}")))?;
            if !algorithms.iter().any(|alg| key.usable_for(*alg)) {
                return Err(self.error(format!(
                    "keys[{index}] ({}) fits none of the listed algorithms",
                    key.describe()
                )));
            }
        }

        if self.leeway_secs > MAX_LEEWAY_SECS {
            return Err(self.error(format!(
                "`leeway_secs` = {} is too large (at most {MAX_LEEWAY_SECS})",
                self.leeway_secs
            )));
        }
        if let Some(claim) = &self.tenant_claim {
            self.validate_tenant_claim(claim)?;
        }
        if !(1..=86_400).contains(&self.jwks_cooldown_secs) {
            return Err(self.error("`jwks_cooldown_secs` must be between 1 and 86400".into()));
        }
        if !(1..=7 * 86_400).contains(&self.jwks_refresh_secs) {
            return Err(self.error("`jwks_refresh_secs` must be between 1 and 604800".into()));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.jwks_max_bytes) {
            return Err(self.error("`jwks_max_bytes` must be between 1024 and 16777216".into()));
        }
        Ok(())
    }

    pub(crate) fn error(&self, problem: String) -> ConfigError {
        let issuer = if self.name.is_empty() {
            self.issuer.clone()
        } else {
            self.name.clone()
        };
        ConfigError::Issuer { issuer, problem }
    }

    /// The pinned algorithms, parsed.
    pub(crate) fn parsed_algorithms(&self) -> Result<Vec<Algorithm>, ConfigError> {
        if self.algorithms.is_empty() {
            return Err(self.error("`algorithms` is empty: pin at least one algorithm".into()));
        }
        let mut out = Vec::with_capacity(self.algorithms.len());
        for name in &self.algorithms {
            let alg = parse_algorithm(name).ok_or_else(|| {
                self.error(format!(
                    "unknown algorithm `{name}` (allowed: {})",
                    ALGORITHM_NAMES.join(" ")
                ))
            })?;
            if !out.contains(&alg) {
                out.push(alg);
            }
        }
        Ok(out)
    }

    fn validate_name(&self) -> Result<(), ConfigError> {
        let ok = (1..=40).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(())
        } else {
            Err(self.error(format!(
                "`name` = {:?} must be 1 to 40 characters of a-z, 0-9, `_` and `-`",
                self.name
            )))
        }
    }

    fn validate_jwks_url(&self, url: &str) -> Result<(), ConfigError> {
        let parsed: http::Uri = url
            .parse()
            .map_err(|e| self.error(format!("`jwks_url` {url:?} is not a valid URL: {e}")))?;
        let Some(authority) = parsed.authority() else {
            return Err(self.error(format!("`jwks_url` {url:?} has no host")));
        };
        if authority.as_str().contains('@') {
            return Err(self.error("`jwks_url` must not contain credentials".into()));
        }
        match parsed.scheme_str() {
            Some("https") => Ok(()),
            Some("http") if is_loopback(authority.host()) => Ok(()),
            Some("http") => Err(self.error(format!(
                "`jwks_url` {url:?} uses http off loopback: https is required (http only for 127.0.0.1, ::1 or localhost)"
            ))),
            other => Err(self.error(format!(
                "`jwks_url` {url:?} has scheme {other:?}: https is required"
            ))),
        }
    }

    fn validate_tenant_claim(&self, claim: &str) -> Result<(), ConfigError> {
        let plain = (1..=128).contains(&claim.len())
            && claim
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\' | b'`'));
        if !plain {
            return Err(self.error(format!(
                "`tenant_claim` {claim:?} must be a plain top-level claim name (1 to 128 printable ASCII characters, no quotes or backslashes)"
            )));
        }
        let lower = claim.to_ascii_lowercase();
        if USER_EDITABLE_CLAIMS.contains(&lower.as_str()) || lower.starts_with("user_metadata") {
            return Err(self.error(format!(
                "`tenant_claim` {claim:?} is a claim the user can edit at the identity provider; use an admin-controlled claim (e.g. app_metadata, a Cognito custom attribute that is read-only, or a roles/groups claim)"
            )));
        }
        Ok(())
    }
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Parses one of [`ALGORITHM_NAMES`] (exact spelling).
pub(crate) fn parse_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        _ => return None,
    })
}
