//! Tenant tokens: short-lived credentials a tenant credential mints for a browser
//! (`POST /v1/tokens`). A token names its tenant and its parent credential and can only narrow
//! the parent's rights (collections, actions, an extra record rule); the parent is re-checked
//! on every request, so revoking the parent key (or removing the parent member) revokes its
//! tokens at once.
//!
//! Format: `bkt_<payload>.<mac>`, both base64url without padding; the payload is JSON and
//! the MAC is HMAC-SHA256 under the server's token secret over `bkt_<payload>`. Editing any
//! byte of the payload (to widen it, or to point it at another tenant) breaks the MAC.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::access::{Rejection, VerifiedPrincipal};
use crate::error::Error;
use crate::ids::{KeyId, TenantId, UserId};
use crate::permissions::Narrowing;
use crate::query::vars::UserVars;
use crate::time::Timestamp;

pub const PREFIX: &str = "bkt_";
/// Longest lifetime of a tenant token: one day.
pub const MAX_TTL_SECS: u64 = 24 * 3600;
/// Largest encoded token accepted (claims of a user parent travel inside).
pub const MAX_TOKEN_BYTES: usize = 8192;

type HmacSha256 = Hmac<Sha256>;

/// The credential a token was minted from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenParent {
    Key(KeyId),
    User(UserId),
}

impl fmt::Display for TokenParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenParent::Key(id) => write!(f, "key:{id}"),
            TokenParent::User(id) => write!(f, "user:{id}"),
        }
    }
}

/// What a token carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenClaims {
    pub id: String,
    pub tenant: TenantId,
    /// The life of the tenant the token was minted in; tokens minted before incarnations
    /// existed belong to the legacy one.
    #[serde(default)]
    pub incarnation: crate::Incarnation,
    pub parent: TokenParent,
    pub narrowing: Narrowing,
    /// The parent user's `@user.*` values at minting time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserVars>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

fn mac(secret: &[u8], signed: &[u8]) -> Result<HmacSha256, Error> {
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| Error::internal())?;
    mac.update(signed);
    Ok(mac)
}

/// Signs `claims` into a token.
pub fn mint(secret: &[u8], claims: &TokenClaims) -> Result<String, Error> {
    let json = serde_json::to_vec(claims).map_err(|_| Error::internal())?;
    let signed = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json));
    let tag = mac(secret, signed.as_bytes())?.finalize().into_bytes();
    let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag));
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Error::bad_request(
            "token_too_large",
            format!(
                "the token would be {} bytes (at most {MAX_TOKEN_BYTES}); use a shorter rule or \
                 fewer collections",
                token.len()
            ),
        ));
    }
    Ok(token)
}

pub fn looks_like_token(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// Checks a token's MAC (in constant time) and expiry. The parent credential is checked by
/// the caller, per request.
pub fn verify(
    _authority: &crate::access::AccessAuthority,
    secret: &[u8],
    token: &str,
    now: Timestamp,
) -> Result<VerifiedPrincipal, Rejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::Invalid);
    }
    let (signed, tag) = token.rsplit_once('.').ok_or(Rejection::Invalid)?;
    let payload = signed.strip_prefix(PREFIX).ok_or(Rejection::Invalid)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| Rejection::Invalid)?;
    mac(secret, signed.as_bytes())
        .map_err(|_| Rejection::Invalid)?
        .verify_slice(&tag)
        .map_err(|_| Rejection::Invalid)?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Rejection::Invalid)?;
    let claims: TokenClaims = serde_json::from_slice(&json).map_err(|_| Rejection::Invalid)?;
    if claims.expires_at <= now {
        return Err(Rejection::Expired);
    }
    Ok(VerifiedPrincipal::from_token(claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Principal;
    use crate::permissions::Action;

    fn claims() -> TokenClaims {
        TokenClaims {
            id: "t1".into(),
            tenant: TenantId::parse("acme").unwrap(),
            incarnation: crate::Incarnation::legacy(),
            parent: TokenParent::Key(KeyId::parse("k0123456789abcdef").unwrap()),
            narrowing: Narrowing {
                collections: None,
                actions: [Action::Read].into(),
                rule: None,
            },
            user: None,
            issued_at: Timestamp::from_micros(0),
            expires_at: Timestamp::from_micros(10_000_000),
        }
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let token = mint(b"secret", &claims()).unwrap();
        assert!(looks_like_token(&token));
        let p = verify(
            &crate::access::AccessAuthority::for_tests(),
            b"secret",
            &token,
            Timestamp::from_micros(1),
        )
        .unwrap();
        assert!(matches!(p.principal(), Principal::Token(c) if c.tenant.as_str() == "acme"));
        assert!(p.is_read_only());
        assert_eq!(
            verify(
                &crate::access::AccessAuthority::for_tests(),
                b"secret",
                &token,
                Timestamp::from_micros(10_000_000)
            )
            .unwrap_err(),
            Rejection::Expired
        );
        assert_eq!(
            verify(
                &crate::access::AccessAuthority::for_tests(),
                b"other",
                &token,
                Timestamp::from_micros(1)
            )
            .unwrap_err(),
            Rejection::Invalid
        );
    }

    #[test]
    fn any_edit_breaks_the_token() {
        let token = mint(b"secret", &claims()).unwrap();
        let (signed, tag) = token.rsplit_once('.').unwrap();
        // Widen the actions and move it to another tenant, keeping the MAC.
        let mut widened = claims();
        widened.narrowing.actions = [Action::Read, Action::Delete].into();
        widened.tenant = TenantId::parse("globex").unwrap();
        let forged = format!(
            "{PREFIX}{}.{tag}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&widened).unwrap())
        );
        assert_eq!(
            verify(
                &crate::access::AccessAuthority::for_tests(),
                b"secret",
                &forged,
                Timestamp::from_micros(1)
            )
            .unwrap_err(),
            Rejection::Invalid
        );
        let mut bad_tag = tag.to_owned().into_bytes();
        bad_tag[0] = if bad_tag[0] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{signed}.{}", String::from_utf8(bad_tag).unwrap());
        assert!(
            verify(
                &crate::access::AccessAuthority::for_tests(),
                b"secret",
                &tampered,
                Timestamp::from_micros(1)
            )
            .is_err()
        );
        for junk in ["bkt_", "bkt_.", "bkt_abc", "bkt_!!.!!", ""] {
            assert!(
                verify(
                    &crate::access::AccessAuthority::for_tests(),
                    b"secret",
                    junk,
                    Timestamp::from_micros(1)
                )
                .is_err()
            );
        }
    }
}
