//! The plan itself, from what the catalog knows (no I/O): which tenants to move where, and
//! why.
//!
//! 1. **Promote.** On each domain, a pooled tenant whose load score is over its tier's
//!    `promote_factor` times the mean of that domain's pooled tenants with any load (two at
//!    least) goes to
//!    the tier's `promote_to` model — on its own domain when it may, else on the least
//!    loaded domain that may take it.
//! 2. **Demote idle.** A bridge or silo tenant that existed for the whole window with no
//!    request and no write in it goes to its tier's `demote_to` model.
//! 3. **Over capacity.** A domain with more bridge and silo tenants than its capacity sends
//!    its lightest ones to the least loaded domain that may take them.
//!
//! A domain may take a tenant in a model when the tenant's tier lists it (or lists none), it
//! is not dedicated to another tenant, it holds silos if the model is silo, and — for bridge
//! and silo — it has room under its capacity.
//!
//! **Hysteresis.** A tenant whose last move started or ended after the hold's start is not
//! moved: what would be proposed for it is listed as held, and the plan goes on as if
//! it stays (a domain over capacity then sends its next lightest tenant).

use std::collections::BTreeMap;

use bulkhead_api::{DomainLoad, HeldMove, MoveReason, PlannedMove, Spot, TenantLoad};
use bulkhead_core::model::{Isolation, TierSpec};
use bulkhead_core::time::Timestamp;
use bulkhead_core::{DomainName, Incarnation, TenantId, TierName};

/// An active tenant, where it is, and its load.
#[derive(Debug, Clone)]
pub struct TenantState {
    pub id: TenantId,
    /// The life its load was measured in.
    pub incarnation: Incarnation,
    pub tier: TierName,
    pub spot: Spot,
    pub load: TenantLoad,
    /// When its last move started or ended, if it ever moved.
    pub placed: Option<Timestamp>,
    /// Whether it existed for the whole window (a tenant created since is not idle for
    /// having done nothing yet).
    pub whole_window: bool,
}

/// What placing on a domain depends on.
#[derive(Debug, Clone)]
pub struct DomainState {
    /// Bridge and silo tenants it takes at most (0: no limit).
    pub capacity: u32,
    pub silos: bool,
    pub dedicated_to: Option<TenantId>,
}

/// The moves, and the domains' load before and after them.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub moves: Vec<PlannedMove>,
    pub held: Vec<HeldMove>,
    pub before: Vec<DomainLoad>,
    pub after: Vec<DomainLoad>,
}

struct Planner<'a> {
    tenants: &'a [TenantState],
    tiers: &'a BTreeMap<TierName, TierSpec>,
    domains: &'a BTreeMap<DomainName, DomainState>,
    /// Where each tenant is once the moves so far are made.
    spots: BTreeMap<TenantId, Spot>,
    moves: Vec<PlannedMove>,
    held: Vec<HeldMove>,
    /// Tenants that moved at or after this are held.
    hold_since: Option<Timestamp>,
}

/// The plan for `tenants`; those that moved at or after `hold_since` are held.
pub fn plan(
    tenants: &[TenantState],
    tiers: &BTreeMap<TierName, TierSpec>,
    domains: &BTreeMap<DomainName, DomainState>,
    hold_since: Option<Timestamp>,
) -> Plan {
    let mut planner = Planner {
        tenants,
        tiers,
        domains,
        spots: tenants
            .iter()
            .map(|t| (t.id.clone(), t.spot.clone()))
            .collect(),
        moves: Vec::new(),
        held: Vec::new(),
        hold_since,
    };
    let before = planner.loads();
    planner.promote();
    planner.demote_idle();
    planner.relieve();
    let after = planner.loads();
    Plan {
        moves: planner.moves,
        held: planner.held,
        before,
        after,
    }
}

impl Planner<'_> {
    /// Whether the plan already proposes (or holds) a move of `tenant`.
    fn moved(&self, tenant: &TenantId) -> bool {
        self.moves.iter().any(|m| &m.tenant == tenant)
            || self.held.iter().any(|h| &h.proposal.tenant == tenant)
    }

    fn loads(&self) -> Vec<DomainLoad> {
        let mut out: BTreeMap<DomainName, DomainLoad> = self
            .domains
            .iter()
            .map(|(name, d)| {
                (
                    name.clone(),
                    DomainLoad {
                        domain: name.clone(),
                        tenants: 0,
                        dedicated: 0,
                        capacity: d.capacity,
                        bytes: 0,
                        score: 0.0,
                    },
                )
            })
            .collect();
        for t in self.tenants {
            let spot = &self.spots[&t.id];
            if let Some(load) = out.get_mut(&spot.domain) {
                load.tenants += 1;
                load.dedicated += u64::from(spot.isolation != Isolation::Pool);
                load.bytes += t.load.bytes;
                load.score += t.load.score;
            }
        }
        out.into_values().collect()
    }

    /// Whether `domain` may take `tenant` in `isolation` now.
    fn may_take(&self, domain: &DomainName, tenant: &TenantState, isolation: Isolation) -> bool {
        let Some(d) = self.domains.get(domain) else {
            return false;
        };
        let listed = self
            .tiers
            .get(&tenant.tier)
            .is_none_or(|t| t.domains.is_empty() || t.domains.contains(domain));
        let own = d.dedicated_to.as_ref().is_none_or(|t| *t == tenant.id);
        let silo = isolation != Isolation::Silo || d.silos || d.dedicated_to.is_some();
        let room = isolation == Isolation::Pool
            || d.capacity == 0
            || self.dedicated_on(domain, Some(&tenant.id)) < u64::from(d.capacity);
        listed && own && silo && room
    }

    /// Bridge and silo tenants on `domain` now (not counting `except`).
    fn dedicated_on(&self, domain: &DomainName, except: Option<&TenantId>) -> u64 {
        self.spots
            .iter()
            .filter(|(id, s)| {
                &s.domain == domain && s.isolation != Isolation::Pool && Some(*id) != except
            })
            .count() as u64
    }

    fn score_on(&self, domain: &DomainName) -> f64 {
        self.tenants
            .iter()
            .filter(|t| &self.spots[&t.id].domain == domain)
            .map(|t| t.load.score)
            .sum()
    }

    /// `prefer` when it may take the tenant, else the least loaded domain that may.
    fn target(
        &self,
        tenant: &TenantState,
        isolation: Isolation,
        prefer: Option<&DomainName>,
    ) -> Option<DomainName> {
        if let Some(domain) = prefer
            && self.may_take(domain, tenant, isolation)
        {
            return Some(domain.clone());
        }
        self.domains
            .keys()
            .filter(|d| Some(*d) != prefer && self.may_take(d, tenant, isolation))
            .min_by(|a, b| self.score_on(a).total_cmp(&self.score_on(b)).then(a.cmp(b)))
            .cloned()
    }

    /// Proposes moving `tenant` to `to`, or holds it (then `false`: it stays).
    fn push(&mut self, tenant: &TenantState, to: Spot, reason: MoveReason, detail: String) -> bool {
        let proposal = PlannedMove {
            tenant: tenant.id.clone(),
            incarnation: tenant.incarnation.clone(),
            tier: tenant.tier.clone(),
            from: self.spots[&tenant.id].clone(),
            to: to.clone(),
            reason,
            detail,
            load: tenant.load.clone(),
        };
        if let (Some(since), Some(at)) = (self.hold_since, tenant.placed)
            && at >= since
        {
            self.held.push(HeldMove {
                proposal,
                placed_at: at,
            });
            return false;
        }
        self.moves.push(proposal);
        self.spots.insert(tenant.id.clone(), to);
        true
    }

    fn promote(&mut self) {
        let mut by_domain: BTreeMap<DomainName, Vec<&TenantState>> = BTreeMap::new();
        for t in self.tenants {
            if t.spot.isolation == Isolation::Pool {
                by_domain.entry(t.spot.domain.clone()).or_default().push(t);
            }
        }
        for (domain, mut pooled) in by_domain {
            // The share is the mean of the pooled tenants that did anything: idle ones would
            // make any tenant that works look heavy.
            pooled.retain(|t| t.load.score > 0.0);
            if pooled.len() < 2 {
                continue;
            }
            let mean = pooled.iter().map(|t| t.load.score).sum::<f64>() / pooled.len() as f64;
            pooled.sort_by(|a, b| b.load.score.total_cmp(&a.load.score).then(a.id.cmp(&b.id)));
            for t in pooled {
                let Some(policy) = self.tiers.get(&t.tier).map(|tier| &tier.placement) else {
                    continue;
                };
                let Some(isolation) = policy.promote_to else {
                    continue;
                };
                let factor = policy.promote_factor();
                if !(t.load.score > 0.0 && t.load.score > factor * mean) {
                    continue;
                }
                let Some(to) = self.target(t, isolation, Some(&domain)) else {
                    continue;
                };
                let detail = format!(
                    "load {:.0} is {:.1}× the mean {:.1} of the active pool on {domain} (the tier promotes past {factor}×)",
                    t.load.score,
                    t.load.score / mean,
                    mean
                );
                self.push(
                    t,
                    Spot {
                        domain: to,
                        isolation,
                    },
                    MoveReason::Promote,
                    detail,
                );
            }
        }
    }

    fn demote_idle(&mut self) {
        for t in self.tenants {
            if t.spot.isolation == Isolation::Pool || self.moved(&t.id) {
                continue;
            }
            let Some(isolation) = self
                .tiers
                .get(&t.tier)
                .and_then(|tier| tier.placement.demote_to)
            else {
                continue;
            };
            if isolation >= t.spot.isolation
                || !t.whole_window
                || t.load.requests > 0
                || t.load.records_written > 0
            {
                continue;
            }
            let Some(to) = self.target(t, isolation, Some(&t.spot.domain)) else {
                continue;
            };
            let detail = format!(
                "no request and no write in the window; the tier demotes idle tenants to {isolation:?}"
            )
            .to_lowercase();
            self.push(
                t,
                Spot {
                    domain: to,
                    isolation,
                },
                MoveReason::DemoteIdle,
                detail,
            );
        }
    }

    fn relieve(&mut self) {
        for (domain, d) in self.domains {
            if d.capacity == 0 {
                continue;
            }
            let mut excess = self
                .dedicated_on(domain, None)
                .saturating_sub(u64::from(d.capacity));
            if excess == 0 {
                continue;
            }
            let mut here: Vec<&TenantState> = self
                .tenants
                .iter()
                .filter(|t| {
                    let spot = &self.spots[&t.id];
                    &spot.domain == domain
                        && spot.isolation != Isolation::Pool
                        && d.dedicated_to.as_ref() != Some(&t.id)
                        && !self.moved(&t.id)
                })
                .collect();
            here.sort_by(|a, b| a.load.score.total_cmp(&b.load.score).then(a.id.cmp(&b.id)));
            for t in here {
                if excess == 0 {
                    break;
                }
                let isolation = self.spots[&t.id].isolation;
                let other = self
                    .domains
                    .keys()
                    .filter(|o| *o != domain && self.may_take(o, t, isolation))
                    .min_by(|a, b| self.score_on(a).total_cmp(&self.score_on(b)).then(a.cmp(b)))
                    .cloned();
                let Some(to) = other else {
                    continue;
                };
                let detail = format!(
                    "{domain} holds {} bridge and silo tenants, over its capacity of {}",
                    self.dedicated_on(domain, None),
                    d.capacity
                );
                if self.push(
                    t,
                    Spot {
                        domain: to,
                        isolation,
                    },
                    MoveReason::OverCapacity,
                    detail,
                ) {
                    excess -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bulkhead_core::model::PlacementPolicy;

    fn id(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    fn domain(s: &str) -> DomainName {
        DomainName::parse(s).unwrap()
    }

    fn tier(isolation: Isolation, placement: PlacementPolicy) -> TierSpec {
        serde_json::from_value::<TierSpec>(serde_json::json!({"isolation": isolation}))
            .map(|mut t| {
                t.placement = placement;
                t
            })
            .unwrap()
    }

    /// A week of requests and writes as one score: `requests` each.
    fn tenant(
        name: &str,
        tier: &str,
        on: &str,
        isolation: Isolation,
        requests: u64,
    ) -> TenantState {
        TenantState {
            id: id(name),
            incarnation: Incarnation::default(),
            tier: TierName::parse(tier).unwrap(),
            spot: Spot {
                domain: domain(on),
                isolation,
            },
            load: TenantLoad {
                requests,
                records_written: 0,
                query_ms: 0.0,
                bytes: requests * 100,
                score: requests as f64,
            },
            placed: None,
            whole_window: true,
        }
    }

    fn domains(list: &[(&str, u32, bool)]) -> BTreeMap<DomainName, DomainState> {
        list.iter()
            .map(|(name, capacity, silos)| {
                (
                    domain(name),
                    DomainState {
                        capacity: *capacity,
                        silos: *silos,
                        dedicated_to: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_synthetic_week_gives_the_known_plan() {
        let tiers = BTreeMap::from([
            (
                TierName::parse("free").unwrap(),
                tier(
                    Isolation::Pool,
                    PlacementPolicy {
                        promote_to: Some(Isolation::Silo),
                        promote_factor: Some(4.0),
                        demote_to: None,
                    },
                ),
            ),
            (
                TierName::parse("plus").unwrap(),
                tier(
                    Isolation::Bridge,
                    PlacementPolicy {
                        promote_to: None,
                        promote_factor: None,
                        demote_to: Some(Isolation::Pool),
                    },
                ),
            ),
        ]);
        // Nine quiet pooled tenants (one at 400, eight at 100) and one that did 5,000: the
        // mean is 620, so 5,000 is 8.1× it; 400 (0.6×) is not promoted.
        let mut tenants: Vec<TenantState> = (0..9)
            .map(|i| tenant(&format!("quiet{i}"), "free", "local", Isolation::Pool, 100))
            .collect();
        tenants[0].load.score = 400.0;
        tenants.push(tenant("heavy", "free", "local", Isolation::Pool, 5_000));
        // Idle pooled tenants do not count in the mean (else any working tenant would stand
        // out against them).
        for i in 0..50 {
            tenants.push(tenant(
                &format!("idle-pool{i}"),
                "free",
                "local",
                Isolation::Pool,
                0,
            ));
        }
        // A bridge tenant idle all week, and a busy one.
        tenants.push(tenant("idle", "plus", "local", Isolation::Bridge, 0));
        tenants.push(tenant("busy", "plus", "local", Isolation::Bridge, 50));
        let plan = plan(&tenants, &tiers, &domains(&[("local", 0, true)]), None);
        let moves: Vec<(&str, Isolation, MoveReason)> = plan
            .moves
            .iter()
            .map(|m| (m.tenant.as_str(), m.to.isolation, m.reason))
            .collect();
        assert_eq!(
            moves,
            [
                ("heavy", Isolation::Silo, MoveReason::Promote),
                ("idle", Isolation::Pool, MoveReason::DemoteIdle),
            ]
        );
        assert!(
            plan.moves[0].detail.contains("8.1×"),
            "{}",
            plan.moves[0].detail
        );
        let (before, after) = (&plan.before[0], &plan.after[0]);
        assert_eq!((before.tenants, before.dedicated), (62, 2));
        assert_eq!((after.tenants, after.dedicated), (62, 2), "one in, one out");
        assert_eq!(before.score, after.score);
    }

    #[test]
    fn a_domain_over_capacity_sends_its_lightest_to_the_least_loaded_that_may_take_them() {
        let tiers = BTreeMap::from([(
            TierName::parse("plus").unwrap(),
            tier(Isolation::Bridge, PlacementPolicy::default()),
        )]);
        let tenants = vec![
            tenant("aa", "plus", "full", Isolation::Bridge, 10),
            tenant("bb", "plus", "full", Isolation::Bridge, 500),
            tenant("cc", "plus", "full", Isolation::Bridge, 300),
            tenant("dd", "plus", "busy", Isolation::Bridge, 9_000),
        ];
        // `full` takes 2; `busy` has room but more load; `tiny` has no room at all.
        let plan = plan(
            &tenants,
            &tiers,
            &domains(&[
                ("full", 2, true),
                ("busy", 10, true),
                ("quiet", 10, true),
                ("tiny", 1, true),
            ]),
            None,
        );
        let moves: Vec<(&str, &str, MoveReason)> = plan
            .moves
            .iter()
            .map(|m| (m.tenant.as_str(), m.to.domain.as_str(), m.reason))
            .collect();
        assert_eq!(moves, [("aa", "quiet", MoveReason::OverCapacity)]);
        let full = plan
            .after
            .iter()
            .find(|d| d.domain.as_str() == "full")
            .unwrap();
        assert_eq!(full.dedicated, 2);
    }

    #[test]
    fn a_promotion_goes_where_the_tier_allows_and_silos_may_live() {
        let mut spec = tier(
            Isolation::Pool,
            PlacementPolicy {
                promote_to: Some(Isolation::Silo),
                promote_factor: None,
                demote_to: None,
            },
        );
        spec.domains = vec![domain("pg"), domain("other")];
        let tiers = BTreeMap::from([(TierName::parse("free").unwrap(), spec)]);
        let mut tenants: Vec<TenantState> = (0..5)
            .map(|i| tenant(&format!("t{i}"), "free", "pg", Isolation::Pool, 1))
            .collect();
        tenants.push(tenant("heavy", "free", "pg", Isolation::Pool, 1_000));
        // `pg` holds no silos; `local` does but the tier does not list it; `other` does.
        let plan = plan(
            &tenants,
            &tiers,
            &domains(&[("pg", 0, false), ("local", 0, true), ("other", 0, true)]),
            None,
        );
        assert_eq!(plan.moves.len(), 1);
        assert_eq!(plan.moves[0].to.domain.as_str(), "other");
        // Without any domain that may take it, nothing is proposed.
        let plan2 = super::plan(&tenants, &tiers, &domains(&[("pg", 0, false)]), None);
        assert!(plan2.moves.is_empty());
    }

    #[test]
    fn a_tenant_moved_within_the_hold_is_held_and_the_plan_goes_on_without_it() {
        let tiers = BTreeMap::from([(
            TierName::parse("plus").unwrap(),
            tier(
                Isolation::Bridge,
                PlacementPolicy {
                    promote_to: None,
                    promote_factor: None,
                    demote_to: Some(Isolation::Pool),
                },
            ),
        )]);
        let hold_since = Timestamp::from_micros(1_000);
        let (just, long_ago) = (
            Some(Timestamp::from_micros(5_000)),
            Some(Timestamp::from_micros(10)),
        );
        // Three bridge tenants on a domain with room for one: the two lightest must go,
        // and the lightest of all moved a moment ago.
        let mut tenants = vec![
            tenant("a-light", "plus", "full", Isolation::Bridge, 1),
            tenant("b-mid", "plus", "full", Isolation::Bridge, 5),
            tenant("c-heavy", "plus", "full", Isolation::Bridge, 9),
            tenant("idle", "plus", "spare", Isolation::Bridge, 0),
        ];
        tenants[0].placed = just;
        tenants[1].placed = long_ago;
        tenants[3].placed = just;
        let doms = domains(&[("full", 1, true), ("spare", 0, true)]);
        let plan = plan(&tenants, &tiers, &doms, Some(hold_since));
        let moved: Vec<&str> = plan.moves.iter().map(|m| m.tenant.as_str()).collect();
        assert_eq!(moved, ["b-mid", "c-heavy"], "{plan:#?}");
        let held: Vec<(&str, MoveReason)> = plan
            .held
            .iter()
            .map(|h| (h.proposal.tenant.as_str(), h.proposal.reason))
            .collect();
        assert_eq!(
            held,
            [
                ("idle", MoveReason::DemoteIdle),
                ("a-light", MoveReason::OverCapacity)
            ]
        );
        assert_eq!(plan.held[0].placed_at, Timestamp::from_micros(5_000));
        // Without a hold, the lightest two move and the idle one is demoted.
        let free = super::plan(&tenants, &tiers, &doms, None);
        let moved: Vec<&str> = free.moves.iter().map(|m| m.tenant.as_str()).collect();
        assert_eq!(moved, ["idle", "a-light", "b-mid"]);
        assert!(free.held.is_empty());
        // A tenant created since the window began is not idle for having done nothing yet.
        tenants[3].whole_window = false;
        let fresh = super::plan(&tenants, &tiers, &doms, None);
        assert!(
            fresh.moves.iter().all(|m| m.tenant.as_str() != "idle"),
            "{fresh:#?}"
        );
    }
}
