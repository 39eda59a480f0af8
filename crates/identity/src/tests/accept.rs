//! Valid tokens are accepted and their claims surfaced.

use jsonwebtoken::Algorithm;
use serde_json::json;

use super::support::*;

#[tokio::test]
async fn rs256_from_jwks_is_accepted_with_claims_surfaced() {
    let k = keys();
    let server = JwksServer::start(jwks(&[k.rsa_a.jwk("rsa-a")])).await;
    let mut cfg = config("auth0", Some(&server.url), vec![], &["RS256"]);
    cfg.tenant_claim = Some("org_id".into());
    let issuers = issuers(vec![cfg]).await;
    assert_eq!(server.hits(), 1, "one fetch at start");

    let claims = claims();
    let token = k.rsa_a.sign(Some("rsa-a"), &claims);
    let verified = issuers.verify(&token, now()).await.expect("accepted");
    assert_eq!(verified.issuer_name, "auth0");
    assert_eq!(verified.issuer, ISS);
    assert_eq!(verified.sub, "user-123");
    assert_eq!(verified.email.as_deref(), Some("ada@example.test"));
    assert!(verified.email_verified);
    assert_eq!(verified.tenant.as_deref(), Some("acme"));
    assert_eq!(Some(verified.expires_at), claims["exp"].as_u64());
    assert_eq!(verified.claims["roles"], json!(["reader", "writer"]));
    assert_eq!(verified.claims["aud"], json!(AUD));
    assert_eq!(server.hits(), 1, "a known kid needs no fetch");
}

#[tokio::test]
async fn es256_with_static_pem_and_no_kid_is_accepted() {
    let k = keys();
    let cfg = config("keycloak", None, vec![k.ec.public_pem.clone()], &["ES256"]);
    let issuers = issuers(vec![cfg]).await;
    let token = k.ec.sign(None, &claims());
    let verified = issuers.verify(&token, now()).await.expect("accepted");
    assert_eq!(verified.issuer_name, "keycloak");
    assert_eq!(verified.tenant, None, "no tenant_claim configured");
}

#[tokio::test]
async fn eddsa_with_static_jwk_and_kid_is_accepted() {
    let k = keys();
    let jwk = k.ed.jwk("ed-1").to_string();
    let cfg = config("ed", None, vec![jwk], &["EdDSA"]);
    let issuers = issuers(vec![cfg]).await;
    let token = k.ed.sign(Some("ed-1"), &claims());
    let verified = issuers.verify(&token, now()).await.expect("accepted");
    assert_eq!(verified.sub, "user-123");
}

#[tokio::test]
async fn eddsa_from_jwks_is_accepted() {
    let k = keys();
    let server = JwksServer::start(jwks(&[k.ed.jwk("ed-1"), k.ec.jwk("ec-1")])).await;
    let cfg = config("mixed", Some(&server.url), vec![], &["EdDSA", "ES256"]);
    let issuers = issuers(vec![cfg]).await;
    for token in [
        k.ed.sign(Some("ed-1"), &claims()),
        k.ec.sign(Some("ec-1"), &claims()),
    ] {
        issuers.verify(&token, now()).await.expect("accepted");
    }
}

#[tokio::test]
async fn hmac_with_the_configured_secret_is_accepted() {
    let mut cfg = config("hmac", None, vec![], &["HS256", "HS512"]);
    cfg.hs256_secret = Some(SECRET.into());
    let issuers = issuers(vec![cfg]).await;
    for alg in [Algorithm::HS256, Algorithm::HS512] {
        let token = sign_hmac(SECRET.as_bytes(), alg, None, &claims());
        let verified = issuers.verify(&token, now()).await.expect("accepted");
        assert_eq!(verified.issuer_name, "hmac");
    }
    // HS384 is not pinned.
    let token = sign_hmac(SECRET.as_bytes(), Algorithm::HS384, None, &claims());
    assert_eq!(
        issuers.verify(&token, now()).await.unwrap_err(),
        crate::TokenRejection::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn ps256_with_static_rsa_pem_is_accepted() {
    let k = keys();
    let cfg = config("pss", None, vec![k.rsa_a.public_pem.clone()], &["PS256"]);
    let issuers = issuers(vec![cfg]).await;
    let token = k.rsa_a.sign_as(Algorithm::PS256, None, &claims());
    issuers.verify(&token, now()).await.expect("accepted");
}

#[tokio::test]
async fn only_a_boolean_email_verified_counts_and_audience_lists_work() {
    let k = keys();
    let mut cfg = config("cognito", None, vec![k.ec.public_pem.clone()], &["ES256"]);
    cfg.audience = vec!["other-client".into(), AUD.into()];
    let issuers = issuers(vec![cfg]).await;

    let mut c = claims();
    c["email_verified"] = json!("true");
    c["aud"] = json!(["somebody-else", AUD]);
    let verified = issuers
        .verify(&k.ec.sign(None, &c), now())
        .await
        .expect("accepted");
    assert!(
        !verified.email_verified,
        "the string \"true\" is not a verified email: invitations are claimed on it"
    );

    c["email_verified"] = json!(true);
    let verified = issuers
        .verify(&k.ec.sign(None, &c), now())
        .await
        .expect("accepted");
    assert!(verified.email_verified);

    c["email_verified"] = json!("false");
    let verified = issuers
        .verify(&k.ec.sign(None, &c), now())
        .await
        .expect("accepted");
    assert!(!verified.email_verified);

    c["email_verified"] = json!(1);
    let verified = issuers
        .verify(&k.ec.sign(None, &c), now())
        .await
        .expect("accepted");
    assert!(!verified.email_verified, "only true / \"true\" count");
}

#[tokio::test]
async fn tokens_are_routed_to_the_issuer_named_by_iss() {
    let k = keys();
    let a = config("first", None, vec![k.ec.public_pem.clone()], &["ES256"]);
    let mut b = config("second", None, vec![k.ed.public_pem.clone()], &["EdDSA"]);
    b.issuer = "https://second.example.test".into();
    let issuers = issuers(vec![a, b]).await;
    assert!(!issuers.is_empty());

    let mut c = claims();
    c["iss"] = json!("https://second.example.test");
    let verified = issuers
        .verify(&k.ed.sign(None, &c), now())
        .await
        .expect("accepted");
    assert_eq!(verified.issuer_name, "second");
    // The first issuer's key cannot sign for the second issuer.
    assert_eq!(
        issuers
            .verify(&k.ec.sign(None, &c), now())
            .await
            .unwrap_err(),
        crate::TokenRejection::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn leeway_accepts_slightly_expired_tokens() {
    let k = keys();
    let cfg = config("leeway", None, vec![k.ec.public_pem.clone()], &["ES256"]);
    let issuers = issuers(vec![cfg]).await;
    let mut c = claims();
    c["exp"] = json!(now() - 30);
    c["nbf"] = json!(now() + 30);
    issuers
        .verify(&k.ec.sign(None, &c), now())
        .await
        .expect("within the 60 s leeway");
}

#[tokio::test]
async fn empty_issuer_list() {
    let issuers = issuers(vec![]).await;
    assert!(issuers.is_empty());
    let token = keys().ec.sign(None, &claims());
    assert_eq!(
        issuers.verify(&token, now()).await.unwrap_err(),
        crate::TokenRejection::UnknownIssuer
    );
}

#[tokio::test]
async fn issuers_and_the_verify_future_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let issuers = issuers(vec![]).await;
    send_sync(&issuers);
    let future = issuers.verify("a.b.c", now());
    send(&future);
    assert_eq!(future.await.unwrap_err(), crate::TokenRejection::Malformed);
}
