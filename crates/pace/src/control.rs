//! The controller: from the neighbours' p99, the share of time background work may run.
//!
//! Neighbours are observed in groups (for a move: the tenants on the moving tenant's files,
//! and those on its domains), each against its own baseline: its p99 over the moments just
//! before the work began. Every `interval` the controller looks at each group's p99 over the
//! last `window` and takes the worst ratio to its baseline:
//!
//! - over `target_ratio`: the duty is halved (not below `floor`);
//! - under `ROOM` × `target_ratio`: the duty grows by `STEP` (not above `ceiling`);
//! - in between: it holds;
//! - no group has enough requests to judge (fewer than `min_samples` in the window): nobody
//!   is there to protect, and the duty grows.
//!
//! A group with requests but no baseline (its tenants were idle before the work began) gets
//! one: the work runs at the floor for one window and the p99 seen then is taken. A group
//! that leaves the work no room to grow for `rebase_after` while it runs at the floor has a
//! new load of its own, or its file changed (a pool growing with the records moved into it) —
//! the work at its floor is not what slows it — so its baseline is measured again there.
//! The work never stops: the duty is at least `floor`.

use std::time::{Duration, Instant};

use crate::board::Observation;

/// How much the duty grows per interval while there is room.
const STEP: f64 = 0.05;
/// The duty is halved when over target.
const DECREASE: f64 = 0.5;
/// Room to grow: the worst ratio is under this share of the target.
const ROOM: f64 = 0.8;

/// How a controller reacts.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The neighbours' p99 is kept under this many times their baseline (1.5).
    pub target_ratio: f64,
    /// The least duty: the work always goes on at least this share of the time.
    pub floor: f64,
    /// The most duty.
    pub ceiling: f64,
    /// How often the duty is reconsidered.
    pub interval: Duration,
    /// The window each observation covers (and the baseline's, measured at the floor).
    pub window: Duration,
    /// How far back the baseline before the work looks.
    pub before: Duration,
    /// Fewer requests than this in a window say nothing.
    pub min_samples: usize,
    /// A group that leaves no room to grow this long at the floor gets its baseline
    /// measured again.
    pub rebase_after: Duration,
    /// Baselines are taken as at least this (sub-millisecond jitter is not a slowdown).
    pub min_baseline: Duration,
}

impl Settings {
    pub fn new(target_ratio: f64, floor: f64, ceiling: f64) -> Self {
        Settings {
            target_ratio,
            floor,
            ceiling: ceiling.max(floor),
            interval: Duration::from_millis(500),
            window: Duration::from_secs(2),
            before: Duration::from_secs(10),
            min_samples: 20,
            rebase_after: Duration::from_secs(15),
            min_baseline: Duration::from_micros(500),
        }
    }

    /// The duty work starts at once baselines are known: a quarter of the way from the floor
    /// to the ceiling, so the first interval cannot hurt much before the controller sees it.
    fn start(&self) -> f64 {
        self.floor + (self.ceiling - self.floor) / 4.0
    }
}

/// What the controller is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No neighbour had requests to judge by: growing towards the ceiling.
    Unwatched,
    /// Running at the floor for a window to measure a group's baseline.
    Measuring,
    /// A group's p99 is over target: slowing down.
    Slowing,
    /// Within target, without room to grow.
    Holding,
    /// Room to grow: speeding up.
    Rising,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unwatched => "unwatched",
            State::Measuring => "measuring",
            State::Slowing => "slowing",
            State::Holding => "holding",
            State::Rising => "rising",
        }
    }
}

/// The pace now, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Pace {
    /// The share of time the work may run (`floor` ≤ duty ≤ `ceiling`).
    pub duty: f64,
    pub state: State,
    /// The group the decision turned on (the worst one).
    pub group: Option<&'static str>,
    /// Its p99 over the last window, its baseline, and their ratio.
    pub p99: Option<Duration>,
    pub baseline: Option<Duration>,
    pub ratio: Option<f64>,
    /// Requests observed in the window, over all groups.
    pub samples: usize,
    pub target_ratio: f64,
    /// In words, for people.
    pub reason: String,
}

struct Group {
    name: &'static str,
    baseline: Option<Duration>,
    /// Since when it is over target while the work is at the floor.
    over_at_floor_since: Option<Instant>,
}

/// Decides the duty of one piece of work from its neighbours' latency.
pub struct Controller {
    settings: Settings,
    groups: Vec<Group>,
    duty: f64,
    last: Option<Instant>,
    measuring_until: Option<Instant>,
    pace: Pace,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Controller {
    /// A controller for neighbours in `groups`, with what each saw just before the work
    /// began (`before`, in the same order): a group with `min_samples` gets its baseline.
    pub fn new(settings: Settings, groups: &[&'static str], before: &[Observation]) -> Self {
        let groups: Vec<Group> = groups
            .iter()
            .enumerate()
            .map(|(i, name)| Group {
                name,
                baseline: before
                    .get(i)
                    .filter(|o| o.samples >= settings.min_samples)
                    .and_then(|o| o.p99)
                    .map(|p| p.max(settings.min_baseline)),
                over_at_floor_since: None,
            })
            .collect();
        let watched = groups.iter().any(|g| g.baseline.is_some());
        let duty = if watched {
            settings.start()
        } else {
            settings.ceiling
        };
        let reason = if watched {
            "starting at a cautious pace; the neighbours' baseline was measured before the work began"
                .to_owned()
        } else {
            "no neighbour requests before the work began".to_owned()
        };
        let pace = Pace {
            duty,
            state: if watched {
                State::Holding
            } else {
                State::Unwatched
            },
            group: None,
            p99: None,
            baseline: None,
            ratio: None,
            samples: 0,
            target_ratio: settings.target_ratio,
            reason,
        };
        Controller {
            settings,
            groups,
            duty,
            last: None,
            measuring_until: None,
            pace,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn duty(&self) -> f64 {
        self.duty
    }

    pub fn pace(&self) -> &Pace {
        &self.pace
    }

    /// Whether an interval has passed since the last step.
    pub fn due(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.settings.interval)
    }

    /// How long the work rests after a step that kept it busy for `busy`.
    pub fn rest(&self, busy: Duration) -> Duration {
        if self.duty >= 1.0 {
            return Duration::ZERO;
        }
        busy.mul_f64((1.0 - self.duty) / self.duty)
    }

    /// Reconsiders the duty from each group's observation over the last window (in the
    /// order of the groups).
    pub fn step(&mut self, now: Instant, observed: &[Observation]) -> &Pace {
        self.last = Some(now);
        let s = self.settings.clone();
        let samples: usize = observed.iter().map(|o| o.samples).sum();
        let enough = |i: usize| observed.get(i).filter(|o| o.samples >= s.min_samples);

        // Measuring a baseline at the floor: done once a whole window has passed there.
        if let Some(until) = self.measuring_until {
            if now < until {
                return self.set(
                    State::Measuring,
                    None,
                    samples,
                    "measuring the neighbours' baseline at the floor pace".into(),
                );
            }
            self.measuring_until = None;
            let mut taken = Vec::new();
            for (i, g) in self.groups.iter_mut().enumerate() {
                if g.baseline.is_none()
                    && let Some(p99) = enough(i).and_then(|o| o.p99)
                {
                    g.baseline = Some(p99.max(s.min_baseline));
                    taken.push(g.name);
                }
            }
            if !taken.is_empty() {
                return self.set(
                    State::Holding,
                    None,
                    samples,
                    format!(
                        "baseline of the neighbours on the {} measured at the floor pace",
                        taken.join(" and ")
                    ),
                );
            }
        }
        // Neighbours active now with no baseline: measure one first.
        if self
            .groups
            .iter()
            .enumerate()
            .any(|(i, g)| g.baseline.is_none() && enough(i).is_some())
        {
            self.duty = s.floor;
            self.measuring_until = Some(now + s.window);
            return self.set(
                State::Measuring,
                None,
                samples,
                "neighbours became active: measuring their baseline at the floor pace".into(),
            );
        }
        // The worst group against its baseline.
        let worst = self
            .groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                let p99 = enough(i)?.p99?;
                let baseline = g.baseline?;
                Some((i, p99, baseline, ms(p99) / ms(baseline)))
            })
            .max_by(|a, b| a.3.total_cmp(&b.3));
        let Some((i, p99, baseline, ratio)) = worst else {
            for g in &mut self.groups {
                g.over_at_floor_since = None;
            }
            self.duty = (self.duty + STEP).min(s.ceiling);
            return self.set(
                State::Unwatched,
                None,
                samples,
                format!(
                    "fewer than {} neighbour requests in the last {:.1} s: nobody to protect",
                    s.min_samples,
                    s.window.as_secs_f64()
                ),
            );
        };
        let name = self.groups[i].name;
        let observed = Some((name, p99, baseline, ratio));
        let detail = format!(
            "neighbours on the {name}: p99 {:.2} ms against {:.2} ms before ({ratio:.2}×, target {:.2}×)",
            ms(p99),
            ms(baseline),
            s.target_ratio
        );
        // At the floor without room to grow, for long: the neighbours' own load changed
        // (or the state of their file did: a pool growing with the records moved into it).
        if ratio >= s.target_ratio * ROOM && self.duty <= s.floor {
            let since = *self.groups[i].over_at_floor_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= s.rebase_after {
                self.groups[i].baseline = Some(p99.max(s.min_baseline));
                self.groups[i].over_at_floor_since = None;
                return self.set(State::Holding, observed, samples, format!("{detail}; no room at the floor pace for {:.0} s, so their own load changed: baseline measured again", s.rebase_after.as_secs_f64()));
            }
        }
        if ratio > s.target_ratio {
            self.duty = (self.duty * DECREASE).max(s.floor);
            return self.set(
                State::Slowing,
                observed,
                samples,
                format!("{detail}: slowing down"),
            );
        }
        if ratio < s.target_ratio * ROOM {
            self.groups[i].over_at_floor_since = None;
            self.duty = (self.duty + STEP).min(s.ceiling);
            return self.set(
                State::Rising,
                observed,
                samples,
                format!("{detail}: room to speed up"),
            );
        }
        self.set(
            State::Holding,
            observed,
            samples,
            format!("{detail}: holding"),
        )
    }

    fn set(
        &mut self,
        state: State,
        observed: Option<(&'static str, Duration, Duration, f64)>,
        samples: usize,
        reason: String,
    ) -> &Pace {
        self.pace = Pace {
            duty: self.duty,
            state,
            group: observed.map(|o| o.0),
            p99: observed.map(|o| o.1),
            baseline: observed.map(|o| o.2),
            ratio: observed.map(|o| o.3),
            samples,
            target_ratio: self.settings.target_ratio,
            reason,
        };
        &self.pace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(p99_ms: f64, samples: usize) -> Observation {
        Observation {
            p99: Some(Duration::from_secs_f64(p99_ms / 1e3)),
            samples,
        }
    }

    fn settings() -> Settings {
        Settings::new(1.5, 0.05, 0.75)
    }

    #[test]
    fn without_neighbours_the_work_runs_at_the_ceiling() {
        let mut c = Controller::new(settings(), &["file"], &[Observation::default()]);
        assert_eq!(c.duty(), 0.75);
        let t0 = Instant::now();
        let pace = c.step(t0, &[obs(9.0, 3)]).clone();
        assert_eq!(pace.state, State::Unwatched);
        assert_eq!(pace.duty, 0.75);
        assert_eq!(c.rest(Duration::from_millis(30)), Duration::from_millis(10));
    }

    #[test]
    fn over_target_halves_the_duty_down_to_the_floor() {
        let mut c = Controller::new(
            settings(),
            &["file", "domain"],
            &[obs(1.0, 100), obs(1.0, 100)],
        );
        let start = c.duty();
        assert!(start > 0.05 && start < 0.75, "starts cautious: {start}");
        let t0 = Instant::now();
        let pace = c.step(t0, &[obs(1.2, 100), obs(4.0, 100)]).clone();
        assert_eq!(pace.state, State::Slowing);
        assert_eq!(pace.group, Some("domain"), "the worst group decides");
        assert_eq!(pace.ratio, Some(4.0));
        assert!((pace.duty - start / 2.0).abs() < 1e-9);
        assert!(pace.reason.contains("4.00×"), "{}", pace.reason);
        for k in 1..10 {
            c.step(t0 + Duration::from_secs(k), &[obs(1.2, 100), obs(4.0, 100)]);
        }
        assert_eq!(c.duty(), 0.05, "never below the floor");
        assert!(c.rest(Duration::from_millis(10)) < Duration::from_secs(1));
    }

    #[test]
    fn room_grows_the_duty_and_the_band_holds_it() {
        let mut c = Controller::new(settings(), &["file"], &[obs(2.0, 100)]);
        let t0 = Instant::now();
        let before = c.duty();
        assert_eq!(c.step(t0, &[obs(2.0, 100)]).state, State::Rising);
        assert!((c.duty() - (before + STEP)).abs() < 1e-9);
        let held = c.duty();
        assert_eq!(
            c.step(t0 + Duration::from_secs(1), &[obs(2.8, 100)]).state,
            State::Holding
        );
        assert_eq!(c.duty(), held);
        for k in 2..40 {
            c.step(t0 + Duration::from_secs(k), &[obs(2.0, 100)]);
        }
        assert_eq!(c.duty(), 0.75, "never above the ceiling");
    }

    #[test]
    fn a_group_without_baseline_is_measured_at_the_floor() {
        let mut c = Controller::new(settings(), &["file"], &[obs(1.0, 5)]);
        assert_eq!(c.duty(), 0.75, "five requests say nothing");
        let t0 = Instant::now();
        assert_eq!(c.step(t0, &[obs(3.0, 100)]).state, State::Measuring);
        assert_eq!(c.duty(), 0.05);
        let mid = t0 + Duration::from_secs(1);
        assert_eq!(c.step(mid, &[obs(3.0, 100)]).state, State::Measuring);
        let after = t0 + Duration::from_secs(2);
        let pace = c.step(after, &[obs(2.0, 100)]).clone();
        assert!(pace.reason.contains("baseline"), "{}", pace.reason);
        let pace = c
            .step(after + Duration::from_secs(1), &[obs(5.0, 100)])
            .clone();
        assert_eq!(pace.baseline, Some(Duration::from_millis(2)));
        assert_eq!(pace.state, State::Slowing);
    }

    #[test]
    fn a_new_load_of_the_neighbours_own_is_rebased_so_the_work_never_stalls() {
        let mut c = Controller::new(settings(), &["file"], &[obs(1.0, 100)]);
        let t0 = Instant::now();
        let mut rebased = None;
        for k in 0..120u64 {
            let now = t0 + Duration::from_secs(k);
            let pace = c.step(now, &[obs(5.0, 100)]).clone();
            if pace.reason.contains("measured again") {
                rebased = Some(k);
                break;
            }
        }
        let k = rebased.expect("rebased");
        assert!(
            (15..=25).contains(&k),
            "rebased after about 15 s at the floor: {k}"
        );
        let now = t0 + Duration::from_secs(k + 1);
        assert_eq!(c.step(now, &[obs(5.0, 100)]).state, State::Rising);
    }

    #[test]
    fn a_tiny_baseline_is_taken_as_the_minimum() {
        let mut c = Controller::new(settings(), &["file"], &[obs(0.1, 100)]);
        let pace = c.step(Instant::now(), &[obs(0.7, 100)]).clone();
        assert_eq!(pace.baseline, Some(Duration::from_micros(500)));
        assert_eq!(
            pace.state,
            State::Holding,
            "0.7 ms against 0.5 ms is within target"
        );
    }
}
