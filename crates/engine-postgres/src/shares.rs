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

/// Permits per tenant, one semaphore per cap: the tier's cap bounds the tenant's requests,
/// and work that carries no cap (a move's copy, the storage sampler) takes the default share
/// beside it. One semaphore replaced by the other each time the cap differed (as it once was)
/// handed out fresh permits while the old ones were still held: requests and a move took
/// turns resetting the count, and the tier's cap was not enforced during a move.
#[derive(Default)]
pub(crate) struct Shares {
    by_tenant: Mutex<HashMap<StorageKey, Vec<Share>>>,
}

/// A cap and the semaphore of its permits.
type Share = (u32, Arc<Semaphore>);

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
            let caps = map.entry(tenant.clone()).or_default();
            match caps.iter().find(|(c, _)| *c == cap) {
                Some((_, semaphore)) => Arc::clone(semaphore),
                None => {
                    // A changed tier applies to permits taken from now on; a cap nobody
                    // holds a permit of any more is forgotten.
                    caps.retain(|(c, s)| s.available_permits() < *c as usize);
                    let semaphore = Arc::new(Semaphore::new(cap as usize));
                    caps.push((cap, Arc::clone(&semaphore)));
                    semaphore
                }
            }
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

    /// Work without a cap (a move's copy) beside requests under the tier's: each keeps its
    /// own count, and the tier's cap still holds after the other took permits.
    #[tokio::test]
    async fn work_with_another_cap_does_not_reset_the_tiers() {
        let shares = Shares::default();
        let key = StorageKey::of(
            &bulkhead_core::TenantId::parse("mover").unwrap(),
            &bulkhead_core::Incarnation::legacy(),
        );
        let wait = Duration::from_millis(30);
        let mut requests = Vec::new();
        for _ in 0..2 {
            requests.push(shares.acquire(&key, 2, wait).await.unwrap());
        }
        let copy = shares.acquire(&key, 8, wait).await;
        assert!(copy.is_some(), "the copy has its own share");
        assert!(
            shares.acquire(&key, 2, wait).await.is_none(),
            "requests are still at their cap of 2"
        );
        // A new tier's cap once nobody holds the old one's permits: the old one is forgotten.
        drop(requests);
        assert!(shares.acquire(&key, 3, wait).await.is_some());
        let held = shares.by_tenant.lock()[&key]
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>();
        assert_eq!(held, vec![8, 3], "cap 2 has no permit out and is gone");
    }
}
