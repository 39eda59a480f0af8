//! Bulk bodies are applied as they stream in, with bounded memory: a line too long fails
//! alone, a body without a declared length that outgrows the tier's limit stops there (and
//! says so), the bodies one server applies at once are bounded (503 past that), and a
//! report lists at most 10,000 line results while its counts stay exact.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bulkhead_api::BulkReport;
use bulkhead_client::ListRecords;
use bulkhead_core::access::TenantRole;
use common::{Server, create_tenant, items, key, put_items};

/// POSTs `chunks` as a chunked body (no Content-Length) and returns status and body.
fn post_chunked(
    url: &str,
    token: &str,
    chunks: impl Iterator<Item = Vec<u8>>,
    pause: Duration,
) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/collections/items/records:bulk?results=errors HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: application/x-ndjson\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    for chunk in chunks {
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .is_err()
            || s.write_all(&chunk).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break;
        }
        std::thread::sleep(pause);
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

fn lines(from: usize, count: usize) -> Vec<u8> {
    (from..from + count)
        .flat_map(|i| format!("{{\"id\":\"r{i:06}\",\"title\":\"line {i}\"}}\n").into_bytes())
        .collect()
}

/// The JSON object of a (possibly chunked) HTTP body.
fn json_of(body: &str) -> serde_json::Value {
    let start = body.find('{').unwrap();
    let end = body.rfind('}').unwrap();
    serde_json::from_str(&body[start..=end]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_bodies_stream_with_bounded_memory_and_clear_limits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            ("BULKHEAD_BULK_IN_FLIGHT", "1"),
            ("BULKHEAD_BULK_MAX_BYTES", "2000000"),
            ("BULKHEAD_BODY_LIMIT", "65536"),
        ],
    );
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    let token = key(&admin, "acme", TenantRole::Member).await;
    let acme = server.client(&token);

    // A bulk body is NDJSON: another content type is refused before anything is read.
    let resp = acme
        .raw(
            "POST".parse().unwrap(),
            "/v1/collections/items/records:bulk",
            Some(lines(900_000, 2)),
            Some("application/json"),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 415, "{}", String::from_utf8_lossy(&resp.body));

    // A line longer than the request body limit fails alone (413 for that line); its
    // neighbours are applied.
    let mut body = lines(0, 5);
    body.extend_from_slice(format!("{{\"title\":\"{}\"}}\n", "x".repeat(70_000)).as_bytes());
    body.extend_from_slice(&lines(5, 5));
    let report = acme.bulk(&items(), body, true).await.unwrap();
    assert_eq!((report.created, report.failed), (10, 1), "{report:?}");
    assert_eq!(report.results[0].line, 6);
    assert_eq!(
        report.results[0].error.as_ref().unwrap().code,
        "line_too_long"
    );
    assert_eq!(report.results[0].status, 413);

    // A declared length over the tier's limit is refused before anything is applied.
    let err = acme
        .bulk(&items(), lines(100, 60_000), true)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(413), "{err}");
    assert_eq!(
        acme.list_records(&items(), &ListRecords::default())
            .await
            .unwrap()
            .items
            .len(),
        10
    );

    // Without a declared length, the body is read and applied until it outgrows the limit,
    // and the report says where it stopped.
    let (url, t) = (server.url.clone(), token.clone());
    let (status, body) = tokio::task::spawn_blocking(move || {
        post_chunked(
            &url,
            &t,
            (0..60).map(|c| lines(1000 + c * 1000, 1000)),
            Duration::ZERO,
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let report: BulkReport = serde_json::from_value(json_of(&body)).unwrap();
    assert!(report.created > 0 && report.failed == 1, "{report:?}");
    let last = report.results.last().unwrap();
    assert_eq!(last.error.as_ref().unwrap().code, "payload_too_large");

    // One bulk at a time on this server: a second one meanwhile gets 503 with Retry-After.
    let (url, t) = (server.url.clone(), token.clone());
    let slow = tokio::task::spawn_blocking(move || {
        post_chunked(
            &url,
            &t,
            (0..20).map(|c| lines(200_000 + c * 10, 10)),
            Duration::from_millis(100),
        )
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = acme
        .bulk(&items(), lines(300_000, 3), true)
        .await
        .unwrap_err();
    assert_eq!(
        (busy.status(), busy.code()),
        (Some(503), Some("busy")),
        "{busy}"
    );
    let (status, _) = slow.await.unwrap();
    assert_eq!(status, 200);
    acme.bulk(&items(), lines(300_000, 3), true).await.unwrap();

    // A report lists at most 10,000 results; its counts stay exact.
    let body = lines(400_000, 12_000);
    let report = acme.bulk(&items(), body, false).await.unwrap();
    assert_eq!(report.created, 12_000);
    assert_eq!(report.results.len(), 10_000);
    assert!(report.results_truncated);
}

/// A bulk that would outlast the request's time limit stops reading lines in time to answer:
/// 200 with every line it applied reported, and one last failed line (`time_limit`) saying
/// where it stopped, instead of a 408 that hid the lines already applied. Sending the rest
/// again applies it.
#[tokio::test]
async fn a_bulk_past_the_time_limit_reports_what_it_applied() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bulkhead.toml");
    std::fs::write(&config, "[limits]\nrequest_timeout_secs = 2\n").unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_CONFIG", config.to_str().unwrap())]);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "slow", "free").await;
    let token = key(&admin, "slow", TenantRole::Member).await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /v1/collections/items/records:bulk HTTP/1.1\r\nhost: {addr}\r\n\
         authorization: Bearer {token}\r\ncontent-type: application/x-ndjson\r\n\
         transfer-encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    // A line every 100 ms: past 1.5 s (the 2 s limit less its margin) the rest is not read.
    let mut sent = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(2_500) {
        let line = format!("{{\"id\":\"s{sent:03}\",\"title\":\"slow\"}}\n");
        if s.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())
            .is_err()
        {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    let body = if answer
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // One chunk holds the report.
        body.lines().nth(1).unwrap_or("").to_owned()
    } else {
        body.to_owned()
    };
    let report: BulkReport =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    let last = report.results.last().unwrap();
    let error = last.error.as_ref().unwrap();
    assert_eq!(error.code, "time_limit", "{answer}");
    let applied = report.created as usize;
    assert!(applied >= 5 && applied < sent, "{applied} of {sent}");
    // What it reports as created is there.
    let client = server.client(&token);
    let listed = client
        .list_records(&items(), &ListRecords::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), applied);
}
