//! The per-VHID CARP state machine: pure, no I/O, time passed in.
//!
//! States INIT, BACKUP, MASTER and DISABLED (pfSense's "Temporarily Disable CARP"). The caller
//! feeds [`Event`]s with the current [`Instant`], performs the returned [`Action`]s and logs the
//! returned [`Transition`]s ("wan@1 BACKUP -> MASTER (master down)"). It calls
//! [`Machine::handle`] with [`Event::Timer`] at [`Machine::next_deadline`].
//!
//! # Timing
//!
//! The effective skew is `min(advskew + demotion, 240)`, FreeBSD's `DEMOTE_ADVSKEW` with the
//! box-wide `net.inet.carp.demotion`; maintenance mode makes advskew 254 (pfSense), which the
//! clamp sends as 240, as FreeBSD does.
//!
//! - advbase >= 1 (FreeBSD): interval = advbase + skew/256 s; master down = 3 x advbase +
//!   skew/256 s (`carp_send_ad_locked`, `carp_setrun`).
//! - advbase 0, tandem's fast mode (OpenBSD accepts advbase 0): interval = skew/256 s; master
//!   down = 3 x interval. OpenBSD's formula there, 3 x 0 + skew/256, is one interval of the
//!   backup's own skew: barely longer than the master's interval, so a single advert lost or
//!   late by a few milliseconds would start a second master. Three intervals tolerate two lost
//!   adverts, as 3 x advbase does in the normal mode and 3 x Advert_Int does in VRRP; with the
//!   backup's larger skew it is also always more than three of the master's intervals.
//!
//! The skew inside the master-down time is the effective one (FreeBSD uses the configured
//! one): a demoted backup also waits longer before claiming.
//!
//! # Election (FreeBSD `carp_input_c`, OpenBSD `carp_proto_input_c`)
//!
//! With `i` the advert interval of (advbase, skew) and `d` the demote byte:
//!
//! - MASTER yields when `d_peer < d_ours`, or when `i_peer <= i_ours` and `d_peer <= d_ours`
//!   (both sources: the master yields on an equal interval too, `timevalcmp(...,==)`). tandem
//!   adds one tie-break: on an equal interval and equal demote the master with the lower IP
//!   address stays. Two FreeBSD masters both yield on a tie and race again on their timers; with
//!   the tie-break one exchange settles it, and against a BSD peer (which always yields) it can
//!   only leave one master, never two.
//! - BACKUP takes over a master with a higher demote byte (OpenBSD, regardless of preempt);
//!   with preempt (pfSense sets `net.inet.carp.preempt=1`) a master strictly slower than us
//!   (FreeBSD `timevalcmp(&sc_tv, &ch_tv, <)`); a master whose interval exceeds our master-down
//!   time ("master will time out"); otherwise it re-arms master down.
//!
//! Once both hear each other, two masters last at most one interval of the faster one plus the
//! delivery delay: the slower one yields on the faster one's next advert.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::wire::Advert;

/// FreeBSD's `CARP_MAXSKEW`: the largest effective skew.
pub const MAX_SKEW: u8 = 240;
/// The advskew of maintenance mode (pfSense's persistent CARP maintenance mode).
pub const MAINTENANCE_SKEW: u8 = 254;
/// advbase and advskew of the advert a master sends when it bows out (disabled or stopping), as
/// BSD carp does when its interface goes down. A BSD backup sees a slower master (preempt) or
/// one that "will time out" and takes over at once instead of after master down; a tandem backup
/// takes over on it whatever its preempt setting ("master bowed out"), and a master ignores it.
pub const BOW_OUT: u8 = 255;

/// The advert interval of (advbase, advskew): advbase + advskew/256 s, in whole microseconds
/// as BSD computes it. Never zero: (0, 0) gives 1/256 s, as OpenBSD's `carp_send_ad`.
pub fn advert_interval(advbase: u8, advskew: u8) -> Duration {
    let us = u64::from(advbase) * 1_000_000 + u64::from(advskew) * 1_000_000 / 256;
    Duration::from_micros(us.max(1_000_000 / 256))
}

/// How long a backup waits for an advert before it becomes master: 3 x advbase + advskew/256 s,
/// or 3 x the interval in the fast mode (advbase 0). See the module documentation.
pub fn master_down(advbase: u8, advskew: u8) -> Duration {
    if advbase == 0 {
        3 * advert_interval(0, advskew)
    } else {
        Duration::from_micros(
            3 * u64::from(advbase) * 1_000_000 + u64::from(advskew) * 1_000_000 / 256,
        )
    }
}

/// Whether an advert is a master's bow-out ([`BOW_OUT`] / [`BOW_OUT`]).
fn is_bow_out(p: &PeerAdvert) -> bool {
    p.advbase == BOW_OUT && p.advskew == BOW_OUT
}

/// `min(advskew + demotion, 240)` (FreeBSD's `DEMOTE_ADVSKEW`; demotion is never negative here).
pub fn effective_skew(advskew: u8, demotion: u32) -> u8 {
    let s = u32::from(advskew).saturating_add(demotion);
    s.min(u32::from(MAX_SKEW)) as u8
}

/// A VHID's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or stopped.
    Init,
    /// Listening; takes over when the master goes quiet.
    Backup,
    /// Holds the VIPs and advertises.
    Master,
    /// Administratively off: no adverts, VIPs released.
    Disabled,
}

impl State {
    /// The name `tandemctl carp` prints: `INIT`, `BACKUP`, `MASTER`, `DISABLED`.
    pub const fn name(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Disabled => "DISABLED",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A VHID's fixed parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineConfig {
    pub vhid: u8,
    /// Seconds, 0 for the fast mode.
    pub advbase: u8,
    /// The configured skew (1..=254 when advbase is 0).
    pub advskew: u8,
    /// The interface's own address: the advert source and the tie-break.
    pub own_ip: Ipv4Addr,
    /// Take over from a slower master (pfSense: on).
    pub preempt: bool,
}

/// What the machine needs of an authenticated, replay-checked advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAdvert {
    pub src: Ipv4Addr,
    pub advbase: u8,
    pub advskew: u8,
    pub demote: u8,
    pub counter: u64,
}

impl From<&Advert> for PeerAdvert {
    fn from(a: &Advert) -> PeerAdvert {
        PeerAdvert {
            src: a.src_ip,
            advbase: a.advbase,
            advskew: a.advskew,
            demote: a.demote,
            counter: a.counter,
        }
    }
}

/// An input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The daemon is up: INIT -> BACKUP.
    Start,
    /// A deadline ([`Machine::next_deadline`]) may have passed: advert due or master down.
    Timer,
    /// A peer's advert for this VHID.
    Advert(PeerAdvert),
    /// The box-wide demotion changed (sum of the caller's sources: link down, sync not ready,
    /// send errors, operator).
    Demotion(u32),
    /// Maintenance mode on or off (advskew 254).
    Maintenance(bool),
    /// `tandemctl carp enable`: DISABLED -> INIT -> BACKUP.
    Enable,
    /// `tandemctl carp disable`: release the VIPs, stop advertising.
    Disable,
    /// The daemon is stopping: a master bows out, then INIT.
    Stop,
}

/// An advert to send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendAdvert {
    pub vhid: u8,
    pub advbase: u8,
    /// The effective skew (or [`BOW_OUT`]).
    pub advskew: u8,
    pub demote: u8,
    pub counter: u64,
}

/// An output for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Build and send this advert ([`super::wire::build_advert`]).
    SendAdvert(SendAdvert),
    /// Take the VIPs: answer ARP for them with the virtual MAC, accept their traffic, send
    /// gratuitous ARPs now and a few more times.
    BecomeMaster,
    /// Release the VIPs now. Emitted on every exit from MASTER (to BACKUP, DISABLED or INIT).
    BecomeBackup,
}

/// A state change, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub vhid: u8,
    pub from: State,
    pub to: State,
    pub reason: &'static str,
}

impl Transition {
    /// The log line: "wan@1 BACKUP -> MASTER (master down)".
    pub fn display<'a>(&'a self, interface: &'a str) -> impl fmt::Display + 'a {
        struct D<'a>(&'a Transition, &'a str);
        impl fmt::Display for D<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let t = self.0;
                write!(
                    f,
                    "{}@{} {} -> {} ({})",
                    self.1, t.vhid, t.from, t.to, t.reason
                )
            }
        }
        D(self, interface)
    }
}

/// What one event produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// In the order to perform them.
    pub actions: Vec<Action>,
    /// In the order they happened.
    pub transitions: Vec<Transition>,
}

impl Output {
    /// Whether nothing happened.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.transitions.is_empty()
    }
}

/// One VHID's state machine.
#[derive(Debug, Clone)]
pub struct Machine {
    cfg: MachineConfig,
    state: State,
    demotion: u32,
    maintenance: bool,
    counter: u64,
    advert_at: Option<Instant>,
    master_down_at: Option<Instant>,
    last_reason: &'static str,
    previous: Option<State>,
    changed_at: Option<Instant>,
}

impl Machine {
    /// A machine in INIT whose first advert carries `counter_start`
    /// ([`super::wire::initial_counter`]).
    pub fn new(cfg: MachineConfig, counter_start: u64) -> Machine {
        Machine {
            cfg,
            state: State::Init,
            demotion: 0,
            maintenance: false,
            counter: counter_start,
            advert_at: None,
            master_down_at: None,
            last_reason: "",
            previous: None,
            changed_at: None,
        }
    }

    pub fn config(&self) -> &MachineConfig {
        &self.cfg
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The reason of the last transition; empty before the first.
    pub fn last_reason(&self) -> &'static str {
        self.last_reason
    }

    /// The state before the last transition.
    pub fn previous_state(&self) -> Option<State> {
        self.previous
    }

    /// When the last transition happened.
    pub fn changed_at(&self) -> Option<Instant> {
        self.changed_at
    }

    /// The box-wide demotion last set.
    pub fn demotion(&self) -> u32 {
        self.demotion
    }

    pub fn maintenance(&self) -> bool {
        self.maintenance
    }

    /// The skew in adverts: [`effective_skew`] of the configured (or maintenance) skew.
    pub fn effective_skew(&self) -> u8 {
        let base = if self.maintenance {
            MAINTENANCE_SKEW
        } else {
            self.cfg.advskew
        };
        effective_skew(base, self.demotion)
    }

    /// The demote byte we send: the demotion, saturated at 255 (0 when not demoted, as FreeBSD).
    pub fn demote_byte(&self) -> u8 {
        self.demotion.min(255) as u8
    }

    /// Our advert interval now.
    pub fn interval(&self) -> Duration {
        advert_interval(self.cfg.advbase, self.effective_skew())
    }

    /// Our master-down time now.
    pub fn master_down(&self) -> Duration {
        master_down(self.cfg.advbase, self.effective_skew())
    }

    /// When the caller must next send [`Event::Timer`]; `None` when nothing is armed.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Master => self.advert_at,
            State::Backup => self.master_down_at,
            State::Init | State::Disabled => None,
        }
    }

    /// Handles one event at `now`.
    pub fn handle(&mut self, now: Instant, event: Event) -> Output {
        let mut out = Output::default();
        match (self.state, event) {
            (State::Init, Event::Start) => self.enter_backup(now, "started", &mut out),
            (_, Event::Start) => {}

            (State::Master, Event::Timer) => {
                if self.advert_at.is_some_and(|t| t <= now) {
                    self.send_advert(now, &mut out);
                }
            }
            (State::Backup, Event::Timer) => {
                if self.master_down_at.is_some_and(|t| t <= now) {
                    self.enter_master(now, "master down", &mut out);
                }
            }
            (State::Init | State::Disabled, Event::Timer) => {}

            (State::Master, Event::Advert(p)) => self.master_hears(now, &p, &mut out),
            (State::Backup, Event::Advert(p)) => self.backup_hears(now, &p, &mut out),
            (State::Init | State::Disabled, Event::Advert(_)) => {}

            (_, Event::Demotion(d)) => {
                if d != self.demotion {
                    self.demotion = d;
                    self.skew_changed(now, &mut out);
                }
            }
            (_, Event::Maintenance(on)) => {
                if on != self.maintenance {
                    self.maintenance = on;
                    self.skew_changed(now, &mut out);
                }
            }

            (State::Disabled, Event::Enable) => {
                self.transition(now, State::Init, "enabled", &mut out);
                self.enter_backup(now, "started", &mut out);
            }
            (_, Event::Enable) => {}
            (State::Disabled, Event::Disable) => {}
            (_, Event::Disable) => self.leave(now, State::Disabled, "disabled", &mut out),
            (State::Init, Event::Stop) => {}
            (_, Event::Stop) => self.leave(now, State::Init, "stopped", &mut out),
        }
        out
    }

    fn transition(&mut self, now: Instant, to: State, reason: &'static str, out: &mut Output) {
        out.transitions.push(Transition {
            vhid: self.cfg.vhid,
            from: self.state,
            to,
            reason,
        });
        self.previous = Some(self.state);
        self.state = to;
        self.last_reason = reason;
        self.changed_at = Some(now);
    }

    fn enter_backup(&mut self, now: Instant, reason: &'static str, out: &mut Output) {
        if self.state == State::Master {
            out.actions.push(Action::BecomeBackup);
        }
        self.transition(now, State::Backup, reason, out);
        self.advert_at = None;
        self.master_down_at = Some(now + self.master_down());
    }

    fn enter_master(&mut self, now: Instant, reason: &'static str, out: &mut Output) {
        self.transition(now, State::Master, reason, out);
        self.master_down_at = None;
        // The advert first, so that another master yields as early as possible.
        self.send_advert(now, out);
        out.actions.push(Action::BecomeMaster);
    }

    /// To DISABLED or INIT: a master bows out and releases; every timer stops.
    fn leave(&mut self, now: Instant, to: State, reason: &'static str, out: &mut Output) {
        if self.state == State::Master {
            let counter = self.next_counter();
            out.actions.push(Action::SendAdvert(SendAdvert {
                vhid: self.cfg.vhid,
                advbase: BOW_OUT,
                advskew: BOW_OUT,
                demote: self.demote_byte(),
                counter,
            }));
            out.actions.push(Action::BecomeBackup);
        }
        self.transition(now, to, reason, out);
        self.advert_at = None;
        self.master_down_at = None;
    }

    fn next_counter(&mut self) -> u64 {
        let c = self.counter;
        self.counter = self.counter.wrapping_add(super::wire::COUNTER_STEP);
        c
    }

    fn send_advert(&mut self, now: Instant, out: &mut Output) {
        let counter = self.next_counter();
        out.actions.push(Action::SendAdvert(SendAdvert {
            vhid: self.cfg.vhid,
            advbase: self.cfg.advbase,
            advskew: self.effective_skew(),
            demote: self.demote_byte(),
            counter,
        }));
        self.advert_at = Some(now + self.interval());
    }

    /// A master advertises its new skew at once (FreeBSD's `carp_demote_adj` sends every
    /// master's advert), so a faster backup preempts now, not one interval later. A backup's
    /// new master-down time applies from the next advert it hears.
    fn skew_changed(&mut self, now: Instant, out: &mut Output) {
        if self.state == State::Master {
            self.send_advert(now, out);
        }
    }

    fn master_hears(&mut self, now: Instant, p: &PeerAdvert, out: &mut Output) {
        let ours = self.interval();
        let theirs = advert_interval(p.advbase, p.advskew);
        let our_demote = self.demote_byte();
        if is_bow_out(p) {
            // The other master is leaving: whatever its demote byte, stay.
            return;
        }
        if p.demote < our_demote {
            self.enter_backup(now, "less demoted master advert received", out);
        } else if theirs < ours && p.demote == our_demote {
            self.enter_backup(now, "more frequent advert received", out);
        } else if theirs == ours && p.demote == our_demote {
            if self.cfg.own_ip < p.src {
                // The tie-break: keep mastership; the peer yields on our next advert.
                return;
            }
            self.enter_backup(now, "equally frequent advert from a lower address", out);
        }
    }

    fn backup_hears(&mut self, now: Instant, p: &PeerAdvert, out: &mut Output) {
        let ours = self.interval();
        let theirs = advert_interval(p.advbase, p.advskew);
        let our_demote = self.demote_byte();
        if is_bow_out(p) {
            self.enter_master(now, "master bowed out", out);
        } else if p.demote > our_demote {
            self.enter_master(now, "preempting a demoted master", out);
        } else if self.cfg.preempt && ours < theirs && p.demote == our_demote {
            self.enter_master(now, "preempting a slower master", out);
        } else if theirs > self.master_down() {
            self.enter_master(now, "master will time out", out);
        } else {
            self.master_down_at = Some(now + self.master_down());
        }
    }
}
