//! The change feed (`GET /v1/collections/{c}/records:watch`) through the binary: resuming
//! with `Last-Event-ID`, resync when a position cannot be resumed, a live move under a
//! watcher, revocation, deletion and re-creation, the per-tenant cap and shutdown, a reader
//! that falls behind (resync, never a silent gap). Rules,
//! hidden fields and neighbours on every model are in `tests/access/watch.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bulkhead_api::StartMove;
use bulkhead_client::{ClientError, FeedEvent, Watch};
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::Isolation;
use bulkhead_core::{KeyId, RecordId};
use common::{Server, create_tenant, items, key, put_items, tid};
use serde_json::json;

async fn next(watch: &mut Watch) -> FeedEvent {
    tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("no event within 20 s")
        .unwrap()
        .expect("the feed ended")
}

/// The next event other than `ready`.
async fn change(watch: &mut Watch) -> (String, String) {
    loop {
        let event = next(watch).await;
        if event.event != "ready" {
            return (
                event.event,
                event.data["id"].as_str().unwrap_or_default().to_owned(),
            );
        }
    }
}

fn ev(kind: &str, id: &str) -> (String, String) {
    (kind.to_owned(), id.to_owned())
}

fn rid(id: &str) -> RecordId {
    RecordId::parse(id).unwrap()
}

fn code(err: ClientError) -> (u16, String) {
    match err {
        ClientError::Api { status, code, .. } => (status, code),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_resumes_where_it_left_and_resyncs_what_it_cannot_resume() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    let acme = server.client(&key(&admin, "acme", TenantRole::Member).await);

    let mut feed = acme.watch(&items(), None, None).await.unwrap();
    assert_eq!(next(&mut feed).await.event, "ready");
    acme.create_record(&items(), &json!({"id": "r1", "title": "one", "n": 1}))
        .await
        .unwrap();
    let created = next(&mut feed).await;
    assert_eq!(created.event, "created");
    assert_eq!(created.data["title"], "one");
    assert_eq!(created.data["version"], 1);
    let after_r1 = created.id.clone().unwrap();
    drop(feed);

    // Written while nobody listens: kept for the retention.
    acme.create_record(&items(), &json!({"id": "r2", "title": "two", "n": 2}))
        .await
        .unwrap();
    acme.patch_record(&items(), &rid("r2"), &json!({"n": 3}), None)
        .await
        .unwrap();
    acme.delete_record(&items(), &rid("r1"), None)
        .await
        .unwrap();
    let mut resumed = acme.watch(&items(), None, Some(&after_r1)).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(change(&mut resumed).await);
    }
    assert_eq!(
        got,
        [
            ev("created", "r2"),
            ev("updated", "r2"),
            ev("deleted", "r1")
        ]
    );
    drop(resumed);

    // What cannot be a position, a filter or a collection is refused before streaming.
    let bad = acme.watch(&items(), None, Some("yesterday")).await;
    assert_eq!(
        code(bad.err().unwrap()),
        (400, "invalid_last_event_id".into())
    );
    let bad = acme.watch(&items(), Some("n >"), None).await;
    assert_eq!(code(bad.err().unwrap()).0, 400);
    let bad = acme.watch(&items(), Some("secret = 1"), None).await;
    assert_eq!(code(bad.err().unwrap()).0, 400);
    let nothing = bulkhead_core::CollectionName::parse("nothing").unwrap();
    assert_eq!(
        code(acme.watch(&nothing, None, None).await.err().unwrap()).0,
        404
    );

    // A filter: a record changed out of it is removed from the watcher's view.
    let mut small = acme.watch(&items(), Some("n < 10"), None).await.unwrap();
    acme.create_record(&items(), &json!({"id": "r4", "title": "four", "n": 4}))
        .await
        .unwrap();
    acme.patch_record(&items(), &rid("r4"), &json!({"n": 40}), None)
        .await
        .unwrap();
    acme.create_record(&items(), &json!({"id": "r5", "title": "five", "n": 50}))
        .await
        .unwrap();
    acme.patch_record(&items(), &rid("r5"), &json!({"n": 5}), None)
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(change(&mut small).await);
    }
    assert_eq!(
        got,
        [
            ev("created", "r4"),
            ev("deleted", "r4"),
            ev("created", "r5")
        ]
    );
    drop(small);

    // A schema change while a feed is open: records with the new field arrive with it.
    let mut colored = acme.watch(&items(), None, None).await.unwrap();
    assert_eq!(next(&mut colored).await.event, "ready");
    let mut spec = common::items_spec();
    spec["fields"]["color"] = json!({"type": "string"});
    admin
        .put_collection(&items(), &serde_json::from_value(spec).unwrap())
        .await
        .unwrap();
    acme.create_record(
        &items(),
        &json!({"id": "r6", "title": "six", "color": "red"}),
    )
    .await
    .unwrap();
    let six = next(&mut colored).await;
    assert_eq!(
        (six.event.as_str(), &six.data["color"]),
        ("created", &json!("red"))
    );
    drop(colored);

    // After a crash the position belongs to another process: resync, then live events.
    server.kill_hard();
    let server = Server::start(dir.path());
    let acme = server.client(&key(&server.admin(), "acme", TenantRole::Member).await);
    let mut after_restart = acme.watch(&items(), None, Some(&after_r1)).await.unwrap();
    let first = next(&mut after_restart).await;
    assert_eq!(first.event, "resync");
    assert_eq!(first.data["reason"], "unknown_position");
    acme.create_record(&items(), &json!({"id": "r3", "title": "three", "n": 3}))
        .await
        .unwrap();
    assert_eq!(change(&mut after_restart).await, ev("created", "r3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_follows_its_tenant_through_live_moves() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_MOVE_DRAIN_GRACE_MS", "200")]);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    create_tenant(&admin, "globex", "free").await;
    let acme = server.client(&key(&admin, "acme", TenantRole::Member).await);
    let globex = server.client(&key(&admin, "globex", TenantRole::Member).await);
    let mut feed = acme.watch(&items(), None, None).await.unwrap();
    let mut neighbour = globex.watch(&items(), None, None).await.unwrap();

    // A writer creates records one after another while the tenant moves pool → silo →
    // bridge; the feed must carry each acknowledged write exactly once.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (acme, stop) = (acme.clone(), stop.clone());
        tokio::spawn(async move {
            let mut written = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("w{i:06}");
                i += 1;
                match acme
                    .create_record(&items(), &json!({"id": id, "title": "moving", "n": i}))
                    .await
                {
                    Ok(_) => written.push(id),
                    // Held past the freeze bound: nothing applied, so no event either.
                    Err(ClientError::Api { status: 503, .. }) => {}
                    Err(e) => panic!("write {id}: {e}"),
                }
            }
            written
        })
    };
    // Some records first, so each move has something to copy.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for to in [Isolation::Silo, Isolation::Bridge] {
        let view = admin
            .start_move(
                &tid("acme"),
                &StartMove {
                    isolation: Some(to),
                    domain: None,
                    incarnation: None,
                },
            )
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let now = admin.get_move(&view.id).await.unwrap();
            if now.phase.is_final() {
                assert_eq!(now.phase.to_string(), "done", "{now:?}");
                break;
            }
            assert!(Instant::now() < deadline, "move stuck: {now:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(written.len() > 100, "the writer wrote {}", written.len());
    eprintln!("{} writes during two moves", written.len());
    acme.create_record(&items(), &json!({"id": "zz-end", "title": "end", "n": 0}))
        .await
        .unwrap();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    loop {
        let (kind, id) = change(&mut feed).await;
        assert_eq!(kind, "created", "{id}");
        if id == "zz-end" {
            break;
        }
        *seen.entry(id).or_default() += 1;
    }
    let expected: BTreeMap<String, u32> = written.into_iter().map(|id| (id, 1)).collect();
    assert_eq!(seen.len(), expected.len(), "every acknowledged write, once");
    assert_eq!(seen, expected);
    // The neighbour heard nothing of it.
    globex
        .create_record(&items(), &json!({"id": "g-end", "title": "end", "n": 0}))
        .await
        .unwrap();
    assert_eq!(change(&mut neighbour).await, ev("created", "g-end"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_deletion_and_re_creation_end_a_feed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "standard").await;
    let revoked = key(&admin, "acme", TenantRole::Member).await;
    let kept = key(&admin, "acme", TenantRole::Member).await;
    let mut doomed = server
        .client(&revoked)
        .watch(&items(), None, None)
        .await
        .unwrap();
    let mut feed = server
        .client(&kept)
        .watch(&items(), None, None)
        .await
        .unwrap();
    assert_eq!(next(&mut doomed).await.event, "ready");

    let key_id = KeyId::parse(revoked.split('_').nth(1).unwrap()).unwrap();
    admin.revoke_key(&tid("acme"), &key_id).await.unwrap();
    let revoked_at = Instant::now();
    // Writes after the revocation may arrive until the feed's next check, never after it.
    let closed = loop {
        let event = next(&mut doomed).await;
        if event.event == "closed" {
            break event;
        }
    };
    assert!(
        revoked_at.elapsed() < Duration::from_secs(8),
        "a revoked key's feed ended after {:?}",
        revoked_at.elapsed()
    );
    assert_eq!(
        closed.data["error"]["code"], "invalid_credentials",
        "{closed:?}"
    );
    assert!(
        doomed.next().await.unwrap().is_none(),
        "nothing after closed"
    );

    // Deletion ends the other; the tenant re-created under the same id is another life.
    assert_eq!(next(&mut feed).await.event, "ready");
    admin.delete_tenant(&tid("acme")).await.unwrap();
    create_tenant(&admin, "acme", "standard").await;
    let reborn = server.client(&key(&admin, "acme", TenantRole::Member).await);
    let mut new_feed = reborn.watch(&items(), None, None).await.unwrap();
    reborn
        .create_record(
            &items(),
            &json!({"id": "new-life", "title": "hello", "n": 1}),
        )
        .await
        .unwrap();
    let ended = next(&mut feed).await;
    assert_eq!(ended.event, "closed", "the old life's feed saw {ended:?}");
    assert_eq!(change(&mut new_feed).await, ev("created", "new-life"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_are_capped_per_tenant_and_end_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), &[("BULKHEAD_MAX_WATCHERS_PER_TENANT", "2")]);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    create_tenant(&admin, "globex", "free").await;
    let acme = server.client(&key(&admin, "acme", TenantRole::Member).await);
    let globex = server.client(&key(&admin, "globex", TenantRole::Member).await);
    let first = acme.watch(&items(), None, None).await.unwrap();
    let mut second = acme.watch(&items(), None, None).await.unwrap();
    let refused = acme.watch(&items(), None, None).await;
    assert_eq!(
        code(refused.err().unwrap()),
        (429, "too_many_watchers".into())
    );
    let mut theirs = globex.watch(&items(), None, None).await.unwrap();
    assert_eq!(next(&mut theirs).await.event, "ready");

    // A feed the client closed gives its place back.
    drop(first);
    let dropped = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    let _again = loop {
        match acme.watch(&items(), None, None).await {
            Ok(feed) => break feed,
            Err(e) => {
                assert_eq!(code(e).1, "too_many_watchers");
                assert!(
                    Instant::now() < deadline,
                    "the closed feed's place never came back"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    eprintln!(
        "a closed feed's place came back after {:?}",
        dropped.elapsed()
    );
    // Open feeds do not hold a shutdown: each ends with `closed`.
    assert_eq!(next(&mut second).await.event, "ready");
    let stopping = Instant::now();
    server.stop();
    assert!(stopping.elapsed() < Duration::from_secs(10));
    let last = second.next().await;
    if let Ok(Some(event)) = last {
        assert_eq!(event.event, "closed");
        assert_eq!(event.data["error"]["code"], "server_closing");
    }
}

/// A client that stops reading while its tenant writes far more than the feed keeps: when it
/// reads again it gets `resync` (then live events), never a silent gap. With a buffer of 64
/// events and 20,000 writes of 1 KB (20 MB of events), the socket buffers cannot hide the lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_falls_behind_is_told_to_resync() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_WATCH_BUFFER", "64")]);
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    let token = key(&admin, "acme", TenantRole::Member).await;
    let acme = server.client(&token);

    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(
            format!(
                "GET /v1/collections/items/records:watch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut parser = bulkhead_client::SseParser::default();
    let mut events = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // Until `ready`, then stop reading.
    while !events
        .iter()
        .any(|e: &bulkhead_client::SseEvent| e.event == "ready")
    {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0);
        events.extend(parser.push(&buf[..n]));
    }
    for round in 0..20 {
        let lines: String = (0..1_000)
            .map(|i| {
                format!(
                    "{}\n",
                    json!({"id": format!("r{round:02}-{i:04}"), "title": "x".repeat(1_000)})
                )
            })
            .collect();
        let report = acme.bulk(&items(), lines.into_bytes(), true).await.unwrap();
        assert_eq!(report.failed, 0);
    }
    acme.create_record(&items(), &json!({"id": "zz-end", "title": "end"}))
        .await
        .unwrap();
    // Read again: either every event, or a resync before the end; never a silent gap.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
            .await
            .expect("the feed went silent")
            .unwrap();
        assert!(n > 0, "the feed ended");
        events.extend(parser.push(&buf[..n]));
        if events.iter().any(|e| e.data.contains("zz-end")) {
            break;
        }
        assert!(Instant::now() < deadline);
    }
    let created = events.iter().filter(|e| e.event == "created").count();
    let resynced = events
        .iter()
        .any(|e| e.event == "resync" && e.data.contains("lagged"));
    assert!(
        resynced || created == 20_001,
        "{created} created events and no resync: events were lost silently"
    );
    assert!(
        resynced,
        "20,000 writes against a buffer of 64 must lag ({created} created)"
    );
    // After the resync the feed goes on live.
    acme.create_record(&items(), &json!({"id": "zz-after", "title": "after"}))
        .await
        .unwrap();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
            .await
            .expect("the feed went silent after its resync")
            .unwrap();
        assert!(n > 0);
        if parser
            .push(&buf[..n])
            .iter()
            .any(|e| e.data.contains("zz-after"))
        {
            break;
        }
    }
}
