//! Checks over the pair's configs: what must agree between the two boxes.
//!
//! Field paths are this box's (`virtual_ips[1].password`) or, prefixed `peer:`, the peer's.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::{Findings, Severity};
use crate::carp::machine::MAX_SKEW;
use crate::config::{Config, VipKind, VirtualIp};

/// Every pair check of `own` against `peer`.
pub fn check(own: &Config, peer: &Config, f: &mut Findings) {
    host_ids(own, peer, f);
    interfaces(own, peer, f);
    vips(own, peer, "", f);
    vips(peer, own, "peer:", f);
    skews(own, peer, f);
    config_sync(own, peer, f);
    state_sync(own, peer, f);
    names_peer_lacks(own, peer, "", f);
    names_peer_lacks(peer, own, "peer:", f);
    duplicate_addresses(own, peer, f);
    gateways_through_peer(own, peer, "", f);
    gateways_through_peer(peer, own, "peer:", f);
    dhcp(own, peer, "", f);
    dhcp(peer, own, "peer:", f);
    drift(own, peer, f);
}

/// The addresses a box answers ARP for whatever the other does: its interfaces' and its own
/// VIPs' (ipalias, proxyarp), with the field that sets each.
fn own_addresses(c: &Config) -> Vec<(Ipv4Addr, String)> {
    let ifaces = c
        .interfaces
        .iter()
        .enumerate()
        .map(|(i, f)| (f.address.addr(), format!("interfaces[{i}].address")));
    let vips = c
        .virtual_ips
        .iter()
        .enumerate()
        .filter(|(_, v)| matches!(v.kind, VipKind::IpAlias | VipKind::ProxyArp))
        .map(|(i, v)| (v.address.addr(), format!("virtual_ips[{i}].address")));
    ifaces.chain(vips).collect()
}

/// An address both boxes hold as their own (not a CARP VIP, which one holds at a time): both
/// answer ARP for it, and its traffic goes to whichever answered last.
fn duplicate_addresses(own: &Config, peer: &Config, f: &mut Findings) {
    let theirs = own_addresses(peer);
    for (ip, field) in own_addresses(own) {
        if let Some((_, other)) = theirs.iter().find(|(a, _)| *a == ip) {
            f.add(
                "address-duplicate",
                Severity::Error,
                field,
                format!("{ip} is this box's own address and the peer's too (peer:{other}): both answer ARP for it, and its traffic goes to either box"),
                "give each box its own address; an address the pair shares is a CARP VIP",
            );
        }
    }
}

/// A route through the peer box: when the peer fails (what the cluster is for), the route is
/// gone with it; two boxes routing through each other loop.
fn gateways_through_peer(own: &Config, peer: &Config, prefix: &str, f: &mut Findings) {
    let peers = own_addresses(peer);
    let gateways = own
        .routes
        .default_gateway
        .map(|g| (g, "routes.default_gateway".to_owned()))
        .into_iter()
        .chain(
            own.routes
                .static_routes
                .iter()
                .enumerate()
                .map(|(i, r)| (r.gateway, format!("routes.static[{i}].gateway"))),
        );
    for (gw, field) in gateways {
        if peers.iter().any(|(a, _)| *a == gw) {
            f.add(
                "gateway-is-peer",
                Severity::Warning,
                format!("{prefix}{field}"),
                format!("{gw} is the other box's own address: this route fails with the box it should survive, and two boxes routing through each other loop"),
                "route through the upstream router (or a VIP the pair shares)",
            );
        }
    }
}

/// Whether `c` has a CARP VIP on `interface`.
fn has_carp_vip(c: &Config, interface: &str) -> bool {
    c.virtual_ips
        .iter()
        .any(|v| v.interface == interface && v.carp().is_some())
}

/// A DHCP server whose pool holds the other box's address, and one that answers on both boxes:
/// a pool on an interface with no CARP VIP has no master to keep the backup's server silent,
/// so both boxes lease from the same pool without knowing each other's leases.
fn dhcp(own: &Config, peer: &Config, prefix: &str, f: &mut Findings) {
    let peers = own_addresses(peer);
    let peer_vips: Vec<Ipv4Addr> = peer.virtual_ips.iter().map(|v| v.address.addr()).collect();
    for (i, d) in own.dhcp.iter().enumerate().filter(|(_, d)| d.enabled) {
        for (lo, hi) in &d.ranges {
            let inside = |ip: Ipv4Addr| (*lo..=*hi).contains(&ip);
            if let Some(ip) = peers
                .iter()
                .map(|(a, _)| *a)
                .chain(peer_vips.iter().copied())
                .find(|&ip| inside(ip))
            {
                f.add(
                    "dhcp-pool-holds-peer",
                    Severity::Error,
                    format!("{prefix}dhcp[{i}].ranges"),
                    format!("the range {lo}-{hi} holds {ip}, the other box's address: a client leased it takes the peer's traffic"),
                    "keep both boxes' addresses and VIPs out of the pool",
                );
            }
        }
        let peer_serves = peer
            .dhcp
            .iter()
            .any(|e| e.enabled && e.interface == d.interface);
        // A server stays silent only as the backup of a CARP VIP on its interface: without one
        // on either box, that box always answers. Reported once, from this box's side.
        let silent_as_backup = |c: &Config| has_carp_vip(c, &d.interface);
        if peer_serves && prefix.is_empty() && !(silent_as_backup(own) && silent_as_backup(peer)) {
            f.add(
                "dhcp-both-serve",
                Severity::Error,
                format!("dhcp[{i}].interface"),
                format!("both boxes serve DHCP on {} and a CARP VIP there is missing on at least one of them: a box without it answers even as backup, from a pool that does not know the other's leases", d.interface),
                "give the interface a CARP VIP on both boxes (the backup's server stays silent), or serve DHCP from one box",
            );
        }
    }
}

fn host_ids(own: &Config, peer: &Config, f: &mut Findings) {
    if own.system.host_id == peer.system.host_id {
        f.add(
            "host-id-equal",
            Severity::Error,
            "system.host_id",
            format!(
                "both boxes have host id {}: their synced states collide, and the peer's are taken for this box's own",
                own.system.host_id
            ),
            "give each box of the cluster its own system.host_id",
        );
    }
}

/// Interfaces of the same name must be on the same network.
fn interfaces(own: &Config, peer: &Config, f: &mut Findings) {
    for (i, mine) in own.interfaces.iter().enumerate() {
        if let Some(theirs) = peer.interface(&mine.name) {
            if theirs.network() != mine.network() {
                f.add(
                    "interface-network-mismatch",
                    Severity::Error,
                    format!("interfaces[{i}].address"),
                    format!(
                        "{} is on {} here and on {} on the peer: VIPs, rules and routes of one box do not fit the other",
                        mine.name,
                        mine.network(),
                        theirs.network()
                    ),
                    "put both boxes' interfaces of one name on the same network",
                );
            }
        }
    }
}

fn carp_key(v: &VirtualIp) -> Option<(&str, u8, Ipv4Addr)> {
    Some((v.interface.as_str(), v.carp()?.vhid, v.address.addr()))
}

/// Each CARP VIP of `a` must exist on `b` with the same VHID, password and advbase, inside
/// `b`'s interface network.
fn vips(a: &Config, b: &Config, who: &str, f: &mut Findings) {
    for (i, v) in a.virtual_ips.iter().enumerate() {
        let (Some(c), Some((iface, vhid, ip))) = (v.carp(), carp_key(v)) else {
            continue;
        };
        let p = format!("{who}virtual_ips[{i}]");
        if let Some(net) = b.interface_network(iface) {
            if !net.contains(ip) {
                f.add(
                    "vip-outside-peer-subnet",
                    Severity::Error,
                    format!("{p}.address"),
                    format!("{ip} is outside {iface} net of the other box ({net}): it cannot hold this VIP"),
                    "use an address of the interface's network on both boxes",
                );
            }
        }
        let same_vhid = b
            .virtual_ips
            .iter()
            .find(|w| w.interface == iface && w.carp().is_some_and(|d| d.vhid == vhid));
        let same_addr = b
            .virtual_ips
            .iter()
            .find(|w| w.interface == iface && w.address.addr() == ip && w.carp().is_some());
        match (same_vhid, same_addr) {
            (_, Some(w)) if w.carp().map(|d| d.vhid) != Some(vhid) => f.add(
                "vip-vhid-mismatch",
                Severity::Error,
                format!("{p}.vhid"),
                format!(
                    "{ip} is vhid {vhid} here and vhid {} on the other box: neither hears the other's group, both are MASTER",
                    w.carp().map_or(0, |d| d.vhid)
                ),
                "use the same vhid for the VIP on both boxes",
            ),
            (None, None) => f.add(
                "vip-missing-on-peer",
                Severity::Error,
                p.clone(),
                format!(
                    "CARP VIP {ip} (vhid {vhid} on {iface}) is missing on the other box: nobody holds it when this box fails"
                ),
                "define the same VIP on both boxes (config sync's virtual_ips section does it)",
            ),
            (Some(w), None) => f.add(
                "vip-address-mismatch",
                Severity::Error,
                format!("{p}.address"),
                format!(
                    "vhid {vhid} on {iface} is {ip} here and {} on the other box: the adverts do not authenticate, both are MASTER",
                    w.address.addr()
                ),
                "give the vhid the same addresses on both boxes",
            ),
            (_, Some(w)) => {
                let d = w.carp().map_or(c, |d| d);
                if d.password != c.password && who.is_empty() {
                    f.add(
                        "vip-password-mismatch",
                        Severity::Error,
                        format!("{p}.password"),
                        format!("vhid {vhid}'s password differs between the boxes: each drops the other's adverts, both are MASTER"),
                        "use the same password for the vhid on both boxes",
                    );
                }
                if d.advbase != c.advbase && who.is_empty() {
                    f.add(
                        "vip-advbase-mismatch",
                        Severity::Error,
                        format!("{p}.advbase"),
                        format!(
                            "vhid {vhid}'s advbase is {} here and {} on the other box: the election depends on timers, not on the skews you chose",
                            c.advbase, d.advbase
                        ),
                        "use the same advbase for the vhid on both boxes",
                    );
                }
            }
        }
    }
}

/// Which box is the primary: the one that pushes config.
fn primary_is_own(own: &Config, peer: &Config) -> Option<bool> {
    let pushes = |c: &Config| c.ha.config_sync.as_ref().is_some_and(|s| s.pushes());
    match (pushes(own), pushes(peer)) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        _ => None,
    }
}

/// The primary must win every VHID's election: a lower (advbase, advskew). Equal is a tie that
/// CARP breaks by address, not by the admin's intent.
fn skews(own: &Config, peer: &Config, f: &mut Findings) {
    let primary = primary_is_own(own, peer);
    for (i, v) in own.virtual_ips.iter().enumerate() {
        let (Some(c), Some((iface, vhid, _))) = (v.carp(), carp_key(v)) else {
            continue;
        };
        let Some(d) = peer
            .virtual_ips
            .iter()
            .find(|w| w.interface == iface && w.carp().is_some_and(|d| d.vhid == vhid))
            .and_then(VirtualIp::carp)
        else {
            continue;
        };
        // Compared as sent: a skew above 240 goes out as 240.
        let sent = |skew: u8| skew.min(MAX_SKEW);
        let (mine, theirs) = ((c.advbase, sent(c.advskew)), (d.advbase, sent(d.advskew)));
        let p = format!("virtual_ips[{i}].advskew");
        if mine == theirs {
            let skews = if c.advskew == d.advskew {
                format!("advskew {}", c.advskew)
            } else {
                format!(
                    "advskews {} and {}, both sent as {MAX_SKEW},",
                    c.advskew, d.advskew
                )
            };
            f.add(
                "skew-equal",
                Severity::Error,
                p,
                format!("vhid {vhid} has advbase {} and {skews} on both boxes: no box is preferred, and mastership may flap", c.advbase),
                "give the secondary a higher advskew, at most 239: 240 is what a box in maintenance or demoted sends (pfSense adds 100)",
            );
            continue;
        }
        let wrong = match primary {
            Some(true) => mine > theirs,
            Some(false) => mine < theirs,
            None => false,
        };
        if wrong {
            f.add(
                "skew-secondary-wins",
                Severity::Error,
                p,
                format!(
                    "vhid {vhid}: the secondary (the box without sync_to) advertises faster than the primary: it takes the VIPs while the primary is up"
                ),
                "the primary needs the lower advskew (and advbase)",
            );
        }
    }
}

fn config_sync(own: &Config, peer: &Config, f: &mut Findings) {
    let (a, b) = (&own.ha.config_sync, &peer.ha.config_sync);
    match (a, b) {
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => f.add(
            "config-sync-one-side",
            Severity::Error,
            "ha.config_sync",
            "config sync is set on one box only: pushes are refused or never made",
            "set [ha.config_sync] on both boxes, sync_to on the primary only",
        ),
        (Some(a), Some(b)) => {
            if a.pushes() == b.pushes() {
                let what = if a.pushes() {
                    "both boxes push their config (both have sync_to): each overwrites the other"
                } else {
                    "neither box pushes (no sync_to): the configs drift apart"
                };
                f.add(
                    "config-sync-roles",
                    Severity::Error,
                    "ha.config_sync.sync_to",
                    what,
                    "set sync_to on the primary only (the seed: never on the backup)",
                );
            }
            if a.username != b.username || a.password != b.password {
                f.add(
                    "config-sync-credentials",
                    Severity::Error,
                    "ha.config_sync.password",
                    "config sync's username or password differs between the boxes: every push fails authentication",
                    "use the same username and password on both boxes",
                );
            }
            if a.port != b.port {
                f.add(
                    "config-sync-port",
                    Severity::Error,
                    "ha.config_sync.port",
                    format!(
                        "config sync's port is {} here and {} on the peer",
                        a.port, b.port
                    ),
                    "use the same port on both boxes",
                );
            }
            for (c, other, who) in [(own, peer, ""), (peer, own, "peer:")] {
                let Some(to) = c.ha.config_sync.as_ref().and_then(|s| s.sync_to) else {
                    continue;
                };
                let theirs = sync_address(other);
                if theirs != Some(to) {
                    f.add(
                        "config-sync-target",
                        Severity::Error,
                        format!("{who}ha.config_sync.sync_to"),
                        format!(
                            "pushes go to {to}, but the other box's sync address is {}",
                            theirs.map_or("unknown".to_string(), |a| a.to_string())
                        ),
                        "sync_to must be the other box's address on the sync link",
                    );
                }
            }
        }
    }
}

/// A box's own address on the sync link.
fn sync_address(c: &Config) -> Option<Ipv4Addr> {
    c.sync_link().map(|i| i.ip())
}

fn state_sync(own: &Config, peer: &Config, f: &mut Findings) {
    fn on(c: &Config) -> Option<&crate::config::StateSync> {
        c.ha.state_sync.as_ref().filter(|s| s.enabled)
    }
    match (on(own), on(peer)) {
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => f.add(
            "state-sync-one-side",
            Severity::Error,
            "ha.state_sync",
            "state sync runs on one box only: the other has no states, and connections reset when it takes over",
            "enable [ha.state_sync] on both boxes",
        ),
        (Some(a), Some(b)) => {
            if a.key != b.key {
                f.add(
                    "state-sync-key-mismatch",
                    Severity::Error,
                    "ha.state_sync.key",
                    "the state sync keys differ: every sync datagram fails authentication, no state reaches the peer",
                    "use the same ha.state_sync.key on both boxes",
                );
            }
            for (s, other, who) in [(a, peer, ""), (b, own, "peer:")] {
                let Some(p) = s.peer else { continue };
                let theirs = sync_address(other);
                if theirs != Some(p) {
                    f.add(
                        "state-sync-peer",
                        Severity::Error,
                        format!("{who}ha.state_sync.peer"),
                        format!(
                            "states go to {p}, but the other box's sync address is {}",
                            theirs.map_or("unknown".to_string(), |a| a.to_string())
                        ),
                        "ha.state_sync.peer must be the other box's address on the sync link",
                    );
                }
            }
        }
    }
}

/// Rules, NAT rules and static routes of `a` that name an interface (or a gateway network)
/// `b` lacks: pushed, they are refused; by hand, they do nothing on `b` after a failover.
fn names_peer_lacks(a: &Config, b: &Config, who: &str, f: &mut Findings) {
    let mut add = |field: String, what: String| {
        f.add(
            "interface-missing-on-peer",
            Severity::Error,
            format!("{who}{field}"),
            format!("{what}, which the other box lacks: it does not apply there after a failover (and a push of it is refused)"),
            "give both boxes the same interface names, or mark the item no_sync",
        );
    };
    for (i, r) in a.filter.rules.iter().enumerate() {
        if !r.disabled && !r.no_sync && b.interface(&r.interface).is_none() {
            add(
                format!("filter.rules[{i}].interface"),
                format!("the rule is on {}", r.interface),
            );
        }
    }
    for (i, r) in a.nat.outbound.rules.iter().enumerate() {
        if !r.disabled && !r.no_sync && b.interface(&r.interface).is_none() {
            add(
                format!("nat.outbound.rules[{i}].interface"),
                format!("the NAT rule leaves by {}", r.interface),
            );
        }
    }
    for (i, r) in a.routes.static_routes.iter().enumerate() {
        if !r.no_sync && b.interface_for(r.gateway).is_none() {
            add(
                format!("routes.static[{i}].gateway"),
                format!(
                    "the route's gateway {} is on no network of the other box",
                    r.gateway
                ),
            );
        }
    }
}

/// Without config sync, differing rules are drift: what passes here is blocked there.
fn drift(own: &Config, peer: &Config, f: &mut Findings) {
    if own.ha.config_sync.is_some() || peer.ha.config_sync.is_some() {
        return; // config sync's own status says whether they agree
    }
    let routes = |c: &Config| -> BTreeSet<String> {
        let statics = c.routes.static_routes.iter().filter(|r| !r.no_sync);
        statics
            .map(|r| format!("{} via {}", r.network, r.gateway))
            .collect()
    };
    if routes(own) != routes(peer) {
        f.add(
            "config-drift",
            Severity::Warning,
            "routes.static",
            "the boxes' static routes differ and nothing syncs them: what this box routes may go unrouted after a failover",
            "set up config sync ([ha.config_sync], sync_to on the primary), or make the files equal",
        );
    }
    // What a client gets from the servers the pair shares (a CARP VIP on their interface; a
    // server on one box only is dhcp-both-serve's matter): ranges and static mappings in any
    // order, descriptions aside.
    let dhcp = |c: &Config| -> BTreeSet<String> {
        c.dhcp
            .iter()
            .filter(|d| !d.no_sync && has_carp_vip(c, &d.interface))
            .map(|d| {
                let mut ranges = d.ranges.clone();
                ranges.sort();
                let mut statics: Vec<String> = d.statics.iter().map(|s| format!("{s:?}")).collect();
                statics.sort();
                format!(
                    "{} {} {ranges:?} {} {:?} {:?} {} {statics:?} {}",
                    d.interface,
                    d.enabled,
                    d.gateway,
                    d.dns,
                    d.domain,
                    d.lease_time,
                    d.verify_chaddr
                )
            })
            .collect()
    };
    if dhcp(own) != dhcp(peer) {
        f.add(
            "config-drift",
            Severity::Warning,
            "dhcp",
            "the boxes' DHCP servers differ and nothing syncs them: after a failover clients get other pools, options or static mappings",
            "set up config sync ([ha.config_sync], sync_to on the primary), or make the files equal",
        );
    }
    let rules = |c: &Config| -> BTreeSet<String> {
        c.filter
            .rules
            .iter()
            .filter(|r| !r.no_sync)
            .map(|r| format!("{r:?}"))
            .collect()
    };
    if rules(own) != rules(peer) || own.nat != peer.nat || own.aliases != peer.aliases {
        f.add(
            "config-drift",
            Severity::Warning,
            "filter.rules",
            "the boxes' rules, NAT or aliases differ and nothing syncs them: traffic this box passes may be blocked after a failover",
            "set up config sync ([ha.config_sync], sync_to on the primary), or make the files equal",
        );
    }
}
