//! Two boxes replicating over the in-memory link: inserts, updates, deletes; loss and
//! reordering; a restarted peer's bulk update; the merge rule; journal overflow.

mod common;

use common::*;
use tandem_dataplane::state::{Direction, NewState};
use tandem_sync::journal::JournalConfig;
use tandem_sync::replicate::Event;
use tandem_sync::transport::{mem_pair, Faults};

/// Both up, bulk updates exchanged.
fn settled() -> (Node, Node) {
    let (mut a, mut b) = pair();
    assert!(a.rep.bulk_pending() && b.rep.bulk_pending());
    run(&mut a, &mut b, 0, 200);
    assert!(!a.rep.bulk_pending() && !b.rep.bulk_pending());
    assert_eq!(a.rep.status().bulk, "done");
    (a, b)
}

#[test]
fn inserts_updates_deletes_appear_on_the_peer_and_are_not_echoed() {
    let (mut a, mut b) = settled();
    let base = |n: &Node| {
        (
            n.counter("tx_ins"),
            n.counter("tx_upd_c"),
            n.counter("tx_del_c"),
        )
    };
    let b_before = base(&b);

    let mut states = Vec::new();
    for i in 0..40 {
        states.push(insert_tcp(&a.table, &a.worker, i, i % 2 == 0, 200));
    }
    for i in 0..10 {
        states.push(insert_udp(&a.table, &a.worker, i, 200));
    }
    run(&mut a, &mut b, 200, 250);
    assert_eq!(b.table.len(), 50);
    assert_same(&a.table, &b.table);

    // Updates: handshakes, data, UDP replies.
    for s in &states[..40] {
        establish(&a.table, &a.worker, s, 260);
    }
    run(&mut a, &mut b, 260, 300);
    for s in &states[..20] {
        client_data(&a.table, &a.worker, s, 1000, 300);
    }
    for s in &states[40..] {
        s.track_other(Direction::Reply, 90, 300);
        a.table.updated(s, &a.worker);
    }
    run(&mut a, &mut b, 300, 350);
    assert_same(&a.table, &b.table);
    assert_eq!(
        b.table
            .get_by_id(&states[0].id)
            .unwrap()
            .tracking()
            .src
            .seqlo,
        states[0].tracking().src.seqlo
    );

    // Deletes.
    for s in &states[..10] {
        assert!(a.table.remove(s, Origin::Local(&a.worker)));
    }
    run(&mut a, &mut b, 350, 400);
    assert_eq!(b.table.len(), 40);
    assert_same(&a.table, &b.table);

    assert_eq!(base(&b), b_before, "B sent state records back");
    assert_eq!(b.counter("applied_deletes"), 10);
    assert_eq!(b.counter("applied_inserts"), 50);
    assert_eq!(b.counter("stale"), 0);
    assert_eq!(a.counter("stale"), 0);
    assert!(b.journal.is_empty());
    // Nothing lost: no repair needed.
    assert_eq!(a.counter("retransmits") + b.counter("tx_nack"), 0);
    assert!(a.rep.status().unacked <= 1);
    let st = b.rep.status();
    assert_eq!(st.peer_host, Some((1, 0xa001)));
    assert_eq!(st.states, 40);
    assert_eq!(st.lag_ms, Some(0));
}

#[test]
fn loss_and_reordering_converge_once_traffic_stops() {
    let (mut a, mut b) = settled();
    let faults = |seed| Faults {
        drop_fraction: 0.05,
        reorder_fraction: 0.05,
        duplicate_fraction: 0.02,
        seed,
        ..Faults::default()
    };
    a.t.set_faults(faults(7));
    b.t.set_faults(faults(11));

    let mut live = Vec::new();
    let mut next = 0u32;
    let mut x = 0x1234_5678u64;
    let mut rnd = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    for now in 200..3200u64 {
        if now % 2 == 0 {
            let s = insert_tcp(&a.table, &a.worker, next, next.is_multiple_of(3), now);
            next += 1;
            live.push((s, 0u8));
        }
        if !live.is_empty() {
            let i = rnd(live.len());
            let (s, stage) = &mut live[i];
            match *stage {
                0 => establish(&a.table, &a.worker, s, now),
                _ => client_data(&a.table, &a.worker, s, 500, now),
            }
            *stage = 1;
        }
        if now % 5 == 0 && live.len() > 10 {
            let i = rnd(live.len());
            let (s, _) = live.swap_remove(i);
            assert!(a.table.remove(&s, Origin::Local(&a.worker)));
        }
        a.poll(now);
        b.poll(now);
    }
    // Traffic stops; the repair goes on.
    run(&mut a, &mut b, 3200, 6200);
    eprintln!(
        "A: {:?}\nB: {:?}",
        a.rep.counters().snapshot(),
        b.rep.counters().snapshot()
    );
    assert!(a.table.len() > 500);
    assert_eq!(b.table.len(), a.table.len());
    assert_same(&a.table, &b.table);
    assert!(b.counter("tx_nack") > 0, "no NACK sent: no loss?");
    assert!(a.counter("retransmits") > 0);
    assert_eq!(b.counter("bad_mac") + b.counter("malformed"), 0);
    assert!(b.counter("replay") > 0, "duplicates are counted as replays");
    assert_eq!(a.rep.status().unacked, 0);
}

#[test]
fn a_restarted_peer_gets_everything_by_bulk_update() {
    let (mut a, mut b) = settled();
    for i in 0..300 {
        let s = insert_tcp(&a.table, &a.worker, i, true, 200);
        if i % 2 == 0 {
            establish(&a.table, &a.worker, &s, 200);
        }
    }
    run(&mut a, &mut b, 200, 300);
    assert_same(&a.table, &b.table);

    // B dies (its queue with it) and comes back empty, with a new boot id.
    a.t.clear_inbox();
    let (ta, tb) = mem_pair(A_ADDR, B_ADDR);
    a.t = ta;
    b = node_with(config(2, 0xb002, A_ADDR), JournalConfig::default(), tb);
    assert!(b.rep.bulk_pending());
    assert_eq!(b.rep.status().bulk, "pending (try 1/12)");
    // Meanwhile A keeps working.
    run(&mut a, &mut b, 300, 302);
    for i in 300..350 {
        insert_tcp(&a.table, &a.worker, i, false, 302);
    }
    let mut done_at = None;
    for now in 302..2000 {
        a.poll(now);
        b.poll(now);
        if done_at.is_none() && !b.rep.bulk_pending() {
            done_at = Some(now);
        }
    }
    assert!(
        done_at.is_some_and(|t| t < 400),
        "bulk took until {done_at:?}"
    );
    assert!(b.events.contains(&Event::BulkDone));
    assert!(a.events.contains(&Event::PeerRestarted(2, 0xb002)));
    assert_eq!(b.table.len(), 350);
    assert_same(&a.table, &b.table);
    assert_eq!(b.counter("bulk_received"), 1);
    assert!(a.counter("bulk_sent") >= 1);
    assert_eq!(b.rep.status().bulk, "done");
}

#[test]
fn bulk_requests_give_up_and_lift_the_demotion() {
    let (ta, _tb) = mem_pair(A_ADDR, B_ADDR);
    let mut cfg = config(1, 1, B_ADDR);
    cfg.bulk_retries = 3;
    cfg.bulk_interval_ms = 100;
    let mut a = node_with(cfg, JournalConfig::default(), ta);
    a.poll(0);
    assert_eq!(a.rep.status().bulk, "pending (try 1/3)");
    for now in 1..250 {
        a.poll(now);
    }
    assert_eq!(a.rep.status().bulk, "pending (try 3/3)");
    assert!(a.rep.bulk_pending());
    for now in 250..400 {
        a.poll(now);
    }
    assert!(!a.rep.bulk_pending());
    assert_eq!(a.rep.status().bulk, "failed");
    assert_eq!(a.counter("bulk_failed"), 1);
    assert_eq!(a.counter("bulk_requests"), 3);
    assert!(a.events.contains(&Event::BulkFailed));
}

#[test]
fn a_stale_update_does_not_move_the_window_back_and_is_pushed_back() {
    let (mut a, mut b) = settled();
    let s = insert_tcp(&a.table, &a.worker, 1, true, 200);
    establish(&a.table, &a.worker, &s, 200);
    client_data(&a.table, &a.worker, &s, 1000, 201);
    run(&mut a, &mut b, 200, 250);
    assert_same(&a.table, &b.table);
    let on_b = b.table.get_by_id(&s.id).unwrap();
    let t0 = s.tracking();

    // B saw more of the client (it forwarded packets A did not: asymmetric path).
    on_b.modify(|t| t.src.seqlo = t0.src.seqlo.wrapping_add(5000));
    // A sends an update whose src is stale (older seqlo) and whose dst moved forward.
    s.modify(|t| t.dst.seqlo = t0.dst.seqlo.wrapping_add(700));
    a.table.updated(&s, &a.worker);
    run(&mut a, &mut b, 250, 300);
    let tb = on_b.tracking();
    assert_eq!(
        tb.src.seqlo,
        t0.src.seqlo.wrapping_add(5000),
        "src moved back"
    );
    assert_eq!(
        tb.dst.seqlo,
        t0.dst.seqlo.wrapping_add(700),
        "dst not applied"
    );
    assert_eq!(b.counter("stale"), 1);
    // B pushed its newer copy back: A now has B's src.
    assert_eq!(s.tracking().src.seqlo, t0.src.seqlo.wrapping_add(5000));
    assert_eq!(a.counter("stale"), 0);
    assert_same(&a.table, &b.table);

    // The other way round (opnsense/src#327): src newer, dst stale: dst must not be copied.
    let t1 = s.tracking();
    on_b.modify(|t| t.dst.seqlo = t1.dst.seqlo.wrapping_add(3000));
    s.modify(|t| t.src.seqlo = t1.src.seqlo.wrapping_add(100));
    a.table.updated(&s, &a.worker);
    run(&mut a, &mut b, 300, 350);
    let tb = on_b.tracking();
    assert_eq!(
        tb.src.seqlo,
        t1.src.seqlo.wrapping_add(100),
        "src not applied"
    );
    assert_eq!(
        tb.dst.seqlo,
        t1.dst.seqlo.wrapping_add(3000),
        "stale dst copied (opnsense#327)"
    );
    assert_eq!(b.counter("stale"), 2);
    assert_eq!(s.tracking().dst.seqlo, t1.dst.seqlo.wrapping_add(3000));
    assert_same(&a.table, &b.table);
}

#[test]
fn a_journal_overflow_is_repaired_by_a_full_walk() {
    let (ta, tb) = mem_pair(A_ADDR, B_ADDR);
    let small = JournalConfig {
        capacity: 8,
        maxupd: 128,
    };
    let mut a = node_with(config(1, 0xa001, B_ADDR), small, ta);
    let mut b = node_with(config(2, 0xb001, A_ADDR), JournalConfig::default(), tb);
    run(&mut a, &mut b, 0, 200);
    let doomed = insert_tcp(&a.table, &a.worker, 9999, false, 200);
    run(&mut a, &mut b, 200, 220);
    assert!(b.table.get_by_id(&doomed.id).is_some());

    // 100 inserts without a drain: the queues overflow, then a delete is lost too.
    for i in 0..100 {
        insert_tcp(&a.table, &a.worker, i, i % 2 == 1, 220);
    }
    assert!(a.table.remove(&doomed, Origin::Local(&a.worker)));
    assert!(a.journal.overflow() > 0);
    run(&mut a, &mut b, 220, 400);
    assert!(a.events.contains(&Event::Resync));
    assert_eq!(a.counter("resyncs"), 1);
    assert!(a.counter("journal_overflow") > 0);
    assert_eq!(b.table.len(), 100);
    assert!(
        b.table.get_by_id(&doomed.id).is_none(),
        "lost delete not purged"
    );
    assert_eq!(b.counter("bulk_purged"), 1);
    assert_same(&a.table, &b.table);
}

#[test]
fn a_large_burst_with_loss_stays_inside_the_replay_window() {
    let (mut a, mut b) = settled();
    a.t.set_faults(Faults {
        drop_fraction: 0.05,
        seed: 3,
        ..Faults::default()
    });
    // 4000 new states in one go: 308 datagrams, more than the 64-wide window.
    for i in 0..4000 {
        insert_tcp(&a.table, &a.worker, i, i % 2 == 0, 200);
    }
    run(&mut a, &mut b, 200, 1200);
    assert_eq!(b.table.len(), 4000);
    assert_same(&a.table, &b.table);
    assert_eq!(
        b.counter("window_lost"),
        0,
        "flow control let a gap fall out"
    );
    assert_eq!(a.counter("retransmit_missed"), 0);
    assert!(a.counter("retransmits") > 0);
    assert_eq!(a.journal.overflow(), 0);
}

#[test]
fn a_bulk_of_20k_states_is_paced_and_complete() {
    let (mut a, _) = settled();
    for i in 0..20_000 {
        insert_tcp(&a.table, &a.worker, i, i % 2 == 0, 200);
    }
    // B restarts.
    let (ta, tb) = mem_pair(A_ADDR, B_ADDR);
    a.t = ta;
    a.t.set_faults(Faults {
        drop_fraction: 0.02,
        reorder_fraction: 0.02,
        seed: 5,
        ..Faults::default()
    });
    let mut b = node_with(config(2, 0xb003, A_ADDR), JournalConfig::default(), tb);
    let mut done = None;
    for now in 200..5000 {
        a.poll(now);
        b.poll(now);
        if done.is_none() && !b.rep.bulk_pending() {
            done = Some(now);
        }
        if now % 50 == 0 && std::env::var_os("TRACE").is_some() {
            eprintln!("{now} {:?} {}", a.rep.status(), b.table.len());
        }
    }
    assert!(done.is_some(), "{:?}", b.rep.status());
    assert_eq!(b.table.len(), 20_000);
    assert_same(&a.table, &b.table);
    assert_eq!(b.counter("window_lost"), 0);
    eprintln!(
        "bulk of 20k states done after {} ms; A: {:?}\nB: {:?}",
        done.unwrap() - 200,
        a.rep.counters().snapshot(),
        b.rep.counters().snapshot()
    );
}

#[test]
fn a_partition_longer_than_the_window_is_repaired_by_a_walk() {
    let (mut a, mut b) = settled();
    let mut states: Vec<_> = (0..200)
        .map(|i| insert_tcp(&a.table, &a.worker, i, false, 200))
        .collect();
    run(&mut a, &mut b, 200, 250);
    assert_same(&a.table, &b.table);

    // The sync link goes down for 5 s of traffic: 400 datagrams, far more than the window
    // and the ring.
    a.t.down = true;
    b.t.down = true;
    let mut next = 1000;
    for now in 250..5250u64 {
        if now % 10 == 0 {
            for _ in 0..4 {
                states.push(insert_tcp(&a.table, &a.worker, next, true, now));
                next += 1;
            }
            let gone = states.swap_remove((now as usize / 10) % states.len());
            assert!(a.table.remove(&gone, Origin::Local(&a.worker)));
        }
        a.poll(now);
        b.poll(now);
    }
    a.t.down = false;
    b.t.down = false;
    run(&mut a, &mut b, 5250, 7000);
    assert_same(&a.table, &b.table);
    assert_eq!(b.table.len(), a.table.len());
    assert!(b.counter("window_lost") >= 1);
    assert!(
        b.counter("bulk_purged") > 0,
        "deletes lost in the partition not purged"
    );
    assert!(
        !b.rep.bulk_pending(),
        "a quiet bulk request must not demote"
    );
    assert!(a.counter("bulk_sent") >= 2);
}

/// The point of the exercise: the backup carries the connection on (NAT mapping and TCP window
/// included); the primary, restarted empty, gets the connection back with the window the
/// backup moved.
#[test]
fn the_backup_carries_the_connection_on_and_hands_it_back() {
    let (mut a, mut b) = settled();
    let s = insert_tcp(&a.table, &a.worker, 7, true, 200);
    establish(&a.table, &a.worker, &s, 200);
    for k in 0..5 {
        client_data(&a.table, &a.worker, &s, 1400, 201 + k);
    }
    run(&mut a, &mut b, 200, 250);

    // A dies. The server's answer reaches B on the outside: found by the NATed reply key.
    let (on_b, dir) = b
        .table
        .lookup(&s.wire().reversed())
        .expect("NAT mapping on B");
    assert_eq!(dir, Direction::Reply);
    assert_eq!(on_b.id, s.id);
    let t = on_b.tracking();
    let server_ack = tandem_dataplane::state::TcpSegment {
        flags: tandem_dataplane::state::tcp::flags::ACK,
        seq: t.dst.seqlo,
        ack: t.src.seqlo,
        win: 65_535,
        ..Default::default()
    };
    on_b.track_tcp(Direction::Reply, &server_ack, 52, 300)
        .expect("B accepts the server's next segment: no reset");
    b.table.updated(&on_b, &b.worker);
    client_data(&b.table, &b.worker, &on_b, 1400, 301);
    let moved = on_b.tracking();
    assert_ne!(moved.src.seqlo, s.tracking().src.seqlo);

    // A comes back empty, with a new boot id, and gets it all from B.
    let (ta, tb) = mem_pair(A_ADDR, B_ADDR);
    b.t = tb;
    let mut a = node_with(config(1, 0xa002, B_ADDR), JournalConfig::default(), ta);
    run(&mut a, &mut b, 302, 600);
    assert!(!a.rep.bulk_pending());
    let back = a
        .table
        .get_by_id(&s.id)
        .expect("the connection is back on A");
    assert_eq!(back.tracking().src, moved.src);
    assert_eq!(back.tracking().dst, moved.dst);
    assert_eq!(back.wire(), s.wire());
    assert_same(&b.table, &a.table);
}

/// Known issue, for the dataplane: a restarted box's `StateTable` numbers its states from 1
/// again, so its new states collide with the ids of its previous run that the peer handed
/// back in the bulk update (pf seeds its ids from the boot time for this reason).
#[test]
fn a_restarted_box_does_not_reuse_the_ids_of_its_previous_run() {
    let (mut a, mut b) = settled();
    for i in 0..10 {
        insert_tcp(&a.table, &a.worker, i, false, 200);
    }
    run(&mut a, &mut b, 200, 250);
    let (ta, tb) = mem_pair(A_ADDR, B_ADDR);
    b.t = tb;
    let mut a = node_with(config(1, 0xa002, B_ADDR), JournalConfig::default(), ta);
    run(&mut a, &mut b, 250, 500);
    assert_eq!(a.table.len(), 10);
    let new = NewState::first_packet(tcp_key(500), 7, None, 0);
    assert!(
        a.table.insert(new, 500, &a.worker).is_ok(),
        "id 1 of creator 1 is taken"
    );
}

/// An idle pair still hears each other (pfsync would be silent): each sends a keepalive after
/// `keepalive_ms` without sending, and the other's status says when it last heard it. A link
/// that goes down shows as a peer heard longer and longer ago.
#[test]
fn an_idle_peer_is_still_heard_and_a_dead_link_shows() {
    let (mut a, mut b) = settled();
    let keepalive = a.rep.config().keepalive_ms;
    assert_eq!(keepalive, 1000);
    let sent = a.counter("tx_keepalive");
    run(&mut a, &mut b, 200, 10_200);
    // About one a second each (nothing else is sent: no state changes).
    let n = a.counter("tx_keepalive") - sent;
    assert!((9..=11).contains(&n), "{n} keepalives in 10 s");
    for node in [&a, &b] {
        let heard = node.rep.status().peer_heard.expect("peer heard");
        assert!(10_199 - heard <= keepalive, "last heard at {heard}");
    }
    // No keepalive mistaken for data: nothing to retransmit, the tables as they were.
    assert_eq!(a.rep.status().unacked, 0);
    assert_eq!(a.counter("retransmits"), 0);

    // The link goes down (both ways): the last heard time stops.
    a.t.down = true;
    b.t.down = true;
    run(&mut a, &mut b, 10_200, 15_200);
    for node in [&a, &b] {
        let heard = node.rep.status().peer_heard.expect("peer heard before");
        assert!(15_199 - heard >= 4000, "still heard at {heard}");
    }
    // Back up: heard again within one keepalive.
    a.t.down = false;
    b.t.down = false;
    run(&mut a, &mut b, 15_200, 16_300);
    for node in [&a, &b] {
        let heard = node.rep.status().peer_heard.expect("peer heard");
        assert!(heard >= 15_200, "not heard again: {heard}");
    }
}

/// A one-way sync link (our datagrams lost, the peer's arriving): the peer's keepalives must
/// not pass for acknowledgements, or flow control would hold the journal back for as long as
/// the peer lives, and the states would pile up unsent instead of going out as pfsync sends
/// (to nobody, until the link heals).
#[test]
fn keepalives_from_a_peer_that_does_not_hear_us_do_not_hold_flow_control() {
    let (mut a, mut b) = settled();
    a.t.down = true;
    let mut i = 0;
    for now in 200..4200 {
        for _ in 0..5 {
            insert_tcp(&a.table, &a.worker, i, false, now);
            i += 1;
        }
        a.poll(now);
        b.poll(now);
    }
    assert!(b.counter("tx_keepalive") >= 3);
    // Every entry drained and sent: the flow control's 48 datagrams in flight (~600 entries)
    // were lifted once the peer's ACKs stopped for peer_dead_ms.
    assert_eq!(a.counter("journal_entries"), 20_000);
}

/// A box restarts and its first datagrams are lost: the peer's keepalives (ACKs) must not
/// acknowledge them by a number heard from the old boot, or they would never be repaired.
#[test]
fn a_restarted_peer_repairs_its_first_lost_datagrams_despite_keepalives() {
    let (a, mut b) = settled();
    let old_next = a.rep.status().next_seq;
    drop(a);
    let (ta, tb) = mem_pair(A_ADDR, B_ADDR);
    b.t = tb;
    let mut a = node_with(config(1, 0xa002, B_ADDR), JournalConfig::default(), ta);
    a.t.down = true;
    let mut now = 200;
    let n = u32::try_from(old_next).unwrap() + 3;
    for i in 0..n {
        insert_tcp(&a.table, &a.worker, i, false, now);
        run(&mut a, &mut b, now, now + 30);
        now += 30;
    }
    run(&mut a, &mut b, now, now + 1500);
    now += 1500;
    a.t.down = false;
    run(&mut a, &mut b, now, now + 20_000);
    assert_eq!(b.table.len(), usize::try_from(n).unwrap());
    assert_eq!(a.rep.status().bulk, "done");
    assert_eq!(a.rep.status().unacked, 0);
}

/// The other one-way link: the peer hears us, we do not hear it. Our unacknowledged datagrams
/// are retransmitted every 200 ms, and the peer drops those as duplicates: they must not stand
/// in for keepalives, or the peer would call us silent although our direction works.
#[test]
fn retransmissions_do_not_stand_in_for_keepalives() {
    let (mut a, mut b) = settled();
    b.t.down = true;
    for i in 0..5 {
        insert_tcp(&a.table, &a.worker, i, false, 200);
    }
    run(&mut a, &mut b, 200, 10_200);
    assert!(a.counter("retransmits") > 0);
    assert!(
        a.counter("tx_keepalive") >= 8,
        "{}",
        a.counter("tx_keepalive")
    );
    let heard = b.rep.status().peer_heard.expect("A heard");
    assert!(10_199 - heard <= 1000, "B last heard A at {heard}");
    // And A, which does not hear B, says so.
    let heard = a.rep.status().peer_heard.expect("B heard before");
    assert!(10_199 - heard >= 9000, "A last heard B at {heard}");
}
