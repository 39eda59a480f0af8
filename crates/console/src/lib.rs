//! The operator console: one static page, its script and its style sheet, embedded in the
//! binary at build time and served at `/console`.
//!
//! The console has no server side of its own. It signs in with a platform key the operator
//! types, keeps it in the tab's `sessionStorage`, and sends it as a bearer header to the same
//! public API the CLI calls; what a key may see and do is decided there, never here. No
//! cookie is ever set, so no request can ride on a browser's ambient authority (nothing for
//! CSRF to use), and the Content-Security-Policy allows only these files: no inline script or
//! style, no other origin, no framing.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The files the console is made of: path under `/console`, content type, bytes.
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "",
        "text/html; charset=utf-8",
        include_str!("../assets/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "/app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
    (
        "/logo.svg",
        "image/svg+xml",
        include_str!("../assets/logo.svg"),
    ),
];

/// What the page may load and do: its own files and the API on the same origin, nothing
/// else. No inline script or style (the page sets element styles through the DOM only).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The console's routes, to merge into the server's router. `/` leads to the console.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new().route("/", get(|| async { Redirect::to("/console") }));
    for (path, content_type, body) in ASSETS {
        let route = format!("/console{path}");
        router = router.route(
            &route,
            get(move || async move { asset(content_type, body) }),
        );
    }
    router.route("/console/", get(|| async { Redirect::to("/console") }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The console stays small: the issue allows it 2 MB of the binary.
    #[test]
    fn the_console_adds_less_than_two_megabytes() {
        let bytes: usize = ASSETS.iter().map(|(_, _, body)| body.len()).sum();
        assert!(bytes < 2 * 1024 * 1024, "{bytes} bytes of console assets");
    }

    /// The page loads only its own files: every script and style sheet it names is served.
    #[test]
    fn the_page_names_only_files_the_router_serves() {
        let page = ASSETS[0].2;
        for reference in page
            .split(['"', '\''])
            .filter(|s| s.starts_with("/console/"))
        {
            let path = &reference["/console".len()..];
            assert!(
                ASSETS.iter().any(|(p, _, _)| *p == path),
                "{reference} is not served"
            );
        }
        assert!(!page.contains("<script>"), "no inline script");
        assert!(!page.contains("style="), "no inline style");
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
