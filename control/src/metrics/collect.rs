//! The sources of the registry, read by the control thread into one [`Snapshot`].

use tandem_dataplane::counters::Counters as DpCounters;
use tandem_dataplane::state::{PeerState, StateTable};

use super::{Kind, Snapshot};
use crate::daemon::Daemon;
use crate::handler::{peer_state_name, proto_name};

/// The worker port counters of `tandem_dataplane::worker::PortStats::snapshot`.
const PORT_HELP: &[(&str, &str)] = &[
    ("port_rx", "Frames taken from the AF_XDP RX rings."),
    ("port_tx", "Frames put on the AF_XDP TX rings."),
    (
        "port_tx_ring_full",
        "Frames not sent: the TX ring was full.",
    ),
    (
        "port_fill_starved",
        "Times a fill ring wanted frames and the pool had none.",
    ),
    (
        "port_send_no_frame",
        "Generated frames not sent: no free frame.",
    ),
    (
        "port_rx_too_long",
        "Frames received longer than a frame buffer: dropped.",
    ),
    (
        "port_bad_verdict",
        "Frames dropped: their verdict named an interface the worker has no port for, or a bad length.",
    ),
    (
        "port_tx_kicks",
        "TX kicks: sendto calls on the AF_XDP sockets (in copy mode the kernel sends in them).",
    ),
    (
        "port_tx_kick_errors",
        "TX kicks (sendto on an AF_XDP socket) that failed with an unexpected error.",
    ),
    (
        "port_wait_errors",
        "Idle waits on the AF_XDP sockets (ppoll) that failed: the worker slept on a timer.",
    ),
    (
        "slow_path_dropped",
        "Slow-path frames (CARP adverts, gratuitous ARPs) the worker could not send.",
    ),
    (
        "xdp_rx_dropped",
        "Frames the kernel dropped for the worker's AF_XDP sockets (XDP_STATISTICS).",
    ),
    (
        "xdp_rx_ring_full",
        "Frames the kernel dropped because an AF_XDP RX ring was full.",
    ),
    (
        "xdp_fill_ring_empty",
        "Times the kernel found an AF_XDP fill ring empty.",
    ),
    (
        "xdp_rx_invalid_descs",
        "Invalid RX descriptors the kernel saw.",
    ),
    (
        "xdp_tx_invalid_descs",
        "Invalid TX descriptors the kernel saw.",
    ),
];

/// The CARP thread's counters (`CarpRuntime::stats`).
const CARP_HELP: &[(&str, &str, Kind)] = &[
    (
        "carp_adverts_sent",
        "CARP adverts sent, all VHIDs.",
        Kind::Counter,
    ),
    (
        "carp_adverts_received",
        "CARP adverts received and accepted, all VHIDs.",
        Kind::Counter,
    ),
    (
        "carp_garps_sent",
        "Gratuitous ARPs sent on becoming master.",
        Kind::Counter,
    ),
    (
        "carp_send_errors",
        "CARP adverts that could not be sent.",
        Kind::Counter,
    ),
    (
        "carp_transitions",
        "CARP state transitions, all VHIDs.",
        Kind::Counter,
    ),
    (
        "carp_demotion",
        "The box's CARP demotion (0: not demoted; 240 per lost link, maintenance...).",
        Kind::Gauge,
    ),
    (
        "carp_thread_running",
        "1 while the CARP thread is alive.",
        Kind::Gauge,
    ),
];

/// The DHCP server's counters (`DhcpCounters::snapshot`, names `dhcp_*`).
const DHCP_HELP: &[(&str, &str)] = &[
    ("dhcp_received", "DHCP requests received."),
    ("dhcp_malformed", "DHCP requests that do not parse."),
    (
        "dhcp_chaddr_mismatch",
        "DHCP requests whose client hardware address is not the frame's source MAC (dropped).",
    ),
    (
        "dhcp_relayed",
        "Relayed DHCP requests (giaddr set): dropped, relays are not served.",
    ),
    (
        "dhcp_unoffered",
        "DHCPREQUESTs for an address this server neither offered nor leases to the client (NAKed).",
    ),
    (
        "dhcp_not_master",
        "DHCP requests seen while the peer is master (the backup stays silent).",
    ),
    ("dhcp_offers", "DHCPOFFERs sent."),
    ("dhcp_acks", "DHCPACKs sent."),
    ("dhcp_naks", "DHCPNAKs sent."),
    ("dhcp_releases", "DHCPRELEASEs received."),
    ("dhcp_declines", "DHCPDECLINEs received."),
    ("dhcp_informs", "DHCPINFORMs answered."),
    (
        "dhcp_ignored",
        "DHCP requests answered with silence (another server chosen, no record).",
    ),
    (
        "dhcp_pool_exhausted",
        "DHCP requests with no free address in the pool.",
    ),
    (
        "dhcp_tx_dropped",
        "DHCP replies the workers' queue had no room for.",
    ),
    (
        "dhcp_peer_leases",
        "Lease records received from the peer and taken.",
    ),
];

/// State sync's values beyond the replicator's table.
const SYNC_EXTRA_HELP: &[(&str, &str)] = &[(
    "blocked_by_rule",
    "Sync datagrams the sync interface's rules block.",
)];

/// States by protocol and TCP state, and the NATed ones: a walk of the whole table, so it runs
/// on the metrics endpoint's scrape thread, never on the control loop (about 150 ns a state: a
/// fraction of a second at a million states). `tandemctl stats` leaves it out.
pub fn state_census(table: &StateTable, s: &mut Snapshot) {
    // (protocol, TCP state of the less advanced side or 0) -> count; names made at the end.
    let mut by: Vec<((u8, u8), u64)> = Vec::new();
    let mut nat = 0u64;
    table.for_each(|st| {
        nat += u64::from(st.stack != st.wire());
        let proto = st.proto();
        let state = if proto == 6 {
            let t = st.tracking();
            t.src.state.0.min(t.dst.state.0)
        } else {
            0
        };
        match by.iter_mut().find(|(k, _)| *k == (proto, state)) {
            Some((_, n)) => *n += 1,
            None => by.push(((proto, state), 1)),
        }
    });
    let f = s.family(
        "states_by_protocol",
        "States by protocol and, for TCP, the state of its less advanced side.",
        Kind::Gauge,
        &["protocol", "tcp_state"],
    );
    for ((p, st), n) in &by {
        let state = if *p == 6 {
            peer_state_name(*p, PeerState(*st))
        } else {
            String::new()
        };
        f.add(&[proto_name(*p), &state], *n);
    }
    s.add(
        "nat_states",
        "States whose addresses or ports are translated: each holds a NAT port.",
        Kind::Gauge,
        nat,
    );
}

impl Daemon {
    /// Every metric of the box, now, but the state census ([`state_census`]).
    pub fn metrics(&self) -> Snapshot {
        let mut s = Snapshot::default();
        let per_worker = self.dp.worker_counters();
        for (w, pairs) in per_worker.iter().enumerate() {
            let w = w.to_string();
            s.table(
                "",
                DpCounters::HELP,
                Kind::Counter,
                &["worker"],
                &[&w],
                pairs,
            );
        }
        if per_worker.is_empty() {
            let total = self.dp.counters();
            s.table(
                "",
                DpCounters::HELP,
                Kind::Counter,
                &["worker"],
                &[],
                &total,
            );
        }
        for w in &self.workers {
            let i = w.index.to_string();
            s.table(
                "",
                PORT_HELP,
                Kind::Counter,
                &["worker"],
                &[&i],
                &w.stats.snapshot(),
            );
        }
        self.state_metrics(&mut s);
        s.add(
            "neighbours",
            "Entries of the neighbour (ARP) table.",
            Kind::Gauge,
            self.dp.neigh.len() as u64,
        );
        self.carp_metrics(&mut s);
        let dhcp = self.dhcp.counters.snapshot();
        let dhcp: Vec<(&str, u64)> = dhcp.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        s.table("", DHCP_HELP, Kind::Counter, &[], &[], &dhcp);
        if let Some(sync) = &self.sync {
            let snap = sync.snapshot();
            let help: Vec<(&str, &str)> = tandem_sync::replicate::Counters::HELP
                .iter()
                .chain(SYNC_EXTRA_HELP)
                .copied()
                .collect();
            s.table("sync_", &help, Kind::Counter, &[], &[], &snap.counters);
            s.add(
                "sync_running",
                "1 while the state sync thread runs; 0 once it has stopped (see the log): no state reaches the peer.",
                Kind::Gauge,
                u64::from(sync.is_running()),
            );
            if let Some(r) = &snap.reply {
                s.family(
                    "sync_lag_ms",
                    "Age of the oldest state change the peer has not acknowledged yet.",
                    Kind::Gauge,
                    &[],
                )
                .exposed_as("sync_lag_seconds", 0.001)
                .add(&[], r.lag_ms);
                // Only from a running sync thread: a dead one's last figure would stay frozen.
                if r.running {
                    s.family(
                        "sync_peer_heard_ms",
                        "Time since the peer's last authenticated sync datagram, or since state sync started if it was never heard (each box sends a keepalive after a second without sending).",
                        Kind::Gauge,
                        &[],
                    )
                    .exposed_as("sync_peer_heard_seconds", 0.001)
                    .add(&[], r.peer_silent_ms);
                }
            }
            s.add(
                "sync_bulk_pending",
                "1 while the bulk update from the peer is running (CARP stays demoted).",
                Kind::Gauge,
                u64::from(sync.bulk_pending()),
            );
        }
        if let Some(cs) = &self.config_sync {
            let help = crate::config_sync::service::Counters::HELP;
            s.table(
                "config_sync_",
                help,
                Kind::Counter,
                &[],
                &[],
                &cs.counters.snapshot(),
            );
        }
        s.add(
            "config_generation",
            "The running config's generation (1 at start, +1 per apply).",
            Kind::Gauge,
            self.generation,
        );
        s.add(
            "uptime_seconds",
            "Seconds since tandemd started.",
            Kind::Gauge,
            self.started.elapsed().as_secs(),
        );
        s
    }

    fn state_metrics(&self, s: &mut Snapshot) {
        let table = &self.dp.states;
        s.add(
            "states",
            "States in the table.",
            Kind::Gauge,
            table.len() as u64,
        );
        s.add(
            "state_limit",
            "The state table's limit (new states beyond it are refused).",
            Kind::Gauge,
            u64::from(table.limit()),
        );
    }

    fn carp_metrics(&self, s: &mut Snapshot) {
        let mut rejected = Vec::new();
        let mut per_vhid = Vec::new();
        for (name, v) in self.carp.stats() {
            if let Some(rest) = name.strip_prefix("carp_vhid/") {
                let mut p = rest.splitn(3, '/');
                if let (Some(what), Some(iface), Some(vhid)) = (p.next(), p.next(), p.next()) {
                    per_vhid.push((what.to_string(), iface.to_string(), vhid.to_string(), v));
                }
                continue;
            }
            if let Some(reason) = name.strip_prefix("carp_rejected_") {
                rejected.push((reason.to_string(), v));
                continue;
            }
            let (help, kind) = CARP_HELP
                .iter()
                .find(|(n, _, _)| *n == name)
                .map_or(("", Kind::Counter), |(_, h, k)| (*h, *k));
            s.add(&name, help, kind, v);
        }
        let f = s
            .family(
                "carp_rejected",
                "CARP adverts rejected, by reason (carp(4)'s carpstats).",
                Kind::Counter,
                &["reason"],
            )
            .split_by("reason");
        for (r, v) in &rejected {
            f.add(&[r], *v);
        }
        for (what, help) in [
            ("adverts_sent", "CARP adverts sent for the VHID."),
            (
                "adverts_received",
                "CARP adverts received and accepted for the VHID.",
            ),
            ("transitions", "The VHID's CARP state transitions."),
        ] {
            let f = s.family(
                &format!("carp_vhid_{what}"),
                help,
                Kind::Counter,
                &["interface", "vhid"],
            );
            for (w, iface, vhid, v) in &per_vhid {
                if w == what {
                    f.add(&[iface, vhid], *v);
                }
            }
        }
        let reply = self.carp.status();
        s.add(
            "carp_enabled",
            "1 while CARP runs (tandemctl carp enable|disable).",
            Kind::Gauge,
            u64::from(reply.enabled),
        );
        s.add(
            "carp_maintenance",
            "1 in persistent maintenance mode.",
            Kind::Gauge,
            u64::from(reply.maintenance),
        );
        let f = s.family(
            "carp_vhid_master",
            "1 when this box is master of the VHID.",
            Kind::Gauge,
            &["interface", "vhid"],
        );
        let mut seen = Vec::new();
        for v in &reply.vips {
            if seen.contains(&(v.interface.clone(), v.vhid)) {
                continue;
            }
            seen.push((v.interface.clone(), v.vhid));
            let vhid = v.vhid.to_string();
            f.add(
                &[&v.interface, &vhid],
                u64::from(v.state == crate::carp::machine::State::Master),
            );
        }
        let f = s.family(
            "carp_vhid_state",
            "The VHID's CARP state: 1 for the current one.",
            Kind::Gauge,
            &["interface", "vhid", "state"],
        );
        for (iface, vhid) in &seen {
            let Some(v) = reply
                .vips
                .iter()
                .find(|v| v.interface == *iface && v.vhid == *vhid)
            else {
                continue;
            };
            let vh = vhid.to_string();
            for st in ["MASTER", "BACKUP", "INIT", "DISABLED"] {
                f.add(&[iface, &vh, st], u64::from(v.state.name() == st));
            }
        }
        let f = s.family(
            "carp_vhid_demotion",
            "The demotion the VHID advertises.",
            Kind::Gauge,
            &["interface", "vhid"],
        );
        for (iface, vhid) in &seen {
            if let Some(v) = reply
                .vips
                .iter()
                .find(|v| v.interface == *iface && v.vhid == *vhid)
            {
                f.add(&[iface, &vhid.to_string()], u64::from(v.demotion));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tandem_dataplane::filter::proto;
    use tandem_dataplane::state::{FlowKey, NewState, TableConfig, TcpSegment};

    use super::*;

    #[test]
    fn the_census_counts_states_by_protocol_and_tcp_state() {
        let t = StateTable::new(TableConfig::default());
        let by = t.producer();
        let syn = TcpSegment {
            flags: 0x02,
            seq: 1,
            win: 64240,
            ..TcpSegment::default()
        };
        for (i, p) in [proto::TCP, proto::TCP, proto::UDP].into_iter().enumerate() {
            let key = FlowKey::new(
                p,
                Ipv4Addr::new(192, 168, 0, 100),
                1024 + i as u16,
                Ipv4Addr::new(172, 25, 46, 1),
                443,
            );
            let seg = (p == proto::TCP).then_some(&syn);
            t.insert(NewState::first_packet(key, 1, seg, 60), 0, &by)
                .unwrap();
        }
        let mut s = Snapshot::default();
        state_census(&t, &mut s);
        let f = &s.families()[0];
        assert_eq!(f.name, "states_by_protocol");
        let udp = f.samples.iter().find(|(l, _)| l[0] == "udp").unwrap();
        assert_eq!((udp.0[1].as_str(), udp.1), ("", 1));
        let tcp: u64 = f
            .samples
            .iter()
            .filter(|(l, _)| l[0] == "tcp")
            .map(|(_, v)| v)
            .sum();
        assert_eq!(tcp, 2);
        assert!(f
            .samples
            .iter()
            .all(|(l, _)| l[0] != "tcp" || !l[1].is_empty()));
        assert_eq!(s.flat().last(), Some(&("nat_states".to_string(), 0)));
    }

    #[test]
    fn every_worker_port_counter_has_its_help_and_no_help_is_left_over() {
        let names: Vec<&str> = tandem_dataplane::worker::PortStats::default()
            .snapshot()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let helped: Vec<&str> = PORT_HELP.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, helped, "PORT_HELP follows PortStats::snapshot");
        assert!(PORT_HELP.iter().all(|(_, h)| !h.is_empty()));
    }
}
