//! The whole pipeline on arbitrary frames: box A of the seed's lab (perf's fixture, small queues) with one
//! NATed TCP flow established, in-memory ports. Whatever arrives, nothing panics, every frame
//! ends in exactly one outcome counter, and every IPv4 frame the box sends has a valid header
//! checksum.
//!
//! Input: a sequence of `[ctl][len_hi][len_lo][frame bytes]`. `ctl` bit 0: the interface (lan,
//! wan); bit 1: fix the IPv4 header and TCP/UDP/ICMP checksums first (so mutations get past
//! the checksum checks to the state and NAT code); bits 2..8: milliseconds to advance the clock.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tandem_dataplane::io::mem::MemPort;
use tandem_dataplane::neigh::PendingConfig;
use tandem_dataplane::pipeline::{Dataplane, Pipeline, PipelineConfig};
use tandem_dataplane::wire::ethernet::{self, EtherType, EthernetFrame};
use tandem_dataplane::wire::icmp::IcmpPacket;
use tandem_dataplane::wire::ipv4::{IpProtocol, Ipv4Packet};
use tandem_dataplane::wire::tcp::TcpPacket;
use tandem_dataplane::wire::udp::UdpPacket;
use tandem_perf::fixture::{box_a_with, establish, table_config, NOW};

/// Fills the checksums of whatever layers parse (the IPv4 header last: it does not cover L4).
fn fix_checksums(f: &mut [u8]) {
    let Ok(eth) = EthernetFrame::new_checked(&f[..]) else {
        return;
    };
    if eth.ethertype() != EtherType::Ipv4 {
        return;
    }
    let ip_bytes = &mut f[ethernet::HEADER_LEN..];
    let Ok(ip) = Ipv4Packet::new_checked(&ip_bytes[..]) else {
        return;
    };
    let (src, dst, proto, first) = (
        ip.src_addr(),
        ip.dst_addr(),
        ip.next_header(),
        !ip.is_fragment(),
    );
    let mut ip = Ipv4Packet::new_unchecked(ip_bytes);
    if first {
        let l4 = ip.payload_mut();
        match proto {
            IpProtocol::Tcp => {
                if let Ok(mut t) = TcpPacket::new_checked(l4) {
                    t.fill_checksum(src, dst);
                }
            }
            IpProtocol::Udp => {
                if let Ok(mut u) = UdpPacket::new_checked(l4) {
                    u.fill_checksum(src, dst);
                }
            }
            IpProtocol::Icmp => {
                if let Ok(mut i) = IcmpPacket::new_checked(l4) {
                    i.fill_checksum();
                }
            }
            _ => {}
        }
    }
    ip.fill_checksum();
}

fn check_sent(port: &mut MemPort) -> usize {
    let sent = port.take_sent();
    for f in &sent {
        let b = f.bytes();
        assert!(
            b.len() >= ethernet::HEADER_LEN,
            "a sent frame holds an Ethernet header"
        );
        let eth = EthernetFrame::new_unchecked(b);
        if eth.ethertype() == EtherType::Ipv4 {
            let ip = Ipv4Packet::new_checked(eth.payload())
                .expect("a sent IPv4 datagram is well formed");
            assert!(ip.verify_checksum(), "a sent IPv4 header checksum verifies");
        }
    }
    sent.len()
}

/// Box A as perf's `box_a`, with small queues: the default ones (256 emit and 256 pending frames
/// of 2 KiB, zeroed) cost more per input than the frames, and small ones reach the full-queue
/// drops sooner.
fn small_box_a() -> (Arc<Dataplane>, Pipeline) {
    let config = PipelineConfig {
        emit_capacity: 8,
        pending: PendingConfig {
            pool_frames: 8,
            queue_len: 2,
            max_next_hops: 4,
            ..PendingConfig::default()
        },
        ..PipelineConfig::default()
    };
    box_a_with(table_config(64), &config)
}

fuzz_target!(|data: &[u8]| {
    let (dp, mut pipe) = small_box_a();
    establish(&mut pipe);
    let rx0 = pipe.counters().rx_frames.get();
    let mut ports = vec![MemPort::new(), MemPort::new()];
    // Frames a round takes at most: small, so that rounds interleave with time and control.
    const BATCH: usize = 4;
    let mut now = NOW;
    let mut rest = data;
    let mut frames = 0u64;
    while let [ctl, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (frame, r) = tail.split_at(len);
        rest = r;
        let mut f = frame.to_vec();
        if ctl & 2 != 0 {
            fix_checksums(&mut f);
        }
        ports[usize::from(ctl & 1)].inject(&f);
        now += u64::from(ctl >> 2);
        frames += pipe.round(&mut ports, BATCH, now) as u64;
        check_sent(&mut ports[0]);
        check_sent(&mut ports[1]);
    }
    // Time passes: ARP retries and failures, then expiry of everything.
    pipe.round(&mut ports, BATCH, now + 10_000);
    dp.states
        .expire(now + 1_000_000_000, usize::MAX, &dp.states.producer());
    pipe.round(&mut ports, BATCH, now + 1_000_000_000);
    check_sent(&mut ports[0]);
    check_sent(&mut ports[1]);
    let c = pipe.counters();
    assert_eq!(
        c.rx_frames.get() - rx0,
        frames,
        "every injected frame was received"
    );
    assert_eq!(
        c.outcomes_total(),
        c.rx_frames.get(),
        "one outcome per frame"
    );
});
