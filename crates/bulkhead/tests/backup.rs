//! Online backup: taken while writers run on every model and a move is in progress; verified;
//! restored into a new data directory, which serves every write acknowledged before the
//! backup began, and the same credentials. A damaged or unfinished backup is refused by
//! `verify` and `restore`.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bulkhead_api::StartMove;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::Isolation;
use common::{Server, all_titles, create_tenant, items, key, put_items, tid};
use parking_lot::Mutex;
use serde_json::json;

fn bulkhead(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut command = std::process::Command::new(common::binary());
    command.args(args).env_remove("BULKHEAD_DATA_DIR");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_writes_and_a_move_restores_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    // The move holds in its catch-up phase, so the backup runs while it is in progress.
    let server = Server::start_with(
        dir.path(),
        &[
            ("BULKHEAD_MOVE_HOLD", "catching_up:3000"),
            ("BULKHEAD_AUDIT_WATCH_SECS", "0"),
        ],
    );
    let admin = server.admin();
    put_items(&admin).await;
    let tenants = [
        ("pooled", "free"),
        ("bridged", "standard"),
        ("siloed", "premium"),
        ("moving", "free"),
    ];
    let mut keys = Vec::new();
    for (id, tier) in tenants {
        create_tenant(&admin, id, tier).await;
        keys.push(key(&admin, id, TenantRole::Member).await);
    }
    // Writers: each records what was acknowledged, and when.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, String, Instant)>>> = Arc::default();
    let mut writers = Vec::new();
    for ((id, _), token) in tenants.iter().zip(&keys) {
        let (client, stop, acked, id) = (
            server.client(token),
            Arc::clone(&stop),
            Arc::clone(&acked),
            (*id).to_owned(),
        );
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                if let Ok(r) = client
                    .create_record(&items(), &json!({"title": format!("{id} {n}")}))
                    .await
                {
                    let rid = r["id"].as_str().unwrap().to_owned();
                    acked.lock().push((id.clone(), rid, Instant::now()));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let moved = admin
        .start_move(
            &tid("moving"),
            &StartMove {
                isolation: Some(Isolation::Silo),
                domain: None,
                incarnation: None,
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let phase = admin.get_move(&moved.id).await.unwrap().phase;
    assert!(!phase.is_final(), "the move is in progress: {phase}");

    let backup = dir.path().join("backup");
    let began = Instant::now();
    let (ok, out) = bulkhead(
        &["backup", "create", backup.to_str().unwrap()],
        &[
            ("BULKHEAD_URL", server.url.as_str()),
            ("BULKHEAD_TOKEN", common::ADMIN_KEY),
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("done"), "{out}");
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let before: Vec<(String, String)> = acked
        .lock()
        .iter()
        .filter(|(_, _, at)| *at < began)
        .map(|(t, r, _)| (t.clone(), r.clone()))
        .collect();
    assert!(
        before.len() > 20,
        "writers ran before the backup: {}",
        before.len()
    );

    let (ok, out) = bulkhead(&["backup", "verify", backup.to_str().unwrap()], &[]);
    assert!(ok && out.contains("intact"), "{out}");

    // Restored into a new data directory: every write acknowledged before the backup began
    // is there, and the tenants' keys work.
    let restored = tempfile::tempdir().unwrap();
    let (ok, out) = bulkhead(
        &[
            "backup",
            "restore",
            backup.to_str().unwrap(),
            "--data-dir",
            restored.path().join("data").to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{out}");
    let again = Server::start_with(restored.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    for ((id, _), token) in tenants.iter().zip(&keys) {
        let client = again.client(token);
        // The moving tenant may finish or roll back its move after the restore: wait for
        // its writes to open.
        let deadline = Instant::now() + Duration::from_secs(30);
        let titles = loop {
            match client
                .list_records(&items(), &bulkhead_client::ListRecords::default())
                .await
            {
                Ok(_) => break all_titles(&client).await,
                Err(e) => {
                    assert!(Instant::now() < deadline, "{id}: {e}\n{}", again.log());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let missing: Vec<&String> = before
            .iter()
            .filter(|(t, r)| t == id && !titles.contains_key(r))
            .map(|(_, r)| r)
            .collect();
        assert!(
            missing.is_empty(),
            "{id}: {} acknowledged writes lost: {missing:?}",
            missing.len()
        );
    }
    let chain = again.admin().verify_audit(None).await.unwrap();
    assert!(chain.ok, "{chain:?}");
}

#[tokio::test]
async fn a_damaged_backup_is_refused_and_bad_requests_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "premium").await;
    let acme = server.client(&key(&admin, "acme", TenantRole::Member).await);
    for i in 0..50 {
        acme.create_record(&items(), &json!({"title": format!("r{i}")}))
            .await
            .unwrap();
    }
    // Refusals: a relative or non-empty directory, a tenant key.
    let relative = admin.start_backup("relative/dir").await.unwrap_err();
    assert!(
        relative.to_string().contains("invalid_backup_dir"),
        "{relative}"
    );
    let busy = dir.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("x"), "x").unwrap();
    let full = admin
        .start_backup(busy.to_str().unwrap())
        .await
        .unwrap_err();
    assert!(full.to_string().contains("not empty"), "{full}");
    assert!(acme.start_backup("/tmp/x").await.is_err());

    let backup = dir.path().join("backup");
    let started = admin.start_backup(backup.to_str().unwrap()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = admin.get_backup(&started.id).await.unwrap();
        if view.state == bulkhead_api::BackupState::Done {
            assert!(view.files_done >= 2 && view.bytes > 0, "{view:?}");
            break;
        }
        assert_ne!(view.state, bulkhead_api::BackupState::Failed, "{view:?}");
        assert!(Instant::now() < deadline, "{view:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, out) = bulkhead(&["backup", "verify", backup.to_str().unwrap()], &[]);
    assert!(ok, "{out}");
    // One byte changed in the silo's file: verify and restore both refuse.
    let manifest: bulkhead_api::BackupManifest =
        serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).unwrap()).unwrap();
    let silo = manifest
        .files
        .iter()
        .find(|f| f.path.contains("/silos/"))
        .unwrap();
    let path = backup.join(&silo.path);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let (ok, out) = bulkhead(&["backup", "verify", backup.to_str().unwrap()], &[]);
    assert!(!ok && out.contains("checksum"), "{out}");
    let into = dir.path().join("restored");
    let (ok, out) = bulkhead(
        &[
            "backup",
            "restore",
            backup.to_str().unwrap(),
            "--data-dir",
            into.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok && !into.join("catalog.db").exists(), "{out}");
    // A missing manifest is not a finished backup.
    std::fs::remove_file(backup.join("manifest.json")).unwrap();
    let (ok, out) = bulkhead(&["backup", "verify", backup.to_str().unwrap()], &[]);
    assert!(!ok && out.contains("manifest"), "{out}");
}

/// A deletion during a backup waits for it (the backup's catalog still routes to the
/// tenant, so its data must be in the backup); a backup cut off by `kill -9` has no
/// manifest and is refused, and the restarted server deletes normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deletion_waits_for_a_running_backup_and_a_killed_backup_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    let admin = server.admin();
    put_items(&admin).await;
    for i in 0..150 {
        create_tenant(&admin, &format!("silo-{i:03}"), "premium").await;
    }
    let doomed = server.client(&key(&admin, "silo-000", TenantRole::Member).await);
    doomed
        .create_record(&items(), &json!({"title": "kept in the backup"}))
        .await
        .unwrap();
    let backup = dir.path().join("backup");
    let started = admin.start_backup(backup.to_str().unwrap()).await.unwrap();
    let deleted = {
        let admin = admin.clone();
        tokio::spawn(async move { admin.delete_tenant(&tid("silo-000")).await.unwrap() })
    };
    let finished = loop {
        let view = admin.get_backup(&started.id).await.unwrap();
        match view.state {
            bulkhead_api::BackupState::Done => break view.finished_at.unwrap(),
            bulkhead_api::BackupState::Failed => panic!("{view:?}"),
            bulkhead_api::BackupState::Running => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    deleted.await.unwrap();
    // The purge (the storage's removal) came after the backup's last copy.
    let purge = admin
        .list_audit(&bulkhead_api::AuditQuery {
            action: Some("tenant.purge".into()),
            tenant: Some(tid("silo-000")),
            ..Default::default()
        })
        .await
        .unwrap();
    let purged = purge.items.first().unwrap().at;
    assert!(
        purged >= finished,
        "purged at {purged}, backup finished at {finished}"
    );
    let (ok, out) = bulkhead(&["backup", "verify", backup.to_str().unwrap()], &[]);
    assert!(ok, "{out}");
    let restored = tempfile::tempdir().unwrap();
    let (ok, out) = bulkhead(
        &[
            "backup",
            "restore",
            backup.to_str().unwrap(),
            "--data-dir",
            restored.path().join("data").to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{out}");
    {
        // The backup's catalog has the tenant as it was when copied: intact with its data,
        // or marked for deletion (the mark is not a removal; the restored server finishes
        // the purge, as after a crash). Never routed to data the backup lacks.
        let again = Server::start_with(restored.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
        let restored_admin = again.admin();
        match restored_admin.get_tenant(&tid("silo-000")).await {
            Ok(_) => {
                let titles = all_titles(&restored_admin.with_tenant(tid("silo-000"))).await;
                assert!(
                    titles.values().any(|t| t == "kept in the backup"),
                    "{titles:?}"
                );
            }
            Err(e) => assert!(e.to_string().contains("tenant_not_found"), "{e}"),
        }
        let other = all_titles(&restored_admin.with_tenant(tid("silo-149"))).await;
        assert!(other.is_empty());
    }

    // kill -9 in the middle of a backup: no manifest, refused; the server restarts and
    // deletes at once (the fence died with it).
    let second = dir.path().join("second");
    admin.start_backup(second.to_str().unwrap()).await.unwrap();
    server.kill_hard();
    let (ok, out) = bulkhead(&["backup", "verify", second.to_str().unwrap()], &[]);
    assert!(!ok && out.contains("manifest"), "{out}");
    let server = Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    tokio::time::timeout(
        Duration::from_secs(20),
        server.admin().delete_tenant(&tid("silo-001")),
    )
    .await
    .unwrap()
    .unwrap();
}

/// A collection change while a backup runs: the backup's catalog is copied first, so the
/// databases copied after it must not be ahead of it. A rollout waits for a running backup;
/// the restored server writes to every tenant, and the change reaches every
/// placement on the live server once the backup is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_during_a_backup_rolls_out_after_it_and_the_backup_restores_writable() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    let admin = server.admin();
    put_items(&admin).await;
    let mut ids = vec!["pool-a".to_owned(), "bridge-a".to_owned()];
    create_tenant(&admin, "pool-a", "free").await;
    create_tenant(&admin, "bridge-a", "standard").await;
    for i in 0..120 {
        let id = format!("silo-{i:03}");
        create_tenant(&admin, &id, "premium").await;
        ids.push(id);
    }
    for id in &ids {
        admin
            .with_tenant(tid(id))
            .create_record(
                &items(),
                &json!({"id": "before", "title": "before the backup"}),
            )
            .await
            .unwrap();
    }
    let backup = dir.path().join("backup");
    let started = admin.start_backup(backup.to_str().unwrap()).await.unwrap();
    let mut spec = common::items_spec();
    spec["fields"]["kind"] = json!({"type": "string", "default": "k", "index": true});
    let changed = admin
        .submit_collection(&items(), &serde_json::from_value(spec).unwrap())
        .await
        .unwrap();
    let finished = loop {
        let view = admin.get_backup(&started.id).await.unwrap();
        match view.state {
            bulkhead_api::BackupState::Done => break view,
            bulkhead_api::BackupState::Failed => panic!("{view:?}"),
            bulkhead_api::BackupState::Running => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    assert!(finished.files_done > 100, "{finished:?}");
    if let Some(rollout) = changed.rollout {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let view = admin.get_rollout(&rollout.id).await.unwrap();
            if view.state == "done" {
                break;
            }
            assert!(Instant::now() < deadline, "rollout stuck: {view:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for id in &ids {
        admin
            .with_tenant(tid(id))
            .create_record(&items(), &json!({"id": "live", "title": "t", "kind": "x"}))
            .await
            .unwrap_or_else(|e| panic!("{id}: the change reached it: {e}"));
    }

    let restored = tempfile::tempdir().unwrap();
    let (ok, out) = bulkhead(
        &[
            "backup",
            "restore",
            backup.to_str().unwrap(),
            "--data-dir",
            restored.path().join("data").to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{out}");
    let again = Server::start_with(restored.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    let restored_admin = again.admin();
    for id in &ids {
        let client = restored_admin.with_tenant(tid(id));
        client
            .create_record(
                &items(),
                &json!({"id": "restored", "title": "after the restore"}),
            )
            .await
            .unwrap_or_else(|e| panic!("{id}: the restored tenant takes writes: {e}"));
        let titles = all_titles(&client).await;
        assert_eq!(
            titles.keys().map(String::as_str).collect::<Vec<_>>(),
            ["before", "restored"],
            "{id}"
        );
    }
}

/// Under `--json`, each backup command prints one JSON value on stdout (the finished backup,
/// the verified manifest, where it restored), its errors a JSON object on stderr, and a
/// command line clap cannot read is a JSON `usage_error` too.
#[tokio::test]
async fn backup_commands_answer_json_under_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(common::binary())
            .args(args)
            .arg("--json")
            .env_remove("BULKHEAD_DATA_DIR")
            .env("BULKHEAD_URL", &server.url)
            .env("BULKHEAD_TOKEN", common::ADMIN_KEY)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let parse = |text: &str| -> serde_json::Value {
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text:?}"))
    };
    let backup = dir.path().join("backup");
    let (code, out, err) = run(&["backup", "create", backup.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let view = parse(&out);
    assert_eq!(view["state"], "done", "{view}");
    assert!(view["files_done"].as_u64().unwrap() >= 1, "{view}");

    let (code, out, err) = run(&["backup", "verify", backup.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let verified = parse(&out);
    assert_eq!(verified["intact"], true, "{verified}");
    assert_eq!(verified["files"], view["files_done"], "{verified}");

    let into = dir.path().join("restored");
    let (code, out, err) = run(&[
        "backup",
        "restore",
        backup.to_str().unwrap(),
        "--data-dir",
        into.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(parse(&out)["restored_into"], into.to_str().unwrap());

    let missing = dir.path().join("no-such-backup");
    let (code, out, err) = run(&["backup", "verify", missing.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(out.is_empty(), "{out}");
    let error = parse(&err);
    assert_eq!(error["error"]["code"], "cli_error", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("manifest.json"),
        "{error}"
    );

    let (code, _, err) = run(&["backup", "create"]);
    assert_eq!(code, Some(2));
    let error = parse(&err);
    assert_eq!(error["error"]["code"], "usage_error", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("<DIR>"),
        "{error}"
    );
}
