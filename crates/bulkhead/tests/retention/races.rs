//! Retention racing what else runs: `kill -9`-like aborts at each step of a batch and of a
//! restore, a write between the crash and the recovery, a deletion and re-creation of the
//! tenant, a live move, a schema change. After each, every record is exactly once either hot
//! or archived, at its latest acknowledged version, and nothing of an ended life is on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use bulkhead_api::StartMove;
use bulkhead_client::Client;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::Isolation;
use serde_json::{Value, json};

use super::{fill, hot, parquet_files, pyarrow_rows, report, setup, signals};
use crate::common::{Server, cli, create_tenant, key, tid};

/// A server whose batches may be held by another server for one second only, and which
/// aborts at `crash` (a `BULKHEAD_RETENTION_CRASH` step) when given.
fn start(dir: &Path, crash: Option<&str>, extra: &[(&str, &str)]) -> Server {
    let config = dir.join("bulkhead.toml");
    std::fs::write(&config, "[retention]\nlease_secs = 1\nevery_minutes = 0\n").unwrap();
    let mut env = vec![
        ("BULKHEAD_AUDIT_WATCH_SECS", "0"),
        ("BULKHEAD_CONFIG", config.to_str().unwrap()),
    ];
    if let Some(step) = crash {
        env.push(("BULKHEAD_RETENTION_CRASH", step));
    }
    env.extend_from_slice(extra);
    Server::start_with(dir, &env)
}

/// Runs `args` against a server that aborts on the way, and waits for it to be gone.
fn crash(mut server: Server, args: &[&str]) {
    let (ok, text) = cli(&server, args);
    assert!(!ok, "the server was to abort: {text}");
    let status = server.child.wait().unwrap();
    assert!(!status.success(), "aborted, not stopped");
}

/// The records of `tenant`'s current life in its cold archive, read by pyarrow, by id; each
/// id at most once.
async fn archived(server: &Server, admin: &Client, tenant: &str) -> BTreeMap<String, Value> {
    let life = admin
        .get_tenant(&tid(tenant))
        .await
        .unwrap()
        .placement
        .incarnation;
    let dir = server
        .data_dir
        .join("cold")
        .join(tenant)
        .join(life.as_str());
    let files = parquet_files(&dir);
    let listing = admin.list_archives(&tid(tenant), None).await.unwrap();
    let on_disk: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    assert_eq!(
        listing.bytes, on_disk,
        "every file on disk is in the ledger, and only those"
    );
    let mut out = BTreeMap::new();
    for row in pyarrow_rows(&files) {
        let id = row["id"].as_str().unwrap().to_owned();
        assert!(
            out.insert(id.clone(), row).is_none(),
            "{id} is archived twice"
        );
    }
    assert_eq!(listing.records, out.len() as u64);
    out
}

fn ids<V>(map: &BTreeMap<String, V>) -> BTreeSet<String> {
    map.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_at_any_step_of_a_batch_loses_and_doubles_nothing() {
    for step in ["written", "retired"] {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), Some(step), &[]);
        let admin = server.admin();
        setup(&admin, Isolation::Pool).await;
        create_tenant(&admin, "acme", "iot").await;
        create_tenant(&admin, "neighbour", "iot").await;
        let token = key(&admin, "acme", TenantRole::Member).await;
        let old = fill(
            &server.client(&token),
            "acme",
            &["2025-01-10", "2025-02-11"],
            30,
        )
        .await;
        let theirs = fill(
            &server.client(&key(&admin, "neighbour", TenantRole::Member).await),
            "neighbour",
            &["2025-01-12"],
            10,
        )
        .await;
        crash(server, &["archive", "run", "--tenant-id", "acme"]);

        let server = start(dir.path(), None, &[]);
        let (admin, acme) = (server.admin(), server.client(&token));
        // A write between the crash and the recovery, to a record the batch held.
        let changed = old.keys().nth(7).unwrap().clone();
        let patched = acme
            .patch_record(
                &signals(),
                &bulkhead_core::RecordId::parse(&changed).unwrap(),
                &json!({"sensor": "changed after the crash"}),
                None,
            )
            .await;
        match step {
            "written" => assert!(patched.is_ok(), "{step}: nothing was removed yet"),
            _ => assert_eq!(patched.unwrap_err().status(), Some(404), "{step}: archived"),
        }
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let done = report(&server, &[]);
        assert_eq!(done["recovered"], 1, "{step}: {done}");

        assert!(
            hot(&acme).await.is_empty(),
            "{step}: every old record left the hot store"
        );
        let cold = archived(&server, &admin, "acme").await;
        assert_eq!(
            ids(&cold),
            ids(&old),
            "{step}: each record archived exactly once"
        );
        let row = &cold[&changed];
        if step == "written" {
            assert_eq!(
                row["version"], 2,
                "{step}: the write after the crash is what is kept"
            );
            assert_eq!(row["sensor"], "changed after the crash");
        } else {
            assert_eq!(row["version"], 1);
        }
        // The neighbour, archived by the same pass, lost nothing either.
        assert_eq!(
            ids(&archived(&server, &admin, "neighbour").await),
            ids(&theirs)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_during_a_restore_is_finished_by_the_next_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), None, &[]);
    let admin = server.admin();
    setup(&admin, Isolation::Bridge).await;
    create_tenant(&admin, "acme", "iot").await;
    let token = key(&admin, "acme", TenantRole::Member).await;
    let old = fill(
        &server.client(&token),
        "acme",
        &["2025-01-10", "2025-02-11"],
        25,
    )
    .await;
    assert_eq!(report(&server, &[])["archived"], 50);
    server.stop();
    drop(server);

    let server = start(dir.path(), Some("restored"), &[]);
    crash(
        server,
        &[
            "archive",
            "restore",
            "acme",
            "--collection",
            "signals",
            "--from",
            "2025-02-01T00:00:00Z",
            "--to",
            "2025-03-01T00:00:00Z",
        ],
    );
    let server = start(dir.path(), None, &[]);
    let (admin, acme) = (server.admin(), server.client(&token));
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let done = report(&server, &[]);
    assert_eq!(done["recovered"], 1, "{done}");
    assert_eq!(
        done["archived"], 0,
        "the restored range is held hot: {done}"
    );
    let february: BTreeMap<String, Value> = old
        .iter()
        .filter(|(_, r)| r["ts"].as_str().unwrap().starts_with("2025-02"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(hot(&acme).await, february, "February is back, exactly");
    let cold = archived(&server, &admin, "acme").await;
    assert_eq!(
        ids(&cold),
        ids(&old).difference(&ids(&february)).cloned().collect(),
        "and only January is archived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_cut_off_by_deletion_and_re_creation_leaves_nothing_of_the_old_life() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Some("written"), &[]);
    let admin = server.admin();
    setup(&admin, Isolation::Silo).await;
    create_tenant(&admin, "acme", "iot").await;
    let first_life = admin
        .get_tenant(&tid("acme"))
        .await
        .unwrap()
        .placement
        .incarnation;
    let token = key(&admin, "acme", TenantRole::Member).await;
    fill(&server.client(&token), "acme", &["2025-01-10"], 20).await;
    crash(server, &["archive", "run"]);

    let server = start(dir.path(), None, &[]);
    let admin = server.admin();
    let old_dir = server
        .data_dir
        .join("cold")
        .join("acme")
        .join(first_life.as_str());
    assert!(
        !parquet_files(&old_dir).is_empty(),
        "the cut-off batch left its files"
    );
    admin.delete_tenant(&tid("acme")).await.unwrap();
    create_tenant(&admin, "acme", "iot").await;
    let acme = server.client(&key(&admin, "acme", TenantRole::Member).await);
    let second = fill(&acme, "acme", &["2025-03-03"], 7).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let done = report(&server, &[]);
    assert_eq!(done["archived"], 7, "{done}");
    assert!(!old_dir.exists(), "nothing of the old life is on disk");
    assert_eq!(ids(&archived(&server, &admin, "acme").await), ids(&second));
    assert!(hot(&acme).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_moving_tenant_waits_for_the_next_pass_and_a_schema_change_is_carried_through() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, &[("BULKHEAD_MOVE_HOLD", "copying:3000")]);
    let admin = server.admin();
    setup(&admin, Isolation::Pool).await;
    create_tenant(&admin, "acme", "iot").await;
    let acme = server.client(&key(&admin, "acme", TenantRole::Member).await);
    let old = fill(&acme, "acme", &["2025-01-10"], 30).await;
    let moved = admin
        .start_move(
            &tid("acme"),
            &StartMove {
                isolation: Some(Isolation::Silo),
                domain: None,
                incarnation: None,
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let done = report(&server, &[]);
    assert_eq!(
        (done["busy"].clone(), done["archived"].clone()),
        (json!(1), json!(0)),
        "{done}"
    );
    loop {
        let phase = admin.get_move(&moved.id).await.unwrap().phase;
        if phase.is_final() {
            assert_eq!(phase.to_string(), "done");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(hot(&acme).await, old, "the move carried every record");
    assert_eq!(
        report(&server, &[])["archived"],
        30,
        "archived from the silo"
    );
    assert!(hot(&acme).await.is_empty());

    // The collection gains a field with a default: a restore gives the archived records
    // that default, as the change gave the records that were hot.
    let spec = serde_json::from_value(json!({"fields": {
        "ts": {"type": "timestamp", "required": true, "index": true},
        "sensor": {"type": "string"},
        "value": {"type": "float"},
        "count": {"type": "integer"},
        "ok": {"type": "boolean"},
        "meta": {"type": "json"},
        "note": {"type": "text"},
        "unit": {"type": "string", "default": "celsius"}
    }}))
    .unwrap();
    admin.put_collection(&signals(), &spec).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let restored = loop {
        match admin
            .restore_archive(
                &tid("acme"),
                &bulkhead_api::RestoreArchive {
                    collection: signals(),
                    from: bulkhead_core::time::Timestamp::from_micros(0),
                    to: bulkhead_core::time::Timestamp::parse_rfc3339("2026-01-01T00:00:00Z")
                        .unwrap(),
                    hold_days: Some(1),
                },
            )
            .await
        {
            Ok(done) => break done,
            // The rollout may still be on its way to the tenant's placement.
            Err(e) if e.status() == Some(503) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(restored.restored, 30);
    let back = hot(&acme).await;
    assert_eq!(ids(&back), ids(&old));
    for (id, record) in &back {
        assert_eq!(record["unit"], "celsius", "{id}");
        let mut without = record.clone();
        without.as_object_mut().unwrap().remove("unit");
        assert_eq!(without, old[id], "everything else as it was");
    }
}
