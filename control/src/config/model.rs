//! The validated, typed config. Every value here has passed validation: names refer to things
//! that exist, addresses are inside their interface's network, CARP groups agree.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::num::NonZeroU32;
use std::time::Duration;

use super::types::{
    Action, AddrSpec, AliasType, Endpoint, IfAddr, IpVersion, MacAddr, NatMode, PortRange, Prefix,
    Protocol, Role, SyncSection,
};

/// Multicast group of state sync when no peer is set (pfsync's default).
pub const STATE_SYNC_MULTICAST: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 240);

/// TCP port of config sync when `ha.config_sync.port` is not set. The seed's XML-RPC runs on the
/// webGUI's HTTPS port 443; tandem has no webGUI and runs its own authenticated service, on a
/// port of its own.
pub const DEFAULT_CONFIG_SYNC_PORT: u16 = 8443;

/// Worker threads when `system.workers` is not set.
pub const DEFAULT_WORKERS: u16 = 1;

/// Entries of each AF_XDP ring when `system.ring_size` is not set: the dataplane's default.
pub const DEFAULT_RING_SIZE: u32 = tandem_dataplane::io::afxdp::DEFAULT_RING_SIZE;

/// State table capacity when `system.state_limit` is not set.
pub const DEFAULT_STATE_LIMIT: u32 = 262_144;

/// Source nodes (sources tracked for per-source limits) when `system.src_node_limit` is not
/// set: pf's `set limit src-nodes` default.
pub const DEFAULT_SRC_NODE_LIMIT: u32 = 10_000;

/// One box's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[system]`.
    pub system: System,
    /// `[[interfaces]]`, in file order.
    pub interfaces: Vec<Interface>,
    /// `[routes]`.
    pub routes: Routes,
    /// `[[aliases]]`, in file order.
    pub aliases: Vec<Alias>,
    /// `[[virtual_ips]]`, in file order.
    pub virtual_ips: Vec<VirtualIp>,
    /// `[nat]`.
    pub nat: Nat,
    /// `[filter]`.
    pub filter: Filter,
    /// `[ha]`; both parts absent on a box that runs alone.
    pub ha: Ha,
    /// `[[dhcp]]`, in file order: at most one per interface.
    pub dhcp: Vec<super::dhcp::Dhcp>,
}

/// `[system]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct System {
    /// The box's name.
    pub hostname: String,
    /// Unique per box of the cluster: the creator id of the states it creates.
    pub host_id: NonZeroU32,
    /// Dataplane worker threads (default [`DEFAULT_WORKERS`]).
    pub workers: u16,
    /// Entries of each AF_XDP ring per socket, RX, TX, fill and completion (default
    /// [`DEFAULT_RING_SIZE`]): more absorbs longer bursts, and queues longer under overload.
    pub ring_size: u32,
    /// State table capacity (default [`DEFAULT_STATE_LIMIT`]).
    pub state_limit: u32,
    /// Most sources tracked for per-source limits (default [`DEFAULT_SRC_NODE_LIMIT`]).
    pub src_node_limit: u32,
    /// pf's `adaptive.start` / `adaptive.end` in states; `None`: 60% / 120% of `state_limit`.
    pub adaptive: Option<AdaptiveBounds>,
    /// On `config apply`, kill the states whose first packet the new rules would block
    /// (default false: like pf, states outlive a ruleset reload).
    pub kill_states_on_reload: bool,
    /// Forward IPv4 datagrams with options (default false: dropped and counted, as pf).
    pub allow_ip_options: bool,
    /// `[system.metrics] listen`: where the Prometheus endpoint listens (`None`: off).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// pf's adaptive timeouts: above `start` states every timeout shrinks linearly, to zero at
/// `end`. Both 0: no scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptiveBounds {
    /// Scaling starts above this many states.
    pub start: u32,
    /// Timeouts reach zero at this many states.
    pub end: u32,
}

/// pf's `max-src-conn-rate conns/seconds`: new states per source and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrcConnRate {
    /// New states allowed per `seconds`.
    pub conns: u32,
    /// The averaging interval.
    pub seconds: u32,
}

/// `[[interfaces]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The name used everywhere else in the config (`lan`, `wan`, `sync`).
    pub name: String,
    /// The OS network device.
    pub device: String,
    /// The box's own address on it, with the network's prefix length.
    pub address: IfAddr,
    /// What it is for.
    pub role: Role,
    /// Free text.
    pub description: String,
    /// A MAC address to use instead of the device's.
    pub mac: Option<MacAddr>,
}

impl Interface {
    /// The box's own address.
    pub fn ip(&self) -> Ipv4Addr {
        self.address.addr()
    }

    /// The directly connected network (`192.168.0.0/24`).
    pub fn network(&self) -> Prefix {
        self.address.network()
    }
}

/// `[routes]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    /// The gateway of 0.0.0.0/0; on a directly connected network.
    pub default_gateway: Option<Ipv4Addr>,
    /// `[[routes.static]]`.
    pub static_routes: Vec<StaticRoute>,
}

/// `[[routes.static]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    /// The destination network.
    pub network: Prefix,
    /// The next hop; on a directly connected network.
    pub gateway: Ipv4Addr,
    /// Free text.
    pub description: String,
    /// Config sync does not push this route (on the secondary: a push does not remove it).
    pub no_sync: bool,
}

/// `[[aliases]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The name rules use in `address`.
    pub name: String,
    /// Host addresses or networks.
    pub kind: AliasType,
    /// The entries; host entries are /32 prefixes.
    pub entries: Vec<Prefix>,
    /// Free text.
    pub description: String,
    /// Config sync does not push this alias (on the secondary: a push does not remove it).
    pub no_sync: bool,
}

impl Alias {
    /// Whether `ip` is one of the alias's addresses.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.entries.iter().any(|p| p.contains(ip))
    }
}

/// `[[virtual_ips]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualIp {
    /// The type, with the CARP parameters of a CARP VIP.
    pub kind: VipKind,
    /// The interface name.
    pub interface: String,
    /// The address, with its interface's prefix length for CARP.
    pub address: IfAddr,
    /// Free text.
    pub description: String,
    /// Config sync does not push this VIP (on the secondary: a push does not remove it).
    pub no_sync: bool,
}

impl VirtualIp {
    /// The CARP parameters, if this is a CARP VIP.
    pub fn carp(&self) -> Option<&Carp> {
        match &self.kind {
            VipKind::Carp(c) => Some(c),
            _ => None,
        }
    }
}

/// The type of a virtual IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VipKind {
    /// Shared by the cluster, held by the CARP master.
    Carp(Carp),
    /// An extra address of this box alone.
    IpAlias,
    /// Answered by proxy ARP.
    ProxyArp,
    /// Routed to the box, no ARP.
    Other,
}

/// A CARP VIP's group parameters; all VIPs of one VHID on one interface share them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carp {
    /// Virtual host id, 1..=255; the virtual MAC is 00:00:5e:00:01:VHID.
    pub vhid: u8,
    /// The shared secret; at most 20 bytes (the HMAC key is the password zero-padded to 20).
    pub password: String,
    /// Advertisement base interval in seconds, 0..=255; 0 is the fast mode (see
    /// [`Carp::advert_interval`]).
    pub advbase: u8,
    /// Advertisement skew, 0..=254; the lower (advbase, advskew) wins mastership.
    pub advskew: u8,
}

impl Carp {
    /// The advertisement interval: advbase + advskew/256 s. With advbase 0 (the fast mode, as
    /// OpenBSD allows) it is advskew/256 s alone, so advskew is then 1..=254 (4 ms to 992 ms).
    pub fn advert_interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.advbase))
            + Duration::from_micros(u64::from(self.advskew) * 1_000_000 / 256)
    }

    /// Whether this is the fast mode (advbase 0).
    pub fn is_fast(&self) -> bool {
        self.advbase == 0
    }
}

/// The VIPs of one VHID on one interface: one CARP advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarpGroup<'a> {
    /// The interface name.
    pub interface: &'a str,
    /// The group's parameters (from its first VIP; validation made them all equal).
    pub carp: &'a Carp,
    /// The group's addresses, sorted ascending (the order of the CARP HMAC).
    pub addresses: Vec<Ipv4Addr>,
}

/// `[nat]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nat {
    /// `[nat.outbound]`.
    pub outbound: OutboundNat,
}

/// `[nat.outbound]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundNat {
    /// Rule generation mode; `automatic` when the section is absent.
    pub mode: NatMode,
    /// `[[nat.outbound.rules]]`, first match wins; only with `hybrid` and `manual`.
    pub rules: Vec<OutboundNatRule>,
}

impl Default for OutboundNat {
    fn default() -> Self {
        Self {
            mode: NatMode::Automatic,
            rules: Vec::new(),
        }
    }
}

/// `[[nat.outbound.rules]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundNatRule {
    /// Kept but not used.
    pub disabled: bool,
    /// Matching traffic is not NATed, and outbound NAT rule processing stops.
    pub no_nat: bool,
    /// The interface traffic leaves by.
    pub interface: String,
    /// The protocol matched.
    pub protocol: Protocol,
    /// The source matched.
    pub source: Endpoint,
    /// The destination matched.
    pub destination: Endpoint,
    /// What the source becomes (ignored with `no_nat`).
    pub translation: Translation,
    /// Config sync does not push this rule (on the secondary: a push does not remove it).
    pub no_sync: bool,
    /// Free text.
    pub description: String,
}

/// An outbound NAT rule's translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    /// The new source address.
    pub address: TranslationAddr,
    /// The source port range to map into; `None` is any free port.
    pub port: Option<PortRange>,
    /// Keep the source port.
    pub static_port: bool,
}

/// The new source address of an outbound NAT rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranslationAddr {
    /// The address of the rule's interface (`"interface address"`).
    InterfaceAddress,
    /// This address: one of the box's interface addresses or VIPs.
    Addr(Ipv4Addr),
}

/// `[filter]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `[[filter.rules]]`, in file order. On each interface the first matching rule wins; a
    /// packet that matches none is blocked.
    pub rules: Vec<FilterRule>,
}

/// `[[filter.rules]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    /// The interface packets come in by.
    pub interface: String,
    /// What to do with a match.
    pub action: Action,
    /// Kept but not used.
    pub disabled: bool,
    /// The address family (IPv4 only for now).
    pub ip_version: IpVersion,
    /// The protocol matched.
    pub protocol: Protocol,
    /// The source matched.
    pub source: Endpoint,
    /// The destination matched.
    pub destination: Endpoint,
    /// Log matching packets.
    pub log: bool,
    /// pf's `max-src-states`: most states one source may hold through this rule.
    pub max_src_states: Option<u32>,
    /// pf's `max-src-conn-rate`: most new states per time from one source through this rule.
    pub max_src_conn_rate: Option<SrcConnRate>,
    /// Free text.
    pub description: String,
    /// Config sync does not push this rule (on the secondary: a push does not remove it).
    pub no_sync: bool,
}

/// `[ha]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ha {
    /// `[ha.state_sync]`.
    pub state_sync: Option<StateSync>,
    /// `[ha.config_sync]`.
    pub config_sync: Option<ConfigSync>,
}

/// `[ha.state_sync]`: pfsync's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSync {
    /// Whether states are synced.
    pub enabled: bool,
    /// The interface of the sync link; role `sync`.
    pub interface: String,
    /// The peer's address on the sync link; `None` sends to [`STATE_SYNC_MULTICAST`].
    pub peer: Option<Ipv4Addr>,
    /// The key of the MAC on every sync datagram.
    pub key: String,
}

impl StateSync {
    /// Where sync datagrams go: the peer, or the multicast group.
    pub fn destination(&self) -> Ipv4Addr {
        self.peer.unwrap_or(STATE_SYNC_MULTICAST)
    }
}

/// `[ha.config_sync]`: XML-RPC sync's settings.
///
/// The primary sets `sync_to` and pushes `sections` there; the secondary leaves `sync_to` out and
/// accepts pushes. Both authenticate each other with `username` and `password`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSync {
    /// The peer to push to (the primary's side only).
    pub sync_to: Option<Ipv4Addr>,
    /// TCP port of config sync on both boxes (default [`DEFAULT_CONFIG_SYNC_PORT`]).
    pub port: u16,
    /// Shared user name.
    pub username: String,
    /// Shared password.
    pub password: String,
    /// What is pushed; every section when not written (the seed's "Toggle All").
    pub sections: BTreeSet<SyncSection>,
}

impl ConfigSync {
    /// Whether this box pushes its config (it is the primary).
    pub fn pushes(&self) -> bool {
        self.sync_to.is_some()
    }
}

impl Config {
    /// The interface named `name`.
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// The interface on OS device `device`.
    pub fn interface_by_device(&self, device: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.device == device)
    }

    /// The network of the interface named `name` (what `"<name> net"` matches).
    pub fn interface_network(&self, name: &str) -> Option<Prefix> {
        self.interface(name).map(Interface::network)
    }

    /// The alias named `name`.
    pub fn alias(&self, name: &str) -> Option<&Alias> {
        self.aliases.iter().find(|a| a.name == name)
    }

    /// The interface whose network contains `ip`.
    pub fn interface_for(&self, ip: Ipv4Addr) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.network().contains(ip))
    }

    /// The VIPs on interface `name`, in file order.
    pub fn vips_on<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a VirtualIp> + 'a {
        self.virtual_ips.iter().filter(move |v| v.interface == name)
    }

    /// Every address of this box (what `"self"` matches): interface addresses and VIP
    /// addresses of every type, sorted, without duplicates. CARP VIPs are included whether this
    /// box is master or not; the dataplane decides which it answers for.
    pub fn self_addrs(&self) -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = self
            .interfaces
            .iter()
            .map(Interface::ip)
            .chain(self.virtual_ips.iter().map(|v| v.address.addr()))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether `ip` is one of this box's addresses ([`Config::self_addrs`]).
    pub fn is_self(&self, ip: Ipv4Addr) -> bool {
        self.interfaces.iter().any(|i| i.ip() == ip)
            || self.virtual_ips.iter().any(|v| v.address.addr() == ip)
    }

    /// The addresses an address spec matches, as prefixes; `None` for [`AddrSpec::Any`]. Host
    /// addresses are /32s. Unknown names (impossible in a validated config) give an empty list.
    pub fn resolve(&self, spec: &AddrSpec) -> Option<Vec<Prefix>> {
        Some(match spec {
            AddrSpec::Any => return None,
            AddrSpec::Addr(a) => vec![Prefix::host(*a)],
            AddrSpec::Network(p) => vec![*p],
            AddrSpec::Alias(name) => self
                .alias(name)
                .map(|a| a.entries.clone())
                .unwrap_or_default(),
            AddrSpec::InterfaceNet(name) => self.interface_network(name).into_iter().collect(),
            AddrSpec::SelfAddrs => self.self_addrs().into_iter().map(Prefix::host).collect(),
        })
    }

    /// The enabled filter rules of interface `name`, in evaluation order.
    pub fn rules_on<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a FilterRule> + 'a {
        self.filter
            .rules
            .iter()
            .filter(move |r| r.interface == name && !r.disabled)
    }

    /// The CARP groups: the VIPs of one VHID on one interface, in order of first appearance.
    pub fn carp_groups(&self) -> Vec<CarpGroup<'_>> {
        let mut groups: Vec<CarpGroup<'_>> = Vec::new();
        for vip in &self.virtual_ips {
            let Some(carp) = vip.carp() else { continue };
            let ip = vip.address.addr();
            match groups
                .iter_mut()
                .find(|g| g.interface == vip.interface && g.carp.vhid == carp.vhid)
            {
                Some(g) => g.addresses.push(ip),
                None => groups.push(CarpGroup {
                    interface: &vip.interface,
                    carp,
                    addresses: vec![ip],
                }),
            }
        }
        for g in &mut groups {
            g.addresses.sort_unstable();
        }
        groups
    }

    /// The source address an outbound NAT rule translates to.
    pub fn translation_ip(&self, rule: &OutboundNatRule) -> Option<Ipv4Addr> {
        match rule.translation.address {
            TranslationAddr::InterfaceAddress => self.interface(&rule.interface).map(Interface::ip),
            TranslationAddr::Addr(a) => Some(a),
        }
    }

    /// The interface of the sync link, when state sync is configured.
    pub fn sync_interface(&self) -> Option<&Interface> {
        self.ha
            .state_sync
            .as_ref()
            .and_then(|s| self.interface(&s.interface))
    }

    /// The sync link: state sync's interface, or else the first interface of role sync (where
    /// config sync talks when state sync is off).
    pub fn sync_link(&self) -> Option<&Interface> {
        self.sync_interface()
            .or_else(|| self.interfaces.iter().find(|i| i.role == Role::Sync))
    }
}
