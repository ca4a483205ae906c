//! The lab itself: `scripts/lab` through the `Lab` guard. Needs root; runs one lab test at a time
//! on the machine (the lab lock).

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::process::Command;
use std::time::Duration;

use tandem_testlab::topology::{CLIENT_IP, FWB_SYNC_IP, LAN_VIP, SERVER_IP, WAN_VIP};
use tandem_testlab::{lock, mac, mac_string, require_root, script, wait_until, Lab, Node, Options};

const SECOND: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(100);

fn host(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run host command");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the root namespace looks like: its links and the namespace list.
fn root_snapshot() -> (String, String) {
    (host(&["ip", "-o", "link"]), host(&["ip", "netns", "list"]))
}

fn namespaces() -> Vec<String> {
    host(&["ip", "netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn assert_lab_exists(lab: &Lab) {
    let all = namespaces();
    for node in Node::ALL {
        assert!(
            all.contains(&lab.ns(node)),
            "namespace {} missing; have {all:?}",
            lab.ns(node)
        );
    }
}

fn assert_gone(prefix: &str) {
    let left: Vec<String> = namespaces()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    assert!(
        left.is_empty(),
        "lab {prefix} left namespaces behind: {left:?}"
    );
}

/// A live, non-zombie process.
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn sysctl(lab: &Lab, node: Node, key: &str) -> String {
    lab.run(node, &["sysctl", "-n", key]).trim().to_owned()
}

fn link_detail(lab: &Lab, node: Node, ifname: &str) -> String {
    lab.run(node, &["ip", "-d", "link", "show", "dev", ifname])
}

#[test]
fn two_labs_coexist_and_leave_the_root_namespace_untouched() {
    require_root();
    // Held around the whole test (reentrant), so no other lab test changes the machine between
    // the two snapshots.
    let _held = lock().expect("lab lock");
    let before = root_snapshot();

    let a = Lab::up("two").expect("first lab");
    let b = Lab::up("two").expect("second lab");
    assert_ne!(a.prefix(), b.prefix());
    assert_lab_exists(&a);
    assert_lab_exists(&b);
    let (pa, pb) = (a.prefix().to_owned(), b.prefix().to_owned());

    for lab in [&a, &b] {
        // The kernel-owned sync link works in each lab, independently.
        assert!(
            lab.ping(Node::Fwa, &FWB_SYNC_IP.to_string(), 3),
            "{}: fwa cannot ping fwb over sync",
            lab.prefix()
        );

        for fw in [Node::Fwa, Node::Fwb] {
            for ifname in ["lan", "wan"] {
                // Dataplane ports: no IPv4 address, IPv6 off, a known MAC, one queue.
                let v4 = lab.run(fw, &["ip", "-4", "-o", "addr", "show", "dev", ifname]);
                assert!(
                    v4.trim().is_empty(),
                    "{} {fw} {ifname} has a kernel address: {v4}",
                    lab.prefix()
                );
                let v6 = lab.run(fw, &["ip", "-6", "-o", "addr", "show", "dev", ifname]);
                assert!(
                    v6.trim().is_empty(),
                    "{} {fw} {ifname} has IPv6: {v6}",
                    lab.prefix()
                );
                assert_eq!(
                    sysctl(lab, fw, &format!("net.ipv6.conf.{ifname}.disable_ipv6")),
                    "1"
                );
                assert_eq!(
                    sysctl(lab, fw, &format!("net.ipv4.conf.{ifname}.arp_ignore")),
                    "8"
                );
                let detail = link_detail(lab, fw, ifname);
                let want = mac_string(mac(fw, ifname).expect("pinned mac"));
                assert!(
                    detail.contains(&format!("link/ether {want} ")),
                    "{fw} {ifname}: want {want}: {detail}"
                );
                assert!(
                    detail.contains("numtxqueues 1 numrxqueues 1"),
                    "{fw} {ifname}: {detail}"
                );
                assert!(
                    detail.contains("state UP"),
                    "{fw} {ifname} is not up: {detail}"
                );
            }
            // The kernel must not route between the dataplane's ports.
            assert_eq!(sysctl(lab, fw, "net.ipv4.ip_forward"), "0");
        }

        let route = lab.run(Node::Client, &["ip", "-4", "route", "show", "default"]);
        assert!(
            route.contains(&format!("default via {LAN_VIP} dev eth0")),
            "client route: {route}"
        );
        let route = lab.run(Node::Server, &["ip", "-4", "route", "show", "default"]);
        assert!(
            route.contains(&format!("default via {WAN_VIP} dev eth0")),
            "server route: {route}"
        );
        let addr = lab.run(
            Node::Client,
            &["ip", "-4", "-o", "addr", "show", "dev", "eth0"],
        );
        assert!(
            addr.contains(&format!("{CLIENT_IP}/24")),
            "client address: {addr}"
        );
        let addr = lab.run(
            Node::Server,
            &["ip", "-4", "-o", "addr", "show", "dev", "eth0"],
        );
        assert!(
            addr.contains(&format!("{SERVER_IP}/24")),
            "server address: {addr}"
        );

        // Hosts send full checksums (and no TSO super-frames): an AF_XDP socket gets frames as
        // they are sent, and a partial checksum would look corrupt to the dataplane.
        for host_node in [Node::Client, Node::Server] {
            let k = lab.run(host_node, &["ethtool", "-k", "eth0"]);
            for want in ["tx-checksumming: off", "tcp-segmentation-offload: off"] {
                assert!(k.contains(want), "{host_node} eth0: no '{want}' in {k}");
            }
        }

        // Bridges: no STP, no forward delay, no multicast snooping (CARP adverts must flood),
        // no bridge netfilter (a switch forwards malformed IPv4; br_netfilter would drop it).
        for br in ["lan", "wan", "sync"] {
            let d = link_detail(lab, Node::Switch, br);
            for want in [
                "stp_state 0",
                "forward_delay 0",
                "mcast_snooping 0",
                "nf_call_iptables 0",
                "nf_call_ip6tables 0",
                "nf_call_arptables 0",
            ] {
                assert!(d.contains(want), "bridge {br}: no '{want}' in {d}");
            }
        }
        if lab
            .exec(Node::Switch, &["test", "-d", "/proc/sys/net/bridge"])
            .status
            .success()
        {
            for t in ["iptables", "ip6tables", "arptables"] {
                assert_eq!(
                    sysctl(lab, Node::Switch, &format!("net.bridge.bridge-nf-call-{t}")),
                    "0",
                    "{}: bridge netfilter ({t}) is on in the switch",
                    lab.prefix()
                );
            }
        }
    }

    drop(a);
    assert_gone(&pa);
    assert_lab_exists(&b);
    drop(b);
    assert_gone(&pb);
    assert_eq!(root_snapshot(), before, "the root namespace changed");
}

#[test]
fn dataplane_ports_hear_the_hosts() {
    // The lab is only useful if frames from the client reach both firewalls' lan ports and frames
    // from the server both wan ports: watch the ARP for each VIP arrive on all four.
    let lab = Lab::up("l2").expect("lab");
    let mut watchers = Vec::new();
    for fw in [Node::Fwa, Node::Fwb] {
        for (ifname, vip) in [("lan", LAN_VIP), ("wan", WAN_VIP)] {
            let filter = format!("arp and arp[24:4] = 0x{:08x}", u32::from(vip));
            let p = lab
                .spawn(
                    fw,
                    &[
                        "tcpdump", "-l", "-n", "-e", "-c", "1", "-i", ifname, &filter,
                    ],
                )
                .expect("tcpdump");
            watchers.push((fw, ifname, p));
        }
    }
    let heard = wait_until(20 * SECOND, POLL, || {
        // Nobody answers for the VIPs yet: each ping only makes the kernel ask again.
        lab.exec(
            Node::Client,
            &["ping", "-n", "-c", "1", "-W", "0.2", &LAN_VIP.to_string()],
        );
        lab.exec(
            Node::Server,
            &["ping", "-n", "-c", "1", "-W", "0.2", &WAN_VIP.to_string()],
        );
        watchers
            .iter_mut()
            .all(|(_, _, p)| p.try_wait().expect("try_wait").is_some())
    });
    for (fw, ifname, p) in &watchers {
        assert!(heard, "{fw} {ifname} heard no ARP; log: {}", p.log());
        let from = if *ifname == "lan" {
            mac(Node::Client, "eth0")
        } else {
            mac(Node::Server, "eth0")
        };
        let from = mac_string(from.expect("pinned mac"));
        assert!(
            p.log().contains(&from),
            "{fw} {ifname}: ARP not from {from}: {}",
            p.log()
        );
    }
}

#[test]
fn a_lab_dropped_during_a_panic_is_removed() {
    require_root();
    let _held = lock().expect("lab lock");
    let before = root_snapshot();
    let mut prefix = String::new();
    let mut logs = None;
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::up("panic").expect("lab");
        prefix = lab.prefix().to_owned();
        logs = Some(lab.log_dir().to_owned());
        assert_lab_exists(&lab);
        panic!("deliberate panic with lab {} up", lab.prefix());
    }));
    assert!(result.is_err());
    assert!(!prefix.is_empty());
    assert_gone(&prefix);
    assert_eq!(root_snapshot(), before, "the root namespace changed");
    // Kept for a post-mortem, as after any failing lab test; this failure was on purpose.
    let logs = logs.expect("log dir");
    assert!(logs.is_dir(), "logs of a failed lab test were not kept");
    fs::remove_dir_all(logs).expect("remove logs");
}

#[test]
fn processes_in_the_lab_end_with_their_guard_or_the_lab() {
    let lab = Lab::up("proc").expect("lab");
    let p = lab.spawn(Node::Server, &["sleep", "600"]).expect("spawn");
    let pid = p.id();
    assert!(alive(pid));
    drop(p);
    assert!(!alive(pid), "spawned process {pid} outlived its guard");

    // A process the test forgot about (detached by a shell) is ended by `scripts/lab down`.
    let out = lab.run(
        Node::Client,
        &["sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"],
    );
    let stray: u32 = out.trim().parse().expect("pid");
    assert!(alive(stray));
    drop(lab);
    assert!(
        wait_until(5 * SECOND, POLL, || !alive(stray)),
        "process {stray} left in the lab survived scripts/lab down"
    );
}

#[test]
fn queues_option_reaches_the_dataplane_ports() {
    let lab = Lab::up_with("queue", &Options { queues: Some(2) }).expect("lab");
    for fw in [Node::Fwa, Node::Fwb] {
        for ifname in ["lan", "wan"] {
            let d = link_detail(&lab, fw, ifname);
            assert!(
                d.contains("numtxqueues 2 numrxqueues 2"),
                "{fw} {ifname}: {d}"
            );
        }
    }
}

#[test]
fn the_script_refuses_bad_prefixes_and_never_replaces_a_live_lab() {
    let lab = Lab::up("refuse").expect("lab");
    let lab_cmd = |args: &[&str]| {
        Command::new(script())
            .args(args)
            .output()
            .expect("scripts/lab")
    };

    let out = lab_cmd(&["up", lab.prefix()]);
    assert!(!out.status.success(), "up over a live lab succeeded");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    // The refusal left the live lab alone.
    assert_lab_exists(&lab);
    assert!(lab.ping(
        Node::Fwb,
        &tandem_testlab::topology::FWA_SYNC_IP.to_string(),
        1
    ));
    assert!(lab_cmd(&["status", lab.prefix()]).status.success());

    for bad in ["Upper", "1digit", "under_score", "way-too-long-prefix-here"] {
        let out = lab_cmd(&["up", bad]);
        assert!(!out.status.success(), "prefix {bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("prefix"), "prefix {bad}: unclear error: {err}");
        assert!(
            namespaces().iter().all(|n| !n.starts_with(bad)),
            "{bad} created something"
        );
    }

    // status of an absent lab fails; down of an absent lab succeeds.
    assert!(!lab_cmd(&["status", "tl-absent-"]).status.success());
    assert!(lab_cmd(&["down", "tl-absent-"]).status.success());
}
