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

fn bulkhead(server: &Server, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(common::binary())
        .args(args)
        .env("BULKHEAD_URL", &server.url)
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
