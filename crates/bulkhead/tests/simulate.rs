//! `bulkhead simulate` in CI: a short seeded run with every kind of fault, which must find
//! nothing; its saved history checked again offline; and the same history with one
//! acknowledged write removed from the final export, which the checker must catch.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

fn simulate(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::binary())
        .arg("simulate")
        .args(args)
        .env_remove("BULKHEAD_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_seeded_run_with_faults_finds_nothing_and_its_history_replays() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.ndjson");
    let (ok, out, err) = simulate(&[
        "--seed",
        "20261205",
        "--duration",
        "25",
        "--tenants",
        "6",
        "--kills",
        "3",
        "--drains",
        "1",
        "--moves",
        "4",
        "--recreations",
        "2",
        "--suspensions",
        "2",
        "--revocations",
        "2",
        "--rollouts",
        "1",
        "--preload",
        "500",
        "--interrupt-moves",
        "--history",
        history.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "the simulation failed:\n{out}\n{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["violations"], serde_json::json!([]), "{out}");
    // Every scheduled fault and operation was carried out, and the workload did real work.
    assert_eq!(report["faults_done"], 15, "{out}");
    assert_eq!(report["faults"].as_array().unwrap().len(), 15);
    // Three kills and a drain, and a kill inside each move that was accepted.
    let faults = report["by_op"]["fault"][0].as_u64().unwrap();
    assert!(faults >= 5, "{out}");
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(
        saved.contains("with a move in phase"),
        "no move was interrupted"
    );
    assert!(
        saved.contains("\"worker\":\"preload\""),
        "nothing was preloaded"
    );
    assert!(
        report["acknowledged_writes"].as_u64().unwrap() > 300,
        "{out}"
    );
    assert!(report["records_checked"].as_u64().unwrap() > 100, "{out}");
    for op in [
        "create",
        "replace",
        "patch",
        "delete",
        "upsert",
        "read",
        "list",
        "snapshot",
        "search",
        "token_list",
        "user_list",
        "usage",
    ] {
        assert!(
            report["by_op"][op][0].as_u64().unwrap_or(0) > 0,
            "no acknowledged {op}: {out}"
        );
    }
    for op in [
        "move",
        "deleted",
        "created",
        "suspended",
        "revoked",
        "rollout",
    ] {
        assert!(
            report["by_op"][op][0].as_u64().unwrap_or(0) > 0,
            "no {op}: {out}"
        );
    }

    // The saved history checks the same offline.
    let (ok, again, err) = simulate(&["--check", history.to_str().unwrap(), "--json"]);
    assert!(ok, "{again}\n{err}");
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["acknowledged_writes"], report["acknowledged_writes"]);

    // Remove one record from a final export: a lost write the checker must find.
    let text = std::fs::read_to_string(&history).unwrap();
    let mut removed = None;
    let tampered: Vec<String> = text
        .lines()
        .map(|line| {
            let mut event: serde_json::Value = serde_json::from_str(line).unwrap();
            if removed.is_none()
                && event["op"] == "list"
                && event["complete"] == true
                && !event["seen"].as_array().unwrap().is_empty()
            {
                removed = Some(event["seen"].as_array_mut().unwrap().remove(0));
            }
            event.to_string()
        })
        .collect();
    let removed = removed.expect("a final export with records");
    let tampered_path = dir.path().join("tampered.ndjson");
    std::fs::write(&tampered_path, tampered.join("\n")).unwrap();
    let (ok, out, _) = simulate(&["--check", tampered_path.to_str().unwrap(), "--json"]);
    assert!(!ok, "a lost write must fail the check");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let violations = report["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 1, "{out}");
    assert_eq!(violations[0]["kind"], "lost");
    assert!(
        violations[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with(removed["id"].as_str().unwrap()),
        "{out}"
    );
}

#[test]
fn bad_settings_are_refused_in_words() {
    let (ok, _, err) = simulate(&["--tenants", "0"]);
    assert!(!ok);
    assert!(err.contains("at least one"), "{err}");
    let (ok, _, err) = simulate(&["--target", "http://127.0.0.1:9", "--admin-key", "k"]);
    assert!(!ok);
    assert!(err.contains("--kills and --drains"), "{err}");
}

/// A throwaway PostgreSQL server with the data role `bulkhead_data`, and a PgBouncer in
/// transaction mode in front of it that lets that role in.
fn postgres_behind_pgbouncer(
    test: &str,
) -> Option<(
    bulkhead_pg_testkit::PgServer,
    bulkhead_pg_testkit::PgBouncer,
)> {
    let pg = bulkhead_pg_testkit::require(test)?;
    pg.psql(
        "postgres",
        "CREATE ROLE bulkhead_data LOGIN NOSUPERUSER NOBYPASSRLS",
    )
    .unwrap();
    let bouncer = bulkhead_pg_testkit::require_pgbouncer(test, &pg, &["bulkhead_data"])?;
    Some((pg, bouncer))
}

/// Two servers sharing a PostgreSQL catalog, tenants on a PostgreSQL domain in every model
/// whose queries go through PgBouncer in transaction mode, one server killed, the other
/// drained, PostgreSQL itself restarted and PgBouncer restarted: nothing lost, doubled or
/// crossed.
#[test]
fn two_servers_on_a_shared_postgres_catalog_lose_nothing_through_postgres_and_pgbouncer_restarts() {
    let Some((pg, bouncer)) = postgres_behind_pgbouncer("simulate_postgres") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.ndjson");
    let restart = pg.restart_command();
    let bouncer_restart = bouncer.restart_command();
    let (ok, out, err) = simulate(&[
        "--seed",
        "20261206",
        "--duration",
        "25",
        "--tenants",
        "6",
        "--servers",
        "2",
        "--postgres",
        &pg.url("postgres"),
        "--clock-skew-ms",
        "1500",
        "--kills",
        "2",
        "--drains",
        "1",
        "--pg-restarts",
        "1",
        "--pg-restart-command",
        &restart,
        "--pgbouncer",
        &bouncer.url("bulkhead_data", "postgres"),
        "--pgbouncer-restarts",
        "1",
        "--pgbouncer-restart-command",
        &bouncer_restart,
        "--moves",
        "3",
        "--recreations",
        "1",
        "--suspensions",
        "1",
        "--revocations",
        "1",
        "--rollouts",
        "1",
        "--history",
        history.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        ok,
        "the simulation failed:\n{out}\n{err}\n--- postgres ---\n{}\n--- pgbouncer ---\n{}",
        pg.log(),
        bouncer.log()
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["violations"], serde_json::json!([]), "{out}");
    assert_eq!(
        report["by_op"]["fault"][0], 5,
        "two kills, a drain, a postgres and a pgbouncer restart: {out}"
    );
    let log = bouncer.log();
    assert!(
        log.contains("user=bulkhead_data") && log.contains("got SIGTERM"),
        "the tenants' queries went through pgbouncer, which was restarted:\n{log}"
    );
    assert!(
        report["acknowledged_writes"].as_u64().unwrap() > 200,
        "{out}"
    );
    assert!(
        report["by_op"]["user_list"][0].as_u64().unwrap_or(0) > 0,
        "{out}"
    );
}

/// The long PostgreSQL run of BENCHMARKS.md: two servers on a shared catalog, every model on
/// a PostgreSQL domain behind PgBouncer, kills of either server, PostgreSQL and PgBouncer
/// restarts, interrupted moves and
/// clock skew between the servers. A measurement run by name (`BULKHEAD_SIMULATE_SECONDS`,
/// default 300; `BULKHEAD_SIMULATE_SKEW_MS`, default 1500).
#[test]
#[ignore = "long: cargo test -p bulkhead --test simulate long_run_on_postgres -- --ignored --nocapture"]
fn a_long_run_on_postgres() {
    let Some((pg, bouncer)) = postgres_behind_pgbouncer("simulate_long_postgres") else {
        return;
    };
    let bouncer_restart = bouncer.restart_command();
    let seconds = std::env::var("BULKHEAD_SIMULATE_SECONDS").unwrap_or_else(|_| "300".into());
    let skew = std::env::var("BULKHEAD_SIMULATE_SKEW_MS").unwrap_or_else(|_| "1500".into());
    let restart = pg.restart_command();
    let (ok, out, err) = simulate(&[
        "--seed",
        "20261207",
        "--duration",
        &seconds,
        "--tenants",
        "12",
        "--servers",
        "2",
        "--postgres",
        &pg.url("postgres"),
        "--clock-skew-ms",
        &skew,
        "--preload",
        "2000",
        "--kills",
        "40",
        "--drains",
        "4",
        "--pg-restarts",
        "6",
        "--pg-restart-command",
        &restart,
        "--pgbouncer",
        &bouncer.url("bulkhead_data", "postgres"),
        "--pgbouncer-restarts",
        "6",
        "--pgbouncer-restart-command",
        &bouncer_restart,
        "--moves",
        "20",
        "--interrupt-moves",
        "--recreations",
        "4",
        "--suspensions",
        "4",
        "--revocations",
        "4",
        "--rollouts",
        "2",
    ]);
    println!("{out}\n{err}");
    assert!(ok, "the simulation failed:\n{out}\n{err}");
}

/// A domain's disk fills up (a 2 MB tmpfs under the SQLite domain `full`), then is grown:
/// writes there are refused with `507 storage_full` while it is full, nothing acknowledged is
/// lost, and writes go through again once it has room. Needs root (a tmpfs mount).
#[test]
fn a_full_disk_refuses_writes_loses_nothing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.ndjson");
    let (ok, out, err) = simulate(&[
        "--seed",
        "20261208",
        "--duration",
        "20",
        "--tenants",
        "8",
        "--preload",
        "300",
        "--full-disk-mb",
        "2",
        "--kills",
        "1",
        "--history",
        history.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        ok,
        "the simulation failed (it mounts a tmpfs: run as root):\n{out}\n{err}"
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["violations"], serde_json::json!([]), "{out}");
    let full: Vec<String> = report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t[1] == "sim-full")
        .map(|t| t[0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(full.len(), 2, "{out}");
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&history)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let freed = events
        .iter()
        .find(|e| e["op"] == "fault" && e["kind"].as_str().unwrap().contains("full disk"))
        .expect("the disk was grown")["end_ms"]
        .as_u64()
        .unwrap();
    let on_full = |e: &&serde_json::Value| {
        e["op"] == "write" && full.iter().any(|t| e["tenant"] == t.as_str())
    };
    let refused_full = events
        .iter()
        .filter(on_full)
        .filter(|e| e["status"] == 507 && e["start_ms"].as_u64().unwrap() < freed)
        .count();
    let written_after = events
        .iter()
        .filter(on_full)
        .filter(|e| e["outcome"] == "ok" && e["start_ms"].as_u64().unwrap() > freed)
        .count();
    assert!(refused_full > 0, "no write met the full disk");
    assert!(
        written_after > 0,
        "no write went through once the disk had room"
    );
}
