//! IPv4 headers (RFC 791).
//!
//! ```text
//!  0               1               2               3
//! +-------+-------+---------------+-------------------------------+
//! |version|  IHL  |   DSCP/ECN    |          total length         |
//! +-------+-------+---------------+-----+-------------------------+
//! |        identification         |flags|     fragment offset     |
//! +---------------+---------------+-----+-------------------------+
//! |      TTL      |   protocol    |        header checksum        |
//! +---------------+---------------+-------------------------------+
//! |                        source address                         |
//! +---------------------------------------------------------------+
//! |                      destination address                      |
//! +---------------------------------------------------------------+
//! |                  options (IHL > 5) ...                        |
//! ```
//!
//! The payload is bounded by the total length, not by the buffer: frames shorter than 60 bytes
//! arrive with Ethernet padding after the datagram, and that padding must not be read as
//! transport data (it would break TCP/UDP checksums and lengths).

use std::net::Ipv4Addr;

use super::checksum;
use super::icmp::IcmpPacket;
use super::tcp::TcpPacket;
use super::udp::UdpPacket;
use super::{Result, Side, WireError};

enum_with_unknown! {
    /// The protocol (next header) field.
    pub enum IpProtocol(u8) {
        Icmp = 1,
        Tcp = 6,
        Udp = 17,
        /// CARP, on VRRP's protocol number as pfSense/OpenBSD use it.
        Carp = 112,
        /// pfsync, OpenBSD's assigned-by-habit number.
        Pfsync = 240,
    }
}

/// IP protocol numbers as bytes, for flow keys, rule matching and sockets; named once, by
/// [`IpProtocol`].
pub mod proto {
    use super::IpProtocol;
    pub const ICMP: u8 = IpProtocol::Icmp.value();
    pub const TCP: u8 = IpProtocol::Tcp.value();
    pub const UDP: u8 = IpProtocol::Udp.value();
    pub const CARP: u8 = IpProtocol::Carp.value();
    pub const PFSYNC: u8 = IpProtocol::Pfsync.value();
}

/// CARP's (and VRRP's) multicast group, 224.0.0.18; adverts go to it with TTL 255.
pub const CARP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Wraps the IPv4 header quoted inside an ICMP error, where the datagram is truncated by
    /// design: total length may exceed the buffer. Checks everything [`check_len`](Self::check_len)
    /// does except `total_len <= buffer len`; [`payload`](Self::payload) then returns what was
    /// quoted. Do not use it for datagrams on the wire.
    #[inline]
    pub fn new_checked_quoted(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_header()?;
        Ok(packet)
    }

    /// Buffer >= 20 bytes, version 4, IHL >= 5, header length <= total length <= buffer length.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        self.check_header()?;
        if usize::from(self.total_len()) > self.buffer.as_ref().len() {
            return Err(WireError);
        }
        Ok(())
    }

    #[inline]
    fn check_header(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || self.version() != 4 {
            return Err(WireError);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN || header_len > len || header_len > usize::from(self.total_len())
        {
            return Err(WireError);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The whole second byte: DSCP (6 bits) and ECN (2 bits).
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    #[inline]
    pub fn dscp(&self) -> u8 {
        self.dscp_ecn() >> 2
    }

    #[inline]
    pub fn ecn(&self) -> u8 {
        self.dscp_ecn() & 0x03
    }

    /// Total length of the datagram, header included.
    #[inline]
    pub fn total_len(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[2], d[3]])
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[4], d[5]])
    }

    #[inline]
    fn flags_offset(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[6], d[7]])
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// Part of a fragmented datagram: MF set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// The first fragment of a fragmented datagram (MF set, offset 0): the only fragment that
    /// carries the transport header. An unfragmented datagram is not a "first fragment"; to ask
    /// "does the payload start with the transport header?", test `frag_offset() == 0`.
    #[inline]
    pub fn is_first_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) == FLAG_MF
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Alias of [`hop_limit`](Self::hop_limit).
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.hop_limit()
    }

    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[10], d[11]])
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        let d = self.buffer.as_ref();
        Ipv4Addr::new(d[12], d[13], d[14], d[15])
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let d = self.buffer.as_ref();
        Ipv4Addr::new(d[16], d[17], d[18], d[19])
    }

    /// The options, between the fixed header and the payload (empty for IHL 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The payload up to the total length; Ethernet padding after it is excluded.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        // min() only matters for quoted headers; check_len already guarantees it otherwise.
        let end = usize::from(self.total_len()).min(d.len());
        &d[self.header_len()..end]
    }

    /// The header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.header())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (value << 4);
    }

    /// Sets IHL from a length in bytes (a multiple of 4, 20..=60).
    #[inline]
    pub fn set_header_len(&mut self, value: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | (((value / 4) as u8) & 0x0f);
    }

    #[inline]
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    fn set_flags_offset(&mut self, value: u16) {
        self.buffer.as_mut()[field::FLG_OFF].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        let v = self.flags_offset() & !FLAG_DF;
        self.set_flags_offset(if value { v | FLAG_DF } else { v });
    }

    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        let v = self.flags_offset() & !FLAG_MF;
        self.set_flags_offset(if value { v | FLAG_MF } else { v });
    }

    /// Sets the fragment offset from bytes (a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, value: u16) {
        let v = self.flags_offset() & !OFFSET_MASK;
        self.set_flags_offset(v | ((value >> 3) & OFFSET_MASK));
    }

    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Alias of [`set_hop_limit`](Self::set_hop_limit). Leaves the checksum stale.
    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.set_hop_limit(value);
    }

    #[inline]
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = u8::from(value);
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Leaves the checksum stale: NAT updates it with [`checksum::update_addr`], together with
    /// the transport checksum whose pseudo-header covers the address.
    #[inline]
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }

    /// Leaves the checksum stale; see [`set_src_addr`](Self::set_src_addr).
    #[inline]
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    /// Recomputes the header checksum from scratch.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::data(self.header());
        self.set_checksum(c);
    }

    /// Decrements the TTL by one and patches the checksum incrementally (RFC 1624), as a router
    /// does for every forwarded datagram. Returns the new TTL.
    ///
    /// A TTL of 0 is left alone (returns 0): the caller must have sent Time Exceeded for
    /// TTL <= 1 instead of forwarding (RFC 1812 §5.3.1).
    #[inline]
    pub fn decrement_ttl_incremental(&mut self) -> u8 {
        let ttl = self.hop_limit();
        if ttl == 0 {
            return 0;
        }
        let proto = self.buffer.as_ref()[field::PROTOCOL];
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([ttl - 1, proto]);
        let c = checksum::update_u16(self.checksum(), old, new);
        self.set_hop_limit(ttl - 1);
        self.set_checksum(c);
        ttl - 1
    }

    /// NAT's rewrite of one end of the datagram: the `side` address becomes `addr` and its port
    /// (an echo query's id) `port`. The header checksum and the transport's, whose pseudo-header
    /// covers the address, are patched incrementally (RFC 1624): nothing is summed again and
    /// nothing checked again (the caller checked the datagram). The transport header is the
    /// buffer from the IP header's end: pass the datagram up to its total length. Also for a
    /// datagram quoted in an ICMP error ([`new_checked_quoted`](Self::new_checked_quoted)),
    /// which may stop 8 bytes into its payload: the transport's fields are patched as far as
    /// they are there. Other protocols have their address rewritten only.
    #[inline]
    pub fn translate(&mut self, side: Side, addr: Ipv4Addr, port: u16) {
        let header_len = self.header_len();
        if self.buffer.as_ref().len() < header_len {
            return;
        }
        let old = match side {
            Side::Src => self.src_addr(),
            Side::Dst => self.dst_addr(),
        };
        if old != addr {
            match side {
                Side::Src => self.set_src_addr(addr),
                Side::Dst => self.set_dst_addr(addr),
            }
            self.set_checksum(checksum::update_addr(self.checksum(), old, addr));
        }
        let protocol = self.next_header();
        let l4 = &mut self.buffer.as_mut()[header_len..];
        match protocol {
            IpProtocol::Tcp => TcpPacket::new_unchecked(l4).translate(side, port, old, addr),
            IpProtocol::Udp => UdpPacket::new_unchecked(l4).translate(side, port, old, addr),
            IpProtocol::Icmp => IcmpPacket::new_unchecked(l4).translate_query_id(port),
            _ => {}
        }
    }

    /// The payload up to the total length, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        let end = usize::from(self.total_len()).min(self.buffer.as_ref().len());
        &mut self.buffer.as_mut()[header_len..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An unfragmented IPv4 header without options, parsed or to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: IpProtocol,
    pub payload_len: usize,
    pub ttl: u8,
    /// The 6-bit DSCP; ECN is emitted as 0.
    pub dscp: u8,
}

impl Ipv4Repr {
    /// Parses a checked view. Fails on a bad checksum and on fragments (the repr has no room
    /// for fragment fields; the view exposes them). Options are skipped.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if !packet.verify_checksum() || packet.is_fragment() {
            return Err(WireError);
        }
        Ok(Ipv4Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.next_header(),
            payload_len: packet.payload().len(),
            ttl: packet.hop_limit(),
            dscp: packet.dscp(),
        })
    }

    /// Length of the header [`emit`](Self::emit) writes.
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Length of the whole datagram.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes a 20-byte header: ident 0, DF set (we never fragment; RFC 6864 allows ident 0 for
    /// atomic datagrams), checksum filled. The payload is the caller's. The buffer must hold at
    /// least [`HEADER_LEN`] bytes and `payload_len` must be at most 65515.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        debug_assert!(self.payload_len <= usize::from(u16::MAX) - HEADER_LEN);
        let d = &mut packet.buffer.as_mut()[..HEADER_LEN];
        d[field::VER_IHL] = 0x45;
        d[field::DSCP_ECN] = self.dscp << 2;
        d[field::LENGTH].copy_from_slice(&((HEADER_LEN + self.payload_len) as u16).to_be_bytes());
        d[field::IDENT].copy_from_slice(&[0, 0]);
        d[field::FLG_OFF].copy_from_slice(&FLAG_DF.to_be_bytes());
        d[field::TTL] = self.ttl;
        d[field::PROTOCOL] = u8::from(self.protocol);
        d[field::CHECKSUM].copy_from_slice(&[0, 0]);
        d[field::SRC_ADDR].copy_from_slice(&self.src.octets());
        d[field::DST_ADDR].copy_from_slice(&self.dst.octets());
        let c = checksum::data(d);
        d[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // ICMP echo request 192.168.1.10 -> 8.8.8.8, TTL 64, DF, ident 0x1c46, 32-byte datagram,
    // followed by 4 bytes of Ethernet padding.
    static PACKET: [u8; 36] = [
        0x45, 0x00, 0x00, 0x20, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x4c, 0xd5, // header ..
        0xc0, 0xa8, 0x01, 0x0a, 0x08, 0x08, 0x08, 0x08, // addresses
        0x08, 0x00, 0x80, 0x63, 0x00, 0x01, 0x00, 0x02, 0xaa, 0xbb, 0xcc, 0xdd, // icmp echo
        0x00, 0x00, 0x00, 0x00, // padding
    ];
    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    const DST: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);

    fn fixed_checksum(mut p: [u8; 36]) -> [u8; 36] {
        let mut v = Ipv4Packet::new_unchecked(&mut p[..]);
        v.fill_checksum();
        p
    }

    #[test]
    fn golden_checksum_is_right() {
        let p = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(fixed_checksum(PACKET), PACKET);
    }

    #[test]
    fn deconstruct() {
        let p = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!((p.dscp_ecn(), p.dscp(), p.ecn()), (0, 0, 0));
        assert_eq!(p.total_len(), 32);
        assert_eq!(p.ident(), 0x1c46);
        assert!(p.dont_frag() && !p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment() && !p.is_first_fragment());
        assert_eq!((p.hop_limit(), p.ttl()), (64, 64));
        assert_eq!(p.next_header(), IpProtocol::Icmp);
        assert_eq!(p.checksum(), 0x4cd5);
        assert_eq!((p.src_addr(), p.dst_addr()), (SRC, DST));
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), &PACKET[20..32], "padding excluded");
    }

    #[test]
    fn construct() {
        // Zeroed, not 0xff: the reserved flag bit has no setter.
        let mut buf = [0u8; 36];
        buf[20..].copy_from_slice(&PACKET[20..]);
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.set_version(4);
        p.set_header_len(20);
        p.set_dscp_ecn(0);
        p.set_total_len(32);
        p.set_ident(0x1c46);
        p.set_dont_frag(true);
        p.set_more_frags(false);
        p.set_frag_offset(0);
        p.set_ttl(64);
        p.set_next_header(IpProtocol::Icmp);
        p.set_src_addr(SRC);
        p.set_dst_addr(DST);
        p.fill_checksum();
        assert_eq!(buf, PACKET);
    }

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src: SRC,
            dst: DST,
            protocol: IpProtocol::Icmp,
            payload_len: 12,
            ttl: 64,
            dscp: 0,
        }
    }

    #[test]
    fn repr_parse_emit() {
        let p = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p).unwrap(), repr());
        let mut buf = PACKET;
        buf[..20].fill(0xee);
        let mut v = Ipv4Packet::new_unchecked(&mut buf[..]);
        repr().emit(&mut v);
        // Same header except the ident, which emit sets to 0.
        let mut expect = PACKET;
        expect[4..6].fill(0);
        assert_eq!(buf, fixed_checksum(expect));
        assert!(Ipv4Packet::new_checked(&buf[..]).unwrap().verify_checksum());
    }

    #[test]
    fn repr_rejects_bad_checksum_and_fragments() {
        let mut buf = PACKET;
        buf[11] ^= 1;
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Packet::new_checked(&buf[..]).unwrap()),
            Err(WireError)
        );
        let mut buf = PACKET;
        buf[6] = 0x20; // MF
        let mut v = Ipv4Packet::new_unchecked(&mut buf[..]);
        v.fill_checksum();
        assert!(v.is_fragment() && v.is_first_fragment());
        assert_eq!(Ipv4Repr::parse(&v), Err(WireError));
    }

    #[test]
    fn fragments() {
        let mut buf = PACKET;
        let mut v = Ipv4Packet::new_unchecked(&mut buf[..]);
        v.set_frag_offset(1480);
        assert_eq!(v.frag_offset(), 1480);
        assert!(v.dont_frag(), "offset setter keeps flags");
        assert!(v.is_fragment() && !v.is_first_fragment());
        v.set_more_frags(true);
        assert!(v.more_frags() && !v.is_first_fragment());
        assert_eq!(v.frag_offset(), 1480, "flag setter keeps offset");
    }

    #[test]
    fn options_and_payload() {
        // IHL 6 with one 4-byte option (NOP NOP NOP EOL).
        let mut buf = [0u8; 28];
        buf[0] = 0x46;
        buf[3] = 28;
        buf[20..24].copy_from_slice(&[1, 1, 1, 0]);
        buf[24..].copy_from_slice(&[9, 9, 9, 9]);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[9, 9, 9, 9]);
    }

    #[test]
    fn decrement_ttl() {
        for ttl in [1u8, 2, 64, 128, 255] {
            let mut buf = PACKET;
            let mut v = Ipv4Packet::new_unchecked(&mut buf[..]);
            v.set_ttl(ttl);
            v.fill_checksum();
            assert_eq!(v.decrement_ttl_incremental(), ttl - 1);
            assert!(v.verify_checksum());
            let c = v.checksum();
            v.fill_checksum();
            assert_eq!(v.checksum(), c, "incremental == recompute at ttl {ttl}");
        }
        let mut buf = PACKET;
        let mut v = Ipv4Packet::new_unchecked(&mut buf[..]);
        v.set_ttl(0);
        v.fill_checksum();
        assert_eq!(v.decrement_ttl_incremental(), 0);
        assert!(v.verify_checksum());
    }

    #[test]
    fn impossible_len() {
        let check = |b: &[u8]| Ipv4Packet::new_checked(b).map(|_| ());
        assert_eq!(check(&PACKET[..19]), Err(WireError), "short buffer");
        assert_eq!(check(&PACKET[..31]), Err(WireError), "total_len > buffer");
        assert_eq!(check(&PACKET[..32]), Ok(()));
        let mut b = PACKET;
        b[0] = 0x65;
        assert_eq!(check(&b), Err(WireError), "version 6");
        b[0] = 0x44;
        assert_eq!(check(&b), Err(WireError), "IHL 4");
        b[0] = 0x4f;
        assert_eq!(check(&b), Err(WireError), "IHL beyond total_len");
        let mut b = PACKET;
        b[3] = 19;
        assert_eq!(check(&b), Err(WireError), "total_len < header_len");
    }

    #[test]
    fn quoted_header() {
        // An ICMP error quotes the header and 8 bytes; total_len still says 32.
        let q = Ipv4Packet::new_checked_quoted(&PACKET[..28]).unwrap();
        assert_eq!(q.payload(), &PACKET[20..28]);
        assert_eq!(Ipv4Packet::new_checked(&PACKET[..28]), Err(WireError));
        assert_eq!(
            Ipv4Packet::new_checked_quoted(&PACKET[..19]),
            Err(WireError)
        );
    }

    /// A TCP (6) or UDP (17) datagram 192.168.1.10:40000 -> 8.8.8.8:53 with 4 bytes of
    /// payload, every checksum filled (`udp_checksum`: false leaves UDP's at 0, "none").
    fn datagram(protocol: IpProtocol, udp_checksum: bool) -> Vec<u8> {
        let l4_len = if protocol == IpProtocol::Tcp { 24 } else { 12 };
        let repr = Ipv4Repr {
            src: SRC,
            dst: DST,
            protocol,
            payload_len: l4_len,
            ttl: 64,
            dscp: 0,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        let l4 = &mut buf[HEADER_LEN..];
        l4[l4_len - 4..].copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        if protocol == IpProtocol::Tcp {
            let mut t = TcpPacket::new_unchecked(l4);
            t.set_src_port(40000);
            t.set_dst_port(53);
            t.set_header_len(20);
            t.fill_checksum(SRC, DST);
        } else {
            let mut u = UdpPacket::new_unchecked(l4);
            u.set_src_port(40000);
            u.set_dst_port(53);
            u.set_len(12);
            if udp_checksum {
                u.fill_checksum(SRC, DST);
            }
        }
        buf
    }

    #[test]
    fn translate_patches_every_checksum_as_a_recompute_would() {
        const NAT: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 100);
        for (protocol, side) in [
            (IpProtocol::Tcp, Side::Src),
            (IpProtocol::Tcp, Side::Dst),
            (IpProtocol::Udp, Side::Src),
            (IpProtocol::Udp, Side::Dst),
        ] {
            let mut buf = datagram(protocol, true);
            let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
            p.translate(side, NAT, 1025);
            assert!(p.verify_checksum(), "{protocol:?} {side:?}");
            let (src, dst) = (p.src_addr(), p.dst_addr());
            assert_eq!(if side == Side::Src { src } else { dst }, NAT);
            let l4 = &buf[HEADER_LEN..];
            let ports = crate::wire::l4_ports(l4).unwrap();
            assert_eq!(if side == Side::Src { ports.0 } else { ports.1 }, 1025);
            if protocol == IpProtocol::Tcp {
                assert!(TcpPacket::new_checked(l4)
                    .unwrap()
                    .verify_checksum(src, dst));
            } else {
                let u = UdpPacket::new_checked(l4).unwrap();
                assert!(u.checksum() != 0 && u.verify_checksum(src, dst));
            }
        }
        // A UDP datagram sent without a checksum stays without one.
        let mut buf = datagram(IpProtocol::Udp, false);
        Ipv4Packet::new_unchecked(&mut buf[..]).translate(Side::Src, NAT, 1025);
        assert_eq!(UdpPacket::new_unchecked(&buf[HEADER_LEN..]).checksum(), 0);
        // An echo request's id, whichever side: ICMP's checksum has no pseudo-header.
        let mut buf = PACKET;
        Ipv4Packet::new_unchecked(&mut buf[..32]).translate(Side::Dst, NAT, 0x1234);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum() && p.dst_addr() == NAT);
        let icmp = IcmpPacket::new_checked(p.payload()).unwrap();
        assert!(icmp.verify_checksum() && icmp.echo_ident() == 0x1234);
    }

    #[test]
    fn translate_patches_a_quote_as_far_as_it_goes() {
        let whole = datagram(IpProtocol::Tcp, true);
        // Cut 8 bytes into the segment, as RFC 792 quotes it: ports, no TCP checksum.
        let mut quote = whole[..HEADER_LEN + 8].to_vec();
        let mut p = Ipv4Packet::new_checked_quoted(&mut quote[..]).unwrap();
        p.translate(Side::Src, Ipv4Addr::new(10, 0, 0, 1), 1025);
        assert!(p.verify_checksum());
        assert_eq!(crate::wire::l4_ports(p.payload()), Some((1025, 53)));
        assert_eq!(
            quote[HEADER_LEN + 4..],
            whole[HEADER_LEN + 4..HEADER_LEN + 8]
        );
        // Cut inside the ports: the address only.
        let mut quote = whole[..HEADER_LEN + 3].to_vec();
        Ipv4Packet::new_unchecked(&mut quote[..]).translate(Side::Src, DST, 1025);
        assert_eq!(quote[HEADER_LEN..], whole[HEADER_LEN..HEADER_LEN + 3]);
    }

    #[test]
    fn against_etherparse() {
        let (h, rest) = etherparse::Ipv4HeaderSlice::from_slice(&PACKET)
            .map(|h| (h, &PACKET[20..32]))
            .unwrap();
        let p = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(h.ihl() as usize * 4, p.header_len());
        assert_eq!(h.total_len(), p.total_len());
        assert_eq!(h.identification(), p.ident());
        assert_eq!(h.dont_fragment(), p.dont_frag());
        assert_eq!(h.ttl(), p.ttl());
        assert_eq!(h.protocol().0, u8::from(p.next_header()));
        assert_eq!(h.header_checksum(), p.checksum());
        assert_eq!(h.source_addr(), p.src_addr());
        assert_eq!(h.destination_addr(), p.dst_addr());
        assert_eq!(h.to_header().calc_header_checksum(), p.checksum());
        assert_eq!(rest, p.payload());
    }

    #[test]
    fn protocols() {
        for (raw, p) in [
            (1, IpProtocol::Icmp),
            (6, IpProtocol::Tcp),
            (17, IpProtocol::Udp),
            (112, IpProtocol::Carp),
            (240, IpProtocol::Pfsync),
            (47, IpProtocol::Unknown(47)),
        ] {
            assert_eq!(IpProtocol::from(raw), p);
            assert_eq!(u8::from(p), raw);
        }
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..80), fix in any::<bool>()) {
            let mut data = data;
            if fix && data.len() >= 20 {
                // Steer half the cases past the version/IHL checks.
                data[0] = 0x40 | (data[0] & 0x0f);
                let len = data.len() as u16;
                data[2..4].copy_from_slice(&len.to_be_bytes());
            }
            for quoted in [false, true] {
                let p = if quoted {
                    Ipv4Packet::new_checked_quoted(&data[..])
                } else {
                    Ipv4Packet::new_checked(&data[..])
                };
                if let Ok(p) = p {
                    let _ = (p.version(), p.header_len(), p.dscp(), p.ecn(), p.total_len());
                    let _ = (p.ident(), p.dont_frag(), p.more_frags(), p.frag_offset());
                    let _ = (p.is_fragment(), p.is_first_fragment(), p.ttl(), p.next_header());
                    let _ = (p.checksum(), p.src_addr(), p.dst_addr(), p.options(), p.header());
                    let _ = (p.payload(), p.verify_checksum());
                    let _ = Ipv4Repr::parse(&p);
                    let mut owned = data.clone();
                    let mut m = Ipv4Packet::new_unchecked(&mut owned[..]);
                    let _ = m.decrement_ttl_incremental();
                    m.fill_checksum();
                    let _ = m.payload_mut();
                }
            }
        }

        /// What a NAT router does to every datagram, incrementally, equals a recompute.
        #[test]
        fn incremental_forwarding_matches_recompute(
            src in any::<u32>(), dst in any::<u32>(), new_src in any::<u32>(), proto in any::<u8>(),
            ttl in 1u8..=255, dscp in 0u8..64, ident in any::<u16>(),
        ) {
            let repr = Ipv4Repr {
                src: src.into(), dst: dst.into(), protocol: proto.into(), payload_len: 0, ttl, dscp,
            };
            let mut buf = [0u8; 20];
            let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
            repr.emit(&mut p);
            p.set_ident(ident);
            p.fill_checksum();

            prop_assert_eq!(p.decrement_ttl_incremental(), ttl - 1);
            let c = checksum::update_addr(p.checksum(), src.into(), new_src.into());
            p.set_src_addr(new_src.into());
            p.set_checksum(c);
            prop_assert!(p.verify_checksum());
            p.fill_checksum();
            prop_assert_eq!(p.checksum(), c);
        }

        #[test]
        fn repr_roundtrip(
            src in any::<u32>(), dst in any::<u32>(), proto in any::<u8>(),
            payload_len in 0usize..64, ttl in any::<u8>(), dscp in 0u8..64,
        ) {
            let repr = Ipv4Repr {
                src: src.into(), dst: dst.into(), protocol: proto.into(), payload_len, ttl, dscp,
            };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
            let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Ipv4Repr::parse(&p).unwrap(), repr);
            let h = etherparse::Ipv4HeaderSlice::from_slice(&buf).unwrap();
            prop_assert_eq!(h.to_header().calc_header_checksum(), p.checksum());
        }
    }
}
