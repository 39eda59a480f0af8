//! A controller behind a clock and a latency source: what paced work holds and asks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::board::Observation;
use crate::control::{Controller, Pace, Settings};

/// Each group's observation over `[since, until)`, in the order of the groups.
pub type Source = dyn Fn(Instant, Instant) -> Vec<Observation> + Send + Sync;
/// The time now.
pub type Clock = dyn Fn() -> Instant + Send + Sync;

/// One piece of work's pace: after each step it asks how long to rest.
pub struct Throttle {
    controller: Mutex<Controller>,
    source: Arc<Source>,
    clock: Arc<Clock>,
}

impl Throttle {
    /// Measures the groups' baselines over `settings.before` up to now, and starts.
    ///
    /// A baseline is the median of the p99s of the windows that make up `before` (those
    /// with enough requests), so one burst just before the work — a cold cache, another
    /// job's tail — does not set it.
    pub fn new(
        settings: Settings,
        groups: &[&'static str],
        source: Arc<Source>,
        clock: Arc<Clock>,
    ) -> Self {
        let now = clock();
        let window = settings.window.max(Duration::from_millis(1));
        let mut windows: Vec<Vec<Observation>> = Vec::new();
        let mut until = now;
        while now.saturating_duration_since(until) < settings.before {
            let Some(since) = until.checked_sub(window) else {
                break;
            };
            windows.push(source(since, until));
            until = since;
        }
        let before: Vec<Observation> = (0..groups.len())
            .map(|g| {
                let seen: Vec<Observation> = windows
                    .iter()
                    .filter_map(|w| w.get(g).copied())
                    .filter(|o| o.samples >= settings.min_samples)
                    .collect();
                let mut p99s: Vec<Duration> = seen.iter().filter_map(|o| o.p99).collect();
                p99s.sort();
                Observation {
                    p99: p99s.get(p99s.len().saturating_sub(1) / 2).copied(),
                    samples: seen.iter().map(|o| o.samples).sum(),
                }
            })
            .collect();
        Throttle {
            controller: Mutex::new(Controller::new(settings, groups, &before)),
            source,
            clock,
        }
    }

    /// How long to rest after a step that kept the work busy for `busy`; the pace is
    /// reconsidered first when an interval has passed.
    pub fn rest_after(&self, busy: Duration) -> Duration {
        let now = (self.clock)();
        let mut controller = self.controller.lock();
        if controller.due(now) {
            let window = controller.settings().window;
            let observed = (self.source)(now.checked_sub(window).unwrap_or(now), now);
            controller.step(now, &observed);
        }
        controller.rest(busy)
    }

    /// How large the work's next step should be, as a share of its full size: 1 at the
    /// ceiling, down to the floor's share of it as the work slows. A request that arrives
    /// while a step runs waits behind it, so a slowed work takes shorter steps as well as
    /// fewer.
    pub fn step_share(&self) -> f64 {
        let controller = self.controller.lock();
        (controller.duty() / controller.settings().ceiling).clamp(0.0, 1.0)
    }

    /// The pace now, and why.
    pub fn pace(&self) -> Pace {
        self.controller.lock().pace().clone()
    }
}

#[cfg(test)]
mod tests {
    //! The controller against a simulated neighbour, on a simulated clock: the neighbour's
    //! p99 grows with the share of time the work runs, as a shared file's tail does.

    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::control::State;

    /// A neighbour whose p99 is `base × (1 + load × duty)`, sending `rate` requests per
    /// window while active.
    struct Neighbour {
        base_ms: f64,
        load: Mutex<f64>,
        active: Mutex<bool>,
        /// The duty the work ran at, as f64 bits.
        duty: AtomicU64,
    }

    impl Neighbour {
        fn observe(&self) -> Vec<Observation> {
            if !*self.active.lock() {
                return vec![Observation::default()];
            }
            let duty = f64::from_bits(self.duty.load(Ordering::Relaxed));
            let p99 = self.base_ms * (1.0 + *self.load.lock() * duty);
            vec![Observation {
                p99: Some(Duration::from_secs_f64(p99 / 1e3)),
                samples: 400,
            }]
        }
    }

    struct Sim {
        now: Arc<Mutex<Instant>>,
        neighbour: Arc<Neighbour>,
        throttle: Throttle,
    }

    impl Sim {
        fn new(load: f64) -> Self {
            let now = Arc::new(Mutex::new(Instant::now()));
            let neighbour = Arc::new(Neighbour {
                base_ms: 2.0,
                load: Mutex::new(load),
                active: Mutex::new(true),
                duty: AtomicU64::new(0f64.to_bits()),
            });
            let (n, c) = (Arc::clone(&neighbour), Arc::clone(&now));
            let throttle = Throttle::new(
                Settings::new(1.5, 0.05, 0.75),
                &["file"],
                Arc::new(move |_, _| n.observe()),
                Arc::new(move || *c.lock()),
            );
            Sim {
                now,
                neighbour,
                throttle,
            }
        }

        /// Runs the work for `seconds` of simulated time in steps of 20 ms of work; returns
        /// the ratio the neighbour saw at each step after `settle` seconds.
        fn run(&self, seconds: u64, settle: u64) -> Vec<f64> {
            let start = *self.now.lock();
            let mut ratios = Vec::new();
            while self.now.lock().saturating_duration_since(start) < Duration::from_secs(seconds) {
                let busy = Duration::from_millis(20);
                let rest = self.throttle.rest_after(busy);
                let duty = busy.as_secs_f64() / (busy + rest).as_secs_f64();
                self.neighbour.duty.store(duty.to_bits(), Ordering::Relaxed);
                *self.now.lock() += busy + rest;
                let elapsed = self.now.lock().saturating_duration_since(start);
                if elapsed >= Duration::from_secs(settle) {
                    let seen = self.neighbour.observe()[0];
                    ratios.push(seen.p99.map_or(1.0, |p| p.as_secs_f64() * 1e3 / 2.0));
                }
            }
            ratios
        }
    }

    #[test]
    fn the_baseline_is_the_median_window_before_the_work() {
        let now = Instant::now();
        // Five windows of 2 s before now; the oldest had a burst.
        let source = move |since: Instant, _until: Instant| {
            let age = now.saturating_duration_since(since).as_secs();
            let p99_ms = match age {
                10 => 40.0,
                8 => 2.0,
                6 => 3.0,
                4 => 2.5,
                _ => 2.2,
            };
            vec![Observation {
                p99: Some(Duration::from_secs_f64(p99_ms / 1e3)),
                samples: 100,
            }]
        };
        let throttle = Throttle::new(
            Settings::new(1.5, 0.05, 0.75),
            &["file"],
            Arc::new(source),
            Arc::new(move || now),
        );
        throttle.rest_after(Duration::from_millis(1));
        let pace = throttle.pace();
        assert_eq!(pace.baseline, Some(Duration::from_micros(2500)), "{pace:?}");
    }

    #[test]
    fn a_loaded_neighbour_is_kept_within_target() {
        // At the ceiling (0.75) this neighbour would see 1 + 4 × 0.75 = 4×.
        let sim = Sim::new(4.0);
        let ratios = sim.run(120, 20);
        let over = ratios.iter().filter(|r| **r > 1.5).count();
        assert!(
            over * 100 <= ratios.len(),
            "over target in {over} of {} steps",
            ratios.len()
        );
        let pace = sim.throttle.pace();
        assert!(pace.duty >= 0.05 && pace.duty <= 0.15, "{pace:?}");
        assert!(
            pace.reason.contains("neighbours on the file"),
            "{}",
            pace.reason
        );
    }

    #[test]
    fn the_work_speeds_up_when_the_neighbour_leaves_and_never_stops() {
        let sim = Sim::new(4.0);
        sim.run(30, 30);
        assert!(sim.throttle.pace().duty < 0.2);
        *sim.neighbour.active.lock() = false;
        sim.run(20, 20);
        let pace = sim.throttle.pace();
        assert_eq!(pace.state, State::Unwatched);
        assert_eq!(pace.duty, 0.75, "back at the ceiling");
        // A neighbour so sensitive that even the floor is over target: the work goes on.
        *sim.neighbour.active.lock() = true;
        *sim.neighbour.load.lock() = 100.0;
        let before = *sim.now.lock();
        sim.run(90, 90);
        let rested = sim.throttle.rest_after(Duration::from_millis(20));
        assert!(rested <= Duration::from_millis(20 * 19), "{rested:?}");
        assert!(sim.now.lock().saturating_duration_since(before) >= Duration::from_secs(90));
    }

    #[test]
    fn the_step_share_follows_the_duty() {
        let settings = Settings::new(1.5, 0.05, 0.75);
        let slow = Arc::new(AtomicU64::new(1));
        let seen = Arc::clone(&slow);
        let source: Arc<Source> = Arc::new(move |_, _| {
            let ms = seen.load(Ordering::Relaxed);
            vec![Observation::of(vec![Duration::from_millis(ms); 100])]
        });
        let t0 = Instant::now();
        let now = Arc::new(AtomicU64::new(0));
        let at = Arc::clone(&now);
        let clock: Arc<Clock> =
            Arc::new(move || t0 + Duration::from_millis(at.load(Ordering::Relaxed)));
        let throttle = Throttle::new(settings, &["domain"], source, clock);
        let start = throttle.step_share();
        assert!(
            start > 0.0 && start < 1.0,
            "starts between floor and ceiling: {start}"
        );
        // The neighbours turn ten times slower: the duty, and with it the step, shrinks.
        slow.store(10, Ordering::Relaxed);
        for i in 1..=20 {
            now.store(i * 600, Ordering::Relaxed);
            throttle.rest_after(Duration::from_millis(10));
        }
        let slowed = throttle.step_share();
        assert!(
            (slowed - 0.05 / 0.75).abs() < 1e-9,
            "at the floor the step is the floor's share of the ceiling: {slowed}"
        );
    }
}
