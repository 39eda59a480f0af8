//! Concurrent writers with a model of what their acknowledged writes imply.
//!
//! Each writer owns its own ids and keeps, per id, the state its last acknowledged write
//! left (title, n, version) or its deletion. A write answered `503 tenant_moving` was, by
//! contract, not applied, and leaves the model alone; any other failure fails the test.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bulkhead_client::{Client, ListRecords};
use bulkhead_core::RecordId;
use serde_json::{Value, json};

use crate::common::items;

/// What the acknowledged writes imply: id → (title, n, version).
pub type Model = BTreeMap<String, (String, i64, i64)>;

#[derive(Debug, Default)]
pub struct Report {
    pub model: Model,
    pub writes: u64,
    pub held_out: u64,
    pub latencies_ms: Vec<f64>,
    pub failures: Vec<String>,
}

impl Report {
    fn merge(&mut self, other: Report) {
        self.model.extend(other.model);
        self.writes += other.writes;
        self.held_out += other.held_out;
        self.latencies_ms.extend(other.latencies_ms);
        self.failures.extend(other.failures);
    }

    pub fn max_ms(&self) -> f64 {
        self.latencies_ms.iter().copied().fold(0.0, f64::max)
    }
}

/// An acknowledged write: the id and its new state (`None`: deleted).
type Applied = (String, Option<(String, i64, i64)>);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Seeds `n` records `<prefix>-seed-<i>` through bulk ingest; returns their model.
pub async fn seed(client: &Client, prefix: &str, n: usize) -> Model {
    let mut model = Model::new();
    let mut body = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}-seed-{i:06}");
        let title = format!("seed {i} of {prefix}");
        body.extend_from_slice(
            json!({"id": id, "title": title, "n": i})
                .to_string()
                .as_bytes(),
        );
        body.push(b'\n');
        model.insert(id, (title, i as i64, 1));
    }
    let report = client.bulk(&items(), body, true).await.unwrap();
    assert_eq!(report.failed, 0, "seed failed: {:?}", report.results);
    model
}

/// Runs `writers` writers against `client` until `stop`; each starts from its share of
/// `seeded` (seed ids are split between writers by position).
pub async fn run(
    client: Client,
    prefix: &str,
    writers: usize,
    seeded: Model,
    stop: Arc<AtomicBool>,
) -> Report {
    let mut tasks = Vec::new();
    let seeded: Vec<_> = seeded.into_iter().collect();
    for w in 0..writers {
        let mine: Model = seeded
            .iter()
            .enumerate()
            .filter(|(i, _)| i % writers == w)
            .map(|(_, kv)| kv.clone())
            .collect();
        let (client, stop, prefix) = (client.clone(), Arc::clone(&stop), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            writer(client, &prefix, w, mine, stop).await
        }));
    }
    let mut report = Report::default();
    for t in tasks {
        report.merge(t.await.unwrap());
    }
    report
}

async fn writer(
    client: Client,
    prefix: &str,
    w: usize,
    mut model: Model,
    stop: Arc<AtomicBool>,
) -> Report {
    let mut report = Report::default();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((w as u64 + 1) * 0x1234_5678));
    while !stop.load(Ordering::Relaxed) {
        let roll = rng.next() % 10;
        let live: Vec<String> = if roll >= 5 {
            model.keys().cloned().collect()
        } else {
            Vec::new()
        };
        let started = Instant::now();
        let outcome: Result<Option<Applied>, bulkhead_client::ClientError> =
            if roll < 5 || live.is_empty() {
                // Ids are never reused, across writers and rounds.
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let next = NEXT.fetch_add(1, Ordering::Relaxed) + 1;
                let id = format!("{prefix}-w{w}-{next:06}");
                let title = format!("created {next} by {w}");
                client
                    .create_record(&items(), &json!({"id": id, "title": title, "n": next}))
                    .await
                    .map(|r| Some((id, Some((title, next as i64, version(&r))))))
            } else {
                let id = live[(rng.next() as usize) % live.len()].clone();
                let rid = RecordId::parse(&id).unwrap();
                if roll < 8 {
                    let n = (rng.next() % 1_000_000) as i64;
                    let title = format!("patched to {n} by {w}");
                    client
                        .patch_record(&items(), &rid, &json!({"title": title, "n": n}), None)
                        .await
                        .map(|r| Some((id, Some((title, n, version(&r))))))
                } else {
                    client
                        .delete_record(&items(), &rid, None)
                        .await
                        .map(|()| Some((id, None)))
                }
            };
        report
            .latencies_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        report.writes += 1;
        match outcome {
            Ok(Some((id, Some(state)))) => {
                model.insert(id, state);
            }
            Ok(Some((id, None))) => {
                model.remove(&id);
            }
            Ok(None) => {}
            Err(e) if e.status() == Some(503) && e.code() == Some("tenant_moving") => {
                report.held_out += 1;
            }
            Err(e) if report.failures.len() < 5 => report.failures.push(e.to_string()),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    report.model = model;
    report
}

fn version(record: &Value) -> i64 {
    record["version"].as_i64().unwrap()
}

/// Every record the tenant holds now, as the model shapes it.
pub async fn stored(client: &Client) -> Model {
    let mut out = Model::new();
    let mut cursor = None;
    loop {
        let page = client
            .list_records(
                &items(),
                &ListRecords {
                    limit: Some(1000),
                    cursor: cursor.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        for r in &page.items {
            let id = r["id"].as_str().unwrap().to_owned();
            let state = (
                r["title"].as_str().unwrap().to_owned(),
                r["n"].as_i64().unwrap(),
                version(r),
            );
            assert!(out.insert(id.clone(), state).is_none(), "{id} listed twice");
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// Asserts the stored records equal the model exactly, naming the first differences.
pub fn assert_matches(what: &str, stored: &Model, model: &Model) {
    let lost: Vec<_> = model
        .keys()
        .filter(|k| !stored.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = stored
        .keys()
        .filter(|k| !model.contains_key(*k))
        .take(5)
        .collect();
    let changed: Vec<_> = model
        .iter()
        .filter(|(k, v)| stored.get(*k).is_some_and(|s| s != *v))
        .take(5)
        .collect();
    assert!(
        lost.is_empty() && extra.is_empty() && changed.is_empty(),
        "{what}: lost {lost:?}, unexpected {extra:?}, different {changed:?} (stored {}, expected {})",
        stored.len(),
        model.len()
    );
}
