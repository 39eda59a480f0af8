//! The operator CLI, run as a user runs it: the real binary, a real server, credentials from
//! `BULKHEAD_TOKEN` or from the admin key the server wrote into its data directory.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bulkhead_core::access::TenantRole;
use common::{Server, tid};
use serde_json::Value;

/// Environment variables the CLI reads; cleared so the caller's shell cannot leak in.
const CLI_ENV: [&str; 6] = [
    "BULKHEAD_URL",
    "BULKHEAD_TOKEN",
    "BULKHEAD_DATA_DIR",
    "BULKHEAD_TENANT",
    "BULKHEAD_ADMIN_KEY",
    "BULKHEAD_CONFIG",
];

/// The CLI as a user on some machine runs it: a server URL, maybe a token, a working
/// directory where the default `./bulkhead-data` does not exist.
struct Cli<'a> {
    cwd: &'a Path,
    url: &'a str,
    token: Option<&'a str>,
}

impl Cli<'_> {
    /// Runs `bulkhead <args>`; `args` is split on whitespace.
    fn run(&self, args: &str) -> Output {
        self.run_args(&args.split_whitespace().collect::<Vec<_>>())
    }

    fn run_args(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Runs `bulkhead <args>` with these environment variables set as well.
    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(common::binary());
        command
            .args(args)
            .current_dir(self.cwd)
            .stdin(Stdio::null());
        for name in CLI_ENV {
            command.env_remove(name);
        }
        command.env("BULKHEAD_URL", self.url);
        if let Some(token) = self.token {
            command.env("BULKHEAD_TOKEN", token);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &str) -> String {
        ok(&self.run(args))
    }

    /// Runs a command that must fail; returns its stderr after checking it is for humans.
    fn fails(&self, args: &str) -> String {
        let output = self.run(args);
        assert!(
            !output.status.success(),
            "{args} succeeded: {}",
            stdout(&output)
        );
        assert_eq!(output.status.code(), Some(1), "{args}");
        let err = stderr(&output);
        for bad in [
            "Error {",
            "Api {",
            "backtrace",
            "panicked",
            "RUST_BACKTRACE",
        ] {
            assert!(!err.contains(bad), "stderr shows {bad:?}:\n{err}");
        }
        err
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Asserts success and returns stdout.
fn ok(output: &Output) -> String {
    let (out, err) = (stdout(output), stderr(output));
    assert!(output.status.success(), "{}:\n{out}\n{err}", output.status);
    out
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[tokio::test]
async fn an_operator_defines_a_collection_onboards_a_tenant_and_works_with_records() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    let (cwd, url) = (dir.path(), server.url.as_str());
    let operator = Cli {
        cwd,
        url,
        token: Some(common::ADMIN_KEY),
    };

    let out = operator.ok("collection put items --field title:text:required");
    assert!(out.contains("title"), "{out}");
    let collection = admin.get_collection(&common::items()).await.unwrap();
    assert_eq!(collection.fields.len(), 1);
    assert!(collection.fields.values().all(|f| f.required));

    operator.ok("tenant create acme --name Acme --tier free");
    operator.ok("tenant create initech --name Initech --tier premium");
    // A change with tenants to reach: followed to the end with --wait.
    let out = operator
        .ok("collection put items --field title:text:required --field color:string:index --wait");
    assert!(out.contains("version 2") && out.contains("done"), "{out}");
    let rollouts = operator.ok("rollout list");
    assert!(
        rollouts.lines().filter(|l| l.contains("items")).count() == 2,
        "{rollouts}"
    );
    let latest = admin.list_rollouts().await.unwrap().items.remove(0);
    assert_eq!(
        (
            latest.version,
            latest.placements_left,
            latest.placements_done
        ),
        (2, 0, 2)
    );
    let shown = operator.ok(&format!("rollout get {} --json", latest.id));
    assert_eq!(json(&shown)["state"], "done", "{shown}");
    let tenant = admin.get_tenant(&tid("acme")).await.unwrap();
    assert_eq!(
        [tenant.name.as_str(), tenant.tier.as_str()],
        ["Acme", "free"]
    );
    let table = operator.ok("tenant list");
    let row = table
        .lines()
        .find(|l| l.contains("acme"))
        .unwrap_or_default();
    for cell in ["Acme", "free", "active", "pool"] {
        assert!(row.contains(cell), "{cell} missing:\n{table}");
    }

    let created = json(&operator.ok("key create --tenant-id acme --name app --role member --json"));
    assert_eq!([&created["role"], &created["tenant"]], ["member", "acme"]);
    assert_eq!(created["name"], "app");
    let member = created["key"].as_str().unwrap();
    let app = Cli {
        cwd,
        url,
        token: Some(member),
    };

    let hello = json(&app.ok(r#"record create items {"title":"hello"} --json"#));
    assert_eq!(hello["title"], "hello");
    assert_eq!(hello["version"], 1);
    let id = hello["id"].as_str().unwrap();
    app.ok(r#"record create items {"title":"other"} --json"#);

    let sheet = app.ok(&format!("record get items {id}"));
    assert!(sheet.contains(id) && sheet.contains("hello"), "{sheet}");
    assert!(!sheet.contains("other"), "{sheet}");

    let filter = ["record", "list", "items", "--filter", r#"title = "hello""#];
    let page = json(&ok(&app.run_args(&[&filter[..], &["--json"]].concat())));
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!([&items[0]["id"], &items[0]["title"]], [id, "hello"]);
    let table = ok(&app.run_args(&filter));
    assert!(
        table.contains("hello") && !table.contains("other"),
        "{table}"
    );

    // The key the CLI minted is a tenant key: the control plane is closed to it.
    let err = app.fails("tenant list");
    assert!(err.contains("forbidden"), "{err}");

    // The audit log has both: the onboarding, and the refusal.
    let page = json(&operator.ok("audit list --tenant-id acme --action tenant.* --json"));
    let entries = page["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{page}");
    assert_eq!(
        [&entries[0]["action"], &entries[0]["target"]],
        ["tenant.create", "acme"]
    );
    let table = operator.ok("audit list --outcome denied --from 1h");
    let row = table
        .lines()
        .find(|l| l.contains("tenant.list"))
        .unwrap_or_default();
    assert!(row.contains("denied:forbidden"), "{table}");
    let newest = json(&operator.ok("audit list --limit 1 --json"));
    assert_eq!(newest["items"].as_array().unwrap().len(), 1, "{newest}");
    assert!(newest["next_cursor"].is_string(), "{newest}");
    // Revoking the app's key says so, and the key stops working.
    let key_id = created["id"].as_str().unwrap();
    let revoked = operator.ok(&format!("key revoke --tenant-id acme {key_id}"));
    assert_eq!(revoked.trim(), format!("revoked key {key_id}"));
    let err = app.fails("record list items");
    assert!(err.contains("401"), "{err}");

    let bad = operator.run("audit list --from yesterday");
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("span ago"), "{}", stderr(&bad));
}

#[tokio::test]
async fn a_failed_command_exits_non_zero_with_the_servers_message_and_code_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    common::put_items(&admin).await;
    common::create_tenant(&admin, "acme", "free").await;
    let member = common::key(&admin, "acme", TenantRole::Member).await;
    let (cwd, url) = (dir.path(), server.url.as_str());
    let app = Cli {
        cwd,
        url,
        token: Some(&member),
    };

    let output = app.run("record get items missing");
    assert_eq!(stdout(&output), "");
    let err = app.fails("record get items missing");
    for part in ["record not found", "record_not_found", "404"] {
        assert!(err.contains(part), "{part} missing: {err}");
    }

    // A bad credential and an unreachable server are explained too.
    let forged = Cli {
        cwd,
        url,
        token: Some("bk_not_a_key"),
    };
    let err = forged.fails("tenant list");
    assert!(err.contains("invalid_credentials"), "{err}");
    let nowhere = Cli {
        cwd,
        url: "http://127.0.0.1:9",
        token: Some(&member),
    };
    let err = nowhere.fails("tenant list");
    assert!(err.contains("cannot reach the Bulkhead server"), "{err}");
}

#[tokio::test]
async fn deleting_a_tenant_without_yes_is_refused_and_the_tenant_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    common::create_tenant(&admin, "acme", "free").await;
    let (cwd, url) = (dir.path(), server.url.as_str());
    let operator = Cli {
        cwd,
        url,
        token: Some(common::ADMIN_KEY),
    };

    let err = operator.fails("tenant delete acme");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(
        admin.get_tenant(&tid("acme")).await.unwrap().id,
        tid("acme")
    );

    let done = operator.ok("tenant delete acme --yes");
    assert!(done.contains("deleted tenant acme"), "{done}");
    let gone = admin.get_tenant(&tid("acme")).await.unwrap_err();
    assert_eq!(gone.code(), Some("tenant_not_found"));
}

#[tokio::test]
async fn a_tenant_deleted_and_onboarded_again_under_the_same_id_starts_empty_and_works() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    common::put_items(&server.admin()).await;
    let (cwd, url) = (dir.path(), server.url.as_str());
    let operator = Cli {
        cwd,
        url,
        token: Some(common::ADMIN_KEY),
    };
    let mint = "key create --tenant-id acme --name app --role member --json";

    operator.ok("tenant create acme --name Acme --tier free");
    let first = json(&operator.ok(mint));
    let app = Cli {
        cwd,
        url,
        token: first["key"].as_str(),
    };
    app.ok(r#"record create items {"title":"before"} --json"#);
    operator.ok("tenant delete acme --yes");
    // The old key went with the tenant.
    assert!(
        app.fails("record list items")
            .contains("invalid_credentials")
    );

    operator.ok("tenant create acme --name Acme --tier free");
    let second = json(&operator.ok(mint));
    let app = Cli {
        cwd,
        url,
        token: second["key"].as_str(),
    };
    let listed = app.run("record list items --json");
    let (out, err) = (stdout(&listed), stderr(&listed));
    assert!(
        listed.status.success(),
        "the new acme is unreachable:\n{out}{err}"
    );
    assert_eq!(
        json(&out)["items"],
        serde_json::json!([]),
        "old data survived"
    );
    let created = json(&app.ok(r#"record create items {"title":"after"} --json"#));
    assert_eq!(created["title"], "after");
}

/// `tenant move` and `tenant delete` can name the life they are for: a script holding the
/// incarnation it saw never moves or deletes a tenant someone re-created under the id since.
#[tokio::test]
async fn a_move_or_deletion_naming_an_ended_life_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let operator = Cli {
        cwd: dir.path(),
        url: server.url.as_str(),
        token: Some(common::ADMIN_KEY),
    };
    let life = |operator: &Cli| {
        json(&operator.ok("tenant get acme --json"))["placement"]["incarnation"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    operator.ok("tenant create acme --name Acme --tier free");
    let old = life(&operator);
    operator.ok("tenant delete acme --yes");
    operator.ok("tenant create acme --name Acme --tier free");
    let new = life(&operator);
    assert_ne!(old, new);

    for command in [
        format!("tenant move acme --to silo --incarnation {old}"),
        format!("tenant delete acme --yes --incarnation {old}"),
    ] {
        let err = operator.fails(&command);
        assert!(err.contains("tenant_life_ended"), "{command}: {err}");
    }
    let view = json(&operator.ok("tenant get acme --json"));
    assert_eq!(
        (view["placement"]["isolation"].as_str(), life(&operator)),
        (Some("pool"), new.clone())
    );
    // A malformed life is a usage error (exit 2) naming the argument; nothing is sent.
    let bad = operator.run("tenant delete acme --yes --incarnation not-a-life");
    let err = stderr(&bad);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(err.contains("--incarnation"), "{err}");

    operator.ok(&format!(
        "tenant move acme --to bridge --incarnation {new} --wait"
    ));
    operator.ok(&format!("tenant delete acme --yes --incarnation {new}"));
    assert!(
        operator
            .fails("tenant get acme")
            .contains("tenant_not_found")
    );
}

/// A server started without `BULKHEAD_ADMIN_KEY`, its stdout kept in a file.
struct FirstStart {
    child: Child,
    url: String,
    stdout: PathBuf,
}

impl FirstStart {
    fn start(dir: &Path, data: &Path, n: usize) -> FirstStart {
        let stdout = dir.join(format!("stdout-{n}.txt"));
        let stderr = dir.join(format!("stderr-{n}.txt"));
        let mut command = Command::new(common::binary());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("BULKHEAD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for name in CLI_ENV {
            command.env_remove(name);
        }
        // Owned by the guard at once, so a failed start still kills and reaps it.
        let child = command.spawn().unwrap();
        let mut server = FirstStart {
            child,
            url: String::new(),
            stdout,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&stderr).unwrap_or_default();
            if let Some((line, _)) = text
                .split("listening on ")
                .nth(1)
                .and_then(|rest| rest.split_once('\n'))
            {
                server.url = line.split_whitespace().next().unwrap().to_owned();
                return server;
            }
            assert!(Instant::now() < deadline, "server did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap()
    }

    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FirstStart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_first_start_prints_and_saves_a_private_admin_key_the_cli_uses_without_a_token() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let mut server = FirstStart::start(dir.path(), &data, 0);

    let key_file = data.join("admin.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "admin.key mode is {:o}", mode & 0o777);
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(key.len() >= 16, "{key:?}");
    let printed = server.stdout();
    assert_eq!(printed.matches(key.as_str()).count(), 1, "{printed}");

    // No token anywhere: the CLI falls back to <data-dir>/admin.key.
    let (cwd, url) = (dir.path(), server.url.clone());
    let local = Cli {
        cwd,
        url: &url,
        token: None,
    };
    local.ok(&format!(
        "tenant create acme --name Acme --tier free --data-dir {data_arg}"
    ));
    let table = local.ok(&format!("tenant list --data-dir {data_arg}"));
    assert!(table.contains("acme"), "{table}");
    // The key is a real platform admin key over HTTP too.
    let admin = bulkhead_client::Client::new(&url, key.as_str()).unwrap();
    assert_eq!(admin.list_tenants(None, None).await.unwrap().items.len(), 1);

    // Without a token and without a key file, the CLI says what to do instead of guessing.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let err = local.fails(&format!("tenant list --data-dir {}", elsewhere.display()));
    assert!(
        err.contains("no credentials") && err.contains("BULKHEAD_TOKEN"),
        "{err}"
    );

    // A restart neither prints nor replaces the key.
    server.stop();
    drop(server);
    let restarted = FirstStart::start(dir.path(), &data, 1);
    let printed = restarted.stdout();
    assert!(!printed.contains(key.as_str()), "{printed}");
    assert!(!printed.contains("admin key"), "{printed}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);
    let local = Cli {
        cwd,
        url: &restarted.url,
        token: None,
    };
    let table = local.ok(&format!("tenant list --data-dir {data_arg}"));
    assert!(table.contains("acme"), "{table}");
}

/// The platform as code: `plan` shows what a platform file would change (nothing changes),
/// `apply` makes it so and is idempotent, secrets come from the environment, and a change that
/// would lose data or pull an isolation model from under tenants is refused by name with
/// nothing applied.
#[tokio::test]
async fn plan_and_apply_a_platform_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    let (cwd, url) = (dir.path(), server.url.as_str());
    let operator = Cli {
        cwd,
        url,
        token: Some(common::ADMIN_KEY),
    };
    let file = dir.path().join("platform.toml");
    let path = file.to_str().unwrap();
    let env = [("GOLD_NOTE", "for our largest customers")];
    let write = |text: &str| std::fs::write(&file, text).unwrap();
    let base = r#"
[domains.east]
engine = "sqlite"
ready_silos = 1

[tiers.free]
isolation = "pool"

[tiers.gold]
isolation = "silo"
domains = ["east"]
monthly_price = 900.0
description = "${GOLD_NOTE}"

[collections.notes.fields]
title = { type = "text", required = true }
"#;
    write(base);
    let plan = |operator: &Cli| {
        let output = operator.run_env(&["plan", "-f", path, "--json"], &env);
        json(&ok(&output))
    };
    let actions = |plan: &Value| -> Vec<(String, String, String)> {
        plan.as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["kind"].as_str().unwrap().to_owned(),
                    i["name"].as_str().unwrap().to_owned(),
                    i["action"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let first = plan(&operator);
    let wanted = |rows: &[(&str, &str, &str)]| -> Vec<(String, String, String)> {
        rows.iter()
            .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
            .collect()
    };
    assert_eq!(
        actions(&first),
        wanted(&[
            ("domain", "east", "create"),
            ("tier", "free", "unchanged"),
            ("tier", "gold", "create"),
            ("collection", "notes", "create"),
        ]),
        "{first}"
    );
    // A plan changes nothing.
    assert!(admin.list_collections().await.unwrap().items.is_empty());

    ok(&operator.run_env(&["apply", "-f", path, "--wait"], &env));
    let tiers = admin.list_tiers().await.unwrap().items;
    let gold = tiers.iter().find(|t| t.name.as_str() == "gold").unwrap();
    assert_eq!(gold.spec.description, "for our largest customers");
    assert_eq!(
        actions(&plan(&operator))
            .iter()
            .filter(|(_, _, a)| a != "unchanged")
            .count(),
        0
    );
    // Applying again sends nothing: the collection stays at version 1.
    ok(&operator.run_env(&["apply", "-f", path], &env));
    let notes = bulkhead_core::CollectionName::parse("notes").unwrap();
    assert_eq!(admin.get_collection(&notes).await.unwrap().version, 1);

    operator.ok("tenant create acme --name Acme --tier gold");
    // An isolation change under a tenant and a lossy schema change: refused by name, and the
    // new tier declared beside them is not created either.
    write(
        &base
            .replace("isolation = \"silo\"", "isolation = \"pool\"")
            .replace(
                "title = { type = \"text\", required = true }",
                "body = { type = \"text\" }",
            )
            .replace(
                "[tiers.free]",
                "[tiers.silver]\nisolation = \"bridge\"\n\n[tiers.free]",
            ),
    );
    let refused = plan(&operator);
    let refusals: Vec<_> = actions(&refused)
        .into_iter()
        .filter(|(_, _, a)| a == "refused")
        .map(|(k, n, _)| format!("{k} {n}"))
        .collect();
    assert_eq!(refusals, ["tier gold", "collection notes"], "{refused}");
    let output = operator.run_env(&["apply", "-f", path], &env);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("tier gold") && err.contains("1 tenants use it") && err.contains("title"),
        "{err}"
    );
    assert!(
        !admin
            .list_tiers()
            .await
            .unwrap()
            .items
            .iter()
            .any(|t| t.name.as_str() == "silver"),
        "nothing is applied when something is refused"
    );

    // An added indexed field: a rollout to the tenant's storage, followed to the end.
    write(&base.replace(
        "title = { type = \"text\", required = true }",
        "title = { type = \"text\", required = true }\nkind = { type = \"string\", index = true, default = \"note\" }",
    ));
    let change = plan(&operator);
    let detail = change.as_array().unwrap()[3]["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains("1 tenants"), "{change}");
    let out = ok(&operator.run_env(&["apply", "-f", path, "--wait"], &env));
    assert!(out.contains("done"), "{out}");
    admin
        .with_tenant(tid("acme"))
        .create_record(&notes, &serde_json::json!({"title": "t", "kind": "memo"}))
        .await
        .unwrap();
}
