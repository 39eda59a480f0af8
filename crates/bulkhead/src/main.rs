//! The `bulkhead` binary: `serve` runs the server (the `bulkhead` library); every other
//! subcommand is the operator CLI talking to a server over HTTP. Benchmarks are a separate
//! binary, `bulkhead-bench` (crates/bench).

use bulkhead::{config, serve};
use bulkhead_cli::{ClientCommand, ClientOptions};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bulkhead",
    version,
    about = "A multi-tenant data server for B2B SaaS"
)]
struct Cli {
    #[command(flatten)]
    options: ClientOptions,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<config::ServeArgs>),
    /// Online backups: create (the server copies itself while serving), verify, restore.
    #[command(subcommand)]
    Backup(bulkhead::backup::BackupCmd),
    #[command(flatten)]
    Client(ClientCommand),
}

/// Logs to stderr (text or JSON), and traces to an OTLP collector when one is configured.
fn init_logging(config: &config::Config) -> anyhow::Result<Option<bulkhead::telemetry::Traces>> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
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
            let (otel, traces) = bulkhead::telemetry::layer(endpoint)?;
            registry.with(otel).init();
            Ok(Some(traces))
        }
        None => {
            registry.init();
            Ok(None)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let admin_key = std::env::var("BULKHEAD_ADMIN_KEY").ok();
            let config = config::Config::load(&args, cli.options.data_dir.as_deref(), admin_key)?;
            let traces = init_logging(&config)?;
            let served = serve::run(config).await;
            if let Some(traces) = traces {
                tokio::task::spawn_blocking(move || traces.shutdown()).await?;
            }
            served
        }
        Command::Backup(cmd) => bulkhead::backup::run(&cli.options, cmd).await,
        Command::Client(command) => bulkhead_cli::run(&cli.options, command).await,
    }
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(err) = runtime.block_on(run(cli)) {
        // Human-readable chain, never a debug dump or a backtrace.
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
