//! `bulkhead simulate`: runs a multi-tenant workload against a real server while a seeded
//! schedule moves, re-creates, suspends tenants, revokes keys, and kills or drains the
//! server; records every operation; then checks the whole history (`check`): every
//! acknowledged write present exactly once with its content and version unless an
//! acknowledged operation later changed it, no record of another tenant or of an earlier life
//! of the same tenant id seen anywhere, no write acknowledged while suspended, revoked keys
//! refused at once, the audit chain intact, quota counters equal to the real counts.

pub mod check;
pub mod history;
mod ops;
mod readers;
pub mod schedule;
mod server;
mod setup;
pub mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bulkhead_client::Client;
use serde::Serialize;

use crate::history::Event;
use crate::schedule::{Counts, Planned, Rng};
use crate::workload::Shared;

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// The seed: the same seed and settings replay the same schedule of faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How long the workload runs, in seconds.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Tenants, spread over the tiers in turn.
    #[arg(long, default_value_t = 9)]
    pub tenants: usize,
    /// The tiers to spread tenants over (by default the built-in pool, bridge and silo tiers).
    #[arg(long, value_delimiter = ',', default_value = "free,standard,premium")]
    pub tiers: Vec<String>,
    /// Writers per tenant (each owns its own records).
    #[arg(long, default_value_t = 2)]
    pub writers: usize,
    /// Records each writer owns.
    #[arg(long, default_value_t = 20)]
    pub records: usize,
    /// `kill -9` faults (and restarts) of the server.
    #[arg(long, default_value_t = 3)]
    pub kills: u32,
    /// `SIGTERM` drains (and restarts) of the server.
    #[arg(long, default_value_t = 1)]
    pub drains: u32,
    /// Live moves to a random isolation model.
    #[arg(long, default_value_t = 4)]
    pub moves: u32,
    /// Tenants deleted and created again under the same id.
    #[arg(long, default_value_t = 2)]
    pub recreations: u32,
    /// Tenants suspended for a moment, then resumed.
    #[arg(long, default_value_t = 2)]
    pub suspensions: u32,
    /// Keys minted, used, revoked and tried again at once.
    #[arg(long, default_value_t = 2)]
    pub revocations: u32,
    /// Changes to the collection (each adds a field): schema rollouts racing the rest.
    #[arg(long, default_value_t = 1)]
    pub rollouts: u32,
    /// Records written to each tenant before the workload starts (bulk, in chunks of 1,000),
    /// so moves have something to copy; each is checked like any other write.
    #[arg(long, default_value_t = 0)]
    pub preload: usize,
    /// Interrupt every move: kill the server once the move reaches a phase the seed picks.
    #[arg(long)]
    pub interrupt_moves: bool,
    /// Servers to start, sharing one catalog (more than one needs `--postgres`).
    #[arg(long, default_value_t = 1)]
    pub servers: usize,
    /// A PostgreSQL server (superuser URL, e.g. `postgres://postgres@127.0.0.1:5432/postgres`)
    /// holding the servers' shared catalog and the domain `pg` the tenants are placed on
    /// (tiers `sim-pool`, `sim-bridge`, `sim-silo` are put there).
    #[arg(long, env = "BULKHEAD_SIMULATE_POSTGRES", hide_env_values = true)]
    pub postgres: Option<String>,
    /// PostgreSQL restarts (needs `--pg-restart-command`).
    #[arg(long, default_value_t = 0)]
    pub pg_restarts: u32,
    /// A shell command that restarts the PostgreSQL server of `--postgres` (for example
    /// `pg_ctl -D /var/lib/postgresql/data -m fast restart`).
    #[arg(long)]
    pub pg_restart_command: Option<String>,
    /// A transaction-mode pooler (PgBouncer) in front of `--postgres`: the domain `pg` sends
    /// its tenants' queries through it, as the data role this URL names, which must exist
    /// (for example `postgres://bulkhead_data@127.0.0.1:6432/postgres`; schema changes and
    /// the catalog still go straight to the server).
    #[arg(
        long,
        requires = "postgres",
        env = "BULKHEAD_SIMULATE_PGBOUNCER",
        hide_env_values = true
    )]
    pub pgbouncer: Option<String>,
    /// Pooler restarts (needs `--pgbouncer` and `--pgbouncer-restart-command`).
    #[arg(long, default_value_t = 0)]
    pub pgbouncer_restarts: u32,
    /// A shell command that restarts the pooler of `--pgbouncer` (for example
    /// `systemctl restart pgbouncer`).
    #[arg(long)]
    pub pgbouncer_restart_command: Option<String>,
    /// A full disk: the SQLite domain `full` (tier `sim-full`, pool, one tenant in four) starts
    /// on a filesystem of this many megabytes, which fills up; at 60 % of the run it grows
    /// eightfold. Needs root (a tmpfs mount) and one server.
    #[arg(long)]
    pub full_disk_mb: Option<u64>,
    /// Clock skew: server n's catalog clock runs n × this many milliseconds ahead of the
    /// system's (`BULKHEAD_CLOCK_SKEW_MS`; negative: behind).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub clock_skew_ms: i64,
    /// Run against this server instead of starting one (no kill or drain faults then).
    #[arg(long, requires = "admin_key")]
    pub target: Option<String>,
    /// The platform admin key of `--target`.
    #[arg(long, env = "BULKHEAD_SIMULATE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Where to save the history (NDJSON; default: a file in the temporary directory).
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Check a saved history instead of running (`--history` of an earlier run).
    #[arg(long, conflicts_with = "target")]
    pub check: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a run did and what the checker found.
#[derive(Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    pub duration_s: f64,
    pub operations: u64,
    pub operations_per_s: f64,
    pub by_op: std::collections::BTreeMap<String, [u64; 3]>,
    pub faults: Vec<Planned>,
    pub faults_done: u64,
    pub check_ms: f64,
    pub check_ms_per_million: f64,
    pub history: PathBuf,
    /// The servers the workload spread over.
    pub servers: Vec<String>,
    /// Each tenant's id and tier.
    pub tenants: Vec<(String, String)>,
    #[serde(flatten)]
    pub verdict: check::Verdict,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.verdict.violations.is_empty()
    }

    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "seed {}: {} operations in {:.1} s ({:.0}/s), {} of {} scheduled operations and faults done",
            self.seed,
            self.operations,
            self.duration_s,
            self.operations_per_s,
            self.faults_done,
            self.faults.len()
        );
        let _ = writeln!(
            out,
            "{:<16} {:>9} {:>9} {:>9}",
            "operation", "ok", "refused", "unknown"
        );
        for (op, [ok, refused, unknown]) in &self.by_op {
            let _ = writeln!(out, "{op:<16} {ok:>9} {refused:>9} {unknown:>9}");
        }
        let _ = writeln!(
            out,
            "checked {} acknowledged writes over {} records in {:.1} ms ({:.0} ms per million operations)",
            self.verdict.acknowledged_writes,
            self.verdict.records_checked,
            self.check_ms,
            self.check_ms_per_million
        );
        let _ = writeln!(out, "history: {}", self.history.display());
        if self.passed() {
            let _ = writeln!(out, "no violation: nothing lost, doubled or crossed");
        } else {
            let _ = writeln!(out, "{} VIOLATIONS:", self.verdict.violations.len());
            for v in self.verdict.violations.iter().take(50) {
                let _ = writeln!(out, "  {} [{}] #{}: {}", v.kind, v.tenant, v.seq, v.detail);
            }
        }
        out
    }
}

/// Runs the simulation (or checks a saved history) and returns the report.
pub async fn run(args: &SimulateArgs) -> anyhow::Result<Report> {
    if let Some(path) = &args.check {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let events: Vec<Event> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .with_context(|| format!("{} line {}", path.display(), i + 1))
            })
            .collect::<anyhow::Result<_>>()?;
        return Ok(report(args, &events, Vec::new(), 0, 0.0, path.clone()));
    }
    if args.tenants == 0 || args.writers == 0 || args.records == 0 || args.tiers.is_empty() {
        bail!("--tenants, --writers, --records and --tiers must each be at least one");
    }
    let mut rng = Rng::new(args.seed);
    let duration_ms = args.duration.max(1) * 1000;
    let counts = Counts {
        kills: args.kills,
        drains: args.drains,
        moves: args.moves,
        recreations: args.recreations,
        suspensions: args.suspensions,
        revocations: args.revocations,
        rollouts: args.rollouts,
        pg_restarts: args.pg_restarts,
        pgbouncer_restarts: args.pgbouncer_restarts,
        interrupt_moves: args.interrupt_moves,
        full_disk: args.full_disk_mb.is_some(),
    };
    if args.target.is_some() && (args.kills > 0 || args.drains > 0 || args.interrupt_moves) {
        bail!(
            "--kills and --drains need a server the simulator starts itself; set them to 0 with --target"
        );
    }
    if args.servers == 0 || (args.servers > 1 && args.postgres.is_none()) {
        bail!("--servers must be at least 1, and more than one share a catalog: give --postgres");
    }
    if args.pg_restarts > 0 && (args.pg_restart_command.is_none() || args.postgres.is_none()) {
        bail!("--pg-restarts needs --postgres and --pg-restart-command");
    }
    if args.pgbouncer_restarts > 0
        && (args.pgbouncer_restart_command.is_none() || args.pgbouncer.is_none())
    {
        bail!("--pgbouncer-restarts needs --pgbouncer and --pgbouncer-restart-command");
    }
    if args.target.is_some() && (args.servers > 1 || args.postgres.is_some()) {
        bail!("--servers and --postgres start servers; they do not go with --target");
    }
    let servers = if args.target.is_some() {
        1
    } else {
        args.servers
    };
    let plan = schedule::plan(&mut rng, counts, args.tenants, servers, duration_ms);

    // The server: started here (killable), or the one given.
    let workdir = server::Workdir::new()?;
    let idp = workload::Idp {
        secret: format!(
            "{:016x}{:016x}{:016x}",
            random_u64(),
            random_u64(),
            random_u64()
        ),
    };
    let mut disk = None;
    let (locals, urls, admin_key) = match &args.target {
        Some(url) => (
            Vec::new(),
            vec![url.clone()],
            args.admin_key.clone().unwrap_or_default(),
        ),
        None => {
            let key = format!("sim-{:016x}{:016x}", rng.next_u64(), random_u64());
            let exe = std::env::current_exe()?;
            let config = workdir.path().join("bulkhead.toml");
            std::fs::write(&config, idp.config())?;
            let env: Vec<(String, String)> = args
                .postgres
                .iter()
                .map(|url| ("BULKHEAD_CATALOG".to_owned(), url.clone()))
                .collect();
            let mut locals = Vec::new();
            if let Some(megabytes) = args.full_disk_mb {
                disk = Some((
                    server::SmallDisk::mount(&workdir.path().join("data-0"), megabytes)?,
                    megabytes,
                ));
            }
            for n in 0..servers {
                let data = workdir.path().join(format!("data-{n}"));
                locals.push(server::Local::start(
                    &exe,
                    &data,
                    &key,
                    Some(&config),
                    &env,
                )?);
            }
            let urls = locals.iter().map(server::Local::url).collect();
            (locals, urls, key)
        }
    };
    let admin = Client::new(&urls[0], admin_key)?;
    let mut args = args.clone();
    if let Some(pg) = &args.postgres {
        setup::put_pg_tiers(&admin, pg, args.pgbouncer.as_deref()).await?;
        if args.tiers == ["free", "standard", "premium"] {
            args.tiers = vec!["sim-pool".into(), "sim-bridge".into(), "sim-silo".into()];
        }
    }
    if disk.is_some() {
        setup::put_full_tier(&admin).await?;
        args.tiers.push("sim-full".into());
    }
    let args = &args;
    let run_id = format!("{:06x}", random_u64() & 0xff_ffff);
    // JWT users only where the simulator configured the server to trust its issuer.
    let idp = args.target.is_none().then_some(idp);
    let tenants = setup::set_up(&admin, args, &run_id, idp.is_some()).await?;
    let shared = Arc::new(Shared::new(urls, idp, admin, tenants));
    let servers_count = shared.urls.len();
    shared
        .record(
            "simulate",
            "-",
            0,
            0,
            None,
            history::Outcome::Ok,
            history::Op::Started {
                servers: servers_count,
            },
        )
        .await;
    if args.preload > 0 {
        workload::preload(&shared, args.preload).await?;
    }

    let bar = indicatif::ProgressBar::new(args.duration.max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} simulating [{bar:30}] {pos}/{len} s {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for (slot, tenant) in shared.tenants.iter().enumerate() {
        workers.spawn(readers::user_reader(
            Arc::clone(&shared),
            Arc::clone(tenant),
            slot,
            rng.fork(),
        ));
        workers.spawn(readers::token_reader(
            Arc::clone(&shared),
            Arc::clone(tenant),
            slot,
            rng.fork(),
        ));
        for w in 0..args.writers {
            workers.spawn(workload::writer(
                Arc::clone(&shared),
                Arc::clone(tenant),
                slot,
                w,
                args.records,
                rng.fork(),
            ));
        }
    }
    let servers_handle = Arc::new(ops::Servers {
        locals: std::sync::Mutex::new(locals),
        pg_restart: args.pg_restart_command.clone(),
        pgbouncer_restart: args.pgbouncer_restart_command.clone(),
        disk,
    });
    let operations = tokio::spawn(ops::execute(
        Arc::clone(&shared),
        Arc::clone(&servers_handle),
        plan.clone(),
    ));
    while started.elapsed() < Duration::from_millis(duration_ms) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        bar.set_position(started.elapsed().as_secs().min(args.duration));
        bar.set_message(format!("{} operations", shared.history.lock().await.len()));
    }
    // Every scheduled action runs under load: the writers go on until the last is done.
    let faults_done = operations.await.context("the operations task")??;
    shared.stop.store(true, Ordering::Relaxed);
    while let Some(done) = workers.join_next().await {
        done.context("a writer")?;
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();

    ops::settle(&shared).await?;
    let events = shared.history.lock().await.clone();
    let path = args.history.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("bulkhead-simulate-{}-{run_id}.ndjson", args.seed))
    });
    save(&path, &events)?;
    let mut report = report(args, &events, plan, faults_done, elapsed, path);
    report.servers = shared.urls.clone();
    report.tenants = shared
        .tenants
        .iter()
        .map(|t| (t.id.clone(), t.tier.clone()))
        .collect();
    let locals = servers_handle
        .locals
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    // The servers stop first; their data and logs stay for a look if anything was found.
    drop(locals);
    workdir.finish(!report.passed());
    Ok(report)
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

fn report(
    args: &SimulateArgs,
    events: &[Event],
    faults: Vec<Planned>,
    faults_done: u64,
    elapsed: f64,
    history: PathBuf,
) -> Report {
    let began = Instant::now();
    let verdict = check::check(events);
    let check_ms = began.elapsed().as_secs_f64() * 1000.0;
    let mut by_op: std::collections::BTreeMap<String, [u64; 3]> = Default::default();
    for e in events {
        let name = match &e.op {
            history::Op::Write { kind, .. } => format!("{kind:?}").to_lowercase(),
            other => serde_json::to_value(other)
                .ok()
                .and_then(|v| v.get("op").and_then(|o| o.as_str()).map(str::to_owned))
                .unwrap_or_default(),
        };
        let slot = by_op.entry(name).or_default();
        slot[match e.outcome {
            history::Outcome::Ok => 0,
            history::Outcome::Refused => 1,
            history::Outcome::Unknown => 2,
        }] += 1;
    }
    let operations = events.len() as u64;
    Report {
        seed: args.seed,
        duration_s: elapsed,
        operations,
        operations_per_s: if elapsed > 0.0 {
            operations as f64 / elapsed
        } else {
            0.0
        },
        by_op,
        faults,
        faults_done,
        check_ms,
        check_ms_per_million: if operations > 0 {
            check_ms * 1_000_000.0 / operations as f64
        } else {
            0.0
        },
        history,
        servers: Vec::new(),
        tenants: Vec::new(),
        verdict,
    }
}

fn save(path: &std::path::Path, events: &[Event]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?,
    );
    for e in events {
        serde_json::to_writer(&mut out, e)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
