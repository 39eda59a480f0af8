//! The operator console at `/console`: served by the binary with a strict policy, and driven
//! in a real browser (the system's Chromium, headless, through `puppeteer-core` from npm):
//! sign in, create a tenant, move it live and watch the move finish, read the audit, and an
//! operator who reaches no record page even by URL. Needs Chromium (`apt-get install
//! chromium`) and Node.js 18 or newer with npm; `npm ci` fetches puppeteer-core once.
//! Screenshots of the main pages land in `target/console-screenshots`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bulkhead_api::CreatePlatformKey;
use bulkhead_core::roles::PlatformRole;
use common::{ADMIN_KEY, Server};

fn driver_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots")
}

/// The system's Chromium, or a failure saying what to install.
fn chromium() -> String {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return path;
    }
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(candidate).output()
            && out.status.success()
        {
            return String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
    }
    panic!(
        "the console's browser test needs Chromium: install it (apt-get install chromium) \
         or set CHROMIUM to a Chrome or Chromium binary"
    );
}

fn npm_ci() {
    if driver_dir().join("node_modules/puppeteer-core").exists() {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(driver_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run npm ({e}): the console test needs Node.js 18 or newer and npm")
        });
    assert!(
        out.status.success(),
        "npm ci failed (the registry must be reachable once):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the browser driver in `mode` against `server`; returns what it printed.
fn drive(server: &Server, operator_key: &str, mode: &str) -> String {
    npm_ci();
    let out = Command::new("node")
        .arg("drive.mjs")
        .current_dir(driver_dir())
        .env("BULKHEAD_URL", &server.url)
        .env("ADMIN_KEY", ADMIN_KEY)
        .env("OPERATOR_KEY", operator_key)
        .env("CHROMIUM", chromium())
        .env("SCREENSHOTS", screenshots())
        .env("MODE", mode)
        .output()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): the console test needs Node.js 18+"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the browser walk failed:\n{text}\n--- server log ---\n{}",
        server.log()
    );
    text
}

async fn operator_key(server: &Server) -> String {
    let admin = server.admin();
    admin
        .create_platform_key(&CreatePlatformKey {
            name: "console-operator".into(),
            role: PlatformRole::Operator,
            expires_in: None,
        })
        .await
        .unwrap()
        .key
}

/// A plain GET: status, head (lower-cased) and body.
fn fetch(url: &str, path: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
}

#[test]
fn the_console_is_served_with_a_strict_policy_and_no_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());

    let (status, head, body) = fetch(&server.url, "/console");
    assert_eq!(status, 200);
    assert!(
        header(&head, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let csp = header(&head, "content-security-policy").unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp} lacks {part}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert_eq!(header(&head, "x-frame-options"), Some("deny"));
    assert_eq!(header(&head, "set-cookie"), None);
    assert!(body.contains("/console/app.js"));

    for (path, kind) in [
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
        ("/console/logo.svg", "image/svg+xml"),
    ] {
        let (status, head, _) = fetch(&server.url, path);
        assert_eq!(status, 200, "{path}");
        assert!(
            header(&head, "content-type").unwrap().starts_with(kind),
            "{path}"
        );
    }

    // `/` leads to the console; anything else under it is the API's plain 404.
    let (status, head, _) = fetch(&server.url, "/");
    assert_eq!(status, 303);
    assert_eq!(header(&head, "location"), Some("/console"));
    for path in [
        "/console/../../etc/passwd",
        "/console/secrets.txt",
        "/console/app.js/x",
    ] {
        let (status, _, body) = fetch(&server.url, path);
        assert_eq!(status, 404, "{path}");
        let body: serde_json::Value =
            serde_json::from_str(body.lines().find(|l| l.starts_with('{')).unwrap_or(&body))
                .unwrap();
        assert_eq!(body["error"]["code"], "route_not_found", "{path}");
    }
}

/// The whole tour in Chromium; fails on the first check that does not hold, on any script
/// error and on any Content-Security-Policy violation.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_walks_the_console_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    // A short drain grace so the move switches promptly.
    let server = Server::start_with(dir.path(), &[("BULKHEAD_MOVE_DRAIN_GRACE_MS", "100")]);
    let admin = server.admin();
    let spec = serde_json::from_value(serde_json::json!({"fields": {
        "title": {"type": "string", "required": true},
        "n": {"type": "integer"}
    }}))
    .unwrap();
    admin
        .put_collection(
            &bulkhead_core::CollectionName::parse("notes").unwrap(),
            &spec,
        )
        .await
        .unwrap();
    let operator = operator_key(&server).await;
    let out = drive(&server, &operator, "walk");
    assert!(out.contains("walk: ok"), "{out}");
    for page in ["overview", "tenants", "tenant", "moves", "audit"] {
        assert!(
            screenshots().join(format!("{page}.png")).exists(),
            "no screenshot of {page}"
        );
    }
}

/// The figure of issue 22: first paint of the tenants page with 10,000 tenants. A
/// measurement, not a check (run it by name; BENCHMARKS.md has the result).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: cargo test -p bulkhead --test console first_paint -- --ignored --nocapture"]
async fn first_paint_of_the_tenants_page_with_10000_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    let mut tasks = tokio::task::JoinSet::new();
    let admin = std::sync::Arc::new(admin);
    for chunk in 0..16 {
        let admin = std::sync::Arc::clone(&admin);
        tasks.spawn(async move {
            for i in (chunk..10_000).step_by(16) {
                common::create_tenant(&admin, &format!("t{i:05}"), "free").await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let operator = operator_key(&server).await;
    let out = drive(&server, &operator, "first-paint");
    println!("{out}");
}
