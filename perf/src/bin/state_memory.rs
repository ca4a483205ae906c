//! Memory of 1M states: `StateTable::memory_estimate` and the process's RSS growth.
//!
//! `cargo run --release -p tandem-perf --bin state_memory [-- --prealloc]`; with `--prealloc`
//! the table's maps are sized for 1M states up front (`TableConfig::capacity`), otherwise they
//! grow on demand. One table per run: freed memory is not returned to the system, so a second
//! table in the same process would measure the allocator, not the table.

use std::time::Instant;

use tandem_perf::fixture::nat_states;

const N: u32 = 1_000_000;

/// Resident set size of this process (bytes), from /proc/self/statm.
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn main() {
    let prealloc = std::env::args().any(|a| a == "--prealloc");
    let mib = |b: usize| b as f64 / 1048576.0;
    let rss0 = rss_bytes();
    let start = Instant::now();
    let t = nat_states(N, if prealloc { N as usize } else { 0 });
    let elapsed = start.elapsed();
    let rss1 = rss_bytes();
    let est = t.memory_estimate();
    assert_eq!(t.len(), N as usize);
    println!(
        "1M states ({}): memory_estimate {:.1} MiB ({} B/state), RSS growth {:.1} MiB ({} B/state), \
         {:.0} ns/insert_nat",
        if prealloc { "maps preallocated" } else { "maps grown on demand" },
        mib(est),
        est / N as usize,
        mib(rss1.saturating_sub(rss0)),
        rss1.saturating_sub(rss0) / N as usize,
        elapsed.as_nanos() as f64 / f64::from(N),
    );
}
