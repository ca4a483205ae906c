//! The benchmarks' flows through the seed's box A ([`tandem_fixture`], fw-a's rules), which
//! drive [`Pipeline`] without AF_XDP: a handshake, a table of NATed states, their packets.

use std::net::Ipv4Addr;
use std::sync::Arc;

use tandem_dataplane::filter::proto;
use tandem_dataplane::io::{Frame, Verdict};
use tandem_dataplane::pipeline::{Dataplane, Pipeline, PipelineConfig};
use tandem_dataplane::state::{
    Direction, FlowKey, NewState, PortPolicy, StateTable, TableConfig, TcpSegment,
};
use tandem_dataplane::wire::ethernet;
use tandem_dataplane::wire::ipv4::Ipv4Packet;
use tandem_dataplane::wire::tcp::{TcpFlags, TcpPacket};
use tandem_dataplane::IfIndex;
use tandem_fixture::frames::Tcp;
use tandem_fixture::{
    BoxA, CLIENT, CLIENT_MAC, LAN, LAN_VMAC, SERVER, SERVER_MAC, WAN, WAN_VIP, WAN_VMAC,
};

/// The clock value every benchmark batch runs at (ms).
pub const NOW: u64 = 1_000;

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
    let dp = BoxA::default().dataplane_on(states);
    let pipe = Pipeline::new(Arc::clone(&dp), config);
    (dp, pipe)
}

/// The client's SYN to the server's port 80 from `src:sport` (via the LAN VIP's MAC), with
/// Linux's SYN options.
pub fn client_syn(src: Ipv4Addr, sport: u16, isn: u32) -> Vec<u8> {
    Tcp::new(CLIENT_MAC, LAN_VMAC, (src, sport), (SERVER, 80))
        .flags("S")
        .seq(isn)
        .syn_options()
        .frame()
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

    let synack = Tcp::new(SERVER_MAC, WAN_VMAC, (SERVER, 80), (WAN_VIP, nat_port))
        .flags("SA")
        .seq(server_isn)
        .ack(client_isn + 1)
        .win(65160)
        .syn_options()
        .frame();
    let (out, back) = run(pipe, WAN, &synack);
    assert_eq!(out, LAN, "SYN-ACK leaves by lan");
    let ip = Ipv4Packet::new_unchecked(&back[ethernet::HEADER_LEN..]);
    assert_eq!(
        ip.dst_addr(),
        CLIENT,
        "SYN-ACK translated back to the client"
    );

    let ack_frame = Tcp::new(CLIENT_MAC, LAN_VMAC, (CLIENT, sport), (SERVER, 80))
        .flags("A")
        .seq(client_isn + 1)
        .ack(server_isn + 1)
        .win(502)
        .frame();
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

/// A table configuration for benchmarks: room for `limit` states, sized as tandemd sizes its
/// table for `system.state_limit` (the key index mapped for the limit, the id index grown on
/// demand).
pub fn table_config(limit: u32) -> TableConfig {
    TableConfig {
        limit,
        capacity: 0,
        ..TableConfig::default()
    }
}

/// A table of `n` states of TCP flows NATed to the WAN VIP (after their SYN), room for 10%
/// more: the keys of the dataplane's `one_million_states` test (clients 10.0.0.0/12, servers
/// 172.25.0.0-255, port 443). `capacity` presizes the id index (0: it grows on demand, as
/// in tandemd); the key index is mapped for the limit either way.
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

/// Frames of one length back to back in one buffer, read in order. A worker reads frames the
/// kernel has just copied into its UMEM, in the cache; a benchmark that kept each frame in a
/// heap block of its own and read them in a random order paid a cache miss per frame that the
/// dataplane does not have (a million flows: ~80 MB of scattered templates).
#[derive(Debug, Default)]
pub struct FrameSet {
    bytes: Vec<u8>,
    len: usize,
}

impl FrameSet {
    /// Appends `frame`, which must be as long as the ones before it.
    pub fn push(&mut self, frame: &[u8]) {
        assert!(!frame.is_empty(), "no empty frames");
        assert!(
            self.bytes.is_empty() || frame.len() == self.len,
            "frames of one length"
        );
        self.len = frame.len();
        self.bytes.extend_from_slice(frame);
    }

    /// Frame `i`.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bytes[i * self.len..(i + 1) * self.len]
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.bytes.len().checked_div(self.len).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The frames in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes.chunks_exact(self.len.max(1))
    }
}

impl FromIterator<Vec<u8>> for FrameSet {
    fn from_iter<I: IntoIterator<Item = Vec<u8>>>(frames: I) -> Self {
        let mut set = FrameSet::default();
        for f in frames {
            set.push(&f);
        }
        set
    }
}

/// Box A with `n` established TCP flows NATed to the WAN VIP ([`nat_states`]' keys, their
/// SYN-ACK and ACK tracked), and each flow's next client ACK, 60 bytes, in a fixed uniformly
/// random order (stored in that order: see [`FrameSet`]): the traffic of
/// `fastpath/established_nat_1m_random`.
pub fn established_nat_flows(n: u32) -> (Arc<Dataplane>, Pipeline, FrameSet) {
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
        frames.push(
            Tcp::new(
                CLIENT_MAC,
                LAN_VMAC,
                (key.src, key.sport),
                (key.dst, key.dport),
            )
            .flags("A")
            .seq(ack.seq)
            .ack(ack.ack)
            .win(ack.win)
            .frame(),
        );
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
    (dp, pipe, frames.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_nat_flows_are_forwarded_translated_to_the_wan_vip() {
        let (dp, mut pipe, flows) = established_nat_flows(1000);
        assert_eq!(flows.len(), 1000);
        assert_eq!(dp.states.len(), 1000);
        for f in flows.iter() {
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
