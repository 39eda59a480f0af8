//! Standard Webhooks signatures: `webhook-signature: v1,<base64 of HMAC-SHA256 over
//! "{id}.{timestamp}.{body}">`, keyed by the bytes a `whsec_` secret encodes. Several valid
//! secrets (a rotation) give several signatures, separated by spaces.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use bulkhead_api::WEBHOOK_SECRET_PREFIX as PREFIX;

/// The key bytes of a `whsec_` secret, or why it is not one.
pub(crate) use bulkhead_api::webhook_secret_key as key;

/// A new secret: 32 random bytes.
pub(crate) fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{PREFIX}{}", STANDARD.encode(bytes)))
}

/// One `v1,…` signature of a message.
pub(crate) fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

pub(crate) use bulkhead_core::keys::fingerprint;

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn the_specifications_example_signs_the_same() {
        let key = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_checked_and_generated_well_formed() {
        assert!(key(&generate().unwrap()).is_ok());
        for bad in [
            "",
            "whsec_",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            "whsec_AAAA",
        ] {
            assert!(key(bad).is_err(), "{bad}");
        }
        assert_eq!(fingerprint("whsec_x").len(), 16);
    }
}
