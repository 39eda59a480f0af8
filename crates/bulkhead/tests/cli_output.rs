//! The CLI as the shell sees it: completion scripts and a manual page, `serve --help` with
//! the server's options only, errors as JSON under `--json`, and a reader that stops reading
//! (`| head`) ending the output quietly.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::Server;

fn bulkhead(args: &[&str]) -> std::process::Output {
    Command::new(common::binary()).args(args).output().unwrap()
}

#[test]
fn completion_scripts_and_the_manual_page_are_generated() {
    for (shell, marker) in [
        ("bash", "_bulkhead()"),
        ("zsh", "#compdef bulkhead"),
        ("fish", "complete -c bulkhead"),
    ] {
        let out = bulkhead(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains(marker),
            "{shell}: {}",
            &text[..200.min(text.len())]
        );
        // Every subcommand family is offered.
        for command in ["tenant", "archive", "findings", "backup"] {
            assert!(text.contains(command), "{shell} completes {command}");
        }
    }
    // The bash script is valid bash.
    let script = bulkhead(&["completions", "bash"]).stdout;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bulkhead.bash");
    std::fs::write(&path, script).unwrap();
    let checked = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );

    let man = bulkhead(&["man"]);
    assert!(man.status.success());
    let text = String::from_utf8(man.stdout).unwrap();
    assert!(text.contains(".TH bulkhead 1"), "{text}");
    assert!(text.contains("multi\\-tenant"), "{text}");
}

#[test]
fn serve_help_lists_only_what_the_server_uses() {
    let text = |args: &[&str]| {
        let out = bulkhead(args);
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let serve = text(&["serve", "--help"]);
    for server_option in ["--listen", "--data-dir", "--move-pace-target"] {
        assert!(serve.contains(server_option), "{server_option}:\n{serve}");
    }
    for client_option in ["--url", "--token", "--tenant", "--json", "--ca-cert"] {
        assert!(!serve.contains(client_option), "{client_option}:\n{serve}");
    }
    // Client commands still list them, and they still parse anywhere.
    let list = text(&["tenant", "list", "--help"]);
    for client_option in ["--url", "--token", "--json"] {
        assert!(list.contains(client_option), "{client_option}:\n{list}");
    }
    let out = bulkhead(&["tenant", "list", "--url", "http://127.0.0.1:9", "--json"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains("unexpected argument"), "{err}");
}

#[test]
fn a_reader_that_stops_reading_ends_the_output_quietly() {
    // A completion script and the API description are far larger than a pipe's buffer, so
    // writing them meets the closed pipe.
    for args in [&["completions", "bash"][..], &["openapi"]] {
        let mut child = Command::new(common::binary())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 64];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?}: {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?}: nothing on stderr: {stderr}");
    }
}

#[test]
fn errors_are_json_under_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    let out = Command::new(common::binary())
        .args(["--json", "tenant", "get", "nope"])
        .env("BULKHEAD_URL", &server.url)
        .env("BULKHEAD_TOKEN", common::ADMIN_KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["error"]["code"], "tenant_not_found");
    assert_eq!(error["error"]["status"], 404);
    assert!(!error["error"]["request_id"].as_str().unwrap().is_empty());
    // Without a server to answer, still JSON.
    let out = Command::new(common::binary())
        .args(["--json", "tenant", "list"])
        .env("BULKHEAD_URL", "http://127.0.0.1:9")
        .env("BULKHEAD_TOKEN", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["error"]["code"], "cli_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach")
    );
    // Without --json, a line for people.
    let out = Command::new(common::binary())
        .args(["tenant", "get", "nope"])
        .env("BULKHEAD_URL", &server.url)
        .env("BULKHEAD_TOKEN", common::ADMIN_KEY)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.starts_with("error: tenant not found (tenant_not_found, HTTP 404"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_list_shows_a_page_and_export_streams_every_record() {
    use bulkhead_core::access::TenantRole;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    let admin = server.admin();
    common::put_items(&admin).await;
    common::create_tenant(&admin, "acme", "free").await;
    let token = common::key(&admin, "acme", TenantRole::Member).await;
    let body: Vec<u8> = (0..2_000)
        .flat_map(|i| {
            format!(
                "{{\"title\":\"record {i:04} {}\",\"n\":{i}}}\n",
                "x".repeat(80)
            )
            .into_bytes()
        })
        .collect();
    let report = server
        .client(&token)
        .bulk(&common::items(), body, true)
        .await
        .unwrap();
    assert_eq!(report.failed, 0);
    let run = |args: &[&str]| {
        Command::new(common::binary())
            .args(args)
            .env("BULKHEAD_URL", &server.url)
            .env("BULKHEAD_TOKEN", &token)
            .output()
            .unwrap()
    };
    // One page of 100 by default, and where to go on.
    let out = run(&["--json", "record", "list", "items"]);
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 100);
    let cursor = page["next_cursor"].as_str().unwrap();
    let out = run(&[
        "--json", "record", "list", "items", "--limit", "30", "--cursor", cursor,
    ]);
    let next: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(next["items"].as_array().unwrap().len(), 30);
    assert_eq!(next["items"][0]["n"], 100, "continues after the first page");
    // Every page with --all, as JSON lines.
    let out = run(&[
        "--json", "record", "list", "items", "--all", "--limit", "700",
    ]);
    let ids: std::collections::BTreeSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 2_000);
    // Export: every record (filtered), one line each.
    let out = run(&["record", "export", "items", "--filter", "n >= 1500"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 500);
    // A reader that stops after one line: the export ends quietly.
    let mut child = Command::new(common::binary())
        .args(["record", "export", "items"])
        .env("BULKHEAD_URL", &server.url)
        .env("BULKHEAD_TOKEN", &token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "{:?}: {stderr}",
        out.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_import_waits_out_its_tiers_rate_and_loses_no_line() {
    use bulkhead_core::access::TenantRole;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    let admin = server.admin();
    common::put_items(&admin).await;
    let (ok, text) = common::cli(
        &server,
        &[
            "tier",
            "put",
            "slow",
            "--isolation",
            "pool",
            "--requests-per-second",
            "1",
            "--request-burst",
            "1",
        ],
    );
    assert!(ok, "{text}");
    common::create_tenant(&admin, "acme", "slow").await;
    let token = common::key(&admin, "acme", TenantRole::Member).await;
    let file = dir.path().join("in.ndjson");
    let lines: String = (0..4)
        .map(|i| format!("{{\"title\":\"line {i}\"}}\n"))
        .collect();
    std::fs::write(&file, lines).unwrap();
    // One line per request at one request per second: the second is refused with 429 at
    // once, and the import waits it out.
    let out = Command::new(common::binary())
        .args(["--json", "record", "import", "items"])
        .arg(&file)
        .args(["--batch", "1"])
        .env("BULKHEAD_URL", &server.url)
        .env("BULKHEAD_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["created"].clone(), summary["failed"].clone()),
        (4.into(), 0.into()),
        "{summary}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let all = server
        .client(&token)
        .export(&common::items(), None)
        .await
        .unwrap();
    assert_eq!(all.len(), 4, "each line once");
}
