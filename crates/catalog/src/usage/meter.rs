//! The counters of metering: what each tenant used, per UTC hour, counted in memory and added
//! to the catalog's `usage` table every couple of seconds (and at shutdown) by a flusher task.
//! Servers sharing a catalog each add their own counts, so the table holds the sum.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bulkhead_core::TenantId;
use bulkhead_core::access::TenantRoute;
use bulkhead_core::model::Isolation;
use bulkhead_core::shard::{HotMap, Padded, SHARDS};
use bulkhead_core::time::Timestamp;
use parking_lot::Mutex;
use tokio::task::futures::TaskLocalFuture;

use crate::store::{StoreResult, Tx, Val};
use crate::{Catalog, Inner};

pub(crate) const HOUR_MICROS: i64 = 3_600 * 1_000_000;
/// How often counts are added to the catalog.
const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// One thing metered per tenant and hour; its column in `usage` is [`Counter::column`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    /// Data requests admitted (reads and writes).
    Requests = 0,
    /// Of those, writes.
    Writes,
    /// Records created, replaced, patched or deleted (each bulk line counts).
    RecordsWritten,
    /// Request body bytes received.
    BytesIn,
    /// Response body bytes sent.
    BytesOut,
    /// Rows the engine looked at for queries (matching or not).
    RowsExamined,
    /// Time spent in the engine on queries, in microseconds.
    QueryMicros,
    /// Refused: over the tier's request rate.
    RefusedRate,
    /// Refused: over the tier's concurrent requests.
    RefusedConcurrency,
    /// Refused: over the tier's storage quota.
    RefusedQuota,
    /// Refused: a query over the tier's query budget.
    RefusedBudget,
}

pub(crate) const COUNTERS: usize = 11;

/// The columns of `usage`, in [`Counter`] order.
pub(crate) const COLUMNS: [&str; COUNTERS] = [
    "requests",
    "writes",
    "records_written",
    "bytes_in",
    "bytes_out",
    "rows_examined",
    "query_micros",
    "rate_limited",
    "refused_concurrency",
    "refused_quota",
    "refused_budget",
];

/// A tenant's counts in one hour.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts(pub [i64; COUNTERS]);

impl Counts {
    pub fn get(&self, counter: Counter) -> i64 {
        self.0[counter as usize]
    }

    fn merge(&mut self, other: &Counts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine = mine.saturating_add(theirs);
        }
    }
}

/// Counts not yet in the catalog, by tenant and hour; and each tenant's counts since this
/// server started (for metrics).
///
/// New counts go to one shard per thread slot ([`bulkhead_core::shard`]), so two cores
/// counting at once do not take turns on one lock. Each flush empties the shards: the hours
/// go to the catalog and the counts since the last flush into `totals`, so the shards hold
/// only the tenants active since (memory stays one entry per tenant, whatever the cores).
/// A reader of the totals merges the shards' counts not yet folded in.
#[derive(Default)]
pub(crate) struct Meter {
    shards: [Padded<Mutex<Books>>; SHARDS],
    /// Each tenant's counts since this server started, up to the last flush.
    totals: Mutex<HashMap<TenantId, Counts>>,
    /// Serialises flushes, so counts taken out are in the catalog before the next flush
    /// reports done.
    flushing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Books {
    tenants: HotMap<TenantId, Book>,
}

/// One tenant's counts since the last flush: by hour (usually one hour), and in all.
#[derive(Default)]
struct Book {
    hours: Vec<(i64, Counts)>,
    all: Counts,
}

impl Counts {
    fn add(&mut self, by: &[(Counter, i64)]) {
        for (counter, n) in by {
            let slot = &mut self.0[*counter as usize];
            *slot = slot.saturating_add(*n);
        }
    }
}

impl Book {
    fn hour(&mut self, hour: i64) -> &mut Counts {
        match self.hours.iter().position(|(h, _)| *h == hour) {
            Some(i) => &mut self.hours[i].1,
            None => {
                self.hours.push((hour, Counts::default()));
                let last = self.hours.len() - 1;
                &mut self.hours[last].1
            }
        }
    }
}

impl Meter {
    /// Adds `by` of each counter to `tenant`'s counts of the hour of `at`, in one lock (of
    /// the calling thread's shard). Allocates only for a tenant's first count since the last
    /// flush.
    pub(crate) fn add(&self, tenant: &TenantId, at: Timestamp, by: &[(Counter, i64)]) {
        let hour = at.as_micros().div_euclid(HOUR_MICROS) * HOUR_MICROS;
        let mut books = self.shards[bulkhead_core::shard::this_thread()].lock();
        let book = match books.tenants.get_mut(tenant) {
            Some(book) => book,
            None => books.tenants.entry(tenant.clone()).or_default(),
        };
        book.hour(hour).add(by);
        book.all.add(by);
    }

    /// Every tenant's counts since this server started.
    pub(crate) fn since_start(&self) -> Vec<(TenantId, Counts)> {
        // Held while the shards are read, as a flush holds it while it empties them.
        let totals = self.totals.lock();
        let mut all = totals.clone();
        for shard in &self.shards {
            for (tenant, book) in &shard.lock().tenants {
                match all.get_mut(tenant) {
                    Some(sum) => sum.merge(&book.all),
                    None => {
                        all.insert(tenant.clone(), book.all);
                    }
                }
            }
        }
        all.into_iter().collect()
    }

    /// Takes the counts not yet flushed, one entry per tenant and hour, and folds them into
    /// the totals since start. The shards are left empty.
    fn take_pending(&self) -> Vec<((TenantId, i64), Counts)> {
        let mut hours: HashMap<(TenantId, i64), Counts> = HashMap::new();
        // The totals' lock is held while the shards are emptied, so a reader of the totals
        // never sees a count twice or not at all.
        let mut totals = self.totals.lock();
        for shard in &self.shards {
            let taken = std::mem::take(&mut shard.lock().tenants);
            for (tenant, book) in taken {
                for (hour, counts) in book.hours {
                    hours
                        .entry((tenant.clone(), hour))
                        .or_default()
                        .merge(&counts);
                }
                totals.entry(tenant).or_default().merge(&book.all);
            }
        }
        hours.into_iter().collect()
    }

    /// Puts back counts a flush could not write (to the hours only: they are in the totals).
    fn put_back(&self, batch: &[((TenantId, i64), Counts)]) {
        let mut books = self.shards[bulkhead_core::shard::this_thread()].lock();
        for ((tenant, hour), c) in batch {
            books
                .tenants
                .entry(tenant.clone())
                .or_default()
                .hour(*hour)
                .merge(c);
        }
    }

    #[cfg(test)]
    pub(crate) fn pending(&self, tenant: &TenantId, hour: i64) -> Option<Counts> {
        let mut found: Option<Counts> = None;
        for shard in &self.shards {
            let books = shard.lock();
            let Some(book) = books.tenants.get(tenant) else {
                continue;
            };
            if let Some((_, c)) = book.hours.iter().find(|(h, _)| *h == hour) {
                found.get_or_insert_with(Counts::default).merge(c);
            }
        }
        found
    }
}

/// Adds counts to `usage`, each to its tenant's row of the hour; for a tenant whose current
/// life began within that hour, to the row starting when it began. So the rows of a life are
/// those with `bucket >= created_at`, to the microsecond: counts of a deleted life are in the
/// rows before (its deletion flushes what this server counted before it ends). A count can
/// cross only if it is flushed after the next life is created: a request of the old life
/// still settling then, or counts another server sharing the catalog had not flushed yet (it
/// flushes every two seconds). Counts of an id no tenant has (a platform request naming a
/// tenant that does not exist, or one whose deletion has finished) are dropped: usage is kept
/// for tenants, not for every id a request named.
fn add_counts(tx: &dyn Tx, batch: &[((TenantId, i64), Counts)]) -> StoreResult<()> {
    let names = COLUMNS.join(", ");
    let values: Vec<String> = (0..COUNTERS).map(|i| format!("?{}", i + 3)).collect();
    let sums: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("{c} = usage.{c} + excluded.{c}"))
        .collect();
    // Queries by hour group by `(bucket / hour) * hour`.
    let sql = format!(
        "INSERT INTO usage (tenant_id, bucket, {names}) VALUES (?1, \
         COALESCE((SELECT created_at FROM tenants WHERE id = ?1 AND created_at > ?2 \
         AND created_at < ?2 + {HOUR_MICROS}), ?2), {}) \
         ON CONFLICT (tenant_id, bucket) DO UPDATE SET {}",
        values.join(", "),
        sums.join(", ")
    );
    for ((tenant, hour), c) in batch {
        let known = tx.query_opt(
            "SELECT 1 FROM tenants WHERE id = ?1",
            &[Val::from(tenant.as_str())],
        )?;
        if known.is_none() {
            continue;
        }
        let mut params = vec![Val::from(tenant.as_str()), Val::Int(*hour)];
        params.extend(c.0.iter().map(|n| Val::Int(*n)));
        tx.execute(&sql, &params)?;
    }
    Ok(())
}

/// Adds the counts every [`FLUSH_EVERY`] until the catalog is dropped.
pub(crate) fn spawn_flusher(inner: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(FLUSH_EVERY).await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            Catalog { inner }.flush_usage().await;
        }
    });
}

/// What the current request acts on, once the catalog knows: the tenant a control request
/// named, or the route of a data request's tenant. It lives in a task-local while the request
/// runs ([`RequestTenant::scope`]) and goes back to the HTTP layer after, so a request that
/// sends and receives no streamed body allocates nothing for its metering.
#[derive(Default)]
pub struct Acting {
    /// The request's id (error bodies and audit records carry it).
    request_id: String,
    /// The tenant a control request named (a data request's is its route's).
    tenant: OnceCell<TenantId>,
    /// Where a data request's tenant is: its isolation model, domain and file (namespace).
    route: OnceCell<Arc<TenantRoute>>,
    /// The bytes of the request's streamed bodies, told the tenant as soon as it is known
    /// (so they are metered even if the request is cancelled).
    streamed: Option<Arc<Streamed>>,
    /// Whether the request's log span has its tenant (a field recorded twice is logged twice).
    logged: std::cell::Cell<bool>,
}

impl Acting {
    fn tenant(&self) -> Option<&TenantId> {
        match self.route.get() {
            Some(route) => Some(&route.tenant),
            None => self.tenant.get(),
        }
    }

    fn tell_streamed(&self) {
        if let (Some(streamed), Some(tenant)) = (&self.streamed, self.tenant()) {
            let _ = streamed.tenant.set(tenant.clone());
        }
    }
}

/// Bytes of bodies that stream (a request's body as the handler reads it, an answer sent in
/// pieces): counted as they pass, metered at the request's settling and, for what passes
/// after, once the last holder lets go (the body read or sent, or the connection gone).
struct Streamed {
    catalog: Catalog,
    tenant: OnceLock<TenantId>,
    received: AtomicU64,
    sent: AtomicU64,
}

impl Streamed {
    fn take(&self) -> [(Counter, i64); 2] {
        let n = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
        [
            (
                Counter::BytesIn,
                n(self.received.swap(0, Ordering::Relaxed)),
            ),
            (Counter::BytesOut, n(self.sent.swap(0, Ordering::Relaxed))),
        ]
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        let Some(tenant) = self.tenant.get() else {
            return;
        };
        let bytes = self.take();
        if bytes.iter().any(|(_, n)| *n != 0) {
            self.catalog.count(tenant, &bytes);
        }
    }
}

tokio::task_local! {
    /// What the current HTTP request acts on, once a data scope names it.
    static REQUEST_TENANT: Acting;
}

/// One request's slot: the HTTP layer runs the request inside it ([`RequestTenant::enter`]),
/// which gives everything the request runs its id, counts its bytes here, and labels its
/// metrics with the model found here. Usage the request causes meanwhile (its admission,
/// records, query work) goes to the meter as it happens; the bytes go when the request
/// settles.
pub struct RequestTenant {
    /// Here before and after the scope; in the task-local during it.
    acting: Option<Acting>,
    /// Bytes of a known size, counted at once.
    sized: u64,
}

/// Counts the bytes of one streamed body of a request ([`RequestTenant::streamed`]).
#[derive(Clone)]
pub struct BodyBytes(Arc<Streamed>);

impl BodyBytes {
    pub fn received(&self, bytes: u64) {
        self.0.received.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn sent(&self, bytes: u64) {
        self.0.sent.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl RequestTenant {
    pub fn new(request_id: String) -> Self {
        RequestTenant {
            acting: Some(Acting {
                request_id,
                ..Acting::default()
            }),
            sized: 0,
        }
    }

    /// The id of the request running now (empty outside one).
    pub fn current_id() -> String {
        REQUEST_TENANT
            .try_with(|slot| slot.request_id.clone())
            .unwrap_or_default()
    }

    fn acting(&mut self) -> &mut Acting {
        self.acting.get_or_insert_with(Acting::default)
    }

    /// The counter of this request's streamed bodies (made on first use).
    pub fn streamed(&mut self, catalog: &Catalog) -> BodyBytes {
        let acting = self.acting();
        let streamed = acting.streamed.get_or_insert_with(|| {
            Arc::new(Streamed {
                catalog: catalog.clone(),
                tenant: OnceLock::new(),
                received: AtomicU64::new(0),
                sent: AtomicU64::new(0),
            })
        });
        let bytes = BodyBytes(Arc::clone(streamed));
        acting.tell_streamed();
        bytes
    }

    /// An answer body of known size: its bytes are counted at once.
    pub fn sent_sized(&mut self, bytes: u64) {
        self.sized = self.sized.saturating_add(bytes);
    }

    /// The request's future, run inside this slot: what the catalog learns of its tenant
    /// lands here. Once it is done, [`RequestTenant::leave`] takes the slot back.
    pub fn enter<F: std::future::Future>(&mut self, f: F) -> TaskLocalFuture<Acting, F> {
        REQUEST_TENANT.scope(self.acting.take().unwrap_or_default(), f)
    }

    /// Takes the slot back from the request's future (see [`RequestTenant::enter`]).
    pub fn leave<F: std::future::Future>(&mut self, done: Pin<&mut TaskLocalFuture<Acting, F>>) {
        self.acting = done.take_value();
    }

    pub fn get(&self) -> Option<&TenantId> {
        self.acting.as_ref().and_then(Acting::tenant)
    }

    /// The isolation model of the tenant's placement, once a data request resolved it.
    pub fn model(&self) -> Option<Isolation> {
        let route = self.acting.as_ref()?.route.get()?;
        Some(route.placement.isolation)
    }

    /// Adds the bytes counted so far (a known-size answer, what streamed until now) to the
    /// meter of the request's tenant. Called once the answer's head is ready; bytes of a body
    /// still streaming follow when it ends.
    pub fn settle(&mut self, catalog: &Catalog) {
        let sized = std::mem::take(&mut self.sized);
        let Some(acting) = &self.acting else {
            return;
        };
        let Some(tenant) = acting.tenant() else {
            return;
        };
        let mut bytes = match &acting.streamed {
            Some(streamed) => streamed.take(),
            None => [(Counter::BytesIn, 0), (Counter::BytesOut, 0)],
        };
        bytes[1].1 = bytes[1]
            .1
            .saturating_add(i64::try_from(sized).unwrap_or(i64::MAX));
        if bytes.iter().any(|(_, n)| *n != 0) {
            catalog.count(tenant, &bytes);
        }
    }

    /// True the first time it is asked within a request (and always outside one): the
    /// request's log span is then given its tenant, once.
    pub(crate) fn first_tag() -> bool {
        REQUEST_TENANT
            .try_with(|slot| !slot.logged.replace(true))
            .unwrap_or(true)
    }

    /// Notes `tenant` as the current request's, if it runs inside a scope and no data route
    /// was noted first.
    pub(crate) fn note(tenant: &TenantId) {
        let _ = REQUEST_TENANT.try_with(|slot| {
            if slot.route.get().is_none() && slot.tenant.set(tenant.clone()).is_ok() {
                slot.tell_streamed();
            }
        });
    }

    /// Notes the route of the current request's data: its tenant, and the placement it is on
    /// (isolation model, domain and file). The first route noted stays.
    pub(crate) fn note_route(route: &Arc<TenantRoute>) {
        let _ = REQUEST_TENANT.try_with(|slot| {
            if slot.tenant.get().is_none_or(|t| *t == route.tenant)
                && slot.route.set(Arc::clone(route)).is_ok()
            {
                slot.tell_streamed();
            }
        });
    }

    /// The request ended `at`, after `latency` (its answer's head ready): a data request's
    /// latency goes on the board paced work watches, under its tenant's domain and file.
    pub fn finished(&self, catalog: &Catalog, latency: Duration, at: std::time::Instant) {
        if let Some(route) = self.acting.as_ref().and_then(|a| a.route.get()) {
            catalog.inner().latency.record(
                route.placement.domain.as_str(),
                &route.placement.namespace,
                route.tenant.as_str(),
                latency,
                at,
            );
        }
    }
}

impl Catalog {
    /// Whether usage is metered now.
    pub fn metering(&self) -> bool {
        self.inner().metering.load(Ordering::Relaxed)
    }

    /// Turns metering (usage counts, bytes, query work, request metrics) off or on, for
    /// `bulkhead-bench metering`, which measures what it costs by alternating rounds with it
    /// on and off in one process. A server never runs with it off.
    pub fn set_metering(&self, on: bool) {
        self.inner().metering.store(on, Ordering::Relaxed);
    }

    /// Adds to `tenant`'s counts of this hour.
    pub(crate) fn count(&self, tenant: &TenantId, by: &[(Counter, i64)]) {
        if !self.metering() {
            return;
        }
        self.inner().meter.add(tenant, self.inner().clock.now(), by);
    }

    /// Records a write created, replaced, patched or deleted.
    pub(crate) fn count_written(&self, tenant: &TenantId, records: u64) {
        self.count(
            tenant,
            &[(
                Counter::RecordsWritten,
                i64::try_from(records).unwrap_or(i64::MAX),
            )],
        );
    }

    /// A query's work: rows the engine examined and the time it took.
    pub(crate) fn count_query(&self, tenant: &TenantId, examined: u64, took: Duration) {
        self.count(
            tenant,
            &[
                (
                    Counter::RowsExamined,
                    i64::try_from(examined).unwrap_or(i64::MAX),
                ),
                (
                    Counter::QueryMicros,
                    i64::try_from(took.as_micros()).unwrap_or(i64::MAX),
                ),
            ],
        );
    }

    /// Adds the counts so far to the catalog; on failure they are kept for the next flush.
    pub async fn flush_usage(&self) {
        let meter = &self.inner().meter;
        let _one = meter.flushing.lock().await;
        let batch = meter.take_pending();
        if batch.is_empty() {
            return;
        }
        let batch = Arc::new(batch);
        let written = Arc::clone(&batch);
        if let Err(e) = self
            .blocking(move |store| store.write(|tx| add_counts(tx, &written)))
            .await
        {
            tracing::warn!(error = %e, "usage counts could not be written; kept for the next flush");
            meter.put_back(&batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_utc_hour() {
        let meter = Meter::default();
        let acme = TenantId::parse("acme").unwrap();
        let at = |micros| Timestamp::from_micros(micros);
        meter.add(&acme, at(HOUR_MICROS + 5), &[(Counter::Requests, 1)]);
        meter.add(
            &acme,
            at(2 * HOUR_MICROS - 1),
            &[(Counter::Requests, 1), (Counter::RecordsWritten, 1000)],
        );
        meter.add(&acme, at(2 * HOUR_MICROS), &[(Counter::RefusedRate, 1)]);
        let first = meter.pending(&acme, HOUR_MICROS).unwrap();
        assert_eq!(first.get(Counter::Requests), 2);
        assert_eq!(first.get(Counter::RecordsWritten), 1000);
        let second = meter.pending(&acme, 2 * HOUR_MICROS).unwrap();
        assert_eq!(
            (
                second.get(Counter::Requests),
                second.get(Counter::RefusedRate)
            ),
            (0, 1)
        );
    }

    #[test]
    fn counts_from_many_threads_are_flushed_once_and_kept_in_the_totals() {
        let meter = Arc::new(Meter::default());
        let acme = TenantId::parse("acme").unwrap();
        let at = Timestamp::from_micros(HOUR_MICROS + 5);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (meter, acme) = (Arc::clone(&meter), acme.clone());
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        meter.add(&acme, at, &[(Counter::Requests, 1)]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let requests = |all: Vec<(TenantId, Counts)>| -> Vec<i64> {
            all.iter().map(|(_, c)| c.get(Counter::Requests)).collect()
        };
        assert_eq!(requests(meter.since_start()), vec![1000]);

        let batch = meter.take_pending();
        assert_eq!(
            batch.len(),
            1,
            "one entry per tenant and hour, whatever the shards"
        );
        assert_eq!(batch[0].1.get(Counter::Requests), 1000);
        assert!(meter.take_pending().is_empty(), "nothing is flushed twice");
        assert_eq!(requests(meter.since_start()), vec![1000]);

        // A flush that failed puts its hours back; the totals are not counted again.
        meter.put_back(&batch);
        meter.add(&acme, at, &[(Counter::Requests, 1)]);
        assert_eq!(requests(meter.since_start()), vec![1001]);
        let again = meter.take_pending();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1.get(Counter::Requests), 1001);
        assert_eq!(requests(meter.since_start()), vec![1001]);
    }

    #[test]
    fn every_counter_has_its_column() {
        assert_eq!(Counter::RefusedBudget as usize, COUNTERS - 1);
        assert_eq!(COLUMNS[Counter::RefusedRate as usize], "rate_limited");
    }
}
