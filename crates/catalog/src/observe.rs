//! What the catalog shows to metrics (`GET /metrics`, rendered by the HTTP layer): each
//! heavy tenant's counts since this server started — the heaviest `top` by requests each on
//! its own, every other tenant summed into one `_other` row, so the number of series stays
//! bounded at any number of tenants — refusals by kind, each domain's open storage handles,
//! the audit queue, moves by phase and how far behind the shared catalog this server is.
//! Read from memory only: a scrape never touches storage.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bulkhead_core::TenantId;
use parking_lot::Mutex;

use crate::Catalog;
use crate::usage::{Counter, Counts};

/// How long the set of tenants with series of their own stays the same: a tenant entering
/// or leaving it moves its counts between its own series and `_other`, which a scraper
/// sees as a counter reset of both, so the set changes only this often.
const CHOSEN_FOR: Duration = Duration::from_secs(600);

/// The tenants that have series of their own, and since when.
#[derive(Default)]
pub(crate) struct Chosen(Mutex<Option<(Instant, usize, HashSet<TenantId>)>>);

/// One tenant's (or `_other`'s) counts since this server started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantFigures {
    pub requests: u64,
    pub writes: u64,
    pub records_written: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rows_examined: u64,
    pub query_seconds: f64,
    /// Refusals by kind: `rate`, `concurrency`, `quota`, `budget`.
    pub refused: [u64; 4],
}

pub const REFUSAL_KINDS: [&str; 4] = ["rate", "concurrency", "quota", "budget"];

impl TenantFigures {
    fn of(c: &Counts) -> Self {
        let n = |counter: Counter| u64::try_from(c.get(counter)).unwrap_or(0);
        TenantFigures {
            requests: n(Counter::Requests),
            writes: n(Counter::Writes),
            records_written: n(Counter::RecordsWritten),
            bytes_in: n(Counter::BytesIn),
            bytes_out: n(Counter::BytesOut),
            rows_examined: n(Counter::RowsExamined),
            query_seconds: n(Counter::QueryMicros) as f64 / 1e6,
            refused: [
                n(Counter::RefusedRate),
                n(Counter::RefusedConcurrency),
                n(Counter::RefusedQuota),
                n(Counter::RefusedBudget),
            ],
        }
    }

    fn add(&mut self, o: &TenantFigures) {
        self.requests += o.requests;
        self.writes += o.writes;
        self.records_written += o.records_written;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.rows_examined += o.rows_examined;
        self.query_seconds += o.query_seconds;
        for (mine, theirs) in self.refused.iter_mut().zip(o.refused) {
            *mine += theirs;
        }
    }
}

/// A domain's engine as metrics see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineFigures {
    pub domain: String,
    pub engine: &'static str,
    pub open_handles: u64,
    /// Search indexes its background upkeep merged since it opened.
    pub search_merges: u64,
}

/// Everything `GET /metrics` shows of the catalog.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The heaviest tenants by id, and `_other` (all the rest) when there are more.
    pub tenants: BTreeMap<String, TenantFigures>,
    /// All tenants together.
    pub all: TenantFigures,
    pub engines: Vec<EngineFigures>,
    pub audit_queued: u64,
    pub audit_dropped: u64,
    /// Change feeds open on this server, and the streams they (and the recently left) keep.
    pub watchers: u64,
    pub feed_streams: u64,
    /// Moves this server runs, by phase.
    pub moves: BTreeMap<String, u64>,
    /// Seconds since this server last applied the shared catalog's changes (`None`: the
    /// catalog is this server's own).
    pub catalog_sync_lag_seconds: Option<f64>,
}

/// The name of the series that sums every tenant without one of its own.
pub const OTHER: &str = "_other";

impl Catalog {
    /// A snapshot for metrics, with at most `top` tenants on their own.
    pub fn observe(&self, top: usize) -> Observed {
        let totals = self.inner().meter.since_start();
        let chosen = self.chosen(&totals, top);
        let mut out = Observed::default();
        for (tenant, counts) in &totals {
            let figures = TenantFigures::of(counts);
            out.all.add(&figures);
            let name = if chosen.contains(tenant) {
                tenant.as_str()
            } else {
                OTHER
            };
            out.tenants
                .entry(name.to_owned())
                .or_default()
                .add(&figures);
        }
        out.engines = self
            .inner()
            .engines
            .snapshot()
            .into_iter()
            .map(|(domain, engine)| {
                let stats = engine.stats();
                EngineFigures {
                    domain: domain.as_str().to_owned(),
                    engine: engine.kind(),
                    open_handles: stats.open_handles as u64,
                    search_merges: stats.search_merges,
                }
            })
            .collect();
        (out.audit_queued, out.audit_dropped) = self.inner().audit.depth();
        (out.watchers, out.feed_streams) = self.inner().feeds.counts();
        for live in self.inner().moves.live.lock().values() {
            let phase = live
                .phase
                .lock()
                .map_or_else(|| "starting".to_owned(), |p| p.to_string());
            *out.moves.entry(phase).or_default() += 1;
        }
        out.catalog_sync_lag_seconds = self.is_shared().then(|| {
            let last = self.inner().synced_at.load(Ordering::Relaxed);
            let now = self.inner().clock.now().as_micros();
            (now.saturating_sub(last)).max(0) as f64 / 1e6
        });
        out
    }

    /// The tenants with series of their own: the heaviest `top` by requests, chosen again
    /// every [`CHOSEN_FOR`] (or when `top` changes).
    fn chosen(&self, totals: &[(TenantId, Counts)], top: usize) -> HashSet<TenantId> {
        let mut chosen = self.inner().observed.0.lock();
        if let Some((at, n, set)) = chosen.as_ref()
            && at.elapsed() < CHOSEN_FOR
            && *n == top
            && (set.len() == top || set.len() >= totals.len())
        {
            return set.clone();
        }
        let mut by_requests: Vec<(&TenantId, i64)> = totals
            .iter()
            .map(|(t, c)| (t, c.get(Counter::Requests)))
            .collect();
        by_requests.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let set: HashSet<TenantId> = by_requests
            .into_iter()
            .take(top)
            .map(|(t, _)| t.clone())
            .collect();
        *chosen = Some((Instant::now(), top, set.clone()));
        set
    }
}
