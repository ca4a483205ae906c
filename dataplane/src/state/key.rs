//! Flow keys and state identities.

use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

/// IP protocol numbers (ICMP query flows use the ICMP id as both ports).
pub use crate::wire::ipv4::proto::{ICMP as PROTO_ICMP, TCP as PROTO_TCP, UDP as PROTO_UDP};

/// One direction of a flow, as a packet's own 5-tuple.
///
/// ICMP query flows (echo, timestamp, ...) carry the ICMP id in both `sport` and `dport`, so the
/// reply's key is the request's key [`reversed`](FlowKey::reversed), like TCP and UDP. Other
/// protocols carry 0 in both ports.
///
/// 14 bytes (`u8` + 2 x 4 + 2 x 2, padded to the `u16` alignment); it hashes as one `u128`
/// write, not five field writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    /// IP protocol number.
    pub proto: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Source port (ICMP query: the ICMP id).
    pub sport: u16,
    /// Destination port (ICMP query: the ICMP id).
    pub dport: u16,
}

impl FlowKey {
    /// A key from its parts.
    pub const fn new(proto: u8, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Self {
        FlowKey {
            proto,
            src,
            dst,
            sport,
            dport,
        }
    }

    /// The key of an ICMP query flow: the id stands in both ports.
    pub const fn icmp_query(src: Ipv4Addr, dst: Ipv4Addr, id: u16) -> Self {
        FlowKey::new(PROTO_ICMP, src, id, dst, id)
    }

    /// The key of the other direction of the same flow.
    #[must_use]
    pub const fn reversed(&self) -> Self {
        FlowKey {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }

    /// The key packed into 104 of 128 bits: what [`Hash`] feeds the hasher.
    #[inline]
    pub fn packed(&self) -> u128 {
        (u128::from(u32::from(self.src)) << 64)
            | (u128::from(u32::from(self.dst)) << 32)
            | (u128::from(self.sport) << 16)
            | u128::from(self.dport)
            | (u128::from(self.proto) << 96)
    }
}

impl Hash for FlowKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.packed());
    }
}

impl std::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "proto {} {}:{} -> {}:{}",
            self.proto, self.src, self.sport, self.dst, self.dport
        )
    }
}

/// pfsync's identity of a state: the creating node's id and that node's 64-bit state counter.
/// The same on both boxes of the cluster, whatever the local table looks like.
///
/// Packed to 12 bytes (align 4, as in pfsync's records) so that it leaves no hole in
/// [`State`](super::State): read its fields by value (`{ sid.id }`), not by reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C, packed(4))]
pub struct SyncId {
    /// Creator id of the node that created the state (never 0: pfsync rejects 0).
    pub creator: u32,
    /// The creator's state counter at creation.
    pub id: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_twice_is_identity_and_icmp_reply_is_reversed_request() {
        let k = FlowKey::new(
            PROTO_TCP,
            Ipv4Addr::new(192, 168, 0, 100),
            40000,
            Ipv4Addr::new(172, 25, 46, 1),
            80,
        );
        assert_eq!(k.reversed().reversed(), k);
        assert_ne!(k.reversed(), k);
        let req = FlowKey::icmp_query(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 7);
        let rep = FlowKey::icmp_query(Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1), 7);
        assert_eq!(req.reversed(), rep);
    }

    #[test]
    fn key_is_compact_and_packing_is_injective_on_fields() {
        assert_eq!(std::mem::size_of::<FlowKey>(), 14);
        assert_eq!(std::mem::size_of::<SyncId>(), 12);
        let a = FlowKey::new(
            6,
            Ipv4Addr::new(1, 2, 3, 4),
            1,
            Ipv4Addr::new(5, 6, 7, 8),
            2,
        );
        let mut b = a;
        b.proto = 17;
        assert_ne!(a.packed(), b.packed());
        let mut c = a;
        std::mem::swap(&mut c.sport, &mut c.dport);
        assert_ne!(a.packed(), c.packed());
    }
}
