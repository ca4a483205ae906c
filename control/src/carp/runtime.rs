//! CARP in the daemon: the glue between the pure [`CarpGroupSet`] and the running box.
//!
//! It runs on the CARP thread ([`super::thread`]), which nothing else can delay.
//!
//! - Adverts received by the workers reach the CARP thread on the slow-path channel and go
//!   to [`CarpRuntime::on_frame`]; rejects are counted by reason. The source of an accepted
//!   advert is published as its VHID's peer (`Dataplane::carp_peers`), whose adverts the
//!   workers then let through first.
//! - Timers run from [`CarpRuntime::tick`], which the CARP thread calls at least at
//!   [`CarpRuntime::next_deadline`].
//! - Adverts and gratuitous ARPs leave through worker 0's slow-path channel.
//! - MASTER means the dataplane holds the VHID ([`HeldVhids`]): it answers ARP for the VIPs with
//!   the virtual MAC and accepts frames to it. Gratuitous ARPs go out at once and four more
//!   times over two seconds (a switch or host that missed the first learns from the next).
//! - Demotion is box-wide, as FreeBSD's net.inet.carp.demotion: +240 per CARP interface without
//!   link, so every VIP moves to the peer together (never WAN on one box and LAN on the other);
//!   +240 after three failed sends in a row, until three succeed; and whatever other subsystems
//!   add (state sync's bulk update).
//! - Maintenance mode persists across restarts as a file in the state directory, like
//!   pfSense's "Persistent CARP Maintenance Mode"; `carp disable` does not persist.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use tandem_dataplane::pipeline::{ControlFrame, Dataplane};
use tandem_dataplane::worker::SlowFrame;
use tandem_dataplane::IfIndex;

use crate::carp::demotion::Demotion;
use crate::carp::machine::Action;
use crate::carp::{CarpGroupSet, GroupOutput, GARP_INTERVAL, GARP_REPEATS};
use crate::config::Config;

/// How often the links of CARP interfaces are read.
const LINK_POLL: Duration = Duration::from_millis(20);
/// Consecutive failed sends before the send-error demotion (FreeBSD's 3).
const SEND_ERRORS_TO_DEMOTE: u32 = 3;

/// Counters of the CARP runtime, besides the rejects.
#[derive(Debug, Default, Clone)]
pub struct CarpCounters {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub garps_sent: u64,
    pub send_errors: u64,
    pub transitions: u64,
    /// Per (interface, VHID): adverts sent, adverts received, transitions.
    pub per_vhid: std::collections::BTreeMap<(String, u8), [u64; 3]>,
}

impl CarpCounters {
    fn vhid(&mut self, interface: &str, vhid: u8, which: usize) {
        let e = self
            .per_vhid
            .entry((interface.to_string(), vhid))
            .or_default();
        e[which] += 1;
    }
}

/// A VHID's CARP group as the dataplane sees it.
#[derive(Debug, Clone)]
struct GroupPort {
    if_index: Option<IfIndex>,
    device: String,
}

/// Why maintenance mode could not be switched.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// Its file in the state dir (which keeps it across restarts) could not be written.
    #[error("maintenance mode: cannot persist in {path}: {source}")]
    Persist {
        path: String,
        source: std::io::Error,
    },
    /// The CARP thread did not answer in time.
    #[error("carp: the CARP thread did not answer")]
    NoAnswer,
}

#[derive(Debug)]
pub struct CarpRuntime {
    set: CarpGroupSet,
    ports: Vec<GroupPort>,
    dp: Arc<Dataplane>,
    send: Sender<SlowFrame>,
    /// Pending gratuitous ARPs: (when, group).
    garps: Vec<(Instant, usize)>,
    /// CARP interfaces by name: their device, and whether their link is down.
    links: BTreeMap<String, (String, bool)>,
    next_link_poll: Instant,
    send_error_run: u32,
    send_ok_run: u32,
    /// The box-wide demotion's sources.
    demotion: Demotion,
    maintenance_file: Option<PathBuf>,
    pub counters: CarpCounters,
}

impl CarpRuntime {
    /// The CARP groups of `config`, not started. `devices[i]` is the OS device of dataplane
    /// interface `i`; `state_dir` holds the maintenance flag.
    pub fn new(
        config: &Config,
        devices: &[String],
        dp: Arc<Dataplane>,
        send: Sender<SlowFrame>,
        state_dir: Option<PathBuf>,
        now: Instant,
    ) -> CarpRuntime {
        let set = CarpGroupSet::from_config(config);
        let ports = ports_of(&set, &dp, devices);
        let links = links_of(&set, &ports, &BTreeMap::new());
        CarpRuntime {
            set,
            ports,
            dp,
            send,
            garps: Vec::new(),
            links,
            next_link_poll: now,
            send_error_run: 0,
            send_ok_run: 0,
            demotion: Demotion::default(),
            maintenance_file: state_dir.map(|d| d.join("carp-maintenance")),
            counters: CarpCounters::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// A new config's CARP groups: only the groups whose settings changed restart (a master of
    /// one bows out first); the others keep running untouched ([`CarpGroupSet::reconfigure`]).
    /// The dataplane must already run the new generation (the groups' interface indices).
    pub fn reconfigure(&mut self, config: &Config, devices: &[String], now: Instant) {
        let r = self.set.reconfigure(config, now);
        let kept = r.moved.iter().flatten().count();
        // The old groups' bow-outs, with the old set and ports.
        self.perform(r.stopped, now);
        let ports = ports_of(&r.set, &self.dp, devices);
        self.links = links_of(&r.set, &ports, &self.links);
        self.garps = self
            .garps
            .iter()
            .filter_map(|&(t, g)| r.moved.get(g).copied().flatten().map(|j| (t, j)))
            .collect();
        self.set = r.set;
        self.ports = ports;
        self.perform(r.started, now);
        // A new group on an interface known to be without link starts as INIT, as the others
        // there are (the kept ones are INIT already: no transition for them).
        let down: Vec<String> = self
            .links
            .iter()
            .filter(|(_, (_, down))| *down)
            .map(|(name, _)| name.clone())
            .collect();
        for name in down {
            let outs = self.set.set_link(&name, false, now);
            self.perform(outs, now);
        }
        tracing::info!(
            kept,
            started = self.set.groups().len() - kept,
            "carp: config applied; kept groups run on untouched"
        );
    }

    /// Starts every group (INIT -> BACKUP), in maintenance mode if it was left on.
    pub fn start(&mut self, now: Instant) {
        if self.maintenance_file.as_ref().is_some_and(|f| f.exists()) {
            tracing::warn!(
                "carp: maintenance mode is on (persisted); tandemctl maintenance off to leave it"
            );
            let outs = self.set.set_maintenance(true, now);
            self.perform(outs, now);
        }
        self.poll_links(now);
        let outs = self.set.start(now);
        self.perform(outs, now);
    }

    /// Stops every group: masters bow out (an advert with skew 255) and release the VIPs.
    pub fn stop(&mut self, now: Instant) {
        let outs = self.set.stop(now);
        self.perform(outs, now);
    }

    /// The next instant [`tick`](Self::tick) has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        let garp = self.garps.iter().map(|(t, _)| *t).min();
        [self.set.next_deadline(), garp, Some(self.next_link_poll)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs what is due: the machines' timers, the links, the pending gratuitous ARPs.
    pub fn tick(&mut self, now: Instant) {
        if now >= self.next_link_poll {
            self.poll_links(now);
        }
        let outs = self.set.poll(now);
        self.perform(outs, now);
        let due: Vec<usize> = self
            .garps
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, g)| *g)
            .collect();
        self.garps.retain(|(t, _)| *t > now);
        for g in due {
            self.send_garps(g);
        }
    }

    /// A frame from the slow path: IP protocol 112 on a dataplane interface.
    pub fn on_frame(&mut self, frame: &ControlFrame, now: Instant) {
        let gen = self.dp.generation.load();
        let Some(iface) = gen.interface(frame.in_if) else {
            return;
        };
        match self.set.receive(&iface.name, &frame.bytes, now) {
            Ok(out) => {
                self.counters.adverts_received += 1;
                let g = &self.set.groups()[out.group];
                self.counters.vhid(&g.interface, g.vhid(), 1);
                // The workers give this source's adverts for the VHID precedence on the slow
                // path (tandem_dataplane::carp_filter).
                if let Some(peer) = self.set.peer(out.group) {
                    let vhid = self.set.groups()[out.group].vhid();
                    self.dp.carp_peers.set(vhid, peer);
                }
                self.perform(vec![out], now);
            }
            Err(reject) => {
                tracing::debug!(interface = %iface.name, "carp: advert rejected: {}", reject.name());
            }
        }
    }

    pub fn set_maintenance(&mut self, on: bool, now: Instant) -> Result<(), MaintenanceError> {
        if let Some(f) = &self.maintenance_file {
            let r = if on {
                f.parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(f, b"on\n"))
            } else if f.exists() {
                std::fs::remove_file(f)
            } else {
                Ok(())
            };
            r.map_err(|source| MaintenanceError::Persist {
                path: f.display().to_string(),
                source,
            })?;
        }
        tracing::info!("carp: maintenance mode {}", if on { "on" } else { "off" });
        let outs = self.set.set_maintenance(on, now);
        self.perform(outs, now);
        Ok(())
    }

    /// Whether CARP is enabled (`tandemctl carp disable` turns it off until enabled or restarted).
    pub fn enabled(&self) -> bool {
        self.set.enabled()
    }

    /// Whether maintenance mode is on.
    pub fn maintenance(&self) -> bool {
        self.set.maintenance()
    }

    pub fn set_enabled(&mut self, on: bool, now: Instant) {
        tracing::info!(
            "carp: {}",
            if on {
                "enabled"
            } else {
                "temporarily disabled: VIPs released"
            }
        );
        let outs = self.set.set_enabled(on, now);
        self.perform(outs, now);
    }

    /// State sync's bulk update is running (+240: a rebooted box must not preempt before it
    /// holds the state table) or done.
    pub fn set_sync_pending(&mut self, pending: bool, now: Instant) {
        if self.demotion.set_sync_pending(pending) {
            self.update_demotion(now);
        }
    }

    /// The box's CARP status now.
    pub fn status(&self, now: Instant) -> super::Status {
        self.set.status(now)
    }

    /// Counters for `tandemctl stats`, prefixed `carp_`.
    pub fn stats(&self) -> Vec<(String, u64)> {
        let c = &self.counters;
        let mut v = vec![
            ("carp_adverts_sent".to_string(), c.adverts_sent),
            ("carp_adverts_received".to_string(), c.adverts_received),
            ("carp_garps_sent".to_string(), c.garps_sent),
            ("carp_send_errors".to_string(), c.send_errors),
            ("carp_transitions".to_string(), c.transitions),
            ("carp_demotion".to_string(), u64::from(self.set.demotion())),
        ];
        v.extend(
            self.set
                .rejects()
                .map(|(name, n)| (format!("carp_rejected_{name}"), n)),
        );
        // Per VHID, as `carp_vhid/<what>/<interface>/<vhid>` (the metrics registry labels them).
        for ((iface, vhid), c) in &self.counters.per_vhid {
            for (what, n) in ["adverts_sent", "adverts_received", "transitions"]
                .iter()
                .zip(c)
            {
                v.push((format!("carp_vhid/{what}/{iface}/{vhid}"), *n));
            }
        }
        v
    }

    fn poll_links(&mut self, now: Instant) {
        self.next_link_poll = now + LINK_POLL;
        let mut changed = Vec::new();
        for (name, (dev, down)) in self.links.iter_mut() {
            let is_down = !link_up(dev);
            if is_down != *down {
                tracing::warn!(interface = %name, device = %dev, "carp: link {}", if is_down { "down: its VHIDs go to INIT, the box is demoted by 240" } else { "up" });
                *down = is_down;
                changed.push((name.clone(), !is_down));
            }
        }
        for (name, up) in changed {
            self.demotion.set_link(&name, up);
            let outs = self.set.set_link(&name, up, now);
            self.perform(outs, now);
            self.update_demotion(now);
        }
    }

    fn update_demotion(&mut self, now: Instant) {
        let total = self.demotion.total();
        if total != self.set.demotion() {
            let outs = self.set.set_demotion(total, now);
            self.perform(outs, now);
        }
    }

    /// Carries out what the machines asked for, in order, and logs their transitions.
    fn perform(&mut self, outs: Vec<GroupOutput>, now: Instant) {
        for GroupOutput { group, output } in outs {
            let g = &self.set.groups()[group];
            for t in &output.transitions {
                self.counters.transitions += 1;
                self.counters.vhid(&g.interface, g.vhid(), 2);
                tracing::info!(
                    vhid = t.vhid,
                    interface = %g.interface,
                    from = ?t.from,
                    to = ?t.to,
                    reason = t.reason,
                    "carp: {}",
                    t.display(&g.interface.to_uppercase())
                );
            }
            let vhid = g.vhid();
            for a in &output.actions {
                match a {
                    Action::SendAdvert(s) => {
                        let mut buf = [0u8; 128];
                        let n = self.set.build_advert(group, s, &mut buf);
                        if self.send_frame(group, &buf[..n]) {
                            self.counters.adverts_sent += 1;
                            let iface = self.set.groups()[group].interface.clone();
                            self.counters.vhid(&iface, vhid, 0);
                        }
                    }
                    Action::BecomeMaster => {
                        self.dp.held.set(vhid, true);
                        self.garps.retain(|(_, g)| *g != group);
                        self.garps
                            .extend((0..=GARP_REPEATS).map(|k| (now + GARP_INTERVAL * k, group)));
                    }
                    Action::BecomeBackup => {
                        self.dp.held.set(vhid, false);
                        self.garps.retain(|(_, g)| *g != group);
                    }
                }
            }
        }
        // Sends may have failed above: the send-error demotion follows (FreeBSD: after 3 errors in
        // a row, lifted after 3 successes).
        let failing = if self.send_error_run >= SEND_ERRORS_TO_DEMOTE {
            Some(true)
        } else if self.send_ok_run >= SEND_ERRORS_TO_DEMOTE {
            Some(false)
        } else {
            None
        };
        if let Some(f) = failing {
            if self.demotion.set_send_errors(f) {
                tracing::warn!(
                    "carp: send errors: demotion {}",
                    if f { "+240" } else { "lifted" }
                );
                self.update_demotion(now);
            }
        }
    }

    fn send_garps(&mut self, group: usize) {
        let g = &self.set.groups()[group];
        if !self.dp.held.is_held(g.vhid()) {
            return;
        }
        for vip in 0..g.vips().len() {
            let mut buf = [0u8; 64];
            let n = self.set.gratuitous_arp(group, vip, &mut buf);
            if self.send_frame(group, &buf[..n]) {
                self.counters.garps_sent += 1;
            }
        }
    }

    fn send_frame(&mut self, group: usize, bytes: &[u8]) -> bool {
        let Some(out_if) = self.ports[group].if_index else {
            return false;
        };
        let ok = self
            .send
            .try_send(SlowFrame {
                out_if,
                bytes: bytes.to_vec(),
            })
            .is_ok();
        if ok {
            self.send_error_run = 0;
            self.send_ok_run = self.send_ok_run.saturating_add(1);
        } else {
            self.counters.send_errors += 1;
            self.send_ok_run = 0;
            self.send_error_run = self.send_error_run.saturating_add(1);
        }
        ok
    }
}

/// Each group's dataplane interface and device (`devices[i]` is the OS device of interface `i`).
fn ports_of(set: &CarpGroupSet, dp: &Dataplane, devices: &[String]) -> Vec<GroupPort> {
    let gen = dp.generation.load();
    set.groups()
        .iter()
        .map(|g| {
            let if_index = gen.interface_index(&g.interface);
            let device = if_index
                .and_then(|i| devices.get(usize::from(i)).cloned())
                .unwrap_or_default();
            GroupPort { if_index, device }
        })
        .collect()
}

/// The CARP interfaces by name with their device, each link as `known` last saw it (up when
/// new: the next poll reads it).
fn links_of(
    set: &CarpGroupSet,
    ports: &[GroupPort],
    known: &BTreeMap<String, (String, bool)>,
) -> BTreeMap<String, (String, bool)> {
    set.groups()
        .iter()
        .zip(ports)
        .filter(|(_, p)| !p.device.is_empty())
        .map(|(g, p)| {
            let down = known.get(&g.interface).is_some_and(|(_, d)| *d);
            (g.interface.clone(), (p.device.clone(), down))
        })
        .collect()
}

/// Whether a device has link (carrier), read from sysfs in the daemon's network namespace.
pub(crate) fn link_up(dev: &str) -> bool {
    match std::fs::read_to_string(format!("/sys/class/net/{dev}/carrier")) {
        Ok(s) => s.trim() == "1",
        // Administratively down devices refuse to report a carrier: no link either way.
        Err(_) => false,
    }
}
