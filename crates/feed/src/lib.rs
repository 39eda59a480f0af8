//! Change feeds, knowing nothing of tenants or records.
//!
//! A [`Feed`] holds streams by key. A stream exists only while someone watches it (and for
//! its retention after the last watcher left, so a client that reconnects can resume):
//! writers ask [`Feed::writer`] and publish only into a stream that exists, which costs one
//! atomic load when nothing is watched at all.
//!
//! - Every event gets the stream's next sequence number under the stream's lock, and is sent
//!   to live watchers under the same lock, so the replay buffer and the live channel agree:
//!   a subscription's backlog and its live events meet without a gap or a duplicate.
//! - A [`Position`] is the feed's epoch (random per process) and a sequence number. A
//!   position from another epoch (another server, or before a restart), or one older than
//!   the buffer holds, cannot be resumed: the subscriber learns it must resync ([`Gap`]).
//! - A watcher that falls more than the buffer behind is told so ([`Next::Lagged`]) instead
//!   of silently missing events.
//! - Writers that need per-key order (the state before and after a change, published in the
//!   order the changes happened) hold [`Stream::order`] for one key, or
//!   [`Stream::order_all`] for a batch, across the change and its publication.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

/// Stripes of per-key ordering locks per stream.
const STRIPES: usize = 64;

/// How often writers sweep idle streams away (at most).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How much a feed keeps for resumption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Events kept per stream for replay (and how far a live watcher may fall behind).
    pub buffer: usize,
    /// How long events are kept for replay, and how long a stream outlives its last watcher.
    pub retention: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            buffer: 4096,
            retention: Duration::from_secs(300),
        }
    }
}

/// A place in a feed: the process's epoch and a stream's sequence number. Written as
/// `<epoch hex>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub epoch: u64,
    pub seq: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.epoch, self.seq)
    }
}

/// A position that is not `<16 hex digits>-<decimal>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPosition;

impl FromStr for Position {
    type Err = BadPosition;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (epoch, seq) = s.trim().split_once('-').ok_or(BadPosition)?;
        if epoch.len() != 16 || !epoch.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadPosition);
        }
        if seq.is_empty() || seq.len() > 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadPosition);
        }
        Ok(Position {
            epoch: u64::from_str_radix(epoch, 16).map_err(|_| BadPosition)?,
            seq: seq.parse().map_err(|_| BadPosition)?,
        })
    }
}

/// Why a position cannot be resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// The position belongs to another process (another server, or before a restart), or to
    /// no stream this feed has.
    Unknown,
    /// Events after the position are no longer kept.
    Expired,
}

/// One event as delivered: its sequence number and the shared event.
#[derive(Debug)]
pub struct Delivered<E> {
    pub seq: u64,
    pub event: Arc<E>,
}

impl<E> Clone for Delivered<E> {
    fn clone(&self) -> Self {
        Delivered {
            seq: self.seq,
            event: Arc::clone(&self.event),
        }
    }
}

/// The streams of one process, by key.
pub struct Feed<K, E> {
    epoch: u64,
    settings: Settings,
    streams: RwLock<HashMap<K, Arc<Stream<E>>>>,
    /// How many streams exist (read without the lock by writers).
    count: AtomicUsize,
    started: Instant,
    /// When idle streams were last swept, in ms since `started`.
    swept: AtomicU64,
}

impl<K: Hash + Eq + Clone, E> Feed<K, E> {
    pub fn new(settings: Settings) -> Self {
        // A random epoch: positions from another process are never mistaken for ours.
        let epoch = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        Feed {
            epoch,
            settings: Settings {
                buffer: settings.buffer.max(1),
                retention: settings.retention,
            },
            streams: RwLock::new(HashMap::new()),
            count: AtomicUsize::new(0),
            started: Instant::now(),
            swept: AtomicU64::new(0),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The stream a writer publishes into, if anyone watches `key` (or did within the
    /// retention).
    pub fn writer(&self, key: &K) -> Option<Arc<Stream<E>>> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.sweep_now_and_then();
        self.streams.read().get(key).cloned()
    }

    /// The stream of `key`, created if missing; `true` when it was created now (writers in
    /// flight may not have seen it yet).
    pub fn open(&self, key: &K) -> (Arc<Stream<E>>, bool) {
        self.sweep_now_and_then();
        if let Some(stream) = self.streams.read().get(key) {
            return (Arc::clone(stream), false);
        }
        let mut streams = self.streams.write();
        if let Some(stream) = streams.get(key) {
            return (Arc::clone(stream), false);
        }
        let stream = Arc::new(Stream::new(self.settings));
        streams.insert(key.clone(), Arc::clone(&stream));
        self.count.store(streams.len(), Ordering::Release);
        (stream, true)
    }

    /// Subscribes to `key` from `after` (or from now). The stream is created if missing;
    /// the `bool` is `true` when it was created now.
    pub fn subscribe(
        &self,
        key: &K,
        after: Option<Position>,
    ) -> Result<(Subscription<E>, bool), Gap> {
        if after.is_some_and(|p| p.epoch != self.epoch) {
            return Err(Gap::Unknown);
        }
        let (stream, created) = self.open(key);
        if created && after.is_some_and(|p| p.seq > 0) {
            // Resuming into a stream that did not exist: whatever it had is gone.
            return Err(Gap::Expired);
        }
        Ok((stream.subscribe(self.epoch, after.map(|p| p.seq))?, created))
    }

    /// Publishes `make()` into every existing stream whose key matches (for events that
    /// concern many streams at once, such as "resync").
    pub fn publish_where(&self, matches: impl Fn(&K) -> bool, make: impl Fn() -> E) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let chosen: Vec<Arc<Stream<E>>> = self
            .streams
            .read()
            .iter()
            .filter(|(k, _)| matches(k))
            .map(|(_, s)| Arc::clone(s))
            .collect();
        for stream in chosen {
            stream.publish(make());
        }
    }

    /// Streams that exist now.
    pub fn streams(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Watchers subscribed now, over every stream.
    pub fn watchers(&self) -> usize {
        self.streams.read().values().map(|s| s.watchers()).sum()
    }

    /// Removes the streams nobody watched for the retention.
    pub fn sweep(&self, now: Instant) {
        let retention = self.settings.retention;
        let mut streams = self.streams.write();
        streams.retain(|_, stream| !stream.idle_for(now, retention));
        self.count.store(streams.len(), Ordering::Release);
    }

    fn sweep_now_and_then(&self) {
        let now = Instant::now();
        let at = u64::try_from(now.duration_since(self.started).as_millis()).unwrap_or(u64::MAX);
        let last = self.swept.load(Ordering::Relaxed);
        if at.saturating_sub(last) < SWEEP_EVERY.as_millis() as u64 {
            return;
        }
        if self
            .swept
            .compare_exchange(last, at, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.sweep(now);
        }
    }
}

struct Ring<E> {
    events: VecDeque<(Instant, Delivered<E>)>,
    next: u64,
}

/// One stream: a sequence, its replay buffer, its live channel and its ordering locks.
pub struct Stream<E> {
    settings: Settings,
    ring: Mutex<Ring<E>>,
    live: broadcast::Sender<Delivered<E>>,
    batch: Arc<tokio::sync::RwLock<()>>,
    stripes: Box<[Arc<tokio::sync::Mutex<()>>]>,
    watchers: AtomicUsize,
    idle_since: Mutex<Option<Instant>>,
}

/// Held across one change and its publication (see [`Stream::order`]).
pub struct Order {
    _batch: Batch,
    _key: Option<tokio::sync::OwnedMutexGuard<()>>,
}

enum Batch {
    Shared(#[allow(dead_code)] tokio::sync::OwnedRwLockReadGuard<()>),
    Exclusive(#[allow(dead_code)] tokio::sync::OwnedRwLockWriteGuard<()>),
}

impl<E> Stream<E> {
    fn new(settings: Settings) -> Self {
        let (live, _) = broadcast::channel(settings.buffer);
        Stream {
            settings,
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                next: 1,
            }),
            live,
            batch: Arc::new(tokio::sync::RwLock::new(())),
            stripes: (0..STRIPES)
                .map(|_| Arc::new(tokio::sync::Mutex::new(())))
                .collect(),
            watchers: AtomicUsize::new(0),
            idle_since: Mutex::new(Some(Instant::now())),
        }
    }

    /// Orders changes to one key: two holders of the same key's order run one after the
    /// other (keys share 64 stripes, so unrelated keys rarely wait on each other).
    pub async fn order(&self, key: &impl Hash) -> Order {
        let batch = Arc::clone(&self.batch).read_owned().await;
        let stripe = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default()
            .hash_one(key) as usize
            % self.stripes.len();
        let key = Arc::clone(&self.stripes[stripe]).lock_owned().await;
        Order {
            _batch: Batch::Shared(batch),
            _key: Some(key),
        }
    }

    /// Orders a batch of changes after and before every other change to the stream.
    pub async fn order_all(&self) -> Order {
        Order {
            _batch: Batch::Exclusive(Arc::clone(&self.batch).write_owned().await),
            _key: None,
        }
    }

    /// Appends `event`, sends it to the live watchers, and returns its sequence number.
    pub fn publish(&self, event: E) -> u64 {
        let now = Instant::now();
        let mut ring = self.ring.lock();
        let seq = ring.next;
        ring.next += 1;
        let delivered = Delivered {
            seq,
            event: Arc::new(event),
        };
        while ring.events.len() >= self.settings.buffer
            || ring
                .events
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > self.settings.retention)
        {
            ring.events.pop_front();
        }
        ring.events.push_back((now, delivered.clone()));
        // No receiver is fine: the ring keeps it for those who resume.
        let _ = self.live.send(delivered);
        seq
    }

    /// The sequence number of the latest event (0 before the first).
    pub fn head(&self) -> u64 {
        self.ring.lock().next - 1
    }

    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Acquire)
    }

    fn subscribe(self: &Arc<Self>, epoch: u64, after: Option<u64>) -> Result<Subscription<E>, Gap> {
        let ring = self.ring.lock();
        let head = ring.next - 1;
        let first = ring.events.front().map_or(ring.next, |(_, d)| d.seq);
        let backlog = match after {
            None => VecDeque::new(),
            Some(seq) if seq > head => return Err(Gap::Unknown),
            Some(seq) if seq + 1 < first => return Err(Gap::Expired),
            Some(seq) => ring
                .events
                .iter()
                .filter(|(_, d)| d.seq > seq)
                .map(|(_, d)| d.clone())
                .collect(),
        };
        // Subscribed under the ring's lock: every event after `head` arrives live.
        let live = self.live.subscribe();
        self.watchers.fetch_add(1, Ordering::AcqRel);
        *self.idle_since.lock() = None;
        Ok(Subscription {
            stream: Arc::clone(self),
            epoch,
            backlog,
            live,
            last: after.unwrap_or(head),
        })
    }

    fn idle_for(&self, now: Instant, retention: Duration) -> bool {
        self.watchers() == 0
            && self
                .idle_since
                .lock()
                .is_some_and(|since| now.duration_since(since) >= retention)
    }
}

/// What a subscription yields next.
#[derive(Debug)]
pub enum Next<E> {
    Event(Delivered<E>),
    /// The watcher fell more than the buffer behind: events were dropped for it.
    Lagged,
}

/// One watcher's subscription to a stream.
pub struct Subscription<E> {
    stream: Arc<Stream<E>>,
    epoch: u64,
    backlog: VecDeque<Delivered<E>>,
    live: broadcast::Receiver<Delivered<E>>,
    last: u64,
}

impl<E> Subscription<E> {
    /// The position of the last event yielded (or of the start).
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            seq: self.last,
        }
    }

    /// The next event, waiting for one.
    pub async fn next(&mut self) -> Next<E> {
        if let Some(delivered) = self.backlog.pop_front() {
            self.last = delivered.seq;
            return Next::Event(delivered);
        }
        loop {
            match self.live.recv().await {
                Ok(delivered) if delivered.seq <= self.last => continue,
                Ok(delivered) => {
                    self.last = delivered.seq;
                    return Next::Event(delivered);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => return Next::Lagged,
                // The stream holds the sender as long as we hold the stream: not reached.
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

impl<E> Drop for Subscription<E> {
    fn drop(&mut self) {
        if self.stream.watchers.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.stream.idle_since.lock() = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests;
