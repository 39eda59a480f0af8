//! The API description: served at `/v1/openapi.json` without a credential, the same as
//! `bulkhead openapi` prints, every operation with the error body as its default answer, and
//! a live server that schemathesis (PyPI) cannot make fail or answer outside it. docs/api.md
//! is generated from it.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use bulkhead_api::MintToken;
use bulkhead_core::access::TenantRole;
use bulkhead_core::permissions::Action;
use common::{ADMIN_KEY, Server, create_tenant, key, put_items};
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

/// `GET /v1/openapi.json` with no credential at all: the status line, the content type and
/// the body.
fn anonymous_get(server: &Server) -> (String, String, Vec<u8>) {
    use std::io::{Read as _, Write as _};
    let addr = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let request =
        format!("GET /v1/openapi.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.lines().next().unwrap_or_default().to_owned();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or_default()
        .to_owned();
    (status, content_type, raw[split + 4..].to_vec())
}

fn served(server: &Server) -> Value {
    let (status, content_type, body) = anonymous_get(server);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(content_type, "application/json");
    serde_json::from_slice(&body).unwrap()
}

fn printed() -> Value {
    let out = Command::new(common::binary())
        .arg("openapi")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `(METHOD, path)` of every operation.
fn operations(api: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in api["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_description_is_served_to_anyone_and_describes_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let api = served(&server);
    assert_eq!(api, printed(), "served and printed descriptions differ");
    assert_eq!(api["openapi"], "3.1.0");
    assert_eq!(api["info"]["version"], env!("CARGO_PKG_VERSION"));
    let schemes: BTreeSet<&str> = api["components"]["securitySchemes"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        schemes,
        BTreeSet::from(["platformKey", "tenantKey", "userJwt", "tenantToken"])
    );
    let ops = operations(&api);
    // The route families, each with its operations (a route that is served is described by
    // construction: routes mount through their descriptions).
    for (method, path) in [
        ("POST", "/v1/tenants"),
        ("DELETE", "/v1/tenants/{tenant}"),
        ("GET", "/v1/collections/{collection}/records"),
        ("PATCH", "/v1/collections/{collection}/records/{id}"),
        ("POST", "/v1/collections/{collection}/records:bulk"),
        ("GET", "/v1/collections/{collection}/records:watch"),
        ("POST", "/v1/collections/{collection}/aggregate"),
        ("POST", "/v1/tokens"),
        ("GET", "/v1/audit/verify"),
        ("GET", "/v1/costs"),
        ("GET", "/v1/placement/plan"),
        ("POST", "/v1/backups"),
        ("GET", "/metrics"),
        ("GET", "/healthz"),
    ] {
        assert!(
            ops.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is not described"
        );
    }
    for (method, path) in &ops {
        let op = &api["paths"][path][method.to_lowercase()];
        assert_eq!(
            op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody",
            "{method} {path}: no error body"
        );
        let success = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .any(|s| s.starts_with('2'));
        assert!(success, "{method} {path}: no success answer");
        assert!(
            op["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{method} {path}: untagged"
        );
        // Path parameters are all declared.
        for name in path.split('{').skip(1).filter_map(|p| p.split('}').next()) {
            let declared = op["parameters"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true)
            });
            assert!(
                declared,
                "{method} {path}: path parameter {name} not declared"
            );
        }
    }
    // The error body names every code of the catalogue.
    let codes = &api["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"];
    let catalogue = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/errors.md"),
    )
    .unwrap();
    let listed = catalogue.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(codes.as_array().map(Vec::len), Some(listed));
    for code in [
        "tenant_not_found",
        "quota_exceeded",
        "invalid_body",
        "route_not_found",
    ] {
        assert!(
            codes.as_array().unwrap().iter().any(|c| c == code),
            "{code}"
        );
    }
    // Public routes need no credential; the rest name the schemes.
    assert_eq!(
        api["paths"]["/healthz"]["get"]["security"],
        serde_json::json!([{}])
    );
    assert_eq!(api["security"].as_array().unwrap().len(), 4);
}

/// Runs schemathesis against the server with `credential`; panics with its report when it
/// finds a server error or an answer outside the description.
fn schemathesis(server: &Server, credential: &str, what: &str) {
    // Through the module, so a user-level install off the PATH is found too.
    let cli = || {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "schemathesis.cli"]);
        cmd
    };
    let found = cli().arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "schemathesis is not installed: `python3 -m pip install schemathesis` (PyPI); \
         .ci/run installs it"
    );
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let out = cli()
        // Bulk bodies are NDJSON: the hooks serialize them.
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PYTHONPATH", &fixtures)
        .args(["run", &format!("{}/v1/openapi.json", server.url)])
        .args(["--header", &format!("Authorization: Bearer {credential}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance",
        ])
        // A stream never ends, so a request/response fuzzer cannot read it (tests/watch.rs
        // covers it); backups and restores take the server's own file paths, and fuzzing them
        // would make directories wherever the test's user may write.
        .args([
            "--exclude-path-regex",
            "records:watch$|^/v1/backups$|records:restore$",
        ])
        // The same cases every run, and no example database left in the source tree.
        .args(["--max-examples", "20", "--seed", "20261205"])
        .args(["--generation-database", "none"])
        // Its crash cache goes to the working directory: the test's, not the source tree.
        .current_dir(server.data_dir.parent().unwrap())
        .args(["--request-timeout", "20", "--no-color", "--warnings", "off"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis as {what} found problems:\n{report}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    eprintln!(
        "schemathesis as {what}: {}",
        report.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
    );
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_description() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    let member = key(&admin, "acme", TenantRole::Member).await;
    let acme = server.client(&member);
    for i in 0..20 {
        acme.create_record(
            &common::items(),
            &serde_json::json!({"title": format!("item {i}"), "n": i}),
        )
        .await
        .unwrap();
    }
    let token = acme
        .mint_token(&MintToken {
            collections: None,
            actions: vec![Action::Read, Action::Create, Action::Aggregate],
            rule: None,
            expires_in: Some(3600),
        })
        .await
        .unwrap()
        .token;
    // The narrowest credential first: the admin's run deletes tenants and revokes keys.
    schemathesis(&server, &token, "a tenant token");
    schemathesis(&server, &member, "a tenant key");
    schemathesis(&server, ADMIN_KEY, "the platform admin");
}

/// docs/api.md: the operations of the description, by tag, and the error catalogue of
/// docs/errors.md. `BULKHEAD_BLESS=1` rewrites it; otherwise a stale file fails here.
#[test]
fn docs_api_md_is_generated_from_the_description() {
    let api = printed();
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let errors = std::fs::read_to_string(docs.join("errors.md")).unwrap();
    let expected = render(&api, &errors);
    let path = docs.join("api.md");
    if std::env::var_os("BULKHEAD_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == expected,
        "docs/api.md is not what the description makes: \
         `BULKHEAD_BLESS=1 cargo test -p bulkhead --test openapi docs_api` rewrites it"
    );
}

fn render(api: &Value, errors: &str) -> String {
    let mut out = String::from(
        "# API reference\n\n\
         <!-- Generated from the API description by crates/bulkhead/tests/openapi.rs: \
         `BULKHEAD_BLESS=1 cargo test -p bulkhead --test openapi docs_api` rewrites it. -->\n\n\
         The HTTP API is described by an OpenAPI 3.1 document generated from the server's \
         code, so it cannot drift from what the server answers:\n\n\
         - every server serves it at `GET /v1/openapi.json` (no credential needed);\n\
         - `bulkhead openapi` prints the one this binary serves.\n\n\
         Load it into any OpenAPI tool (Swagger UI, Redoc, a client generator) for every \
         parameter, body and answer schema. The TypeScript SDK is in `sdk/typescript`, the \
         Rust client is the `bulkhead-client` crate. Every error answers with one body, \
         `{\"error\": {\"code\", \"message\", \"request_id\"}}`; the codes are listed at the \
         end. More on how requests are served: [http.md](http.md); the query language: \
         [query.md](query.md); the change feed: [watch.md](watch.md).\n\n\
         ## Credentials\n\n\
         Every credential is sent as `Authorization: Bearer <secret>`. Routes marked \
         *public* need none.\n\n",
    );
    for (name, scheme) in api["components"]["securitySchemes"].as_object().unwrap() {
        out += &format!(
            "- **{name}**: {}\n",
            scheme["description"].as_str().unwrap_or_default()
        );
    }
    out += "\n## Operations\n";
    let mut by_tag: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (path, item) in api["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
            let answers: Vec<String> = op["responses"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(status, _)| *status != "default")
                .map(|(status, r)| {
                    format!("{status} {}", r["description"].as_str().unwrap_or_default())
                })
                .collect();
            let public = if op["security"] == serde_json::json!([{}]) {
                " (public)"
            } else {
                ""
            };
            let summary = op["summary"]
                .as_str()
                .or(op["description"].as_str())
                .unwrap_or_default()
                .replace('\n', " ");
            by_tag.entry(tag).or_default().push(format!(
                "| `{}` | `{path}`{public} | {} | {} |",
                method.to_uppercase(),
                answers.join("; ").replace('|', "\\|"),
                summary.replace('|', "\\|"),
            ));
        }
    }
    for (tag, rows) in by_tag {
        out += &format!(
            "\n### {tag}\n\n| method | path | answers | what it does |\n|---|---|---|---|\n"
        );
        for row in rows {
            out += &row;
            out.push('\n');
        }
    }
    out += "\n## Error codes\n\n\
            Any operation may also answer with an error: its status and `error.code` are \
            one of these (the same table as [errors.md](errors.md), which says more).\n\n\
            | code | status | meaning |\n|---|---|---|\n";
    for line in errors.lines().filter(|l| l.starts_with("| `")) {
        out += line;
        out.push('\n');
    }
    out
}
