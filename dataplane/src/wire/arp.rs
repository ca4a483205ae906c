//! ARP for IPv4 over Ethernet (RFC 826), the only kind tandem speaks.
//!
//! ```text
//!  0       2       4   5   6       8             14      18            24      28
//! +-------+-------+---+---+-------+-------------+-------+-------------+-------+
//! | htype | ptype |hl |pl | oper  | sender MAC  | s. IP | target MAC  | t. IP |
//! +-------+-------+---+---+-------+-------------+-------+-------------+-------+
//!     1    0x0800   6   4
//! ```
//!
//! Because the hardware and protocol lengths are fixed, the layout is fixed too:
//! [`ArpPacket::new_checked`] rejects any other htype, ptype, hlen or plen, so the accessors
//! never have to interpret the length bytes.

use std::net::Ipv4Addr;

use super::ethernet::{EtherType, EthernetFrame, EthernetRepr, HEADER_LEN, MIN_FRAME_LEN};
use super::{MacAddr, Result, WireError};

enum_with_unknown! {
    /// The ARP operation code.
    pub enum ArpOperation(u16) {
        Request = 1,
        Reply = 2,
    }
}

/// Hardware type Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len) and [`check_format`](Self::check_format).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        packet.check_format()?;
        Ok(packet)
    }

    /// The buffer holds an Ethernet/IPv4 ARP packet (trailing padding allowed).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < PACKET_LEN {
            Err(WireError)
        } else {
            Ok(())
        }
    }

    /// The packet is Ethernet/IPv4: htype 1, ptype 0x0800, hlen 6, plen 4. Call after
    /// [`check_len`](Self::check_len).
    #[inline]
    pub fn check_format(&self) -> Result<()> {
        let d = self.buffer.as_ref();
        if self.hardware_type() == HTYPE_ETHERNET
            && self.protocol_type() == EtherType::Ipv4
            && d[field::HLEN] == 6
            && d[field::PLEN] == 4
        {
            Ok(())
        } else {
            Err(WireError)
        }
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn hardware_type(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[0], d[1]])
    }

    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        let d = self.buffer.as_ref();
        EtherType::from(u16::from_be_bytes([d[2], d[3]]))
    }

    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    #[inline]
    pub fn operation(&self) -> ArpOperation {
        let d = self.buffer.as_ref();
        ArpOperation::from(u16::from_be_bytes([d[6], d[7]]))
    }

    #[inline]
    pub fn source_hardware_addr(&self) -> MacAddr {
        let d = self.buffer.as_ref();
        MacAddr([d[8], d[9], d[10], d[11], d[12], d[13]])
    }

    #[inline]
    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        let d = self.buffer.as_ref();
        Ipv4Addr::new(d[14], d[15], d[16], d[17])
    }

    #[inline]
    pub fn target_hardware_addr(&self) -> MacAddr {
        let d = self.buffer.as_ref();
        MacAddr([d[18], d[19], d[20], d[21], d[22], d[23]])
    }

    #[inline]
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        let d = self.buffer.as_ref();
        Ipv4Addr::new(d[24], d[25], d[26], d[27])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    #[inline]
    pub fn set_hardware_type(&mut self, value: u16) {
        self.buffer.as_mut()[field::HTYPE].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_protocol_type(&mut self, value: EtherType) {
        self.buffer.as_mut()[field::PTYPE].copy_from_slice(&u16::from(value).to_be_bytes());
    }

    #[inline]
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    #[inline]
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    #[inline]
    pub fn set_operation(&mut self, value: ArpOperation) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&u16::from(value).to_be_bytes());
    }

    #[inline]
    pub fn set_source_hardware_addr(&mut self, value: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&value.0);
    }

    #[inline]
    pub fn set_source_protocol_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&value.octets());
    }

    #[inline]
    pub fn set_target_hardware_addr(&mut self, value: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&value.0);
    }

    #[inline]
    pub fn set_target_protocol_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&value.octets());
    }
}

/// An Ethernet/IPv4 ARP packet, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub operation: ArpOperation,
    pub source_mac: MacAddr,
    pub source_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Parses a packet; fails on anything but Ethernet/IPv4 even if the view was built unchecked.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        packet.check_len()?;
        packet.check_format()?;
        Ok(ArpRepr {
            operation: packet.operation(),
            source_mac: packet.source_hardware_addr(),
            source_ip: packet.source_protocol_addr(),
            target_mac: packet.target_hardware_addr(),
            target_ip: packet.target_protocol_addr(),
        })
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes all 28 bytes; the buffer must hold at least [`PACKET_LEN`].
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(EtherType::Ipv4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(self.source_mac);
        packet.set_source_protocol_addr(self.source_ip);
        packet.set_target_hardware_addr(self.target_mac);
        packet.set_target_protocol_addr(self.target_ip);
    }
}

/// Writes an Ethernet frame carrying `repr` into `buf`, zero-padded to the 60-byte minimum, and
/// returns its length (always [`MIN_FRAME_LEN`]).
///
/// # Panics
///
/// If `buf` is shorter than [`MIN_FRAME_LEN`]; TX frames are UMEM chunks of 2 KiB or more.
pub fn emit_arp_frame(buf: &mut [u8], eth_dst: MacAddr, eth_src: MacAddr, repr: &ArpRepr) -> usize {
    assert!(
        buf.len() >= MIN_FRAME_LEN,
        "ARP frame buffer shorter than {MIN_FRAME_LEN}"
    );
    let buf = &mut buf[..MIN_FRAME_LEN];
    let eth = EthernetRepr {
        src_addr: eth_src,
        dst_addr: eth_dst,
        ethertype: EtherType::Arp,
    };
    eth.emit(&mut EthernetFrame::new_unchecked(&mut *buf));
    repr.emit(&mut ArpPacket::new_unchecked(
        &mut buf[HEADER_LEN..HEADER_LEN + PACKET_LEN],
    ));
    // A reused TX chunk holds the previous frame's bytes; padding must not leak them.
    buf[HEADER_LEN + PACKET_LEN..].fill(0);
    MIN_FRAME_LEN
}

/// Writes a broadcast "who-has `target_ip`, tell `src_ip`" and returns the frame length.
/// The target MAC is zero, as RFC 826 leaves it unspecified and every stack sends zero.
///
/// # Panics
///
/// As [`emit_arp_frame`].
pub fn emit_arp_request(
    buf: &mut [u8],
    src_mac: MacAddr,
    src_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
) -> usize {
    let repr = ArpRepr {
        operation: ArpOperation::Request,
        source_mac: src_mac,
        source_ip: src_ip,
        target_mac: MacAddr::ZERO,
        target_ip,
    };
    emit_arp_frame(buf, MacAddr::BROADCAST, src_mac, &repr)
}

/// Writes a gratuitous ARP announcing that `ip` is at `mac`, and returns the frame length.
///
/// It is a broadcast *request* with sender IP == target IP and a zero target MAC, as FreeBSD's
/// `arp_announce` (and so pfSense's CARP on becoming master) sends. RFC 5227 §3 allows a request
/// or a reply; a request is the form every neighbour cache accepts as an update, while some
/// hosts ignore unsolicited replies.
///
/// # Panics
///
/// As [`emit_arp_frame`].
pub fn emit_gratuitous_arp(buf: &mut [u8], mac: MacAddr, ip: Ipv4Addr) -> usize {
    emit_arp_request(buf, mac, ip, ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // "who-has 10.0.0.1 tell 10.0.0.2" from 52:54:00:12:34:56, as captured (with padding).
    static FRAME: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08,
        0x06, // eth
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // arp hdr
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a, 0x00, 0x00, 0x02, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, // target
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];
    const MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const TARGET: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn repr() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            source_mac: MAC,
            source_ip: IP,
            target_mac: MacAddr::ZERO,
            target_ip: TARGET,
        }
    }

    #[test]
    fn deconstruct() {
        let p = ArpPacket::new_checked(&FRAME[14..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), EtherType::Ipv4);
        assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
        assert_eq!(p.operation(), ArpOperation::Request);
        assert_eq!(p.source_hardware_addr(), MAC);
        assert_eq!(p.source_protocol_addr(), IP);
        assert_eq!(p.target_hardware_addr(), MacAddr::ZERO);
        assert_eq!(p.target_protocol_addr(), TARGET);
    }

    #[test]
    fn parse_emit() {
        let p = ArpPacket::new_checked(&FRAME[14..42]).unwrap();
        assert_eq!(ArpRepr::parse(&p).unwrap(), repr());
        let mut buf = [0xaau8; 28];
        repr().emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, FRAME[14..42]);
    }

    #[test]
    fn request_frame() {
        let mut buf = [0xaau8; 2048];
        assert_eq!(emit_arp_request(&mut buf, MAC, IP, TARGET), 60);
        assert_eq!(buf[..60], FRAME);
    }

    #[test]
    fn reply_frame() {
        let mut buf = [0u8; 64];
        let reply = ArpRepr {
            operation: ArpOperation::Reply,
            source_mac: MacAddr::carp_virtual(7),
            source_ip: TARGET,
            target_mac: MAC,
            target_ip: IP,
        };
        let n = emit_arp_frame(&mut buf, MAC, MacAddr::carp_virtual(7), &reply);
        let f = EthernetFrame::new_checked(&buf[..n]).unwrap();
        assert_eq!((f.dst_addr(), f.ethertype()), (MAC, EtherType::Arp));
        let p = ArpPacket::new_checked(f.payload()).unwrap();
        assert_eq!(ArpRepr::parse(&p).unwrap(), reply);
        assert_eq!(&buf[14..16], &[0x00, 0x01]);
        assert_eq!(&buf[20..22], &[0x00, 0x02]);
    }

    #[test]
    fn gratuitous() {
        let mut buf = [0xaau8; 60];
        let vmac = MacAddr::carp_virtual(1);
        let n = emit_gratuitous_arp(&mut buf, vmac, IP);
        let f = EthernetFrame::new_checked(&buf[..n]).unwrap();
        assert_eq!((f.dst_addr(), f.src_addr()), (MacAddr::BROADCAST, vmac));
        let r = ArpRepr::parse(&ArpPacket::new_checked(f.payload()).unwrap()).unwrap();
        assert_eq!(r.operation, ArpOperation::Request);
        assert_eq!((r.source_mac, r.source_ip), (vmac, IP));
        assert_eq!((r.target_mac, r.target_ip), (MacAddr::ZERO, IP));
        assert!(buf[42..60].iter().all(|&b| b == 0));
    }

    #[test]
    #[should_panic]
    fn frame_buffer_too_small() {
        emit_gratuitous_arp(&mut [0u8; 59], MAC, IP);
    }

    #[test]
    fn impossible_len_and_format() {
        assert_eq!(ArpPacket::new_checked(&FRAME[14..41]), Err(WireError));
        for (at, v) in [(14, 0x01), (15, 0x06), (16, 0x86), (18, 0x10), (19, 0x10)] {
            let mut f = FRAME;
            f[at] = v;
            assert_eq!(
                ArpPacket::new_checked(&f[14..]),
                Err(WireError),
                "byte {at}"
            );
            assert_eq!(
                ArpRepr::parse(&ArpPacket::new_unchecked(&f[14..])),
                Err(WireError)
            );
        }
    }

    #[test]
    fn unknown_operation_kept() {
        let mut f = FRAME;
        f[21] = 9;
        let p = ArpPacket::new_checked(&f[14..]).unwrap();
        assert_eq!(p.operation(), ArpOperation::Unknown(9));
        assert_eq!(
            ArpRepr::parse(&p).unwrap().operation,
            ArpOperation::Unknown(9)
        );
    }

    #[test]
    fn against_etherparse() {
        // etherparse 0.16 has no ARP parser; it can still vouch for the Ethernet header we emit.
        let mut buf = [0u8; 60];
        emit_arp_request(&mut buf, MAC, IP, TARGET);
        let h = etherparse::Ethernet2HeaderSlice::from_slice(&buf).unwrap();
        assert_eq!(h.ether_type(), etherparse::EtherType::ARP);
        assert_eq!(h.source(), MAC.0);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = ArpPacket::new_checked(&data[..]) {
                let _ = (p.hardware_type(), p.protocol_type(), p.operation());
                let _ = (p.source_hardware_addr(), p.source_protocol_addr());
                let _ = (p.target_hardware_addr(), p.target_protocol_addr());
                let _ = ArpRepr::parse(&p);
            }
        }
    }
}
