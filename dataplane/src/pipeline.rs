//! One frame's way through the box:
//!
//! ```text
//! L2 (ours? VLAN?) -> ARP: answer for our addresses and held VIPs, learn, release waiting frames
//!                  -> IPv4: sane? checksum? options? later fragment: follows its first
//!                       -> a state matches: track (TCP window), translate, route, forward
//!                       -> an ICMP error quoting a state's packet (TCP: its sequence number
//!                          inside the window): translate through it, forward
//!                       -> to one of our addresses: rules, then echo reply / CARP to control
//!                       -> otherwise: rules (first match) -> route -> TTL -> NAT -> new state
//!                  -> next hop's MAC known? send : queue and ARP
//! ```
//!
//! Every frame ends in exactly one outcome counter ([`Counters`]): forwarded, replied, handed
//! to control, queued for ARP, or a named drop.
//!
//! Fragments (virtual reassembly, [`crate::fragment`]): the first fragment carries the ports and
//! takes the way of an unfragmented packet (rules, state, NAT with its transport checksum patched
//! incrementally); when it is forwarded, the fragment table records its datagram and the
//! addresses it left with, and each later fragment (offset > 0) follows with the same addresses.
//! A later fragment whose first fragment has not passed is dropped, not held: a blocked first
//! fragment's followers must never pass, and stacks send the first fragment first (Linux, the
//! BSDs), so holding out-of-order followers would buy little for a pool an outsider could fill.
//! Fragments addressed to the box itself are dropped (`drop_fragment`): it reassembles nothing.
//!
//! MTU: for a datagram longer than the egress interface's MTU with DF set (every modern stack
//! sets it, for path MTU discovery) the sender gets an ICMP fragmentation needed carrying that
//! MTU (RFC 1191), and the frame is counted as `drop_frag_needed`; this is checked before any
//! rewrite, so the error quotes the packet as its sender sent it. With DF clear the datagram is
//! fragmented as it leaves (after NAT and the TTL): the first fragment in its own buffer, the
//! others through the emit queue. Both only happen where the interfaces' MTUs differ.
//!
//! IP options are dropped (`drop_ip_options`) unless `system.allow_ip_options` is set, as pf.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use crossbeam_channel::Sender;

use crate::capture::{CaptureTap, Direction as CaptureDirection};
use crate::carp_filter::{CarpBudget, CarpPeers, CarpVerdict};
use crate::counters::Counters;
use crate::filter::{Action, PacketMeta, Verdict as RuleVerdict};
use crate::fragment::{FragConfig, FragTable};
use crate::generation::{Generation, HeldVhids};
use crate::io::{Frame, Port, Verdict, FRAME_SIZE};
use crate::neigh::{
    EnqueueOutcome, NeighCache, NeighMemo, PendingConfig, PendingEvent, PendingQueues,
};
use crate::route::NextHop;
use crate::state::{
    Direction, FlowKey, InsertError, Millis, NewState, SrcLimits, State, StateTable, TcpSegment,
    TrackError,
};
use crate::wire::arp::{self, ArpOperation, ArpPacket, ArpRepr};
use crate::wire::ethernet::{self, EtherType, EthernetFrame};
use crate::wire::icmp::{self, IcmpErrorKind, IcmpPacket, IcmpType};
use crate::wire::ipv4::{self, IpProtocol, Ipv4Packet, Ipv4Repr};
use crate::wire::tcp::{QuotedTcp, TcpFlags, TcpPacket, TcpRepr};
use crate::wire::{checksum, udp, MacAddr};
use crate::IfIndex;

mod fragments;

const ETH: usize = ethernet::HEADER_LEN;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_CARP: u8 = 112;
/// The DHCP server's UDP port (RFC 2131 §4.1).
const DHCP_SERVER_PORT: u16 = 67;
/// CARP's multicast group and its Ethernet address.
const CARP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const CARP_GROUP_MAC: MacAddr = MacAddr::ipv4_multicast(CARP_GROUP);
/// The smallest buffer `process` accepts: room for the longest reply it builds in place (an
/// ICMP error quoting a 60-byte IPv4 header and 8 bytes: 14 + 20 + 8 + 68 = 110).
pub const MIN_BUFFER: usize = 128;
/// TTL of the packets the box originates (echo replies, RSTs, ICMP errors).
const OWN_TTL: u8 = 64;

/// A frame for the control plane (CARP adverts): the slow path. Copied, since it is rare.
#[derive(Debug, Clone)]
pub struct ControlFrame {
    pub in_if: IfIndex,
    pub bytes: Vec<u8>,
}

/// What all workers share: the current generation, the state table, the neighbour cache, the
/// VHIDs held, and each worker's counters (for the CLI).
#[derive(Debug)]
pub struct Dataplane {
    pub generation: ArcSwap<Generation>,
    pub states: Arc<StateTable>,
    pub neigh: NeighCache,
    pub held: HeldVhids,
    /// Each VHID's authenticated CARP peer, for the workers' slow-path budget.
    pub carp_peers: CarpPeers,
    /// `tandemctl capture`: frames the workers copy while a capture runs.
    pub capture: CaptureTap,
    /// Fragmented datagrams whose first fragment passed (shared: see [`crate::fragment`]).
    pub frags: FragTable,
    workers: Mutex<Vec<Arc<Counters>>>,
}

impl Dataplane {
    /// `states` may be shared (state sync holds the table too).
    pub fn new(generation: Generation, states: impl Into<Arc<StateTable>>) -> Arc<Dataplane> {
        Dataplane::with_frag_config(generation, states, FragConfig::default())
    }

    /// [`new`](Self::new) with a fragment table of the given size and timeout.
    pub fn with_frag_config(
        generation: Generation,
        states: impl Into<Arc<StateTable>>,
        frags: FragConfig,
    ) -> Arc<Dataplane> {
        Arc::new(Dataplane {
            generation: ArcSwap::from_pointee(generation),
            states: states.into(),
            neigh: NeighCache::default(),
            held: HeldVhids::new(),
            carp_peers: CarpPeers::new(),
            capture: CaptureTap::default(),
            frags: FragTable::new(frags),
            workers: Mutex::new(Vec::new()),
        })
    }

    /// Installs a new generation; workers pick it up at their next batch.
    pub fn apply(&self, generation: Generation) {
        self.generation.store(Arc::new(generation));
    }

    /// The sum of every worker's counters, by name.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let mut total: Vec<(&'static str, u64)> = Counters::default().snapshot();
        for w in workers.iter() {
            for (t, (_, v)) in total.iter_mut().zip(w.snapshot()) {
                t.1 += v;
            }
        }
        total
    }

    /// Each worker's counters, in the order the workers started.
    pub fn worker_counters(&self) -> Vec<Vec<(&'static str, u64)>> {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        workers.iter().map(|w| w.snapshot()).collect()
    }

    fn register(&self, counters: Arc<Counters>) {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(counters);
    }
}

/// ICMP errors the box sends, as a token bucket per worker (RFC 1812 §4.3.2.8).
#[derive(Debug, Clone)]
pub struct IcmpRateLimit {
    /// Errors per second.
    pub rate: u32,
    /// Errors that may go out at once.
    pub burst: u32,
    tokens: u32,
    last_ms: Millis,
}

impl IcmpRateLimit {
    pub fn new(rate: u32, burst: u32) -> IcmpRateLimit {
        IcmpRateLimit {
            rate,
            burst,
            tokens: burst,
            last_ms: 0,
        }
    }

    fn take(&mut self, now: Millis) -> bool {
        let elapsed = now.saturating_sub(self.last_ms);
        let refill = elapsed.saturating_mul(u64::from(self.rate)) / 1000;
        if refill > 0 {
            let t = u64::from(self.tokens)
                .saturating_add(refill)
                .min(u64::from(self.burst));
            self.tokens = u32::try_from(t).unwrap_or(self.burst);
            self.last_ms = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Frames the pipeline generates besides the one it was given (ARP requests, frames released
/// after resolution). Bounded and preallocated: no allocation per packet.
#[derive(Debug)]
struct EmitQueue {
    queue: std::collections::VecDeque<(IfIndex, Frame)>,
    spare: Vec<Frame>,
}

impl EmitQueue {
    /// Frames that can still be pushed.
    fn room(&self) -> usize {
        self.spare.len()
    }

    fn new(capacity: usize) -> EmitQueue {
        EmitQueue {
            queue: std::collections::VecDeque::with_capacity(capacity),
            spare: (0..capacity).map(|_| Frame::new()).collect(),
        }
    }

    /// Builds a frame with `build` (which returns its length); false when the queue is full.
    fn push(&mut self, out_if: IfIndex, build: impl FnOnce(&mut [u8]) -> usize) -> bool {
        let Some(mut f) = self.spare.pop() else {
            return false;
        };
        f.len = build(&mut f.buf[..]);
        self.queue.push_back((out_if, f));
        true
    }
}

/// Sizes of a worker's pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub pending: PendingConfig,
    /// Generated frames that may wait for transmission.
    pub emit_capacity: usize,
    pub icmp_rate: u32,
    pub icmp_burst: u32,
}

impl Default for PipelineConfig {
    fn default() -> PipelineConfig {
        PipelineConfig {
            pending: PendingConfig::default(),
            emit_capacity: 256,
            icmp_rate: 100,
            icmp_burst: 50,
        }
    }
}

/// One worker's pipeline. Not shared: each worker owns one; they share a [`Dataplane`].
#[derive(Debug)]
pub struct Pipeline {
    dp: Arc<Dataplane>,
    gen: Arc<Generation>,
    w: WorkerSide,
}

/// The worker-owned part, split from the generation so that both can be borrowed at once.
#[derive(Debug)]
struct WorkerSide {
    counters: Arc<Counters>,
    pending: PendingQueues,
    memo: NeighMemo,
    emit: EmitQueue,
    icmp: IcmpRateLimit,
    to_control: Option<Sender<ControlFrame>>,
    to_dhcp: Option<Sender<ControlFrame>>,
    carp: CarpBudget,
    now: Millis,
}

/// The layer-4 facts of a packet, read once.
#[derive(Debug, Clone, Copy)]
struct L4 {
    sport: u16,
    dport: u16,
    /// TCP only.
    seg: Option<TcpSegment>,
    /// An ICMP error (its quoted packet decides where it belongs).
    icmp_error: bool,
    /// An ICMP echo request (answered when addressed to us).
    echo_request: bool,
    /// The IP id of a first fragment (MF set, offset 0): its followers follow it.
    first_frag: Option<u16>,
}

impl Pipeline {
    pub fn new(dp: Arc<Dataplane>, config: &PipelineConfig) -> Pipeline {
        let counters = Arc::new(Counters::default());
        dp.register(counters.clone());
        let gen = dp.generation.load_full();
        Pipeline {
            dp,
            gen,
            w: WorkerSide {
                counters,
                pending: PendingQueues::new(config.pending),
                memo: NeighMemo::default(),
                emit: EmitQueue::new(config.emit_capacity),
                icmp: IcmpRateLimit::new(config.icmp_rate, config.icmp_burst),
                to_control: None,
                to_dhcp: None,
                carp: CarpBudget::default(),
                now: 0,
            },
        }
    }

    /// Where CARP adverts go (the control thread).
    pub fn set_control_channel(&mut self, tx: Sender<ControlFrame>) {
        self.w.to_control = Some(tx);
    }

    /// Where DHCP requests go (the DHCP thread): a queue of its own, so that a DHCP flood
    /// cannot push CARP adverts out of theirs.
    pub fn set_dhcp_channel(&mut self, tx: Sender<ControlFrame>) {
        self.w.to_dhcp = Some(tx);
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.w.counters
    }

    pub fn dataplane(&self) -> &Arc<Dataplane> {
        &self.dp
    }

    /// Starts a batch: reads the clock value and the current generation once for all its frames.
    pub fn begin_batch(&mut self, now: Millis) {
        self.w.now = now;
        let current = self.dp.generation.load();
        if !Arc::ptr_eq(&current, &self.gen) {
            self.gen = Arc::clone(&current);
        }
    }

    /// Ends a batch: frames waiting for ARP whose neighbour answered go out, retries are sent,
    /// and frames of neighbours that never answered are dropped.
    pub fn end_batch(&mut self) {
        if self.w.pending.is_idle() {
            return;
        }
        let gen = &*self.gen;
        let w = &mut self.w;
        let (emit, counters, icmp_now) = (&mut w.emit, &w.counters, w.now);
        w.pending
            .poll(&self.dp.neigh, icmp_now, &mut |ev| match ev {
                PendingEvent::Ready {
                    out_if, mac, frame, ..
                } => {
                    frame[..6].copy_from_slice(&mac.0);
                    let n = frame.len();
                    if emit.push(out_if, |buf| {
                        buf[..n].copy_from_slice(frame);
                        n
                    }) {
                        counters.neigh_released.inc();
                    } else {
                        counters.drop_emit_full.inc();
                    }
                }
                PendingEvent::SendRequest { out_if, target } => {
                    send_arp_request(gen, emit, counters, out_if, target);
                }
                PendingEvent::Dropped { count, .. } => counters.neigh_failed.add(u64::from(count)),
            });
    }

    /// Takes the generated frames, oldest first. `send` returns false if the port refused.
    pub fn drain_emitted(&mut self, mut send: impl FnMut(IfIndex, &mut Frame) -> bool) {
        while let Some((out_if, mut f)) = self.w.emit.queue.pop_front() {
            if send(out_if, &mut f) {
                self.w.counters.tx_frames.inc();
            } else {
                self.w.counters.drop_emit_full.inc();
            }
            self.w.emit.spare.push(f);
        }
    }

    /// Processes one frame received on `in_if`, in place. `buf` is the whole frame buffer (the
    /// frame may grow: an ICMP error quotes the packet it answers); `len` is the received length.
    #[inline]
    pub fn process(&mut self, in_if: IfIndex, buf: &mut [u8], len: usize) -> Verdict {
        self.w.counters.rx_frames.inc();
        if buf.len() < MIN_BUFFER {
            // Replies are built in place and may be longer than the frame they answer.
            self.w.counters.drop_short_buffer.inc();
            return Verdict::Drop;
        }
        let len = len.min(buf.len());
        // One relaxed load when no capture runs.
        let capturing = self.dp.capture.is_active();
        if capturing {
            self.dp
                .capture
                .offer(in_if, CaptureDirection::Rx, &buf[..len]);
        }
        let v = self.w.process(&self.gen, &self.dp, in_if, buf, len);
        if let Verdict::Tx { out_if, len } = v {
            self.w.counters.tx_frames.inc();
            if capturing {
                self.dp
                    .capture
                    .offer(out_if, CaptureDirection::Tx, &buf[..len]);
            }
        }
        v
    }

    /// One round over in-memory (or any) ports: receive a batch from each, process, send.
    /// `batch` holds the frame slots to receive into. Returns the frames received.
    pub fn poll_ports<P: Port>(
        &mut self,
        ports: &mut [P],
        batch: &mut [Frame],
        now: Millis,
    ) -> usize {
        self.begin_batch(now);
        let mut total = 0;
        for i in 0..ports.len() {
            let Ok(in_if) = IfIndex::try_from(i) else {
                break;
            };
            let n = ports[i].recv(batch);
            for f in batch[..n].iter_mut() {
                if let Verdict::Tx { out_if, len } = self.process(in_if, &mut f.buf[..], f.len) {
                    f.len = len;
                    let sent = ports
                        .get_mut(usize::from(out_if))
                        .is_some_and(|p| p.send(std::slice::from_mut(f)) == 1);
                    if !sent {
                        self.w.counters.drop_emit_full.inc();
                    }
                }
            }
            total += n;
        }
        self.end_batch();
        self.drain_emitted(|out_if, f| {
            ports
                .get_mut(usize::from(out_if))
                .is_some_and(|p| p.send(std::slice::from_mut(f)) == 1)
        });
        total
    }
}

impl WorkerSide {
    fn process(
        &mut self,
        gen: &Generation,
        dp: &Dataplane,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
    ) -> Verdict {
        let c = &self.counters;
        let Some(iface) = gen.interface(in_if) else {
            c.drop_l2_not_for_us.inc();
            return Verdict::Drop;
        };
        let Ok(eth) = EthernetFrame::new_checked(&buf[..len]) else {
            c.drop_eth_malformed.inc();
            return Verdict::Drop;
        };
        let dst = eth.dst_addr();
        if dst != iface.mac
            && !dst.is_broadcast()
            && dst != CARP_GROUP_MAC
            && !holds_vmac(gen, dp, in_if, dst)
        {
            c.drop_l2_not_for_us.inc();
            return Verdict::Drop;
        }
        match eth.ethertype() {
            // A frame to a held virtual MAC comes through a VIP this box holds: after a takeover,
            // the states it meets may lag (see StateTable::track_tcp_on_takeover).
            EtherType::Ipv4 => {
                let via_vip = dst.0[..5] == [0x00, 0x00, 0x5e, 0x00, 0x01];
                self.ipv4(gen, dp, in_if, buf, len, via_vip)
            }
            EtherType::Arp => self.arp(gen, dp, in_if, buf, len),
            EtherType::Vlan => {
                c.drop_vlan.inc();
                Verdict::Drop
            }
            _ => {
                c.drop_ethertype.inc();
                Verdict::Drop
            }
        }
    }

    fn arp(
        &mut self,
        gen: &Generation,
        dp: &Dataplane,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
    ) -> Verdict {
        let c = &self.counters;
        let repr = match ArpPacket::new_checked(&buf[ETH..len]).and_then(|p| ArpRepr::parse(&p)) {
            Ok(r) => r,
            Err(_) => {
                c.drop_arp_malformed.inc();
                return Verdict::Drop;
            }
        };
        let iface = &gen.interfaces[usize::from(in_if)];
        // A gratuitous ARP (sender IP == target IP) announces, it does not ask (RFC 5227): never
        // answer one. A CARP peer taking a VIP over announces it; a master about to step down
        // that answered would pull the switch's entry for the virtual MAC back to itself.
        let announcement = repr.source_ip == repr.target_ip;
        let ours = if announcement {
            None
        } else {
            our_mac_for(gen, dp, in_if, repr.target_ip)
        };
        // Learn from what is addressed to us, and refresh what we already know (RFC 826's merge
        // flag): a gratuitous ARP moves a known neighbour, a stranger's chatter adds nothing.
        // Our own addresses are never neighbours (a peer's announcement of a shared VIP).
        let on_link = iface
            .addr
            .is_some_and(|(a, l)| same_net(a, repr.source_ip, l));
        if on_link
            && !repr.source_mac.is_multicast()
            && !is_configured_addr(gen, repr.source_ip)
            && (ours.is_some() || dp.neigh.lookup(in_if, repr.source_ip).is_some())
        {
            dp.neigh
                .learn(in_if, repr.source_ip, repr.source_mac, self.now);
        }
        match (repr.operation, ours) {
            (ArpOperation::Request, Some(mac)) => {
                let reply = ArpRepr {
                    operation: ArpOperation::Reply,
                    source_mac: mac,
                    source_ip: repr.target_ip,
                    target_mac: repr.source_mac,
                    target_ip: repr.source_ip,
                };
                let n = arp::emit_arp_frame(buf, repr.source_mac, mac, &reply);
                c.arp_replies.inc();
                c.replied.inc();
                Verdict::Tx {
                    out_if: in_if,
                    len: n,
                }
            }
            _ => {
                c.arp_ignored.inc();
                Verdict::Drop
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn ipv4(
        &mut self,
        gen: &Generation,
        dp: &Dataplane,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
        via_vip: bool,
    ) -> Verdict {
        let c = &*self.counters;
        let (src, dst, hl, total, proto, first_frag) = {
            let Ok(ip) = Ipv4Packet::new_checked(&buf[ETH..len]) else {
                c.drop_ipv4_malformed.inc();
                return Verdict::Drop;
            };
            if !ip.verify_checksum() {
                c.drop_ipv4_checksum.inc();
                return Verdict::Drop;
            }
            let hl = ip.header_len();
            let mut first_frag = None;
            // One branch for every packet on the two rare cases, options and fragments (`|`,
            // not `||`: both tests are computed, one jump taken).
            if (hl != ipv4::HEADER_LEN) | ip.is_fragment() {
                if hl != ipv4::HEADER_LEN && !gen.allow_ip_options {
                    c.drop_ip_options.inc();
                    return Verdict::Drop;
                }
                if ip.is_fragment() {
                    if ip.frag_offset() != 0 {
                        return self.later_fragment(gen, dp, in_if, buf, len);
                    }
                    first_frag = Some(ip.ident());
                }
            }
            let proto = u8::from(ip.next_header());
            (
                ip.src_addr(),
                ip.dst_addr(),
                hl,
                usize::from(ip.total_len()),
                proto,
                first_frag,
            )
        };
        if is_martian(src, dst) {
            c.drop_martian.inc();
            return Verdict::Drop;
        }
        // RFC 1812 §5.3.4: a packet received as a link-layer broadcast or multicast is never
        // forwarded, only taken by the box itself (DHCP, CARP). Both CARP nodes receive it: the
        // backup would forward it too.
        if EthernetFrame::new_unchecked(&buf[..len])
            .dst_addr()
            .is_multicast()
            && !is_local(gen, dp, dst)
        {
            c.drop_l2_not_for_us.inc();
            return Verdict::Drop;
        }
        let Some(l4) = parse_l4(&buf[ETH + hl..ETH + total], proto, first_frag) else {
            c.drop_l4_malformed.inc();
            return Verdict::Drop;
        };
        let key = FlowKey {
            proto,
            src,
            dst,
            sport: l4.sport,
            dport: l4.dport,
        };
        let bytes = u32::try_from(total).unwrap_or(u32::MAX);

        // An existing state: the fast path. Tracking and the translation to apply are decided
        // under the table's shard read lock; nothing is cloned.
        let hit = dp.states.with_state(&key, |state, dir| {
            let tracked = match &l4.seg {
                Some(seg) if via_vip => state.track_tcp_on_takeover(dir, seg, bytes, self.now),
                Some(seg) => state.track_tcp(dir, seg, bytes, self.now),
                None => {
                    state.track_other(dir, bytes, self.now);
                    Ok(())
                }
            };
            if tracked.is_ok() {
                dp.states.record_update(state);
            }
            (tracked, translation(state, dir))
        });
        if let Some((tracked, xlat)) = hit {
            match tracked {
                Ok(()) => {}
                Err(TrackError::PortReuse) => {
                    // Both sides closed and a new SYN: the old state goes, the SYN starts anew.
                    if let Some((s, _)) = dp.states.lookup(&key) {
                        dp.states.remove(&s);
                    }
                    return self.new_flow(gen, dp, in_if, buf, len, key, l4, hl, total);
                }
                Err(TrackError::BadWindow) => {
                    c.drop_tcp_bad_window.inc();
                    return Verdict::Drop;
                }
            }
            c.state_hits.inc();
            // Route and TTL before translating: an ICMP error (net unreachable, time exceeded)
            // goes to the sender as it sent the packet (a translated source would address it to
            // our own NAT address, and a translated destination would show the inside address
            // to the outside).
            let out_dst = xlat.map_or(dst, |x| if x.side == Side::Dst { x.addr } else { dst });
            let hop = match self.next_hop_or_answer(gen, in_if, buf, len, out_dst) {
                Ok(hop) => hop,
                Err(verdict) => return verdict,
            };
            let c = &*self.counters;
            if let Some(x) = xlat {
                apply_translation(&mut buf[ETH..ETH + total], hl, proto, x);
                c.nat_translated.inc();
            }
            if let Some(id) = l4.first_frag {
                if let Err(v) =
                    self.first_fragment_passes(dp, in_if, &key, id, &buf[ETH..ETH + total], hl)
                {
                    return v;
                }
            }
            return self.forward(gen, dp, hop.out_if, hop.addr, buf, len);
        }

        if l4.icmp_error {
            // Its checksum is rewritten from the bytes at hand (which a fragment lacks), and an
            // error quotes 28 bytes: a fragmented one is forged or broken.
            if l4.first_frag.is_some() {
                c.drop_fragment.inc();
                return Verdict::Drop;
            }
            return self.icmp_error(gen, dp, in_if, buf, len, hl, total);
        }
        if is_local(gen, dp, dst) {
            return self.local(gen, dp, in_if, buf, len, key, l4, hl, total);
        }
        self.new_flow(gen, dp, in_if, buf, len, key, l4, hl, total)
    }

    /// A packet with no state, not to us: the rules decide, then a state is created.
    #[allow(clippy::too_many_arguments)]
    fn new_flow(
        &mut self,
        gen: &Generation,
        dp: &Dataplane,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
        key: FlowKey,
        l4: L4,
        hl: usize,
        total: usize,
    ) -> Verdict {
        let meta = meta_of(in_if, &key);
        let (number, keep_state, limits) = match self.filter(gen, in_if, buf, len, &meta, l4, hl) {
            Ok(pass) => pass,
            Err(verdict) => return verdict,
        };
        let c = &*self.counters;
        if let Some(seg) = &l4.seg {
            if keep_state && !seg.is_initial_syn() {
                c.drop_tcp_no_state.inc();
                return Verdict::Drop;
            }
        }
        let hop = match self.next_hop_or_answer(gen, in_if, buf, len, key.dst) {
            Ok(hop) => hop,
            Err(verdict) => return verdict,
        };
        let c = &*self.counters;
        if keep_state {
            let new = NewState::first_packet(
                key,
                number,
                l4.seg.as_ref(),
                u32::try_from(total).unwrap_or(u32::MAX),
            );
            let nat = gen
                .ruleset
                .outbound_nat(hop.out_if, &meta)
                .map(|t| (t.addr, t.ports));
            let inserted = dp.states.insert_limited(new, nat, &limits, self.now);
            match inserted {
                Ok(state) => {
                    c.states_created.inc();
                    if let Some(x) = translation(&state, Direction::Original) {
                        apply_translation(&mut buf[ETH..ETH + total], hl, key.proto, x);
                        c.nat_translated.inc();
                    }
                }
                Err(InsertError::StateLimit) => {
                    c.drop_state_limit.inc();
                    return Verdict::Drop;
                }
                Err(InsertError::PortExhausted) => {
                    c.drop_nat_exhausted.inc();
                    return Verdict::Drop;
                }
                Err(InsertError::SrcStates) => {
                    c.drop_src_states.inc();
                    return Verdict::Drop;
                }
                Err(InsertError::SrcRate) => {
                    c.drop_src_rate.inc();
                    return Verdict::Drop;
                }
                Err(InsertError::SrcNodes) => {
                    c.drop_src_nodes.inc();
                    return Verdict::Drop;
                }
                Err(_) => {
                    c.drop_state_race.inc();
                    return Verdict::Drop;
                }
            }
        }
        if let Some(id) = l4.first_frag {
            if let Err(v) =
                self.first_fragment_passes(dp, in_if, &key, id, &buf[ETH..ETH + total], hl)
            {
                return v;
            }
        }
        self.forward(gen, dp, hop.out_if, hop.addr, buf, len)
    }

    /// The rules of the inbound interface for a packet without state: `Ok((rule number,
    /// keep state, per-source limits))` when a pass rule matches; otherwise the frame's fate (dropped and counted,
    /// or answered by a reject).
    #[allow(clippy::too_many_arguments)]
    fn filter(
        &mut self,
        gen: &Generation,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
        meta: &PacketMeta,
        l4: L4,
        hl: usize,
    ) -> Result<(u32, bool, SrcLimits), Verdict> {
        match gen.ruleset.evaluate(meta) {
            RuleVerdict::DefaultDeny => {
                self.counters.drop_blocked_default.inc();
                Err(Verdict::Drop)
            }
            RuleVerdict::Rule {
                action: Action::Block,
                ..
            } => {
                self.counters.drop_blocked_rule.inc();
                Err(Verdict::Drop)
            }
            RuleVerdict::Rule {
                action: Action::Reject,
                ..
            } => Err(self.reject(gen, in_if, buf, len, l4, hl)),
            RuleVerdict::Rule {
                action: Action::Pass,
                index,
                number,
                keep_state,
                ..
            } => {
                let limits = gen
                    .ruleset
                    .rules(in_if)
                    .get(index as usize)
                    .map_or(SrcLimits::NONE, |r| r.src_limits);
                Ok((number, keep_state, limits))
            }
        }
    }

    /// A packet to one of our addresses with no state: the rules of its interface apply, then
    /// the box answers what it serves (ICMP echo) and hands CARP to the control plane.
    #[allow(clippy::too_many_arguments)]
    fn local(
        &mut self,
        gen: &Generation,
        dp: &Dataplane,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
        key: FlowKey,
        l4: L4,
        hl: usize,
        total: usize,
    ) -> Verdict {
        let c = &*self.counters;
        if key.proto == PROTO_CARP && key.dst == CARP_GROUP {
            // CARP is authenticated by its HMAC in the control plane, not by rules (pfSense
            // passes it automatically too). The cheapest check first, here: an advert that did
            // not come from the link itself (TTL 255) never takes a place on the slow path.
            if ttl_of(buf) != 255 {
                c.drop_carp_ttl.inc();
                return Verdict::Drop;
            }
            // Then length, VHID and budget (carp_filter), so that junk cannot push the peer's
            // adverts out of the shared queue.
            let payload = buf.get(ETH + hl..ETH + total).unwrap_or_default();
            let peer = match self
                .carp
                .admit(gen, &dp.carp_peers, in_if, key.src, payload, self.now)
            {
                CarpVerdict::Peer => true,
                CarpVerdict::Other => false,
                CarpVerdict::Malformed => {
                    c.drop_carp_malformed.inc();
                    return Verdict::Drop;
                }
                CarpVerdict::UnknownVhid => {
                    c.drop_carp_vhid.inc();
                    return Verdict::Drop;
                }
                CarpVerdict::OverBudget => {
                    c.drop_carp_budget.inc();
                    return Verdict::Drop;
                }
            };
            // The other half of the queue is the peer's.
            if let Some(tx) = self.to_control.as_ref() {
                if !peer && tx.capacity().is_some_and(|cap| tx.len() >= cap / 2) {
                    c.drop_carp_budget.inc();
                    return Verdict::Drop;
                }
            }
            let sent = self.to_control.as_ref().is_some_and(|tx| {
                tx.try_send(ControlFrame {
                    in_if,
                    bytes: buf[..len].to_vec(),
                })
                .is_ok()
            });
            if sent {
                c.to_control.inc();
            } else {
                c.drop_local_unhandled.inc();
            }
            return Verdict::Drop;
        }
        if key.proto == PROTO_UDP
            && key.dport == DHCP_SERVER_PORT
            && gen.interface(in_if).is_some_and(|i| i.dhcp)
        {
            // Served by the DHCP thread, which checks the message and whether this box is the
            // VIP's master; here only a bounded copy, so a flood costs the fast path nothing more.
            let sent = self.to_dhcp.as_ref().is_some_and(|tx| {
                tx.try_send(ControlFrame {
                    in_if,
                    bytes: buf[..len].to_vec(),
                })
                .is_ok()
            });
            if sent {
                c.to_dhcp.inc();
            } else {
                c.drop_dhcp_queue_full.inc();
            }
            return Verdict::Drop;
        }
        if let Err(verdict) = self.filter(gen, in_if, buf, len, &meta_of(in_if, &key), l4, hl) {
            return verdict;
        }
        let c = &*self.counters;
        // The box reassembles nothing for itself (CARP's control plane refuses fragments too).
        if l4.first_frag.is_some() {
            c.drop_fragment.inc();
            return Verdict::Drop;
        }
        // No echo reply to a broadcast or multicast (FreeBSD's icmp.bmcastecho=0): the reply
        // would be sourced from that address, and the box would be a smurf amplifier.
        if l4.echo_request
            && !key.dst.is_broadcast()
            && !key.dst.is_multicast()
            && !is_subnet_broadcast(gen, key.dst)
        {
            let ip = &mut buf[ETH..ETH + total];
            let mut icmp = IcmpPacket::new_unchecked(&mut ip[hl..]);
            icmp.echo_request_to_reply();
            let mut ipp = Ipv4Packet::new_unchecked(&mut *ip);
            ipp.set_src_addr(key.dst);
            ipp.set_dst_addr(key.src);
            ipp.set_ttl(OWN_TTL);
            ipp.fill_checksum();
            // From the MAC that owns the address asked (the virtual MAC for a held CARP VIP),
            // whatever the request was sent to (a broadcast frame must not become the source).
            let peer = EthernetFrame::new_unchecked(&buf[..]).src_addr();
            let own = our_mac_for(gen, dp, in_if, key.dst)
                .unwrap_or(gen.interfaces[usize::from(in_if)].mac);
            let mut eth = EthernetFrame::new_unchecked(&mut buf[..len]);
            eth.set_dst_addr(peer);
            eth.set_src_addr(own);
            c.icmp_echo_replies.inc();
            c.replied.inc();
            return Verdict::Tx { out_if: in_if, len };
        }
        c.drop_local_unhandled.inc();
        Verdict::Drop
    }

    /// An ICMP error (unreachable, time exceeded...) about a packet of one of our states: it
    /// follows that state, translated through the quoted packet when the state is NATed.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error(
        &mut self,
        gen: &Generation,
        dp: &Dataplane,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
        hl: usize,
        total: usize,
    ) -> Verdict {
        let c = &*self.counters;
        let ip = &mut buf[ETH..ETH + total];
        let icmp_off = hl;
        let quoted_off = icmp_off + icmp::HEADER_LEN;
        let Some(inner) = quoted_key(&ip[quoted_off..]) else {
            c.drop_l4_malformed.inc();
            return Verdict::Drop;
        };
        // The quoted packet went the other way: its reversed key is this error's own direction.
        let Some((state, dir)) = dp.states.lookup(&inner.key.reversed()) else {
            c.drop_icmp_error_no_state.inc();
            return Verdict::Drop;
        };
        let outer_dst = Ipv4Packet::new_unchecked(&*ip).dst_addr();
        // An error goes back to the sender of the packet it quotes: anything else is forged
        // (it would carry an error about one flow to another host).
        if outer_dst != inner.key.src {
            c.drop_icmp_error_no_state.inc();
            return Verdict::Drop;
        }
        // A TCP quote must carry a sequence number inside the window of the side that sent it
        // (pf, RFC 5927): addresses and ports alone are public, and a forged error would reset
        // the connection or shrink its MSS. Only ICMP errors pay for this check.
        if let Some(seq) = inner.tcp_seq {
            if !state.icmp_quote_fits(dir.opposite(), seq) {
                c.drop_icmp_error_bad_seq.inc();
                return Verdict::Drop;
            }
        }
        let mut new_outer_dst = outer_dst;
        if let Some(x) = translation(&state, dir) {
            // The outer packet is translated like any packet of the flow; the quoted packet,
            // which went the opposite way, on its opposite side.
            let q = &mut ip[quoted_off..];
            apply_translation(q, inner.hl, inner.key.proto, x.opposite());
            let mut outer = Ipv4Packet::new_unchecked(&mut *ip);
            match x.side {
                Side::Src => outer.set_src_addr(x.addr),
                Side::Dst => {
                    outer.set_dst_addr(x.addr);
                    new_outer_dst = x.addr;
                }
            }
            outer.fill_checksum();
            let mut ic = IcmpPacket::new_unchecked(&mut ip[icmp_off..]);
            ic.fill_checksum();
            c.nat_translated.inc();
        }
        c.state_hits.inc();
        self.route_and_send(gen, dp, in_if, buf, len, new_outer_dst)
    }

    /// The next hop to `dst`, checked before anything is rewritten: without a route the sender
    /// gets a net unreachable, with TTL 1 a time exceeded (both from the packet as it arrived).
    /// Either way the frame's fate is the `Err`, its drop counted.
    fn next_hop_or_answer(
        &mut self,
        gen: &Generation,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
        dst: Ipv4Addr,
    ) -> Result<NextHop, Verdict> {
        let Some(hop) = gen.routes.next_hop(dst) else {
            self.counters.drop_no_route.inc();
            let kind = IcmpErrorKind::DstUnreachable(icmp::CODE_NET_UNREACHABLE);
            return Err(self
                .icmp_error_reply(gen, in_if, buf, len, kind)
                .unwrap_or(Verdict::Drop));
        };
        if ttl_of(buf) <= 1 {
            self.counters.drop_ttl_expired.inc();
            return Err(self.time_exceeded(gen, in_if, buf, len));
        }
        // The frame's length bounds the datagram's: one compare in the common case.
        let mtu = gen.interface(hop.out_if).map_or(u16::MAX, |i| i.mtu);
        if len - ETH > usize::from(mtu) {
            if let Some(v) = self.too_big(gen, in_if, buf, len, mtu) {
                return Err(v);
            }
        }
        Ok(hop)
    }

    /// Routes a packet of an existing state and sends it.
    fn route_and_send(
        &mut self,
        gen: &Generation,
        dp: &Dataplane,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
        dst: Ipv4Addr,
    ) -> Verdict {
        match self.next_hop_or_answer(gen, in_if, buf, len, dst) {
            Ok(hop) => self.forward(gen, dp, hop.out_if, hop.addr, buf, len),
            Err(verdict) => verdict,
        }
    }

    /// Decrements the TTL, writes the Ethernet header for the next hop and sends, or queues the
    /// frame until the next hop answers ARP.
    fn forward(
        &mut self,
        gen: &Generation,
        dp: &Dataplane,
        out_if: IfIndex,
        next_hop: Ipv4Addr,
        buf: &mut [u8],
        len: usize,
    ) -> Verdict {
        let c = &*self.counters;
        let Some(out) = gen.interface(out_if) else {
            c.drop_no_route.inc();
            return Verdict::Drop;
        };
        Ipv4Packet::new_unchecked(&mut buf[ETH..len]).decrement_ttl_incremental();
        let mut eth = EthernetFrame::new_unchecked(&mut buf[..len]);
        eth.set_src_addr(out.mac);
        // Only a datagram without DF gets here too big (`next_hop_or_answer`): fragmented. The
        // test comes after the neighbour lookup, whose one call site keeps it inlined.
        let too_big = len - ETH > usize::from(out.mtu);
        if let Some(mac) = self.memo.lookup(&dp.neigh, out_if, next_hop) {
            eth.set_dst_addr(mac);
            if too_big {
                return self.fragment_out(out_if, buf, len, out.mtu);
            }
            c.forwarded.inc();
            return Verdict::Tx { out_if, len };
        }
        if too_big {
            // Queued for ARP it would be released whole, too big: the next datagrams, once the
            // neighbour is known (other traffic resolves it), are fragmented.
            c.drop_too_big.inc();
            return Verdict::Drop;
        }
        match self
            .pending
            .enqueue(out_if, next_hop, &buf[..len], self.now)
        {
            EnqueueOutcome::Queued { send_request } => {
                c.neigh_queued.inc();
                if send_request {
                    send_arp_request(gen, &mut self.emit, c, out_if, next_hop);
                }
            }
            EnqueueOutcome::QueueFull | EnqueueOutcome::TooManyNextHops => {
                c.drop_neigh_queue_full.inc()
            }
            EnqueueOutcome::Failed => c.drop_neigh_unreachable.inc(),
            EnqueueOutcome::PoolExhausted | EnqueueOutcome::TooLarge => {
                c.drop_neigh_pool_exhausted.inc()
            }
        }
        Verdict::Drop
    }

    /// A reject rule: TCP gets a RST, anything else an ICMP port unreachable.
    fn reject(
        &mut self,
        gen: &Generation,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
        l4: L4,
        hl: usize,
    ) -> Verdict {
        let Some(seg) = l4.seg else {
            let kind = IcmpErrorKind::DstUnreachable(icmp::CODE_PORT_UNREACHABLE);
            return match self.icmp_error_reply(gen, in_if, buf, len, kind) {
                Some(v) => {
                    self.counters.replied.inc();
                    v
                }
                None => {
                    self.counters.drop_blocked_rule.inc();
                    Verdict::Drop
                }
            };
        };
        let c = &*self.counters;
        if seg.flags & TcpFlags::RST.0 != 0 {
            c.drop_blocked_rule.inc();
            return Verdict::Drop;
        }
        let Some(iface) = gen.interface(in_if) else {
            c.drop_blocked_rule.inc();
            return Verdict::Drop;
        };
        let (src, dst, rst) = {
            let ip = Ipv4Packet::new_unchecked(&buf[ETH..len]);
            let tcp = TcpPacket::new_unchecked(ip.payload());
            let _ = hl;
            (ip.src_addr(), ip.dst_addr(), TcpRepr::reset_for(&tcp))
        };
        let ipr = Ipv4Repr {
            src: dst,
            dst: src,
            protocol: IpProtocol::Tcp,
            payload_len: rst.buffer_len(),
            ttl: OWN_TTL,
            dscp: 0,
        };
        let ip_end = ETH + ipr.buffer_len();
        ipr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[ETH..ip_end]));
        rst.emit(
            &mut TcpPacket::new_unchecked(&mut buf[ETH + ipv4::HEADER_LEN..ip_end]),
            dst,
            src,
        );
        let n = pad_frame(buf, ip_end);
        let peer = EthernetFrame::new_unchecked(&buf[..]).src_addr();
        let mut eth = EthernetFrame::new_unchecked(&mut buf[..n]);
        eth.set_dst_addr(peer);
        eth.set_src_addr(iface.mac);
        c.replied.inc();
        c.tcp_rsts_sent.inc();
        Verdict::Tx {
            out_if: in_if,
            len: n,
        }
    }

    fn time_exceeded(
        &mut self,
        gen: &Generation,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
    ) -> Verdict {
        let r = self.icmp_error_reply(
            gen,
            in_if,
            buf,
            len,
            IcmpErrorKind::TimeExceeded(icmp::CODE_TTL_EXCEEDED_IN_TRANSIT),
        );
        r.unwrap_or(Verdict::Drop)
    }

    /// Answers the frame in `buf` with an ICMP error from the receiving interface's address,
    /// in place. None when RFC 1812 forbids an error here or the rate limit says no; the caller
    /// has already counted the drop that caused it.
    fn icmp_error_reply(
        &mut self,
        gen: &Generation,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
        kind: IcmpErrorKind,
    ) -> Option<Verdict> {
        let iface = gen.interface(in_if)?;
        let (our_ip, _) = iface.addr?;
        let (peer_mac, link_broadcast) = {
            let eth = EthernetFrame::new_unchecked(&buf[..len]);
            (eth.src_addr(), eth.dst_addr().is_multicast())
        };
        let (invoking_src, allowed, total) = {
            let ip = Ipv4Packet::new_unchecked(&buf[ETH..len]);
            (
                ip.src_addr(),
                icmp::may_send_error(&ip),
                usize::from(ip.total_len()),
            )
        };
        if !allowed || link_broadcast {
            return None;
        }
        if !self.icmp.take(self.now) {
            self.counters.icmp_errors_ratelimited.inc();
            return None;
        }
        // The quoted bytes move behind the new headers: copy them out first (they overlap).
        let mut quote = [0u8; 128];
        let qn = total.min(len - ETH).min(quote.len());
        quote[..qn].copy_from_slice(&buf[ETH..ETH + qn]);
        let icmp_off = ETH + ipv4::HEADER_LEN;
        let icmp_len = icmp::emit_icmp_error(&mut buf[icmp_off..], kind, &quote[..qn]);
        let ipr = Ipv4Repr {
            src: our_ip,
            dst: invoking_src,
            protocol: IpProtocol::Icmp,
            payload_len: icmp_len,
            ttl: OWN_TTL,
            dscp: 0,
        };
        ipr.emit(&mut Ipv4Packet::new_unchecked(
            &mut buf[ETH..icmp_off + icmp_len],
        ));
        let n = pad_frame(buf, icmp_off + icmp_len);
        let mut eth = EthernetFrame::new_unchecked(&mut buf[..n]);
        eth.set_dst_addr(peer_mac);
        eth.set_src_addr(iface.mac);
        eth.set_ethertype(EtherType::Ipv4);
        self.counters.icmp_errors_sent.inc();
        Some(Verdict::Tx {
            out_if: in_if,
            len: n,
        })
    }
}

fn send_arp_request(
    gen: &Generation,
    emit: &mut EmitQueue,
    c: &Counters,
    out_if: IfIndex,
    target: Ipv4Addr,
) {
    let Some(iface) = gen.interface(out_if) else {
        return;
    };
    let Some((src_ip, _)) = iface.addr else {
        return;
    };
    if emit.push(out_if, |buf| {
        arp::emit_arp_request(buf, iface.mac, src_ip, target)
    }) {
        c.arp_requests.inc();
    } else {
        c.drop_emit_full.inc();
    }
}

/// Which address of a packet a translation rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

/// A rewrite of one address and its port (or ICMP query id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Translation {
    side: Side,
    addr: Ipv4Addr,
    port: u16,
}

impl Translation {
    fn opposite(self) -> Translation {
        Translation {
            side: if self.side == Side::Src {
                Side::Dst
            } else {
                Side::Src
            },
            ..self
        }
    }
}

/// The rewrite a packet of `state` going `dir` needs, if the state is translated: outbound, the
/// source becomes the wire side's; inbound, the destination becomes the stack side's.
#[inline]
fn translation(state: &State, dir: Direction) -> Option<Translation> {
    if state.stack == state.wire() {
        return None;
    }
    Some(match dir {
        Direction::Original => Translation {
            side: Side::Src,
            addr: state.wire().src,
            port: state.wire().sport,
        },
        Direction::Reply => Translation {
            side: Side::Dst,
            addr: state.stack.src,
            port: state.stack.sport,
        },
    })
}

/// Rewrites an address and its port in an IPv4 datagram, patching the IP and layer-4 checksums
/// incrementally (RFC 1624). For ICMP queries the "port" is the query id, and it is the same
/// field whichever side is translated. Also used inside an ICMP error's quoted packet, which
/// may stop 8 bytes into its payload: only the fields present are patched.
fn apply_translation(ip: &mut [u8], hl: usize, proto: u8, x: Translation) {
    let (addr_off, port_off) = match x.side {
        Side::Src => (12, 0),
        Side::Dst => (16, 2),
    };
    if ip.len() < hl {
        return;
    }
    let old_addr = Ipv4Addr::from(read_u32(ip, addr_off));
    if old_addr != x.addr {
        ip[addr_off..addr_off + 4].copy_from_slice(&x.addr.octets());
        let c = checksum::update_addr(read_u16(ip, 10), old_addr, x.addr);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    rewrite_l4(&mut ip[hl..], proto, port_off, old_addr, x.addr, x.port);
}

/// Rewrites the port (or ICMP query id) at `port_off` of a layer-4 header and patches its
/// checksum for the address change too (TCP and UDP sum a pseudo-header; ICMP does not).
fn rewrite_l4(
    l4: &mut [u8],
    proto: u8,
    port_off: usize,
    old_addr: Ipv4Addr,
    new_addr: Ipv4Addr,
    port: u16,
) {
    match proto {
        PROTO_TCP if l4.len() >= 4 => {
            let old_port = read_u16(l4, port_off);
            l4[port_off..port_off + 2].copy_from_slice(&port.to_be_bytes());
            // A quoted TCP header may stop before its checksum (offset 16).
            if l4.len() >= 18 {
                let c = checksum::update_addr(read_u16(l4, 16), old_addr, new_addr);
                let c = checksum::update_u16(c, old_port, port);
                l4[16..18].copy_from_slice(&c.to_be_bytes());
            }
        }
        PROTO_UDP if l4.len() >= 8 => {
            let old_port = read_u16(l4, port_off);
            l4[port_off..port_off + 2].copy_from_slice(&port.to_be_bytes());
            let c = udp::update_checksum_addr(read_u16(l4, 6), old_addr, new_addr);
            let c = udp::update_checksum_u16(c, old_port, port);
            l4[6..8].copy_from_slice(&c.to_be_bytes());
        }
        PROTO_ICMP if l4.len() >= 8 => {
            // The query id (not covered by a pseudo-header: only the id changes the sum).
            let old_id = read_u16(l4, 4);
            l4[4..6].copy_from_slice(&port.to_be_bytes());
            // An all-zero message (id 0, seq 0, no data) needs 0xffff, not 0x0000.
            let c = icmp::update_checksum_u16(read_u16(l4, 2), old_id, port);
            l4[2..4].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
}

/// The key of the packet quoted in an ICMP error.
struct Quoted {
    key: FlowKey,
    hl: usize,
    /// A quoted TCP segment's sequence number, checked against the state's window.
    tcp_seq: Option<u32>,
}

fn quoted_key(q: &[u8]) -> Option<Quoted> {
    let ip = Ipv4Packet::new_checked_quoted(q).ok()?;
    let hl = ip.header_len();
    let proto = u8::from(ip.next_header());
    let l4 = q.get(hl..)?;
    let mut tcp_seq = None;
    let (sport, dport) = match proto {
        // RFC 792 quotes 8 bytes of the segment; with fewer the sequence number cannot be
        // checked, and pf drops such an error as short.
        PROTO_TCP => {
            let t = QuotedTcp::parse(l4).ok()?;
            tcp_seq = Some(t.seq_number.0);
            (t.src_port, t.dst_port)
        }
        PROTO_UDP if l4.len() >= 4 => (read_u16(l4, 0), read_u16(l4, 2)),
        PROTO_ICMP if l4.len() >= 8 => {
            let t = IcmpType::from(l4[0]);
            if !matches!(t, IcmpType::EchoRequest | IcmpType::EchoReply) {
                return None;
            }
            let id = read_u16(l4, 4);
            (id, id)
        }
        PROTO_UDP | PROTO_ICMP => return None,
        _ => (0, 0),
    };
    Some(Quoted {
        key: FlowKey {
            proto,
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            sport,
            dport,
        },
        hl,
        tcp_seq,
    })
}

/// Reads the layer-4 header: ports (or the ICMP query id as both), the TCP segment for tracking.
/// None when the header is truncated.
/// A first fragment (`first_frag`) holds the transport header but not the whole datagram: its
/// UDP length exceeds it, and a TCP segment's payload length is this fragment's part only
/// (tracking then sees a shorter segment than was sent, and the peer's acknowledgement runs
/// ahead of it within the ack window pf's rules tolerate; fragmented TCP is rare anyway: stacks
/// set DF and size segments by the MSS).
#[inline]
fn parse_l4(l4: &[u8], proto: u8, first_frag: Option<u16>) -> Option<L4> {
    let mut r = L4 {
        sport: 0,
        dport: 0,
        seg: None,
        icmp_error: false,
        echo_request: false,
        first_frag,
    };
    match proto {
        PROTO_TCP => {
            let tcp = TcpPacket::new_checked(l4).ok()?;
            let flags = tcp.flags();
            r.sport = tcp.src_port();
            r.dport = tcp.dst_port();
            r.seg = Some(TcpSegment {
                flags: flags.0,
                seq: tcp.seq_number().0,
                ack: tcp.ack_number().0,
                win: tcp.window_len(),
                // Options are read only where tracking uses them: the SYNs.
                wscale: if flags.contains(TcpFlags::SYN) {
                    tcp.parse_options().window_scale
                } else {
                    None
                },
                payload_len: u16::try_from(tcp.payload().len()).unwrap_or(u16::MAX),
            });
        }
        PROTO_UDP => {
            let udp = if first_frag.is_some() {
                udp::UdpPacket::new_checked_first_fragment(l4).ok()?
            } else {
                udp::UdpPacket::new_checked(l4).ok()?
            };
            r.sport = udp.src_port();
            r.dport = udp.dst_port();
        }
        PROTO_ICMP => {
            let icmp = IcmpPacket::new_checked(l4).ok()?;
            let t = icmp.msg_type();
            match t {
                IcmpType::EchoRequest | IcmpType::EchoReply => {
                    r.sport = icmp.echo_ident();
                    r.dport = r.sport;
                    r.echo_request = t == IcmpType::EchoRequest;
                }
                t if t.is_error() => r.icmp_error = true,
                _ => {}
            }
        }
        _ => {}
    }
    Some(r)
}

/// What the filter sees of a packet with `key` arriving on `in_if` (ports only for TCP and UDP).
/// Public for the control plane's re-evaluation of states against a new ruleset.
#[inline]
pub fn meta_of(in_if: IfIndex, key: &FlowKey) -> PacketMeta {
    let ports = matches!(key.proto, PROTO_TCP | PROTO_UDP);
    PacketMeta {
        in_if,
        proto: key.proto,
        src: key.src,
        dst: key.dst,
        sport: if ports { key.sport } else { 0 },
        dport: if ports { key.dport } else { 0 },
    }
}

/// Whether `dst` is one of the box's addresses right now (interface addresses, held VIPs),
/// or a broadcast or multicast address (which the box never forwards).
fn is_local(gen: &Generation, dp: &Dataplane, dst: Ipv4Addr) -> bool {
    if dst.is_broadcast() || dst.is_multicast() {
        return true;
    }
    gen.interfaces.iter().any(|i| match i.addr {
        Some((a, l)) => a == dst || (l < 31 && dst == subnet_broadcast(a, l)),
        None => false,
    }) || gen.vips.iter().any(|v| v.addr == dst && dp.held.holds(v))
}

/// Addresses valid nowhere on a wire: a loopback source or destination (127/8), a destination
/// on network 0, a multicast or broadcast source. (A source 0.0.0.0 is fine: DHCP.)
fn is_martian(src: Ipv4Addr, dst: Ipv4Addr) -> bool {
    src.is_loopback()
        || dst.is_loopback()
        || dst.octets()[0] == 0
        || src.is_multicast()
        || src.is_broadcast()
}

/// Whether `dst` is the directed broadcast address of one of the interfaces' subnets.
fn is_subnet_broadcast(gen: &Generation, dst: Ipv4Addr) -> bool {
    gen.interfaces.iter().any(|i| match i.addr {
        Some((a, l)) => l < 31 && dst == subnet_broadcast(a, l),
        None => false,
    })
}

/// Whether `ip` is one of the box's configured addresses (interface addresses and every VIP,
/// held or not).
fn is_configured_addr(gen: &Generation, ip: Ipv4Addr) -> bool {
    gen.interfaces
        .iter()
        .any(|i| i.addr.is_some_and(|(a, _)| a == ip))
        || gen.vips.iter().any(|v| v.addr == ip)
}

/// The MAC to answer ARP for `ip` on `in_if` with: the interface's for its own address, the
/// virtual MAC for a held CARP VIP, the interface's for an IP alias.
fn our_mac_for(gen: &Generation, dp: &Dataplane, in_if: IfIndex, ip: Ipv4Addr) -> Option<MacAddr> {
    let iface = gen.interface(in_if)?;
    if iface.addr.is_some_and(|(a, _)| a == ip) {
        return Some(iface.mac);
    }
    gen.vips
        .iter()
        .find(|v| v.if_index == in_if && v.addr == ip && dp.held.holds(v))
        .map(|v| v.mac(iface))
}

/// Whether `mac` is the virtual MAC of a VIP on `in_if` that this box holds.
#[inline]
fn holds_vmac(gen: &Generation, dp: &Dataplane, in_if: IfIndex, mac: MacAddr) -> bool {
    let m = mac.0;
    if m[..5] != [0x00, 0x00, 0x5e, 0x00, 0x01] {
        return false;
    }
    dp.held.is_held(m[5])
        && gen
            .vips
            .iter()
            .any(|v| v.if_index == in_if && v.vhid == Some(m[5]))
}

fn same_net(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    (a.to_bits() ^ b.to_bits()) & mask == 0
}

fn subnet_broadcast(a: Ipv4Addr, len: u8) -> Ipv4Addr {
    let host = if len >= 32 {
        0
    } else {
        u32::MAX >> u32::from(len)
    };
    Ipv4Addr::from_bits(a.to_bits() | host)
}

#[inline]
fn ttl_of(buf: &[u8]) -> u8 {
    buf[ETH + 8]
}

/// Pads a frame to Ethernet's minimum (60 bytes without FCS) and returns its length.
fn pad_frame(buf: &mut [u8], n: usize) -> usize {
    if n < ethernet::MIN_FRAME_LEN {
        buf[n..ethernet::MIN_FRAME_LEN].fill(0);
        ethernet::MIN_FRAME_LEN
    } else {
        n
    }
}

#[inline]
fn read_u16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

#[inline]
fn read_u32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

const _: () = assert!(FRAME_SIZE >= 128 + ETH + ipv4::HEADER_LEN + icmp::HEADER_LEN);

#[cfg(test)]
mod test {
    use super::*;
    use crate::filter::Ruleset;
    use crate::route::RouteTable;
    use crate::state::TableConfig;

    #[test]
    fn a_buffer_too_small_for_replies_is_a_counted_drop() {
        let generation = Generation {
            number: 1,
            interfaces: Vec::new(),
            vips: Vec::new(),
            ruleset: Ruleset::empty(1),
            routes: RouteTable::new(Vec::new()),
            allow_ip_options: false,
        };
        let dp = Dataplane::new(generation, StateTable::new(TableConfig::default()));
        let mut p = Pipeline::new(dp, &PipelineConfig::default());
        let mut small = [0u8; MIN_BUFFER - 1];
        assert_eq!(p.process(0, &mut small, 60), Verdict::Drop);
        assert_eq!(p.counters().drop_short_buffer.get(), 1);
        assert_eq!(p.counters().outcomes_total(), p.counters().rx_frames.get());
    }
}
