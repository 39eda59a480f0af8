//! The error catalogue (docs/errors.md) against the code: every error code the server can
//! answer with is listed with each status it comes with, and nothing listed is made nowhere.
//! The sources are scanned for the places codes are made: `Error::bad_request|not_found|
//! conflict|forbidden("code", …)`, `Error::new(ErrorKind::…, "code", …)`, the server's
//! `error_response(StatusCode::…, "code", …)`, its table of layer-made answers, and the id
//! types' `id_type!(…, "code", …)`.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bulkhead_core::error::ErrorKind;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file of the shipped crates' `src` (not the bench, not the test kit).
fn sources() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("bench") && !p.ends_with("pg-testkit"))
        .map(|p| p.join("src"))
        .collect();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
        }
    }
    out
}

fn kind(name: &str) -> Option<ErrorKind> {
    Some(match name {
        "BadRequest" => ErrorKind::BadRequest,
        "Unauthenticated" => ErrorKind::Unauthenticated,
        "Forbidden" => ErrorKind::Forbidden,
        "NotFound" => ErrorKind::NotFound,
        "MethodNotAllowed" => ErrorKind::MethodNotAllowed,
        "Conflict" => ErrorKind::Conflict,
        "PreconditionFailed" => ErrorKind::PreconditionFailed,
        "PayloadTooLarge" => ErrorKind::PayloadTooLarge,
        "UnsupportedMediaType" => ErrorKind::UnsupportedMediaType,
        "Unprocessable" => ErrorKind::Unprocessable,
        "TooManyRequests" => ErrorKind::TooManyRequests,
        "QuotaExceeded" => ErrorKind::QuotaExceeded,
        "Unavailable" => ErrorKind::Unavailable,
        "Internal" => ErrorKind::Internal,
        _ => return None,
    })
}

/// Each code made in the sources, with the statuses it is made with and where.
fn made() -> BTreeMap<String, BTreeMap<u16, String>> {
    let constructor = regex::Regex::new(
        r#"Error::(bad_request|not_found|conflict|forbidden)\(\s*"([a-z_0-9]+)""#,
    )
    .unwrap();
    let with_kind =
        regex::Regex::new(r#"(?:Error|Self)::new\(\s*ErrorKind::(\w+),\s*"([a-z_0-9]+)""#).unwrap();
    let response =
        regex::Regex::new(r#"error_response\(\s*StatusCode::(\w+),\s*"([a-z_0-9]+)""#).unwrap();
    let table = regex::Regex::new(r#"(\d{3}) => \(\s*ErrorKind::\w+,\s*"([a-z_0-9]+)""#).unwrap();
    // `core::ids`: each id type's parse error (`id_type!(Name, "what", "code", check, …)`).
    let id_type =
        regex::Regex::new(r#"id_type!\(\s*(?:///[^\n]*\n\s*)*\w+,\s*"[^"]*",\s*"([a-z_0-9]+)""#)
            .unwrap();
    let mut out: BTreeMap<String, BTreeMap<u16, String>> = BTreeMap::new();
    for (path, text) in sources() {
        let place = path
            .strip_prefix(root())
            .unwrap_or(&path)
            .display()
            .to_string();
        let mut add = |code: &str, status: u16| {
            out.entry(code.to_owned())
                .or_default()
                .entry(status)
                .or_insert_with(|| place.clone());
        };
        for c in constructor.captures_iter(&text) {
            let status = match &c[1] {
                "bad_request" => 400,
                "not_found" => 404,
                "conflict" => 409,
                _ => 403,
            };
            add(&c[2], status);
        }
        for c in with_kind.captures_iter(&text) {
            let kind = kind(&c[1]).unwrap_or_else(|| panic!("{place}: ErrorKind::{}", &c[1]));
            add(&c[2], kind.status());
        }
        for c in response.captures_iter(&text) {
            let status = match &c[1] {
                "NOT_FOUND" => 404,
                "SERVICE_UNAVAILABLE" => 503,
                "UNAUTHORIZED" => 401,
                "FORBIDDEN" => 403,
                other => panic!("{place}: StatusCode::{other} is not in this test's table"),
            };
            add(&c[2], status);
        }
        for c in table.captures_iter(&text) {
            add(&c[2], c[1].parse().unwrap());
        }
        for c in id_type.captures_iter(&text) {
            add(&c[1], 400);
        }
    }
    out
}

/// The catalogue's rows: code → statuses.
fn catalogue() -> BTreeMap<String, BTreeSet<u16>> {
    let text = std::fs::read_to_string(root().join("docs/errors.md")).unwrap();
    let row = regex::Regex::new(r"(?m)^\| `([a-z_0-9]+)` \| ([0-9, ]+) \|").unwrap();
    row.captures_iter(&text)
        .map(|c| {
            let statuses = c[2].split(',').map(|s| s.trim().parse().unwrap()).collect();
            (c[1].to_owned(), statuses)
        })
        .collect()
}

#[test]
fn every_error_code_the_server_makes_is_in_the_catalogue_with_its_status() {
    let (made, listed) = (made(), catalogue());
    assert!(made.len() > 100, "the scan found only {} codes", made.len());
    let mut missing = Vec::new();
    for (code, statuses) in &made {
        for (status, place) in statuses {
            if !listed.get(code).is_some_and(|s| s.contains(status)) {
                missing.push(format!("{code} ({status}), made in {place}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/errors.md lacks these codes or statuses:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_catalogue_lists_nothing_the_server_does_not_make() {
    let made = made();
    let stale: Vec<String> = catalogue()
        .into_iter()
        .filter(|(code, statuses)| {
            statuses
                .iter()
                .any(|s| !made.get(code).is_some_and(|m| m.contains_key(s)))
        })
        .map(|(code, statuses)| format!("{code} {statuses:?}"))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/errors.md lists codes or statuses no code makes:\n{}",
        stale.join("\n")
    );
}
