//! The engine conformance suite, run against the PostgreSQL engine. Each test starts its own
//! throwaway server (see `bulkhead-pg-testkit`).

use std::sync::Arc;

use bulkhead_core::time::SystemClock;
use bulkhead_engine::conformance;
use bulkhead_engine_postgres::{PgConfig, PgEngine};
use bulkhead_pg_testkit::PgServer;

async fn engine(server: &PgServer) -> PgEngine {
    PgEngine::connect(PgConfig::new(server.url("postgres")), Arc::new(SystemClock))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()))
}

macro_rules! conformance_tests {
    ($($name:ident),+ $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let Some(server) = bulkhead_pg_testkit::require(stringify!($name)) else {
                return;
            };
            conformance::$name(&engine(&server).await).await;
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
