//! `bulkhead serve`'s log: text or JSON lines on stderr, and traces to an OTLP collector when
//! one is configured ([`crate::telemetry`]).
//!
//! Lines are written by a thread of their own, never by a thread serving requests: a reader of
//! stderr that stops reading (a full pipe, a stalled log shipper) would otherwise stop every
//! request at its next log line. Up to [`BUFFERED_LINES`] lines wait for the reader; past that
//! new lines are dropped and counted (`bulkhead_log_lines_dropped` in `/metrics`, and a warning
//! line once the reader catches up), and requests go on.

use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

use crate::config;

/// Lines waiting for stderr's reader before new ones are dropped (a few MiB at most).
pub const BUFFERED_LINES: usize = 16_384;

/// Bytes of lines the writer thread gathers into one write.
const WRITE_BUFFER: usize = 64 * 1024;

/// How often dropped lines are looked for, to be reported in the log.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The running log: its writer thread (flushed when this is shut down or dropped), the traces'
/// exporter if any, and the count of dropped lines.
pub struct Logging {
    writer: Option<WorkerGuard>,
    traces: Option<crate::telemetry::Traces>,
    dropped: ErrorCounter,
    level: LevelHandle,
}

/// Changes the level filter of the installed log.
type LevelHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

impl Logging {
    /// Lines dropped so far because stderr's reader fell behind.
    pub fn dropped_lines(&self) -> u64 {
        u64::try_from(self.dropped.dropped_lines()).unwrap_or(u64::MAX)
    }

    /// Sets the level filter (`info`, `off`, `bulkhead=debug,info`, as `--log-level` takes),
    /// while serving: `bulkhead-bench metering --compare log` measures what the log costs.
    pub fn set_level(&self, directives: &str) -> anyhow::Result<()> {
        let filter = tracing_subscriber::EnvFilter::try_new(directives)?;
        self.level.reload(filter)?;
        Ok(())
    }

    /// Exports the last traces and writes out the lines still waiting.
    pub fn shutdown(mut self) {
        if let Some(traces) = self.traces.take() {
            traces.shutdown();
        }
        drop(self.writer.take());
    }
}

/// Installs the process's log (once, before serving): `config`'s level and format, lines to
/// stderr through [`BUFFERED_LINES`] lines of buffer, traces to `config.otlp_endpoint`.
/// Must run inside a Tokio runtime, which reports dropped lines.
pub fn init(config: &config::Config) -> anyhow::Result<Logging> {
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .lossy(true)
        .thread_name("bulkhead-log")
        // The writer thread writes what waits in one go and flushes once the queue is empty:
        // a busy server makes one write for many lines, a quiet one writes each at once.
        .finish(std::io::BufWriter::with_capacity(
            WRITE_BUFFER,
            std::io::stderr(),
        ));
    let dropped = writer.error_counter();
    let (traces, level) = install(config, writer)?;
    let counter = dropped.clone();
    bulkhead_server::metrics::count_log_drops(Box::new(move || {
        u64::try_from(counter.dropped_lines()).unwrap_or(u64::MAX)
    }));
    tokio::spawn(report_drops(dropped.clone()));
    Ok(Logging {
        writer: Some(guard),
        traces,
        dropped,
        level,
    })
}

fn install(
    config: &config::Config,
    writer: tracing_appender::non_blocking::NonBlocking,
) -> anyhow::Result<(Option<crate::telemetry::Traces>, LevelHandle)> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, level) = tracing_subscriber::reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let fmt = match config.log_format {
        config::LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
        config::LogFormat::Text => fmt.boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    match &config.otlp_endpoint {
        Some(endpoint) => {
            let (otel, traces) = crate::telemetry::layer(endpoint)?;
            bulkhead_catalog::trace_steps();
            registry.with(otel).init();
            Ok((Some(traces), level))
        }
        None => {
            registry.init();
            Ok((None, level))
        }
    }
}

/// Says in the log, once its reader has room again, how many lines it missed.
async fn report_drops(dropped: ErrorCounter) {
    let mut reported = 0;
    loop {
        tokio::time::sleep(REPORT_EVERY).await;
        let now = dropped.dropped_lines();
        if now > reported {
            tracing::warn!(
                dropped = now - reported,
                total = now,
                "log lines dropped: stderr's reader did not keep up (requests were not held)"
            );
            reported = now;
        }
    }
}
