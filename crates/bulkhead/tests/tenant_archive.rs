//! A portable tenant archive: exported from a shared pool, imported into every model on both
//! engines, the records equal to the originals exactly (ids, timestamps, versions, fields);
//! a truncated, edited or wrong-version archive is refused with nothing written.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::path::Path;

use bulkhead_core::access::TenantRole;
use bulkhead_core::model::Isolation;
use common::{Server, create_tenant, items, key, put_items, put_pg_domain, put_pg_tier, tid};
use serde_json::{Value, json};
use sha2::Digest as _;

fn bulkhead(server: &Server, args: &[&str]) -> (bool, String) {
    cli(&server.url, args)
}

/// The CLI as the platform admin against the server at `url`: success, and its output.
fn cli(url: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(common::binary())
        .args(args)
        .env("BULKHEAD_URL", url)
        .env("BULKHEAD_TOKEN", common::ADMIN_KEY)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Every record of `tenant`, whole, by id.
async fn records(server: &Server, tenant: &str) -> Vec<Value> {
    let client = server.admin().with_tenant(tid(tenant));
    let mut out: Vec<Value> = client.export(&items(), None).await.unwrap();
    out.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    out
}

fn gunzip(path: &Path) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text
}

fn gzip(path: &Path, text: &str) {
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pooled_tenant_round_trips_through_every_model_and_both_engines() {
    let Some(pg) = bulkhead_pg_testkit::require("tenant_archive") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    let admin = server.admin();
    put_pg_domain(&admin, &pg.url("postgres"), None).await;
    for (name, isolation) in [
        ("pg-pool", Isolation::Pool),
        ("pg-bridge", Isolation::Bridge),
        ("pg-silo", Isolation::Silo),
    ] {
        put_pg_tier(&admin, name, isolation, Default::default()).await;
    }
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    create_tenant(&admin, "neighbour", "free").await;
    let acme = server.client(&key(&admin, "acme", TenantRole::Member).await);
    let neighbour = server.client(&key(&admin, "neighbour", TenantRole::Member).await);
    for i in 0..1_200 {
        let r = acme
            .create_record(
                &items(),
                &json!({"title": format!("plan {i} ✓ \"quoted\""), "sku": format!("s{i}"), "n": i - 600, "done": i % 3 == 0}),
            )
            .await
            .unwrap();
        if i % 5 == 0 {
            let id = bulkhead_core::RecordId::parse(r["id"].as_str().unwrap()).unwrap();
            acme.patch_record(
                &items(),
                &id,
                &json!({"title": format!("plan {i} again")}),
                None,
            )
            .await
            .unwrap();
        }
    }
    neighbour
        .create_record(&items(), &json!({"title": "not acme's"}))
        .await
        .unwrap();
    let original = records(&server, "acme").await;
    assert_eq!(original.len(), 1_200);
    assert!(original.iter().any(|r| r["version"] == 2));

    let file = dir.path().join("acme.bkt");
    let (ok, out) = bulkhead(
        &server,
        &["tenant", "export", "acme", "-o", file.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    assert!(
        !gunzip(&file).contains("not acme's"),
        "only the tenant's own records"
    );
    for (tier, as_id) in [
        ("free", "acme-pool"),
        ("standard", "acme-bridge"),
        ("premium", "acme-silo"),
        ("pg-pool", "acme-pgpool"),
        ("pg-bridge", "acme-pgbridge"),
        ("pg-silo", "acme-pgsilo"),
    ] {
        let (ok, out) = bulkhead(
            &server,
            &[
                "tenant",
                "import",
                file.to_str().unwrap(),
                "--as",
                as_id,
                "--tier",
                tier,
            ],
        );
        assert!(ok, "{tier}: {out}");
        assert_eq!(
            records(&server, as_id).await,
            original,
            "{tier}: the records exactly"
        );
    }
    // Imported into another server's own tenant id too (the archive's).
    admin.delete_tenant(&tid("acme")).await.unwrap();
    let (ok, out) = bulkhead(&server, &["tenant", "import", file.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert_eq!(records(&server, "acme").await, original);
    // The export was audited.
    let exports = admin
        .list_audit(&bulkhead_api::AuditQuery {
            action: Some("record.export".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!exports.items.is_empty());
}

#[tokio::test]
async fn a_truncated_edited_or_wrong_version_archive_is_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "premium").await;
    let acme = server.client(&key(&admin, "acme", TenantRole::Member).await);
    for i in 0..300 {
        acme.create_record(&items(), &json!({"title": format!("r{i}")}))
            .await
            .unwrap();
    }
    let file = dir.path().join("acme.bkt");
    let (ok, out) = bulkhead(
        &server,
        &["tenant", "export", "acme", "-o", file.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    let text = gunzip(&file);
    let lines: Vec<&str> = text.lines().collect();
    let refused = |path: &Path, why: &str| {
        let (ok, out) = bulkhead(
            &server,
            &["tenant", "import", path.to_str().unwrap(), "--as", "copy"],
        );
        assert!(!ok, "{why}: {out}");
        out
    };
    // Truncated: the file cut in half, and the end line dropped.
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.bkt");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    refused(&cut, "cut bytes");
    let short = dir.path().join("short.bkt");
    gzip(&short, &(lines[..lines.len() - 1].join("\n") + "\n"));
    let out = refused(&short, "no end line");
    assert!(out.contains("truncated"), "{out}");
    // Edited: one record's title changed.
    let edited = dir.path().join("edited.bkt");
    gzip(&edited, &text.replacen("\"r1", "\"R1", 1));
    let out = refused(&edited, "edited");
    assert!(out.contains("edited"), "{out}");
    // Another format version.
    let newer = dir.path().join("newer.bkt");
    gzip(
        &newer,
        &text.replacen(
            "\"bulkhead_tenant_archive\":1",
            "\"bulkhead_tenant_archive\":2",
            1,
        ),
    );
    let out = refused(&newer, "format");
    assert!(out.contains("format 2"), "{out}");
    // A record line repeated, with counts and checksum made to match: it would be restored
    // once and reported twice.
    let mut doubled: Vec<&str> = lines.clone();
    doubled.insert(2, lines[1]);
    let records = &doubled[1..doubled.len() - 1];
    let mut sum = sha2::Sha256::new();
    for line in records {
        sum.update(line.as_bytes());
        sum.update(b"\n");
    }
    let end = json!({"end": {
        "records": {"items": records.len()},
        "sha256": sum.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>(),
    }});
    let end = end.to_string();
    let mut with_end = doubled[..doubled.len() - 1].to_vec();
    with_end.push(&end);
    let repeated = dir.path().join("repeated.bkt");
    gzip(&repeated, &(with_end.join("\n") + "\n"));
    let out = refused(&repeated, "a repeated record");
    assert!(out.contains("repeats record"), "{out}");
    // Two archives one after the other (`cat a b`): gzip members are all read.
    let twice = dir.path().join("twice.bkt");
    std::fs::write(&twice, [bytes.clone(), bytes.clone()].concat()).unwrap();
    let out = refused(&twice, "two archives");
    assert!(out.contains("follows the end line"), "{out}");
    // Not an archive at all.
    let junk = dir.path().join("junk.bkt");
    std::fs::write(&junk, "hello").unwrap();
    refused(&junk, "junk");
    // Nothing was written by any of them.
    assert!(admin.get_tenant(&tid("copy")).await.is_err());
    // An import into an existing tenant is refused too.
    let (ok, out) = bulkhead(&server, &["tenant", "import", file.to_str().unwrap()]);
    assert!(!ok && out.contains("exists"), "{out}");
    // And the untouched archive imports.
    let (ok, out) = bulkhead(
        &server,
        &["tenant", "import", file.to_str().unwrap(), "--as", "copy"],
    );
    assert!(ok, "{out}");
}

/// `n` records of `items` as NDJSON, each with a title of ~300 hard-to-compress bytes.
fn bulky(n: usize, tag: &str) -> Vec<u8> {
    let mut body = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..n {
        let mut noise = String::with_capacity(300);
        while noise.len() < 300 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            noise.push_str(&format!("{:016x}", x));
        }
        body.extend_from_slice(
            format!("{{\"id\": \"r{i:07}\", \"title\": \"{tag} {noise}\", \"n\": {i}}}\n")
                .as_bytes(),
        );
    }
    body
}

/// A restore or a deletion that names a tenant's life touches that life only: once the id
/// names another, `409 tenant_life_ended` and nothing is written or deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_or_deletion_naming_an_ended_life_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    let admin = server.admin();
    put_items(&admin).await;
    for tier in ["free", "standard", "premium"] {
        let id = tid(&format!("life-{tier}"));
        create_tenant(&admin, id.as_str(), tier).await;
        let old = admin.get_tenant(&id).await.unwrap().placement.incarnation;
        admin.delete_tenant(&id).await.unwrap();
        create_tenant(&admin, id.as_str(), tier).await;
        let new = admin.get_tenant(&id).await.unwrap().placement.incarnation;
        assert_ne!(old, new);
        let record = json!({"id": "x1", "title": "from the old life", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "version": 1});
        let refused = admin
            .restore_records(
                &id,
                &bulkhead_api::RestoreRecords {
                    collection: items(),
                    records: vec![record.clone()],
                    incarnation: Some(old.clone()),
                },
            )
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("tenant_life_ended"),
            "{refused}"
        );
        let refused = admin.delete_tenant_life(&id, &old).await.unwrap_err();
        assert!(
            refused.to_string().contains("tenant_life_ended"),
            "{refused}"
        );
        assert!(records(&server, id.as_str()).await.is_empty(), "{tier}");
        assert_eq!(
            admin.get_tenant(&id).await.unwrap().placement.incarnation,
            new,
            "{tier}: the new life stands"
        );
        // Its own life: both work.
        admin
            .restore_records(
                &id,
                &bulkhead_api::RestoreRecords {
                    collection: items(),
                    records: vec![record],
                    incarnation: Some(new.clone()),
                },
            )
            .await
            .unwrap();
        assert_eq!(records(&server, id.as_str()).await.len(), 1);
        admin.delete_tenant_life(&id, &new).await.unwrap();
        assert!(admin.get_tenant(&id).await.is_err());
    }
    let (ok, out) = bulkhead(&server, &["doctor"]);
    assert!(ok && !out.contains("life-"), "{out}");
}

/// The bug this guards: `bulkhead tenant import` restored by tenant id, so a tenant deleted
/// and re-created by someone else during an import received the rest of the archive, and the
/// import's clean-up then deleted that new tenant. Now the import writes to the life it
/// created only, fails, and leaves the new tenant as its owner made it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_racing_deletion_and_re_creation_never_reaches_the_new_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "source", "free").await;
    admin
        .with_tenant(tid("source"))
        .bulk(&items(), bulky(40_000, "archived"), true)
        .await
        .unwrap();
    let archive = dir.path().join("source.bkt.gz");
    let (ok, out) = bulkhead(
        &server,
        &[
            "tenant",
            "export",
            "source",
            "-o",
            archive.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    for tier in ["free", "premium"] {
        let target = format!("target-{tier}");
        let import = {
            let (url, archive, target) = (server.url.clone(), archive.clone(), target.clone());
            tokio::task::spawn_blocking(move || {
                let file = archive.to_str().unwrap();
                cli(
                    &url,
                    &["tenant", "import", file, "--as", &target, "--tier", tier],
                )
            })
        };
        // Once the import has written some records, its tenant is deleted and made again.
        let data = admin.with_tenant(tid(&target));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let page = data
                .list_records(
                    &items(),
                    &bulkhead_client::ListRecords {
                        limit: Some(1),
                        ..Default::default()
                    },
                )
                .await;
            if page.is_ok_and(|p| !p.items.is_empty()) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the import never wrote"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        admin.delete_tenant(&tid(&target)).await.unwrap();
        create_tenant(&admin, &target, tier).await;
        data.create_record(&items(), &json!({"id": "mine", "title": "the new owner's"}))
            .await
            .unwrap();
        let (ok, out) = import.await.unwrap();
        assert!(!ok, "{tier}: the import fails: {out}");
        assert!(out.contains("tenant_life_ended"), "{tier}: {out}");
        let now = records(&server, &target).await;
        assert_eq!(
            now.iter()
                .map(|r| r["id"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["mine"],
            "{tier}: nothing of the archive reached the new tenant, which stands"
        );
    }
    let (ok, out) = bulkhead(&server, &["doctor"]);
    assert!(ok && !out.contains("target-"), "{out}");
}

/// `bulkhead tenant export` while its tenant is deleted and re-created: the archive would
/// hold two lives, so the export fails and leaves no file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_racing_deletion_and_re_creation_leaves_no_archive() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    let admin = server.admin();
    put_items(&admin).await;
    admin
        .put_collection(&common::notes(), &common::notes_spec(false))
        .await
        .unwrap();
    create_tenant(&admin, "moving-target", "premium").await;
    let data = admin.with_tenant(tid("moving-target"));
    data.bulk(&items(), bulky(40_000, "earlier"), true)
        .await
        .unwrap();
    let archive = dir.path().join("out.bkt.gz");
    let export = {
        let (url, archive) = (server.url.clone(), archive.clone());
        tokio::task::spawn_blocking(move || {
            let file = archive.to_str().unwrap();
            cli(&url, &["tenant", "export", "moving-target", "-o", file])
        })
    };
    // Once the archive has grown past its header, the tenant is deleted and made again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::metadata(&archive).map_or(0, |m| m.len()) < 256 * 1024 {
        assert!(
            std::time::Instant::now() < deadline,
            "the export never wrote"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    admin.delete_tenant(&tid("moving-target")).await.unwrap();
    create_tenant(&admin, "moving-target", "premium").await;
    data.create_record(&items(), &json!({"id": "zz-later", "title": "LATER"}))
        .await
        .unwrap();
    data.create_record(&common::notes(), &json!({"title": "LATER"}))
        .await
        .unwrap();
    let (ok, out) = export.await.unwrap();
    assert!(!ok, "the export fails: {out}");
    assert!(
        out.contains("deleted while it was exported") || out.contains("tenant_not_found"),
        "{out}"
    );
    assert!(!archive.exists(), "no archive of two lives is left: {out}");
    assert!(
        !out.contains("HTTP 500"),
        "a refusal mid-stream keeps its status: {out}"
    );
}
