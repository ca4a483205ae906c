//! The tests' box A ([`tandem_fixture`], with rules of their own) on in-memory ports, frames
//! checked with etherparse (an independent parser), and exact counter deltas (Firecracker's
//! `check_metric_after_block!` idea).
//!
//! The tests' rules: lan passes 192.168.0.0/24 with state (rule 1); wan rejects TCP to
//! 172.25.46.101:23 (rule 10) and leaves the rest to the implicit default deny, which the
//! counters tell apart from a block rule (`drop_blocked_default`, not `drop_blocked_rule`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use etherparse::{
    Ethernet2Header, Icmpv4Header, Ipv4Header, NetHeaders, PacketHeaders, TcpHeader,
    TransportHeader, UdpHeader,
};
use tandem_dataplane::counters::Counters;
use tandem_dataplane::filter::{Action, AddrMatch, PortRange, Prefix, ProtoMatch, Rule};
use tandem_dataplane::io::mem::MemPort;
use tandem_dataplane::pipeline::{Dataplane, Pipeline, PipelineConfig};
use tandem_dataplane::IfIndex;
pub use tandem_fixture::frames::*;
pub use tandem_fixture::*;

pub fn prefix(s: &str) -> Prefix {
    s.parse().unwrap()
}

/// lan: pass from 192.168.0.0/24 keep state.
pub fn lan_rules() -> Vec<Rule> {
    vec![Rule::new(1, Action::Pass).with_src(AddrMatch::prefix(prefix("192.168.0.0/24")))]
}

/// wan: reject TCP to 172.25.46.101 port 23; default deny for the rest.
pub fn wan_rules() -> Vec<Rule> {
    vec![Rule::new(10, Action::Reject)
        .with_proto(ProtoMatch::Tcp)
        .with_dst(AddrMatch::prefix(Prefix::host(WAN_IP)))
        .with_dst_port(PortRange::single(23))]
}

/// The tests' box A: fw-a with [`lan_rules`] and [`wan_rules`].
pub fn box_a() -> BoxA {
    BoxA {
        lan: lan_rules(),
        wan: wan_rules(),
        ..BoxA::default()
    }
}

/// Box A with two in-memory ports and one worker.
pub struct Lab {
    pub dp: Arc<Dataplane>,
    pub pipe: Pipeline,
    pub ports: Vec<MemPort>,
}

/// Frames a round of [`Lab::poll`] receives at most.
pub const BUDGET: usize = 64;

impl Lab {
    pub fn new() -> Lab {
        Lab::with(box_a())
    }

    /// Box A with a state table for `limit` states (its key index mapped for them).
    pub fn with_state_limit(limit: u32) -> Lab {
        Lab::with(BoxA {
            table: tandem_dataplane::state::TableConfig {
                limit,
                ..Default::default()
            },
            ..box_a()
        })
    }

    pub fn with(s: BoxA) -> Lab {
        let dp = s.dataplane();
        let pipe = Pipeline::new(dp.clone(), &PipelineConfig::default());
        Lab {
            dp,
            pipe,
            ports: vec![MemPort::new(), MemPort::new()],
        }
    }

    pub fn counters(&self) -> &Counters {
        self.pipe.counters()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.counters().snapshot().into_iter().collect())
    }

    pub fn inject(&mut self, ifx: IfIndex, frame: &[u8]) {
        self.ports[usize::from(ifx)].inject(frame);
    }

    /// One round of the driver loop at `now` (ms).
    pub fn poll(&mut self, now: u64) -> usize {
        let n = self.pipe.round(&mut self.ports, BUDGET, now);
        self.assert_outcomes_balance();
        n
    }

    /// Injects `frame` on `ifx` and runs one round at `now`.
    pub fn send(&mut self, ifx: IfIndex, frame: &[u8], now: u64) {
        self.inject(ifx, frame);
        assert_eq!(self.poll(now), 1);
    }

    /// The frames sent on `ifx` since the last call, oldest first.
    pub fn sent(&mut self, ifx: IfIndex) -> Vec<Vec<u8>> {
        self.ports[usize::from(ifx)]
            .take_sent()
            .iter()
            .map(|f| f.bytes().to_vec())
            .collect()
    }

    /// Exactly one frame sent on `ifx`, none on the other interface.
    pub fn one_sent(&mut self, ifx: IfIndex) -> Vec<u8> {
        let other = if ifx == LAN { WAN } else { LAN };
        assert_eq!(
            self.sent(other),
            Vec::<Vec<u8>>::new(),
            "nothing on if {other}"
        );
        let mut v = self.sent(ifx);
        assert_eq!(v.len(), 1, "one frame on if {ifx}");
        v.remove(0)
    }

    pub fn nothing_sent(&mut self) {
        assert!(self.sent(LAN).is_empty(), "nothing sent on lan");
        assert!(self.sent(WAN).is_empty(), "nothing sent on wan");
    }

    pub fn assert_outcomes_balance(&self) {
        let c = self.counters();
        assert_eq!(
            c.outcomes_total(),
            c.rx_frames.get(),
            "every frame ends in exactly one outcome: {:?}",
            nonzero(&c.snapshot())
        );
    }
}

fn nonzero(s: &[(&'static str, u64)]) -> Vec<(&'static str, u64)> {
    s.iter().copied().filter(|(_, v)| *v != 0).collect()
}

/// A copy of the counters by name.
#[derive(Debug, Clone)]
pub struct Snapshot(BTreeMap<&'static str, u64>);

impl Snapshot {
    /// Asserts that exactly the counters in `expected` moved since `self`, by exactly those
    /// amounts, and no other counter moved.
    pub fn assert_delta(&self, lab: &Lab, expected: &[(&str, u64)]) {
        let now = lab.snapshot();
        let mut got: BTreeMap<&str, u64> = BTreeMap::new();
        for (k, v) in &now.0 {
            let d = v - self.0[k];
            if d != 0 {
                got.insert(k, d);
            }
        }
        let want: BTreeMap<&str, u64> = expected.iter().copied().filter(|e| e.1 != 0).collect();
        assert_eq!(got, want, "counter deltas");
    }
}

/// A client's TCP handshake with the server through NAT (SYN at `t`, ISN 100; SYN-ACK at `t + 1`,
/// ISN 900; ACK at `t + 2`): the NAT address and port it left with. The SYN is taken off the WAN
/// port; the SYN-ACK stays on the LAN port for the caller.
pub fn handshake(
    lab: &mut Lab,
    client: (Ipv4Addr, u16),
    server: (Ipv4Addr, u16),
    t: u64,
) -> (Ipv4Addr, u16) {
    lab.send(
        LAN,
        &Tcp::new(CLIENT_MAC, LAN_VMAC, client, server)
            .flags("S")
            .seq(100)
            .frame(),
        t,
    );
    let syn = lab.one_sent(WAN);
    let ip = etherparse::SlicedPacket::from_ethernet(&syn).unwrap();
    let Some(etherparse::TransportSlice::Tcp(tcp)) = ip.transport else {
        panic!("the SYN left as something else");
    };
    let vip = (WAN_VIP, tcp.source_port());
    lab.send(
        WAN,
        &Tcp::new(SERVER_MAC, WAN_VMAC, server, vip)
            .flags("SA")
            .seq(900)
            .ack(101)
            .frame(),
        t + 1,
    );
    lab.send(
        LAN,
        &Tcp::new(CLIENT_MAC, LAN_VMAC, client, server)
            .flags("A")
            .seq(101)
            .ack(901)
            .frame(),
        t + 2,
    );
    vip
}

/// The Internet checksum (RFC 1071) of `b`, written by the tests themselves rather than taken
/// from the crate they test: 0 over a header or message that carries a valid checksum.
pub fn ones_complement(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An ARP packet as read back by the test's own parser.
#[derive(Debug, PartialEq, Eq)]
pub struct Arp {
    pub eth_src: [u8; 6],
    pub eth_dst: [u8; 6],
    pub op: u16,
    pub sha: [u8; 6],
    pub spa: Ipv4Addr,
    pub tha: [u8; 6],
    pub tpa: Ipv4Addr,
}

/// Parses an ARP frame the box sent: padded to 60 bytes with zeros (a reused buffer must not
/// leak the previous frame).
pub fn parse_arp(f: &[u8]) -> Arp {
    assert_eq!(f.len(), 60, "ARP frame padded to Ethernet's minimum");
    assert!(f[42..].iter().all(|&b| b == 0), "ARP padding zeroed");
    let (eth, rest) = Ethernet2Header::from_slice(f).unwrap();
    assert_eq!(eth.ether_type, etherparse::EtherType::ARP);
    assert!(rest.len() >= 28, "ARP too short");
    assert_eq!(&rest[..6], &[0, 1, 0x08, 0x00, 6, 4], "Ethernet/IPv4 ARP");
    let mac = |o: usize| <[u8; 6]>::try_from(&rest[o..o + 6]).unwrap();
    let ip = |o: usize| Ipv4Addr::new(rest[o], rest[o + 1], rest[o + 2], rest[o + 3]);
    Arp {
        eth_src: eth.source,
        eth_dst: eth.destination,
        op: u16::from_be_bytes([rest[6], rest[7]]),
        sha: mac(8),
        spa: ip(14),
        tha: mac(18),
        tpa: ip(24),
    }
}

/// An IPv4 frame the box sent, parsed by etherparse with every checksum verified.
#[derive(Debug)]
pub struct Parsed {
    pub eth: Ethernet2Header,
    pub ip: Ipv4Header,
    pub transport: TransportHeader,
    pub payload: Vec<u8>,
}

impl Parsed {
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.ip.source)
    }
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.ip.destination)
    }
    pub fn tcp(&self) -> &TcpHeader {
        match &self.transport {
            TransportHeader::Tcp(t) => t,
            t => panic!("not TCP: {t:?}"),
        }
    }
    pub fn udp(&self) -> &UdpHeader {
        match &self.transport {
            TransportHeader::Udp(u) => u,
            t => panic!("not UDP: {t:?}"),
        }
    }
    pub fn icmp(&self) -> &Icmpv4Header {
        match &self.transport {
            TransportHeader::Icmpv4(i) => i,
            t => panic!("not ICMP: {t:?}"),
        }
    }
}

/// Parses `f` with etherparse and checks the IPv4 header checksum and the TCP/UDP (with the
/// pseudo-header) or ICMP checksum.
pub fn parse(f: &[u8]) -> Parsed {
    assert!(f.len() >= 60, "frame padded to Ethernet's minimum");
    let h = PacketHeaders::from_ethernet_slice(f).expect("etherparse parses the frame");
    let eth = match h.link {
        Some(etherparse::LinkHeader::Ethernet2(e)) => e,
        l => panic!("link {l:?}"),
    };
    assert!(h.vlan.is_none());
    let ip = match h.net {
        Some(NetHeaders::Ipv4(ip, _)) => ip,
        n => panic!("net {n:?}"),
    };
    assert_eq!(
        ip.calc_header_checksum(),
        ip.header_checksum,
        "IPv4 header checksum"
    );
    let payload = h.payload.slice().to_vec();
    let transport = h.transport.expect("a transport header");
    match &transport {
        TransportHeader::Tcp(t) => {
            assert_eq!(
                t.calc_checksum_ipv4(&ip, &payload).unwrap(),
                t.checksum,
                "TCP checksum"
            );
        }
        TransportHeader::Udp(u) => {
            assert_ne!(u.checksum, 0, "UDP checksum present");
            assert_eq!(
                u.calc_checksum_ipv4(&ip, &payload).unwrap(),
                u.checksum,
                "UDP checksum"
            );
        }
        TransportHeader::Icmpv4(i) => {
            assert_eq!(
                i.icmp_type.calc_checksum(&payload),
                i.checksum,
                "ICMP checksum"
            );
        }
        t => panic!("transport {t:?}"),
    }
    Parsed {
        eth,
        ip,
        transport,
        payload,
    }
}

/// The packet quoted in an ICMP error: its IP header (checksum verified) and the first 8 bytes
/// after it.
pub fn parse_quoted(q: &[u8]) -> (Ipv4Header, Vec<u8>) {
    let (ip, rest) = Ipv4Header::from_slice(q).expect("quoted IPv4 header");
    assert_eq!(
        ip.calc_header_checksum(),
        ip.header_checksum,
        "quoted IPv4 header checksum"
    );
    assert!(rest.len() >= 8, "quote holds 8 bytes of payload");
    (ip, rest.to_vec())
}

/// The IP packet inside an Ethernet frame (without the Ethernet header or padding).
pub fn ip_of(f: &[u8]) -> &[u8] {
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    &f[14..14 + total]
}

/// Rewrites a frame's IPv4 header through `edit` and fixes its checksum.
pub fn edit_ipv4(f: &mut [u8], edit: impl FnOnce(&mut Ipv4Header)) {
    let (mut ip, _) = Ipv4Header::from_slice(&f[14..]).unwrap();
    edit(&mut ip);
    ip.header_checksum = ip.calc_header_checksum();
    let bytes = ip.to_bytes();
    f[14..14 + bytes.len()].copy_from_slice(&bytes);
}
