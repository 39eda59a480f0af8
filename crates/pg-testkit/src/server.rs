//! [`PgServer`]: one `initdb`-ed cluster in a temporary directory, started with `pg_ctl`.
//! Durability is switched off (`fsync`, `synchronous_commit`, `full_page_writes`): the data is
//! thrown away anyway.

use crate::{
    command, find_on_path, free_port, give_to_server_user, is_executable, run, server_tempdir,
};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// How often `start` picks a new port when another process took the one it chose.
const START_ATTEMPTS: usize = 5;

/// Where the PostgreSQL server binaries are: the directory of `initdb` on `PATH` (symlinks
/// resolved, so `psql` is found next to it), then the highest `/usr/lib/postgresql/*/bin`.
pub fn pg_bin_dir() -> Option<PathBuf> {
    let has_tools =
        |dir: &Path| is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl"));
    if let Some(initdb) = find_on_path("initdb") {
        let resolved = std::fs::canonicalize(&initdb).unwrap_or_else(|_| initdb.clone());
        for candidate in [resolved, initdb] {
            if let Some(dir) = candidate.parent().filter(|dir| has_tools(dir)) {
                return Some(dir.to_path_buf());
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A running throwaway PostgreSQL server on 127.0.0.1; superuser `postgres`, trust auth.
/// Dropping it stops the server (`pg_ctl stop -m immediate`) and deletes its directory.
#[derive(Debug)]
pub struct PgServer {
    dir: TempDir,
    bin_dir: PathBuf,
    port: u16,
    as_root: bool,
}

impl PgServer {
    /// Runs `initdb` in a new temporary directory and starts the server on a free port.
    pub fn start() -> Result<PgServer> {
        let bin_dir = pg_bin_dir().context("PostgreSQL binaries (initdb, pg_ctl) not found")?;
        let (dir, as_root) = server_tempdir("bulkhead-pg-")?;
        let socket_dir = dir.path().join("sock");
        std::fs::create_dir(&socket_dir).context("creating socket dir")?;
        if as_root {
            give_to_server_user(&socket_dir)?;
        }
        let mut server = PgServer {
            dir,
            bin_dir,
            port: 0,
            as_root,
        };
        let initdb_args = "-A trust -U postgres --no-sync -E UTF8 --locale=C -D";
        let mut initdb = server.tool("initdb");
        initdb.args(initdb_args.split(' ')).arg(server.data_dir());
        run(&mut initdb, "initdb")?;
        let mut attempt = 1;
        loop {
            server.port = free_port()?;
            let log_before = server.log().len();
            let started = server.pg_ctl_start();
            match started {
                Ok(_) => return Ok(server),
                Err(error) => {
                    let log = server.log();
                    let port_taken = log
                        .get(log_before..)
                        .is_some_and(|new| new.contains("in use"));
                    if !port_taken || attempt == START_ATTEMPTS {
                        // Dropping `server` stops anything half-started and removes the directory.
                        bail!("{error:#}\n--- server log ---\n{log}");
                    }
                }
            }
            attempt += 1;
        }
    }

    fn pg_ctl_start(&self) -> Result<String> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k '{}' -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300 -c shared_buffers=128MB",
            self.port,
            self.dir.path().join("sock").display()
        );
        run(
            self.tool("pg_ctl")
                .args(["-w", "-t", "60", "-o", &options, "-D"])
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_file())
                .arg("start"),
            "pg_ctl start",
        )
    }

    /// Stops the server (an outage: connections are cut, nothing is lost); [`PgServer::resume`]
    /// starts it again on the same port.
    pub fn pause(&self) -> Result<()> {
        run(
            self.tool("pg_ctl")
                .args(["-w", "-t", "60", "-m", "fast", "-D"])
                .arg(self.data_dir())
                .arg("stop"),
            "pg_ctl stop",
        )
        .map(drop)
    }

    /// Starts a server [`PgServer::pause`]d before, on the same port.
    pub fn resume(&self) -> Result<()> {
        self.pg_ctl_start().map(drop)
    }

    /// A shell command line that restarts the server in place (`pg_ctl restart -m fast`,
    /// as the server's user when we are root): for tools that take a restart command.
    pub fn restart_command(&self) -> String {
        let quote = crate::shell_quote;
        let runner = crate::shell_runner(self.as_root);
        format!(
            "cd {} && {runner}{} -w -t 60 -m fast -D {} -l {} restart",
            quote(self.dir.path()),
            quote(&self.bin_dir.join("pg_ctl")),
            quote(&self.data_dir()),
            quote(&self.log_file()),
        )
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address the server listens on: always `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// URL as superuser `postgres` to database `db`: `postgres://postgres@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` as superuser through `psql` (next to `initdb`, else on `PATH`) and returns its
    /// stdout, unaligned and tuples-only (`-A -t`); `sql` is a psql script, so `\copy` works.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        crate::psql(&self.psql_bin(), self.port, "postgres", db, sql)
    }

    /// The server log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_else(|error| {
            format!("(no server log at {}: {error})", self.log_file().display())
        })
    }

    pub(crate) fn psql_bin(&self) -> PathBuf {
        let next_to_initdb = self.bin_dir.join("psql");
        if is_executable(&next_to_initdb) {
            next_to_initdb
        } else {
            PathBuf::from("psql")
        }
    }

    fn tool(&self, name: &str) -> std::process::Command {
        let mut cmd = command(self.as_root, &self.bin_dir.join(name));
        // The server user may not be allowed into our working directory.
        cmd.current_dir(self.dir.path());
        cmd
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Errors are ignored: the server may never have started.
        let _ = self
            .tool("pg_ctl")
            .args(["-w", "-m", "immediate", "-D"])
            .arg(self.data_dir())
            .arg("stop")
            .output();
    }
}
