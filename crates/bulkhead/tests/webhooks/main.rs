//! Findings and signed webhooks, with a local receiver: signatures checked by an HMAC
//! written here from the specification; a receiver that fails for a while, and a `kill -9`
//! with deliveries pending, lose nothing and double nothing, in order per tenant; a probe
//! of 200 foreign record ids raises exactly one finding and one delivery; targets,
//! roles, Slack bodies and automatic disabling.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod config;
mod delivery;
mod findings;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use bulkhead_api::{UpdateTenant, WebhookFormat, WebhookSpec};
use bulkhead_client::Client;
use bulkhead_core::model::TenantStatus;
use common::tid;
use parking_lot::Mutex;
use serde_json::Value;
use sha2::{Digest, Sha256};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// HMAC-SHA256 (RFC 2104), from SHA-256 alone.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Whether one of the `v1,` signatures in `header` signs `id.timestamp.body` with `secret`.
fn signed(secret: &str, id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.trim_start_matches("whsec_")).unwrap();
    let mut message = format!("{id}.{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    let expected = format!("v1,{}", b64.encode(hmac_sha256(&key, &message)));
    header.split(' ').any(|s| s == expected)
}

/// What the receiver accepted.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    body: Value,
    signature_ok: bool,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    failing: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Got>>>,
    refused: Arc<Mutex<u64>>,
}

impl Receiver {
    async fn start(secret: &'static str) -> Receiver {
        let failing = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0));
        let (f, g, r) = (Arc::clone(&failing), Arc::clone(&got), Arc::clone(&refused));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (f, g, r) = (Arc::clone(&f), Arc::clone(&g), Arc::clone(&r));
                async move {
                    if f.load(Ordering::SeqCst) {
                        *r.lock() += 1;
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let h = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let id = h("webhook-id");
                    g.lock().push(Got {
                        signature_ok: signed(
                            secret,
                            &id,
                            &h("webhook-timestamp"),
                            &body,
                            &h("webhook-signature"),
                        ),
                        id,
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    });
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url,
            failing,
            got,
            refused,
        }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().clone()
    }
}

fn allow_private() -> [(&'static str, &'static str); 2] {
    [
        ("BULKHEAD_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("BULKHEAD_AUDIT_WATCH_SECS", "0"),
    ]
}

fn spec(url: &str, events: &[&str]) -> WebhookSpec {
    WebhookSpec {
        url: url.to_owned(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        secret: Some(SECRET.into()),
        format: WebhookFormat::Standard,
        disable_after: None,
        enabled: None,
    }
}

async fn wait_until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn set_status(admin: &Client, id: &str, status: TenantStatus) {
    admin
        .update_tenant(
            &tid(id),
            &UpdateTenant {
                status: Some(status),
                ..UpdateTenant::default()
            },
        )
        .await
        .unwrap();
}
