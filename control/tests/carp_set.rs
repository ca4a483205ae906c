//! The lab's two boxes as CarpGroupSets built from their configs, exchanging real advert frames:
//! election, statuses for `tandemctl carp`, reject counters, maintenance and disable.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use tandem_control::carp::machine::Action;
use tandem_control::carp::machine::State as CarpStatus;
use tandem_control::carp::wire::{Reject, FRAME_LEN};
use tandem_control::carp::{CarpGroupSet, GroupOutput};
use tandem_control::config::{load, Config};

fn lab(name: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts/lab-configs")
        .join(name);
    load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

const A: usize = 0;
const B: usize = 1;
const DELAY: Duration = Duration::from_millis(1);

/// Two boxes on the lab's two CARP segments.
struct Pair {
    t0: Instant,
    now: Instant,
    sets: [CarpGroupSet; 2],
    /// (delivery, to, interface, frame)
    wire: Vec<(Instant, usize, String, Vec<u8>)>,
    /// Every frame sent: (from, interface, frame).
    sent: Vec<(usize, String, Vec<u8>)>,
    log: Vec<String>,
    /// Adverts a box refuses are dropped instead of failing the test (a password's rollout).
    tolerate_rejects: bool,
}

impl Pair {
    fn new() -> Pair {
        let t0 = Instant::now();
        Pair {
            t0,
            now: t0,
            sets: [
                CarpGroupSet::with_counter_start(&lab("fw-a.toml"), true, 1 << 40),
                CarpGroupSet::with_counter_start(&lab("fw-b.toml"), true, 1 << 50),
            ],
            wire: Vec::new(),
            sent: Vec::new(),
            log: Vec::new(),
            tolerate_rejects: false,
        }
    }

    fn perform(&mut self, from: usize, outs: Vec<GroupOutput>) {
        for o in outs {
            let iface = self.sets[from].groups()[o.group].interface.clone();
            for a in &o.output.actions {
                if let Action::SendAdvert(s) = a {
                    let mut buf = vec![0u8; 2048];
                    let n = self.sets[from].build_advert(o.group, s, &mut buf);
                    assert_eq!(n, FRAME_LEN);
                    buf.truncate(n);
                    self.wire
                        .push((self.now + DELAY, 1 - from, iface.clone(), buf.clone()));
                    self.sent.push((from, iface.clone(), buf));
                }
            }
            for t in &o.output.transitions {
                self.log.push(format!("box{from} {}", t.display(&iface)));
            }
        }
    }

    fn run_until(&mut self, until: Duration) {
        let end = self.t0 + until;
        loop {
            let next = self
                .sets
                .iter()
                .filter_map(|s| s.next_deadline())
                .chain(self.wire.iter().map(|w| w.0))
                .min();
            let Some(next) = next.filter(|&t| t <= end) else {
                self.now = end;
                return;
            };
            self.now = self.now.max(next);
            let now = self.now;
            let due: Vec<_> = self.wire.iter().filter(|w| w.0 <= now).cloned().collect();
            self.wire.retain(|w| w.0 > now);
            for (_, to, iface, frame) in due {
                match self.sets[to].receive(&iface, &frame, now) {
                    Ok(out) => self.perform(to, vec![out]),
                    Err(_) if self.tolerate_rejects => {}
                    Err(e) => panic!("a good advert refused: {e:?}"),
                }
            }
            for i in 0..2 {
                let outs = self.sets[i].poll(now);
                self.perform(i, outs);
            }
        }
    }

    fn states(&self, i: usize) -> Vec<(String, u8, CarpStatus)> {
        self.sets[i]
            .statuses(self.now)
            .into_iter()
            .map(|v| (v.interface, v.vhid, v.state))
            .collect()
    }

    fn all(&self, i: usize, status: CarpStatus) -> bool {
        self.states(i).iter().all(|s| s.2 == status)
    }

    fn reject(&self, i: usize, name: &str) -> u64 {
        self.sets[i].rejects().find(|r| r.0 == name).unwrap().1
    }

    fn start(&mut self) {
        let now = self.now;
        for i in 0..2 {
            let outs = self.sets[i].start(now);
            self.perform(i, outs);
        }
        self.run_until(Duration::from_secs(10));
        assert!(self.all(A, CarpStatus::Master), "{:?}", self.log);
        assert!(self.all(B, CarpStatus::Backup), "{:?}", self.log);
    }
}

#[test]
fn groups_from_the_lab_config() {
    let set = CarpGroupSet::from_config(&lab("fw-a.toml"));
    let g: Vec<(String, u8, Ipv4Addr, Vec<Ipv4Addr>)> = set
        .groups()
        .iter()
        .map(|g| (g.interface.clone(), g.vhid(), g.own_ip, g.vips().to_vec()))
        .collect();
    assert_eq!(
        g,
        [
            (
                "wan".to_owned(),
                1,
                Ipv4Addr::new(172, 25, 46, 101),
                vec![Ipv4Addr::new(172, 25, 46, 100)]
            ),
            (
                "lan".to_owned(),
                2,
                Ipv4Addr::new(192, 168, 0, 11),
                vec![Ipv4Addr::new(192, 168, 0, 10)]
            ),
        ]
    );
    assert_eq!(set.find("lan", 2), Some(1));
    assert!(set.auth("lan", 1).is_none());
    assert!(set.auth("wan", 1).is_some());
    let st = set.statuses(Instant::now());
    assert_eq!(st.len(), 2);
    assert!(st
        .iter()
        .all(|v| v.state == CarpStatus::Init && v.last_reason.is_empty() && v.previous.is_none()));
    assert_eq!(set.next_deadline(), None);
    // Every reject reason has a counter from the start.
    assert_eq!(set.rejects().count(), Reject::ALL.len());
    assert!(set.rejects().all(|r| r.1 == 0));
}

#[test]
fn the_lab_pair_elects_a_and_reports_it() {
    let mut p = Pair::new();
    p.start();
    let st = p.sets[A].statuses(p.now);
    assert_eq!(st[0].vip, Ipv4Addr::new(172, 25, 46, 100));
    assert_eq!(st[0].last_reason, "master down");
    assert_eq!(st[0].previous, Some(CarpStatus::Backup));
    assert_eq!(
        st[0].since.map(|d| d.as_secs()),
        Some(7),
        "master at 3.0 s, now 10 s"
    );
    assert!(p
        .log
        .contains(&"box0 wan@1 BACKUP -> MASTER (master down)".to_owned()));
    let reply = p.sets[B].status(p.now);
    assert_eq!(
        (reply.enabled, reply.maintenance, reply.demotion),
        (true, false, 0)
    );
    assert_eq!(reply.vips[0].advskew, 1);
    // The control API's shape, as the handler maps it.
    let json = serde_json::to_value(tandem_control::handler::carp_reply(&reply)).unwrap();
    assert_eq!(json["vips"][0]["status"], "BACKUP");
    assert_eq!(json["vips"][1]["interface"], "lan");

    // A dies: B takes both VIPs after master down.
    p.sets[A].stop(p.now); // its bow-out frames are not delivered: a dead box sends nothing
    let died = p.now;
    p.wire.clear();
    p.run_until(Duration::from_secs(14));
    assert!(p.all(B, CarpStatus::Master), "{:?}", p.log);
    let since = p.sets[B].statuses(p.now)[0].since.unwrap().as_secs();
    assert!(p.now - died >= Duration::from_secs(3) && since <= 1);
}

#[test]
fn rejects_are_counted_by_name() {
    let mut p = Pair::new();
    p.start();
    let now = p.now;
    // A's first advert: B has taken it and newer ones since.
    let (_, iface, frame) = p.sent.iter().find(|s| s.0 == A).cloned().unwrap();
    assert_eq!(p.sets[B].receive(&iface, &frame, now), Err(Reject::Replay));
    assert_eq!(p.reject(B, "replay"), 1);
    // A hears its own advert (a switch loop): refused before it could make A yield.
    assert_eq!(p.sets[A].receive(&iface, &frame, now), Err(Reject::Loop));
    assert_eq!(p.reject(A, "loop"), 1);
    // The WAN advert arriving on the LAN: vhid 1 is not a LAN group.
    assert_eq!(
        p.sets[B].receive("lan", &frame, now),
        Err(Reject::UnknownVhid)
    );
    // Another password.
    let mut other = lab("fw-a.toml");
    for v in &mut other.virtual_ips {
        if let tandem_control::config::VipKind::Carp(c) = &mut v.kind {
            c.password = "wrong".into();
        }
    }
    let mut rogue = CarpGroupSet::with_counter_start(&other, true, u64::MAX / 2);
    let outs = rogue.start(now);
    assert!(outs.iter().all(|o| o.output.actions.is_empty()));
    let outs = rogue.poll(now + Duration::from_secs(4));
    let Action::SendAdvert(s) = outs[0].output.actions[0] else {
        panic!("{outs:?}")
    };
    let mut buf = [0u8; FRAME_LEN];
    rogue.build_advert(outs[0].group, &s, &mut buf);
    assert_eq!(p.sets[B].receive("wan", &buf, now), Err(Reject::BadAuth));
    // Garbage.
    assert_eq!(
        p.sets[B].receive("wan", &buf[..20], now),
        Err(Reject::BadIp)
    );
    let counts: Vec<(&str, u64)> = p.sets[B].rejects().filter(|r| r.1 > 0).collect();
    assert_eq!(
        counts,
        [
            ("bad_ip", 1),
            ("unknown_vhid", 1),
            ("bad_auth", 1),
            ("replay", 1)
        ]
    );
    // None of it moved B.
    assert!(p.all(B, CarpStatus::Backup));
}

#[test]
fn maintenance_disable_and_demotion_over_real_frames() {
    let mut p = Pair::new();
    p.start();
    let now = p.now;
    let outs = p.sets[A].set_maintenance(true, now);
    p.perform(A, outs);
    p.run_until(Duration::from_secs(12));
    assert!(p.all(B, CarpStatus::Master), "{:?}", p.log);
    assert!(p.all(A, CarpStatus::Backup));
    assert!(p.sets[A].status(p.now).maintenance);
    assert_eq!(p.sets[A].statuses(p.now)[0].advskew, 240);

    let now = p.now;
    let outs = p.sets[A].set_maintenance(false, now);
    p.perform(A, outs);
    p.run_until(Duration::from_secs(15));
    assert!(p.all(A, CarpStatus::Master), "{:?}", p.log);

    // Disable on A: B takes over within the wire delay (A's bow-out advert).
    let now = p.now;
    let outs = p.sets[A].set_enabled(false, now);
    p.perform(A, outs);
    p.run_until(Duration::from_secs(15) + 2 * DELAY);
    assert!(p.all(B, CarpStatus::Master), "{:?}", p.log);
    assert!(p.all(A, CarpStatus::Disabled));
    assert!(!p.sets[A].status(p.now).enabled);
    let now = p.now;
    let outs = p.sets[A].set_enabled(true, now);
    p.perform(A, outs);
    p.run_until(Duration::from_secs(18));
    assert!(p.all(A, CarpStatus::Master), "{:?}", p.log);

    // A link down on A (the caller's demotion of 240): B preempts at once.
    let now = p.now;
    let outs = p.sets[A].set_demotion(tandem_control::carp::DEMOTION_FACTOR, now);
    p.perform(A, outs);
    p.run_until(Duration::from_secs(18) + 2 * DELAY);
    assert!(p.all(B, CarpStatus::Master), "{:?}", p.log);
    assert_eq!(p.sets[A].status(p.now).demotion, 240);
    assert!(p.sets.iter().all(|s| s.rejects().all(|r| r.1 == 0)));
}

#[test]
fn demotion_sources_sum() {
    use tandem_control::carp::demotion::Demotion;
    let mut d = Demotion::default();
    assert_eq!(d.total(), 0);
    assert!(d.set_link("wan", false));
    assert!(!d.set_link("wan", false), "counted once per interface");
    assert!(d.set_sync_pending(true));
    assert_eq!(d.total(), 480);
    assert!(d.set_operator(5));
    assert!(d.set_send_errors(true));
    assert_eq!(d.total(), 725);
    assert_eq!(d.links_down().collect::<Vec<_>>(), ["wan"]);
    assert!(d.set_link("wan", true));
    assert!(d.set_sync_pending(false));
    assert!(d.set_send_errors(false));
    assert!(!d.set_send_errors(false));
    assert_eq!(d.total(), 5);
}

#[test]
fn gratuitous_arp_announces_the_vip_at_the_virtual_mac() {
    use tandem_dataplane::wire::arp::{ArpOperation, ArpPacket, ArpRepr};
    use tandem_dataplane::wire::MacAddr;
    let set = CarpGroupSet::from_config(&lab("fw-a.toml"));
    let mut buf = [0xaau8; 128];
    let n = set.gratuitous_arp(1, 0, &mut buf);
    assert_eq!(n, 60);
    assert_eq!(&buf[0..6], &[0xff; 6]);
    assert_eq!(MacAddr::from_bytes(&buf[6..12]), MacAddr::carp_virtual(2));
    let r = ArpRepr::parse(&ArpPacket::new_checked(&buf[14..n]).unwrap()).unwrap();
    assert_eq!(r.operation, ArpOperation::Request);
    assert_eq!(r.source_mac, MacAddr::carp_virtual(2));
    assert_eq!(
        (r.source_ip, r.target_ip),
        (
            Ipv4Addr::new(192, 168, 0, 10),
            Ipv4Addr::new(192, 168, 0, 10)
        )
    );
}

/// A's config with the LAN VIP's description changed and a new VHID 3 on the LAN (or, with
/// `skew`, VHID 2's advskew changed too).
fn a_edited(skew: Option<u8>) -> Config {
    use tandem_control::config::VipKind;
    let mut c = lab("fw-a.toml");
    let mut extra = None;
    for v in &mut c.virtual_ips {
        if let VipKind::Carp(carp) = &mut v.kind {
            if carp.vhid == 2 {
                v.description = "a new description".into();
                if let Some(s) = skew {
                    carp.advskew = s;
                }
                let mut new = v.clone();
                if let VipKind::Carp(n) = &mut new.kind {
                    n.vhid = 3;
                    n.advskew = 0;
                }
                new.address = "192.168.0.20/24".parse().unwrap();
                extra = Some(new);
            }
        }
    }
    c.virtual_ips.push(extra.expect("the lab has vhid 2"));
    c
}

#[test]
fn a_description_change_or_a_new_vhid_moves_no_running_group() {
    let mut p = Pair::new();
    p.start();
    let before = p.log.len();
    let now = p.now;
    let r = p.sets[A].reconfigure(&a_edited(None), now);
    assert!(r.stopped.is_empty(), "nothing stops: {:?}", r.stopped);
    assert_eq!(r.moved, [Some(0), Some(1)], "both groups kept in place");
    // Only the new group starts: INIT -> BACKUP, no advert, nothing else.
    assert_eq!(r.started.len(), 1, "{:?}", r.started);
    assert_eq!(r.started[0].group, 2);
    assert_eq!(r.started[0].output.transitions.len(), 1);
    p.sets[A] = r.set;
    p.perform(A, r.started);
    p.sets[A].groups().iter().take(2).for_each(|g| {
        assert_eq!(
            g.machine.state(),
            tandem_control::carp::machine::State::Master
        );
    });
    // B has no VHID 3: A's adverts for it are counted as unknown there, which `run_until`
    // would take for a bad advert; let B know VHID 3 too (a config applied on both boxes).
    let r = p.sets[B].reconfigure(
        &{
            let mut c = a_edited(None);
            c.system = lab("fw-b.toml").system;
            c.interfaces = lab("fw-b.toml").interfaces;
            for v in &mut c.virtual_ips {
                if let tandem_control::config::VipKind::Carp(carp) = &mut v.kind {
                    carp.advskew = 1;
                }
            }
            c
        },
        now,
    );
    assert!(r.stopped.is_empty());
    assert_eq!(r.moved, [Some(0), Some(1)]);
    p.sets[B] = r.set;
    p.perform(B, r.started);
    p.run_until(Duration::from_secs(20));
    let moved: Vec<&String> = p.log[before..]
        .iter()
        .filter(|l| !l.contains("@3 "))
        .collect();
    assert!(moved.is_empty(), "kept groups moved: {moved:?}");
    assert_eq!(
        p.states(A),
        [
            ("wan".into(), 1, CarpStatus::Master),
            ("lan".into(), 2, CarpStatus::Master),
            ("lan".into(), 3, CarpStatus::Master)
        ]
    );
    assert!(p.all(B, CarpStatus::Backup), "{:?}", p.log);
}

#[test]
fn a_changed_group_restarts_alone() {
    let mut p = Pair::new();
    p.start();
    let now = p.now;
    let r = p.sets[A].reconfigure(&a_edited(Some(7)), now);
    // lan@2 changed: it bows out (an advert with skew 255, then releases); wan@1 is untouched.
    assert_eq!(r.moved, [Some(0), None]);
    assert_eq!(r.stopped.len(), 1);
    assert_eq!(r.stopped[0].group, 1);
    assert!(matches!(
        r.stopped[0].output.actions[..],
        [Action::SendAdvert(s), Action::BecomeBackup] if s.advskew == 255
    ));
    assert!(r.started.iter().all(|o| o.group != 0));
    let wan = &r.set.groups()[0];
    assert_eq!(
        (wan.interface.as_str(), wan.machine.state()),
        ("wan", tandem_control::carp::machine::State::Master)
    );
}

/// A group that restarts on a new skew keeps what its replay guard knows of the peer (a fresh
/// guard would take the first advert it hears, a replay included; a review).
#[test]
fn a_restarted_group_keeps_its_guards_memory_of_the_peer() {
    use tandem_control::config::VipKind;
    let mut p = Pair::new();
    p.start();
    let lan = p.sets[B].find("lan", 2).unwrap();
    let a_lan = p.sets[B].peer(lan).expect("B heard A on lan");
    let mut c = lab("fw-b.toml");
    for v in &mut c.virtual_ips {
        if let VipKind::Carp(carp) = &mut v.kind {
            if carp.vhid == 2 {
                carp.advskew = 50;
            }
        }
    }
    let r = p.sets[B].reconfigure(&c, p.now);
    let lan_new = r.set.find("lan", 2).unwrap();
    assert!(
        r.started.iter().any(|o| o.group == lan_new),
        "lan@2 restarted"
    );
    assert_eq!(r.set.peer(lan_new), Some(a_lan));
}

/// A new password on both boxes (the primary's apply, then config sync's push 1.5 s later)
/// keeps every group as it was: a new user's review measured a 3 s outage when the changed group restarted,
/// the master bowing out to a backup that then restarted on the push and whose bow-out the
/// primary refused (signed with the old password), both boxes BACKUP until master down.
#[test]
fn a_new_password_moves_no_vip() {
    use tandem_control::config::VipKind;
    let mut p = Pair::new();
    p.start();
    let new_password = |name: &str| {
        let mut c = lab(name);
        for v in &mut c.virtual_ips {
            if let VipKind::Carp(carp) = &mut v.kind {
                if carp.vhid == 2 {
                    carp.password = "a-new-lan-password".into();
                }
            }
        }
        c
    };
    let log_len = p.log.len();
    // A applies first; config sync's push reaches B 1.5 s later (a slow one: milliseconds in
    // the lab), while B refuses A's adverts signed with the new password.
    p.tolerate_rejects = true;
    for (i, file) in [(A, "fw-a.toml"), (B, "fw-b.toml")] {
        if i == B {
            let until = p.now - p.t0 + Duration::from_millis(1500);
            p.run_until(until);
            assert!(p.reject(B, "bad_auth") >= 1, "the window was not exercised");
            p.wire.clear();
        }
        let now = p.now;
        // (B, the backup, has heard A on both groups; a master hears no adverts.)
        let heard = i == B;
        assert_eq!(
            p.sets[i].peer(0).is_some() && p.sets[i].peer(1).is_some(),
            heard
        );
        let r = p.sets[i].reconfigure(&new_password(file), now);
        assert_eq!(r.moved, [Some(0), Some(1)], "every group kept");
        assert!(r.stopped.is_empty() && r.started.is_empty());
        p.sets[i] = r.set;
        // The changed group forgot its peer's counter (what the old key vouched for counts for
        // nothing); the other group kept it.
        assert!(p.sets[i].peer(1).is_none(), "lan@2's replay record kept");
        assert_eq!(
            p.sets[i].peer(0).is_some(),
            heard,
            "wan@1's replay record lost"
        );
    }
    // Both on the new password: no advert is refused any more.
    p.tolerate_rejects = false;
    let until = p.now - p.t0 + Duration::from_secs(10);
    p.run_until(until);
    assert_eq!(p.log[log_len..], [] as [String; 0], "no transition");
    assert!(p.all(A, CarpStatus::Master) && p.all(B, CarpStatus::Backup));
    // The adverts now carry the new password: a set with the old one refuses them.
    let (_, iface, frame) = p
        .sent
        .iter()
        .rev()
        .find(|s| s.0 == A && s.1 == "lan")
        .cloned()
        .unwrap();
    let mut old = CarpGroupSet::with_counter_start(&lab("fw-b.toml"), true, 1);
    assert_eq!(old.receive(&iface, &frame, p.now), Err(Reject::BadAuth));
}
