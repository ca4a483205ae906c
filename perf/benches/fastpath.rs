//! The fast path without AF_XDP: box A's pipeline on in-memory frames, the state table, the
//! ruleset. Results and how to read them: perf/RESULTS.md.
//!
//! `cargo bench -p tandem-perf --bench fastpath` (all), or a filter: `-- established_nat`.
//!
//! Every pipeline benchmark checks what it measured: before the timed loop one batch is run and
//! its frames inspected, and after it the counters must show every packet forwarded (or every
//! SYN creating a state), so a drop path can never pass for a fast path.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};

use tandem_dataplane::filter::{
    Action, AddrMatch, PacketMeta, PortRange, Prefix, ProtoMatch, Rule, Ruleset,
    Verdict as RuleVerdict,
};
use tandem_dataplane::io::mem::MemPort;
use tandem_dataplane::io::{Frame, Verdict};
use tandem_dataplane::pipeline::{
    Pipeline, PipelineConfig, LOOKAHEAD_INDEX_BYTES, LOOKAHEAD_STATES,
};
use tandem_dataplane::state::{Direction, FlowKey};
use tandem_dataplane::wire::ethernet::{self, EthernetFrame};
use tandem_dataplane::wire::ipv4::Ipv4Packet;
use tandem_dataplane::wire::tcp::TcpPacket;
use tandem_dataplane::wire::MacAddr;
use tandem_fixture::{CLIENT, LAN, SERVER, SERVER_MAC, WAN, WAN_VIP};
use tandem_perf::fixture::{
    box_a, client_syn, establish, establish_from, established_nat_flows, nat_states,
    nonzero_counters, table_config, FrameSet, NOW,
};

/// Frames per batch (one AF_XDP RX burst).
const BATCH: usize = 64;

/// Copies `tmpl` into every frame of the batch: the re-injection every pipeline iteration pays.
#[inline]
fn refill(frames: &mut [Frame], tmpl: &[u8]) {
    for f in frames.iter_mut() {
        f.buf[..tmpl.len()].copy_from_slice(tmpl);
        f.len = tmpl.len();
    }
}

/// One batch through the pipeline, per frame; returns how many frames were sent. Inside one
/// read section of the state table, as `Pipeline::round` holds one per batch.
#[inline]
fn process_batch(pipe: &mut Pipeline, in_if: u8, frames: &mut [Frame]) -> usize {
    pipe.begin_batch(NOW);
    let dp = std::sync::Arc::clone(pipe.dataplane());
    let reading = dp.states.read_section();
    let mut tx = 0;
    for f in frames.iter_mut() {
        if let Verdict::Tx { len, .. } =
            pipe.process_in(Some(&reading), in_if, &mut f.buf[..], f.len)
        {
            f.len = len;
            tx += 1;
        }
    }
    pipe.end_batch();
    tx
}

fn counter(pipe: &Pipeline, name: &str) -> u64 {
    pipe.counters()
        .snapshot()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, v)| v)
}

/// Every frame counted since `before` was forwarded: no drop, no ARP queueing.
fn assert_all_forwarded(pipe: &Pipeline, before: &[(&'static str, u64)], what: &str) {
    let after = pipe.counters().snapshot();
    let delta = |name: &str| {
        let a = after.iter().find(|(n, _)| *n == name).map_or(0, |p| p.1);
        let b = before.iter().find(|(n, _)| *n == name).map_or(0, |p| p.1);
        a - b
    };
    let rx = delta("rx_frames");
    assert_eq!(
        delta("forwarded"),
        rx,
        "{what}: not every frame was forwarded; counters {:?}",
        nonzero_counters(pipe)
    );
    assert_eq!(delta("tx_frames"), rx, "{what}: tx_frames != rx_frames");
    println!("{what}: check passed, {rx} frames received, {rx} forwarded");
}

/// `fastpath/copy_64` and `fastpath/established_nat` (+ `established_nat_round`).
fn established(g: &mut BenchmarkGroup<'_, WallTime>) {
    let (_dp, mut pipe) = box_a(table_config(100_000));
    let flow = establish(&mut pipe);
    let tmpl = flow.ack_frame.clone();
    let mut frames: Vec<Frame> = (0..BATCH).map(|_| Frame::new()).collect();

    // What one batch does: 64 frames out of wan, from the WAN VIP and the NAT port, to the
    // server's MAC.
    refill(&mut frames, &tmpl);
    assert_eq!(process_batch(&mut pipe, LAN, &mut frames), BATCH);
    for f in &frames {
        let eth = EthernetFrame::new_unchecked(f.bytes());
        assert_eq!(eth.dst_addr(), MacAddr(SERVER_MAC));
        let ip = Ipv4Packet::new_unchecked(&f.bytes()[ethernet::HEADER_LEN..]);
        assert_eq!((ip.src_addr(), ip.dst_addr()), (WAN_VIP, SERVER));
        assert!(ip.verify_checksum());
        let tcp = TcpPacket::new_unchecked(ip.payload());
        assert_eq!(tcp.src_port(), flow.nat_port);
        assert!(tcp.verify_checksum(WAN_VIP, SERVER));
    }

    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("copy_64", |b| {
        b.iter(|| refill(black_box(&mut frames), black_box(&tmpl)))
    });

    let before = pipe.counters().snapshot();
    g.bench_function("established_nat", |b| {
        b.iter(|| {
            refill(&mut frames, &tmpl);
            black_box(process_batch(&mut pipe, LAN, &mut frames))
        })
    });
    assert_all_forwarded(&pipe, &before, "established_nat");

    // The same through in-memory ports and `Pipeline::round`, the driver loop the box's workers
    // run (inject copies; frames move to the output port's outbox in their own buffers).
    let mut ports = [MemPort::new(), MemPort::new()];
    for _ in 0..2 * BATCH {
        ports[0].add_spare(Frame::new());
        ports[1].add_spare(Frame::new());
    }
    let before = pipe.counters().snapshot();
    g.bench_function("established_nat_round", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                ports[0].inject(&tmpl);
            }
            let n = pipe.round(&mut ports, BATCH, NOW);
            // The buffers go back to where the next batch is injected: without this, every
            // injected frame would allocate (and zero) a new 2 KiB buffer.
            while let Some(f) = ports[usize::from(WAN)].pop_sent() {
                ports[usize::from(LAN)].add_spare(f);
            }
            black_box(n)
        })
    });
    assert_all_forwarded(&pipe, &before, "established_nat_round");
}

/// SYNs from distinct (client, port) pairs of the LAN, 74 bytes each, back to back.
fn syns(n: usize) -> FrameSet {
    (0..n)
        .map(|i| {
            // 200 clients .20-.219 (not the VIP .10 nor fw-a .11), 500 ports each per 100k.
            let host = 20 + (i % 200) as u8;
            let sport = 1024 + (i / 200) as u16;
            client_syn(Ipv4Addr::new(192, 168, 0, host), sport, 7_000 + i as u32)
        })
        .collect()
}

/// `fastpath/new_tcp_connection`: per SYN, rule match, state insert with a NAT port, forward,
/// one frame at a time. `fastpath/new_tcp_connection_round`: the same SYNs in 64-frame batches
/// through `Pipeline::round` and in-memory ports, the box's loop (which runs the lookahead for
/// new flows in an index sized for many states). The table is sized for 1M states and holds at
/// most 10,000: each SYN's key, and the reply key its NAT port makes, land on random buckets of
/// a 35 MiB index (the 100,000 keys come back every tenth flush, so some of their 13 MB of
/// buckets may still be in a large L3). Both benches take the paths of a large index: the
/// round's lookahead, and the first packet's early request of its reply key's bucket.
fn new_connections(g: &mut BenchmarkGroup<'_, WallTime>, through_round: bool) {
    /// The SYN set; keys repeat only after a flush.
    const SYNS: usize = 100_000;
    /// States created between two flushes (untimed) of the table.
    const CHUNK: usize = 10_000;
    let name = if through_round {
        "new_tcp_connection_round"
    } else {
        "new_tcp_connection"
    };
    let (dp, mut pipe) = box_a(table_config(1_000_000));
    assert!(
        dp.states.index_bytes() >= LOOKAHEAD_INDEX_BYTES,
        "{name}: an index of {} bytes takes the small table's paths",
        dp.states.index_bytes()
    );
    let syns = syns(SYNS);
    let syn_len = syns.get(0).len();
    let mut work = vec![Frame::new()];
    let mut ports = [MemPort::new(), MemPort::new()];
    for _ in 0..2 * BATCH {
        ports[usize::from(LAN)].add_spare(Frame::new());
    }

    // One SYN, inspected.
    work[0].buf[..syn_len].copy_from_slice(syns.get(0));
    work[0].len = syn_len;
    assert_eq!(process_batch(&mut pipe, LAN, &mut work), 1);
    let ip = Ipv4Packet::new_unchecked(&work[0].bytes()[ethernet::HEADER_LEN..]);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (WAN_VIP, SERVER));
    assert_eq!(dp.states.len(), 1);
    let by = dp.states.producer();
    dp.states.flush(&by);

    let mut next = 0usize;
    let mut in_table = 0usize;
    let mut now = NOW;
    let created0 = counter(&pipe, "states_created");
    let mut timed_syns = 0u64;
    g.throughput(Throughput::Elements(1));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                if in_table == CHUNK {
                    dp.states.flush(&by);
                    in_table = 0;
                    // The NAT port search starts from a hash of the flow and the time: a new
                    // millisecond at each flush, so that a SYN that comes back (every tenth
                    // flush) does not find its last reply key's bucket still in the cache, as on
                    // a box.
                    now += 1;
                }
                if next == SYNS {
                    next = 0;
                }
                let n = left.min(CHUNK - in_table).min(SYNS - next);
                let created = counter(&pipe, "states_created");
                let start = Instant::now();
                let mut tx = 0;
                let mut i = next;
                while i < next + n {
                    let end = (i + BATCH).min(next + n);
                    if through_round {
                        for j in i..end {
                            ports[usize::from(LAN)].inject(syns.get(j));
                        }
                        pipe.round(&mut ports, BATCH, now);
                        while let Some(f) = ports[usize::from(WAN)].pop_sent() {
                            ports[usize::from(LAN)].add_spare(f);
                            tx += 1;
                        }
                    } else {
                        pipe.begin_batch(now);
                        let reading = dp.states.read_section();
                        for j in i..end {
                            let f = &mut work[0];
                            f.buf[..syn_len].copy_from_slice(syns.get(j));
                            if let Verdict::Tx { .. } =
                                pipe.process_in(Some(&reading), LAN, &mut f.buf[..], syn_len)
                            {
                                tx += 1;
                            }
                        }
                        drop(reading);
                        pipe.end_batch();
                    }
                    i = end;
                }
                total += start.elapsed();
                assert_eq!(tx, n, "every SYN forwarded: {:?}", nonzero_counters(&pipe));
                assert_eq!(counter(&pipe, "states_created") - created, n as u64);
                next += n;
                in_table += n;
                left -= n;
                timed_syns += n as u64;
            }
            total
        })
    });
    let created = counter(&pipe, "states_created") - created0;
    assert_eq!(created, timed_syns);
    println!("{name}: check passed, {created} states created by {timed_syns} SYNs");
}

/// `fastpath/established_nat_2_workers_{same_flow,own_flows}`: two workers (threads, each with
/// its own pipeline) on one table, each forwarding 64-frame batches: of one flow both (the
/// worst case for the shared table: one key shard, one state), or of a flow each. Throughput is
/// the pair's, per packet; on this 2-vCPU VM the two threads have a core each only when nothing
/// else runs.
fn two_workers(g: &mut BenchmarkGroup<'_, WallTime>, same_flow: bool) {
    let (dp, mut a) = box_a(table_config(100_000));
    let mut b = Pipeline::new(dp.clone(), &PipelineConfig::default());
    let flow_a = establish(&mut a);
    let flow_b = if same_flow {
        flow_a.clone()
    } else {
        establish_from(&mut b, 40001)
    };
    let mut frames_a: Vec<Frame> = (0..BATCH).map(|_| Frame::new()).collect();
    let mut frames_b: Vec<Frame> = (0..BATCH).map(|_| Frame::new()).collect();
    let (before_a, before_b) = (a.counters().snapshot(), b.counters().snapshot());
    let name = if same_flow {
        "established_nat_2_workers_same_flow"
    } else {
        "established_nat_2_workers_own_flows"
    };
    g.throughput(Throughput::Elements(2 * BATCH as u64));
    g.bench_function(name, |bench| {
        bench.iter_custom(|iters| {
            let start = std::sync::Barrier::new(3);
            std::thread::scope(|s| {
                for (pipe, frames, tmpl) in [
                    (&mut a, &mut frames_a, &flow_a.ack_frame),
                    (&mut b, &mut frames_b, &flow_b.ack_frame),
                ] {
                    let start = &start;
                    s.spawn(move || {
                        start.wait();
                        for _ in 0..iters {
                            refill(frames, tmpl);
                            black_box(process_batch(pipe, LAN, frames));
                        }
                    });
                }
                start.wait();
                let t0 = Instant::now();
                // The scope joins both workers before it returns.
                t0
            })
            .elapsed()
        })
    });
    assert_all_forwarded(&a, &before_a, name);
    assert_all_forwarded(&b, &before_b, name);
    assert_eq!(dp.states.len(), if same_flow { 1 } else { 2 });
}

/// Fills the batch with the next frames of `flows`, from `*next` on, wrapping around.
#[inline]
fn refill_from(frames: &mut [Frame], flows: &FrameSet, next: &mut usize) {
    for f in frames.iter_mut() {
        let t = flows.get(*next);
        *next = (*next + 1) % flows.len();
        f.buf[..t.len()].copy_from_slice(t);
        f.len = t.len();
    }
}

/// `fastpath/established_nat_1m_random`: 64-frame batches of client ACKs of a million
/// established NATed flows, each flow once per round in a random order: every packet finds a
/// cold state in a large table, as on a box with many flows.
fn established_1m_random(g: &mut BenchmarkGroup<'_, WallTime>) {
    const N: u32 = 1_000_000;
    let (dp, mut pipe, flows) = established_nat_flows(N);
    let mut frames: Vec<Frame> = (0..BATCH).map(|_| Frame::new()).collect();
    // Every flow once, untimed: each ACK is forwarded, translated to the WAN VIP.
    let before = pipe.counters().snapshot();
    let mut next = 0;
    for _ in 0..flows.len().div_ceil(BATCH) {
        refill_from(&mut frames, &flows, &mut next);
        assert_eq!(process_batch(&mut pipe, LAN, &mut frames), BATCH);
        let ip = Ipv4Packet::new_unchecked(&frames[0].bytes()[ethernet::HEADER_LEN..]);
        assert_eq!(ip.src_addr(), WAN_VIP);
    }
    assert_all_forwarded(&pipe, &before, "established_nat_1m_random (check)");
    assert_eq!(dp.states.len(), N as usize);

    let before = pipe.counters().snapshot();
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("established_nat_1m_random", |b| {
        b.iter(|| {
            refill_from(&mut frames, &flows, &mut next);
            black_box(process_batch(&mut pipe, LAN, &mut frames))
        })
    });
    assert_all_forwarded(&pipe, &before, "established_nat_1m_random");

    // The same through `Pipeline::round` and in-memory ports, the box's loop: with a table this
    // large it looks the batch over first and prefetches its states (`pipeline::lookahead`).
    assert!(N as usize >= LOOKAHEAD_STATES);
    let mut ports = [MemPort::new(), MemPort::new()];
    for _ in 0..2 * BATCH {
        ports[usize::from(LAN)].add_spare(Frame::new());
    }
    let before = pipe.counters().snapshot();
    g.bench_function("established_nat_1m_random_round", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                ports[usize::from(LAN)].inject(flows.get(next));
                next = (next + 1) % flows.len();
            }
            let n = pipe.round(&mut ports, BATCH, NOW);
            while let Some(f) = ports[usize::from(WAN)].pop_sent() {
                ports[usize::from(LAN)].add_spare(f);
            }
            black_box(n)
        })
    });
    assert_all_forwarded(&pipe, &before, "established_nat_1m_random_round");
}

/// `fastpath/lookup_1m`: `with_state` on random keys (both directions) of 1M states.
fn lookup_1m(g: &mut BenchmarkGroup<'_, WallTime>) {
    const N: u32 = 1_000_000;
    let t = nat_states(N, 0);
    let mut keys: Vec<FlowKey> = Vec::with_capacity(2 * N as usize);
    t.for_each(|s| {
        keys.push(*s.key(Direction::Original));
        keys.push(*s.key(Direction::Reply));
    });
    // Fisher-Yates with xorshift64*: a fixed, uniform order.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..keys.len()).rev() {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let j = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % (i as u64 + 1)) as usize;
        keys.swap(i, j);
    }
    let hits = keys
        .iter()
        .filter(|k| t.with_state(k, |_, _| ()).is_some())
        .count();
    assert_eq!(hits, keys.len(), "every key finds its state");

    let mut i = 0usize;
    g.throughput(Throughput::Elements(1));
    g.bench_function("lookup_1m", |b| {
        b.iter(|| {
            let k = &keys[i];
            i += 1;
            if i == keys.len() {
                i = 0;
            }
            black_box(t.with_state(black_box(k), |s, d| (s.rule, d)))
        })
    });
}

/// `fastpath/rules_1000` and `fastpath/rules_1000_mixed`: first match over 1000 rules of one
/// interface, the last one matching.
fn rules(g: &mut BenchmarkGroup<'_, WallTime>) {
    let meta = PacketMeta {
        in_if: LAN,
        proto: 6,
        src: CLIENT,
        dst: SERVER,
        sport: 40000,
        dport: 80,
    };
    let check = |rs: &Ruleset| {
        let v = rs.evaluate(&meta);
        let reference = rs.rules(LAN).iter().position(|r| r.matches(&meta));
        assert_eq!(reference, Some(999), "the last rule is the first match");
        assert!(matches!(v, RuleVerdict::Rule { index: 999, .. }), "{v:?}");
    };

    // Rules that differ in the destination port only; the last one is port 80.
    let ports: Vec<Rule> = (0..1000u32)
        .map(|i| {
            let port = if i == 999 { 80 } else { 10_000 + i as u16 };
            Rule::new(
                i + 1,
                if i % 2 == 0 {
                    Action::Pass
                } else {
                    Action::Block
                },
            )
            .with_proto(ProtoMatch::Tcp)
            .with_dst_port(PortRange::single(port))
        })
        .collect();
    let rs = Ruleset::new(vec![ports], Vec::new(), 1);
    check(&rs);
    g.throughput(Throughput::Elements(1));
    g.bench_function("rules_1000", |b| {
        b.iter(|| black_box(rs.evaluate(black_box(&meta))))
    });

    // A third on destination hosts (any port), a third on destination ports (any address), a
    // third on source hosts with the low ports: whichever dimension the cut takes, two thirds
    // of the rules are wildcards in it and stay candidates.
    let host = |base: u32, i: u32| AddrMatch::prefix(Prefix::host(Ipv4Addr::from(base + i)));
    let mixed: Vec<Rule> = (0..1000u32)
        .map(|i| {
            let r = Rule::new(i + 1, Action::Pass).with_proto(ProtoMatch::Tcp);
            match (i, i % 3) {
                (999, _) => r
                    .with_src(AddrMatch::prefix(Prefix::new(CLIENT, 24).expect("/24")))
                    .with_dst(host(u32::from(SERVER), 0))
                    .with_dst_port(PortRange::single(80)),
                (_, 0) => r.with_dst(host(0xc612_0000, i)),
                (_, 1) => r.with_dst_port(PortRange::single(20_000 + i as u16)),
                _ => r
                    .with_src(host(0x0a0a_0000, i))
                    .with_dst_port(PortRange::new(0, 1023)),
            }
        })
        .collect();
    let rs = Ruleset::new(vec![mixed], Vec::new(), 1);
    check(&rs);
    g.bench_function("rules_1000_mixed", |b| {
        b.iter(|| black_box(rs.evaluate(black_box(&meta))))
    });
    // The reference semantics rule by rule (`Rule::matches`): what the compiled form is for.
    g.bench_function("rules_1000_mixed_reference", |b| {
        b.iter(|| {
            let m = black_box(&meta);
            black_box(rs.rules(LAN).iter().position(|r| r.matches(m)))
        })
    });
}

/// Criterion's filter (its first positional argument) and whether it ends in `$`: setups of
/// benchmarks it excludes are skipped (the 1M-state tables alone take seconds, and would
/// pollute a `perf record` or a callgrind count of another benchmark). A substring test, or an
/// exact suffix with `$`, not criterion's regex: with a regex beyond `^...$`, run without one.
fn filter() -> Option<(String, bool)> {
    const WITH_VALUE: &[&str] = &[
        "-c",
        "--color",
        "-s",
        "--save-baseline",
        "-b",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--profile-time",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
        "--format",
    ];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') {
            let exact = a.ends_with('$');
            return Some((
                a.trim_start_matches('^').trim_end_matches('$').to_owned(),
                exact,
            ));
        }
    }
    None
}

fn fastpath(c: &mut Criterion) {
    let f = filter();
    let wanted = |ids: &[&str]| {
        f.as_ref().is_none_or(|(f, exact)| {
            ids.iter().any(|id| {
                let name = format!("fastpath/{id}");
                if *exact {
                    name.ends_with(f.as_str())
                } else {
                    name.contains(f.as_str())
                }
            })
        })
    };
    let mut g = c.benchmark_group("fastpath");
    g.measurement_time(Duration::from_secs(8));
    if wanted(&["copy_64", "established_nat", "established_nat_round"]) {
        established(&mut g);
    }
    if wanted(&["new_tcp_connection"]) {
        new_connections(&mut g, false);
    }
    if wanted(&["new_tcp_connection_round"]) {
        new_connections(&mut g, true);
    }
    if wanted(&[
        "rules_1000",
        "rules_1000_mixed",
        "rules_1000_mixed_reference",
    ]) {
        rules(&mut g);
    }
    if wanted(&["lookup_1m"]) {
        lookup_1m(&mut g);
    }
    if wanted(&[
        "established_nat_1m_random",
        "established_nat_1m_random_round",
    ]) {
        established_1m_random(&mut g);
    }
    if wanted(&["established_nat_2_workers_same_flow"]) {
        two_workers(&mut g, true);
    }
    if wanted(&["established_nat_2_workers_own_flows"]) {
        two_workers(&mut g, false);
    }
    g.finish();
}

criterion_group!(benches, fastpath);
criterion_main!(benches);
