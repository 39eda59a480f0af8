//! What else the machine did while the bench ran: both systems share two cores with whatever
//! else is running, so the report says how much CPU went to the bench and how much elsewhere.
//! Linux only (`/proc`); elsewhere the figures print as unknown.

use std::time::Instant;

/// The 1-minute load average, or "?" where /proc is not there.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Clock ticks per second of `/proc` times; 100 on every Linux this runs on (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU times, in ticks, at one instant.
pub struct CpuSnapshot {
    at: Instant,
    /// Busy time of the whole machine (all cores).
    machine: Option<u64>,
    /// This process: the load generator and the in-process Bulkhead server.
    bench: Option<u64>,
    pocketbase: Option<u64>,
}

impl CpuSnapshot {
    pub fn take(pocketbase_pid: u32) -> CpuSnapshot {
        CpuSnapshot {
            at: Instant::now(),
            machine: machine_busy(),
            bench: process_ticks("self"),
            pocketbase: process_ticks(&pocketbase_pid.to_string()),
        }
    }

    /// "bench process X s, PocketBase Y s, everything else Z s (of N s on all cores)".
    pub fn since(&self, start: &CpuSnapshot) -> String {
        let delta =
            |a: Option<u64>, b: Option<u64>| Some(a?.saturating_sub(b?) as f64 / TICKS_PER_SECOND);
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let wall = self.at.duration_since(start.at).as_secs_f64();
        match (
            delta(self.machine, start.machine),
            delta(self.bench, start.bench),
            delta(self.pocketbase, start.pocketbase),
        ) {
            (Some(machine), Some(bench), Some(pocketbase)) => format!(
                "bulkhead process (server + load generator) {bench:.1} s, pocketbase {pocketbase:.1} s, \
                 everything else {:.1} s, of {:.1} s on {cores} cores",
                (machine - bench - pocketbase).max(0.0),
                wall * cores
            ),
            _ => "unknown (no /proc)".into(),
        }
    }
}

/// Thread-name prefix of the in-process Bulkhead server's runtime (workers and blocking pool);
/// Linux truncates thread names to 15 bytes, which this prefix fits.
pub const SERVER_THREAD_NAME: &str = "bulkhead-server";

/// Where a server's CPU time is read.
#[derive(Debug, Clone, Copy)]
pub enum ServerCpu {
    /// The in-process server: threads of this process named [`SERVER_THREAD_NAME`]. Threads
    /// that have exited are not counted; the server runtime keeps its blocking threads alive
    /// for the whole bench so none exits mid-measurement.
    InProcessThreads,
    Process(u32),
}

impl ServerCpu {
    /// CPU seconds used so far, `None` where `/proc` cannot tell.
    pub fn seconds(&self) -> Option<f64> {
        let ticks = match self {
            ServerCpu::InProcessThreads => threads_ticks(SERVER_THREAD_NAME)?,
            ServerCpu::Process(pid) => process_ticks(&pid.to_string())?,
        };
        Some(ticks as f64 / TICKS_PER_SECOND)
    }
}

/// CPU ticks of this process's live threads whose name starts with `prefix`.
fn threads_ticks(prefix: &str) -> Option<u64> {
    let mut sum = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let task = task.ok()?.path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.starts_with(prefix) {
            sum += stat_ticks(&task.join("stat")).unwrap_or(0);
        }
    }
    Some(sum)
}

/// CPU seconds of this process's live threads named `prefix…`: from each thread's
/// `schedstat` (nanoseconds) where the kernel keeps it, else from `stat` (10 ms ticks, too
/// coarse for a round of a few hundred milliseconds of CPU).
pub fn threads_seconds(prefix: &str) -> Option<f64> {
    threads_nanos(prefix)
        .map(|ns| ns as f64 / 1e9)
        .or_else(|| Some(threads_ticks(prefix)? as f64 / TICKS_PER_SECOND))
}

fn threads_nanos(prefix: &str) -> Option<u64> {
    let mut sum = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let task = task.ok()?.path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.starts_with(prefix) {
            let stat = std::fs::read_to_string(task.join("schedstat")).ok()?;
            sum += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(sum)
}

fn machine_busy() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: everything but idle and iowait.
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    Some(busy)
}

/// utime + stime of a process, all threads included (exited ones too).
fn process_ticks(pid: &str) -> Option<u64> {
    stat_ticks(std::path::Path::new(&format!("/proc/{pid}/stat")))
}

/// utime + stime from a `/proc/.../stat` file (of a process or of one thread).
fn stat_ticks(path: &std::path::Path) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may contain spaces; fields resume after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 overall, utime 14 and stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}
