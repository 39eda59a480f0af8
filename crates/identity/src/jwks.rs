//! One issuer's JWKS: fetching with a size cap, the last good key set, and
//! single-flight refreshes under a cooldown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::Jwk;
use parking_lot::RwLock;
use serde::Deserialize;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::IssuerConfig;
use crate::keys::{self, KeySet, VerifyKey};

/// Timeout of one JWKS request (connect, TLS, headers and body).
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys beyond this many in one JWKS are ignored.
const MAX_KEYS_PER_SET: usize = 100;

/// The HTTP(S) client shared by all issuers.
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Builds the JWKS client: HTTP/1.1, rustls with the `ring` provider passed
/// explicitly (nothing process-wide), certificates checked by the platform
/// verifier, no redirects (hyper never follows them).
pub(crate) fn build_http_client() -> Result<HttpClient, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(HTTP_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_platform_verifier(provider)
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// An error and its sources, for logs.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        source = inner.source();
    }
    out
}

/// Result of asking for a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// A fetch succeeded (ours, or one that finished while we waited).
    Refreshed,
    /// A fetch failed (ours, or one that finished while we waited).
    Failed,
    /// Refused by the cooldown; `last_ok` tells whether the latest attempt
    /// succeeded.
    CoolingDown { last_ok: bool },
}

pub(crate) struct JwksSource {
    issuer_name: String,
    url: String,
    client: HttpClient,
    max_bytes: usize,
    cooldown: Duration,
    refresh_after: Duration,
    state: RwLock<State>,
    /// Held for the whole of a fetch: makes refreshes single-flight.
    refresh_lock: Arc<Mutex<()>>,
    /// HTTP requests started (for tests and diagnostics).
    fetches: AtomicU64,
}

#[derive(Default)]
struct State {
    keys: Arc<KeySet>,
    /// Incremented when a fetch starts.
    attempts: u64,
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
    /// Whether the latest finished attempt succeeded.
    last_ok: bool,
}

impl JwksSource {
    pub(crate) fn new(
        issuer_name: String,
        url: String,
        client: HttpClient,
        config: &IssuerConfig,
    ) -> JwksSource {
        JwksSource {
            issuer_name,
            url,
            client,
            max_bytes: config.jwks_max_bytes,
            cooldown: Duration::from_secs(config.jwks_cooldown_secs),
            refresh_after: Duration::from_secs(config.jwks_refresh_secs),
            state: RwLock::new(State::default()),
            refresh_lock: Arc::new(Mutex::new(())),
            fetches: AtomicU64::new(0),
        }
    }

    /// The current key set (last good one).
    pub(crate) fn keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.state.read().keys)
    }

    /// Number of HTTP fetches started so far.
    #[cfg(test)]
    pub(crate) fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Makes the cooldown look elapsed (tests only).
    #[cfg(test)]
    pub(crate) fn expire_cooldown(&self) {
        let mut state = self.state.write();
        let back = self.cooldown + Duration::from_secs(1);
        state.last_attempt = state.last_attempt.and_then(|at| at.checked_sub(back));
    }

    /// The start-up fetch: no cooldown, failures only logged.
    pub(crate) async fn refresh_initial(self: &Arc<Self>) {
        let guard = Arc::clone(&self.refresh_lock).lock_owned().await;
        self.fetch_and_store(guard).await;
    }

    /// An inline, single-flight refresh for a missing key, subject to the
    /// cooldown. The fetch itself runs in a spawned task (when a Tokio runtime
    /// is available), so a caller that is dropped does not cancel it.
    pub(crate) async fn refresh_on_demand(self: &Arc<Self>) -> Refresh {
        let seen = self.state.read().attempts;
        let guard = Arc::clone(&self.refresh_lock).lock_owned().await;
        {
            let state = self.state.read();
            if state.attempts != seen {
                // Another request fetched while we waited for the lock.
                return if state.last_ok {
                    Refresh::Refreshed
                } else {
                    Refresh::Failed
                };
            }
            if state
                .last_attempt
                .is_some_and(|at| at.elapsed() < self.cooldown)
            {
                return Refresh::CoolingDown {
                    last_ok: state.last_ok,
                };
            }
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let this = Arc::clone(self);
                match handle
                    .spawn(async move { this.fetch_and_store(guard).await })
                    .await
                {
                    Ok(outcome) => outcome,
                    Err(_) => Refresh::Failed,
                }
            }
            Err(_) => self.fetch_and_store(guard).await,
        }
    }

    /// Starts a background refresh when the keys are older than
    /// `jwks_refresh_secs` (or were never fetched), the cooldown has passed
    /// and no fetch is in progress. Never waits.
    pub(crate) fn refresh_if_stale(self: &Arc<Self>) {
        {
            let state = self.state.read();
            let stale = state
                .last_success
                .is_none_or(|at| at.elapsed() >= self.refresh_after);
            let cooled = state
                .last_attempt
                .is_none_or(|at| at.elapsed() >= self.cooldown);
            if !(stale && cooled) {
                return;
            }
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(guard) = Arc::clone(&self.refresh_lock).try_lock_owned() else {
            return; // a fetch is in progress
        };
        let this = Arc::clone(self);
        handle.spawn(async move {
            // Re-check under the lock: a fetch may have finished meanwhile.
            let still_due = this
                .state
                .read()
                .last_attempt
                .is_none_or(|at| at.elapsed() >= this.cooldown);
            if still_due {
                this.fetch_and_store(guard).await;
            }
        });
    }

    /// Fetches once and, on success, replaces the key set. The guard proves
    /// the caller holds the refresh lock.
    async fn fetch_and_store(&self, _guard: OwnedMutexGuard<()>) -> Refresh {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        {
            let mut state = self.state.write();
            state.attempts += 1;
            state.last_attempt = Some(Instant::now());
        }
        let result = self.fetch().await;
        let mut state = self.state.write();
        match result {
            Ok(keys) => {
                tracing::debug!(
                    issuer = %self.issuer_name,
                    url = %self.url,
                    keys = keys.len(),
                    "fetched JWKS"
                );
                state.keys = Arc::new(keys);
                state.last_success = Some(Instant::now());
                state.last_ok = true;
                Refresh::Refreshed
            }
            Err(problem) => {
                tracing::warn!(
                    issuer = %self.issuer_name,
                    url = %self.url,
                    error = %problem,
                    kept_keys = state.keys.len(),
                    "JWKS fetch failed; keeping the last good keys"
                );
                state.last_ok = false;
                Refresh::Failed
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let body = tokio::time::timeout(HTTP_TIMEOUT, self.fetch_body())
            .await
            .map_err(|_| format!("timed out after {} s", HTTP_TIMEOUT.as_secs()))??;
        self.parse(&body)
    }

    /// GET the JWKS URL; status must be 200; the body is read up to
    /// `max_bytes` and refused beyond.
    async fn fetch_body(&self) -> Result<Vec<u8>, String> {
        let request = http::Request::get(self.url.as_str())
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("bulkhead-identity/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad request: {e}"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", response.status()));
        }
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(length) = declared
            && length > self.max_bytes as u64
        {
            return Err(format!(
                "body of {length} bytes exceeds jwks_max_bytes = {}",
                self.max_bytes
            ));
        }
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the body failed: {e}"))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if bytes.len() + data.len() > self.max_bytes {
                return Err(format!("body exceeds jwks_max_bytes = {}", self.max_bytes));
            }
            bytes.extend_from_slice(&data);
        }
        Ok(bytes)
    }

    fn parse(&self, body: &[u8]) -> Result<KeySet, String> {
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let raw: RawSet =
            serde_json::from_slice(body).map_err(|e| format!("not a JWK set: {e}"))?;
        if raw.keys.len() > MAX_KEYS_PER_SET {
            tracing::warn!(
                issuer = %self.issuer_name,
                keys = raw.keys.len(),
                "JWKS has more than {MAX_KEYS_PER_SET} keys; ignoring the rest"
            );
        }
        let mut set = KeySet::default();
        for (index, value) in raw.keys.into_iter().take(MAX_KEYS_PER_SET).enumerate() {
            match parse_jwks_key(value) {
                Ok(key) => set.insert(key),
                Err(problem) => tracing::warn!(
                    issuer = %self.issuer_name,
                    index,
                    error = %problem,
                    "skipping a JWKS key"
                ),
            }
        }
        if set.len() == 0 {
            return Err("no usable key in the JWK set".into());
        }
        Ok(set)
    }
}

fn parse_jwks_key(value: serde_json::Value) -> Result<VerifyKey, String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("invalid JWK: {e}"))?;
    keys::from_jwk(&jwk)
}
