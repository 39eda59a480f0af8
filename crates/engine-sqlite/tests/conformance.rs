//! The engine conformance suite, run against the SQLite engine.

use std::sync::Arc;

use bulkhead_core::time::SystemClock;
use bulkhead_engine::conformance;
use bulkhead_engine_sqlite::{SqliteConfig, SqliteEngine};

fn engine(dir: &tempfile::TempDir) -> SqliteEngine {
    SqliteEngine::open(SqliteConfig::new(dir.path()), Arc::new(SystemClock)).expect("open engine")
}

macro_rules! conformance_tests {
    ($($name:ident),+ $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let dir = tempfile::tempdir().expect("tempdir");
            conformance::$name(&engine(&dir)).await;
        }
    )+};
}

conformance_tests!(
    records_round_trip_on_every_model,
    neighbours_in_a_shared_namespace_are_invisible,
    duplicates_conflict_within_a_tenant,
    versions_guard_changes,
    lists_page_in_id_order_with_filters,
    read_scopes_cannot_write,
    schema_changes_apply_live,
    destroy_removes_only_that_tenant,
    incarnations_of_one_tenant_id_share_nothing,
    filters_match_the_reference_semantics,
    sorted_pages_visit_every_record_once,
    search_ranks_within_the_tenant,
    aggregations_match_the_reference,
    calendar_buckets,
    bulk_operations_fail_alone,
    retire_removes_only_the_version_read,
    budgets_stop_expensive_queries,
    restore_keeps_system_fields_and_replaces_by_id,
    measure_counts_records_and_bytes_per_model,
    an_added_text_field_is_searchable_on_every_row,
);

/// The storage sampler's pace: a paced measure rests after each silo (and each page of a
/// pooled table) as long as its `Rest` says, and measures the same.
#[tokio::test]
async fn a_paced_measure_rests_between_silos() {
    use bulkhead_core::model::Isolation;
    use bulkhead_engine::{Engine, Rest};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    struct Counting(AtomicUsize);
    impl Rest for Counting {
        fn rest_after(&self, _busy: Duration) -> Duration {
            self.0.fetch_add(1, Ordering::Relaxed);
            Duration::from_millis(30)
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(&dir);
    let c = conformance::items_collection();
    let mut placements = Vec::new();
    for i in 0..4 {
        let t = conformance::tenant(&format!("s{i}"));
        let target = conformance::target(&t, Isolation::Silo);
        engine
            .provision(&target, std::slice::from_ref(&c))
            .await
            .expect("provision");
        placements.push(target);
    }
    let rest = Arc::new(Counting(AtomicUsize::new(0)));
    let started = Instant::now();
    let paced = engine
        .measure_paced(&placements, std::slice::from_ref(&c), rest.clone())
        .await
        .expect("paced");
    assert!(
        rest.0.load(Ordering::Relaxed) >= 4,
        "a rest after each silo"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(120),
        "and it rested"
    );
    assert_eq!(paced.len(), 4);
}

#[tokio::test]
async fn many_silos_work_with_a_bounded_number_of_open_files() {
    use bulkhead_core::access::DataAction;
    use bulkhead_core::model::Isolation;
    use bulkhead_core::record::validate_full;
    use bulkhead_engine::Engine;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = SqliteConfig::new(dir.path());
    config.silo_handle_cap = 4;
    let engine = SqliteEngine::open(config, Arc::new(SystemClock)).expect("open");
    let c = conformance::items_collection();
    let tenants: Vec<_> = (0..40)
        .map(|i| conformance::tenant(&format!("silo{i:02}")))
        .collect();
    for t in &tenants {
        engine
            .provision(
                &conformance::target(t, Isolation::Silo),
                std::slice::from_ref(&c),
            )
            .await
            .expect("provision");
        let (_, fields, _) =
            validate_full(&c, &serde_json::json!({"title": t.as_str()}), None).expect("valid");
        let record = bulkhead_core::record::NewRecord {
            id: bulkhead_core::RecordId::generate(),
            fields,
        };
        engine
            .insert(
                &conformance::scope(t, Isolation::Silo, DataAction::Write),
                &c,
                vec![record],
            )
            .await
            .expect("insert");
        assert!(
            engine.stats().open_handles <= 4,
            "open handles: {}",
            engine.stats().open_handles
        );
    }
    // Every silo still answers after its handle was closed, with its own data only.
    for t in &tenants {
        let page = engine
            .list(
                &conformance::scope(t, Isolation::Silo, DataAction::Read),
                &c,
                &bulkhead_engine::ListQuery {
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].record.to_json()["title"], t.as_str());
    }
    assert!(engine.stats().open_handles <= 4);
}

/// Files are opened and closed outside the cache's lock: many requests at once on more
/// silos than the cache holds, several racing to open the same cold file, each write
/// acknowledged is there afterwards, in its own silo only, and the cache stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silos_opened_and_closed_concurrently_keep_every_write_in_its_own_file() {
    use bulkhead_core::access::DataAction;
    use bulkhead_core::model::Isolation;
    use bulkhead_core::record::validate_full;
    use bulkhead_engine::Engine;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = SqliteConfig::new(dir.path());
    config.silo_handle_cap = 2;
    let engine = Arc::new(SqliteEngine::open(config, Arc::new(SystemClock)).expect("open"));
    let c = conformance::items_collection();
    let tenants: Vec<_> = (0..6)
        .map(|i| conformance::tenant(&format!("busy{i}")))
        .collect();
    for t in &tenants {
        engine
            .provision(
                &conformance::target(t, Isolation::Silo),
                std::slice::from_ref(&c),
            )
            .await
            .expect("provision");
    }
    let mut tasks = Vec::new();
    for worker in 0..12usize {
        let (engine, c, tenants) = (Arc::clone(&engine), c.clone(), tenants.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..25usize {
                // Two workers share each silo at a time, and every step moves on to another.
                let t = &tenants[(worker / 2 + i) % tenants.len()];
                let title = format!("{}-w{worker}-{i}", t.as_str());
                let (_, fields, _) =
                    validate_full(&c, &serde_json::json!({"title": title}), None).expect("valid");
                let record = bulkhead_core::record::NewRecord {
                    id: bulkhead_core::RecordId::generate(),
                    fields,
                };
                engine
                    .insert(
                        &conformance::scope(t, Isolation::Silo, DataAction::Write),
                        &c,
                        vec![record],
                    )
                    .await
                    .expect("insert");
            }
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
    assert!(engine.stats().open_handles <= 2);
    let mut total = 0;
    for t in &tenants {
        let page = engine
            .list(
                &conformance::scope(t, Isolation::Silo, DataAction::Read),
                &c,
                &bulkhead_engine::ListQuery {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        for hit in &page {
            let title = hit.record.to_json()["title"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            assert!(
                title.starts_with(&format!("{}-", t.as_str())),
                "{title} in {t:?}"
            );
        }
        total += page.len();
    }
    assert_eq!(total, 12 * 25, "every acknowledged write is there");
}

#[tokio::test]
async fn plans_use_the_tenant_leading_indexes() {
    use bulkhead_core::access::DataAction;
    use bulkhead_core::model::Isolation;
    use bulkhead_core::query;
    use bulkhead_core::query::sort::parse_sort;
    use bulkhead_engine::{Engine, ListQuery};

    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(&dir);
    let c = conformance::items_collection();
    for isolation in [Isolation::Pool, Isolation::Bridge, Isolation::Silo] {
        let t = conformance::tenant(&format!("plan-{isolation}"));
        engine
            .provision(
                &conformance::target(&t, isolation),
                std::slice::from_ref(&c),
            )
            .await
            .expect("provision");
        let r = conformance::scope(&t, isolation, DataAction::Read);
        for (filter, sort) in [("n = 3", ""), ("n > 3", "n"), ("n = 3", "-n"), ("", "-n")] {
            let query = ListQuery {
                filter: query::filter(filter, &c).expect("filter"),
                sort: if sort.is_empty() {
                    vec![]
                } else {
                    parse_sort(sort, &c).expect("sort")
                },
                ..Default::default()
            };
            let plan = engine
                .explain_list(&r, &c, &query)
                .await
                .expect("explain")
                .join(" | ");
            eprintln!("{isolation} filter={filter:?} sort={sort:?}: {plan}");
            assert!(
                plan.contains("USING INDEX") && plan.contains("__ix__i_n"),
                "{isolation} {filter} {sort}: {plan}"
            );
            assert!(
                !plan.contains("TEMP B-TREE"),
                "{isolation} {filter} {sort}: the index orders: {plan}"
            );
            if isolation == Isolation::Pool {
                // Never a scan of the shared table: the tenant leads every lookup.
                assert!(
                    plan.contains("tenant_id=?"),
                    "pool: the tenant leads the index lookup: {plan}"
                );
                assert!(
                    !plan.contains("SCAN"),
                    "pool {filter} {sort}: no scan: {plan}"
                );
            }
        }
    }
}

/// Search-index upkeep in a pool reaches the index only through the tenant's own row, and
/// finds that row by its unique search number, not by scanning the tenant's rows.
#[tokio::test]
async fn pooled_search_upkeep_goes_through_the_tenants_row_by_its_number() {
    use bulkhead_core::RecordId;
    use bulkhead_core::access::DataAction;
    use bulkhead_core::model::Isolation;
    use bulkhead_core::record::NewRecord;
    use bulkhead_engine::Engine;

    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(&dir);
    let c = conformance::items_collection();
    for name in ["upkeep-a", "upkeep-b"] {
        let t = conformance::tenant(name);
        engine
            .provision(
                &conformance::target(&t, Isolation::Pool),
                std::slice::from_ref(&c),
            )
            .await
            .expect("provision");
        let scope = conformance::scope(&t, Isolation::Pool, DataAction::Write);
        let records = (0..300)
            .map(|i| NewRecord {
                id: RecordId::parse(&format!("r{i}")).expect("id"),
                fields: bulkhead_core::record::validate_full(
                    &c,
                    &serde_json::json!({"title": format!("word{i} shared")}),
                    None,
                )
                .expect("valid")
                .1,
            })
            .collect();
        engine.insert(&scope, &c, records).await.expect("insert");
    }
    let pool = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.file_name().is_some_and(|n| n == "pool.db"))
        .expect("the pool file");
    let conn = rusqlite::Connection::open(pool).expect("open pool");
    for statement in [
        "DELETE FROM \"c_items-fts\" WHERE rowid IN (SELECT seq FROM \"c_items\" WHERE tenant_id = ?1 AND seq = ?2)",
        "INSERT INTO \"c_items-fts\"(rowid, body) SELECT seq, ?3 FROM \"c_items\" WHERE tenant_id = ?1 AND seq = ?2",
    ] {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {statement}"))
            .expect("explain");
        let values = ["upkeep-a", "1", "body"];
        let n = stmt.parameter_count();
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(&values[..n]), |r| {
                r.get::<_, String>(3)
            })
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("rows");
        let plan = plan.join(" | ");
        assert!(
            plan.contains("__ix__seq (seq=?)"),
            "the row is found by its number: {plan}"
        );
    }
}
