//! `ha`: state sync and config sync, and how they agree with the interfaces.

use super::*;

pub(super) fn ha(r: &mut Report<'_>, ctx: &Ctx, raw: &RawHa) -> Option<Ha> {
    let state_sync = match &raw.state_sync {
        Some(s) => state_sync(r, ctx, s).map(Some),
        None => Some(None),
    };
    let peer = state_sync
        .as_ref()
        .and_then(|s| s.as_ref())
        .and_then(|s| s.peer);
    let config_sync = match &raw.config_sync {
        Some(c) => config_sync(r, ctx, c, peer).map(Some),
        None => Some(None),
    };
    Some(Ha {
        state_sync: state_sync?,
        config_sync: config_sync?,
    })
}

fn state_sync(r: &mut Report<'_>, ctx: &Ctx, raw: &RawStateSync) -> Option<StateSync> {
    let p = "ha.state_sync";
    let iface = ctx.iface_ref(r, &format!("{p}.interface"), &raw.interface);
    if let Some(f) = iface {
        if let Some(role) = f.role.filter(|&role| role != Role::Sync) {
            r.err(
                format!("{p}.interface"),
                format!("interface {} has role {role}, not sync", f.name),
            );
        }
    }
    let path = format!("{p}.peer");
    let peer = match &raw.peer {
        None => Some(None),
        Some(s) => r.check(&path, parse_ipv4(s)).and_then(|ip| {
            if ip.is_multicast() || ip.is_broadcast() || ip.is_unspecified() {
                r.err(
                    &path,
                    format!("{ip} is not a unicast address (leave peer out for multicast)"),
                );
                return None;
            }
            if let Some(owner) = ctx.owner(ip) {
                r.err(&path, format!("{ip} is this box's own address ({owner})"));
                return None;
            }
            if let Some((name, net)) = iface.and_then(|f| Some((&f.name, f.address?.network()))) {
                if !net.contains(ip) {
                    r.err(
                        &path,
                        format!("{ip} is not inside the network of interface {name} ({net})"),
                    );
                    return None;
                }
                if let Some(what) = network_or_broadcast(net, ip) {
                    r.err(&path, format!("{ip} is the {what} address of {net}"));
                    return None;
                }
            }
            Some(Some(ip))
        }),
    };
    let key = r.text(format!("{p}.key"), &raw.key).and_then(|k| {
        if k.len() < MIN_SYNC_KEY_LEN {
            r.err(
                format!("{p}.key"),
                format!(
                    "is {} bytes long; a sync key has at least {MIN_SYNC_KEY_LEN}",
                    k.len()
                ),
            );
            return None;
        }
        Some(k)
    });
    let valid_role = iface.is_some_and(|f| f.role.is_none_or(|role| role == Role::Sync));
    Some(StateSync {
        enabled: raw.enabled.unwrap_or(true),
        interface: iface.filter(|_| valid_role)?.name.clone(),
        peer: peer?,
        key: key?.to_owned(),
    })
}

fn config_sync(
    r: &mut Report<'_>,
    ctx: &Ctx,
    raw: &RawConfigSync,
    state_peer: Option<Ipv4Addr>,
) -> Option<ConfigSync> {
    let p = "ha.config_sync";
    if !ctx.ifaces.iter().any(|f| f.role == Some(Role::Sync)) {
        r.err(
            p,
            "needs an interface with role sync: config sync listens and pushes on the sync link",
        );
    }
    let path = format!("{p}.sync_to");
    let sync_to = match &raw.sync_to {
        None => Some(None),
        Some(s) => r.check(&path, parse_ipv4(s)).and_then(|ip| {
            // The config sync service listens on the sync link's address only.
            let iface = ctx.neighbour(r, &path, ip)?;
            if iface.role != Some(Role::Sync) {
                r.err(
                    &path,
                    format!("{ip} is on interface {}, not on the sync link: config sync talks to the peer's sync address", iface.name),
                );
                return None;
            }
            if let Some(peer) = state_peer.filter(|&peer| peer != ip) {
                r.err(&path, format!("{ip} differs from ha.state_sync.peer {peer}: both name the peer's sync address"));
                return None;
            }
            Some(Some(ip))
        }),
    };
    let port = match raw.port {
        Some(v) => r
            .range(format!("{p}.port"), v, 1, 65535)
            .and_then(|v| u16::try_from(v).ok()),
        None => Some(DEFAULT_CONFIG_SYNC_PORT),
    };
    let username = r.text(format!("{p}.username"), &raw.username);
    let password = r.text(format!("{p}.password"), &raw.password);
    let sections = match (&raw.sections, &raw.sync_to) {
        (None, Some(_)) => Some(SyncSection::ALL.iter().copied().collect()),
        (None, None) => Some(BTreeSet::new()),
        (Some(_), None) => {
            r.err(
                format!("{p}.sections"),
                "only the pushing box (with sync_to) selects sections",
            );
            None
        }
        (Some(list), Some(_)) => {
            let mut set = BTreeSet::new();
            let mut valid = true;
            for (i, s) in list.iter().enumerate() {
                let path = format!("{p}.sections[{i}]");
                match r.check(&path, SyncSection::parse(s)) {
                    Some(sec) if !set.insert(sec) => {
                        r.err(&path, format!("{s:?} is listed twice"));
                        valid = false;
                    }
                    Some(_) => {}
                    None => valid = false,
                }
            }
            valid.then_some(set)
        }
    };
    Some(ConfigSync {
        sync_to: sync_to?,
        port: port?,
        username: username?.to_owned(),
        password: password?.to_owned(),
        sections: sections?,
    })
}
