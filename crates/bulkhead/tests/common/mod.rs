//! Test harness: starts the real `bulkhead` binary on a free loopback port with a temporary
//! data directory, and talks to it through the client crate (so the client is tested too).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bulkhead_api::{CreateKey, CreateTenant};
use bulkhead_client::Client;
use bulkhead_core::access::TenantRole;
use bulkhead_core::{CollectionName, TenantId, TierName};
use serde_json::json;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef";

pub struct Server {
    pub url: String,
    pub data_dir: PathBuf,
    pub child: Child,
    log: PathBuf,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_bulkhead")
}

impl Server {
    /// Starts a server on a fresh temporary directory.
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    // The child is waited for by `Drop for Server`, or killed and waited for on timeout.
    #[allow(clippy::zombie_processes)]
    pub fn start_with(dir: &Path, extra: &[(&str, &str)]) -> Server {
        let data_dir = dir.join("data");
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = dir.join(format!("server-{n}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(binary());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .env("BULKHEAD_ADMIN_KEY", ADMIN_KEY)
            .env("BULKHEAD_LOG", "warn")
            .env_remove("BULKHEAD_CONFIG")
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in extra {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            // Only a whole line: the log may be read while the line is being written.
            if let Some((line, _)) = text
                .split("listening on ")
                .nth(1)
                .and_then(|rest| rest.split_once('\n'))
            {
                let url = line.split_whitespace().next().unwrap().to_owned();
                return Server {
                    url,
                    data_dir,
                    child,
                    log,
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not start:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn admin(&self) -> Client {
        Client::new(&self.url, ADMIN_KEY).unwrap()
    }

    pub fn client(&self, token: &str) -> Client {
        Client::new(&self.url, token).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to flush or close anything.
    pub fn kill_hard(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for the graceful shutdown to finish.
    pub fn stop(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn tid(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

pub fn items() -> CollectionName {
    CollectionName::parse("items").unwrap()
}

/// The spec of the collection most tests use.
pub fn items_spec() -> serde_json::Value {
    json!({"fields": {
        "title": {"type": "text", "required": true},
        "sku": {"type": "string", "unique": true},
        "n": {"type": "integer", "index": true},
        "done": {"type": "boolean", "default": false}
    }})
}

/// The collection most tests use.
pub async fn put_items(admin: &Client) {
    let spec = serde_json::from_value(items_spec()).unwrap();
    admin.put_collection(&items(), &spec).await.unwrap();
}

pub async fn create_tenant(admin: &Client, id: &str, tier: &str) {
    admin
        .create_tenant(&CreateTenant {
            id: tid(id),
            name: format!("{id} inc"),
            tier: TierName::parse(tier).unwrap(),
            labels: Default::default(),
        })
        .await
        .unwrap();
}

pub async fn key(admin: &Client, tenant: &str, role: TenantRole) -> String {
    admin
        .create_key(
            &tid(tenant),
            &CreateKey {
                name: format!("{role:?}"),
                role,
                expires_in: None,
            },
        )
        .await
        .unwrap()
        .key
}

/// Reads the audit log straight from the catalog file (querying it over HTTP comes later).
/// Retries briefly, because denials are written by a background writer.
pub fn audit_rows(
    data_dir: &Path,
    predicate: impl Fn(&(String, String, String, Option<String>, String)) -> bool,
) -> Vec<(String, String, String, Option<String>, String)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let conn = rusqlite::Connection::open_with_flags(
            data_dir.join("catalog.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut stmt = conn
            .prepare("SELECT actor, action, target, tenant_id, outcome FROM audit ORDER BY seq")
            .unwrap();
        let rows: Vec<_> = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .filter(|row| predicate(row))
            .collect();
        if !rows.is_empty() || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Each `(query, code, named)`: `GET {path}?{query}` is a 400 with that error code, and its
/// message names the problem.
pub async fn assert_bad_queries(client: &Client, path: &str, cases: &[(&str, &str, &str)]) {
    for (q, code, named) in cases {
        let target = format!("{path}?{q}");
        let resp = client
            .raw("GET".parse().unwrap(), &target, None, None)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&resp.body).into_owned();
        assert_eq!(resp.status, 400, "{q}: {text}");
        let body: bulkhead_api::ErrorBody = resp.json().unwrap();
        assert_eq!(body.error.code, *code, "{q}: {text}");
        assert!(body.error.message.contains(named), "{q}: {text}");
    }
}

/// A server (with `extra` environment) with `items`, acme on `free` and globex on
/// `standard`, and a member client for each.
pub async fn acme_and_globex(
    extra: &[(&str, &str)],
) -> (tempfile::TempDir, Server, Client, Client) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), extra);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    create_tenant(&admin, "globex", "standard").await;
    let acme = server.client(&key(&admin, "acme", TenantRole::Member).await);
    let globex = server.client(&key(&admin, "globex", TenantRole::Member).await);
    (dir, server, acme, globex)
}

/// The last NDJSON line of a chunked body (chunk-size lines between them are skipped; each
/// streamed page, and the closing error line, is a chunk of its own).
pub fn last_json_line(body: &str) -> String {
    body.lines()
        .map(str::trim)
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_default()
        .to_owned()
}

/// Reads an HTTP response slowly: the first `first` bytes, then (after `between` has run)
/// the rest. Returns the body text after the first part.
pub fn slow_export(
    url: &str,
    token: &str,
    first: usize,
    between: impl FnOnce(),
) -> (String, String) {
    slow_export_as(url, token, None, first, between)
}

/// [`slow_export`] naming the tenant in `Bulkhead-Tenant` (as a platform key or a user must).
pub fn slow_export_as(
    url: &str,
    token: &str,
    tenant: Option<&str>,
    first: usize,
    between: impl FnOnce(),
) -> (String, String) {
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let named = tenant.map_or_else(String::new, |t| format!("Bulkhead-Tenant: {t}\r\n"));
    let request = format!(
        "GET /v1/collections/items/records:export HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\n{named}Connection: close\r\n\r\n"
    );
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut head = vec![0u8; first];
    std::io::Read::read_exact(&mut stream, &mut head).unwrap();
    between();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut rest).unwrap();
    (
        String::from_utf8_lossy(&head).into_owned(),
        String::from_utf8_lossy(&rest).into_owned(),
    )
}

/// Registers the PostgreSQL server at `url` as domain `pg` (silos allowed; `pool_size`
/// connections in its shared pool when given).
pub async fn put_pg_domain(admin: &Client, url: &str, pool_size: Option<u32>) {
    let spec = bulkhead_core::model::DomainSpec {
        engine: "postgres".into(),
        url: Some(bulkhead_core::ConnectionUrl::new(url)),
        silos: true,
        pool_size,
        ..bulkhead_core::model::DomainSpec::sqlite()
    };
    admin
        .put_domain(&bulkhead_core::DomainName::parse("pg").unwrap(), &spec)
        .await
        .unwrap();
}

/// A tier `name` placing tenants on domain `pg` with `isolation` and `limits`.
pub async fn put_pg_tier(
    admin: &Client,
    name: &str,
    isolation: bulkhead_core::model::Isolation,
    limits: bulkhead_core::model::TierLimits,
) {
    let tier = bulkhead_core::model::TierSpec {
        domains: vec![bulkhead_core::DomainName::parse("pg").unwrap()],
        limits,
        ..bulkhead_core::model::TierSpec::new(isolation)
    };
    admin
        .put_tier(&TierName::parse(name).unwrap(), &tier)
        .await
        .unwrap();
}

/// Every record `client` sees in `items`: id → title.
pub async fn all_titles(client: &Client) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = client
            .list_records(
                &items(),
                &bulkhead_client::ListRecords {
                    limit: Some(1000),
                    cursor,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        for r in &page.items {
            out.insert(
                r["id"].as_str().unwrap_or_default().to_owned(),
                r["title"].as_str().unwrap_or_default().to_owned(),
            );
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

/// Runs `bulkhead <args>` against `server` as the platform admin; returns whether it
/// succeeded and its stdout (stderr appended when it failed).
pub fn cli(server: &Server, args: &[&str]) -> (bool, String) {
    let out = Command::new(binary())
        .args(args)
        .env("BULKHEAD_URL", &server.url)
        .env("BULKHEAD_TOKEN", ADMIN_KEY)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    (out.status.success(), text)
}

/// The collection the rollout tests change: `notes`.
pub fn notes() -> CollectionName {
    CollectionName::parse("notes").unwrap()
}

/// `notes` with a `title`, and with `extra` an indexed `kind` (default `"k"`) too.
pub fn notes_spec(extra: bool) -> bulkhead_api::CollectionSpec {
    let mut fields = json!({"title": {"type": "text"}});
    if extra {
        fields["kind"] = json!({"type": "string", "default": "k", "index": true});
    }
    serde_json::from_value(json!({ "fields": fields })).unwrap()
}

/// `lines` records of `items` as an NDJSON bulk body: ids `b0000000`…, titles `{title} {i}`.
pub fn ndjson(lines: usize, title: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..lines {
        body.extend_from_slice(
            format!("{{\"id\": \"b{i:07}\", \"title\": \"{title} {i}\", \"n\": {i}}}\n").as_bytes(),
        );
    }
    body
}

/// Waits (60 s at most) until move `id` is in `phase`; panics if it ends elsewhere first.
pub async fn wait_for_phase(admin: &Client, id: &str, phase: bulkhead_core::model::MovePhase) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = admin.get_move(id).await.unwrap();
        if view.phase == phase {
            return;
        }
        assert!(
            !view.phase.is_final() || phase.is_final(),
            "move ended in {} before {phase}",
            view.phase
        );
        assert!(Instant::now() < deadline, "move stuck in {}", view.phase);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
