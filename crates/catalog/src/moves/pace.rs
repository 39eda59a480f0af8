//! A move's pace: its copy and comparison rest after each page for as long as its
//! neighbours' latency asks (`bulkhead-pace`).
//!
//! The neighbours are the other tenants' data requests, in two groups each with a baseline
//! of its own: those on the moving tenant's files (its pool or bridge file on the source
//! side, and the one it moves into), and those on either side's domain. The settings come
//! from the moving tenant's tier (`pace`) over the server's (`--move-pace-target`,
//! `--move-pace-floor`), with the server's `--move-duty` as the ceiling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_api::MovePace;
use bulkhead_core::model::{PacePolicy, Placement};
use bulkhead_pace::{Board, Place, Settings, Throttle};

use super::MoveSettings;

/// The groups of neighbours a move watches, in the order the source reports them.
const GROUPS: [&str; 2] = ["file", "domain"];

/// The fewest records a paced copy step takes (unless the configured page is smaller).
pub(crate) const MIN_PAGE: u32 = 50;

fn page_for(chunk: u32, share: f64) -> u32 {
    let scaled = (f64::from(chunk) * share.clamp(0.0, 1.0)).round() as u32;
    scaled.clamp(MIN_PAGE.min(chunk), chunk)
}

#[derive(Clone)]
pub(crate) struct Pacer {
    throttle: Arc<Throttle>,
}

impl Pacer {
    /// The pace of `tenant`'s move from `source` to `target`, its neighbours' baseline taken
    /// now from the requests of the moments before.
    pub fn for_move(
        board: Arc<Board>,
        tenant: &str,
        source: &Placement,
        target: &Placement,
        tier: &PacePolicy,
        server: &MoveSettings,
    ) -> Self {
        let floor = tier.floor.unwrap_or(server.pace_floor);
        let settings = Settings::new(
            tier.target_ratio.unwrap_or(server.pace_target),
            floor,
            server.duty.max(floor),
        );
        let place = |p: &Placement| (p.domain.as_str().to_owned(), p.namespace.clone());
        let (sides, tenant) = ([place(source), place(target)], tenant.to_owned());
        let source = move |since: Instant, until: Instant| {
            let files: Vec<Place<'_>> = sides
                .iter()
                .map(|(domain, file)| Place {
                    domain,
                    file: Some(file),
                })
                .collect();
            let domains: Vec<Place<'_>> = sides
                .iter()
                .map(|(domain, _)| Place { domain, file: None })
                .collect();
            vec![
                board.observe(&files, &tenant, since, until),
                board.observe(&domains, &tenant, since, until),
            ]
        };
        Pacer {
            throttle: Arc::new(Throttle::new(
                settings,
                &GROUPS,
                Arc::new(source),
                Arc::new(Instant::now),
            )),
        }
    }

    /// Rests after a step that kept the work busy for `busy`, as long as the pace asks.
    pub async fn rest_after(&self, busy: Duration) {
        let rest = self.throttle.rest_after(busy);
        if rest.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(rest).await;
        }
    }

    /// The records the next copy step takes: `chunk` while the pace is at its ceiling,
    /// fewer as it slows (in proportion to the duty), never under [`MIN_PAGE`].
    pub fn page(&self, chunk: u32) -> u32 {
        page_for(chunk, self.throttle.step_share())
    }

    /// The pace as `GET /v1/moves/{id}` shows it.
    pub fn view(&self) -> MovePace {
        crate::paced::view(self.throttle.pace())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slowed_copy_takes_shorter_pages_but_never_tiny_ones() {
        assert_eq!(
            page_for(500, 1.0),
            500,
            "at the ceiling: the configured page"
        );
        assert_eq!(page_for(500, 0.5), 250);
        assert_eq!(page_for(500, 0.2), 100);
        assert_eq!(
            page_for(500, 0.05 / 0.75),
            MIN_PAGE,
            "at the floor: the least page"
        );
        assert_eq!(page_for(500, 0.0), MIN_PAGE);
        assert_eq!(page_for(500, 7.0), 500, "never past the configured page");
        assert_eq!(
            page_for(20, 0.1),
            20,
            "a page set below the least stays as set"
        );
    }
}
