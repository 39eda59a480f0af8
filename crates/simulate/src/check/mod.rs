//! The checker: reads a history and lists every violation of what Bulkhead promises.
//!
//! Each record id is written by one worker only, one operation at a time, so its history is
//! a sequence. The checker follows it keeping the set of states the record may be in: an
//! acknowledged write leaves exactly its state, a refused one changes nothing, one with no
//! answer adds its state to the possibilities; a successful read must see one of them and
//! then pins it. A record of another tenant, or of another life of this tenant id, seen
//! anywhere is a crossing; an id listed twice in one listing is a double.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::history::{Event, Op, Outcome, Seen};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// `lost`, `stale`, `crossed`, `old_life`, `doubled`, `filter`, `count`, `rule`,
    /// `hidden_field`, `search`, `suspended_write`, `usage`,
    /// `revocation`, `audit`, `quota`.
    pub kind: &'static str,
    pub tenant: String,
    pub seq: u64,
    pub detail: String,
}

/// How long servers sharing a catalog may take to learn of a change to a tenant (its
/// suspension) from the catalog's change feed, in milliseconds.
pub const PROPAGATION_MS: u64 = 1_000;

/// What the checker found, and how much it read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub events: u64,
    pub acknowledged_writes: u64,
    pub records_checked: u64,
    pub violations: Vec<Violation>,
}

/// The states one record may be in: absent, or holding the value `n` at `version` (a
/// version is known once a write was acknowledged or a read saw it).
type State = Option<(i64, Option<i64>)>;

struct RecordModel {
    possible: BTreeSet<State>,
}

impl Default for RecordModel {
    /// A record no write has touched yet: absent.
    fn default() -> Self {
        RecordModel {
            possible: BTreeSet::from([None]),
        }
    }
}

impl RecordModel {
    fn admits(&self, seen: &Option<Seen>) -> bool {
        self.possible.iter().any(|state| match (state, seen) {
            (None, None) => true,
            (Some((n, version)), Some(s)) => *n == s.n && version.is_none_or(|v| v == s.version),
            _ => false,
        })
    }

    fn pin(&mut self, seen: &Option<Seen>) {
        self.possible = BTreeSet::from([seen.as_ref().map(|s| (s.n, Some(s.version)))]);
    }

    fn describe(&self) -> String {
        let states: Vec<String> = self
            .possible
            .iter()
            .map(|s| match s {
                None => "absent".to_owned(),
                Some((n, Some(v))) => format!("n={n} v{v}"),
                Some((n, None)) => format!("n={n}"),
            })
            .collect();
        states.join(" or ")
    }
}

fn show(seen: &Option<Seen>) -> String {
    match seen {
        None => "absent".to_owned(),
        Some(s) => format!("n={} v{}", s.n, s.version),
    }
}

/// Checks `events` (in any order: they are sorted by `seq`).
pub fn check(events: &[Event]) -> Verdict {
    let mut events: Vec<&Event> = events.iter().collect();
    events.sort_by_key(|e| e.seq);
    let mut verdict = Verdict {
        events: events.len() as u64,
        ..Verdict::default()
    };
    let mut records: BTreeMap<(String, u32, String), RecordModel> = BTreeMap::new();
    // Suspensions: (tenant, life) → acknowledged-at of the suspension, until resumed.
    let mut suspended: BTreeMap<(String, u32), Vec<(u64, u64)>> = BTreeMap::new();
    let mut open_suspension: BTreeMap<(String, u32), u64> = BTreeMap::new();
    let mut found = |v: &mut Verdict, kind: &'static str, e: &Event, detail: String| {
        v.violations.push(Violation {
            kind,
            tenant: e.tenant.clone(),
            seq: e.seq,
            detail,
        });
    };

    for e in &events {
        let key = |id: &str| (e.tenant.clone(), e.life, id.to_owned());
        match &e.op {
            Op::Write {
                id,
                kind,
                n,
                version,
                ..
            } => {
                let model = records.entry(key(id)).or_default();
                let after: State = match kind {
                    crate::history::WriteKind::Delete => None,
                    _ => n.map(|n| (n, *version)),
                };
                match e.outcome {
                    Outcome::Ok => {
                        verdict.acknowledged_writes += 1;
                        model.possible = BTreeSet::from([after]);
                    }
                    Outcome::Refused => {}
                    Outcome::Unknown => {
                        model.possible.insert(after.map(|(n, _)| (n, None)));
                    }
                }
            }
            Op::Read { id, seen } => {
                if e.outcome != Outcome::Ok {
                    continue;
                }
                if let Some(s) = seen
                    && (s.owner != e.tenant || s.life != e.life)
                {
                    crossed(&mut verdict, e, s, &mut found);
                    continue;
                }
                let model = records.entry(key(id)).or_default();
                if !model.admits(seen) {
                    let kind = if seen.is_none() { "lost" } else { "stale" };
                    let detail = format!(
                        "{id}: a read saw {}, but the acknowledged history allows {}",
                        show(seen),
                        model.describe()
                    );
                    found(&mut verdict, kind, e, detail);
                }
                model.pin(seen);
            }
            Op::List { seen, complete } => {
                if e.outcome != Outcome::Ok {
                    continue;
                }
                let mut ids = BTreeSet::new();
                for s in seen {
                    if s.owner != e.tenant || s.life != e.life {
                        crossed(&mut verdict, e, s, &mut found);
                        continue;
                    }
                    if !ids.insert(s.id.clone()) {
                        let detail = format!("{} listed twice in one listing", s.id);
                        found(&mut verdict, "doubled", e, detail);
                    }
                }
                if *complete {
                    // The final export: every record this life wrote is checked against it.
                    let by_id: BTreeMap<&str, &Seen> =
                        seen.iter().map(|s| (s.id.as_str(), s)).collect();
                    for ((tenant, life, id), model) in records.iter_mut() {
                        if *tenant != e.tenant || *life != e.life {
                            continue;
                        }
                        verdict.records_checked += 1;
                        let observed = by_id.get(id.as_str()).map(|s| (*s).clone());
                        if !model.admits(&observed) {
                            let kind = if observed.is_none() { "lost" } else { "stale" };
                            let detail = format!(
                                "{id}: the final export has {}, but the acknowledged history allows {}",
                                show(&observed),
                                model.describe()
                            );
                            found(&mut verdict, kind, e, detail);
                        }
                        model.pin(&observed);
                    }
                    for s in seen {
                        if !records.contains_key(&(e.tenant.clone(), e.life, s.id.clone())) {
                            let detail =
                                format!("{}: exported, but no write of this life made it", s.id);
                            found(&mut verdict, "stale", e, detail);
                        }
                    }
                }
            }
            Op::TokenList { w, seen } if e.outcome == Outcome::Ok => {
                for s in seen {
                    if s.owner != e.tenant || s.life != e.life {
                        crossed(&mut verdict, e, s, &mut found);
                    } else if s.w != Some(*w) {
                        let detail = format!(
                            "{} (writer {:?}) shown to a token whose rule is w = {w}",
                            s.id, s.w
                        );
                        found(&mut verdict, "rule", e, detail);
                    }
                }
            }
            Op::Snapshot { ids, seen } if e.outcome == Outcome::Ok => {
                let by_id: BTreeMap<&str, &Seen> =
                    seen.iter().map(|s| (s.id.as_str(), s)).collect();
                for s in seen {
                    if s.owner != e.tenant || s.life != e.life {
                        crossed(&mut verdict, e, s, &mut found);
                    } else if !ids.contains(&s.id) {
                        let detail =
                            format!("{} matched a filter on another writer's records", s.id);
                        found(&mut verdict, "filter", e, detail);
                    }
                }
                for id in ids {
                    let observed = by_id.get(id.as_str()).map(|s| (*s).clone());
                    let model = records.entry(key(id)).or_default();
                    if !model.admits(&observed) {
                        let kind = if observed.is_none() { "lost" } else { "stale" };
                        let detail = format!(
                            "{id}: a filtered listing saw {}, but the acknowledged history allows {}",
                            show(&observed),
                            model.describe()
                        );
                        found(&mut verdict, kind, e, detail);
                    }
                    model.pin(&observed);
                }
            }
            Op::Search { id, n, seen } if e.outcome == Outcome::Ok => {
                for s in seen {
                    if s.owner != e.tenant || s.life != e.life {
                        crossed(&mut verdict, e, s, &mut found);
                    } else if s.n != *n {
                        let detail = format!(
                            "{} (n={}) found by a search for the word of n={n}",
                            s.id, s.n
                        );
                        found(&mut verdict, "search", e, detail);
                    }
                }
                // A record certain to hold `n` must be found; one found must be allowed to.
                let model = records.entry(key(id)).or_default();
                let hit = seen.iter().find(|s| s.id == *id).cloned();
                let certain = !model.possible.is_empty()
                    && model
                        .possible
                        .iter()
                        .all(|p| p.is_some_and(|(value, _)| value == *n));
                if hit.is_none() && certain {
                    let detail =
                        format!("{id}: holds n={n} but a search for its word did not find it");
                    found(&mut verdict, "search", e, detail);
                }
                if let Some(hit) = hit {
                    let observed = Some(hit);
                    if !model.admits(&observed) {
                        let detail = format!(
                            "{id}: a search found {}, but the acknowledged history allows {}",
                            show(&observed),
                            model.describe()
                        );
                        found(&mut verdict, "stale", e, detail);
                    }
                    model.pin(&observed);
                }
            }
            Op::Count { ids, count } if e.outcome == Outcome::Ok => {
                let (mut least, mut most) = (0u64, 0u64);
                for id in ids {
                    let model = records.entry(key(id)).or_default();
                    least += u64::from(!model.possible.contains(&None));
                    most += u64::from(model.possible.iter().any(Option::is_some));
                }
                if !(least..=most).contains(count) {
                    let detail = format!(
                        "a count of the writer's records gave {count}, but its history allows {least} to {most}"
                    );
                    found(&mut verdict, "count", e, detail);
                }
            }
            Op::UserList {
                w,
                seen,
                shown_hidden,
            } if e.outcome == Outcome::Ok => {
                for s in seen {
                    if s.owner != e.tenant || s.life != e.life {
                        crossed(&mut verdict, e, s, &mut found);
                    } else if s.w != Some(*w) {
                        let detail = format!(
                            "{} (writer {:?}) shown to a user whose role's rule is w = {w}",
                            s.id, s.w
                        );
                        found(&mut verdict, "rule", e, detail);
                    }
                }
                for id in shown_hidden {
                    let detail = format!("{id} shown with the field n its role hides");
                    found(&mut verdict, "hidden_field", e, detail);
                }
            }
            Op::Suspended if e.outcome == Outcome::Ok => {
                open_suspension.insert((e.tenant.clone(), e.life), e.end_ms);
            }
            Op::Resumed => {
                if let Some(from) = open_suspension.remove(&(e.tenant.clone(), e.life)) {
                    suspended
                        .entry((e.tenant.clone(), e.life))
                        .or_default()
                        .push((from, e.start_ms));
                }
            }
            Op::Revoked { status_after }
                if e.outcome == Outcome::Ok && *status_after != Some(401) =>
            {
                let detail = format!(
                    "a request with the revoked key, right after its revocation, got {status_after:?} (expected 401)"
                );
                found(&mut verdict, "revocation", e, detail);
            }
            Op::AuditVerified { ok, checked } if e.outcome == Outcome::Ok && !ok => {
                let detail = format!("the audit chain does not verify ({checked} entries)");
                found(&mut verdict, "audit", e, detail);
            }
            Op::Quota { counted, real } if e.outcome == Outcome::Ok && counted != real => {
                let detail =
                    format!("the quota counter says {counted} records, the tenant has {real}");
                found(&mut verdict, "quota", e, detail);
            }
            _ => {}
        }
    }

    // Metered records written: never more than the writes that may have happened; with no
    // kill (a kill loses the meter's last unflushed seconds by design), never fewer than the
    // acknowledged ones.
    let killed = events
        .iter()
        .any(|e| matches!(&e.op, Op::Fault { kind } if kind.contains("kill")));
    for e in &events {
        let Op::Usage { metered } = &e.op else {
            continue;
        };
        if e.outcome != Outcome::Ok {
            continue;
        }
        let writes = events
            .iter()
            .filter(|w| w.tenant == e.tenant && matches!(w.op, Op::Write { .. }));
        let (mut acked, mut maybe) = (0u64, 0u64);
        for w in writes {
            match w.outcome {
                Outcome::Ok => acked += 1,
                Outcome::Unknown => maybe += 1,
                Outcome::Refused => {}
            }
        }
        if *metered > acked + maybe || (!killed && *metered < acked) {
            let detail = format!(
                "usage metered {metered} records written; the history has {acked} acknowledged and {maybe} unanswered writes{}",
                if killed { "" } else { " and no kill" }
            );
            found(&mut verdict, "usage", e, detail);
        }
    }

    // No write is acknowledged while its tenant is suspended. Servers sharing a catalog learn
    // of a suspension through its change feed: a write to another server may still be
    // accepted for that long after the suspension was acknowledged.
    let servers = events
        .iter()
        .find_map(|e| match e.op {
            Op::Started { servers } => Some(servers),
            _ => None,
        })
        .unwrap_or(1);
    let propagation = if servers > 1 { PROPAGATION_MS } else { 0 };
    for e in &events {
        if !matches!(e.op, Op::Write { .. }) || e.outcome != Outcome::Ok {
            continue;
        }
        let windows = suspended
            .get(&(e.tenant.clone(), e.life))
            .into_iter()
            .flatten();
        for (from, to) in windows {
            if e.start_ms > from + propagation && e.end_ms < *to {
                let detail = format!(
                    "a write invoked at {} ms and acknowledged at {} ms, while the tenant was suspended ({from}–{to} ms)",
                    e.start_ms, e.end_ms
                );
                found(&mut verdict, "suspended_write", e, detail);
            }
        }
    }
    verdict
}

fn crossed(
    verdict: &mut Verdict,
    e: &Event,
    s: &Seen,
    found: &mut impl FnMut(&mut Verdict, &'static str, &Event, String),
) {
    let (kind, detail) = if s.owner != e.tenant {
        (
            "crossed",
            format!("{} of tenant {} seen by tenant {}", s.id, s.owner, e.tenant),
        )
    } else {
        (
            "old_life",
            format!(
                "{} of life {} of {} seen in its life {}",
                s.id, s.life, s.owner, e.life
            ),
        )
    };
    found(verdict, kind, e, detail);
}

#[cfg(test)]
mod tests;
