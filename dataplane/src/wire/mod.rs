//! Zero-copy views over untrusted bytes, smoltcp-style: `Packet::new_checked` validates lengths
//! once, after which no accessor can panic; `Repr` types parse and emit.
//!
//! # The contract
//!
//! Every view (`EthernetFrame`, `ArpPacket`, `Ipv4Packet`, `IcmpPacket`, `TcpPacket`,
//! `UdpPacket`) wraps a buffer `T: AsRef<[u8]>` without copying it.
//!
//! - `new_unchecked` wraps anything; accessors on a buffer that was never checked may panic. It
//!   exists for buffers we are about to fill ourselves (emit) or already checked.
//! - `new_checked` = `new_unchecked` + `check_len` (ARP adds `check_format`, because its
//!   accessors assume the Ethernet/IPv4 layout). **After `new_checked` succeeds no accessor can
//!   panic**, whatever the bytes are: every length field the accessors slice by has been
//!   validated against the buffer. `Ipv4Packet::new_checked_quoted`, for the truncated datagram
//!   inside an ICMP error, keeps the same promise with a weaker check. Setters keep that promise only as long as the caller does not
//!   write a length field (`set_header_len`, `set_total_len`, `set_len`) that breaks it.
//! - A failed check is the unit [`WireError`]: in the hot path a malformed packet is a counted
//!   drop, not an error chain, so there is nothing to say beyond "malformed".
//! - `Repr::emit` writes into a buffer the caller sized with `Repr::buffer_len`; an undersized
//!   buffer is a programming error and panics.
//!
//! Multi-byte fields are big-endian on the wire; getters and setters convert.

use std::fmt;

/// Declares a protocol-number enum that keeps unknown values (`Unknown(raw)`), with lossless
/// `From` conversions both ways. `Unknown` must not be built with a value that has a name.
macro_rules! enum_with_unknown {
    (
        $( #[$enum_attr:meta] )*
        pub enum $name:ident($ty:ty) {
            $( $( #[$variant_attr:meta] )* $variant:ident = $value:literal ),+ $(,)?
        }
    ) => {
        #[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Clone, Copy)]
        $( #[$enum_attr] )*
        pub enum $name {
            $( $( #[$variant_attr] )* $variant, )+
            /// A value without a name here, kept so that it can be counted and forwarded.
            Unknown($ty),
        }

        impl ::core::convert::From<$ty> for $name {
            #[inline]
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl $name {
            /// The value on the wire (usable in constants).
            #[inline]
            pub const fn value(self) -> $ty {
                match self {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }

        impl ::core::convert::From<$name> for $ty {
            #[inline]
            fn from(value: $name) -> Self {
                value.value()
            }
        }
    };
}

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;

/// A packet failed validation: too short, a length field pointing outside the buffer, a bad
/// version or checksum, or a format we do not handle. Deliberately carries no detail: the
/// caller counts the drop under its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError;

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed packet")
    }
}

impl std::error::Error for WireError {}

/// The result of a wire check or parse.
pub type Result<T> = core::result::Result<T, WireError>;

/// An Ethernet (EUI-48) address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The first five bytes of every CARP/VRRP virtual MAC (RFC 5798 §7.3, IANA's VRRP block).
    pub const CARP_VIRTUAL_PREFIX: [u8; 5] = [0x00, 0x00, 0x5e, 0x00, 0x01];

    /// The CARP/VRRP virtual MAC of a VHID: 00:00:5e:00:01:VHID.
    pub const fn carp_virtual(vhid: u8) -> MacAddr {
        let p = Self::CARP_VIRTUAL_PREFIX;
        MacAddr([p[0], p[1], p[2], p[3], p[4], vhid])
    }

    /// The VHID whose virtual MAC this is, if it is one.
    #[inline]
    pub fn carp_vhid(&self) -> Option<u8> {
        (self.0[..5] == Self::CARP_VIRTUAL_PREFIX).then_some(self.0[5])
    }

    /// The Ethernet group address an IPv4 multicast group maps to (RFC 1112 §6.4).
    pub const fn ipv4_multicast(group: std::net::Ipv4Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
    }

    /// One comparison of the six bytes as a whole (checked on every frame not to our MAC).
    #[inline]
    pub fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }

    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn from_bytes(b: &[u8]) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&b[..6]);
        MacAddr(m)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for MacAddr {
    type Err = ();
    fn from_str(s: &str) -> core::result::Result<MacAddr, ()> {
        let mut m = [0u8; 6];
        let mut parts = s.split(':');
        for b in m.iter_mut() {
            *b = u8::from_str_radix(parts.next().ok_or(())?, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(MacAddr(m))
    }
}

/// Which end of a packet a rewrite changes: the source (address and port) or the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
}

impl Side {
    /// The other end.
    pub const fn opposite(self) -> Side {
        match self {
            Side::Src => Side::Dst,
            Side::Dst => Side::Src,
        }
    }
}

/// The source and destination ports at the start of a TCP or UDP header (both begin with
/// them), from as few as four bytes: enough for a filter that looks at ports only.
pub fn l4_ports(l4: &[u8]) -> Option<(u16, u16)> {
    let p = l4.get(..4)?;
    Some((
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

#[cfg(test)]
mod tests {
    //! Whole frames through the chain of views, as the pipeline walks them, checked against
    //! frames etherparse builds.

    use super::ethernet::{EtherType, EthernetFrame};
    use super::icmp::{IcmpPacket, IcmpType};
    use super::ipv4::{IpProtocol, Ipv4Packet};
    use super::tcp::{SeqNumber, TcpFlags, TcpPacket};
    use super::udp::UdpPacket;
    use super::*;
    use etherparse::{PacketBuilder, TcpOptionElement};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const MAC_A: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x0a];
    const MAC_B: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x0b];
    const IP_A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
    const IP_B: Ipv4Addr = Ipv4Addr::new(172, 16, 5, 1);

    fn ip_of(frame: &[u8]) -> Ipv4Packet<&[u8]> {
        let eth = EthernetFrame::new_checked(frame).unwrap();
        assert_eq!(eth.ethertype(), EtherType::Ipv4);
        assert_eq!(
            (eth.src_addr(), eth.dst_addr()),
            (MacAddr(MAC_A), MacAddr(MAC_B))
        );
        let ip = Ipv4Packet::new_checked(&frame[ethernet::HEADER_LEN..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src_addr(), ip.dst_addr(), ip.ttl()), (IP_A, IP_B, 63));
        ip
    }

    #[test]
    fn tcp_syn_from_etherparse() {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(IP_A.octets(), IP_B.octets(), 63)
            .tcp(40000, 22, 0xdead_beef, 29200)
            .syn()
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::SelectiveAcknowledgementPermitted,
                TcpOptionElement::Timestamp(7, 0),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(7),
            ])
            .unwrap();
        let mut frame = Vec::new();
        b.write(&mut frame, &[]).unwrap();
        // Pad as a NIC hands a short frame over; nothing below Ethernet may see the padding.
        frame.resize(frame.len().max(60), 0);

        let ip = ip_of(&frame);
        assert_eq!(ip.next_header(), IpProtocol::Tcp);
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(IP_A, IP_B));
        assert_eq!((tcp.src_port(), tcp.dst_port()), (40000, 22));
        assert_eq!(tcp.seq_number(), SeqNumber(0xdead_beef));
        assert_eq!(tcp.flags(), TcpFlags::SYN);
        let o = tcp.parse_options();
        assert_eq!(
            (o.mss, o.window_scale, o.timestamp),
            (Some(1460), Some(7), Some((7, 0)))
        );
        assert!(o.sack_permitted);
    }

    #[test]
    fn udp_and_icmp_from_etherparse_with_padding() {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(IP_A.octets(), IP_B.octets(), 63);
        let mut frame = Vec::new();
        b.udp(5353, 53).write(&mut frame, b"q").unwrap();
        assert!(frame.len() < 60);
        frame.resize(60, 0xee);
        let ip = ip_of(&frame);
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(udp.payload(), b"q");
        assert!(udp.verify_checksum(IP_A, IP_B));

        let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(IP_A.octets(), IP_B.octets(), 63);
        let mut frame = Vec::new();
        b.icmpv4_echo_request(0x77, 3)
            .write(&mut frame, b"ping")
            .unwrap();
        frame.resize(60, 0xee);
        let ip = ip_of(&frame);
        let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert!(
            icmp.verify_checksum(),
            "padding excluded from the ICMP checksum"
        );
        assert_eq!(icmp.msg_type(), IcmpType::EchoRequest);
        assert_eq!(
            (icmp.echo_ident(), icmp.echo_seq_no(), icmp.data()),
            (0x77, 3, &b"ping"[..])
        );
    }

    #[test]
    fn wire_error_is_an_error() {
        let e: Box<dyn std::error::Error> = Box::new(WireError);
        assert_eq!(e.to_string(), "malformed packet");
    }

    #[test]
    fn mac_addr_api_kept() {
        let m: MacAddr = "00:00:5e:00:01:07".parse().unwrap();
        assert_eq!(m, MacAddr::carp_virtual(7));
        assert_eq!(m.to_string(), "00:00:5e:00:01:07");
        assert!("00:00:5e:00:01".parse::<MacAddr>().is_err());
        assert!(MacAddr::ipv4_multicast(Ipv4Addr::new(224, 0, 0, 18)).is_multicast());
    }

    proptest! {
        /// The pipeline's walk over arbitrary bytes: every view that checks out is read in full.
        #[test]
        fn chain_never_panics(data in proptest::collection::vec(any::<u8>(), 0..120)) {
            let Ok(eth) = EthernetFrame::new_checked(&data[..]) else { return Ok(()) };
            let _ = arp::ArpPacket::new_checked(eth.payload()).map(|a| arp::ArpRepr::parse(&a));
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { return Ok(()) };
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            if let Ok(t) = TcpPacket::new_checked(ip.payload()) {
                let _ = (t.parse_options(), t.verify_checksum(s, d), t.payload());
            }
            if let Ok(u) = UdpPacket::new_checked(ip.payload()) {
                let _ = (u.verify_checksum(s, d), u.payload());
            }
            if let Ok(i) = IcmpPacket::new_checked(ip.payload()) {
                let _ = (i.embedded(), i.verify_checksum(), i.data());
            }
        }
    }
}
