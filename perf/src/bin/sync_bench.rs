//! State sync over a link: states replicated per second, replication lag, bytes per state.
//! Results and how to read them: perf/RESULTS.md, section "State sync".
//!
//! ```sh
//! cargo run --release -p tandem-perf --bin sync_bench -- --transport mem
//! cargo run --release -p tandem-perf --bin sync_bench -- --transport netns   # root
//! ```
//!
//! Box A and box B: a `StateTable` with a `SyncJournal` attached and a `Replicator` each, the
//! daemon's defaults (`SyncConfig::new`, `JournalConfig` with one queue per worker: one here).
//! One thread drives both replicators with the real monotonic clock, the way the daemon's sync
//! thread drives one: a replicator is polled when its link is readable or when its
//! `next_wakeup_ms` has come (at most 1 ms: the journal has no fd). `mem`: the in-memory
//! transport, "readable" = a datagram in the inbox, the loop spins (`yield_now`) between
//! checks. `netns`: `RawIpSocket`s in two network namespaces joined by a veth pair, the loop
//! waits in `poll(2)` on both sockets (timeout up to the next wakeup, at most 1 ms).
//!
//! States are inserted on A by a producer thread (a worker's role) through
//! `StateTable::insert_nat` (TCP, first packet a SYN, NAT to 198.51.100.1), which journals the
//! insert. Phases:
//!
//! 1. **throughput**: N states inserted as fast as the producer can; time from the first
//!    insert until B's table holds all N. Bytes: every datagram each side sent in the phase
//!    (IP payload, counted by a wrapper around the transport), per state.
//! 2. **updates**: each of the N states gets one update (a SYN-ACK tracked on A, journaled as
//!    the pipeline does): UPD_C; until B applied N updates. Bytes per update.
//! 3. **lag** at each offered rate: the producer inserts at that rate (paced against the
//!    clock) and sends (sync id, insert time) to the driving thread, which after every loop
//!    turn looks up the oldest not-yet-seen ids in B's table (`get_by_id`, in insert order,
//!    which is the order A sends and B applies them) and records now - insert time in an HDR
//!    histogram. The lag includes: the journal queue until A's next poll (<= 1 ms), the open
//!    datagram waiting to fill or for the 10 ms flush delay, HMAC and send, the link, B's poll,
//!    parse, MAC check and apply, and the driving thread's turn (it also serves A).

use std::collections::VecDeque;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use tandem_dataplane::journal::Producer;
use tandem_dataplane::state::tcp::flags::{ACK, SYN};
use tandem_dataplane::state::{
    Clock, Direction, FlowKey, Millis, NewState, PortPolicy, State, StateTable, SyncId,
    TableConfig, TcpSegment,
};
use tandem_sync::journal::{JournalConfig, SyncJournal};
use tandem_sync::replicate::{Counters, Replicator, SyncConfig};
use tandem_sync::socket::RawIpSocket;
use tandem_sync::transport::{mem_pair, MemTransport, Transport};
use tandem_sync::wire::SyncKey;

#[derive(Parser, Debug)]
#[command(about = "State sync: states/s, replication lag, bytes per state")]
struct Args {
    /// `mem` (in-memory pair, one process) or `netns` (raw IP sockets across a veth pair; root).
    #[arg(long, default_value = "mem")]
    transport: String,
    /// States for the throughput and update phases.
    #[arg(long, default_value_t = 100_000)]
    n: u32,
    /// Journal entries per queue (the daemon's default is 4096).
    #[arg(long, default_value_t = 4096)]
    capacity: usize,
    /// Offered rates (new states/s) for the lag phases.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000u32, 10_000, 100_000])]
    rates: Vec<u32>,
    /// Seconds per lag phase.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// States both tables allocate room for up front (`TableConfig::capacity`; 0: grow on
    /// demand, the daemon's default).
    #[arg(long, default_value_t = 0)]
    table_capacity: usize,
    /// Skip the throughput and update phases.
    #[arg(long)]
    lag_only: bool,
}

const A_HOST: u32 = 1;
const B_HOST: u32 = 2;
const NAT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// A link whose readiness the driving loop can test.
trait Link: Transport {
    fn fd(&self) -> Option<RawFd>;
    fn readable(&self) -> bool;
}

impl Link for MemTransport {
    fn fd(&self) -> Option<RawFd> {
        None
    }
    fn readable(&self) -> bool {
        self.pending() > 0
    }
}

impl Link for RawIpSocket {
    fn fd(&self) -> Option<RawFd> {
        Some(RawIpSocket::fd(self))
    }
    fn readable(&self) -> bool {
        false // the loop polls the fd
    }
}

/// A transport that counts what it sends.
struct Counted<L> {
    inner: L,
    bytes: u64,
    datagrams: u64,
}

impl<L: Link> Transport for Counted<L> {
    fn send(&mut self, d: &[u8]) -> std::io::Result<()> {
        self.bytes += d.len() as u64;
        self.datagrams += 1;
        self.inner.send(d)
    }
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<Option<(usize, Ipv4Addr, u8)>> {
        self.inner.recv(buf)
    }
}

struct End<L> {
    table: Arc<StateTable>,
    journal: Arc<SyncJournal>,
    rep: Replicator,
    link: Counted<L>,
    next: Millis,
}

fn end<L: Link>(host: u32, peer: Ipv4Addr, link: L, args: &Args) -> End<L> {
    let journal = Arc::new(SyncJournal::new(JournalConfig {
        capacity: args.capacity,
        ..JournalConfig::default()
    }));
    let table = Arc::new(StateTable::with_journal(
        TableConfig {
            creator: host,
            limit: 4_000_000,
            capacity: args.table_capacity,
            ..TableConfig::default()
        },
        journal.clone(),
    ));
    let key = SyncKey::new(b"0123456789abcdef0123456789abcdef").expect("key");
    let rep = Replicator::new(
        SyncConfig::new(host, key, Some(peer)),
        table.clone(),
        journal.clone(),
    );
    End {
        table,
        journal,
        rep,
        link: Counted {
            inner: link,
            bytes: 0,
            datagrams: 0,
        },
        next: 0,
    }
}

impl<L: Link> End<L> {
    fn poll(&mut self, now: Millis) {
        let r = self.rep.poll(&mut self.link, now);
        self.next = r.next_wakeup_ms;
    }
}

/// Turn the loop until `until` is true or `limit` passed: poll each end when its link is
/// readable or its wakeup time came, then wait (spin for `mem`, `poll(2)` for sockets).
fn drive<L: Link>(
    a: &mut End<L>,
    b: &mut End<L>,
    clock: &Clock,
    limit: Duration,
    mut until: impl FnMut(&End<L>, &End<L>) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let now = clock.now_ms();
        if now >= a.next || a.link.inner.readable() {
            a.poll(now);
        }
        if now >= b.next || b.link.inner.readable() {
            b.poll(now);
        }
        if until(a, b) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        match (a.link.inner.fd(), b.link.inner.fd()) {
            (Some(fa), Some(fb)) => {
                let now = clock.now_ms();
                let wait = a.next.min(b.next).saturating_sub(now).min(1);
                let mut p = [fa, fb].map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
                // SAFETY: two valid pollfds on the stack for the duration of the call.
                unsafe { libc::poll(p.as_mut_ptr(), 2, wait as i32) };
                let now = clock.now_ms();
                if p[0].revents != 0 {
                    a.poll(now);
                }
                if p[1].revents != 0 {
                    b.poll(now);
                }
            }
            _ => std::thread::yield_now(),
        }
    }
}

/// The i-th new connection: a SYN from 10.x to one of 4096 servers, port 80.
fn new_state(i: u32) -> NewState {
    let key = FlowKey::new(
        6,
        Ipv4Addr::from(0x0a00_0000 + i),
        10_000 + (i % 50_000) as u16,
        Ipv4Addr::from(0xac10_0000 + (i % 4096)),
        80,
    );
    let syn = TcpSegment {
        flags: SYN,
        seq: 1000 + i,
        win: 65_535,
        ..TcpSegment::default()
    };
    NewState::first_packet(key, 7, Some(&syn), 60)
}

fn insert(table: &StateTable, by: &Producer, i: u32, now: Millis) -> Arc<State> {
    table
        .insert_nat(new_state(i), NAT, PortPolicy::DEFAULT, now, by)
        .expect("insert_nat")
}

fn c(e: &End<impl Link>) -> Counters {
    e.rep.counters().clone()
}

fn settle<L: Link>(a: &mut End<L>, b: &mut End<L>, clock: &Clock) {
    let ok = drive(a, b, clock, Duration::from_secs(20), |a, b| {
        !a.rep.bulk_pending() && !b.rep.bulk_pending()
    });
    assert!(
        ok,
        "bulk updates: {:?} / {:?}",
        a.rep.status(),
        b.rep.status()
    );
}

struct Bytes {
    a: (u64, u64),
    b: (u64, u64),
}

fn bytes_mark<L: Link>(a: &End<L>, b: &End<L>) -> Bytes {
    Bytes {
        a: (a.link.bytes, a.link.datagrams),
        b: (b.link.bytes, b.link.datagrams),
    }
}

/// Per unit: IP payload bytes and datagrams of each side since `m`, plus the 20-byte IP header
/// per datagram.
fn bytes_report<L: Link>(what: &str, a: &End<L>, b: &End<L>, m: &Bytes, n: u64) {
    let (ab, ad) = (a.link.bytes - m.a.0, a.link.datagrams - m.a.1);
    let (bb, bd) = (b.link.bytes - m.b.0, b.link.datagrams - m.b.1);
    let per = |x: u64| x as f64 / n as f64;
    println!(
        "bytes per {what}: A->B {ab} B in {ad} datagrams, B->A {bb} B in {bd} datagrams; \
         payload {:.1} B/{what} (A {:.1} + B {:.1}), with IP headers {:.1} B/{what}, \
         with Ethernet (+14 hdr +4 FCS) {:.1} B/{what}; {:.2} {what}s per A datagram",
        per(ab + bb),
        per(ab),
        per(bb),
        per(ab + bb + 20 * (ad + bd)),
        per(ab + bb + 38 * (ad + bd)),
        n as f64 / ad as f64,
    );
}

fn throughput<L: Link>(
    a: &mut End<L>,
    b: &mut End<L>,
    clock: &Clock,
    n: u32,
    first: u32,
    preload: bool,
) -> Vec<Arc<State>> {
    let base = b.table.len();
    let (a0, b0) = (c(a), c(b));
    let m = bytes_mark(a, b);
    let table = a.table.clone();
    let fill = move || {
        // The producer thread owns its journal queue, as a worker does.
        let by = table.producer();
        let clock = Clock::new();
        let t0 = Instant::now();
        let v: Vec<_> = (first..first + n)
            .map(|i| insert(&table, &by, i, clock.now_ms()))
            .collect();
        (v, t0.elapsed())
    };
    // Preloaded: the journal holds all N before the sync loop starts (the sync path alone).
    let pre = preload.then(|| {
        let r = std::thread::spawn(fill.clone()).join().expect("preload");
        assert_eq!(a.journal.len(), n as usize, "the journal must hold all N");
        r
    });
    let start = Instant::now();
    let producer = (!preload).then(|| std::thread::spawn(fill));
    let ok = drive(a, b, clock, Duration::from_secs(120), |_, b| {
        b.table.len() >= base + n as usize
    });
    let elapsed = start.elapsed();
    let (states, ins_time) = match producer {
        Some(p) => p.join().expect("producer"),
        None => pre.expect("preloaded"),
    };
    assert!(ok, "B has {} of {n} states", b.table.len() - base);
    let (a1, b1) = (c(a), c(b));
    println!(
        "throughput ({}), {n} states:",
        if preload {
            "preloaded: inserted before the loop started, the clock starts with the loop"
        } else {
            "inserted while the loop runs"
        }
    );
    println!(
        "  inserted in {:.1} ms ({:.0} ns/insert_nat, {:.0}k/s), \
         on B after {:.1} ms: {:.0} states/s replicated",
        ins_time.as_secs_f64() * 1e3,
        ins_time.as_nanos() as f64 / f64::from(n),
        f64::from(n) / ins_time.as_secs_f64() / 1e3,
        elapsed.as_secs_f64() * 1e3,
        f64::from(n) / elapsed.as_secs_f64(),
    );
    println!(
        "  A: tx_ins {}, tx_sequenced {}, retransmits {}, journal_overflow {}, resyncs {}, \
         rx_ack {}; B: applied_inserts {}, tx_ack {}, tx_nack {}",
        a1.tx_ins - a0.tx_ins,
        a1.tx_sequenced - a0.tx_sequenced,
        a1.retransmits - a0.retransmits,
        a1.journal_overflow - a0.journal_overflow,
        a1.resyncs - a0.resyncs,
        a1.rx_ack - a0.rx_ack,
        b1.applied_inserts - b0.applied_inserts,
        b1.tx_ack - b0.tx_ack,
        b1.tx_nack - b0.tx_nack,
    );
    // Everything in flight acknowledged before the bytes are read (the last ACK included).
    drive(a, b, clock, Duration::from_secs(5), |a, _| {
        a.rep.status().unacked == 0
    });
    bytes_report("state", a, b, &m, u64::from(n));
    states
}

fn updates<L: Link>(a: &mut End<L>, b: &mut End<L>, clock: &Clock, states: Vec<Arc<State>>) {
    let n = states.len() as u64;
    let (a0, b0) = (c(a), c(b));
    let m = bytes_mark(a, b);
    let table = a.table.clone();
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        // The producer thread owns its journal queue, as a worker does.
        let by = table.producer();
        let clock = Clock::new();
        for s in &states {
            let cl = s.tracking().src.seqlo;
            let synack = TcpSegment {
                flags: SYN | ACK,
                seq: 90_000,
                ack: cl,
                win: 65_535,
                ..TcpSegment::default()
            };
            s.track_tcp(Direction::Reply, &synack, 60, clock.now_ms())
                .expect("syn-ack");
            table.updated(s, &by);
        }
    });
    let ok = drive(a, b, clock, Duration::from_secs(120), |_, b| {
        b.rep.counters().applied_updates - b0.applied_updates >= n
    });
    let elapsed = start.elapsed();
    producer.join().expect("producer");
    let (a1, b1) = (c(a), c(b));
    assert!(
        ok,
        "B applied {} of {n} updates",
        b1.applied_updates - b0.applied_updates
    );
    println!(
        "updates: {n} updates on B after {:.1} ms ({:.0}/s); A: tx_upd_c {}, tx_ins {}, \
         journal_overflow {}, resyncs {}",
        elapsed.as_secs_f64() * 1e3,
        n as f64 / elapsed.as_secs_f64(),
        a1.tx_upd_c - a0.tx_upd_c,
        a1.tx_ins - a0.tx_ins,
        a1.journal_overflow - a0.journal_overflow,
        a1.resyncs - a0.resyncs,
    );
    drive(a, b, clock, Duration::from_secs(5), |a, _| {
        a.rep.status().unacked == 0
    });
    bytes_report("update", a, b, &m, n);
}

fn lag<L: Link>(a: &mut End<L>, b: &mut End<L>, clock: &Clock, rate: u32, secs: f64, first: u32) {
    let (a0, b0) = (c(a), c(b));
    let m = bytes_mark(a, b);
    let total = (f64::from(rate) * secs) as u32;
    let (tx, rx) = mpsc::channel::<(SyncId, Instant)>();
    let table = a.table.clone();
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let producer = std::thread::spawn(move || {
        // The producer thread owns its journal queue, as a worker does.
        let by = table.producer();
        let clock = Clock::new();
        let t0 = Instant::now();
        let mut i = 0u32;
        while i < total {
            let due = ((t0.elapsed().as_secs_f64() * f64::from(rate)) as u32).min(total);
            if i >= due {
                std::thread::sleep(Duration::from_micros(20));
                continue;
            }
            while i < due {
                let s = insert(&table, &by, first + i, clock.now_ms());
                let _ = tx.send((s.id, Instant::now()));
                i += 1;
            }
        }
        done2.store(true, Ordering::Release);
        t0.elapsed()
    });
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut pending: VecDeque<(SyncId, Instant)> = VecDeque::new();
    let btable = b.table.clone();
    let mut seen = 0u32;
    let ok = drive(a, b, clock, Duration::from_secs_f64(secs + 30.0), |_, _| {
        pending.extend(rx.try_iter());
        while let Some(&(id, t)) = pending.front() {
            if btable.get_by_id(&id).is_none() {
                break;
            }
            let now = Instant::now();
            h.saturating_record(now.duration_since(t).as_micros() as u64);
            pending.pop_front();
            seen += 1;
        }
        done.load(Ordering::Acquire) && seen == total && pending.is_empty()
    });
    let offered = producer.join().expect("producer");
    assert!(ok, "lag: B saw {seen} of {total}");
    let (a1, b1) = (c(a), c(b));
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    println!(
        "lag at {rate}/s ({total} states in {:.2} s, {:.0}/s achieved): p50 {:.2} ms, \
         p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms, min {:.3} ms, mean {:.2} ms",
        offered.as_secs_f64(),
        f64::from(total) / offered.as_secs_f64(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        h.max() as f64 / 1000.0,
        h.min() as f64 / 1000.0,
        h.mean() / 1000.0,
    );
    println!(
        "  A: tx_ins {}, tx_sequenced {} ({:.1} INS per datagram), retransmits {}, \
         journal_overflow {}; B: applied_inserts {}, tx_ack {}",
        a1.tx_ins - a0.tx_ins,
        a1.tx_sequenced - a0.tx_sequenced,
        (a1.tx_ins - a0.tx_ins) as f64 / (a1.tx_sequenced - a0.tx_sequenced).max(1) as f64,
        a1.retransmits - a0.retransmits,
        a1.journal_overflow - a0.journal_overflow,
        b1.applied_inserts - b0.applied_inserts,
        b1.tx_ack - b0.tx_ack,
    );
    drive(a, b, clock, Duration::from_secs(5), |a, _| {
        a.rep.status().unacked == 0
    });
    bytes_report("state", a, b, &m, u64::from(total));
}

fn run<L: Link>(mut a: End<L>, mut b: End<L>, args: &Args) {
    let clock = Clock::new();
    settle(&mut a, &mut b, &clock);
    let mut first = 0;
    if !args.lag_only {
        let states = throughput(&mut a, &mut b, &clock, args.n, 0, false);
        updates(&mut a, &mut b, &clock, states);
        first = args.n;
        if args.capacity >= args.n as usize {
            throughput(&mut a, &mut b, &clock, args.n, first, true);
            first += args.n;
        }
    }
    for &rate in &args.rates {
        lag(&mut a, &mut b, &clock, rate, args.secs, first);
        first += (f64::from(rate) * args.secs) as u32;
    }
    let (ca, cb) = (c(&a), c(&b));
    println!(
        "end: A states {}, B states {}; A retransmits {}, B tx_nack {}, B bad_mac {}, \
         A journal_overflow {}",
        a.table.len(),
        b.table.len(),
        ca.retransmits,
        cb.tx_nack,
        cb.bad_mac,
        ca.journal_overflow
    );
}

// ---- netns ------------------------------------------------------------------------------

struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {args:?}");
}

/// A RawIpSocket opened inside namespace `ns` (setns on a throwaway thread).
fn open_in(ns: &str, ifname: &str, peer: Ipv4Addr) -> RawIpSocket {
    let path = format!("/var/run/netns/{ns}");
    let ifname = ifname.to_owned();
    std::thread::spawn(move || {
        let f = File::open(&path).expect("netns file");
        // SAFETY: setns on this thread only, with a namespace fd we hold open.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        RawIpSocket::open(&ifname, Some(peer)).expect("raw socket")
    })
    .join()
    .expect("socket thread")
}

fn main() {
    let args = Args::parse();
    println!("{args:?}");
    let (pa, pb) = (Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2));
    match args.transport.as_str() {
        "mem" => {
            let (ta, tb) = mem_pair(pa, pb);
            run(
                end(A_HOST, pb, ta, &args),
                end(B_HOST, pa, tb, &args),
                &args,
            );
        }
        "netns" => {
            tandem_testlab::require_root();
            let _lock = tandem_testlab::lock().expect("lab lock");
            let p = tandem_testlab::unique_prefix("sbn");
            let (na, nb) = (format!("{p}a"), format!("{p}b"));
            // Deleted on the way out, panics included.
            let _guard = Netns(vec![na.clone(), nb.clone()]);
            ip(&["netns", "add", &na]);
            ip(&["netns", "add", &nb]);
            ip(&[
                "-n", &na, "link", "add", "synca", "type", "veth", "peer", "name", "syncb",
                "netns", &nb,
            ]);
            ip(&["-n", &na, "addr", "add", "10.77.0.1/24", "dev", "synca"]);
            ip(&["-n", &nb, "addr", "add", "10.77.0.2/24", "dev", "syncb"]);
            ip(&["-n", &na, "link", "set", "synca", "up"]);
            ip(&["-n", &nb, "link", "set", "syncb", "up"]);
            run(
                end(A_HOST, pb, open_in(&na, "synca", pb), &args),
                end(B_HOST, pa, open_in(&nb, "syncb", pa), &args),
                &args,
            );
        }
        t => panic!("unknown transport {t}"),
    }
}
