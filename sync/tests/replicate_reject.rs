//! Forged, replayed, truncated and misaddressed datagrams create no state and are counted.

mod common;

use std::net::Ipv4Addr;

use common::*;
use tandem_dataplane::state::SyncId;
use tandem_sync::replay::CONTROL;
use tandem_sync::replicate::ins_record;
use tandem_sync::wire::{self, FrameBuilder, Record, SyncKey, DEFAULT_MTU};

fn ins_datagram_of(tap: &[Vec<u8>], id: SyncId) -> Vec<u8> {
    tap.iter()
        .find(|d| {
            wire::parse(d, &key()).is_ok_and(|f| {
                f.records()
                    .any(|r| matches!(r, Record::Ins(i) if i.id == id))
            })
        })
        .expect("the INS datagram")
        .clone()
}

#[test]
fn bad_datagrams_create_nothing_and_are_counted() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 200);
    let x = insert_tcp(&a.table, &a.worker, 1, true, 200);
    run(&mut a, &mut b, 200, 250);
    assert!(b.table.get_by_id(&x.id).is_some());
    let tap = a.t.take_tap();
    let genuine = ins_datagram_of(&tap, x.id);
    assert!(a.table.remove(&x, Origin::Local(&a.worker)));
    run(&mut a, &mut b, 250, 300);
    assert!(b.table.is_empty());
    let before = b.rep.counters().clone();

    let mut now = 300;
    let mut deliver = |b: &mut Node, d: &[u8], src: Ipv4Addr, ttl: u8| {
        b.t.inject(d, src, ttl);
        b.poll(now);
        now += 1;
    };

    // Replayed: the genuine INS of a state since deleted.
    deliver(&mut b, &genuine, A_ADDR, 255);
    // Forged: a bit flipped in the MAC, in the body; a datagram sealed with another key.
    let mut flipped = genuine.clone();
    *flipped.last_mut().unwrap() ^= 1;
    deliver(&mut b, &flipped, A_ADDR, 255);
    let mut body = genuine.clone();
    body[40] ^= 0x80;
    deliver(&mut b, &body, A_ADDR, 255);
    let y = insert_tcp(&a.table, &a.worker, 2, false, 300);
    let rec = ins_record(&y, 300);
    let mut forger = FrameBuilder::new(SyncKey::new(b"not the key").unwrap(), 1, 0xa001, 1480);
    forger.push_ins(&rec);
    let forged = forger.finish(1_000, 300).to_vec();
    deliver(&mut b, &forged, A_ADDR, 255);
    // Truncated.
    deliver(&mut b, &genuine[..genuine.len() - 4], A_ADDR, 255);
    deliver(&mut b, &genuine[..30], A_ADDR, 255);
    // Not from the link (TTL), not from the peer.
    let mut honest = FrameBuilder::new(key(), 1, 0xa001, DEFAULT_MTU);
    honest.push_ins(&rec);
    let fresh = honest.finish(1_000_000, 300).to_vec();
    deliver(&mut b, &fresh, A_ADDR, 64);
    deliver(&mut b, &fresh, Ipv4Addr::new(10, 99, 0, 77), 255);
    // State records in a control datagram (a fresh control number: outside the data window).
    let unseq = honest.finish(CONTROL | 1_000_000, 300).to_vec();
    deliver(&mut b, &unseq, A_ADDR, 255);
    // Sequence number 0 is not used.
    let zero = honest.finish(0, 300).to_vec();
    deliver(&mut b, &zero, A_ADDR, 255);
    // Our own host id.
    let mut me = FrameBuilder::new(key(), 2, 0xb001, DEFAULT_MTU);
    me.push_ins(&rec);
    deliver(&mut b, me.finish(5, 300), A_ADDR, 255);

    assert!(b.table.is_empty(), "a bad datagram created state");
    let after = b.rep.counters();
    let d = |f: fn(&tandem_sync::replicate::Counters) -> u64| f(after) - f(&before);
    assert_eq!(d(|c| c.replay), 1);
    assert_eq!(d(|c| c.bad_mac), 3);
    assert_eq!(d(|c| c.bad_length), 1);
    assert_eq!(d(|c| c.short), 1);
    assert_eq!(d(|c| c.bad_ttl), 1);
    assert_eq!(d(|c| c.bad_source), 1);
    assert_eq!(d(|c| c.unsequenced_state), 1);
    assert_eq!(d(|c| c.stale_control), 1);
    assert_eq!(d(|c| c.own_host), 1);
    assert_eq!(d(|c| c.applied_inserts), 0);
    assert_eq!(d(|c| c.rx_ins), 0);

    // The link still works: y arrives.
    let now0 = now;
    run(&mut a, &mut b, now0, now0 + 50);
    assert_eq!(b.table.len(), 1);
    assert_same(&a.table, &b.table);
}
