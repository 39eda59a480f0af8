//! A pass reuses what the last one measured only where nothing changed: it answers exactly
//! as a pass from nothing would.

use std::sync::Arc;
use std::time::Duration;

use bulkhead_core::FieldName;
use bulkhead_core::access::DataAction;
use bulkhead_core::model::Isolation;
use bulkhead_core::record::{NewRecord, RecordChange, validate_full};
use bulkhead_core::schema::{Collection, CollectionSpec, plan_change};
use bulkhead_core::time::SystemClock;
use bulkhead_core::{RecordId, TenantId};
use bulkhead_engine::{Engine, Measured, PlacementRef, conformance};
use serde_json::json;

use crate::{SqliteConfig, SqliteEngine};

fn engine(dir: &tempfile::TempDir, settle: Duration) -> SqliteEngine {
    // Without the search upkeep: a round merging the pool's index between two passes these
    // tests compare would change its bytes.
    let mut config = SqliteConfig::new(dir.path());
    config.search_upkeep = None;
    let engine = SqliteEngine::open(config, Arc::new(SystemClock)).expect("open engine");
    engine.inner.memo.lock().settle = settle;
    engine
}

/// An engine on `dir` that starts from nothing (what earlier engines kept is not read).
fn fresh(dir: &tempfile::TempDir) -> SqliteEngine {
    let engine = engine(dir, Duration::ZERO);
    let mut memo = engine.inner.memo.lock();
    *memo = crate::measure::Memo::default();
    memo.settle = Duration::ZERO;
    drop(memo);
    engine
}

fn record(c: &Collection, id: &str, title: &str) -> NewRecord {
    let body = json!({"id": id, "title": title});
    let (id, fields, _) = validate_full(c, &body, None).expect("valid body");
    NewRecord {
        id: id.expect("id"),
        fields,
    }
}

fn counters(engine: &SqliteEngine) -> (u64, u64) {
    let memo = engine.inner.memo.lock();
    (memo.read, memo.reused)
}

async fn measure(engine: &SqliteEngine, all: &[PlacementRef], c: &Collection) -> Vec<Measured> {
    let mut out = engine
        .measure(all, std::slice::from_ref(c))
        .await
        .expect("measure");
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

#[tokio::test]
async fn a_silo_unchanged_since_its_last_measure_is_not_opened_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(&dir, Duration::ZERO);
    let c = conformance::items_collection();
    let t = conformance::tenant("solo");
    let target = conformance::target(&t, Isolation::Silo);
    engine
        .provision(&target, std::slice::from_ref(&c))
        .await
        .expect("provision");
    let w = conformance::scope(&t, Isolation::Silo, DataAction::Write);
    let three = (0..3).map(|i| record(&c, &format!("r{i}"), "x")).collect();
    engine.insert(&w, &c, three).await.expect("insert");
    let all = [target];
    let first = measure(&engine, &all, &c).await;
    assert_eq!(first[0].records.get(&c.name), Some(&3));
    assert_eq!(counters(&engine), (1, 0));
    let again = measure(&engine, &all, &c).await;
    assert_eq!(again, first);
    assert_eq!(
        counters(&engine),
        (1, 1),
        "the unchanged silo is not read again"
    );
    // A write changes the files: the next pass reads the silo again and sees it.
    let one = vec![record(&c, "r9", "y")];
    engine.insert(&w, &c, one).await.expect("insert");
    let after = measure(&engine, &all, &c).await;
    assert_eq!(after[0].records.get(&c.name), Some(&4));
    assert_eq!(counters(&engine), (2, 1));
}

#[tokio::test]
async fn a_silo_measured_within_its_settling_time_is_read_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(&dir, Duration::from_secs(3600));
    let c = conformance::items_collection();
    let t = conformance::tenant("fresh");
    let target = conformance::target(&t, Isolation::Silo);
    engine
        .provision(&target, std::slice::from_ref(&c))
        .await
        .expect("provision");
    let all = [target];
    let first = measure(&engine, &all, &c).await;
    let again = measure(&engine, &all, &c).await;
    assert_eq!(again, first);
    assert_eq!(
        counters(&engine),
        (2, 0),
        "files changed within the settling time may change again unseen in the same clock tick"
    );
}

/// Rounds of creates, replaces and deletes on some tenants of a pool and of silos, and a
/// schema change; after each, the pass that reuses what it can answers exactly as a new
/// engine's pass does.
#[tokio::test]
async fn a_pass_that_reuses_answers_as_a_pass_from_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let warm = engine(&dir, Duration::ZERO);
    let mut c = conformance::items_collection();
    let mut tenants: Vec<(TenantId, Isolation)> = Vec::new();
    for i in 0..6 {
        tenants.push((conformance::tenant(&format!("p{i}")), Isolation::Pool));
    }
    for i in 0..3 {
        tenants.push((conformance::tenant(&format!("s{i}")), Isolation::Silo));
    }
    let mut all = Vec::new();
    for (t, isolation) in &tenants {
        let target = conformance::target(t, *isolation);
        warm.provision(&target, std::slice::from_ref(&c))
            .await
            .expect("provision");
        all.push(target);
    }
    let mut next = 0u64;
    let mut ids: Vec<Vec<String>> = vec![Vec::new(); tenants.len()];
    let batch_ids = |batch: &[NewRecord]| -> Vec<String> {
        batch.iter().map(|r| r.id.as_str().to_owned()).collect()
    };
    let mut reused_before = 0;
    for round in 0..8usize {
        if round == 5 {
            // A schema change: a field with an index (every pooled row gains an index entry,
            // and silos' files change).
            let mut spec = CollectionSpec {
                fields: c.fields.clone(),
            };
            spec.fields.insert(
                FieldName::parse("color").expect("field"),
                serde_json::from_value(json!({"type": "string", "index": true})).expect("spec"),
            );
            c = plan_change(&c.name, Some(&c), &spec)
                .expect("additive")
                .collection;
            for target in &all {
                warm.ensure_collection(target, &c).await.expect("ensure");
            }
        }
        // Touch a different few each round (every one in some), in every way a write can
        // change a tenant.
        for (k, (t, isolation)) in tenants.iter().enumerate() {
            let everyone = round % 4 == 3;
            if !everyone && (k + round) % 3 != 0 {
                continue;
            }
            let w = conformance::scope(t, *isolation, DataAction::Write);
            // Rounds 0-1 add records; later ones replace one (the count stays), delete one
            // and add one (the count stays), or add several.
            let kind = if round < 2 { 0 } else { (k + round) % 3 };
            let adds = match kind {
                0 => 1 + (k + round) % 4,
                1 => 0,
                _ => 1,
            };
            let batch: Vec<NewRecord> = (0..adds)
                .map(|j| {
                    next += 1;
                    record(
                        &c,
                        &format!("r{next}"),
                        &"t".repeat(1 + (j * 37 + round * 11) % 300),
                    )
                })
                .collect();
            let oldest = ids[k].first().cloned();
            if !batch.is_empty() {
                ids[k].extend(batch_ids(&batch));
                warm.insert(&w, &c, batch).await.expect("insert");
            }
            let Some(oldest) = oldest else {
                continue;
            };
            let id = RecordId::parse(&oldest).expect("id");
            match kind {
                1 => {
                    let body = json!({"title": "z".repeat(round * 40)});
                    let (_, fields, _) = validate_full(&c, &body, None).expect("valid");
                    warm.update(&w, &c, &id, RecordChange::Replace(fields), None)
                        .await
                        .expect("replace");
                }
                2 => {
                    warm.delete(&w, &c, &id, None).await.expect("delete");
                    ids[k].remove(0);
                }
                _ => {}
            }
        }
        let reused = measure(&warm, &all, &c).await;
        let cold = fresh(&dir);
        let fresh = measure(&cold, &all, &c).await;
        assert_eq!(reused, fresh, "round {round}");
        assert_eq!(counters(&cold).1, 0);
        if round > 0 && round % 4 != 3 && round != 5 {
            let now = counters(&warm).1;
            assert!(
                now > reused_before,
                "round {round}: the untouched are reused"
            );
            reused_before = now;
        } else {
            reused_before = counters(&warm).1;
        }
    }
}

/// Silos destroyed and provisioned again while passes measure them: a pass never fails for
/// a silo that went away under it (it is left out), and never reports a file that is gone.
#[tokio::test]
async fn a_pass_racing_deletion_and_recreation_never_fails() {
    use bulkhead_core::Incarnation;

    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Arc::new(engine(&dir, Duration::ZERO));
    let c = conformance::items_collection();
    let t = conformance::tenant("churn");
    let life = conformance::target(&t, Isolation::Silo);
    engine
        .provision(&life, std::slice::from_ref(&c))
        .await
        .expect("provision");
    let churn = {
        let (engine, c, t, life) = (Arc::clone(&engine), c.clone(), t.clone(), life.clone());
        tokio::spawn(async move {
            for _ in 0..150 {
                let gone = conformance::demolition_of(&t, &Incarnation::legacy(), Isolation::Silo);
                engine.destroy(&gone).await.expect("destroy");
                engine
                    .provision(&life, std::slice::from_ref(&c))
                    .await
                    .expect("provision");
            }
        })
    };
    let mut passes = 0;
    while !churn.is_finished() {
        let measured = engine
            .measure(std::slice::from_ref(&life), std::slice::from_ref(&c))
            .await
            .expect("a pass racing deletion does not fail");
        assert!(measured.len() <= 1);
        passes += 1;
    }
    churn.await.expect("churn");
    assert!(passes > 0);
}

/// Silos and pooled tenants with a few records each, written by one engine, then measured
/// by another that is then closed. (Closing the engine that wrote checkpoints the silos it
/// had open, which changes their files: that is a change the next pass must see.)
async fn measured_then_closed(
    dir: &tempfile::TempDir,
    c: &Collection,
) -> (Vec<PlacementRef>, Vec<Measured>) {
    let first = engine(dir, Duration::ZERO);
    let mut all = Vec::new();
    for (i, isolation) in [
        Isolation::Silo,
        Isolation::Silo,
        Isolation::Pool,
        Isolation::Pool,
    ]
    .into_iter()
    .cycle()
    .take(8)
    .enumerate()
    {
        let t = conformance::tenant(&format!("t{i}"));
        let target = conformance::target(&t, isolation);
        first
            .provision(&target, std::slice::from_ref(c))
            .await
            .expect("provision");
        let w = conformance::scope(&t, isolation, DataAction::Write);
        let batch = (0..=i).map(|j| record(c, &format!("r{j}"), "x")).collect();
        first.insert(&w, c, batch).await.expect("insert");
        all.push(target);
    }
    drop(first);
    let second = engine(dir, Duration::ZERO);
    let measured = measure(&second, &all, c).await;
    assert_eq!(counters(&second), (8, 0));
    drop(second);
    (all, measured)
}

#[tokio::test]
async fn the_first_pass_after_a_restart_reads_only_what_changed_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = conformance::items_collection();
    let (all, before) = measured_then_closed(&dir, &c).await;
    assert!(dir.path().join(crate::measure::memo::FILE).exists());

    // A restart with nothing written meanwhile: nothing is read.
    let second = engine(&dir, Duration::ZERO);
    let again = measure(&second, &all, &c).await;
    assert_eq!(again, before);
    assert_eq!(counters(&second), (0, 8), "everything kept is reused");
    drop(second);

    // Written while no pass ran (by an engine that measures nothing): one silo and one
    // pooled tenant change, and the first pass of the next start reads those two only.
    let writer = engine(&dir, Duration::ZERO);
    for i in [0usize, 2] {
        let t = conformance::tenant(&format!("t{i}"));
        let isolation = if i == 0 {
            Isolation::Silo
        } else {
            Isolation::Pool
        };
        let w = conformance::scope(&t, isolation, DataAction::Write);
        let batch = vec![record(&c, "extra", "y")];
        writer.insert(&w, &c, batch).await.expect("insert");
    }
    drop(writer);
    let third = engine(&dir, Duration::ZERO);
    let after = measure(&third, &all, &c).await;
    assert_eq!(counters(&third), (2, 6), "only the two written are read");
    let of = |m: &[Measured], p: &PlacementRef| {
        m.iter()
            .find(|m| m.key == p.key)
            .and_then(|m| m.records.get(&c.name).copied())
    };
    for (i, p) in all.iter().enumerate() {
        let written = u64::from(i == 0 || i == 2);
        assert_eq!(
            of(&after, p),
            of(&before, p).map(|n| n + written),
            "tenant {i}"
        );
    }
    let cold = fresh(&dir);
    assert_eq!(
        after,
        measure(&cold, &all, &c).await,
        "as a pass from nothing"
    );
}

#[tokio::test]
async fn an_unreadable_or_foreign_file_of_kept_measurements_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = conformance::items_collection();
    let (all, before) = measured_then_closed(&dir, &c).await;
    let file = dir.path().join(crate::measure::memo::FILE);
    let kept = std::fs::read(&file).expect("kept");
    for garbage in [
        b"{not json".to_vec(),
        kept[..kept.len() / 2].to_vec(),
        br#"{"version": 99, "silos": [], "pooled": []}"#.to_vec(),
        Vec::new(),
    ] {
        std::fs::write(&file, &garbage).expect("write");
        let next = engine(&dir, Duration::ZERO);
        assert_eq!(measure(&next, &all, &c).await, before);
        assert_eq!(counters(&next), (8, 0), "everything is read again");
    }
}
