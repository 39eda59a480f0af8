//! Browsers: CORS answers only for the configured origins (preflight and actual requests,
//! never with credentials), none when no origin is configured; answers of 1 KiB or more
//! compressed with gzip when the client asks.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::io::Read;

use common::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one raw HTTP/1.1 request; returns the status, the headers (lower-case names) and
/// the body.
async fn raw(url: &str, request: &str) -> (u16, HashMap<String, String>, Vec<u8>) {
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, buf[split + 4..].to_vec())
}

/// A chunked body's bytes, without the chunk framing.
fn unchunk(body: &[u8]) -> Vec<u8> {
    let mut joined = Vec::new();
    let mut rest = body;
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap(), 16).unwrap();
        if size == 0 {
            return joined;
        }
        joined.extend_from_slice(&rest[end + 2..end + 2 + size]);
        rest = &rest[end + 2 + size + 2..];
    }
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .unwrap();
    text
}

fn preflight(origin: &str) -> String {
    format!(
        "OPTIONS /v1/collections/items/records HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\n\
         Access-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: authorization, content-type\r\nConnection: close\r\n\r\n"
    )
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins_and_never_with_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[("BULKHEAD_CORS_ORIGINS", "https://app.example.com")],
    );
    let (status, headers, _) = raw(&server.url, &preflight("https://app.example.com")).await;
    assert!(status < 300, "{status} {headers:?}");
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some("https://app.example.com")
    );
    let allowed = headers
        .get("access-control-allow-headers")
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    assert!(!headers.contains_key("access-control-allow-credentials"));
    // An actual request from the page carries the origin back, with the request id exposed.
    let (status, headers, _) = raw(
        &server.url,
        &format!(
            "GET /v1/tenants HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example.com\r\n\
             Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
            common::ADMIN_KEY
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some("https://app.example.com")
    );
    assert!(headers["access-control-expose-headers"].contains("x-request-id"));
    // Another origin gets no CORS answer (the browser then refuses the response).
    let (_, headers, _) = raw(&server.url, &preflight("https://evil.example.net")).await;
    assert!(
        !headers.contains_key("access-control-allow-origin"),
        "{headers:?}"
    );

    // Without configured origins, no CORS headers at all.
    let other = tempfile::tempdir().unwrap();
    let plain = Server::start(other.path());
    let (status, headers, body) = raw(&plain.url, &preflight("https://app.example.com")).await;
    assert!(
        !headers.keys().any(|h| h.starts_with("access-control-")),
        "{headers:?}"
    );
    // The preflight is refused like any method the route does not serve.
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 405, "{headers:?} {body}");
    assert!(body.contains("method_not_allowed"), "{body}");
}

#[tokio::test]
async fn answers_not_small_are_gzip_compressed_when_asked_and_a_bad_origin_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    for i in 0..30 {
        common::create_tenant(&admin, &format!("t{i:02}"), "free").await;
    }
    let request = |encoding: &str| {
        format!(
            "GET /v1/tenants?limit=100 HTTP/1.1\r\nHost: x\r\n{encoding}Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
            common::ADMIN_KEY
        )
    };
    let (status, headers, body) = raw(&server.url, &request("Accept-Encoding: gzip\r\n")).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("content-encoding").map(String::as_str),
        Some("gzip")
    );
    // The body is chunked: strip the chunk framing, then gunzip.
    let text = gunzip(&unchunk(&body));
    let page: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 30);
    // Not asked: not compressed.
    let (_, headers, _) = raw(&server.url, &request("")).await;
    assert!(!headers.contains_key("content-encoding"));
    // Asked, but a small answer (one tenant): not worth a compressor, sent as it is.
    let one = format!(
        "GET /v1/tenants/t00 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        common::ADMIN_KEY
    );
    let (status, headers, body) = raw(&server.url, &one).await;
    assert_eq!(status, 200);
    assert!(
        body.len() < usize::from(bulkhead_server::COMPRESS_FROM_BYTES),
        "{}",
        body.len()
    );
    assert!(!headers.contains_key("content-encoding"), "{headers:?}");
    let tenant: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(tenant["id"], "t00");

    let out = std::process::Command::new(common::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("other"))
        .env("BULKHEAD_ADMIN_KEY", common::ADMIN_KEY)
        .env("BULKHEAD_CORS_ORIGINS", "app.example.com/path")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CORS origin"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Streamed answers compress whole — an empty export too (its stream was polled again after
/// its end, which panicked and left the client with no answer) — and change feeds go out
/// uncompressed, event by event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_answers_compress_and_change_feeds_do_not() {
    use bulkhead_core::access::TenantRole;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    common::put_items(&admin).await;
    common::create_tenant(&admin, "acme", "free").await;
    let token = common::key(&admin, "acme", TenantRole::Member).await;
    let get = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
    };
    let export = "/v1/collections/items/records:export";
    let (status, headers, body) = raw(&server.url, &get(export)).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("content-encoding").map(String::as_str),
        Some("gzip")
    );
    assert_eq!(gunzip(&unchunk(&body)), "", "an empty export");
    let acme = server.client(&token);
    for i in 0..3 {
        acme.create_record(
            &common::items(),
            &serde_json::json!({"title": format!("t{i}")}),
        )
        .await
        .unwrap();
    }
    let (status, _, body) = raw(&server.url, &get(export)).await;
    assert_eq!(status, 200);
    assert_eq!(gunzip(&unchunk(&body)).lines().count(), 3);
    // The audit export of an empty window, the same.
    let empty_window = format!(
        "GET /v1/audit/export?from=2999-01-01T00:00:00Z HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        common::ADMIN_KEY
    );
    let (status, headers, body) = raw(&server.url, &empty_window).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("content-encoding").map(String::as_str),
        Some("gzip")
    );
    assert_eq!(gunzip(&unchunk(&body)), "");
    assert!(!server.log().contains("panicked"), "{}", server.log());

    // A feed never ends: read its head only.
    let addr = server.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(get("/v1/collections/items/records:watch").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut byte = [0u8; 512];
        let n = stream.read(&mut byte).await.unwrap();
        assert!(n > 0, "the feed closed: {}", String::from_utf8_lossy(&head));
        head.extend_from_slice(&byte[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(!head.contains("content-encoding"), "{head}");
}

/// HTTPS: the server serves TLS with its certificate; the CLI speaks it, trusting the CA
/// given with --ca-cert, and refuses a server it cannot verify; plain HTTP to it fails.
#[tokio::test]
async fn the_server_serves_https_and_the_cli_verifies_it() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (ca, cert, key) = (at("ca.pem"), at("cert.pem"), at("key.pem"));
    std::fs::write(
        at("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    // A CA of the test's own, and a server certificate it signs.
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
            "-keyout",
            &at("ca.key"),
            "-out",
            &ca,
        ],
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &key,
            "-out",
            &at("leaf.csr"),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &at("leaf.csr"),
            "-CA",
            &ca,
            "-CAkey",
            &at("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &at("leaf.ext"),
            "-out",
            &cert,
        ],
    ] {
        let made = std::process::Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl is needed to make test certificates (apt-get install openssl)");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let server = Server::start_with(
        dir.path(),
        &[
            ("BULKHEAD_TLS_CERT", cert.as_str()),
            ("BULKHEAD_TLS_KEY", key.as_str()),
        ],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let cli = |extra: &[(&str, &str)]| {
        let mut command = std::process::Command::new(common::binary());
        command
            .args(["tenant", "list"])
            .env("BULKHEAD_URL", &server.url)
            .env("BULKHEAD_TOKEN", common::ADMIN_KEY)
            .env_remove("BULKHEAD_CA_CERT");
        for (k, v) in extra {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = cli(&[("BULKHEAD_CA_CERT", ca.as_str())]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&[]);
    assert!(!ok, "an unknown CA is refused: {out}");
    let client = bulkhead_client::Client::new_trusting(
        &server.url,
        common::ADMIN_KEY,
        &std::fs::read(&ca).unwrap(),
    )
    .unwrap();
    client.list_tenants(None, None).await.unwrap();
    let plain = bulkhead_client::Client::new(
        &server.url.replace("https://", "http://"),
        common::ADMIN_KEY,
    )
    .unwrap();
    assert!(plain.list_tenants(None, None).await.is_err());
}
