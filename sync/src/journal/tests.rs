use super::*;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tandem_dataplane::journal::Origin;

use tandem_dataplane::state::{
    FlowKey, NewState, StateTable, SyncId, TableConfig, TcpSegment, TimeoutClass,
};

fn table(journal: &Arc<SyncJournal>) -> StateTable {
    StateTable::with_journal(
        TableConfig {
            limit: 1_000_000,
            ..TableConfig::default()
        },
        journal.clone(),
    )
}

fn tcp(n: u32) -> NewState {
    let key = FlowKey::new(
        6,
        Ipv4Addr::from(0x0a00_0000 + n),
        40000,
        Ipv4Addr::new(172, 25, 46, 1),
        80,
    );
    let syn = TcpSegment {
        flags: 0x02,
        seq: 1000,
        win: 65535,
        ..TcpSegment::default()
    };
    NewState::first_packet(key, 1, Some(&syn), 60)
}

fn udp(n: u32) -> NewState {
    let key = FlowKey::new(
        17,
        Ipv4Addr::from(0x0b00_0000 + n),
        5353,
        Ipv4Addr::new(172, 25, 46, 1),
        53,
    );
    NewState::first_packet(key, 1, None, 60)
}

fn drain_all(j: &SyncJournal) -> Vec<(JournalKind, Arc<State>)> {
    let mut v = Vec::new();
    j.drain(usize::MAX, |k, s| v.push((k, s)));
    v
}

#[test]
fn hundred_updates_between_drains_are_one_entry() {
    let j = Arc::new(SyncJournal::new(JournalConfig::default()));
    let t = table(&j);
    let by = t.producer();
    let s = t.insert(udp(1), 0, &by).unwrap();
    // Updates before the first drain ride on the insert.
    for _ in 0..10 {
        t.updated(&s, &by);
    }
    let got = drain_all(&j);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, JournalKind::Insert);
    assert!(!s.is_queued(), "drain clears the mark");

    for _ in 0..100 {
        t.updated(&s, &by);
    }
    let got = drain_all(&j);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, JournalKind::Update);
    assert!(Arc::ptr_eq(&got[0].1, &s));
    // The next update after a drain is queued again; the delete always goes through.
    t.updated(&s, &by);
    assert!(t.remove(&s, Origin::Local(&by)));
    let kinds: Vec<_> = drain_all(&j).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, [JournalKind::Update, JournalKind::Delete]);
    assert_eq!(j.overflow(), 0);
}

#[test]
fn the_mark_leaves_the_expiry_alone() {
    let j = Arc::new(SyncJournal::new(JournalConfig {
        maxupd: 100,
        ..JournalConfig::default()
    }));
    let t = table(&j);
    let by = t.producer();
    let s = t.insert(tcp(1), 5_000, &by).unwrap();
    assert!(s.is_queued());
    for _ in 0..50 {
        t.updated(&s, &by);
    }
    assert_eq!(s.expire(), (5_000, TimeoutClass::TcpFirst));
    drain_all(&j);
    let s = t.insert(udp(1), 5_000, &by).unwrap();
    s.track_other(tandem_dataplane::state::Direction::Original, 60, 7_000);
    assert!(s.is_queued(), "a worker's expiry write keeps the mark");
    assert_eq!(s.expire().0, 7_000);
    // Same deadline marked or not; expiry removes a marked state on time.
    let other = t.insert(udp(2), 5_000, &by).unwrap();
    other.track_other(tandem_dataplane::state::Direction::Original, 60, 7_000);
    drain_all(&j);
    t.updated(&s, &by);
    assert!(s.is_queued() && !other.is_queued());
    let (to, ad) = (t.timeouts(), t.adaptive());
    assert_eq!(s.deadline(&to, &ad, 2), other.deadline(&to, &ad, 2));
    let d = s.deadline(&to, &ad, 2).unwrap();
    assert_eq!(t.expire(d - 1, usize::MAX, &by), 0);
    assert_eq!(t.expire(d, usize::MAX, &by), 2);
    assert!(s.is_removed());
    drain_all(&j);
    assert!(!s.is_queued());
}

#[test]
fn maxupd_makes_the_journal_due_for_tcp_only() {
    let j = Arc::new(SyncJournal::new(JournalConfig {
        maxupd: 8,
        ..JournalConfig::default()
    }));
    let t = table(&j);
    let by = t.producer();
    let s = t.insert(tcp(1), 0, &by).unwrap();
    let u = t.insert(udp(1), 0, &by).unwrap();
    drain_all(&j);
    assert!(!j.due());
    // First update queues; 8 more coalesced ones reach maxupd.
    for i in 0..8 {
        t.updated(&s, &by);
        assert!(!j.due(), "due after {} updates", i + 1);
    }
    t.updated(&s, &by);
    assert!(j.due());
    assert!(!j.due(), "due is taken once");
    for _ in 0..1000 {
        t.updated(&s, &by);
        t.updated(&u, &by);
    }
    assert!(!j.due(), "the count stays at maxupd until the drain");
    assert_eq!(drain_all(&j).len(), 2);
    // The drain reset the count.
    for _ in 0..9 {
        t.updated(&s, &by);
    }
    assert!(j.due());
}

#[test]
fn full_queue_counts_overflow_and_flags_resync() {
    let j = Arc::new(SyncJournal::new(JournalConfig {
        capacity: 4,
        maxupd: 0,
    }));
    let t = table(&j);
    let by = t.producer();
    let states: Vec<_> = (0..10).map(|i| t.insert(udp(i), 0, &by).unwrap()).collect();
    assert_eq!(j.overflow(), 6);
    assert!(j.take_resync());
    assert!(!j.take_resync(), "the flag is taken once");
    assert_eq!(drain_all(&j).len(), 4);
    // The repair walk clears every mark; then updates are queued again.
    t.for_each(|s| s.clear_queued());
    for s in &states {
        t.updated(s, &by);
    }
    assert_eq!(j.len(), 4);
    assert_eq!(j.overflow(), 12);
}

#[test]
fn each_producer_has_a_queue_of_its_own_until_gone_and_drained() {
    let j = Arc::new(SyncJournal::new(JournalConfig {
        capacity: 64,
        maxupd: 0,
    }));
    let t = Arc::new(table(&j));
    std::thread::scope(|sc| {
        for w in 0..3u32 {
            let t = t.clone();
            sc.spawn(move || {
                let by = t.producer();
                for i in 0..10 {
                    t.insert(udp(w * 100 + i), 0, &by).unwrap();
                }
            });
        }
    });
    assert_eq!(j.producers(), 3);
    assert_eq!(j.len(), 30);
    // Each thread's inserts come out in its order, one queue after another.
    let got = drain_all(&j);
    assert_eq!(got.len(), 30);
    for run in got.chunks(10) {
        let srcs: Vec<u32> = run.iter().map(|(_, s)| u32::from(s.stack.src)).collect();
        assert!(srcs.windows(2).all(|w| w[1] == w[0] + 1), "{srcs:?}");
    }
    // The producers are gone and their queues drained: the journal let them go.
    assert_eq!(j.producers(), 0);
    let by = t.producer();
    t.insert(udp(1000), 0, &by).unwrap();
    assert_eq!(j.producers(), 1);
    drain_all(&j);
    assert_eq!(j.producers(), 1, "a live producer keeps its queue");
}

#[test]
fn four_producers_one_consumer_inserts_and_deletes_once_in_order() {
    const PER: u32 = 3_000;
    let j = Arc::new(SyncJournal::new(JournalConfig {
        capacity: 4096,
        maxupd: 16,
    }));
    let t = Arc::new(table(&j));
    let j: &SyncJournal = &j;
    let done = &AtomicBool::new(false);
    // id -> (inserts, updates, deletes, order violations)
    let mut seen: HashMap<u64, [u32; 4]> = HashMap::new();
    std::thread::scope(|sc| {
        let producers: Vec<_> = (0..4u32)
            .map(|w| {
                let t = t.clone();
                sc.spawn(move || {
                    // Each worker owns its producer: one queue each, by construction.
                    let by = t.producer();
                    for i in 0..PER {
                        let n = w * PER + i;
                        let s = t.insert(tcp(n), 0, &by).unwrap();
                        for _ in 0..(i % 5) {
                            t.updated(&s, &by);
                        }
                        if i % 2 == 0 {
                            t.remove(&s, Origin::Local(&by));
                        }
                        // Queues are bounded: a real worker would overflow and flag a
                        // resync; this test wants every entry, so it waits for room.
                        while j.len() > 2_000 {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let consumer = sc.spawn(move || {
            let mut seen: HashMap<u64, [u32; 4]> = HashMap::new();
            loop {
                let finished = done.load(Ordering::Acquire);
                j.drain(256, |kind, s| {
                    let e = seen.entry(s.id.id).or_default();
                    match kind {
                        JournalKind::Insert => {
                            if e[0] > 0 || e[2] > 0 {
                                e[3] += 1;
                            }
                            e[0] += 1;
                        }
                        JournalKind::Update => {
                            if e[0] == 0 || e[2] > 0 {
                                e[3] += 1;
                            }
                            e[1] += 1;
                        }
                        JournalKind::Delete => {
                            if e[0] == 0 || e[2] > 0 {
                                e[3] += 1;
                            }
                            e[2] += 1;
                        }
                    }
                });
                if finished && j.is_empty() {
                    break seen;
                }
                std::thread::yield_now();
            }
        });
        for p in producers {
            p.join().unwrap();
        }
        done.store(true, Ordering::Release);
        seen = consumer.join().unwrap();
    });
    assert_eq!(j.overflow(), 0);
    assert_eq!(seen.len(), 4 * PER as usize);
    let mut deletes = 0;
    for (id, [ins, _upd, del, bad]) in &seen {
        assert_eq!(*ins, 1, "state {id}: {ins} inserts");
        assert!(*del <= 1, "state {id}: {del} deletes");
        assert_eq!(*bad, 0, "state {id}: out of order");
        deletes += del;
    }
    assert_eq!(deletes, 2 * PER);
    let _ = SyncId { creator: 1, id: 0 };
}

/// Rough cost of `record` (this build's profile; debug numbers are ~10x release ones). The
/// release number belongs in a criterion bench in tandem-perf (`journal/record_coalesced`).
#[test]
fn record_cost() {
    let j = Arc::new(SyncJournal::new(JournalConfig::default()));
    let t = table(&j);
    let by = t.producer();
    let s = t.insert(tcp(1), 0, &by).unwrap();
    const N: u32 = 200_000;
    let start = Instant::now();
    for _ in 0..N {
        t.updated(&s, &by);
    }
    let coalesced = start.elapsed().as_nanos() / u128::from(N);
    let start = Instant::now();
    let mut queued = 0u128;
    for _ in 0..N / 1000 {
        drain_all(&j);
        let t0 = Instant::now();
        t.updated(&s, &by);
        queued += t0.elapsed().as_nanos();
    }
    let _ = start;
    println!(
        "record: coalesced update {coalesced} ns, queued update {} ns ({} build)",
        queued / u128::from(N / 1000),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
}
