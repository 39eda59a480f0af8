//! Throwaway PostgreSQL servers (and PgBouncer in front of them) for tests and benchmarks.
//!
//! Every [`PgServer`] and [`PgBouncer`] lives in its own temporary directory, listens only on
//! 127.0.0.1 on a port picked free at start, trusts every local connection, and is stopped and
//! deleted when dropped. Nothing is shared between instances, so tests may run in parallel.
//!
//! PostgreSQL and PgBouncer refuse to run as root. When the current effective user is root the
//! kit runs them as the `postgres` system user (through `setpriv`) and hands that user the
//! temporary directory; it never creates users. Clients (`psql`, tests) connect over TCP, so they
//! keep running as the current user.
//!
//! Tests call [`require`] / [`require_pgbouncer`]: a missing binary fails the test with an
//! install hint, unless `BULKHEAD_SKIP_POSTGRES=1` says skipping is acceptable, in which case a
//! loud `SKIPPED:` line goes to stderr and the test returns early.

mod bouncer;
mod server;

pub use bouncer::{PgBouncer, pgbouncer_bin};
pub use server::{PgServer, pg_bin_dir};

use anyhow::{Context, Result, bail};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use tempfile::TempDir;

const SKIP_VAR: &str = "BULKHEAD_SKIP_POSTGRES";

/// For tests: a started server; when the PostgreSQL binaries are missing, panics with an install
/// hint, or — with `BULKHEAD_SKIP_POSTGRES=1` — prints a `SKIPPED:` line and returns `None`.
/// Panics if the binaries exist but the server does not start (the error carries its log).
pub fn require(test_name: &str) -> Option<PgServer> {
    if pg_bin_dir().is_none() {
        skip_or_panic(
            test_name,
            "install PostgreSQL server binaries: apt-get install postgresql (initdb, pg_ctl) \
             or set BULKHEAD_SKIP_POSTGRES=1 to skip PostgreSQL tests",
        );
        return None;
    }
    match PgServer::start() {
        Ok(server) => Some(server),
        Err(error) => panic!("{test_name}: could not start PostgreSQL: {error:#}"),
    }
}

/// Like [`require`], for a [`PgBouncer`] in front of `server` that knows `users` (and `postgres`).
pub fn require_pgbouncer(test_name: &str, server: &PgServer, users: &[&str]) -> Option<PgBouncer> {
    if pgbouncer_bin().is_none() {
        skip_or_panic(
            test_name,
            "install pgbouncer: apt-get install pgbouncer (or set BULKHEAD_SKIP_POSTGRES=1)",
        );
        return None;
    }
    match PgBouncer::start(server, users) {
        Ok(bouncer) => Some(bouncer),
        Err(error) => panic!("{test_name}: could not start pgbouncer: {error:#}"),
    }
}

fn skip_or_panic(test_name: &str, hint: &str) {
    if std::env::var(SKIP_VAR).is_ok_and(|value| value == "1") {
        eprintln!("SKIPPED: {test_name}: PostgreSQL tests skipped because {SKIP_VAR}=1 ({hint})");
    } else {
        panic!("{test_name}: {hint}");
    }
}

/// The user server processes run as when we are root: PostgreSQL and PgBouncer refuse root.
const SERVER_USER: &str = "postgres";

/// A command for `program`, run as [`SERVER_USER`] when `as_root`. `setpriv` execs the program,
/// so a spawned child's pid is the program's own and killing the child kills the program.
fn command(as_root: bool, program: &Path) -> Command {
    let mut cmd = if as_root {
        let mut cmd = Command::new("setpriv");
        let ids = [
            format!("--reuid={SERVER_USER}"),
            format!("--regid={SERVER_USER}"),
        ];
        cmd.args(ids).args(["--init-groups", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    };
    cmd.stdin(Stdio::null());
    cmd
}

/// `path` quoted for a POSIX shell command line.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// What a shell command line puts before a server program to run it like [`command`] does.
fn shell_runner(as_root: bool) -> String {
    if as_root {
        format!("setpriv --reuid={SERVER_USER} --regid={SERVER_USER} --init-groups -- ")
    } else {
        String::new()
    }
}

/// A new temporary directory, and whether we are root — the owner of a directory we just
/// created is our effective uid. When root, the directory is handed to [`SERVER_USER`].
fn server_tempdir(prefix: &str) -> Result<(TempDir, bool)> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("creating temp dir")?;
    let as_root = dir.path().metadata()?.uid() == 0;
    if as_root {
        give_to_server_user(dir.path())?;
    }
    Ok((dir, as_root))
}

fn give_to_server_user(path: &Path) -> Result<()> {
    run(
        Command::new("chown")
            .arg(format!("{SERVER_USER}:"))
            .arg(path),
        "chown",
    )
    .context("running as root needs the `postgres` system user (PostgreSQL refuses root)")?;
    Ok(())
}

/// A port that was free a moment ago; callers retry if someone takes it before they bind.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("looking for a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Runs to completion; on failure the error carries the exit status, stderr and stdout.
fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not run {what}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            stderr.trim_end(),
            stdout.trim_end()
        );
    }
    Ok(stdout)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|file| is_executable(file))
}

fn is_executable(file: &Path) -> bool {
    file.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Runs `sql` (a psql script, so backslash commands such as `\copy` work) through `psql`
/// connected over TCP; returns stdout, unaligned and without headers (`-A -t`).
fn psql(psql: &Path, port: u16, user: &str, db: &str, sql: &str) -> Result<String> {
    let mut child = Command::new(psql)
        .args("-X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -f -".split(' '))
        .args(["-p", &port.to_string(), "-U", user, "-d", db])
        .env_remove("PGPASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not run {}", psql.display()))?;
    // Feed stdin from a thread: psql writes output while reading its script, and a large
    // output would otherwise fill the pipe while we are still writing.
    let mut stdin = child.stdin.take().context("psql stdin")?;
    let script = sql.to_owned();
    let writer = thread::spawn(move || std::io::Write::write_all(&mut stdin, script.as_bytes()));
    let out = child.wait_with_output()?;
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("psql stdin writer panicked"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "psql failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    written.context("writing to psql")?;
    Ok(stdout)
}
