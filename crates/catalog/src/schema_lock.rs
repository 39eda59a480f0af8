//! This server's schema lock ([`crate::Catalog::lock_schema`]): it serialises provisioning,
//! deletion and schema rollouts, and knows whether anyone is waiting for it, so a rollout
//! holding it on a low-priority thread can take its remaining steps at normal priority
//! (`rollout::run`) rather than keep a tenant's creation waiting for an idle CPU.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Mutex, MutexGuard};

#[derive(Default)]
pub(crate) struct SchemaLock {
    lock: Mutex<()>,
    /// How many are waiting for `lock` right now.
    waiting: AtomicUsize,
}

impl SchemaLock {
    /// Takes the lock, counted among its waiters until it has it (or stops waiting).
    pub async fn lock_counted(&self) -> MutexGuard<'_, ()> {
        let _waiting = Waiting::count(&self.waiting);
        self.lock.lock().await
    }

    /// Whether someone waits for the lock right now.
    pub fn wanted(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }
}

/// One waiter, counted while it waits, however its wait ends (a dropped future too).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Held while provisioning or rolling out schema (see [`crate::Catalog::lock_schema`]).
pub(crate) struct SchemaGuard<'a> {
    // Dropped first: the catalog-wide lock is released before this server's.
    _shared: Option<bulkhead_store::postgres::SchemaGuard>,
    _local: MutexGuard<'a, ()>,
}

impl<'a> SchemaGuard<'a> {
    pub fn new(
        shared: Option<bulkhead_store::postgres::SchemaGuard>,
        local: MutexGuard<'a, ()>,
    ) -> Self {
        SchemaGuard {
            _shared: shared,
            _local: local,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    #[test]
    fn waiters_are_counted_while_they_wait_and_no_longer() {
        let lock = SchemaLock::default();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(!lock.wanted());
        let held = match pin!(lock.lock_counted()).poll(&mut cx) {
            Poll::Ready(guard) => guard,
            Poll::Pending => panic!("a free lock is taken at once"),
        };
        assert!(!lock.wanted(), "the holder is no waiter");
        {
            let mut waiter = pin!(lock.lock_counted());
            assert!(waiter.as_mut().poll(&mut cx).is_pending());
            assert!(lock.wanted(), "one waits");
        }
        assert!(!lock.wanted(), "a waiter that gave up is not counted");
        let mut waiter = pin!(lock.lock_counted());
        assert!(waiter.as_mut().poll(&mut cx).is_pending());
        assert!(lock.wanted());
        drop(held);
        assert!(matches!(waiter.as_mut().poll(&mut cx), Poll::Ready(_)));
        assert!(!lock.wanted(), "it has the lock now");
    }
}
