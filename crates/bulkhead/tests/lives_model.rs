//! Model-based check of "a tenant id names one life", through the binary. A seeded random
//! sequence over three tenant ids interleaves creation on every tier, single writes, bulk
//! ingest, exports, live moves in every direction (also across engines), move cancellation,
//! deletion in whatever phase a move has reached, re-creation, key revocation, schema changes
//! (a field added while all this runs) and `kill -9` with restart. After every step the server must agree with the model: each live tenant
//! holds exactly its acknowledged writes (every title names the life it was written in, so a
//! record of another life would show), a dead life's or a revoked key reaches nothing, and at
//! the end `bulkhead doctor` finds no storage without a live owner.
//!
//! The seed is printed at the start and in every failure; `BULKHEAD_MODEL_SEED=<n>` replays
//! one sequence, `BULKHEAD_MODEL_STEPS=<n>` makes it longer.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bulkhead_api::StartMove;
use bulkhead_client::{Client, ListRecords};
use bulkhead_core::DomainName;
use bulkhead_core::access::TenantRole;
use bulkhead_core::model::{Isolation, MovePhase};
use common::{Server, create_tenant, items, key, put_items, tid};
use serde_json::json;

/// splitmix64: small, seedable, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One life of a tenant, as the model knows it.
struct Life {
    tag: u64,
    tier: String,
    key: String,
    /// Acknowledged writes: record id → title.
    records: BTreeMap<String, String>,
    next: u64,
}

/// Where tenants can be placed: a tier per model on each domain the world has.
struct Placements {
    /// `(tier, isolation, domain)`.
    tiers: Vec<(String, Isolation, String)>,
}

struct World {
    seed: u64,
    dir: tempfile::TempDir,
    server: Server,
    admin: Client,
    rng: Rng,
    lives: BTreeMap<String, Life>,
    /// Keys of ended lives and revoked keys: they must reach nothing, ever.
    dead_keys: Vec<String>,
    next_tag: u64,
    history: Vec<String>,
    places: Placements,
    /// Moves of deleted tenants, left to end on their own while the sequence goes on.
    pending_moves: Vec<String>,
    /// Fields added to `items` by schema changes, in order.
    added_fields: Vec<String>,
}

impl World {
    fn fail(&self, what: String) -> ! {
        let tail: Vec<&String> = self.history.iter().rev().take(25).collect();
        let tail: Vec<&String> = tail.into_iter().rev().collect();
        panic!(
            "seed {} (replay with BULKHEAD_MODEL_SEED={}): {what}\nlast steps:\n{}\nserver log tail:\n{}",
            self.seed,
            self.seed,
            tail.iter()
                .map(|s| format!("  {s}"))
                .collect::<Vec<_>>()
                .join("\n"),
            self.server
                .log()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    fn note(&mut self, step: String) {
        self.history.push(step);
    }

    /// The server agrees with the model.
    async fn check(&self) {
        for (id, life) in &self.lives {
            let client = self.server.client(&life.key);
            let found = common::all_titles(&client).await;
            if found != life.records {
                let foreign: Vec<_> = found
                    .iter()
                    .filter(|(_, t)| !t.starts_with(&format!("life-{}-", life.tag)))
                    .collect();
                let missing: Vec<_> = life
                    .records
                    .keys()
                    .filter(|k| !found.contains_key(*k))
                    .collect();
                self.fail(format!(
                    "{id} (life {}): {} records, model {}; of another life: {foreign:?}; missing: {missing:?}",
                    life.tag,
                    found.len(),
                    life.records.len()
                ));
            }
        }
        for dead in &self.dead_keys {
            let client = self.server.client(dead);
            match client.list_records(&items(), &ListRecords::default()).await {
                Err(e) if matches!(e.status(), Some(401 | 404)) => {}
                other => self.fail(format!("a dead or revoked key still answers: {other:?}")),
            }
        }
    }

    async fn create(&mut self, id: &str) {
        let (tier, _, _) = self.rng.pick(&self.places.tiers).clone();
        create_tenant(&self.admin, id, &tier).await;
        let key = key(&self.admin, id, TenantRole::Member).await;
        let tag = self.next_tag;
        self.next_tag += 1;
        self.note(format!("create {id} on {tier} (life {tag})"));
        self.lives.insert(
            id.to_owned(),
            Life {
                tag,
                tier,
                key,
                records: BTreeMap::new(),
                next: 0,
            },
        );
    }

    /// A schema change: `items` gains a text field with a default (every other one indexed),
    /// racing whatever the tenants are doing (moves in flight included); then a write to `id`
    /// naming the new field is either applied or refused as not yet there, never a 5xx.
    async fn change_schema(&mut self, id: &str) {
        let n = self.added_fields.len();
        let field = format!("f{n}");
        self.added_fields.push(field.clone());
        let mut spec = common::items_spec();
        for (i, name) in self.added_fields.iter().enumerate() {
            spec["fields"][name] =
                json!({"type": "text", "default": format!("v{i}"), "index": i % 2 == 0});
        }
        let outcome = self
            .admin
            .put_collection(&items(), &serde_json::from_value(spec).unwrap())
            .await;
        match outcome {
            Ok(view) => assert!(view.version >= 2, "seed {}: {view:?}", self.seed),
            Err(e) if e.code() == Some("rollout_incomplete") => {}
            Err(e) => panic!("seed {}: schema change {field} failed: {e}", self.seed),
        }
        let life = self.lives.get_mut(id).unwrap();
        let client = self.server.client(&life.key);
        let (rid, title) = (
            format!("r{}-{}", life.tag, life.next),
            format!("life-{}-{}", life.tag, life.next),
        );
        life.next += 1;
        let applied = match client
            .create_record(
                &items(),
                &json!({"id": rid, "title": title, field.as_str(): "set"}),
            )
            .await
        {
            Ok(created) => {
                assert_eq!(created[field.as_str()], "set", "seed {}", self.seed);
                life.records.insert(rid, title);
                true
            }
            Err(e) if matches!(e.code(), Some("tenant_moving" | "schema_rolling_out")) => false,
            Err(e) => panic!(
                "seed {}: write naming {field} to {id} failed: {e}",
                self.seed
            ),
        };
        self.note(format!(
            "add field {field}; a write naming it to {id}: applied {applied}"
        ));
    }

    /// Single writes; those acknowledged go into the model.
    async fn write(&mut self, id: &str, count: usize) {
        let life = self.lives.get_mut(id).unwrap();
        let client = self.server.client(&life.key);
        let mut acknowledged = 0;
        for _ in 0..count {
            let (rid, title) = (
                format!("r{}-{}", life.tag, life.next),
                format!("life-{}-{}", life.tag, life.next),
            );
            life.next += 1;
            match client
                .create_record(&items(), &json!({"id": rid, "title": title}))
                .await
            {
                Ok(_) => {
                    life.records.insert(rid, title);
                    acknowledged += 1;
                }
                // Held past the bound while a move switched: not applied, says the API.
                Err(e) if e.code() == Some("tenant_moving") => {}
                Err(e) => panic!("seed {}: write to {id} failed: {e}", self.seed),
            }
        }
        self.note(format!(
            "write {count} to {id}: {acknowledged} acknowledged"
        ));
    }

    async fn bulk(&mut self, id: &str, lines: usize) {
        let life = self.lives.get_mut(id).unwrap();
        let mut body = Vec::new();
        let mut titles = BTreeMap::new();
        for _ in 0..lines {
            let (rid, title) = (
                format!("b{}-{}", life.tag, life.next),
                format!("life-{}-{}", life.tag, life.next),
            );
            life.next += 1;
            body.extend_from_slice(
                format!("{{\"id\":\"{rid}\",\"title\":\"{title}\"}}\n").as_bytes(),
            );
            titles.insert(rid, title);
        }
        let report = self
            .server
            .client(&life.key)
            .bulk(&items(), body, false)
            .await
            .unwrap();
        for line in &report.results {
            if line.status == 201 {
                let rid = line.id.clone().unwrap();
                let title = titles[&rid].clone();
                life.records.insert(rid, title);
            }
        }
        self.note(format!(
            "bulk {lines} into {id}: {} created",
            report.created
        ));
    }

    async fn export(&mut self, id: &str) {
        let life = &self.lives[id];
        let exported = self
            .server
            .client(&life.key)
            .export(&items(), None)
            .await
            .unwrap();
        let got: BTreeMap<String, String> = exported
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_owned(),
                    r["title"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        if got != life.records {
            self.fail(format!(
                "export of {id} differs from the model: {} vs {}",
                got.len(),
                life.records.len()
            ));
        }
        self.note(format!("export {id}: {} records", got.len()));
    }

    async fn revoke(&mut self, id: &str) {
        let created = self
            .admin
            .create_key(
                &tid(id),
                &bulkhead_api::CreateKey {
                    name: "spare".into(),
                    role: TenantRole::Member,
                    expires_in: None,
                },
            )
            .await
            .unwrap();
        self.admin
            .revoke_key(&tid(id), &created.view.id)
            .await
            .unwrap();
        self.dead_keys.push(created.key);
        self.note(format!("revoke a key of {id}"));
    }

    async fn delete(&mut self, id: &str) {
        match self.admin.delete_tenant(&tid(id)).await {
            Ok(()) => {}
            Err(e) => self.fail(format!("delete {id}: {e}")),
        }
        let life = self.lives.remove(id).unwrap();
        self.dead_keys.push(life.key);
        self.note(format!("delete {id} (life {})", life.tag));
    }

    /// A live move to another placement; meanwhile writes, and then one of: wait for it,
    /// cancel it, or delete the tenant in whatever phase the move is in.
    async fn moves(&mut self, id: &str) {
        let current = self.lives[id].tier.clone();
        let here = self
            .places
            .tiers
            .iter()
            .find(|(t, _, _)| *t == current)
            .cloned()
            .unwrap();
        let targets: Vec<_> = self
            .places
            .tiers
            .iter()
            .filter(|(_, iso, dom)| (iso, dom) != (&here.1, &here.2))
            .cloned()
            .collect();
        let (_, isolation, domain) = self.rng.pick(&targets).clone();
        let started = self
            .admin
            .start_move(
                &tid(id),
                &StartMove {
                    isolation: Some(isolation),
                    domain: Some(DomainName::parse(&domain).unwrap()),
                    incarnation: None,
                },
            )
            .await;
        let started = match started {
            Ok(m) => m,
            Err(e) => self.fail(format!("move {id} to {isolation} on {domain}: {e}")),
        };
        let ending = self.rng.below(3);
        self.note(format!(
            "move {id} to {isolation} on {domain} ({})",
            ["wait", "cancel", "delete"][ending]
        ));
        self.write(id, 3).await;
        match ending {
            0 => {
                let view = wait_final(&self.admin, &started.id).await;
                if view.phase != MovePhase::Done {
                    self.fail(format!("move ended {}: {:?}", view.phase, view.error));
                }
            }
            1 => {
                // Too late to cancel once switched: then it finishes.
                let _ = self.admin.cancel_move(&started.id).await;
                wait_final(&self.admin, &started.id).await;
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(self.rng.below(40) as u64)).await;
                let phase = self.admin.get_move(&started.id).await.unwrap().phase;
                match self.admin.delete_tenant(&tid(id)).await {
                    Ok(()) => {}
                    Err(e) if e.code() == Some("tenant_moving") => {
                        let _ = self.admin.cancel_move(&started.id).await;
                        wait_final(&self.admin, &started.id).await;
                        self.admin.delete_tenant(&tid(id)).await.unwrap();
                    }
                    Err(e) => self.fail(format!("delete {id} during {phase}: {e}")),
                }
                let life = self.lives.remove(id).unwrap();
                self.dead_keys.push(life.key);
                self.note(format!("  deleted {id} (life {}) around {phase}", life.tag));
                // The move, whatever it was doing, ends on its own — possibly after the id
                // is re-created — without touching a later life.
                self.pending_moves.push(started.id);
                return;
            }
        }
        // The tenant's tier follows its placement only through tier changes; keep the
        // model's placement in step with where the move put it.
        let now = self.admin.get_tenant(&tid(id)).await.unwrap();
        let tier = self
            .places
            .tiers
            .iter()
            .find(|(_, iso, dom)| {
                *iso == now.placement.isolation && dom == now.placement.domain.as_str()
            })
            .map(|(t, _, _)| t.clone())
            .unwrap();
        self.lives.get_mut(id).unwrap().tier = tier;
    }

    async fn restart(&mut self) {
        // A restart ends a deleted tenant's move differently (recovered at start): fine, as
        // long as it touches no later life; the ids are still polled at the end.
        let graceful = self.rng.below(2) == 0;
        if graceful {
            self.server.stop();
        } else {
            self.server.kill_hard();
        }
        self.server = Server::start(self.dir.path());
        self.admin = self.server.admin();
        self.note(format!(
            "restart ({})",
            if graceful { "graceful" } else { "kill -9" }
        ));
    }
}

async fn wait_final(admin: &Client, id: &str) -> bulkhead_api::MoveView {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let view = admin.get_move(id).await.unwrap();
        if view.phase.is_final() {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "move {id} stuck in {}",
            view.phase
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn seed_or(default: u64) -> u64 {
    std::env::var("BULKHEAD_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn steps_or(default: usize) -> usize {
    std::env::var("BULKHEAD_MODEL_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn run(seed: u64, steps: usize, pg: Option<&bulkhead_pg_testkit::PgServer>) {
    eprintln!("lives model: seed {seed}, {steps} steps (replay with BULKHEAD_MODEL_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("BULKHEAD_MOVE_DRAIN_GRACE_MS", "300")]);
    let admin = server.admin();
    put_items(&admin).await;
    let mut tiers = vec![
        ("free".to_owned(), Isolation::Pool, "local".to_owned()),
        ("standard".to_owned(), Isolation::Bridge, "local".to_owned()),
        ("premium".to_owned(), Isolation::Silo, "local".to_owned()),
    ];
    if let Some(pg) = pg {
        common::put_pg_domain(&admin, &pg.url("postgres"), None).await;
        for (isolation, name) in [
            (Isolation::Pool, "pg-pool"),
            (Isolation::Bridge, "pg-bridge"),
            (Isolation::Silo, "pg-silo"),
        ] {
            common::put_pg_tier(&admin, name, isolation, Default::default()).await;
            tiers.push((name.to_owned(), isolation, "pg".to_owned()));
        }
    }
    let mut world = World {
        seed,
        dir,
        server,
        admin,
        rng: Rng(seed),
        lives: BTreeMap::new(),
        dead_keys: Vec::new(),
        next_tag: 1,
        history: Vec::new(),
        places: Placements { tiers },
        pending_moves: Vec::new(),
        added_fields: Vec::new(),
    };
    let ids = ["t0", "t1", "t2"];
    for _ in 0..steps {
        let id = *world.rng.pick(&ids);
        if !world.lives.contains_key(id) {
            world.create(id).await;
        } else {
            match world.rng.below(20) {
                0..=4 => {
                    let n = 1 + world.rng.below(8);
                    world.write(id, n).await;
                }
                5..=6 => {
                    let n = 1 + world.rng.below(1500);
                    world.bulk(id, n).await;
                }
                7 => world.export(id).await,
                17 => world.change_schema(id).await,
                8..=11 => world.moves(id).await,
                12..=14 => world.delete(id).await,
                15 => world.revoke(id).await,
                16 => world.restart().await,
                _ => {
                    let n = 1 + world.rng.below(4);
                    world.write(id, n).await;
                }
            }
        }
        world.check().await;
    }
    // Quiescence: every move has ended; nothing is orphaned.
    for id in std::mem::take(&mut world.pending_moves) {
        wait_final(&world.admin, &id).await;
    }
    world.check().await;
    let report = world.admin.doctor().await.unwrap();
    if !report.orphans.is_empty() || !report.unchecked_domains.is_empty() {
        world.fail(format!("orphaned storage at the end: {report:#?}"));
    }
    world.restart().await;
    world.check().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lives_on_sqlite_never_cross_and_lose_nothing() {
    let seed = seed_or(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    run(seed, steps_or(60), None).await;
    // And one fixed sequence, so every run covers at least the same ground.
    run(seed_or(20_261_204), steps_or(60), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lives_across_sqlite_and_postgres_never_cross_and_lose_nothing() {
    let Some(pg) = bulkhead_pg_testkit::require("lives_model_postgres") else {
        return;
    };
    let seed = seed_or(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            ^ 0x5eed,
    );
    run(seed, steps_or(50), Some(&pg)).await;
}
