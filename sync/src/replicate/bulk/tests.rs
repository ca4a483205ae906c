//! The three machines' transitions, without a replicator.

use super::*;
use tandem_dataplane::state::{FlowKey, TableConfig};

/// A table holding `n` UDP states, and its snapshot.
fn states(n: u32) -> (StateTable, Vec<Arc<State>>) {
    let table = StateTable::new(TableConfig::default());
    let by = table.producer();
    for i in 0..n {
        let key = FlowKey::new(
            17,
            Ipv4Addr::from(0x0b00_0000 + i),
            5000,
            Ipv4Addr::new(8, 8, 8, 8),
            53,
        );
        table
            .insert(NewState::first_packet(key, 3, None, 80), 0, &by)
            .unwrap();
    }
    let snap = table.snapshot();
    (table, snap)
}

fn no_snapshot() -> Vec<Arc<State>> {
    panic!("a walk in progress took another snapshot")
}

#[test]
fn a_start_during_a_walk_queues_exactly_one_more() {
    let mut w = WalkState::Idle;
    assert_eq!(w.start(10, false, Vec::new), Start::Started(0));
    assert_eq!(w.progress(), Some((0, 0)));
    for _ in 0..3 {
        assert_eq!(w.start(11, false, no_snapshot), Start::Queued);
    }
    let end = w.finish().expect("an empty walk ends at once");
    assert_eq!(end.started, 10);
    assert_eq!(end.again, Some(Again { resync: false }));
    assert!(!w.is_walking());
    // The queued walk was handed back, not kept: nothing follows the next one.
    assert_eq!(w.start(12, false, Vec::new), Start::Started(0));
    assert_eq!(w.finish().map(|e| e.again), Some(None));
    assert_eq!(w.finish(), None, "an idle machine has nothing to end");
}

#[test]
fn a_resync_upgrades_the_queued_walk_and_a_plain_start_does_not_downgrade_it() {
    let mut w = WalkState::Idle;
    w.start(0, false, Vec::new);
    w.start(1, true, no_snapshot);
    w.start(2, false, no_snapshot);
    assert_eq!(w.finish().unwrap().again, Some(Again { resync: true }));

    // A plain walk queued behind a resync stays plain: the flag is the queued walk's own.
    w.start(3, true, Vec::new);
    w.start(4, false, no_snapshot);
    assert_eq!(w.finish().unwrap().again, Some(Again { resync: false }));
}

#[test]
fn a_walk_passes_every_state_of_its_snapshot_once_then_ends() {
    let (table, snap) = states(3);
    let mut w = WalkState::Idle;
    assert_eq!(w.start(5, true, || table.snapshot()), Start::Started(3));
    // Removed after the snapshot: still handed out (the caller skips it), so the count of
    // states passed matches the snapshot.
    assert!(table.remove(&snap[1], tandem_dataplane::journal::Origin::Peer));
    let mut passed = 0;
    while w.has_next() {
        assert_eq!(w.finish(), None, "ended with states left");
        let (_, resync) = w.next_state().unwrap();
        assert!(resync);
        passed += 1;
        assert_eq!(w.progress(), Some((passed, 3)));
    }
    assert_eq!(passed, 3);
    assert_eq!(w.next_state().map(|(s, _)| s.id), None);
    assert_eq!(
        w.finish(),
        Some(Ended {
            started: 5,
            again: None
        })
    );
    assert_eq!(w.progress(), None);
}

#[test]
fn requests_are_retried_then_given_up() {
    let mut r = Request::new(2);
    assert!(r.is_pending());
    assert_eq!(r.describe(2), "pending (try 1/2)");
    assert_eq!(
        r.tick(0, 2, 100),
        Tick::Send,
        "the first request at the first poll"
    );
    assert_eq!(r.next_at(), Some(100));
    assert_eq!(r.tick(99, 2, 100), Tick::Wait);
    assert_eq!(r.tick(100, 2, 100), Tick::Send);
    assert_eq!(r.describe(2), "pending (try 2/2)");
    assert_eq!(r.tick(200, 2, 100), Tick::GiveUp { tries: 2 });
    assert_eq!(r, Request::Failed);
    assert_eq!(r.next_at(), None);
    assert_eq!(
        r.tick(300, 2, 100),
        Tick::Wait,
        "a failed request stays failed"
    );
    assert!(!r.received(), "a late END is not ours to count as done");
    assert_eq!(r, Request::Failed);
}

#[test]
fn a_request_sent_early_counts_as_a_try_and_defers_the_next() {
    let mut r = Request::new(12);
    r.sent_early(40, 5000);
    assert_eq!(
        r,
        Request::Pending {
            tries: 1,
            next_at: 5040
        }
    );
    assert_eq!(r.tick(41, 12, 5000), Tick::Wait);
    // Out of turn again after the timer's retries: the count is kept.
    assert_eq!(r.tick(5040, 12, 5000), Tick::Send);
    r.sent_early(6000, 5000);
    assert_eq!(
        r,
        Request::Pending {
            tries: 2,
            next_at: 11_000
        }
    );
    assert!(r.received());
    assert_eq!(r, Request::Done);
    // Done: a quiet request moves nothing.
    r.sent_early(12_000, 5000);
    assert_eq!(r, Request::Done);
}

#[test]
fn off_stays_off_until_the_operator_asks() {
    let mut r = Request::new(0);
    assert_eq!(r, Request::Off);
    assert!(!r.is_pending());
    assert_eq!(r.tick(0, 0, 100), Tick::Wait);
    assert!(!r.received());
    assert_eq!(r.describe(0), "off");
    r = Request::restart();
    // With no retries configured the operator's request gives up at once, as before.
    assert_eq!(r.tick(0, 0, 100), Tick::GiveUp { tries: 0 });
}

#[test]
fn the_purge_marks_only_what_is_heard_between_start_and_end() {
    let id = |id| SyncId { creator: 2, id };
    let mut i = Incoming::default();
    i.heard(id(1));
    assert_eq!(i.end(), None, "an END without its START purges nothing");
    i.start();
    i.heard(id(2));
    i.start();
    i.heard(id(3));
    i.heard(id(3));
    assert_eq!(
        i.end(),
        Some(HashSet::from([id(3)])),
        "a second START restarts the marks"
    );
    assert_eq!(i.end(), None);
    i.heard(id(4));
    assert!(matches!(i, Incoming::Outside));
}
