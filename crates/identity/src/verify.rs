//! Token verification: shape, issuer selection, algorithm pinning, key
//! selection, signature and claims.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::parse_algorithm;
use crate::jwks::Refresh;
use crate::keys::KeySet;
use crate::{Issuer, Issuers, MAX_TOKEN_BYTES, looks_like_jwt};

/// Longest accepted `sub`, in bytes.
const MAX_SUB_BYTES: usize = 255;
/// Longest accepted tenant value, in bytes.
const MAX_TENANT_BYTES: usize = 255;

/// A token whose signature and claims were verified.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The issuer's configured `name`.
    pub issuer_name: String,
    /// The `iss` claim.
    pub issuer: String,
    /// The `sub` claim: non-empty, at most 255 bytes.
    pub sub: String,
    /// The `email` claim, when it is a string.
    pub email: Option<String>,
    /// Whether `email_verified` is the JSON boolean `true` (a string `"true"` is not).
    pub email_verified: bool,
    /// The value of the configured `tenant_claim`, when present.
    pub tenant: Option<String>,
    /// The `exp` claim, seconds since the epoch.
    pub expires_at: u64,
    /// All claims, for `@user.claims.*` in record rules.
    pub claims: Map<String, Value>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// Not a well-formed compact JWT (size, segments, base64, JSON, header).
    #[error("malformed token")]
    Malformed,
    /// The `iss` claim names no configured issuer.
    #[error("unknown token issuer")]
    UnknownIssuer,
    /// The header algorithm is unknown or not pinned for this issuer.
    #[error("token algorithm not allowed")]
    AlgorithmNotAllowed,
    /// No configured or published key matches the token's `kid` and algorithm.
    #[error("unknown token signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad token signature")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` names none of the accepted audiences.
    #[error("token audience not accepted")]
    WrongAudience,
    /// A required claim is missing or has the wrong type or value.
    #[error("invalid token claims: {0}")]
    InvalidClaims(String),
    /// The issuer's keys could not be fetched, so the key may exist.
    #[error("token signing keys unavailable")]
    KeysUnavailable,
}

pub(crate) async fn verify(
    issuers: &Issuers,
    token: &str,
    now_unix: u64,
) -> Result<VerifiedToken, TokenRejection> {
    if token.len() > MAX_TOKEN_BYTES || !looks_like_jwt(token) {
        return Err(TokenRejection::Malformed);
    }
    let mut segments = token.split('.');
    let (Some(header_b64), Some(payload_b64)) = (segments.next(), segments.next()) else {
        return Err(TokenRejection::Malformed);
    };

    // Header: our own look first, so that `alg: none` and unknown algorithms
    // are told apart from garbage, and `crit` is refused.
    let raw_header = decode_json_segment(header_b64)?;
    let alg = match raw_header.get("alg") {
        Some(Value::String(name)) => {
            parse_algorithm(name).ok_or(TokenRejection::AlgorithmNotAllowed)?
        }
        _ => return Err(TokenRejection::Malformed),
    };
    if raw_header.contains_key("crit") {
        return Err(TokenRejection::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Malformed)?;
    if header.alg != alg {
        return Err(TokenRejection::Malformed);
    }

    // Issuer selection from the UNVERIFIED payload: selection only.
    let unverified = decode_json_segment(payload_b64)?;
    let Some(Value::String(iss)) = unverified.get("iss") else {
        return Err(TokenRejection::UnknownIssuer);
    };
    let issuer = issuers
        .issuer_for(iss)
        .ok_or(TokenRejection::UnknownIssuer)?;

    if !issuer.algorithms.contains(&alg) {
        return Err(TokenRejection::AlgorithmNotAllowed);
    }
    let key = select_key(issuer, alg, header.kid.as_deref()).await?;

    let mut validation = Validation::new(alg);
    validation.leeway = issuer.leeway_secs;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = true;
    validation.set_issuer(&[issuer.issuer.as_str()]);
    validation.set_audience(&issuer.audience);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map_err(map_jwt_error)?;

    check_claims(issuer, data.claims, now_unix)
}

fn decode_json_segment(segment: &str) -> Result<Map<String, Value>, TokenRejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenRejection::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenRejection::Malformed)
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

enum Found {
    One(DecodingKey),
    None,
    /// Several keys fit a token without `kid`.
    Ambiguous,
}

fn find_key(issuer: &Issuer, alg: Algorithm, kid: Option<&str>) -> Found {
    let jwks_keys = issuer
        .jwks
        .as_ref()
        .map(|source| source.keys())
        .unwrap_or_default();
    let sets: [&KeySet; 2] = [&issuer.static_keys, &jwks_keys];
    match kid {
        Some(kid) => sets
            .iter()
            .find_map(|set| set.by_kid(kid, alg))
            .map_or(Found::None, |key| Found::One(key.key.clone())),
        None => {
            let mut fitting = sets.iter().flat_map(|set| set.usable_for(alg));
            match (fitting.next(), fitting.next()) {
                (Some(key), None) => Found::One(key.key.clone()),
                (None, _) => Found::None,
                (Some(_), Some(_)) => Found::Ambiguous,
            }
        }
    }
}

async fn select_key(
    issuer: &Issuer,
    alg: Algorithm,
    kid: Option<&str>,
) -> Result<DecodingKey, TokenRejection> {
    if is_hmac(alg) {
        // The configured secret is the only HMAC key, ever.
        return issuer
            .hmac_key
            .clone()
            .ok_or(TokenRejection::AlgorithmNotAllowed);
    }
    match find_key(issuer, alg, kid) {
        Found::One(key) => {
            if let Some(source) = &issuer.jwks {
                source.refresh_if_stale();
            }
            return Ok(key);
        }
        Found::Ambiguous => return Err(TokenRejection::UnknownKey),
        Found::None => {}
    }
    let Some(source) = &issuer.jwks else {
        return Err(TokenRejection::UnknownKey);
    };
    let outcome = source.refresh_on_demand().await;
    match find_key(issuer, alg, kid) {
        Found::One(key) => Ok(key),
        Found::Ambiguous => Err(TokenRejection::UnknownKey),
        Found::None => Err(match outcome {
            Refresh::Refreshed | Refresh::CoolingDown { last_ok: true } => {
                TokenRejection::UnknownKey
            }
            Refresh::Failed | Refresh::CoolingDown { last_ok: false } => {
                TokenRejection::KeysUnavailable
            }
        }),
    }
}

fn map_jwt_error(error: jsonwebtoken::errors::Error) -> TokenRejection {
    match error.kind() {
        ErrorKind::InvalidSignature => TokenRejection::BadSignature,
        ErrorKind::ExpiredSignature => TokenRejection::Expired,
        ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
        ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
        ErrorKind::InvalidIssuer => TokenRejection::UnknownIssuer,
        ErrorKind::MissingRequiredClaim(claim) => {
            TokenRejection::InvalidClaims(format!("`{claim}` is missing or has the wrong type"))
        }
        ErrorKind::InvalidClaimFormat(claim) => {
            TokenRejection::InvalidClaims(format!("`{claim}` has the wrong type"))
        }
        ErrorKind::InvalidSubject => TokenRejection::InvalidClaims("`sub` is not accepted".into()),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => TokenRejection::AlgorithmNotAllowed,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => TokenRejection::Malformed,
        // Key construction failures and anything new: the token does not verify.
        _ => TokenRejection::BadSignature,
    }
}

/// Reads a NumericDate the way `jsonwebtoken` does: a non-negative integer, or
/// a finite non-negative float (rounded).
fn numeric_date(value: &Value) -> Option<u64> {
    match value {
        Value::Number(number) => number.as_u64().or_else(|| {
            number
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f.round() as u64)
        }),
        _ => None,
    }
}

/// Checks on the verified claims: time against `now_unix`, `iss`, `sub`,
/// and the tenant claim; then builds the [`VerifiedToken`].
fn check_claims(
    issuer: &Issuer,
    claims: Map<String, Value>,
    now_unix: u64,
) -> Result<VerifiedToken, TokenRejection> {
    let leeway = issuer.leeway_secs;
    let expires_at = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or_else(|| TokenRejection::InvalidClaims("`exp` must be a NumericDate".into()))?;
    if expires_at.saturating_add(leeway) < now_unix {
        return Err(TokenRejection::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = numeric_date(nbf)
            .ok_or_else(|| TokenRejection::InvalidClaims("`nbf` must be a NumericDate".into()))?;
        if nbf > now_unix.saturating_add(leeway) {
            return Err(TokenRejection::NotYetValid);
        }
    }
    match claims.get("iss") {
        Some(Value::String(iss)) if *iss == issuer.issuer => {}
        _ => return Err(TokenRejection::UnknownIssuer),
    }
    let sub = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() && sub.len() <= MAX_SUB_BYTES => sub.clone(),
        _ => {
            return Err(TokenRejection::InvalidClaims(format!(
                "`sub` must be a non-empty string of at most {MAX_SUB_BYTES} bytes"
            )));
        }
    };
    let email = match claims.get("email") {
        Some(Value::String(email)) => Some(email.clone()),
        _ => None,
    };
    let email_verified = match claims.get("email_verified") {
        // Only the JSON boolean: a string "true" is not a verification an issuer vouches
        // for in the standard claim's type, and invitations are claimed on it.
        Some(Value::Bool(verified)) => *verified,
        _ => false,
    };
    let tenant = match &issuer.tenant_claim {
        None => None,
        Some(name) => match claims.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(tenant))
                if !tenant.is_empty() && tenant.len() <= MAX_TENANT_BYTES =>
            {
                Some(tenant.clone())
            }
            Some(_) => {
                return Err(TokenRejection::InvalidClaims(format!(
                    "tenant claim `{name}` must be a non-empty string of at most {MAX_TENANT_BYTES} bytes"
                )));
            }
        },
    };
    Ok(VerifiedToken {
        issuer_name: issuer.name.clone(),
        issuer: issuer.issuer.clone(),
        sub,
        email,
        email_verified,
        tenant,
        expires_at,
        claims,
    })
}
