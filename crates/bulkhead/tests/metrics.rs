//! `GET /metrics`: requests by route template, method, status class and isolation model;
//! the heaviest tenants each on their own and the rest as `_other`, so the number of series
//! stays bounded with 10,000 tenants; who may scrape (the metrics token, platform admins and
//! operators; not tenants, not anonymous callers); the separate metrics listener; and log
//! lines dropped, not requests held, when stderr's reader stops reading.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use bulkhead_client::Client;
use bulkhead_core::RecordId;
use bulkhead_core::access::TenantRole;
use common::{Server, create_tenant, items, key, put_items, tid};
use serde_json::json;

const TOKEN: &str = "metrics-token-0123456789";

/// The samples of an exposition: series (name and labels) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples.get(series).unwrap_or_else(|| {
        panic!(
            "no {series} in:\n{}",
            samples.keys().cloned().collect::<Vec<_>>().join("\n")
        )
    })
}

#[tokio::test]
async fn requests_by_route_and_model_and_the_heaviest_tenants_with_the_rest_as_other() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            ("BULKHEAD_METRICS_TOKEN", TOKEN),
            ("BULKHEAD_METRICS_TOP_TENANTS", "2"),
            ("BULKHEAD_METRICS_LISTEN", "127.0.0.1:0"),
        ],
    );
    let admin = server.admin();
    put_items(&admin).await;
    let mut clients = BTreeMap::new();
    for (t, tier) in [
        ("ta", "free"),
        ("tb", "standard"),
        ("tc", "premium"),
        ("td", "free"),
    ] {
        create_tenant(&admin, t, tier).await;
        clients.insert(t, server.client(&key(&admin, t, TenantRole::Member).await));
    }
    for (t, n) in [("ta", 5), ("tb", 4), ("tc", 3), ("td", 1)] {
        for i in 0..n {
            clients[t]
                .create_record(&items(), &json!({"title": format!("{t}{i}")}))
                .await
                .unwrap();
        }
    }
    let missing = clients["tc"]
        .get_record(&items(), &RecordId::parse("nope").unwrap())
        .await
        .unwrap_err();
    assert_eq!(missing.status(), Some(404));

    let text = server.client(TOKEN).metrics().await.unwrap();
    let s = samples(&text);
    let records = "/v1/collections/{collection}/records";
    for (model, n) in [("pool", 6.0), ("bridge", 4.0), ("silo", 3.0)] {
        let series = format!(
            "bulkhead_http_request_duration_seconds_count{{route=\"{records}\",method=\"POST\",status=\"2xx\",model=\"{model}\"}}"
        );
        assert_eq!(value(&s, &series), n, "{series}");
    }
    let not_found = format!(
        "bulkhead_http_request_duration_seconds_count{{route=\"{records}/{{id}}\",method=\"GET\",status=\"4xx\",model=\"silo\"}}"
    );
    assert_eq!(value(&s, &not_found), 1.0);
    // Ids never become labels: only route templates.
    assert!(!text.contains("nope") && !text.contains("ta0"), "{text}");
    // The two heaviest on their own; c and d together.
    let requests = |t: &str| {
        value(
            &s,
            &format!("bulkhead_tenant_requests_total{{tenant=\"{t}\"}}"),
        )
    };
    assert_eq!(requests("ta"), 5.0);
    assert_eq!(requests("tb"), 4.0);
    assert_eq!(requests("_other"), 5.0, "tc (3 and a 404) and td (1)");
    assert!(
        !s.keys()
            .any(|k| k.contains("tenant=\"tc\"") || k.contains("tenant=\"td\""))
    );
    assert_eq!(
        value(&s, "bulkhead_tenant_records_written_total{tenant=\"ta\"}"),
        5.0
    );
    assert_eq!(value(&s, "bulkhead_tenant_series"), 3.0);
    assert!(
        s.keys()
            .any(|k| k.starts_with("bulkhead_engine_open_handles{domain=\"local\""))
    );
    // Six single-record writes left the pool's search index in six segments: once the
    // pool file has been quiet for a second, the search upkeep merges it (docs/query.md).
    let merges = |s: &BTreeMap<String, f64>| {
        s.iter()
            .filter(|(k, _)| k.starts_with("bulkhead_engine_search_merges_total{domain=\"local\""))
            .map(|(_, v)| *v)
            .sum::<f64>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = server.client(TOKEN).metrics().await.unwrap();
        if merges(&samples(&text)) >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no search merge counted within 20 s: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(s.contains_key("bulkhead_audit_queue_depth"));
    assert_eq!(value(&s, "bulkhead_watchers"), 0.0);

    // Open change feeds: two on one tenant's collection share one stream.
    let _one = clients["ta"].watch(&items(), None, None).await.unwrap();
    let _two = clients["ta"]
        .watch(&items(), Some("n > 1"), None)
        .await
        .unwrap();
    let s = samples(&server.client(TOKEN).metrics().await.unwrap());
    assert_eq!(value(&s, "bulkhead_watchers"), 2.0);
    assert_eq!(value(&s, "bulkhead_feed_streams"), 1.0);

    // Who may scrape.
    assert!(admin.metrics().await.is_ok(), "platform admins may");
    let anonymous = server.client("").metrics().await.unwrap_err();
    assert_eq!(anonymous.status(), Some(401));
    let tenant = clients["ta"].metrics().await.unwrap_err();
    assert_eq!(tenant.status(), Some(403));
    let wrong = server
        .client("metrics-token-wrong")
        .metrics()
        .await
        .unwrap_err();
    assert_eq!(wrong.status(), Some(401));

    // The separate listener: only /metrics, behind the token.
    let log = server.log();
    let url = log
        .split("bulkhead metrics on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .trim_end_matches("/metrics")
        .to_owned();
    let separate = Client::new(&url, TOKEN).unwrap().metrics().await.unwrap();
    assert!(separate.contains("bulkhead_tenant_requests_total"));
    assert_eq!(
        Client::new(&url, "")
            .unwrap()
            .metrics()
            .await
            .unwrap_err()
            .status(),
        Some(401)
    );
    assert!(
        Client::new(&url, TOKEN)
            .unwrap()
            .list_tenants(None, None)
            .await
            .is_err(),
        "the metrics listener serves nothing else"
    );
}

/// Bound on the exposition's samples with any number of tenants and the default top of 50:
/// the request histograms of the routes used, 51 rows of each per-tenant family, and a few
/// dozen others.
const SAMPLE_BOUND: usize = 1_500;

#[tokio::test]
async fn with_ten_thousand_tenants_the_series_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_METRICS_TOKEN", TOKEN)]);
    let admin = server.admin();
    put_items(&admin).await;
    let n = 10_000;
    // Sixteen workers take the next tenant number until all are done.
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (admin, next) = (admin.clone(), std::sync::Arc::clone(&next));
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let t = format!("t{i:05}");
                create_tenant(&admin, &t, "free").await;
                // One data request each, as the platform admin naming the tenant.
                let err = admin
                    .with_tenant(tid(&t))
                    .get_record(&items(), &RecordId::parse("r").unwrap())
                    .await
                    .unwrap_err();
                assert_eq!(err.status(), Some(404));
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.unwrap();
    }
    let text = server.client(TOKEN).metrics().await.unwrap();
    let s = samples(&text);
    assert_eq!(
        value(&s, "bulkhead_tenant_series"),
        51.0,
        "50 tenants and _other"
    );
    let total: f64 = s
        .iter()
        .filter(|(k, _)| k.starts_with("bulkhead_tenant_requests_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, n as f64, "every request is in some series");
    assert!(
        s.len() <= SAMPLE_BOUND,
        "{} samples with {n} tenants (bound {SAMPLE_BOUND})",
        s.len()
    );
    eprintln!("{} samples, {} bytes with {n} tenants", s.len(), text.len());
}

/// A server whose stderr nobody reads (a full pipe: a stalled log shipper, `bulkhead serve 2>&1
/// | a-reader-that-stopped`) keeps answering: its log lines wait in a bounded buffer, then are
/// dropped and counted, never holding a request; once the reader is back it is told how many
/// it missed. Before, every request stopped at its log line as soon as the pipe's 64 KiB were
/// full, about 360 requests in, and the server answered nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_log_reader_holds_no_request_and_its_missed_lines_are_counted() {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    /// Killed however the test ends.
    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Command::new(common::binary())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("BULKHEAD_ADMIN_KEY", common::ADMIN_KEY)
        // A line for every request.
        .env("BULKHEAD_LOG", "info")
        .env_remove("BULKHEAD_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Held open and not read until the end: the pipe fills and stays full.
    let mut stderr = child.stderr.take().unwrap();
    let _running = Running(child);
    let admin = Client::new(&url, common::ADMIN_KEY).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while admin.health().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // More lines than the buffer holds (`bulkhead::logging::BUFFERED_LINES`), each request
    // with a deadline of its own.
    let requests = bulkhead::logging::BUFFERED_LINES + 4_000;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (admin, next) = (admin.clone(), std::sync::Arc::clone(&next));
        workers.spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                tokio::time::timeout(Duration::from_secs(10), admin.health())
                    .await
                    .expect("a request was held by the log")
                    .unwrap();
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.unwrap();
    }
    let s = samples(&admin.metrics().await.unwrap());
    let dropped = value(&s, "bulkhead_log_lines_dropped_total");
    assert!(dropped > 0.0, "{dropped} lines dropped");
    // The reader comes back: the lines buffered arrive, then a warning naming the missed ones.
    let (lines, read) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 64 * 1024];
        let mut text = String::new();
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&chunk[..n]));
            if text.contains("log lines dropped") {
                let _ = lines.send(text);
                break;
            }
        }
    });
    let text = read
        .recv_timeout(Duration::from_secs(40))
        .expect("no warning about the dropped lines");
    let warning = text
        .lines()
        .find(|l| l.contains("log lines dropped"))
        .unwrap();
    assert!(
        warning.contains("WARN") && warning.contains("total="),
        "{warning}"
    );
    assert!(
        text.matches("request done").count() >= bulkhead::logging::BUFFERED_LINES / 2,
        "the buffered lines were written once the reader was back"
    );
}

/// Each request's log line names its tenant once, however many times the request looks it
/// up (a bulk request resolves its tenant for its quota, its chunks and its answer).
#[tokio::test]
async fn a_request_log_line_names_its_tenant_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_LOG", "info")]);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    let acme = server.client(&key(&admin, "acme", TenantRole::Member).await);
    let body: String = (0..1_000)
        .map(|i| format!("{{\"title\": \"t{i}\"}}\n"))
        .collect();
    let report = acme.bulk(&items(), body.into_bytes(), true).await.unwrap();
    assert_eq!(report.created, 1_000);
    let id = RecordId::parse("missing").unwrap();
    assert!(acme.get_record(&items(), &id).await.is_err());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = server.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("request done") && l.contains("/v1/collections/items/"))
            .collect();
        if lines.len() >= 2 {
            for line in lines {
                assert_eq!(line.matches("tenant=\"acme\"").count(), 1, "{line}");
            }
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no request lines in the log:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
