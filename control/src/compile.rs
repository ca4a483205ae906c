//! Compiles a validated [`Config`] into what the dataplane runs: a [`Generation`] (interfaces,
//! virtual IPs, filter rules, outbound NAT, routes), the OS device of each dataplane interface,
//! and the filter of the sync link, which the kernel owns.
//!
//! What goes where:
//!
//! - **Interfaces.** Every interface whose role is not `sync`, in config order; its [`IfIndex`]
//!   is its position among them. The sync link belongs to the kernel (state and config sync run
//!   on its stack), so it is no dataplane interface. The MAC is the config's `mac`, else the
//!   device's own (the `macs` argument of [`compile`]; the daemon passes [`device_mac`]).
//! - **Virtual IPs** on dataplane interfaces: `carp` is held while this box is master of the VHID
//!   and answers ARP with the virtual MAC 00:00:5e:00:01:VHID; `ipalias` and `proxyarp` are always
//!   held and answer ARP with the interface's MAC. A `proxyarp` VIP is thus handled as an
//!   `ipalias`: the box also answers for it itself, where pfSense only answers its ARP. An `other`
//!   VIP (routed to the box by its neighbours, no ARP) is not compiled: the dataplane has no
//!   address it holds without answering ARP, so it is left out rather than answered wrongly.
//! - **Filter rules.** Per dataplane interface, its enabled rules ([`Config::rules_on`]) in order.
//!   A rule's number is its position in `[[filter.rules]]` counted from 1, disabled rules
//!   included, so that the CLI and the counters name the rule as it stands in the file. The rules
//!   of sync interfaces are compiled apart, into [`SyncFilter`]: they say what may reach tandem's
//!   own sync services on the kernel's stack.
//! - **Outbound NAT**, as pfSense's modes: `automatic` translates, on every dataplane interface
//!   of role `wan`, the networks of the dataplane interfaces of other roles (lan, other) to that
//!   WAN interface's address; `hybrid` puts the config's rules first, then the automatic ones;
//!   `manual` has the config's rules only; `disabled` none. The config's rules are numbered by
//!   their position in `[[nat.outbound.rules]]` from 1 (disabled ones included, not compiled);
//!   the automatic ones continue after the last of them. pfSense's automatic ISAKMP rule (UDP
//!   source port 500 kept static) is not generated: tandem has no IPsec, and the dataplane's NAT
//!   rules match no source port.
//! - **Routes.** The connected networks of the dataplane interfaces first (so that no static
//!   route shadows them), then the static routes, then the default route; a gateway leaves by the
//!   dataplane interface whose network holds it.

use std::net::Ipv4Addr;

use tandem_dataplane::filter::{
    self, AddrMatch, AddrSet, NatKind, NatRule, PortPolicy, ProtoMatch, Rule, Ruleset,
};
use tandem_dataplane::generation::{self, Generation, Vip, DEFAULT_MTU};
use tandem_dataplane::io::FRAME_SIZE;
use tandem_dataplane::route::{Route, RouteTable};
use tandem_dataplane::state::{Adaptive, ConnRate, SrcLimits, StateTable};
use tandem_dataplane::wire::{ethernet, MacAddr};
use tandem_dataplane::IfIndex;

use crate::config::{
    Action, Config, Endpoint, Interface, NatMode, OutboundNatRule, PortRange, Protocol, Role,
    System, VipKind,
};

/// Apply `[system]`'s table settings to the state table (at start and on every apply): the
/// state limit, the source-node limit and the adaptive timeouts. States above a lowered limit
/// stay until they expire; timeouts apply at the next expiry walk.
pub fn apply_table_limits(states: &StateTable, system: &System) -> Option<String> {
    let limit = states.set_limit(system.state_limit);
    let held = (limit < system.state_limit).then(|| {
        format!(
            "system.state_limit {} is above what the state table was sized for at start: \
             held at {limit} until tandemd restarts",
            system.state_limit
        )
    });
    if let Some(note) = &held {
        tracing::warn!(requested = system.state_limit, in_force = limit, "{note}");
    }
    states.src_nodes().set_max_nodes(system.src_node_limit);
    let mut timeouts = states.timeouts();
    timeouts.adaptive = system.adaptive.map(|a| Adaptive {
        start: a.start,
        end: a.end,
    });
    states.set_timeouts(timeouts);
    held
}

/// The source ports a translated connection gets unless its rule says otherwise (pfSense's).
pub const DEFAULT_NAT_PORTS: PortPolicy = PortPolicy::Range(1024, u16::MAX);

/// Why a valid config cannot be compiled for this box. The Display form names what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// `interface NAME: no MAC address for device DEV`: the config sets no `mac` and the device's
    /// own could not be read (no such device?).
    #[error("interface {interface}: no MAC address for device {device}")]
    NoMac {
        /// The interface name.
        interface: String,
        /// Its OS device.
        device: String,
    },
    /// `interface NAME: device DEV has MAC M, not a unicast address`: the device's MAC cannot be
    /// an interface's own (all zero, as a loopback's, or multicast).
    #[error("interface {interface}: device {device} has MAC {mac}, not a unicast address")]
    BadMac {
        /// The interface name.
        interface: String,
        /// Its OS device.
        device: String,
        /// What the device reported.
        mac: MacAddr,
    },
    /// `WHAT: N ITEMS, at most MAX`: more of something than the dataplane can number.
    #[error("{what}: {count} {items}, at most {max}")]
    TooMany {
        /// The config section (`interfaces`, `filter.rules`...).
        what: &'static str,
        /// What is counted (`dataplane interfaces`...).
        items: &'static str,
        /// How many the config has.
        count: usize,
        /// How many fit.
        max: u64,
    },
    /// `PATH: GW is not on the network of a dataplane interface`: a gateway on the sync link's
    /// network (the kernel's) or, in a config that skipped validation, on none.
    #[error("{path}: {gateway} is not on the network of a dataplane interface")]
    GatewayNotOnDataplane {
        /// The field, e.g. `routes.static[0].gateway` or `routes.default_gateway`.
        path: String,
        /// The gateway.
        gateway: Ipv4Addr,
    },
    /// `PATH: NAME is not a dataplane interface`: an outbound NAT rule leaving by a sync
    /// interface (the kernel's), or by an interface that does not exist.
    #[error("{path}: {interface} is not a dataplane interface")]
    NotDataplane {
        /// The field, e.g. `nat.outbound.rules[0].interface`.
        path: String,
        /// The interface name.
        interface: String,
    },
    /// `PATH: the dataplane's outbound NAT rules match no source port`: a NAT rule with
    /// `source.port`, which the dataplane cannot honour (ignoring it would translate more than the
    /// rule says).
    #[error("{path}: the dataplane's outbound NAT rules match no source port")]
    NatSourcePort {
        /// The field, e.g. `nat.outbound.rules[0].source.port`.
        path: String,
    },
}

impl CompileError {
    /// The config field the error is about, when it names one (`interfaces` for too many).
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::GatewayNotOnDataplane { path, .. }
            | Self::NotDataplane { path, .. }
            | Self::NatSourcePort { path } => Some(path),
            Self::TooMany { what, .. } => Some(what),
            Self::NoMac { .. } | Self::BadMac { .. } => None,
        }
    }
}

/// The filter of the sync interfaces. The kernel owns the sync link, so its rules are not the
/// dataplane's: they say what may reach tandem's sync services (state sync, config sync), which
/// apply them to what they receive. Same semantics as the dataplane's: first match wins, default
/// deny.
#[derive(Debug)]
pub struct SyncFilter {
    /// The sync interfaces' names, in config order; a name's position is the `in_if` of the
    /// [`PacketMeta`](filter::PacketMeta) to evaluate its packets with.
    pub interfaces: Vec<String>,
    /// Their rules, numbered as the dataplane's (position in `[[filter.rules]]` from 1).
    pub ruleset: Ruleset,
}

impl SyncFilter {
    /// The `in_if` of the sync interface named `name`.
    pub fn index(&self, name: &str) -> Option<IfIndex> {
        let i = self.interfaces.iter().position(|n| n == name)?;
        IfIndex::try_from(i).ok()
    }
}

/// A compiled config.
#[derive(Debug)]
pub struct Compiled {
    /// What the dataplane runs.
    pub generation: Generation,
    /// The OS device of each dataplane interface, indexed by [`IfIndex`].
    pub devices: Vec<String>,
    /// The rules of the sync link, for the sync services.
    pub sync: SyncFilter,
}

/// Compiles `config` into generation `number`. `macs` gives the MAC of an OS device, for the
/// interfaces whose config sets none (the daemon passes [`device_mac`]; tests a closure).
pub fn compile(
    config: &Config,
    number: u64,
    macs: &dyn Fn(&str) -> Option<MacAddr>,
) -> Result<Compiled, CompileError> {
    let dataplane: Vec<&Interface> = config
        .interfaces
        .iter()
        .filter(|i| i.role != Role::Sync)
        .collect();
    let sync: Vec<&Interface> = config
        .interfaces
        .iter()
        .filter(|i| i.role == Role::Sync)
        .collect();
    check_count("interfaces", "dataplane interfaces", dataplane.len())?;
    check_count("interfaces", "sync interfaces", sync.len())?;
    let index = |name: &str| -> Option<IfIndex> {
        let i = dataplane.iter().position(|f| f.name == name)?;
        IfIndex::try_from(i).ok()
    };

    let interfaces = dataplane
        .iter()
        .map(|f| {
            let dhcp = config
                .dhcp
                .iter()
                .any(|d| d.enabled && d.interface == f.name);
            dataplane_interface(f, macs).map(|i| generation::Interface { dhcp, ..i })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let vips = vips(config, &index);
    let rules = dataplane
        .iter()
        .map(|f| filter_rules(config, &f.name))
        .collect::<Result<Vec<_>, _>>()?;
    let nat = outbound_nat(config, &dataplane, &index)?;
    let routes = routes(config, &dataplane)?;

    let sync_rules = sync
        .iter()
        .map(|f| filter_rules(config, &f.name))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Compiled {
        generation: Generation {
            number,
            interfaces,
            vips,
            ruleset: Ruleset::new(rules, nat, number),
            routes: RouteTable::new(routes),
            allow_ip_options: config.system.allow_ip_options,
        },
        devices: dataplane.iter().map(|f| f.device.clone()).collect(),
        sync: SyncFilter {
            interfaces: sync.iter().map(|f| f.name.clone()).collect(),
            ruleset: Ruleset::new(sync_rules, Vec::new(), number),
        },
    })
}

/// The MAC address of OS device `device`, read from `/sys/class/net/DEVICE/address`; `None` when
/// the device does not exist or the name could leave that directory.
pub fn device_mac(device: &str) -> Option<MacAddr> {
    if device.is_empty() || device.contains('/') || device == "." || device == ".." {
        return None;
    }
    let text = std::fs::read_to_string(format!("/sys/class/net/{device}/address")).ok()?;
    text.trim().parse().ok()
}

/// Errors when `count` items do not all get an [`IfIndex`].
fn check_count(what: &'static str, items: &'static str, count: usize) -> Result<(), CompileError> {
    let max = usize::from(IfIndex::MAX) + 1;
    if count > max {
        return Err(CompileError::TooMany {
            what,
            items,
            count,
            max: max as u64,
        });
    }
    Ok(())
}

/// A rule number: `i`, the position in its config list from 0, plus 1.
fn rule_number(what: &'static str, i: usize) -> Result<u32, CompileError> {
    u32::try_from(i + 1).map_err(|_| CompileError::TooMany {
        what,
        items: "rules",
        count: i + 1,
        max: u64::from(u32::MAX),
    })
}

fn dataplane_interface(
    f: &Interface,
    macs: &dyn Fn(&str) -> Option<MacAddr>,
) -> Result<generation::Interface, CompileError> {
    let mac = match f.mac {
        Some(m) => MacAddr(m.0),
        None => {
            let mac = macs(&f.device).ok_or_else(|| CompileError::NoMac {
                interface: f.name.clone(),
                device: f.device.clone(),
            })?;
            if mac.is_multicast() || mac == MacAddr::ZERO {
                return Err(CompileError::BadMac {
                    interface: f.name.clone(),
                    device: f.device.clone(),
                    mac,
                });
            }
            mac
        }
    };
    Ok(generation::Interface {
        name: f.name.clone(),
        mac,
        addr: Some((f.ip(), f.address.len())),
        dhcp: false,
        mtu: device_mtu(&f.device).unwrap_or(DEFAULT_MTU),
    })
}

/// The MTU of an OS device from sysfs (the daemon runs in the box's network namespace); None
/// for a device that does not exist (tests, `--check-config` elsewhere). Capped to what fits
/// in a frame buffer (a frame the dataplane receives is never longer), and at least IPv4's
/// minimum of 68 (RFC 791).
pub fn device_mtu(device: &str) -> Option<u16> {
    if device.is_empty() || device.contains('/') || device == "." || device == ".." {
        return None;
    }
    let text = std::fs::read_to_string(format!("/sys/class/net/{device}/mtu")).ok()?;
    let mtu: u32 = text.trim().parse().ok()?;
    let cap = FRAME_SIZE - ethernet::HEADER_LEN;
    u16::try_from(mtu.clamp(68, u32::try_from(cap).ok()?)).ok()
}

/// The VIPs the dataplane answers for (see the module's doc for `proxyarp` and `other`).
fn vips(config: &Config, index: &dyn Fn(&str) -> Option<IfIndex>) -> Vec<Vip> {
    config
        .virtual_ips
        .iter()
        .filter_map(|v| {
            let vhid = match &v.kind {
                VipKind::Carp(c) => Some(c.vhid),
                VipKind::IpAlias | VipKind::ProxyArp => None,
                VipKind::Other => return None,
            };
            Some(Vip {
                if_index: index(&v.interface)?,
                addr: v.address.addr(),
                prefix_len: v.address.len(),
                vhid,
            })
        })
        .collect()
}

/// The enabled rules of interface `name` in order, as [`Config::rules_on`] lists them, numbered
/// by their position in `[[filter.rules]]`.
fn filter_rules(config: &Config, name: &str) -> Result<Vec<Rule>, CompileError> {
    let mut out = Vec::new();
    for (i, r) in config.filter.rules.iter().enumerate() {
        if r.interface != name || r.disabled {
            continue;
        }
        let mut rule = Rule::new(rule_number("filter.rules", i)?, action(r.action))
            .with_proto(proto(r.protocol))
            .with_src(addr_match(config, &r.source))
            .with_dst(addr_match(config, &r.destination))
            .with_description(r.description.clone());
        rule.src_port = r.source.port.map(port_range);
        rule.dst_port = r.destination.port.map(port_range);
        rule.log = r.log;
        rule.src_limits = SrcLimits {
            max_states: r.max_src_states.unwrap_or(0),
            rate: r.max_src_conn_rate.map(|c| ConnRate {
                conns: c.conns,
                seconds: c.seconds,
            }),
        };
        out.push(rule);
    }
    Ok(out)
}

fn action(a: Action) -> filter::Action {
    match a {
        Action::Pass => filter::Action::Pass,
        Action::Block => filter::Action::Block,
        Action::Reject => filter::Action::Reject,
    }
}

fn proto(p: Protocol) -> ProtoMatch {
    match p {
        Protocol::Any => ProtoMatch::Any,
        Protocol::Tcp => ProtoMatch::Tcp,
        Protocol::Udp => ProtoMatch::Udp,
        Protocol::TcpUdp => ProtoMatch::TcpUdp,
        Protocol::Icmp => ProtoMatch::Icmp,
        Protocol::Carp => ProtoMatch::Proto(filter::proto::CARP),
        Protocol::Pfsync => ProtoMatch::Proto(filter::proto::PFSYNC),
    }
}

fn port_range(p: PortRange) -> filter::PortRange {
    filter::PortRange::new(p.lo, p.hi)
}

/// An endpoint's addresses, resolved ([`Config::resolve`]: aliases flattened, `<if> net` and
/// `self` expanded), with its inversion.
fn addr_match(config: &Config, e: &Endpoint) -> AddrMatch {
    let m = match config.resolve(&e.addr) {
        None => AddrMatch::ANY,
        Some(prefixes) => AddrMatch::set(AddrSet::new(prefixes)),
    };
    if e.invert {
        m.inverted()
    } else {
        m
    }
}

/// The outbound NAT rules of the config's mode, in evaluation order.
fn outbound_nat(
    config: &Config,
    dataplane: &[&Interface],
    index: &dyn Fn(&str) -> Option<IfIndex>,
) -> Result<Vec<NatRule>, CompileError> {
    let out = &config.nat.outbound;
    let (manual, automatic) = match out.mode {
        NatMode::Automatic => (false, true),
        NatMode::Hybrid => (true, true),
        NatMode::Manual => (true, false),
        NatMode::Disabled => (false, false),
    };
    let mut nat = Vec::new();
    if manual {
        for (i, r) in out.rules.iter().enumerate() {
            if !r.disabled {
                nat.push(manual_nat(config, i, r, index)?);
            }
        }
    }
    if automatic {
        let mut number = rule_number("nat.outbound.rules", out.rules.len())?;
        for wan in dataplane.iter().filter(|f| f.role == Role::Wan) {
            let Some(out_if) = index(&wan.name) else {
                continue;
            };
            for inside in dataplane.iter().filter(|f| f.role != Role::Wan) {
                let mut rule = NatRule::translate(number, out_if, wan.ip());
                rule.src = AddrMatch::set(AddrSet::new([inside.network()]));
                rule.description =
                    format!("automatic: {} net to {} address", inside.name, wan.name);
                nat.push(rule);
                number = number.saturating_add(1);
            }
        }
    }
    Ok(nat)
}

/// The `i`th rule of `[[nat.outbound.rules]]`.
fn manual_nat(
    config: &Config,
    i: usize,
    r: &OutboundNatRule,
    index: &dyn Fn(&str) -> Option<IfIndex>,
) -> Result<NatRule, CompileError> {
    let path = format!("nat.outbound.rules[{i}]");
    let out_if = index(&r.interface).ok_or_else(|| CompileError::NotDataplane {
        path: format!("{path}.interface"),
        interface: r.interface.clone(),
    })?;
    if r.source.port.is_some() {
        return Err(CompileError::NatSourcePort {
            path: format!("{path}.source.port"),
        });
    }
    let kind = if r.no_nat {
        NatKind::NoNat
    } else {
        let addr = config
            .translation_ip(r)
            .ok_or_else(|| CompileError::NotDataplane {
                path: format!("{path}.interface"),
                interface: r.interface.clone(),
            })?;
        let ports = match (r.translation.static_port, r.translation.port) {
            (true, _) => PortPolicy::Static,
            (false, Some(p)) => PortPolicy::Range(p.lo, p.hi),
            (false, None) => DEFAULT_NAT_PORTS,
        };
        NatKind::Translate { addr, ports }
    };
    Ok(NatRule {
        number: rule_number("nat.outbound.rules", i)?,
        out_if,
        proto: proto(r.protocol),
        src: addr_match(config, &r.source),
        dst: addr_match(config, &r.destination),
        dst_port: r.destination.port.map(port_range),
        kind,
        description: r.description.clone(),
    })
}

/// Connected networks, static routes, the default route.
fn routes(config: &Config, dataplane: &[&Interface]) -> Result<Vec<Route>, CompileError> {
    let via = |path: String, gateway: Ipv4Addr| -> Result<IfIndex, CompileError> {
        dataplane
            .iter()
            .position(|f| f.network().contains(gateway))
            .and_then(|i| IfIndex::try_from(i).ok())
            .ok_or(CompileError::GatewayNotOnDataplane { path, gateway })
    };
    let mut routes = Vec::new();
    for (i, f) in dataplane.iter().enumerate() {
        let Ok(out_if) = IfIndex::try_from(i) else {
            break;
        };
        routes.push(Route {
            prefix: f.network(),
            out_if,
            gateway: None,
        });
    }
    for (i, s) in config.routes.static_routes.iter().enumerate() {
        routes.push(Route {
            prefix: s.network,
            out_if: via(format!("routes.static[{i}].gateway"), s.gateway)?,
            gateway: Some(s.gateway),
        });
    }
    if let Some(gw) = config.routes.default_gateway {
        routes.push(Route {
            prefix: filter::Prefix::ANY,
            out_if: via("routes.default_gateway".to_owned(), gw)?,
            gateway: Some(gw),
        });
    }
    Ok(routes)
}
