//! The state table's housekeeping: what expiry costs per state, so that a pass over 16M states
//! keeps up (issue 10.7). Results: perf/RESULTS.md.
//!
//! `cargo bench -p tandem-perf --bench state` (the table has 1M states; set
//! `TANDEM_BENCH_STATES=15000000` for the largest table below the pressure mark, about 4 GB and
//! a minute to build: the key index is sized for at most 2^24 states).
//!
//! - `state/expire_walk`: one housekeeping call with the daemon's budget (`expire_budget`,
//!   len/100) on a table where nothing is due: the steady state, every state's expiry word
//!   read and checked. Throughput is in states looked at.
//! - `state/expire_remove`: a walk that removes every state it visits (100k states, all due):
//!   the cost of a removal (id shard, both key slots, journal).
//! - `state/insert`: the same 100k states inserted into the same table, emptied (its index's
//!   pages touched, the states' memory back with malloc): the cost of an insert (id, both keys,
//!   the state's allocation), to set beside a removal's, whose time includes the release of
//!   the states' memory.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use tandem_dataplane::filter::proto;
use tandem_dataplane::state::tcp::flags::SYN;
use tandem_dataplane::state::{FlowKey, NewState, StateTable, TableConfig, TcpSegment};

/// `n` TCP states after their SYN (class tcp.first), created at time 0, no NAT; room for 25%
/// more, so the table is below the pressure mark (90%) and the walk only checks deadlines.
fn table(n: u32) -> StateTable {
    let t = empty_table(n);
    fill(&t, n);
    t
}

/// The table [`table`] fills: sized for `n` states and a quarter more.
fn empty_table(n: u32) -> StateTable {
    StateTable::new(TableConfig {
        limit: n + n / 4,
        capacity: n as usize,
        ..TableConfig::default()
    })
}

/// Inserts [`table`]'s `n` states.
fn fill(t: &StateTable, n: u32) {
    let by = t.producer();
    for i in 0..n {
        let src = Ipv4Addr::from(0x0a00_0000 + (i >> 14));
        let key = FlowKey::new(
            proto::TCP,
            src,
            1024 + (i & 0x3fff) as u16,
            Ipv4Addr::new(172, 25, 46, 1),
            443,
        );
        let syn = TcpSegment {
            flags: SYN,
            seq: i | 1,
            win: 64240,
            ..TcpSegment::default()
        };
        t.insert(NewState::first_packet(key, 1, Some(&syn), 60), 0, &by)
            .expect("distinct keys");
    }
}

/// Runs this thread's share of the epoch's deferred work (the removed states' releases) to
/// the end: each pin-and-flush hands over this thread's bag, advances the epoch (no other
/// thread is pinned) and runs up to eight bags of 64 releases; 200,000 releases take ~400.
fn reclaim() {
    for _ in 0..2048 {
        crossbeam_epoch::pin().flush();
    }
}

fn states_from_env() -> u32 {
    std::env::var("TANDEM_BENCH_STATES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 20)
}

fn expire(c: &mut Criterion) {
    let n = states_from_env();
    let t = table(n);
    // The key index is sized for at most 2^24 states, and the limit held to that: near it, the
    // table is under pressure and the walk evicts idle embryonic states, which is not this
    // benchmark's steady state.
    assert!(
        u64::from(n) * 10 < u64::from(t.limit()) * 9,
        "TANDEM_BENCH_STATES={n}: the limit is held to {} (the key index's largest size), under \
         which {n} states are past the pressure mark (90 %); use at most {}",
        t.limit(),
        u64::from(t.limit()) * 9 / 10 - 1
    );
    let budget = t.expire_budget();
    let by = t.producer();
    let mut g = c.benchmark_group("state");
    g.measurement_time(Duration::from_secs(8));
    // Whole id shards are visited until the budget is reached: slightly more than `budget`.
    g.throughput(Throughput::Elements(budget as u64));
    g.bench_function(format!("expire_walk/{n}"), |b| {
        // 1 s after creation: nothing is due (tcp.first is 120 s).
        b.iter(|| assert_eq!(black_box(t.expire(black_box(1000), budget, &by)), 0));
    });
    drop(t);

    const REMOVE: u32 = 100_000;
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(REMOVE)));
    // The other half of a state's life, on the same table, for comparison: issue 14 asks
    // that the expiry of a state cost no more than its insert. Like for like: the insert goes
    // into a table that held the same states before (its index's pages touched, the states'
    // memory back with malloc), and the removal's time includes the release of the states'
    // memory, which the epoch defers.
    g.bench_function("insert/100000", |b| {
        b.iter_batched(
            || {
                let t = table(REMOVE);
                t.flush(&t.producer());
                reclaim();
                t
            },
            |t| {
                fill(&t, REMOVE);
                assert_eq!(t.len(), REMOVE as usize);
                t
            },
            BatchSize::PerIteration,
        );
    });
    g.bench_function("expire_remove/100000", |b| {
        b.iter_batched(
            || {
                let t = table(REMOVE);
                reclaim();
                t
            },
            |t| {
                let by = t.producer();
                assert_eq!(t.expire(3_600_000, usize::MAX, &by), REMOVE as usize);
                reclaim();
                t
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group!(benches, expire);
criterion_main!(benches);
