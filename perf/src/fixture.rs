//! The seed's box A (fw-a) as a dataplane generation with in-memory ports, and the frames of
//! the lab's client and server, for benchmarks that drive [`Pipeline`] without AF_XDP.
//!
//! The generation is built by hand from `scripts/lab-configs/fw-a.toml` (the dataplane part:
//! `lan` and `wan`; `sync` belongs to the kernel): interface addresses, the two CARP VIPs
//! (held, as on the master), the LAN pass rules, the hybrid NAT rule 192.168.0.0/24 -> the WAN
//! VIP, the connected routes and the default route via the server.

use std::net::Ipv4Addr;
use std::sync::Arc;

use tandem_dataplane::filter::{
    proto, Action, AddrMatch, NatRule, Prefix, ProtoMatch, Rule, Ruleset,
};
use tandem_dataplane::generation::{Generation, Interface, Vip};
use tandem_dataplane::io::{Frame, Verdict};
use tandem_dataplane::pipeline::{Dataplane, Pipeline, PipelineConfig};
use tandem_dataplane::route::{Route, RouteTable};
use tandem_dataplane::state::{
    Direction, FlowKey, NewState, PortPolicy, StateTable, TableConfig, TcpSegment,
};
use tandem_dataplane::wire::ethernet::{self, EtherType, EthernetFrame, EthernetRepr};
use tandem_dataplane::wire::ipv4::{self, IpProtocol, Ipv4Packet, Ipv4Repr};
use tandem_dataplane::wire::tcp::{SeqNumber, TcpFlags, TcpPacket};
use tandem_dataplane::wire::MacAddr;
use tandem_dataplane::IfIndex;

/// `lan`'s index (its in-memory port's too).
pub const LAN: IfIndex = 0;
/// `wan`'s index.
pub const WAN: IfIndex = 1;

pub const LAN_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 11);
pub const LAN_VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);
pub const WAN_ADDR: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 101);
pub const WAN_VIP: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 100);
/// The lab's client, behind the LAN VIP.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 100);
/// The lab's server (the "internet"), also the default gateway.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 1);

pub const LAN_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x0a, 0x0b]);
pub const WAN_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x0b, 0x65]);
pub const CLIENT_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x0c, 0x64]);
pub const SERVER_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x0d, 0x01]);
/// VHID of the WAN VIP.
pub const WAN_VHID: u8 = 1;
/// VHID of the LAN VIP.
pub const LAN_VHID: u8 = 2;

/// The clock value every benchmark batch runs at (ms).
pub const NOW: u64 = 1_000;

/// Number of the LAN rule that passes the client's traffic.
pub const LAN_PASS_RULE: u32 = 2;

fn net(a: Ipv4Addr, len: u8) -> Prefix {
    Prefix::new(a, len).expect("prefix length <= 32")
}

/// fw-a's generation (see the module doc).
pub fn box_a_generation() -> Generation {
    let lan_net = net(LAN_ADDR, 24);
    let wan_net = net(WAN_ADDR, 24);
    let carp_group = AddrMatch::prefix(Prefix::host(Ipv4Addr::new(224, 0, 0, 18)));
    let lan_rules = vec![
        Rule::new(1, Action::Pass)
            .with_proto(ProtoMatch::Proto(proto::CARP))
            .with_src(AddrMatch::prefix(lan_net))
            .with_dst(carp_group.clone())
            .with_description("CARP adverts of the LAN VIP"),
        Rule::new(LAN_PASS_RULE, Action::Pass)
            .with_src(AddrMatch::prefix(lan_net))
            .with_description("default allow LAN to any"),
    ];
    let wan_rules = vec![
        Rule::new(3, Action::Pass)
            .with_proto(ProtoMatch::Proto(proto::CARP))
            .with_src(AddrMatch::prefix(wan_net))
            .with_dst(carp_group)
            .with_description("CARP adverts of the WAN VIP"),
        Rule::new(4, Action::Block).with_description("default deny"),
    ];
    let mut nat = NatRule::translate(1, WAN, WAN_VIP);
    nat.src = AddrMatch::prefix(lan_net);
    nat.description = "LAN to the internet from the WAN VIP".into();
    let routes = RouteTable::new(vec![
        Route {
            prefix: lan_net,
            out_if: LAN,
            gateway: None,
        },
        Route {
            prefix: wan_net,
            out_if: WAN,
            gateway: None,
        },
        Route {
            prefix: Prefix::ANY,
            out_if: WAN,
            gateway: Some(SERVER),
        },
    ]);
    Generation {
        number: 1,
        interfaces: vec![
            Interface {
                name: "lan".into(),
                mac: LAN_MAC,
                addr: Some((LAN_ADDR, 24)),
                dhcp: false,
                mtu: 1500,
            },
            Interface {
                name: "wan".into(),
                mac: WAN_MAC,
                addr: Some((WAN_ADDR, 24)),
                dhcp: false,
                mtu: 1500,
            },
        ],
        vips: vec![
            Vip {
                if_index: WAN,
                addr: WAN_VIP,
                prefix_len: 24,
                vhid: Some(WAN_VHID),
            },
            Vip {
                if_index: LAN,
                addr: LAN_VIP,
                prefix_len: 24,
                vhid: Some(LAN_VHID),
            },
        ],
        ruleset: Ruleset::new(vec![lan_rules, wan_rules], vec![nat], 1),
        routes,
        allow_ip_options: false,
    }
}

/// Box A as master of both VHIDs, with the client's and the server's MACs learned, and one
/// worker's pipeline on it.
pub fn box_a(table: TableConfig) -> (Arc<Dataplane>, Pipeline) {
    box_a_with(table, &PipelineConfig::default())
}

/// [`box_a`] with the pipeline's queues sized by `config`.
pub fn box_a_with(table: TableConfig, config: &PipelineConfig) -> (Arc<Dataplane>, Pipeline) {
    box_a_on(StateTable::new(table), config)
}

/// [`box_a_with`] on a table built beforehand (a million states, say).
pub fn box_a_on(states: StateTable, config: &PipelineConfig) -> (Arc<Dataplane>, Pipeline) {
    let dp = Dataplane::new(box_a_generation(), states);
    dp.held.set(WAN_VHID, true);
    dp.held.set(LAN_VHID, true);
    dp.neigh.learn(WAN, SERVER, SERVER_MAC, NOW);
    dp.neigh.learn(LAN, CLIENT, CLIENT_MAC, NOW);
    let pipe = Pipeline::new(Arc::clone(&dp), config);
    (dp, pipe)
}

/// One TCP segment of the benchmarks' frames (no payload).
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub src: (Ipv4Addr, u16),
    pub dst: (Ipv4Addr, u16),
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub win: u16,
    /// Linux's SYN options (MSS 1460, SACK permitted, timestamps, window scale 7): 20 bytes.
    pub syn_options: bool,
}

/// Linux's SYN options: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
const SYN_OPTIONS: [u8; 20] = [
    0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x0a, 0x1b, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x03, 0x03, 0x07,
];

/// An Ethernet frame carrying `seg` from `src_mac` to `dst_mac`, TTL 64, checksums filled,
/// padded to Ethernet's 60-byte minimum (64 bytes on the wire with the FCS).
pub fn tcp_frame(dst_mac: MacAddr, src_mac: MacAddr, seg: &Segment) -> Vec<u8> {
    let tcp_len = if seg.syn_options { 40 } else { 20 };
    let ip_len = ipv4::HEADER_LEN + tcp_len;
    let len = (ethernet::HEADER_LEN + ip_len).max(ethernet::MIN_FRAME_LEN);
    let mut buf = vec![0u8; len];
    EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EtherType::Ipv4,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    let ip = &mut buf[ethernet::HEADER_LEN..ethernet::HEADER_LEN + ip_len];
    Ipv4Repr {
        src: seg.src.0,
        dst: seg.dst.0,
        protocol: IpProtocol::Tcp,
        payload_len: tcp_len,
        ttl: 64,
        dscp: 0,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut ip[..]));
    let mut tcp = TcpPacket::new_unchecked(&mut ip[ipv4::HEADER_LEN..]);
    tcp.set_src_port(seg.src.1);
    tcp.set_dst_port(seg.dst.1);
    tcp.set_seq_number(SeqNumber(seg.seq));
    tcp.set_ack_number(SeqNumber(seg.ack));
    tcp.set_header_len(tcp_len);
    tcp.set_flags(seg.flags);
    tcp.set_window_len(seg.win);
    tcp.set_urgent_at(0);
    if seg.syn_options {
        tcp.options_mut().copy_from_slice(&SYN_OPTIONS);
    }
    tcp.fill_checksum(seg.src.0, seg.dst.0);
    buf
}

/// The client's SYN to the server's port 80 from `src:sport` (via the LAN VIP's MAC).
pub fn client_syn(src: Ipv4Addr, sport: u16, isn: u32) -> Vec<u8> {
    tcp_frame(
        MacAddr::carp_virtual(LAN_VHID),
        CLIENT_MAC,
        &Segment {
            src: (src, sport),
            dst: (SERVER, 80),
            seq: isn,
            ack: 0,
            flags: TcpFlags::SYN,
            win: 64240,
            syn_options: true,
        },
    )
}

/// An established, NATed flow: the frames of its handshake went through the pipeline.
#[derive(Debug, Clone)]
pub struct EstablishedFlow {
    /// The client's pure ACK (seq and ack of the handshake's last segment), 60 bytes: what the
    /// benchmark re-injects. pf's tracking accepts it any number of times.
    pub ack_frame: Vec<u8>,
    /// The source port the NAT chose.
    pub nat_port: u16,
}

fn run(pipe: &mut Pipeline, in_if: IfIndex, bytes: &[u8]) -> (IfIndex, Vec<u8>) {
    let mut f = Frame::from_bytes(bytes);
    pipe.begin_batch(NOW);
    let v = pipe.process(in_if, &mut f.buf[..], f.len);
    pipe.end_batch();
    match v {
        Verdict::Tx { out_if, len } => (out_if, f.buf[..len].to_vec()),
        Verdict::Drop => panic!(
            "fixture frame dropped; counters: {:?}",
            nonzero_counters(pipe)
        ),
    }
}

/// Runs the handshake client 192.168.0.100:40000 -> server 172.25.46.1:80 (SYN, SYN-ACK,
/// ACK) through `pipe`, checking each segment leaves by the right port translated.
pub fn establish(pipe: &mut Pipeline) -> EstablishedFlow {
    establish_from(pipe, 40000)
}

/// [`establish`] from the client's port `sport`: another flow.
pub fn establish_from(pipe: &mut Pipeline, sport: u16) -> EstablishedFlow {
    let (client_isn, server_isn) = (1_000_000u32, 5_000_000u32);
    let (out, syn) = run(pipe, LAN, &client_syn(CLIENT, sport, client_isn));
    assert_eq!(out, WAN, "SYN leaves by wan");
    let ip = Ipv4Packet::new_unchecked(&syn[ethernet::HEADER_LEN..]);
    assert_eq!(ip.src_addr(), WAN_VIP, "SYN translated to the WAN VIP");
    let nat_port = TcpPacket::new_unchecked(ip.payload()).src_port();

    let synack = tcp_frame(
        MacAddr::carp_virtual(WAN_VHID),
        SERVER_MAC,
        &Segment {
            src: (SERVER, 80),
            dst: (WAN_VIP, nat_port),
            seq: server_isn,
            ack: client_isn + 1,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            win: 65160,
            syn_options: true,
        },
    );
    let (out, back) = run(pipe, WAN, &synack);
    assert_eq!(out, LAN, "SYN-ACK leaves by lan");
    let ip = Ipv4Packet::new_unchecked(&back[ethernet::HEADER_LEN..]);
    assert_eq!(
        ip.dst_addr(),
        CLIENT,
        "SYN-ACK translated back to the client"
    );

    let ack_frame = tcp_frame(
        MacAddr::carp_virtual(LAN_VHID),
        CLIENT_MAC,
        &Segment {
            src: (CLIENT, sport),
            dst: (SERVER, 80),
            seq: client_isn + 1,
            ack: server_isn + 1,
            flags: TcpFlags::ACK,
            win: 502,
            syn_options: false,
        },
    );
    let (out, _) = run(pipe, LAN, &ack_frame);
    assert_eq!(out, WAN, "ACK leaves by wan");
    EstablishedFlow {
        ack_frame,
        nat_port,
    }
}

/// Non-zero counters of `pipe`, by name.
pub fn nonzero_counters(pipe: &Pipeline) -> Vec<(&'static str, u64)> {
    pipe.counters()
        .snapshot()
        .into_iter()
        .filter(|(_, v)| *v != 0)
        .collect()
}

/// A table configuration for benchmarks: room for `limit` states.
pub fn table_config(limit: u32) -> TableConfig {
    TableConfig {
        limit,
        ..TableConfig::default()
    }
}

/// A table of `n` states of TCP flows NATed to the WAN VIP (after their SYN), room for 10%
/// more: the keys of the dataplane's `one_million_states` test (clients 10.0.0.0/12, servers
/// 172.25.0.0-255, port 443). `capacity` preallocates the maps (0: they grow on demand).
pub fn nat_states(n: u32, capacity: usize) -> StateTable {
    let t = StateTable::new(TableConfig {
        capacity,
        ..table_config(n + n / 10)
    });
    let by = t.producer();
    for i in 0..n {
        let key = nat_state_key(i);
        let syn = TcpSegment {
            flags: TcpFlags::SYN.0,
            seq: i | 1,
            win: 64240,
            ..TcpSegment::default()
        };
        t.insert_nat(
            NewState::first_packet(key, 1, Some(&syn), 60),
            WAN_VIP,
            PortPolicy::DEFAULT,
            0,
            &by,
        )
        .expect("a fresh flow and a free port");
    }
    t
}

/// The inside key of [`nat_states`]' flow `i`.
fn nat_state_key(i: u32) -> FlowKey {
    let src = Ipv4Addr::from(0x0a00_0000 + (i >> 8));
    let dst = Ipv4Addr::from(0xac19_0000 + (i & 0xff));
    FlowKey::new(proto::TCP, src, 1024 + (i % 50_000) as u16, dst, 443)
}

/// The server's initial sequence number in [`established_nat_flows`].
const SERVER_ISN: u32 = 7_000_000;

/// Box A with `n` established TCP flows NATed to the WAN VIP ([`nat_states`]' keys, their
/// SYN-ACK and ACK tracked), and each flow's next client ACK, 60 bytes, in a fixed uniformly
/// random order: the traffic of `fastpath/established_nat_1m_random`.
pub fn established_nat_flows(n: u32) -> (Arc<Dataplane>, Pipeline, Vec<Vec<u8>>) {
    let (dp, pipe) = box_a_on(nat_states(n, n as usize), &PipelineConfig::default());
    let mut frames = Vec::with_capacity(n as usize);
    for i in 0..n {
        let key = nat_state_key(i);
        let isn = i | 1;
        let (state, _) = dp.states.lookup(&key).expect("nat_states made it");
        let synack = TcpSegment {
            flags: (TcpFlags::SYN | TcpFlags::ACK).0,
            seq: SERVER_ISN,
            ack: isn.wrapping_add(1),
            win: 65160,
            ..TcpSegment::default()
        };
        let ack = TcpSegment {
            flags: TcpFlags::ACK.0,
            seq: isn.wrapping_add(1),
            ack: SERVER_ISN + 1,
            win: 502,
            ..TcpSegment::default()
        };
        state
            .track_tcp(Direction::Reply, &synack, 60, NOW)
            .expect("the SYN-ACK fits");
        state
            .track_tcp(Direction::Original, &ack, 40, NOW)
            .expect("the ACK fits");
        frames.push(tcp_frame(
            MacAddr::carp_virtual(LAN_VHID),
            CLIENT_MAC,
            &Segment {
                src: (key.src, key.sport),
                dst: (key.dst, key.dport),
                seq: ack.seq,
                ack: ack.ack,
                flags: TcpFlags::ACK,
                win: ack.win,
                syn_options: false,
            },
        ));
    }
    // Fisher-Yates with xorshift64*: a fixed, uniform order.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..frames.len()).rev() {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let j = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % (i as u64 + 1)) as usize;
        frames.swap(i, j);
    }
    (dp, pipe, frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_nat_flows_are_forwarded_translated_to_the_wan_vip() {
        let (dp, mut pipe, flows) = established_nat_flows(1000);
        assert_eq!(flows.len(), 1000);
        assert_eq!(dp.states.len(), 1000);
        for f in &flows {
            let (out, sent) = run(&mut pipe, LAN, f);
            assert_eq!(out, WAN);
            let ip = Ipv4Packet::new_unchecked(&sent[ethernet::HEADER_LEN..]);
            assert_eq!(ip.src_addr(), WAN_VIP);
            assert!(ip.verify_checksum());
        }
        assert_eq!(dp.states.len(), 1000, "no state created by the ACKs");
    }

    #[test]
    fn the_handshake_goes_through_box_a_and_its_ack_is_forwarded_again_and_again() {
        let (dp, mut pipe) = box_a(table_config(16));
        let flow = establish(&mut pipe);
        assert_eq!(dp.states.len(), 1);
        for _ in 0..3 {
            let (out, f) = run(&mut pipe, LAN, &flow.ack_frame);
            assert_eq!(out, WAN);
            let ip = Ipv4Packet::new_unchecked(&f[ethernet::HEADER_LEN..]);
            assert_eq!((ip.src_addr(), ip.dst_addr()), (WAN_VIP, SERVER));
            assert_eq!(
                TcpPacket::new_unchecked(ip.payload()).src_port(),
                flow.nat_port
            );
        }
        let c = pipe.counters();
        assert_eq!(c.forwarded.get(), 6, "{:?}", nonzero_counters(&pipe));
        assert_eq!(c.states_created.get(), 1);
    }

    #[test]
    fn nat_states_fills_the_table() {
        let t = nat_states(1000, 0);
        assert_eq!(t.len(), 1000);
        assert!(t.memory_estimate() > 1000 * 120);
    }
}
