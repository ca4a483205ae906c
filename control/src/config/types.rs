//! Small typed values of the config: IPv4 prefixes, port ranges, MAC addresses, address specs and
//! the closed name sets (roles, actions, protocols...). Every parser returns the message that
//! validation prints after `FILE: field.path: `.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use tandem_dataplane::wire::ipv4::proto;

/// The dataplane's network type, the one prefix of the project: an IPv4 network whose host bits
/// are clear (`10.0.0.0/8`). Routes, network aliases, rule addresses and everything resolved from
/// them are `Prefix`es; an address of the box with its network's length is an [`IfAddr`].
pub use tandem_dataplane::filter::Prefix;

/// An address of this box with the prefix length of its network, as written: `192.168.0.11/24`
/// (an interface's or a VIP's own address). [`IfAddr::network`] is the network it is on, a
/// [`Prefix`]. Not a network itself: the host bits are the point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfAddr {
    addr: Ipv4Addr,
    len: u8,
}

impl IfAddr {
    /// `addr/len`, or `None` when `len > 32`.
    pub const fn new(addr: Ipv4Addr, len: u8) -> Option<Self> {
        if len > 32 {
            None
        } else {
            Some(Self { addr, len })
        }
    }

    /// The host route `addr/32`.
    pub const fn host(addr: Ipv4Addr) -> Self {
        Self { addr, len: 32 }
    }

    /// The address as written.
    pub const fn addr(self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length, 0..=32.
    // A prefix length, not a container's: an `is_empty` would mean nothing.
    #[allow(clippy::len_without_is_empty)]
    pub const fn len(self) -> u8 {
        self.len
    }

    /// The netmask as a host-order integer (`/24` is `0xffff_ff00`).
    pub const fn mask_bits(self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }

    /// The netmask (`/24` is `255.255.255.0`).
    pub const fn mask(self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.mask_bits())
    }

    /// The network: the address with its host bits cleared, same length.
    pub fn network(self) -> Prefix {
        Prefix::new(self.addr, self.len).expect("an IfAddr's length is at most 32")
    }

    /// The directed broadcast address of the network.
    pub const fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.addr.to_bits() | !self.mask_bits())
    }

    /// Whether `ip` is inside the network.
    pub const fn contains(self, ip: Ipv4Addr) -> bool {
        (ip.to_bits() ^ self.addr.to_bits()) & self.mask_bits() == 0
    }

    /// Whether the address has no host bits set (`10.0.0.0/8` yes, `10.0.0.1/8` no).
    pub const fn is_network(self) -> bool {
        self.addr.to_bits() & !self.mask_bits() == 0
    }
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for IfAddr {
    type Err = String;

    /// Parses `a.b.c.d/len`; the length is required.
    fn from_str(s: &str) -> Result<Self, String> {
        let Some((addr, len)) = s.split_once('/') else {
            return Err(format!("{s:?} needs a prefix length (a.b.c.d/len)"));
        };
        let addr = parse_ipv4(addr).map_err(|_| {
            format!("{s:?} is not an IPv4 address with a prefix length (a.b.c.d/len)")
        })?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{s:?} is not an IPv4 address with a prefix length (a.b.c.d/len)"
            ));
        }
        let len = match len.parse::<u8>() {
            Ok(n) if n <= 32 => n,
            _ => return Err(format!("prefix length /{len} is out of range 0..=32")),
        };
        Ok(Self { addr, len })
    }
}

/// Parses a dotted-quad IPv4 address; the message names the text.
pub fn parse_ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address"))
}

/// Parses a network: a prefix without host bits, or a bare address taken as `/32`.
pub fn parse_network(s: &str) -> Result<Prefix, String> {
    let p = if s.contains('/') {
        s.parse::<IfAddr>()?
    } else {
        IfAddr::host(parse_ipv4(s)?)
    };
    if !p.is_network() {
        return Err(format!(
            "{p} has host bits set; the network is {}",
            p.network()
        ));
    }
    Ok(p.network())
}

/// An inclusive port range; a single port is `lo == hi`. Ports are 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port of the range.
    pub lo: u16,
    /// Last port of the range (inclusive).
    pub hi: u16,
}

impl PortRange {
    /// The single port `port`.
    pub const fn single(port: u16) -> Self {
        Self { lo: port, hi: port }
    }

    /// Whether `port` is in the range.
    pub const fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }

    /// Parses `80` or `1024-65535`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let shape = || format!("{s:?} is not a port or port range (80 or 1024-65535)");
        let one = |t: &str| -> Result<u16, String> {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(shape());
            }
            match t.parse::<u32>() {
                Ok(p @ 1..=65535) => Ok(p as u16),
                Ok(p) => Err(format!("port {p} is out of range 1..=65535")),
                Err(_) => Err(format!("port {t} is out of range 1..=65535")),
            }
        };
        let (lo, hi) = match s.split_once('-') {
            Some((lo, hi)) => (one(lo)?, one(hi)?),
            None => {
                let p = one(s)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(format!("port range {lo}-{hi} is reversed ({lo} > {hi})"));
        }
        Ok(Self { lo, hi })
    }

    /// Checks an integer port from TOML (`port = 443`).
    pub fn from_int(p: i64) -> Result<Self, String> {
        match u16::try_from(p) {
            Ok(p @ 1..) => Ok(Self::single(p)),
            _ => Err(format!("port {p} is out of range 1..=65535")),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// An Ethernet MAC address, written `02:00:00:00:00:01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = String;

    /// Parses six colon-separated hex bytes; refuses multicast and all-zero addresses, which
    /// cannot be an interface's own.
    fn from_str(s: &str) -> Result<Self, String> {
        let shape = || format!("{s:?} is not a MAC address (xx:xx:xx:xx:xx:xx)");
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let part = parts.next().ok_or_else(shape)?;
            if part.len() != 2 {
                return Err(shape());
            }
            *b = u8::from_str_radix(part, 16).map_err(|_| shape())?;
        }
        if parts.next().is_some() {
            return Err(shape());
        }
        if out[0] & 1 == 1 {
            return Err(format!("{s} is a multicast MAC address"));
        }
        if out == [0; 6] {
            return Err(format!("{s} is the all-zero MAC address"));
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// What a rule's source or destination address matches. The compiler resolves the symbolic
/// ones with [`Config::resolve`](super::Config::resolve).
///
/// Written as a string: `"any"`, `"self"`, `"lan net"` (`<interface> net`), `"10.0.0.1"`,
/// `"10.0.0.0/8"`, or an alias name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AddrSpec {
    /// Every address.
    Any,
    /// One host address.
    Addr(Ipv4Addr),
    /// A network (no host bits set).
    Network(Prefix),
    /// The addresses of the named alias.
    Alias(String),
    /// The network of the named interface (`"lan net"`).
    InterfaceNet(String),
    /// Every address of this box: interface addresses and VIPs (pfSense's "This firewall").
    SelfAddrs,
}

impl AddrSpec {
    /// Parses the string form. Alias and interface names are checked by validation, which knows
    /// them.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "any" {
            return Ok(Self::Any);
        }
        if s == "self" {
            return Ok(Self::SelfAddrs);
        }
        if let Some(iface) = s.strip_suffix(" net") {
            if !is_name(iface) {
                return Err(format!("{s:?}: {iface:?} is not an interface name"));
            }
            return Ok(Self::InterfaceNet(iface.to_owned()));
        }
        if s.contains('/') {
            return parse_network(s).map(Self::Network);
        }
        if s.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
            return parse_ipv4(s).map(Self::Addr);
        }
        if is_name(s) {
            return Ok(Self::Alias(s.to_owned()));
        }
        Err(format!(
            "{s:?} is not an address spec (any, self, <interface> net, an address, a network or an alias name)"
        ))
    }
}

impl fmt::Display for AddrSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::Addr(a) => write!(f, "{a}"),
            Self::Network(p) => write!(f, "{p}"),
            Self::Alias(n) => f.write_str(n),
            Self::InterfaceNet(i) => write!(f, "{i} net"),
            Self::SelfAddrs => f.write_str("self"),
        }
    }
}

/// A rule's source or destination: an address spec, its inversion, and an optional port range
/// (only with protocols tcp, udp and tcp/udp).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The addresses matched.
    pub addr: AddrSpec,
    /// Match every address except those (pfSense's "Invert match"). The port is not inverted.
    pub invert: bool,
    /// The ports matched; `None` is any port.
    pub port: Option<PortRange>,
}

impl Endpoint {
    /// Any address, any port.
    pub const ANY: Self = Self {
        addr: AddrSpec::Any,
        invert: false,
        port: None,
    };
}

/// Whether `s` is a name of the config (interfaces, aliases): a letter, then letters, digits,
/// `_` or `-`, at most 31 characters.
pub fn is_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && s.len() <= 31
}

/// Declares a closed set of names written as strings in the TOML: the enum, its names, parsing
/// with a message listing the choices, and Display.
macro_rules! names {
    ($(#[$meta:meta])* pub enum $ty:ident ($what:literal) { $($(#[$vmeta:meta])* $var:ident = $name:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $ty {
            $($(#[$vmeta])* $var,)+
        }

        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$var,)+];

            /// The name as written in the TOML.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$var => $name,)+
                }
            }

            /// Parses the name; the error lists the choices.
            pub fn parse(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok(Self::$var),)+
                    _ => Err(format!(
                        concat!("unknown ", $what, " {:?}, expected one of {}"),
                        s,
                        [$($name),+].join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

names! {
    /// What an interface is for. `sync` is the dedicated link of state and config sync: it
    /// belongs to the kernel, not the dataplane.
    pub enum Role ("role") {
        /// An inside network.
        Lan = "lan",
        /// The outside: outbound NAT usually translates to an address here.
        Wan = "wan",
        /// The sync link between the two boxes.
        Sync = "sync",
        /// Anything else (a DMZ, a second LAN...).
        Other = "other",
    }
}

names! {
    /// The type of an alias: host addresses, or networks.
    pub enum AliasType ("alias type") {
        /// Host addresses `a.b.c.d`.
        Host = "host",
        /// Networks `a.b.c.d/len` (a bare address is a /32).
        Network = "network",
    }
}

names! {
    /// The type of a virtual IP, as in pfSense's Firewall > Virtual IPs.
    pub enum VipType ("virtual IP type") {
        /// Shared by the cluster, held by the CARP master.
        Carp = "carp",
        /// An extra address of this box alone.
        IpAlias = "ipalias",
        /// Answered by proxy ARP, not bound to the box.
        ProxyArp = "proxyarp",
        /// Routed to the box, no ARP.
        Other = "other",
    }
}

names! {
    /// Outbound NAT rule generation (pfSense's Firewall > NAT > Outbound modes).
    pub enum NatMode ("outbound NAT mode") {
        /// Automatic rules only: every non-WAN interface network NATed to the WAN address.
        Automatic = "automatic",
        /// The rules of the config first, then the automatic ones.
        Hybrid = "hybrid",
        /// The rules of the config only.
        Manual = "manual",
        /// No outbound NAT.
        Disabled = "disabled",
    }
}

names! {
    /// What a filter rule does with a matching packet.
    pub enum Action ("action") {
        /// Let it through and create a state.
        Pass = "pass",
        /// Drop it silently.
        Block = "block",
        /// Drop it and answer with a TCP RST or an ICMP unreachable.
        Reject = "reject",
    }
}

names! {
    /// The address family of a rule. Only IPv4 exists in tandem for now.
    pub enum IpVersion ("ip_version") {
        /// IPv4.
        Inet = "inet",
    }
}

names! {
    /// The IP protocol a rule matches.
    pub enum Protocol ("protocol") {
        /// Every protocol.
        Any = "any",
        /// TCP (6).
        Tcp = "tcp",
        /// UDP (17).
        Udp = "udp",
        /// TCP or UDP.
        TcpUdp = "tcp/udp",
        /// ICMP (1).
        Icmp = "icmp",
        /// CARP (112).
        Carp = "carp",
        /// pfsync (240): tandem's state sync.
        Pfsync = "pfsync",
    }
}

impl Protocol {
    /// The IP protocol numbers matched; empty for [`Protocol::Any`].
    pub const fn numbers(self) -> &'static [u8] {
        match self {
            Self::Any => &[],
            Self::Tcp => &[proto::TCP],
            Self::Udp => &[proto::UDP],
            Self::TcpUdp => &[proto::TCP, proto::UDP],
            Self::Icmp => &[proto::ICMP],
            Self::Carp => &[proto::CARP],
            Self::Pfsync => &[proto::PFSYNC],
        }
    }

    /// Whether rules with this protocol may match ports.
    pub const fn has_ports(self) -> bool {
        matches!(self, Self::Tcp | Self::Udp | Self::TcpUdp)
    }
}

names! {
    /// The sections config sync may push, the seed's list of checkboxes ("Select options to
    /// sync"). tandem has something under `rules`, `aliases`, `nat`, `static_routes`,
    /// `virtual_ips` and `dhcp` so far; the others are accepted so the seed's "Toggle All" can be
    /// written.
    pub enum SyncSection ("config sync section") {
        /// User manager users and groups.
        Users = "users",
        /// Authentication servers (e.g. LDAP, RADIUS).
        AuthServers = "auth_servers",
        /// Certificate Authorities, Certificates, and Certificate Revocation Lists.
        Certificates = "certificates",
        /// Firewall rules.
        Rules = "rules",
        /// Firewall schedules.
        Schedules = "schedules",
        /// Firewall aliases.
        Aliases = "aliases",
        /// NAT configuration.
        Nat = "nat",
        /// IPsec configuration.
        Ipsec = "ipsec",
        /// OpenVPN configuration.
        Openvpn = "openvpn",
        /// DHCP Server settings.
        Dhcp = "dhcp",
        /// WoL Server settings.
        Wol = "wol",
        /// Static Route configuration.
        StaticRoutes = "static_routes",
        /// Load Balancer configuration.
        LoadBalancer = "load_balancer",
        /// Virtual IPs.
        VirtualIps = "virtual_ips",
        /// Traffic Shaper configuration.
        TrafficShaper = "traffic_shaper",
        /// Traffic Shaper Limiters configuration.
        TrafficShaperLimiters = "traffic_shaper_limiters",
        /// DNS Forwarder and DNS Resolver configurations.
        Dns = "dns",
        /// Captive Portal.
        CaptivePortal = "captive_portal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_addr_arithmetic() {
        let p: IfAddr = "192.168.0.11/24".parse().unwrap();
        assert_eq!(p.addr(), Ipv4Addr::new(192, 168, 0, 11));
        assert_eq!(p.len(), 24);
        assert_eq!(p.mask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(p.network().to_string(), "192.168.0.0/24");
        assert_eq!(p.broadcast(), Ipv4Addr::new(192, 168, 0, 255));
        assert!(p.contains(Ipv4Addr::new(192, 168, 0, 200)));
        assert!(!p.contains(Ipv4Addr::new(192, 168, 1, 1)));
        assert!(!p.is_network());
        let all: IfAddr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));
        assert_eq!(all.mask_bits(), 0);
        assert!(all.network().overlaps(&p.network()));
        assert_eq!(
            parse_network("10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        let host = IfAddr::host(Ipv4Addr::new(10, 0, 0, 1));
        assert!(host.contains(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(!host.contains(Ipv4Addr::new(10, 0, 0, 2)));
    }

    #[test]
    fn if_addr_parse_errors() {
        assert_eq!(
            "10.0.0.1".parse::<IfAddr>().unwrap_err(),
            "\"10.0.0.1\" needs a prefix length (a.b.c.d/len)"
        );
        assert_eq!(
            "10.0.0.1/33".parse::<IfAddr>().unwrap_err(),
            "prefix length /33 is out of range 0..=32"
        );
        assert_eq!(
            "10.0.0/8".parse::<IfAddr>().unwrap_err(),
            "\"10.0.0/8\" is not an IPv4 address with a prefix length (a.b.c.d/len)"
        );
        assert_eq!(
            parse_network("10.0.0.1/8").unwrap_err(),
            "10.0.0.1/8 has host bits set; the network is 10.0.0.0/8"
        );
    }

    #[test]
    fn ports() {
        assert_eq!(PortRange::parse("80"), Ok(PortRange::single(80)));
        assert_eq!(
            PortRange::parse("1024-65535"),
            Ok(PortRange {
                lo: 1024,
                hi: 65535
            })
        );
        assert_eq!(
            PortRange::parse("2000-1000").unwrap_err(),
            "port range 2000-1000 is reversed (2000 > 1000)"
        );
        assert_eq!(
            PortRange::parse("0").unwrap_err(),
            "port 0 is out of range 1..=65535"
        );
        assert_eq!(
            PortRange::parse("70000").unwrap_err(),
            "port 70000 is out of range 1..=65535"
        );
        assert_eq!(
            PortRange::parse("http").unwrap_err(),
            "\"http\" is not a port or port range (80 or 1024-65535)"
        );
        assert_eq!(
            PortRange::from_int(-1).unwrap_err(),
            "port -1 is out of range 1..=65535"
        );
        assert!(PortRange { lo: 10, hi: 20 }.contains(20));
    }

    #[test]
    fn mac() {
        let m: MacAddr = "02:00:5E:00:01:02".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:5e:00:01:02");
        assert_eq!(
            "01:00:5e:00:00:12".parse::<MacAddr>().unwrap_err(),
            "01:00:5e:00:00:12 is a multicast MAC address"
        );
        assert!("02:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("02:00:00:00:00:00:00".parse::<MacAddr>().is_err());
    }

    #[test]
    fn addr_specs() {
        assert_eq!(AddrSpec::parse("any"), Ok(AddrSpec::Any));
        assert_eq!(AddrSpec::parse("self"), Ok(AddrSpec::SelfAddrs));
        assert_eq!(
            AddrSpec::parse("lan net"),
            Ok(AddrSpec::InterfaceNet("lan".into()))
        );
        assert_eq!(
            AddrSpec::parse("10.0.0.1"),
            Ok(AddrSpec::Addr(Ipv4Addr::new(10, 0, 0, 1)))
        );
        assert_eq!(
            AddrSpec::parse("10.0.0.0/8"),
            Ok(AddrSpec::Network("10.0.0.0/8".parse().unwrap()))
        );
        assert_eq!(
            AddrSpec::parse("cluster_pfSense"),
            Ok(AddrSpec::Alias("cluster_pfSense".into()))
        );
        assert_eq!(
            AddrSpec::parse("10.0.0.300").unwrap_err(),
            "\"10.0.0.300\" is not an IPv4 address"
        );
        for s in [
            "any",
            "self",
            "lan net",
            "10.0.0.1",
            "10.0.0.0/8",
            "cluster_pfSense",
        ] {
            assert_eq!(AddrSpec::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn names() {
        assert_eq!(Protocol::parse("tcp/udp"), Ok(Protocol::TcpUdp));
        assert_eq!(
            Protocol::parse("sctp").unwrap_err(),
            "unknown protocol \"sctp\", expected one of any, tcp, udp, tcp/udp, icmp, carp, pfsync"
        );
        assert_eq!(SyncSection::ALL.len(), 18);
        assert!(Protocol::Tcp.has_ports() && !Protocol::Icmp.has_ports());
    }
}
