//! A runtime for background work that must not starve requests: live moves' copies.
//!
//! Its threads (one worker, and its own blocking pool, which is where engines run their
//! storage calls) run at the lowest CPU priority (nice 19 on Linux). When requests want the
//! CPU they get it first; when the machine is otherwise idle, the background work runs at
//! full speed. One per process, started on first use; if it cannot be started (or the
//! priority cannot be lowered), the work runs on the caller's runtime as before.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Handle;

static BACKGROUND: OnceLock<Option<Handle>> = OnceLock::new();

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

fn lower_priority() {
    use thread_priority::{ThreadPriority, set_current_thread_priority};
    if let Err(e) = set_current_thread_priority(ThreadPriority::Min) {
        tracing::debug!(error = ?e, "could not lower a background thread's priority");
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
                .on_thread_start(lower_priority)
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
