//! The change feed (`GET /v1/collections/{c}/records:watch`): a tenant's record changes on
//! one collection, as each watcher may see them.
//!
//! - Writers publish into `bulkhead-feed` streams keyed by the tenant's life (its
//!   `StorageKey`) and the collection, so the feed follows the tenant across live moves (a
//!   move copies without publishing; writes during it publish as any other), and a deleted
//!   and re-created tenant never shares a stream with its earlier life. A stream exists only
//!   while watched (and for the retention after), so an unwatched write pays one atomic load.
//! - A watched change carries the record before and after it, unredacted; each watcher
//!   decides what it sees with its own permission: the record rule and its filter on both
//!   states (visible before and after: `updated`; only after: `created`; only before:
//!   `deleted`, the record left its view; neither: nothing), hidden fields removed. Writers
//!   hold the stream's order for the record across the read of the state before, the write
//!   and the publication, so the states of one record arrive in the order they were written.
//! - A watcher re-authenticates its credential and re-authorizes its tenant every
//!   [`REAUTH_EVERY`]: a revoked key, an expired token, a removed member, a deleted tenant
//!   or collection ends the stream with the error.
//! - Positions resume within the retention (`Last-Event-ID`); one the feed no longer has, a
//!   watcher that fell more than the buffer behind, or a change the feed cannot describe
//!   record by record (an archive restored into the tenant) yields `resync`: reload, then
//!   apply what follows.
//!
//! What it does not see: writes made through other servers sharing the catalog, and the
//! retention job moving old records to the cold archive (they remain the tenant's records).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_core::access::TenantScope;
use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::permissions::{Action, Permission};
use bulkhead_core::query::{self, Predicate, eval};
use bulkhead_core::record::Record;
use bulkhead_core::schema::Collection;
use bulkhead_core::{CollectionName, RecordId, StorageKey, TenantId};
use bulkhead_engine::{BulkOp, BulkOutcome, Engine, EngineError};
use bulkhead_feed::{Gap, Next, Order, Position, Stream, Subscription};
use parking_lot::Mutex;

use crate::{Catalog, Ctx};

/// How often a watcher checks its credential and its tenant again.
pub const REAUTH_EVERY: Duration = Duration::from_secs(5);

/// How long opening a new stream waits for the tenant's writes in flight (which may not
/// publish into it) to finish.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// How the change feed keeps events and admits watchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSettings {
    /// Events kept per stream for resumption, and how far a watcher may fall behind.
    pub buffer: usize,
    /// How long events are kept for resumption.
    pub retention: Duration,
    /// Watchers one tenant may have open on this server.
    pub per_tenant: usize,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            buffer: 4096,
            retention: Duration::from_secs(300),
            per_tenant: 256,
        }
    }
}

pub(crate) type StreamKey = (StorageKey, CollectionName);

/// What writers publish.
#[derive(Debug)]
pub(crate) enum Change {
    Record {
        id: RecordId,
        before: Option<Record>,
        after: Option<Record>,
    },
    /// The stream's records changed in a way not described record by record.
    Resync(&'static str),
}

/// The feed and the watchers per tenant.
pub(crate) struct Feeds {
    feed: bulkhead_feed::Feed<StreamKey, Change>,
    per_tenant: usize,
    watchers: Arc<Mutex<HashMap<TenantId, usize>>>,
    /// Set when the server shuts down: every feed ends, so the drain does not wait on them.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Feeds {
    pub fn new(settings: WatchSettings) -> Self {
        Feeds {
            feed: bulkhead_feed::Feed::new(bulkhead_feed::Settings {
                buffer: settings.buffer,
                retention: settings.retention,
            }),
            per_tenant: settings.per_tenant.max(1),
            watchers: Arc::default(),
            closing: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Ends every feed (the server is shutting down).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Watchers open on this server.
    pub fn watchers(&self) -> usize {
        self.feed.watchers()
    }

    /// Watchers open, and streams kept (watched, or within their retention).
    pub fn counts(&self) -> (u64, u64) {
        (self.feed.watchers() as u64, self.feed.streams() as u64)
    }

    fn admit(&self, tenant: &TenantId) -> Result<WatcherSlot, Error> {
        let mut counts = self.watchers.lock();
        let count = counts.entry(tenant.clone()).or_default();
        if *count >= self.per_tenant {
            return Err(Error::new(
                ErrorKind::TooManyRequests,
                "too_many_watchers",
                format!(
                    "this tenant already has {} change feeds open on this server (the limit); \
                     close one first",
                    self.per_tenant
                ),
            ));
        }
        *count += 1;
        Ok(WatcherSlot {
            tenant: tenant.clone(),
            counts: Arc::clone(&self.watchers),
        })
    }

    /// The ordering and publication of a change to one record, if anyone watches the
    /// collection; `read_before` reads the record's state before the change.
    pub async fn one(
        &self,
        engine: &dyn Engine,
        scope: &TenantScope,
        collection: &Collection,
        id: &RecordId,
        read_before: bool,
    ) -> Result<Option<Publisher>, Error> {
        let key = (scope.storage_key().clone(), collection.name.clone());
        let Some(stream) = self.feed.writer(&key) else {
            return Ok(None);
        };
        let order = stream.order(id).await;
        let before = if read_before {
            engine.get(scope, collection, id).await?
        } else {
            None
        };
        Ok(Some(Publisher {
            stream,
            _order: order,
            before,
        }))
    }

    /// The same for a bulk chunk: the chunk is ordered against every other change to the
    /// collection, and the records it replaces or deletes are read first.
    pub async fn batch(
        &self,
        engine: &dyn Engine,
        scope: &TenantScope,
        collection: &Collection,
        ops: &[BulkOp],
    ) -> Result<Option<BatchPublisher>, Error> {
        let key = (scope.storage_key().clone(), collection.name.clone());
        let Some(stream) = self.feed.writer(&key) else {
            return Ok(None);
        };
        let order = stream.order_all().await;
        let mut before = HashMap::new();
        for op in ops {
            if matches!(op, BulkOp::Create(_)) || before.contains_key(op.id()) {
                continue;
            }
            if let Some(record) = engine.get(scope, collection, op.id()).await? {
                before.insert(op.id().clone(), record);
            }
        }
        Ok(Some(BatchPublisher {
            stream,
            _order: order,
            before,
        }))
    }

    /// Tells every watcher of the tenant's life on `collection` to reload (a change not
    /// described record by record).
    pub fn resync(&self, key: &StorageKey, collection: &CollectionName, reason: &'static str) {
        self.feed.publish_where(
            |(k, c)| k == key && c == collection,
            || Change::Resync(reason),
        );
    }
}

struct WatcherSlot {
    tenant: TenantId,
    counts: Arc<Mutex<HashMap<TenantId, usize>>>,
}

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(count) = counts.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.tenant);
            }
        }
    }
}

/// A watched change to one record, ordered until published.
pub(crate) struct Publisher {
    stream: Arc<Stream<Change>>,
    _order: Order,
    before: Option<Record>,
}

impl Publisher {
    /// Publishes the change: `after` is the record as stored now (`None`: deleted).
    pub fn publish(self, id: &RecordId, after: Option<&Record>) {
        self.stream.publish(Change::Record {
            id: id.clone(),
            before: self.before,
            after: after.cloned(),
        });
    }
}

/// A watched bulk chunk, ordered until published.
pub(crate) struct BatchPublisher {
    stream: Arc<Stream<Change>>,
    _order: Order,
    before: HashMap<RecordId, Record>,
}

impl BatchPublisher {
    /// Publishes each line that changed a record, in the chunk's order.
    pub fn publish(mut self, results: &[Result<BulkOutcome, EngineError>]) {
        for outcome in results.iter().flatten() {
            let (id, after) = match outcome {
                BulkOutcome::Created(r) | BulkOutcome::Updated(r) => (r.id.clone(), Some(r)),
                BulkOutcome::Deleted(id) => (id.clone(), None),
            };
            let before = match after {
                Some(r) => self.before.insert(id.clone(), r.clone()),
                None => self.before.remove(&id),
            };
            self.stream.publish(Change::Record {
                id,
                before,
                after: after.cloned(),
            });
        }
    }
}

/// What a watcher receives, each with the position to resume after it.
#[derive(Debug)]
pub enum WatchEvent {
    /// The feed is open: every change from here on follows (a client lists now, if it
    /// needs the current state).
    Ready { position: String },
    /// A record entered the caller's view (created, or changed into it).
    Created { position: String, record: Record },
    /// A visible record changed and stays visible.
    Updated { position: String, record: Record },
    /// A record left the caller's view (deleted, or changed out of it).
    Deleted { position: String, id: RecordId },
    /// Events were lost for this watcher (or never kept): reload, then apply what follows.
    Resync { position: String, reason: String },
    /// Access ended (revoked, expired, tenant or collection deleted); the feed stops.
    Closed { error: Error },
}

/// One open change feed.
pub struct Watcher {
    catalog: Catalog,
    ctx: Ctx,
    named: Option<TenantId>,
    collection: CollectionName,
    filter_text: String,
    key: StreamKey,
    sub: Subscription<Change>,
    view: View,
    checked: Instant,
    pending: Vec<WatchEvent>,
    closed: bool,
    closing: tokio::sync::watch::Receiver<bool>,
    _slot: WatcherSlot,
}

/// What the watcher may see: its permission, rule and filter, typed against the definition
/// its tenant's storage has.
struct View {
    permission: Permission,
    rule: Option<Predicate>,
    filter: Option<Predicate>,
}

impl View {
    fn shows(&self, record: &Record) -> bool {
        self.rule.as_ref().is_none_or(|p| eval::matches(p, record))
            && self
                .filter
                .as_ref()
                .is_none_or(|p| eval::matches(p, record))
    }
}

impl Catalog {
    /// The change feed's hold on a write to one record of `tenant` (its order, and its state
    /// before when `read_before`), when the collection is watched; publish once the write
    /// succeeded.
    pub(crate) async fn watched(
        &self,
        tenant: &crate::handle::TenantHandle,
        collection: &Collection,
        id: &RecordId,
        read_before: bool,
    ) -> Result<Option<Publisher>, Error> {
        self.inner()
            .feeds
            .one(tenant.engine(), tenant.scope(), collection, id, read_before)
            .await
    }

    /// Ends every change feed open on this server (it is shutting down).
    pub fn close_watchers(&self) {
        self.inner().feeds.close();
    }

    /// Change feeds open on this server.
    pub fn watchers(&self) -> usize {
        self.inner().feeds.watchers()
    }

    /// Opens a change feed on `collection` for the caller's tenant, from now or after
    /// `last_event_id`. Needs the `read` action; the filter is typed as a list's.
    pub async fn watch_records(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
        filter: &str,
        last_event_id: Option<&str>,
    ) -> Result<Watcher, Error> {
        let resume = match last_event_id.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(raw) => Some(raw.parse::<Position>().map_err(|_| {
                Error::bad_request(
                    "invalid_last_event_id",
                    format!("Last-Event-ID must be an event id this feed sent, got {raw:?}"),
                )
            })?),
        };
        let (scope, view) = self
            .watch_view(ctx, named, collection, filter, true)
            .await?;
        let slot = self.inner().feeds.admit(scope.tenant())?;
        let key = (scope.storage_key().clone(), collection.clone());
        let feed = &self.inner().feeds.feed;
        let mut pending = Vec::new();
        let sub = match feed.subscribe(&key, resume) {
            Ok((sub, created)) => {
                if created {
                    self.drain_for_feed(scope.tenant()).await?;
                }
                pending.push(WatchEvent::Ready {
                    position: sub.position().to_string(),
                });
                sub
            }
            Err(gap) => {
                let (sub, created) = feed.subscribe(&key, None).map_err(|_| Error::internal())?;
                if created {
                    self.drain_for_feed(scope.tenant()).await?;
                }
                pending.push(WatchEvent::Resync {
                    position: sub.position().to_string(),
                    reason: match gap {
                        Gap::Unknown => "unknown_position",
                        Gap::Expired => "expired_position",
                    }
                    .into(),
                });
                sub
            }
        };
        pending.reverse();
        Ok(Watcher {
            catalog: self.clone(),
            ctx: ctx.clone(),
            named: named.cloned(),
            collection: collection.clone(),
            filter_text: filter.to_owned(),
            key,
            sub,
            view,
            checked: Instant::now(),
            pending,
            closed: false,
            closing: self.inner().feeds.closing.subscribe(),
            _slot: slot,
        })
    }

    /// The caller's scope and view on `collection`: authorized as a read (admitted as a
    /// request when `admit`, else as the continuation of one).
    async fn watch_view(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
        filter: &str,
        admit: bool,
    ) -> Result<(TenantScope, View), Error> {
        let op = "record.watch";
        let scope = if admit {
            self.data_scope(
                ctx,
                named,
                bulkhead_core::access::DataAction::Read,
                op,
                collection.as_str(),
            )
            .await?
        } else {
            self.resolve_data(
                ctx,
                named,
                bulkhead_core::access::DataAction::Read,
                op,
                collection.as_str(),
                crate::handle::Admit::Continuation,
            )
            .await?
            .0
        };
        let permission = self.permission(ctx, &scope, collection, Action::Read, op)?;
        let definition = self.definition(collection, scope.placement().schema_version, None)?;
        let rule = permission.rule(&definition)?;
        let filter = query::filter(filter, &permission.view(&definition))?;
        Ok((
            scope,
            View {
                permission,
                rule,
                filter,
            },
        ))
    }

    /// Waits until the tenant's writes in flight have finished: they began before the
    /// stream existed and publish nothing, so the feed starts after them.
    async fn drain_for_feed(&self, tenant: &TenantId) -> Result<(), Error> {
        let gate = self.inner().moves.gates.get(tenant);
        match gate.freeze(DRAIN_WAIT).await {
            Some(held) => {
                drop(held);
                Ok(())
            }
            None => Err(crate::moves::tenant_moving(DRAIN_WAIT)),
        }
    }
}

impl Watcher {
    /// The next event for this watcher. After `Closed` the feed has ended and this keeps
    /// answering `None`.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        if self.closed {
            return None;
        }
        loop {
            if let Some(event) = self.pending.pop() {
                if matches!(event, WatchEvent::Closed { .. }) {
                    self.closed = true;
                }
                return Some(event);
            }
            let until = self.checked + REAUTH_EVERY;
            let next = tokio::select! {
                next = self.sub.next() => Some(next),
                () = tokio::time::sleep_until(until.into()) => None,
                _ = self.closing.wait_for(|closing| *closing) => {
                    self.pending.push(WatchEvent::Closed {
                        error: Error::new(
                            ErrorKind::Unavailable,
                            "server_closing",
                            "the server is shutting down; reconnect (to another server: resync)",
                        ),
                    });
                    continue;
                }
            };
            match next {
                None => {
                    if let Err(error) = self.recheck().await {
                        self.pending.push(WatchEvent::Closed { error });
                    }
                }
                Some(Next::Lagged) => {
                    let resubscribed = self.catalog.inner().feeds.feed.subscribe(&self.key, None);
                    match resubscribed {
                        Ok((sub, _)) => {
                            self.sub = sub;
                            self.pending.push(WatchEvent::Resync {
                                position: self.sub.position().to_string(),
                                reason: "lagged".into(),
                            });
                        }
                        Err(_) => self.pending.push(WatchEvent::Closed {
                            error: Error::internal(),
                        }),
                    }
                }
                Some(Next::Event(delivered)) => {
                    if self.checked.elapsed() >= REAUTH_EVERY
                        && let Err(error) = self.recheck().await
                    {
                        self.pending.push(WatchEvent::Closed { error });
                        continue;
                    }
                    let position = Position {
                        epoch: self.catalog.inner().feeds.feed.epoch(),
                        seq: delivered.seq,
                    }
                    .to_string();
                    if let Some(event) = self.view_of(&delivered.event, position) {
                        return Some(event);
                    }
                }
            }
        }
    }

    /// Authenticates the credential again and re-authorizes it for the same life of the
    /// tenant and the collection; the view is typed again (a schema change may have come).
    async fn recheck(&mut self) -> Result<(), Error> {
        self.checked = Instant::now();
        let catalog = self.catalog.clone();
        let ctx = match &self.ctx.credential {
            Some(credential) => {
                catalog
                    .authenticate(Some(credential.expose()), &self.ctx.request_id)
                    .await?
            }
            None => self.ctx.clone(),
        };
        let (scope, view) = catalog
            .watch_view(
                &ctx,
                self.named.as_ref(),
                &self.collection,
                &self.filter_text,
                false,
            )
            .await?;
        if scope.storage_key() != &self.key.0 {
            return Err(Error::not_found(
                "tenant_not_found",
                "the tenant this feed watched was deleted",
            ));
        }
        self.ctx = ctx;
        self.view = view;
        Ok(())
    }

    fn view_of(&self, change: &Change, position: String) -> Option<WatchEvent> {
        match change {
            Change::Resync(reason) => Some(WatchEvent::Resync {
                position,
                reason: (*reason).to_owned(),
            }),
            Change::Record { id, before, after } => {
                let was = before.as_ref().is_some_and(|r| self.view.shows(r));
                let is = after.as_ref().filter(|r| self.view.shows(r));
                match (was, is) {
                    (_, Some(record)) => {
                        let mut record = record.clone();
                        self.view.permission.redact(&mut record);
                        Some(if was {
                            WatchEvent::Updated { position, record }
                        } else {
                            WatchEvent::Created { position, record }
                        })
                    }
                    (true, None) => Some(WatchEvent::Deleted {
                        position,
                        id: id.clone(),
                    }),
                    (false, None) => None,
                }
            }
        }
    }
}
