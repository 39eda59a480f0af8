//! OpenTelemetry traces: with `--otlp-endpoint` the server exports its spans over OTLP/HTTP
//! (JSON) to a collector — here a small receiver in the test. A request carrying a W3C
//! `traceparent` continues the caller's trace: its span has the caller's trace id and span
//! as parent, and the tenant as an attribute; its authentication and engine call are its
//! children.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bulkhead_core::access::TenantRole;
use common::{Server, create_tenant, items, key, put_items};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An OTLP/HTTP receiver: keeps each request body (JSON) and answers 200.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&got);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() < length {
                        continue;
                    }
                    if let Ok(value) = serde_json::from_str::<Value>(&body[..length]) {
                        seen.lock().push(value);
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
                        .await;
                    buf.clear();
                }
            });
        }
    });
    (url, got)
}

/// Every span received: (trace id, span id, parent span id, name, attributes).
fn spans(got: &[Value]) -> Vec<(String, String, String, String, Value)> {
    let mut out = Vec::new();
    for export in got {
        for rs in export["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let text = |k: &str| s[k].as_str().unwrap_or("").to_lowercase();
                    out.push((
                        text("traceId"),
                        text("spanId"),
                        text("parentSpanId"),
                        text("name"),
                        s["attributes"].clone(),
                    ));
                }
            }
        }
    }
    out
}

fn attribute(attributes: &Value, key: &str) -> Option<String> {
    attributes.as_array()?.iter().find_map(|a| {
        (a["key"] == key).then(|| a["value"]["stringValue"].as_str().map(str::to_owned))?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requests_spans_continue_the_callers_trace_with_the_tenant() {
    let (endpoint, got) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            ("BULKHEAD_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("BULKHEAD_LOG", "info"),
        ],
    );
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "traced", "free").await;
    let token = key(&admin, "traced", TenantRole::Member).await;
    let created = server
        .client(&token)
        .create_record(&items(), &json!({"id": "r1", "title": "t"}))
        .await
        .unwrap();
    assert_eq!(created["id"], "r1");

    // A get by id with a caller's trace context, sent by hand.
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "GET /v1/collections/items/records/r1 HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {token}\r\n\
         traceparent: 00-{trace}-{parent}-01\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (request_span, children) = loop {
        let all = spans(&got.lock());
        let request = all
            .iter()
            .find(|s| s.0 == trace && s.3 == "request" && s.2 == parent)
            .cloned();
        if let Some(request) = request {
            let children: Vec<String> = all
                .iter()
                .filter(|s| s.0 == trace && s.2 == request.1)
                .map(|s| s.3.clone())
                .collect();
            if children.iter().any(|c| c == "engine") && children.iter().any(|c| c == "auth") {
                break (request, children);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no request span with the caller's parent and its children; got {:?}\n{}",
            all.iter().map(|s| (&s.0, &s.3, &s.2)).collect::<Vec<_>>(),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        attribute(&request_span.4, "tenant").as_deref(),
        Some("traced"),
        "{:?}",
        request_span.4
    );
    assert!(children.contains(&"auth".to_owned()) && children.contains(&"engine".to_owned()));
}
