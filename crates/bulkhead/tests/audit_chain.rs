//! The audit log's hash chain: each kind of tampering done directly in the catalog database
//! is found at its entry by `GET /v1/audit/verify` and `bulkhead audit verify`; an export
//! verifies offline and an edited or dropped line does not; a cut tail is caught by a
//! published head and by the watch; servers sharing a PostgreSQL catalog form one chain.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use bulkhead_api::{AuditQuery, AuditVerification};
use bulkhead_client::Client;
use bulkhead_core::chain::{BreakKind, Link};
use common::{Server, cli, create_tenant};

fn db(data_dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(data_dir.join("catalog.db")).unwrap()
}

/// Some control-plane history: tenants created, suspended, keys made.
async fn history(admin: &Client, n: usize) {
    for i in 0..n {
        create_tenant(admin, &format!("t{i:02}"), "free").await;
    }
}

async fn verify(admin: &Client, head: Option<&Link>) -> AuditVerification {
    admin.verify_audit(head).await.unwrap()
}

fn broken_at(v: &AuditVerification) -> (i64, BreakKind) {
    let b = v
        .broken
        .as_ref()
        .unwrap_or_else(|| panic!("the chain verified: {v:?}"));
    (b.seq, b.kind)
}

/// The columns of one entry, to put back after a tampering.
type Saved = Vec<rusqlite::types::Value>;

const COLUMNS: &str = "seq, at, actor, action, target, tenant_id, outcome, request_id, detail, \
                       source, prev_hash, hash";

fn save(conn: &rusqlite::Connection, seq: i64) -> Saved {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM audit WHERE seq = ?1"),
        [seq],
        |r| (0..12).map(|i| r.get(i)).collect(),
    )
    .unwrap()
}

fn restore(conn: &rusqlite::Connection, rows: &[Saved]) {
    for row in rows {
        conn.execute("DELETE FROM audit WHERE seq = ?1", [row[0].clone()])
            .unwrap();
        conn.execute(
            &format!(
                "INSERT INTO audit ({COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)"
            ),
            rusqlite::params_from_iter(row.iter()),
        )
        .unwrap();
    }
}

#[tokio::test]
async fn every_kind_of_tampering_in_the_database_is_found_at_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    let admin = server.admin();
    history(&admin, 12).await;
    let intact = verify(&admin, None).await;
    assert!(intact.ok, "{intact:?}");
    assert!(intact.checked >= 12, "{intact:?}");
    let head = intact.head.clone().unwrap();
    let conn = db(&server.data_dir);
    let k = head.seq - 6;
    let saved: Vec<Saved> = (k..=k + 1).map(|s| save(&conn, s)).collect();

    // An edited field.
    conn.execute(
        "UPDATE audit SET actor = 'someone-else' WHERE seq = ?1",
        [k],
    )
    .unwrap();
    assert_eq!(
        broken_at(&verify(&admin, None).await),
        (k, BreakKind::Edited)
    );
    restore(&conn, &saved);
    // An edited outcome (a denial made to look allowed).
    conn.execute(
        "UPDATE audit SET outcome = 'denied:forbidden' WHERE seq = ?1",
        [k],
    )
    .unwrap();
    assert_eq!(
        broken_at(&verify(&admin, None).await),
        (k, BreakKind::Edited)
    );
    restore(&conn, &saved);
    assert!(verify(&admin, None).await.ok, "restored");

    // A deleted entry: the next one no longer follows its predecessor.
    conn.execute("DELETE FROM audit WHERE seq = ?1", [k])
        .unwrap();
    assert_eq!(
        broken_at(&verify(&admin, None).await),
        (k + 1, BreakKind::Unlinked)
    );
    // Deleted, and the rest renumbered to close the gap.
    let renumber = |step: &str, from: i64| {
        // Through negative numbers, so no two rows ever hold one number.
        conn.execute(
            &format!("UPDATE audit SET seq = -(seq {step}) WHERE seq >= ?1"),
            [from],
        )
        .unwrap();
        conn.execute("UPDATE audit SET seq = -seq WHERE seq < 0", [])
            .unwrap();
    };
    renumber("- 1", k + 1);
    assert_eq!(
        broken_at(&verify(&admin, None).await),
        (k, BreakKind::Edited)
    );
    renumber("+ 1", k);
    restore(&conn, &saved);
    assert!(verify(&admin, None).await.ok, "restored");

    // A forged entry in place of a real one, hashed correctly by someone who knows the
    // algorithm: the entry after it does not follow it.
    let prev: String = conn
        .query_row("SELECT prev_hash FROM audit WHERE seq = ?1", [k], |r| {
            r.get(0)
        })
        .unwrap();
    let forged = bulkhead_core::chain::Fields {
        seq: k,
        at: 1,
        actor: "key:kforged",
        action: "tenant.create",
        target: "ghost",
        tenant: None,
        outcome: "ok",
        request_id: "",
        detail: None,
        source: None,
    };
    let forged_hash = bulkhead_core::chain::hash(&forged, &prev);
    conn.execute(
        "UPDATE audit SET at = 1, actor = 'key:kforged', action = 'tenant.create', \
         target = 'ghost', tenant_id = NULL, outcome = 'ok', request_id = '', detail = NULL, \
         source = NULL, hash = ?2 WHERE seq = ?1",
        rusqlite::params![k, forged_hash],
    )
    .unwrap();
    assert_eq!(
        broken_at(&verify(&admin, None).await),
        (k + 1, BreakKind::Unlinked)
    );
    restore(&conn, &saved);

    // Two entries swapped.
    conn.execute("UPDATE audit SET seq = -1 WHERE seq = ?1", [k])
        .unwrap();
    conn.execute("UPDATE audit SET seq = ?1 WHERE seq = ?2", [k, k + 1])
        .unwrap();
    conn.execute("UPDATE audit SET seq = ?1 WHERE seq = -1", [k + 1])
        .unwrap();
    assert_eq!(
        broken_at(&verify(&admin, None).await),
        (k, BreakKind::Edited)
    );
    restore(&conn, &saved);
    assert!(verify(&admin, None).await.ok, "restored");

    // A row written around the server at the tail: without a hash, and with a made-up one.
    let tail = head.seq + 100;
    conn.execute(
        "INSERT INTO audit (seq, at, actor, action, target, outcome, request_id) \
         VALUES (?1, 1, 'x', 'tenant.delete', 'acme', 'ok', '')",
        [tail],
    )
    .unwrap();
    assert_eq!(
        broken_at(&verify(&admin, None).await),
        (tail, BreakKind::Unchained)
    );
    conn.execute(
        "UPDATE audit SET prev_hash = ?1, hash = ?1 WHERE seq = ?2",
        rusqlite::params![head.hash, tail],
    )
    .unwrap();
    assert_eq!(
        broken_at(&verify(&admin, None).await),
        (tail, BreakKind::Edited)
    );
    conn.execute("DELETE FROM audit WHERE seq = ?1", [tail])
        .unwrap();
    assert!(verify(&admin, None).await.ok, "restored");

    // The first entry removed: the chain no longer starts at its anchor.
    let first: i64 = conn
        .query_row("SELECT min(seq) FROM audit", [], |r| r.get(0))
        .unwrap();
    let saved_first = save(&conn, first);
    conn.execute("DELETE FROM audit WHERE seq = ?1", [first])
        .unwrap();
    assert_eq!(
        broken_at(&verify(&admin, None).await),
        (first + 1, BreakKind::NoAnchor)
    );
    restore(&conn, &[saved_first]);

    // The tail cut off: the chain that is left is intact, but not the published head.
    conn.execute("DELETE FROM audit WHERE seq > ?1", [head.seq - 3])
        .unwrap();
    assert!(
        verify(&admin, None).await.ok,
        "a cut tail alone leaves a valid chain"
    );
    let cut = verify(&admin, Some(&head)).await;
    assert_eq!(broken_at(&cut), (head.seq, BreakKind::Truncated));
    // The CLI says the same, and fails.
    let (ok, out) = cli(&server, &["audit", "verify", "--head", &head.to_string()]);
    assert!(!ok, "{out}");
    assert!(out.contains("truncated"), "{out}");
    // A head that was rewritten.
    let rewritten = Link {
        seq: head.seq - 3,
        hash: bulkhead_core::chain::GENESIS.into(),
    };
    assert_eq!(
        broken_at(&verify(&admin, Some(&rewritten)).await),
        (head.seq - 3, BreakKind::HeadRewritten)
    );
}

#[tokio::test]
async fn an_export_verifies_offline_and_an_edited_or_dropped_line_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    let admin = server.admin();
    history(&admin, 6).await;
    let file = dir.path().join("audit.ndjson");
    let (ok, out) = cli(&server, &["audit", "export", "-o", file.to_str().unwrap()]);
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 6, "{text}");
    // Offline: no server, no credential.
    server.stop();
    let offline = |path: &Path| {
        let out = std::process::Command::new(common::binary())
            .args(["audit", "verify", "--file", path.to_str().unwrap()])
            .env_remove("BULKHEAD_TOKEN")
            .env("BULKHEAD_URL", "http://127.0.0.1:9")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = offline(&file);
    assert!(ok, "{out}");
    assert!(out.contains("intact"), "{out}");
    // An edited line.
    let edited = dir.path().join("edited.ndjson");
    let mut changed: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    changed[3] = changed[3].replacen("tenant.create", "tenant.delete", 1);
    std::fs::write(&edited, changed.join("\n")).unwrap();
    let (ok, out) = offline(&edited);
    assert!(!ok && out.contains("edited"), "{out}");
    // A dropped line.
    let dropped = dir.path().join("dropped.ndjson");
    let mut fewer: Vec<&str> = lines.clone();
    fewer.remove(2);
    std::fs::write(&dropped, fewer.join("\n")).unwrap();
    let (ok, out) = offline(&dropped);
    assert!(!ok && out.contains("unlinked"), "{out}");
    // An export from a later time verifies on its own too.
    let mut server = Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_WATCH_SECS", "0")]);
    let later = dir.path().join("later.ndjson");
    let (ok, out) = cli(
        &server,
        &[
            "audit",
            "export",
            "--from",
            "1m",
            "-o",
            later.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = offline(&later);
    assert!(ok, "{out}");
    server.stop();
}

#[tokio::test]
async fn the_watch_logs_the_head_and_audits_a_cut_tail() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[("BULKHEAD_AUDIT_WATCH_SECS", "1"), ("BULKHEAD_LOG", "info")],
    );
    let admin = server.admin();
    history(&admin, 5).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let head = loop {
        let head = verify(&admin, None).await.head.unwrap();
        if server.log().contains(&format!("seq={}", head.seq)) {
            break head;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no head logged\n{}",
            server.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        server.log().contains("audit chain head"),
        "{}",
        server.log()
    );
    db(&server.data_dir)
        .execute("DELETE FROM audit WHERE seq > ?1", [head.seq - 2])
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let found = admin
            .list_audit(&AuditQuery {
                action: Some("audit.chain_broken".into()),
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        if let Some(e) = found.items.first() {
            let detail = e.detail.as_deref().unwrap_or_default();
            assert!(detail.contains("truncated"), "{detail}");
            assert_eq!(found.items.len(), 1, "reported once: {:?}", found.items);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cut was not reported\n{}",
            server.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The log's own thread writes the line (it may land just after the audit row).
    while !server.log().contains("audit chain broken") {
        assert!(
            std::time::Instant::now() < deadline,
            "the cut was not logged\n{}",
            server.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_sharing_a_postgres_catalog_append_to_one_chain() {
    let Some(pg) = bulkhead_pg_testkit::require("audit_chain_shared") else {
        return;
    };
    let url = pg.url("postgres");
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let servers: Vec<Server> = dirs
        .iter()
        .map(|d| {
            Server::start_with(
                d.path(),
                &[
                    ("BULKHEAD_CATALOG", url.as_str()),
                    ("BULKHEAD_AUDIT_WATCH_SECS", "0"),
                ],
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for (s, server) in servers.iter().enumerate() {
        let admin = server.admin();
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                create_tenant(&admin, &format!("s{s}-{i:02}"), "free").await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for server in &servers {
        let v = verify(&server.admin(), None).await;
        assert!(v.ok, "{v:?}");
        assert!(v.checked >= 30, "{v:?}");
    }
    // Tampering through psql is found the same way.
    let head = verify(&servers[0].admin(), None).await.head.unwrap();
    pg.psql(
        "postgres",
        &format!(
            "UPDATE bulkhead_catalog.audit SET target = 'x' WHERE seq = {}",
            head.seq - 4
        ),
    )
    .unwrap();
    assert_eq!(
        broken_at(&verify(&servers[1].admin(), None).await),
        (head.seq - 4, BreakKind::Edited)
    );
    pg.psql(
        "postgres",
        &format!(
            "DELETE FROM bulkhead_catalog.audit WHERE seq > {}",
            head.seq - 2
        ),
    )
    .unwrap();
    assert_eq!(
        broken_at(&verify(&servers[1].admin(), Some(&head)).await),
        (head.seq - 4, BreakKind::Edited)
    );
}
