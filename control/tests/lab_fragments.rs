//! Fragments through the cluster with real kernels (issue 10.8): `ping -s 3000` and 4000-byte
//! UDP datagrams echoed by the server, from the client through A (NAT to the WAN VIP), then
//! again after A is killed with kill -9 and B has taken over. The senders' kernels fragment
//! (1500-byte MTU everywhere) and the receivers' reassemble, so a datagram arrives only if every
//! fragment passed and the NAT kept the UDP/ICMP checksum, which covers the whole datagram,
//! right.
//!
//! After the failover the UDP exchange reuses the client's source port: its state came to B by
//! state sync, so B's first fragments meet a synced state and the same NAT mapping. Fragment
//! table entries are not synced (they live for one datagram): a datagram cut in half by the
//! failover is lost, the next ones pass.
//!
//! Needs root. Lab tests take the machine-wide lab lock: one at a time.

mod common;

use common::{config, is, statuses, wait_for_pair, Fw, LONG, POLL};
use tandem_testlab::topology::SERVER_IP;
use tandem_testlab::{require_root, wait_until, Lab, Node};

/// The server's side: echoes every datagram to its sender.
const ECHO_SERVER: &str = "
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    d, a = s.recvfrom(65535)
    s.sendto(d, a)
";

/// The client's side: sends `count` datagrams of `size` bytes from a fixed source port, each
/// numbered, and waits for each echo (three tries of 1 s). Prints `ok N` and exits 0 when
/// every echo came back intact.
const ECHO_CLIENT: &str = "
import os, socket, sys
server, port, sport, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', sport))
s.settimeout(1.0)
ok = 0
for i in range(count):
    msg = i.to_bytes(4, 'big') + os.urandom(size - 4)
    for attempt in range(3):
        s.sendto(msg, (server, port))
        try:
            while True:
                d, _ = s.recvfrom(65535)
                if d[:4] == msg[:4]:
                    break
            if d == msg:
                ok += 1
            else:
                print('corrupt echo', i, len(d))
            break
        except socket.timeout:
            print('timeout', i, attempt)
print('ok', ok)
sys.exit(0 if ok == count else 1)
";

const UDP_PORT: &str = "9000";
const CLIENT_PORT: &str = "40000";

/// `ping -s 3000` from the client to the server: every reply back (retried for up to 30 s
/// while the path settles: ARP, a takeover).
fn big_ping_passes(lab: &Lab) -> (bool, String) {
    let server = SERVER_IP.to_string();
    let mut last = String::new();
    let ok = wait_until(LONG, POLL, || {
        let out = lab.exec(
            Node::Client,
            &[
                "ping", "-n", "-c", "3", "-i", "0.2", "-s", "3000", "-W", "2", &server,
            ],
        );
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success() && last.contains(" 0% packet loss")
    });
    (ok, last)
}

/// 20 datagrams of 4000 bytes echoed by the server, every one intact.
fn udp_exchange(lab: &Lab) -> (bool, String) {
    let server = SERVER_IP.to_string();
    let out = lab.exec(
        Node::Client,
        &[
            "python3",
            "-c",
            ECHO_CLIENT,
            &server,
            UDP_PORT,
            CLIENT_PORT,
            "20",
            "4000",
        ],
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn big_pings_and_4000_byte_udp_pass_fragmented_before_and_after_a_failover() {
    require_root();
    let lab = Lab::up("frag").expect("lab up");
    let mut b = Fw::start(&lab, Node::Fwb, &config("fw-b.toml"));
    let mut a = Fw::start(&lab, Node::Fwa, &config("fw-a.toml"));
    wait_for_pair(&a, &b);
    let server = SERVER_IP.to_string();
    let _echo = lab
        .spawn(
            Node::Server,
            &["python3", "-c", ECHO_SERVER, &server, UDP_PORT],
        )
        .unwrap();

    // Through A.
    let (ok, log) = big_ping_passes(&lab);
    assert!(ok, "ping -s 3000 through A: {log}");
    let (ok, log) = udp_exchange(&lab);
    assert!(ok, "4000-byte UDP through A: {log}");
    let followers = a.counter("frag_followers");
    eprintln!(
        "A: frag_flows_created {} frag_followers {followers} drop_frag_no_first {}",
        a.counter("frag_flows_created"),
        a.counter("drop_frag_no_first")
    );
    // Each 3000-byte echo and each 4000-byte datagram is three fragments: two followers, each
    // way.
    assert!(
        followers >= 3 * 2 * 2 + 20 * 2 * 2,
        "A forwarded {followers} later fragments"
    );
    assert_eq!(a.counter("frag_flows_evicted"), 0);
    assert_eq!(a.counter("drop_frag_overlap"), 0);
    assert!(
        wait_until(LONG, POLL, || b.counter("states") >= 2),
        "B holds the ping's and the UDP exchange's states"
    );

    // A dies; B takes over.
    a.kill9();
    assert!(
        wait_until(LONG, POLL, || is(&b, "MASTER")),
        "B did not take over: {:?}",
        statuses(&b)
    );
    let (ok, log) = big_ping_passes(&lab);
    assert!(ok, "ping -s 3000 through B after the failover: {log}");
    let (ok, log) = udp_exchange(&lab);
    assert!(ok, "4000-byte UDP through B after the failover: {log}");
    let followers = b.counter("frag_followers");
    eprintln!(
        "B: frag_flows_created {} frag_followers {followers} drop_frag_no_first {}",
        b.counter("frag_flows_created"),
        b.counter("drop_frag_no_first")
    );
    assert!(
        followers >= 3 * 2 * 2 + 20 * 2 * 2,
        "B forwarded {followers} later fragments"
    );
    assert_eq!(b.counter("frag_flows_evicted"), 0);
    // Nothing ran across the takeover itself: every later fragment found its first.
    assert_eq!(
        b.counter("drop_frag_no_first"),
        0,
        "no later fragment came without its first"
    );
    b.kill9();
}
