//! loadgen: sends timestamped 60-byte UDP probes (64 bytes on the wire with FCS) over many
//! flows through an AF_XDP socket, paced at an offered rate or as fast as it can.
//!
//! Runs in the lab's client namespace, pointed at the gateway's MAC (resolved by the caller):
//!
//! ```text
//! loadgen --gw-mac 02:00:00:00:0a:01 --rate 300000 --seconds 12
//! ```
//!
//! Prints one line of `key=value` pairs: frames the socket took (`sent`), frames the interface
//! counted out (`wire_tx`, from sysfs), the offered rate, and the send failures.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tandem_dataplane::io::afxdp::{BindMode, PortSpec, Queues, WorkerConfig, WorkerPorts};
use tandem_dataplane::io::{Ports, Verdict};
use tandem_perf::lab_traffic::{now_ns, parse_mac, tight_timer_slack, ProbeTemplate, FRAME_LEN};

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "AF_XDP UDP load generator for the lab throughput benchmark"
)]
struct Args {
    /// Interface to send on.
    #[arg(long, default_value = "eth0")]
    iface: String,
    /// The gateway's MAC (the box's LAN side), aa:bb:cc:dd:ee:ff.
    #[arg(long)]
    gw_mac: String,
    /// Our MAC.
    #[arg(long, default_value = "02:00:00:00:01:00")]
    src_mac: String,
    #[arg(long, default_value = "192.168.0.100")]
    src_ip: Ipv4Addr,
    #[arg(long, default_value = "172.25.46.1")]
    dst_ip: Ipv4Addr,
    #[arg(long, default_value_t = 7777)]
    dst_port: u16,
    /// Number of flows: source ports base_port .. base_port + flows, round robin.
    #[arg(long, default_value_t = 256)]
    flows: u16,
    #[arg(long, default_value_t = 10000)]
    base_port: u16,
    /// Offered rate in frames per second; 0 = as fast as the socket takes them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Frames sent back to back when paced: the sender sleeps between bursts.
    #[arg(long, default_value_t = 16)]
    burst: u64,
    /// How long to send.
    #[arg(long, default_value_t = 12.0)]
    seconds: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn sysfs_tx_packets(iface: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/statistics/tx_packets"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn run(args: &Args) -> Result<(), String> {
    let gw_mac = parse_mac(&args.gw_mac).ok_or(format!("--gw-mac {}: not a MAC", args.gw_mac))?;
    let src_mac =
        parse_mac(&args.src_mac).ok_or(format!("--src-mac {}: not a MAC", args.src_mac))?;
    if args.flows == 0 || args.burst == 0 || args.seconds <= 0.0 {
        return Err("--flows, --burst and --seconds must be positive".into());
    }
    tight_timer_slack();
    let config = WorkerConfig {
        ports: vec![PortSpec {
            if_index: 0,
            name: args.iface.clone(),
            queues: Queues::All,
        }],
        mode: BindMode::Copy,
        ring_size: 2048,
        ..WorkerConfig::default()
    };
    let mut ports = WorkerPorts::open(&config).map_err(|e| e.to_string())?;
    let template = ProbeTemplate::new(src_mac, gw_mac, args.src_ip, args.dst_ip, args.dst_port);
    // Frames that arrive on the client (none are expected) are dropped; polling also reaps
    // completions and kicks frames the kernel left on the TX ring.
    let mut drop_all = |_: u8, _: &mut [u8], _: usize| Verdict::Drop;

    let wire_before = sysfs_tx_packets(&args.iface);
    let duration_ns = (args.seconds * 1e9) as u64;
    let start = now_ns();
    let end = start + duration_ns;
    let mut frame = [0u8; FRAME_LEN];
    let mut sent: u64 = 0;
    // The probes' sequence numbers: every frame built, sent or not.
    let mut seq: u64 = 0;
    let mut refused: u64 = 0;
    let mut flow: u16 = 0;
    let mut since_poll: u32 = 0;
    loop {
        let now = now_ns();
        if now >= end {
            break;
        }
        let due = if args.rate == 0 {
            args.burst.max(64)
        } else {
            let target = u128::from(now - start) * u128::from(args.rate) / 1_000_000_000;
            let due = (target as u64).saturating_sub(sent);
            if due < args.burst.min(args.rate) {
                // Sleep until the next burst is due, unless that is too close to sleep for.
                let next = (sent + args.burst) as u128 * 1_000_000_000 / u128::from(args.rate);
                let wait = (start + next as u64).saturating_sub(now);
                if wait > 30_000 {
                    std::thread::sleep(Duration::from_nanos(wait - 10_000));
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            due.min(256)
        };
        // The whole burst is queued, then sent with one producer update and the wakeups
        // the kernel asks for (copy mode sends up to the TX budget a wakeup: 32 frames before
        // Linux 6.17): not one sendto a frame.
        let mut queued = 0u64;
        let mut no_frame = false;
        for _ in 0..due {
            template.write(&mut frame, args.base_port.wrapping_add(flow), seq, now_ns());
            if !ports.queue_copy(0, &frame) {
                no_frame = true;
                break;
            }
            queued += 1;
            seq += 1;
            flow += 1;
            if flow == args.flows {
                flow = 0;
            }
        }
        let full_before = ports.counters().tx_ring_full;
        ports.flush();
        let not_sent = ports.counters().tx_ring_full - full_before;
        sent += queued - not_sent;
        if no_frame || not_sent > 0 {
            // TX ring full or no free frame: let the kernel catch up.
            refused += not_sent + u64::from(no_frame);
            ports.poll(64, &mut drop_all);
        }
        since_poll += due as u32;
        if since_poll >= 1024 {
            since_poll = 0;
            ports.poll(64, &mut drop_all);
        }
    }
    let elapsed_ns = now_ns() - start;
    // Let what is still on the TX ring leave.
    for _ in 0..100 {
        ports.poll(64, &mut drop_all);
        if ports.counters().completed >= ports.counters().tx {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let wire = match (wire_before, sysfs_tx_packets(&args.iface)) {
        (Some(a), Some(b)) => (b - a).to_string(),
        _ => "?".into(),
    };
    let c = ports.counters();
    println!(
        "loadgen rate={} sent={sent} wire_tx={wire} seconds={:.3} offered_pps={:.0} \
         refused={refused} tx_ring_full={} send_no_frame={} tx_kicks={} tx_kick_errors={} \
         tx_budget={} flows={}",
        args.rate,
        elapsed_ns as f64 / 1e9,
        sent as f64 * 1e9 / elapsed_ns as f64,
        c.tx_ring_full,
        c.send_no_frame,
        c.tx_kicks,
        c.tx_kick_errors,
        ports.tx_budget(),
        args.flows,
    );
    Ok(())
}
