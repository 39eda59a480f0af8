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

/// Secrets already checked against their stored hash, so a key's later requests skip the
/// SHA-256: each is remembered by a 128-bit tag (two SipHashes under keys drawn at random per
/// memo, never stored or shown), filed under the stored hash it matched. A secret presented
/// again matches if its tag equals the one filed under the key's current stored hash; a new
/// secret (a rotated key) has a new stored hash and is checked in full. Finding another secret
/// with the same tag takes about 2^127 guesses at keys the guesser never sees. Kept per
/// thread shard ([`crate::shard`]); a shard forgets everything once it holds
/// [`SecretMemo::CAPACITY`] entries.
#[derive(Debug, Default)]
pub struct SecretMemo {
    tags: [std::collections::hash_map::RandomState; 2],
    shards: [crate::shard::Padded<std::sync::Mutex<Tags>>; crate::shard::SHARDS],
}

/// Tags of matched secrets, by the stored hash they matched.
type Tags = crate::shard::HotMap<String, [u64; 2]>;

impl SecretMemo {
    pub const CAPACITY: usize = 4096;

    fn tag(&self, secret: &str) -> [u64; 2] {
        use std::hash::BuildHasher as _;
        [
            self.tags[0].hash_one(secret.as_bytes()),
            self.tags[1].hash_one(secret.as_bytes()),
        ]
    }

    fn shard(&self) -> std::sync::MutexGuard<'_, Tags> {
        let shard = &self.shards[crate::shard::this_thread()];
        shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `secret` matches `stored_hash` ([`secret_matches`]), remembered for next time.
    pub fn matches(&self, secret: &str, stored_hash: &str) -> bool {
        let tag = self.tag(secret);
        if let Some(known) = self.shard().get(stored_hash) {
            let same = known[0].to_le_bytes().ct_eq(&tag[0].to_le_bytes())
                & known[1].to_le_bytes().ct_eq(&tag[1].to_le_bytes());
            if bool::from(same) {
                return true;
            }
        }
        if !secret_matches(secret, stored_hash) {
            return false;
        }
        let mut shard = self.shard();
        if shard.len() >= SecretMemo::CAPACITY {
            shard.clear();
        }
        shard.insert(stored_hash.to_owned(), tag);
        true
    }
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
    fn a_remembered_secret_matches_only_itself_and_only_its_stored_hash() {
        let memo = SecretMemo::default();
        let key = generate().unwrap();
        let (_, secret) = parse_token(&key.token).unwrap();
        for _ in 0..3 {
            assert!(memo.matches(secret, &key.secret_hash));
        }
        assert!(!memo.matches("wrong", &key.secret_hash));
        let tampered = format!("{secret}x");
        assert!(!memo.matches(&tampered, &key.secret_hash));
        // The key rotated: its stored hash is another; the old secret no longer matches.
        let rotated = generate().unwrap();
        assert!(!memo.matches(secret, &rotated.secret_hash));
        let (_, new_secret) = parse_token(&rotated.token).unwrap();
        assert!(memo.matches(new_secret, &rotated.secret_hash));
        assert!(memo.matches(secret, &key.secret_hash));
        // A full memo starts over and still answers right.
        for _ in 0..SecretMemo::CAPACITY + 1 {
            let other = generate().unwrap();
            let (_, s) = parse_token(&other.token).unwrap();
            assert!(memo.matches(s, &other.secret_hash));
        }
        assert!(memo.matches(secret, &key.secret_hash));
        assert!(!memo.matches("wrong", &key.secret_hash));
    }

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

        #[test]
        fn the_memo_agrees_with_the_full_check(presented in ".{0,60}", right in proptest::bool::ANY) {
            let memo = SecretMemo::default();
            let key = generate().unwrap();
            let (_, secret) = parse_token(&key.token).unwrap();
            // The right secret is remembered first; then whatever is presented.
            prop_assert!(memo.matches(secret, &key.secret_hash));
            let presented = if right { secret.to_owned() } else { presented };
            prop_assert_eq!(
                memo.matches(&presented, &key.secret_hash),
                secret_matches(&presented, &key.secret_hash)
            );
        }
    }
}
