//! Ethernet II frames, without preamble or FCS (what AF_XDP hands us).
//!
//! ```text
//!  0                   6                   12      14
//! +-------------------+-------------------+-------+---------------
//! | destination       | source            | type  | payload ...
//! +-------------------+-------------------+-------+---------------
//! ```
//!
//! 802.1Q tagged frames are not unwrapped: their ethertype reads as [`EtherType::Vlan`] and the
//! payload starts at the tag. tandem does not route VLANs on its data ports, so the pipeline
//! drops them under their own counter rather than misreading the tag as an IP header.

use super::{MacAddr, Result, WireError};

enum_with_unknown! {
    /// The ethertype field.
    pub enum EtherType(u16) {
        Ipv4 = 0x0800,
        Arp = 0x0806,
        /// An 802.1Q tag (TPID); see the module documentation.
        Vlan = 0x8100,
        Ipv6 = 0x86dd,
    }
}

/// The six bytes at `at`; panics past the end, as indexing does (callers wrap checked frames).
#[inline(always)]
fn mac_at(d: &[u8], at: usize) -> [u8; 6] {
    let mut m = [0u8; 6];
    m.copy_from_slice(&d[at..at + 6]);
    m
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = 14;

/// Minimum frame length without FCS (64 on the wire minus 4 bytes of FCS). Shorter frames we
/// build are padded with zeros to this length.
pub const MIN_FRAME_LEN: usize = 60;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: usize = 14;
    /// An 802.1Q tag after the source address: TCI (2 bytes), then the inner ethertype.
    pub const VLAN_TAG_LEN: usize = 4;
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it; see the module contract in [`super`].
    #[inline]
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// The buffer holds at least a header.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError)
        } else {
            Ok(())
        }
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The header length, constant for Ethernet II.
    #[inline]
    pub const fn header_len() -> usize {
        HEADER_LEN
    }

    /// The frame length for a payload of `payload_len` bytes (before minimum-size padding).
    #[inline]
    pub const fn buffer_len(payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// One bounds check and a 6-byte load (not six checked byte reads): it runs for every
    /// frame, twice.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(mac_at(self.buffer.as_ref(), field::DESTINATION.start))
    }

    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        MacAddr(mac_at(self.buffer.as_ref(), field::SOURCE.start))
    }

    #[inline]
    pub fn ethertype(&self) -> EtherType {
        let d = self.buffer.as_ref();
        EtherType::from(u16::from_be_bytes([d[12], d[13]]))
    }

    /// Everything after the header, including any padding of short frames: the layer above
    /// bounds itself by its own length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }

    /// The ethertype and payload with one 802.1Q tag looked through (for readers that inspect
    /// tagged frames, such as the capture filter; the pipeline does not route VLANs). `None`
    /// for a tagged frame too short to hold the tag.
    pub fn untagged(&self) -> Option<(EtherType, &[u8])> {
        match self.ethertype() {
            EtherType::Vlan => {
                let tag = self.payload().get(..field::VLAN_TAG_LEN)?;
                let inner = EtherType::from(u16::from_be_bytes([tag[2], tag[3]]));
                Some((inner, &self.payload()[field::VLAN_TAG_LEN..]))
            }
            other => Some((other, self.payload())),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(ethertype).to_be_bytes());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for EthernetFrame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The Ethernet II header, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub src_addr: MacAddr,
    pub dst_addr: MacAddr,
    pub ethertype: EtherType,
}

impl EthernetRepr {
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header; the buffer must hold at least [`HEADER_LEN`] bytes.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // An ARP request as captured: broadcast, from 52:54:00:12:34:56, padded to 60 bytes.
    static FRAME: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08,
        0x06, // eth
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // arp hdr
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a, 0x00, 0x00, 0x02, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, // target
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];
    const SRC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

    #[test]
    fn deconstruct() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(f.src_addr(), SRC);
        assert_eq!(f.ethertype(), EtherType::Arp);
        assert_eq!(f.payload(), &FRAME[14..]);
    }

    #[test]
    fn construct() {
        let mut buf = FRAME;
        buf[..14].fill(0);
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        f.set_dst_addr(MacAddr::BROADCAST);
        f.set_src_addr(SRC);
        f.set_ethertype(EtherType::Arp);
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn repr_parse_emit() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        let repr = EthernetRepr::parse(&f).unwrap();
        assert_eq!(
            repr,
            EthernetRepr {
                src_addr: SRC,
                dst_addr: MacAddr::BROADCAST,
                ethertype: EtherType::Arp
            }
        );
        let mut buf = [0u8; 14];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        assert_eq!(buf, FRAME[..14]);
    }

    #[test]
    fn ethertypes() {
        for (raw, t) in [
            (0x0800, EtherType::Ipv4),
            (0x0806, EtherType::Arp),
            (0x8100, EtherType::Vlan),
            (0x86dd, EtherType::Ipv6),
            (0x88cc, EtherType::Unknown(0x88cc)),
        ] {
            assert_eq!(EtherType::from(raw), t);
            assert_eq!(u16::from(t), raw);
        }
    }

    #[test]
    fn vlan_tag_is_reported_not_unwrapped() {
        let mut buf = FRAME;
        buf[12..14].copy_from_slice(&[0x81, 0x00]);
        let f = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!(f.ethertype(), EtherType::Vlan);
    }

    #[test]
    fn impossible_len() {
        assert_eq!(EthernetFrame::new_checked(&FRAME[..13]), Err(WireError));
        let f = EthernetFrame::new_checked(&FRAME[..14]).unwrap();
        assert!(f.payload().is_empty());
    }

    #[test]
    fn against_etherparse() {
        let h = etherparse::Ethernet2HeaderSlice::from_slice(&FRAME).unwrap();
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(h.destination(), f.dst_addr().0);
        assert_eq!(h.source(), f.src_addr().0);
        assert_eq!(h.ether_type().0, u16::from(f.ethertype()));
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(f) = EthernetFrame::new_checked(&data[..]) {
                let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload().len());
                let _ = EthernetRepr::parse(&f);
            }
        }
    }
}
