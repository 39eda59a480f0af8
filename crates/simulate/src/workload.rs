//! The workload: writers per tenant, each owning its own record ids, writing, reading and
//! listing through the tenant's key; every operation recorded with what it sent and saw.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bulkhead_client::{Client, ClientError, ListRecords};
use bulkhead_core::{CollectionName, RecordId};
use serde_json::{Value, json};
use tokio::sync::{Mutex, RwLock};

use crate::history::{Event, Op, Outcome, Seen, WriteKind};
use crate::schedule::Rng;

pub const COLLECTION: &str = "sim_records";

/// One tenant id and its current life: which life it is in and the key that reaches it.
pub struct TenantState {
    pub id: String,
    pub tier: String,
    /// Whether each life gets the JWT user (the simulator's own server only).
    pub users: bool,
    pub current: RwLock<(u32, String)>,
}

/// The identity provider the simulator plays when it starts its own server: an HS256
/// issuer the server is configured to trust, whose users are members of each tenant with a
/// custom role (rule `w = 1`, field `n` hidden).
pub struct Idp {
    pub secret: String,
}

pub const ISSUER: &str = "https://simulate.bulkhead.invalid/";
pub const AUDIENCE: &str = "bulkhead";
pub const USER_ROLE: &str = "sim-reader";

impl Idp {
    /// The server's configuration naming this issuer.
    pub fn config(&self) -> String {
        format!(
            "[[issuers]]\nname = \"sim\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
             algorithms = [\"HS256\"]\nhs256_secret = \"{}\"\ntenant_claim = \"org\"\n",
            self.secret
        )
    }

    /// A JWT for the reader of `tenant`, valid for ten minutes.
    pub fn token(&self, tenant: &str) -> anyhow::Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": format!("reader-{tenant}"), "org": tenant,
            "iat": now, "exp": now + 600,
        });
        Ok(jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(self.secret.as_bytes()),
        )?)
    }
}

/// What every task shares: the server, the history, the clock.
pub struct Shared {
    /// Every server's URL (the first is the admin's).
    pub urls: Vec<String>,
    pub idp: Option<Idp>,
    pub admin: Client,
    pub tenants: Vec<Arc<TenantState>>,
    pub history: Mutex<Vec<Event>>,
    seq: AtomicU64,
    started: Instant,
    pub stop: AtomicBool,
    value: AtomicI64,
}

impl Shared {
    pub fn new(
        urls: Vec<String>,
        idp: Option<Idp>,
        admin: Client,
        tenants: Vec<Arc<TenantState>>,
    ) -> Shared {
        Shared {
            urls,
            idp,
            admin,
            tenants,
            history: Mutex::new(Vec::new()),
            seq: AtomicU64::new(1),
            started: Instant::now(),
            stop: AtomicBool::new(false),
            value: AtomicI64::new(1),
        }
    }

    /// The server a worker numbered `n` talks to.
    pub fn url(&self, n: usize) -> &str {
        &self.urls[n % self.urls.len().max(1)]
    }

    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A value no write has used.
    fn fresh(&self) -> i64 {
        self.value.fetch_add(1, Ordering::Relaxed)
    }

    /// Records an operation that began at `start_ms` and has just been answered.
    #[allow(clippy::too_many_arguments)]
    pub async fn record(
        &self,
        worker: &str,
        tenant: &str,
        life: u32,
        start_ms: u64,
        status: Option<u16>,
        outcome: Outcome,
        op: Op,
    ) {
        let end_ms = self.now_ms();
        let mut history = self.history.lock().await;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        history.push(Event {
            seq,
            start_ms,
            end_ms,
            worker: worker.to_owned(),
            tenant: tenant.to_owned(),
            life,
            outcome,
            status,
            op,
        });
    }
}

pub fn collection() -> CollectionName {
    // A constant that is a valid collection name.
    CollectionName::parse(COLLECTION).unwrap_or_else(|_| unreachable!("{COLLECTION} is valid"))
}

/// A record as the server returned it, if it is one of the simulator's.
pub fn seen(value: &Value) -> Option<Seen> {
    Some(Seen {
        id: value.get("id")?.as_str()?.to_owned(),
        owner: value.get("owner")?.as_str()?.to_owned(),
        life: u32::try_from(value.get("life")?.as_i64()?).ok()?,
        n: value.get("n")?.as_i64()?,
        version: value.get("version")?.as_i64()?,
        w: value.get("w").and_then(Value::as_i64),
    })
}

pub fn status_of(error: &ClientError) -> Option<u16> {
    error.status()
}

/// The word a record holding `n` is found by in a full-text search.
pub fn word(n: i64) -> String {
    format!("v{n}")
}

/// What a writer believes of one of its records.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Known {
    Absent,
    Present {
        version: i64,
        n: i64,
    },
    /// An answer was lost or surprising: read it before writing again.
    Unsure,
}

/// One writer of one tenant: owns records `w<w>-r<k>`, and runs until told to stop.
pub async fn writer(
    shared: Arc<Shared>,
    tenant: Arc<TenantState>,
    slot: usize,
    w: usize,
    records: usize,
    mut rng: Rng,
) {
    let name = format!("{}/w{w}", tenant.id);
    let ids: Vec<String> = (0..records).map(|k| format!("w{w}-r{k}")).collect();
    let mut known: HashMap<String, Known> = HashMap::new();
    let mut life_seen = 0;
    let collection = collection();
    // One client per life (a client is costly to build: its TLS set-up reads the system's
    // certificates).
    let mut client = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let (life, key) = tenant.current.read().await.clone();
        if life != life_seen || client.is_none() {
            // A new life starts empty.
            known = ids.iter().map(|id| (id.clone(), Known::Absent)).collect();
            life_seen = life;
            let Ok(made) = Client::new(shared.url(slot + w), key) else {
                return;
            };
            client = Some(made);
        }
        let Some(client) = &client else { return };
        let id = ids[rng.below(ids.len() as u64) as usize].clone();
        let state = known.get(&id).copied().unwrap_or(Known::Unsure);
        let start = shared.now_ms();
        let body =
            |n: i64| json!({"owner": tenant.id, "life": life, "n": n, "w": w, "title": word(n)});
        let transport_trouble;
        match state {
            Known::Unsure => {
                let Ok(record_id) = RecordId::parse(&id) else {
                    return;
                };
                let answer = client.get_record(&collection, &record_id).await;
                let (status, outcome, found) = match &answer {
                    Ok(v) => (Some(200), Outcome::Ok, seen(v)),
                    Err(e) if e.code() == Some("record_not_found") => {
                        (Some(404), Outcome::Ok, None)
                    }
                    Err(e) => (status_of(e), Outcome::of_status(status_of(e)), None),
                };
                transport_trouble = outcome == Outcome::Unknown;
                if outcome == Outcome::Ok {
                    known.insert(
                        id.clone(),
                        match &found {
                            Some(s) => Known::Present {
                                version: s.version,
                                n: s.n,
                            },
                            None => Known::Absent,
                        },
                    );
                }
                let op = Op::Read {
                    id: id.clone(),
                    seen: found,
                };
                shared
                    .record(&name, &tenant.id, life, start, status, outcome, op)
                    .await;
            }
            Known::Absent if rng.chance(25) => {
                // A bulk upsert of this record (and another of the writer's, if absent too).
                let mut lines = vec![(id.clone(), shared.fresh())];
                let other = ids[rng.below(ids.len() as u64) as usize].clone();
                if other != id && known.get(&other) == Some(&Known::Absent) {
                    lines.push((other, shared.fresh()));
                }
                let ndjson: String = lines
                    .iter()
                    .map(|(id, n)| {
                        format!(
                            "{}\n",
                            json!({"op": "upsert", "id": id, "record": body(*n)})
                        )
                    })
                    .collect();
                let answer = client.bulk(&collection, ndjson.into_bytes(), false).await;
                transport_trouble =
                    answer.is_err() && answer.as_ref().err().and_then(status_of).is_none();
                for (i, (line_id, n)) in lines.iter().enumerate() {
                    let (status, version) = bulk_line(&answer, i);
                    let outcome = Outcome::of_status(status);
                    known.insert(
                        line_id.clone(),
                        match (outcome, version) {
                            (Outcome::Ok, Some(v)) => Known::Present { version: v, n: *n },
                            _ => Known::Unsure,
                        },
                    );
                    let op = Op::Write {
                        id: line_id.clone(),
                        kind: WriteKind::Upsert,
                        n: Some(*n),
                        if_match: None,
                        version,
                    };
                    shared
                        .record(&name, &tenant.id, life, start, status, outcome, op)
                        .await;
                }
            }
            Known::Absent => {
                let n = shared.fresh();
                let mut record = body(n);
                record["id"] = json!(id);
                let answer = client.create_record(&collection, &record).await;
                transport_trouble = written(
                    &shared,
                    &name,
                    &tenant.id,
                    life,
                    start,
                    &id,
                    WriteKind::Create,
                    Some(n),
                    None,
                    answer.map(Some),
                    &mut known,
                )
                .await;
            }
            Known::Present {
                version,
                n: current,
            } => {
                let Ok(record_id) = RecordId::parse(&id) else {
                    return;
                };
                let roll = rng.below(100);
                if roll < 4 && ids.len() <= 100 {
                    // The writer's own records through a filter: each as its history allows.
                    let (status, outcome, found) =
                        list_seen(client, &collection, Some(format!("w = {w}")), 100).await;
                    transport_trouble = outcome == Outcome::Unknown;
                    if outcome == Outcome::Ok {
                        for id in &ids {
                            let state = found.iter().find(|s: &&Seen| &s.id == id).map_or(
                                Known::Absent,
                                |s| Known::Present {
                                    version: s.version,
                                    n: s.n,
                                },
                            );
                            known.insert(id.clone(), state);
                        }
                    }
                    let op = Op::Snapshot {
                        ids: ids.clone(),
                        seen: found,
                    };
                    shared
                        .record(&name, &tenant.id, life, start, status, outcome, op)
                        .await;
                } else if roll < 6 {
                    // How many records the writer has, by an aggregation.
                    let request: Result<bulkhead_api::AggregateRequest, _> = serde_json::from_value(
                        json!({"filter": format!("w = {w}"), "metrics": [{"op": "count"}]}),
                    );
                    let Ok(request) = request else { return };
                    let answer = client.aggregate(&collection, &request).await;
                    let (status, outcome, count) = match &answer {
                        Ok(page) => (
                            Some(200),
                            Outcome::Ok,
                            page.groups
                                .first()
                                .and_then(|g| g.get("count"))
                                .and_then(Value::as_u64)
                                .unwrap_or(0),
                        ),
                        Err(e) => (status_of(e), Outcome::of_status(status_of(e)), 0),
                    };
                    transport_trouble = outcome == Outcome::Unknown;
                    let op = Op::Count {
                        ids: ids.clone(),
                        count,
                    };
                    shared
                        .record(&name, &tenant.id, life, start, status, outcome, op)
                        .await;
                } else if roll < 10 {
                    // A page of the tenant's records: none may be another tenant's or life's.
                    let (status, outcome, found) = list_seen(client, &collection, None, 50).await;
                    transport_trouble = outcome == Outcome::Unknown;
                    let op = Op::List {
                        seen: found,
                        complete: false,
                    };
                    shared
                        .record(&name, &tenant.id, life, start, status, outcome, op)
                        .await;
                } else if roll < 14 {
                    // A full-text search for the word of the value the writer last set.
                    let query = ListRecords {
                        q: Some(word(current)),
                        limit: Some(10),
                        ..ListRecords::default()
                    };
                    let answer = client.list_records(&collection, &query).await;
                    let (status, outcome, found) = match &answer {
                        Ok(page) => (
                            Some(200),
                            Outcome::Ok,
                            page.items.iter().filter_map(seen).collect(),
                        ),
                        Err(e) => (status_of(e), Outcome::of_status(status_of(e)), Vec::new()),
                    };
                    transport_trouble = outcome == Outcome::Unknown;
                    let op = Op::Search {
                        id: id.clone(),
                        n: current,
                        seen: found,
                    };
                    shared
                        .record(&name, &tenant.id, life, start, status, outcome, op)
                        .await;
                } else if roll < 20 {
                    known.insert(id.clone(), Known::Unsure);
                    transport_trouble = false;
                } else if roll < 50 {
                    let n = shared.fresh();
                    let answer = client
                        .replace_record(&collection, &record_id, &body(n), Some(version))
                        .await;
                    transport_trouble = written(
                        &shared,
                        &name,
                        &tenant.id,
                        life,
                        start,
                        &id,
                        WriteKind::Replace,
                        Some(n),
                        Some(version),
                        answer.map(Some),
                        &mut known,
                    )
                    .await;
                } else if roll < 85 {
                    let n = shared.fresh();
                    let answer = client
                        .patch_record(
                            &collection,
                            &record_id,
                            &json!({"n": n, "title": word(n)}),
                            Some(version),
                        )
                        .await;
                    transport_trouble = written(
                        &shared,
                        &name,
                        &tenant.id,
                        life,
                        start,
                        &id,
                        WriteKind::Patch,
                        Some(n),
                        Some(version),
                        answer.map(Some),
                        &mut known,
                    )
                    .await;
                } else {
                    let answer = client
                        .delete_record(&collection, &record_id, Some(version))
                        .await;
                    transport_trouble = written(
                        &shared,
                        &name,
                        &tenant.id,
                        life,
                        start,
                        &id,
                        WriteKind::Delete,
                        None,
                        Some(version),
                        answer.map(|()| None),
                        &mut known,
                    )
                    .await;
                }
            }
        }
        if transport_trouble {
            tokio::time::sleep(Duration::from_millis(20 + rng.below(30))).await;
        }
    }
}

/// The status and version a bulk request gave its line `i` (0-based); the request's own
/// status for every line when it failed whole.
fn bulk_line(
    answer: &Result<bulkhead_api::BulkReport, ClientError>,
    i: usize,
) -> (Option<u16>, Option<i64>) {
    match answer {
        Ok(report) => report
            .results
            .iter()
            .find(|r| r.line == i as u64 + 1)
            .map(|r| (Some(r.status), r.version))
            .unwrap_or((None, None)),
        Err(e) => (status_of(e), None),
    }
}

/// A page of `collection` (through `filter`), as the simulator's records it holds.
pub(crate) async fn list_seen(
    client: &Client,
    collection: &CollectionName,
    filter: Option<String>,
    limit: u32,
) -> (Option<u16>, Outcome, Vec<Seen>) {
    let query = ListRecords {
        filter,
        limit: Some(limit),
        ..ListRecords::default()
    };
    match client.list_records(collection, &query).await {
        Ok(page) => (
            Some(200),
            Outcome::Ok,
            page.items.iter().filter_map(seen).collect(),
        ),
        Err(e) => (status_of(&e), Outcome::of_status(status_of(&e)), Vec::new()),
    }
}

/// Records a single-record write and what the writer now knows; true when there was no
/// answer (the server is away).
#[allow(clippy::too_many_arguments)]
async fn written(
    shared: &Shared,
    worker: &str,
    tenant: &str,
    life: u32,
    start: u64,
    id: &str,
    kind: WriteKind,
    n: Option<i64>,
    if_match: Option<i64>,
    answer: Result<Option<Value>, ClientError>,
    known: &mut HashMap<String, Known>,
) -> bool {
    let (status, version) = match &answer {
        Ok(Some(v)) => (
            Some(if kind == WriteKind::Create { 201 } else { 200 }),
            v.get("version").and_then(Value::as_i64),
        ),
        Ok(None) => (Some(204), None),
        Err(e) => (status_of(e), None),
    };
    let outcome = Outcome::of_status(status);
    let next = match (outcome, kind, version) {
        (Outcome::Ok, WriteKind::Delete, _) => Known::Absent,
        (Outcome::Ok, _, Some(v)) => Known::Present {
            version: v,
            n: n.unwrap_or_default(),
        },
        // Suspended, or the key's life is over: nothing changed.
        (Outcome::Refused, _, _) if matches!(status, Some(401 | 403 | 423 | 429)) => {
            known.get(id).copied().unwrap_or(Known::Unsure)
        }
        _ => Known::Unsure,
    };
    known.insert(id.to_owned(), next);
    let op = Op::Write {
        id: id.to_owned(),
        kind,
        n,
        if_match,
        version,
    };
    shared
        .record(worker, tenant, life, start, status, outcome, op)
        .await;
    outcome == Outcome::Unknown && status.is_none()
}

/// Writes `count` records (`preload-<k>`, writer 999) to every tenant in bulk chunks, each
/// line recorded as a write the checker holds to account.
pub async fn preload(shared: &Shared, count: usize) -> anyhow::Result<()> {
    let collection = collection();
    for (slot, tenant) in shared.tenants.iter().enumerate() {
        let (life, key) = tenant.current.read().await.clone();
        let client = Client::new(shared.url(slot), key)?;
        for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
            let lines: Vec<(String, i64)> = chunk
                .iter()
                .map(|k| (format!("preload-{k}"), shared.fresh()))
                .collect();
            let ndjson: String = lines
                .iter()
                .map(|(id, n)| {
                    let record = json!({"owner": tenant.id, "life": life, "n": n, "w": 999, "title": word(*n)});
                    format!("{}\n", json!({"op": "upsert", "id": id, "record": record}))
                })
                .collect();
            let start = shared.now_ms();
            let answer = client.bulk(&collection, ndjson.into_bytes(), false).await;
            for (i, (id, n)) in lines.iter().enumerate() {
                let (status, version) = bulk_line(&answer, i);
                let op = Op::Write {
                    id: id.clone(),
                    kind: WriteKind::Upsert,
                    n: Some(*n),
                    if_match: None,
                    version,
                };
                let outcome = Outcome::of_status(status);
                shared
                    .record("preload", &tenant.id, life, start, status, outcome, op)
                    .await;
            }
        }
    }
    Ok(())
}
