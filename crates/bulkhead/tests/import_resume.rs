//! `bulkhead record import --resume`: an import killed right after the server applied a
//! batch (before the CLI recorded it) goes on where it stopped, without duplicating a line —
//! lines without ids, lines with ids and create envelopes alike — while a genuine conflict in
//! the replayed batch is still reported; and a file that changed, another tenant, or a
//! tenant deleted and re-created meanwhile is never skipped into.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use bulkhead_core::access::TenantRole;
use common::{Server, create_tenant, items, key, put_items};
use serde_json::json;

fn import(server: &Server, token: &str, file: &Path, extra: &[&str], crash: Option<u32>) -> Output {
    let mut command = Command::new(common::binary());
    command
        .args(["--json", "record", "import", "items"])
        .arg(file)
        .args(["--batch", "100"])
        .args(extra)
        .env("BULKHEAD_URL", &server.url)
        .env("BULKHEAD_TOKEN", token);
    if let Some(batch) = crash {
        command.env("BULKHEAD_IMPORT_CRASH_AFTER_BATCH", batch.to_string());
    }
    command.output().unwrap()
}

fn state_of(file: &Path) -> std::path::PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".import-state");
    name.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_import_resumes_without_duplicating_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    let token = key(&admin, "acme", TenantRole::Member).await;
    let acme = server.client(&token);
    // A record that is not the import's, under an id the file uses.
    acme.create_record(&items(), &json!({"id": "x920", "title": "someone else's"}))
        .await
        .unwrap();

    // 1,000 lines: ids from the import (900 plain, 50 envelopes), 50 of the file's own.
    let file = dir.path().join("in.ndjson");
    let mut text = String::new();
    for i in 1..=1000 {
        let line = match i {
            901..=950 => json!({"id": format!("x{i}"), "title": format!("line {i}"), "n": i}),
            951..=1000 => json!({"op": "create", "record": {"title": format!("line {i}"), "n": i}}),
            _ => json!({"title": format!("line {i}"), "n": i}),
        };
        text.push_str(&format!("{line}\n"));
    }
    std::fs::write(&file, &text).unwrap();

    // Killed after the server applied the third batch, before the CLI wrote it down.
    let first = import(&server, &token, &file, &[], Some(3));
    assert_eq!(first.status.code(), Some(137));
    assert!(state_of(&file).exists());
    // Without --resume, nothing is sent twice by accident.
    let again = import(&server, &token, &file, &[], None);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--resume"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // Resumed: the third batch again, then on; killed after the last batch was applied.
    let second = import(&server, &token, &file, &["--resume"], Some(8));
    assert_eq!(second.status.code(), Some(137));
    // Resumed again: the last batch (with the file's own ids and the conflict) again.
    let last = import(&server, &token, &file, &["--resume"], None);
    let summary: serde_json::Value = serde_json::from_slice(&last.stdout).unwrap();
    assert!(!last.status.success(), "one line fails: {summary}");
    assert_eq!(summary["lines"], 1000, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    assert_eq!(summary["failures"][0]["line"], 920, "{summary}");
    assert_eq!(summary["failures"][0]["status"], 409, "{summary}");
    assert_eq!(
        summary["created"].as_u64().unwrap() + summary["already"].as_u64().unwrap(),
        999,
        "{summary}"
    );
    assert!(summary["already"].as_u64().unwrap() > 0, "{summary}");
    assert!(
        !state_of(&file).exists(),
        "a finished import leaves no state"
    );

    // Every line once; the record that was there before is untouched.
    let all = acme.export(&items(), None).await.unwrap();
    let mut titles: BTreeMap<String, u32> = BTreeMap::new();
    for record in &all {
        *titles
            .entry(record["title"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(all.len(), 1000);
    assert!(titles.values().all(|n| *n == 1), "a duplicated line");
    assert!(titles.contains_key("someone else's") && !titles.contains_key("line 920"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_or_another_tenant_is_not_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    create_tenant(&admin, "globex", "free").await;
    let acme = key(&admin, "acme", TenantRole::Member).await;
    let globex = key(&admin, "globex", TenantRole::Member).await;
    let file = dir.path().join("in.ndjson");
    let text: String = (1..=300)
        .map(|i| format!("{}\n", json!({"title": format!("line {i}")})))
        .collect();
    std::fs::write(&file, &text).unwrap();
    assert_eq!(
        import(&server, &acme, &file, &[], Some(2)).status.code(),
        Some(137)
    );

    // Another tenant's credential cannot continue acme's import.
    let other = import(&server, &globex, &file, &["--resume"], None);
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("belongs to an import"));

    // A file whose imported part changed is refused; --restart imports it all again.
    std::fs::write(&file, text.replacen("line 1\"", "line one\"", 1)).unwrap();
    let changed = import(&server, &acme, &file, &["--resume"], None);
    assert!(!changed.status.success());
    assert!(
        String::from_utf8_lossy(&changed.stderr).contains("changed since"),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    let restarted = import(&server, &acme, &file, &["--restart"], None);
    assert!(
        restarted.status.success(),
        "{}",
        String::from_utf8_lossy(&restarted.stderr)
    );

    // Standard input cannot be resumed.
    let stdin = Command::new(common::binary())
        .args(["record", "import", "items", "-", "--resume"])
        .env("BULKHEAD_URL", &server.url)
        .env("BULKHEAD_TOKEN", &acme)
        .output()
        .unwrap();
    assert!(!stdin.status.success());
    assert!(String::from_utf8_lossy(&stdin.stderr).contains("standard input"));

    // The tenant deleted and re-created while the import was stopped: the lines already
    // imported went with the old life, so resuming (with the new life's key) is refused.
    let other_file = dir.path().join("again.ndjson");
    std::fs::write(&other_file, &text).unwrap();
    assert_eq!(
        import(&server, &acme, &other_file, &[], Some(2))
            .status
            .code(),
        Some(137)
    );
    admin.delete_tenant(&common::tid("acme")).await.unwrap();
    create_tenant(&admin, "acme", "free").await;
    let reborn = key(&admin, "acme", TenantRole::Member).await;
    let gone = import(&server, &reborn, &other_file, &["--resume"], None);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("is gone"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    let again = import(&server, &reborn, &other_file, &["--restart"], None);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let all = server.client(&reborn).export(&items(), None).await.unwrap();
    assert_eq!(all.len(), 300, "the new life has every line once");
}
