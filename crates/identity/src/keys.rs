//! Public verification keys: parsing (PEM and JWK), load-time sanity checks,
//! and the `kid` map used for key selection.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (the RSA backend refuses larger ones).
const MAX_RSA_BITS: usize = 4096;

/// The kind of a public key, which decides the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyType {
    fn fits(self, alg: Algorithm) -> bool {
        match self {
            KeyType::Rsa => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            KeyType::EcP256 => alg == Algorithm::ES256,
            KeyType::EcP384 => alg == Algorithm::ES384,
            KeyType::Ed25519 => alg == Algorithm::EdDSA,
        }
    }

    fn name(self) -> &'static str {
        match self {
            KeyType::Rsa => "RSA",
            KeyType::EcP256 => "EC P-256",
            KeyType::EcP384 => "EC P-384",
            KeyType::Ed25519 => "Ed25519",
        }
    }
}

/// One asymmetric public key.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    pub(crate) kid: Option<String>,
    /// The JWK's `alg`, when it names one: the key is then usable for it only.
    pub(crate) alg: Option<Algorithm>,
    pub(crate) key_type: KeyType,
    pub(crate) key: DecodingKey,
}

impl VerifyKey {
    /// Whether this key may verify a token whose header says `alg`.
    pub(crate) fn usable_for(&self, alg: Algorithm) -> bool {
        self.key_type.fits(alg) && self.alg.is_none_or(|pinned| pinned == alg)
    }

    pub(crate) fn describe(&self) -> String {
        let mut out = self.key_type.name().to_owned();
        if let Some(kid) = &self.kid {
            out.push_str(&format!(", kid {kid:?}"));
        }
        if let Some(alg) = self.alg {
            out.push_str(&format!(", alg {alg:?}"));
        }
        out
    }
}

/// Keys of one source, looked up by `kid` in a map (a `kid` is only ever a
/// map key).
#[derive(Clone, Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Vec<Arc<VerifyKey>>>,
    all: Vec<Arc<VerifyKey>>,
}

impl KeySet {
    pub(crate) fn insert(&mut self, key: VerifyKey) {
        let key = Arc::new(key);
        if let Some(kid) = &key.kid {
            self.by_kid
                .entry(kid.clone())
                .or_default()
                .push(Arc::clone(&key));
        }
        self.all.push(key);
    }

    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    /// The first key with this `kid` that fits `alg`.
    pub(crate) fn by_kid(&self, kid: &str, alg: Algorithm) -> Option<&Arc<VerifyKey>> {
        self.by_kid.get(kid)?.iter().find(|k| k.usable_for(alg))
    }

    /// All keys that fit `alg` (for tokens without `kid`).
    pub(crate) fn usable_for(&self, alg: Algorithm) -> impl Iterator<Item = &Arc<VerifyKey>> {
        self.all.iter().filter(move |k| k.usable_for(alg))
    }
}

/// Parses a configured static key: a PEM public key or a JWK JSON object.
pub(crate) fn parse_static_key(text: &str) -> Result<VerifyKey, String> {
    let trimmed = text.trim();
    if trimmed.starts_with("-----BEGIN") {
        parse_pem(trimmed)
    } else if trimmed.starts_with('{') {
        let jwk: Jwk = serde_json::from_str(trimmed)
            .map_err(|e| format!("not a valid JWK JSON object: {e}"))?;
        from_jwk(&jwk)
    } else {
        Err("expected a PEM public key (-----BEGIN PUBLIC KEY-----) or a JWK JSON object".into())
    }
}

fn parse_pem(pem: &str) -> Result<VerifyKey, String> {
    let first_line = pem.lines().next().unwrap_or_default().trim();
    if first_line.contains("PRIVATE") {
        return Err("this is a private key: configure the public key only".into());
    }
    if first_line != "-----BEGIN PUBLIC KEY-----" && first_line != "-----BEGIN RSA PUBLIC KEY-----"
    {
        return Err(format!(
            "unsupported PEM block {first_line:?}: expected PUBLIC KEY or RSA PUBLIC KEY"
        ));
    }
    let bytes = pem.as_bytes();
    if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        let raw = key.try_get_as_bytes().map_err(|e| e.to_string())?;
        return ed25519_key(raw, None, None);
    }
    if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        let point = key.try_get_as_bytes().map_err(|e| e.to_string())?;
        let key_type = match point.len() {
            33 | 65 => KeyType::EcP256,
            49 | 97 => KeyType::EcP384,
            _ => return Err("unsupported EC key (only P-256 and P-384)".into()),
        };
        return checked_ec(key, key_type, None, None);
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        let der = key.try_get_as_bytes().map_err(|e| e.to_string())?;
        let utils = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.key_utils;
        let (n, e) = (utils.rsa_pub_components_from_public_key)(der)
            .map_err(|e| format!("invalid RSA public key: {e}"))?;
        return rsa_key(&n, &e, None, None);
    }
    Err("unrecognised public key (expected RSA, EC P-256/P-384 or Ed25519)".into())
}

/// Converts a JWK into a verification key, refusing anything that is not a
/// public signature key of a supported type.
pub(crate) fn from_jwk(jwk: &Jwk) -> Result<VerifyKey, String> {
    let common = &jwk.common;
    if let Some(usage) = &common.public_key_use
        && *usage != PublicKeyUse::Signature
    {
        return Err("`use` is not `sig`".into());
    }
    if let Some(ops) = &common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Err("`key_ops` does not include `verify`".into());
    }
    let alg = match common.key_algorithm {
        None => None,
        Some(key_alg) => Some(signature_algorithm(key_alg)?),
    };
    let kid = common.key_id.clone();
    if let Some(kid) = &kid
        && (kid.is_empty() || kid.len() > 256)
    {
        return Err("`kid` must be 1 to 256 bytes".into());
    }
    let key = match &jwk.algorithm {
        AlgorithmParameters::RSA(params) => {
            let n = b64(&params.n, "n")?;
            let e = b64(&params.e, "e")?;
            rsa_key(&n, &e, kid, alg)?
        }
        AlgorithmParameters::EllipticCurve(params) => {
            let (key_type, size) = match params.curve {
                EllipticCurve::P256 => (KeyType::EcP256, 32),
                EllipticCurve::P384 => (KeyType::EcP384, 48),
                _ => return Err("unsupported EC curve (only P-256 and P-384)".into()),
            };
            if b64(&params.x, "x")?.len() != size || b64(&params.y, "y")?.len() != size {
                return Err("EC coordinates have the wrong length for the curve".into());
            }
            let key = DecodingKey::from_ec_components(&params.x, &params.y)
                .map_err(|e| format!("invalid EC key: {e}"))?;
            checked_ec(key, key_type, kid, alg)?
        }
        AlgorithmParameters::OctetKeyPair(params) => {
            if params.curve != EllipticCurve::Ed25519 {
                return Err("unsupported OKP curve (only Ed25519)".into());
            }
            ed25519_key(&b64(&params.x, "x")?, kid, alg)?
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err(
                "symmetric (`oct`) keys are refused: the HMAC key is only `hs256_secret`".into(),
            );
        }
        _ => return Err("unsupported key type".into()),
    };
    if let Some(alg) = alg
        && !key.key_type.fits(alg)
    {
        return Err(format!(
            "`alg` {alg:?} does not fit a {} key",
            key.key_type.name()
        ));
    }
    Ok(key)
}

fn signature_algorithm(key_alg: KeyAlgorithm) -> Result<Algorithm, String> {
    Ok(match key_alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        other => {
            return Err(format!(
                "`alg` {other:?} is not a supported signature algorithm"
            ));
        }
    })
}

fn b64(value: &str, field: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("`{field}` is not base64url"))
}

fn rsa_key(
    n: &[u8],
    e: &[u8],
    kid: Option<String>,
    alg: Option<Algorithm>,
) -> Result<VerifyKey, String> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    let bits = match n.first() {
        Some(top) => (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
        None => 0,
    };
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(format!(
            "RSA modulus of {bits} bits (accepted: {MIN_RSA_BITS} to {MAX_RSA_BITS})"
        ));
    }
    let e_value = if e.len() <= 8 {
        e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    } else {
        u64::MAX
    };
    if e_value < 3 || e_value % 2 == 0 || e_value >= 1 << 33 {
        return Err("RSA public exponent out of range".into());
    }
    Ok(VerifyKey {
        kid,
        alg,
        key_type: KeyType::Rsa,
        key: DecodingKey::from_rsa_raw_components(n, e),
    })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn ed25519_key(
    raw: &[u8],
    kid: Option<String>,
    alg: Option<Algorithm>,
) -> Result<VerifyKey, String> {
    // The EdDSA verifier slices the first 32 bytes; anything else is refused
    // here so that verification can never see a short key.
    if raw.len() != 32 {
        return Err("Ed25519 public key must be 32 bytes".into());
    }
    let key = DecodingKey::from_ed_der(raw);
    probe(&key, Algorithm::EdDSA).map_err(|()| "invalid Ed25519 public key".to_owned())?;
    Ok(VerifyKey {
        kid,
        alg,
        key_type: KeyType::Ed25519,
        key,
    })
}

fn checked_ec(
    key: DecodingKey,
    key_type: KeyType,
    kid: Option<String>,
    alg: Option<Algorithm>,
) -> Result<VerifyKey, String> {
    let probe_alg = if key_type == KeyType::EcP256 {
        Algorithm::ES256
    } else {
        Algorithm::ES384
    };
    probe(&key, probe_alg).map_err(|()| format!("invalid {} public key", key_type.name()))?;
    Ok(VerifyKey {
        kid,
        alg,
        key_type,
        key,
    })
}

/// Builds the backend's verifier for `key` (which parses and validates the
/// key) by checking a dummy signature: an error means the key is unusable.
fn probe(key: &DecodingKey, alg: Algorithm) -> Result<(), ()> {
    jsonwebtoken::crypto::verify("AA", b"probe", key, alg)
        .map(|_| ())
        .map_err(|_| ())
}
