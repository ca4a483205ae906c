//! From the TOML as read ([`RawConfig`]) to the typed [`Config`], collecting every problem.
//!
//! Each section is checked on its own first, keeping what is valid; the cross-field checks
//! (names that must exist, addresses that must be inside a network, CARP groups that must agree)
//! then use what was valid, so one mistake is reported once and not again by every field that
//! refers to it. A `Config` comes out only when nothing was reported.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Display;
use std::net::Ipv4Addr;
use std::num::NonZeroU32;

use super::error::{ConfigError, ConfigErrors, ConfigWarning};
use super::model::{
    AdaptiveBounds, Alias, Carp, Config, ConfigSync, Filter, FilterRule, Ha, Interface, Nat,
    OutboundNat, OutboundNatRule, Routes, SrcConnRate, StateSync, StaticRoute, System, Translation,
    TranslationAddr, VipKind, VirtualIp, DEFAULT_CONFIG_SYNC_PORT, DEFAULT_RING_SIZE,
    DEFAULT_SRC_NODE_LIMIT, DEFAULT_STATE_LIMIT, DEFAULT_WORKERS,
};
use super::raw::{
    RawAlias, RawConfig, RawConfigSync, RawEndpoint, RawFilter, RawFilterRule, RawHa, RawInterface,
    RawNat, RawNatRule, RawPort, RawRoutes, RawStateSync, RawSystem, RawVip,
};
use super::types::{
    is_name, parse_ipv4, parse_network, Action, AddrSpec, AliasType, Endpoint, IfAddr, IpVersion,
    MacAddr, NatMode, PortRange, Prefix, Protocol, Role, SyncSection, VipType,
};

mod ha;
mod interfaces;
mod rules;
mod shadow;
mod system;
mod vips;
use ha::ha;
use interfaces::interfaces;
use rules::{filter, nat, routes};
use system::system;
use vips::virtual_ips;

const NAME_RULE: &str = "a letter, then letters, digits, '_' or '-'; at most 31 characters";

/// Largest `system.workers`.
const MAX_WORKERS: i64 = 64;
/// `system.ring_size` bounds: below 64 a batch does not fit; above 16384 a socket's UMEM
/// (2 chunks of 4 KiB per entry) passes 128 MiB.
const MIN_RING_SIZE: i64 = 64;
const MAX_RING_SIZE: i64 = 16384;
/// Largest `system.state_limit` (also of `system.src_node_limit` and a rule's
/// `max_src_states`).
const MAX_STATE_LIMIT: i64 = 16_777_216;
/// Largest count and interval of a rule's `max_src_conn_rate`.
const MAX_CONN_RATE_PART: u32 = 1_000_000;
/// Shortest `ha.state_sync.key`, in bytes. The MAC on every sync datagram is HMAC-SHA256 with
/// this key, and a captured datagram lets anyone test guesses offline at GPU speed: 16 bytes is
/// the least that keeps a random key out of reach (128 bits) and makes a typed passphrase at
/// least not a short one. 32 random bytes are recommended (docs/sync-protocol.md).
const MIN_SYNC_KEY_LEN: usize = 16;
/// Longest CARP password, in bytes: the HMAC key is the password zero-padded to 20 bytes.
const MAX_CARP_PASSWORD_LEN: usize = 20;
/// CARP passwords shorter than this draw a warning, not an error: BSD peers accept any length and
/// an existing cluster must keep running, but an advert's HMAC-SHA1 is public on the LAN and a
/// short password falls to an offline guess, after which anyone on the LAN can take the VIPs.
const MIN_CARP_PASSWORD_WARN_LEN: usize = 8;

/// Config sync passwords shorter than this draw a warning: the push's handshake lets an
/// eavesdropper on the sync link test guesses offline (docs/config-sync.md), as the state sync
/// key, which must have 16 bytes.
const MIN_CONFIG_SYNC_PASSWORD_WARN_LEN: usize = 16;

/// Validates `raw`, read from `file`.
pub(crate) fn validate(file: &str, raw: &RawConfig) -> Result<Config, ConfigErrors> {
    let mut r = Report {
        file,
        errors: Vec::new(),
    };

    let system = system(&mut r, raw.system.as_ref());
    let (interfaces, iface_info) = interfaces(&mut r, &raw.interfaces);
    let (aliases, alias_names) = aliases(&mut r, &raw.aliases);
    let mut ctx = Ctx {
        ifaces: iface_info,
        aliases: alias_names,
        vips: Vec::new(),
        declared_vips: Vec::new(),
    };
    let virtual_ips = virtual_ips(&mut r, &ctx, &raw.virtual_ips);
    ctx.vips = virtual_ips
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.as_ref().map(|v| (v.address.addr(), i)))
        .collect();
    // Every VIP's address as written, whether or not the rest of its entry is valid: a mistake
    // in a VIP (its skew, its password) is reported once, on the VIP, and not again on each NAT
    // rule translating to its address.
    ctx.declared_vips = raw
        .virtual_ips
        .iter()
        .filter_map(|v| Some(v.address.as_deref()?.parse::<IfAddr>().ok()?.addr()))
        .collect();
    let routes = routes(&mut r, &ctx, &raw.routes);
    let nat = nat(&mut r, &ctx, &raw.nat);
    let filter = filter(&mut r, &ctx, &raw.filter);
    let ha = match &raw.ha {
        Some(ha) => self::ha(&mut r, &ctx, ha),
        None => Some(Ha::default()),
    };
    let dhcp = super::dhcp::dhcp(&mut r, &ctx, &virtual_ips, &raw.dhcp);
    if let (Some(system), Some(ha)) = (&system, &ha) {
        metrics_apart_from_config_sync(&mut r, &ctx, system, ha);
    }
    if let (Some(routes), Some(dhcp)) = (&routes, &dhcp) {
        pools_hold_no_gateway(&mut r, routes, dhcp);
    }

    let interfaces: Option<Vec<Interface>> = interfaces.into_iter().collect();
    let aliases: Option<Vec<Alias>> = aliases.into_iter().collect();
    let virtual_ips: Option<Vec<VirtualIp>> = virtual_ips.into_iter().collect();
    match (
        system,
        interfaces,
        routes,
        aliases,
        virtual_ips,
        nat,
        filter,
        ha,
        dhcp,
    ) {
        (
            Some(system),
            Some(interfaces),
            Some(routes),
            Some(aliases),
            Some(virtual_ips),
            Some(nat),
            Some(filter),
            Some(ha),
            Some(dhcp),
        ) if r.errors.is_empty() => Ok(Config {
            system,
            interfaces,
            routes,
            aliases,
            virtual_ips,
            nat,
            filter,
            ha,
            dhcp,
        }),
        _ => {
            if r.errors.is_empty() {
                // Every `None` above comes with an error; this keeps a slip from passing.
                r.err(
                    "(config)",
                    "invalid (internal: a value was refused without a message)",
                );
            }
            Err(ConfigErrors(r.errors))
        }
    }
}

/// The metrics endpoint cannot take config sync's socket (the sync link's address, its port):
/// one of the two would not bind.
fn metrics_apart_from_config_sync(r: &mut Report<'_>, ctx: &Ctx, system: &System, ha: &Ha) {
    let (Some(listen), Some(cs)) = (system.metrics_listen, &ha.config_sync) else {
        return;
    };
    // Config sync listens on the sync link: state sync's interface, else the first of role sync
    // (`Config::sync_link`).
    let link = match &ha.state_sync {
        Some(s) => ctx.iface(&s.interface),
        None => ctx.ifaces.iter().find(|f| f.role == Some(Role::Sync)),
    };
    let link_addr = link.and_then(|f| f.address).map(|a| a.addr());
    let clash = listen.port() == cs.port
        && (listen.ip().is_unspecified()
            || link_addr.is_some_and(|a| listen.ip() == std::net::IpAddr::V4(a)));
    if clash {
        r.err(
            "system.metrics.listen",
            format!("{listen} is config sync's socket (port {} on the sync link): give metrics another port", cs.port),
        );
    }
}

/// A DHCP pool must not hold a route's gateway: a client leased it would take the router's
/// traffic.
fn pools_hold_no_gateway(r: &mut Report<'_>, routes: &Routes, dhcp: &[super::dhcp::Dhcp]) {
    let gateways = routes
        .default_gateway
        .map(|g| (g, "routes.default_gateway".to_owned()))
        .into_iter()
        .chain(
            routes
                .static_routes
                .iter()
                .enumerate()
                .map(|(i, s)| (s.gateway, format!("routes.static[{i}].gateway"))),
        );
    for (gw, field) in gateways {
        for (i, d) in dhcp.iter().enumerate() {
            if let Some((lo, hi)) = d
                .ranges
                .iter()
                .find(|(lo, hi)| (lo.to_bits()..=hi.to_bits()).contains(&gw.to_bits()))
            {
                r.err(
                    format!("dhcp[{i}].ranges"),
                    format!("{lo}-{hi} holds {gw}, the gateway of {field}"),
                );
            }
        }
    }
}

/// The warnings of a valid config: see [`super::warnings`].
pub(crate) fn warnings(file: &str, config: &Config) -> Vec<ConfigWarning> {
    let mut out = Vec::new();
    // The VIPs of one VHID on one interface share their password (checked above): warn once,
    // at the first of them.
    let mut seen = HashSet::new();
    for (i, vip) in config.virtual_ips.iter().enumerate() {
        let Some(carp) = vip.carp() else { continue };
        if !seen.insert((vip.interface.as_str(), carp.vhid)) {
            continue;
        }
        if carp.advskew >= crate::carp::machine::MAX_SKEW {
            out.push(ConfigWarning {
                file: file.to_owned(),
                path: format!("virtual_ips[{i}].advskew"),
                message: format!(
                    "{} is sent as {max}, CARP's largest skew (as BSD sends it), which is also \
                     what a box in maintenance mode or demoted sends: against such a peer it \
                     ties, and the boxes' addresses decide (keep skews at {} or below)",
                    carp.advskew,
                    crate::carp::machine::MAX_SKEW - 1,
                    max = crate::carp::machine::MAX_SKEW
                ),
                line: None,
            });
        }
        if carp.password.len() < MIN_CARP_PASSWORD_WARN_LEN {
            out.push(ConfigWarning {
                file: file.to_owned(),
                path: format!("virtual_ips[{i}].password"),
                message: format!(
                    "is {} bytes long; a CARP password under {MIN_CARP_PASSWORD_WARN_LEN} bytes \
                     can be guessed offline from one advert (use up to \
                     {MAX_CARP_PASSWORD_LEN} random bytes)",
                    carp.password.len()
                ),
                line: None,
            });
        }
    }
    if let Some(a) = config.system.adaptive {
        // pf's adaptive timeouts scale between two state counts; a start at or past the limit
        // never comes (the table refuses states first), and adaptive_end 0/0 is "off".
        if a.end > 0 && a.start >= config.system.state_limit {
            out.push(ConfigWarning {
                file: file.to_owned(),
                path: "system.adaptive_start".to_owned(),
                message: format!(
                    "{} is not below state_limit ({}): the table is full before timeouts \
                     start to shrink, so adaptive timeouts never act (pf's default: 60 % of \
                     the limit, end at 120 %)",
                    a.start, config.system.state_limit
                ),
                line: None,
            });
        }
    }
    if let Some(cs) = &config.ha.config_sync {
        if cs.password.len() < MIN_CONFIG_SYNC_PASSWORD_WARN_LEN {
            out.push(ConfigWarning {
                file: file.to_owned(),
                path: "ha.config_sync.password".to_owned(),
                message: format!(
                    "is {} bytes long; whoever captures one push on the sync link can guess a \
                     password under {MIN_CONFIG_SYNC_PASSWORD_WARN_LEN} bytes offline, then push \
                     configs (use {MIN_CONFIG_SYNC_PASSWORD_WARN_LEN} random bytes or more)",
                    cs.password.len()
                ),
                line: None,
            });
        }
    }
    shadow::shadowed_rules(file, config, &mut out);
    out
}

/// The errors found so far.
pub(super) struct Report<'f> {
    file: &'f str,
    pub(super) errors: Vec<ConfigError>,
}

impl Report<'_> {
    pub(super) fn err(&mut self, path: impl Display, message: impl Display) {
        self.errors.push(ConfigError::Invalid {
            file: self.file.to_owned(),
            path: path.to_string(),
            message: message.to_string(),
            line: None,
        });
    }

    /// `Some(value)` of a required field, or reports it missing.
    pub(super) fn req<'a, T>(&mut self, path: impl Display, v: &'a Option<T>) -> Option<&'a T> {
        if v.is_none() {
            self.err(path, "missing");
        }
        v.as_ref()
    }

    /// The result's value, or reports its message.
    pub(super) fn check<T>(&mut self, path: impl Display, res: Result<T, String>) -> Option<T> {
        res.map_err(|m| self.err(path, m)).ok()
    }

    /// `v` if it is in `lo..=hi`.
    pub(super) fn range(&mut self, path: impl Display, v: i64, lo: i64, hi: i64) -> Option<i64> {
        if (lo..=hi).contains(&v) {
            Some(v)
        } else {
            self.err(path, format!("{v} is out of range {lo}..={hi}"));
            None
        }
    }

    /// A required, non-empty string.
    fn text<'a>(&mut self, path: impl Display, v: &'a Option<String>) -> Option<&'a str> {
        let s = self.req(&path, v)?;
        if s.is_empty() {
            self.err(path, "must not be empty");
            return None;
        }
        Some(s)
    }
}

/// What the cross-field checks know of the sections checked first.
pub(super) struct Ctx {
    pub(super) ifaces: Vec<IfaceInfo>,
    aliases: HashSet<String>,
    /// Valid VIP addresses and their index.
    pub(super) vips: Vec<(Ipv4Addr, usize)>,
    /// Every VIP's address as written, valid entry or not (if it parses).
    pub(super) declared_vips: Vec<Ipv4Addr>,
}

/// An interface whose name is valid and unique, with its other values when valid.
pub(super) struct IfaceInfo {
    pub(super) name: String,
    pub(super) address: Option<IfAddr>,
    pub(super) role: Option<Role>,
}

impl Ctx {
    fn iface(&self, name: &str) -> Option<&IfaceInfo> {
        self.ifaces.iter().find(|i| i.name == name)
    }

    /// A required reference to an interface.
    pub(super) fn iface_ref<'a>(
        &'a self,
        r: &mut Report<'_>,
        path: &str,
        v: &Option<String>,
    ) -> Option<&'a IfaceInfo> {
        let name = r.req(path, v)?;
        let found = self.iface(name);
        if found.is_none() {
            r.err(
                path,
                format!("unknown interface {name:?}{}", self.defined_ifaces()),
            );
        }
        found
    }

    fn defined_ifaces(&self) -> String {
        if self.ifaces.is_empty() {
            " (no interface is defined)".to_owned()
        } else {
            let names: Vec<&str> = self.ifaces.iter().map(|i| i.name.as_str()).collect();
            format!(" (defined: {})", names.join(", "))
        }
    }

    /// Who on this box owns `ip`: `interface NAME` or `virtual_ips[I]`.
    pub(super) fn owner(&self, ip: Ipv4Addr) -> Option<String> {
        if let Some(i) = self
            .ifaces
            .iter()
            .find(|i| i.address.is_some_and(|a| a.addr() == ip))
        {
            return Some(format!("interface {}", i.name));
        }
        self.vips
            .iter()
            .find(|(a, _)| *a == ip)
            .map(|(_, i)| format!("virtual_ips[{i}]"))
    }

    /// Whether `ip` is inside some interface's network.
    fn on_link(&self, ip: Ipv4Addr) -> bool {
        self.ifaces
            .iter()
            .any(|i| i.address.is_some_and(|a| a.contains(ip)))
    }

    /// A gateway or peer: on a connected network (not its network or broadcast address), not
    /// one of ours. Returns the interface whose network holds it, when it is one.
    fn neighbour(&self, r: &mut Report<'_>, path: &str, ip: Ipv4Addr) -> Option<&IfaceInfo> {
        if let Some(owner) = self.owner(ip) {
            r.err(path, format!("{ip} is this box's own address ({owner})"));
            return None;
        }
        let Some((iface, a)) = self
            .ifaces
            .iter()
            .find_map(|f| Some((f, f.address.filter(|a| a.contains(ip))?)))
        else {
            r.err(path, format!("{ip} is not inside any interface's network"));
            return None;
        };
        let net = a.network();
        if let Some(what) = network_or_broadcast(net, ip) {
            r.err(
                path,
                format!(
                    "{ip} is the {what} address of {net} (interface {})",
                    iface.name
                ),
            );
            return None;
        }
        Some(iface)
    }

    /// A route's gateway: a neighbour on a dataplane interface (the sync link is the
    /// kernel's: the dataplane cannot send through it).
    pub(super) fn gateway(&self, r: &mut Report<'_>, path: &str, ip: Ipv4Addr) {
        if let Some(f) = self.neighbour(r, path, ip) {
            if f.role == Some(Role::Sync) {
                r.err(
                    path,
                    format!("{ip} is on interface {}, the sync link: the dataplane routes through its own interfaces only", f.name),
                );
            }
        }
    }

    fn addr_spec(&self, r: &mut Report<'_>, path: &str, s: &str) -> Option<AddrSpec> {
        let spec = r.check(path, AddrSpec::parse(s))?;
        match &spec {
            AddrSpec::Alias(name) if !self.aliases.contains(name) => {
                let defined = if self.aliases.is_empty() {
                    " (no alias is defined)".to_owned()
                } else {
                    let mut names: Vec<&str> = self.aliases.iter().map(String::as_str).collect();
                    names.sort_unstable();
                    format!(" (defined: {})", names.join(", "))
                };
                r.err(path, format!("unknown alias {name:?}{defined}"));
                None
            }
            AddrSpec::InterfaceNet(name) if self.iface(name).is_none() => {
                r.err(
                    path,
                    format!(
                        "unknown interface {name:?} in {s:?}{}",
                        self.defined_ifaces()
                    ),
                );
                None
            }
            _ => Some(spec),
        }
    }

    /// A rule's source or destination; absent is any address, any port.
    fn endpoint(
        &self,
        r: &mut Report<'_>,
        path: &str,
        raw: Option<&RawEndpoint>,
        protocol: Option<Protocol>,
    ) -> Option<Endpoint> {
        let Some(raw) = raw else {
            return Some(Endpoint::ANY);
        };
        let addr = match &raw.address {
            Some(s) => self.addr_spec(r, &format!("{path}.address"), s),
            None => Some(AddrSpec::Any),
        };
        let port = port(r, &format!("{path}.port"), raw.port.as_ref(), protocol)?;
        Some(Endpoint {
            addr: addr?,
            invert: raw.invert,
            port,
        })
    }
}

/// `"network"` or `"broadcast"` when `ip` is that address of `net` (which a /31 or /32 has not):
/// no host's.
pub(super) fn network_or_broadcast(net: Prefix, ip: Ipv4Addr) -> Option<&'static str> {
    if net.len() > 30 {
        None
    } else if ip == net.addr() {
        Some("network")
    } else if ip == net.broadcast() {
        Some("broadcast")
    } else {
        None
    }
}

/// Adds `item` to `acc`; an invalid item (already reported) makes the whole list invalid.
fn collect<T>(acc: &mut Option<Vec<T>>, item: Option<T>) {
    match (acc.as_mut(), item) {
        (Some(v), Some(item)) => v.push(item),
        (_, None) => *acc = None,
        (None, Some(_)) => {}
    }
}

/// An optional port: `Some(None)` when absent, `None` when invalid.
fn port(
    r: &mut Report<'_>,
    path: &str,
    raw: Option<&RawPort>,
    protocol: Option<Protocol>,
) -> Option<Option<PortRange>> {
    let Some(raw) = raw else { return Some(None) };
    let range = match raw {
        RawPort::Int(p) => PortRange::from_int(*p),
        RawPort::Str(s) => PortRange::parse(s),
    };
    let range = r.check(path, range)?;
    if let Some(proto) = protocol.filter(|p| !p.has_ports()) {
        r.err(
            path,
            format!("a port needs protocol tcp, udp or tcp/udp (this rule has {proto})"),
        );
        return None;
    }
    Some(Some(range))
}

/// An optional protocol, `any` when absent.
fn protocol(r: &mut Report<'_>, path: &str, v: &Option<String>) -> Option<Protocol> {
    match v {
        Some(s) => r.check(path, Protocol::parse(s)),
        None => Some(Protocol::Any),
    }
}

/// A pass rule's `max_src_states` and `max_src_conn_rate` (`p` is the rule's path).
#[allow(clippy::type_complexity)]
fn src_limits(
    r: &mut Report<'_>,
    p: &str,
    rr: &RawFilterRule,
    action: Option<Action>,
) -> Option<(Option<u32>, Option<SrcConnRate>)> {
    let pass = action.is_none_or(|a| a == Action::Pass);
    let mut ok = true;
    let states = match rr.max_src_states {
        None => None,
        Some(_) if !pass => {
            r.err(
                format!("{p}.max_src_states"),
                "only pass rules create states",
            );
            ok = false;
            None
        }
        Some(v) => {
            let v = r
                .range(format!("{p}.max_src_states"), v, 1, MAX_STATE_LIMIT)
                .and_then(|v| u32::try_from(v).ok());
            ok &= v.is_some();
            v
        }
    };
    let rate = match rr.max_src_conn_rate.as_deref() {
        None => None,
        Some(_) if !pass => {
            r.err(
                format!("{p}.max_src_conn_rate"),
                "only pass rules create states",
            );
            ok = false;
            None
        }
        Some(s) => {
            let v = r.check(format!("{p}.max_src_conn_rate"), parse_conn_rate(s));
            ok &= v.is_some();
            v
        }
    };
    ok.then_some((states, rate))
}

/// `"CONNECTIONS/SECONDS"`, each 1..=1000000 (pf's `max-src-conn-rate 100/10`).
fn parse_conn_rate(s: &str) -> Result<SrcConnRate, String> {
    let bad = || format!("{s:?} is not CONNECTIONS/SECONDS, e.g. \"100/10\"");
    let (c, t) = s.split_once('/').ok_or_else(bad)?;
    let part = |x: &str| -> Result<u32, String> {
        let v: u32 = x.trim().parse().map_err(|_| bad())?;
        if (1..=MAX_CONN_RATE_PART).contains(&v) {
            Ok(v)
        } else {
            Err(format!(
                "{s:?}: {v} is out of range 1..={MAX_CONN_RATE_PART}"
            ))
        }
    };
    Ok(SrcConnRate {
        conns: part(c)?,
        seconds: part(t)?,
    })
}

fn aliases(r: &mut Report<'_>, raw: &[RawAlias]) -> (Vec<Option<Alias>>, HashSet<String>) {
    let mut out = Vec::with_capacity(raw.len());
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, ra) in raw.iter().enumerate() {
        let p = format!("aliases[{i}]");
        let name = r.text(format!("{p}.name"), &ra.name).and_then(|n| {
            if !is_name(n) {
                r.err(
                    format!("{p}.name"),
                    format!("{n:?} is not a valid name ({NAME_RULE})"),
                );
                None
            } else if n == "any" || n == "self" {
                r.err(format!("{p}.name"), format!("{n:?} is reserved"));
                None
            } else if let Some(j) = names.get(n) {
                r.err(
                    format!("{p}.name"),
                    format!("{n:?} is already used by aliases[{j}]"),
                );
                None
            } else {
                names.insert(n.to_owned(), i);
                Some(n)
            }
        });
        let kind = r
            .req(format!("{p}.type"), &ra.kind)
            .and_then(|s| r.check(format!("{p}.type"), AliasType::parse(s)));
        let mut entries = Some(Vec::with_capacity(ra.entries.len()));
        if let Some(kind) = kind {
            for (j, e) in ra.entries.iter().enumerate() {
                let parsed = match kind {
                    AliasType::Host if e.contains('/') => Err(format!(
                        "{e:?} is not a host address (a host alias holds a.b.c.d addresses; networks go in a type = \"network\" alias)"
                    )),
                    AliasType::Host => parse_ipv4(e).map(Prefix::host),
                    AliasType::Network => parse_network(e),
                };
                collect(&mut entries, r.check(format!("{p}.entries[{j}]"), parsed));
            }
        }
        out.push((|| {
            Some(Alias {
                name: name?.to_owned(),
                kind: kind?,
                entries: entries?,
                description: ra.description.clone(),
                no_sync: ra.no_sync,
            })
        })());
    }
    (out, names.into_keys().collect())
}
