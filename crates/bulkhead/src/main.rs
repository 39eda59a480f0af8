//! The `bulkhead` binary: `serve` runs the server (the `bulkhead` library); every other
//! subcommand is the operator CLI talking to a server over HTTP. Benchmarks are a separate
//! binary, `bulkhead-bench` (crates/bench).

use bulkhead::{config, serve};
use bulkhead_cli::{ClientCommand, ClientOptions};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// Print a shell completion script (`bulkhead completions bash > /etc/bash_completion.d/bulkhead`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff: `bulkhead man | man -l -`).
    Man,
    /// Print the API description (OpenAPI 3.1, JSON) a server of this version serves at
    /// `/v1/openapi.json`.
    Openapi,
    /// Run a multi-tenant workload with faults (kill -9, drains, moves, re-creations,
    /// suspensions, revocations) against a server, and check the history: nothing lost,
    /// doubled or crossed. Exits non-zero on any violation.
    Simulate(Box<bulkhead_simulate::SimulateArgs>),
    #[command(flatten)]
    Client(ClientCommand),
}

/// The client's options that mean nothing to `serve` (it keeps `--data-dir`).
const CLIENT_ONLY: [&str; 5] = ["url", "token", "tenant", "json", "ca_cert"];

/// The grammar, with the client's global options left out of `serve --help` (they are
/// still accepted there, and ignored, so a shared environment does not break it).
fn grammar() -> clap::Command {
    let mut cmd = Cli::command();
    // Global options reach the subcommands when the grammar is built.
    cmd.build();
    cmd.mut_subcommand("serve", |serve| {
        serve.mut_args(|arg| {
            if CLIENT_ONLY.contains(&arg.get_id().as_str()) {
                arg.hide(true)
            } else {
                arg
            }
        })
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let admin_key = std::env::var("BULKHEAD_ADMIN_KEY").ok();
            let config = config::Config::load(&args, cli.options.data_dir.as_deref(), admin_key)?;
            let logging = bulkhead::logging::init(&config)?;
            let served = serve::run(config).await;
            tokio::task::spawn_blocking(move || logging.shutdown()).await?;
            served
        }
        Command::Backup(cmd) => bulkhead::backup::run(&cli.options, cmd).await,
        Command::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            clap_complete::generate(shell, &mut grammar(), "bulkhead", &mut out);
            Ok(())
        }
        Command::Man => {
            clap_mangen::Man::new(grammar()).render(&mut std::io::stdout().lock())?;
            Ok(())
        }
        Command::Openapi => {
            use std::io::Write as _;
            // Written as one io write, so a reader that stops (`| head`) ends it quietly.
            let text = serde_json::to_string_pretty(&bulkhead_server::api_description())?;
            writeln!(std::io::stdout().lock(), "{text}")?;
            Ok(())
        }
        Command::Simulate(args) => {
            let report = bulkhead_simulate::run(&args).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.text());
            }
            if !report.passed() {
                anyhow::bail!(
                    "{} violations (history: {})",
                    report.verdict.violations.len(),
                    report.history.display()
                );
            }
            Ok(())
        }
        Command::Client(command) => bulkhead_cli::run(&cli.options, command).await,
    }
}

/// A reader that stopped reading (`bulkhead tenant list | head`) ends the output, not the
/// process with a panic: printing to a closed pipe ends the run quietly, as it does for
/// other command-line tools. Every other panic is reported as before.
fn quiet_on_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info);
    }));
}

/// An error as printed at exit: a line for people, or with `--json` a JSON object with the
/// server's code, status and request id when the server answered.
fn report(err: &anyhow::Error, json: bool) {
    if !json {
        // Human-readable chain, never a debug dump or a backtrace.
        eprintln!("error: {err:#}");
        return;
    }
    let body = match err.downcast_ref::<bulkhead_client::ClientError>() {
        Some(bulkhead_client::ClientError::Api {
            status,
            code,
            message,
            request_id,
        }) => serde_json::json!({"error": {
            "code": code, "status": status, "message": message, "request_id": request_id,
        }}),
        _ => serde_json::json!({"error": {"code": "cli_error", "message": format!("{err:#}")}}),
    };
    eprintln!("{body}");
}

/// A command line clap cannot read: its own message and usage, or with `--json` anywhere on
/// the line a JSON object (`usage_error`), as other errors are. Help and version are printed
/// as they are.
fn usage_error(err: clap::Error) -> ! {
    let json = std::env::args_os().any(|arg| arg == "--json");
    if !json || !err.use_stderr() {
        err.exit();
    }
    let text = err.render().to_string();
    // The message runs to the first blank line (a missing argument lists each one).
    let message = text
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_owned();
    let usage = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Usage: "))
        .map(str::to_owned);
    let body = serde_json::json!({"error": {
        "code": "usage_error", "message": message, "usage": usage,
    }});
    eprintln!("{body}");
    std::process::exit(err.exit_code());
}

fn main() {
    quiet_on_closed_pipe();
    let cli = grammar()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches))
        .unwrap_or_else(|e| usage_error(e));
    let json = cli.options.json;
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
        let closed = err.chain().any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if closed {
            // The reader stopped reading (see `quiet_on_closed_pipe`).
            std::process::exit(0);
        }
        report(&err, json);
        std::process::exit(1);
    }
}
