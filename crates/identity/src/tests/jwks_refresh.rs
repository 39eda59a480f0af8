//! JWKS fetching: cooldown, single flight, failures, size cap, staleness.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use super::support::*;
use crate::{Issuers, TokenRejection};

async fn rs256_issuer_at(url: &str, tweak: impl FnOnce(&mut crate::IssuerConfig)) -> Issuers {
    let mut cfg = config("jwks", Some(url), vec![], &["RS256"]);
    tweak(&mut cfg);
    issuers(vec![cfg]).await
}

/// Waits (bounded) until `cond` holds.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

#[tokio::test]
async fn unknown_kid_refetches_once_then_cools_down() {
    let k = keys();
    let server = JwksServer::start(jwks(&[k.rsa_a.jwk("rsa-a")])).await;
    let issuers = rs256_issuer_at(&server.url, |_| {}).await;
    assert_eq!(server.hits(), 1);

    // Right after start the start-up fetch is the last attempt: cooldown.
    let token = k.rsa_b.sign(Some("rsa-b"), &claims());
    assert_eq!(
        issuers.verify(&token, now()).await.unwrap_err(),
        TokenRejection::UnknownKey
    );
    assert_eq!(server.hits(), 1, "within the cooldown: no fetch");

    expire_cooldown(&issuers);
    assert_eq!(
        issuers.verify(&token, now()).await.unwrap_err(),
        TokenRejection::UnknownKey
    );
    assert_eq!(server.hits(), 2, "exactly one refetch");

    let other = k.rsa_b.sign(Some("rsa-c"), &claims());
    assert_eq!(
        issuers.verify(&other, now()).await.unwrap_err(),
        TokenRejection::UnknownKey
    );
    assert_eq!(
        issuers.verify(&token, now()).await.unwrap_err(),
        TokenRejection::UnknownKey
    );
    assert_eq!(
        server.hits(),
        2,
        "second unknown kid within the cooldown: no refetch"
    );
}

#[tokio::test]
async fn rotated_key_is_picked_up_by_the_refetch() {
    let k = keys();
    let server = JwksServer::start(jwks(&[k.rsa_a.jwk("rsa-a")])).await;
    let issuers = rs256_issuer_at(&server.url, |_| {}).await;
    server.set_body(jwks(&[k.rsa_a.jwk("rsa-a"), k.rsa_b.jwk("rsa-b")]));
    expire_cooldown(&issuers);

    let token = k.rsa_b.sign(Some("rsa-b"), &claims());
    issuers
        .verify(&token, now())
        .await
        .expect("new key after refetch");
    assert_eq!(server.hits(), 2);
    issuers.verify(&token, now()).await.expect("cached");
    issuers
        .verify(&k.rsa_a.sign(Some("rsa-a"), &claims()), now())
        .await
        .expect("old key");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn the_real_cooldown_elapses() {
    let k = keys();
    let server = JwksServer::start(jwks(&[k.rsa_a.jwk("rsa-a")])).await;
    let issuers = rs256_issuer_at(&server.url, |c| c.jwks_cooldown_secs = 1).await;
    let token = k.rsa_b.sign(Some("rsa-b"), &claims());
    assert_eq!(
        issuers.verify(&token, now()).await.unwrap_err(),
        TokenRejection::UnknownKey
    );
    assert_eq!(server.hits(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        issuers.verify(&token, now()).await.unwrap_err(),
        TokenRejection::UnknownKey
    );
    assert_eq!(server.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unknown_kids_share_one_fetch() {
    let k = keys();
    let server = JwksServer::start(jwks(&[k.rsa_a.jwk("rsa-a")])).await;
    let issuers = rs256_issuer_at(&server.url, |_| {}).await;
    server.set_body(jwks(&[k.rsa_a.jwk("rsa-a"), k.rsa_b.jwk("rsa-b")]));
    server.set_delay(Duration::from_millis(300));
    expire_cooldown(&issuers);

    let token = k.rsa_b.sign(Some("rsa-b"), &claims());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let issuers = issuers.clone();
        let token = token.clone();
        tasks.spawn(async move { issuers.verify(&token, now()).await });
    }
    while let Some(result) = tasks.join_next().await {
        result
            .expect("task")
            .expect("accepted after the shared fetch");
    }
    assert_eq!(server.hits(), 2, "start-up fetch + one shared refetch");
    assert_eq!(fetch_count(&issuers), 2);
}

#[tokio::test]
async fn last_good_keys_are_kept_when_the_server_fails() {
    let k = keys();
    let server = JwksServer::start(jwks(&[k.rsa_a.jwk("rsa-a")])).await;
    let issuers = rs256_issuer_at(&server.url, |_| {}).await;
    let good = k.rsa_a.sign(Some("rsa-a"), &claims());

    for mode in [MODE_FAIL, MODE_REDIRECT] {
        server.set_mode(mode);
        expire_cooldown(&issuers);
        let hits = server.hits();
        let unknown = k.rsa_b.sign(Some("rsa-b"), &claims());
        assert_eq!(
            issuers.verify(&unknown, now()).await.unwrap_err(),
            TokenRejection::KeysUnavailable,
            "the refetch failed: we cannot tell whether rsa-b exists"
        );
        assert_eq!(server.hits(), hits + 1, "the failed fetch happened");
        issuers
            .verify(&good, now())
            .await
            .expect("last good key still works");
        // Within the cooldown after a failure: still unavailable, no fetch.
        assert_eq!(
            issuers.verify(&unknown, now()).await.unwrap_err(),
            TokenRejection::KeysUnavailable
        );
        assert_eq!(server.hits(), hits + 1);
    }

    // A JWKS with no usable key counts as a failure too.
    server.set_mode(MODE_OK);
    server.set_body(jwks(&[
        json!({ "kty": "oct", "k": "c2VjcmV0", "kid": "rsa-b" }),
    ]));
    expire_cooldown(&issuers);
    let unknown = k.rsa_b.sign(Some("rsa-b"), &claims());
    assert_eq!(
        issuers.verify(&unknown, now()).await.unwrap_err(),
        TokenRejection::KeysUnavailable
    );
    issuers
        .verify(&good, now())
        .await
        .expect("last good key still works");
}

#[tokio::test]
async fn failed_start_up_fetch_is_retried_on_demand() {
    let k = keys();
    let server = JwksServer::start(jwks(&[k.rsa_a.jwk("rsa-a")])).await;
    server.set_mode(MODE_FAIL);
    let issuers = rs256_issuer_at(&server.url, |_| {}).await;
    assert_eq!(server.hits(), 1, "start-up fetch attempted");

    let token = k.rsa_a.sign(Some("rsa-a"), &claims());
    assert_eq!(
        issuers.verify(&token, now()).await.unwrap_err(),
        TokenRejection::KeysUnavailable
    );

    server.set_mode(MODE_OK);
    expire_cooldown(&issuers);
    issuers.verify(&token, now()).await.expect("recovered");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn unreachable_jwks_does_not_fail_start() {
    // Bind and drop a listener to get a closed local port.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}/jwks.json");
    let issuers = rs256_issuer_at(&url, |_| {}).await;
    let token = keys().rsa_a.sign(Some("rsa-a"), &claims());
    assert_eq!(
        issuers.verify(&token, now()).await.unwrap_err(),
        TokenRejection::KeysUnavailable
    );
}

#[tokio::test]
async fn oversized_jwks_is_refused() {
    let k = keys();
    let mut doc = json!({ "keys": [k.rsa_a.jwk("rsa-a")] });
    doc["pad"] = json!("x".repeat(8192));
    let body = doc.to_string();
    let token = k.rsa_a.sign(Some("rsa-a"), &claims());

    // With Content-Length.
    let server = JwksServer::start(body.clone()).await;
    let capped = rs256_issuer_at(&server.url, |c| c.jwks_max_bytes = 4096).await;
    assert_eq!(
        capped.verify(&token, now()).await.unwrap_err(),
        TokenRejection::KeysUnavailable
    );
    // The same body under a larger cap is fine: the cap is what refused it.
    let roomy = rs256_issuer_at(&server.url, |c| c.jwks_max_bytes = 16384).await;
    roomy.verify(&token, now()).await.expect("under the cap");

    // Chunked, no Content-Length: the reader stops at the cap.
    let prefix = json!({ "keys": [k.rsa_a.jwk("rsa-a")] }).to_string();
    let prefix = prefix.trim_end_matches('}').to_owned();
    let (url, hits) = chunked_server(prefix.clone(), 64 * 1024).await;
    let capped = rs256_issuer_at(&url, |c| c.jwks_max_bytes = 8192).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(
        capped.verify(&token, now()).await.unwrap_err(),
        TokenRejection::KeysUnavailable
    );
    let (url, _) = chunked_server(prefix, 6 * 1024).await;
    let roomy = rs256_issuer_at(&url, |c| c.jwks_max_bytes = 8192).await;
    roomy
        .verify(&token, now())
        .await
        .expect("chunked body under the cap");
}

#[tokio::test]
async fn bad_keys_in_a_jwks_are_skipped() {
    let k = keys();
    let mut wrong_use = k.rsa_b.jwk("enc-key");
    wrong_use["use"] = json!("enc");
    let body = jwks(&[
        json!({ "kty": "RSA", "kid": "broken", "n": "!!!", "e": "AQAB" }),
        json!({ "kty": "oct", "kid": "hmac", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0" }),
        json!({ "kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA" }),
        json!({ "kty": "OKP", "kid": "short-ed", "crv": "Ed25519", "x": "AAAA" }),
        json!("not an object"),
        wrong_use,
        k.rsa_a.jwk("rsa-a"),
    ]);
    let server = JwksServer::start(body).await;
    let issuers = rs256_issuer_at(&server.url, |c| {
        c.algorithms = vec!["RS256".into(), "EdDSA".into()];
    })
    .await;
    issuers
        .verify(&k.rsa_a.sign(Some("rsa-a"), &claims()), now())
        .await
        .expect("the good key was kept");
    for kid in ["enc-key", "broken", "hmac"] {
        let token = k.rsa_b.sign(Some(kid), &claims());
        assert_eq!(
            issuers.verify(&token, now()).await.unwrap_err(),
            TokenRejection::UnknownKey
        );
    }
    let token = k.ed.sign(Some("short-ed"), &claims());
    assert_eq!(
        issuers.verify(&token, now()).await.unwrap_err(),
        TokenRejection::UnknownKey
    );
}

#[tokio::test]
async fn stale_keys_are_refreshed_in_the_background() {
    let k = keys();
    let server = JwksServer::start(jwks(&[k.rsa_a.jwk("rsa-a")])).await;
    let issuers = rs256_issuer_at(&server.url, |c| {
        c.jwks_refresh_secs = 1;
        c.jwks_cooldown_secs = 1;
    })
    .await;
    let token = k.rsa_a.sign(Some("rsa-a"), &claims());
    issuers.verify(&token, now()).await.expect("fresh");
    assert_eq!(server.hits(), 1);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Served from the stale keys at once, with a refresh started behind it.
    server.set_delay(Duration::from_millis(200));
    issuers
        .verify(&token, now())
        .await
        .expect("stale keys still serve");
    assert!(
        eventually(|| server.hits() == 2).await,
        "background refresh ran"
    );
    // A background refresh that fails keeps the keys too.
    server.set_delay(Duration::ZERO);
    server.set_mode(MODE_FAIL);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    issuers
        .verify(&token, now())
        .await
        .expect("stale keys still serve");
    assert!(
        eventually(|| server.hits() == 3).await,
        "second background refresh ran"
    );
    issuers
        .verify(&token, now())
        .await
        .expect("kept after a failed refresh");
}

#[tokio::test]
async fn https_uses_rustls_without_a_process_wide_provider() {
    let k = keys();
    // A plain-HTTP server spoken to over https: the TLS handshake fails.
    let server = JwksServer::start(jwks(&[k.rsa_a.jwk("rsa-a")])).await;
    let url = server.url.replace("http://", "https://");
    let issuers = rs256_issuer_at(&url, |_| {}).await;
    assert_eq!(server.hits(), 0, "no HTTP request got through");
    let token = k.rsa_a.sign(Some("rsa-a"), &claims());
    assert_eq!(
        issuers.verify(&token, now()).await.unwrap_err(),
        TokenRejection::KeysUnavailable
    );
    assert_eq!(fetch_count(&issuers), 1, "the start-up attempt was made");
    assert!(
        rustls::crypto::CryptoProvider::get_default().is_none(),
        "the ring provider is passed to the client, not installed process-wide"
    );
}
