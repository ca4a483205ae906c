//! UDP (RFC 768).
//!
//! ```text
//!  0               2               4               6               8
//! +---------------+---------------+---------------+---------------+----------
//! |   src port    |   dst port    |    length     |   checksum    | payload ...
//! +---------------+---------------+---------------+---------------+----------
//! ```
//!
//! Over IPv4 a checksum of 0 means "none was computed" and verifies; a computed 0 is therefore
//! sent as `0xffff` ([`checksum_on_wire`]), and NAT must leave a 0 alone
//! ([`UdpPacket::translate`]).

use std::net::Ipv4Addr;

use super::checksum;
use super::ipv4::IpProtocol;
use super::{Result, Side, WireError};

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// The value to store for a computed UDP checksum: `0xffff` for `0`, which would read as "no
/// checksum" (RFC 768). Both are ones' complement zero, so the receiver verifies either.
#[inline]
pub const fn checksum_on_wire(computed: u16) -> u16 {
    if computed == 0 {
        0xffff
    } else {
        computed
    }
}

/// A view of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Wraps the first fragment of a fragmented datagram (RFC 791), whose length field counts
    /// the whole datagram and so exceeds the buffer: checks the header is there and the length
    /// field is at least a header's and covers this fragment's payload.
    #[inline]
    pub fn new_checked_first_fragment(buffer: T) -> Result<UdpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        let buffer_len = packet.buffer.as_ref().len();
        if buffer_len < HEADER_LEN || usize::from(packet.len()) < buffer_len {
            return Err(WireError);
        }
        Ok(packet)
    }

    /// Buffer >= 8 bytes and 8 <= length field <= buffer length. A buffer longer than the
    /// length field is accepted (the payload stops at the length).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let buffer_len = self.buffer.as_ref().len();
        if buffer_len < HEADER_LEN {
            return Err(WireError);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN || len > buffer_len {
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

    /// The length field: header plus payload.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[4], d[5]])
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[6], d[7]])
    }

    /// The payload up to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..usize::from(self.len())]
    }

    /// The checksum verifies over the pseudo-header and the datagram (up to the length field);
    /// a checksum of 0 means none and is valid.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let len = self.len();
        let d = &self.buffer.as_ref()[..usize::from(len)];
        let ph = checksum::pseudo_header_v4(src, dst, u8::from(IpProtocol::Udp), len);
        checksum::fold(ph + checksum::sum(d)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len());
        &mut self.buffer.as_mut()[field::PAYLOAD..len]
    }

    /// NAT's rewrite: the `side` port becomes `port`, and the checksum follows it and the
    /// pseudo-header's address change from `old_addr` to `new_addr` incrementally, in one fold
    /// ([`checksum::update_addr_port`]). A datagram sent without a checksum stays without, and
    /// a computed 0 is sent as `0xffff`. A buffer shorter than the header (a quote cut short)
    /// is left alone.
    #[inline]
    pub fn translate(&mut self, side: Side, port: u16, old_addr: Ipv4Addr, new_addr: Ipv4Addr) {
        if self.buffer.as_ref().len() < HEADER_LEN {
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
        // 0: sent without a checksum, and so it stays.
        let c = self.checksum();
        if c != 0 {
            self.set_checksum(checksum_on_wire(checksum::update_addr_port(
                c,
                (old_addr, new_addr),
                (old_port, port),
            )));
        }
    }

    /// Computes the checksum over the pseudo-header and the datagram up to the length field;
    /// a computed 0 is stored as `0xffff`.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let len = self.len();
        let d = &self.buffer.as_ref()[..usize::from(len)];
        let ph = checksum::pseudo_header_v4(src, dst, u8::from(IpProtocol::Udp), len);
        let c = !checksum::fold(ph + checksum::sum(d));
        self.set_checksum(checksum_on_wire(c));
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for UdpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A UDP header, parsed or to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl UdpRepr {
    /// Parses a datagram whose checksum verifies (or is absent).
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(
        packet: &UdpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<UdpRepr> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(WireError);
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: packet.payload().len(),
        })
    }

    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Length of the whole datagram.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header and fills the checksum. Put the payload in place first: the checksum
    /// covers it. The buffer must hold [`buffer_len`](Self::buffer_len) bytes and `payload_len`
    /// must be at most 65507.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) {
        debug_assert!(self.payload_len <= usize::from(u16::MAX) - HEADER_LEN);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len((HEADER_LEN + self.payload_len) as u16);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);

    // A DNS-ish datagram 192.168.1.10:54321 -> 192.168.1.1:53 carrying "hello", followed by 3
    // bytes of Ethernet padding the length field excludes.
    static PACKET: [u8; 16] = [
        0xd4, 0x31, 0x00, 0x35, 0x00, 0x0d, 0x64, 0x3f, b'h', b'e', b'l', b'l',
        b'o', // datagram
        0x00, 0x00, 0x00, // padding
    ];

    fn repr() -> UdpRepr {
        UdpRepr {
            src_port: 54321,
            dst_port: 53,
            payload_len: 5,
        }
    }

    #[test]
    fn deconstruct() {
        let p = UdpPacket::new_checked(&PACKET[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (54321, 53));
        assert_eq!((p.len(), p.checksum()), (13, 0x643f));
        assert_eq!(p.payload(), b"hello");
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, Ipv4Addr::new(192, 168, 1, 2)));
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 16];
        buf[8..13].copy_from_slice(b"hello");
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        p.set_src_port(54321);
        p.set_dst_port(53);
        p.set_len(13);
        p.fill_checksum(SRC, DST);
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn repr_parse_emit() {
        let p = UdpPacket::new_checked(&PACKET[..]).unwrap();
        assert_eq!(UdpRepr::parse(&p, SRC, DST).unwrap(), repr());
        assert_eq!(UdpRepr::parse(&p, SRC, Ipv4Addr::LOCALHOST), Err(WireError));
        let mut buf = [0u8; 16];
        buf[8..13].copy_from_slice(b"hello");
        repr().emit(&mut UdpPacket::new_unchecked(&mut buf[..13]), SRC, DST);
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut buf = PACKET;
        buf[6..8].fill(0);
        let p = UdpPacket::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum(SRC, Ipv4Addr::LOCALHOST));
        // NAT leaves it alone: address and port rewritten, still no checksum.
        UdpPacket::new_unchecked(&mut buf[..]).translate(Side::Src, 40000, SRC, DST);
        assert_eq!(UdpPacket::new_unchecked(&buf[..]).checksum(), 0);
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose the last payload word so that the sum is 0xffff and the checksum computes to 0.
        let mut buf = [0u8; 12];
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        p.set_src_port(1000);
        p.set_dst_port(2000);
        p.set_len(12);
        let ph = checksum::pseudo_header_v4(SRC, DST, 17, 12);
        let word = !checksum::fold(ph + checksum::sum(p.as_ref()));
        p.payload_mut()[2..4].copy_from_slice(&word.to_be_bytes());
        p.fill_checksum(SRC, DST);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(SRC, DST));
        assert_eq!(checksum_on_wire(0), 0xffff);
        assert_eq!(checksum_on_wire(0x1234), 0x1234);
    }

    #[test]
    fn nat_update() {
        let new_src = Ipv4Addr::new(203, 0, 113, 7);
        let mut buf = PACKET;
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        p.translate(Side::Src, 40000, SRC, new_src);
        assert_eq!(p.src_port(), 40000);
        assert!(p.verify_checksum(new_src, DST));
        let incremental = p.checksum();
        p.fill_checksum(new_src, DST);
        assert_eq!(p.checksum(), incremental);
    }

    #[test]
    fn impossible_len() {
        let check = |b: &[u8]| UdpPacket::new_checked(b).map(|_| ());
        assert_eq!(check(&PACKET[..7]), Err(WireError));
        assert_eq!(check(&PACKET[..12]), Err(WireError), "len > buffer");
        assert_eq!(check(&PACKET[..13]), Ok(()));
        let mut b = PACKET;
        b[5] = 7;
        assert_eq!(check(&b), Err(WireError), "len < 8");
        b[5] = 8;
        assert_eq!(UdpPacket::new_checked(&b[..]).unwrap().payload(), b"");
    }

    #[test]
    fn first_fragment_len_covers_more_than_the_buffer() {
        let check = |b: &[u8]| UdpPacket::new_checked_first_fragment(b).map(|_| ());
        assert_eq!(check(&PACKET[..7]), Err(WireError), "no whole header");
        assert_eq!(
            check(&PACKET[..12]),
            Ok(()),
            "the rest is in later fragments"
        );
        assert_eq!(check(&PACKET[..13]), Ok(()));
        assert_eq!(check(&PACKET[..14]), Err(WireError), "len < this fragment");
        let mut b = PACKET;
        b[5] = 7;
        assert_eq!(check(&b[..8]), Err(WireError), "len < 8");
    }

    #[test]
    fn against_etherparse() {
        let h = etherparse::UdpHeaderSlice::from_slice(&PACKET).unwrap();
        let p = UdpPacket::new_checked(&PACKET[..]).unwrap();
        assert_eq!(
            (h.source_port(), h.destination_port()),
            (p.src_port(), p.dst_port())
        );
        assert_eq!((h.length(), h.checksum()), (p.len(), p.checksum()));
        let c = h
            .to_header()
            .calc_checksum_ipv4_raw(SRC.octets(), DST.octets(), b"hello")
            .unwrap();
        assert_eq!(c, p.checksum());
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..40), fix in any::<bool>()) {
            let mut data = data;
            if fix && data.len() >= 8 {
                let len = data.len() as u16 - (data[0] as u16 % 4).min(data.len() as u16 - 8);
                data[4..6].copy_from_slice(&len.to_be_bytes());
            }
            if let Ok(p) = UdpPacket::new_checked(&data[..]) {
                let _ = (p.src_port(), p.dst_port(), p.len(), p.checksum(), p.payload());
                let _ = (p.verify_checksum(SRC, DST), UdpRepr::parse(&p, SRC, DST));
                let mut owned = data.clone();
                let mut m = UdpPacket::new_unchecked(&mut owned[..]);
                m.fill_checksum(SRC, DST);
                let _ = m.payload_mut();
                prop_assert!(m.verify_checksum(SRC, DST));
            }
        }

        #[test]
        fn emit_matches_etherparse(
            payload in proptest::collection::vec(any::<u8>(), 0..100),
            src in any::<u32>(), dst in any::<u32>(), sport in any::<u16>(), dport in any::<u16>(),
        ) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let repr = UdpRepr { src_port: sport, dst_port: dport, payload_len: payload.len() };
            let mut buf = vec![0u8; repr.buffer_len()];
            buf[8..].copy_from_slice(&payload);
            repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), src, dst);
            let h = etherparse::UdpHeader::with_ipv4_checksum(
                sport, dport, &etherparse::Ipv4Header::new(
                    payload.len() as u16, 64, etherparse::IpNumber::UDP, src.octets(), dst.octets(),
                ).unwrap(), &payload,
            ).unwrap();
            prop_assert_eq!(&buf[..8], &h.to_bytes()[..]);
            let p = UdpPacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(UdpRepr::parse(&p, src, dst).unwrap(), repr);
        }
    }
}
