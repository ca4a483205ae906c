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
use crate::io::{Frame, Ports, Verdict, FRAME_SIZE};
use crate::journal::{Origin, Producer};
use crate::neigh::{
    DropReason, EnqueueOutcome, NeighCache, NeighMemo, PendingConfig, PendingEvent, PendingQueues,
};
use crate::route::{NextHop, RouteMemo};
use crate::state::{
    Direction, FlowKey, InsertError, Millis, NewState, ReadSection, SrcLimits, State, StateTable,
    TcpSegment, TrackError,
};
use crate::wire::arp::{self, ArpOperation, ArpPacket, ArpRepr};
use crate::wire::ethernet::{self, EtherType, EthernetFrame};
use crate::wire::icmp::{self, IcmpErrorKind, IcmpPacket, IcmpType, QuotedPacket};
use crate::wire::ipv4::{self, proto, IpProtocol, Ipv4Packet, Ipv4Repr, CARP_GROUP};
use crate::wire::tcp::{TcpFlags, TcpPacket, TcpRepr};
use crate::wire::{udp, MacAddr, Side};
use crate::IfIndex;

use addresses::*;

mod addresses;
mod first_packet;
mod forward;
mod fragments;
mod icmp_errors;
mod l2;
mod local;
mod lookahead;
mod nat;

use lookahead::Lookahead;
pub use lookahead::{LOOKAHEAD_INDEX_BYTES, LOOKAHEAD_STATES};
use nat::translation;

const ETH: usize = ethernet::HEADER_LEN;
/// The DHCP server's UDP port (RFC 2131 §4.1).
const DHCP_SERVER_PORT: u16 = 67;
/// CARP's multicast group's Ethernet address.
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
    routes: RouteMemo,
    emit: EmitQueue,
    icmp: IcmpRateLimit,
    to_control: Option<Sender<ControlFrame>>,
    to_dhcp: Option<Sender<ControlFrame>>,
    carp: CarpBudget,
    /// This worker's queue into the state journal: the states it creates, tracks and removes.
    journal: Producer,
    now: Millis,
    /// TCP and UDP frames of this round that found no state and were not for the box: new
    /// flows, each a lookup in a random bucket of the key index.
    new_flows: usize,
    /// Enough of the last round's frames were new flows for the next round's lookahead to pay
    /// in a large index (see [`Pipeline::round`]).
    new_flows_ahead: bool,
}

/// One IPv4 packet as the checks of [`WorkerSide::ipv4`] found it, carried through the stages
/// (rules, local delivery, ICMP errors, the first packet) instead of loose parameters.
#[derive(Debug, Clone, Copy)]
struct Packet {
    /// The interface it came in on.
    in_if: IfIndex,
    /// The received frame's length (the buffer may be longer: replies grow in place).
    len: usize,
    key: FlowKey,
    l4: L4,
    /// IPv4 header length (options included).
    hl: usize,
    /// IPv4 total length: the packet ends at `ETH + total`.
    total: usize,
}

/// An ICMP message as the pipeline treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IcmpKind {
    /// Not ICMP.
    None,
    /// An echo request: a query, and answered when addressed to the box.
    EchoRequest,
    /// Another query request (timestamp, information, address mask, extended echo): keyed by
    /// its id as an echo is.
    Request,
    /// A query's reply: it only ever answers a request, so it makes no state and goes only the
    /// way a state's replies go.
    Reply,
    /// An error: its quoted packet decides where it belongs.
    Error,
    /// Anything else (router discovery, deprecated and unknown types): no id to key a flow
    /// by, so it makes no state and rides none (Linux's conntrack calls it invalid; its bytes
    /// 4..6 are no id for NAT to rewrite).
    Other,
}

impl IcmpKind {
    /// Never looks up a state by its own key (ports 0/0 would find a query's with id 0).
    #[inline]
    fn keyless(self) -> bool {
        matches!(self, IcmpKind::Error | IcmpKind::Other)
    }

    /// A query request (an echo or another).
    #[inline]
    fn request(self) -> bool {
        matches!(self, IcmpKind::EchoRequest | IcmpKind::Request)
    }
}

/// The layer-4 facts of a packet, read once.
#[derive(Debug, Clone, Copy)]
struct L4 {
    sport: u16,
    dport: u16,
    /// TCP only.
    seg: Option<TcpSegment>,
    /// What kind of ICMP message it is, if it is one.
    icmp: IcmpKind,
    /// The IP id of a first fragment (MF set, offset 0): its followers follow it.
    first_frag: Option<u16>,
}

impl Pipeline {
    pub fn new(dp: Arc<Dataplane>, config: &PipelineConfig) -> Pipeline {
        let counters = Arc::new(Counters::default());
        dp.register(counters.clone());
        let gen = dp.generation.load_full();
        let journal = dp.states.producer();
        Pipeline {
            dp,
            gen,
            w: WorkerSide {
                counters,
                pending: PendingQueues::new(config.pending),
                memo: NeighMemo::default(),
                routes: RouteMemo::default(),
                emit: EmitQueue::new(config.emit_capacity),
                icmp: IcmpRateLimit::new(config.icmp_rate, config.icmp_burst),
                to_control: None,
                to_dhcp: None,
                carp: CarpBudget::default(),
                journal,
                now: 0,
                new_flows: 0,
                new_flows_ahead: false,
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
                PendingEvent::Dropped {
                    count,
                    reason: DropReason::ResolveFailed,
                    ..
                } => counters.neigh_failed.add(u64::from(count)),
                PendingEvent::Dropped {
                    count,
                    reason: DropReason::Evicted,
                    ..
                } => counters.neigh_evicted.add(u64::from(count)),
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
        self.process_in(None, in_if, buf, len)
    }

    /// [`Pipeline::process`] inside a batch's [`ReadSection`] of the state table (what
    /// [`Pipeline::round`] holds): the state lookup pins nothing of its own.
    #[inline]
    pub fn process_in(
        &mut self,
        section: Option<&ReadSection>,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
    ) -> Verdict {
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
        let v = self
            .w
            .process(section, &self.gen, &self.dp, in_if, buf, len);
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

    /// One round of the driver loop, the same for the box's AF_XDP ports and the in-memory
    /// ports of tests and benchmarks: a batch received and processed (up to `budget` frames),
    /// the forwarded frames sent in batches by the ports, then the frames the batch generated
    /// (ARP requests, released frames, ICMP errors). Returns the frames received.
    pub fn round<P: Ports + ?Sized>(&mut self, ports: &mut P, budget: usize, now: Millis) -> usize {
        self.begin_batch(now);
        // The batch's state lookups run under one epoch pin, handed to each (see
        // `StateTable::read_section`, `StateTable::with_state_in`).
        let reading = self.dp.states.read_section();
        let states = &self.dp.states;
        let large = lookahead::pays(states.len(), states.index_bytes(), self.w.new_flows_ahead)
            .then(|| Arc::clone(&self.dp));
        let mut handler =
            |in_if, buf: &mut [u8], len| self.process_in(Some(&reading), in_if, buf, len);
        let n = match &large {
            Some(dp) => ports.poll_looking(budget, &mut Lookahead::new(&dp.states), &mut handler),
            None => ports.poll(budget, &mut handler),
        };
        // The last round that received anything predicts the next one's share of new flows
        // (an idle round between two bursts says nothing).
        let new_flows = std::mem::take(&mut self.w.new_flows);
        if n > 0 {
            self.w.new_flows_ahead = lookahead::many_new(new_flows, n);
        }
        drop(reading);
        self.end_batch();
        self.drain_emitted(|out_if, f| ports.send_copy(out_if, f.bytes()));
        n
    }
}

impl WorkerSide {
    #[allow(clippy::too_many_arguments)]
    fn ipv4(
        &mut self,
        section: Option<&ReadSection>,
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
        // A frame longer than its datagram (a trailer, or Ethernet's padding) goes on cut to
        // the datagram, padding zeroed: nothing the rules did not look at crosses the box (a
        // covert channel otherwise), as Linux trims (`pskb_trim_rcsum`).
        let len = if ETH + total < len {
            cut_frame(buf, ETH + total)
        } else {
            len
        };
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
        // Built only off the fast path: copying the key and the L4 facts costs an established
        // packet ~15 instructions it does not need.
        let packet = || Packet {
            in_if,
            len,
            key,
            l4,
            hl,
            total,
        };
        let bytes = u32::try_from(total).unwrap_or(u32::MAX);

        // An existing state: the fast path. Tracking and the translation to apply are decided
        // in one lock-free lookup; nothing is cloned.
        // An ICMP error's own key (ports 0/0) would find the state of an ICMP query with id 0
        // and ride it, unchecked: errors belong where their quoted packet says.
        let hit = if l4.icmp.keyless() {
            None
        } else {
            dp.states.with_state_in(section, &key, |state, dir| {
                let tracked = match &l4.seg {
                    Some(seg) if via_vip => state.track_tcp_on_takeover(dir, seg, bytes, self.now),
                    Some(seg) => state.track_tcp(dir, seg, bytes, self.now),
                    // An echo request where the state's replies go, or a reply where its requests
                    // go: a request from outside would reach the inside host through a ping's
                    // state (pf and Linux key the direction in).
                    None if (l4.icmp.request() && dir == Direction::Reply)
                        || (l4.icmp == IcmpKind::Reply && dir == Direction::Original) =>
                    {
                        Err(TrackError::WrongDirection)
                    }
                    None => {
                        state.track_other(dir, bytes, self.now);
                        Ok(())
                    }
                };
                if tracked.is_ok() {
                    dp.states.updated(state, &self.journal);
                }
                // The state to remove on port reuse: this one, not whatever the key finds later
                // (another worker may have replaced it meanwhile).
                let reused = (tracked == Err(TrackError::PortReuse)).then(|| Arc::clone(state));
                (tracked, translation(state, dir), reused)
            })
        };
        'state: {
            if let Some((tracked, xlat, reused)) = hit {
                match tracked {
                    Ok(()) => {}
                    Err(TrackError::PortReuse) => {
                        // Both sides closed and a new SYN: the old state goes, the SYN starts anew.
                        if let Some(s) = reused {
                            dp.states.remove(&s, Origin::Local(&self.journal));
                        }
                        return self.new_flow(section, gen, dp, buf, &packet());
                    }
                    Err(TrackError::BadWindow) => {
                        c.drop_tcp_bad_window.inc();
                        return Verdict::Drop;
                    }
                    Err(TrackError::NoAck) => {
                        c.drop_tcp_no_ack.inc();
                        return Verdict::Drop;
                    }
                    // A query going the wrong way for the state its key found is not that state's:
                    // it goes on as any packet without a state (an echo request to the box is
                    // answered, one to another host meets the rules; two hosts pinging each other
                    // with one id are two flows).
                    Err(TrackError::WrongDirection) => break 'state,
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
                    x.apply(&mut buf[ETH..ETH + total]);
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
        }

        if l4.icmp == IcmpKind::Error {
            // Its checksum is rewritten from the bytes at hand (which a fragment lacks), and an
            // error quotes 28 bytes: a fragmented one is forged or broken.
            if l4.first_frag.is_some() {
                c.drop_fragment.inc();
                return Verdict::Drop;
            }
            return self.icmp_error(gen, dp, buf, &packet());
        }
        if is_local(gen, dp, dst) {
            return self.local(gen, dp, buf, &packet());
        }
        if is_impersonated_source(gen, src) {
            c.drop_martian.inc();
            return Verdict::Drop;
        }
        // What the lookahead could have prefetched (it reads TCP and UDP keys only).
        self.new_flows += usize::from(matches!(proto, proto::TCP | proto::UDP));
        self.new_flow(section, gen, dp, buf, &packet())
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

/// Reads the layer-4 header: ports (or the ICMP query id as both), the TCP segment for tracking.
/// None when the header is truncated.
/// A first fragment (`first_frag`) holds the transport header but not the whole datagram: its
/// UDP length exceeds it, and a TCP segment's payload length is this fragment's part only
/// (tracking then sees a shorter segment than was sent, and the peer's acknowledgement runs
/// ahead of it within the ack window pf's rules tolerate; fragmented TCP is rare anyway: stacks
/// set DF and size segments by the MSS).
// Always inlined: called, it returned its `L4` through memory that the caller then copied in
// 16-byte loads spanning the callee's narrower stores, which the CPU cannot forward (a stall of
// ~6 % of an established packet's time, `perf annotate`). The rare, long part (a SYN's options)
// stays a call.
#[inline(always)]
fn parse_l4(l4: &[u8], proto: u8, first_frag: Option<u16>) -> Option<L4> {
    let mut r = L4 {
        sport: 0,
        dport: 0,
        seg: None,
        icmp: IcmpKind::None,
        first_frag,
    };
    match proto {
        proto::TCP => {
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
                    syn_window_scale(&tcp)
                } else {
                    None
                },
                payload_len: u16::try_from(tcp.payload().len()).unwrap_or(u16::MAX),
            });
        }
        proto::UDP => {
            let udp = if first_frag.is_some() {
                udp::UdpPacket::new_checked_first_fragment(l4).ok()?
            } else {
                udp::UdpPacket::new_checked(l4).ok()?
            };
            r.sport = udp.src_port();
            r.dport = udp.dst_port();
        }
        proto::ICMP => {
            let icmp = IcmpPacket::new_checked(l4).ok()?;
            let t = icmp.msg_type();
            r.icmp = if t == IcmpType::EchoRequest {
                IcmpKind::EchoRequest
            } else if t.is_query_request() {
                IcmpKind::Request
            } else if t.is_query_reply() {
                IcmpKind::Reply
            } else if t.is_error() {
                IcmpKind::Error
            } else {
                IcmpKind::Other
            };
            if matches!(
                r.icmp,
                IcmpKind::EchoRequest | IcmpKind::Request | IcmpKind::Reply
            ) {
                r.sport = icmp.echo_ident();
                r.dport = r.sport;
            }
        }
        _ => {}
    }
    Some(r)
}

/// A SYN's window scale option (out of line: only the first packets of a connection read
/// options).
#[inline(never)]
fn syn_window_scale(tcp: &TcpPacket<&[u8]>) -> Option<u8> {
    tcp.parse_options().window_scale
}

/// What the filter sees of a packet with `key` arriving on `in_if` (ports only for TCP and UDP).
/// Public for the control plane's re-evaluation of states against a new ruleset.
#[inline]
pub fn meta_of(in_if: IfIndex, key: &FlowKey) -> PacketMeta {
    let ports = matches!(key.proto, proto::TCP | proto::UDP);
    PacketMeta {
        in_if,
        proto: key.proto,
        src: key.src,
        dst: key.dst,
        sport: if ports { key.sport } else { 0 },
        dport: if ports { key.dport } else { 0 },
    }
}

/// Cuts a frame to its first `n` bytes, at least an IPv4 header past the Ethernet header,
/// padded with zeros to Ethernet's minimum. The padding is 32 bytes zeroed from `n` whatever
/// its length (which reaches the minimum from any such `n`): two stores where `pad_frame`'s
/// exact fill is a `memset` call, ~40 instructions on every small forwarded frame. The handler's
/// buffer is `FRAME_SIZE` long, so the bytes past the minimum are there, and not sent.
#[inline]
fn cut_frame(buf: &mut [u8], n: usize) -> usize {
    const ZEROED: usize = 32;
    debug_assert!(n >= ETH + ipv4::HEADER_LEN && n + ZEROED >= ethernet::MIN_FRAME_LEN);
    if n < ethernet::MIN_FRAME_LEN {
        buf[n..n + ZEROED].fill(0);
        ethernet::MIN_FRAME_LEN
    } else {
        n
    }
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

const _: () = assert!(FRAME_SIZE >= 128 + ETH + ipv4::HEADER_LEN + icmp::HEADER_LEN);

#[cfg(test)]
mod tests {
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
