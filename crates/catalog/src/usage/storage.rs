//! Storage per tenant: every placement measured by its engine (`Engine::measure`) — on a
//! schedule (hourly by default) and on demand — and the last sample of each UTC hour kept in
//! `storage_usage`. The sampler walks the tenants a page at a time and each domain's
//! placements in batches, on the background runtime, so it never holds the catalog or a
//! tenant's storage for long.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bulkhead_api::{StorageSampled, StorageUse};
use bulkhead_core::access::ControlAction;
use bulkhead_core::error::Error;
use bulkhead_core::model::TenantStatus;
use bulkhead_core::time::Timestamp;
use bulkhead_core::{CollectionName, DomainName, StorageKey, TenantId};
use bulkhead_engine::{Measured, PlacementRef};

use super::meter::HOUR_MICROS;
use crate::store::{Row, StoreResult, Tx, Val, malformed, params};
use crate::{Catalog, Ctx, DomainPace, Inner};

/// Tenants read from the catalog at a time.
const TENANT_PAGE: i64 = 1_000;
/// Placements measured per engine call.
const MEASURE_BATCH: usize = 200;
/// Samples recorded per catalog transaction.
const WRITE_BATCH: usize = 500;

/// A sampling pass's rests between files and pages.
struct PacedScan(bulkhead_pace::Throttle);

impl bulkhead_engine::Rest for PacedScan {
    fn rest_after(&self, busy: Duration) -> Duration {
        self.0.rest_after(busy)
    }
}

/// Samples every `every` (first after one `every`) until the catalog is dropped.
pub(crate) fn spawn_sampler(inner: Weak<Inner>, every: Duration) {
    crate::background::spawn(crate::background::Priority::Low, async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let catalog = Catalog { inner };
            match catalog.sample_storage(None).await {
                Ok(done) => tracing::info!(
                    tenants = done.tenants,
                    failed = done.failed,
                    elapsed_ms = done.elapsed_ms,
                    "storage sampled"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "storage sampling failed; next at the next interval")
                }
            }
        }
    });
}

/// Records the samples of this hour, each only while the tenant's life it measured is still
/// the current one: a tenant deleted (and maybe created again) while the sampler measured its
/// old storage gets no sample of a life that is gone. Returns how many were recorded.
fn write_samples(
    tx: &dyn Tx,
    at: Timestamp,
    samples: &[(TenantId, Measured)],
) -> StoreResult<usize> {
    let bucket = at.as_micros().div_euclid(HOUR_MICROS) * HOUR_MICROS;
    let mut written = 0;
    for (tenant, m) in samples {
        let life = crate::rows::tenants::read_tenant(tx, tenant)?
            .map(|(_, placement)| placement)
            .filter(|placement| placement.storage_key(tenant) == m.key);
        let Some(placement) = life else {
            continue;
        };
        let cold = tx.query_one(
            "SELECT COALESCE(SUM(records), 0), COALESCE(SUM(bytes), 0) FROM cold_files \
             WHERE tenant_id = ?1 AND incarnation = ?2 AND state <> 'pending'",
            params![tenant.as_str(), placement.incarnation.as_str()],
        )?;
        let (cold_records, cold_bytes): (i64, i64) = (cold.get(0)?, cold.get(1)?);
        written += 1;
        let records: u64 = m.records.values().sum();
        let collections = serde_json::to_string(&m.records).map_err(malformed)?;
        tx.execute(
            "INSERT INTO storage_usage (tenant_id, bucket, sampled_at, records, bytes, collections, \
             cold_records, cold_bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (tenant_id, bucket) DO UPDATE SET \
             sampled_at = excluded.sampled_at, records = excluded.records, bytes = excluded.bytes, \
             collections = excluded.collections, cold_records = excluded.cold_records, \
             cold_bytes = excluded.cold_bytes",
            params![
                tenant.as_str(),
                bucket,
                at.as_micros(),
                i64::try_from(records).unwrap_or(i64::MAX),
                i64::try_from(m.bytes).unwrap_or(i64::MAX),
                collections,
                cold_records,
                cold_bytes
            ],
        )?;
    }
    Ok(written)
}

/// A `storage_usage` row (`sampled_at, records, bytes, collections, cold_records,
/// cold_bytes` from column `first`).
pub(crate) fn storage_of(r: &Row, first: usize) -> StoreResult<StorageUse> {
    let count = |i: usize| r.get::<i64>(i).map(|n| u64::try_from(n).unwrap_or(0));
    let collections: BTreeMap<CollectionName, u64> =
        serde_json::from_str(&r.get::<String>(first + 3)?).map_err(malformed)?;
    Ok(StorageUse {
        sampled_at: Timestamp::from_micros(r.get(first)?),
        records: count(first + 1)?,
        bytes: count(first + 2)?,
        collections,
        cold_records: count(first + 4)?,
        cold_bytes: count(first + 5)?,
    })
}

/// The last sample of each of `tenants` taken in `[from, to)`.
pub(crate) fn last_samples(
    tx: &dyn Tx,
    tenants: &[TenantId],
    from: i64,
    to: i64,
) -> StoreResult<BTreeMap<TenantId, StorageUse>> {
    let mut out = BTreeMap::new();
    for tenant in tenants {
        let row = tx.query_opt(
            "SELECT sampled_at, records, bytes, collections, cold_records, cold_bytes FROM storage_usage \
             WHERE tenant_id = ?1 AND bucket >= ?2 AND bucket < ?3 ORDER BY bucket DESC LIMIT 1",
            &[Val::from(tenant.as_str()), Val::Int(from), Val::Int(to)],
        )?;
        if let Some(row) = row {
            out.insert(tenant.clone(), storage_of(&row, 0)?);
        }
    }
    Ok(out)
}

impl Catalog {
    /// `POST /v1/usage/storage`: measures every tenant's storage now (or one tenant's).
    pub async fn sample_storage_now(
        &self,
        ctx: &Ctx,
        tenant: Option<&TenantId>,
    ) -> Result<StorageSampled, Error> {
        self.authorize(
            ctx,
            ControlAction::ReadUsage,
            "usage.sample",
            "usage",
            tenant,
        )?;
        if let Some(tenant) = tenant
            && self.load_tenant(tenant).await?.is_none()
        {
            return Err(crate::rows::tenants::tenant_not_found());
        }
        self.sample_storage_detached(tenant.cloned()).await
    }

    /// Measures every tenant's storage (or `only`'s) on the background runtime, as the
    /// scheduled sampler does: the work finishes even when whoever asked stops waiting (a
    /// request that timed out), and the answer comes when it is done.
    pub async fn sample_storage_detached(
        &self,
        only: Option<TenantId>,
    ) -> Result<StorageSampled, Error> {
        let pace = self.inner().options.storage_sample_pace;
        self.sample_storage_paced(only, pace).await
    }

    /// [`Catalog::sample_storage_detached`] with the pace given here (target ratio and floor;
    /// `None`: at full speed) instead of the server's: for benchmarks comparing the two.
    pub async fn sample_storage_paced(
        &self,
        only: Option<TenantId>,
        pace: Option<DomainPace>,
    ) -> Result<StorageSampled, Error> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let catalog = self.clone();
        crate::background::spawn(crate::background::Priority::Low, async move {
            let _ = done.send(catalog.sample_storage_with(only.as_ref(), pace).await);
        });
        answer.await.map_err(|_| {
            Error::internal().with_message("storage sampling stopped before it finished")
        })?
    }

    /// Measures the storage of every live tenant (or of `only`) and records it for this
    /// hour, at the server's pace. A domain that fails is logged and counted; the others are
    /// still measured.
    pub(crate) async fn sample_storage(
        &self,
        only: Option<&TenantId>,
    ) -> Result<StorageSampled, Error> {
        let pace = self.inner().options.storage_sample_pace;
        self.sample_storage_with(only, pace).await
    }

    async fn sample_storage_with(
        &self,
        only: Option<&TenantId>,
        pace: Option<DomainPace>,
    ) -> Result<StorageSampled, Error> {
        let started = Instant::now();
        let collections: Vec<_> = self
            .collections_snapshot()
            .values()
            .map(|c| (**c).clone())
            .collect();
        let collections = Arc::new(collections);
        let (mut tenants, mut failed) = (0u64, 0u64);
        // Every live placement first, by domain: a pool is measured in one pass over its
        // tables whatever the number of its tenants, so its tenants go in one call.
        let mut by_domain: BTreeMap<DomainName, Vec<(TenantId, PlacementRef)>> = BTreeMap::new();
        let mut after = String::new();
        loop {
            let (cursor, one) = (after.clone(), only.cloned());
            let page = self
                .blocking(move |store| {
                    store.read(|tx| match &one {
                        Some(id) => Ok(crate::rows::tenants::read_tenant(tx, id)?
                            .into_iter()
                            .collect()),
                        None => crate::rows::tenants::list_after(
                            tx,
                            &crate::rows::tenants::TenantFilter::default(),
                            &cursor,
                            TENANT_PAGE,
                        ),
                    })
                })
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.0.id.as_str().to_owned();
            let full = page.len() as i64 == TENANT_PAGE;
            for (tenant, placement) in page {
                if matches!(
                    tenant.status,
                    TenantStatus::Provisioning | TenantStatus::Deleting
                ) {
                    continue;
                }
                let target = PlacementRef::of(&tenant.id, &placement);
                by_domain
                    .entry(placement.domain.clone())
                    .or_default()
                    .push((tenant.id, target));
            }
            if !full || only.is_some() {
                break;
            }
        }
        for (domain, placements) in by_domain {
            let engine = self.engine(&domain)?;
            // Each domain's pass rests as its requests' latency asks, from a baseline of the
            // moments just before it.
            let rest: Arc<dyn bulkhead_engine::Rest> = match pace {
                Some(pace) => Arc::new(PacedScan(
                    pace.throttle(Arc::clone(&self.inner().latency), &domain),
                )),
                None => Arc::new(bulkhead_engine::NoRest),
            };
            let (pooled, dedicated): (Vec<_>, Vec<_>) = placements
                .into_iter()
                .partition(|(_, p)| p.isolation == bulkhead_core::model::Isolation::Pool);
            let batches = std::iter::once(pooled.as_slice())
                .filter(|b| !b.is_empty())
                .chain(dedicated.chunks(MEASURE_BATCH));
            for batch in batches {
                let refs: Vec<PlacementRef> = batch.iter().map(|(_, p)| p.clone()).collect();
                let owners: BTreeMap<StorageKey, TenantId> = batch
                    .iter()
                    .map(|(t, p)| (p.key.clone(), t.clone()))
                    .collect();
                let measured = match engine
                    .measure_paced(&refs, &collections, Arc::clone(&rest))
                    .await
                {
                    Ok(measured) => measured,
                    Err(e) => {
                        tracing::warn!(domain = %domain, error = %e, "storage could not be measured");
                        failed += batch.len() as u64;
                        continue;
                    }
                };
                let samples: Vec<(TenantId, Measured)> = measured
                    .into_iter()
                    .filter_map(|m| owners.get(&m.key).cloned().map(|t| (t, m)))
                    .collect();
                for (_, m) in &samples {
                    self.inner()
                        .quotas
                        .sampled(&m.key, m.bytes, m.records.values().sum());
                }
                let now = self.inner().clock.now();
                let zero: Vec<TenantId> = samples.iter().map(|(t, _)| t.clone()).collect();
                // A few hundred samples per catalog transaction: a pool's ten thousand
                // tenants in one would hold the catalog's writer from requests meanwhile.
                let mut left = samples;
                while !left.is_empty() {
                    let tail = left.split_off(left.len().min(WRITE_BATCH));
                    let chunk = std::mem::replace(&mut left, tail);
                    let began = Instant::now();
                    let written = self
                        .blocking(move |store| store.write(|tx| write_samples(tx, now, &chunk)))
                        .await?;
                    tenants += written as u64;
                    // Recording rests as measuring does: the pass's catalog work is paced too.
                    let pause = rest.rest_after(began.elapsed());
                    if pause.is_zero() {
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(pause).await;
                    }
                }
                // Every sampled tenant has a usage row for the hour, so listings show it.
                for tenant in &zero {
                    self.count(tenant, &[]);
                }
                tokio::task::yield_now().await;
            }
        }
        self.flush_usage().await;
        Ok(StorageSampled {
            tenants,
            failed,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }
}
