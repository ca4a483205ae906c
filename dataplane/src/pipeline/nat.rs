//! NAT's rewrite of a packet: which address and port a state translates in each direction,
//! and the in-place rewrite with incremental checksum updates (RFC 1624).

use super::*;

/// Which address of a packet a translation rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Src,
    Dst,
}

/// A rewrite of one address and its port (or ICMP query id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Translation {
    pub(super) side: Side,
    pub(super) addr: Ipv4Addr,
    pub(super) port: u16,
}

impl Translation {
    pub(super) fn opposite(self) -> Translation {
        Translation {
            side: if self.side == Side::Src {
                Side::Dst
            } else {
                Side::Src
            },
            ..self
        }
    }
}

/// The rewrite a packet of `state` going `dir` needs, if the state is translated: outbound, the
/// source becomes the wire side's; inbound, the destination becomes the stack side's.
#[inline]
pub(super) fn translation(state: &State, dir: Direction) -> Option<Translation> {
    if state.stack == state.wire() {
        return None;
    }
    Some(match dir {
        Direction::Original => Translation {
            side: Side::Src,
            addr: state.wire().src,
            port: state.wire().sport,
        },
        Direction::Reply => Translation {
            side: Side::Dst,
            addr: state.stack.src,
            port: state.stack.sport,
        },
    })
}

/// Rewrites an address and its port in an IPv4 datagram, patching the IP and layer-4 checksums
/// incrementally (RFC 1624). For ICMP queries the "port" is the query id, and it is the same
/// field whichever side is translated. Also used inside an ICMP error's quoted packet, which
/// may stop 8 bytes into its payload: only the fields present are patched.
pub(super) fn apply_translation(ip: &mut [u8], hl: usize, proto: u8, x: Translation) {
    let (addr_off, port_off) = match x.side {
        Side::Src => (12, 0),
        Side::Dst => (16, 2),
    };
    if ip.len() < hl {
        return;
    }
    let old_addr = Ipv4Addr::from(read_u32(ip, addr_off));
    if old_addr != x.addr {
        ip[addr_off..addr_off + 4].copy_from_slice(&x.addr.octets());
        let c = checksum::update_addr(read_u16(ip, 10), old_addr, x.addr);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    rewrite_l4(&mut ip[hl..], proto, port_off, old_addr, x.addr, x.port);
}

/// Rewrites the port (or ICMP query id) at `port_off` of a layer-4 header and patches its
/// checksum for the address change too (TCP and UDP sum a pseudo-header; ICMP does not).
fn rewrite_l4(
    l4: &mut [u8],
    proto: u8,
    port_off: usize,
    old_addr: Ipv4Addr,
    new_addr: Ipv4Addr,
    port: u16,
) {
    match proto {
        proto::TCP if l4.len() >= 4 => {
            let old_port = read_u16(l4, port_off);
            l4[port_off..port_off + 2].copy_from_slice(&port.to_be_bytes());
            // A quoted TCP header may stop before its checksum (offset 16).
            if l4.len() >= 18 {
                let c = checksum::update_addr(read_u16(l4, 16), old_addr, new_addr);
                let c = checksum::update_u16(c, old_port, port);
                l4[16..18].copy_from_slice(&c.to_be_bytes());
            }
        }
        proto::UDP if l4.len() >= 8 => {
            let old_port = read_u16(l4, port_off);
            l4[port_off..port_off + 2].copy_from_slice(&port.to_be_bytes());
            let c = udp::update_checksum_addr(read_u16(l4, 6), old_addr, new_addr);
            let c = udp::update_checksum_u16(c, old_port, port);
            l4[6..8].copy_from_slice(&c.to_be_bytes());
        }
        proto::ICMP if l4.len() >= 8 => {
            // The query id (not covered by a pseudo-header: only the id changes the sum).
            let old_id = read_u16(l4, 4);
            l4[4..6].copy_from_slice(&port.to_be_bytes());
            // An all-zero message (id 0, seq 0, no data) needs 0xffff, not 0x0000.
            let c = icmp::update_checksum_u16(read_u16(l4, 2), old_id, port);
            l4[2..4].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
}
