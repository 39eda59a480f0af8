//! Storage quotas: a tier's `max_records` and `max_bytes` per tenant.
//!
//! Records are counted exactly without a `count(*)` per write: each tenant life (its storage
//! key) has a counter, set by one exact count of its storage the first time a write needs it
//! (so after a restart, and the same after a move, which keeps the storage key), then moved
//! by every write's outcome. A write reserves what it may add before it goes to the engine
//! and settles after, so concurrent writes can never together pass the limit; writes share a
//! lock that the count takes alone, so no write is in flight while the storage is counted.
//! Bytes are the last storage sample plus, since it, the records added times the sample's
//! bytes per record: an estimate between samples, exact again at each.
//!
//! The counters are this server's: with a shared catalog each server counts its own writes
//! on top of its own exact count (documented in docs/usage.md).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bulkhead_core::StorageKey;
use bulkhead_core::error::{Error, ErrorKind};
use parking_lot::Mutex;

use bulkhead_core::access::TenantScope;
use bulkhead_core::schema::Collection;
use bulkhead_engine::{BulkOp, Engine};

use crate::Catalog;
use crate::usage::Counter;

/// At most one `quota.exceeded` audit entry per tenant in this long.
const AUDIT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Every tenant life's counter on this server.
#[derive(Default)]
pub(crate) struct Quotas(Mutex<HashMap<StorageKey, Arc<TenantQuota>>>);

#[derive(Default)]
pub(crate) struct TenantQuota {
    /// Writes hold it shared from reservation to settlement; counting holds it alone.
    gate: Arc<tokio::sync::RwLock<()>>,
    books: Mutex<Books>,
    /// When a refusal was last audited (at most one `quota.exceeded` a minute).
    audited: Mutex<Option<std::time::Instant>>,
}

#[derive(Default)]
struct Books {
    /// Records in the storage (`None`: not counted yet on this server).
    records: Option<u64>,
    /// Records writes in flight may add.
    reserved: u64,
    /// The last storage sample's bytes and records, and the records added since.
    sampled: Option<(u64, u64)>,
    added_since_sample: i64,
}

/// Whether a line of a bulk chunk adds a record (see [`Catalog::bulk_adding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Adds {
    No,
    Yes,
    /// A later line for a record an earlier line of the chunk adds: it adds one only if
    /// that line was refused.
    AsEarlier,
}

/// A write's hold on its tenant's quota, from before it goes to the engine until it is
/// settled with what it did.
pub(crate) struct QuotaHold {
    quota: Arc<TenantQuota>,
    _writing: tokio::sync::OwnedRwLockReadGuard<()>,
    reserved: u64,
    /// The tenant's bytes were over its quota: nothing that adds data may go.
    over_bytes: bool,
    /// Settled with what the write did (else it was cut off, see `Drop`).
    settled: bool,
}

impl QuotaHold {
    /// What the write did: records it created and deleted.
    pub fn settle(mut self, created: u64, deleted: u64) {
        self.settled = true;
        let mut books = self.quota.books.lock();
        books.reserved -= self.reserved;
        if let Some(records) = &mut books.records {
            *records = (*records + created).saturating_sub(deleted);
        }
        books.added_since_sample += created as i64 - deleted as i64;
    }
}

/// A hold dropped unsettled belongs to a write cut off mid-way (its request timed out, or was
/// cancelled before its answer): what it reserved goes back, and since it cannot say what it
/// wrote, the counter is counted exactly again before the next write that needs it. (A
/// refused write settles its hold with nothing done.)
impl Drop for QuotaHold {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut books = self.quota.books.lock();
        books.reserved -= self.reserved;
        books.records = None;
    }
}

/// What one tenant uses of its quota now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QuotaUse {
    pub records: u64,
    pub bytes: Option<u64>,
}

fn exceeded(what: &str, limit: u64, used: u64) -> Error {
    Error::new(
        ErrorKind::QuotaExceeded,
        "quota_exceeded",
        format!(
            "this tenant's tier allows {limit} {what}; it uses {used}: delete some, or move the tenant to a larger tier"
        ),
    )
}

impl Quotas {
    fn of(&self, key: &StorageKey) -> Arc<TenantQuota> {
        let mut all = self.0.lock();
        match all.get(key) {
            Some(q) => Arc::clone(q),
            None => Arc::clone(all.entry(key.clone()).or_default()),
        }
    }

    /// A deleted tenant life's counter goes.
    pub(crate) fn forget(&self, key: &StorageKey) {
        self.0.lock().remove(key);
    }

    /// `key`'s writes go uncounted (its tier sets no quota): a count it has is no longer kept.
    pub(crate) fn unmaintained(&self, key: &StorageKey) {
        if let Some(q) = self.0.lock().get(key) {
            q.books.lock().records = None;
        }
    }

    /// A new storage sample of `key`: bytes are exact again.
    pub(crate) fn sampled(&self, key: &StorageKey, bytes: u64, records: u64) {
        if let Some(q) = self.0.lock().get(key) {
            let mut books = q.books.lock();
            books.sampled = Some((bytes, records));
            books.added_since_sample = 0;
        }
    }
}

impl TenantQuota {
    fn bytes(&self) -> Option<u64> {
        let books = self.books.lock();
        let (bytes, records) = books.sampled?;
        let per_record = bytes.checked_div(records).unwrap_or(1024);
        Some((bytes as i64 + books.added_since_sample * per_record as i64).max(0) as u64)
    }
}

impl Catalog {
    /// Holds `scope`'s tenant's quota for a write that may add up to `adds` records (`grows`:
    /// or data, as a replace or patch may), when its tier sets one (`None` otherwise):
    /// refused with `507 quota_exceeded` when what it would add does not fit. See
    /// [`Catalog::quota_admit`] for a bulk chunk.
    pub(crate) async fn quota(
        &self,
        scope: &TenantScope,
        engine: &dyn Engine,
        adds: u64,
        grows: bool,
    ) -> Result<Option<QuotaHold>, Error> {
        match self.quota_admit(scope, engine, adds, grows).await? {
            Some((hold, allowed))
                if allowed < adds || (grows && allowed == 0 && hold.over_bytes) =>
            {
                hold.settle(0, 0);
                Err(self.quota_refused(scope).await)
            }
            Some((hold, _)) => Ok(Some(hold)),
            None => Ok(None),
        }
    }

    /// Like [`Catalog::quota`] for a bulk chunk: holds the quota and says how many of the
    /// `wanted` additions fit (the lines past them fail alone).
    pub(crate) async fn quota_admit(
        &self,
        scope: &TenantScope,
        engine: &dyn Engine,
        wanted: u64,
        grows: bool,
    ) -> Result<Option<(QuotaHold, u64)>, Error> {
        let limits = self.tier_limits(scope.tier()).await?;
        if limits.max_records.is_none() && limits.max_bytes.is_none() {
            // Not kept while the tier sets no quota: a count made before (a quota read, or
            // the tier limited then) is counted again when next needed.
            self.inner().quotas.unmaintained(scope.storage_key());
            return Ok(None);
        }
        let quota = self.inner().quotas.of(scope.storage_key());
        self.count_once(scope, engine, &quota).await?;
        let writing = Arc::clone(&quota.gate).read_owned().await;
        let over_bytes = match (limits.max_bytes, quota.bytes()) {
            (Some(max), Some(used)) => used >= max && (wanted > 0 || grows),
            _ => false,
        };
        let mut books = quota.books.lock();
        let allowed = if over_bytes {
            0
        } else {
            match (limits.max_records, books.records) {
                (Some(max), Some(used)) => wanted.min(max.saturating_sub(used + books.reserved)),
                _ => wanted,
            }
        };
        books.reserved += allowed;
        drop(books);
        if allowed < wanted || over_bytes {
            self.count(scope.tenant(), &[(Counter::RefusedQuota, 1)]);
            let due = {
                let mut audited = quota.audited.lock();
                let due = audited.is_none_or(|at| at.elapsed() >= AUDIT_EVERY);
                if due {
                    *audited = Some(std::time::Instant::now());
                }
                due
            };
            if due {
                let what = if over_bytes {
                    "max_bytes"
                } else {
                    "max_records"
                };
                self.inner().audit.record(crate::AuditEvent {
                    at: self.inner().clock.now(),
                    actor: "system".into(),
                    action: "quota.exceeded".into(),
                    target: what.into(),
                    tenant: Some(scope.tenant().clone()),
                    outcome: "ok".into(),
                    request_id: String::new(),
                    detail: Some(format!("tier {} {what} reached", scope.tier())),
                });
            }
        }
        Ok(Some((
            QuotaHold {
                quota,
                _writing: writing,
                reserved: allowed,
                over_bytes,
                settled: false,
            },
            allowed,
        )))
    }

    /// Which of a bulk chunk's `ops` add a record ([`Adds`]): creates, and upserts of a record
    /// that does not exist; an upsert of a record an earlier line of the chunk adds adds one
    /// only if that line is refused. Records are read only
    /// when the tier limits them and the chunk's `worst` case (every upsert a new record)
    /// would not fit beside what the tenant has and what writes in flight hold; otherwise
    /// every op that does not remove a record counts, as before (and while the tenant is past
    /// its `max_bytes`, when every write that may add data is refused). An upsert whose record is
    /// deleted by another request between this read and the write adds one the deletion
    /// freed.
    pub(crate) async fn bulk_adding(
        &self,
        scope: &TenantScope,
        engine: &dyn Engine,
        collection: &Collection,
        ops: &[BulkOp],
        worst: u64,
    ) -> Result<Vec<Adds>, Error> {
        let every = || {
            ops.iter()
                .map(|op| if op.removes() { Adds::No } else { Adds::Yes })
                .collect()
        };
        let limits = self.tier_limits(scope.tier()).await?;
        let Some(max) = limits.max_records else {
            return Ok(every());
        };
        let quota = self.inner().quotas.of(scope.storage_key());
        self.count_once(scope, engine, &quota).await?;
        let fits = {
            let books = quota.books.lock();
            books.records.unwrap_or(0) + books.reserved + worst <= max
        };
        // Past its bytes, a tenant's replaces are refused too (as a `PUT` is): no need to
        // tell them apart.
        let over_bytes = matches!(
            (limits.max_bytes, quota.bytes()),
            (Some(max_bytes), Some(used)) if used >= max_bytes
        );
        if fits || over_bytes || !ops.iter().any(|op| matches!(op, BulkOp::Upsert(_))) {
            return Ok(every());
        }
        let mut added = HashSet::new();
        let mut adding = Vec::with_capacity(ops.len());
        for op in ops {
            adding.push(match op {
                BulkOp::Create(r) if !added.insert(r.id.clone()) => Adds::AsEarlier,
                BulkOp::Create(_) => Adds::Yes,
                BulkOp::Upsert(r) if added.contains(&r.id) => Adds::AsEarlier,
                BulkOp::Upsert(r) => match engine.get(scope, collection, &r.id).await? {
                    Some(_) => Adds::No,
                    None => {
                        added.insert(r.id.clone());
                        Adds::Yes
                    }
                },
                BulkOp::Delete(_) | BulkOp::Retire { .. } => Adds::No,
            });
        }
        Ok(adding)
    }

    /// The refusal of a write past `scope`'s tenant's quota, naming the limit and the use.
    pub(crate) async fn quota_refused(&self, scope: &TenantScope) -> Error {
        let Ok(limits) = self.tier_limits(scope.tier()).await else {
            return Error::internal();
        };
        let quota = self.inner().quotas.of(scope.storage_key());
        if let (Some(max), Some(used)) = (limits.max_bytes, quota.bytes())
            && used >= max
        {
            return exceeded("bytes", max, used);
        }
        let used = quota.books.lock().records.unwrap_or(0);
        exceeded("records", limits.max_records.unwrap_or(0), used)
    }

    /// What `scope`'s tenant uses now (counting it first if this server has not yet).
    pub(crate) async fn quota_use(
        &self,
        scope: &TenantScope,
        engine: &dyn Engine,
    ) -> Result<QuotaUse, Error> {
        let quota = self.inner().quotas.of(scope.storage_key());
        self.count_once(scope, engine, &quota).await?;
        let records = quota.books.lock().records.unwrap_or(0);
        Ok(QuotaUse {
            records,
            bytes: quota.bytes(),
        })
    }

    /// Counts the tenant's records (and reads its last storage sample of this life) if this
    /// server has not yet, with no write of the tenant in flight.
    async fn count_once(
        &self,
        scope: &TenantScope,
        engine: &dyn Engine,
        quota: &Arc<TenantQuota>,
    ) -> Result<(), Error> {
        if quota.books.lock().records.is_some() {
            return Ok(());
        }
        let _alone = quota.gate.write().await;
        if quota.books.lock().records.is_some() {
            return Ok(());
        }
        let mut total = 0u64;
        for collection in self.definitions_at(scope.placement().schema_version) {
            total += bulkhead_engine::count_records(
                engine,
                scope,
                &collection,
                std::time::Duration::from_secs(600),
            )
            .await?;
        }
        let tenant = scope.tenant().clone();
        let sampled = self
            .blocking(move |store| {
                store.read(|tx| {
                    let row = tx.query_opt(
                        "SELECT s.bytes, s.records FROM storage_usage s JOIN tenants t ON t.id = s.tenant_id \
                         WHERE s.tenant_id = ?1 AND s.sampled_at >= t.created_at \
                         ORDER BY s.bucket DESC LIMIT 1",
                        crate::store::params![tenant.as_str()],
                    )?;
                    row.map(|r| {
                        Ok((
                            u64::try_from(r.get::<i64>(0)?).unwrap_or(0),
                            u64::try_from(r.get::<i64>(1)?).unwrap_or(0),
                        ))
                    })
                    .transpose()
                })
            })
            .await?;
        let mut books = quota.books.lock();
        books.records = Some(total);
        if let Some((bytes, records)) = sampled {
            books.sampled = Some((bytes, records));
            // Records added since that sample, as far as this count tells.
            books.added_since_sample = total as i64 - records as i64;
        }
        Ok(())
    }
}

impl Catalog {
    /// `GET /v1/quota`: what the caller's tenant (or the named one, for a platform admin)
    /// uses of its tier's storage quota.
    pub async fn quota_view(
        &self,
        ctx: &crate::Ctx,
        named: Option<&bulkhead_core::TenantId>,
    ) -> Result<bulkhead_api::QuotaView, Error> {
        let tenant = self.open_read(ctx, named, "quota.read", "quota").await?;
        let limits = self.tier_limits(tenant.scope().tier()).await?;
        let used = self.quota_use(tenant.scope(), tenant.engine()).await?;
        Ok(bulkhead_api::QuotaView {
            tenant: tenant.tenant().clone(),
            max_records: limits.max_records,
            records: used.records,
            max_bytes: limits.max_bytes,
            bytes: used.bytes,
        })
    }
}
