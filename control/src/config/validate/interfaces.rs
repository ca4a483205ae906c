//! `[[interfaces]]`: names, devices, addresses (none a special one), roles and MACs, and how
//! many the dataplane can number.

use super::*;

/// Interfaces of one kind (dataplane, sync) the dataplane can number: one byte each.
const MAX_INTERFACES: usize = 256;

pub(super) fn interfaces(
    r: &mut Report<'_>,
    raw: &[RawInterface],
) -> (Vec<Option<Interface>>, Vec<IfaceInfo>) {
    if raw.is_empty() {
        r.err("interfaces", "at least one interface is needed");
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut info: Vec<IfaceInfo> = Vec::with_capacity(raw.len());
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut devices: HashMap<&str, usize> = HashMap::new();
    let mut nets: Vec<(Prefix, usize, &str)> = Vec::new();
    for (i, ri) in raw.iter().enumerate() {
        let p = format!("interfaces[{i}]");
        let name = r.text(format!("{p}.name"), &ri.name).and_then(|n| {
            if !is_name(n) {
                r.err(
                    format!("{p}.name"),
                    format!("{n:?} is not a valid name ({NAME_RULE})"),
                );
                None
            } else if let Some(j) = names.get(n) {
                r.err(
                    format!("{p}.name"),
                    format!("{n:?} is already used by interfaces[{j}]"),
                );
                None
            } else {
                names.insert(n, i);
                Some(n)
            }
        });
        let device = r.text(format!("{p}.device"), &ri.device).and_then(|d| {
            if d.len() > 15
                || d.contains(['/', ':'])
                || d.contains(char::is_whitespace)
                || d == "."
                || d == ".."
            {
                r.err(
                    format!("{p}.device"),
                    format!("{d:?} is not a valid device name (at most 15 characters, no '/', ':' or whitespace, not \".\" or \"..\")"),
                );
                None
            } else if let Some(j) = devices.get(d) {
                r.err(format!("{p}.device"), format!("{d:?} is already used by interfaces[{j}]"));
                None
            } else {
                devices.insert(d, i);
                Some(d)
            }
        });
        let path = format!("{p}.address");
        let address = r
            .req(&path, &ri.address)
            .and_then(|a| r.check(&path, a.parse::<IfAddr>()))
            .and_then(|a| {
                let net = a.network();
                if a.len() == 0 {
                    r.err(&path, "prefix length /0 is out of range 1..=32");
                    return None;
                }
                if let Some(kind) = special_address(a.addr()) {
                    r.err(
                        &path,
                        format!("{} is {kind}, not an interface's address", a.addr()),
                    );
                    return None;
                }
                if a.len() <= 30 && a.addr() == net.addr() {
                    r.err(
                        &path,
                        format!("{} is the network address of {net}", a.addr()),
                    );
                    return None;
                }
                if a.len() <= 30 && a.addr() == a.broadcast() {
                    r.err(
                        &path,
                        format!("{} is the broadcast address of {net}", a.addr()),
                    );
                    return None;
                }
                if let Some((other, j, other_name)) = nets.iter().find(|(n, ..)| n.overlaps(&net)) {
                    r.err(
                        &path,
                        format!("{net} overlaps {other} of interfaces[{j}] ({other_name})"),
                    );
                    return None;
                }
                nets.push((net, i, name.unwrap_or("?")));
                Some(a)
            });
        let role = r
            .req(format!("{p}.role"), &ri.role)
            .and_then(|s| r.check(format!("{p}.role"), Role::parse(s)));
        let mac = match &ri.mac {
            Some(m) => {
                r.check(format!("{p}.mac"), m.parse::<MacAddr>())
                    .and_then(|mac| match mac.0 {
                        // 00:00:5e:00:01:VHID (RFC 5798 §7.3, BSD CARP): the VIP's MAC, which the
                        // master alone may send from; as a box's own it would steal the VIP's traffic.
                        [0x00, 0x00, 0x5e, 0x00, 0x01, vhid] => {
                            r.err(
                                format!("{p}.mac"),
                                format!(
                                "{m} is CARP's virtual MAC of vhid {vhid}, not an interface's own"
                            ),
                            );
                            None
                        }
                        _ => Some(Some(mac)),
                    })
            }
            None => Some(None),
        };
        if let Some(name) = name {
            info.push(IfaceInfo {
                name: name.to_owned(),
                address,
                role,
            });
        }
        out.push((|| {
            Some(Interface {
                name: name?.to_owned(),
                device: device?.to_owned(),
                address: address?,
                role: role?,
                description: ri.description.clone(),
                mac: mac?,
            })
        })());
    }
    // The dataplane numbers its interfaces, and the sync filter its own, with one byte each.
    for (what, sync) in [("dataplane", false), ("sync", true)] {
        let count = info
            .iter()
            .filter(|f| f.role.is_some_and(|role| (role == Role::Sync) == sync))
            .count();
        if count > MAX_INTERFACES {
            r.err(
                "interfaces",
                format!("{count} {what} interfaces, at most {MAX_INTERFACES}"),
            );
        }
    }
    (out, info)
}

/// What kind of special address `ip` is, if it cannot be a host's own on a network: the
/// unspecified "this network" block, loopback, multicast, or the reserved block with the
/// limited broadcast (RFC 1122 §3.2.1.3, RFC 5771, RFC 1112 §4).
fn special_address(ip: Ipv4Addr) -> Option<&'static str> {
    let first = ip.octets()[0];
    if first == 0 {
        Some("in 0.0.0.0/8 (\"this network\")")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if first >= 240 {
        Some("in the reserved block 240.0.0.0/4")
    } else {
        None
    }
}
