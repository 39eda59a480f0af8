//! Background work at the lowest priority still ends on a machine kept busy at normal
//! priority: a schema rollout (on the idle-priority runtime) whose steps wait for a CPU far
//! longer than they run takes its next steps at normal priority, and finishes; a tenant
//! created meanwhile does not wait for it.
//!
//! A binary of its own: the busy threads would slow every other test running beside it.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bulkhead_api::CreateTenant;
use bulkhead_client::Client;
use bulkhead_core::TierName;
use common::{Server, notes, notes_spec, tid};
use serde_json::json;

async fn silo(admin: &Client, id: &str) {
    admin
        .create_tenant(&CreateTenant {
            id: tid(id),
            name: id.to_owned(),
            tier: TierName::parse("premium").unwrap(),
            labels: Default::default(),
        })
        .await
        .unwrap();
}

/// Threads spinning at normal priority, two per CPU, until dropped.
struct Busy {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Busy {
    fn start() -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        let threads = (0..cpus * 2)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = 1u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) + 1);
                    }
                })
            })
            .collect();
        Busy { stop, threads }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_on_a_machine_kept_busy_is_raised_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            ("BULKHEAD_ROLLOUT_PARALLELISM", "1"),
            ("BULKHEAD_LOG", "info,bulkhead_catalog::background=debug"),
        ],
    );
    let admin = server.admin();
    admin
        .put_collection(&notes(), &notes_spec(false))
        .await
        .unwrap();
    for i in 0..40 {
        silo(&admin, &format!("silo-{i:02}")).await;
    }

    let busy = Busy::start();
    let rollout = admin
        .submit_collection(&notes(), &notes_spec(true))
        .await
        .unwrap()
        .rollout
        .unwrap();
    // Created while the rollout runs (and holds the schema lock a chunk at a time).
    silo(&admin, "newcomer").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let view = admin.get_rollout(&rollout.id).await.unwrap();
        if view.state == "done" {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "a rollout starved by busy CPUs did not end: {view:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(busy);

    assert_eq!(done.placements_left, 0, "{done:?}");
    assert_eq!(done.placements_failed, 0, "{done:?}");
    for id in ["silo-00", "silo-39", "newcomer"] {
        admin
            .with_tenant(tid(id))
            .create_record(&notes(), &json!({"title": "t", "kind": "new"}))
            .await
            .unwrap();
    }
    if cfg!(target_os = "linux") {
        let log = server.log();
        assert!(
            log.contains("background work is starved; raising it for a while"),
            "the lane never saw its threads starved:\n{log}"
        );
        assert!(
            log.contains("schema rollout steps taken at normal priority"),
            "no step of the rollout ran at normal priority:\n{log}"
        );
    }
}
