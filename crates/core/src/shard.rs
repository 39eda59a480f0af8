//! Counters written by every request and read now and then (usage counts, recent latencies)
//! are kept in shards, one per thread slot, so two cores recording at once do not take turns
//! on one lock or pull one cache line back and forth. Readers merge the shards.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Shards a sharded structure keeps: enough for the cores a server usually has; threads past
/// it share.
pub const SHARDS: usize = 16;

/// The shard of the calling thread, in `0..SHARDS`: each thread gets the next one the first
/// time it asks, so a runtime's few worker threads each get one of their own.
pub fn this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SLOT.with(|slot| *slot)
}

/// A map for what every request records: keys hashed with foldhash (fast, and seeded per
/// map) rather than the standard SipHash, which costs more than the rest of a lookup on
/// short keys. Its keys are our own (tenant ids, route templates, label sets), never text an
/// anonymous caller chooses.
pub type HotMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The set kind of [`HotMap`].
pub type HotSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// A value aligned to its own cache lines, so neighbouring shards do not share one.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_shard_and_threads_spread_over_them() {
        let mine = this_thread();
        assert_eq!(mine, this_thread());
        let others: std::collections::HashSet<usize> = (0..4)
            .map(|_| std::thread::spawn(this_thread).join().unwrap())
            .collect();
        assert!(others.iter().all(|s| *s < SHARDS));
        // Other tests' threads may take slots meanwhile, but four in a row cannot all land
        // on one.
        assert!(others.len() > 1, "new threads take their own shards");
    }
}
