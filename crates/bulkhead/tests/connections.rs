//! Stalled and excess connections cannot take the server down: 2,000 connections that send
//! half a request head, from one client, while a normal client keeps working; the stalled
//! ones are closed after the header timeout, those beyond the cap at once, and an idle
//! keep-alive connection after the same timeout.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bulkhead_client::ListRecords;
use bulkhead_core::access::TenantRole;
use common::{Server, create_tenant, items, key, put_items};

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // A 408 or similar before closing is fine; keep reading to the end.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_excess_connections_cannot_take_the_server_down() {
    // Room for our own 2,000 sockets.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            ("BULKHEAD_HEADER_TIMEOUT_SECS", "3"),
            ("BULKHEAD_MAX_CONNECTIONS", "1000"),
        ],
    );
    let pid = server.child.id();
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    let acme = server.client(&key(&admin, "acme", TenantRole::Member).await);
    let baseline_fds = open_fds(pid);

    let sample = |label: &'static str| {
        let acme = acme.clone();
        let admin = admin.clone();
        async move {
            let mut took = Vec::new();
            for _ in 0..100 {
                let start = Instant::now();
                admin.health().await.unwrap();
                acme.list_records(&items(), &ListRecords::default())
                    .await
                    .unwrap();
                took.push(start.elapsed());
            }
            took.sort();
            let p99 = took[98];
            eprintln!("{label}: p99 {p99:?}");
            p99
        }
    };
    let idle_p99 = sample("idle").await;

    // The normal client's connections stay in use while the stalled ones are opened (which
    // can take longer than the 3 s idle timeout on a busy machine): once the cap is full, a
    // new connection is closed at accept, so the client must not lose the ones it has.
    let warm = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let keep_warm = {
        let (acme, admin, warm) = (acme.clone(), admin.clone(), warm.clone());
        tokio::spawn(async move {
            while warm.load(std::sync::atomic::Ordering::Relaxed) {
                admin.health().await.unwrap();
                acme.list_records(&items(), &ListRecords::default())
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let addr = server.url.trim_start_matches("http://").to_owned();
    let stalled: Vec<TcpStream> = tokio::task::spawn_blocking(move || {
        (0..2000)
            .filter_map(|_| {
                let mut s = TcpStream::connect(&addr).ok()?;
                // Half a head: never the blank line that ends it.
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1");
                Some(s)
            })
            .collect()
    })
    .await
    .unwrap();
    warm.store(false, std::sync::atomic::Ordering::Relaxed);
    keep_warm
        .await
        .expect("the normal client kept working while the stalled connections opened");
    assert!(stalled.len() >= 1900, "opened {}", stalled.len());
    // The normal client keeps working while they are open.
    let loaded_p99 = sample("with 2,000 stalled connections").await;
    eprintln!(
        "p99 ratio with stalled connections: {:.2}",
        loaded_p99.as_secs_f64() / idle_p99.as_secs_f64()
    );
    // The cap holds: the server keeps at most its maximum open, whatever was asked.
    let during = open_fds(pid);
    assert!(
        during <= baseline_fds + 1000 + 16,
        "server holds {during} fds (baseline {baseline_fds}, cap 1000)"
    );

    // After the header timeout, every stalled connection has been closed by the server.
    let mut stalled = stalled;
    let total = stalled.len();
    let closed = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut closed = 0;
        for s in &mut stalled {
            let left = deadline.saturating_duration_since(Instant::now());
            if closed_by_server(s, left.max(Duration::from_millis(1))) {
                closed += 1;
            }
        }
        closed
    })
    .await
    .unwrap();
    assert_eq!(
        closed, total,
        "every stalled connection was closed by the server"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_fds(pid) > baseline_fds + 16 {
        assert!(
            Instant::now() < deadline,
            "server still holds {} fds (baseline {baseline_fds})",
            open_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An idle keep-alive connection is closed after the same timeout.
    let addr = server.url.trim_start_matches("http://").to_owned();
    let idle_closed = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        let start = Instant::now();
        let closed = closed_by_server(&mut s, Duration::from_secs(10));
        (closed, start.elapsed())
    })
    .await
    .unwrap();
    assert!(idle_closed.0, "idle keep-alive connection closed");
    assert!(
        idle_closed.1 >= Duration::from_secs(2),
        "closed only after the timeout: {:?}",
        idle_closed.1
    );
    // And the server still serves.
    acme.list_records(&items(), &ListRecords::default())
        .await
        .unwrap();
}

/// Request bodies in flight share a server-wide memory budget, counted as their bytes
/// arrive: clients that send large bodies slowly cannot make the server hold more than it,
/// and one more body gets `503 busy` while requests without a body go on; clients that only
/// declare large bodies and stall hold nothing, so they cannot keep other tenants' writes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_in_flight_share_a_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            ("BULKHEAD_BODY_BUDGET", "2097152"),
            ("BULKHEAD_BODY_LIMIT", "1048576"),
        ],
    );
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    create_tenant(&admin, "globex", "free").await;
    let token = key(&admin, "acme", TenantRole::Member).await;
    let acme = server.client(&token);
    let globex = server.client(&key(&admin, "globex", TenantRole::Member).await);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let head = |s: &mut TcpStream| {
        write!(
            s,
            "POST /v1/collections/items/records HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Content-Length: 1048576\r\n\r\n{{\"title\": \""
        )
        .unwrap();
    };
    // A hundred uploads that declare a whole body limit each and stall after their head:
    // they hold nothing, and another tenant's write goes through.
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            head(&mut s);
            s
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    globex
        .create_record(&items(), &serde_json::json!({"title": "not kept out"}))
        .await
        .unwrap();
    drop(idle);
    // Two uploads that send most of a body limit each, then stall.
    let stalled: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            head(&mut s);
            s.write_all(&vec![b'x'; 1_000_000]).unwrap();
            s
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = acme
        .create_record(&items(), &serde_json::json!({"title": "x".repeat(200_000)}))
        .await
        .unwrap_err();
    assert_eq!(
        (busy.status(), busy.code()),
        (Some(503), Some("busy")),
        "{busy}"
    );
    // No body: not counted.
    acme.list_records(&items(), &ListRecords::default())
        .await
        .unwrap();
    drop(stalled);
    // Once they are gone, their share of the budget is back.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match acme
            .create_record(&items(), &serde_json::json!({"title": "x".repeat(200_000)}))
            .await
        {
            Ok(_) => break,
            Err(e) if e.code() == Some("busy") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Requests refused below the router get a whole answer — their status, an empty body and
/// `Connection: close` — and the connection is closed; the server goes on serving.
#[tokio::test]
async fn requests_refused_below_the_router_get_a_whole_answer_then_a_closed_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let addr = server.url.trim_start_matches("http://").to_owned();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            [
                b"GET /".as_slice(),
                &vec![b'a'; 100_000],
                b" HTTP/1.1\r\nHost: x\r\n\r\n",
            ]
            .concat(),
            // A URI that long is also a head over the limit: 431 (or 414).
            "414|431",
        ),
        (
            [
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".as_slice(),
                &vec![b'a'; 100_000],
                b"\r\n\r\n",
            ]
            .concat(),
            "431",
        ),
        (
            (0..200)
                .flat_map(|i| format!("X-H{i}: v\r\n").into_bytes())
                .chain(b"\r\n".iter().copied())
                .fold(
                    b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec(),
                    |mut v, b| {
                        v.push(b);
                        v
                    },
                ),
            "431",
        ),
        (b"GARBAGE\r\n\r\n".to_vec(), "400"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
            "400",
        ),
    ];
    for (request, status) in cases {
        let addr = addr.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(&addr).unwrap();
            let _ = s.write_all(&request);
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
        .await
        .unwrap();
        assert!(
            status
                .split('|')
                .any(|s| answer.starts_with(&format!("HTTP/1.1 {s}"))),
            "{status}: {answer}"
        );
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains("connection: close"), "{answer}");
        assert!(lower.contains("content-length: 0"), "{answer}");
    }
    server.admin().health().await.unwrap();
}

/// An HTTP/2 client with prior knowledge (its preface over plain TCP) gets HTTP/2's own
/// refusal: an empty SETTINGS frame, then GOAWAY with `HTTP_1_1_REQUIRED` (0xd), then the
/// connection closes. It used to be closed without a byte. HTTP/1.1 goes on as before.
#[tokio::test]
async fn an_http2_client_is_told_in_http2_to_use_http_1_1() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let addr = server.url.trim_start_matches("http://").to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        // The client's own SETTINGS frame, as a real client sends it.
        s.write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(answer.len() >= 9 + 9 + 8, "{answer:?}");
    // SETTINGS: empty, stream 0.
    assert_eq!(answer[..9], [0, 0, 0, 0x4, 0, 0, 0, 0, 0], "{answer:?}");
    // GOAWAY on stream 0: last stream 0, error code HTTP_1_1_REQUIRED.
    let goaway = &answer[9..];
    let length = usize::from(goaway[1]) << 8 | usize::from(goaway[2]);
    assert_eq!((goaway[3], &goaway[5..9]), (0x7, &[0u8, 0, 0, 0][..]));
    assert_eq!(goaway.len(), 9 + length, "{answer:?}");
    assert_eq!(goaway[9..17], [0, 0, 0, 0, 0, 0, 0, 0xd], "{answer:?}");
    server.admin().health().await.unwrap();
}

/// A connection that has sent nothing yet does not hold up a graceful shutdown: it is closed
/// at once, as one waiting for its next request is (it waited for the header timeout, 30 s).
#[tokio::test]
async fn a_silent_connection_does_not_hold_up_a_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut silent = TcpStream::connect(&addr).unwrap();
    // The server has accepted it (an answered request on another connection comes after).
    server.admin().health().await.unwrap();
    let asked = Instant::now();
    server.stop();
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    assert!(closed_by_server(&mut silent, Duration::from_secs(5)));
}
