//! `[[dhcp]]`: the DHCPv4 server of an interface (pfSense's "Services > DHCP Server"), its model
//! and its validation. Kept apart from `validate.rs` (already the size of a room) but checked
//! with the same report, so its errors come with every other one.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::model::{VipKind, VirtualIp};
use super::raw::RawDhcp;
use super::types::{parse_ipv4, MacAddr, Role};
use super::validate::{Ctx, Report};

/// Lease time when `lease_time` is not set: pfSense's default (2 hours).
pub const DEFAULT_LEASE_TIME: u32 = 7200;
/// Shortest and longest lease time, in seconds. Under a minute a client renews every 30 s and
/// replication carries little else; past a year a lost client holds its address for ever.
const LEASE_TIME_RANGE: (i64, i64) = (60, 31_536_000);
/// Most addresses one server hands out: the lease table and the pool scan stay small.
pub const MAX_POOL: u32 = 65_536;
/// Longest hostname of a static mapping: what one lease record carries on the sync link.
pub const MAX_HOSTNAME: usize = 32;
/// Most DNS servers in one reply.
const MAX_DNS: usize = 8;

/// `[[dhcp]]`: a DHCPv4 server on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dhcp {
    /// The interface it serves (one server per interface).
    pub interface: String,
    /// Whether it answers (default true).
    pub enabled: bool,
    /// The address pool: inclusive ranges, inside the interface's network, disjoint, none
    /// holding a box address or a VIP.
    pub ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Router option (default: the interface's CARP VIP, else its address).
    pub gateway: Ipv4Addr,
    /// DNS servers (default: the gateway).
    pub dns: Vec<Ipv4Addr>,
    /// Domain name option.
    pub domain: Option<String>,
    /// Lease time in seconds (default [`DEFAULT_LEASE_TIME`]).
    pub lease_time: u32,
    /// Static mappings by MAC.
    pub statics: Vec<DhcpStatic>,
    /// Free text.
    pub description: String,
    /// Config sync leaves this server on its box.
    pub no_sync: bool,
    /// Drop a request whose client hardware address (chaddr) is not its frame's source MAC
    /// (default true, as a switch's DHCP snooping verifies): a host then cannot ask, release or
    /// decline in another's name. Off for clients behind a bridge that rewrites source MACs
    /// (a Wi-Fi repeater in MAC-NAT mode, a VM bridged over Wi-Fi).
    pub verify_chaddr: bool,
}

/// `static = [{ mac, ip, hostname }]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpStatic {
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    /// At most [`MAX_HOSTNAME`] bytes; may be empty.
    pub hostname: String,
}

impl Dhcp {
    /// Addresses in the pool.
    pub fn pool_size(&self) -> u32 {
        self.ranges
            .iter()
            .map(|(a, b)| b.to_bits() - a.to_bits() + 1)
            .sum()
    }
}

/// Validates the `[[dhcp]]` entries; `vips` are the valid-or-not VIPs in file order.
pub(super) fn dhcp(
    r: &mut Report<'_>,
    ctx: &Ctx,
    vips: &[Option<VirtualIp>],
    raw: &[RawDhcp],
) -> Option<Vec<Dhcp>> {
    let mut out = Some(Vec::with_capacity(raw.len()));
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, rd) in raw.iter().enumerate() {
        let item = one(r, ctx, vips, &format!("dhcp[{i}]"), rd, i, &mut seen);
        match (out.as_mut(), item) {
            (Some(v), Some(d)) => v.push(d),
            (_, None) => out = None,
            _ => {}
        }
    }
    out
}

fn one(
    r: &mut Report<'_>,
    ctx: &Ctx,
    vips: &[Option<VirtualIp>],
    p: &str,
    rd: &RawDhcp,
    i: usize,
    seen: &mut HashMap<String, usize>,
) -> Option<Dhcp> {
    let errors_before = r.errors.len();
    let iface = ctx.iface_ref(r, &format!("{p}.interface"), &rd.interface)?;
    if let Some(j) = seen.get(&iface.name) {
        r.err(
            format!("{p}.interface"),
            format!("{} already has a DHCP server (dhcp[{j}])", iface.name),
        );
    }
    seen.insert(iface.name.clone(), i);
    if iface.role == Some(Role::Sync) {
        r.err(
            format!("{p}.interface"),
            format!("{} is the sync link: no DHCP there", iface.name),
        );
    }
    // Without a valid address the interface's own error says it all.
    let net = iface.address?;
    let inside = |ip: Ipv4Addr| {
        net.contains(ip) && ip != net.network().addr() && (net.len() >= 31 || ip != net.broadcast())
    };

    let texts: Vec<(String, &String)> = match (&rd.range, &rd.ranges) {
        (Some(_), Some(_)) => {
            r.err(format!("{p}.ranges"), "give range or ranges, not both");
            Vec::new()
        }
        (Some(s), None) => vec![(format!("{p}.range"), s)],
        (None, Some(v)) => v
            .iter()
            .enumerate()
            .map(|(k, s)| (format!("{p}.ranges[{k}]"), s))
            .collect(),
        (None, None) => {
            r.err(format!("{p}.range"), "missing (\"first-last\")");
            Vec::new()
        }
    };
    let mut ranges: Vec<(Ipv4Addr, Ipv4Addr)> = Vec::new();
    for (path, s) in &texts {
        let Some((a, b)) = r.check(path, parse_range(s)) else {
            continue;
        };
        if !inside(a) || !inside(b) {
            r.err(
                path,
                format!(
                    "{a}-{b} is not inside {}'s hosts ({})",
                    iface.name,
                    net.network()
                ),
            );
            continue;
        }
        let own = ctx
            .ifaces
            .iter()
            .filter_map(|f| f.address.map(|x| x.addr()))
            .chain(ctx.vips.iter().map(|(v, _)| *v))
            .find(|ip| (a.to_bits()..=b.to_bits()).contains(&ip.to_bits()));
        if let Some(ip) = own {
            let owner = ctx.owner(ip).unwrap_or_default();
            r.err(path, format!("{a}-{b} holds {ip}, this box's ({owner})"));
            continue;
        }
        if let Some((c, d)) = ranges
            .iter()
            .find(|(c, d)| a.to_bits() <= d.to_bits() && c.to_bits() <= b.to_bits())
        {
            r.err(path, format!("{a}-{b} overlaps {c}-{d}"));
            continue;
        }
        ranges.push((a, b));
    }
    if texts.is_empty() && rd.ranges.is_some() && rd.statics.is_empty() && rd.enabled != Some(false)
    {
        r.err(
            format!("{p}.ranges"),
            "empty, and no static mapping: the server would answer no one",
        );
    }
    let size: u64 = ranges
        .iter()
        .map(|(a, b)| u64::from(b.to_bits() - a.to_bits()) + 1)
        .sum();
    if size > u64::from(MAX_POOL) {
        r.err(
            format!("{p}.ranges"),
            format!("{size} addresses; at most {MAX_POOL}"),
        );
    }

    // The seed's choice: clients route through the VIP, so they keep their gateway when the
    // boxes fail over.
    let vip = vips.iter().flatten().find(|v| {
        v.interface == iface.name
            && matches!(v.kind, VipKind::Carp(_))
            && net.contains(v.address.addr())
    });
    let gateway = match &rd.gateway {
        Some(s) => r
            .check(format!("{p}.gateway"), parse_ipv4(s))
            .inspect(|gw| {
                if !inside(*gw) {
                    r.err(
                        format!("{p}.gateway"),
                        format!(
                            "{gw} is not inside {}'s network ({})",
                            iface.name,
                            net.network()
                        ),
                    );
                } else if let Some((a, b)) = ranges
                    .iter()
                    .find(|(a, b)| (a.to_bits()..=b.to_bits()).contains(&gw.to_bits()))
                {
                    r.err(
                        format!("{p}.gateway"),
                        format!("{gw} is inside the pool {a}-{b}: a client could be leased the router's address"),
                    );
                }
            }),
        None => Some(vip.map_or(net.addr(), |v| v.address.addr())),
    };
    let dns = match &rd.dns {
        Some(list) => {
            if list.len() > MAX_DNS {
                r.err(format!("{p}.dns"), format!("at most {MAX_DNS} servers"));
            }
            list.iter()
                .enumerate()
                .filter_map(|(k, s)| {
                    r.check(
                        format!("{p}.dns[{k}]"),
                        parse_ipv4(s).and_then(check_dns_server),
                    )
                })
                .collect()
        }
        None => gateway.into_iter().collect(),
    };
    let domain = match &rd.domain {
        Some(d) => r.check(format!("{p}.domain"), check_domain(d)).map(Some),
        None => Some(None),
    };
    let lease_time = match rd.lease_time {
        Some(t) => r
            .range(
                format!("{p}.lease_time"),
                t,
                LEASE_TIME_RANGE.0,
                LEASE_TIME_RANGE.1,
            )
            .and_then(|t| u32::try_from(t).ok()),
        None => Some(DEFAULT_LEASE_TIME),
    };

    let mut statics = Vec::with_capacity(rd.statics.len());
    for (k, s) in rd.statics.iter().enumerate() {
        let sp = format!("{p}.static[{k}]");
        let mac = r
            .req(format!("{sp}.mac"), &s.mac)
            .and_then(|m| r.check(format!("{sp}.mac"), m.parse::<MacAddr>()));
        let ip = r
            .req(format!("{sp}.ip"), &s.ip)
            .and_then(|m| r.check(format!("{sp}.ip"), parse_ipv4(m)));
        if let Some(ip) = ip {
            if !inside(ip) {
                r.err(
                    format!("{sp}.ip"),
                    format!(
                        "{ip} is not inside {}'s hosts ({})",
                        iface.name,
                        net.network()
                    ),
                );
            } else if let Some(owner) = ctx.owner(ip) {
                r.err(
                    format!("{sp}.ip"),
                    format!("{ip} is this box's own address ({owner})"),
                );
            }
        }
        let hostname = s.hostname.clone().unwrap_or_default();
        r.check(format!("{sp}.hostname"), check_hostname(&hostname));
        let (Some(mac), Some(ip)) = (mac, ip) else {
            continue;
        };
        if let Some(j) = statics.iter().position(|x: &DhcpStatic| x.mac == mac) {
            r.err(
                format!("{sp}.mac"),
                format!("already mapped by static[{j}]"),
            );
        }
        if let Some(j) = statics.iter().position(|x: &DhcpStatic| x.ip == ip) {
            r.err(format!("{sp}.ip"), format!("already mapped by static[{j}]"));
        }
        statics.push(DhcpStatic { mac, ip, hostname });
    }
    if r.errors.len() != errors_before {
        return None;
    }
    Some(Dhcp {
        interface: iface.name.clone(),
        enabled: rd.enabled.unwrap_or(true),
        ranges,
        gateway: gateway?,
        dns,
        domain: domain?,
        lease_time: lease_time?,
        statics,
        description: rd.description.clone(),
        no_sync: rd.no_sync,
        verify_chaddr: rd.verify_chaddr.unwrap_or(true),
    })
}

/// `"192.168.0.150-192.168.0.199"`, low first.
fn parse_range(s: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let shape = || format!("{s:?} is not a range (\"192.168.0.150-192.168.0.199\")");
    let (a, b) = s.split_once('-').ok_or_else(shape)?;
    let (a, b) = (parse_ipv4(a.trim())?, parse_ipv4(b.trim())?);
    if a > b {
        return Err(format!("{s:?}: the first address is above the last"));
    }
    Ok((a, b))
}

/// A DNS label (RFC 1123 §2.1): letters, digits and '-', not first or last, 1..=63 bytes.
fn is_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A DNS domain: labels, at most 253 characters.
fn check_domain(d: &str) -> Result<String, String> {
    if !d.is_empty() && d.len() <= 253 && d.split('.').all(is_label) {
        Ok(d.to_owned())
    } else {
        Err(format!(
            "{d:?} is not a domain name (labels of letters, digits and '-', no '-' first or last)"
        ))
    }
}

/// A static mapping's host name: letters, digits, '-', '_' and '.' (pfSense's `is_hostname`
/// takes '_' too), at most [`MAX_HOSTNAME`] bytes: it goes into leases, the option sent to the
/// client and `tandemctl dhcp leases` as it is, so no spaces, control characters or quotes.
fn check_hostname(h: &str) -> Result<(), String> {
    let ok = h.len() <= MAX_HOSTNAME
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{h:?} is not a host name (letters, digits, '-', '_' and '.', at most {MAX_HOSTNAME} bytes)"
        ))
    }
}

/// A DNS server a client can send to: not unspecified, broadcast, multicast or loopback.
fn check_dns_server(ip: Ipv4Addr) -> Result<Ipv4Addr, String> {
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
        Err(format!("{ip} is not a unicast address a client can query"))
    } else {
        Ok(ip)
    }
}
