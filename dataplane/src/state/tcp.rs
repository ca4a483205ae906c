//! TCP window tracking, after pf's `pf_tcp_track_full` (FreeBSD `sys/netpfil/pf/pf.c`), itself
//! Guido van Rooij's "Real Stateful TCP Packet Filtering in IP Filter".
//!
//! Each side of a connection is a [`TcpPeer`]: `seqlo` is the highest sequence number it has sent
//! (plus one, the next it will send), `seqhi` the highest the other side allows it to send
//! (its ack plus its window), `max_win` the largest window it has advertised, `wscale` its window
//! scale option. A segment passes when its data lies inside the receiver's window, its ack is
//! within `MAXACKWINDOW` of what the receiver has sent, and a RST's sequence number is exact.
//!
//! Not carried over from pf: sequence number modulation and scrub (`seqdiff`, timestamps, the
//! normaliser), SYN proxy, and the RST pf sends itself on a handshake mismatch (the caller may).

use super::key::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use super::timeouts::TimeoutClass;
use super::Direction;

/// TCP header flag bits, as in the header's 13th byte.
pub mod flags {
    /// No more data from the sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push.
    pub const PSH: u8 = 0x08;
    /// The ack field is significant.
    pub const ACK: u8 = 0x10;
    /// Urgent pointer significant.
    pub const URG: u8 = 0x20;
}

/// `wscale` bit meaning "this side sent a window scale option" (pf's `PF_WSCALE_FLAG`).
pub const WSCALE_FLAG: u8 = 0x80;
/// `wscale` bits holding the shift (pf's `PF_WSCALE_MASK`).
pub const WSCALE_MASK: u8 = 0x0f;
/// The largest shift RFC 7323 allows (`TCP_MAX_WINSHIFT`); larger options are clamped.
pub const MAX_WINSHIFT: u8 = 14;
/// The largest unscaled window (`TCP_MAXWIN`).
pub const MAX_WIN: u32 = 65_535;
/// How far an ack may lag behind or run ahead of the other side's data: a full unscaled window
/// plus an arbitrary fudge of 1500 (pf's `MAXACKWINDOW`).
pub const MAX_ACK_WINDOW: i64 = 0xffff + 1500;

/// A peer's protocol state level, pf's `u8` (wire-compatible with pfsync's `state` byte).
/// TCP uses the `TCPS_*` levels, UDP and other protocols the `PFUDPS_*`/`PFOTHERS_*` ones.
/// Levels only move forward (the pfsync merge rule relies on the order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PeerState(pub u8);

impl PeerState {
    /// TCP: nothing seen from this side.
    pub const CLOSED: PeerState = PeerState(0);
    /// TCP: listening (unused by tracking, kept for the numbering).
    pub const LISTEN: PeerState = PeerState(1);
    /// TCP: this side has sent a SYN.
    pub const SYN_SENT: PeerState = PeerState(2);
    /// TCP: SYN received (unused by tracking, kept for the numbering).
    pub const SYN_RECEIVED: PeerState = PeerState(3);
    /// TCP: this side's SYN has been acknowledged.
    pub const ESTABLISHED: PeerState = PeerState(4);
    /// TCP: (numbering only).
    pub const CLOSE_WAIT: PeerState = PeerState(5);
    /// TCP: (numbering only).
    pub const FIN_WAIT_1: PeerState = PeerState(6);
    /// TCP: this side has sent a FIN.
    pub const CLOSING: PeerState = PeerState(7);
    /// TCP: (numbering only).
    pub const LAST_ACK: PeerState = PeerState(8);
    /// TCP: this side's FIN has been acknowledged.
    pub const FIN_WAIT_2: PeerState = PeerState(9);
    /// TCP: reset, or both closed.
    pub const TIME_WAIT: PeerState = PeerState(10);

    /// UDP/other: nothing seen from this side.
    pub const NO_TRAFFIC: PeerState = PeerState(0);
    /// UDP/other: this side has sent.
    pub const SINGLE: PeerState = PeerState(1);
    /// UDP/other: both sides have sent (set on the side that sent first, when the other answers).
    pub const MULTIPLE: PeerState = PeerState(2);
}

/// One side of a tracked connection (pf's `pf_state_peer` without scrub and modulation).
/// 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpPeer {
    /// Highest sequence number sent, plus one (0: nothing sent yet, as in pf).
    pub seqlo: u32,
    /// Highest sequence number the other side allows this side to send.
    pub seqhi: u32,
    /// Largest window advertised (unscaled once scaling is agreed).
    pub max_win: u16,
    /// Window scale: [`WSCALE_FLAG`] if offered, the shift in [`WSCALE_MASK`].
    pub wscale: u8,
    /// Protocol state level.
    pub state: PeerState,
}

/// A TCP segment's fields that tracking reads, taken from the header by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpSegment {
    /// Header flags ([`flags`]).
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Window field, as on the wire (unscaled).
    pub win: u16,
    /// The window scale option's shift, if the segment carries one.
    pub wscale: Option<u8>,
    /// TCP payload length.
    pub payload_len: u16,
}

impl TcpSegment {
    /// SYN without ACK: the only segment pf's default `flags S/SA` lets create a state. Not
    /// with FIN or RST, which no stack sends with a SYN and pf's scrub (on by default in
    /// pfSense) drops as illegal: a SYN|FIN neither makes a state nor reuses a closed one.
    pub const fn is_initial_syn(&self) -> bool {
        self.flags & (flags::SYN | flags::ACK | flags::FIN | flags::RST) == flags::SYN
    }

    const fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    /// The window scale option in pf's encoding (flag | clamped shift), 0 if absent.
    fn wscale_option(&self) -> u8 {
        match self.wscale {
            Some(s) => WSCALE_FLAG | s.min(MAX_WINSHIFT),
            None => 0,
        }
    }
}

/// Why a segment does not fit its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackError {
    /// Outside the window, an ack too far off, or a RST whose sequence number is not exact
    /// (pf's `PFRES_BADSTATE`).
    BadWindow,
    /// A new SYN on a state whose both sides are closed: the ports are being reused. The state
    /// has been marked [`TimeoutClass::Purge`]; the caller removes it and may create a new one.
    PortReuse,
    /// A segment without ACK that is neither a SYN nor a RST (no flags, a bare FIN, data
    /// alone): no stack sends one on a connection (RFC 9293 3.10.7.4), and pf would let it move
    /// the sender's window with an ack it does not check.
    NoAck,
    /// An ICMP query going the wrong way for its state: an echo request where the state's
    /// replies go, or a reply where its requests go (the pipeline's check: such a packet is
    /// not the state's, and goes on as one without a state).
    WrongDirection,
}

impl std::fmt::Display for TrackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrackError::BadWindow => "TCP segment outside the tracked window",
            TrackError::PortReuse => "new SYN on a closed TCP state (port reuse)",
            TrackError::NoAck => "TCP segment without ACK, SYN or RST",
            TrackError::WrongDirection => "ICMP query in its state's other direction",
        })
    }
}

impl std::error::Error for TrackError {}

#[inline]
fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[inline]
fn seq_geq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// Whether a TCP sequence number quoted in an ICMP error fits the state, pf's check in
/// `pf_test_state_icmp` (RFC 5927 section 4.1): the quoted segment was sent by the peer on
/// the `quoted_dir` side, so its sequence number must lie between that peer's `seqlo` less the
/// receiver's largest window (data still unacknowledged, retransmissions) and its `seqhi` (the
/// most the receiver allows). A blind attacker must guess a number in a window of at most
/// max_win << wscale, not any of 2^32: an error quoting anything else would let them reset or
/// slow (PMTU) a connection they only know the addresses and ports of.
pub fn icmp_quote_fits(
    state_src: &TcpPeer,
    state_dst: &TcpPeer,
    quoted_dir: Direction,
    seq: u32,
) -> bool {
    let (src, dst) = match quoted_dir {
        Direction::Original => (state_src, state_dst),
        Direction::Reply => (state_dst, state_src),
    };
    let dws = if src.wscale != 0 && dst.wscale != 0 {
        dst.wscale & WSCALE_MASK
    } else {
        0
    };
    let lowest = src.seqlo.wrapping_sub(u32::from(dst.max_win) << dws);
    seq_geq(src.seqhi, seq) && seq_geq(seq, lowest)
}

/// The peers of a new TCP state from its first segment, pf's `pf_create_state`: the sender is
/// SYN_SENT, the receiver CLOSED with a one-byte window until it answers. Any segment works (pf
/// without `flags S/SA`); the filter normally calls this for [`TcpSegment::is_initial_syn`] only.
pub fn first_packet(seg: &TcpSegment) -> (TcpPeer, TcpPeer) {
    let mut src = TcpPeer {
        seqlo: seg.seq,
        seqhi: seg
            .seq
            .wrapping_add(u32::from(seg.payload_len))
            .wrapping_add(1),
        max_win: 0,
        wscale: 0,
        state: PeerState::SYN_SENT,
    };
    if seg.has(flags::SYN) {
        src.seqhi = src.seqhi.wrapping_add(1);
        src.wscale = seg.wscale_option();
    }
    let mut win = u32::from(seg.win).max(1);
    if src.wscale & WSCALE_MASK != 0 {
        // Remove the scale factor from the initial window (rounding up).
        let s = src.wscale & WSCALE_MASK;
        win = (win + (1 << s) - 1) >> s;
    }
    src.max_win = win as u16;
    if seg.has(flags::FIN) {
        src.seqhi = src.seqhi.wrapping_add(1);
    }
    let dst = TcpPeer {
        seqlo: 0,
        seqhi: 1,
        max_win: 1,
        wscale: 0,
        state: PeerState::CLOSED,
    };
    (src, dst)
}

/// The timeout class for a pair of TCP peer levels (the tail of `pf_tcp_track_full`).
pub fn tcp_timeout(src: PeerState, dst: PeerState) -> TimeoutClass {
    if src >= PeerState::FIN_WAIT_2 && dst >= PeerState::FIN_WAIT_2 {
        TimeoutClass::TcpClosed
    } else if src >= PeerState::CLOSING && dst >= PeerState::CLOSING {
        TimeoutClass::TcpFinWait
    } else if src < PeerState::ESTABLISHED || dst < PeerState::ESTABLISHED {
        TimeoutClass::TcpOpening
    } else if src >= PeerState::CLOSING || dst >= PeerState::CLOSING {
        TimeoutClass::TcpClosing
    } else {
        TimeoutClass::TcpEstablished
    }
}

/// How far ahead of a state copied from the peer a segment may be and still move the windows
/// forward ([`catch_up`]): the sync lag at line rate (10 Gbit/s for 25 ms) with room to spare.
pub const CATCH_UP_MAX: u32 = 32 << 20;

/// A state copied from the peer lags the connection by the sync delay: on a takeover, the first
/// segments this box sees may be ahead of its windows (data past `seqhi`, an ack past what it saw
/// the other side send, beyond pf's `MAXACKWINDOW`). This moves the windows forward just enough
/// for `seg`, as if the updates still in flight had arrived: never backwards, never for a RST or
/// a SYN, never for a segment without ACK (every segment after the handshake carries one, and
/// without it the strict check would not look at an acknowledgement number at all), and never
/// further than [`CATCH_UP_MAX`]. The sender may then go on for one window of the receiver's past
/// the segment: the rest of its flight tracks strictly. Returns whether anything moved; the
/// caller then tracks the segment again, strictly.
pub fn catch_up(
    state_src: &mut TcpPeer,
    state_dst: &mut TcpPeer,
    seg: &TcpSegment,
    dir: Direction,
) -> bool {
    let (src, dst) = match dir {
        Direction::Original => (state_src, state_dst),
        Direction::Reply => (state_dst, state_src),
    };
    if seg.has(flags::RST)
        || seg.has(flags::SYN)
        || !seg.has(flags::ACK)
        || src.seqlo == 0
        || dst.seqlo == 0
    {
        return false;
    }
    let mut end = seg.seq.wrapping_add(u32::from(seg.payload_len));
    if seg.has(flags::FIN) {
        end = end.wrapping_add(1);
    }
    // Refuse the whole segment when any part of it is too far ahead: nothing moves then.
    let gt = |x: u32, of: u32| x.wrapping_sub(of) as i32 > 0;
    let too_far = |x: u32, of: u32| gt(x, of) && x.wrapping_sub(of) > CATCH_UP_MAX;
    if too_far(end, src.seqhi) || too_far(seg.ack, dst.seqlo) {
        return false;
    }
    let mut moved = false;
    let mut forward = |field: &mut u32, to: u32| {
        if gt(to, *field) {
            *field = to;
            moved = true;
        }
    };
    let (sws, dws) = if src.wscale != 0 && dst.wscale != 0 {
        (src.wscale & WSCALE_MASK, dst.wscale & WSCALE_MASK)
    } else {
        (0, 0)
    };
    forward(&mut src.seqlo, end);
    forward(
        &mut src.seqhi,
        end.wrapping_add((u32::from(dst.max_win) << dws).max(1)),
    );
    forward(&mut dst.seqlo, seg.ack);
    forward(
        &mut dst.seqhi,
        seg.ack.wrapping_add((u32::from(seg.win) << sws).max(1)),
    );
    moved
}

/// Track one segment against a state's peers (`state_src` is the side that sent the state's
/// first packet). `dir` is the segment's direction relative to that first packet.
///
/// `Ok(Some(class))`: the segment is inside the window; the state's timeout becomes `class` and
/// its expiry is refreshed. `Ok(None)`: accepted by pf's loose rule (SYNs shotgunned before the
/// peer answers, a connection picked up mid-stream, stray packets after the close); pf does not
/// refresh the expiry for those, so that a flood of them cannot keep a state alive.
#[inline]
pub fn track(
    state_src: &mut TcpPeer,
    state_dst: &mut TcpPeer,
    seg: &TcpSegment,
    dir: Direction,
) -> Result<Option<TimeoutClass>, TrackError> {
    let (src, dst) = match dir {
        Direction::Original => (state_src, state_dst),
        Direction::Reply => (state_dst, state_src),
    };
    if track_established(src, dst, seg) {
        return Ok(Some(TimeoutClass::TcpEstablished));
    }
    track_sender(src, dst, seg, dir)
}

/// The segment nearly every packet of a connection is: a plain ACK (with or without data, PSH)
/// between two ESTABLISHED peers, inside the window. For it [`track_sender`] reduces to this
/// (no first packet, no level moves, the ack taken as is, the class `TcpEstablished`); the
/// flag tests and the level ladder it skips are about 8 % of an established packet's
/// instructions. Returns `false`, having changed nothing, for anything else, which the caller
/// then tracks in full. The proptests in `tests::shortcut` hold the two to the same answers,
/// at random and at every bound of the window test.
#[inline]
fn track_established(src: &mut TcpPeer, dst: &mut TcpPeer, seg: &TcpSegment) -> bool {
    if seg.flags & (flags::SYN | flags::FIN | flags::RST | flags::ACK) != flags::ACK
        || src.state != PeerState::ESTABLISHED
        || dst.state != PeerState::ESTABLISHED
        || src.seqlo == 0
    {
        return false;
    }
    let (sws, dws) = if src.wscale != 0 && dst.wscale != 0 {
        (src.wscale & WSCALE_MASK, dst.wscale & WSCALE_MASK)
    } else {
        (0, 0)
    };
    let (seq, end) = if seg.payload_len == 0 {
        (src.seqlo, src.seqlo)
    } else {
        (seg.seq, seg.seq.wrapping_add(u32::from(seg.payload_len)))
    };
    if !fits_window(src, dst, seq, end, seg.ack, sws, dws) {
        return false;
    }
    advance(src, dst, u32::from(seg.win), end, seg.ack, sws);
    true
}

/// pf's window test for a segment of `src` from `seq` to `end` acking `ack` (`sws`/`dws`: the
/// agreed window scales of `src` and `dst`), RSTs' exact-sequence rule aside.
#[inline]
fn fits_window(
    src: &TcpPeer,
    dst: &TcpPeer,
    seq: u32,
    end: u32,
    ack: u32,
    sws: u8,
    dws: u8,
) -> bool {
    let ackskew = i64::from(dst.seqlo.wrapping_sub(ack) as i32);
    let dst_win = u32::from(dst.max_win) << dws;
    // Last octet inside the other side's window space.
    seq_geq(src.seqhi, end)
        // Retransmission: not more than one window back.
        && seq_geq(seq, src.seqlo.wrapping_sub(dst_win))
        // Acking not more than one reassembled fragment backwards.
        && ackskew >= -MAX_ACK_WINDOW
        // Acking not more than one window forward.
        && ackskew <= (MAX_ACK_WINDOW << sws)
}

/// A segment accepted (in the window, or by pf's loose rule): the sender's largest window
/// (`win`, unscaled) and highest sequence sent move up, and the window of what the other side
/// may send slides with the ack.
#[inline]
fn advance(src: &mut TcpPeer, dst: &mut TcpPeer, win: u32, end: u32, ack: u32, sws: u8) {
    if u32::from(src.max_win) < win {
        src.max_win = win as u16;
    }
    if seq_gt(end, src.seqlo) {
        src.seqlo = end;
    }
    let scaled_win = win << sws;
    if seq_geq(ack.wrapping_add(scaled_win), dst.seqhi) {
        dst.seqhi = ack.wrapping_add(scaled_win.max(1));
    }
}

/// [`track`] in full: `src` sent `seg`, `dst` is the other side; `dir` only picks the order of
/// the levels for the timeout class.
fn track_sender(
    src: &mut TcpPeer,
    dst: &mut TcpPeer,
    seg: &TcpSegment,
    dir: Direction,
) -> Result<Option<TimeoutClass>, TrackError> {
    // pf_test_state_tcp: a fresh SYN on a fully closed state is a new connection reusing the
    // ports; the old state goes.
    if seg.is_initial_syn()
        && src.state >= PeerState::FIN_WAIT_2
        && dst.state >= PeerState::FIN_WAIT_2
    {
        return Err(TrackError::PortReuse);
    }

    // Every segment after a side's first SYN carries an ACK, but a RST may not. pf checks no
    // ack on a segment without one, so a blind segment with only its sequence number in the
    // window moved the sender's `seqlo` to where the attacker chose, and the exact-RST rule
    // below then compared with that: a reset in two guesses per window instead of one in 2^32.
    // Linux's conntrack calls such segments invalid.
    if seg.flags & (flags::ACK | flags::RST) == 0 {
        if !seg.has(flags::SYN) || seg.has(flags::FIN) {
            return Err(TrackError::NoAck);
        }
        if src.state >= PeerState::ESTABLISHED {
            // A SYN from a side whose SYN was acked (a retransmission, or a restarted host
            // reusing the ports): passed, so that the receiver answers it (a challenge ACK,
            // RFC 5961), but it moves nothing and refreshes nothing.
            return Ok(None);
        }
    }

    let mut win = u32::from(seg.win);
    let (mut sws, mut dws) = if src.wscale != 0 && dst.wscale != 0 && !seg.has(flags::SYN) {
        (src.wscale & WSCALE_MASK, dst.wscale & WSCALE_MASK)
    } else {
        (0, 0)
    };

    let orig_seq = seg.seq;
    let mut seq = seg.seq;
    let mut ack = seg.ack;
    let mut end;

    if src.seqlo == 0 {
        // First packet from this side: initialise its peer.
        end = seq.wrapping_add(u32::from(seg.payload_len));
        if seg.has(flags::SYN) {
            end = end.wrapping_add(1);
            if dst.wscale & WSCALE_FLAG != 0 {
                src.wscale = seg.wscale_option();
                if src.wscale & WSCALE_FLAG != 0 {
                    // Both offered scaling: remove the factor from the initial window.
                    sws = src.wscale & WSCALE_MASK;
                    win = (win + (1 << sws) - 1) >> sws;
                    dws = dst.wscale & WSCALE_MASK;
                } else {
                    // No scaling after all: the other side's window was stored scaled down.
                    let w = u32::from(dst.max_win) << (dst.wscale & WSCALE_MASK);
                    dst.max_win = w.min(MAX_WIN) as u16;
                    // In case of a retransmitted SYN|ACK.
                    dst.wscale = 0;
                }
            }
        }
        if seg.has(flags::FIN) {
            end = end.wrapping_add(1);
        }
        src.seqlo = seq;
        if src.state < PeerState::SYN_SENT {
            src.state = PeerState::SYN_SENT;
        }
        // The window may need to slide (seqhi was set from the other side's first ack, or the
        // state was picked up after establishment).
        let reach = end.wrapping_add((u32::from(dst.max_win) << dws).max(1));
        if src.seqhi == 1 || seq_geq(reach, src.seqhi) {
            src.seqhi = reach;
        }
        if win > u32::from(src.max_win) {
            src.max_win = win as u16;
        }
    } else {
        end = seq.wrapping_add(u32::from(seg.payload_len));
        if seg.has(flags::SYN) {
            end = end.wrapping_add(1);
        }
        if seg.has(flags::FIN) {
            end = end.wrapping_add(1);
        }
    }

    if !seg.has(flags::ACK) {
        // Let it pass the ack skew check.
        ack = dst.seqlo;
    } else if (ack == 0 && seg.flags & (flags::ACK | flags::RST) == (flags::ACK | flags::RST))
        || dst.state < PeerState::SYN_SENT
    {
        // Broken stacks do not set the ack on RST|ACK; nothing to ack before the peer spoke.
        ack = dst.seqlo;
    }

    if seq == end {
        // Ease sequencing restrictions on segments without data.
        seq = src.seqlo;
        end = seq;
    }

    let in_window = fits_window(src, dst, seq, end, ack, sws, dws)
        && (!seg.has(flags::RST)
            || orig_seq == src.seqlo
            || orig_seq == src.seqlo.wrapping_add(1)
            || orig_seq.wrapping_add(1) == src.seqlo);
    // A RST must match the sequence exactly (or by one): pf with scrub's reassembly, which
    // pfSense enables by default.

    if in_window {
        advance(src, dst, win, end, ack, sws);

        if seg.has(flags::SYN) && src.state < PeerState::SYN_SENT {
            src.state = PeerState::SYN_SENT;
        }
        if seg.has(flags::FIN) && src.state < PeerState::CLOSING {
            src.state = PeerState::CLOSING;
        }
        if seg.has(flags::ACK) {
            if dst.state == PeerState::SYN_SENT {
                dst.state = PeerState::ESTABLISHED;
            } else if dst.state == PeerState::CLOSING {
                dst.state = PeerState::FIN_WAIT_2;
            }
        }
        if seg.has(flags::RST) {
            src.state = PeerState::TIME_WAIT;
            dst.state = PeerState::TIME_WAIT;
        }
        let class = match dir {
            Direction::Original => tcp_timeout(src.state, dst.state),
            Direction::Reply => tcp_timeout(dst.state, src.state),
        };
        Ok(Some(class))
    } else if (dst.state < PeerState::SYN_SENT
        || dst.state >= PeerState::FIN_WAIT_2
        || src.state >= PeerState::FIN_WAIT_2)
        // Within a window forward of the originating packet.
        && seq_geq(src.seqhi.wrapping_add(MAX_ACK_WINDOW as u32), end)
        // Within a window backward of the originating packet.
        && seq_geq(seq, src.seqlo.wrapping_sub(MAX_ACK_WINDOW as u32))
    {
        // pf's loose rule: shotgunned SYNs before the peer replies, a connection picked up after
        // establishment, funky packets right after the close. Sequencing is synchronised, but
        // the other side is not moved to ESTABLISHED (this may be a shotgunned SYN) and the
        // expiry is not refreshed (so a flood of these cannot keep the state alive).
        advance(src, dst, win, end, ack, sws);
        if seg.has(flags::FIN) && src.state < PeerState::CLOSING {
            src.state = PeerState::CLOSING;
        }
        if seg.has(flags::RST) {
            src.state = PeerState::TIME_WAIT;
            dst.state = PeerState::TIME_WAIT;
        }
        Ok(None)
    } else {
        if src.state == PeerState::SYN_SENT && dst.state == PeerState::SYN_SENT {
            // Handshake mismatch: forget this side so its next SYN starts over (pf also sends
            // a RST here).
            src.seqlo = 0;
            src.seqhi = 1;
            src.max_win = 1;
        }
        Err(TrackError::BadWindow)
    }
}

/// Update the state levels of a UDP, ICMP or other-protocol state for a packet in `dir`
/// (`pf_test_state_udp`/`_other`/`_icmp`) and return the new timeout class.
pub fn track_stateless(
    proto: u8,
    state_src: &mut TcpPeer,
    state_dst: &mut TcpPeer,
    dir: Direction,
) -> TimeoutClass {
    let (src, dst) = match dir {
        Direction::Original => (state_src, state_dst),
        Direction::Reply => (state_dst, state_src),
    };
    if src.state < PeerState::SINGLE {
        src.state = PeerState::SINGLE;
    }
    if dst.state == PeerState::SINGLE {
        dst.state = PeerState::MULTIPLE;
    }
    let multiple = src.state == PeerState::MULTIPLE && dst.state == PeerState::MULTIPLE;
    match proto {
        PROTO_UDP if multiple => TimeoutClass::UdpMultiple,
        PROTO_UDP => TimeoutClass::UdpSingle,
        // pf moves an ICMP query state to icmp.error on every later packet.
        PROTO_ICMP => TimeoutClass::IcmpError,
        PROTO_TCP => unreachable_tcp(),
        _ if multiple => TimeoutClass::OtherMultiple,
        _ => TimeoutClass::OtherSingle,
    }
}

#[cold]
fn unreachable_tcp() -> TimeoutClass {
    debug_assert!(false, "track_stateless called for TCP");
    TimeoutClass::TcpOpening
}

/// The peers and timeout class of a new non-TCP state (`pf_create_state`).
pub fn first_stateless(proto: u8) -> (TcpPeer, TcpPeer, TimeoutClass) {
    let src = TcpPeer {
        state: PeerState::SINGLE,
        ..TcpPeer::default()
    };
    let dst = TcpPeer::default();
    let class = match proto {
        PROTO_UDP => TimeoutClass::UdpFirst,
        PROTO_ICMP => TimeoutClass::IcmpFirst,
        _ => TimeoutClass::OtherFirst,
    };
    (src, dst, class)
}

/// Merge a peer's copy of one side into ours, pfsync's rule (`pfsync_upd_tcp`): a side never
/// moves backwards, neither its state level nor its sequence window. Returns false (and changes
/// nothing) when the remote side is stale; the caller then counts it and sends its own, newer
/// copy back. `tcp` selects the TCP rule; other protocols only compare levels.
///
/// `is_src` picks pf's slightly different tests for the two sides: the src side is stale when
/// its level is lower, or equal with a lower `seqlo`; the dst side when its level is lower, or
/// its `seqlo` is lower once we have seen it send (level >= SYN_SENT). Each side is applied on
/// its own: pf's callers copy dst even after rejecting it when src was newer, which rolled
/// windows back (opnsense/src#327); this does not.
pub fn merge_side(local: &mut TcpPeer, remote: &TcpPeer, tcp: bool, is_src: bool) -> bool {
    let stale = if !tcp {
        local.state > remote.state
    } else if is_src {
        local.state > remote.state
            || (local.state == remote.state && seq_gt(local.seqlo, remote.seqlo))
    } else {
        local.state > remote.state
            || (local.state >= PeerState::SYN_SENT && seq_gt(local.seqlo, remote.seqlo))
    };
    if stale {
        return false;
    }
    if tcp {
        *local = *remote;
    } else {
        local.state = remote.state;
    }
    true
}

#[cfg(test)]
mod tests;
