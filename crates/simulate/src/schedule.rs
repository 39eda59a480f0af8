//! The seeded schedule of operations and faults: the same seed and settings give the same
//! schedule (which action, on which tenant, at which moment of the run).

use serde::Serialize;

/// A small, well-known generator (SplitMix64): enough to spread a schedule and pick
/// operations, and the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A generator of its own, for one worker.
    pub fn fork(&mut self) -> Rng {
        Rng(self.next_u64())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// `kill -9` a server, then start it again.
    Kill { server: usize },
    /// `SIGTERM` (a drain) to a server, then start it again.
    Drain { server: usize },
    /// Restart the PostgreSQL server (the catalog and the `pg` domain).
    PgRestart,
    /// Restart the pooler (PgBouncer) the `pg` domain's data connections go through.
    PgBouncerRestart,
    /// Give the full disk of the domain `full` room again (its filesystem grown eightfold).
    FreeDisk,
    /// A live move of a tenant to another isolation model; with `interrupt`, the server is
    /// killed (`kill -9`) once the move reaches that phase, and started again.
    Move {
        tenant: usize,
        isolation: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        interrupt: Option<String>,
    },
    /// Delete a tenant and create it again under the same id (a new life).
    Recreate { tenant: usize },
    /// Suspend a tenant for a moment, then resume it.
    Suspend { tenant: usize },
    /// Mint a key for a tenant, use it, revoke it, and try it again at once.
    Revoke { tenant: usize },
    /// Change the collection (a new optional field): a schema rollout over every placement.
    Rollout { field: u32 },
}

#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub at_ms: u64,
    #[serde(flatten)]
    pub action: Action,
}

/// How many of each action a run schedules.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub kills: u32,
    pub drains: u32,
    pub moves: u32,
    pub recreations: u32,
    pub suspensions: u32,
    pub revocations: u32,
    pub rollouts: u32,
    pub pg_restarts: u32,
    pub pgbouncer_restarts: u32,
    /// Whether each move is interrupted by a kill in a phase chosen by the seed.
    pub interrupt_moves: bool,
    /// Whether a domain starts on a small filesystem that fills up, freed at 60 % of the run.
    pub full_disk: bool,
}

/// The phases a move can be interrupted in.
pub const MOVE_PHASES: [&str; 6] = [
    "provisioning",
    "copying",
    "catching_up",
    "verifying",
    "switched",
    "cleaning",
];

/// The schedule over a run of `duration_ms` on `tenants` tenants (the first and last tenth of
/// the run are left quiet, so the run starts and ends with a settled server).
pub fn plan(
    rng: &mut Rng,
    counts: Counts,
    tenants: usize,
    servers: usize,
    duration_ms: u64,
) -> Vec<Planned> {
    let mut out = Vec::new();
    let span = duration_ms * 8 / 10;
    let start = duration_ms / 10;
    let at = |rng: &mut Rng| start + rng.below(span.max(1));
    let models = ["pool", "bridge", "silo"];
    for _ in 0..counts.kills {
        let server = rng.below(servers as u64) as usize;
        out.push(Planned {
            at_ms: at(rng),
            action: Action::Kill { server },
        });
    }
    for _ in 0..counts.drains {
        let server = rng.below(servers as u64) as usize;
        out.push(Planned {
            at_ms: at(rng),
            action: Action::Drain { server },
        });
    }
    for _ in 0..counts.pg_restarts {
        out.push(Planned {
            at_ms: at(rng),
            action: Action::PgRestart,
        });
    }
    for _ in 0..counts.pgbouncer_restarts {
        out.push(Planned {
            at_ms: at(rng),
            action: Action::PgBouncerRestart,
        });
    }
    for _ in 0..counts.moves {
        let tenant = rng.below(tenants as u64) as usize;
        let isolation = models[rng.below(3) as usize].to_owned();
        let interrupt = counts
            .interrupt_moves
            .then(|| MOVE_PHASES[rng.below(MOVE_PHASES.len() as u64) as usize].to_owned());
        out.push(Planned {
            at_ms: at(rng),
            action: Action::Move {
                tenant,
                isolation,
                interrupt,
            },
        });
    }
    for _ in 0..counts.recreations {
        let tenant = rng.below(tenants as u64) as usize;
        out.push(Planned {
            at_ms: at(rng),
            action: Action::Recreate { tenant },
        });
    }
    for _ in 0..counts.suspensions {
        let tenant = rng.below(tenants as u64) as usize;
        out.push(Planned {
            at_ms: at(rng),
            action: Action::Suspend { tenant },
        });
    }
    for _ in 0..counts.revocations {
        let tenant = rng.below(tenants as u64) as usize;
        out.push(Planned {
            at_ms: at(rng),
            action: Action::Revoke { tenant },
        });
    }
    for field in 0..counts.rollouts {
        out.push(Planned {
            at_ms: at(rng),
            action: Action::Rollout { field },
        });
    }
    out.sort_by_key(|p| p.at_ms);
    if counts.full_disk {
        out.push(Planned {
            at_ms: duration_ms * 6 / 10,
            action: Action::FreeDisk,
        });
    }
    // Each rollout adds one field to the last one's: number them in the order they run.
    let mut next = 0;
    for planned in &mut out {
        if let Action::Rollout { field } = &mut planned.action {
            *field = next;
            next += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTS: Counts = Counts {
        kills: 3,
        drains: 1,
        moves: 4,
        recreations: 2,
        suspensions: 2,
        revocations: 2,
        rollouts: 1,
        pg_restarts: 1,
        pgbouncer_restarts: 1,
        interrupt_moves: true,
        full_disk: false,
    };

    #[test]
    fn the_same_seed_plans_the_same_schedule_and_another_seed_another() {
        let a = plan(&mut Rng::new(7), COUNTS, 9, 2, 60_000);
        let b = plan(&mut Rng::new(7), COUNTS, 9, 2, 60_000);
        let c = plan(&mut Rng::new(8), COUNTS, 9, 2, 60_000);
        let show = |p: &[Planned]| serde_json::to_string(p).unwrap_or_default();
        assert_eq!(show(&a), show(&b));
        assert_ne!(show(&a), show(&c));
        assert_eq!(a.len(), 17);
        assert!(a.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert!(a.iter().all(|p| (6_000..54_000).contains(&p.at_ms)));
    }
}
