//! One tandem box forwarding real traffic in the lab: tandemd on fwa with fw-single.toml (the
//! seed's box A, its VIPs as IP aliases), real packets through real AF_XDP sockets.
//!
//! Needs root (network namespaces, XDP). Lab tests take the machine-wide lab lock, so they run
//! one at a time whatever the test harness does.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{config, serve_blob, sha256_of, Fw, Served, LONG, POLL};
use tandem_testlab::topology::{CLIENT_IP, FWA_LAN_IP, LAN_VIP, SERVER_IP, WAN_VIP};
use tandem_testlab::{require_root, wait_until, Lab, Node};

#[test]
fn one_box_forwards_pings_downloads_and_refuses_what_the_rules_refuse() {
    require_root();
    let lab = Lab::up("single").expect("lab up");
    let mut fw = Fw::start(&lab, Node::Fwa, &config("fw-single.toml"));

    // veth's driver runs XDP: the program runs native, the sockets in copy mode (veth has no
    // zero-copy), every RX queue of each device bound; status says so.
    let status = fw.json(&["status"]);
    assert_eq!(
        status["ring_size"].as_u64(),
        Some(u64::from(tandem_control::config::DEFAULT_RING_SIZE)),
        "fw-single.toml sets no ring size: the default is in force"
    );
    for i in status["interfaces"].as_array().expect("interfaces") {
        assert_eq!(i["xdp"], "native", "{i}");
        assert_eq!(i["socket"], "copy", "{i}");
        assert_eq!(i["link"], "up", "{i}");
        // Every RX queue the kernel has for the device (veth: one per CPU).
        let dev = i["device"].as_str().expect("device");
        let rx_queues = lab
            .run(Node::Fwa, &["ls", &format!("/sys/class/net/{dev}/queues")])
            .lines()
            .filter(|q| q.starts_with("rx-"))
            .count() as u64;
        assert!(rx_queues >= 1);
        assert_eq!(i["queues"].as_u64(), Some(rx_queues), "{i}");
    }

    // The box answers for its own address and the VIP, and forwards to the server.
    assert!(
        lab.ping(Node::Client, &LAN_VIP.to_string(), 3),
        "ping the LAN VIP"
    );
    assert!(
        lab.ping(Node::Client, &FWA_LAN_IP.to_string(), 3),
        "ping the box's LAN address"
    );
    assert!(
        lab.ping(Node::Client, &SERVER_IP.to_string(), 3),
        "ping the server through the box"
    );

    // A 100 MB download from the server, NATed to the WAN VIP.
    let Served { file, url, server } = serve_blob(&lab, 100);
    let want = sha256_of(&file);
    let got = lab.log_dir().join("got");
    let out = lab.exec(
        Node::Client,
        &[
            "curl",
            "-sS",
            "--max-time",
            "300",
            "-o",
            &got.display().to_string(),
            &url,
        ],
    );
    assert!(
        out.status.success(),
        "download failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sha256_of(&got), want, "the downloaded file differs");
    assert!(
        server.log().contains(&format!("{WAN_VIP} - - ")),
        "the server should see the client as the WAN VIP; its log:\n{}",
        server.log()
    );

    // The state table shows the flow and its NAT mapping.
    let states = fw.json(&["states"]);
    assert!(
        states["count"].as_u64().unwrap_or(0) >= 1,
        "states: {states}"
    );
    let text = states.to_string();
    assert!(
        text.contains(&CLIENT_IP.to_string()) && text.contains(&WAN_VIP.to_string()),
        "states: {states}"
    );
    assert!(
        fw.counter("forwarded") > 70_000,
        "a 100 MB download is tens of thousands of frames"
    );

    // Unsolicited connections from the WAN are refused by the rules and counted.
    let before = fw.counter("drop_blocked_default") + fw.counter("drop_blocked_rule");
    for dst in [CLIENT_IP, WAN_VIP] {
        let out = lab.exec(
            Node::Server,
            &[
                "curl",
                "-s",
                "--connect-timeout",
                "1",
                &format!("http://{dst}:8080/"),
            ],
        );
        assert!(
            !out.status.success(),
            "a connection from the WAN to {dst} must not succeed"
        );
    }
    let after = fw.counter("drop_blocked_default") + fw.counter("drop_blocked_rule");
    assert!(after >= before + 2, "blocked counters: {before} -> {after}");

    // kill -9 and a new start: the stale XDP program is replaced and traffic flows again.
    fw.kill9();
    fw.spawn(&config("fw-single.toml"));
    assert!(
        lab.ping(Node::Client, &SERVER_IP.to_string(), 3),
        "ping through the box after a restart"
    );
    drop(server);
}

/// fw-single.toml with `edit` applied to its text, written next to the lab's logs.
fn variant(lab: &Lab, name: &str, edit: impl Fn(String) -> String) -> String {
    let text = std::fs::read_to_string(config("fw-single.toml")).unwrap();
    let out = edit(text.clone());
    assert_ne!(out, text, "the edit of {name} changed nothing");
    let path = lab.log_dir().join(name);
    std::fs::write(&path, out).unwrap();
    path.display().to_string()
}

fn generation(fw: &Fw) -> u64 {
    fw.json(&["status"])["generation"]
        .as_u64()
        .expect("status has a generation")
}

/// `config apply FILE` is refused, the refusal saying `names`, and the generation stays.
fn assert_refused(fw: &Fw, file: &str, names: &str) {
    let g0 = generation(fw);
    let (ok, text) = fw.ctl(&["config", "apply", file]);
    assert!(!ok, "{file} must be refused");
    assert!(text.contains(names), "the refusal names {names:?}: {text}");
    assert_eq!(generation(fw), g0, "a refused config changes nothing");
}

#[test]
fn reload_swaps_the_ruleset_whole_keeps_states_and_refuses_bad_configs() {
    require_root();
    let lab = Lab::up("reload").expect("lab up");
    let fw = Fw::start(&lab, Node::Fwa, &config("fw-single.toml"));
    let icmp_only = variant(&lab, "icmp-only.toml", |t| {
        t.replace(
            "description = \"default allow LAN to any\"",
            "protocol = \"icmp\"\ndescription = \"ICMP only\"",
        )
    });
    let broken = variant(&lab, "broken.toml", |t| {
        t.replace("host_id = 1", "host_id = 0")
    });
    // Valid, but the sockets were opened with the default ring size.
    let rings = variant(&lab, "rings.toml", |t| {
        t.replace("host_id = 1", "host_id = 1\nring_size = 1024")
    });

    // A slow download in flight: its state must survive the reload that forbids new TCP.
    let Served {
        file,
        url,
        server: _server,
    } = serve_blob(&lab, 6);
    let got = lab.log_dir().join("got");
    let mut download = lab
        .spawn(
            Node::Client,
            &[
                "curl",
                "-sS",
                "--limit-rate",
                "1M",
                "-o",
                &got.display().to_string(),
                &url,
            ],
        )
        .unwrap();
    assert!(
        wait_until(LONG, POLL, || std::fs::metadata(&got)
            .is_ok_and(|m| m.len() > 500_000)),
        "the download did not start"
    );

    // A config with errors is refused by name, and the running generation stays.
    let g0 = generation(&fw);
    assert_refused(&fw, &broken, "system.host_id");
    // So is a valid one that changes what the sockets were opened with: it takes a restart.
    assert_refused(&fw, &rings, "system.ring_size changed; restart tandemd");
    assert_eq!(generation(&fw), g0, "a refused config changes nothing");

    // The new ruleset applies to new connections only.
    let (ok, text) = fw.ctl(&["config", "apply", &icmp_only]);
    assert!(ok, "apply: {text}");
    assert_eq!(generation(&fw), g0 + 1);
    let out = lab.exec(
        Node::Client,
        &[
            "curl",
            "-s",
            "--connect-timeout",
            "2",
            "-o",
            "/dev/null",
            &url,
        ],
    );
    assert!(
        !out.status.success(),
        "a new TCP connection must be blocked by the ICMP-only ruleset"
    );
    assert!(
        lab.ping(Node::Client, &SERVER_IP.to_string(), 2),
        "ICMP still passes"
    );
    let status = download.wait_timeout(Duration::from_secs(60)).unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "the download in flight must finish: {}",
        download.log()
    );
    assert_eq!(
        sha256_of(&got),
        sha256_of(&file),
        "the download in flight is intact"
    );

    // SIGHUP re-reads the daemon's file (the one applied last): same rules, next generation.
    let pid = fw.daemon.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    assert!(
        wait_until(LONG, POLL, || generation(&fw) == g0 + 2),
        "SIGHUP did not reload"
    );
    let (ok, _) = fw.ctl(&["config", "apply", &config("fw-single.toml")]);
    assert!(ok);
    let out = lab.exec(
        Node::Client,
        &[
            "curl",
            "-s",
            "--connect-timeout",
            "5",
            "-o",
            "/dev/null",
            "-r",
            "0-0",
            &url,
        ],
    );
    assert!(out.status.success(), "the original rules pass TCP again");
}

#[test]
fn capture_writes_what_the_dataplane_sees_to_a_pcap_tcpdump_reads() {
    require_root();
    let lab = Lab::up("cap").expect("lab up");
    let fw = Fw::start(&lab, Node::Fwa, &config("fw-single.toml"));
    let pcap = lab.log_dir().join("lan.pcap").display().to_string();
    // The capture waits for frames; a ping in the background provides them.
    let _ping = lab
        .spawn(
            Node::Client,
            &["ping", "-i", "0.2", "-c", "50", &SERVER_IP.to_string()],
        )
        .unwrap();
    let (ok, text) = fw.ctl(&[
        "capture",
        "--interface",
        "lan",
        "--count",
        "6",
        "--host",
        &CLIENT_IP.to_string(),
        "--write",
        &pcap,
    ]);
    assert!(ok, "capture: {text}");
    let out = Command::new("tcpdump")
        .args(["-nn", "-r", &pcap])
        .output()
        .expect("tcpdump");
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tcpdump cannot read the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines.lines().count(), 6, "six frames: {lines}");
    assert!(
        lines.contains("ICMP echo request") && lines.contains(&CLIENT_IP.to_string()),
        "{lines}"
    );
}
