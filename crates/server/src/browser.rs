//! Calls from browsers: CORS for the origins the server is told to trust. Credentials are
//! bearer headers (a key or a tenant token), never cookies, so CORS never allows
//! credentials and no request can ride on a browser's ambient authority.

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The CORS layer for `origins`: `*` (any origin) or a list. None without origins: then
/// no answer carries CORS headers and a preflight is refused like any unserved method (405),
/// and requests skip the layer (it cost a get by id about 3 % of its instructions, issue 24).
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
                HeaderName::from_static("bulkhead-tenant"),
                HeaderName::from_static("traceparent"),
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                header::RETRY_AFTER,
                header::ETAG,
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Checks a configured origin: `*`, or `scheme://host[:port]`.
pub fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let uri: axum::http::Uri = origin
        .parse()
        .map_err(|_| format!("CORS origin {origin:?} is not scheme://host[:port]"))?;
    match (uri.scheme_str(), uri.host(), uri.path()) {
        (Some("http" | "https"), Some(_), "/" | "") if uri.query().is_none() => Ok(()),
        _ => Err(format!(
            "CORS origin {origin:?} is not scheme://host[:port] (no path)"
        )),
    }
}
