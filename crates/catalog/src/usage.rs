//! Metering: each tenant's data requests, writes and rate refusals, counted in memory per UTC
//! hour and added to the catalog's `usage` table every couple of seconds (and at shutdown)
//! by a flusher task. Servers sharing a catalog each add their own counts, so the table holds
//! the sum. `GET /v1/usage` reads it by hour or day.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bulkhead_api::{Granularity, Page, UsagePeriod, UsageQuery};
use bulkhead_core::TenantId;
use bulkhead_core::access::ControlAction;
use bulkhead_core::error::Error;
use bulkhead_core::time::Timestamp;
use parking_lot::Mutex;

use crate::rows::paging::{list_cursor, list_position, page_limit};
use crate::store::{Row, StoreResult, Tx, Val, params};
use crate::{Catalog, Ctx, Inner};

const HOUR_MICROS: i64 = 3_600 * 1_000_000;
const DAY_MICROS: i64 = 24 * HOUR_MICROS;
/// How often counts are added to the catalog.
const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// What one request adds to its tenant's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metered {
    Read,
    Write,
    RateLimited,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    requests: i64,
    writes: i64,
    rate_limited: i64,
}

/// Counts not yet in the catalog, by tenant and hour.
#[derive(Default)]
pub(crate) struct Meter {
    pending: Mutex<HashMap<(TenantId, i64), Counts>>,
    /// Serialises flushes, so counts taken out are in the catalog before the next flush
    /// reports done.
    flushing: tokio::sync::Mutex<()>,
}

impl Meter {
    pub(crate) fn add(&self, tenant: &TenantId, at: Timestamp, what: Metered) {
        let hour = at.as_micros().div_euclid(HOUR_MICROS) * HOUR_MICROS;
        let mut pending = self.pending.lock();
        let counts = pending.entry((tenant.clone(), hour)).or_default();
        match what {
            Metered::Read => counts.requests += 1,
            Metered::Write => {
                counts.requests += 1;
                counts.writes += 1;
            }
            Metered::RateLimited => counts.rate_limited += 1,
        }
    }
}

fn add_counts(tx: &dyn Tx, batch: &[((TenantId, i64), Counts)]) -> StoreResult<()> {
    for ((tenant, hour), c) in batch {
        tx.execute(
            "INSERT INTO usage (tenant_id, bucket, requests, writes, rate_limited) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant_id, bucket) DO UPDATE SET \
             requests = usage.requests + excluded.requests, \
             writes = usage.writes + excluded.writes, \
             rate_limited = usage.rate_limited + excluded.rate_limited",
            params![tenant.as_str(), *hour, c.requests, c.writes, c.rate_limited],
        )?;
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

fn encode_cursor(bucket: i64, tenant: &TenantId) -> String {
    list_cursor("usage", &format!("{bucket}:{tenant}"))
}

fn decode_cursor(cursor: &str) -> Result<(i64, TenantId), Error> {
    let bad = || Error::bad_request("invalid_cursor", "cursor is not one this server issued");
    let position = list_position("usage", cursor)?;
    let (bucket, tenant) = position.split_once(':').ok_or_else(bad)?;
    let bucket = bucket.parse().map_err(|_| bad())?;
    Ok((bucket, TenantId::parse(tenant).map_err(|_| bad())?))
}

fn period(r: &Row, size: i64) -> StoreResult<UsagePeriod> {
    let tenant: String = r.get(0)?;
    let from: i64 = r.get(1)?;
    let count = |i: usize| r.get::<i64>(i).map(|n| u64::try_from(n).unwrap_or(0));
    Ok(UsagePeriod {
        tenant: TenantId::parse(&tenant).map_err(|e| crate::store::malformed(e.message))?,
        from: Timestamp::from_micros(from),
        to: Timestamp::from_micros(from.saturating_add(size)),
        requests: count(2)?,
        writes: count(3)?,
        rate_limited: count(4)?,
    })
}

impl Catalog {
    /// Counts one request of `tenant` now.
    pub(crate) fn meter(&self, tenant: &TenantId, what: Metered) {
        self.inner()
            .meter
            .add(tenant, self.inner().clock.now(), what);
    }

    /// Adds the counts so far to the catalog; on failure they are kept for the next flush.
    pub async fn flush_usage(&self) {
        let meter = &self.inner().meter;
        let _one = meter.flushing.lock().await;
        let batch: Vec<_> = meter.pending.lock().drain().collect();
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
            let mut pending = meter.pending.lock();
            for ((tenant, hour), c) in batch.iter() {
                let kept = pending.entry((tenant.clone(), *hour)).or_default();
                kept.requests += c.requests;
                kept.writes += c.writes;
                kept.rate_limited += c.rate_limited;
            }
        }
    }

    /// `GET /v1/usage`: each tenant's counts per hour or day, newest period first, then by
    /// tenant. This server's counts are flushed first; other servers' arrive within seconds.
    pub async fn list_usage(
        &self,
        ctx: &Ctx,
        query: &UsageQuery,
    ) -> Result<Page<UsagePeriod>, Error> {
        self.authorize(ctx, ControlAction::ReadUsage, "usage.read", "usage", None)?;
        let limit = page_limit(query.limit)?;
        if let (Some(from), Some(to)) = (query.from, query.to)
            && from >= to
        {
            return Err(Error::bad_request(
                "invalid_time_range",
                format!("from ({from}) must be before to ({to})"),
            ));
        }
        let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
        let size = match query.granularity.unwrap_or_default() {
            Granularity::Hour => HOUR_MICROS,
            Granularity::Day => DAY_MICROS,
        };
        let mut terms = Vec::new();
        let mut values = vec![Val::Int(size)];
        let mut push = |term: &str, value: Val, values: &mut Vec<Val>| {
            values.push(value);
            terms.push(term.replace("{}", &format!("?{}", values.len())));
        };
        if let Some(tenant) = &query.tenant {
            push("tenant_id = {}", tenant.as_str().into(), &mut values);
        }
        // Whole periods: those starting at or after `from` rounded down to its period, and
        // before `to`.
        if let Some(from) = query.from {
            let start = from.as_micros().div_euclid(size) * size;
            push("bucket >= {}", Val::Int(start), &mut values);
        }
        if let Some(to) = query.to {
            let end = to.as_micros().saturating_add(size - 1).div_euclid(size) * size;
            push("bucket < {}", Val::Int(end), &mut values);
        }
        let mut outer = Vec::new();
        if let Some((bucket, tenant)) = &after {
            values.push(Val::Int(*bucket));
            let b = values.len();
            values.push(tenant.as_str().into());
            let t = values.len();
            outer.push(format!("(p < ?{b} OR (p = ?{b} AND tenant_id > ?{t}))"));
        }
        values.push(Val::Int(i64::from(limit) + 1));
        let where_ = |terms: &[String]| {
            if terms.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", terms.join(" AND "))
            }
        };
        let sql = format!(
            "SELECT tenant_id, p, requests, writes, rate_limited FROM (\
             SELECT tenant_id, (bucket / ?1) * ?1 AS p, \
             CAST(SUM(requests) AS BIGINT) AS requests, CAST(SUM(writes) AS BIGINT) AS writes, \
             CAST(SUM(rate_limited) AS BIGINT) AS rate_limited FROM usage {} \
             GROUP BY 1, 2) g {} \
             ORDER BY p DESC, tenant_id LIMIT ?{}",
            where_(&terms),
            where_(&outer),
            values.len()
        );
        self.flush_usage().await;
        let mut items = self
            .blocking(move |store| {
                store.read(|tx| {
                    tx.query(&sql, &values)?
                        .iter()
                        .map(|r| period(r, size))
                        .collect::<StoreResult<Vec<_>>>()
                })
            })
            .await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = more
            .then(|| {
                items
                    .last()
                    .map(|p| encode_cursor(p.from.as_micros(), &p.tenant))
            })
            .flatten();
        Ok(Page { items, next_cursor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_in_their_utc_hour() {
        let meter = Meter::default();
        let acme = TenantId::parse("acme").unwrap();
        let at = |micros| Timestamp::from_micros(micros);
        meter.add(&acme, at(HOUR_MICROS + 5), Metered::Read);
        meter.add(&acme, at(2 * HOUR_MICROS - 1), Metered::Write);
        meter.add(&acme, at(2 * HOUR_MICROS), Metered::RateLimited);
        let pending = meter.pending.lock();
        let first = pending[&(acme.clone(), HOUR_MICROS)];
        assert_eq!(
            (first.requests, first.writes, first.rate_limited),
            (2, 1, 0)
        );
        let second = pending[&(acme, 2 * HOUR_MICROS)];
        assert_eq!((second.requests, second.rate_limited), (0, 1));
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let acme = TenantId::parse("acme").unwrap();
        let (bucket, tenant) = decode_cursor(&encode_cursor(7_200, &acme)).unwrap();
        assert_eq!((bucket, tenant), (7_200, acme));
        let audit = list_cursor("audit", "5");
        let bad_tenant = list_cursor("usage", "1:A B");
        for bad in ["", "!!", audit.as_str(), bad_tenant.as_str()] {
            assert_eq!(decode_cursor(bad).unwrap_err().code, "invalid_cursor");
        }
    }
}
