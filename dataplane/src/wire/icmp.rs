//! ICMP for IPv4 (RFC 792): the queries (echo and its kin), and the errors a router sends and
//! translates.
//!
//! ```text
//!  0       1       2               4               6               8
//! +-------+-------+---------------+---------------+---------------+----------
//! | type  | code  |   checksum    | ident (echo)  |  seq (echo)   | data ...
//! +-------+-------+---------------+---------------+---------------+----------
//!                                 | unused (errors)               | quoted IPv4 header + 8
//! ```
//!
//! The view covers the whole ICMP message: pass exactly the IP payload (`Ipv4Packet::payload`),
//! since the checksum covers everything up to the end of the buffer.

use std::net::Ipv4Addr;

use super::checksum;
use super::ipv4::{self, IpProtocol, Ipv4Packet};
use super::tcp::{QuotedTcp, SeqNumber};
use super::{l4_ports, Result, WireError};

enum_with_unknown! {
    /// The ICMP message type.
    pub enum IcmpType(u8) {
        EchoReply = 0,
        DstUnreachable = 3,
        SourceQuench = 4,
        Redirect = 5,
        EchoRequest = 8,
        TimeExceeded = 11,
        ParamProblem = 12,
        Timestamp = 13,
        TimestampReply = 14,
        InfoRequest = 15,
        InfoReply = 16,
        AddressMaskRequest = 17,
        AddressMaskReply = 18,
        ExtendedEchoRequest = 42,
        ExtendedEchoReply = 43,
    }
}

impl IcmpType {
    /// Error messages, which quote the invoking datagram (RFC 792, RFC 1812 §4.3.2.3).
    #[inline]
    pub fn is_error(self) -> bool {
        matches!(
            self,
            IcmpType::DstUnreachable
                | IcmpType::SourceQuench
                | IcmpType::Redirect
                | IcmpType::TimeExceeded
                | IcmpType::ParamProblem
        )
    }

    /// Query requests: echo, timestamp, information, address mask (RFC 792, RFC 950) and
    /// extended echo (RFC 8335). Each carries an identifier at bytes 4..6 that its reply
    /// repeats: the "port" of an ICMP flow, as in pf and Linux's conntrack.
    #[inline]
    pub fn is_query_request(self) -> bool {
        matches!(
            self,
            IcmpType::EchoRequest
                | IcmpType::Timestamp
                | IcmpType::InfoRequest
                | IcmpType::AddressMaskRequest
                | IcmpType::ExtendedEchoRequest
        )
    }

    /// The replies of [`IcmpType::is_query_request`]'s requests.
    #[inline]
    pub fn is_query_reply(self) -> bool {
        matches!(
            self,
            IcmpType::EchoReply
                | IcmpType::TimestampReply
                | IcmpType::InfoReply
                | IcmpType::AddressMaskReply
                | IcmpType::ExtendedEchoReply
        )
    }
}

/// Destination Unreachable codes (RFC 792, RFC 1812 §5.2.7.1).
pub const CODE_NET_UNREACHABLE: u8 = 0;
pub const CODE_HOST_UNREACHABLE: u8 = 1;
pub const CODE_PROTO_UNREACHABLE: u8 = 2;
pub const CODE_PORT_UNREACHABLE: u8 = 3;
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Communication administratively prohibited: what a `block return` rule sends (RFC 1812).
pub const CODE_ADMIN_PROHIBITED: u8 = 13;
/// Time Exceeded codes.
pub const CODE_TTL_EXCEEDED_IN_TRANSIT: u8 = 0;
pub const CODE_FRAG_REASSEMBLY_EXCEEDED: u8 = 1;

/// Length of the ICMP header (type, code, checksum and the 4 type-specific bytes).
pub const HEADER_LEN: usize = 8;
/// How much of the invoking datagram's payload an error quotes (RFC 792: 64 bits).
pub const QUOTED_PAYLOAD_LEN: usize = 8;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const UNUSED: Field = 4..8;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const NEXT_HOP_MTU: Field = 6..8;
    pub const DATA: usize = 8;
}

/// A view of an ICMP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> IcmpPacket<T> {
        IcmpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<IcmpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// The buffer holds the 8-byte header every ICMP message has.
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

    #[inline]
    pub fn msg_type(&self) -> IcmpType {
        IcmpType::from(self.buffer.as_ref()[field::TYPE])
    }

    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[2], d[3]])
    }

    /// Bytes 4..6: the identifier of a query or its reply (echo, timestamp, information,
    /// address mask, extended echo: [`IcmpType::is_query_request`]).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[4], d[5]])
    }

    /// Bytes 6..8, meaningful for echo request/reply only.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[6], d[7]])
    }

    /// Bytes 6..8, the next-hop MTU of a Destination Unreachable / fragmentation needed
    /// (RFC 1191); zero in other errors.
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[6], d[7]])
    }

    /// Everything after the 8-byte header: echo data, or an error's quoted datagram.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }

    /// For an error message, the quoted invoking datagram: its IPv4 header and at least the
    /// first 8 bytes of its payload (fewer only if the datagram itself was shorter). Routers
    /// may quote more (RFC 1812 §4.3.2.3); the whole quote is returned.
    ///
    /// The quote is truncated by design, so wrap it with [`Ipv4Packet::new_checked_quoted`],
    /// not `new_checked`. Its first 8 payload bytes hold the TCP/UDP ports (and the TCP
    /// sequence number) or the ICMP echo header: what NAT needs to find the state.
    ///
    /// Fails for non-error types and for quotes too short to hold all that.
    #[inline]
    pub fn embedded(&self) -> Result<&[u8]> {
        if !self.msg_type().is_error() {
            return Err(WireError);
        }
        let data = self.data();
        let inner = Ipv4Packet::new_checked_quoted(data)?;
        let header_len = inner.header_len();
        let payload_len = usize::from(inner.total_len()) - header_len;
        if data.len() < header_len + payload_len.min(QUOTED_PAYLOAD_LEN) {
            return Err(WireError);
        }
        Ok(data)
    }

    /// The checksum over the whole message verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buffer.as_ref())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    #[inline]
    pub fn set_msg_type(&mut self, value: IcmpType) {
        self.buffer.as_mut()[field::TYPE] = u8::from(value);
    }

    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        self.buffer.as_mut()[field::ECHO_IDENT].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        self.buffer.as_mut()[field::ECHO_SEQNO].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        self.buffer.as_mut()[field::NEXT_HOP_MTU].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }

    /// Recomputes the checksum over the whole message.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::data(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// NAT's rewrite of a query's id (a query or its reply: the "port" of an ICMP flow, the
    /// same field whichever side is translated), the checksum patched incrementally. ICMP sums
    /// no pseudo-header: an address change leaves it alone. A buffer shorter than the header
    /// (a quote cut short) is left alone.
    #[inline]
    pub fn translate_query_id(&mut self, id: u16) {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return;
        }
        let old = self.echo_ident();
        self.set_echo_ident(id);
        self.set_checksum(update_checksum_u16(self.checksum(), old, id));
    }

    /// Turns an echo request into its reply in place: type 8 -> 0, checksum patched (RFC 1624)
    /// rather than recomputed over the data. Swapping the IP addresses, the other half of a
    /// reply, changes neither the IP nor the ICMP checksum.
    #[inline]
    pub fn echo_request_to_reply(&mut self) {
        let d = self.buffer.as_ref();
        let old = u16::from_be_bytes([d[field::TYPE], d[field::CODE]]);
        let new = u16::from_be_bytes([u8::from(IcmpType::EchoReply), d[field::CODE]]);
        let c = update_checksum_u16(self.checksum(), old, new);
        self.set_msg_type(IcmpType::EchoReply);
        self.set_checksum(c);
    }
}

/// [`checksum::update_u16`] for an ICMP checksum: a result of `0x0000` is stored as `0xffff`.
///
/// RFC 1624 eqn. 3 yields `0x0000` when the new sum is zero in ones' complement, and that has
/// two forms: the data sums to `0xffff` (where `0x0000` and `0xffff` both verify) or the data is
/// all zeros (where only `0xffff` verifies). An ICMP message can be all zeros: an echo request
/// with id 0, seq 0 and no data turns into an all-zero echo reply, whose patched checksum
/// `0x0000` the asker drops (found by the `wire_icmp` fuzz target). `0xffff` verifies in both
/// cases, and ICMP, unlike UDP, gives `0` no meaning of its own.
#[inline]
pub fn update_checksum_u16(csum: u16, old: u16, new: u16) -> u16 {
    match checksum::update_u16(csum, old, new) {
        0 => 0xffff,
        c => c,
    }
}

/// The datagram quoted in an ICMP error, as far as a firewall may read it: its IPv4 header and
/// the first 8 bytes of its payload (RFC 792), which hold TCP's and UDP's ports, TCP's sequence
/// number and an echo query's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedPacket {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: IpProtocol,
    /// TCP's and UDP's ports, an echo query's id as both; 0 for other protocols.
    pub src_port: u16,
    pub dst_port: u16,
    /// A TCP segment's sequence number (a firewall checks it against the flow's window).
    pub tcp_seq: Option<SeqNumber>,
}

impl QuotedPacket {
    /// Reads the quote (the ICMP error's data, from the quoted IPv4 header on). `Err` when the
    /// header is malformed ([`Ipv4Packet::new_checked_quoted`]), a TCP quote holds fewer than 8
    /// bytes (its sequence number cannot be checked: pf drops such an error as short), a UDP
    /// quote fewer than 4, or an ICMP quote is anything but a whole query (or reply) header.
    pub fn parse(quote: &[u8]) -> Result<QuotedPacket> {
        let ip = Ipv4Packet::new_checked_quoted(quote)?;
        let l4 = quote.get(ip.header_len()..).ok_or(WireError)?;
        let protocol = ip.next_header();
        let mut tcp_seq = None;
        let (src_port, dst_port) = match protocol {
            IpProtocol::Tcp => {
                let t = QuotedTcp::parse(l4)?;
                tcp_seq = Some(t.seq_number);
                (t.src_port, t.dst_port)
            }
            IpProtocol::Udp => l4_ports(l4).ok_or(WireError)?,
            IpProtocol::Icmp => {
                let icmp = IcmpPacket::new_checked(l4)?;
                let t = icmp.msg_type();
                if !(t.is_query_request() || t.is_query_reply()) {
                    return Err(WireError);
                }
                (icmp.echo_ident(), icmp.echo_ident())
            }
            _ => (0, 0),
        };
        Ok(QuotedPacket {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            protocol,
            src_port,
            dst_port,
            tcp_seq,
        })
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for IcmpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The ICMP messages tandem parses and builds. `data_len` is the length after the 8-byte
/// header: echo data, or the quote of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpRepr {
    EchoRequest {
        ident: u16,
        seq: u16,
        data_len: usize,
    },
    EchoReply {
        ident: u16,
        seq: u16,
        data_len: usize,
    },
    DstUnreachable {
        code: u8,
        data_len: usize,
    },
    TimeExceeded {
        code: u8,
        data_len: usize,
    },
}

impl IcmpRepr {
    /// Parses a message whose checksum verifies; errors must quote a usable datagram
    /// ([`IcmpPacket::embedded`]). Other types are [`WireError`]: the caller counts them.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &IcmpPacket<T>) -> Result<IcmpRepr> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(WireError);
        }
        let data_len = packet.data().len();
        let (ident, seq, code) = (packet.echo_ident(), packet.echo_seq_no(), packet.msg_code());
        match (packet.msg_type(), code) {
            (IcmpType::EchoRequest, 0) => Ok(IcmpRepr::EchoRequest {
                ident,
                seq,
                data_len,
            }),
            (IcmpType::EchoReply, 0) => Ok(IcmpRepr::EchoReply {
                ident,
                seq,
                data_len,
            }),
            (IcmpType::DstUnreachable, _) => {
                packet.embedded()?;
                Ok(IcmpRepr::DstUnreachable { code, data_len })
            }
            (IcmpType::TimeExceeded, _) => {
                packet.embedded()?;
                Ok(IcmpRepr::TimeExceeded { code, data_len })
            }
            _ => Err(WireError),
        }
    }

    /// Length of the whole message.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        match *self {
            IcmpRepr::EchoRequest { data_len, .. }
            | IcmpRepr::EchoReply { data_len, .. }
            | IcmpRepr::DstUnreachable { data_len, .. }
            | IcmpRepr::TimeExceeded { data_len, .. } => HEADER_LEN + data_len,
        }
    }

    /// Writes the header and fills the checksum over the whole buffer. Put the data in place
    /// first, and pass a buffer of exactly [`buffer_len`](Self::buffer_len) bytes: the checksum
    /// covers every byte of it.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut IcmpPacket<T>) {
        match *self {
            IcmpRepr::EchoRequest { ident, seq, .. } | IcmpRepr::EchoReply { ident, seq, .. } => {
                let t = match self {
                    IcmpRepr::EchoRequest { .. } => IcmpType::EchoRequest,
                    _ => IcmpType::EchoReply,
                };
                packet.set_msg_type(t);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq);
            }
            IcmpRepr::DstUnreachable { code, .. } | IcmpRepr::TimeExceeded { code, .. } => {
                let t = match self {
                    IcmpRepr::DstUnreachable { .. } => IcmpType::DstUnreachable,
                    _ => IcmpType::TimeExceeded,
                };
                packet.set_msg_type(t);
                packet.set_msg_code(code);
                packet.buffer.as_mut()[field::UNUSED].fill(0);
            }
        }
        packet.fill_checksum();
    }
}

/// The error [`emit_icmp_error`] builds, with its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpErrorKind {
    /// Type 3 with a `CODE_*` unreachable code.
    DstUnreachable(u8),
    /// Type 3 code 4 with the MTU of the next hop (RFC 1191): the answer to a DF datagram too
    /// big for the egress link, without which path MTU discovery black-holes.
    FragNeeded { next_hop_mtu: u16 },
    /// Type 11 with [`CODE_TTL_EXCEEDED_IN_TRANSIT`] or [`CODE_FRAG_REASSEMBLY_EXCEEDED`].
    TimeExceeded(u8),
}

/// How many bytes of `invoking` an error quotes: its header (IHL, or 20 bytes if IHL is
/// nonsense) and up to 8 payload bytes, never past its total length (so Ethernet padding is
/// not quoted) nor past the slice.
fn quote_len(invoking: &[u8]) -> usize {
    let mut header_len = ipv4::HEADER_LEN;
    let mut end = usize::MAX;
    if invoking.len() >= ipv4::HEADER_LEN {
        let p = Ipv4Packet::new_unchecked(invoking);
        if p.version() == 4 && p.header_len() >= ipv4::HEADER_LEN {
            header_len = p.header_len();
        }
        end = usize::from(p.total_len()).max(header_len);
    }
    (header_len + QUOTED_PAYLOAD_LEN)
        .min(end)
        .min(invoking.len())
}

/// Writes an ICMP error about `invoking_ip_packet` (the datagram as received, from its IPv4
/// header on) into `buf` and returns the message length: the 8-byte header, the quoted IPv4
/// header and the first 8 bytes of its payload (RFC 792; RFC 1812 §4.3.2.3 allows more, we quote
/// the minimum that NAT and hosts need). The caller adds the IPv4 header (protocol ICMP, to the
/// invoking source) and the Ethernet header.
///
/// This builds; it does not decide. Whether an error may be sent at all (RFC 1812 §4.3.2.7:
/// not about an ICMP error, a non-first fragment, a broadcast or multicast) is
/// [`may_send_error`] plus the caller's link-layer check, and rate limiting is the caller's.
///
/// # Panics
///
/// If `buf` is shorter than the message (at most 8 + 60 + 8 = 76 bytes).
pub fn emit_icmp_error(buf: &mut [u8], kind: IcmpErrorKind, invoking_ip_packet: &[u8]) -> usize {
    let quoted = quote_len(invoking_ip_packet);
    let len = HEADER_LEN + quoted;
    assert!(buf.len() >= len, "ICMP error buffer shorter than {len}");
    let buf = &mut buf[..len];
    buf[HEADER_LEN..].copy_from_slice(&invoking_ip_packet[..quoted]);
    let (msg_type, code, mtu) = match kind {
        IcmpErrorKind::DstUnreachable(code) => (IcmpType::DstUnreachable, code, 0),
        IcmpErrorKind::FragNeeded { next_hop_mtu } => {
            (IcmpType::DstUnreachable, CODE_FRAG_NEEDED, next_hop_mtu)
        }
        IcmpErrorKind::TimeExceeded(code) => (IcmpType::TimeExceeded, code, 0),
    };
    let mut packet = IcmpPacket::new_unchecked(buf);
    packet.set_msg_type(msg_type);
    packet.set_msg_code(code);
    // Bytes 4..8 are unused (zero), except that frag-needed carries the MTU in 6..8.
    packet.buffer[field::UNUSED].fill(0);
    packet.set_next_hop_mtu(mtu);
    packet.fill_checksum();
    len
}

/// RFC 1812 §4.3.2.7, the part visible in the datagram: no ICMP error about an ICMP error (or
/// an empty or unknown-type ICMP message), about a fragment other than the first, to or from a
/// broadcast, multicast, unspecified or loopback address. The caller still has to refuse link-layer broadcasts and
/// directed broadcasts of its own subnets, which this cannot see.
pub fn may_send_error<T: AsRef<[u8]>>(invoking: &Ipv4Packet<T>) -> bool {
    let (src, dst) = (invoking.src_addr(), invoking.dst_addr());
    if invoking.frag_offset() != 0
        || dst.is_broadcast()
        || dst.is_multicast()
        || src.is_broadcast()
        || src.is_multicast()
        || src.is_unspecified()
        || src.is_loopback()
    {
        return false;
    }
    if invoking.next_header() == IpProtocol::Icmp {
        return match invoking.payload().first() {
            Some(&t) => {
                !IcmpType::from(t).is_error() && !matches!(IcmpType::from(t), IcmpType::Unknown(_))
            }
            None => false,
        };
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Ipv4Repr;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    // The echo request of ipv4::test: ident 1, seq 2, 4 bytes of data.
    static ECHO: [u8; 12] = [
        0x08, 0x00, 0x80, 0x63, 0x00, 0x01, 0x00, 0x02, 0xaa, 0xbb, 0xcc, 0xdd,
    ];

    // A UDP datagram 10.0.0.2:1234 -> 10.0.1.9:53 with TTL 1 and 4 bytes of payload, and the
    // Time Exceeded a router sends about it (header + 8 payload bytes quoted; the payload's last
    // 4 bytes are not).
    static UDP_TTL1: [u8; 32] = [
        0x45, 0x00, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00, 0x01, 0x11, 0x64, 0xc3, // ip
        0x0a, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x01, 0x09, // ip addresses
        0x04, 0xd2, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, // udp header, no checksum
        0xde, 0xad, 0xbe, 0xef, // payload
    ];
    static TIME_EXCEEDED: [u8; 36] = [
        0x0b, 0x00, 0xef, 0xec, 0x00, 0x00, 0x00, 0x00, // icmp header
        0x45, 0x00, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00, 0x01, 0x11, 0x64, 0xc3, // quoted ip
        0x0a, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x01, 0x09, //
        0x04, 0xd2, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, // quoted udp header
    ];

    #[test]
    fn goldens_are_consistent() {
        let ip = Ipv4Packet::new_checked(&UDP_TTL1[..]).unwrap();
        assert!(ip.verify_checksum());
        assert!(IcmpPacket::new_checked(&ECHO[..])
            .unwrap()
            .verify_checksum());
        assert!(IcmpPacket::new_checked(&TIME_EXCEEDED[..])
            .unwrap()
            .verify_checksum());
    }

    #[test]
    fn quoted_packet() {
        let error = IcmpPacket::new_checked(&TIME_EXCEEDED[..]).unwrap();
        let q = QuotedPacket::parse(error.data()).unwrap();
        assert_eq!(
            q,
            QuotedPacket {
                src: Ipv4Addr::new(10, 0, 0, 2),
                dst: Ipv4Addr::new(10, 0, 1, 9),
                protocol: IpProtocol::Udp,
                src_port: 1234,
                dst_port: 53,
                tcp_seq: None,
            }
        );
        // UDP needs the ports only; TCP its sequence number too (8 bytes).
        let data = error.data();
        assert!(QuotedPacket::parse(&data[..24]).is_ok());
        assert_eq!(QuotedPacket::parse(&data[..23]), Err(WireError));
        let mut tcp = data.to_vec();
        tcp[9] = ipv4::proto::TCP;
        assert_eq!(QuotedPacket::parse(&tcp[..27]), Err(WireError));
        let t = QuotedPacket::parse(&tcp).unwrap();
        assert_eq!((t.src_port, t.dst_port), (1234, 53));
        assert_eq!(t.tcp_seq, Some(SeqNumber(0x000c_0000)));
        // An echo's id as both ports; any other ICMP message quoted is refused.
        let mut echo = data[..20].to_vec();
        echo[9] = ipv4::proto::ICMP;
        echo.extend_from_slice(&ECHO[..8]);
        let e = QuotedPacket::parse(&echo).unwrap();
        assert_eq!((e.src_port, e.dst_port, e.tcp_seq), (1, 1, None));
        echo[20] = 3;
        assert_eq!(QuotedPacket::parse(&echo), Err(WireError));
        // Another protocol: addresses, no ports.
        tcp[9] = ipv4::proto::CARP;
        assert_eq!(QuotedPacket::parse(&tcp[..20]).unwrap().src_port, 0);
    }

    #[test]
    fn deconstruct_echo() {
        let p = IcmpPacket::new_checked(&ECHO[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (IcmpType::EchoRequest, 0));
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (1, 2));
        assert_eq!(p.data(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(p.embedded(), Err(WireError));
        assert_eq!(
            IcmpRepr::parse(&p).unwrap(),
            IcmpRepr::EchoRequest {
                ident: 1,
                seq: 2,
                data_len: 4
            }
        );
    }

    #[test]
    fn construct_echo() {
        let mut buf = [0u8; 12];
        buf[8..].copy_from_slice(&ECHO[8..]);
        let mut p = IcmpPacket::new_unchecked(&mut buf[..]);
        p.set_msg_type(IcmpType::EchoRequest);
        p.set_msg_code(0);
        p.set_echo_ident(1);
        p.set_echo_seq_no(2);
        p.fill_checksum();
        assert_eq!(buf, ECHO);
        let mut buf2 = [0xffu8; 12];
        buf2[8..].copy_from_slice(&ECHO[8..]);
        IcmpRepr::EchoRequest {
            ident: 1,
            seq: 2,
            data_len: 4,
        }
        .emit(&mut IcmpPacket::new_unchecked(&mut buf2[..]));
        assert_eq!(buf2, ECHO);
    }

    #[test]
    fn echo_reply_in_place() {
        let mut buf = ECHO;
        let mut p = IcmpPacket::new_unchecked(&mut buf[..]);
        p.echo_request_to_reply();
        assert!(p.verify_checksum());
        let c = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), c);
        assert_eq!(
            IcmpRepr::parse(&p).unwrap(),
            IcmpRepr::EchoReply {
                ident: 1,
                seq: 2,
                data_len: 4
            }
        );
    }

    #[test]
    fn build_time_exceeded() {
        let mut buf = [0xeeu8; 128];
        let kind = IcmpErrorKind::TimeExceeded(CODE_TTL_EXCEEDED_IN_TRANSIT);
        let n = emit_icmp_error(&mut buf, kind, &UDP_TTL1);
        assert_eq!(n, 36);
        assert_eq!(buf[..n], TIME_EXCEEDED);
        let p = IcmpPacket::new_checked(&buf[..n]).unwrap();
        assert_eq!(
            IcmpRepr::parse(&p).unwrap(),
            IcmpRepr::TimeExceeded {
                code: 0,
                data_len: 28
            }
        );
        let q = Ipv4Packet::new_checked_quoted(p.embedded().unwrap()).unwrap();
        assert_eq!(q.src_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(&q.payload()[..4], &[0x04, 0xd2, 0x00, 0x35]);
    }

    #[test]
    fn quote_bounds() {
        // Ethernet padding after the datagram is not quoted.
        let mut padded = [0u8; 46];
        padded[..32].copy_from_slice(&UDP_TTL1);
        padded[32..].fill(0x55);
        let mut buf = [0u8; 128];
        let kind = IcmpErrorKind::DstUnreachable(CODE_PORT_UNREACHABLE);
        assert_eq!(emit_icmp_error(&mut buf, kind, &padded), 36);

        // A datagram with 2 bytes of payload: all of it is quoted, and it is a valid quote.
        let mut short = [0u8; 22];
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 2),
            dst: Ipv4Addr::new(10, 0, 1, 9),
            protocol: IpProtocol::Unknown(253),
            payload_len: 2,
            ttl: 1,
            dscp: 0,
        };
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut short[..]));
        let n = emit_icmp_error(&mut buf, kind, &short);
        assert_eq!(n, 8 + 22);
        let p = IcmpPacket::new_checked(&buf[..n]).unwrap();
        assert_eq!(p.embedded().unwrap().len(), 22);
        assert_eq!(
            IcmpRepr::parse(&p).unwrap(),
            IcmpRepr::DstUnreachable {
                code: CODE_PORT_UNREACHABLE,
                data_len: 22
            }
        );

        // IP options are quoted whole: header (24) + 8.
        let mut opts = [0u8; 40];
        opts[0] = 0x46;
        opts[3] = 40;
        assert_eq!(emit_icmp_error(&mut buf, kind, &opts), 8 + 24 + 8);

        // Garbage is quoted as far as it goes and never panics.
        assert_eq!(emit_icmp_error(&mut buf, kind, &[1, 2, 3]), 11);
    }

    #[test]
    fn build_frag_needed() {
        let mut buf = [0u8; 76];
        let n = emit_icmp_error(
            &mut buf,
            IcmpErrorKind::FragNeeded { next_hop_mtu: 1400 },
            &UDP_TTL1,
        );
        let p = IcmpPacket::new_checked(&buf[..n]).unwrap();
        assert_eq!(
            (p.msg_type(), p.msg_code()),
            (IcmpType::DstUnreachable, CODE_FRAG_NEEDED)
        );
        assert_eq!((p.next_hop_mtu(), &buf[4..6]), (1400, &[0u8, 0][..]));
        assert!(p.verify_checksum());
        assert_eq!(p.embedded().unwrap(), &UDP_TTL1[..28]);
        let s = etherparse::Icmpv4Slice::from_slice(&buf[..n]).unwrap();
        let etherparse::Icmpv4Type::DestinationUnreachable(h) = s.icmp_type() else {
            panic!("{:?}", s.icmp_type())
        };
        assert_eq!(
            h,
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 }
        );
    }

    #[test]
    #[should_panic]
    fn error_buffer_too_small() {
        emit_icmp_error(&mut [0u8; 35], IcmpErrorKind::TimeExceeded(0), &UDP_TTL1);
    }

    #[test]
    fn embedded_rejects_short_quotes() {
        let p = IcmpPacket::new_checked(&TIME_EXCEEDED[..35]).unwrap();
        assert_eq!(p.embedded(), Err(WireError), "7 payload bytes of 12");
        let p = IcmpPacket::new_checked(&TIME_EXCEEDED[..27]).unwrap();
        assert_eq!(p.embedded(), Err(WireError), "truncated header");
        let mut b = TIME_EXCEEDED;
        b[0] = 5; // redirect: an error type, quote fine
        assert!(IcmpPacket::new_checked(&b[..]).unwrap().embedded().is_ok());
    }

    #[test]
    fn policy() {
        let ok = Ipv4Packet::new_checked(&UDP_TTL1[..]).unwrap();
        assert!(may_send_error(&ok));
        let with = |f: &dyn Fn(&mut Ipv4Packet<&mut [u8]>)| {
            let mut b = UDP_TTL1;
            f(&mut Ipv4Packet::new_unchecked(&mut b[..]));
            may_send_error(&Ipv4Packet::new_checked(&b[..]).unwrap())
        };
        assert!(!with(&|p| p.set_dst_addr(Ipv4Addr::BROADCAST)));
        assert!(!with(&|p| p.set_dst_addr(Ipv4Addr::new(224, 0, 0, 18))));
        assert!(!with(&|p| p.set_src_addr(Ipv4Addr::UNSPECIFIED)));
        assert!(!with(&|p| p.set_frag_offset(8)));
        assert!(with(&|p| p.set_more_frags(true)), "first fragment is fine");
        assert!(!with(&|p| {
            p.set_next_header(IpProtocol::Icmp);
            p.payload_mut()[0] = 3;
        }));
        assert!(with(&|p| {
            p.set_next_header(IpProtocol::Icmp);
            p.payload_mut()[0] = 8;
        }));
    }

    #[test]
    fn impossible_len() {
        assert_eq!(IcmpPacket::new_checked(&ECHO[..7]), Err(WireError));
        let p = IcmpPacket::new_checked(&ECHO[..8]).unwrap();
        assert!(p.data().is_empty());
        let mut b = ECHO;
        b[2] ^= 0xff;
        assert_eq!(
            IcmpRepr::parse(&IcmpPacket::new_checked(&b[..]).unwrap()),
            Err(WireError)
        );
    }

    #[test]
    fn against_etherparse() {
        let s = etherparse::Icmpv4Slice::from_slice(&ECHO).unwrap();
        let p = IcmpPacket::new_checked(&ECHO[..]).unwrap();
        assert_eq!(s.type_u8(), u8::from(p.msg_type()));
        assert_eq!(s.checksum(), p.checksum());
        assert_eq!(s.icmp_type().calc_checksum(s.payload()), p.checksum());
        let s = etherparse::Icmpv4Slice::from_slice(&TIME_EXCEEDED).unwrap();
        assert_eq!(s.icmp_type().calc_checksum(s.payload()), 0xefec);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = IcmpPacket::new_checked(&data[..]) {
                let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident(), p.echo_seq_no());
                let _ = (p.data(), p.verify_checksum(), IcmpRepr::parse(&p));
                if let Ok(e) = p.embedded() {
                    let q = Ipv4Packet::new_checked_quoted(e).unwrap();
                    let _ = (q.payload(), q.options(), q.src_addr());
                }
            }
            let mut buf = [0u8; 76];
            let n = emit_icmp_error(&mut buf, IcmpErrorKind::DstUnreachable(13), &data);
            prop_assert!(IcmpPacket::new_checked(&buf[..n]).unwrap().verify_checksum());
            if let Ok(ip) = Ipv4Packet::new_checked(&data[..]) {
                let _ = may_send_error(&ip);
                // A quote of a valid datagram is always a valid embedded datagram.
                let p = IcmpPacket::new_checked(&buf[..n]).unwrap();
                prop_assert!(p.embedded().is_ok());
            }
        }
    }

    /// Fuzz finding (wire_icmp): an all-zero echo request (id 0, seq 0, no data) became an
    /// echo reply whose incrementally patched checksum was 0x0000, which does not verify.
    #[test]
    fn all_zero_echo_reply_keeps_a_valid_checksum() {
        let mut m = [8u8, 0, 0, 0, 0, 0, 0, 0];
        let mut p = IcmpPacket::new_unchecked(&mut m[..]);
        p.fill_checksum();
        assert!(p.verify_checksum());
        p.echo_request_to_reply();
        assert_eq!(p.msg_type(), IcmpType::EchoReply);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum());
    }

    proptest! {
        #[test]
        fn icmp_checksum_update_always_verifies(mut msg in prop::collection::vec(any::<u8>(), 8..64), id in any::<u16>()) {
            let mut p = IcmpPacket::new_unchecked(&mut msg[..]);
            p.fill_checksum();
            let old = p.echo_ident();
            let c = update_checksum_u16(p.checksum(), old, id);
            p.set_echo_ident(id);
            p.set_checksum(c);
            prop_assert!(p.verify_checksum());
        }
    }
}
