//! The deployment files in `deploy/`: the systemd unit passes `systemd-analyze verify` (with
//! the binary under test in place of the installed one) without a warning, and runs the
//! server the way the README does.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

fn deploy(file: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy")
            .join(file),
    )
    .unwrap()
}

#[test]
fn the_systemd_unit_verifies_cleanly() {
    let unit = deploy("bulkhead.service");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/bulkhead serve"),
        "{unit}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bulkhead.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/bulkhead", common::binary()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("systemd-analyze is needed to check deploy/bulkhead.service (apt-get install systemd): {e}")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "warnings: {stderr}");
}

#[test]
fn the_dockerfile_builds_the_binary_and_serves_on_all_addresses() {
    let file = deploy("Dockerfile");
    assert!(file.contains("cargo build --release --locked -p bulkhead"));
    assert!(file.contains("\"--listen\", \"0.0.0.0:7070\""));
    assert!(file.contains("USER bulkhead"), "not as root");
    // The flags it passes are the server's.
    let help = Command::new(common::binary())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in ["--data-dir", "--listen", "--log-format"] {
        assert!(help.contains(flag), "serve takes {flag}");
    }
}
