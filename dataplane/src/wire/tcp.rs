//! TCP headers (RFC 9293), as a stateful firewall needs them: ports, sequence space, flags,
//! window, the options that scale the window, and checksums over the IPv4 pseudo-header.
//!
//! ```text
//!  0               2               4                               8
//! +---------------+---------------+-------------------------------+
//! |   src port    |   dst port    |        sequence number        |
//! +---------------+---------------+-------+-------+---------------+
//! |        ack number             |off|rsv| flags |    window     |
//! +---------------+---------------+-------+-------+---------------+
//! |   checksum    |  urgent ptr   |   options (off > 5) ...  | payload ...
//! ```
//!
//! The view covers one whole segment: pass exactly the IP payload (`Ipv4Packet::payload`, which
//! is bounded by the IP total length), because the checksum and the payload run to the end of
//! the buffer.

use core::fmt;
use core::ops;
use std::net::Ipv4Addr;

use super::checksum;
use super::ipv4::IpProtocol;
use super::{Result, Side, WireError};

/// A TCP sequence number, compared in sequence space: `a < b` iff `(a - b) as i32 < 0`
/// (RFC 1982 style, BSD's `SEQ_LT`). No `Ord`: the relation is not transitive over the whole
/// circle, so a sort or a `BTreeMap` keyed on it would be wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    #[inline]
    pub const fn wrapping_add(self, n: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(n))
    }

    #[inline]
    pub const fn wrapping_sub(self, n: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(n))
    }

    /// The signed distance `self - other` in sequence space.
    #[inline]
    pub const fn diff(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// `SEQ_LT(self, other)`.
    #[inline]
    pub const fn lt(self, other: SeqNumber) -> bool {
        self.diff(other) < 0
    }

    /// `SEQ_LEQ(self, other)`.
    #[inline]
    pub const fn le(self, other: SeqNumber) -> bool {
        self.diff(other) <= 0
    }

    /// `SEQ_GT(self, other)`.
    #[inline]
    pub const fn gt(self, other: SeqNumber) -> bool {
        self.diff(other) > 0
    }

    /// `SEQ_GEQ(self, other)`.
    #[inline]
    pub const fn ge(self, other: SeqNumber) -> bool {
        self.diff(other) >= 0
    }

    /// The later of the two in sequence space (`SEQ_MAX`).
    #[inline]
    pub const fn max(self, other: SeqNumber) -> SeqNumber {
        if self.gt(other) {
            self
        } else {
            other
        }
    }

    /// The earlier of the two in sequence space (`SEQ_MIN`).
    #[inline]
    pub const fn min(self, other: SeqNumber) -> SeqNumber {
        if self.lt(other) {
            self
        } else {
            other
        }
    }
}

impl ops::Add<u32> for SeqNumber {
    type Output = SeqNumber;
    #[inline]
    fn add(self, n: u32) -> SeqNumber {
        self.wrapping_add(n)
    }
}

impl ops::AddAssign<u32> for SeqNumber {
    #[inline]
    fn add_assign(&mut self, n: u32) {
        *self = self.wrapping_add(n);
    }
}

impl ops::Sub<u32> for SeqNumber {
    type Output = SeqNumber;
    #[inline]
    fn sub(self, n: u32) -> SeqNumber {
        self.wrapping_sub(n)
    }
}

impl ops::Sub<SeqNumber> for SeqNumber {
    type Output = i32;
    /// The signed distance, as [`SeqNumber::diff`].
    #[inline]
    fn sub(self, other: SeqNumber) -> i32 {
        self.diff(other)
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The flags byte (byte 13). The NS bit of byte 12 (RFC 3540, historic) is not included.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);

    #[inline]
    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }

    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// All flags of `other` are set.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Any flag of `other` is set.
    #[inline]
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }
}

impl ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl ops::BitOrAssign for TcpFlags {
    #[inline]
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl ops::BitAnd for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl ops::Not for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn not(self) -> TcpFlags {
        TcpFlags(!self.0)
    }
}

impl fmt::Debug for TcpFlags {
    /// tcpdump-like: `SYN|ACK`, `-` for none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        if self.0 == 0 {
            return f.write_str("-");
        }
        let mut first = true;
        for (i, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

mod option {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const TIMESTAMP: u8 = 8;
}

/// The options a stateful firewall looks at. Everything else (SACK blocks, TFO, MD5, ...) is
/// skipped by its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    /// The shift count as sent; RFC 7323 caps its use at 14, which is the consumer's to apply.
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
}

/// The start of a TCP header quoted in an ICMP error. RFC 792 guarantees only the first 8 bytes
/// of the offending datagram's payload: the ports and the sequence number, which is all a
/// firewall may read there (pf's `pf_test_state_icmp` pulls exactly 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedTcp {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: SeqNumber,
}

impl QuotedTcp {
    /// Bytes a quote must hold.
    pub const LEN: usize = field::SEQ_NUM.end;

    /// Reads the quoted ports and sequence number; `Err` if fewer than [`LEN`](Self::LEN) bytes
    /// were quoted. The rest of the header (flags, data offset) is not checked: it may be cut.
    #[inline]
    pub fn parse(quote: &[u8]) -> Result<QuotedTcp> {
        let d = quote.get(..Self::LEN).ok_or(WireError)?;
        let be16 = |f: field::Field| u16::from_be_bytes([d[f.start], d[f.start + 1]]);
        let s = field::SEQ_NUM.start;
        Ok(QuotedTcp {
            src_port: be16(field::SRC_PORT),
            dst_port: be16(field::DST_PORT),
            seq_number: SeqNumber(u32::from_be_bytes([d[s], d[s + 1], d[s + 2], d[s + 3]])),
        })
    }
}

/// A view of a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Buffer >= 20 bytes and 20 <= data offset * 4 <= buffer length.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN || header_len > len {
            return Err(WireError);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[0], d[1]])
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[2], d[3]])
    }

    #[inline]
    pub fn seq_number(&self) -> SeqNumber {
        let d = self.buffer.as_ref();
        SeqNumber(u32::from_be_bytes([d[4], d[5], d[6], d[7]]))
    }

    #[inline]
    pub fn ack_number(&self) -> SeqNumber {
        let d = self.buffer.as_ref();
        SeqNumber(u32::from_be_bytes([d[8], d[9], d[10], d[11]]))
    }

    /// Header length in bytes (data offset * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// The raw window field, before any window scaling.
    #[inline]
    pub fn window_len(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[14], d[15]])
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[16], d[17]])
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[18], d[19]])
    }

    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// The sequence space the segment occupies: payload length, plus one each for SYN and FIN.
    #[inline]
    pub fn segment_len(&self) -> u32 {
        let flags = self.flags();
        // A segment lives in one IP datagram, so its length fits a u32 with room to spare.
        self.payload().len() as u32
            + u32::from(flags.contains(TcpFlags::SYN))
            + u32::from(flags.contains(TcpFlags::FIN))
    }

    /// Parses MSS, window scale, SACK-permitted and timestamps.
    ///
    /// Never fails and never panics. A truncated option (its length byte missing, below 2, or
    /// running past the header) ends parsing and what was parsed before it is returned: the
    /// segment is still forwarded, the state just learns less. A known option with the wrong
    /// length is ignored and parsing continues past it, as FreeBSD's `tcp_dooptions` does.
    pub fn parse_options(&self) -> TcpOptions {
        let mut out = TcpOptions::default();
        let opts = self.options();
        let mut i = 0;
        while i < opts.len() {
            let kind = opts[i];
            match kind {
                option::END => break,
                option::NOP => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
            let Some(&len) = opts.get(i + 1) else { break };
            let len = usize::from(len);
            if len < 2 || i + len > opts.len() {
                break;
            }
            let body = &opts[i + 2..i + len];
            match (kind, body.len()) {
                (option::MSS, 2) => out.mss = Some(u16::from_be_bytes([body[0], body[1]])),
                (option::WINDOW_SCALE, 1) => out.window_scale = Some(body[0]),
                (option::SACK_PERMITTED, 0) => out.sack_permitted = true,
                (option::TIMESTAMP, 8) => {
                    let val = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    let ecr = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                    out.timestamp = Some((val, ecr));
                }
                _ => {}
            }
            i += len;
        }
        out
    }

    /// The checksum over the pseudo-header and the whole buffer verifies.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let d = self.buffer.as_ref();
        // The IP payload a segment lives in is at most 65515 bytes.
        let ph = checksum::pseudo_header_v4(src, dst, u8::from(IpProtocol::Tcp), d.len() as u16);
        checksum::fold(ph + checksum::sum(d)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_seq_number(&mut self, value: SeqNumber) {
        self.buffer.as_mut()[field::SEQ_NUM].copy_from_slice(&value.0.to_be_bytes());
    }

    #[inline]
    pub fn set_ack_number(&mut self, value: SeqNumber) {
        self.buffer.as_mut()[field::ACK_NUM].copy_from_slice(&value.0.to_be_bytes());
    }

    /// Sets the data offset from a length in bytes (a multiple of 4, 20..=60); keeps the
    /// reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, value: usize) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | ((((value / 4) as u8) & 0x0f) << 4);
    }

    #[inline]
    pub fn set_flags(&mut self, value: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = value.0;
    }

    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::WIN_SIZE].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        self.buffer.as_mut()[field::URGENT].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..header_len]
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[header_len..]
    }

    /// NAT's rewrite: the `side` port becomes `port`, and the checksum follows it and the
    /// pseudo-header's address change from `old_addr` to `new_addr` incrementally (RFC 1624),
    /// nothing summed again. Only what the buffer holds is patched, so that a segment quoted in
    /// an ICMP error, which may stop 8 bytes in (ports, no checksum), is rewritten as far as it
    /// goes; fewer than 4 bytes are left alone.
    #[inline]
    pub fn translate(&mut self, side: Side, port: u16, old_addr: Ipv4Addr, new_addr: Ipv4Addr) {
        let len = self.buffer.as_ref().len();
        if len < field::DST_PORT.end {
            return;
        }
        let old_port = match side {
            Side::Src => {
                let p = self.src_port();
                self.set_src_port(port);
                p
            }
            Side::Dst => {
                let p = self.dst_port();
                self.set_dst_port(port);
                p
            }
        };
        if len >= field::CHECKSUM.end {
            let c = self.checksum();
            self.set_checksum(checksum::update_addr_port(
                c,
                (old_addr, new_addr),
                (old_port, port),
            ));
        }
    }

    /// Recomputes the checksum over the pseudo-header and the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let d = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v4(src, dst, u8::from(IpProtocol::Tcp), d.len() as u16);
        let c = !checksum::fold(ph + checksum::sum(d));
        self.set_checksum(c);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for TcpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A TCP header without options, for the segments tandem builds itself: RSTs for `block return`
/// and keepalive ACKs. `parse` reads any segment's fixed header (options are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: SeqNumber,
    pub ack_number: SeqNumber,
    pub flags: TcpFlags,
    pub window_len: u16,
}

impl TcpRepr {
    /// Parses a segment whose checksum verifies.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(
        packet: &TcpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<TcpRepr> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(WireError);
        }
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
        })
    }

    /// The reset that answers `packet` (RFC 9293 §3.10.7.1, "if the state is CLOSED"): if it
    /// carried an ACK, `<SEQ=SEG.ACK><CTL=RST>`; otherwise `<SEQ=0><ACK=SEG.SEQ+SEG.LEN>
    /// <CTL=RST,ACK>`. Ports are swapped. Never answer a RST with a RST: check first.
    #[inline]
    pub fn reset_for<T: AsRef<[u8]>>(packet: &TcpPacket<T>) -> TcpRepr {
        let (seq_number, ack_number, flags) = if packet.flags().contains(TcpFlags::ACK) {
            (packet.ack_number(), SeqNumber(0), TcpFlags::RST)
        } else {
            let ack = packet.seq_number() + packet.segment_len();
            (SeqNumber(0), ack, TcpFlags::RST | TcpFlags::ACK)
        };
        TcpRepr {
            src_port: packet.dst_port(),
            dst_port: packet.src_port(),
            seq_number,
            ack_number,
            flags,
            window_len: 0,
        }
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 20-byte header and fills the checksum over the whole buffer, so pass exactly
    /// the segment (header, plus any payload already in place after it).
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.buffer.as_mut()[field::DATA_OFF] = ((HEADER_LEN / 4) as u8) << 4;
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(0);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests;
