//! `routes`, `nat` and `filter`: the sections that name addresses, aliases and interfaces rule by
//! rule.

use super::*;

pub(super) fn routes(r: &mut Report<'_>, ctx: &Ctx, raw: &RawRoutes) -> Option<Routes> {
    let path = "routes.default_gateway";
    let default_gateway = match &raw.default_gateway {
        Some(s) => r.check(path, parse_ipv4(s)).map(|gw| {
            ctx.gateway(r, path, gw);
            Some(gw)
        }),
        None => Some(None),
    };
    let mut static_routes = Some(Vec::with_capacity(raw.static_routes.len()));
    let mut seen: HashMap<Prefix, usize> = HashMap::new();
    for (i, rs) in raw.static_routes.iter().enumerate() {
        let p = format!("routes.static[{i}]");
        let network = r
            .req(format!("{p}.network"), &rs.network)
            .and_then(|s| r.check(format!("{p}.network"), parse_network(s)))
            .and_then(|n| {
                if n.len() == 0 {
                    r.err(
                        format!("{p}.network"),
                        "0.0.0.0/0 is the default route: use routes.default_gateway",
                    );
                    None
                } else if let Some(j) = seen.get(&n) {
                    r.err(
                        format!("{p}.network"),
                        format!("{n} is already routed by routes.static[{j}]"),
                    );
                    None
                } else {
                    seen.insert(n, i);
                    Some(n)
                }
            });
        let gateway = r
            .req(format!("{p}.gateway"), &rs.gateway)
            .and_then(|s| r.check(format!("{p}.gateway"), parse_ipv4(s)));
        if let Some(gw) = gateway {
            ctx.gateway(r, &format!("{p}.gateway"), gw);
        }
        let route = (|| {
            Some(StaticRoute {
                network: network?,
                gateway: gateway?,
                description: rs.description.clone(),
                no_sync: rs.no_sync,
            })
        })();
        collect(&mut static_routes, route);
    }
    Some(Routes {
        default_gateway: default_gateway?,
        static_routes: static_routes?,
    })
}

pub(super) fn nat(r: &mut Report<'_>, ctx: &Ctx, raw: &RawNat) -> Option<Nat> {
    let Some(out) = &raw.outbound else {
        return Some(Nat::default());
    };
    let mode = match &out.mode {
        Some(s) => r.check("nat.outbound.mode", NatMode::parse(s)),
        None => Some(NatMode::Automatic),
    };
    if let Some(mode @ (NatMode::Automatic | NatMode::Disabled)) = mode {
        if !out.rules.is_empty() {
            r.err(
                "nat.outbound.mode",
                format!("{mode} ignores nat.outbound.rules; use hybrid or manual"),
            );
        }
    }
    let mut rules = Some(Vec::with_capacity(out.rules.len()));
    for (i, rr) in out.rules.iter().enumerate() {
        let p = format!("nat.outbound.rules[{i}]");
        // What the dataplane cannot do is refused on enabled rules (a disabled one is not
        // compiled: kept for later, as in pfSense).
        let iface = ctx
            .iface_ref(r, &format!("{p}.interface"), &rr.interface)
            .and_then(|f| {
                if f.role == Some(Role::Sync) && !rr.disabled {
                    r.err(
                        format!("{p}.interface"),
                        format!("{} is the sync link: outbound NAT applies where the dataplane sends (lan, wan, ...)", f.name),
                    );
                    return None;
                }
                Some(f)
            });
        let protocol = protocol(r, &format!("{p}.protocol"), &rr.protocol);
        if rr.source.as_ref().is_some_and(|e| e.port.is_some()) && !rr.disabled {
            r.err(
                format!("{p}.source.port"),
                "outbound NAT rules match no source port (match by source address, destination and destination port)",
            );
        }
        let source = ctx.endpoint(r, &format!("{p}.source"), rr.source.as_ref(), protocol);
        let destination = ctx.endpoint(
            r,
            &format!("{p}.destination"),
            rr.destination.as_ref(),
            protocol,
        );
        let translation = translation(r, ctx, &p, rr, protocol);
        let rule = (|| {
            Some(OutboundNatRule {
                disabled: rr.disabled,
                no_nat: rr.no_nat,
                interface: iface?.name.clone(),
                protocol: protocol?,
                source: source?,
                destination: destination?,
                translation: translation?,
                no_sync: rr.no_sync,
                description: rr.description.clone(),
            })
        })();
        collect(&mut rules, rule);
    }
    Some(Nat {
        outbound: OutboundNat {
            mode: mode?,
            rules: rules?,
        },
    })
}

/// The translation of the outbound NAT rule at `p`: the interface address when not written.
fn translation(
    r: &mut Report<'_>,
    ctx: &Ctx,
    p: &str,
    rule: &RawNatRule,
    protocol: Option<Protocol>,
) -> Option<Translation> {
    let Some(t) = &rule.translation else {
        return Some(Translation {
            address: TranslationAddr::InterfaceAddress,
            port: None,
            static_port: false,
        });
    };
    if rule.no_nat {
        r.err(
            format!("{p}.translation"),
            "a no_nat rule takes no translation",
        );
        return None;
    }
    let path = format!("{p}.translation.address");
    let address = match t.address.as_deref() {
        None | Some("interface address") => Some(TranslationAddr::InterfaceAddress),
        Some(s) => {
            let parsed = parse_ipv4(s)
                .map_err(|e| format!("{e} (write an address, or \"interface address\")"));
            r.check(&path, parsed).and_then(|ip| {
                // A VIP with an error of its own is not reported again here.
                if ctx.owner(ip).is_none() && !ctx.declared_vips.contains(&ip) {
                    r.err(
                        &path,
                        format!("{ip} is neither an interface address nor a virtual IP"),
                    );
                    return None;
                }
                Some(TranslationAddr::Addr(ip))
            })
        }
    };
    let port = port(
        r,
        &format!("{p}.translation.port"),
        t.port.as_ref(),
        protocol,
    );
    if t.static_port && t.port.is_some() {
        r.err(
            format!("{p}.translation.static_port"),
            "cannot be combined with translation.port",
        );
        return None;
    }
    Some(Translation {
        address: address?,
        port: port?,
        static_port: t.static_port,
    })
}

pub(super) fn filter(r: &mut Report<'_>, ctx: &Ctx, raw: &RawFilter) -> Option<Filter> {
    let mut rules = Some(Vec::with_capacity(raw.rules.len()));
    for (i, rr) in raw.rules.iter().enumerate() {
        let p = format!("filter.rules[{i}]");
        let iface = ctx.iface_ref(r, &format!("{p}.interface"), &rr.interface);
        let action = r
            .req(format!("{p}.action"), &rr.action)
            .and_then(|s| r.check(format!("{p}.action"), Action::parse(s)));
        let ip_version = match rr.ip_version.as_deref() {
            None => Some(IpVersion::Inet),
            Some(v @ ("inet6" | "inet46")) => {
                r.err(
                    format!("{p}.ip_version"),
                    format!("{v:?} is not supported yet (only inet)"),
                );
                None
            }
            Some(v) => r.check(format!("{p}.ip_version"), IpVersion::parse(v)),
        };
        let protocol = protocol(r, &format!("{p}.protocol"), &rr.protocol);
        let source = ctx.endpoint(r, &format!("{p}.source"), rr.source.as_ref(), protocol);
        let destination = ctx.endpoint(
            r,
            &format!("{p}.destination"),
            rr.destination.as_ref(),
            protocol,
        );
        let limits = src_limits(r, &p, rr, action);
        let rule = (|| {
            let (max_src_states, max_src_conn_rate) = limits?;
            Some(FilterRule {
                interface: iface?.name.clone(),
                action: action?,
                disabled: rr.disabled,
                ip_version: ip_version?,
                protocol: protocol?,
                source: source?,
                destination: destination?,
                log: rr.log,
                max_src_states,
                max_src_conn_rate,
                description: rr.description.clone(),
                no_sync: rr.no_sync,
            })
        })();
        collect(&mut rules, rule);
    }
    Some(Filter { rules: rules? })
}
