//! The checker's own tests: each violation it reports, and a property over random histories.
use super::*;
use crate::history::WriteKind;

fn event(seq: u64, life: u32, outcome: Outcome, op: Op) -> Event {
    Event {
        seq,
        start_ms: seq * 10,
        end_ms: seq * 10 + 5,
        worker: "w0".into(),
        tenant: "acme".into(),
        life,
        outcome,
        status: None,
        op,
    }
}

fn write(seq: u64, kind: WriteKind, n: Option<i64>, version: i64, outcome: Outcome) -> Event {
    event(
        seq,
        1,
        outcome,
        Op::Write {
            id: "r1".into(),
            kind,
            n,
            if_match: None,
            version: (outcome == Outcome::Ok).then_some(version),
        },
    )
}

fn seen(n: i64, version: i64) -> Seen {
    Seen {
        id: "r1".into(),
        owner: "acme".into(),
        life: 1,
        n,
        version,
        w: Some(0),
    }
}

fn export(seq: u64, records: Vec<Seen>) -> Event {
    event(
        seq,
        1,
        Outcome::Ok,
        Op::List {
            seen: records,
            complete: true,
        },
    )
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    check(events).violations.iter().map(|v| v.kind).collect()
}

#[test]
fn an_acknowledged_history_that_was_kept_has_no_violation() {
    let events = vec![
        write(1, WriteKind::Create, Some(1), 1, Outcome::Ok),
        write(2, WriteKind::Replace, Some(2), 2, Outcome::Ok),
        event(
            3,
            1,
            Outcome::Ok,
            Op::Read {
                id: "r1".into(),
                seen: Some(seen(2, 2)),
            },
        ),
        write(4, WriteKind::Patch, Some(3), 3, Outcome::Refused),
        export(5, vec![seen(2, 2)]),
    ];
    let verdict = check(&events);
    assert!(verdict.violations.is_empty(), "{:?}", verdict.violations);
    assert_eq!(verdict.acknowledged_writes, 2);
    assert_eq!(verdict.records_checked, 1);
}

#[test]
fn a_lost_acknowledged_write_is_found() {
    let events = vec![
        write(1, WriteKind::Create, Some(1), 1, Outcome::Ok),
        export(2, vec![]),
    ];
    assert_eq!(kinds(&events), ["lost"]);
}

#[test]
fn an_overwritten_value_coming_back_is_stale() {
    let events = vec![
        write(1, WriteKind::Create, Some(1), 1, Outcome::Ok),
        write(2, WriteKind::Replace, Some(2), 2, Outcome::Ok),
        event(
            3,
            1,
            Outcome::Ok,
            Op::Read {
                id: "r1".into(),
                seen: Some(seen(1, 1)),
            },
        ),
    ];
    assert_eq!(kinds(&events), ["stale"]);
}

#[test]
fn a_write_with_no_answer_may_or_may_not_have_happened() {
    for final_state in [vec![], vec![seen(1, 1)]] {
        let events = vec![
            write(1, WriteKind::Create, Some(1), 1, Outcome::Unknown),
            export(2, final_state),
        ];
        assert!(kinds(&events).is_empty());
    }
    // But not both: once a read saw it, it stays.
    let events = vec![
        write(1, WriteKind::Create, Some(1), 1, Outcome::Unknown),
        event(
            2,
            1,
            Outcome::Ok,
            Op::Read {
                id: "r1".into(),
                seen: Some(seen(1, 1)),
            },
        ),
        export(3, vec![]),
    ];
    assert_eq!(kinds(&events), ["lost"]);
}

#[test]
fn a_refused_write_that_shows_up_is_stale() {
    let events = vec![
        write(1, WriteKind::Create, Some(1), 1, Outcome::Ok),
        write(2, WriteKind::Delete, None, 0, Outcome::Refused),
        export(3, vec![]),
    ];
    assert_eq!(kinds(&events), ["lost"]);
}

#[test]
fn a_wrong_version_is_found() {
    let events = vec![
        write(1, WriteKind::Create, Some(1), 1, Outcome::Ok),
        export(2, vec![seen(1, 7)]),
    ];
    assert_eq!(kinds(&events), ["stale"]);
}

#[test]
fn another_tenants_record_or_an_old_life_is_a_crossing() {
    let mut foreign = seen(1, 1);
    foreign.owner = "globex".into();
    let mut old = seen(1, 1);
    old.life = 0;
    let events = vec![
        event(
            1,
            1,
            Outcome::Ok,
            Op::List {
                seen: vec![foreign.clone()],
                complete: false,
            },
        ),
        event(
            2,
            1,
            Outcome::Ok,
            Op::Read {
                id: "r1".into(),
                seen: Some(old),
            },
        ),
    ];
    assert_eq!(kinds(&events), ["crossed", "old_life"]);
}

#[test]
fn a_record_outside_a_tokens_rule_is_found() {
    let mut other_writer = seen(1, 1);
    other_writer.w = Some(1);
    let events = vec![event(
        1,
        1,
        Outcome::Ok,
        Op::TokenList {
            w: 0,
            seen: vec![seen(1, 1), other_writer],
        },
    )];
    assert_eq!(kinds(&events), ["rule"]);
}

#[test]
fn a_hidden_field_shown_to_a_user_is_found() {
    let events = vec![event(
        1,
        1,
        Outcome::Ok,
        Op::UserList {
            w: 0,
            seen: vec![seen(1, 1)],
            shown_hidden: vec!["r1".into()],
        },
    )];
    assert_eq!(kinds(&events), ["hidden_field"]);
}

#[test]
fn a_filtered_listing_and_a_count_are_held_to_the_history() {
    let ids = vec!["r1".to_owned(), "r2".to_owned()];
    let created = write(1, WriteKind::Create, Some(1), 1, Outcome::Ok);
    let good = vec![
        created.clone(),
        event(
            2,
            1,
            Outcome::Ok,
            Op::Snapshot {
                ids: ids.clone(),
                seen: vec![seen(1, 1)],
            },
        ),
        event(
            3,
            1,
            Outcome::Ok,
            Op::Count {
                ids: ids.clone(),
                count: 1,
            },
        ),
    ];
    assert!(kinds(&good).is_empty());
    let bad = vec![
        created,
        event(
            2,
            1,
            Outcome::Ok,
            Op::Snapshot {
                ids: ids.clone(),
                seen: vec![],
            },
        ),
        event(3, 1, Outcome::Ok, Op::Count { ids, count: 2 }),
    ];
    assert_eq!(kinds(&bad), ["lost", "count"]);
}

#[test]
fn metered_writes_are_held_to_the_history() {
    let usage = |metered| event(9, 1, Outcome::Ok, Op::Usage { metered });
    let writes = vec![
        write(1, WriteKind::Create, Some(1), 1, Outcome::Ok),
        write(2, WriteKind::Replace, Some(2), 2, Outcome::Unknown),
    ];
    let with = |extra: Vec<Event>| [writes.clone(), extra].concat();
    assert!(kinds(&with(vec![usage(1)])).is_empty());
    assert!(kinds(&with(vec![usage(2)])).is_empty());
    assert_eq!(kinds(&with(vec![usage(3)])), ["usage"]);
    assert_eq!(kinds(&with(vec![usage(0)])), ["usage"]);
    // After a kill the meter may have lost its last seconds: fewer is allowed.
    let kill = event(
        5,
        0,
        Outcome::Ok,
        Op::Fault {
            kind: "kill -9 of server 0".into(),
        },
    );
    assert!(kinds(&with(vec![kill, usage(0)])).is_empty());
}

#[test]
fn a_search_must_find_what_a_record_surely_holds_and_only_that() {
    let created = write(1, WriteKind::Create, Some(1), 1, Outcome::Ok);
    let search = |seq, seen| {
        event(
            seq,
            1,
            Outcome::Ok,
            Op::Search {
                id: "r1".into(),
                n: 1,
                seen,
            },
        )
    };
    assert!(kinds(&[created.clone(), search(2, vec![seen(1, 1)])]).is_empty());
    assert_eq!(kinds(&[created.clone(), search(2, vec![])]), ["search"]);
    assert_eq!(
        kinds(&[created, search(2, vec![seen(2, 1)])]),
        ["search", "stale"]
    );
}

#[test]
fn an_id_listed_twice_is_doubled() {
    let events = vec![
        write(1, WriteKind::Create, Some(1), 1, Outcome::Ok),
        event(
            2,
            1,
            Outcome::Ok,
            Op::List {
                seen: vec![seen(1, 1), seen(1, 1)],
                complete: false,
            },
        ),
    ];
    assert_eq!(kinds(&events), ["doubled"]);
}

#[test]
fn a_write_acknowledged_while_suspended_is_found() {
    let events = vec![
        event(1, 1, Outcome::Ok, Op::Suspended),
        write(2, WriteKind::Create, Some(1), 1, Outcome::Ok),
        event(3, 1, Outcome::Ok, Op::Resumed),
    ];
    assert_eq!(kinds(&events), ["suspended_write"]);
}

#[test]
fn several_servers_may_take_the_change_feed_s_time_to_learn_of_a_suspension() {
    let late = |at: u64| {
        let mut e = write(2, WriteKind::Create, Some(1), 1, Outcome::Ok);
        (e.start_ms, e.end_ms) = (at, at + 5);
        e
    };
    let mut suspended = event(1, 1, Outcome::Ok, Op::Suspended);
    suspended.end_ms = 100;
    let mut resumed = event(3, 1, Outcome::Ok, Op::Resumed);
    resumed.start_ms = 5_000;
    let started = |servers| event(0, 0, Outcome::Ok, Op::Started { servers });
    let run = |servers, at| {
        kinds(&[
            started(servers),
            suspended.clone(),
            late(at),
            resumed.clone(),
        ])
    };
    assert_eq!(run(1, 150), ["suspended_write"]);
    assert!(run(2, 150).is_empty());
    assert_eq!(run(2, 100 + PROPAGATION_MS + 10), ["suspended_write"]);
}

#[test]
fn a_revoked_key_that_still_works_and_a_broken_chain_are_found() {
    let events = vec![
        event(
            1,
            1,
            Outcome::Ok,
            Op::Revoked {
                status_after: Some(200),
            },
        ),
        event(
            2,
            1,
            Outcome::Ok,
            Op::AuditVerified {
                ok: false,
                checked: 9,
            },
        ),
        event(
            3,
            1,
            Outcome::Ok,
            Op::Quota {
                counted: 3,
                real: 2,
            },
        ),
    ];
    assert_eq!(kinds(&events), ["revocation", "audit", "quota"]);
}

proptest::proptest! {
    /// Whatever the sequence of acknowledged writes, the record's true final state is
    /// accepted and any other value is not.
    #[test]
    fn the_true_final_state_is_the_only_one_accepted(ops in proptest::collection::vec((0u8..4, proptest::bool::ANY), 1..30)) {
        let mut events = Vec::new();
        let mut state: Option<(i64, i64)> = None;
        let mut version = 0;
        for (seq, (op, acknowledged)) in ops.into_iter().enumerate() {
            let seq = seq as u64 + 1;
            let n = seq as i64;
            let outcome = if acknowledged { Outcome::Ok } else { Outcome::Refused };
            let (kind, value) = match (op, state) {
                (_, None) => (WriteKind::Create, Some(n)),
                (0, Some(_)) => (WriteKind::Delete, None),
                (1, Some(_)) => (WriteKind::Patch, Some(n)),
                (2, Some(_)) => (WriteKind::Upsert, Some(n)),
                _ => (WriteKind::Replace, Some(n)),
            };
            if acknowledged {
                version += 1;
                state = value.map(|v| (v, version));
            }
            events.push(write(seq, kind, value, version, outcome));
        }
        let truth: Vec<Seen> = state.map(|(n, v)| seen(n, v)).into_iter().collect();
        let mut good = events.clone();
        good.push(export(1000, truth));
        proptest::prop_assert!(check(&good).violations.is_empty());
        let wrong = match state {
            Some(_) => vec![],
            None => vec![seen(-1, 1)],
        };
        let mut bad = events;
        bad.push(export(1000, wrong));
        proptest::prop_assert_eq!(check(&bad).violations.len(), 1);
    }
}
