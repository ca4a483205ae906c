//! CARP: BSD-compatible adverts ([`wire`]), the per-VHID state machine ([`machine`]), the
//! box-wide demotion ([`demotion`]) and the set of a box's VHIDs built from its config
//! ([`CarpGroupSet`]), which the daemon drives.
//!
//! # What the daemon does with it
//!
//! [`CarpGroupSet`] is pure like the machines: it never reads the clock, never sends, never
//! logs. The CARP thread owns it ([`thread`]) and:
//!
//! 1. Builds it with [`CarpGroupSet::from_config`]; on reload, [`CarpGroupSet::reconfigure`]
//!    restarts only the groups whose settings changed and carries the demotion, maintenance
//!    and enable switches over.
//! 2. Calls [`CarpGroupSet::start`] once the dataplane can send on the CARP interfaces, and
//!    [`CarpGroupSet::stop`] on shutdown (masters bow out, so the peer takes over at once).
//! 3. Wakes at [`CarpGroupSet::next_deadline`] and calls [`CarpGroupSet::poll`] (a monotonic
//!    `Instant::now()`; early or repeated polls are harmless).
//! 4. Has the workers hand it every received frame of IP protocol 112 on a CARP interface
//!    (slow path), with the interface's config name: [`CarpGroupSet::receive`]. A rejected frame
//!    is counted under its name ([`CarpGroupSet::rejects`]: export them with the stats as
//!    `carp.<name>`); the error is for debug logs only (rate-limit them).
//! 5. Keeps a [`demotion::Demotion`]: link down/up of each CARP interface, the state sync's bulk
//!    update pending/done, send errors; on every change calls [`CarpGroupSet::set_demotion`]
//!    with [`demotion::Demotion::total`].
//! 6. Maps `tandemctl carp enable|disable` to [`CarpGroupSet::set_enabled`] and
//!    `maintenance on|off` to [`CarpGroupSet::set_maintenance`] (persist maintenance across
//!    restarts, as pfSense does; not the disable switch), and answers `carp` with
//!    [`CarpGroupSet::reply`].
//! 7. Performs every [`GroupOutput`]'s actions in order:
//!    - [`machine::Action::SendAdvert`]: [`CarpGroupSet::build_advert`] into a TX frame, sent
//!      on the group's interface; count a send error and feed (6) after 3 in a row.
//!    - [`machine::Action::BecomeMaster`]: the dataplane owns the group's VIPs from now: answers
//!      ARP for them with the virtual MAC [`tandem_dataplane::wire::MacAddr::carp_virtual`],
//!      accepts their traffic, sources NAT from them; then sends a gratuitous ARP per VIP
//!      ([`CarpGroupSet::gratuitous_arp`]) now and [`GARP_REPEATS`] more times
//!      [`GARP_INTERVAL`] apart. Synced states must be in the table before this.
//!    - [`machine::Action::BecomeBackup`]: release the VIPs now (no ARP answers, their traffic
//!      is not ours); stop pending gratuitous ARPs.
//!    - and logs each transition: `info!("carp: {}", t.display(&group.interface))`, e.g.
//!      "carp: wan@1 BACKUP -> MASTER (master down)".

pub mod demotion;
pub mod machine;
pub mod runtime;
pub mod thread;
pub mod wire;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tandem_dataplane::wire::arp::emit_gratuitous_arp;
use tandem_dataplane::wire::MacAddr;

use crate::config::Config;
use machine::{Event, Machine, MachineConfig, Output, SendAdvert, State};
use wire::{AdvertParams, CarpAuth, Reject, ReplayGuard};

/// The demotion FreeBSD adds while an interface of a VHID is down
/// (`net.inet.carp.ifdown_demotion_factor`), and pfsync while its bulk update runs
/// (`net.pfsync.carp_demotion_factor`): `CARP_MAXSKEW`.
pub const DEMOTION_FACTOR: u32 = 240;

/// Gratuitous ARPs after the first one on becoming master (FreeBSD sends one; more survive a
/// lost frame or a switch still learning).
pub const GARP_REPEATS: u32 = 2;
/// The time between gratuitous ARPs.
pub const GARP_INTERVAL: Duration = Duration::from_millis(500);

/// One VHID on one interface.
#[derive(Debug, Clone)]
pub struct Group {
    /// The config's interface name.
    pub interface: String,
    /// The interface's own address: the adverts' source.
    pub own_ip: Ipv4Addr,
    /// Key and VIPs (sorted).
    pub auth: CarpAuth,
    /// The state machine.
    pub machine: Machine,
}

impl Group {
    pub fn vhid(&self) -> u8 {
        self.auth.vhid()
    }

    /// The VIPs, sorted ascending.
    pub fn vips(&self) -> &[Ipv4Addr] {
        self.auth.vips()
    }
}

/// What one group did in answer to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOutput {
    /// Index into [`CarpGroupSet::groups`].
    pub group: usize,
    pub output: Output,
}

/// A box's CARP groups (VHID on an interface), in config order, with their machines, a replay
/// guard each (the same VHID may exist on two interfaces) and the reject counters.
#[derive(Debug, Clone)]
pub struct CarpGroupSet {
    groups: Vec<Group>,
    guards: Vec<ReplayGuard>,
    rejects: [u64; Reject::ALL.len()],
    demotion: u32,
    maintenance: bool,
    enabled: bool,
    preempt: bool,
}

/// What [`CarpGroupSet::reconfigure`] made of a new config.
#[derive(Debug)]
pub struct Reconfigured {
    /// The new set.
    pub set: CarpGroupSet,
    /// For each old group, its index in the new set if it was kept as it was.
    pub moved: Vec<Option<usize>>,
    /// What the old groups that changed or went away did on stopping (old indices).
    pub stopped: Vec<GroupOutput>,
    /// What the new and changed groups did on starting (new indices).
    pub started: Vec<GroupOutput>,
}

/// Whether `b` (of a new config) is `a` with at most a new password, as far as the peer and the
/// election can tell: its machine carries on. A change of anything else (a description,
/// another group) leaves the group running too.
/// A new password restarts nothing: restarted, a master bowed out to its backup, which then
/// restarted on config sync's push and bowed out in turn, signed with the old password the
/// primary no longer took, and both sat in BACKUP until master down (3 s at advbase 1, a new
/// user's review). Kept, the master's next advert carries the new password; the backup, which
/// refuses it until the push reaches it (milliseconds), is far from its master down.
fn same_group(a: &Group, b: &Group) -> bool {
    a.interface == b.interface
        && a.own_ip == b.own_ip
        && a.machine.config() == b.machine.config()
        && a.auth.vips() == b.auth.vips()
}

impl CarpGroupSet {
    /// The groups of `config` ([`Config::carp_groups`]), preemption on (pfSense), counters from
    /// [`wire::initial_counter`].
    pub fn from_config(config: &Config) -> CarpGroupSet {
        Self::with_counter_start(config, true, wire::initial_counter())
    }

    /// As [`from_config`](Self::from_config), with the preempt switch and the first group's
    /// counter start given (the others follow it 2^32 apart).
    pub fn with_counter_start(config: &Config, preempt: bool, counter: u64) -> CarpGroupSet {
        let groups: Vec<Group> = config
            .carp_groups()
            .iter()
            .map(|g| {
                let own_ip = config
                    .interface(g.interface)
                    .map_or(Ipv4Addr::UNSPECIFIED, |f| f.ip());
                let cfg = MachineConfig {
                    vhid: g.carp.vhid,
                    advbase: g.carp.advbase,
                    advskew: g.carp.advskew,
                    own_ip,
                    preempt,
                };
                Group {
                    interface: g.interface.to_owned(),
                    own_ip,
                    auth: CarpAuth::new(g.carp.vhid, g.carp.password.as_bytes(), &g.addresses),
                    // Apart by VHID (unique on the box), not by the group's place in the
                    // file: a group moved up the list keeps counting above its old counters.
                    machine: Machine::new(cfg, counter.wrapping_add(u64::from(g.carp.vhid) << 32)),
                }
            })
            .collect();
        // A restart run of a BSD peer (see ReplayGuard) comes at the peer's advert interval,
        // well within any master-down time; a longer pause starts the run over.
        let run_gap = groups
            .iter()
            .map(|g| g.machine.master_down())
            .max()
            .unwrap_or(Duration::from_secs(3));
        CarpGroupSet {
            guards: vec![ReplayGuard::new(run_gap); groups.len()],
            groups,
            rejects: [0; Reject::ALL.len()],
            demotion: 0,
            maintenance: false,
            enabled: true,
            preempt,
        }
    }

    /// Applies a new config without disturbing what did not change (issue 10.11): a group whose
    /// interface, VHID, own address, VIPs, advbase and advskew are the same keeps its machine
    /// (state, timers, counter) and its replay guard, taking the new password if there is one,
    /// so a new description, a new password or a new VHID elsewhere causes no transition. A group that changed or went away stops here (a
    /// master bows out: `stopped`, indices into `self` as it was); the new set holds the new and
    /// changed groups started with the box's switches (demotion, maintenance, enable) carried
    /// over (`started`, indices into the new set). The caller performs `stopped` with the old
    /// set, then swaps in `set`, then performs `started`.
    pub fn reconfigure(&mut self, config: &Config, now: Instant) -> Reconfigured {
        let mut set = Self::with_counter_start(config, self.preempt, wire::initial_counter());
        set.demotion = self.demotion;
        set.maintenance = self.maintenance;
        set.enabled = self.enabled;
        set.rejects = self.rejects;
        let mut moved = vec![None; self.groups.len()];
        for (j, g) in set.groups.iter_mut().enumerate() {
            let same = self
                .groups
                .iter()
                .enumerate()
                .position(|(i, old)| moved[i].is_none() && same_group(old, g));
            if let Some(i) = same {
                g.machine = self.groups[i].machine.clone();
                set.guards[j] = self.guards[i].clone();
                // A new key: the peer's counter, accepted under the old one, goes (a counter
                // planted with a leaked key would otherwise outlive the key's change). The same
                // HMAC of one message over the same VIPs is the same key (up to SHA-1 collisions).
                if self.groups[i].auth.compute(0) != g.auth.compute(0) {
                    set.guards[j].forget_peer(g.vhid());
                }
                moved[i] = Some(j);
            }
        }
        // A group that restarts (a new skew, advbase or VIP list) keeps what its guard knows of
        // the peer when its key is the same: a fresh guard would take the first advert it hears,
        // a replay included. Its own counters start a new run.
        for (j, g) in set.groups.iter().enumerate() {
            if moved.contains(&Some(j)) {
                continue;
            }
            let old = self.groups.iter().position(|old| {
                old.interface == g.interface
                    && old.vhid() == g.vhid()
                    && old.auth.compute(0) == g.auth.compute(0)
            });
            if let Some(i) = old {
                set.guards[j] = self.guards[i].clone();
                set.guards[j].forget_own(g.vhid());
            }
        }
        let mut stopped = Vec::new();
        let gone: Vec<usize> = (0..moved.len()).filter(|&i| moved[i].is_none()).collect();
        for i in gone {
            self.step(i, now, Event::Stop, &mut stopped);
        }
        let mut started = Vec::new();
        for j in 0..set.groups.len() {
            if moved.contains(&Some(j)) {
                continue;
            }
            let mut outs = Vec::new();
            set.step(j, now, Event::Demotion(set.demotion), &mut outs);
            set.step(j, now, Event::Maintenance(set.maintenance), &mut outs);
            let start = if set.enabled {
                Event::Start
            } else {
                Event::Disable
            };
            set.step(j, now, start, &mut outs);
            started.extend(outs);
        }
        Reconfigured {
            set,
            moved,
            stopped,
            started,
        }
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The group of `vhid` on `interface`.
    pub fn find(&self, interface: &str, vhid: u8) -> Option<usize> {
        self.groups
            .iter()
            .position(|g| g.interface == interface && g.vhid() == vhid)
    }

    /// The source of the last advert group `group` accepted: its peer.
    pub fn peer(&self, group: usize) -> Option<Ipv4Addr> {
        let g = self.groups.get(group)?;
        self.guards.get(group)?.peer(g.vhid())
    }

    /// The authentication of `vhid` on `interface`: the lookup [`wire::check_advert`] takes.
    pub fn auth(&self, interface: &str, vhid: u8) -> Option<&CarpAuth> {
        self.find(interface, vhid).map(|i| &self.groups[i].auth)
    }

    /// Starts every group (INIT -> BACKUP), unless CARP is disabled.
    pub fn start(&mut self, now: Instant) -> Vec<GroupOutput> {
        self.all(now, Event::Start)
    }

    /// Stops every group: masters bow out and release.
    pub fn stop(&mut self, now: Instant) -> Vec<GroupOutput> {
        self.all(now, Event::Stop)
    }

    /// The earliest deadline of any group.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.groups
            .iter()
            .filter_map(|g| g.machine.next_deadline())
            .min()
    }

    /// Runs the timers that are due at `now`.
    pub fn poll(&mut self, now: Instant) -> Vec<GroupOutput> {
        let mut outs = Vec::new();
        for i in 0..self.groups.len() {
            if self.groups[i]
                .machine
                .next_deadline()
                .is_some_and(|t| t <= now)
            {
                self.step(i, now, Event::Timer, &mut outs);
            }
        }
        outs
    }

    /// A frame received on `interface`: checked ([`wire::check_advert`]), refused if it is our
    /// own (source address) or replayed ([`ReplayGuard`]), then given to its group's machine.
    /// A reject is counted under its name.
    pub fn receive(
        &mut self,
        interface: &str,
        frame: &[u8],
        now: Instant,
    ) -> Result<GroupOutput, Reject> {
        let r = self.receive_inner(interface, frame, now);
        if let Err(e) = r {
            self.rejects[e as usize] += 1;
        }
        r
    }

    fn receive_inner(
        &mut self,
        interface: &str,
        frame: &[u8],
        now: Instant,
    ) -> Result<GroupOutput, Reject> {
        let advert = wire::check_advert(frame, |vhid| self.auth(interface, vhid))?;
        let i = self
            .find(interface, advert.vhid)
            .ok_or(Reject::UnknownVhid)?;
        if advert.src_ip == self.groups[i].own_ip {
            return Err(Reject::Loop);
        }
        self.guards[i].check(advert.vhid, advert.src_ip, advert.counter, now)?;
        let mut outs = Vec::with_capacity(1);
        self.step(i, now, Event::Advert((&advert).into()), &mut outs);
        Ok(outs.pop().unwrap_or(GroupOutput {
            group: i,
            output: Output::default(),
        }))
    }

    /// The link of `interface` went down or came back (FreeBSD's `carp_linkstate`): while it is
    /// down its groups are INIT and hold nothing (a master on a dead link would hear no peer and
    /// stay master); when it is back they start again as BACKUP. Disabled groups stay disabled.
    pub fn set_link(&mut self, interface: &str, up: bool, now: Instant) -> Vec<GroupOutput> {
        let mut outs = Vec::new();
        if !self.enabled {
            return outs;
        }
        for i in 0..self.groups.len() {
            if self.groups[i].interface == interface {
                self.step(
                    i,
                    now,
                    if up { Event::Start } else { Event::Stop },
                    &mut outs,
                );
            }
        }
        outs
    }

    /// Sets the box-wide demotion (the sum of the caller's sources, e.g. [`DEMOTION_FACTOR`] per
    /// CARP interface with its link down, and while the state sync's bulk update runs).
    pub fn set_demotion(&mut self, demotion: u32, now: Instant) -> Vec<GroupOutput> {
        self.demotion = demotion;
        self.all(now, Event::Demotion(demotion))
    }

    /// Maintenance mode: advskew 254 on every VHID.
    pub fn set_maintenance(&mut self, on: bool, now: Instant) -> Vec<GroupOutput> {
        self.maintenance = on;
        self.all(now, Event::Maintenance(on))
    }

    /// `carp enable` / `carp disable` for every VHID.
    pub fn set_enabled(&mut self, on: bool, now: Instant) -> Vec<GroupOutput> {
        self.enabled = on;
        self.all(now, if on { Event::Enable } else { Event::Disable })
    }

    pub fn demotion(&self) -> u32 {
        self.demotion
    }

    pub fn maintenance(&self) -> bool {
        self.maintenance
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Writes the frame of an advert group `group` asked for into `buf`; returns its length
    /// ([`wire::FRAME_LEN`]).
    ///
    /// # Panics
    ///
    /// If `group` is out of range or `buf` is shorter than [`wire::FRAME_LEN`].
    pub fn build_advert(&self, group: usize, advert: &SendAdvert, buf: &mut [u8]) -> usize {
        let g = &self.groups[group];
        wire::build_advert(
            buf,
            &AdvertParams {
                src_ip: g.own_ip,
                advbase: advert.advbase,
                advskew: advert.advskew,
                demote: advert.demote,
                counter: advert.counter,
                auth: &g.auth,
            },
        )
    }

    /// Writes the gratuitous ARP announcing VIP `vip` of group `group` at the virtual MAC
    /// 00:00:5e:00:01:VHID (a broadcast request, FreeBSD's `arp_announce_ifaddr`); returns its
    /// length.
    ///
    /// # Panics
    ///
    /// If `group` or `vip` is out of range or `buf` is shorter than 60 bytes.
    pub fn gratuitous_arp(&self, group: usize, vip: usize, buf: &mut [u8]) -> usize {
        let g = &self.groups[group];
        emit_gratuitous_arp(buf, MacAddr::carp_virtual(g.vhid()), g.vips()[vip])
    }

    /// The reject counters by name, every reason listed.
    pub fn rejects(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Reject::ALL
            .iter()
            .map(move |&r| (r.name(), self.rejects[r as usize]))
    }

    /// One entry per VIP, for `tandemctl carp`.
    pub fn statuses(&self, now: Instant) -> Vec<VipStatus> {
        let mut v = Vec::new();
        for g in &self.groups {
            let m = &g.machine;
            for &vip in g.vips() {
                v.push(VipStatus {
                    interface: g.interface.clone(),
                    vhid: g.vhid(),
                    vip,
                    state: m.state(),
                    advbase: m.config().advbase,
                    advskew: m.effective_skew(),
                    demotion: m.demotion(),
                    last_reason: m.last_reason().to_owned(),
                    previous: m.previous_state(),
                    since: m.changed_at().map(|t| now.saturating_duration_since(t)),
                });
            }
        }
        v
    }

    /// The box's CARP status now.
    pub fn status(&self, now: Instant) -> Status {
        Status {
            vips: self.statuses(now),
            enabled: self.enabled,
            maintenance: self.maintenance,
            demotion: self.demotion,
        }
    }

    fn all(&mut self, now: Instant, event: Event) -> Vec<GroupOutput> {
        let mut outs = Vec::new();
        for i in 0..self.groups.len() {
            self.step(i, now, event, &mut outs);
        }
        outs
    }

    /// One event into group `i`; remembers the counters it sends (loop detection).
    fn step(&mut self, i: usize, now: Instant, event: Event, outs: &mut Vec<GroupOutput>) {
        let output = self.groups[i].machine.handle(now, event);
        for a in &output.actions {
            if let machine::Action::SendAdvert(s) = a {
                self.guards[i].note_sent(s.vhid, s.counter);
            }
        }
        if !output.is_empty() {
            outs.push(GroupOutput { group: i, output });
        }
    }
}

/// One VIP's CARP status (the control API maps it to its own shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipStatus {
    /// The config's interface name.
    pub interface: String,
    pub vhid: u8,
    pub vip: Ipv4Addr,
    pub state: State,
    pub advbase: u8,
    /// The skew it advertises (its own, or the maximum in maintenance).
    pub advskew: u8,
    /// The demotion it advertises.
    pub demotion: u32,
    /// Why the last transition happened, empty before the first.
    pub last_reason: String,
    /// The state before the last transition.
    pub previous: Option<State>,
    /// Time since the last transition.
    pub since: Option<Duration>,
}

/// The box's CARP status: every VIP, and the box-wide switches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub vips: Vec<VipStatus>,
    /// Whether CARP runs (every VHID `Disabled` when not).
    pub enabled: bool,
    /// Persistent maintenance mode.
    pub maintenance: bool,
    /// The box's demotion counter.
    pub demotion: u32,
}
