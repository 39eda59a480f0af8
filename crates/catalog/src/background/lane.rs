//! Where background work runs, step by step.
//!
//! A lane's bulk steps run on a background runtime ([`Priority`]), so requests come first.
//! When that runtime's threads are starved — during a step they waited for a CPU several
//! times longer than they ran — the following steps run at normal priority for a while,
//! still paced by their caller, then low priority is tried again. So the work also finishes
//! on a machine that requests keep saturated.
//!
//! Live moves (on [`Priority::Low`]) also run at normal priority, always, the work that
//! writes race or wait on — the catch-up rounds and everything inside the freeze
//! ([`Lane::normal`]). At low priority, the catch-up falls behind writers that run at normal
//! priority and never converges; inside the freeze, held writes would wait on a starved
//! thread. Schema rollouts (on [`Priority::Idle`]) take each placement's change as a bulk
//! step, and at normal priority while a request waits for the schema lock the rollout holds.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bulkhead_core::error::Error;
use parking_lot::Mutex;
use tokio::runtime::Handle;

use super::{Priority, Sched};

/// A step is starved when its threads waited this many times longer than they ran...
const STARVED_RATIO: u64 = 4;
/// ...and waited at least this long (short steps are noise).
const STARVED_WAIT: Duration = Duration::from_millis(50);
/// How long bulk work stays at normal priority once it was starved.
const RAISED_FOR: Duration = Duration::from_secs(5);

pub(crate) struct Lane {
    main: Handle,
    /// Where bulk steps run while they are not raised.
    home: Priority,
    raised_until: Mutex<Option<Instant>>,
    /// Steps taken at normal priority (logged when the move or rollout pass ends).
    raised_steps: AtomicU64,
}

impl Lane {
    /// `main`: the server's runtime, where requests run; `home`: the runtime the lane's
    /// caller runs on, whose threads' starvation raises the lane.
    pub fn new(main: Handle, home: Priority) -> Self {
        Lane {
            main,
            home,
            raised_until: Mutex::new(None),
            raised_steps: AtomicU64::new(0),
        }
    }

    /// Runs `work` on the server's runtime, at normal priority.
    pub async fn normal<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        self.main
            .spawn(work)
            .await
            .map_err(|e| Error::internal().with_message(format!("background task: {e}")))?
    }

    /// Runs one step of bulk work: at low priority, or at normal priority while the
    /// background threads are starved.
    pub async fn bulk<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        if self.is_raised() {
            self.raised_steps.fetch_add(1, Ordering::Relaxed);
            return self.normal(work).await;
        }
        let before = super::sched(self.home);
        let out = work.await;
        if let (Some(before), Some(after)) = (before, super::sched(self.home))
            && starved(before.since(after))
        {
            tracing::debug!(home = ?self.home, "background work is starved; raising it for a while");
            *self.raised_until.lock() = Some(Instant::now() + RAISED_FOR);
        }
        out
    }

    /// Runs one step of bulk work at normal priority because a request waits for it;
    /// counted with the raised steps.
    pub async fn urgent<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        self.raised_steps.fetch_add(1, Ordering::Relaxed);
        self.normal(work).await
    }

    fn is_raised(&self) -> bool {
        self.raised_until
            .lock()
            .is_some_and(|until| Instant::now() < until)
    }

    /// Steps that ran at normal priority: raised while the lane was starved, or urgent.
    pub fn raised_steps(&self) -> u64 {
        self.raised_steps.load(Ordering::Relaxed)
    }
}

fn starved(step: Sched) -> bool {
    let wait = Duration::from_nanos(step.waited);
    wait >= STARVED_WAIT && step.waited >= step.ran.saturating_mul(STARVED_RATIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ran: u64, waited: u64) -> Sched {
        Sched {
            ran: ran * 1_000_000,
            waited: waited * 1_000_000,
        }
    }

    #[test]
    fn starved_means_waiting_much_longer_than_running() {
        assert!(starved(ms(10, 400)));
        assert!(starved(ms(0, 60)));
        assert!(!starved(ms(100, 300)), "waited 3x: busy, not starved");
        assert!(!starved(ms(1, 20)), "too short to tell");
        assert!(!starved(ms(0, 0)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn bulk_work_runs_and_a_raise_expires() {
        let lane = Lane::new(Handle::current(), Priority::Low);
        assert_eq!(lane.bulk(async { Ok(7) }).await.unwrap(), 7);
        assert_eq!(lane.raised_steps(), 0);
        *lane.raised_until.lock() = Some(Instant::now() + Duration::from_secs(60));
        assert_eq!(lane.bulk(async { Ok(8) }).await.unwrap(), 8);
        assert_eq!(lane.raised_steps(), 1, "ran at normal priority");
        *lane.raised_until.lock() = Some(Instant::now());
        assert!(!lane.is_raised(), "the raise expired");
        let failed: Result<(), Error> = lane.normal(async { Err(Error::internal()) }).await;
        assert!(failed.is_err());
    }
}
