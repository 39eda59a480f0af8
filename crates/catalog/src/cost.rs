//! Cost and margin per tenant (`GET /v1/costs`): each domain's monthly cost, prorated over a
//! window (730 hours a month), split among the tenants placed on it by the domain's rule —
//! weighted shares of their stored bytes (last sample in the window), requests and query
//! time — and set against each tenant's tier price over the part of the window it existed.
//! Each tier shows its totals and the marginal cost of one more tenant: the storage cost of
//! an empty placement of its model (measured) plus the median tenant's attributed cost.
//! Amounts are decimals (`money::Amount`), never floats.

use std::collections::BTreeMap;

use bulkhead_api::{CostQuery, CostReport, DomainCost, TenantCost, TierCost};
use bulkhead_core::access::ControlAction;
use bulkhead_core::error::Error;
use bulkhead_core::model::{Isolation, TenantStatus, TierSpec};
use bulkhead_core::money::Amount;
use bulkhead_core::time::Timestamp;
use bulkhead_core::{DomainName, Incarnation, TenantId, TierName};
use bulkhead_engine::PlacementRef;
use rust_decimal::Decimal;

use crate::store::{Val, malformed};
use crate::{Catalog, Ctx};

const HOUR_MICROS: i64 = 3_600 * 1_000_000;
/// Hours in an average month (365.25 × 24 / 12 ≈ 730).
const HOURS_PER_MONTH: i64 = 730;
const DEFAULT_WINDOW_HOURS: i64 = 30 * 24;

/// What a tenant used in the window, and where it is.
struct Load {
    tenant: TenantId,
    tier: TierName,
    domain: DomainName,
    created_at: Timestamp,
    bytes: u64,
    records: u64,
    requests: u64,
    query_micros: u64,
}

fn dec(n: u64) -> Decimal {
    Decimal::from(n)
}

impl Catalog {
    /// `GET /v1/costs`.
    pub async fn cost_report(&self, ctx: &Ctx, query: &CostQuery) -> Result<CostReport, Error> {
        self.authorize(ctx, ControlAction::ReadUsage, "costs.read", "costs", None)?;
        let now = self.inner().clock.now();
        let to = query.to.unwrap_or(now);
        let from = query.from.unwrap_or_else(|| {
            Timestamp::from_micros(to.as_micros() - DEFAULT_WINDOW_HOURS * HOUR_MICROS)
        });
        if from >= to {
            return Err(Error::bad_request(
                "invalid_time_range",
                format!("from ({from}) must be before to ({to})"),
            ));
        }
        let window = to.as_micros() - from.as_micros();
        let (start, end) = (from.as_micros(), to.as_micros());
        let (loads, domains, tiers) = self
            .blocking(move |store| {
                store.read(|tx| {
                    let domains = crate::rows::domains::read_domains(tx)?;
                    let tiers: BTreeMap<TierName, TierSpec> = tx
                        .query("SELECT name, spec FROM tiers ORDER BY name", &[])?
                        .iter()
                        .map(|r| {
                            Ok((
                                crate::rows::tiers::tier_name(&r.get::<String>(0)?)?,
                                crate::rows::tiers::tier_spec_from(&r.get::<String>(1)?)?,
                            ))
                        })
                        .collect::<crate::store::StoreResult<_>>()?;
                    // Live tenants created before the window's end, with their usage in it
                    // of this life (`bucket >= created_at`, see `meter::add_counts`), and
                    // their last storage sample of this life in it (or before it).
                    let rows = tx.query(
                        "SELECT t.id, t.tier, t.status, t.created_at, p.domain, p.isolation, \
                         COALESCE((SELECT CAST(SUM(u.requests) AS BIGINT) FROM usage u \
                           WHERE u.tenant_id = t.id AND u.bucket >= ?1 AND u.bucket < ?2 \
                           AND u.bucket >= t.created_at), 0), \
                         COALESCE((SELECT CAST(SUM(u.query_micros) AS BIGINT) FROM usage u \
                           WHERE u.tenant_id = t.id AND u.bucket >= ?1 AND u.bucket < ?2 \
                           AND u.bucket >= t.created_at), 0), \
                         COALESCE((SELECT s.bytes FROM storage_usage s WHERE s.tenant_id = t.id \
                           AND s.sampled_at >= t.created_at AND s.bucket < ?2 \
                           ORDER BY s.bucket DESC LIMIT 1), 0), \
                         COALESCE((SELECT s.records FROM storage_usage s WHERE s.tenant_id = t.id \
                           AND s.sampled_at >= t.created_at AND s.bucket < ?2 \
                           ORDER BY s.bucket DESC LIMIT 1), 0) \
                         FROM tenants t JOIN placements p ON p.tenant_id = t.id \
                         WHERE t.created_at < ?2 ORDER BY t.id",
                        &[
                            Val::Int(start.div_euclid(HOUR_MICROS) * HOUR_MICROS),
                            Val::Int(end),
                        ],
                    )?;
                    let mut loads = Vec::new();
                    for r in &rows {
                        let status: String = r.get(2)?;
                        if status == TenantStatus::Provisioning.as_str()
                            || status == TenantStatus::Deleting.as_str()
                        {
                            continue;
                        }
                        let n = |i: usize| r.get::<i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
                        loads.push(Load {
                            tenant: TenantId::parse(&r.get::<String>(0)?)
                                .map_err(|e| malformed(e.message))?,
                            tier: crate::rows::tiers::tier_name(&r.get::<String>(1)?)?,
                            created_at: Timestamp::from_micros(r.get(3)?),
                            domain: DomainName::parse(&r.get::<String>(4)?)
                                .map_err(|e| malformed(e.message))?,
                            requests: n(6)?,
                            query_micros: n(7)?,
                            bytes: n(8)?,
                            records: n(9)?,
                        });
                    }
                    Ok((loads, domains, tiers))
                })
            })
            .await?;

        let months = |monthly: Amount| {
            monthly.share(
                Decimal::from(window),
                Decimal::from(HOURS_PER_MONTH * HOUR_MICROS),
            )
        };
        let mut domain_costs = Vec::new();
        let mut tenant_costs: Vec<TenantCost> = Vec::new();
        // Per domain: storage cost per byte, for the marginal cost of an empty placement.
        let mut per_byte: BTreeMap<DomainName, (Amount, Decimal, Decimal)> = BTreeMap::new();
        for (name, spec) in &domains {
            let here: Vec<&Load> = loads.iter().filter(|l| l.domain == *name).collect();
            let cost = months(spec.monthly_cost);
            let totals = (
                here.iter().map(|l| l.bytes).sum::<u64>(),
                here.iter().map(|l| l.requests).sum::<u64>(),
                here.iter().map(|l| l.query_micros).sum::<u64>(),
            );
            // Weights of measures nobody used go to the others; with none used, equal shares.
            let rule = &spec.cost_rule;
            let weights = [
                (Decimal::from(rule.storage), totals.0),
                (Decimal::from(rule.requests), totals.1),
                (Decimal::from(rule.query_time), totals.2),
            ];
            let active: Decimal = weights
                .iter()
                .filter(|(_, t)| *t > 0)
                .map(|(w, _)| *w)
                .sum();
            per_byte.insert(
                name.clone(),
                (
                    cost,
                    if active.is_zero() {
                        Decimal::ZERO
                    } else {
                        Decimal::from(rule.storage) / active
                    },
                    dec(totals.0),
                ),
            );
            for l in &here {
                let share = if active.is_zero() {
                    Decimal::ONE / Decimal::from(here.len().max(1))
                } else {
                    let measures = [l.bytes, l.requests, l.query_micros];
                    weights
                        .iter()
                        .zip(measures)
                        .filter(|((_, total), _)| *total > 0)
                        .map(|((w, total), mine)| *w * dec(mine) / dec(*total))
                        .sum::<Decimal>()
                        / active
                };
                let tier = tiers.get(&l.tier);
                let existed = (end - l.created_at.as_micros().max(start)).max(0);
                let price = tier.map_or(Amount::ZERO, |t| {
                    t.monthly_price.share(
                        Decimal::from(existed),
                        Decimal::from(HOURS_PER_MONTH * HOUR_MICROS),
                    )
                });
                let tenant_cost = cost.share(share, Decimal::ONE);
                let price_currency = tier.map(|t| t.currency.clone()).unwrap_or_default();
                let margin = (price_currency == spec.currency).then(|| {
                    (price.value() - tenant_cost.value())
                        .normalize()
                        .to_string()
                });
                tenant_costs.push(TenantCost {
                    tenant: l.tenant.clone(),
                    tier: l.tier.clone(),
                    domain: l.domain.clone(),
                    cost: tenant_cost,
                    cost_currency: spec.currency.clone(),
                    price,
                    price_currency,
                    margin,
                    bytes: l.bytes,
                    requests: l.requests,
                    query_ms: l.query_micros as f64 / 1e3,
                });
            }
            domain_costs.push(DomainCost {
                domain: name.clone(),
                cost,
                currency: spec.currency.clone(),
                rule: rule.clone(),
                tenants: here.len() as u64,
                bytes: totals.0,
            });
        }

        let mut tier_costs = Vec::new();
        for (name, spec) in &tiers {
            let mine: Vec<&TenantCost> = tenant_costs.iter().filter(|t| t.tier == *name).collect();
            let mut attributed: Vec<Decimal> = mine.iter().map(|t| t.cost.value()).collect();
            attributed.sort();
            let median = attributed
                .get(attributed.len() / 2)
                .copied()
                .unwrap_or(Decimal::ZERO);
            // The storage cost of an empty placement on the tier's first domain (or the
            // catalog's first).
            let domain = spec
                .domains
                .first()
                .cloned()
                .or_else(|| domains.first().map(|(d, _)| d.clone()));
            let empty = self
                .empty_placement_bytes(name, spec, domain.as_ref(), &loads)
                .await;
            let empty_cost = match (empty, domain.and_then(|d| per_byte.get(&d).cloned())) {
                (Some(bytes), Some((cost, storage_part, stored))) if !stored.is_zero() => {
                    cost.share(storage_part * dec(bytes), stored).value()
                }
                _ => Decimal::ZERO,
            };
            let sum =
                |f: &dyn Fn(&TenantCost) -> Decimal| mine.iter().map(|t| f(t)).sum::<Decimal>();
            tier_costs.push(TierCost {
                tier: name.clone(),
                tenants: mine.len() as u64,
                cost: Amount::of(sum(&|t| t.cost.value())).unwrap_or(Amount::ZERO),
                price: Amount::of(sum(&|t| t.price.value())).unwrap_or(Amount::ZERO),
                currency: spec.currency.clone(),
                marginal_cost: Amount::of((median + empty_cost).round_dp(6))
                    .unwrap_or(Amount::ZERO),
                empty_placement_bytes: empty,
            });
        }
        Ok(CostReport {
            from,
            to,
            hours: window as f64 / HOUR_MICROS as f64,
            domains: domain_costs,
            tenants: tenant_costs,
            tiers: tier_costs,
        })
    }

    /// The bytes an empty placement of `spec`'s model takes: none for a pool (its tables
    /// exist already); a silo measured on a spare made for it and removed; a bridge its
    /// emptiest tenant without records.
    async fn empty_placement_bytes(
        &self,
        name: &TierName,
        spec: &TierSpec,
        domain: Option<&DomainName>,
        loads: &[Load],
    ) -> Option<u64> {
        match spec.isolation {
            Isolation::Pool => Some(0),
            Isolation::Bridge => loads
                .iter()
                .filter(|l| l.tier == *name && l.records == 0 && l.bytes > 0)
                .map(|l| l.bytes)
                .min(),
            Isolation::Silo => {
                let engine = self.engine(domain?).ok()?;
                let probe = PlacementRef::spare(&Incarnation::generate());
                let collections: Vec<_> = self
                    .collections_snapshot()
                    .values()
                    .map(|c| (**c).clone())
                    .collect();
                engine.prepare_spare(&probe, &collections).await.ok()?;
                let measured = engine
                    .measure(std::slice::from_ref(&probe), &collections)
                    .await
                    .ok()
                    .and_then(|m| m.first().map(|m| m.bytes));
                if let Err(e) = engine.discard_spare(&probe).await {
                    tracing::warn!(error = %e, "a cost probe's empty silo could not be removed; doctor finds it");
                }
                measured
            }
        }
    }
}
