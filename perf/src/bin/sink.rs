//! sink: counts the load generator's probes on an AF_XDP socket and measures their one-way
//! latency (receive time minus the send timestamp they carry; both ends read CLOCK_MONOTONIC).
//!
//! Every frame reaching the interface goes to the socket, so the kernel never sees the probes
//! (no ICMP port unreachable); the sink answers ARP requests for its address itself, so the
//! box under test can resolve it.
//!
//! The measurement window opens `--warmup` seconds after the first probe and lasts `--seconds`:
//! only probes received inside it are counted and timed. Prints "ready" on stderr once the
//! socket is bound, and one line of `key=value` pairs on stdout at the end.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hdrhistogram::Histogram;
use tandem_dataplane::io::afxdp::{BindMode, PortSpec, Queues, WorkerConfig, WorkerPorts};
use tandem_dataplane::io::{Ports, Verdict};
use tandem_perf::lab_traffic::{answer_arp, now_ns, parse_mac, parse_probe, tight_timer_slack};

#[derive(Debug, Parser)]
#[command(name = "sink", about = "AF_XDP sink of the lab throughput benchmark")]
struct Args {
    #[arg(long, default_value = "eth0")]
    iface: String,
    /// Our address: probes to it are counted, ARP requests for it answered.
    #[arg(long, default_value = "172.25.46.1")]
    ip: Ipv4Addr,
    /// Our MAC, for ARP replies.
    #[arg(long, default_value = "02:00:00:00:02:00")]
    mac: String,
    #[arg(long, default_value_t = 7777)]
    port: u16,
    /// Seconds after the first probe before counting starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Length of the measurement window.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Give up if no probe arrives within this many seconds.
    #[arg(long, default_value_t = 20.0)]
    timeout: f64,
    /// Spin on the rings instead of sleeping when idle (lower latency, a whole core).
    #[arg(long)]
    spin: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sink: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    first_ns: Option<u64>,
    in_window: u64,
    before_window: u64,
    after_window: u64,
    other: u64,
    arp_replies: u64,
    /// Probes whose timestamp is ahead of the receive time (should never happen).
    clock_backwards: u64,
    /// The kernel's drop count of our sockets when the window opened and when it closed.
    dropped_at_open: Option<u64>,
    dropped_at_close: Option<u64>,
}

fn run(args: &Args) -> Result<(), String> {
    let mac = parse_mac(&args.mac).ok_or(format!("--mac {}: not a MAC", args.mac))?;
    tight_timer_slack();
    let config = WorkerConfig {
        ports: vec![PortSpec {
            if_index: 0,
            name: args.iface.clone(),
            queues: Queues::All,
        }],
        mode: BindMode::Copy,
        ring_size: 4096,
        ..WorkerConfig::default()
    };
    let mut ports = WorkerPorts::open(&config).map_err(|e| e.to_string())?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| format!("histogram: {e}"))?;
    let warmup_ns = (args.warmup * 1e9) as u64;
    let window_ns = (args.seconds * 1e9) as u64;
    let mut t = Tally::default();
    eprintln!("ready");

    let started = now_ns();
    let mut idle: u32 = 0;
    let mut last_rx = started;
    loop {
        let n = ports.poll(256, &mut |_, buf, len| {
            let frame = &buf[..len];
            if let Some(p) = parse_probe(frame, args.ip, args.port) {
                let now = now_ns();
                let first = *t.first_ns.get_or_insert(now);
                let open = first + warmup_ns;
                if now < open {
                    t.before_window += 1;
                } else if now < open + window_ns {
                    t.in_window += 1;
                    match now.checked_sub(p.ts_ns) {
                        Some(lat) => hist.saturating_record(lat.max(1)),
                        None => t.clock_backwards += 1,
                    }
                } else {
                    t.after_window += 1;
                }
                return Verdict::Drop;
            }
            if answer_arp(&mut buf[..len], args.ip, mac) {
                t.arp_replies += 1;
                return Verdict::Tx { out_if: 0, len };
            }
            t.other += 1;
            Verdict::Drop
        });
        let now = now_ns();
        if n > 0 {
            last_rx = now;
        }
        if let Some(first) = t.first_ns {
            // Frames the kernel dropped for want of a fill buffer reached this socket, so the
            // box did forward them: counted apart, sampled at the window's edges.
            if t.dropped_at_open.is_none() && now >= first + warmup_ns {
                t.dropped_at_open = Some(ports.kernel_stats().rx_dropped);
            }
            if t.dropped_at_close.is_none() && now >= first + warmup_ns + window_ns {
                t.dropped_at_close = Some(ports.kernel_stats().rx_dropped);
            }
        }
        match t.first_ns {
            // After the window, drain until the sender has stopped: probes must not reach the
            // kernel (which would answer them with ICMP) once the socket is gone.
            Some(first)
                if now >= first + warmup_ns + window_ns
                    && (now >= last_rx + 300_000_000
                        || now >= first + warmup_ns + window_ns + 10_000_000_000) =>
            {
                break
            }
            None if now >= started + (args.timeout * 1e9) as u64 => break,
            _ => {}
        }
        if n > 0 || args.spin {
            idle = 0;
        } else {
            idle += 1;
            if idle > 64 {
                std::thread::sleep(Duration::from_micros(10));
            }
        }
    }

    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let window_dropped = match (t.dropped_at_open, t.dropped_at_close) {
        (Some(a), Some(b)) => b - a,
        _ => 0,
    };
    let k = ports.kernel_stats();
    let c = ports.counters();
    println!(
        "sink received={} window_s={:.3} pps={:.0} sink_dropped={window_dropped} \
         arrived_pps={:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1} \
         max_us={:.1} before_window={} after_window={} other={} arp_replies={} \
         clock_backwards={} kernel_rx_dropped={} kernel_rx_ring_full={} rx_total={}",
        t.in_window,
        args.seconds,
        t.in_window as f64 / args.seconds,
        (t.in_window + window_dropped) as f64 / args.seconds,
        us(0.5),
        us(0.99),
        us(0.999),
        hist.max() as f64 / 1000.0,
        t.before_window,
        t.after_window,
        t.other,
        t.arp_replies,
        t.clock_backwards,
        k.rx_dropped,
        k.rx_ring_full,
        c.rx,
    );
    if t.first_ns.is_none() {
        return Err(format!("no probe arrived within {} s", args.timeout));
    }
    Ok(())
}
