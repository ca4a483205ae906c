//! The lab throughput benchmark's traffic: minimal UDP frames that carry a send timestamp, the
//! sink's parser for them, the sink's ARP answer, and the clock both ends read.
//!
//! A probe frame is 60 bytes (the Ethernet minimum without FCS): Ethernet (14), IPv4 (20, no
//! options), UDP (8), and an 18-byte payload:
//!
//! ```text
//! 0       8       16  18
//! | ts_ns | seq   |tg |    ts_ns: CLOCK_MONOTONIC at send, big endian; "tg": the magic
//! ```
//!
//! Sender and sink run in different network namespaces of one machine and read the same
//! monotonic clock, so `receive time - ts_ns` is the one-way latency through the box.

use std::net::Ipv4Addr;

use tandem_dataplane::wire::checksum::{self, fold, pseudo_header_v4, sum};
use tandem_dataplane::wire::ipv4::proto;

/// Probe frame length: the Ethernet minimum without FCS.
pub const FRAME_LEN: usize = 60;

const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const UDP_LEN: usize = 8;
const PAYLOAD_LEN: usize = FRAME_LEN - ETH_LEN - IP_LEN - UDP_LEN;
const MAGIC: [u8; 2] = *b"tg";

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;

/// CLOCK_MONOTONIC in nanoseconds: the clock of every namespace on the machine.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Lets this thread's sleeps end within a microsecond of their deadline (the default slack is
/// 50 us, more than the latencies measured).
pub fn tight_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0) };
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The fixed part of the probe frames: everything but the source port, sequence and timestamp.
#[derive(Debug, Clone)]
pub struct ProbeTemplate {
    frame: [u8; FRAME_LEN],
    /// Sum of the UDP pseudo-header and the fixed UDP fields, before folding.
    udp_base: u32,
}

impl ProbeTemplate {
    pub fn new(
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        src_ip: Ipv4Addr,
        dst_ip: Ipv4Addr,
        dst_port: u16,
    ) -> Self {
        let mut f = [0u8; FRAME_LEN];
        f[0..6].copy_from_slice(&dst_mac);
        f[6..12].copy_from_slice(&src_mac);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let ip = &mut f[ETH_LEN..ETH_LEN + IP_LEN];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((IP_LEN + UDP_LEN + PAYLOAD_LEN) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = proto::UDP;
        ip[12..16].copy_from_slice(&src_ip.octets());
        ip[16..20].copy_from_slice(&dst_ip.octets());
        let csum = checksum::data(ip);
        ip[10..12].copy_from_slice(&csum.to_be_bytes());
        let udp_len = (UDP_LEN + PAYLOAD_LEN) as u16;
        let l4 = ETH_LEN + IP_LEN;
        f[l4 + 2..l4 + 4].copy_from_slice(&dst_port.to_be_bytes());
        f[l4 + 4..l4 + 6].copy_from_slice(&udp_len.to_be_bytes());
        f[l4 + 8 + 16..l4 + 8 + 18].copy_from_slice(&MAGIC);
        let udp_base = pseudo_header_v4(src_ip, dst_ip, proto::UDP, udp_len)
            + u32::from(dst_port)
            + u32::from(udp_len)
            + sum(&MAGIC);
        Self { frame: f, udp_base }
    }

    /// Writes a probe from `src_port` with this sequence number and send time into `out`, UDP
    /// checksum included (the lab's client has TX checksum offload off, and NAT must see a
    /// valid checksum to update).
    pub fn write(&self, out: &mut [u8; FRAME_LEN], src_port: u16, seq: u64, ts_ns: u64) {
        *out = self.frame;
        let l4 = ETH_LEN + IP_LEN;
        out[l4..l4 + 2].copy_from_slice(&src_port.to_be_bytes());
        let p = l4 + UDP_LEN;
        out[p..p + 8].copy_from_slice(&ts_ns.to_be_bytes());
        out[p + 8..p + 16].copy_from_slice(&seq.to_be_bytes());
        let mut csum = !fold(self.udp_base + u32::from(src_port) + sum(&out[p..p + 16]));
        if csum == 0 {
            csum = 0xffff;
        }
        out[l4 + 6..l4 + 8].copy_from_slice(&csum.to_be_bytes());
    }
}

/// What the sink learns from a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub ts_ns: u64,
    pub seq: u64,
    pub src_port: u16,
}

/// A probe to `dst_ip:dst_port`, or None for any other frame. Source address and port are not
/// checked: NAT rewrites them.
pub fn parse_probe(frame: &[u8], dst_ip: Ipv4Addr, dst_port: u16) -> Option<Probe> {
    if frame.len() < FRAME_LEN || frame[12..14] != ETHERTYPE_IPV4.to_be_bytes() {
        return None;
    }
    let ip = &frame[ETH_LEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < IP_LEN || ip[9] != proto::UDP || ip[16..20] != dst_ip.octets() {
        return None;
    }
    let udp = ip.get(ihl..ihl + UDP_LEN + PAYLOAD_LEN)?;
    if udp[2..4] != dst_port.to_be_bytes() || udp[UDP_LEN + 16..UDP_LEN + 18] != MAGIC {
        return None;
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&udp[UDP_LEN + at..UDP_LEN + at + 8]);
        u64::from_be_bytes(b)
    };
    Some(Probe {
        ts_ns: word(0),
        seq: word(8),
        src_port: u16::from_be_bytes([udp[0], udp[1]]),
    })
}

/// Turns an ARP request for `ip` into the reply from `mac`, in place. False (frame untouched)
/// for any other frame.
pub fn answer_arp(frame: &mut [u8], ip: Ipv4Addr, mac: [u8; 6]) -> bool {
    const ARP_LEN: usize = 28;
    if frame.len() < ETH_LEN + ARP_LEN || frame[12..14] != ETHERTYPE_ARP.to_be_bytes() {
        return false;
    }
    let arp = &frame[ETH_LEN..ETH_LEN + ARP_LEN];
    // Ethernet/IPv4 request (htype 1, ptype 0x0800, hlen 6, plen 4, op 1) for `ip`.
    if arp[0..8] != [0, 1, 8, 0, 6, 4, 0, 1] || arp[24..28] != ip.octets() {
        return false;
    }
    let mut sha = [0u8; 6];
    sha.copy_from_slice(&arp[8..14]);
    let mut spa = [0u8; 4];
    spa.copy_from_slice(&arp[14..18]);
    frame[0..6].copy_from_slice(&sha);
    frame[6..12].copy_from_slice(&mac);
    let arp = &mut frame[ETH_LEN..ETH_LEN + ARP_LEN];
    arp[7] = 2;
    arp[8..14].copy_from_slice(&mac);
    arp[14..18].copy_from_slice(&ip.octets());
    arp[18..24].copy_from_slice(&sha);
    arp[24..28].copy_from_slice(&spa);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 100);
    const DST: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 1);

    fn template() -> ProbeTemplate {
        ProbeTemplate::new([2, 0, 0, 0, 1, 0], [2, 0, 0, 0, 0x0a, 1], SRC, DST, 7777)
    }

    #[test]
    fn probe_round_trips_with_valid_checksums() {
        let mut f = [0u8; FRAME_LEN];
        for (port, seq, ts) in [(10000, 1, 42), (10255, u64::MAX, u64::MAX), (1, 0, 0)] {
            template().write(&mut f, port, seq, ts);
            // The IPv4 header, and the UDP datagram with its pseudo-header, sum to 0xffff.
            assert_eq!(fold(sum(&f[14..34])), 0xffff);
            let pseudo = pseudo_header_v4(SRC, DST, 17, 26);
            assert_eq!(fold(pseudo + sum(&f[34..60])), 0xffff);
            let p = parse_probe(&f, DST, 7777).expect("a probe");
            assert_eq!(
                p,
                Probe {
                    ts_ns: ts,
                    seq,
                    src_port: port
                }
            );
        }
        assert_eq!(parse_probe(&f, DST, 7778), None);
        assert_eq!(parse_probe(&f, SRC, 7777), None);
        assert_eq!(parse_probe(&f[..59], DST, 7777), None);
    }

    #[test]
    fn arp_request_for_our_address_gets_a_reply() {
        let asker = [2, 0, 0, 0, 0x0b, 2];
        let mine = [2, 0, 0, 0, 2, 0];
        let mut f = [0u8; 60];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&asker);
        f[12..14].copy_from_slice(&[8, 6]);
        f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f[22..28].copy_from_slice(&asker);
        f[28..32].copy_from_slice(&[172, 25, 46, 100]);
        f[38..42].copy_from_slice(&DST.octets());
        let mut other = f;
        assert!(!answer_arp(&mut other, SRC, mine));
        assert_eq!(other, f);
        assert!(answer_arp(&mut f, DST, mine));
        assert_eq!(&f[0..6], &asker);
        assert_eq!(&f[6..12], &mine);
        assert_eq!(f[21], 2);
        assert_eq!(&f[22..28], &mine);
        assert_eq!(&f[28..32], &DST.octets());
        assert_eq!(&f[32..38], &asker);
        assert_eq!(&f[38..42], &[172, 25, 46, 100]);
    }

    #[test]
    fn macs_parse() {
        assert_eq!(parse_mac("02:00:00:00:0a:01"), Some([2, 0, 0, 0, 10, 1]));
        assert_eq!(parse_mac("02:00:00:00:0a"), None);
        assert_eq!(parse_mac("02:00:00:00:0a:01:02"), None);
        assert_eq!(parse_mac("zz:00:00:00:0a:01"), None);
    }
}
