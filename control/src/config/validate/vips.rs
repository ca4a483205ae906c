//! `virtual_ips`: each VIP's type, address, interface and CARP settings (VHIDs, skews, passwords).

use super::*;

pub(super) fn virtual_ips(r: &mut Report<'_>, ctx: &Ctx, raw: &[RawVip]) -> Vec<Option<VirtualIp>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut seen: HashMap<Ipv4Addr, usize> = HashMap::new();
    // (interface, vhid) -> the first VIP of the group and its CARP parameters.
    let mut groups: HashMap<(String, u8), (usize, Carp)> = HashMap::new();
    for (i, rv) in raw.iter().enumerate() {
        let p = format!("virtual_ips[{i}]");
        let ty = r
            .req(format!("{p}.type"), &rv.kind)
            .and_then(|s| r.check(format!("{p}.type"), VipType::parse(s)));
        let iface = ctx.iface_ref(r, &format!("{p}.interface"), &rv.interface);
        if let Some(f) = iface.filter(|f| f.role == Some(Role::Sync)) {
            r.err(
                format!("{p}.interface"),
                format!("{} is the sync link, which the kernel owns: virtual IPs live on the dataplane's interfaces (lan, wan, ...)", f.name),
            );
        }
        let path = format!("{p}.address");
        let address = r
            .req(&path, &rv.address)
            .and_then(|a| r.check(&path, a.parse::<IfAddr>()))
            .and_then(|a| {
                let ip = a.addr();
                if let Some(if_addr) = iface.and_then(|f| f.address) {
                    let name = iface.map_or("?", |f| f.name.as_str());
                    let net = if_addr.network();
                    if !net.contains(ip) {
                        r.err(&path, format!("{ip} is not inside the network of interface {name} ({net})"));
                        return None;
                    }
                    if let Some(what) = network_or_broadcast(net, ip) {
                        r.err(&path, format!("{ip} is the {what} address of {net}"));
                        return None;
                    }
                    if ty == Some(VipType::Carp) && a.len() != if_addr.len() {
                        r.err(
                            &path,
                            format!(
                                "prefix length /{} differs from interface {name}'s /{} (a CARP VIP takes its interface's subnet mask)",
                                a.len(),
                                if_addr.len()
                            ),
                        );
                        return None;
                    }
                } else if iface.is_none() && !ctx.on_link(ip) {
                    r.err(&path, format!("{ip} is not inside any interface's network"));
                    return None;
                }
                if let Some(owner) = ctx.ifaces.iter().find(|f| f.address.is_some_and(|fa| fa.addr() == ip)) {
                    r.err(&path, format!("{ip} is interface {}'s own address", owner.name));
                    return None;
                }
                if let Some(j) = seen.get(&ip) {
                    r.err(&path, format!("{ip} is already used by virtual_ips[{j}]"));
                    return None;
                }
                seen.insert(ip, i);
                Some(a)
            });

        let kind = match ty {
            None => None,
            Some(VipType::Carp) => carp(r, &p, rv).map(VipKind::Carp),
            Some(other) => {
                let fields = [
                    ("vhid", rv.vhid.is_some()),
                    ("password", rv.password.is_some()),
                    ("advbase", rv.advbase.is_some()),
                    ("advskew", rv.advskew.is_some()),
                ];
                for (field, _) in fields.iter().filter(|(_, set)| *set) {
                    r.err(
                        format!("{p}.{field}"),
                        format!("only carp VIPs take a {field} (this one is {other})"),
                    );
                }
                match other {
                    VipType::IpAlias => Some(VipKind::IpAlias),
                    VipType::ProxyArp => Some(VipKind::ProxyArp),
                    _ => Some(VipKind::Other),
                }
            }
        };

        // One VHID on one interface is one advertisement: its VIPs share the parameters.
        if let (Some(VipKind::Carp(c)), Some(f)) = (&kind, iface) {
            // The dataplane holds a VHID box-wide (its virtual MAC, 00:00:5e:00:01:VHID, is one
            // MAC): the same VHID on two interfaces would be taken and released together.
            if let Some((_, (j, _))) = groups
                .iter()
                .find(|((name, vhid), _)| *vhid == c.vhid && *name != f.name)
            {
                r.err(
                    format!("{p}.vhid"),
                    format!(
                        "{} is already used on another interface by virtual_ips[{j}]; a VHID is box-wide in tandem",
                        c.vhid
                    ),
                );
            }
            match groups.get(&(f.name.clone(), c.vhid)) {
                None => {
                    groups.insert((f.name.clone(), c.vhid), (i, c.clone()));
                }
                Some((j, first)) => {
                    let same = format!("virtual_ips[{j}], the same vhid {} on {}", c.vhid, f.name);
                    if c.password != first.password {
                        r.err(
                            format!("{p}.password"),
                            format!("differs from the password of {same}"),
                        );
                    }
                    if c.advbase != first.advbase {
                        r.err(
                            format!("{p}.advbase"),
                            format!(
                                "{} differs from advbase {} of {same}",
                                c.advbase, first.advbase
                            ),
                        );
                    }
                    if c.advskew != first.advskew {
                        r.err(
                            format!("{p}.advskew"),
                            format!(
                                "{} differs from advskew {} of {same}",
                                c.advskew, first.advskew
                            ),
                        );
                    }
                }
            }
        }

        out.push((|| {
            Some(VirtualIp {
                kind: kind?,
                interface: iface?.name.clone(),
                address: address?,
                description: rv.description.clone(),
                no_sync: rv.no_sync,
            })
        })());
    }
    out
}

/// The CARP parameters of a carp VIP at `p`.
fn carp(r: &mut Report<'_>, p: &str, rv: &RawVip) -> Option<Carp> {
    let vhid = r
        .req(format!("{p}.vhid"), &rv.vhid)
        .and_then(|&v| r.range(format!("{p}.vhid"), v, 1, 255));
    let password = r.text(format!("{p}.password"), &rv.password).and_then(|s| {
        if s.len() > MAX_CARP_PASSWORD_LEN {
            r.err(
                format!("{p}.password"),
                format!(
                    "is {} bytes long; a CARP password is at most {MAX_CARP_PASSWORD_LEN} bytes",
                    s.len()
                ),
            );
            return None;
        }
        Some(s)
    });
    let advbase = r.range(format!("{p}.advbase"), rv.advbase.unwrap_or(1), 0, 255);
    let advskew = r.range(format!("{p}.advskew"), rv.advskew.unwrap_or(0), 0, 254);
    if advbase == Some(0) && advskew == Some(0) {
        r.err(
            format!("{p}.advskew"),
            "advbase 0 (fast mode) needs advskew 1..=254: the advert interval is then advskew/256 s",
        );
        return None;
    }
    Some(Carp {
        vhid: u8::try_from(vhid?).ok()?,
        password: password?.to_owned(),
        advbase: u8::try_from(advbase?).ok()?,
        advskew: u8::try_from(advskew?).ok()?,
    })
}
