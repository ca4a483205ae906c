//! Checks over one box's config: what breaks a failover whatever the peer says.

use std::net::Ipv4Addr;

use tandem_dataplane::filter::{Action, PacketMeta, Ruleset, Verdict};

use super::{compiled, Findings, Severity};
use crate::compile::SyncFilter;
use crate::config::{AddrSpec, Config, NatMode, Prefix, Role, SyncSection, TranslationAddr};
use tandem_dataplane::wire::ipv4::proto::{CARP as CARP_PROTO, PFSYNC as PFSYNC_PROTO, TCP};
use tandem_dataplane::wire::ipv4::CARP_GROUP;

/// Every single-box check of `c`; `who` prefixes field paths (`""` or `"peer:"`). The peer's
/// config, when known, says who sends adverts and sync traffic (else an address of the network
/// stands in for it, and a refusal is only a warning: a rule may name the real peer).
pub fn check(c: &Config, peer: Option<&Config>, who: &str, f: &mut Findings) {
    nat_to_vip(c, who, f);
    if let Some(compiled) = compiled(c) {
        let index = |n: &str| compiled.generation.interface_index(n);
        carp_adverts_pass(c, peer, who, &compiled.generation.ruleset, &index, f);
        let sync_index = |n: &str| compiled.sync.index(n);
        sync_link_passes(c, peer, who, &compiled.sync.ruleset, &sync_index, f);
    }
    ha_present(c, who, f);
    dhcp_hands_out_the_vip(c, who, f);
    for w in crate::config::warnings("", c) {
        f.add(
            "config-warning",
            Severity::Warning,
            format!("{who}{}", w.path),
            w.message,
            "see the message",
        );
    }
}

/// Interfaces that carry a CARP VIP.
fn carp_interfaces(c: &Config) -> Vec<&str> {
    let mut v: Vec<&str> = c
        .virtual_ips
        .iter()
        .filter(|v| v.carp().is_some())
        .map(|v| v.interface.as_str())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn is_carp_vip_on(c: &Config, iface: &str, ip: Ipv4Addr) -> bool {
    c.vips_on(iface)
        .any(|v| v.carp().is_some() && v.address.addr() == ip)
}

/// Outbound NAT must translate to a CARP VIP on an interface CARP protects: a state NATed to
/// the box's own address is useless on the peer, which does not hold that address.
fn nat_to_vip(c: &Config, who: &str, f: &mut Findings) {
    let carp = carp_interfaces(c);
    let out = &c.nat.outbound;
    let manual = matches!(out.mode, NatMode::Hybrid | NatMode::Manual);
    let automatic = matches!(out.mode, NatMode::Hybrid | NatMode::Automatic);
    if manual {
        for (i, r) in out.rules.iter().enumerate() {
            if r.disabled || r.no_nat || !carp.contains(&r.interface.as_str()) {
                continue;
            }
            let ip = c.translation_ip(r);
            if ip.is_some_and(|ip| is_carp_vip_on(c, &r.interface, ip)) {
                continue;
            }
            let to = match r.translation.address {
                TranslationAddr::InterfaceAddress => "the interface address".to_string(),
                TranslationAddr::Addr(a) => a.to_string(),
            };
            f.add(
                "nat-not-vip",
                Severity::Error,
                format!("{who}nat.outbound.rules[{i}].translation"),
                format!(
                    "translates to {to}, not a CARP VIP of {}: connections NATed by this box break when the peer takes over (the peer does not hold that address)",
                    r.interface
                ),
                format!("translate to a CARP VIP of {} (the seed: \"Address: the WAN CARP VIP\")", r.interface),
            );
        }
    }
    if !automatic {
        return;
    }
    // Automatic rules translate every inside network to each WAN's own address; in hybrid
    // mode a manual rule ahead of them may cover an inside network.
    for wan in c.interfaces.iter().filter(|i| i.role == Role::Wan) {
        if !carp.contains(&wan.name.as_str()) {
            continue;
        }
        for inside in c
            .interfaces
            .iter()
            .filter(|i| i.role != Role::Wan && i.role != Role::Sync)
        {
            let covered = manual
                && out.rules.iter().any(|r| {
                    !r.disabled
                        && r.interface == wan.name
                        && r.destination.addr == AddrSpec::Any
                        && !r.source.invert
                        && covers(c, &r.source.addr, inside.network())
                });
            if !covered {
                f.add(
                    "nat-not-vip",
                    Severity::Error,
                    format!("{who}nat.outbound.mode"),
                    format!(
                        "{} mode translates {} net to {}'s own address {}: NATed connections from {} break at failover",
                        out.mode, inside.name, wan.name, wan.ip(), inside.name
                    ),
                    format!(
                        "use hybrid or manual mode with a rule translating {} to a CARP VIP of {}",
                        inside.network(), wan.name
                    ),
                );
            }
        }
    }
}

/// Whether `spec` covers all of `net`.
fn covers(c: &Config, spec: &AddrSpec, net: Prefix) -> bool {
    match c.resolve(spec) {
        None => true,
        Some(prefixes) => prefixes
            .iter()
            .any(|p| p.len() <= net.len() && p.contains(net.addr())),
    }
}

/// An address of `net` other than `own`: who the peer might be when its config is not known.
fn other_host(net: Prefix, own: Ipv4Addr) -> Ipv4Addr {
    let base = u32::from(net.addr());
    let first = Ipv4Addr::from(base.wrapping_add(1));
    if first == own {
        Ipv4Addr::from(base.wrapping_add(2))
    } else {
        first
    }
}

fn passes(
    rules: &Ruleset,
    in_if: Option<u8>,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dport: u16,
) -> bool {
    let Some(in_if) = in_if else { return false };
    let meta = PacketMeta {
        in_if,
        proto,
        src,
        dst,
        sport: 40_000,
        dport,
    };
    matches!(
        rules.evaluate(&meta),
        Verdict::Rule {
            action: Action::Pass,
            ..
        }
    )
}

/// The peer's adverts must pass each CARP interface's rules (tandem has no hidden rules), or
/// this box never hears its peer and both boxes are master.
fn carp_adverts_pass(
    c: &Config,
    peer_config: Option<&Config>,
    who: &str,
    rules: &Ruleset,
    index: &dyn Fn(&str) -> Option<u8>,
    f: &mut Findings,
) {
    for name in carp_interfaces(c) {
        let Some(iface) = c.interface(name) else {
            continue;
        };
        let known = peer_config.and_then(|p| p.interface(name)).map(|i| i.ip());
        let peer = known.unwrap_or_else(|| other_host(iface.network(), iface.ip()));
        if !passes(rules, index(name), CARP_PROTO, peer, CARP_GROUP, 0) {
            let i = c
                .virtual_ips
                .iter()
                .position(|v| v.interface == name && v.carp().is_some())
                .unwrap_or(0);
            f.add(
                "carp-adverts-blocked",
                peer_severity(known.is_some()),
                format!("{who}virtual_ips[{i}].interface"),
                format!(
                    "the rules of {name} do not pass CARP adverts (protocol carp to {CARP_GROUP}) from {peer}{}: this box will not hear its peer, and both will be MASTER",
                    if known.is_some() {
                        ", the peer"
                    } else {
                        " (standing in for the peer, whose config is not known)"
                    }
                ),
                format!(
                    "add a rule on {name}: action pass, protocol carp, source \"{name} net\", destination \"{CARP_GROUP}\""
                ),
            );
        }
    }
}

/// The sync interface's rules must pass state sync (pfsync) and, on the box that accepts
/// pushes, config sync, from the peer.
fn sync_link_passes(
    c: &Config,
    peer_config: Option<&Config>,
    who: &str,
    rules: &Ruleset,
    index: &dyn Fn(&str) -> Option<u8>,
    f: &mut Findings,
) {
    let Some(link) = c.sync_link() else {
        return;
    };
    let in_if = index(&link.name);
    let peer_link = peer_config.and_then(Config::sync_link).map(|i| i.ip());
    if let Some(ss) = c.ha.state_sync.as_ref().filter(|s| s.enabled) {
        let known = ss.peer.or(peer_link);
        let peer = known.unwrap_or_else(|| other_host(link.network(), link.ip()));
        if !passes(rules, in_if, PFSYNC_PROTO, peer, link.ip(), 0) {
            f.add(
                "state-sync-blocked",
                peer_severity(known.is_some()),
                format!("{who}ha.state_sync.interface"),
                format!(
                    "the rules of {} do not pass pfsync from {peer} to this box: no state reaches it, and every connection stalls at failover (its packets dropped)",
                    link.name
                ),
                format!(
                    "add a rule on {}: action pass, protocol pfsync, source an alias of both boxes' sync addresses (or the sync network {}), destination \"self\" (the same rule on both boxes survives config sync's push)",
                    link.name,
                    link.network()
                ),
            );
        }
    }
    if let Some(cs) = &c.ha.config_sync {
        let known = cs
            .sync_to
            .or_else(|| c.ha.state_sync.as_ref().and_then(|s| s.peer))
            .or(peer_link);
        let peer = known.unwrap_or_else(|| other_host(link.network(), link.ip()));
        if !passes(rules, in_if, TCP, peer, link.ip(), cs.port) {
            // The primary's rules become the secondary's when it pushes them: a rule that
            // blocks config sync here then blocks it there too.
            let rules_travel = cs.pushes() && cs.sections.contains(&SyncSection::Rules);
            let (severity, why) = if !cs.pushes() {
                (Severity::Error, "no push of the primary's config reaches this box, and the two configs drift apart")
            } else if rules_travel {
                (
                    Severity::Error,
                    "these rules are pushed to the secondary, where they lock config sync out",
                )
            } else {
                (Severity::Warning, "the peer's doctor cannot read this box")
            };
            let severity = if known.is_some() {
                severity
            } else {
                Severity::Warning
            };
            f.add(
                "config-sync-blocked",
                severity,
                format!("{who}ha.config_sync.port"),
                format!(
                    "the rules of {} do not pass TCP from {peer} to this box's port {}: {why}",
                    link.name, cs.port
                ),
                format!(
                    "add a rule on {}: action pass, protocol tcp, source an alias of both boxes' sync addresses (or the sync network {}), destination {{ address = \"self\", port = {} }} (the same rule on both boxes survives config sync's push)",
                    link.name,
                    link.network(),
                    cs.port
                ),
            );
        }
    }
}

/// Why the sync link's rules of `c` (a config about to run on a config sync secondary) would
/// cut it off from `primary`: config sync from it, or state sync from the state sync peer. A
/// push that does this is refused: no later push could undo it. `sync` is `c`'s compiled sync
/// filter (the caller has compiled `c` already).
pub fn sync_lockout(c: &Config, sync: &SyncFilter, primary: Ipv4Addr) -> Vec<String> {
    let (Some(link), Some(cs)) = (c.sync_link(), &c.ha.config_sync) else {
        return Vec::new();
    };
    let rules = &sync.ruleset;
    let in_if = sync.index(&link.name);
    let mut out = Vec::new();
    if !passes(rules, in_if, TCP, primary, link.ip(), cs.port) {
        out.push(format!(
            "the sync interface {}'s rules would no longer pass config sync (tcp to port {}) from {primary}: no later push could arrive",
            link.name, cs.port
        ));
    }
    if let Some(ss) = c.ha.state_sync.as_ref().filter(|s| s.enabled) {
        let peer = ss.peer.unwrap_or(primary);
        if !passes(rules, in_if, PFSYNC_PROTO, peer, link.ip(), 0) {
            out.push(format!(
                "the sync interface {}'s rules would no longer pass state sync (pfsync) from {peer}: no state would reach this box",
                link.name
            ));
        }
    }
    out
}

/// A DHCP server on a CARP interface must hand out the VIP as gateway (and DNS, when the box
/// serves DNS on it): a client that learns a box's own address loses its gateway with the box.
fn dhcp_hands_out_the_vip(c: &Config, who: &str, f: &mut Findings) {
    for (i, d) in c.dhcp.iter().enumerate() {
        if !d.enabled {
            continue;
        }
        let vips: Vec<Ipv4Addr> = c
            .vips_on(&d.interface)
            .filter(|v| v.carp().is_some())
            .map(|v| v.address.addr())
            .collect();
        if vips.is_empty() {
            continue;
        }
        let own = c.interface(&d.interface).map(|i| i.ip());
        if !vips.contains(&d.gateway) {
            f.add(
                "dhcp-gateway-not-vip",
                Severity::Error,
                format!("{who}dhcp[{i}].gateway"),
                format!(
                    "clients on {} get {} as their gateway, not the CARP VIP: they lose it when this box fails",
                    d.interface, d.gateway
                ),
                format!("set gateway to the VIP {} (or leave it out: that is the default)", vips[0]),
            );
        }
        for (j, dns) in d.dns.iter().enumerate() {
            if Some(*dns) == own {
                f.add(
                    "dhcp-dns-not-vip",
                    Severity::Warning,
                    format!("{who}dhcp[{i}].dns[{j}]"),
                    format!("clients on {} get this box's own address {dns} as DNS server: they lose it when this box fails", d.interface),
                    format!("hand out the VIP {} (or another server)", vips[0]),
                );
            }
        }
    }
}

/// CARP without state sync resets every connection at failover; without config sync the two
/// configs drift apart.
fn ha_present(c: &Config, who: &str, f: &mut Findings) {
    if carp_interfaces(c).is_empty() {
        return;
    }
    if !c.ha.state_sync.as_ref().is_some_and(|s| s.enabled) {
        f.add(
            "no-state-sync",
            Severity::Warning,
            format!("{who}ha.state_sync"),
            "CARP VIPs but no state sync: every connection through this box resets when the peer takes over",
            "add [ha.state_sync] with the sync interface, the peer and a shared key",
        );
    }
    if c.ha.config_sync.is_none() {
        f.add(
            "no-config-sync",
            Severity::Info,
            format!("{who}ha.config_sync"),
            "CARP VIPs but no config sync: rules and NAT must be kept equal on both boxes by hand",
            "add [ha.config_sync] (sync_to on the primary only)",
        );
    }
}

/// A blocked flow from the peer is an error when the peer's address is known (from its config
/// or ours), a warning when a stand-in address was checked.
fn peer_severity(known: bool) -> Severity {
    if known {
        Severity::Error
    } else {
        Severity::Warning
    }
}
