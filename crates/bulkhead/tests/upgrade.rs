//! Upgrades: every released data directory and PostgreSQL catalog opens with this binary,
//! migrates, and serves every record and credential unchanged.
//!
//! `tests/fixtures/releases/<version>/` holds what a release produced: `sqlite.tar.gz` (a data
//! directory with its SQLite catalog), `postgres.sql` (`pg_dumpall` of a server whose catalog
//! and default domain were on PostgreSQL), `config.toml` (the identity provider the members
//! sign in with) and `manifest.json` (what must still be there). Make the fixture of a new
//! release with that release's code:
//!
//! ```text
//! cargo test -p bulkhead --test upgrade -- --ignored make_release_fixture
//! ```
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bulkhead_api::{AddMember, AuditQuery, CreateKey, StartMove};
use bulkhead_client::{Client, ClientError};
use bulkhead_core::RecordId;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{Isolation, MovePhase};
use bulkhead_core::permissions::MemberRole;
use common::{Server, all_titles, create_tenant, items, key, put_items, tid};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::json;

const ISSUER: &str = "https://fixture-idp.example/";
const AUDIENCE: &str = "bulkhead";
const IDP_SECRET: &str = "fixture-hs256-secret-not-for-production";

fn config_toml() -> String {
    format!(
        "[[issuers]]\nname = \"org\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
         algorithms = [\"HS256\"]\nhs256_secret = \"{IDP_SECRET}\"\ntenant_claim = \"org\"\n"
    )
}

fn releases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/releases")
}

#[derive(Debug, Serialize, Deserialize)]
struct TenantFixture {
    id: String,
    tier: String,
    isolation: Isolation,
    member_key: String,
    viewer_key: String,
    records: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    release: String,
    tenants: Vec<TenantFixture>,
    /// A key revoked before the upgrade: still refused after it.
    revoked_key: String,
    /// The member key of a deleted tenant: still refused after it.
    deleted_tenant_key: String,
    /// A member signed in through the identity provider: `(tenant, sub)`.
    member: (String, String),
    /// A tenant moved pool → silo, and its move.
    moved: (String, String),
}

fn sign_in(tenant: &str, sub: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "org": tenant,
        "iat": now, "exp": now + 600,
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(IDP_SECRET.as_bytes()),
    )
    .unwrap()
}

async fn wait_for_move(admin: &Client, id: &str) {
    for _ in 0..600 {
        let view = admin.get_move(id).await.unwrap();
        match view.phase {
            MovePhase::Done => return,
            MovePhase::RolledBack => panic!("the fixture's move rolled back: {view:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("the fixture's move did not finish");
}

/// What a release leaves behind: tenants on every model with records, keys (one revoked),
/// a member from the identity provider, a deleted tenant, a finished move, audit rows.
async fn populate(server: &Server) -> Manifest {
    let admin = server.admin();
    put_items(&admin).await;
    let mut tenants = Vec::new();
    for (id, tier) in [
        ("pool1", "free"),
        ("bridge1", "standard"),
        ("silo1", "premium"),
        ("moved1", "free"),
    ] {
        create_tenant(&admin, id, tier).await;
        let member_key = key(&admin, id, TenantRole::Member).await;
        let viewer_key = key(&admin, id, TenantRole::Viewer).await;
        let client = server.client(&member_key);
        let mut records = BTreeMap::new();
        for i in 0..25 {
            let title = format!("{id} record {i}: släpp inte taget");
            client
                .create_record(
                    &items(),
                    &json!({"id": format!("r{i:03}"), "title": title, "n": i}),
                )
                .await
                .unwrap();
            records.insert(format!("r{i:03}"), title);
        }
        let isolation = admin
            .get_tenant(&tid(id))
            .await
            .unwrap()
            .placement
            .isolation;
        tenants.push(TenantFixture {
            id: id.into(),
            tier: tier.into(),
            isolation,
            member_key,
            viewer_key,
            records,
        });
    }
    let move_id = admin
        .start_move(
            &tid("moved1"),
            &StartMove {
                isolation: Some(Isolation::Silo),
                domain: None,
                incarnation: None,
            },
        )
        .await
        .unwrap()
        .id;
    wait_for_move(&admin, &move_id).await;
    tenants[3].isolation = Isolation::Silo;

    let revoked = admin
        .create_key(
            &tid("pool1"),
            &CreateKey {
                name: "revoked".into(),
                role: TenantRole::Member,
                expires_in: None,
            },
        )
        .await
        .unwrap();
    admin
        .revoke_key(&tid("pool1"), &revoked.view.id)
        .await
        .unwrap();

    create_tenant(&admin, "gone1", "free").await;
    let deleted_tenant_key = key(&admin, "gone1", TenantRole::Member).await;
    server
        .client(&deleted_tenant_key)
        .create_record(&items(), &json!({"id": "x", "title": "gone"}))
        .await
        .unwrap();
    admin.delete_tenant(&tid("gone1")).await.unwrap();

    admin
        .add_member(
            &tid("bridge1"),
            &AddMember {
                issuer: Some("org".into()),
                sub: Some("alice".into()),
                email: None,
                role: MemberRole::Builtin(TenantRole::Admin),
            },
        )
        .await
        .unwrap();
    let alice = server.client(&sign_in("bridge1", "alice"));
    assert_eq!(all_titles(&alice).await, tenants[1].records);

    Manifest {
        release: env!("CARGO_PKG_VERSION").into(),
        tenants,
        revoked_key: revoked.key,
        deleted_tenant_key,
        member: ("bridge1".into(), "alice".into()),
        moved: ("moved1".into(), move_id),
    }
}

fn refused_with(result: Result<impl std::fmt::Debug, ClientError>, what: &str, codes: &[u16]) {
    match result {
        Err(ClientError::Api { status, .. }) if codes.contains(&status) => {}
        other => panic!("{what}: expected one of {codes:?}, got {other:?}"),
    }
}

fn refused(result: Result<impl std::fmt::Debug, ClientError>, what: &str) {
    refused_with(result, what, &[401, 404]);
}

/// After an upgrade: every record, credential, member, move and audit entry of the manifest
/// is there and behaves as before, and the upgraded server takes writes and new tenants.
async fn check(server: &Server, manifest: &Manifest, label: &str) {
    let admin = server.admin();
    let ready = admin.ready().await.unwrap();
    assert_eq!(ready.status, "ready", "{label}: {ready:?}");
    assert!(
        ready.catalog_schema.is_some_and(|v| v >= 1),
        "{label}: the catalog's schema version is shown: {ready:?}"
    );
    // The entries written before the hash chain existed were linked at the first start.
    let chain = admin.verify_audit(None).await.unwrap();
    assert!(chain.ok && chain.checked > 0, "{label}: {chain:?}");
    for t in &manifest.tenants {
        let view = admin.get_tenant(&tid(&t.id)).await.unwrap();
        assert_eq!(view.placement.isolation, t.isolation, "{label}: {}", t.id);
        assert_eq!(view.tier.as_str(), t.tier, "{label}: {}", t.id);
        for key in [&t.member_key, &t.viewer_key] {
            let seen = all_titles(&server.client(key)).await;
            assert_eq!(seen, t.records, "{label}: {}'s records", t.id);
        }
        let hits = server
            .client(&t.viewer_key)
            .list_records(
                &items(),
                &bulkhead_client::ListRecords {
                    q: Some("taget".into()),
                    limit: Some(100),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            hits.items.len(),
            t.records.len(),
            "{label}: search {}",
            t.id
        );
        refused_with(
            server
                .client(&t.viewer_key)
                .create_record(&items(), &json!({"title": "viewer"}))
                .await,
            "a viewer key writes",
            &[403],
        );
        let member = server.client(&t.member_key);
        member
            .create_record(&items(), &json!({"id": "after", "title": "after upgrade"}))
            .await
            .unwrap();
        let got = member
            .get_record(&items(), &RecordId::parse("after").unwrap())
            .await
            .unwrap();
        assert_eq!(got["title"], "after upgrade");
    }
    refused(
        server
            .client(&manifest.revoked_key)
            .get_record(&items(), &RecordId::parse("r000").unwrap())
            .await,
        "the revoked key",
    );
    refused(
        server
            .client(&manifest.deleted_tenant_key)
            .get_record(&items(), &RecordId::parse("x").unwrap())
            .await,
        "the deleted tenant's key",
    );
    refused(admin.get_tenant(&tid("gone1")).await, "the deleted tenant");

    let (tenant, sub) = &manifest.member;
    let alice = server.client(&sign_in(tenant, sub));
    let titles = all_titles(&alice).await;
    assert_eq!(titles.len(), 26, "{label}: alice sees her tenant");
    let members = alice.list_members(&tid(tenant)).await.unwrap();
    assert_eq!(
        members.items.len(),
        1,
        "{label}: alice is a member, as admin"
    );

    let (moved, move_id) = &manifest.moved;
    let history = admin.list_moves(&tid(moved)).await.unwrap();
    assert!(
        history
            .items
            .iter()
            .any(|m| &m.id == move_id && m.phase == MovePhase::Done),
        "{label}: the finished move is in the history: {history:?}"
    );

    let audit = admin
        .list_audit(&AuditQuery {
            tenant: Some(tid("pool1")),
            action: Some("tenant.create".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.items.len(), 1, "{label}: pool1's creation is audited");

    for (id, tier) in [
        ("newpool", "free"),
        ("newbridge", "standard"),
        ("newsilo", "premium"),
    ] {
        create_tenant(&admin, id, tier).await;
        let key = key(&admin, id, TenantRole::Member).await;
        server
            .client(&key)
            .create_record(&items(), &json!({"title": "new"}))
            .await
            .unwrap();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pg_tool(name: &str) -> PathBuf {
    bulkhead_pg_testkit::pg_bin_dir()
        .map(|d| d.join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// `cargo test -p bulkhead --test upgrade -- --ignored make_release_fixture`: writes this
/// release's fixture (replacing one of the same version).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "writes a release fixture; run by hand when cutting a release"]
async fn make_release_fixture() {
    let out = releases().join(env!("CARGO_PKG_VERSION"));
    std::fs::create_dir_all(&out).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_toml()).unwrap();
    std::fs::write(out.join("config.toml"), config_toml()).unwrap();
    let config = config.to_str().unwrap().to_owned();

    // SQLite: a data directory with its catalog.
    let sqlite = dir.path().join("sqlite");
    std::fs::create_dir(&sqlite).unwrap();
    let mut server = Server::start_with(&sqlite, &[("BULKHEAD_CONFIG", &config)]);
    let manifest = populate(&server).await;
    server.stop();
    run(Command::new("tar")
        .arg("-czf")
        .arg(out.join("sqlite.tar.gz"))
        .arg("-C")
        .arg(&sqlite)
        .arg("data"));

    // PostgreSQL: catalog and default domain in one server, dumped whole.
    let pg = bulkhead_pg_testkit::PgServer::start().unwrap();
    let catalog = pg.url("postgres");
    let pg_dir = dir.path().join("pg");
    std::fs::create_dir(&pg_dir).unwrap();
    let mut server = Server::start_with(
        &pg_dir,
        &[("BULKHEAD_CONFIG", &config), ("BULKHEAD_CATALOG", &catalog)],
    );
    let pg_manifest = populate(&server).await;
    server.stop();
    let dump = run(Command::new(pg_tool("pg_dumpall"))
        .args([
            "-h",
            pg.host(),
            "-p",
            &pg.port().to_string(),
            "-U",
            "postgres",
        ])
        .arg("--no-role-passwords"));
    // The superuser exists in every server the dump is restored into.
    let dump: String = dump
        .lines()
        .filter(|l| !l.starts_with("CREATE ROLE postgres;"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(out.join("postgres.sql"), dump).unwrap();
    let manifests = json!({"sqlite": manifest, "postgres": pg_manifest});
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_string_pretty(&manifests).unwrap(),
    )
    .unwrap();
    eprintln!("wrote {}", out.display());
}

fn fixtures() -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(releases())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").exists())
        .collect();
    all.sort();
    assert!(
        !all.is_empty(),
        "no release fixture under {}",
        releases().display()
    );
    all
}

fn manifests(release: &Path) -> (Manifest, Manifest) {
    let mut all: BTreeMap<String, Manifest> =
        serde_json::from_str(&std::fs::read_to_string(release.join("manifest.json")).unwrap())
            .unwrap();
    (
        all.remove("sqlite").unwrap(),
        all.remove("postgres").unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_released_data_directory_opens_migrates_and_serves_unchanged() {
    for release in fixtures() {
        let label = format!("{} (SQLite)", release.display());
        let (manifest, _) = manifests(&release);
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("tar")
            .arg("-xzf")
            .arg(release.join("sqlite.tar.gz"))
            .arg("-C")
            .arg(dir.path()));
        let config = release.join("config.toml");
        let env = [("BULKHEAD_CONFIG", config.to_str().unwrap())];
        let mut server = Server::start_with(dir.path(), &env);
        check(&server, &manifest, &label).await;
        // A second start finds nothing left to migrate and serves the same.
        server.stop();
        let server = Server::start_with(dir.path(), &env);
        let t = &manifest.tenants[0];
        assert_eq!(
            all_titles(&server.client(&t.member_key)).await.len(),
            t.records.len() + 1,
            "{label}: after a second start"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_released_postgres_catalog_opens_migrates_and_serves_unchanged() {
    for release in fixtures() {
        let Some(pg) = bulkhead_pg_testkit::require("upgrade_postgres_catalog") else {
            return;
        };
        let label = format!("{} (PostgreSQL)", release.display());
        let (_, manifest) = manifests(&release);
        let dump = std::fs::read_to_string(release.join("postgres.sql")).unwrap();
        pg.psql("postgres", &dump).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = release.join("config.toml");
        let catalog = pg.url("postgres");
        // Two servers start on the old catalog at once: it is migrated exactly once.
        let env = [
            ("BULKHEAD_CONFIG", config.to_str().unwrap()),
            ("BULKHEAD_CATALOG", catalog.as_str()),
        ];
        for side in ["a", "b"] {
            std::fs::create_dir(dir.path().join(side)).unwrap();
        }
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| Server::start_with(&dir.path().join("a"), &env));
            let b = s.spawn(|| Server::start_with(&dir.path().join("b"), &env));
            (a.join().unwrap(), b.join().unwrap())
        });
        check(&a, &manifest, &label).await;
        let migrated = pg
            .psql(
                "postgres",
                "SELECT count(*), count(DISTINCT version), min(version) \
                 FROM bulkhead_catalog.schema_migrations",
            )
            .unwrap();
        let schema = a.admin().ready().await.unwrap().catalog_schema.unwrap();
        assert_eq!(
            migrated.trim(),
            format!("{schema}|{schema}|1"),
            "{label}: every migration recorded once, though two servers started together"
        );
        let t = &manifest.tenants[1];
        assert_eq!(
            all_titles(&b.client(&t.member_key)).await.len(),
            t.records.len() + 1,
            "{label}: the second server serves the same"
        );
    }
}

/// A catalog with a migration this binary does not know (written by a newer release) is
/// refused at start with a message saying what to do; nothing in it is changed.
#[test]
fn a_server_refuses_a_catalog_newer_than_it_knows() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    server.stop();
    let catalog = server.data_dir.join("catalog.db");
    let conn = rusqlite::Connection::open(&catalog).unwrap();
    conn.execute(
        "INSERT INTO schema_migrations VALUES (9999, 'from a newer release', 0, 'bulkhead 99.0.0')",
        [],
    )
    .unwrap();
    let rows_before: i64 = conn
        .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    drop(conn);
    let out = Command::new(common::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&server.data_dir)
        .env("BULKHEAD_ADMIN_KEY", common::ADMIN_KEY)
        .env_remove("BULKHEAD_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the server started: {stderr}");
    assert!(
        stderr.contains("version 9999, newer than this binary knows"),
        "the refusal says why: {stderr}"
    );
    let conn = rusqlite::Connection::open(&catalog).unwrap();
    let after: i64 = conn
        .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(after, rows_before, "the refused start changed nothing");
}
