use super::*;

const LAN: IfIndex = 0;
const WAN: IfIndex = 1;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, last])
}

/// Events of one poll, owned.
#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Ready(IfIndex, MacAddr, Vec<u8>),
    Request(IfIndex, Ipv4Addr),
    Dropped(Ipv4Addr, u32),
}

fn poll(q: &mut PendingQueues, c: &NeighCache, now: u64) -> Vec<Ev> {
    let mut out = Vec::new();
    q.poll(c, now, &mut |e| match e {
        PendingEvent::Ready {
            out_if, mac, frame, ..
        } => {
            frame[..6].copy_from_slice(&mac.0);
            out.push(Ev::Ready(out_if, mac, frame.to_vec()));
        }
        PendingEvent::SendRequest { out_if, target } => out.push(Ev::Request(out_if, target)),
        PendingEvent::Dropped {
            next_hop, count, ..
        } => out.push(Ev::Dropped(next_hop, count)),
    });
    out
}

fn frame(tag: u8, len: usize) -> Vec<u8> {
    let mut f = vec![tag; len];
    f[..6].fill(0);
    f
}

#[test]
fn the_cache_stops_learning_new_neighbours_at_its_limit() {
    let c = NeighCache::with_limit(NeighCache::DEFAULT_REACHABLE_MS, 4);
    for i in 0..4u8 {
        let a = Ipv4Addr::new(192, 168, 0, 100 + i);
        assert_eq!(c.learn(LAN, a, mac(i), 10), Learned::New);
    }
    assert_eq!(c.learn(LAN, ip("192.168.0.200"), mac(9), 11), Learned::Full);
    assert_eq!(c.len(), 4);
    assert_eq!(c.lookup(LAN, ip("192.168.0.200")), None);
    // Known neighbours are still refreshed and moved.
    assert_eq!(
        c.learn(LAN, ip("192.168.0.100"), mac(0), 12),
        Learned::Refreshed
    );
    assert_eq!(
        c.learn(LAN, ip("192.168.0.101"), mac(7), 12),
        Learned::Changed { old: mac(1) }
    );
    // Another interface has its own room: a flood on the LAN leaves the WAN gateway learnable.
    assert_eq!(c.learn(WAN, ip("172.25.46.1"), mac(5), 13), Learned::New);
    // Room again once one goes, by removal or by age.
    c.remove(LAN, ip("192.168.0.102"));
    assert_eq!(c.learn(LAN, ip("192.168.0.200"), mac(9), 13), Learned::New);
    assert_eq!(c.learn(LAN, ip("192.168.0.201"), mac(9), 14), Learned::Full);
    assert_eq!(c.expire(13 + NeighCache::DEFAULT_REACHABLE_MS), 5);
    assert_eq!(c.learn(LAN, ip("192.168.0.201"), mac(9), 14), Learned::New);
    c.flush_if(LAN);
    for i in 0..4u8 {
        let a = Ipv4Addr::new(192, 168, 1, i);
        assert_eq!(c.learn(LAN, a, mac(i), 20), Learned::New);
    }
}

#[test]
fn cache_learn_lookup_refresh_change() {
    let c = NeighCache::default();
    assert_eq!(c.lookup(LAN, ip("192.168.0.100")), None);
    assert_eq!(c.learn(LAN, ip("192.168.0.100"), mac(1), 10), Learned::New);
    assert_eq!(c.lookup(LAN, ip("192.168.0.100")), Some(mac(1)));
    // Keyed by interface too.
    assert_eq!(c.lookup(WAN, ip("192.168.0.100")), None);
    assert_eq!(
        c.learn(LAN, ip("192.168.0.100"), mac(1), 20),
        Learned::Refreshed
    );
    assert_eq!(
        c.get(LAN, ip("192.168.0.100")).map(|e| e.updated_ms),
        Some(20)
    );
    assert_eq!(
        c.learn(LAN, ip("192.168.0.100"), mac(2), 30),
        Learned::Changed { old: mac(1) }
    );
    assert_eq!(c.lookup(LAN, ip("192.168.0.100")), Some(mac(2)));
    assert_eq!(c.len(), 1);
    assert_eq!(
        c.remove(LAN, ip("192.168.0.100")).map(|e| e.mac),
        Some(mac(2))
    );
    assert!(c.is_empty());
}

#[test]
fn cache_ageing_keeps_refreshed_entries() {
    let c = NeighCache::new(1000);
    c.learn(LAN, ip("192.168.0.1"), mac(1), 0);
    c.learn(LAN, ip("192.168.0.2"), mac(2), 0);
    c.learn(WAN, ip("172.25.46.1"), mac(3), 0);
    assert_eq!(c.expire(999), 0);
    c.learn(LAN, ip("192.168.0.2"), mac(2), 900); // refreshed
    assert_eq!(c.expire(1000), 2);
    assert_eq!(c.lookup(LAN, ip("192.168.0.1")), None);
    assert_eq!(c.lookup(LAN, ip("192.168.0.2")), Some(mac(2)));
    assert_eq!(c.expire(1899), 0);
    assert_eq!(c.expire(1900), 1);
    c.learn(LAN, ip("192.168.0.1"), mac(1), 0);
    c.learn(WAN, ip("172.25.46.1"), mac(3), 0);
    assert_eq!(c.flush_if(WAN), 1);
    assert_eq!(c.snapshot().len(), 1);
}

#[test]
fn memo_follows_changes_and_removals() {
    let c = NeighCache::new(1000);
    let mut m = NeighMemo::new(4);
    let gw = ip("172.25.46.1");
    assert_eq!(m.lookup(&c, WAN, gw), None);
    let g0 = c.generation();
    c.learn(WAN, gw, mac(1), 0);
    assert_eq!(c.generation(), g0, "a new entry invalidates nothing");
    assert_eq!(m.lookup(&c, WAN, gw), Some(mac(1)));
    c.learn(WAN, gw, mac(1), 10);
    assert_eq!(c.generation(), g0, "nor does a refresh");
    assert_eq!(m.lookup(&c, WAN, gw), Some(mac(1)));
    // The gateway's MAC changes (its CARP master moved): the memo sees it at once.
    c.learn(WAN, gw, mac(2), 20);
    assert_eq!(m.lookup(&c, WAN, gw), Some(mac(2)));
    assert_eq!(m.lookup(&c, LAN, gw), None);
    c.remove(WAN, gw);
    assert_eq!(m.lookup(&c, WAN, gw), None);
    c.learn(WAN, gw, mac(3), 30);
    assert_eq!(m.lookup(&c, WAN, gw), Some(mac(3)));
    assert_eq!(c.expire(1030), 1);
    assert_eq!(m.lookup(&c, WAN, gw), None);
    // Colliding neighbours in a tiny memo still answer right.
    let c = NeighCache::default();
    for i in 0..50u8 {
        c.learn(LAN, Ipv4Addr::new(192, 168, 0, i), mac(i), 0);
    }
    for _ in 0..2 {
        for i in 0..50u8 {
            assert_eq!(
                m.lookup(&c, LAN, Ipv4Addr::new(192, 168, 0, i)),
                Some(mac(i))
            );
        }
    }
    // One address on two interfaces: two neighbours, never mistaken for each other.
    let twice = Ipv4Addr::new(192, 168, 0, 7);
    c.learn(WAN, twice, mac(200), 0);
    for _ in 0..3 {
        assert_eq!(m.lookup(&c, LAN, twice), Some(mac(7)));
        assert_eq!(m.lookup(&c, WAN, twice), Some(mac(200)));
    }
}

#[test]
fn enqueue_then_learn_releases_in_order() {
    let c = NeighCache::default();
    let mut q = PendingQueues::new(PendingConfig::default());
    let hop = ip("192.168.0.100");
    assert!(q.is_idle());
    assert_eq!(
        q.enqueue(LAN, hop, &frame(1, 60), 0, false),
        EnqueueOutcome::Queued { send_request: true }
    );
    assert_eq!(
        q.enqueue(LAN, hop, &frame(2, 1514), 5, false),
        EnqueueOutcome::Queued {
            send_request: false
        }
    );
    assert_eq!(
        q.enqueue(LAN, hop, &frame(3, 64), 6, false),
        EnqueueOutcome::Queued {
            send_request: false
        }
    );
    // Another next hop, not resolved: stays queued.
    let other = ip("192.168.0.101");
    assert_eq!(
        q.enqueue(LAN, other, &frame(9, 60), 7, false),
        EnqueueOutcome::Queued { send_request: true }
    );
    assert_eq!(q.queued_frames(), 4);
    assert_eq!(poll(&mut q, &c, 10), vec![]);

    c.learn(LAN, hop, mac(7), 20);
    let ev = poll(&mut q, &c, 20);
    let mut want = Vec::new();
    for (tag, len) in [(1u8, 60usize), (2, 1514), (3, 64)] {
        let mut f = frame(tag, len);
        f[..6].copy_from_slice(&mac(7).0);
        want.push(Ev::Ready(LAN, mac(7), f));
    }
    assert_eq!(ev, want);
    assert_eq!(q.queued_frames(), 1);
    assert_eq!(q.stats().released, 3);
    assert!(!q.is_idle());
    // Same address on another interface is another neighbour.
    c.learn(WAN, other, mac(8), 30);
    assert_eq!(poll(&mut q, &c, 30), vec![]);
    c.learn(LAN, other, mac(8), 31);
    assert_eq!(
        poll(&mut q, &c, 31),
        vec![Ev::Ready(LAN, mac(8), {
            let mut f = frame(9, 60);
            f[..6].copy_from_slice(&mac(8).0);
            f
        })]
    );
    assert!(q.is_idle());
    assert_eq!(q.queued_frames(), 0);
    // Resolved and freed: a new miss (after ageing, say) starts a new resolution.
    assert_eq!(
        q.enqueue(LAN, hop, &frame(4, 60), 40, false),
        EnqueueOutcome::Queued { send_request: true }
    );
}

#[test]
fn queue_bound() {
    let c = NeighCache::default();
    let mut q = PendingQueues::new(PendingConfig {
        queue_len: 8,
        ..PendingConfig::default()
    });
    let hop = ip("192.168.0.100");
    for i in 0..8u8 {
        assert!(matches!(
            q.enqueue(LAN, hop, &frame(i, 60), 0, false),
            EnqueueOutcome::Queued { .. }
        ));
    }
    assert_eq!(
        q.enqueue(LAN, hop, &frame(8, 60), 0, false),
        EnqueueOutcome::QueueFull
    );
    assert_eq!(
        q.enqueue(LAN, hop, &frame(9, 60), 0, false),
        EnqueueOutcome::QueueFull
    );
    let s = q.stats();
    assert_eq!((s.queued, s.queue_full, s.requests), (8, 2, 1));
    c.learn(LAN, hop, mac(1), 1);
    let ev = poll(&mut q, &c, 1);
    // The first eight, in order.
    let tags: Vec<u8> = ev
        .iter()
        .map(|e| match e {
            Ev::Ready(_, _, f) => f[6],
            _ => 255,
        })
        .collect();
    assert_eq!(tags, (0..8).collect::<Vec<u8>>());
}

#[test]
fn pool_exhaustion_drops_but_resolution_goes_on() {
    let c = NeighCache::default();
    let cfg = PendingConfig {
        pool_frames: 3,
        ..PendingConfig::default()
    };
    let mut q = PendingQueues::new(cfg);
    let (a, b) = (ip("192.168.0.1"), ip("192.168.0.2"));
    for _ in 0..3 {
        assert!(matches!(
            q.enqueue(LAN, a, &frame(1, 60), 0, false),
            EnqueueOutcome::Queued { .. }
        ));
    }
    assert_eq!(
        q.enqueue(LAN, a, &frame(1, 60), 0, false),
        EnqueueOutcome::PoolExhausted
    );
    // A new next hop with the pool empty: dropped, but its first request comes from poll.
    assert_eq!(
        q.enqueue(LAN, b, &frame(2, 60), 0, false),
        EnqueueOutcome::PoolExhausted
    );
    assert_eq!(q.stats().pool_exhausted, 2);
    assert_eq!(poll(&mut q, &c, 0), vec![Ev::Request(LAN, b)]);
    // Releasing a's frames gives the buffers back.
    c.learn(LAN, a, mac(1), 1);
    assert_eq!(poll(&mut q, &c, 1).len(), 3);
    assert_eq!(
        q.enqueue(LAN, b, &frame(2, 60), 2, false),
        EnqueueOutcome::Queued {
            send_request: false
        }
    );
    // Oversized frames never enter the pool.
    assert_eq!(
        q.enqueue(LAN, b, &vec![0u8; FRAME_SIZE + 1], 2, false),
        EnqueueOutcome::TooLarge
    );
}

#[test]
fn dropped_first_frame_defers_first_request_to_poll() {
    let c = NeighCache::default();
    let mut q = PendingQueues::new(PendingConfig {
        queue_len: 0,
        ..PendingConfig::default()
    });
    let hop = ip("192.168.0.1");
    assert_eq!(
        q.enqueue(LAN, hop, &frame(1, 60), 0, false),
        EnqueueOutcome::QueueFull
    );
    assert_eq!(poll(&mut q, &c, 0), vec![Ev::Request(LAN, hop)]);
    assert_eq!(poll(&mut q, &c, 999), vec![]);
    assert_eq!(poll(&mut q, &c, 1000), vec![Ev::Request(LAN, hop)]);
}

#[test]
fn retries_then_failure_then_hold_down() {
    let c = NeighCache::default();
    let mut q = PendingQueues::new(PendingConfig::default()); // 3 tries, 1 s, 20 s hold-down
    let hop = ip("172.25.46.9");
    assert_eq!(
        q.enqueue(WAN, hop, &frame(1, 60), 0, false),
        EnqueueOutcome::Queued { send_request: true }
    );
    assert_eq!(poll(&mut q, &c, 1), vec![]);
    assert_eq!(
        q.enqueue(WAN, hop, &frame(2, 60), 500, false),
        EnqueueOutcome::Queued {
            send_request: false
        }
    );
    assert_eq!(poll(&mut q, &c, 999), vec![]);
    assert_eq!(poll(&mut q, &c, 1000), vec![Ev::Request(WAN, hop)]);
    assert_eq!(poll(&mut q, &c, 1001), vec![]);
    assert_eq!(poll(&mut q, &c, 1999), vec![]);
    assert_eq!(poll(&mut q, &c, 2000), vec![Ev::Request(WAN, hop)]);
    assert_eq!(poll(&mut q, &c, 2999), vec![]);
    // No fourth request: failure, both frames dropped and counted.
    assert_eq!(poll(&mut q, &c, 3000), vec![Ev::Dropped(hop, 2)]);
    let s = q.stats();
    assert_eq!(
        (s.requests, s.resolve_failed, s.failed_next_hops),
        (3, 2, 1)
    );
    assert_eq!(q.queued_frames(), 0);
    // Hold-down: dropped at once, no ARP, nothing from poll.
    assert_eq!(
        q.enqueue(WAN, hop, &frame(3, 60), 3001, false),
        EnqueueOutcome::Failed
    );
    assert_eq!(poll(&mut q, &c, 10_000), vec![]);
    assert_eq!(
        q.enqueue(WAN, hop, &frame(3, 60), 22_999, false),
        EnqueueOutcome::Failed
    );
    assert_eq!(q.stats().held_down, 2);
    assert_eq!(q.stats().requests, 3);
    // Hold-down over: a new attempt.
    assert_eq!(
        q.enqueue(WAN, hop, &frame(4, 60), 23_000, false),
        EnqueueOutcome::Queued { send_request: true }
    );
    assert_eq!(poll(&mut q, &c, 24_000), vec![Ev::Request(WAN, hop)]);
}

#[test]
fn hold_down_ends_when_neighbour_is_learnt() {
    let c = NeighCache::default();
    let cfg = PendingConfig {
        tries: 1,
        ..PendingConfig::default()
    };
    let mut q = PendingQueues::new(cfg);
    let hop = ip("172.25.46.9");
    q.enqueue(WAN, hop, &frame(1, 60), 0, false);
    assert_eq!(poll(&mut q, &c, 1000), vec![Ev::Dropped(hop, 1)]);
    assert_eq!(
        q.enqueue(WAN, hop, &frame(1, 60), 1001, false),
        EnqueueOutcome::Failed
    );
    c.learn(WAN, hop, mac(5), 1500); // a gratuitous ARP from it
    assert_eq!(poll(&mut q, &c, 1500), vec![]);
    assert!(q.is_idle());
}

#[test]
fn next_hop_limit_and_eviction_of_held_down() {
    let c = NeighCache::default();
    let cfg = PendingConfig {
        max_next_hops: 2,
        tries: 1,
        ..PendingConfig::default()
    };
    let mut q = PendingQueues::new(cfg);
    let hops = [ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")];
    assert!(matches!(
        q.enqueue(LAN, hops[0], &frame(1, 60), 0, false),
        EnqueueOutcome::Queued { .. }
    ));
    assert!(matches!(
        q.enqueue(LAN, hops[1], &frame(1, 60), 10, false),
        EnqueueOutcome::Queued { .. }
    ));
    assert_eq!(
        q.enqueue(LAN, hops[2], &frame(1, 60), 20, false),
        EnqueueOutcome::TooManyNextHops
    );
    // Both fail; the one held down longest gives its slot up.
    assert_eq!(poll(&mut q, &c, 1000), vec![Ev::Dropped(hops[0], 1)]);
    assert_eq!(poll(&mut q, &c, 1010), vec![Ev::Dropped(hops[1], 1)]);
    assert_eq!(
        q.enqueue(LAN, hops[2], &frame(1, 60), 1020, false),
        EnqueueOutcome::Queued { send_request: true }
    );
    assert_eq!(
        q.enqueue(LAN, hops[1], &frame(1, 60), 1030, false),
        EnqueueOutcome::Failed
    );
    // hops[0] was evicted: it starts over, evicting hops[1], the last one held down.
    assert_eq!(
        q.enqueue(LAN, hops[0], &frame(1, 60), 1040, false),
        EnqueueOutcome::Queued { send_request: true }
    );
    // Both slots resolving: no room.
    assert_eq!(
        q.enqueue(LAN, hops[1], &frame(1, 60), 1050, false),
        EnqueueOutcome::TooManyNextHops
    );
    assert_eq!(q.stats().too_many_next_hops, 2);
    assert_eq!(q.flush_if(LAN), 2);
    assert!(q.is_idle());
}

/// Found by an attacker's review: a host sending to a stream of dead on-link addresses kept
/// every slot resolving, and a new master could not resolve its gateway.
/// A frame with priority takes the oldest slot without; slots with priority are never taken.
#[test]
fn a_frame_with_priority_takes_the_oldest_slot_without() {
    let c = NeighCache::default();
    let cfg = PendingConfig {
        max_next_hops: 3,
        ..PendingConfig::default()
    };
    let mut q = PendingQueues::new(cfg);
    let dead = [ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")];
    for (t, hop) in dead.iter().enumerate() {
        assert!(matches!(
            q.enqueue(WAN, *hop, &frame(1, 60), t as u64, false),
            EnqueueOutcome::Queued { .. }
        ));
    }
    // A second frame to the oldest: its slot holds two.
    assert!(matches!(
        q.enqueue(WAN, dead[0], &frame(2, 60), 3, false),
        EnqueueOutcome::Queued { .. }
    ));
    // Without priority: no room, as before.
    let other = ip("10.0.0.9");
    assert_eq!(
        q.enqueue(WAN, other, &frame(1, 60), 4, false),
        EnqueueOutcome::TooManyNextHops
    );
    // With priority: the oldest resolution goes, its two frames reported dropped.
    let gateway = ip("10.0.0.254");
    assert_eq!(
        q.enqueue(WAN, gateway, &frame(3, 60), 5, true),
        EnqueueOutcome::Queued { send_request: true }
    );
    assert_eq!(q.stats().evicted, 2);
    assert_eq!(poll(&mut q, &c, 6), vec![Ev::Dropped(dead[0], 2)]);
    // The gateway answers: its frame goes.
    c.learn(WAN, gateway, mac(7), 7);
    assert_eq!(
        poll(&mut q, &c, 8),
        vec![Ev::Ready(WAN, mac(7), {
            let mut f = frame(3, 60);
            f[..6].copy_from_slice(&mac(7).0);
            f
        })]
    );
    // A slot a frame with priority asked for is never taken, even when that frame joined an
    // existing resolution (dead[2]): then only dead[1] can go, and after it nothing.
    assert!(matches!(
        q.enqueue(WAN, ip("10.0.0.21"), &frame(4, 60), 9, true),
        EnqueueOutcome::Queued { .. }
    ));
    assert!(matches!(
        q.enqueue(WAN, dead[2], &frame(4, 60), 10, true),
        EnqueueOutcome::Queued { .. }
    ));
    assert_eq!(q.stats().evicted, 2, "joining evicts nothing");
    assert!(matches!(
        q.enqueue(WAN, ip("10.0.0.22"), &frame(4, 60), 11, true),
        EnqueueOutcome::Queued { .. }
    ));
    assert_eq!(poll(&mut q, &c, 12), vec![Ev::Dropped(dead[1], 1)]);
    assert_eq!(
        q.enqueue(WAN, ip("10.0.0.30"), &frame(5, 60), 13, true),
        EnqueueOutcome::TooManyNextHops
    );
    assert_eq!(q.stats().evicted, 3);
}
