//! State table tests: keys and directions, NAT, the journal hook, concurrency; limits and expiry
//! in `limits`.

mod catch_up;
mod limits;

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::key::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use super::src_nodes::{ConnRate, SrcLimits};
use super::table::EMBRYONIC_GRACE;
use super::tcp::flags::{ACK, SYN};
use super::*;
use crate::journal::{CountingJournal, Origin};

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 100);
const SERVER: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 100);
const SEC: u64 = 1000;

fn tcp_key(sport: u16) -> FlowKey {
    FlowKey::new(PROTO_TCP, CLIENT, sport, SERVER, 80)
}

fn syn(seq: u32) -> TcpSegment {
    TcpSegment {
        flags: SYN,
        seq,
        win: 65_535,
        ..TcpSegment::default()
    }
}

fn syn_state(sport: u16) -> NewState {
    NewState::first_packet(tcp_key(sport), 7, Some(&syn(1000)), 60)
}

fn table(limit: u32) -> StateTable {
    StateTable::new(TableConfig {
        creator: 42,
        limit,
        ..TableConfig::default()
    })
}

/// SYN|ACK and ACK on a SYN state: both sides established.
fn establish(state: &State, now: Millis) {
    let synack = TcpSegment {
        flags: SYN | ACK,
        seq: 9000,
        ack: 1001,
        win: 65_535,
        ..TcpSegment::default()
    };
    state.track_tcp(Direction::Reply, &synack, 60, now).unwrap();
    let ack = TcpSegment {
        flags: ACK,
        seq: 1001,
        ack: 9001,
        win: 65_535,
        ..TcpSegment::default()
    };
    state.track_tcp(Direction::Original, &ack, 52, now).unwrap();
    assert_eq!(state.expire().1, TimeoutClass::TcpEstablished);
}

#[test]
fn state_is_small() {
    // 12 (packed id) + 4 (created, s) + 4 (rule) + 2 x 14 (keys) + 8 (expire word) + 64 (mutex,
    // peers, counters) = 120; with the Arc header 136, a 144-byte glibc chunk.
    assert_eq!(std::mem::size_of::<State>(), 120);
}

#[test]
fn one_lookup_finds_state_and_direction() {
    let t = table(100);
    let by = t.producer();
    let s = t.insert(syn_state(40000), 5 * SEC, &by).unwrap();
    assert_eq!(t.len(), 1);
    let (creator, id) = ({ s.id.creator }, { s.id.id });
    assert_eq!(creator, 42);
    // Ids start from the run's start time (µs x 16), not from 1: see first_id_of_this_run.
    assert!(id > 1 << 50, "id {id} does not start from the start time");
    assert_eq!(s.rule, 7);
    assert_eq!(s.wire(), s.stack);
    let (found, dir) = t.lookup(&tcp_key(40000)).unwrap();
    assert!(Arc::ptr_eq(&found, &s));
    assert_eq!(dir, Direction::Original);
    let (found, dir) = t.lookup(&tcp_key(40000).reversed()).unwrap();
    assert!(Arc::ptr_eq(&found, &s));
    assert_eq!(dir, Direction::Reply);
    assert_eq!(
        t.with_state(&tcp_key(40000).reversed(), |st, d| (st.rule, d)),
        Some((7, Direction::Reply))
    );
    assert!(t.lookup(&tcp_key(40001)).is_none());
    assert!(Arc::ptr_eq(&t.get_by_id(&s.id).unwrap(), &s));
    let tr = s.tracking();
    assert_eq!((tr.packets, tr.bytes), ([1, 0], [60, 0]));
    assert_eq!((tr.last, tr.timeout), (5 * SEC, TimeoutClass::TcpFirst));
}

#[test]
fn collision_on_either_key_inserts_nothing() {
    let t = table(100);
    let by = t.producer();
    t.insert(syn_state(40000), 0, &by).unwrap();
    assert_eq!(
        t.insert(syn_state(40000), 0, &by).unwrap_err(),
        InsertError::Exists
    );
    // A flow whose reply key is the first flow's stack key: the first flow seen from the other
    // side (its reversed key).
    let mirrored = NewState::first_packet(tcp_key(40000).reversed(), 1, Some(&syn(5)), 0);
    assert_eq!(t.insert(mirrored, 0, &by).unwrap_err(), InsertError::Exists);
    // A NATed flow whose wire key would collide on the reply side only.
    let mut other = syn_state(40001);
    other.wire = tcp_key(40000);
    assert_eq!(t.insert(other, 0, &by).unwrap_err(), InsertError::Exists);
    assert!(
        t.lookup(&tcp_key(40001)).is_none(),
        "rolled back: no half-inserted state"
    );
    assert_eq!(t.len(), 1);
    assert_eq!(t.snapshot().len(), 1);
}

#[test]
fn nat_chooses_distinct_ports_and_reply_finds_state() {
    let t = table(10_000);
    let by = t.producer();
    let mut ports = std::collections::HashSet::new();
    for sport in 0..500 {
        // All to the same server:80, all from the same NAT address.
        let s = t
            .insert_nat(syn_state(30000 + sport), VIP, PortPolicy::DEFAULT, 0, &by)
            .unwrap();
        assert_eq!(s.wire().src, VIP);
        assert_eq!((s.wire().dst, s.wire().dport), (SERVER, 80));
        assert!(s.wire().sport >= 1024);
        assert!(
            ports.insert(s.wire().sport),
            "port {} handed out twice",
            s.wire().sport
        );
        let reply = FlowKey::new(PROTO_TCP, SERVER, 80, VIP, s.wire().sport);
        let (found, dir) = t.lookup(&reply).unwrap();
        assert!(Arc::ptr_eq(&found, &s));
        assert_eq!(dir, Direction::Reply);
        assert_eq!(*found.key(Direction::Reply), reply);
    }
    // Spread: 500 random starts should not crowd the bottom of the range.
    assert!(ports.iter().any(|&p| p > 40_000) && ports.iter().any(|&p| p < 30_000));
}

#[test]
fn the_first_nat_candidate_is_known_before_the_insert() {
    // A worker prefetches the bucket of `first_nat_reply` before it inserts: in a table where
    // that key is free, it is the key the insert takes.
    let t = table(10_000);
    let by = t.producer();
    let now = 5 * SEC;
    for policy in [PortPolicy::DEFAULT, PortPolicy::Range(2000, 2003)] {
        for sport in 0..50 {
            let new = syn_state(30000 + sport);
            let predicted = t.first_nat_reply(&new.stack, VIP, policy, now);
            let s = t.insert_nat(new, VIP, policy, now, &by).unwrap();
            assert_eq!(
                *s.key(Direction::Reply),
                predicted,
                "{policy:?}, source port {}",
                30000 + sport
            );
            t.remove(&s, Origin::Local(&by));
        }
    }

    // Two ports: find a second flow whose first candidate is the first flow's port. Its
    // insert, with that port taken, gets the other one.
    let two = PortPolicy::Range(5000, 5001);
    let a = syn_state(31000);
    let first_a = t.first_nat_reply(&a.stack, VIP, two, now);
    let sa = t.insert_nat(a, VIP, two, now, &by).unwrap();
    assert_eq!(*sa.key(Direction::Reply), first_a);
    let b = (31001..31200)
        .map(syn_state)
        .find(|b| t.first_nat_reply(&b.stack, VIP, two, now) == first_a)
        .expect("one flow in 199 whose first candidate is the taken port");
    let sb = t.insert_nat(b, VIP, two, now, &by).unwrap();
    let other = if first_a.dport == 5000 { 5001 } else { 5000 };
    assert_eq!(
        sb.key(Direction::Reply).dport,
        other,
        "the taken candidate skipped"
    );
}

#[test]
fn a_flow_retried_later_starts_its_nat_port_search_elsewhere() {
    // The same flow at another millisecond (a retransmitted SYN, the flow back after its state
    // expired) starts at another port: a nearly full range does not refuse it the same way
    // again, and its port is not fixed for the process's life.
    let t = table(10);
    let stack = syn_state(40000).stack;
    let ports: std::collections::HashSet<u16> = (0..50)
        .map(|ms| {
            t.first_nat_reply(&stack, VIP, PortPolicy::DEFAULT, ms)
                .dport
        })
        .collect();
    assert!(ports.len() > 40, "50 milliseconds, {} starts", ports.len());
}

#[test]
fn nat_range_exhausts_and_static_port_keeps_or_fails() {
    let t = table(10_000);
    let by = t.producer();
    for sport in 0..4 {
        let s = t.insert_nat(
            syn_state(30000 + sport),
            VIP,
            PortPolicy::Range(2000, 2003),
            0,
            &by,
        );
        assert!((2000..=2003).contains(&s.unwrap().wire().sport));
    }
    let full = t.insert_nat(syn_state(30010), VIP, PortPolicy::Range(2000, 2003), 0, &by);
    assert_eq!(full.unwrap_err(), InsertError::PortExhausted);
    assert_eq!(t.len(), 4);
    // The same ports towards another server are free.
    let mut k = syn_state(30011);
    k.stack.dst = Ipv4Addr::new(172, 25, 46, 2);
    assert!(t
        .insert_nat(k, VIP, PortPolicy::Range(2000, 2003), 0, &by)
        .is_ok());

    let s = t
        .insert_nat(syn_state(45000), VIP, PortPolicy::Static, 0, &by)
        .unwrap();
    assert_eq!(s.wire().sport, 45000);
    // Another inside host with the same source port to the same server: static fails.
    let mut clash = syn_state(45000);
    clash.stack.src = Ipv4Addr::new(192, 168, 0, 101);
    let e = t
        .insert_nat(clash, VIP, PortPolicy::Static, 0, &by)
        .unwrap_err();
    assert_eq!(e, InsertError::PortExhausted);
    // Range policy finds it a port.
    assert!(t
        .insert_nat(clash, VIP, PortPolicy::DEFAULT, 0, &by)
        .is_ok());
}

/// A second insert of a NATed flow (two workers racing on one first packet, or the peer's copy
/// of it) is refused as the duplicate it is, whatever the port policy, and leaves nothing: no
/// count, no key of the ports it tried, no journal entry.
#[test]
fn nat_duplicate_is_refused_and_undone() {
    let j = Arc::new(CountingJournal::default());
    let t = StateTable::with_journal(TableConfig::default(), j.clone());
    let by = t.producer();
    let first = t
        .insert_nat(syn_state(40000), VIP, PortPolicy::DEFAULT, 0, &by)
        .unwrap();
    let s = t
        .insert_nat(syn_state(45000), VIP, PortPolicy::Static, 0, &by)
        .unwrap();
    assert_eq!(j.counts(), (2, 0, 0));
    for policy in [PortPolicy::DEFAULT, PortPolicy::Range(2000, 2003)] {
        let e = t.insert_nat(syn_state(40000), VIP, policy, 0, &by);
        assert_eq!(e.unwrap_err(), InsertError::Exists, "{policy:?}");
    }
    // Static: the one candidate is the first state's own reply key.
    let e = t.insert_nat(syn_state(45000), VIP, PortPolicy::Static, 0, &by);
    assert_eq!(e.unwrap_err(), InsertError::Exists);
    assert_eq!(t.len(), 2);
    assert_eq!(t.snapshot().len(), 2);
    assert_eq!(j.counts(), (2, 0, 0));
    let (found, dir) = t.lookup(&tcp_key(40000)).unwrap();
    assert!(Arc::ptr_eq(&found, &first) && dir == Direction::Original);
    assert!(!first.is_removed() && !s.is_removed());
    // None of the ports the refused inserts tried answers: only the first state's does.
    for port in (1024..=u16::MAX).chain(2000..=2003) {
        let reply = FlowKey::new(PROTO_TCP, SERVER, 80, VIP, port);
        if let Some((st, _)) = t.lookup(&reply) {
            assert!(
                Arc::ptr_eq(&st, &first) || Arc::ptr_eq(&st, &s),
                "port {port} holds a stray state"
            );
        }
    }
}

#[test]
fn nat_icmp_id_is_both_ports() {
    let t = table(100);
    let by = t.producer();
    let key = FlowKey::icmp_query(CLIENT, SERVER, 77);
    let s = t
        .insert_nat(
            NewState::first_packet(key, 1, None, 84),
            VIP,
            PortPolicy::DEFAULT,
            0,
            &by,
        )
        .unwrap();
    assert_eq!(s.wire().sport, s.wire().dport);
    assert_eq!(s.tracking().timeout, TimeoutClass::IcmpFirst);
    let reply = FlowKey::icmp_query(SERVER, VIP, s.wire().sport);
    assert_eq!(t.lookup(&reply).unwrap().1, Direction::Reply);
}

#[test]
fn concurrent_nat_inserts_never_share_a_port() {
    let t = Arc::new(table(100_000));
    let threads: Vec<_> = (0..4u16)
        .map(|w| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                let by = t.producer();
                (0..200u16)
                    .filter_map(|i| {
                        let mut n = syn_state(1000 + w * 1000 + i);
                        n.stack.src = Ipv4Addr::new(192, 168, 1, w as u8);
                        t.insert_nat(n, VIP, PortPolicy::Range(5000, 5999), 0, &by)
                            .ok()
                    })
                    .map(|s| s.wire().sport)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<u16> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "two flows got the same port");
    assert_eq!(n, 800);
    assert_eq!(t.len(), 800);
}

#[test]
fn remove_takes_both_keys_and_journals() {
    let j = Arc::new(CountingJournal::default());
    let t = StateTable::with_journal(TableConfig::default(), j.clone());
    let by = t.producer();
    let s = t
        .insert_nat(syn_state(40000), VIP, PortPolicy::DEFAULT, 0, &by)
        .unwrap();
    let s2 = t.insert(syn_state(40001), 0, &by).unwrap();
    assert_eq!(j.counts(), (2, 0, 0));
    t.with_state(&tcp_key(40000), |st, _| t.updated(st, &by))
        .unwrap();
    assert_eq!(j.counts(), (2, 1, 0));
    assert!(t.remove(&s, Origin::Local(&by)));
    assert!(
        !t.remove(&s, Origin::Local(&by)),
        "second remove is a no-op"
    );
    assert!(s.is_removed());
    assert!(t.lookup(&tcp_key(40000)).is_none());
    assert!(t.lookup(&s.wire().reversed()).is_none());
    assert!(t.get_by_id(&s.id).is_none());
    assert_eq!(t.len(), 1);
    assert_eq!(j.counts(), (2, 1, 1));
    assert!(t.remove_by_id(&s2.id, Origin::Local(&by)));
    assert!(t.is_empty());
    assert_eq!(j.counts(), (2, 1, 2));
    // States from the peer are not journaled back.
    let id = SyncId {
        creator: 9,
        id: 1234,
    };
    let synced = t.insert_synced(id, syn_state(40002), 0, 0).unwrap();
    assert_eq!(synced.id, id);
    assert_eq!(
        t.insert_synced(id, syn_state(40003), 0, 0).unwrap_err(),
        InsertError::Exists
    );
    assert!(t.lookup(&tcp_key(40003)).is_none());
    assert_eq!(j.counts(), (2, 1, 2));
    // Nor is the peer's delete, of its state or of ours (pfsync's NOSYNC): nothing to echo.
    let ours = t.insert(syn_state(40004), 0, &by).unwrap();
    assert_eq!(j.counts(), (3, 1, 2));
    assert!(t.remove(&synced, Origin::Peer));
    assert!(t.remove_by_id(&ours.id, Origin::Peer));
    assert!(t.is_empty());
    assert_eq!(j.counts(), (3, 1, 2));
}

/// Inserts 1M NATed states, reports the memory estimate and the RSS growth. Slow in debug:
/// `cargo test -p tandem-dataplane --lib --release one_million_states -- --ignored --nocapture`.
#[test]
#[ignore]
fn one_million_states() {
    const N: u32 = 1_000_000;
    let rss0 = rss_bytes();
    let t = table(N);
    let by = t.producer();
    let start = std::time::Instant::now();
    for i in 0..N {
        let src = Ipv4Addr::from(0x0a00_0000 + (i >> 8));
        let dst = Ipv4Addr::from(0xac19_0000 + (i & 0xff));
        let key = FlowKey::new(PROTO_TCP, src, 1024 + (i % 50_000) as u16, dst, 443);
        t.insert_nat(
            NewState::first_packet(key, 1, Some(&syn(i | 1)), 60),
            VIP,
            PortPolicy::DEFAULT,
            0,
            &by,
        )
        .unwrap();
    }
    let elapsed = start.elapsed();
    let rss1 = rss_bytes();
    let est = t.memory_estimate();
    println!(
        "1M states: {:.1} ns/insert, estimate {:.1} MiB ({} B/state), RSS growth {:.1} MiB, \
         size_of State {} B",
        elapsed.as_nanos() as f64 / f64::from(N),
        est as f64 / 1048576.0,
        est / N as usize,
        (rss1.saturating_sub(rss0)) as f64 / 1048576.0,
        std::mem::size_of::<State>(),
    );
    assert_eq!(t.len(), N as usize);
    assert!(est < 256 << 20, "estimate {est} over 256 MiB");

    // Lookups: with_state (no refcount) against lookup (Arc clone).
    let keys: Vec<FlowKey> = t
        .snapshot()
        .iter()
        .take(100_000)
        .map(|s| s.wire().reversed())
        .collect();
    let start = std::time::Instant::now();
    let mut hits = 0u64;
    for _ in 0..10 {
        for k in &keys {
            hits += t.with_state(k, |s, _| u64::from(s.rule)).unwrap_or(0);
        }
    }
    let ws = start.elapsed().as_nanos() as f64 / (10.0 * keys.len() as f64);
    let start = std::time::Instant::now();
    for _ in 0..10 {
        for k in &keys {
            hits += t.lookup(k).map_or(0, |(s, _)| u64::from(s.rule));
        }
    }
    let lk = start.elapsed().as_nanos() as f64 / (10.0 * keys.len() as f64);
    println!("lookup of 100k random states in 1M: with_state {ws:.1} ns, lookup (Arc) {lk:.1} ns ({hits})");

    // A hot set (1000 states, in cache): the cost without cache misses.
    let hot = &keys[..1000];
    let start = std::time::Instant::now();
    for _ in 0..1000 {
        for k in hot {
            hits += t.with_state(k, |s, _| u64::from(s.rule)).unwrap_or(0);
        }
    }
    let hot_ns = start.elapsed().as_nanos() as f64 / 1e6;
    println!("lookup of 1000 hot states: with_state {hot_ns:.1} ns ({hits})");

    let start = std::time::Instant::now();
    let removed = t.expire(u64::MAX >> 9, usize::MAX, &by);
    println!(
        "expire all: {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(removed, N as usize);

    // Inserts again into the emptied (grown) table: no rehashing.
    let start = std::time::Instant::now();
    for i in 0..N {
        let src = Ipv4Addr::from(0x0a00_0000 + (i >> 8));
        let dst = Ipv4Addr::from(0xac19_0000 + (i & 0xff));
        let key = FlowKey::new(PROTO_TCP, src, 1024 + (i % 50_000) as u16, dst, 443);
        t.insert(
            NewState::first_packet(key, 1, Some(&syn(i | 1)), 60),
            0,
            &by,
        )
        .unwrap();
    }
    println!(
        "1M inserts without NAT into a grown table: {:.1} ns/insert",
        start.elapsed().as_nanos() as f64 / f64::from(N)
    );
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[test]
fn counting_journal_sees_expiry() {
    let j = Arc::new(CountingJournal::default());
    let t = StateTable::with_journal(TableConfig::default(), j.clone());
    let by = t.producer();
    t.insert(syn_state(1), 0, &by).unwrap();
    t.expire(1_000 * SEC, usize::MAX, &by);
    assert_eq!(j.counts(), (1, 0, 1));
}

#[test]
fn concurrent_insert_remove_lookup_stay_consistent() {
    let t = Arc::new(table(100_000));
    let workers: Vec<_> = (0..4u16)
        .map(|w| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                let by = t.producer();
                for round in 0..300u16 {
                    // Overlapping flows: workers race on the same keys.
                    let sport = (round + w) % 64;
                    let _ =
                        t.insert_nat(syn_state(sport), VIP, PortPolicy::Range(3000, 3015), 0, &by);
                    if let Some((s, _)) = t.lookup(&tcp_key((round * 7 + w) % 64)) {
                        if round % 3 == 0 {
                            t.remove(&s, Origin::Local(&by));
                        }
                    }
                    t.with_state(&tcp_key(sport), |s, d| {
                        assert_eq!(d, Direction::Original);
                        let _ = s.tracking();
                    });
                }
            })
        })
        .collect();
    let sweeper = {
        let t = Arc::clone(&t);
        std::thread::spawn(move || {
            let by = t.producer();
            for _ in 0..200 {
                for s in t.snapshot().iter().step_by(5) {
                    s.modify(|tr| tr.timeout = TimeoutClass::Purge);
                }
                t.expire(0, 100, &by);
            }
        })
    };
    for h in workers {
        h.join().unwrap();
    }
    sweeper.join().unwrap();
    t.check_consistency().unwrap();
    t.flush(&t.producer());
    assert!(t.is_empty());
    t.check_consistency().unwrap();
}

/// The CPU cost of insert and remove on a small, cache-resident table (no cache misses, no
/// growth): `cargo test -p tandem-dataplane --lib --release insert_cost_warm -- --ignored
/// --nocapture`.
#[test]
#[ignore]
fn insert_cost_warm() {
    let t = table(100_000);
    let by = t.producer();
    let n = 1000u16;
    let news: Vec<NewState> = (0..n).map(syn_state).collect();
    let mut states = Vec::with_capacity(n as usize);
    let (mut ins, mut nat, mut rem) = (0u128, 0u128, 0u128);
    let rounds = 300;
    for round in 0..rounds {
        let start = std::time::Instant::now();
        if round % 2 == 0 {
            for nw in &news {
                states.push(t.insert(*nw, 0, &by).unwrap());
            }
            ins += start.elapsed().as_nanos();
        } else {
            for nw in &news {
                states.push(t.insert_nat(*nw, VIP, PortPolicy::DEFAULT, 0, &by).unwrap());
            }
            nat += start.elapsed().as_nanos();
        }
        let start = std::time::Instant::now();
        for s in states.drain(..) {
            t.remove(&s, Origin::Local(&by));
        }
        rem += start.elapsed().as_nanos();
    }
    // Lookups on the hot table, then two threads on the same 16 states (the two directions
    // of NATed flows on two workers): with_state against lookup's Arc clone.
    for nw in &news {
        t.insert(*nw, 0, &by).unwrap();
    }
    let keys: Vec<FlowKey> = news.iter().map(|n| n.stack).collect();
    let bench = |t: &StateTable, keys: &[FlowKey], arc: bool, iters: usize| {
        let start = std::time::Instant::now();
        let mut sum = 0u64;
        for _ in 0..iters {
            for k in keys {
                sum += if arc {
                    t.lookup(k).map_or(0, |(s, _)| u64::from(s.rule))
                } else {
                    t.with_state(k, |s, _| u64::from(s.rule)).unwrap_or(0)
                };
            }
        }
        assert!(sum > 0);
        start.elapsed().as_nanos() as f64 / (iters * keys.len()) as f64
    };
    println!(
        "hot lookups, 1 thread: with_state {:.1} ns, lookup {:.1} ns",
        bench(&t, &keys, false, 1000),
        bench(&t, &keys, true, 1000)
    );
    for arc in [false, true] {
        let ns: Vec<f64> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..2)
                .map(|_| sc.spawn(|| bench(&t, &keys[..16], arc, 50_000)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        println!(
            "same 16 states, 2 threads: {} {:.1} / {:.1} ns",
            if arc { "lookup" } else { "with_state" },
            ns[0],
            ns[1]
        );
    }
    t.flush(&by);

    let per = |x: u128, r: u128| x as f64 / (r as f64 * f64::from(n));
    println!(
        "warm table, {n} states: insert {:.1} ns, insert_nat {:.1} ns, remove {:.1} ns",
        per(ins, rounds / 2),
        per(nat, rounds / 2),
        per(rem, rounds)
    );
}

#[test]
fn nat_without_ports_keeps_the_key_or_fails() {
    let t = table(100);
    let by = t.producer();
    let gre = |src| FlowKey::new(47, src, 0, SERVER, 0);
    let a = t.insert_nat(
        NewState::first_packet(gre(CLIENT), 1, None, 0),
        VIP,
        PortPolicy::DEFAULT,
        0,
        &by,
    );
    let a = a.unwrap();
    assert_eq!(a.wire(), FlowKey::new(47, VIP, 0, SERVER, 0));
    assert_eq!(a.tracking().timeout, TimeoutClass::OtherFirst);
    let other = NewState::first_packet(gre(Ipv4Addr::new(192, 168, 0, 101)), 1, None, 0);
    assert_eq!(
        t.insert_nat(other, VIP, PortPolicy::DEFAULT, 0, &by)
            .unwrap_err(),
        InsertError::PortExhausted
    );
}

#[test]
fn preallocated_table_and_thread_safety() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<StateTable>();
    send_sync::<State>();
    let t = StateTable::new(TableConfig {
        capacity: 10_000,
        ..TableConfig::default()
    });
    let by = t.producer();
    let before = t.memory_estimate();
    for p in 0..5000 {
        t.insert(syn_state(p), 0, &by).unwrap();
    }
    let per_state = (std::mem::size_of::<State>() + 16 + 8).div_ceil(16) * 16;
    assert_eq!(
        t.memory_estimate() - before,
        5000 * per_state,
        "no map growth"
    );
    assert_eq!(t.flush(&by), 5000);
    assert!(t.is_empty());
}

#[test]
fn merge_remote_applies_each_side_on_its_own() {
    let t = table(100);
    let by = t.producer();
    let s = t.insert(syn_state(1), 0, &by).unwrap();
    establish(&s, 0);
    let mine = s.tracking();
    // The peer is ahead on src, behind on dst (the opnsense/src#327 case).
    let mut src = mine.src;
    src.seqlo = src.seqlo.wrapping_add(10_000);
    let mut dst = mine.dst;
    dst.seqlo = dst.seqlo.wrapping_sub(106_000);
    assert_eq!(
        s.merge_remote(&src, &dst, TimeoutClass::TcpEstablished, 9 * SEC),
        1
    );
    let now = s.tracking();
    assert_eq!(now.src, src, "newer side applied");
    assert_eq!(now.dst, mine.dst, "stale side not rolled back");
    assert_eq!(now.last, 9 * SEC);
    // Both stale: nothing, not even the expiry.
    assert_eq!(
        s.merge_remote(&mine.src, &dst, TimeoutClass::TcpClosed, 20 * SEC),
        2
    );
    assert_eq!(s.tracking(), now);
}
