//! State sync in the lab, the seed's acceptance tests ("Faire des tests"): a 200 MB download and a
//! ping every 10 ms through the cluster while the primary fails (kill -9, its LAN link, CARP
//! disabled); the download must finish intact with no reset, and afterwards both boxes hold the
//! same states. Then sync under 5% datagram loss, and forged or replayed sync datagrams.
//!
//! Needs root. Lab tests take the machine-wide lab lock: one at a time.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::{
    cluster, config, is, longest_ping_gap, serve_blob, sha256_of, statuses, wait_for_pair, Fw,
    Served, LONG, POLL,
};
use serde_json::Value;
use tandem_testlab::topology::SERVER_IP;
use tandem_testlab::{require_root, wait_until, Lab, Node, Proc};

/// Master down at advbase 1 (3 s + skew/256), plus one advert interval: the longest a ping may
/// go unanswered when the primary dies.
const DETECTION: Duration = Duration::from_millis(3_004 + 1_004);

/// The states of a box as comparable tuples: (id, proto, stack, wire).
fn state_set(fw: &Fw) -> BTreeSet<(String, String, String, String)> {
    let st = fw.json(&["states"]);
    st["states"]
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

/// Both boxes with the seed's configs; A master, B backup, sync up.
fn synced_cluster(lab: &Lab) -> (Fw<'_>, Fw<'_>) {
    let (a, b) = cluster(lab);
    wait_for_pair(&a, &b);
    (a, b)
}

struct Download {
    file: std::path::PathBuf,
    got: std::path::PathBuf,
    curl: Proc,
    _server: Proc,
}

/// A 200 MB download at 20 MB/s from the server to the client (mid-way for 10 s).
fn start_download(lab: &Lab) -> Download {
    let Served { file, url, server } = serve_blob(lab, 200);
    let got = lab.log_dir().join(format!("got-{}", std::process::id()));
    let _ = std::fs::remove_file(&got);
    let curl = lab
        .spawn(
            Node::Client,
            &[
                "curl",
                "-sS",
                "--limit-rate",
                "20M",
                "--max-time",
                "120",
                "-o",
                &got.display().to_string(),
                &url,
            ],
        )
        .unwrap();
    assert!(
        wait_until(LONG, POLL, || std::fs::metadata(&got)
            .is_ok_and(|m| m.len() > 40_000_000)),
        "the download did not get going"
    );
    Download {
        file,
        got,
        curl,
        _server: server,
    }
}

impl Download {
    /// Waits for curl and checks the file: it must be whole and identical (curl fails on a reset).
    fn finish(mut self) {
        let status = self.curl.wait_timeout(Duration::from_secs(150)).unwrap();
        assert!(
            status.is_some_and(|s| s.success()),
            "the download failed (reset or stall): {}",
            self.curl.log()
        );
        assert_eq!(
            sha256_of(&self.got),
            sha256_of(&self.file),
            "the downloaded file differs"
        );
    }
}

/// Runs the seed's test with `fail` applied to A mid-download; returns the longest ping gap.
fn failover_test(tag: &str, fail: impl FnOnce(&Lab, &mut Fw)) {
    require_root();
    let lab = Lab::up(tag).expect("lab up");
    let (mut a, b) = synced_cluster(&lab);
    let ping = lab
        .spawn(
            Node::Client,
            &["ping", "-i", "0.01", "-W", "1", &SERVER_IP.to_string()],
        )
        .unwrap();
    let dl = start_download(&lab);
    assert!(
        b.counter("states") >= 1,
        "B must hold the download's state before the failure"
    );
    fail(&lab, &mut a);
    assert!(
        wait_until(LONG, POLL, || is(&b, "MASTER")),
        "B did not take over: {:?}",
        statuses(&b)
    );
    dl.finish();
    let gap = longest_ping_gap(&ping.log());
    assert!(
        Duration::from_millis(gap * 10) <= DETECTION,
        "{gap} pings (10 ms apart) unanswered: longer than the detection time {DETECTION:?}"
    );
    assert_eq!(
        b.counter("drop_tcp_bad_window"),
        0,
        "B must carry the TCP window on"
    );
    assert_eq!(
        b.counter("drop_tcp_no_state"),
        0,
        "B must hold the connection's state"
    );
    // Afterwards both boxes hold the same states (a killed A comes back and gets them by bulk).
    if a.daemon.is_none() {
        a.spawn(&config("fw-a.toml"));
    }
    assert!(
        wait_until(LONG, POLL, || {
            let (sa, sb) = (state_set(&a), state_set(&b));
            !sb.is_empty() && sa == sb
        }),
        "the boxes' states differ:\nA {:?}\nB {:?}",
        state_set(&a),
        state_set(&b)
    );
}

#[test]
fn a_download_survives_kill_9_of_the_primary() {
    failover_test("sync9", |_, a| a.kill9());
}

#[test]
fn a_download_survives_the_primarys_lan_link_going_down() {
    failover_test("synlk", |lab, _| {
        let st = Command::new("ip")
            .args([
                "-n",
                &lab.ns(Node::Switch),
                "link",
                "set",
                "fwa-lan",
                "down",
            ])
            .status()
            .unwrap();
        assert!(st.success());
    });
}

#[test]
fn a_download_survives_carp_disabled_on_the_primary() {
    failover_test("syndis", |_, a| {
        let (ok, text) = a.ctl(&["carp", "disable"]);
        assert!(ok, "carp disable: {text}");
    });
}

/// nftables in a box's namespace: drop `percent`% of the sync datagrams it receives.
fn drop_sync_datagrams(lab: &Lab, node: Node, percent: u32) {
    let rules = format!(
        "table inet tdloss {{ chain in {{ type filter hook input priority 0; ip protocol 240 numgen random mod 100 < {percent} counter drop; }}; }}"
    );
    let out = lab.exec(node, &["nft", &rules]);
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_state_tables_converge_with_5_percent_of_sync_datagrams_lost() {
    require_root();
    let lab = Lab::up("synlos").expect("lab up");
    let (a, b) = synced_cluster(&lab);
    drop_sync_datagrams(&lab, Node::Fwb, 5);
    drop_sync_datagrams(&lab, Node::Fwa, 5);
    // 300 short connections and some UDP: each an insert, updates and (for TCP) a close.
    let _server = lab
        .spawn(
            Node::Server,
            &[
                "python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                &SERVER_IP.to_string(),
            ],
        )
        .unwrap();
    let url = format!("http://{SERVER_IP}:8080/");
    assert!(wait_until(LONG, POLL, || lab
        .exec(Node::Server, &["curl", "-sf", "-o", "/dev/null", &url])
        .status
        .success()));
    let script = format!("for i in $(seq 1 300); do curl -s -o /dev/null {url} & if [ $((i % 20)) = 0 ]; then wait; fi; done; wait");
    let out = lab.exec(Node::Client, &["sh", "-c", &script]);
    assert!(out.status.success());
    for i in 0..50 {
        let _ = lab.exec(
            Node::Client,
            &[
                "bash",
                "-c",
                &format!("echo x > /dev/udp/{SERVER_IP}/{}", 5000 + i),
            ],
        );
    }
    let lost = lab.exec(Node::Fwb, &["nft", "list", "table", "inet", "tdloss"]);
    assert!(
        String::from_utf8_lossy(&lost.stdout).contains("packets"),
        "the loss rule is in place"
    );
    assert!(
        wait_until(Duration::from_secs(60), POLL, || {
            let (sa, sb) = (state_set(&a), state_set(&b));
            sa.len() > 300 && sa == sb
        }),
        "the tables did not converge: A {} states, B {} states",
        state_set(&a).len(),
        state_set(&b).len()
    );
    let sync = b.json(&["sync"]);
    assert!(
        a.counter("sync_retransmits") + b.counter("sync_retransmits") > 0,
        "loss must have been repaired: {sync}"
    );
}

#[test]
fn forged_and_replayed_sync_datagrams_create_no_state() {
    require_root();
    let lab = Lab::up("synfor").expect("lab up");
    let (a, b) = synced_cluster(&lab);
    // Record A's sync datagrams on the sync bridge while it creates a state.
    let pcap = lab.log_dir().join("sync.pcap").display().to_string();
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
                "ip proto 240 and src host 10.255.0.1",
            ],
        )
        .unwrap();
    assert!(
        wait_until(LONG, POLL, || dump.log().contains("listening on")),
        "tcpdump did not start: {}",
        dump.log()
    );
    assert!(lab.ping(Node::Client, &SERVER_IP.to_string(), 2));
    assert!(wait_until(LONG, POLL, || b.counter("states") >= 1));
    // A record after the 24-byte pcap header: A's sync datagrams are on file.
    assert!(
        wait_until(LONG, POLL, || std::fs::metadata(&pcap)
            .is_ok_and(|m| m.len() > 24 + 16 + 60)),
        "tcpdump recorded no sync datagram"
    );
    let _ = dump.kill();
    let before = (b.counter("states"), b.counter("sync_applied_inserts"));
    let replay_before = b.counter("sync_replay");
    let mac_before = b.counter("sync_bad_mac");

    // Replay everything recorded into B, on the switch port that faces it (a third box on the
    // sync link, as seen by B).
    let replay = format!(
        "import socket,struct\n\
         d=open('{pcap}','rb').read(); o=24; s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('fwb-sync',0)); n=0\n\
         while o+16<=len(d):\n  l=struct.unpack('<I',d[o+8:o+12])[0]; s.send(d[o+16:o+16+l]); o+=16+l; n+=1\n\
         print(n)"
    );
    let out = lab.exec(Node::Switch, &["python3", "-c", &replay]);
    assert!(
        out.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(sent >= 1, "nothing recorded to replay");
    assert!(
        wait_until(LONG, POLL, || b.counter("sync_replay") > replay_before),
        "replayed datagrams were not counted as replays"
    );

    // A forged one: a datagram claiming to be A's, with a made-up tag.
    let forge = "import socket\n\
         s=socket.socket(socket.AF_INET, socket.SOCK_RAW, 240); s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)\n\
         s.sendto(bytes([0x82,0,0,56]) + bytes(4*3) + (7).to_bytes(8,'big') + bytes([13,27,0,1]) + bytes(12) + bytes(16), ('10.255.0.2',0))";
    // From fwa's namespace (the kernel there owns 10.255.0.1): same source as the real peer.
    let out = lab.exec(Node::Fwa, &["python3", "-c", forge]);
    assert!(
        out.status.success(),
        "forge: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(LONG, POLL, || b.counter("sync_bad_mac")
            + b.counter("sync_bad_length")
            + b.counter("sync_malformed")
            > mac_before),
        "the forged datagram was not counted"
    );
    let after = (b.counter("states"), b.counter("sync_applied_inserts"));
    assert_eq!(
        after.1, before.1,
        "no state may be applied from forged or replayed datagrams"
    );
    assert!(after.0 <= before.0);
    drop(a);
}
