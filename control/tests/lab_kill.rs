//! `tandemctl states kill` in the lab (issue 10, item 6): states killed on the master are
//! removed on the backup too, through state sync's deletes; the others stay. And
//! `system.kill_states_on_reload`: a config apply kills the states the new rules block.
//!
//! Needs root. Lab tests take the machine-wide lab lock: one at a time.

mod common;

use std::time::Duration;

use common::{config, wait_for_pair, Fw, LONG, POLL};
use tandem_testlab::topology::CLIENT_IP;
use tandem_testlab::topology::SERVER_IP;
use tandem_testlab::{require_root, wait_until, Lab, Node};

/// How many states `tandemctl states FILTERS` counts.
fn count(fw: &Fw, filters: &[&str]) -> u64 {
    let mut args = vec!["states"];
    args.extend_from_slice(filters);
    fw.json(&args)["count"].as_u64().expect("count")
}

#[test]
fn a_kill_on_the_master_removes_the_states_on_the_backup_too() {
    require_root();
    let lab = Lab::up("kill").expect("lab up");
    let b = Fw::start(&lab, Node::Fwb, &config("fw-b.toml"));
    let a = Fw::start(&lab, Node::Fwa, &config("fw-a.toml"));
    wait_for_pair(&a, &b);

    // Ten UDP flows through A, one state each (60 s of UDP timeout: longer than the test).
    for port in 6000..6010 {
        let out = lab.exec(
            Node::Client,
            &[
                "bash",
                "-c",
                &format!("echo x > /dev/udp/{SERVER_IP}/{port}"),
            ],
        );
        assert!(out.status.success());
    }
    assert!(
        wait_until(LONG, POLL, || count(&a, &["--proto", "udp"]) == 10
            && count(&b, &["--proto", "udp"]) == 10),
        "the ten UDP states on both boxes: A {}, B {}",
        count(&a, &["--proto", "udp"]),
        count(&b, &["--proto", "udp"])
    );

    // No filter and no --all: refused, nothing removed.
    let (ok, text) = a.ctl(&["states", "kill"]);
    assert!(!ok && text.contains("--all"), "{text}");
    assert_eq!(count(&a, &["--proto", "udp"]), 10);

    // One flow by port: gone on A at once, and on B through a DEL_C.
    let r = a.json(&["states", "kill", "--proto", "udp", "--port", "6003"]);
    assert_eq!(r, serde_json::json!({"killed": 1}));
    assert_eq!(count(&a, &["--port", "6003"]), 0);
    assert!(
        wait_until(Duration::from_secs(10), POLL, || count(
            &b,
            &["--port", "6003"]
        ) == 0),
        "B still holds the killed state: {}",
        b.json(&["states", "--port", "6003"])
    );
    assert_eq!(count(&b, &["--proto", "udp"]), 9, "B keeps the others");

    // The client's remaining states by address (the stack side: A's NAT put the VIP on the wire).
    let r = a.json(&["states", "kill", "--addr", "192.168.0.100"]);
    assert_eq!(r["killed"], 9, "{r}");
    assert!(
        wait_until(Duration::from_secs(10), POLL, || count(
            &b,
            &["--proto", "udp"]
        ) == 0),
        "B still holds {} UDP states",
        count(&b, &["--proto", "udp"])
    );
    // The sync thread publishes its counters periodically: wait for them.
    assert!(
        wait_until(Duration::from_secs(10), POLL, || b.counter("sync_rx_del_c")
            >= 10),
        "removed through deletes: sync_rx_del_c {}",
        b.counter("sync_rx_del_c")
    );
}

/// Sends one UDP datagram from the client to the server's `port` (a state in the box).
fn udp_from_client(lab: &Lab, port: u16) {
    let out = lab.exec(
        Node::Client,
        &[
            "bash",
            "-c",
            &format!("echo x > /dev/udp/{SERVER_IP}/{port}"),
        ],
    );
    assert!(out.status.success());
}

#[test]
fn with_kill_states_on_reload_an_apply_kills_the_states_the_new_rules_block() {
    require_root();
    let lab = Lab::up("killrl").expect("lab up");
    let base = std::fs::read_to_string(config("fw-single.toml"))
        .unwrap()
        .replace("host_id = 1", "host_id = 1\nkill_states_on_reload = true");
    let write = |name: &str, text: &str| {
        let p = lab.log_dir().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let all = write("kill-all.toml", &base);
    let icmp_only = write(
        "kill-icmp-only.toml",
        &base.replace(
            "description = \"default allow LAN to any\"",
            "protocol = \"icmp\"\ndescription = \"ICMP only\"",
        ),
    );
    let fw = Fw::start(&lab, Node::Fwa, &all);
    for port in 6000..6005 {
        udp_from_client(&lab, port);
    }
    assert!(lab.ping(Node::Client, &SERVER_IP.to_string(), 1));
    let client = CLIENT_IP.to_string();
    assert!(
        wait_until(LONG, POLL, || count(&fw, &["--proto", "udp"]) == 5
            && count(&fw, &["--proto", "icmp", "--addr", &client]) >= 1),
        "five UDP states and the ping's: {}",
        fw.json(&["states"])
    );

    // The same rules again: nothing is killed.
    let (ok, text) = fw.ctl(&["config", "apply", &all]);
    assert!(ok, "apply: {text}");
    assert_eq!(count(&fw, &["--proto", "udp"]), 5);

    // ICMP only: the UDP states go at once, the ping's stays.
    let (ok, text) = fw.ctl(&["config", "apply", &icmp_only]);
    assert!(ok, "apply: {text}");
    assert_eq!(
        count(&fw, &["--proto", "udp"]),
        0,
        "{}",
        fw.json(&["states"])
    );
    assert!(count(&fw, &["--proto", "icmp", "--addr", &client]) >= 1);
}
