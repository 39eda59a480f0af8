//! Two `bulkhead serve` processes sharing one PostgreSQL catalog (`--catalog postgres://…`):
//! what one writes, the other serves — tenants, keys, collections, routes; what one revokes,
//! suspends or deletes, the other refuses; concurrent creates on both never double-place or
//! lose a tenant; the audit log holds both servers' changes; the data role of the default
//! domain cannot read the catalog.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod lives;
mod rollouts;
mod serving;

use std::time::{Duration, Instant};

use common::Server;

fn start_pair(dir: &std::path::Path, catalog: &str) -> (Server, Server) {
    let env = [("BULKHEAD_CATALOG", catalog)];
    for side in ["a", "b"] {
        std::fs::create_dir_all(dir.join(side)).unwrap();
    }
    let a = Server::start_with(&dir.join("a"), &env);
    let b = Server::start_with(&dir.join("b"), &env);
    (a, b)
}

/// Retries `check` until it holds, for at most `within`; returns how long it took.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{what}: not seen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn status_of(result: Result<serde_json::Value, bulkhead_client::ClientError>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(e) => e.status().unwrap_or(0),
    }
}
