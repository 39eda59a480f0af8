//! Token shape: `looks_like_jwt`, garbage input, and mutation robustness.

use super::support::*;
use crate::{TokenRejection, looks_like_jwt};

#[test]
fn looks_like_jwt_is_a_syntactic_check() {
    let token = keys().ec.sign(None, &claims());
    assert!(looks_like_jwt(&token));
    assert!(looks_like_jwt("a.b.c"));
    assert!(looks_like_jwt(
        "eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo"
    ));
    for not in [
        "",
        ".",
        "..",
        "a.b",
        "a.b.",
        ".b.c",
        "a..c",
        "a.b.c.d",
        "a.b.c.d.e",
        "a.b=.c",
        "a.b+/.c",
        "a.b c.d",
        "bk_0123456789_secret",
        "é.b.c",
        "a.b.c\n",
    ] {
        assert!(!looks_like_jwt(not), "{not:?}");
    }
}

#[tokio::test]
async fn garbage_is_malformed_and_never_panics() {
    let k = keys();
    let cfg = config("g", None, vec![k.ec.public_pem.clone()], &["ES256"]);
    let issuers = issuers(vec![cfg]).await;
    let long = "a".repeat(20_000);
    let inputs = [
        "",
        "a.b.c",
        "e30.e30.e30",
        "W10.W10.W10",
        "bnVsbA.bnVsbA.c2ln",
        "eyJhbGciOiJFUzI1NiJ9.AAAA.AAAA",
        "eyJhbGciOiJFUzI1NiJ9.e30.AAAA",
        "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOjF9.AAAA",
        long.as_str(),
    ];
    for input in inputs {
        let got = issuers.verify(input, now()).await.unwrap_err();
        assert!(
            matches!(
                got,
                TokenRejection::Malformed | TokenRejection::UnknownIssuer
            ),
            "{input:.40}: {got:?}"
        );
    }
}

/// Deterministic mutations of a valid token (bit flips, truncation,
/// duplication, segment swaps): none may panic, and none may verify.
#[tokio::test]
async fn mutated_tokens_never_verify() {
    let k = keys();
    let cfg = config("m", None, vec![k.ec.public_pem.clone()], &["ES256"]);
    let issuers = issuers(vec![cfg]).await;
    let token = k.ec.sign(None, &claims());
    issuers
        .verify(&token, now())
        .await
        .expect("original verifies");

    let bytes = token.as_bytes();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \0";
    for round in 0..400 {
        let mut mutated = bytes.to_vec();
        match round % 4 {
            0 => {
                let i = next() as usize % mutated.len();
                mutated[i] = alphabet[next() as usize % alphabet.len()];
            }
            1 => mutated.truncate(next() as usize % mutated.len()),
            2 => {
                let i = next() as usize % mutated.len();
                mutated.remove(i);
            }
            _ => {
                let i = next() as usize % mutated.len();
                let j = next() as usize % mutated.len();
                mutated.swap(i, j);
            }
        }
        if mutated == bytes {
            continue;
        }
        let Ok(candidate) = String::from_utf8(mutated) else {
            continue;
        };
        assert!(
            issuers.verify(&candidate, now()).await.is_err(),
            "mutation {round} verified: {candidate}"
        );
    }
}
