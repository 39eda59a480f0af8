//! Background passes paced by the latency their domain's requests see (`bulkhead-pace`):
//! the storage sampler and schema rollouts. Each pass measures the p99 of every request on
//! the domain it works on just before it starts, then rests between steps so that p99 stays
//! within `target_ratio` of it, working at least `floor` of the time so a pass always ends.
//! (A live move paces itself by its own, per-tier settings: `MoveSettings`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_api::MovePace;
use bulkhead_core::DomainName;

/// How a background pass paces itself on one domain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DomainPace {
    /// Keep the domain's requests' p99 within this many times their p99 just before.
    pub target_ratio: f64,
    /// The least share of time the pass works.
    pub floor: f64,
}

impl DomainPace {
    /// A throttle for one pass on `domain`, its baseline read from `board` now.
    pub(crate) fn throttle(
        self,
        board: Arc<bulkhead_pace::Board>,
        domain: &DomainName,
    ) -> bulkhead_pace::Throttle {
        let settings = bulkhead_pace::Settings::new(self.target_ratio, self.floor, 1.0);
        let domain = domain.as_str().to_owned();
        // Every tenant's requests on the domain: the pass works for none of them.
        let source = move |since: Instant, until: Instant| {
            let places = [bulkhead_pace::Place {
                domain: &domain,
                file: None,
            }];
            vec![board.observe(&places, "", since, until)]
        };
        bulkhead_pace::Throttle::new(
            settings,
            &["domain"],
            Arc::new(source),
            Arc::new(Instant::now),
        )
    }
}

/// A pace as the API shows it (`GET /v1/moves/{id}`, `GET /v1/rollouts/{id}`).
pub(crate) fn view(pace: bulkhead_pace::Pace) -> MovePace {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    MovePace {
        duty: pace.duty,
        state: pace.state.as_str().to_owned(),
        group: pace.group.map(str::to_owned),
        p99_ms: pace.p99.map(ms),
        baseline_ms: pace.baseline.map(ms),
        ratio: pace.ratio,
        target_ratio: pace.target_ratio,
        samples: pace.samples as u64,
        reason: pace.reason,
    }
}
