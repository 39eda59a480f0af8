//! Spans for a request's steps (`auth`, `engine`): made only when traces are exported. The
//! log names each request in its own line; a step span would cost every request its share of
//! that line's time again (made, entered on each poll, closed) and add nothing to the line.

use std::sync::atomic::{AtomicBool, Ordering};

static TRACED: AtomicBool = AtomicBool::new(false);

/// Makes step spans from now on: set once at start when an OTLP endpoint is configured.
pub fn trace_steps() {
    TRACED.store(true, Ordering::Relaxed);
}

/// The step span `make` makes when traces are exported, else none.
pub fn step_span(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if TRACED.load(Ordering::Relaxed) {
        make()
    } else {
        tracing::Span::none()
    }
}
