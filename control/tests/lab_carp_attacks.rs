//! Attacks on CARP from the LAN, performed in the lab against the seed's two boxes (issue 10,
//! items 1, 4 and 11): each test does what an attacker (or an operator) does and asserts that
//! no VHID moves. The attacker is `carp_attacker.py` (Python's standard library, AF_PACKET) in
//! the switch's namespace, sending on the switch port that faces one box.
//!
//! Needs root. Lab tests take the machine-wide lab lock: one at a time.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, config, is, vip_statuses, Fw, Pinger, LONG, POLL};
use serde_json::Value;
use tandem_testlab::{require_root, wait_until, Lab, Node, Proc};

/// A's address on the LAN, the source of its adverts.
const A_LAN: &str = "192.168.0.11";
/// B's address on the LAN, the source of its adverts.
const B_LAN: &str = "192.168.0.12";
/// Lower than both boxes' LAN addresses: a replayed advert from it wins the tie-break.
const LOWER: &str = "192.168.0.5";

fn attacker() -> String {
    common::workspace()
        .join("control/tests/carp_attacker.py")
        .display()
        .to_string()
}

/// A ping from the client to the server every 50 ms, once it gets through.
fn pinger(lab: &Lab) -> Pinger {
    let p = Pinger::start(lab, "0.05");
    assert!(
        wait_until(LONG, POLL, || p.answered().len() >= 5),
        "no ping through A"
    );
    p
}

/// Watches `proc` (an attack) until it exits, checking at every poll that no box moved: A
/// MASTER of everything, B BACKUP of everything. Returns the attack's result line.
fn hold_during(mut proc: Proc, a: &Fw, b: &Fw, within: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (sa, sb) = (vip_statuses(a), vip_statuses(b));
        assert!(
            sa.iter().all(|s| s.2 == "MASTER") && sb.iter().all(|s| s.2 == "BACKUP"),
            "a VHID moved {:?} into the attack: A {sa:?}, B {sb:?}; attacker: {}",
            start.elapsed(),
            proc.log()
        );
        if proc.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            start.elapsed() < within,
            "the attack did not end: {}",
            proc.log()
        );
        std::thread::sleep(POLL);
    }
    let log = proc.log();
    let line = log.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("attacker result ({e}): {log}"))
}

/// Issue 10.1: one of the master's own adverts, captured and resent after the old replay
/// guard's 3 s window from a lower address (and with advbase 0, which the HMAC does not cover),
/// every second for 10 s. Before the fix A yielded to it and the LAN VIP had no owner until
/// B's master down.
#[test]
fn a_replayed_advert_does_not_move_the_master() {
    require_root();
    let lab = Lab::up("carpr").expect("lab up");
    let (a, b) = cluster(&lab);
    let file = lab.log_dir().join("a-advert.hex").display().to_string();
    let out = lab.run(
        Node::Switch,
        &[
            "python3",
            &attacker(),
            "capture",
            "fwa-lan",
            A_LAN,
            &file,
            "10",
        ],
    );
    assert!(
        out.contains("\"captured\": true"),
        "no advert captured: {out}"
    );
    // Past the old guard's window (3 s), with the captured counter now well behind A's.
    std::thread::sleep(Duration::from_secs(4));
    let pinger = pinger(&lab);
    let (ta, tb) = (a.counter("carp_transitions"), b.counter("carp_transitions"));
    let loops = a.counter("carp_rejected_loop");
    let replay = lab
        .spawn(
            Node::Switch,
            &[
                "python3",
                &attacker(),
                "replay",
                "fwa-lan",
                &file,
                LOWER,
                "10",
                "1",
            ],
        )
        .unwrap();
    let result = hold_during(replay, &a, &b, Duration::from_secs(30));
    assert_eq!(result["sent"], 10, "{result}");
    // Every replay reached A and was refused as its own advert.
    assert!(
        wait_until(LONG, POLL, || a.counter("carp_rejected_loop") >= loops + 10),
        "A refused {} of the 10 replays as a loop",
        a.counter("carp_rejected_loop") - loops
    );
    assert_eq!(a.counter("carp_transitions"), ta, "A moved");
    assert_eq!(b.counter("carp_transitions"), tb, "B moved");
    let n = pinger.answered().len();
    assert!(wait_until(LONG, POLL, || pinger.answered().len() >= n + 5));
    assert_eq!(pinger.longest_gap(), 0, "a ping was lost during the replay");
}

/// A review's attack: a run of the backup's adverts, recorded while it was master (A in
/// maintenance for a few seconds), played back in order from its own address once A is master
/// again, with advbase 0 and advskew 1 (more frequent than A's), three times. Before the fix the
/// guard took each playback for a rebooted BSD peer after three adverts, A yielded, and the LAN
/// VIP had no owner for ~2.5 s, each time.
#[test]
fn a_recorded_run_of_the_backups_adverts_does_not_move_the_master() {
    require_root();
    let lab = Lab::up("carpru").expect("lab up");
    let (a, b) = cluster(&lab);
    let file = lab.log_dir().join("b-run.hex").display().to_string();
    let capture = lab
        .spawn(
            Node::Switch,
            &[
                "python3",
                &attacker(),
                "capture-run",
                "fwb-lan",
                B_LAN,
                &file,
                "5",
                "30",
            ],
        )
        .unwrap();
    let (ok, out) = a.ctl(&["maintenance", "on"]);
    assert!(ok, "{out}");
    let mut capture = capture;
    assert!(
        wait_until(Duration::from_secs(40), POLL, || capture
            .try_wait()
            .unwrap()
            .is_some()),
        "the capture did not end: {}",
        capture.log()
    );
    assert!(
        capture.log().contains("\"captured\": 5"),
        "B's adverts not captured: {}",
        capture.log()
    );
    let (ok, out) = a.ctl(&["maintenance", "off"]);
    assert!(ok, "{out}");
    assert!(
        wait_until(LONG, POLL, || {
            vip_statuses(&a).iter().all(|s| s.2 == "MASTER")
                && vip_statuses(&b).iter().all(|s| s.2 == "BACKUP")
        }),
        "A did not take the VIPs back: A {:?}, B {:?}",
        vip_statuses(&a),
        vip_statuses(&b)
    );
    let pinger = pinger(&lab);
    let (ta, tb) = (a.counter("carp_transitions"), b.counter("carp_transitions"));
    let replays = a.counter("carp_rejected_replay");
    let playback = lab
        .spawn(
            Node::Switch,
            &[
                "python3",
                &attacker(),
                "replay-run",
                "fwa-lan",
                &file,
                "0",
                "1",
                "3",
                "0.5",
            ],
        )
        .unwrap();
    let result = hold_during(playback, &a, &b, Duration::from_secs(40));
    assert_eq!(result["sent"], 15, "{result}");
    assert!(
        wait_until(LONG, POLL, || a.counter("carp_rejected_replay")
            >= replays + 15),
        "A refused {} of the 15 played-back adverts as replays",
        a.counter("carp_rejected_replay") - replays
    );
    assert_eq!(a.counter("carp_transitions"), ta, "A moved");
    assert_eq!(b.counter("carp_transitions"), tb, "B moved");
    let n = pinger.answered().len();
    assert!(wait_until(LONG, POLL, || pinger.answered().len() >= n + 5));
    assert_eq!(
        pinger.longest_gap(),
        0,
        "a ping was lost during the playback"
    );
}

/// Issue 10.4: 20k junk CARP frames per second for 10 s on the LAN into each box (on the switch
/// ports facing them). Before the fix the shared slow-path queue filled, B missed A's adverts
/// and went MASTER beside A.
#[test]
fn a_carp_flood_moves_no_vhid() {
    require_root();
    let lab = Lab::up("carpf").expect("lab up");
    let (a, b) = cluster(&lab);
    let (ta, tb) = (a.counter("carp_transitions"), b.counter("carp_transitions"));
    let flood = |port: &str, seed: &str| {
        lab.spawn(
            Node::Switch,
            &["python3", &attacker(), "junk", port, "20000", "10", seed],
        )
        .unwrap()
    };
    let to_b = flood("fwb-lan", "1");
    let to_a = flood("fwa-lan", "2");
    let rb = hold_during(to_b, &a, &b, Duration::from_secs(60));
    let ra = hold_during(to_a, &a, &b, Duration::from_secs(60));
    for (who, r) in [("B", &rb), ("A", &ra)] {
        println!("flood into {who}: {r}");
        assert_eq!(r["sent"], 200_000, "flood into {who}: {r}");
    }
    // The junk reached the boxes and stayed in their workers, counted.
    for (who, fw) in [("A", &a), ("B", &b)] {
        let dropped: u64 = ["drop_carp_malformed", "drop_carp_vhid", "drop_carp_budget"]
            .iter()
            .map(|c| fw.counter(c))
            .sum();
        println!(
            "{who}: dropped in the worker {dropped}, to control {}, rejected bad_checksum {} bad_auth {}",
            fw.counter("to_control"),
            fw.counter("carp_rejected_bad_checksum"),
            fw.counter("carp_rejected_bad_auth")
        );
        assert!(
            dropped >= 100_000,
            "{who} dropped only {dropped} in the worker"
        );
    }
    // A few more of A's adverts after the flood: still nothing moved.
    let heard = b.counter("carp_adverts_received");
    assert!(wait_until(LONG, POLL, || b
        .counter("carp_adverts_received")
        >= heard + 2));
    assert_eq!(a.counter("carp_transitions"), ta, "A moved");
    assert_eq!(b.counter("carp_transitions"), tb, "B moved");
    assert!(is(&a, "MASTER") && is(&b, "BACKUP"));
}

/// The VIPs of VHIDs 1 and 2 (the seed's): (interface, vhid, status, last reason, previous
/// status, seconds since the last transition).
fn seed_vips(fw: &Fw) -> Vec<(String, u64, String, String, String, u64)> {
    let carp = fw.json(&["carp"]);
    carp["vips"]
        .as_array()
        .unwrap_or_else(|| panic!("carp --json has no vips: {carp}"))
        .iter()
        .filter(|v| matches!(v["vhid"].as_u64(), Some(1 | 2)))
        .map(|v| {
            (
                v["interface"].as_str().unwrap_or_default().to_string(),
                v["vhid"].as_u64().unwrap_or_default(),
                v["status"].as_str().unwrap_or_default().to_string(),
                v["last_transition_reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                v["previous_status"].to_string(),
                v["since_s"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// `seed_vips` after is `before` with the same transition, only older.
fn unmoved(
    who: &str,
    before: &[(String, u64, String, String, String, u64)],
    after: &[(String, u64, String, String, String, u64)],
) {
    assert_eq!(before.len(), 2, "{who}: {before:?}");
    assert_eq!(before.len(), after.len(), "{who}: {before:?} -> {after:?}");
    for (b, a) in before.iter().zip(after) {
        assert_eq!(
            (&b.0, b.1, &b.2, &b.3, &b.4),
            (&a.0, a.1, &a.2, &a.3, &a.4),
            "{who}: {}@{} moved",
            b.0,
            b.1
        );
        assert!(
            a.5 >= b.5,
            "{who}: {}@{} transitioned again: {b:?} -> {a:?}",
            b.0,
            b.1
        );
    }
}

/// Issue 10.11: a config that changes a VIP's description and adds a VHID, applied on A (the
/// master; config sync may carry it to B): the seed's VHIDs make no transition on either box
/// (same state, same last transition, no newer one), the ping goes on; only VHID 3 starts.
#[test]
fn a_description_change_and_a_new_vhid_cause_no_failover() {
    require_root();
    let lab = Lab::up("carpc").expect("lab up");
    let (a, b) = cluster(&lab);
    let pinger = pinger(&lab);
    let text = std::fs::read_to_string(config("fw-a.toml")).unwrap();
    let edited = text.replace("description = \"CARP LAN\"", "description = \"CARP LAN, edited\"")
        + "\n[[virtual_ips]]\ntype = \"carp\"\ninterface = \"lan\"\naddress = \"192.168.0.20/24\"\n\
           vhid = 3\npassword = \"tandem-lab-vhid3\"\nadvbase = 1\nadvskew = 0\n\
           description = \"a new VHID\"\n";
    assert_ne!(text, edited);
    let path = lab.log_dir().join("fw-a-edited.toml");
    std::fs::write(&path, edited).unwrap();
    let (va, vb) = (seed_vips(&a), seed_vips(&b));
    let (ok, out) = a.ctl(&["config", "apply", &path.display().to_string()]);
    assert!(ok, "config apply: {out}");
    // The new VHID starts (INIT -> BACKUP) and takes over after master down.
    assert!(
        wait_until(LONG, POLL, || vip_statuses(&a)
            .iter()
            .any(|s| s.1 == 3 && s.2 == "MASTER")),
        "A: {:?}",
        vip_statuses(&a)
    );
    // A few of A's adverts later, nothing else moved.
    let heard = b.counter("carp_adverts_received");
    assert!(wait_until(LONG, POLL, || b
        .counter("carp_adverts_received")
        >= heard + 3));
    unmoved("A", &va, &seed_vips(&a));
    unmoved("B", &vb, &seed_vips(&b));
    assert!(is(&a, "MASTER"), "{:?}", vip_statuses(&a));
    assert!(
        vip_statuses(&b).iter().all(|s| s.2 == "BACKUP"),
        "{:?}",
        vip_statuses(&b)
    );
    let n = pinger.answered().len();
    assert!(wait_until(LONG, POLL, || pinger.answered().len() >= n + 5));
    assert_eq!(pinger.longest_gap(), 0, "a ping was lost across the reload");
}
