//! Configuration validation and deserialization.

use serde_json::json;

use super::support::*;
use crate::{ConfigError, IssuerConfig, Issuers};

/// The validation error's message (panics if the config is valid).
fn problem(cfg: &IssuerConfig) -> String {
    match cfg.validate() {
        Err(ConfigError::Issuer { issuer, problem }) => {
            assert_eq!(issuer, cfg.name, "the error names the issuer");
            problem
        }
        other => panic!("expected an issuer error, got {other:?}"),
    }
}

fn pem() -> Vec<String> {
    vec![keys().rsa_a.public_pem.clone()]
}

#[test]
fn a_good_config_validates() {
    config("ok", None, pem(), &["RS256"])
        .validate()
        .expect("valid");
    let mut hmac = config("ok", None, vec![], &["HS256"]);
    hmac.hs256_secret = Some(SECRET.into());
    hmac.validate().expect("valid");
}

#[test]
fn hmac_needs_an_explicit_secret() {
    let cfg = config("h", None, pem(), &["RS256", "HS256"]);
    let p = problem(&cfg);
    assert!(p.contains("HS256") && p.contains("hs256_secret"), "{p}");
}

#[test]
fn secret_without_hmac_algorithm_is_refused() {
    let mut cfg = config("h", None, pem(), &["RS256"]);
    cfg.hs256_secret = Some(SECRET.into());
    assert!(problem(&cfg).contains("no HS256"));
}

#[test]
fn short_secret_is_refused() {
    let mut cfg = config("h", None, vec![], &["HS256"]);
    cfg.hs256_secret = Some("short".into());
    assert!(problem(&cfg).contains("too short"));
}

#[test]
fn public_key_algorithms_with_only_a_secret_are_refused() {
    let mut cfg = config("h", None, vec![], &["RS256", "HS256"]);
    cfg.hs256_secret = Some(SECRET.into());
    let p = problem(&cfg);
    assert!(
        p.contains("RS256") && p.contains("only `hs256_secret`"),
        "{p}"
    );
}

#[test]
fn no_key_source_is_refused() {
    let cfg = config("none", None, vec![], &["RS256"]);
    assert!(problem(&cfg).contains("no key source"));
}

#[test]
fn unknown_or_missing_algorithms_are_refused() {
    for algs in [&["none"][..], &["rs256"], &["ES512"], &["RS256", "HS1"]] {
        let cfg = config("a", None, pem(), algs);
        assert!(problem(&cfg).contains("unknown algorithm"), "{algs:?}");
    }
    let cfg = config("a", None, pem(), &[]);
    assert!(problem(&cfg).contains("`algorithms` is empty"));
}

#[test]
fn empty_audience_is_refused() {
    let mut cfg = config("a", None, pem(), &["RS256"]);
    cfg.audience = vec![];
    assert!(problem(&cfg).contains("audience"));
    cfg.audience = vec![String::new()];
    assert!(problem(&cfg).contains("audience"));
}

#[test]
fn http_jwks_is_allowed_only_on_loopback() {
    for url in [
        "http://idp.example.com/jwks.json",
        "http://10.0.0.1/jwks",
        "http://127.0.0.1.example.com/",
    ] {
        let cfg = config("j", Some(url), vec![], &["RS256"]);
        assert!(problem(&cfg).contains("http off loopback"), "{url}");
    }
    for url in [
        "ftp://idp.example.com/jwks",
        "file:///etc/jwks.json",
        "not a url",
    ] {
        let cfg = config("j", Some(url), vec![], &["RS256"]);
        assert!(problem(&cfg).contains("jwks_url"), "{url}");
    }
    let cfg = config(
        "j",
        Some("https://user:pw@idp.example.com/jwks"),
        vec![],
        &["RS256"],
    );
    assert!(problem(&cfg).contains("credentials"));
    for url in [
        "https://idp.example.com/.well-known/jwks.json",
        "http://127.0.0.1:8080/jwks",
        "http://localhost/jwks",
        "http://[::1]:9000/jwks",
    ] {
        config("j", Some(url), vec![], &["RS256"])
            .validate()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

#[test]
fn user_editable_tenant_claims_are_refused() {
    for claim in [
        "email",
        "Email",
        "sub",
        "preferred_username",
        "name",
        "user_metadata",
        "user_metadata.tenant",
        "user_metadata_tenant",
        "website",
        "cognito:username",
    ] {
        let mut cfg = config("t", None, pem(), &["RS256"]);
        cfg.tenant_claim = Some(claim.into());
        assert!(problem(&cfg).contains("user can edit"), "{claim}");
    }
    for claim in ["", "org id", "a\"b", "tenant\n", &"x".repeat(129)] {
        let mut cfg = config("t", None, pem(), &["RS256"]);
        cfg.tenant_claim = Some(claim.to_owned());
        assert!(problem(&cfg).contains("plain"), "{claim:?}");
    }
    for claim in [
        "org_id",
        "tid",
        "custom:tenant",
        "https://bulkhead.example/tenant",
    ] {
        let mut cfg = config("t", None, pem(), &["RS256"]);
        cfg.tenant_claim = Some(claim.into());
        cfg.validate().unwrap_or_else(|e| panic!("{claim}: {e}"));
    }
}

#[test]
fn leeway_and_jwks_limits_are_bounded() {
    let mut cfg = config("l", None, pem(), &["RS256"]);
    cfg.leeway_secs = 301;
    assert!(problem(&cfg).contains("leeway_secs"));
    cfg.leeway_secs = 300;
    cfg.validate().expect("300 is the maximum");
    cfg.jwks_cooldown_secs = 0;
    assert!(problem(&cfg).contains("jwks_cooldown_secs"));
    cfg.jwks_cooldown_secs = 30;
    cfg.jwks_max_bytes = 10;
    assert!(problem(&cfg).contains("jwks_max_bytes"));
}

#[test]
fn names_are_short_labels() {
    for name in ["", "Upper", "has space", "dot.ted", &"x".repeat(41)] {
        let mut cfg = config("x", None, pem(), &["RS256"]);
        cfg.name = name.to_owned();
        assert!(cfg.validate().is_err(), "{name:?}");
    }
    config("cognito-eu_1", None, pem(), &["RS256"])
        .validate()
        .expect("valid");
}

#[test]
fn bad_static_keys_are_refused() {
    let k = keys();
    let cases: Vec<(String, &str)> = vec![
        (k.rsa_a_private_pem.clone(), "private key"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----".into(),
            "unsupported PEM",
        ),
        (
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".into(),
            "unrecognised",
        ),
        ("hello".into(), "expected a PEM"),
        ("{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}".into(), "symmetric"),
        (
            "{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}".into(),
            "RSA modulus",
        ),
        (k.rsa_small_public_pem.clone(), "RSA modulus of 1024 bits"),
        (
            k.ec.jwk("x").to_string().replace("\"sig\"", "\"enc\""),
            "`use`",
        ),
    ];
    for (key, expected) in cases {
        let cfg = config("k", None, vec![key.clone()], &["RS256", "ES256"]);
        let p = problem(&cfg);
        assert!(
            p.contains("keys[0]") && p.contains(expected),
            "{expected}: {p}"
        );
    }
    // A valid key that fits no pinned algorithm.
    let cfg = config("k", None, vec![k.ed.public_pem.clone()], &["RS256"]);
    assert!(problem(&cfg).contains("fits none"));
    // Public keys without any asymmetric algorithm.
    let mut cfg = config("k", None, pem(), &["HS256"]);
    cfg.hs256_secret = Some(SECRET.into());
    assert!(problem(&cfg).contains("no public-key algorithm"));
}

#[tokio::test]
async fn duplicate_names_and_issuers_are_refused() {
    let a = config("same", None, pem(), &["RS256"]);
    let mut b = config("same", None, pem(), &["RS256"]);
    b.issuer = "https://other.example.test".into();
    let err = Issuers::new(vec![a.clone(), b]).await.unwrap_err();
    assert!(err.to_string().contains("duplicate issuer name"), "{err}");

    let c = config("other", None, pem(), &["RS256"]);
    let err = Issuers::new(vec![a.clone(), c]).await.unwrap_err();
    assert!(err.to_string().contains("duplicate issuer `"), "{err}");

    let mut bad = a;
    bad.leeway_secs = 1000;
    let err = Issuers::new(vec![bad]).await.unwrap_err();
    assert!(
        err.to_string().starts_with("identity issuer `same`:"),
        "{err}"
    );
}

#[test]
fn deserializes_with_defaults_and_single_audience() {
    let cfg: IssuerConfig = serde_json::from_value(json!({
        "name": "auth0",
        "issuer": "https://tenant.eu.auth0.com/",
        "audience": "https://api.bulkhead.example",
        "jwks_url": "https://tenant.eu.auth0.com/.well-known/jwks.json",
        "algorithms": ["RS256"],
    }))
    .expect("deserializes");
    assert_eq!(cfg.audience, vec!["https://api.bulkhead.example"]);
    assert_eq!(cfg.leeway_secs, 60);
    assert_eq!(cfg.jwks_cooldown_secs, 30);
    assert_eq!(cfg.jwks_refresh_secs, 3600);
    assert_eq!(cfg.jwks_max_bytes, 262_144);
    assert!(cfg.keys.is_empty() && cfg.hs256_secret.is_none() && cfg.tenant_claim.is_none());
    cfg.validate().expect("valid");

    let many: IssuerConfig = serde_json::from_value(json!({
        "name": "a", "issuer": "i", "audience": ["x", "y"], "keys": [], "algorithms": ["ES256"],
    }))
    .expect("deserializes");
    assert_eq!(many.audience, vec!["x", "y"]);

    let unknown = serde_json::from_value::<IssuerConfig>(json!({
        "name": "a", "issuer": "i", "audience": "x", "algorithms": ["RS256"], "jwks": "typo",
    }));
    assert!(unknown.is_err(), "unknown fields are refused");
}

#[test]
fn debug_output_redacts_the_secret() {
    let mut cfg = config("h", None, vec![], &["HS256"]);
    cfg.hs256_secret = Some(SECRET.into());
    let shown = format!("{cfg:?}");
    assert!(
        !shown.contains(SECRET) && shown.contains("[redacted]"),
        "{shown}"
    );
}
