//! Storage quotas: a tier's `max_records` refuses what would pass it with `507
//! quota_exceeded` naming the limit and the use — a single write, concurrent writes (which
//! never pass it together), a bulk (only the lines past it fail; an upsert of a record that
//! exists adds none, as a `PUT` of it adds none) — in every model, while
//! reads and deletes go on. The count is exact without a count per write: after `kill -9`
//! during ingest, after a restart and after a move it equals a real count.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bulkhead_api::{AggregateRequest, QuotaView, StartMove};
use bulkhead_client::Client;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{Isolation, MovePhase, TierLimits};
use bulkhead_core::{RecordId, TierName};
use common::{Server, create_tenant, items, key, put_items, tid};
use serde_json::json;

/// Changes an existing tier's limits.
async fn set_limits(admin: &Client, tier: &str, change: impl FnOnce(&mut TierLimits)) {
    let name = TierName::parse(tier).unwrap();
    let mut spec = admin
        .list_tiers()
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|t| t.name == name)
        .unwrap()
        .spec;
    change(&mut spec.limits);
    admin.put_tier(&name, &spec).await.unwrap();
}

async fn cap(admin: &Client, tier: &str, max_records: u64) {
    set_limits(admin, tier, |l| l.max_records = Some(max_records)).await;
}

async fn cap_bytes(admin: &Client, max_bytes: u64) {
    set_limits(admin, "premium", |l| l.max_bytes = Some(max_bytes)).await;
}

/// A real count of the tenant's records.
async fn real_count(client: &Client) -> u64 {
    let request: AggregateRequest =
        serde_json::from_value(json!({"metrics": [{"op": "count"}]})).unwrap();
    let page = client.aggregate(&items(), &request).await.unwrap();
    page.groups[0]["count"].as_u64().unwrap()
}

async fn quota(client: &Client) -> QuotaView {
    client.quota().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_past_max_records_are_refused_in_every_model_and_reads_and_deletes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    for (tier, model) in [
        ("free", Isolation::Pool),
        ("standard", Isolation::Bridge),
        ("premium", Isolation::Silo),
    ] {
        cap(&admin, tier, 10).await;
        let t = format!("capped-{model}");
        create_tenant(&admin, &t, tier).await;
        let client = server.client(&key(&admin, &t, TenantRole::Member).await);
        for i in 0..6 {
            client
                .create_record(&items(), &json!({"id": format!("r{i}"), "title": "x"}))
                .await
                .unwrap();
        }
        // A bulk of 8 creates with room for 4: lines 5 to 8 fail alone, in their place.
        let body: Vec<u8> = (0..8)
            .flat_map(|i| format!("{{\"id\":\"b{i}\",\"title\":\"y\"}}\n").into_bytes())
            .collect();
        let report = client.bulk(&items(), body, false).await.unwrap();
        assert_eq!(report.created, 4, "{model}: {report:?}");
        let statuses: Vec<u16> = report.results.iter().map(|l| l.status).collect();
        assert_eq!(
            statuses,
            [201, 201, 201, 201, 507, 507, 507, 507],
            "{model}"
        );
        let line = &report.results[4];
        assert_eq!(
            line.error.as_ref().unwrap().code,
            "quota_exceeded",
            "{model}"
        );
        // A single create past it names the limit and the use.
        let refused = client
            .create_record(&items(), &json!({"title": "z"}))
            .await
            .unwrap_err();
        assert_eq!(
            (refused.status(), refused.code()),
            (Some(507), Some("quota_exceeded")),
            "{model}"
        );
        let message = refused.to_string();
        assert!(
            message.contains("10 records") && message.contains("uses 10"),
            "{message}"
        );
        // Reads and deletes go on; a delete makes room.
        assert_eq!(real_count(&client).await, 10, "{model}");
        client
            .get_record(&items(), &RecordId::parse("r0").unwrap())
            .await
            .unwrap();
        for i in 0..5 {
            client
                .delete_record(&items(), &RecordId::parse(&format!("r{i}")).unwrap(), None)
                .await
                .unwrap();
        }
        assert_eq!(quota(&client).await.records, 5, "{model}");
        // Twenty at once with room for five: exactly five land.
        let mut tasks = Vec::new();
        for i in 0..20 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                client
                    .create_record(&items(), &json!({"id": format!("c{i}"), "title": "c"}))
                    .await
            }));
        }
        let mut landed = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => landed += 1,
                Err(e) => assert_eq!(e.code(), Some("quota_exceeded"), "{model}: {e}"),
            }
        }
        assert_eq!(landed, 5, "{model}");
        let view = quota(&client).await;
        assert_eq!((view.records, view.max_records), (10, Some(10)), "{model}");
        assert_eq!(real_count(&client).await, 10, "{model}");
        // At the limit, a bulk upsert of records that exist replaces them (as a `PUT` of
        // them does); one of a record that does not exist fails alone, as often as named.
        let upserts = |lines: &[&str]| -> Vec<u8> {
            lines
                .iter()
                .flat_map(|id| {
                    format!(
                        "{{\"op\":\"upsert\",\"id\":\"{id}\",\"record\":{{\"title\":\"u\"}}}}\n"
                    )
                    .into_bytes()
                })
                .collect()
        };
        let report = client
            .bulk(&items(), upserts(&["r5", "new1", "b0", "new1"]), false)
            .await
            .unwrap();
        let statuses: Vec<u16> = report.results.iter().map(|l| l.status).collect();
        assert_eq!(statuses, [200, 507, 200, 507], "{model}: {report:?}");
        // With room for one: the first new record lands, its second line replaces it, the
        // next new one fails.
        client
            .delete_record(&items(), &RecordId::parse("r5").unwrap(), None)
            .await
            .unwrap();
        let report = client
            .bulk(&items(), upserts(&["b1", "m0", "m0", "m1"]), false)
            .await
            .unwrap();
        let statuses: Vec<u16> = report.results.iter().map(|l| l.status).collect();
        assert_eq!(statuses, [200, 201, 200, 507], "{model}: {report:?}");
        assert_eq!(real_count(&client).await, 10, "{model}");
        assert_eq!(quota(&client).await.records, 10, "{model}");
    }
    // Refusals are metered as quota refusals.
    let usage = admin
        .list_usage(&bulkhead_api::UsageQuery {
            tenant: Some(tid("capped-pool")),
            ..Default::default()
        })
        .await
        .unwrap();
    let refused: u64 = usage.items.iter().map(|p| p.refused.quota).sum();
    assert!(refused >= 16, "{usage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_count_is_exact_after_kill_dash_nine_during_ingest_and_after_a_move() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    cap(&admin, "free", 1_000_000).await;
    create_tenant(&admin, "ingester", "free").await;
    let token = key(&admin, "ingester", TenantRole::Member).await;
    let client = server.client(&token);
    // Bulk ingest until the server is killed under it.
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            for round in 0..1_000 {
                let body: Vec<u8> = (0..200)
                    .flat_map(|i| format!("{{\"title\":\"{round} {i}\"}}\n").into_bytes())
                    .collect();
                if client.bulk(&items(), body, true).await.is_err() {
                    return round;
                }
            }
            1_000
        })
    };
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.kill_hard();
    let rounds = writer.await.unwrap();
    assert!(
        rounds > 0 && rounds < 1_000,
        "the kill landed during ingest ({rounds})"
    );

    let server = Server::start(dir.path());
    let admin = server.admin();
    let client = server.client(&token);
    let real = real_count(&client).await;
    assert!(real > 0);
    assert_eq!(
        quota(&client).await.records,
        real,
        "exact after the restart"
    );
    for i in 0..7 {
        client
            .create_record(&items(), &json!({"title": format!("after {i}")}))
            .await
            .unwrap();
    }
    assert_eq!(quota(&client).await.records, real + 7);
    // A move keeps the count (it is the same records).
    let started = admin
        .start_move(
            &tid("ingester"),
            &StartMove {
                isolation: Some(Isolation::Silo),
                domain: None,
                incarnation: None,
            },
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let view = admin.get_move(&started.id).await.unwrap();
        if view.phase.is_final() {
            assert_eq!(view.phase, MovePhase::Done, "{view:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "move stuck: {view:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .create_record(&items(), &json!({"title": "after the move"}))
        .await
        .unwrap();
    assert_eq!(real_count(&client).await, real + 8);
    assert_eq!(
        quota(&client).await.records,
        real + 8,
        "exact after the move"
    );
    // A platform admin reads any tenant's, naming it.
    let named = admin.with_tenant(tid("ingester")).quota().await.unwrap();
    assert_eq!(named.records, real + 8);
}

#[tokio::test]
async fn past_max_bytes_writes_that_add_data_are_refused_and_deletes_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    cap_bytes(&admin, 1 << 40).await;
    create_tenant(&admin, "bulky", "premium").await;
    let client = server.client(&key(&admin, "bulky", TenantRole::Member).await);
    let body: Vec<u8> = (0..400)
        .flat_map(|i| {
            format!(
                "{{\"id\":\"r{i:03}\",\"title\":\"{}\"}}\n",
                "w".repeat(1_000)
            )
            .into_bytes()
        })
        .collect();
    assert_eq!(
        client.bulk(&items(), body, true).await.unwrap().created,
        400
    );
    admin.sample_storage(Some(&tid("bulky"))).await.unwrap();
    let full = quota(&client).await.bytes.unwrap();
    assert!(full >= 400_000, "{full}");
    // The tier now allows a little less than the tenant holds.
    let max = full - 1;
    cap_bytes(&admin, max).await;
    for write in [
        client
            .create_record(&items(), &json!({"title": "more"}))
            .await
            .map(drop),
        client
            .patch_record(
                &items(),
                &RecordId::parse("r001").unwrap(),
                &json!({"title": "longer"}),
                None,
            )
            .await
            .map(drop),
    ] {
        let e = write.unwrap_err();
        assert_eq!(e.code(), Some("quota_exceeded"), "{e}");
        assert!(e.to_string().contains(&format!("{max} bytes")), "{e}");
    }
    // A bulk upsert of a record that exists is refused too, as its patch is, also when the
    // tier's record limit leaves no room either (then which upserts replace is not asked).
    set_limits(&admin, "premium", |l| l.max_records = Some(400)).await;
    let upsert = b"{\"op\":\"upsert\",\"id\":\"r001\",\"record\":{\"title\":\"u\"}}\n".to_vec();
    let report = client.bulk(&items(), upsert, false).await.unwrap();
    assert_eq!(report.results[0].status, 507, "{report:?}");
    set_limits(&admin, "premium", |l| l.max_records = None).await;
    // Deletes go on, and make room: at once by the estimate, exactly at the next sample.
    for i in 0..300 {
        client
            .delete_record(
                &items(),
                &RecordId::parse(&format!("r{i:03}")).unwrap(),
                None,
            )
            .await
            .unwrap();
    }
    client
        .create_record(&items(), &json!({"title": "fits again"}))
        .await
        .unwrap();
    admin.sample_storage(Some(&tid("bulky"))).await.unwrap();
    let after = quota(&client).await.bytes.unwrap();
    assert!(
        after < max,
        "{after} bytes after deleting three quarters, {full} before"
    );
}

#[tokio::test]
async fn a_tenant_created_again_starts_with_an_empty_count_and_no_sample_of_its_old_life() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    cap(&admin, "free", 100).await;
    create_tenant(&admin, "again", "free").await;
    let client = server.client(&key(&admin, "again", TenantRole::Member).await);
    for i in 0..30 {
        client
            .create_record(&items(), &json!({"title": format!("old {i}")}))
            .await
            .unwrap();
    }
    admin.sample_storage(Some(&tid("again"))).await.unwrap();
    assert_eq!(quota(&client).await.records, 30);
    admin.delete_tenant(&tid("again")).await.unwrap();
    create_tenant(&admin, "again", "free").await;
    let client = server.client(&key(&admin, "again", TenantRole::Member).await);
    let fresh = quota(&client).await;
    assert_eq!((fresh.records, fresh.bytes), (0, None), "{fresh:?}");
    // The new life has its full allowance.
    let body: Vec<u8> = (0..100)
        .flat_map(|i| format!("{{\"title\":\"new {i}\"}}\n").into_bytes())
        .collect();
    assert_eq!(
        client.bulk(&items(), body, true).await.unwrap().created,
        100
    );
}

/// A count read while the tier sets no quota is not kept: writes then go uncounted, so when
/// the tier (or the tenant's tier) gains a `max_records`, the count is made again and the
/// limit holds.
#[tokio::test]
async fn a_quota_added_later_holds_whatever_was_written_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    create_tenant(&admin, "early", "free").await;
    let client = server.client(&key(&admin, "early", TenantRole::Member).await);
    assert_eq!(quota(&client).await.records, 0);
    let body: Vec<u8> = (0..30)
        .flat_map(|i| format!("{{\"title\":\"{i}\"}}\n").into_bytes())
        .collect();
    assert_eq!(client.bulk(&items(), body, true).await.unwrap().created, 30);
    client
        .create_record(&items(), &json!({"title": "one more"}))
        .await
        .unwrap();
    assert_eq!(quota(&client).await.records, 31, "read again, not kept");
    cap(&admin, "free", 40).await;
    let mut created = 0;
    for i in 0..15 {
        match client
            .create_record(&items(), &json!({"title": format!("late {i}")}))
            .await
        {
            Ok(_) => created += 1,
            Err(e) => assert_eq!(e.status(), Some(507), "{e}"),
        }
    }
    assert_eq!(created, 9);
    assert_eq!(real_count(&client).await, 40);
    assert_eq!(quota(&client).await.records, 40);
}

/// Writes whose clients go away mid-request (the connection closed right after the request
/// is sent) run to their end: no reservation is left behind, the count stays exact, and the
/// tenant can fill exactly to its limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_cut_off_by_their_clients_leave_the_count_exact() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    put_items(&admin).await;
    cap(&admin, "free", 300).await;
    create_tenant(&admin, "flaky", "free").await;
    let token = key(&admin, "flaky", TenantRole::Member).await;
    let client = server.client(&token);
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut threads = Vec::new();
    for t in 0..8 {
        let (address, token) = (address.clone(), token.clone());
        threads.push(std::thread::spawn(move || {
            for i in 0..25 {
                let one = format!("{{\"title\":\"t{t} {i}\"}}\n");
                let (path, body, kind) = if i % 5 == 0 {
                    // A bulk of 40 lines.
                    (
                        "/v1/collections/items/records:bulk",
                        one.repeat(40),
                        "application/x-ndjson",
                    )
                } else {
                    ("/v1/collections/items/records", one, "application/json")
                };
                let request = format!(
                    "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
                     Content-Type: {kind}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let mut stream = std::net::TcpStream::connect(&address).unwrap();
                stream.write_all(request.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_micros(((t * 25 + i) % 7 * 300) as u64));
                drop(stream);
            }
        }));
    }
    for thread in threads {
        thread.join().unwrap();
    }
    // What was sent settles (it runs to its end), then the count is the real one.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let real = loop {
        let real = real_count(&client).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if real_count(&client).await == real || std::time::Instant::now() > deadline {
            break real;
        }
    };
    assert!(real > 0 && real <= 300, "{real}");
    assert_eq!(quota(&client).await.records, real);
    // Filling up: exactly what is left fits.
    let mut created = 0;
    for i in 0..(300 - real + 5) {
        match client
            .create_record(&items(), &json!({"title": format!("fill {i}")}))
            .await
        {
            Ok(_) => created += 1,
            Err(e) => assert_eq!(e.status(), Some(507), "{e}"),
        }
    }
    assert_eq!(created, 300 - real);
    assert_eq!(real_count(&client).await, 300);
}
