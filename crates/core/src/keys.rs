//! API key format, generation and hashing.
//!
//! A key reads `bk_<key id>_<secret>`. Only the SHA-256 of the secret is stored: the secret
//! is 256 random bits, so a fast hash is enough (there is nothing to brute-force), and a
//! constant-time comparison keeps the check free of timing signals.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::Error;
use crate::ids::KeyId;

const PREFIX: &str = "bk_";

/// A freshly made key: `token` is shown to the caller once and never stored.
#[derive(Debug)]
pub struct GeneratedKey {
    pub id: KeyId,
    pub token: String,
    pub secret_hash: String,
}

fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|_| Error::internal())?;
    Ok(bytes)
}

/// Makes a new key from the operating system's random source.
pub fn generate() -> Result<GeneratedKey, Error> {
    let id = KeyId::from_random(random::<8>()?);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>()?);
    Ok(GeneratedKey {
        token: format!("{PREFIX}{id}_{secret}"),
        secret_hash: hash_secret(&secret),
        id,
    })
}

/// Splits a presented token into key id and secret; `None` when it is not in our format.
pub fn parse_token(token: &str) -> Option<(KeyId, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = (rest.get(..17)?, rest.get(17..)?);
    let secret = secret.strip_prefix('_')?;
    if secret.is_empty() {
        return None;
    }
    Some((KeyId::parse(id).ok()?, secret))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares a presented secret with a stored hash in constant time.
pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    // Hex on the stack: this runs on every request a key authenticates.
    let mut hex = [0u8; 64];
    if hex::encode_to_slice(Sha256::digest(secret.as_bytes()), &mut hex).is_err() {
        return false;
    }
    hex[..].ct_eq(stored_hash.as_bytes()).into()
}

/// The first 16 hex characters of the SHA-256 of a secret: what is shown instead of it (a
/// webhook's signing secret), so a declared secret can be compared with a stored one.
pub fn fingerprint(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))[..16].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_keys_parse_and_verify() {
        let key = generate().unwrap();
        let (id, secret) = parse_token(&key.token).unwrap();
        assert_eq!(id, key.id);
        assert!(secret_matches(secret, &key.secret_hash));
        assert!(!secret_matches("wrong", &key.secret_hash));
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_tokens_never_panics(token in ".{0,80}") {
            let _ = parse_token(&token);
        }

        #[test]
        fn a_tampered_secret_never_verifies(flip in 0usize..43) {
            let key = generate().unwrap();
            let (_, secret) = parse_token(&key.token).unwrap();
            let mut bytes = secret.as_bytes().to_vec();
            bytes[flip] = if bytes[flip] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            prop_assert!(!secret_matches(&tampered, &key.secret_hash));
        }
    }
}
