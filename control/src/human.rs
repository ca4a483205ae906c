//! What `tandemctl` shows people: the replies of the control API as tables and status pages
//! (pfSense's Status pages are the model). `--json` prints the replies themselves.

use std::fmt::Write as _;

use crate::api::{
    CarpReply, ConfigSyncReply, DhcpLeasesReply, InterfaceInfo, RulesReply, StateInfo, StatesReply,
    StatusReply, SyncReply,
};

/// Left-aligned columns two spaces apart; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(ToString::to_string).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = width[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn duration(s: u64) -> String {
    let (d, h, m, s) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h:02}h {m:02}m {s:02}s")
    } else if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

pub fn format_status(r: &StatusReply) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Hostname    {} (host id {})", r.hostname, r.host_id);
    let _ = writeln!(s, "Version     tandemd {}", r.version);
    let _ = writeln!(s, "Uptime      {}", duration(r.uptime_s));
    let _ = writeln!(
        s,
        "Config      {} (generation {})",
        r.config_file, r.generation
    );
    if let Some(cs) = &r.config_sync {
        let _ = writeln!(s, "Config sync {cs}");
    }
    if r.ring_size > 0 {
        let _ = writeln!(
            s,
            "Workers     {} (AF_XDP rings of {} entries)",
            r.workers, r.ring_size
        );
    } else {
        let _ = writeln!(s, "Workers     {}", r.workers);
    }
    let _ = writeln!(s, "States      {}", r.states);
    s.push('\n');
    let rows: Vec<Vec<String>> = r
        .interfaces
        .iter()
        .map(|i| {
            vec![
                i.name.to_uppercase(),
                i.device.clone(),
                if i.link.is_empty() {
                    "-".to_string()
                } else {
                    i.link.clone()
                },
                i.mac.clone(),
                i.address.clone(),
                i.rx_packets.to_string(),
                i.rx_bytes.to_string(),
                i.tx_packets.to_string(),
                i.tx_bytes.to_string(),
                xdp_column(i),
            ]
        })
        .collect();
    s.push_str(&table(
        &[
            "Interface",
            "Device",
            "Link",
            "MAC",
            "Address",
            "RX packets",
            "RX bytes",
            "TX packets",
            "TX bytes",
            "XDP",
        ],
        &rows,
    ));
    s
}

/// `native, copy, 2 queues`: how the kernel runs the program and the sockets; `-` if unknown.
fn xdp_column(i: &InterfaceInfo) -> String {
    let parts: Vec<String> = [i.xdp.clone(), i.socket.clone()]
        .into_iter()
        .filter(|p| !p.is_empty())
        .chain((i.queues > 0).then(|| match i.queues {
            1 => "1 queue".to_string(),
            n => format!("{n} queues"),
        }))
        .collect();
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(", ")
    }
}

pub fn format_carp(r: &CarpReply) -> String {
    let mut s = String::new();
    if r.vips.is_empty() {
        s.push_str("No CARP virtual IPs configured.\n");
    } else {
        let rows: Vec<Vec<String>> = r
            .vips
            .iter()
            .map(|v| {
                let last = match (v.previous_status, v.last_transition_reason.as_str()) {
                    (Some(p), "") => format!("{p} -> {}", v.status),
                    (Some(p), why) => format!("{p} -> {} ({why})", v.status),
                    (None, "") => "-".to_string(),
                    (None, why) => why.to_string(),
                };
                let last = match v.since_s {
                    Some(t) if last != "-" => format!("{last}, {} ago", duration(t)),
                    _ => last,
                };
                vec![
                    format!("{}@{}", v.interface.to_uppercase(), v.vhid),
                    v.vip.to_string(),
                    v.status.to_string(),
                    v.advbase.to_string(),
                    v.advskew.to_string(),
                    v.demotion.to_string(),
                    last,
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "Interface@VHID",
                "Virtual IP",
                "Status",
                "Advbase",
                "Skew",
                "Demotion",
                "Last transition",
            ],
            &rows,
        ));
    }
    let _ = writeln!(
        s,
        "\nCARP {}, maintenance mode {}, demotion {}",
        if r.enabled { "enabled" } else { "disabled" },
        if r.maintenance { "on" } else { "off" },
        r.demotion
    );
    s
}

pub fn state_line(st: &StateInfo) -> String {
    let mut s = format!("{} {}", st.proto, st.stack);
    if st.wire.src != st.stack.src {
        let _ = write!(s, " (nat {})", st.wire.src);
    }
    // An ICMP query's "ports" are its id on both sides: NAT's new id is not a redirect.
    let icmp_id_only = st.proto == "icmp" && st.wire.dst.ip() == st.stack.dst.ip();
    if st.wire.dst != st.stack.dst && !icmp_id_only {
        let _ = write!(s, " (rdr {})", st.wire.dst);
    }
    let _ = write!(
        s,
        " {}:{} {}",
        st.src_state,
        st.dst_state,
        duration(st.age_s)
    );
    s
}

pub fn format_states(r: &StatesReply) -> String {
    let mut s = String::new();
    for st in &r.states {
        s.push_str(&state_line(st));
        s.push('\n');
    }
    let shown = r.states.len() as u64;
    if shown < r.count {
        let _ = writeln!(s, "{} states ({shown} shown)", r.count);
    } else {
        let _ = writeln!(s, "{} states", r.count);
    }
    s
}

pub fn format_rules(r: &RulesReply) -> String {
    if r.rules.is_empty() {
        return "No filter rules.\n".to_string();
    }
    let rows: Vec<Vec<String>> = r
        .rules
        .iter()
        .map(|x| {
            vec![
                x.number.to_string(),
                x.interface.to_uppercase(),
                x.action.clone(),
                x.proto.clone(),
                x.source.clone(),
                x.destination.clone(),
                x.port.clone(),
                x.hits.to_string(),
                x.bytes.to_string(),
                x.description.clone(),
            ]
        })
        .collect();
    table(
        &[
            "#",
            "Interface",
            "Action",
            "Proto",
            "Source",
            "Destination",
            "Port",
            "Hits",
            "Bytes",
            "Description",
        ],
        &rows,
    )
}

pub fn format_stats(counters: &[(&str, u64)], all: bool) -> String {
    let rows: Vec<Vec<String>> = counters
        .iter()
        .filter(|(_, v)| all || *v != 0)
        .map(|(k, v)| vec![(*k).to_string(), v.to_string()])
        .collect();
    if rows.is_empty() {
        return format!(
            "All {} counters are zero (--all shows them).\n",
            counters.len()
        );
    }
    let w = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    let mut s = String::new();
    for r in &rows {
        let _ = writeln!(s, "{:<w$}  {}", r[0], r[1]);
    }
    s
}

/// Under a minute in tenths of a second (a keepalive a second: "0.4s" is healthy, "7.9s"
/// is not), longer as [`duration`].
fn heard_ago(ms: u64) -> String {
    if ms < 60_000 {
        format!("{}.{}s", ms / 1000, ms % 1000 / 100)
    } else {
        duration(ms / 1000)
    }
}

pub fn format_sync(r: &SyncReply) -> String {
    let mut s = String::new();
    let rows = [
        ("Running", if r.running { "yes" } else { "no" }.to_string()),
        ("Peer", r.peer.clone().unwrap_or_else(|| "-".into())),
        (
            "Peer heard",
            r.peer_heard_ms
                .map_or("never".to_string(), |ms| format!("{} ago", heard_ago(ms))),
        ),
        ("Bulk update", r.bulk_status.clone()),
        ("States held", r.states.to_string()),
        ("Sent", r.sent.to_string()),
        ("Received", r.received.to_string()),
        ("Retransmitted", r.retransmitted.to_string()),
        ("Auth failed", r.auth_failed.to_string()),
        ("Dropped", r.dropped.to_string()),
        (
            "Lag",
            // Acknowledgements from a silent peer say nothing: its lag is unknown, not 0.
            if r.running && r.peer_silent_ms > crate::doctor::live::PEER_SILENT_MS {
                format!(
                    "unknown: the peer is silent ({}); states created meanwhile are not on it",
                    heard_ago(r.peer_silent_ms)
                )
            } else {
                format!("{} ms", r.lag_ms)
            },
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "{k:<16}  {v}");
    }
    s
}

pub fn format_config_sync(r: &ConfigSyncReply) -> String {
    let mut s = String::new();
    let hash = |h: &Option<String>| {
        h.as_deref()
            .map_or("-".to_string(), |h| h.get(..12).unwrap_or(h).to_string())
    };
    let _ = writeln!(s, "Role        {}", r.role);
    if r.role == "off" {
        return s;
    }
    let peer = r
        .peer
        .as_deref()
        .unwrap_or("any (passed by the sync rules)");
    let name = r
        .peer_hostname
        .as_deref()
        .map_or(String::new(), |n| format!(" ({n})"));
    let _ = writeln!(s, "Peer        {peer}:{}{name}", r.port);
    let seen = r
        .peer_seen_s
        .map_or("never".to_string(), |t| format!("{} ago", duration(t)));
    let _ = writeln!(s, "Peer heard  {seen}");
    let _ = writeln!(s, "In sync     {}", if r.in_sync { "yes" } else { "NO" });
    let _ = writeln!(s, "Local hash  {}", hash(&r.local_hash));
    let _ = writeln!(s, "Peer hash   {}", hash(&r.peer_hash));
    let _ = writeln!(s, "Version     {}", r.version);
    let _ = writeln!(s, "Sections    {}", r.sections.join(", "));
    if !r.nothing_to_sync.is_empty() {
        let _ = writeln!(
            s,
            "Nothing to sync (no such feature): {}",
            r.nothing_to_sync.join(", ")
        );
    }
    match &r.last_push {
        None => {
            let _ = writeln!(s, "Last push   none");
        }
        Some(p) => {
            let generation = p
                .generation
                .map_or(String::new(), |g| format!(", generation {g} there"));
            let _ = writeln!(
                s,
                "Last push   version {}: {}{generation}",
                p.version, p.result
            );
            if let Some(e) = &p.error {
                for line in e.lines() {
                    let _ = writeln!(s, "  {line}");
                }
            }
        }
    }
    if let Some(e) = &r.last_error {
        let _ = writeln!(s, "Last error  {e}");
    }
    s
}

/// `dhcp leases`: one line a lease, with how long is left at `now` (unix seconds).
pub fn format_leases(r: &DhcpLeasesReply, now: u64) -> String {
    r.leases
        .iter()
        .map(|l| {
            let when = if l.expires > now {
                format!("expires in {}", duration(l.expires - now))
            } else {
                format!("expired {} ago", duration(now - l.expires))
            };
            format!(
                "{:<15} {} {:<9} {when} {}\n",
                l.ip, l.mac, l.state, l.hostname
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Endpoints, StateInfo, SyncReply};

    /// The table's count is every state the box holds (a review saw "States from peer 64515"
    /// on a master whose peer had created none); a silent peer's lag is unknown, not 0.
    #[test]
    fn sync_shows_the_states_held_and_a_silent_peers_lag_as_unknown() {
        let r = SyncReply {
            running: true,
            peer: Some("10.0.0.2".into()),
            states: 64515,
            peer_heard_ms: Some(40_000),
            peer_silent_ms: 40_000,
            ..SyncReply::not_running()
        };
        let out = format_sync(&r);
        assert!(
            out.contains("States held") && out.contains("64515"),
            "{out}"
        );
        assert!(!out.contains("from peer"), "{out}");
        assert!(out.contains("unknown: the peer is silent"), "{out}");
    }

    fn state(proto: &str, stack: (&str, &str), wire: (&str, &str)) -> StateInfo {
        let e = |(src, dst): (&str, &str)| Endpoints {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
        };
        StateInfo {
            id: StateInfo::format_id(1, 1),
            proto: proto.into(),
            stack: e(stack),
            wire: e(wire),
            nat: true,
            src_state: "MULTIPLE".into(),
            dst_state: "MULTIPLE".into(),
            age_s: 40,
            expires_in_s: 20,
            packets: [1, 1],
            bytes: [84, 84],
            rule: None,
        }
    }

    #[test]
    fn an_icmp_querys_new_id_is_nat_not_a_redirect() {
        // NAT gives the query a new id, which is its "port" on both sides.
        let icmp = state(
            "icmp",
            ("192.168.0.100:7566", "172.25.46.1:7566"),
            ("172.25.46.100:60620", "172.25.46.1:60620"),
        );
        assert_eq!(
            state_line(&icmp),
            "icmp 192.168.0.100:7566 -> 172.25.46.1:7566 (nat 172.25.46.100:60620) MULTIPLE:MULTIPLE 40s"
        );
        // A destination rewrite is still a redirect, for ICMP too, and so is a new port for UDP.
        let rdr = state(
            "icmp",
            ("192.168.0.100:7566", "172.25.46.1:7566"),
            ("192.168.0.100:7566", "10.0.0.5:7566"),
        );
        assert!(state_line(&rdr).contains("(rdr 10.0.0.5:7566)"));
        let udp = state(
            "udp",
            ("192.168.0.100:53", "172.25.46.1:53"),
            ("192.168.0.100:53", "172.25.46.1:5353"),
        );
        assert!(state_line(&udp).contains("(rdr 172.25.46.1:5353)"));
    }
}
