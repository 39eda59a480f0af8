//! Each tenant's share of a domain's connections. Pool and bridge tenants share one pool;
//! without a cap, one tenant running many expensive queries holds every connection and its
//! neighbours wait behind it. A tenant first takes one of its own permits (its tier's
//! `max_domain_connections`, default a quarter of the pool), then a connection: its surplus
//! work queues on its own permits, never in front of its neighbours.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_core::StorageKey;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Default)]
pub(crate) struct Shares {
    by_tenant: Mutex<HashMap<StorageKey, (u32, Arc<Semaphore>)>>,
}

impl Shares {
    /// One of `tenant`'s `cap` permits, waiting at most `wait`; `None` when none came free.
    pub(crate) async fn acquire(
        &self,
        tenant: &StorageKey,
        cap: u32,
        wait: Duration,
    ) -> Option<OwnedSemaphorePermit> {
        let cap = cap.max(1);
        let semaphore = {
            let mut map = self.by_tenant.lock();
            let entry = map
                .entry(tenant.clone())
                .or_insert_with(|| (cap, Arc::new(Semaphore::new(cap as usize))));
            // A changed tier applies to permits taken from now on.
            if entry.0 != cap {
                *entry = (cap, Arc::new(Semaphore::new(cap as usize)));
            }
            Arc::clone(&entry.1)
        };
        tokio::time::timeout(wait, semaphore.acquire_owned())
            .await
            .ok()?
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tenant_holds_at_most_its_cap_and_neighbours_are_not_held_up() {
        let shares = Shares::default();
        let key = |k: &str| {
            StorageKey::of(
                &bulkhead_core::TenantId::parse(k).unwrap(),
                &bulkhead_core::Incarnation::legacy(),
            )
        };
        let wait = Duration::from_millis(30);
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(shares.acquire(&key("noisy"), 2, wait).await.unwrap());
        }
        assert!(
            shares.acquire(&key("noisy"), 2, wait).await.is_none(),
            "over its cap"
        );
        assert!(
            shares.acquire(&key("quiet"), 2, wait).await.is_some(),
            "neighbour goes on"
        );
        drop(held.pop());
        assert!(
            shares.acquire(&key("noisy"), 2, wait).await.is_some(),
            "a permit came back"
        );
    }
}
