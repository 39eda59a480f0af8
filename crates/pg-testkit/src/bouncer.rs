//! [`PgBouncer`]: a PgBouncer in transaction pooling mode in front of a [`PgServer`], with a
//! deliberately small pool so that clients really share server connections.

use crate::{PgServer, command, find_on_path, free_port, is_executable, server_tempdir};
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The `pgbouncer` binary: on `PATH`, else `/usr/sbin/pgbouncer`.
pub fn pgbouncer_bin() -> Option<PathBuf> {
    find_on_path("pgbouncer").or_else(|| {
        let sbin = PathBuf::from("/usr/sbin/pgbouncer");
        is_executable(&sbin).then_some(sbin)
    })
}

/// A running PgBouncer on 127.0.0.1 (transaction pooling, trust auth, `default_pool_size=4`;
/// `postgres` may use the admin console, database `pgbouncer`, e.g. `SHOW POOLS`).
/// Dropping it kills the process (and one started by [`PgBouncer::restart_command`]) and
/// deletes its directory.
#[derive(Debug)]
pub struct PgBouncer {
    child: Child,
    dir: TempDir,
    port: u16,
    psql_bin: PathBuf,
    bin: PathBuf,
    as_root: bool,
}

impl PgBouncer {
    /// Starts pgbouncer in front of `server` on a free port, accepting `postgres` and `users`
    /// (they must exist on the server to log in); returns once it accepts TCP connections.
    pub fn start(server: &PgServer, users: &[&str]) -> Result<PgBouncer> {
        let bin = pgbouncer_bin().context("pgbouncer not found")?;
        let mut attempt = 1;
        loop {
            let mut bouncer = Self::spawn(&bin, server, users)?;
            match bouncer.wait_until_ready() {
                Ok(()) => return Ok(bouncer),
                Err(error) => {
                    let log = bouncer.log();
                    if !log.contains("in use") || attempt == START_ATTEMPTS {
                        bail!("{error:#}\n--- pgbouncer log ---\n{log}");
                    }
                }
            }
            attempt += 1;
        }
    }

    fn spawn(bin: &Path, server: &PgServer, users: &[&str]) -> Result<PgBouncer> {
        let (dir, as_root) = server_tempdir("bulkhead-pgbouncer-")?;
        let mut auth = String::new();
        for user in std::iter::once("postgres").chain(users.iter().copied()) {
            writeln!(auth, "\"{}\" \"\"", user.replace('"', "\"\""))?;
        }
        let auth_file = dir.path().join("userlist.txt");
        std::fs::write(&auth_file, auth).context("writing auth_file")?;
        let port = free_port()?;
        let config = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &config,
            config_text(server.port(), port, dir.path(), &auth_file),
        )?;
        // Errors from before the config is read only reach stderr; the rest goes to the
        // `logfile` too, which a restarted (daemonised) pgbouncer goes on writing.
        let log = std::fs::File::create(dir.path().join("pgbouncer.stderr"))?;
        let child = command(as_root, bin)
            .arg(&config)
            .current_dir(dir.path())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("could not run {}", bin.display()))?;
        Ok(PgBouncer {
            child,
            dir,
            port,
            psql_bin: server.psql_bin(),
            bin: bin.to_owned(),
            as_root,
        })
    }

    /// A shell command line that restarts pgbouncer in place, as a fault would: every client
    /// and server connection is cut (SIGTERM, pgbouncer's fast exit), then a new pgbouncer
    /// (daemonised, same configuration and port) starts. For tools that take a restart command.
    pub fn restart_command(&self) -> String {
        let quote = crate::shell_quote;
        let runner = crate::shell_runner(self.as_root);
        let pidfile = quote(&self.pidfile());
        format!(
            "cd {dir} && kill -TERM \"$(cat {pidfile})\" && i=0 && \
             while [ -e {pidfile} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done && \
             {runner}{bin} -d {config}",
            dir = quote(self.dir.path()),
            bin = quote(&self.bin),
            config = quote(&self.dir.path().join("pgbouncer.ini")),
        )
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.path().join("pgbouncer.pid")
    }

    /// The TCP port pgbouncer listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL through pgbouncer: `postgres://USER@127.0.0.1:PORT/DB`.
    pub fn url(&self, user: &str, db: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` through pgbouncer with `psql` as `user`, like [`PgServer::psql`].
    pub fn psql(&self, user: &str, db: &str, sql: &str) -> Result<String> {
        crate::psql(&self.psql_bin, self.port, user, db, sql)
    }

    /// The pgbouncer log (of every pgbouncer started here), for failure messages; with what
    /// the first one wrote to stderr when that is all there is.
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name));
        match read("pgbouncer.log") {
            Ok(log) if !log.is_empty() => log,
            _ => read("pgbouncer.stderr").unwrap_or_else(|error| {
                format!(
                    "(no pgbouncer log in {}: {error})",
                    self.dir.path().display()
                )
            }),
        }
    }

    fn wait_until_ready(&mut self) -> Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("pgbouncer exited ({status})");
            }
            // Still running after a successful connect: the listener is pgbouncer's, not that
            // of another process which took the port first (pgbouncer would have exited).
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                std::thread::sleep(Duration::from_millis(20));
                if let Some(status) = self.child.try_wait()? {
                    bail!("pgbouncer exited ({status})");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("pgbouncer did not accept connections on {addr} within {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn config_text(server_port: u16, port: u16, dir: &Path, auth_file: &Path) -> String {
    format!(
        "[databases]\n\
         * = host=127.0.0.1 port={server_port}\n\
         \n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = trust\n\
         admin_users = postgres\n\
         auth_file = {auth}\n\
         pidfile = {pidfile}\n\
         logfile = {logfile}\n\
         pool_mode = transaction\n\
         default_pool_size = 4\n\
         max_client_conn = 500\n\
         ignore_startup_parameters = extra_float_digits,options\n",
        auth = auth_file.display(),
        pidfile = dir.join("pgbouncer.pid").display(),
        logfile = dir.join("pgbouncer.log").display(),
    )
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A pgbouncer started by the restart command is nobody's child: stop it by its pid.
        if let Ok(pid) = std::fs::read_to_string(self.pidfile())
            && pid
                .trim()
                .parse::<u32>()
                .is_ok_and(|p| p != self.child.id())
        {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", pid.trim()])
                .status();
        }
    }
}
