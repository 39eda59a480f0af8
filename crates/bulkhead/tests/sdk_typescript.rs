//! The TypeScript SDK (`sdk/typescript`): its type check and its own tests (Node's test
//! runner), run against this build's binary. Needs Node.js 18 or newer and npm; `npm ci`
//! fetches the pinned TypeScript compiler the first time.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/typescript")
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(sdk())
        .env("BULKHEAD_BIN", env!("CARGO_BIN_EXE_bulkhead"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program} ({e}): the TypeScript SDK's tests need Node.js 18 or newer \
                 and npm (apt-get install nodejs npm)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_typescript_sdk_passes_its_tests_against_the_binary() {
    let (ok, version) = run("node", &["--version"]);
    assert!(ok, "{version}");
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 18,
        "the TypeScript SDK needs Node.js 18 or newer, found {version}"
    );
    if !sdk().join("node_modules/typescript").exists() {
        let (ok, text) = run("npm", &["ci", "--no-audit", "--no-fund"]);
        assert!(
            ok,
            "npm ci failed (the registry must be reachable once):\n{text}"
        );
    }
    let (ok, text) = run("npm", &["run", "build"]);
    assert!(ok, "the SDK does not type-check:\n{text}");
    let (ok, text) = run("npm", &["test"]);
    assert!(ok, "the SDK's tests failed:\n{text}");
}
