//! The catalog's in-memory caches and the one rule they share.
//!
//! A cache fill races a change like this: it reads the catalog, the change commits and its
//! invalidation runs, then the fill stores what it read — a stale row, kept until the next
//! change. To stop that, every invalidation bumps one counter under the lock of the cache
//! it touches, and a fill stores only when the counter did not move since before its read
//! (checked under the same lock). The counter is shared by all caches, so an invalidation
//! that spans several of them (a change from another server, see `sync`) is covered too.
//!
//! The maps are private here: rooms read, fill and invalidate through these methods only, so
//! no room can store a row without the check.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

/// Taken before reading the catalog for a fill; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) struct Ticket(u64);

/// The counter of invalidations every cache of one catalog shares.
#[derive(Debug, Default, Clone)]
pub(crate) struct Freshness(Arc<AtomicU64>);

impl Freshness {
    /// Take before reading what a fill will store.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.0.load(Ordering::Acquire))
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    fn still(&self, ticket: Ticket) -> bool {
        self.0.load(Ordering::Acquire) == ticket.0
    }

    /// A cache of many entries, invalidated through this counter.
    pub(crate) fn map<K, V>(&self) -> Cache<K, V> {
        Cache {
            map: RwLock::new(HashMap::new()),
            fresh: self.clone(),
        }
    }

    /// A cache of one value, invalidated through this counter.
    pub(crate) fn slot<T>(&self, initial: T) -> Slot<T> {
        Slot {
            value: RwLock::new(initial),
            fresh: self.clone(),
        }
    }
}

/// Entries read from the catalog, by key.
pub(crate) struct Cache<K, V> {
    map: RwLock<HashMap<K, V>>,
    fresh: Freshness,
}

impl<K: Eq + Hash + Clone, V: Clone> Cache<K, V> {
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.map.read().get(key).cloned()
    }

    /// Stores `value`, read after `ticket` was taken, unless an invalidation ran since or
    /// `keep(cached, value)` says the entry already there stays. Returns what the cache now
    /// holds for `key`, or `value` when nothing was stored.
    pub(crate) fn fill(
        &self,
        ticket: Ticket,
        key: K,
        value: V,
        keep: impl FnOnce(&V, &V) -> bool,
    ) -> V {
        let mut map = self.map.write();
        if !self.fresh.still(ticket) {
            return value;
        }
        match map.get(&key) {
            Some(cached) if keep(cached, &value) => cached.clone(),
            _ => {
                map.insert(key, value.clone());
                value
            }
        }
    }

    /// Stores what the catalog holds right after this server's own committed change. It
    /// counts as an invalidation: a fill that read before the change is refused after it.
    pub(crate) fn put(&self, key: K, value: V) {
        let mut map = self.map.write();
        self.fresh.bump();
        map.insert(key, value);
    }

    /// Drops one entry (a change to it committed).
    pub(crate) fn forget(&self, key: &K) {
        let mut map = self.map.write();
        self.fresh.bump();
        map.remove(key);
    }

    /// Drops the entries `doomed` names.
    pub(crate) fn forget_where(&self, mut doomed: impl FnMut(&K, &V) -> bool) {
        let mut map = self.map.write();
        self.fresh.bump();
        map.retain(|k, v| !doomed(k, v));
    }

    pub(crate) fn forget_all(&self) {
        let mut map = self.map.write();
        self.fresh.bump();
        map.clear();
    }
}

/// One value read from the catalog as a whole (the collections).
pub(crate) struct Slot<T> {
    value: RwLock<T>,
    fresh: Freshness,
}

impl<T: Clone> Slot<T> {
    pub(crate) fn get(&self) -> T {
        self.value.read().clone()
    }

    /// Stores `value`, read after `ticket` was taken, unless an invalidation ran since.
    pub(crate) fn fill(&self, ticket: Ticket, value: T) -> bool {
        let mut slot = self.value.write();
        if !self.fresh.still(ticket) {
            return false;
        }
        *slot = value;
        true
    }

    /// Marks the value stale (a change committed); the caller reloads it.
    pub(crate) fn invalidate(&self) {
        let _slot = self.value.write();
        self.fresh.bump();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_that_raced_an_invalidation_is_not_stored() {
        let fresh = Freshness::default();
        let routes: Cache<u32, &str> = fresh.map();
        let keys: Cache<u32, &str> = fresh.map();
        let ticket = fresh.ticket();
        // Another cache's invalidation also counts: one change may span several caches.
        keys.forget(&1);
        assert_eq!(routes.fill(ticket, 1, "stale", |_, _| false), "stale");
        assert_eq!(routes.get(&1), None);
        let ticket = fresh.ticket();
        assert_eq!(routes.fill(ticket, 1, "fresh", |_, _| false), "fresh");
        assert_eq!(routes.get(&1), Some("fresh"));
    }

    #[test]
    fn a_fill_that_read_before_a_put_does_not_overwrite_it() {
        let fresh = Freshness::default();
        let routes: Cache<u32, &str> = fresh.map();
        let before = fresh.ticket();
        routes.put(1, "suspended");
        assert_eq!(routes.fill(before, 1, "active", |_, _| false), "active");
        assert_eq!(routes.get(&1), Some("suspended"));
    }

    #[test]
    fn keep_decides_between_the_cached_and_the_read_entry() {
        let fresh = Freshness::default();
        let cache: Cache<u32, u64> = fresh.map();
        cache.put(7, 5);
        let older = |cached: &u64, read: &u64| cached >= read;
        assert_eq!(cache.fill(fresh.ticket(), 7, 3, older), 5);
        assert_eq!(cache.fill(fresh.ticket(), 7, 9, older), 9);
        cache.forget_where(|_, v| *v == 9);
        assert_eq!(cache.get(&7), None);
    }

    #[test]
    fn a_slot_fill_after_invalidation_needs_a_new_ticket() {
        let fresh = Freshness::default();
        let slot = fresh.slot(0u8);
        let ticket = fresh.ticket();
        slot.invalidate();
        assert!(!slot.fill(ticket, 1));
        assert_eq!(slot.get(), 0);
        assert!(slot.fill(fresh.ticket(), 2));
        assert_eq!(slot.get(), 2);
    }
}
