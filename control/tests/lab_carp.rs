//! CARP with the seed's two boxes (scripts/lab-configs/fw-a.toml and fw-b.toml) in the lab: real
//! adverts on real AF_XDP sockets, the client's pings through whichever box is master.
//!
//! Needs root. Lab tests take the machine-wide lab lock: one at a time.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{cluster, config, is, vip_statuses, Fw, Pinger, LONG, POLL};
use serde_json::Value;
use tandem_testlab::topology::SERVER_IP;
use tandem_testlab::{require_root, wait_until, Lab, Node};

/// Master down at the seed's advbase 1, skew 1 (3 x 1 + 1/256 s), plus one advert interval
/// and the control loop's slack: the bound the issue sets for a takeover.
const TAKEOVER: Duration = Duration::from_millis(3_004 + 1_004 + 500);

fn wait_all(fw: &Fw, status: &str, within: Duration) -> bool {
    wait_until(within, POLL, || is(fw, status))
}

#[test]
fn the_seed_cluster_elects_a_and_fails_over_to_b_and_back() {
    require_root();
    let lab = Lab::up("carp").expect("lab up");
    let (mut a, b) = cluster(&lab);
    assert!(
        lab.ping(Node::Client, &SERVER_IP.to_string(), 3),
        "ping through A"
    );
    let names: Vec<String> = vip_statuses(&a)
        .iter()
        .map(|(i, v, _)| format!("{i}@{v}"))
        .collect();
    assert_eq!(names, ["wan@1", "lan@2"], "the seed's VIPs");

    // kill -9 A: B takes both VIPs within master down plus one interval.
    let pinger = Pinger::start(&lab, "0.05");
    assert!(wait_until(LONG, POLL, || pinger.answered().len() >= 5));
    let killed = Instant::now();
    a.kill9();
    assert!(wait_all(&b, "MASTER", LONG), "B: {:?}", vip_statuses(&b));
    let took = killed.elapsed();
    assert!(
        took <= TAKEOVER + Duration::from_secs(1),
        "B took {took:?} to become master"
    );
    let before = pinger.answered().len();
    assert!(
        wait_until(LONG, POLL, || pinger.answered().len() >= before + 10),
        "the ping did not resume through B"
    );
    drop(pinger);

    // A comes back and takes the VIPs back (preemption); B returns to backup.
    a.spawn(&config("fw-a.toml"));
    assert!(
        wait_all(&a, "MASTER", LONG),
        "A after restart: {:?}",
        vip_statuses(&a)
    );
    assert!(
        wait_all(&b, "BACKUP", LONG),
        "B after A's return: {:?}",
        vip_statuses(&b)
    );
    assert!(
        lab.ping(Node::Client, &SERVER_IP.to_string(), 3),
        "ping through A again"
    );
}

#[test]
fn a_link_down_moves_every_vip_and_maintenance_switches_without_loss() {
    require_root();
    let lab = Lab::up("carpl").expect("lab up");
    let (a, b) = cluster(&lab);

    // A's LAN cable pulled (the switch side of its veth): both VIPs move to B, WAN included.
    let sw = lab.ns(Node::Switch);
    let link = |state: &str| {
        let st = Command::new("ip")
            .args(["-n", &sw, "link", "set", "fwa-lan", state])
            .status()
            .unwrap();
        assert!(st.success());
    };
    link("down");
    assert!(
        wait_all(&b, "MASTER", LONG),
        "B after A's LAN went down: {:?}",
        vip_statuses(&b)
    );
    // On A the LAN VHID is INIT (its link is dead: FreeBSD's carp_linkstate), WAN is BACKUP.
    let a_down = vec![
        ("wan".to_string(), 1, "BACKUP".to_string()),
        ("lan".to_string(), 2, "INIT".to_string()),
    ];
    assert!(
        wait_until(LONG, POLL, || vip_statuses(&a) == a_down),
        "A with its LAN down: {:?}",
        vip_statuses(&a)
    );
    assert_eq!(
        a.json(&["carp"])["demotion"].as_u64(),
        Some(240),
        "A is demoted by 240"
    );
    link("up");
    assert!(
        wait_all(&a, "MASTER", LONG),
        "A after its LAN came back: {:?}",
        vip_statuses(&a)
    );
    assert!(wait_all(&b, "BACKUP", LONG));

    // A planned switchover: maintenance mode on A moves both VIPs to B with no ping lost.
    let pinger = Pinger::start(&lab, "0.05");
    assert!(wait_until(LONG, POLL, || pinger.answered().len() >= 5));
    let (ok, text) = a.ctl(&["maintenance", "on"]);
    assert!(ok, "maintenance on: {text}");
    assert!(wait_all(&b, "MASTER", LONG), "B: {:?}", vip_statuses(&b));
    assert!(wait_all(&a, "BACKUP", LONG), "A: {:?}", vip_statuses(&a));
    let n = pinger.answered().len();
    assert!(wait_until(LONG, POLL, || pinger.answered().len() >= n + 10));
    assert_eq!(
        pinger.longest_gap(),
        0,
        "a ping was lost in the planned switchover"
    );

    // Maintenance persists across a restart of A...
    let mut a = a;
    a.kill9();
    a.spawn(&config("fw-a.toml"));
    assert!(wait_until(LONG, POLL, || a.json(&["carp"])["maintenance"]
        == Value::Bool(true)));
    assert!(
        wait_all(&a, "BACKUP", LONG),
        "A in maintenance after restart: {:?}",
        vip_statuses(&a)
    );
    // ... and off brings the VIPs back.
    let (ok, _) = a.ctl(&["maintenance", "off"]);
    assert!(ok);
    assert!(
        wait_all(&a, "MASTER", LONG),
        "A after maintenance off: {:?}",
        vip_statuses(&a)
    );
    assert!(wait_all(&b, "BACKUP", LONG));
    assert_eq!(pinger.longest_gap(), 0, "a ping was lost when A came back");

    // Temporarily disable CARP on A: VIPs released at once, B master.
    let (ok, _) = a.ctl(&["carp", "disable"]);
    assert!(ok);
    assert!(wait_all(&a, "DISABLED", LONG));
    assert!(wait_all(&b, "MASTER", LONG));
    let (ok, _) = a.ctl(&["carp", "enable"]);
    assert!(ok);
    assert!(wait_all(&a, "MASTER", LONG));
}

/// The frame bytes of the first packet of a pcap file written by tandemctl capture.
fn first_frame(pcap: &std::path::Path) -> Vec<u8> {
    let b = std::fs::read(pcap).unwrap();
    assert!(b.len() > 40, "empty pcap");
    let incl = u32::from_le_bytes([b[32], b[33], b[34], b[35]]) as usize;
    b[40..40 + incl].to_vec()
}

#[test]
fn wrong_passwords_and_replayed_adverts_are_rejected_and_counted() {
    require_root();
    let lab = Lab::up("carpa").expect("lab up");
    let (a, b) = cluster(&lab);

    // Capture one of A's WAN adverts as B's dataplane received it...
    let pcap = lab.log_dir().join("advert.pcap");
    let (ok, text) = b.ctl(&[
        "capture",
        "--interface",
        "wan",
        "--host",
        "172.25.46.101",
        "--count",
        "1",
        "--write",
        &pcap.display().to_string(),
    ]);
    assert!(ok, "capture: {text}");
    let advert = first_frame(&pcap);
    assert_eq!(advert[23], 112, "the captured frame is CARP");

    // ... and replay it into B from the switch port that faces it, once A has moved on (the lab's
    // injection point: what reaches B does not depend on what the bridge lets through).
    let before = b.counter("carp_rejected_replay");
    let hex: String = advert.iter().map(|x| format!("{x:02x}")).collect();
    // Sent twice: as captured, and from another source address (the HMAC does not cover the IP
    // header, so only a per-VHID counter catches that one). The IP checksum is redone.
    let script = format!(
        "import socket\n\
         f=bytearray(bytes.fromhex('{hex}'))\n\
         s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('fwb-wan', 0)); s.send(bytes(f))\n\
         f[26:30]=bytes([172,25,46,77]); f[24:26]=b'\\0\\0'\n\
         c=sum(int.from_bytes(f[i:i+2],'big') for i in range(14,34,2)); c=(c&0xffff)+(c>>16); c=(c&0xffff)+(c>>16)\n\
         f[24:26]=(0xffff-c).to_bytes(2,'big'); s.send(bytes(f))"
    );
    let out = lab.exec(Node::Switch, &["python3", "-c", &script]);
    assert!(
        out.status.success(),
        "inject: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(LONG, POLL, || b.counter("carp_rejected_replay")
            >= before + 2),
        "both replays (as captured, and from another address) must count as replays: {} -> {}",
        before,
        b.counter("carp_rejected_replay")
    );
    assert!(is(&b, "BACKUP"), "a replay must not change B's state");
    drop(a);
    drop(b);
    drop(lab);

    // B with the wrong password: A's adverts fail authentication on B and are counted.
    let lab2 = Lab::up("carpw").expect("lab up");
    let wrong = lab2.log_dir().join("fw-b-wrong.toml");
    let text = std::fs::read_to_string(config("fw-b.toml")).unwrap();
    let changed = text.replace("password = \"", "password = \"x");
    assert_ne!(changed, text);
    std::fs::write(&wrong, changed).unwrap();
    let a2 = Fw::start(&lab2, Node::Fwa, &config("fw-a.toml"));
    let b2 = Fw::start(&lab2, Node::Fwb, &wrong.display().to_string());
    assert!(
        wait_until(LONG, POLL, || b2.counter("carp_rejected_bad_auth") >= 3),
        "B did not count A's adverts as bad_auth"
    );
    assert!(
        wait_until(LONG, POLL, || a2.counter("carp_rejected_bad_auth") >= 1),
        "and A B's"
    );
}
