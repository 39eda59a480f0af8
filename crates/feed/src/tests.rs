use super::*;
use proptest::prelude::*;

fn feed(buffer: usize) -> Feed<&'static str, u32> {
    Feed::new(Settings {
        buffer,
        retention: Duration::from_secs(60),
    })
}

/// Polls once: what is ready now, or `None`.
fn now_or_never<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

fn take(sub: &mut Subscription<u32>, n: usize) -> Vec<(u64, u32)> {
    (0..n)
        .map_while(|_| match now_or_never(sub.next()) {
            Some(Next::Event(d)) => Some((d.seq, *d.event)),
            _ => None,
        })
        .collect()
}

#[test]
fn writers_see_no_stream_until_someone_watches() {
    let feed = feed(8);
    assert!(feed.writer(&"a").is_none());
    let (_sub, created) = feed.subscribe(&"a", None).expect("subscribe");
    assert!(created);
    assert!(feed.writer(&"a").is_some());
    assert!(feed.writer(&"b").is_none(), "streams are per key");
}

#[test]
fn a_subscription_gets_what_follows_it_in_order() {
    let feed = feed(8);
    let (mut sub, _) = feed.subscribe(&"a", None).expect("subscribe");
    let stream = feed.writer(&"a").expect("stream");
    for v in [10, 11, 12] {
        stream.publish(v);
    }
    assert_eq!(take(&mut sub, 3), vec![(1, 10), (2, 11), (3, 12)]);
    assert_eq!(sub.position().seq, 3);
    assert!(take(&mut sub, 1).is_empty(), "nothing more");
}

#[test]
fn resuming_replays_exactly_what_was_missed() {
    let feed = feed(8);
    let (sub, _) = feed.subscribe(&"a", None).expect("subscribe");
    let stream = feed.writer(&"a").expect("stream");
    stream.publish(1);
    let at = Position {
        epoch: feed.epoch(),
        seq: 1,
    };
    drop(sub);
    stream.publish(2);
    stream.publish(3);
    let (mut again, created) = feed.subscribe(&"a", Some(at)).expect("resume");
    assert!(
        !created,
        "the stream outlives its watcher for the retention"
    );
    stream.publish(4);
    assert_eq!(take(&mut again, 4), vec![(2, 2), (3, 3), (4, 4)]);
}

#[test]
fn positions_from_elsewhere_or_too_old_must_resync() {
    let feed = feed(2);
    let (_sub, _) = feed.subscribe(&"a", None).expect("subscribe");
    let stream = feed.writer(&"a").expect("stream");
    for v in 1..=5 {
        stream.publish(v);
    }
    let other = Position {
        epoch: feed.epoch() ^ 1,
        seq: 4,
    };
    assert_eq!(feed.subscribe(&"a", Some(other)).err(), Some(Gap::Unknown));
    let old = Position {
        epoch: feed.epoch(),
        seq: 1,
    };
    assert_eq!(feed.subscribe(&"a", Some(old)).err(), Some(Gap::Expired));
    let future = Position {
        epoch: feed.epoch(),
        seq: 99,
    };
    assert_eq!(feed.subscribe(&"a", Some(future)).err(), Some(Gap::Unknown));
    let recent = Position {
        epoch: feed.epoch(),
        seq: 3,
    };
    let (mut sub, _) = feed
        .subscribe(&"a", Some(recent))
        .expect("within the buffer");
    assert_eq!(take(&mut sub, 3), vec![(4, 4), (5, 5)]);
    let missing = Position {
        epoch: feed.epoch(),
        seq: 3,
    };
    assert_eq!(
        feed.subscribe(&"b", Some(missing)).err(),
        Some(Gap::Expired),
        "a stream that did not exist kept nothing"
    );
}

#[test]
fn a_lagging_watcher_is_told() {
    let feed = feed(4);
    let (mut sub, _) = feed.subscribe(&"a", None).expect("subscribe");
    let stream = feed.writer(&"a").expect("stream");
    for v in 1..=10 {
        stream.publish(v);
    }
    assert!(matches!(now_or_never(sub.next()), Some(Next::Lagged)));
}

#[test]
fn idle_streams_are_swept_after_the_retention_only() {
    let feed: Feed<&str, u32> = Feed::new(Settings {
        buffer: 4,
        retention: Duration::from_millis(50),
    });
    let (sub, _) = feed.subscribe(&"a", None).expect("subscribe");
    feed.sweep(Instant::now() + Duration::from_secs(1));
    assert_eq!(feed.streams(), 1, "a watched stream stays");
    drop(sub);
    feed.sweep(Instant::now());
    assert_eq!(feed.streams(), 1, "kept for the retention");
    feed.sweep(Instant::now() + Duration::from_secs(1));
    assert_eq!(feed.streams(), 0);
    assert!(feed.writer(&"a").is_none());
}

#[test]
fn positions_round_trip_and_reject_garbage() {
    let p = Position {
        epoch: 0xdead_beef,
        seq: 42,
    };
    assert_eq!(p.to_string().parse::<Position>(), Ok(p));
    for bad in [
        "",
        "-",
        "12-3",
        "zzzzzzzzzzzzzzzz-1",
        "00000000deadbeef-",
        "00000000deadbeef-x",
    ] {
        assert!(bad.parse::<Position>().is_err(), "{bad:?}");
    }
}

#[test]
fn order_serialises_one_key_and_a_batch_excludes_all() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let feed = feed(4);
        let (stream, _) = feed.open(&"a");
        let held = stream.order(&"r1").await;
        let same = tokio::time::timeout(Duration::from_millis(20), stream.order(&"r1")).await;
        assert!(same.is_err(), "the same key waits");
        let batch = tokio::time::timeout(Duration::from_millis(20), stream.order_all()).await;
        assert!(batch.is_err(), "a batch waits for single changes");
        drop(held);
        let batch = stream.order_all().await;
        let other = tokio::time::timeout(Duration::from_millis(20), stream.order(&"r2")).await;
        assert!(other.is_err(), "single changes wait for a batch");
        drop(batch);
        let _ = stream.order(&"r2").await;
    });
}

proptest! {
    /// Any interleaving of publications and resumptions: a resumed subscription yields
    /// exactly the events after its position, in order, or says why it cannot.
    #[test]
    fn resumption_is_exact(
        buffer in 1usize..8,
        steps in proptest::collection::vec((0u8..3, 0u64..20), 1..60),
    ) {
        let feed = feed(buffer);
        let (_keep, _) = feed.subscribe(&"s", None).expect("subscribe");
        let stream = feed.writer(&"s").expect("stream");
        let mut published: Vec<u32> = Vec::new();
        for (kind, n) in steps {
            match kind {
                0 | 1 => {
                    let v = published.len() as u32 + 100;
                    stream.publish(v);
                    published.push(v);
                }
                _ => {
                    let head = published.len() as u64;
                    let at = n.min(head + 1);
                    let got = feed.subscribe(&"s", Some(Position { epoch: feed.epoch(), seq: at }));
                    let oldest_kept = head.saturating_sub(buffer as u64) + 1;
                    if at > head {
                        prop_assert_eq!(got.err(), Some(Gap::Unknown));
                    } else if at + 1 < oldest_kept {
                        prop_assert_eq!(got.err(), Some(Gap::Expired));
                    } else {
                        let (mut sub, _) = got.expect("resumable");
                        let want: Vec<(u64, u32)> = (at + 1..=head)
                            .map(|s| (s, published[s as usize - 1]))
                            .collect();
                        prop_assert_eq!(take(&mut sub, want.len() + 1), want);
                    }
                }
            }
        }
    }
}
