//! The seed's box A on in-memory ports, frames built and checked with etherparse (an independent
//! parser), and exact counter deltas (Firecracker's `check_metric_after_block!` idea).
//!
//! Box A: interface 0 `lan` 192.168.0.11/24, interface 1 `wan` 172.25.46.101/24; CARP VIPs
//! 192.168.0.10 (vhid 2, lan) and 172.25.46.100 (vhid 1, wan), both held; lan passes
//! 192.168.0.0/24 with state, wan rejects TCP to 172.25.46.101:23 and denies the rest; outbound
//! NAT on wan 192.168.0.0/24 -> 172.25.46.100; connected routes and a default via 172.25.46.1.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use etherparse::{
    Ethernet2Header, Icmpv4Header, Icmpv4Type, Ipv4Header, NetHeaders, PacketBuilder,
    PacketHeaders, TcpHeader, TransportHeader, UdpHeader,
};
use tandem_dataplane::counters::Counters;
use tandem_dataplane::filter::{
    Action, AddrMatch, NatKind, NatRule, PortPolicy, PortRange, Prefix, ProtoMatch, Rule, Ruleset,
};
use tandem_dataplane::fragment::FragConfig;
use tandem_dataplane::generation::{Generation, Interface, Vip};
use tandem_dataplane::io::mem::MemPort;
use tandem_dataplane::pipeline::{Dataplane, Pipeline, PipelineConfig};
use tandem_dataplane::route::{Route, RouteTable};
use tandem_dataplane::state::{StateTable, TableConfig};
use tandem_dataplane::wire::MacAddr;
use tandem_dataplane::IfIndex;

pub const LAN: IfIndex = 0;
pub const WAN: IfIndex = 1;

pub const LAN_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 11);
pub const WAN_IP: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 101);
pub const LAN_VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);
pub const WAN_VIP: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 100);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 100);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 1);

pub const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
pub const WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x02];
pub const LAN_VMAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x02];
pub const WAN_VMAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x01];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x00];
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x00];
pub const BROADCAST: [u8; 6] = [0xff; 6];

pub fn prefix(s: &str) -> Prefix {
    s.parse().unwrap()
}

pub fn interfaces() -> Vec<Interface> {
    vec![
        Interface {
            name: "lan".into(),
            mac: MacAddr(LAN_MAC),
            addr: Some((LAN_IP, 24)),
            dhcp: false,
            mtu: 1500,
        },
        Interface {
            name: "wan".into(),
            mac: MacAddr(WAN_MAC),
            addr: Some((WAN_IP, 24)),
            dhcp: false,
            mtu: 1500,
        },
    ]
}

pub fn vips() -> Vec<Vip> {
    vec![
        Vip {
            if_index: LAN,
            addr: LAN_VIP,
            prefix_len: 24,
            vhid: Some(2),
        },
        Vip {
            if_index: WAN,
            addr: WAN_VIP,
            prefix_len: 24,
            vhid: Some(1),
        },
    ]
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

pub fn nat(ports: PortPolicy) -> Vec<NatRule> {
    let mut r = NatRule::translate(100, WAN, WAN_VIP);
    r.src = AddrMatch::prefix(prefix("192.168.0.0/24"));
    r.kind = NatKind::Translate {
        addr: WAN_VIP,
        ports,
    };
    vec![r]
}

pub fn routes(default: bool) -> RouteTable {
    let mut r = vec![
        Route {
            prefix: prefix("192.168.0.0/24"),
            out_if: LAN,
            gateway: None,
        },
        Route {
            prefix: prefix("172.25.46.0/24"),
            out_if: WAN,
            gateway: None,
        },
    ];
    if default {
        r.push(Route {
            prefix: Prefix::ANY,
            out_if: WAN,
            gateway: Some(SERVER),
        });
    }
    RouteTable::new(r)
}

/// What a lab is built from; `Default` is box A as the seed describes it.
pub struct Setup {
    pub lan: Vec<Rule>,
    pub wan: Vec<Rule>,
    pub ports: PortPolicy,
    pub default_route: bool,
    pub table: TableConfig,
    /// Learn the client's and the server's MACs up front.
    pub neighbours: bool,
    /// `system.allow_ip_options`.
    pub allow_ip_options: bool,
    /// The fragment table's size and timeout.
    pub frags: FragConfig,
    /// The interfaces' MTUs (lan, wan).
    pub mtu: (u16, u16),
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            lan: lan_rules(),
            wan: wan_rules(),
            ports: PortPolicy::Range(1024, 65535),
            default_route: true,
            table: TableConfig::default(),
            neighbours: true,
            allow_ip_options: false,
            frags: FragConfig::default(),
            mtu: (1500, 1500),
        }
    }
}

pub fn generation(number: u64, lan: Vec<Rule>, wan: Vec<Rule>, s: &Setup) -> Generation {
    Generation {
        number,
        interfaces: {
            let mut i = interfaces();
            i[0].mtu = s.mtu.0;
            i[1].mtu = s.mtu.1;
            i
        },
        vips: vips(),
        ruleset: Ruleset::new(vec![lan, wan], nat(s.ports), number),
        routes: routes(s.default_route),
        allow_ip_options: s.allow_ip_options,
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
        Lab::with(Setup::default())
    }

    pub fn with(mut s: Setup) -> Lab {
        let lan = std::mem::take(&mut s.lan);
        let wan = std::mem::take(&mut s.wan);
        let gen = generation(1, lan, wan, &s);
        let dp = Dataplane::with_frag_config(gen, StateTable::new(s.table), s.frags);
        dp.held.set(1, true);
        dp.held.set(2, true);
        if s.neighbours {
            dp.neigh.learn(LAN, CLIENT, MacAddr(CLIENT_MAC), 0);
            dp.neigh.learn(WAN, SERVER, MacAddr(SERVER_MAC), 0);
        }
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

// ----- frames -----

#[allow(clippy::too_many_arguments)]
pub fn tcp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    ttl: u8,
    flags: &str,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut h = TcpHeader::new(sport, dport, seq, 64240);
    for f in flags.chars() {
        match f {
            'S' => h.syn = true,
            'A' => h.ack = true,
            'F' => h.fin = true,
            'R' => h.rst = true,
            'P' => h.psh = true,
            _ => panic!("flag {f}"),
        }
    }
    if h.ack {
        h.acknowledgment_number = ack;
    }
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), dst.octets(), ttl)
        .tcp_header(h);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    pad(out)
}

pub fn udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), dst.octets(), ttl)
        .udp(sport, dport);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    pad(out)
}

#[allow(clippy::too_many_arguments)]
pub fn echo_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    request: bool,
    id: u16,
    seq: u16,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac).ipv4(src.octets(), dst.octets(), ttl);
    let b = if request {
        b.icmpv4_echo_request(id, seq)
    } else {
        b.icmpv4_echo_reply(id, seq)
    };
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    pad(out)
}

/// An ICMP error (`icmp_type`) from `src` to `dst` quoting `quoted` (an IP packet, cut by the
/// caller).
pub fn icmp_error_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    icmp_type: Icmpv4Type,
    quoted: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), dst.octets(), 64)
        .icmpv4(icmp_type);
    let mut out = Vec::with_capacity(b.size(quoted.len()));
    b.write(&mut out, quoted).unwrap();
    pad(out)
}

/// Pads to Ethernet's 60-byte minimum, as a NIC delivers a short frame.
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
        &tcp_frame(CLIENT_MAC, LAN_VMAC, client, server, 64, "S", 100, 0, &[]),
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
        &tcp_frame(SERVER_MAC, WAN_VMAC, server, vip, 64, "SA", 900, 101, &[]),
        t + 1,
    );
    lab.send(
        LAN,
        &tcp_frame(CLIENT_MAC, LAN_VMAC, client, server, 64, "A", 101, 901, &[]),
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

pub fn pad(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// An Ethernet/IPv4 ARP packet (etherparse 0.16 has no ARP: built by hand from RFC 826).
pub fn arp_frame(
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    op: u16,
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut out = Vec::new();
    Ethernet2Header {
        source: eth_src,
        destination: eth_dst,
        ether_type: etherparse::EtherType::ARP,
    }
    .write(&mut out)
    .unwrap();
    out.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    out.extend_from_slice(&op.to_be_bytes());
    out.extend_from_slice(&sha);
    out.extend_from_slice(&spa.octets());
    out.extend_from_slice(&tha);
    out.extend_from_slice(&tpa.octets());
    out.resize(60, 0);
    out
}

pub fn arp_request(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    arp_frame(sha, BROADCAST, 1, sha, spa, [0; 6], tpa)
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
