//! Storage sampling racing deletion and re-creation: passes over every tenant run back to
//! back while tenants of every model are deleted and created again under their ids with far
//! fewer records. No sample of a deleted life is recorded as the new one's (quota, costs and
//! the planner read those), no file of a deleted life is left in the data directory (the
//! sampler reads silos through connections of its own, which must not bring back a file or
//! its `-wal`/`-shm` that the deletion removed), and `bulkhead doctor` finds nothing orphaned.
//! (With the sampler's check of the life taken out, the watcher caught an ended life's sample
//! in 2 runs of 3.)
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bulkhead_api::UsageQuery;
use bulkhead_client::Client;
use bulkhead_core::access::TenantRole;
use common::{Server, create_tenant, items, key, put_items, tid};

const OLD_RECORDS: usize = 60;
const NEW_RECORDS: usize = 3;

async fn fill(server: &Server, admin: &Client, id: &str, records: usize, title: &str) {
    let client = server.client(&key(admin, id, TenantRole::Member).await);
    let body: Vec<u8> = (0..records)
        .flat_map(|i| {
            format!("{{\"id\":\"{title}{i:05}\",\"title\":\"{title} {i}\"}}\n").into_bytes()
        })
        .collect();
    let report = client.bulk(&items(), body, true).await.unwrap();
    assert_eq!(report.created as usize, records);
}

/// Every file in a `silos` directory under `dir` (a silo is `silos/<storage key>.db`, with
/// its `-wal` and `-shm` beside it while open), by name.
fn silo_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let in_silos = d.file_name().is_some_and(|n| n == "silos");
        for entry in std::fs::read_dir(&d).unwrap().filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if in_silos {
                found.push(path.file_name().unwrap().to_str().unwrap().to_owned());
            }
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sampling_racing_deletion_and_re_creation_records_nothing_of_an_ended_life() {
    let dir = tempfile::tempdir().unwrap();
    // No ready silos: every silo file in the directory then belongs to a tenant.
    let server = Server::start_with(dir.path(), &[("BULKHEAD_READY_SILOS", "0")]);
    let admin = server.admin();
    put_items(&admin).await;
    let mut tenants = Vec::new();
    for (tier, prefix) in [("free", "p"), ("standard", "b"), ("premium", "s")] {
        for i in 0..4 {
            let id = format!("{prefix}{i}");
            create_tenant(&admin, &id, tier).await;
            fill(&server, &admin, &id, OLD_RECORDS, "old").await;
            tenants.push((id, tier));
        }
    }

    // Each life's size, by its incarnation: a re-created tenant always has fewer records
    // than the life it replaced (60, then 50, 40, … 3 in the rounds), so a sample of an ended
    // life recorded for the current one shows more records than the current one can have.
    let sizes: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    for (id, _) in &tenants {
        let view = admin.get_tenant(&tid(id)).await.unwrap();
        sizes
            .lock()
            .unwrap()
            .insert(view.placement.incarnation.to_string(), OLD_RECORDS as u64);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let passes = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (admin, stop, passes) = (admin.clone(), Arc::clone(&stop), Arc::clone(&passes));
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                admin.sample_storage(None).await.unwrap();
                passes.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // Watches every tenant's latest sample while the races run.
    let checker = {
        let (admin, stop, sizes) = (admin.clone(), Arc::clone(&stop), Arc::clone(&sizes));
        let ids: Vec<String> = tenants.iter().map(|(id, _)| id.clone()).collect();
        tokio::spawn(async move {
            let mut checked = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for id in &ids {
                    let Ok(before) = admin.get_tenant(&tid(id)).await else {
                        continue;
                    };
                    let periods = admin
                        .list_usage(&UsageQuery {
                            tenant: Some(tid(id)),
                            limit: Some(1),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                    let Ok(after) = admin.get_tenant(&tid(id)).await else {
                        continue;
                    };
                    let life = before.placement.incarnation.to_string();
                    let size = sizes.lock().unwrap().get(&life).copied();
                    let (Some(storage), Some(size)) =
                        (periods.items.first().and_then(|p| p.storage.clone()), size)
                    else {
                        continue;
                    };
                    if after.placement.incarnation != before.placement.incarnation
                        || storage.sampled_at < before.created_at
                    {
                        continue;
                    }
                    checked += 1;
                    assert!(
                        storage.records <= size,
                        "{id}: a sample of this life ({life}, at most {size} records) shows {}: \
                         an ended life's",
                        storage.records
                    );
                }
            }
            checked
        })
    };
    for (round, size) in [50usize, 40, 30, 20, 10, NEW_RECORDS]
        .into_iter()
        .enumerate()
    {
        for (n, (id, tier)) in tenants.iter().enumerate() {
            if (n + round) % 2 == 1 {
                continue;
            }
            admin.delete_tenant(&tid(id)).await.unwrap();
            create_tenant(&admin, id, tier).await;
            let view = admin.get_tenant(&tid(id)).await.unwrap();
            sizes
                .lock()
                .unwrap()
                .insert(view.placement.incarnation.to_string(), size as u64);
            fill(&server, &admin, id, size, "new").await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    let checked = checker.await.unwrap();
    assert!(passes.load(Ordering::SeqCst) >= 3, "too few passes raced");
    assert!(
        checked >= 20,
        "too few samples checked during the races: {checked}"
    );

    // A last pass with nothing racing it, then every tenant's latest sample: one taken in its
    // current life counts that life's records, never an ended one's.
    admin.sample_storage(None).await.unwrap();
    let mut live_namespaces = BTreeSet::new();
    for (id, _) in &tenants {
        let view = admin.get_tenant(&tid(id)).await.unwrap();
        live_namespaces.insert(view.placement.namespace.clone());
        let real = common::all_titles(&server.client(&key(&admin, id, TenantRole::Member).await))
            .await
            .len() as u64;
        let quota = admin.with_tenant(tid(id)).quota().await.unwrap();
        assert_eq!(quota.records, real, "{id}: {quota:?}");
        let periods = admin
            .list_usage(&UsageQuery {
                tenant: Some(tid(id)),
                ..Default::default()
            })
            .await
            .unwrap();
        let storage = periods.items[0].storage.clone().unwrap();
        assert!(storage.sampled_at >= view.created_at, "{id}: {storage:?}");
        assert_eq!(storage.records, real, "{id}: {storage:?}");
    }

    // No file of an ended life, and nothing the doctor calls orphaned.
    let files = silo_files(dir.path());
    assert!(
        files.len() >= 4,
        "the silos' files were not found: {files:?}"
    );
    for file in files {
        let key = file.split(".db").next().unwrap();
        assert!(
            live_namespaces.contains(&format!("silo-{key}")),
            "{file} belongs to no live tenant ({live_namespaces:?})"
        );
    }
    let report = admin.doctor().await.unwrap();
    assert!(
        report.orphans.is_empty() && report.unchecked_domains.is_empty(),
        "orphaned storage: {report:#?}"
    );
}
