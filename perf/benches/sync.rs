//! State sync on the workers' fast path: what `SyncJournal::record` costs a worker.
//! Results and how to read them: perf/RESULTS.md, section "State sync".
//!
//! `cargo bench -p tandem-perf --bench sync` (group `sync`, ids `journal_record/...`).
//!
//! The journal is called as the table calls it, through `&dyn StateJournal` (one indirect call),
//! on TCP states of a table without a journal of its own. Every number is per `record` call.
//!
//! - `coalesced_update`: the state is already queued and its maxupd count is below 128: a
//!   relaxed load of the expiry word and one atomic add (pfsync's `sync_updates++`). What an
//!   established packet of a flow costs between two drains of the sync thread, for its first
//!   127 packets. The count is reset (untimed) every 64 calls, as a drain would.
//! - `coalesced_update_at_maxupd`: queued and the count at 128: two relaxed loads, nothing
//!   written (a hot flow after 128 packets within one drain interval).
//! - `insert`: a new state: the mark set (`fetch_or`), an `Arc` clone, a push on the worker's
//!   queue. Timed in batches of 1024 distinct states; the queue is drained (untimed) between
//!   batches, so it never overflows.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use tandem_dataplane::journal::{JournalKind, StateJournal};
use tandem_dataplane::state::tcp::flags::SYN;
use tandem_dataplane::state::{FlowKey, NewState, State, StateTable, TableConfig, TcpSegment};
use tandem_sync::journal::{JournalConfig, SyncJournal};

const BATCH: usize = 1024;

/// `n` TCP states opened by a SYN, in a table that journals nothing.
fn states(n: usize) -> (StateTable, Vec<Arc<State>>) {
    let table = StateTable::new(TableConfig {
        limit: 1_000_000,
        ..TableConfig::default()
    });
    let by = table.producer();
    let v = (0..n as u32)
        .map(|i| {
            let key = FlowKey::new(
                6,
                Ipv4Addr::from(0x0a00_0000 + i),
                40_000,
                Ipv4Addr::new(172, 16, 0, 1),
                80,
            );
            let syn = TcpSegment {
                flags: SYN,
                seq: 1000 + i,
                win: 65_535,
                ..TcpSegment::default()
            };
            table
                .insert(NewState::first_packet(key, 1, Some(&syn), 60), 0, &by)
                .expect("insert")
        })
        .collect();
    (table, v)
}

fn drain_all(j: &SyncJournal) -> usize {
    let mut n = 0;
    loop {
        let k = j.drain(usize::MAX, |_, _| {});
        if k == 0 {
            return n;
        }
        n += k;
    }
}

fn journal_record(c: &mut Criterion) {
    let mut g = c.benchmark_group("sync");
    g.warm_up_time(Duration::from_secs(3));
    g.measurement_time(Duration::from_secs(8));

    let journal = SyncJournal::new(JournalConfig::default());
    // One producer's queue, as a worker owns it.
    let dj = journal.queue();
    let (_table, s) = states(BATCH);

    // Coalesced update, counting (below maxupd).
    g.throughput(Throughput::Elements(1));
    let one = Arc::clone(&s[0]);
    dj.record(JournalKind::Insert, &one);
    assert_eq!(drain_all(&journal), 1);
    dj.record(JournalKind::Update, &one); // queued again
    g.bench_function("journal_record/coalesced_update", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(64);
                let t0 = Instant::now();
                for _ in 0..n {
                    black_box(&dj).record(JournalKind::Update, black_box(&one));
                }
                total += t0.elapsed();
                left -= n;
                // As a drain does: count and mark reset, the next update queues it again.
                one.clear_queued();
                assert!(one.mark_queued());
            }
            total
        });
    });
    assert_eq!(journal.len(), 1, "a coalesced update was queued");
    assert_eq!(journal.overflow(), 0);

    // Coalesced update at maxupd: nothing written.
    for _ in 0..200 {
        dj.record(JournalKind::Update, &one);
    }
    let _ = journal.due();
    g.bench_function("journal_record/coalesced_update_at_maxupd", |b| {
        b.iter(|| black_box(&dj).record(JournalKind::Update, black_box(&one)));
    });
    assert_eq!(journal.len(), 1, "a coalesced update was queued");
    assert_eq!(drain_all(&journal), 1);

    // Fresh inserts, 1024 distinct states per timed batch.
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut inserted = 0u64;
    g.bench_function("journal_record/insert", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                for st in &s {
                    black_box(&dj).record(JournalKind::Insert, black_box(st));
                }
                total += t0.elapsed();
                inserted += BATCH as u64;
                assert_eq!(drain_all(&journal), BATCH);
            }
            total
        });
    });
    assert!(inserted > 0);
    assert_eq!(journal.overflow(), 0);
    g.finish();
}

criterion_group!(benches, journal_record);
criterion_main!(benches);
