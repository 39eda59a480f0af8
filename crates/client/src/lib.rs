//! An async HTTP client for the Bulkhead server's `/v1` API.
//!
//! The operator CLI, the integration tests and applications use it to reach a running
//! `bulkhead serve`. Request and response bodies are the wire types of `bulkhead-api`, so the
//! client and the server cannot drift apart; records are plain `serde_json::Value`s because
//! their shape belongs to each collection.
//!
//! Every request carries `Authorization: Bearer <token>` and, for a client made with
//! [`Client::with_tenant`], the `bulkhead-tenant` header that a platform admin uses to name the
//! tenant whose data it touches. Path segments are percent-encoded and queries form-encoded
//! here, so no caller builds a URL by hand. A non-2xx answer becomes [`ClientError::Api`] with
//! the server's code and message; only [`Client::raw`] hands statuses back untouched, for tests
//! that probe the server with malformed requests.

mod audit;
mod cold;
mod error;
mod members;
mod routes;
mod secops;
mod watch;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_api::{REQUEST_ID_HEADER, TENANT_HEADER};
use bulkhead_core::TenantId;
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue, IF_MATCH};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::ClientError;
/// HTTP methods for [`Client::raw`].
pub use reqwest::Method;
pub use routes::{ListRecords, TenantUpdated};
pub use watch::{FeedEvent, SseEvent, SseParser, Watch};

/// How long to wait for a TCP connection before reporting the server unreachable. There is no
/// overall request timeout: deleting or moving a large tenant may legitimately take a while.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle to one Bulkhead server with one credential. Cheap to clone: clones share the
/// connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: Url,
    /// Empty means "send no Authorization header" (health checks, unauthenticated probes).
    token: Arc<str>,
    tenant: Option<TenantId>,
}

/// The token is a secret: it never appears in debug output.
impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url.as_str())
            .field(
                "token",
                &if self.token.is_empty() {
                    "<none>"
                } else {
                    "<redacted>"
                },
            )
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// An answer from [`Client::raw`], whatever its status.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body parsed as JSON, for assertions on error bodies and records.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ClientError::Decode(format!("response body is not the expected JSON: {e}"))
        })
    }
}

impl Client {
    /// A client for the server at `base_url` (`http://host:port`, optionally with a path
    /// prefix). An empty token sends no `Authorization` header.
    pub fn new(base_url: &str, token: impl Into<String>) -> Result<Client, ClientError> {
        Client::new_trusting(base_url, token, &[])
    }

    /// [`Client::new`] that also trusts the certificate authorities in `ca_pem` (PEM) for
    /// `https://` servers, beside the platform's own (a server with its own CA).
    pub fn new_trusting(
        base_url: &str,
        token: impl Into<String>,
        ca_pem: &[u8],
    ) -> Result<Client, ClientError> {
        let base_url = parse_base_url(base_url)?;
        let token: String = token.into();
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::InvalidUrl(
                "the token contains spaces or characters not allowed in an HTTP header".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(ca_pem)?)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("bulkhead-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::transport(&e))?;
        Ok(Client {
            http,
            base_url,
            token: token.into(),
            tenant: None,
        })
    }

    /// A clone that names `tenant` in the `bulkhead-tenant` header of every request.
    pub fn with_tenant(&self, tenant: TenantId) -> Client {
        Client {
            tenant: Some(tenant),
            ..self.clone()
        }
    }

    /// The tenant named on every request, if any.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// Sends any request and returns the answer as it came, never mapping a status to an
    /// error: the escape hatch for tests that send malformed bodies, odd methods or headers.
    /// `path_and_query` is appended to the base URL verbatim (it should start with `/`); note
    /// that URL parsing still resolves literal `.`/`..` segments, so send `%2e%2e` to probe
    /// traversal.
    pub async fn raw(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
    ) -> Result<RawResponse, ClientError> {
        let base = self.base_url.as_str().trim_end_matches('/');
        let url = Url::parse(&format!("{base}{path_and_query}")).map_err(|e| {
            ClientError::InvalidUrl(format!("invalid path {path_and_query:?}: {e}"))
        })?;
        let mut request = self.request(method, url);
        if let Some(content_type) = content_type {
            let value = HeaderValue::from_str(content_type).map_err(|_| {
                ClientError::InvalidUrl(format!("invalid content type {content_type:?}"))
            })?;
            request = request.header(CONTENT_TYPE, value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::transport(&e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| ClientError::transport(&e))?
            .to_vec();
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// The base URL with `segments` appended (each percent-encoded) and `query` pairs
    /// form-encoded; pairs whose value is `None` are left out.
    fn url(&self, segments: &[&str], query: &[(&str, Option<String>)]) -> Result<Url, ClientError> {
        let mut url = self.base_url.clone();
        {
            let mut path = url.path_segments_mut().map_err(|()| {
                ClientError::InvalidUrl(format!("{} cannot be a base URL", self.base_url))
            })?;
            path.pop_if_empty();
            for segment in segments {
                // `Url` would silently drop these instead of encoding them.
                if segment.is_empty() || *segment == "." || *segment == ".." {
                    return Err(ClientError::InvalidUrl(format!(
                        "invalid path segment {segment:?}"
                    )));
                }
                path.push(segment);
            }
        }
        if query.iter().any(|(_, value)| value.is_some()) {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in query {
                if let Some(value) = value {
                    pairs.append_pair(name, value);
                }
            }
        }
        Ok(url)
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, url)
            .header(ACCEPT, "application/json");
        if !self.token.is_empty() {
            request = request.bearer_auth(&*self.token);
        }
        if let Some(tenant) = &self.tenant {
            request = request.header(TENANT_HEADER, tenant.as_str());
        }
        request
    }

    /// Sends a request with an optional JSON body and `If-Match` version, and returns the
    /// 2xx body bytes or the server's error.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        if_match: Option<i64>,
    ) -> Result<Vec<u8>, ClientError> {
        self.send_as(method, url, body.map(|b| ("application/json", b)), if_match)
            .await
    }

    /// [`Client::send`] with a body of the given content type.
    async fn send_as(
        &self,
        method: Method,
        url: Url,
        body: Option<(&'static str, Vec<u8>)>,
        if_match: Option<i64>,
    ) -> Result<Vec<u8>, ClientError> {
        let mut request = self.request(method, url);
        if let Some((content_type, body)) = body {
            request = request.header(CONTENT_TYPE, content_type).body(body);
        }
        if let Some(version) = if_match {
            request = request.header(IF_MATCH, if_match_value(version));
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::transport(&e))?;
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| ClientError::transport(&e))?;
        Ok(body.to_vec())
    }

    /// Sends a request whose answer is NDJSON and hands each line (without its newline) to
    /// `line` as it arrives; returns the lines. A `{"error": …}` line the server writes when
    /// it fails mid-stream is returned as that error.
    async fn stream_lines(
        &self,
        method: Method,
        url: Url,
        line: &mut dyn FnMut(&[u8]) -> Result<(), ClientError>,
    ) -> Result<u64, ClientError> {
        let mut response = self
            .request(method, url)
            .send()
            .await
            .map_err(|e| ClientError::transport(&e))?;
        let request_id = response
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        let mut pending = Vec::new();
        let mut lines = 0;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ClientError::transport(&e))?
        {
            pending.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
                let text = &pending[start..start + end];
                start += end + 1;
                if text.is_empty() {
                    continue;
                }
                if text.starts_with(b"{\"error\"") {
                    // The status the refusal would have had, which the line carries (500 when
                    // it does not say).
                    let status = serde_json::from_slice::<serde_json::Value>(text)
                        .ok()
                        .and_then(|v| v["error"]["status"].as_u64())
                        .and_then(|s| u16::try_from(s).ok())
                        .unwrap_or(500);
                    return Err(ClientError::from_response(
                        status,
                        text,
                        request_id.as_deref(),
                    ));
                }
                line(text)?;
                lines += 1;
            }
            pending.drain(..start);
        }
        Ok(lines)
    }

    /// [`Client::send`] and decode the answer as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        if_match: Option<i64>,
    ) -> Result<T, ClientError> {
        self.call_as(method, url, body.map(|b| ("application/json", b)), if_match)
            .await
    }

    /// [`Client::call`] with a body of the given content type.
    async fn call_as<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<(&'static str, Vec<u8>)>,
        if_match: Option<i64>,
    ) -> Result<T, ClientError> {
        let what = format!("{method} {}", url.path());
        let bytes = self.send_as(method, url, body, if_match).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Decode(format!("unexpected response to {what}: {e}")))
    }
}

/// TLS for `https://` servers: rustls with the `ring` provider (nothing process-wide), the
/// platform's certificate verifier, plus the extra authorities in `ca_pem`.
fn tls_config(ca_pem: &[u8]) -> Result<rustls::ClientConfig, ClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |what: String| ClientError::InvalidUrl(format!("TLS: {what}"));
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let extra: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("the CA certificates are not PEM: {e}")))?;
    let verifier = if extra.is_empty() {
        rustls_platform_verifier::Verifier::new(provider.clone())
    } else {
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
    }
    .map_err(|e| bad(e.to_string()))?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth())
}

/// Encodes a request body. Wire types always encode; the error exists for foreign `Value`s
/// only in theory, but is reported rather than unwrapped.
/// The server's error for a non-2xx answer (its body and request id), or the transport
/// error that cut the body short.
pub(crate) async fn refusal(response: reqwest::Response) -> ClientError {
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match response.bytes().await {
        Ok(body) => ClientError::from_response(status, &body, request_id.as_deref()),
        Err(e) => ClientError::transport(&e),
    }
}

fn json_body<T: Serialize + ?Sized>(value: &T) -> Result<Option<Vec<u8>>, ClientError> {
    serde_json::to_vec(value)
        .map(Some)
        .map_err(|e| ClientError::Decode(format!("request body cannot be encoded as JSON: {e}")))
}

/// The server's ETag is the version in double quotes; If-Match must repeat it exactly.
fn if_match_value(version: i64) -> String {
    format!("\"{version}\"")
}

fn parse_base_url(raw: &str) -> Result<Url, ClientError> {
    let url = Url::parse(raw.trim())
        .map_err(|e| ClientError::InvalidUrl(format!("invalid server URL {raw:?}: {e}")))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(ClientError::InvalidUrl(format!(
                "invalid server URL {raw:?}: scheme {other:?} is not http"
            )));
        }
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(ClientError::InvalidUrl(format!(
            "invalid server URL {raw:?}: no host"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ClientError::InvalidUrl(format!(
            "invalid server URL {raw:?}: must not have a query or fragment"
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        Client::new(base, "secret").expect("valid client")
    }

    #[test]
    fn path_segments_are_percent_encoded_and_queries_form_encoded() {
        let c = client("http://127.0.0.1:7070");
        let url = c
            .url(
                &["v1", "collections", "a b/c?d", "records"],
                &[("filter", Some("title = \"x&y\"".into())), ("limit", None)],
            )
            .expect("url");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:7070/v1/collections/a%20b%2Fc%3Fd/records\
             ?filter=title+%3D+%22x%26y%22"
        );
    }

    #[test]
    fn a_base_path_prefix_is_kept_with_or_without_a_trailing_slash() {
        for base in ["http://h:1/prefix", "http://h:1/prefix/"] {
            let url = client(base).url(&["v1", "tenants"], &[]).expect("url");
            assert_eq!(url.as_str(), "http://h:1/prefix/v1/tenants");
        }
    }

    #[test]
    fn dot_segments_are_refused_instead_of_silently_dropped() {
        let c = client("http://h:1");
        assert!(c.url(&["v1", ".."], &[]).is_err());
        assert!(c.url(&["v1", ""], &[]).is_err());
    }

    #[test]
    fn bad_base_urls_and_tokens_are_refused() {
        assert!(Client::new("127.0.0.1:7070", "t").is_err());
        assert!(Client::new("ftp://example.com", "t").is_err());
        assert!(Client::new("https://example.com", "t").is_ok());
        let broken = b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(Client::new_trusting("https://example.com", "t", broken).is_err());
        assert!(Client::new("http://h:1/?x=1", "t").is_err());
        assert!(Client::new("http://h:1", "bad token").is_err());
        assert!(Client::new("http://h:1", "").is_ok());
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let shown = format!("{:?}", client("http://h:1"));
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn if_match_quotes_the_version_like_the_etag() {
        assert_eq!(if_match_value(3), "\"3\"");
    }
}
