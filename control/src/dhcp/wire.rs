//! DHCP frames: Ethernet/IPv4/UDP with our own views (`tandem_dataplane::wire`), the BOOTP
//! message and its options with `dhcproto`. Nothing here trusts the bytes: every failure is a
//! [`Malformed`] that the server counts.

use std::net::Ipv4Addr;

use dhcproto::v4::{HType, Message, MessageType, Opcode};
use dhcproto::{Decodable, Decoder, Encodable};
use tandem_dataplane::wire::ethernet::{self, EtherType, EthernetFrame, EthernetRepr};
use tandem_dataplane::wire::ipv4::{self, IpProtocol, Ipv4Packet, Ipv4Repr};
use tandem_dataplane::wire::udp::{self, UdpPacket, UdpRepr};
use tandem_dataplane::wire::MacAddr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
/// BOOTP's minimum message (RFC 1542 §3.2.1): some clients drop shorter replies.
const MIN_MESSAGE: usize = 300;

/// A frame that is not a DHCP request we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// A DHCP request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub src_mac: MacAddr,
    pub msg: Message,
    pub kind: MessageType,
    /// The client's hardware address (chaddr, checked to be 6 bytes of Ethernet).
    pub chaddr: [u8; 6],
}

/// Reads a frame the dataplane handed over: IPv4 (checksum), UDP to port 67 (checksum), a
/// BOOTREQUEST on Ethernet with a message type.
pub fn parse(frame: &[u8]) -> Result<Request, Malformed> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| Malformed)?;
    if eth.ethertype() != EtherType::Ipv4 {
        return Err(Malformed);
    }
    let ipp = Ipv4Packet::new_checked(eth.payload()).map_err(|_| Malformed)?;
    let ip = Ipv4Repr::parse(&ipp).map_err(|_| Malformed)?;
    if ip.protocol != IpProtocol::Udp {
        return Err(Malformed);
    }
    let udpp = UdpPacket::new_checked(ipp.payload()).map_err(|_| Malformed)?;
    let u = UdpRepr::parse(&udpp, ip.src, ip.dst).map_err(|_| Malformed)?;
    if u.dst_port != SERVER_PORT {
        return Err(Malformed);
    }
    if !options_fit_dhcproto(udpp.payload()) {
        return Err(Malformed);
    }
    let msg = Message::decode(&mut Decoder::new(udpp.payload())).map_err(|_| Malformed)?;
    // `Message::chaddr` slices by hlen: anything but 6 (Ethernet) is refused before it is read.
    if msg.opcode() != Opcode::BootRequest || msg.htype() != HType::Eth || msg.hlen() != 6 {
        return Err(Malformed);
    }
    let kind = msg.opts().msg_type().ok_or(Malformed)?;
    let mut chaddr = [0u8; 6];
    chaddr.copy_from_slice(msg.chaddr());
    Ok(Request {
        src_mac: eth.src_addr(),
        msg,
        kind,
        chaddr,
    })
}

/// The BOOTP fixed fields and the magic cookie: the options start here.
const OPTIONS_AT: usize = 240;

/// Whether the options' lengths are ones `dhcproto` 0.15 decodes without a panic. It takes the
/// lengths of a few options on trust: `debug_assert!`s on rapid commit (80, empty), client
/// FQDN (81, at least 3), client network interface (94, 3) and the bulk leasequery times
/// (152-155, 4), and a `len - 1` on the leasequery status code (151) that underflows when
/// empty. In a release build those become reads of the wrong length, which fail; in a debug
/// build (the tests') they would panic the DHCP thread. A request carrying them wrong is
/// malformed either way. A truncated option is left to `dhcproto`, which refuses it.
///
/// `dhcproto` joins consecutive copies of one option (RFC 3396's long options; a pad ends the
/// run) and decodes the join: the length checked is the run's, not each copy's.
fn options_fit_dhcproto(msg: &[u8]) -> bool {
    // The run of consecutive copies being summed: its code and total length.
    let mut run: Option<(u8, usize)> = None;
    let mut at = OPTIONS_AT;
    while let Some(&code) = msg.get(at) {
        if code == 0 || code == 255 {
            if !run.take().is_none_or(decodes_whole) {
                return false;
            }
            if code == 255 {
                break;
            }
            at += 1;
            continue;
        }
        let Some(&len) = msg.get(at + 1) else {
            break;
        };
        let len = usize::from(len);
        run = match run {
            Some((c, total)) if c == code => Some((c, total + len)),
            Some(other) if !decodes_whole(other) => return false,
            _ => Some((code, len)),
        };
        at += 2 + len;
    }
    run.is_none_or(decodes_whole)
}

/// Whether `dhcproto` decodes option `code` joined to `len` bytes without tripping one of the
/// length assertions [`options_fit_dhcproto`] lists.
fn decodes_whole((code, len): (u8, usize)) -> bool {
    match code {
        80 => len == 0,
        81 => len >= 3,
        94 => len == 3,
        151 => len >= 1,
        152..=155 => len == 4,
        _ => true,
    }
}

/// Where a reply goes, at each layer.
#[derive(Debug, Clone, Copy)]
pub struct Addressing {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
}

/// Encodes `msg` (padded to BOOTP's 300 bytes) in a whole frame from port 67 to port 68.
pub fn build(msg: &Message, a: &Addressing) -> Option<Vec<u8>> {
    let mut payload = msg.to_vec().ok()?;
    if payload.len() < MIN_MESSAGE {
        payload.resize(MIN_MESSAGE, 0);
    }
    Some(udp_frame(&payload, a, SERVER_PORT, CLIENT_PORT))
}

/// `payload` in a whole Ethernet/IPv4/UDP frame from `src_port` to `dst_port`, checksums
/// filled (the fuzz target frames a client's message with it).
pub fn udp_frame(payload: &[u8], a: &Addressing, src_port: u16, dst_port: u16) -> Vec<u8> {
    let udp_len = udp::HEADER_LEN + payload.len();
    let total = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp_len;
    let mut buf = vec![0u8; total];
    EthernetRepr {
        src_addr: a.src_mac,
        dst_addr: a.dst_mac,
        ethertype: EtherType::Ipv4,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    let ip = &mut buf[ethernet::HEADER_LEN..];
    Ipv4Repr {
        src: a.src_ip,
        dst: a.dst_ip,
        protocol: IpProtocol::Udp,
        payload_len: udp_len,
        ttl: 64,
        dscp: 0,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut *ip));
    let u = &mut ip[ipv4::HEADER_LEN..];
    u[udp::HEADER_LEN..].copy_from_slice(payload);
    UdpRepr {
        src_port,
        dst_port,
        payload_len: payload.len(),
    }
    .emit(&mut UdpPacket::new_unchecked(&mut *u), a.src_ip, a.dst_ip);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{DhcpOption, Flags, OptionCode};

    fn discover(mac: [u8; 6]) -> Message {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(0x1234_5678, z, z, z, z, &mac);
        m.set_flags(Flags::default().set_broadcast());
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Discover));
        m.opts_mut().insert(DhcpOption::Hostname("client".into()));
        m
    }

    fn frame(m: &Message) -> Vec<u8> {
        // A client's frame is a server's frame with ports swapped: build one, swap, re-sum.
        let a = Addressing {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr::BROADCAST,
            src_ip: Ipv4Addr::UNSPECIFIED,
            dst_ip: Ipv4Addr::BROADCAST,
        };
        let mut f = build(m, &a).unwrap();
        let off = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
        let mut u = UdpPacket::new_unchecked(&mut f[off..]);
        u.set_src_port(CLIENT_PORT);
        u.set_dst_port(SERVER_PORT);
        u.fill_checksum(a.src_ip, a.dst_ip);
        f
    }

    #[test]
    fn round_trip() {
        let m = discover([2, 0, 0, 0, 0, 1]);
        let f = frame(&m);
        assert!(f.len() >= ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN + 300);
        let r = parse(&f).unwrap();
        assert_eq!(r.kind, MessageType::Discover);
        assert_eq!(r.chaddr, [2, 0, 0, 0, 0, 1]);
        assert_eq!(r.msg.xid(), 0x1234_5678);
        assert!(r.msg.flags().broadcast());
        assert!(matches!(
            r.msg.opts().get(OptionCode::Hostname),
            Some(DhcpOption::Hostname(h)) if h == "client"
        ));
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        let good = frame(&discover([2, 0, 0, 0, 0, 1]));
        for cut in 0..good.len() {
            let _ = parse(&good[..cut]);
        }
        // Every byte of the message flipped in turn, checksum refilled: parse or refuse.
        let off = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
        for i in off + udp::HEADER_LEN..good.len() {
            let mut f = good.clone();
            f[i] ^= 0xff;
            let mut u = UdpPacket::new_unchecked(&mut f[off..]);
            u.fill_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
            let _ = parse(&f);
        }
        // hlen over 16 (dhcproto's chaddr() would slice past its array).
        let mut f = good.clone();
        f[off + udp::HEADER_LEN + 2] = 200;
        let mut u = UdpPacket::new_unchecked(&mut f[off..]);
        u.fill_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
        assert_eq!(parse(&f).err(), Some(Malformed));
        // Options whose lengths dhcproto takes on trust (a debug build would panic on them).
        for (code, len) in [(80u8, 1u8), (81, 2), (94, 1), (151, 0), (152, 2), (155, 8)] {
            let mut extra = vec![code, len];
            extra.extend(std::iter::repeat_n(0, usize::from(len)));
            let f = discover_with_options(&extra);
            assert_eq!(
                parse(&f).err(),
                Some(Malformed),
                "option {code} length {len}"
            );
        }
        // A bad UDP checksum.
        let mut f = good;
        let n = f.len();
        f[n - 1] ^= 1;
        assert_eq!(parse(&f).err(), Some(Malformed));
    }

    /// A DISCOVER's whole frame with `extra` option bytes before its End, lengths and
    /// checksums filled.
    fn discover_with_options(extra: &[u8]) -> Vec<u8> {
        let off = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
        let mut m = discover([2, 0, 0, 0, 0, 1]).to_vec().unwrap();
        let end = m.iter().rposition(|&b| b == 255).unwrap();
        m.truncate(end);
        m.extend(extra);
        m.push(255);
        let mut f = frame(&discover([2, 0, 0, 0, 0, 1]));
        f.truncate(off + udp::HEADER_LEN);
        f.extend(&m);
        let total = f.len() - ethernet::HEADER_LEN;
        f[ethernet::HEADER_LEN + 2..ethernet::HEADER_LEN + 4]
            .copy_from_slice(&(total as u16).to_be_bytes());
        let mut ip = Ipv4Packet::new_unchecked(&mut f[ethernet::HEADER_LEN..]);
        ip.fill_checksum();
        let mut u = UdpPacket::new_unchecked(&mut f[off..]);
        u.set_len((total - ipv4::HEADER_LEN) as u16);
        u.fill_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
        f
    }

    /// `dhcproto` joins consecutive copies of one option (RFC 3396) and hands the sum of their
    /// lengths to the option's decoder: two client network interface options of 3 bytes each
    /// (each fine alone) reached its `debug_assert!(len == 3)` with 6 and panicked a debug
    /// build's DHCP thread, until the check summed the run.
    #[test]
    fn a_repeated_option_does_not_slip_past_the_length_check() {
        for (code, len) in [(94u8, 3u8), (152, 4), (155, 4)] {
            let mut extra = Vec::new();
            for _ in 0..2 {
                extra.extend([code, len]);
                extra.extend(std::iter::repeat_n(1, usize::from(len)));
            }
            let f = discover_with_options(&extra);
            let r = std::panic::catch_unwind(|| parse(&f).map(|r| r.kind));
            assert!(
                r.is_ok(),
                "option {code} twice, {len} bytes each: parse panicked"
            );
            assert_eq!(
                parse(&f).err(),
                Some(Malformed),
                "option {code} twice, {len} bytes each"
            );
        }
    }
}
