//! How late a sleeping thread wakes on this machine, with nothing of Bulkhead running: the
//! floor under any p99 the other benches measure. A virtual machine whose host takes its
//! CPUs away now and then shows here as wake-ups many milliseconds late; a p99 taken over a
//! window of a second or two is then decided by whether such a moment falls inside it.

use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct HiccupArgs {
    /// How long to watch.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// How long each sleep asks for, in microseconds.
    #[arg(long, default_value_t = 500)]
    sleep_us: u64,
    /// How late (ms) counts as a hiccup.
    #[arg(long, default_value_t = 5.0)]
    over_ms: f64,
}

/// One wake-up later than asked: how late (ms) and when (s from the start).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Late {
    ms: f64,
    at_s: f64,
}

/// What a watch found: how many sleeps, how late they woke, the worst ones.
#[derive(Debug, Default)]
struct Watched {
    sleeps: u64,
    lateness: Vec<f64>,
    hiccups: Vec<Late>,
}

impl Watched {
    fn add(&mut self, late: Late, over_ms: f64) {
        self.sleeps += 1;
        self.lateness.push(late.ms);
        if late.ms > over_ms {
            self.hiccups.push(late);
        }
    }

    fn percentile(&self, q: f64) -> f64 {
        let mut sorted = self.lateness.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => 0.0,
            n => sorted[((n - 1) as f64 * q).round() as usize],
        }
    }

    fn worst(&self, n: usize) -> Vec<Late> {
        let mut worst = self.hiccups.clone();
        worst.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        worst.truncate(n);
        worst
    }
}

pub async fn run(args: HiccupArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.seconds > 0, "--seconds must be at least 1");
    let watched = tokio::task::spawn_blocking(move || {
        let asked = Duration::from_micros(args.sleep_us.max(1));
        let start = Instant::now();
        let mut watched = Watched::default();
        while start.elapsed() < Duration::from_secs(args.seconds) {
            let before = Instant::now();
            std::thread::sleep(asked);
            let late = before.elapsed().saturating_sub(asked);
            watched.add(
                Late {
                    ms: late.as_secs_f64() * 1e3,
                    at_s: start.elapsed().as_secs_f64(),
                },
                args.over_ms,
            );
        }
        watched
    })
    .await?;
    println!(
        "{} sleeps of {} µs over {} s: late by p50 {:.3} ms, p99 {:.3} ms, p99.99 {:.2} ms, max {:.2} ms; {} woke more than {} ms late ({:.1} a minute)",
        watched.sleeps,
        args.sleep_us,
        args.seconds,
        watched.percentile(0.5),
        watched.percentile(0.99),
        watched.percentile(0.9999),
        watched.percentile(1.0),
        watched.hiccups.len(),
        args.over_ms,
        watched.hiccups.len() as f64 * 60.0 / args.seconds as f64,
    );
    let worst: Vec<String> = watched
        .worst(10)
        .iter()
        .map(|l| format!("{:.1} ms at {:.1} s", l.ms, l.at_s))
        .collect();
    if !worst.is_empty() {
        println!("worst: {}", worst.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hiccups_are_the_wake_ups_past_the_threshold_worst_first() {
        let mut w = Watched::default();
        for (ms, at_s) in [(0.1, 0.0), (7.0, 1.0), (0.2, 2.0), (12.5, 3.0), (5.0, 4.0)] {
            w.add(Late { ms, at_s }, 5.0);
        }
        assert_eq!(w.sleeps, 5);
        // 5.0 is not past 5.0.
        assert_eq!(
            w.worst(10),
            vec![
                Late {
                    ms: 12.5,
                    at_s: 3.0
                },
                Late { ms: 7.0, at_s: 1.0 }
            ]
        );
        assert_eq!(w.percentile(0.5), 5.0);
        assert_eq!(w.percentile(1.0), 12.5);
        assert_eq!(w.percentile(0.0), 0.1);
    }
}
