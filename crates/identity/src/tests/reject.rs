//! Hostile and invalid tokens are refused with the right reason.

use jsonwebtoken::Algorithm;
use serde_json::json;

use super::support::*;
use crate::{Issuers, TokenRejection};

/// An RS256 issuer with rsa_a in its JWKS as kid "rsa-a".
async fn rs256_issuer() -> (Issuers, JwksServer) {
    let server = JwksServer::start(jwks(&[keys().rsa_a.jwk("rsa-a")])).await;
    let cfg = config("rs", Some(&server.url), vec![], &["RS256"]);
    (issuers(vec![cfg]).await, server)
}

async fn rejection(issuers: &Issuers, token: &str) -> TokenRejection {
    issuers
        .verify(token, now())
        .await
        .expect_err("token must be refused")
}

#[tokio::test]
async fn alg_none_is_refused() {
    let (issuers, _server) = rs256_issuer().await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({ "alg": alg, "typ": "JWT", "kid": "rsa-a" });
        // Empty signature: not even JWT-shaped.
        let token = raw_token(&header, &claims(), "");
        assert_eq!(rejection(&issuers, &token).await, TokenRejection::Malformed);
        // With some signature bytes: the algorithm is refused.
        let token = raw_token(&header, &claims(), "c2lnbmF0dXJl");
        assert_eq!(
            rejection(&issuers, &token).await,
            TokenRejection::AlgorithmNotAllowed,
            "{alg}"
        );
    }
}

#[tokio::test]
async fn unknown_and_unpinned_algorithms_are_refused() {
    let (issuers, _server) = rs256_issuer().await;
    for alg in ["HS1024", "ES512", "RSA-OAEP", "rs256", ""] {
        let token = raw_token(&json!({ "alg": alg }), &claims(), "c2ln");
        assert_eq!(
            rejection(&issuers, &token).await,
            TokenRejection::AlgorithmNotAllowed,
            "{alg:?}"
        );
    }
    let token = raw_token(&json!({ "alg": 256 }), &claims(), "c2ln");
    assert_eq!(rejection(&issuers, &token).await, TokenRejection::Malformed);
    // Properly signed, but with an algorithm the issuer did not pin.
    let token = keys().ec.sign(Some("rsa-a"), &claims());
    assert_eq!(
        rejection(&issuers, &token).await,
        TokenRejection::AlgorithmNotAllowed
    );
    let token = keys()
        .rsa_a
        .sign_as(Algorithm::PS256, Some("rsa-a"), &claims());
    assert_eq!(
        rejection(&issuers, &token).await,
        TokenRejection::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused_by_an_rs256_issuer() {
    let k = keys();
    let server = JwksServer::start(jwks(&[k.rsa_a.jwk("rsa-a")])).await;
    let jwks_issuer = config("jwks", Some(&server.url), vec![], &["RS256"]);
    let mut pem_issuer = config("pem", None, vec![k.rsa_a.public_pem.clone()], &["RS256"]);
    pem_issuer.issuer = "https://pem.example.test".into();
    let issuers = issuers(vec![jwks_issuer, pem_issuer]).await;

    for (iss, kid) in [(ISS, Some("rsa-a")), ("https://pem.example.test", None)] {
        let mut c = claims();
        c["iss"] = json!(iss);
        for secret in [
            k.rsa_a.public_pem.clone(),
            k.rsa_a.public_pem.trim().to_owned(),
        ] {
            let token = sign_hmac(secret.as_bytes(), Algorithm::HS256, kid, &c);
            assert_eq!(
                rejection(&issuers, &token).await,
                TokenRejection::AlgorithmNotAllowed
            );
        }
    }
}

#[tokio::test]
async fn hmac_key_is_only_the_secret_even_when_rs256_is_also_allowed() {
    let k = keys();
    let mut cfg = config(
        "both",
        None,
        vec![k.rsa_a.public_pem.clone()],
        &["RS256", "HS256"],
    );
    cfg.hs256_secret = Some(SECRET.into());
    let issuers = issuers(vec![cfg]).await;

    let c = claims();
    // The RSA public key (PEM, trimmed PEM, JWK JSON) as an HMAC secret: bad signature.
    let jwk = k.rsa_a.jwk("rsa-a").to_string();
    for secret in [
        k.rsa_a.public_pem.as_str(),
        k.rsa_a.public_pem.trim(),
        jwk.as_str(),
    ] {
        let token = sign_hmac(secret.as_bytes(), Algorithm::HS256, None, &c);
        assert_eq!(
            rejection(&issuers, &token).await,
            TokenRejection::BadSignature
        );
    }
    // Both legitimate paths still work.
    issuers
        .verify(
            &sign_hmac(SECRET.as_bytes(), Algorithm::HS256, None, &c),
            now(),
        )
        .await
        .expect("the configured secret");
    issuers
        .verify(&k.rsa_a.sign(None, &c), now())
        .await
        .expect("the RSA key");
}

#[tokio::test]
async fn injected_kids_are_simply_unknown() {
    let (issuers, server) = rs256_issuer().await;
    let kids = [
        "../../etc/passwd",
        "' OR 1=1 --",
        "rsa-a\0",
        "rsa-a ",
        "RSA-A",
        "http://evil.example/jwks.json",
        "%2e%2e%2f",
        "",
    ];
    for (i, kid) in kids.iter().enumerate() {
        // The token is signed with the real key: only the kid is wrong.
        let token = keys().rsa_a.sign(Some(kid), &claims());
        assert_eq!(
            rejection(&issuers, &token).await,
            TokenRejection::UnknownKey,
            "{kid:?}"
        );
        if i == 0 {
            expire_cooldown(&issuers);
        }
    }
    // Start-up fetch, plus one refresh (cooldown expired once, after the first try).
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn jku_and_embedded_jwk_headers_are_ignored() {
    let (issuers, server) = rs256_issuer().await;
    let k = keys();
    // Signed with rsa_b, which the header "offers" by value and by URL.
    let mut jheader = jsonwebtoken::Header::new(Algorithm::RS256);
    jheader.kid = Some("rsa-b".into());
    jheader.jku = Some(server.url.clone());
    jheader.jwk = Some(serde_json::from_value(k.rsa_b.jwk("rsa-b")).expect("jwk"));
    let token = jsonwebtoken::encode(&jheader, &claims(), &k.rsa_b.encoding).expect("sign");
    assert_eq!(
        rejection(&issuers, &token).await,
        TokenRejection::UnknownKey
    );
    assert_eq!(server.hits(), 1, "the jku URL is never fetched");
}

#[tokio::test]
async fn crit_header_is_refused() {
    let k = keys();
    let cfg = config("ec", None, vec![k.ec.public_pem.clone()], &["ES256"]);
    let issuers = issuers(vec![cfg]).await;
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.crit = Some(vec!["exp".into()]);
    let token = jsonwebtoken::encode(&header, &claims(), &k.ec.encoding).expect("sign");
    assert_eq!(rejection(&issuers, &token).await, TokenRejection::Malformed);
}

#[tokio::test]
async fn expired_and_not_yet_valid() {
    let (issuers, _server) = rs256_issuer().await;
    let k = keys();
    let mut c = claims();
    c["exp"] = json!(now() - 3600);
    assert_eq!(
        rejection(&issuers, &k.rsa_a.sign(Some("rsa-a"), &c)).await,
        TokenRejection::Expired
    );

    let mut c = claims();
    c["nbf"] = json!(now() + 3600);
    assert_eq!(
        rejection(&issuers, &k.rsa_a.sign(Some("rsa-a"), &c)).await,
        TokenRejection::NotYetValid
    );
}

#[tokio::test]
async fn now_unix_is_honoured() {
    let (issuers, _server) = rs256_issuer().await;
    let k = keys();
    let t = now();
    let mut c = claims();
    c["nbf"] = json!(t - 10);
    c["exp"] = json!(t + 600);
    let token = k.rsa_a.sign(Some("rsa-a"), &c);
    issuers.verify(&token, t).await.expect("valid now");
    // Valid by the system clock, but not at the caller's `now` (leeway 60 s).
    assert_eq!(
        issuers.verify(&token, t + 600 + 61).await.unwrap_err(),
        TokenRejection::Expired
    );
    assert_eq!(
        issuers.verify(&token, t - 10 - 61).await.unwrap_err(),
        TokenRejection::NotYetValid
    );
    // Within the leeway at the caller's `now`.
    issuers
        .verify(&token, t + 600 + 60)
        .await
        .expect("within leeway");
    issuers
        .verify(&token, t - 10 - 60)
        .await
        .expect("within leeway");
}

#[tokio::test]
async fn wrong_issuer_and_audience() {
    let (issuers, _server) = rs256_issuer().await;
    let k = keys();
    for iss in [
        json!("https://evil.example.test/"),
        json!("https://idp.example.test"),
        json!([ISS]),
        json!(null),
    ] {
        let mut c = claims();
        c["iss"] = iss.clone();
        assert_eq!(
            rejection(&issuers, &k.rsa_a.sign(Some("rsa-a"), &c)).await,
            TokenRejection::UnknownIssuer,
            "{iss}"
        );
    }
    let mut c = claims();
    c.as_object_mut().map(|m| m.remove("iss"));
    assert_eq!(
        rejection(&issuers, &k.rsa_a.sign(Some("rsa-a"), &c)).await,
        TokenRejection::UnknownIssuer
    );

    for aud in [json!("other"), json!(["other", "another"]), json!([])] {
        let mut c = claims();
        c["aud"] = aud.clone();
        assert_eq!(
            rejection(&issuers, &k.rsa_a.sign(Some("rsa-a"), &c)).await,
            TokenRejection::WrongAudience,
            "{aud}"
        );
    }
    let mut c = claims();
    c.as_object_mut().map(|m| m.remove("aud"));
    assert!(matches!(
        rejection(&issuers, &k.rsa_a.sign(Some("rsa-a"), &c)).await,
        TokenRejection::InvalidClaims(_)
    ));
}

#[tokio::test]
async fn exp_and_nbf_of_the_wrong_type_are_refused() {
    let (issuers, _server) = rs256_issuer().await;
    let k = keys();
    for (claim, value) in [
        ("exp", json!("9999999999")),
        ("exp", json!(true)),
        ("exp", json!(-1)),
        ("exp", json!({ "n": 9_999_999_999u64 })),
        ("exp", json!(null)),
        ("nbf", json!("0")),
        ("nbf", json!([0])),
    ] {
        let mut c = claims();
        c[claim] = value.clone();
        let got = rejection(&issuers, &k.rsa_a.sign(Some("rsa-a"), &c)).await;
        // A compound value confuses jsonwebtoken's claim parser: refused as malformed.
        let expected = matches!(got, TokenRejection::InvalidClaims(_))
            || ((value.is_object() || value.is_array()) && got == TokenRejection::Malformed);
        assert!(expected, "{claim}={value}: {got:?}");
    }
    let mut c = claims();
    c.as_object_mut().map(|m| m.remove("exp"));
    assert!(matches!(
        rejection(&issuers, &k.rsa_a.sign(Some("rsa-a"), &c)).await,
        TokenRejection::InvalidClaims(_)
    ));
}

#[tokio::test]
async fn sub_must_be_a_short_non_empty_string() {
    let (issuers, _server) = rs256_issuer().await;
    let k = keys();
    for sub in [json!(""), json!(42), json!("x".repeat(256)), json!(null)] {
        let mut c = claims();
        c["sub"] = sub;
        assert!(matches!(
            rejection(&issuers, &k.rsa_a.sign(Some("rsa-a"), &c)).await,
            TokenRejection::InvalidClaims(_)
        ));
    }
    let mut c = claims();
    c["sub"] = json!("x".repeat(255));
    issuers
        .verify(&k.rsa_a.sign(Some("rsa-a"), &c), now())
        .await
        .expect("255 bytes is fine");
}

#[tokio::test]
async fn tenant_claim_of_the_wrong_type_is_refused() {
    let k = keys();
    let mut cfg = config("t", None, vec![k.ec.public_pem.clone()], &["ES256"]);
    cfg.tenant_claim = Some("org_id".into());
    let issuers = issuers(vec![cfg]).await;
    for org in [json!(7), json!(["acme"]), json!("")] {
        let mut c = claims();
        c["org_id"] = org;
        assert!(matches!(
            rejection(&issuers, &k.ec.sign(None, &c)).await,
            TokenRejection::InvalidClaims(_)
        ));
    }
    let mut c = claims();
    c.as_object_mut().map(|m| m.remove("org_id"));
    let verified = issuers
        .verify(&k.ec.sign(None, &c), now())
        .await
        .expect("absent is fine");
    assert_eq!(verified.tenant, None);
}

#[tokio::test]
async fn tampered_payload_header_and_signature_are_refused() {
    let (issuers, _server) = rs256_issuer().await;
    let k = keys();
    let token = k.rsa_a.sign(Some("rsa-a"), &claims());
    issuers
        .verify(&token, now())
        .await
        .expect("the original verifies");
    let parts: Vec<&str> = token.split('.').collect();

    // Payload: change a claim, keep header and signature.
    let mut c = claims();
    c["sub"] = json!("admin");
    let forged = format!("{}.{}.{}", parts[0], b64_json(&c), parts[2]);
    assert_eq!(
        rejection(&issuers, &forged).await,
        TokenRejection::BadSignature
    );

    // Signature: flip one character in the middle.
    let mut sig: Vec<u8> = parts[2].bytes().collect();
    let mid = sig.len() / 2;
    sig[mid] = if sig[mid] == b'A' { b'B' } else { b'A' };
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        String::from_utf8(sig).expect("ascii")
    );
    assert_eq!(
        rejection(&issuers, &forged).await,
        TokenRejection::BadSignature
    );

    // Signature from another key under the same kid.
    let forged = k.rsa_b.sign(Some("rsa-a"), &claims());
    assert_eq!(
        rejection(&issuers, &forged).await,
        TokenRejection::BadSignature
    );

    // Header switched to PS256 (not pinned) and to a different typ.
    let forged = format!(
        "{}.{}.{}",
        b64_json(&json!({"alg": "PS256", "kid": "rsa-a"})),
        parts[1],
        parts[2]
    );
    assert_eq!(
        rejection(&issuers, &forged).await,
        TokenRejection::AlgorithmNotAllowed
    );
    let forged = format!(
        "{}.{}.{}",
        b64_json(&json!({"alg": "RS256", "kid": "rsa-a", "typ": "at+jwt"})),
        parts[1],
        parts[2]
    );
    assert_eq!(
        rejection(&issuers, &forged).await,
        TokenRejection::BadSignature
    );

    // Truncated signature.
    let forged = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..10]);
    assert!(matches!(
        rejection(&issuers, &forged).await,
        TokenRejection::BadSignature | TokenRejection::Malformed
    ));
}

#[tokio::test]
async fn key_type_and_jwk_alg_must_fit_the_header() {
    let k = keys();
    let mut ec_jwk_rsa_kid = k.ec.jwk("shared");
    ec_jwk_rsa_kid["alg"] = json!("ES256");
    let server = JwksServer::start(jwks(&[k.rsa_a.jwk("rsa-a"), ec_jwk_rsa_kid])).await;
    let cfg = config(
        "fit",
        Some(&server.url),
        vec![],
        &["RS256", "PS256", "ES256"],
    );
    let issuers = issuers(vec![cfg]).await;

    // rsa-a is published with alg RS256: a PS256 token under that kid can't use it.
    let token = k.rsa_a.sign_as(Algorithm::PS256, Some("rsa-a"), &claims());
    assert_eq!(
        rejection(&issuers, &token).await,
        TokenRejection::UnknownKey
    );
    // An RS256 token naming the EC key's kid.
    let token = k.rsa_a.sign(Some("shared"), &claims());
    assert_eq!(
        rejection(&issuers, &token).await,
        TokenRejection::UnknownKey
    );
    // The right pairings verify.
    issuers
        .verify(&k.rsa_a.sign(Some("rsa-a"), &claims()), now())
        .await
        .expect("rs256");
    issuers
        .verify(&k.ec.sign(Some("shared"), &claims()), now())
        .await
        .expect("es256");
}

#[tokio::test]
async fn kid_less_tokens_need_exactly_one_fitting_key() {
    let k = keys();
    let cfg = config(
        "two",
        None,
        vec![
            k.rsa_a.public_pem.clone(),
            k.rsa_b.public_pem.clone(),
            k.ec.public_pem.clone(),
        ],
        &["RS256", "ES256"],
    );
    let issuers = issuers(vec![cfg]).await;
    // Two RSA keys: ambiguous.
    assert_eq!(
        rejection(&issuers, &k.rsa_a.sign(None, &claims())).await,
        TokenRejection::UnknownKey
    );
    // One EC key: fine.
    issuers
        .verify(&k.ec.sign(None, &claims()), now())
        .await
        .expect("unique EC key");
    // PEM keys have no kid: a kid never matches them.
    assert_eq!(
        rejection(&issuers, &k.ec.sign(Some("ec"), &claims())).await,
        TokenRejection::UnknownKey
    );
}

#[tokio::test]
async fn oversized_tokens_are_malformed() {
    let k = keys();
    let cfg = config("big", None, vec![k.ec.public_pem.clone()], &["ES256"]);
    let issuers = issuers(vec![cfg]).await;
    let mut c = claims();
    c["blob"] = json!("x".repeat(13_000));
    let token = k.ec.sign(None, &c);
    assert!(token.len() > crate::MAX_TOKEN_BYTES);
    assert_eq!(rejection(&issuers, &token).await, TokenRejection::Malformed);
    // Just under the limit is fine.
    c["blob"] = json!("x".repeat(11_000));
    let token = k.ec.sign(None, &c);
    assert!(token.len() <= crate::MAX_TOKEN_BYTES);
    issuers.verify(&token, now()).await.expect("under 16 KiB");
}

#[tokio::test]
async fn duplicate_claims_are_refused() {
    let k = keys();
    let cfg = config("dup", None, vec![k.ec.public_pem.clone()], &["ES256"]);
    let issuers = issuers(vec![cfg]).await;
    // Hand-made JSON with `aud` twice, properly signed.
    let payload = format!(
        r#"{{"iss":"{ISS}","sub":"u","exp":{},"aud":"{AUD}","aud":"other"}}"#,
        now() + 600
    );
    let header = b64_json(&json!({ "alg": "ES256" }));
    let body = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload);
    let message = format!("{header}.{body}");
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &k.ec.encoding, Algorithm::ES256)
        .expect("sign");
    let token = format!("{message}.{sig}");
    assert!(issuers.verify(&token, now()).await.is_err());
}
