//! Test fixtures: keys generated with the `openssl` CLI, token minting, a
//! switchable JWKS server on 127.0.0.1, and issuer configs.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{IssuerConfig, Issuers};

pub const ISS: &str = "https://idp.example.test/";
pub const AUD: &str = "bulkhead-api";
pub const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

/// A generated key pair.
pub struct KeyPair {
    pub alg: Algorithm,
    pub public_pem: String,
    pub encoding: EncodingKey,
}

impl KeyPair {
    /// The public key as a JWK (with `alg`, `use: sig` and this `kid`).
    pub fn jwk(&self, kid: &str) -> Value {
        let mut jwk =
            Jwk::from_encoding_key(&self.encoding, self.alg).expect("JWK from the private key");
        jwk.common.key_id = Some(kid.to_owned());
        let mut value = serde_json::to_value(&jwk).expect("JWK serializes");
        value["use"] = json!("sig");
        value
    }

    pub fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }

    pub fn sign_as(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

pub struct TestKeys {
    pub rsa_a: KeyPair,
    pub rsa_b: KeyPair,
    pub ec: KeyPair,
    pub ed: KeyPair,
    /// A 1024-bit RSA public key PEM (too small to be accepted).
    pub rsa_small_public_pem: String,
    /// A private key PEM (must be refused as a configured key).
    pub rsa_a_private_pem: String,
}

/// Keys shared by all tests of this binary (generated once).
pub fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(generate_keys)
}

fn generate_keys() -> TestKeys {
    let dir = tempfile::tempdir().expect("tempdir");
    let rsa_a = openssl_key(
        dir.path(),
        "rsa_a",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let rsa_b = openssl_key(
        dir.path(),
        "rsa_b",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let ec = openssl_key(
        dir.path(),
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let ed = openssl_key(dir.path(), "ed", &["-algorithm", "ED25519"]);
    let small = openssl_key(
        dir.path(),
        "rsa_small",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
    );
    let rsa_a_private_pem = rsa_a.0.clone();
    TestKeys {
        rsa_a: KeyPair {
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(rsa_a.0.as_bytes()).expect("rsa a"),
            public_pem: rsa_a.1,
        },
        rsa_b: KeyPair {
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(rsa_b.0.as_bytes()).expect("rsa b"),
            public_pem: rsa_b.1,
        },
        ec: KeyPair {
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(ec.0.as_bytes()).expect("ec"),
            public_pem: ec.1,
        },
        ed: KeyPair {
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_pem(ed.0.as_bytes()).expect("ed"),
            public_pem: ed.1,
        },
        rsa_small_public_pem: small.1,
        rsa_a_private_pem,
    }
}

/// Runs `openssl genpkey` and `openssl pkey -pubout`; returns (private, public) PEMs.
fn openssl_key(dir: &Path, name: &str, args: &[&str]) -> (String, String) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let output = Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .arg("-out")
        .arg(&private)
        .output()
        .expect("the openssl CLI is needed to generate test keys");
    assert!(
        output.status.success(),
        "openssl genpkey {name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .output()
        .expect("openssl pkey");
    assert!(
        output.status.success(),
        "openssl pkey {name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        std::fs::read_to_string(private).expect("read private key"),
        std::fs::read_to_string(public).expect("read public key"),
    )
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Valid claims for `ISS`/`AUD`, expiring in ten minutes.
pub fn claims() -> Value {
    let now = now();
    json!({
        "iss": ISS,
        "aud": AUD,
        "sub": "user-123",
        "iat": now,
        "exp": now + 600,
        "email": "ada@example.test",
        "email_verified": true,
        "org_id": "acme",
        "roles": ["reader", "writer"],
    })
}

pub fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

pub fn sign_hmac(secret: &[u8], alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("sign")
}

/// A token with a hand-made header and an arbitrary signature segment.
pub fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
    format!("{}.{}.{signature}", b64_json(header), b64_json(claims))
}

/// An issuer config with the usual test defaults.
pub fn config(
    name: &str,
    jwks_url: Option<&str>,
    keys: Vec<String>,
    algorithms: &[&str],
) -> IssuerConfig {
    IssuerConfig {
        name: name.to_owned(),
        issuer: ISS.to_owned(),
        audience: vec![AUD.to_owned()],
        jwks_url: jwks_url.map(str::to_owned),
        keys,
        algorithms: algorithms.iter().map(|a| (*a).to_owned()).collect(),
        hs256_secret: None,
        leeway_secs: 60,
        tenant_claim: None,
        jwks_cooldown_secs: 30,
        jwks_refresh_secs: 3600,
        jwks_max_bytes: 262_144,
    }
}

pub async fn issuers(configs: Vec<IssuerConfig>) -> Issuers {
    Issuers::new(configs).await.expect("valid issuers")
}

/// A JWKS document with the given keys.
pub fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

pub const MODE_OK: u8 = 0;
pub const MODE_FAIL: u8 = 1;
pub const MODE_REDIRECT: u8 = 2;

pub struct ServerState {
    pub body: Mutex<String>,
    pub mode: AtomicU8,
    pub hits: AtomicUsize,
    pub delay_ms: AtomicU64,
}

/// A JWKS server on 127.0.0.1 that counts requests and can be switched to
/// fail, redirect, serve other bodies or answer slowly.
pub struct JwksServer {
    pub url: String,
    pub state: Arc<ServerState>,
}

impl JwksServer {
    pub async fn start(body: String) -> JwksServer {
        let state = Arc::new(ServerState {
            body: Mutex::new(body),
            mode: AtomicU8::new(MODE_OK),
            hits: AtomicUsize::new(0),
            delay_ms: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/jwks.json", get(serve_jwks))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        JwksServer {
            url: format!("http://{addr}/jwks.json"),
            state,
        }
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn set_body(&self, body: String) {
        *self.state.body.lock() = body;
    }

    pub fn set_mode(&self, mode: u8) {
        self.state.mode.store(mode, Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

async fn serve_jwks(State(state): State<Arc<ServerState>>) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    match state.mode.load(Ordering::SeqCst) {
        MODE_FAIL => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        MODE_REDIRECT => (StatusCode::FOUND, [(header::LOCATION, "/jwks.json")]).into_response(),
        _ => {
            let body = state.body.lock().clone();
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
    }
}

/// A raw HTTP server that answers every request with a chunked (no
/// Content-Length) body of `total` bytes: a JSON document padded to size.
/// Returns its URL and a request counter.
pub async fn chunked_server(valid_prefix: String, total: usize) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        // Bounded: a handful of connections at most in any test.
        for _ in 0..16 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let prefix = valid_prefix.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                // `{"keys":[...],"pad":"xxxx...."}` spread over 1 KiB chunks.
                let mut body = prefix.into_bytes();
                body.extend_from_slice(b",\"pad\":\"");
                while body.len() < total.saturating_sub(2) {
                    body.push(b'x');
                }
                body.extend_from_slice(b"\"}");
                for chunk in body.chunks(1024) {
                    let frame = format!("{:x}\r\n", chunk.len());
                    if stream.write_all(frame.as_bytes()).await.is_err()
                        || stream.write_all(chunk).await.is_err()
                        || stream.write_all(b"\r\n").await.is_err()
                    {
                        return;
                    }
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    (format!("http://{addr}/jwks.json"), hits)
}

/// Lets the next on-demand refresh through, as if the cooldown had passed.
pub fn expire_cooldown(issuers: &Issuers) {
    for issuer in issuers.inner.by_iss.values() {
        if let Some(source) = &issuer.jwks {
            source.expire_cooldown();
        }
    }
}

/// JWKS fetches started by the verifier, summed over issuers.
pub fn fetch_count(issuers: &Issuers) -> u64 {
    issuers
        .inner
        .by_iss
        .values()
        .filter_map(|issuer| issuer.jwks.as_ref())
        .map(|source| source.fetch_count())
        .sum()
}
