//! Metering: what each tenant used per UTC hour — requests, records written, bytes in and
//! out, rows its queries examined and their time, refusals by kind (`meter`) — and the
//! storage it holds (`storage`). `GET /v1/usage` reads it by hour or day.

mod meter;
mod storage;

use std::collections::BTreeMap;

use bulkhead_api::{
    Granularity, Page, Refusals, TopBy, TopQuery, TopTenant, UsagePeriod, UsageQuery, UsageTop,
};
use bulkhead_core::TenantId;
use bulkhead_core::access::ControlAction;
use bulkhead_core::error::Error;
use bulkhead_core::time::Timestamp;

use crate::rows::paging::{list_cursor, list_position, page_limit};
use crate::store::{Row, StoreResult, Val};
use crate::{Catalog, Ctx};

pub use meter::{BodyBytes, RequestTenant};
use meter::{COLUMNS, HOUR_MICROS};
pub(crate) use meter::{Counter, Counts, Meter, spawn_flusher};
pub(crate) use storage::spawn_sampler;

const DAY_MICROS: i64 = 24 * HOUR_MICROS;

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
    let count = |c: Counter| {
        r.get::<i64>(2 + c as usize)
            .map(|n| u64::try_from(n).unwrap_or(0))
    };
    Ok(UsagePeriod {
        tenant: TenantId::parse(&tenant).map_err(|e| crate::store::malformed(e.message))?,
        from: Timestamp::from_micros(from),
        to: Timestamp::from_micros(from.saturating_add(size)),
        requests: count(Counter::Requests)?,
        writes: count(Counter::Writes)?,
        rate_limited: count(Counter::RefusedRate)? + count(Counter::RefusedConcurrency)?,
        records_written: count(Counter::RecordsWritten)?,
        bytes_in: count(Counter::BytesIn)?,
        bytes_out: count(Counter::BytesOut)?,
        rows_examined: count(Counter::RowsExamined)?,
        query_ms: count(Counter::QueryMicros)? as f64 / 1e3,
        refused: Refusals {
            rate: count(Counter::RefusedRate)?,
            concurrency: count(Counter::RefusedConcurrency)?,
            quota: count(Counter::RefusedQuota)?,
            budget: count(Counter::RefusedBudget)?,
        },
        storage: None,
    })
}

impl Catalog {
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
        let sums: Vec<String> = COLUMNS
            .iter()
            .map(|c| format!("CAST(SUM({c}) AS BIGINT) AS {c}"))
            .collect();
        let sql = format!(
            "SELECT tenant_id, p, {} FROM (\
             SELECT tenant_id, (bucket / ?1) * ?1 AS p, {} FROM usage {} \
             GROUP BY 1, 2) g {} \
             ORDER BY p DESC, tenant_id LIMIT ?{}",
            COLUMNS.join(", "),
            sums.join(", "),
            where_(&terms),
            where_(&outer),
            values.len()
        );
        self.flush_usage().await;
        let mut items = self
            .blocking(move |store| {
                store.read(|tx| {
                    let mut periods = tx
                        .query(&sql, &values)?
                        .iter()
                        .map(|r| period(r, size))
                        .collect::<StoreResult<Vec<_>>>()?;
                    for p in &mut periods {
                        let (from, to) = (p.from.as_micros(), p.to.as_micros());
                        p.storage =
                            storage::last_samples(tx, std::slice::from_ref(&p.tenant), from, to)?
                                .remove(&p.tenant);
                    }
                    Ok(periods)
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

impl Catalog {
    /// Whether `ctx` may scrape `GET /metrics` (what usage readers may: platform admins and
    /// operators); refusals are audited.
    pub fn may_read_metrics(&self, ctx: &Ctx) -> Result<(), Error> {
        self.authorize(
            ctx,
            ControlAction::ReadUsage,
            "metrics.read",
            "metrics",
            None,
        )
    }
}

/// The default window of `GET /v1/usage/top`.
const TOP_WINDOW_MICROS: i64 = 7 * DAY_MICROS;

impl Catalog {
    /// `GET /v1/usage/top`: the heaviest tenants by one measure over a window (whole hours).
    pub async fn usage_top(&self, ctx: &Ctx, query: &TopQuery) -> Result<UsageTop, Error> {
        self.authorize(ctx, ControlAction::ReadUsage, "usage.read", "usage", None)?;
        let now = self.inner().clock.now();
        let to = query.to.unwrap_or(now);
        let from = query
            .from
            .unwrap_or_else(|| Timestamp::from_micros(to.as_micros() - TOP_WINDOW_MICROS));
        if from >= to {
            return Err(Error::bad_request(
                "invalid_time_range",
                format!("from ({from}) must be before to ({to})"),
            ));
        }
        let limit = match query.limit {
            None => 20,
            Some(n @ 1..=1000) => i64::from(n),
            Some(n) => {
                return Err(Error::bad_request(
                    "invalid_limit",
                    format!("limit must be between 1 and 1000, not {n}"),
                ));
            }
        };
        let start = from.as_micros().div_euclid(HOUR_MICROS) * HOUR_MICROS;
        let end = to
            .as_micros()
            .saturating_add(HOUR_MICROS - 1)
            .div_euclid(HOUR_MICROS)
            * HOUR_MICROS;
        let counter = |c: Counter| Some(COLUMNS[c as usize]);
        let (column, scale) = match query.by {
            TopBy::Records => (counter(Counter::RecordsWritten), 1.0),
            TopBy::Requests => (counter(Counter::Requests), 1.0),
            TopBy::QueryTime => (counter(Counter::QueryMicros), 1e-3),
            TopBy::RowsExamined => (counter(Counter::RowsExamined), 1.0),
            TopBy::BytesIn => (counter(Counter::BytesIn), 1.0),
            TopBy::BytesOut => (counter(Counter::BytesOut), 1.0),
            TopBy::Bytes | TopBy::StoredRecords => (None, 1.0),
        };
        let sql = match column {
            Some(column) => format!(
                "SELECT tenant_id, CAST(SUM({column}) AS BIGINT) AS v FROM usage \
                 WHERE bucket >= ?1 AND bucket < ?2 GROUP BY tenant_id \
                 HAVING SUM({column}) > 0 ORDER BY v DESC, tenant_id LIMIT ?3"
            ),
            None => {
                let measure = if query.by == TopBy::Bytes {
                    "bytes"
                } else {
                    "records"
                };
                format!(
                    "SELECT s.tenant_id, s.{measure} AS v FROM storage_usage s JOIN \
                     (SELECT tenant_id, MAX(bucket) AS b FROM storage_usage \
                      WHERE bucket >= ?1 AND bucket < ?2 GROUP BY tenant_id) l \
                     ON l.tenant_id = s.tenant_id AND l.b = s.bucket \
                     ORDER BY v DESC, s.tenant_id LIMIT ?3"
                )
            }
        };
        self.flush_usage().await;
        let items = self
            .blocking(move |store| {
                store.read(|tx| {
                    tx.query(&sql, &[Val::Int(start), Val::Int(end), Val::Int(limit)])?
                        .iter()
                        .map(|r| {
                            let tenant: String = r.get(0)?;
                            Ok(TopTenant {
                                tenant: TenantId::parse(&tenant)
                                    .map_err(|e| crate::store::malformed(e.message))?,
                                value: r.get::<i64>(1)? as f64 * scale,
                            })
                        })
                        .collect::<StoreResult<Vec<_>>>()
                })
            })
            .await?;
        Ok(UsageTop {
            by: query.by,
            from,
            to,
            items,
        })
    }
}

impl Catalog {
    /// Every tenant's load over `[from, to)` (whole hours): requests, records written and
    /// query time summed, and storage at the last sample in the window — what the placement
    /// planner reads. Tenants with no usage in the window are absent.
    pub async fn usage_totals(
        &self,
        ctx: &Ctx,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<BTreeMap<TenantId, bulkhead_api::TenantLoad>, Error> {
        self.authorize(ctx, ControlAction::ReadUsage, "usage.read", "usage", None)?;
        let start = from.as_micros().div_euclid(HOUR_MICROS) * HOUR_MICROS;
        let end = to
            .as_micros()
            .saturating_add(HOUR_MICROS - 1)
            .div_euclid(HOUR_MICROS)
            * HOUR_MICROS;
        let (requests, written, query) = (
            COLUMNS[Counter::Requests as usize],
            COLUMNS[Counter::RecordsWritten as usize],
            COLUMNS[Counter::QueryMicros as usize],
        );
        // Only the current life's: its usage rows (`bucket >= created_at`, see
        // `meter::add_counts`) and storage sampled since it was created.
        let sums = format!(
            "SELECT u.tenant_id, CAST(SUM(u.{requests}) AS BIGINT), \
             CAST(SUM(u.{written}) AS BIGINT), CAST(SUM(u.{query}) AS BIGINT) \
             FROM usage u JOIN tenants t ON t.id = u.tenant_id \
             WHERE u.bucket >= ?1 AND u.bucket < ?2 \
             AND u.bucket >= t.created_at \
             GROUP BY u.tenant_id"
        );
        let stored = "SELECT s.tenant_id, s.bytes FROM storage_usage s JOIN \
             (SELECT su.tenant_id, MAX(su.bucket) AS b FROM storage_usage su \
              JOIN tenants t ON t.id = su.tenant_id \
              WHERE su.bucket >= ?1 AND su.bucket < ?2 AND su.sampled_at >= t.created_at \
              GROUP BY su.tenant_id) l \
             ON l.tenant_id = s.tenant_id AND l.b = s.bucket";
        self.flush_usage().await;
        self.blocking(move |store| {
            store.read(|tx| {
                let mut out: BTreeMap<TenantId, bulkhead_api::TenantLoad> = BTreeMap::new();
                let id = |raw: String| {
                    TenantId::parse(&raw).map_err(|e| crate::store::malformed(e.message))
                };
                let count = |n: i64| u64::try_from(n).unwrap_or(0);
                for r in tx.query(&sums, &[Val::Int(start), Val::Int(end)])? {
                    let load = out.entry(id(r.get(0)?)?).or_default();
                    load.requests = count(r.get(1)?);
                    load.records_written = count(r.get(2)?);
                    load.query_ms = r.get::<i64>(3)? as f64 / 1_000.0;
                }
                for r in tx.query(stored, &[Val::Int(start), Val::Int(end)])? {
                    out.entry(id(r.get(0)?)?).or_default().bytes = count(r.get(1)?);
                }
                for load in out.values_mut() {
                    load.score = load.requests as f64 + load.records_written as f64 + load.query_ms;
                }
                Ok(out)
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
