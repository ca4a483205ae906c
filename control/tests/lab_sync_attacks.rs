//! Attacks on the state sync link, performed in the lab with real daemons (issue 10): a
//! recorded sync datagram of an old boot of the peer replayed after both boxes restarted.
//!
//! Needs root. Lab tests take the machine-wide lab lock: one at a time.

mod common;

use std::collections::BTreeSet;

use common::{config, find_counter, is, statuses, Fw, LONG, POLL};
use serde_json::Value;
use tandem_testlab::topology::SERVER_IP;
use tandem_testlab::{require_root, wait_until, Lab, Node};

/// A counter that an older build may not have: 0 then (the test must fail on behaviour, not
/// on a missing name).
fn counter0(fw: &Fw, name: &str) -> u64 {
    find_counter(&fw.json(&["stats"]), name).unwrap_or(0)
}

/// The states of a box as comparable tuples: (id, proto, stack, wire).
fn state_set(fw: &Fw) -> BTreeSet<(String, String, String, String)> {
    fw.json(&["states"])["states"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let ep = |v: &Value| format!("{}->{}", v["src"], v["dst"]);
            (
                s["id"].to_string(),
                s["proto"].to_string(),
                ep(&s["stack"]),
                ep(&s["wire"]),
            )
        })
        .collect()
}

fn bulk_done(fw: &Fw) -> bool {
    fw.json(&["sync"])["bulk_status"] == "done"
}

fn received(fw: &Fw) -> u64 {
    fw.json(&["sync"])["received"].as_u64().unwrap_or(0)
}

fn nft(lab: &Lab, node: Node, rules: &str) {
    let out = lab.exec(node, &["nft", rules]);
    assert!(
        out.status.success(),
        "nft {rules}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 10.2. B's sync datagrams recorded; B restarts, A restarts; while A's bulk update is
/// pending (B's long datagrams held back by nftables in A's namespace, its short ACKs pass, so
/// A hears B's current boot first), one recorded datagram of B's old boot is replayed from the
/// sync switch. Before the fix, A took it for a restart of B and refused every genuine datagram
/// of B's current boot as a replay: no more received, no bulk update.
#[test]
fn a_replayed_datagram_of_an_old_boot_retires_nothing() {
    require_root();
    let lab = Lab::up("synold").expect("lab up");
    let mut b = Fw::start(&lab, Node::Fwb, &config("fw-b.toml"));
    let mut a = Fw::start(&lab, Node::Fwa, &config("fw-a.toml"));
    assert!(
        wait_until(LONG, POLL, || is(&a, "MASTER")
            && is(&b, "BACKUP")
            && bulk_done(&b)),
        "cluster not up: A {:?} B {:?}",
        statuses(&a),
        statuses(&b)
    );
    // A slow ping through the cluster for the whole test: one ICMP state, updated, so that A
    // sends and B acknowledges.
    let _ping = lab
        .spawn(Node::Client, &["ping", "-i", "0.2", &SERVER_IP.to_string()])
        .unwrap();
    let pcap = lab.log_dir().join("b-sync.pcap").display().to_string();
    let dump = lab
        .spawn(
            Node::Switch,
            &[
                "tcpdump",
                "-i",
                "sync",
                "-w",
                &pcap,
                "-U",
                "ip proto 240 and src host 10.255.0.2 and ip[2:2] <= 80",
            ],
        )
        .unwrap();
    assert!(
        wait_until(LONG, POLL, || dump.log().contains("listening on")),
        "tcpdump did not start: {}",
        dump.log()
    );
    assert!(
        wait_until(LONG, POLL, || std::fs::metadata(&pcap)
            .is_ok_and(|m| m.len() > 24 + 2 * (16 + 60))),
        "no short sync datagram of B recorded"
    );
    let _ = dump.kill();

    // B restarts (a new boot), then A, with B's long datagrams held back from A.
    b.kill9();
    b.spawn(&config("fw-b.toml"));
    assert!(wait_until(LONG, POLL, || bulk_done(&b)), "B's bulk update");
    nft(
        &lab,
        Node::Fwa,
        "table ip tdhold { chain in { type filter hook input priority 0; ip saddr 10.255.0.2 ip protocol 240 ip length > 80 counter drop; }; }",
    );
    a.kill9();
    a.spawn(&config("fw-a.toml"));
    assert!(
        wait_until(LONG, POLL, || received(&a) > 0),
        "A heard nothing of B"
    );
    assert!(!bulk_done(&a), "A's bulk update must still be pending");
    let restarts = counter0(&a, "sync_peer_restarts");
    let old_boot = counter0(&a, "sync_old_boot");

    // Replay the first recorded datagram (of B's previous boot) onto the sync switch.
    let replay = format!(
        "import socket,struct\n\
         d=open('{pcap}','rb').read(); o=24; s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('sync',0))\n\
         l=struct.unpack('<I',d[o+8:o+12])[0]; s.send(d[o+16:o+16+l]); print(l)"
    );
    let out = lab.exec(Node::Switch, &["python3", "-c", &replay]);
    assert!(
        out.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(LONG, POLL, || counter0(&a, "sync_old_boot") > old_boot
            || counter0(&a, "sync_peer_restarts") > restarts),
        "the replayed datagram did not reach A"
    );
    assert_eq!(
        counter0(&a, "sync_peer_restarts"),
        restarts,
        "A took a datagram of B's old boot for a restart"
    );

    // B's datagrams flow again: A keeps receiving and its bulk update completes.
    let r0 = received(&a);
    nft(&lab, Node::Fwa, "delete table ip tdhold");
    assert!(
        wait_until(LONG, POLL, || received(&a) >= r0 + 5),
        "A's received counter stopped at {} (from {r0}): {}",
        received(&a),
        a.json(&["sync"])
    );
    assert!(
        wait_until(LONG, POLL, || bulk_done(&a)),
        "A's bulk update did not complete: {}",
        a.json(&["sync"])
    );
    // No state appeared (an old INS) or disappeared (an old bulk purge): the boxes agree.
    assert!(
        wait_until(LONG, POLL, || {
            let (sa, sb) = (state_set(&a), state_set(&b));
            !sa.is_empty() && sa == sb
        }),
        "the boxes' states differ:\nA {:?}\nB {:?}",
        state_set(&a),
        state_set(&b)
    );
    assert_eq!(counter0(&a, "sync_bulk_purged"), 0);
    assert_eq!(counter0(&a, "sync_applied_deletes"), 0);
}
