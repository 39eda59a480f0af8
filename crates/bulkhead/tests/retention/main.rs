//! Retention and the cold archive, through the binary: a tier keeps a collection hot for some
//! days; a pass moves older records into Parquet files per tenant life, collection and month
//! (read here by pyarrow, an independent reader); `archive list` shows them, `archive restore`
//! brings a range back exactly and keeps it hot; cold bytes count in usage apart from hot
//! bytes; a neighbour's records never enter another tenant's archive; deleting a tenant
//! removes its archive, and a tenant re-created under the id starts with none.
//!
//! What runs over time races here too (`races`): a crash at each step of archiving and of a
//! restore, a deletion and re-creation cutting a batch off, a live move, a schema change.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
mod races;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bulkhead_client::Client;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{Isolation, Retention, TierSpec};
use bulkhead_core::{CollectionName, FieldName, TierName};
use common::{Server, cli, create_tenant, key, tid};
use serde_json::{Value, json};

pub fn signals() -> CollectionName {
    CollectionName::parse("signals").unwrap()
}

/// `signals` (ts, sensor, value, meta, ok) and tier `iot` (`isolation`, signals hot 30 days).
pub async fn setup(admin: &Client, isolation: Isolation) {
    let spec = serde_json::from_value(json!({"fields": {
        "ts": {"type": "timestamp", "required": true, "index": true},
        "sensor": {"type": "string"},
        "value": {"type": "float"},
        "count": {"type": "integer"},
        "ok": {"type": "boolean"},
        "meta": {"type": "json"},
        "note": {"type": "text"}
    }}))
    .unwrap();
    admin.put_collection(&signals(), &spec).await.unwrap();
    let tier = TierSpec {
        retention: BTreeMap::from([(
            signals(),
            Retention {
                field: FieldName::parse("ts").unwrap(),
                hot_days: 30.try_into().unwrap(),
            },
        )]),
        ..TierSpec::new(isolation)
    };
    admin
        .put_tier(&TierName::parse("iot").unwrap(), &tier)
        .await
        .unwrap();
}

/// A signal of `day` (`2025-MM-DD`), marked with `who`.
pub fn signal(who: &str, day: &str, i: usize) -> Value {
    json!({
        "ts": format!("{day}T{:02}:{:02}:00Z", i % 24, i % 60),
        "sensor": format!("{who}-{i}"),
        "value": i as f64 * 0.25 - 3.0,
        "count": i as i64 - 100,
        "ok": i.is_multiple_of(2),
        "meta": {"who": who, "i": i, "tags": ["a", i]},
        "note": format!("reading {i} of {who} ✓"),
    })
}

/// Creates `n` records of `who` on each of `days`; returns them as stored, by id.
pub async fn fill(client: &Client, who: &str, days: &[&str], n: usize) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for day in days {
        for i in 0..n {
            let r = client
                .create_record(&signals(), &signal(who, day, i))
                .await
                .unwrap();
            out.insert(r["id"].as_str().unwrap().to_owned(), r);
        }
    }
    out
}

/// Every hot record of the client's tenant, by id.
pub async fn hot(client: &Client) -> BTreeMap<String, Value> {
    client
        .export(&signals(), None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r))
        .collect()
}

/// Every Parquet file under `dir`.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Reads `files` with pyarrow and returns their rows as JSON objects (timestamps as
/// microseconds since the epoch).
fn pyarrow_rows(files: &[PathBuf]) -> Vec<Value> {
    let script = r#"
import json, sys
import pyarrow.parquet as pq
rows = []
for path in sys.argv[1:]:
    table = pq.read_table(path)
    meta = pq.read_metadata(path)
    assert meta.row_group(0).column(0).compression == "ZSTD", meta.row_group(0).column(0).compression
    for row in table.to_pylist():
        out = {}
        for k, v in row.items():
            if hasattr(v, "timestamp"):
                assert v.tzinfo is not None, k
                v = round(v.timestamp() * 1_000_000)
            out[k] = v
        rows.append(out)
print(json.dumps(rows))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(files)
        .output()
        .expect(
            "python3 is needed to read the cold archive independently (apt-get install python3)",
        );
    assert!(
        out.status.success(),
        "pyarrow could not read the archive (install it with `python3 -m pip install pyarrow`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A server whose retention runs only on demand and whose audit watch is off.
fn quiet(dir: &Path) -> Server {
    Server::start_with(
        dir,
        &[
            ("BULKHEAD_AUDIT_WATCH_SECS", "0"),
            ("BULKHEAD_RETENTION_MINUTES", "0"),
        ],
    )
}

fn micros(rfc3339: &str) -> i64 {
    bulkhead_core::time::Timestamp::parse_rfc3339(rfc3339)
        .unwrap()
        .as_micros()
}

fn report(server: &Server, args: &[&str]) -> Value {
    let (ok, text) = cli(server, &[&["--json", "archive", "run"][..], args].concat());
    assert!(ok, "{text}");
    let run: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(run["state"], "done", "{run}");
    assert_eq!(run["collections_done"], run["collections_total"], "{run}");
    run["report"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aged_records_go_to_parquet_and_a_range_comes_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let server = quiet(dir.path());
    let admin = server.admin();
    setup(&admin, Isolation::Pool).await;
    create_tenant(&admin, "acme", "iot").await;
    create_tenant(&admin, "neighbour", "iot").await;
    create_tenant(&admin, "keeper", "free").await;
    let acme = server.client(&key(&admin, "acme", TenantRole::Member).await);
    let neighbour = server.client(&key(&admin, "neighbour", TenantRole::Member).await);
    let keeper = server.client(&key(&admin, "keeper", TenantRole::Member).await);

    let old = fill(
        &acme,
        "acme",
        &["2025-01-10", "2025-02-11", "2025-03-12"],
        40,
    )
    .await;
    let today = bulkhead_core::time::Timestamp::from_micros(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros(),
        )
        .unwrap(),
    )
    .to_rfc3339();
    let fresh = fill(&acme, "acme", &[&today[..10]], 15).await;
    let theirs = fill(&neighbour, "neighbour", &["2025-02-20"], 25).await;
    // A tier without retention keeps everything, however old.
    let kept = fill(&keeper, "keeper", &["2020-01-01"], 10).await;

    let done = report(&server, &[]);
    assert_eq!(done["archived"], 120 + 25, "{done}");
    assert_eq!(done["failed"], 0, "{done}");

    assert_eq!(hot(&acme).await, fresh, "only the recent records stay hot");
    assert!(hot(&neighbour).await.is_empty());
    assert_eq!(hot(&keeper).await, kept);

    // The files, per tenant life, collection and month, read by an independent reader.
    let life = admin
        .get_tenant(&tid("acme"))
        .await
        .unwrap()
        .placement
        .incarnation;
    let acme_dir = server
        .data_dir
        .join("cold")
        .join("acme")
        .join(life.as_str());
    let files = parquet_files(&acme_dir.join("signals"));
    let months: std::collections::BTreeSet<String> = files
        .iter()
        .map(|f| {
            f.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        months.into_iter().collect::<Vec<_>>(),
        ["2025-01", "2025-02", "2025-03"]
    );
    let rows = pyarrow_rows(&files);
    assert_eq!(rows.len(), old.len());
    for row in &rows {
        let id = row["id"].as_str().unwrap();
        let original = &old[id];
        assert_eq!(row["version"], original["version"]);
        assert_eq!(
            row["created_at"],
            micros(original["created_at"].as_str().unwrap())
        );
        assert_eq!(row["ts"], micros(original["ts"].as_str().unwrap()));
        assert_eq!(row["sensor"], original["sensor"]);
        assert_eq!(row["value"], original["value"]);
        assert_eq!(row["count"], original["count"]);
        assert_eq!(row["ok"], original["ok"]);
        assert_eq!(row["note"], original["note"]);
        let meta: Value = serde_json::from_str(row["meta"].as_str().unwrap()).unwrap();
        assert_eq!(meta, original["meta"]);
        assert_eq!(
            meta["who"], "acme",
            "no neighbour's record in acme's archive"
        );
    }

    // `archive list`, and cold bytes in usage apart from hot bytes.
    let listing = admin.list_archives(&tid("acme"), None).await.unwrap();
    assert_eq!(listing.records, 120);
    assert_eq!(
        listing
            .items
            .iter()
            .map(|m| (m.month.as_str(), m.records))
            .collect::<Vec<_>>(),
        [("2025-01", 40), ("2025-02", 40), ("2025-03", 40)]
    );
    let on_disk: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    assert_eq!(listing.bytes, on_disk);
    let (ok, text) = cli(&server, &["archive", "list", "acme"]);
    assert!(
        ok && text.contains("2025-02") && text.contains("120 records"),
        "{text}"
    );
    admin.sample_storage(None).await.unwrap();
    let usage = admin
        .list_usage(&bulkhead_api::UsageQuery {
            tenant: Some(tid("acme")),
            ..Default::default()
        })
        .await
        .unwrap();
    let storage = usage.items.iter().find_map(|p| p.storage.clone()).unwrap();
    assert_eq!((storage.cold_records, storage.cold_bytes), (120, on_disk));
    assert_eq!(storage.records, 15, "hot records apart from cold");

    // February back, exactly as it was; and it stays hot through the next pass.
    let (ok, text) = cli(
        &server,
        &[
            "--json",
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
    assert!(ok, "{text}");
    let restored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(restored["restored"], 40, "{restored}");
    let mut expected = fresh.clone();
    expected.extend(
        old.iter()
            .filter(|(_, r)| r["ts"].as_str().unwrap().starts_with("2025-02"))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    assert_eq!(hot(&acme).await, expected);
    let again = report(&server, &[]);
    assert_eq!(
        again["archived"], 0,
        "a restored range is held hot: {again}"
    );
    assert_eq!(hot(&acme).await, expected);
    let listing = admin.list_archives(&tid("acme"), None).await.unwrap();
    assert_eq!(
        listing
            .items
            .iter()
            .map(|m| (m.month.as_str(), m.records))
            .collect::<Vec<_>>(),
        [("2025-01", 40), ("2025-03", 40)],
        "what went back left the archive"
    );
    assert_eq!(pyarrow_rows(&parquet_files(&acme_dir)).len(), 80);

    // The audit has the pass and the restore.
    let audit: Vec<String> = admin
        .list_audit(&bulkhead_api::AuditQuery {
            tenant: Some(tid("acme")),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert!(audit.iter().any(|a| a == "retention.archive"), "{audit:?}");
    assert!(audit.iter().any(|a| a == "archive.restore"), "{audit:?}");

    // Deleting the tenant removes its archive; the id's next life starts with none.
    admin.delete_tenant(&tid("acme")).await.unwrap();
    assert!(!acme_dir.exists(), "the deleted life's archive is gone");
    create_tenant(&admin, "acme", "iot").await;
    let listing = admin.list_archives(&tid("acme"), None).await.unwrap();
    assert_eq!((listing.records, listing.items.len()), (0, 0));
    let acme = server.client(&key(&admin, "acme", TenantRole::Member).await);
    assert!(hot(&acme).await.is_empty());
    // The neighbour's archive is untouched by all of it.
    let listing = admin.list_archives(&tid("neighbour"), None).await.unwrap();
    assert_eq!(listing.records, theirs.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_platform_principals_reach_archives_and_bad_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = quiet(dir.path());
    let admin = server.admin();
    setup(&admin, Isolation::Bridge).await;
    create_tenant(&admin, "acme", "iot").await;
    let acme = server.client(&key(&admin, "acme", TenantRole::Owner).await);
    fill(&acme, "acme", &["2025-01-10"], 5).await;
    let operator = server.client(
        &admin
            .create_platform_key(&bulkhead_api::CreatePlatformKey {
                name: "ops".into(),
                role: bulkhead_core::access::PlatformRole::Operator,
                expires_in: None,
            })
            .await
            .unwrap()
            .key,
    );
    let restore = bulkhead_api::RestoreArchive {
        collection: signals(),
        from: bulkhead_core::time::Timestamp::from_micros(0),
        to: bulkhead_core::time::Timestamp::from_micros(micros("2026-01-01T00:00:00Z")),
        hold_days: None,
    };
    // A tenant's own owner key reaches none of it.
    let status = |r: Result<_, bulkhead_client::ClientError>| match r {
        Ok(_) => 200,
        Err(e) => e.status().unwrap_or(0),
    };
    assert_eq!(
        status(acme.list_archives(&tid("acme"), None).await.map(|_| ())),
        403
    );
    assert_eq!(
        status(
            acme.restore_archive(&tid("acme"), &restore)
                .await
                .map(|_| ())
        ),
        403
    );
    assert_eq!(
        status(acme.run_retention(&Default::default()).await.map(|_| ())),
        403
    );
    // Operators run passes, list and restore.
    let done = operator
        .run_retention_to_end(&Default::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(done.report.archived, 5);
    assert_eq!(operator.retention_run(&done.id).await.unwrap(), done);
    assert_eq!(
        operator
            .list_archives(&tid("acme"), None)
            .await
            .unwrap()
            .records,
        5
    );
    assert_eq!(
        operator
            .restore_archive(&tid("acme"), &restore)
            .await
            .unwrap()
            .restored,
        5
    );
    // Unknown tenants, empty ranges, holds out of range, unknown fields.
    assert_eq!(
        status(admin.list_archives(&tid("ghost"), None).await.map(|_| ())),
        404
    );
    let mut empty = restore.clone();
    empty.to = empty.from;
    let err = admin
        .restore_archive(&tid("acme"), &empty)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(
        err.to_string().contains("from must be earlier than to"),
        "{err}"
    );
    let mut long = restore.clone();
    long.hold_days = Some(100_000);
    assert_eq!(
        status(admin.restore_archive(&tid("acme"), &long).await.map(|_| ())),
        400
    );
    // A retention rule on a field that is not a timestamp is refused when the tier is put.
    let (ok, text) = cli(
        &server,
        &[
            "tier",
            "put",
            "bad",
            "--isolation",
            "pool",
            "--retention",
            "signals:sensor:30",
        ],
    );
    assert!(!ok && text.contains("sensor is a string field"), "{text}");
    let (ok, text) = cli(
        &server,
        &[
            "tier",
            "put",
            "bad",
            "--isolation",
            "pool",
            "--retention",
            "signals:ts",
        ],
    );
    assert!(!ok && text.contains("COLLECTION:FIELD:DAYS"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_carries_the_cold_archive_to_the_restored_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = quiet(dir.path());
    let admin = server.admin();
    setup(&admin, Isolation::Silo).await;
    create_tenant(&admin, "acme", "iot").await;
    let token = key(&admin, "acme", TenantRole::Member).await;
    let old = fill(
        &server.client(&token),
        "acme",
        &["2025-01-10", "2025-04-04"],
        12,
    )
    .await;
    assert_eq!(report(&server, &[])["archived"], 24);
    let before = admin.list_archives(&tid("acme"), None).await.unwrap();

    // A tenant archive holds hot records only: exporting a tenant with cold records is
    // refused, naming them, unless asked for the hot ones alone (an export → delete → import
    // lost them silently).
    let file = dir.path().join("acme.bkt");
    let (ok, text) = cli(
        &server,
        &["tenant", "export", "acme", "-o", file.to_str().unwrap()],
    );
    assert!(
        !ok && text.contains("24 records in the cold archive"),
        "{text}"
    );
    assert!(!file.exists());
    let (ok, text) = cli(
        &server,
        &[
            "tenant",
            "export",
            "acme",
            "-o",
            file.to_str().unwrap(),
            "--hot-only",
        ],
    );
    assert!(ok && text.contains("exported 0 records"), "{text}");

    let backup = dir.path().join("backup");
    let (ok, text) = cli(&server, &["backup", "create", backup.to_str().unwrap()]);
    assert!(ok, "{text}");
    let restored = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::binary())
        .args(["backup", "restore", backup.to_str().unwrap(), "--data-dir"])
        .arg(restored.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(server);

    let server = quiet(restored.path());
    let admin = server.admin();
    assert_eq!(
        admin.list_archives(&tid("acme"), None).await.unwrap(),
        before
    );
    let back = admin
        .restore_archive(
            &tid("acme"),
            &bulkhead_api::RestoreArchive {
                collection: signals(),
                from: bulkhead_core::time::Timestamp::from_micros(0),
                to: bulkhead_core::time::Timestamp::from_micros(micros("2026-01-01T00:00:00Z")),
                hold_days: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(back.restored, 24);
    assert_eq!(hot(&server.client(&token)).await, old);
}
