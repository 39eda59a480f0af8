//! Recent request latencies, per domain, tagged with the file and tenant each request used.
//!
//! Each domain keeps a ring of its latest samples (bounded: at most [`CAPACITY`] per domain
//! and thread shard, so memory stays flat at any request rate; at high rates a window holds
//! the latest samples only). The rings are kept per thread shard
//! ([`bulkhead_core::shard`]): recording costs one short lock of the calling thread's own
//! shard, which no other core is writing, and files and tenants are kept as 64-bit hashes,
//! so nothing is allocated per request. Observing merges the shards.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};
use std::time::{Duration, Instant};

use bulkhead_core::shard::{Padded, SHARDS};
use parking_lot::Mutex;

/// Samples kept per domain and thread shard.
pub const CAPACITY: usize = 16_384;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    micros: u32,
    file: u64,
    tenant: u64,
}

/// Where neighbours are observed: a whole domain, or one file (namespace) of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place<'a> {
    pub domain: &'a str,
    /// `None`: every file of the domain.
    pub file: Option<&'a str>,
}

/// The neighbours' latency over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Observation {
    /// The 99th percentile (`None` without samples).
    pub p99: Option<Duration>,
    pub samples: usize,
}

impl Observation {
    /// The observation of `latencies` (in any order).
    pub fn of(mut latencies: Vec<Duration>) -> Self {
        let samples = latencies.len();
        if samples == 0 {
            return Observation::default();
        }
        // The nearest-rank 99th percentile.
        let rank = (samples * 99).div_ceil(100).max(1) - 1;
        let (_, p99, _) = latencies.select_nth_unstable(rank);
        Observation {
            p99: Some(*p99),
            samples,
        }
    }
}

/// One thread shard's rings, by domain.
type Rings = bulkhead_core::shard::HotMap<String, VecDeque<Sample>>;

/// Recent request latencies of every domain.
pub struct Board {
    shards: [Padded<Mutex<Rings>>; SHARDS],
    hasher: foldhash::fast::RandomState,
    capacity: usize,
}

impl Default for Board {
    fn default() -> Self {
        Board::with_capacity(CAPACITY)
    }
}

impl Board {
    pub fn with_capacity(capacity: usize) -> Self {
        Board {
            shards: Default::default(),
            hasher: Default::default(),
            capacity: capacity.max(1),
        }
    }

    fn hash(&self, value: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        value.hash(&mut h);
        std::hash::Hasher::finish(&h)
    }

    /// Records one request of `tenant` on `file` of `domain` that took `latency`, ended `at`.
    pub fn record(&self, domain: &str, file: &str, tenant: &str, latency: Duration, at: Instant) {
        let sample = Sample {
            at,
            micros: u32::try_from(latency.as_micros()).unwrap_or(u32::MAX),
            file: self.hash(file),
            tenant: self.hash(tenant),
        };
        let mut shard = self.shards[bulkhead_core::shard::this_thread()].lock();
        let ring = match shard.get_mut(domain) {
            Some(ring) => ring,
            None => shard
                .entry(domain.to_owned())
                .or_insert_with(|| VecDeque::with_capacity(1024)),
        };
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    /// The latency of requests that ended in `[since, until)` in any of `places`, other
    /// than `exclude`'s (the tenant whose own work is being paced).
    pub fn observe(
        &self,
        places: &[Place<'_>],
        exclude: &str,
        since: Instant,
        until: Instant,
    ) -> Observation {
        let exclude = self.hash(exclude);
        let mut latencies = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for place in places {
            // A domain named twice is read once, with every file asked for in it.
            if seen.contains(&place.domain) {
                continue;
            }
            seen.push(place.domain);
            let files: Option<Vec<u64>> = places
                .iter()
                .filter(|p| p.domain == place.domain)
                .map(|p| p.file.map(|f| self.hash(f)))
                .collect();
            for shard in &self.shards {
                let shard = shard.lock();
                let Some(ring) = shard.get(place.domain) else {
                    continue;
                };
                // Samples are in the order they were recorded, which is nearly the order
                // they ended: scan back from the newest until well before the window.
                for s in ring.iter().rev() {
                    if s.at < since {
                        break;
                    }
                    if s.at >= until || s.tenant == exclude {
                        continue;
                    }
                    if files.as_ref().is_none_or(|f| f.contains(&s.file)) {
                        latencies.push(Duration::from_micros(u64::from(s.micros)));
                    }
                }
            }
        }
        Observation::of(latencies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn p99_is_the_nearest_rank() {
        let all: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(Observation::of(all).p99, Some(ms(99)));
        let few: Vec<Duration> = vec![ms(5), ms(1), ms(3)];
        assert_eq!(
            Observation::of(few),
            Observation {
                p99: Some(ms(5)),
                samples: 3
            }
        );
        assert_eq!(Observation::of(Vec::new()), Observation::default());
    }

    #[test]
    fn observes_neighbours_of_a_file_or_a_domain_in_a_window() {
        let board = Board::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        board.record("local", "pool_0", "acme", ms(50), at(1));
        board.record("local", "pool_0", "globex", ms(2), at(1));
        board.record("local", "pool_0", "globex", ms(3), at(2));
        board.record("local", "silo_x", "initech", ms(9), at(2));
        board.record("other", "pool_0", "umbrella", ms(7), at(2));
        board.record("local", "pool_0", "globex", ms(4), at(5));

        let file = [Place {
            domain: "local",
            file: Some("pool_0"),
        }];
        let seen = board.observe(&file, "acme", at(0), at(3));
        assert_eq!(
            seen.samples, 2,
            "the paced tenant's own requests do not count"
        );
        assert_eq!(seen.p99, Some(ms(3)));

        let domain = [Place {
            domain: "local",
            file: None,
        }];
        let seen = board.observe(&domain, "acme", at(0), at(3));
        assert_eq!((seen.samples, seen.p99), (3, Some(ms(9))));

        assert_eq!(board.observe(&domain, "acme", at(3), at(6)).samples, 1);
        assert_eq!(board.observe(&domain, "acme", at(6), at(9)).samples, 0);

        let both = [
            Place {
                domain: "local",
                file: Some("pool_0"),
            },
            Place {
                domain: "other",
                file: None,
            },
        ];
        assert_eq!(board.observe(&both, "acme", at(0), at(3)).samples, 3);
        let none = [Place {
            domain: "nowhere",
            file: None,
        }];
        assert_eq!(board.observe(&none, "acme", at(0), at(9)).samples, 0);
    }

    #[test]
    fn samples_recorded_on_many_threads_are_all_observed() {
        let board = std::sync::Arc::new(Board::default());
        let t0 = Instant::now();
        let threads: Vec<_> = (0..4u64)
            .map(|i| {
                let board = std::sync::Arc::clone(&board);
                std::thread::spawn(move || {
                    for n in 0..100 {
                        board.record("local", "pool_0", "globex", ms(i * 100 + n), t0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let domain = [Place {
            domain: "local",
            file: None,
        }];
        let seen = board.observe(&domain, "acme", t0, t0 + ms(1));
        assert_eq!(seen.samples, 400, "every thread's samples are merged");
        assert_eq!(seen.p99, Some(ms(395)));
    }

    #[test]
    fn memory_stays_bounded() {
        let board = Board::with_capacity(100);
        let t0 = Instant::now();
        for i in 0..1_000 {
            board.record("local", "pool_0", "globex", ms(i), t0);
        }
        let domain = [Place {
            domain: "local",
            file: None,
        }];
        let seen = board.observe(&domain, "acme", t0, t0 + ms(1));
        assert_eq!(seen.samples, 100, "only the latest samples are kept");
        assert_eq!(seen.p99, Some(ms(998)));
    }
}
