//! What the control plane compiles from a configuration for the dataplane: the interfaces with
//! their addresses, the virtual IPs, the ruleset and the routes. A generation is immutable and
//! swapped as a whole (arc-swap): workers load it once per batch, so a packet sees the old
//! generation or the new one, never a mix.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::filter::Ruleset;
use crate::route::RouteTable;
use crate::wire::MacAddr;
use crate::IfIndex;

/// A dataplane interface as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The configured name (`lan`, `wan`): what counters, rules and the CLI call it.
    pub name: String,
    pub mac: MacAddr,
    /// The interface's own address and prefix length.
    pub addr: Option<(Ipv4Addr, u8)>,
    /// A DHCP server runs here: UDP to port 67 for the box goes to the DHCP thread.
    pub dhcp: bool,
    /// The largest IPv4 datagram (header included) it sends: the device's MTU, read when the
    /// configuration is compiled. A bigger one gets an ICMP fragmentation needed (DF) or is
    /// dropped (see the pipeline's doc).
    pub mtu: u16,
}

/// The MTU of an interface whose device does not say (Ethernet's).
pub const DEFAULT_MTU: u16 = 1500;

/// A virtual IP: a CARP address (held only while this box is master of its VHID) or a plain IP
/// alias (always held).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vip {
    pub if_index: IfIndex,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    /// The CARP VHID; `None` for an IP alias.
    pub vhid: Option<u8>,
}

impl Vip {
    /// The MAC this VIP answers ARP with: the CARP virtual MAC, or the interface's own.
    pub fn mac(&self, iface: &Interface) -> MacAddr {
        self.vhid.map_or(iface.mac, MacAddr::carp_virtual)
    }
}

/// One compiled configuration.
#[derive(Debug)]
pub struct Generation {
    /// Increases by one with every applied configuration.
    pub number: u64,
    /// Indexed by [`IfIndex`].
    pub interfaces: Vec<Interface>,
    pub vips: Vec<Vip>,
    pub ruleset: Ruleset,
    pub routes: RouteTable,
    /// Forward IPv4 datagrams that carry options (`system.allow_ip_options`). Off by default,
    /// as pf: options (source routes, record route, router alert) are a way around filters and
    /// a slow path in routers, and nothing legitimate on a firewall's path needs them.
    pub allow_ip_options: bool,
}

impl Generation {
    pub fn interface(&self, i: IfIndex) -> Option<&Interface> {
        self.interfaces.get(usize::from(i))
    }

    pub fn interface_index(&self, name: &str) -> Option<IfIndex> {
        let i = self.interfaces.iter().position(|f| f.name == name)?;
        IfIndex::try_from(i).ok()
    }
}

/// The CARP VHIDs this box is master of: written by the control thread on every transition,
/// read by the workers on every ARP and every frame to a virtual MAC.
#[derive(Debug)]
pub struct HeldVhids([AtomicBool; 256]);

impl HeldVhids {
    pub fn new() -> HeldVhids {
        HeldVhids(std::array::from_fn(|_| AtomicBool::new(false)))
    }

    #[inline]
    pub fn is_held(&self, vhid: u8) -> bool {
        self.0[usize::from(vhid)].load(Ordering::Relaxed)
    }

    pub fn set(&self, vhid: u8, held: bool) {
        self.0[usize::from(vhid)].store(held, Ordering::Relaxed);
    }

    /// Whether `vip` is ours right now.
    #[inline]
    pub fn holds(&self, vip: &Vip) -> bool {
        vip.vhid.is_none_or(|v| self.is_held(v))
    }
}

impl Default for HeldVhids {
    fn default() -> HeldVhids {
        HeldVhids::new()
    }
}
