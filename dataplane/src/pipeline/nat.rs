//! NAT's rewrite of a packet: which address and port a state translates in each direction. The
//! rewrite itself, in place with incremental checksum updates (RFC 1624), is the wire's
//! ([`Ipv4Packet::translate`]).

use super::*;

/// A rewrite of one address and its port (or ICMP query id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Translation {
    pub(super) side: Side,
    pub(super) addr: Ipv4Addr,
    pub(super) port: u16,
}

impl Translation {
    /// Rewrites `datagram` (up to its total length), or a datagram quoted in an ICMP error.
    #[inline]
    pub(super) fn apply(self, datagram: &mut [u8]) {
        Ipv4Packet::new_unchecked(datagram).translate(self.side, self.addr, self.port);
    }

    pub(super) fn opposite(self) -> Translation {
        Translation {
            side: self.side.opposite(),
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
