//! Runtimes for background work that must not starve requests, one per priority:
//!
//! - [`Priority::Low`] (nice 19 on Linux): live moves and storage sampling. Both take steps
//!   too big to wait behind every request: a move holds a tenant's writes at its end, so
//!   its copy must keep moving on a busy machine; a sampling pass reads a whole pool in one
//!   step, holding one read open while it waits for a CPU.
//! - [`Priority::Idle`] (Linux's `SCHED_IDLE`, or nice 19 where that cannot be set): schema
//!   rollouts (a silo at a time), the ready pool's keeper and the retrier of unfinished
//!   work. A thread under the idle policy gives its CPU up as soon as a request thread
//!   wakes, which at nice 19 waits for the end of the background thread's time slice. That
//!   took a neighbour's p99 during a 10,000-silo rollout from 0.65–0.77 ms to 0.55–0.56 ms
//!   (BENCHMARKS.md, issue 18); moves under the same policy copied 2.4–3.5× slower.
//!
//! Each runtime has one worker and its own blocking pool, which is where engines run their
//! storage calls. When requests want the CPU they get it first; when the machine is
//! otherwise idle, the background work runs at full speed. Each is started on first use; if
//! one cannot be started (or the priority cannot be lowered), the work runs on the caller's
//! runtime as before. The catalog's I/O runs on the runtime that asks for it, so background
//! work's catalog writes wait behind requests too; a step whose threads are starved is
//! raised to normal priority with its catalog writes.
//!
//! Low priority must not mean no progress: on a machine busy with requests the background
//! threads may wait for a CPU far longer than they run. [`sched`] reads how long they ran
//! and how long they waited (Linux's per-thread `schedstat`), so the work can tell when it
//! is starved and take its next steps at normal priority ([`Lane`]).

mod lane;

pub(crate) use lane::Lane;

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;

use parking_lot::Mutex;
use tokio::runtime::Handle;

/// Which background runtime work runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// nice 19: live moves, storage sampling.
    Low,
    /// `SCHED_IDLE` (else nice 19): rollouts, the ready pool, the retrier.
    Idle,
}

/// One background runtime, and its threads' `schedstat` files while they live.
struct Background {
    handle: OnceLock<Option<Handle>>,
    threads: Mutex<Vec<PathBuf>>,
}

static LOW: Background = Background {
    handle: OnceLock::new(),
    threads: Mutex::new(Vec::new()),
};
static IDLE: Background = Background {
    handle: OnceLock::new(),
    threads: Mutex::new(Vec::new()),
};

impl Priority {
    fn runtime(self) -> &'static Background {
        match self {
            Priority::Low => &LOW,
            Priority::Idle => &IDLE,
        }
    }

    /// The name of the runtime's threads (at this priority).
    fn name(self) -> &'static str {
        match self {
            Priority::Low => "bulkhead-bg",
            Priority::Idle => "bulkhead-idle",
        }
    }

    /// The name of the thread that holds the runtime (it only waits, at normal priority;
    /// 15 bytes at most, as Linux keeps them).
    fn holder(self) -> &'static str {
        match self {
            Priority::Low => "bulkhead-bg-rt",
            Priority::Idle => "bulkhead-idl-rt",
        }
    }

    /// The runtime's handle, started on first use; `None` when it could not be started.
    fn handle(self) -> Option<&'static Handle> {
        self.runtime().handle.get_or_init(|| start(self)).as_ref()
    }
}

/// Runs `work` on the background runtime of `priority`.
pub(crate) fn spawn<F>(priority: Priority, work: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match priority.handle() {
        Some(handle) => {
            handle.spawn(work);
        }
        None => {
            tokio::spawn(work);
        }
    }
}

/// CPU time the background threads have had, and time they spent runnable but waiting for a
/// CPU, summed over the live threads, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sched {
    pub ran: u64,
    pub waited: u64,
}

impl Sched {
    /// What happened between `self` and the later reading `now`. A thread that ended in
    /// between takes its counts with it, so a difference never goes below zero.
    pub fn since(self, now: Sched) -> Sched {
        Sched {
            ran: now.ran.saturating_sub(self.ran),
            waited: now.waited.saturating_sub(self.waited),
        }
    }
}

/// The scheduling so far of the threads of `priority`'s runtime; `None` where the system
/// does not tell (not Linux, or no such runtime).
pub(crate) fn sched(priority: Priority) -> Option<Sched> {
    let threads = priority.runtime().threads.lock().clone();
    if threads.is_empty() {
        return None;
    }
    let mut total = Sched::default();
    for path in threads {
        // A thread may end between the list and the read; it then counts for nothing.
        if let Some(s) = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| parse_schedstat(&text))
        {
            total.ran += s.ran;
            total.waited += s.waited;
        }
    }
    Some(total)
}

/// `schedstat` holds three numbers: time on a CPU (ns), time waiting on a run queue (ns),
/// and time slices run.
fn parse_schedstat(text: &str) -> Option<Sched> {
    let mut fields = text.split_ascii_whitespace();
    let ran = fields.next()?.parse().ok()?;
    let waited = fields.next()?.parse().ok()?;
    Some(Sched { ran, waited })
}

/// This thread's `schedstat` file, under its thread id (`/proc/thread-self` names it).
fn own_schedstat() -> Option<PathBuf> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    let path = PathBuf::from("/proc").join(link).join("schedstat");
    path.exists().then_some(path)
}

/// Lowers this thread's priority as `priority` says: the idle policy where the system has
/// it, else (and for [`Priority::Low`]) nice 19.
fn lower(priority: Priority) -> Result<(), thread_priority::Error> {
    use thread_priority::{ThreadPriority, set_current_thread_priority};
    #[cfg(target_os = "linux")]
    if priority == Priority::Idle {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        let idle = set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        );
        match idle {
            Ok(()) => return Ok(()),
            Err(e) => tracing::debug!(error = ?e, "no idle policy for a background thread"),
        }
    }
    let _ = priority;
    set_current_thread_priority(ThreadPriority::Min)
}

fn on_start(priority: Priority) {
    if let Err(e) = lower(priority) {
        tracing::debug!(error = ?e, "could not lower a background thread's priority");
        return;
    }
    if let Some(path) = own_schedstat() {
        priority.runtime().threads.lock().push(path);
    }
}

fn on_stop(priority: Priority) {
    if let Some(path) = own_schedstat() {
        priority.runtime().threads.lock().retain(|p| *p != path);
    }
}

fn start(priority: Priority) -> Option<Handle> {
    let (ready, handle) = std::sync::mpsc::channel();
    let started = std::thread::Builder::new()
        .name(priority.holder().into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(8)
                .thread_name(priority.name())
                .on_thread_start(move || on_start(priority))
                .on_thread_stop(move || on_stop(priority))
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => {
                    let _ = ready.send(Some(runtime.handle().clone()));
                    // Lives as long as the process; its tasks end with their work.
                    runtime.block_on(std::future::pending::<()>());
                }
                Err(e) => {
                    tracing::warn!(error = %e, ?priority, "no background runtime; its work runs at normal priority");
                    let _ = ready.send(None);
                }
            }
        });
    match started {
        Ok(_) => handle.recv().ok().flatten(),
        Err(e) => {
            tracing::warn!(error = %e, ?priority, "no background thread; its work runs at normal priority");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_is_read_as_ran_then_waited() {
        assert_eq!(
            parse_schedstat("397834362 3321663 27\n"),
            Some(Sched {
                ran: 397_834_362,
                waited: 3_321_663
            })
        );
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("12 x 3"), None);
    }

    #[test]
    fn a_difference_never_goes_below_zero() {
        let before = Sched {
            ran: 10,
            waited: 50,
        };
        let after = Sched { ran: 15, waited: 5 };
        assert_eq!(before.since(after), Sched { ran: 5, waited: 0 });
    }

    /// The calling thread's policy (field 41 of `/proc/thread-self/stat`: 0 normal, 5
    /// idle) and nice value (field 19).
    fn policy_and_nice() -> (u32, i32) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The fields after the command name, which is in parentheses.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        (fields[38].parse().unwrap(), fields[16].parse().unwrap())
    }

    #[test]
    fn each_runtime_runs_its_work_at_its_priority() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let on = |priority| {
            let (tx, rx) = std::sync::mpsc::channel();
            spawn(priority, async move {
                let worker = policy_and_nice();
                let blocking = tokio::task::spawn_blocking(policy_and_nice).await.unwrap();
                let _ = tx.send((worker, blocking));
            });
            rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap()
        };
        let (worker, blocking) = on(Priority::Idle);
        assert_eq!(
            worker.0, 5,
            "the idle runtime's worker runs under SCHED_IDLE"
        );
        assert_eq!(blocking.0, 5, "and so does its blocking pool");
        let (worker, blocking) = on(Priority::Low);
        assert_eq!(
            worker,
            (0, 19),
            "the low runtime's worker: normal policy, nice 19"
        );
        assert_eq!(blocking, (0, 19));
        assert!(sched(Priority::Idle).is_some() && sched(Priority::Low).is_some());
    }

    #[test]
    fn this_threads_schedstat_is_found_on_linux() {
        if cfg!(target_os = "linux") {
            let path = own_schedstat().expect("a schedstat file");
            let text = std::fs::read_to_string(path).unwrap();
            assert!(parse_schedstat(&text).is_some(), "{text}");
        }
    }
}
