//! What an address is to the box: its own (interface addresses, held VIPs), a subnet's network
//! or broadcast address, martian, or a neighbour's on a link; and the MAC the box answers with.

use std::net::Ipv4Addr;

use super::Dataplane;
use crate::generation::Generation;
use crate::wire::MacAddr;
use crate::IfIndex;

/// Whether `dst` is one of the box's addresses right now (interface addresses, held VIPs),
/// or a broadcast or multicast address (which the box never forwards).
pub(super) fn is_local(gen: &Generation, dp: &Dataplane, dst: Ipv4Addr) -> bool {
    if dst.is_broadcast() || dst.is_multicast() {
        return true;
    }
    gen.interfaces.iter().any(|i| match i.addr {
        Some((a, l)) => a == dst || (l < 31 && dst == subnet_broadcast(a, l)),
        None => false,
    }) || gen.vips.iter().any(|v| v.addr == dst && dp.held.holds(v))
}

/// Addresses valid nowhere on a wire: a loopback source or destination (127/8), a destination
/// on network 0, a multicast or broadcast source. (A source 0.0.0.0 is fine: DHCP.)
pub(super) fn is_martian(src: Ipv4Addr, dst: Ipv4Addr) -> bool {
    src.is_loopback()
        || dst.is_loopback()
        || dst.octets()[0] == 0
        || src.is_multicast()
        || src.is_broadcast()
}

/// A source no host may send from (RFC 1812 5.3.7, Linux's `fib_validate_source`): one of the
/// box's own addresses or VIPs, or the network or broadcast address of an interface's subnet.
/// Checked for the packets that would make a state (a state's were when it was made): a flow
/// from such a source would be NATed out, and its replies would have the box ARP for itself or
/// for a broadcast address. Not for what is addressed to the box: the peer's view of the
/// master's own traffic (a DHCP reply broadcast from a VIP) is the local path's, as before.
pub(super) fn is_impersonated_source(gen: &Generation, src: Ipv4Addr) -> bool {
    // "This network" (0/8) is a source only for a host learning its address, talking to the
    // box (DHCP, which the local path took first): never one to forward.
    src.octets()[0] == 0
        || is_configured_addr(gen, src)
        || gen.interfaces.iter().any(|i| match i.addr {
            Some((a, l)) => {
                l < 31 && (src == subnet_broadcast(a, l) || src == subnet_network(a, l))
            }
            None => false,
        })
}

/// Whether `dst` is the directed broadcast address of one of the interfaces' subnets.
pub(super) fn is_subnet_broadcast(gen: &Generation, dst: Ipv4Addr) -> bool {
    gen.interfaces.iter().any(|i| match i.addr {
        Some((a, l)) => l < 31 && dst == subnet_broadcast(a, l),
        None => false,
    })
}

/// Whether `ip` is one of the box's configured addresses (interface addresses and every VIP,
/// held or not).
pub(super) fn is_configured_addr(gen: &Generation, ip: Ipv4Addr) -> bool {
    gen.interfaces
        .iter()
        .any(|i| i.addr.is_some_and(|(a, _)| a == ip))
        || gen.vips.iter().any(|v| v.addr == ip)
}

/// The MAC to answer ARP for `ip` on `in_if` with: the interface's for its own address, the
/// virtual MAC for a held CARP VIP, the interface's for an IP alias.
pub(super) fn our_mac_for(
    gen: &Generation,
    dp: &Dataplane,
    in_if: IfIndex,
    ip: Ipv4Addr,
) -> Option<MacAddr> {
    let iface = gen.interface(in_if)?;
    if iface.addr.is_some_and(|(a, _)| a == ip) {
        return Some(iface.mac);
    }
    gen.vips
        .iter()
        .find(|v| v.if_index == in_if && v.addr == ip && dp.held.holds(v))
        .map(|v| v.mac(iface))
}

/// Whether `mac` is the virtual MAC of a VIP on `in_if` that this box holds.
#[inline]
pub(super) fn holds_vmac(gen: &Generation, dp: &Dataplane, in_if: IfIndex, mac: MacAddr) -> bool {
    let Some(vhid) = mac.carp_vhid() else {
        return false;
    };
    dp.held.is_held(vhid)
        && gen
            .vips
            .iter()
            .any(|v| v.if_index == in_if && v.vhid == Some(vhid))
}

pub(super) fn same_net(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    (a.to_bits() ^ b.to_bits()) & mask == 0
}

pub(super) fn subnet_broadcast(a: Ipv4Addr, len: u8) -> Ipv4Addr {
    let host = if len >= 32 {
        0
    } else {
        u32::MAX >> u32::from(len)
    };
    Ipv4Addr::from_bits(a.to_bits() | host)
}

pub(super) fn subnet_network(a: Ipv4Addr, len: u8) -> Ipv4Addr {
    Ipv4Addr::from_bits(a.to_bits() & !subnet_broadcast(Ipv4Addr::UNSPECIFIED, len).to_bits())
}
