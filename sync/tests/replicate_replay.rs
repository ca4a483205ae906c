//! Recorded sync datagrams replayed later (issue 10.2, 10.3): a datagram of an old boot of the
//! peer, and control datagrams (NACK, ACK), change nothing and are counted.

mod common;

use common::*;
use tandem_sync::journal::JournalConfig;
use tandem_sync::replicate::Event;
use tandem_sync::transport::{mem_pair, Faults};
use tandem_sync::wire::{self, Record};

fn walks(n: &Node) -> usize {
    n.events
        .iter()
        .filter(|e| matches!(e, Event::WalkStarted(_)))
        .count()
}

/// Issue 10.2: B's datagrams recorded, B restarts, A restarts, one old datagram replayed to
/// A: A goes on accepting B's genuine datagrams (its received counter climbs), gets B's
/// states, and no state appears or disappears.
#[test]
fn a_datagram_of_an_old_boot_does_not_retire_the_current_one() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 200);
    for i in 0..20 {
        insert_tcp(&b.table, &b.worker, i, false, 200);
    }
    run(&mut a, &mut b, 200, 300);
    assert_eq!(a.table.len(), 20);
    let old = b.t.take_tap();
    assert!(!old.is_empty());

    // B restarts (empty: its states die with it), then A.
    let (ta, tb) = mem_pair(A_ADDR, B_ADDR);
    a.t = ta;
    b = node_with(config(2, 0xb002, A_ADDR), JournalConfig::default(), tb);
    run(&mut a, &mut b, 300, 600);
    let (ta, tb) = mem_pair(A_ADDR, B_ADDR);
    b.t = tb;
    a = node_with(config(1, 0xa002, B_ADDR), JournalConfig::default(), ta);
    run(&mut a, &mut b, 600, 900);
    assert!(!a.rep.bulk_pending());
    let live: Vec<_> = (100..110)
        .map(|i| insert_tcp(&b.table, &b.worker, i, false, 900))
        .collect();
    run(&mut a, &mut b, 900, 1000);
    assert_same(&b.table, &a.table);
    let accepted = a.counter("rx_accepted");
    let restarts = a.counter("peer_restarts");

    // Every recorded datagram of B's first boot, replayed to A.
    for d in &old {
        a.t.inject(d, B_ADDR, 255);
    }
    run(&mut a, &mut b, 1000, 1010);
    // B goes on: new states, a delete.
    for i in 200..210 {
        insert_tcp(&b.table, &b.worker, i, false, 1010);
    }
    assert!(b.table.remove(&live[0], Origin::Local(&b.worker)));
    run(&mut a, &mut b, 1010, 1200);
    assert_eq!(
        a.counter("peer_restarts"),
        restarts,
        "an old boot retired the current one"
    );
    assert!(
        a.counter("rx_accepted") > accepted,
        "A stopped accepting B's genuine datagrams"
    );
    assert_eq!(
        a.table.len(),
        b.table.len(),
        "a state appeared or disappeared"
    );
    assert_same(&b.table, &a.table);
    assert_eq!(a.counter("old_boot"), old.len() as u64);
}

/// Issue 10.2, with the peer's last boot persisted: an old boot's datagram heard *before* the
/// peer's current one, right after our restart, is refused too.
#[test]
fn the_persisted_peer_boot_refuses_an_old_boot_heard_first() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 200);
    for i in 0..5 {
        insert_tcp(&b.table, &b.worker, i, false, 200);
    }
    run(&mut a, &mut b, 200, 300);
    let old = b.t.take_tap();
    // A restarts knowing B's newer boot (what the daemon persisted when it heard it).
    let (ta, _tb) = mem_pair(A_ADDR, B_ADDR);
    let mut cfg = config(1, 0xa002, B_ADDR);
    cfg.peer_boots = vec![(2, 0xb002)];
    let mut a = node_with(cfg, JournalConfig::default(), ta);
    for d in &old {
        a.t.inject(d, B_ADDR, 255);
    }
    a.poll(300);
    assert!(a.table.is_empty(), "an old boot's INS re-created a state");
    assert_eq!(a.counter("rx_accepted"), 0);
    assert_eq!(a.counter("old_boot"), old.len() as u64);
}

/// The control datagrams in a tap that carry a NACK.
fn nacks(tap: &[Vec<u8>]) -> Vec<Vec<u8>> {
    tap.iter()
        .filter(|d| {
            wire::parse(d, &key())
                .is_ok_and(|f| f.records().any(|r| matches!(r, Record::Nack { .. })))
        })
        .cloned()
        .collect()
}

/// Issue 10.3: B NACKs and dies. Its recorded NACK and ACK datagrams, replayed to A, neither
/// make A retransmit nor walk its table (its ring has wrapped meanwhile), nor keep B "alive"
/// for flow control.
#[test]
fn replayed_nacks_and_acks_buy_nothing() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 200);
    a.t.set_faults(Faults {
        drop_every: 4,
        ..Faults::default()
    });
    // Run until B sends a NACK, then B dies at once: the NACKed numbers stay unacknowledged.
    let mut now = 200;
    let mut i = 0;
    let recorded = loop {
        for _ in 0..13 {
            insert_tcp(&a.table, &a.worker, i, false, now);
            i += 1;
        }
        a.poll(now);
        b.poll(now);
        let n = nacks(&b.t.take_tap());
        if !n.is_empty() {
            break n;
        }
        now += 1;
        assert!(now < 1000, "B never NACKed");
    };
    a.poll(now + 1); // A hears the genuine NACK once
    a.t.down = true;
    // A alone: B is silent, flow control lifts after peer_dead_ms, the ring wraps.
    for t in now + 2..now + 1600 {
        for _ in 0..3 {
            insert_tcp(&a.table, &a.worker, i, false, t);
            i += 1;
        }
        a.poll(t);
    }
    now += 1600;
    let walks_before = walks(&a);
    let missed = a.counter("retransmit_missed");
    let retransmits = a.counter("retransmits");

    // The attacker replays B's NACK datagram(s) 10 times, within one retransmit timeout.
    for k in 0..10 {
        for d in &recorded {
            a.t.inject(d, B_ADDR, 255);
        }
        a.poll(now + k);
    }
    assert_eq!(walks(&a), walks_before, "a replayed NACK bought a walk");
    assert_eq!(a.counter("retransmit_missed"), missed);
    assert!(
        a.counter("retransmits") <= retransmits + 1,
        "a replayed NACK bought retransmissions: {} -> {}",
        retransmits,
        a.counter("retransmits")
    );
    // The replayed ACKs did not make the dead peer look alive: A goes on sending.
    let sent = a.counter("tx_sequenced");
    for _ in 0..100 {
        insert_tcp(&a.table, &a.worker, i, false, now + 20);
        i += 1;
    }
    a.poll(now + 20);
    assert!(
        a.counter("tx_sequenced") > sent,
        "flow control holds A back for a dead peer"
    );
    assert_eq!(a.counter("stale_control"), 10 * recorded.len() as u64);
}
