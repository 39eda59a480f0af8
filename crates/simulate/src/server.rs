//! The server under test when the simulator starts its own: this binary's `serve` as a child
//! process on a fixed port and data directory, so it can be killed (`SIGKILL`), drained
//! (`SIGTERM`) and started again where it was.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct Local {
    exe: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    port: u16,
    admin_key: String,
    config: Option<PathBuf>,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Local {
    /// Starts `exe serve` on a free port with `data_dir`, and waits until it is ready.
    pub fn start(
        exe: &Path,
        data_dir: &Path,
        admin_key: &str,
        config: Option<&Path>,
        env: &[(String, String)],
    ) -> anyhow::Result<Local> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut local = Local {
            exe: exe.to_owned(),
            data_dir: data_dir.to_owned(),
            log: data_dir.with_extension("log"),
            port,
            admin_key: admin_key.to_owned(),
            config: config.map(Path::to_owned),
            env: env.to_vec(),
            child: None,
        };
        local.restart()?;
        Ok(local)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and data directory; waits until ready.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&self.exe);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(config) = &self.config {
            command.env("BULKHEAD_CONFIG", config);
        } else {
            command.env_remove("BULKHEAD_CONFIG");
        }
        let child = command
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("BULKHEAD_ADMIN_KEY", &self.admin_key)
            .env("BULKHEAD_LOG", "warn")
            .env("BULKHEAD_MOVE_DRAIN_GRACE_MS", "100")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.ready() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "the server exited at start ({status}); its log: {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "the server was not ready within 60 s; its log: {}",
            self.log.display()
        )
    }

    fn ready(&self) -> bool {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200")
    }

    /// `kill -9`: no chance to finish anything.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// `SIGTERM`: the server drains its requests and stops; waits for it (killed after 60 s).
    pub fn drain(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = rustix::process::Pid::from_raw(i32::try_from(child.id())?)
            .context("the server's pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        child.wait()?;
        bail!("the server did not stop within 60 s of SIGTERM")
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A small filesystem (tmpfs) mounted where a server keeps the SQLite domain `full`, so the
/// domain's disk fills up; grown later to free it. Needs root (`mount`). Unmounted on drop.
/// The run's working directory (the servers' configuration, data and logs). A run that ends
/// cleanly removes it; one that stops with an error, or finds a violation, keeps it and says
/// where.
pub struct Workdir {
    dir: Option<tempfile::TempDir>,
}

impl Workdir {
    pub fn new() -> anyhow::Result<Workdir> {
        let dir = tempfile::Builder::new()
            .prefix("bulkhead-simulate-")
            .tempdir()?;
        Ok(Workdir { dir: Some(dir) })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new("."), |d| d.path())
    }

    /// The run ended with a report: keep the directory if `violations`, else remove it.
    pub fn finish(mut self, violations: bool) {
        // Without violations the directory is removed as `dir` goes out of scope.
        if let Some(dir) = self.dir.take()
            && violations
        {
            let kept = dir.keep();
            eprintln!(
                "violations found: the servers' data and logs are kept in {}",
                kept.display()
            );
        }
    }
}

impl Drop for Workdir {
    /// Reached without [`Workdir::finish`]: the run stopped on an error.
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let kept = dir.keep();
            eprintln!(
                "the run stopped early: the servers' data and logs are kept in {}",
                kept.display()
            );
        }
    }
}

pub struct SmallDisk {
    at: PathBuf,
}

impl SmallDisk {
    pub fn mount(data_dir: &Path, megabytes: u64) -> anyhow::Result<SmallDisk> {
        let at = data_dir.join("domains").join("full");
        std::fs::create_dir_all(&at)?;
        // The server keeps its data directory private (it refuses to start otherwise).
        for dir in [data_dir.to_owned(), data_dir.join("domains")] {
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        }
        let size = format!("size={megabytes}m,mode=0700");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "bulkhead-simulate-full"])
            .arg(&at)
            .output()
            .context(
                "running mount (a full disk needs root and a system that allows tmpfs mounts)",
            )?;
        if !out.status.success() {
            bail!(
                "mounting a small filesystem for the full disk failed (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(SmallDisk { at })
    }

    /// Grows the filesystem to `megabytes`: the disk has room again.
    pub fn grow(&self, megabytes: u64) -> anyhow::Result<()> {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={megabytes}m")])
            .arg(&self.at)
            .output()?;
        if !out.status.success() {
            bail!(
                "growing the full disk failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).output();
    }
}
