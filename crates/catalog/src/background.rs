//! A runtime for background work that must not starve requests: live moves' copies.
//!
//! Its threads (one worker, and its own blocking pool, which is where engines run their
//! storage calls) run at the lowest CPU priority (nice 19 on Linux). When requests want the
//! CPU they get it first; when the machine is otherwise idle, the background work runs at
//! full speed. One per process, started on first use; if it cannot be started (or the
//! priority cannot be lowered), the work runs on the caller's runtime as before.
//!
//! Low priority must not mean no progress: on a machine busy with requests the background
//! threads may wait for a CPU far longer than they run. [`sched`] reads how long they ran
//! and how long they waited (Linux's per-thread `schedstat`), so the work can tell when it
//! is starved and take its next steps at normal priority (`moves::lane`).

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;

use parking_lot::Mutex;
use tokio::runtime::Handle;

static BACKGROUND: OnceLock<Option<Handle>> = OnceLock::new();

/// The background threads' `schedstat` files, while the threads live.
static THREADS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Runs `work` on the background runtime.
pub(crate) fn spawn<F>(work: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match BACKGROUND.get_or_init(start) {
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

/// The background threads' scheduling so far; `None` where the system does not tell (not
/// Linux, or no background runtime).
pub(crate) fn sched() -> Option<Sched> {
    let threads = THREADS.lock().clone();
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

fn on_start() {
    use thread_priority::{ThreadPriority, set_current_thread_priority};
    if let Err(e) = set_current_thread_priority(ThreadPriority::Min) {
        tracing::debug!(error = ?e, "could not lower a background thread's priority");
        return;
    }
    if let Some(path) = own_schedstat() {
        THREADS.lock().push(path);
    }
}

fn on_stop() {
    if let Some(path) = own_schedstat() {
        THREADS.lock().retain(|p| *p != path);
    }
}

fn start() -> Option<Handle> {
    let (ready, handle) = std::sync::mpsc::channel();
    let started = std::thread::Builder::new()
        .name("bulkhead-background".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(8)
                .thread_name("bulkhead-bg")
                .on_thread_start(on_start)
                .on_thread_stop(on_stop)
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => {
                    let _ = ready.send(Some(runtime.handle().clone()));
                    // Lives as long as the process; its tasks end with their work.
                    runtime.block_on(std::future::pending::<()>());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no background runtime; moves run at normal priority");
                    let _ = ready.send(None);
                }
            }
        });
    match started {
        Ok(_) => handle.recv().ok().flatten(),
        Err(e) => {
            tracing::warn!(error = %e, "no background thread; moves run at normal priority");
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

    #[test]
    fn this_threads_schedstat_is_found_on_linux() {
        if cfg!(target_os = "linux") {
            let path = own_schedstat().expect("a schedstat file");
            let text = std::fs::read_to_string(path).unwrap();
            assert!(parse_schedstat(&text).is_some(), "{text}");
        }
    }
}
