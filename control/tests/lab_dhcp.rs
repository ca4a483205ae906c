//! The DHCP server of the LAN VIP in the lab, with a real client (ISC dhclient) on macvlan
//! interfaces inside the client's namespace (its own eth0 keeps its fixed address): a lease
//! whose router and server identifier are the VIP; a second client gets another address; a
//! static mapping is honoured; a burst of malformed DHCP leaves the service answering; every
//! lease reaches B over the sync link, the client renews from B with the same address after
//! `kill -9` of A, and B keeps its leases across a restart. REQUESTs for addresses never offered
//! (the pool-starving attack) and REQUESTs in another MAC's name bind nothing.
//!
//! Needs root and isc-dhcp-client (scripts/setup). Lab tests take the machine-wide lab lock.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use common::{config, statuses, Fw, LONG, POLL};
use tandem_testlab::{require_root, wait_until, Lab, Node, Proc};

const VIP: &str = "192.168.0.10";

/// A second MAC in the client's namespace: a macvlan on eth0, no address.
fn macvlan(lab: &Lab, name: &str, mac: &str) {
    lab.run(
        Node::Client,
        &[
            "ip", "link", "add", name, "link", "eth0", "address", mac, "type", "macvlan", "mode",
            "bridge",
        ],
    );
    lab.run(Node::Client, &["ip", "link", "set", name, "up"]);
}

/// dhclient on `dev` until it holds a lease (its lease file says so), then stopped. It changes
/// nothing in the namespace (`-sf /bin/true`). Returns the lease file's text.
fn dhclient(lab: &Lab, dev: &str) -> String {
    let dir = lab.log_dir();
    let conf = dir.join("dhclient.conf");
    std::fs::write(
        &conf,
        "timeout 20;\nretry 1;\ninitial-interval 1;\nbackoff-cutoff 2;\n",
    )
    .unwrap();
    let leases: PathBuf = dir.join(format!("{dev}.leases"));
    let before = std::fs::read_to_string(&leases).unwrap_or_default();
    let p = |x: &PathBuf| x.display().to_string();
    let proc: Proc = lab
        .spawn(
            Node::Client,
            &[
                "dhclient",
                "-d",
                "-v",
                "-1",
                "-sf",
                "/bin/true",
                "-cf",
                &p(&conf),
                "-lf",
                &p(&leases),
                "-pf",
                &p(&dir.join(format!("{dev}.pid"))),
                dev,
            ],
        )
        .unwrap();
    let got = wait_until(LONG, POLL, || {
        std::fs::read_to_string(&leases)
            .is_ok_and(|t| t.len() > before.len() && t.contains("fixed-address"))
    });
    let log = proc.log();
    let _ = proc.kill();
    assert!(got, "dhclient on {dev} got no lease; its log:\n{log}");
    let text = std::fs::read_to_string(&leases).unwrap();
    // The newest lease block: dhclient appends.
    text.rsplit("lease {")
        .next()
        .unwrap_or_default()
        .to_string()
}

fn field<'a>(lease: &'a str, key: &str) -> &'a str {
    lease
        .lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .map(|v| v.trim().trim_end_matches(';').trim())
        .unwrap_or_else(|| panic!("no {key} in the lease:\n{lease}"))
}

fn leased_ips(fw: &Fw) -> Vec<(String, String, String)> {
    fw.json(&["dhcp", "leases"])["leases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (s("mac"), s("ip"), s("state"))
        })
        .collect()
}

/// The Python both scripts below start with: `send_dhcp(src_mac, body)` sends `body` as a
/// DHCP client's UDP datagram (0.0.0.0:68 to 255.255.255.255:67, checksums filled) from
/// `src_mac` on the interface argv[1].
const PY_RAW: &str = r#"
import socket, struct, random, sys
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
def send_dhcp(src_mac, body):
    src, dst = bytes(4), b'\xff\xff\xff\xff'
    ulen = 8 + len(body)
    pseudo = src + dst + struct.pack('!BBH', 0, 17, ulen)
    udp = struct.pack('!HHHH', 68, 67, ulen, 0) + body
    c = csum(pseudo + udp) or 0xffff
    udp = udp[:6] + struct.pack('!H', c) + udp[8:]
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + ulen, 0, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
    s.send(b'\xff' * 6 + src_mac + b'\x08\x00' + ip + udp)
"#;

/// DHCPREQUESTs (selecting: server identifier argv[2], requested address) for each address of
/// the lab's pool, 192.168.0.150-199, with no DISCOVER before them, each from a MAC of its own
/// (02:00:00:00:e0:NN, chaddr = source MAC); then 20 whose chaddr (02:00:00:00:e1:NN) is not
/// their source MAC; then one relayed (giaddr 10.9.9.1); then, from one MAC
/// (02:00:00:00:e0:88, chaddr = source MAC), a DHCPDECLINE of each pool address. After
/// [`PY_RAW`].
const STARVE: &str = r#"
server = socket.inet_aton(sys.argv[2])
def request(src_mac, chaddr, want, xid, giaddr=bytes(4)):
    opts = bytes([53, 1, 3, 54, 4]) + server + bytes([50, 4]) + want + bytes([255])
    body = struct.pack('!BBBBIHH4s4s4s4s', 1, 1, 6, 0, xid, 0, 0x8000, bytes(4), bytes(4),
                       bytes(4), giaddr) + chaddr + bytes(10) + bytes(192) \
        + bytes([99, 130, 83, 99]) + opts
    send_dhcp(src_mac, body)
for i in range(50):
    mac = bytes([2, 0, 0, 0, 0xe0, i])
    request(mac, mac, bytes([192, 168, 0, 150 + i]), 0x5000 + i)
for i in range(20):
    request(bytes([2, 0, 0, 0, 0xe0, 99]), bytes([2, 0, 0, 0, 0xe1, i]),
            bytes([192, 168, 0, 150 + i]), 0x6000 + i)
mac = bytes([2, 0, 0, 0, 0xe0, 77])
request(mac, mac, bytes([192, 168, 0, 190]), 0x7000, giaddr=bytes([10, 9, 9, 1]))
mac = bytes([2, 0, 0, 0, 0xe0, 0x88])
for i in range(50):
    opts = bytes([53, 1, 4, 54, 4]) + server + bytes([50, 4, 192, 168, 0, 150 + i, 255])
    body = struct.pack('!BBBBIHH4s4s4s4s', 1, 1, 6, 0, 0x8000 + i, 0, 0, bytes(4), bytes(4),
                       bytes(4), bytes(4)) + mac + bytes(10) + bytes(192) \
        + bytes([99, 130, 83, 99]) + opts
    send_dhcp(mac, body)
"#;

/// Frames to UDP 67 that are not DHCP a server can read: truncated, bad options, wrong hlen.
/// After [`PY_RAW`].
const GARBAGE: &str = r#"
mac = bytes.fromhex('020000000d66')
rnd = random.Random(7)
for i in range(int(sys.argv[2])):
    kind = i % 3
    if kind == 0:   body = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 240)))
    elif kind == 1: body = bytes([1, 1, 6, 0]) + bytes(232) + bytes([99, 130, 83, 99, 53, 200, 1])
    else:           body = bytes([1, 1, 200, 0]) + bytes(232) + bytes([99, 130, 83, 99, 53, 1, 1, 255])
    send_dhcp(mac, body)
"#;

#[test]
fn dhcp_on_the_lan_vip() {
    require_root();
    let lab = Lab::up("dhcp").expect("lab up");
    let b = Fw::start(&lab, Node::Fwb, &config("fw-b.toml"));
    let a = Fw::start(&lab, Node::Fwa, &config("fw-a.toml"));
    assert!(
        wait_until(LONG, POLL, || statuses(&a)
            == BTreeSet::from(["MASTER".into()])
            && statuses(&b) == BTreeSet::from(["BACKUP".into()])),
        "A {:?} B {:?}",
        statuses(&a),
        statuses(&b)
    );

    // A first client: a pool address, with the VIP as router and server identifier.
    macvlan(&lab, "d1", "02:00:00:00:d0:01");
    let l1 = dhclient(&lab, "d1");
    let ip1 = field(&l1, "fixed-address").to_string();
    assert!(
        ip1.starts_with("192.168.0.1") && ip1 != "192.168.0.100",
        "{l1}"
    );
    assert_eq!(field(&l1, "option routers"), VIP, "{l1}");
    assert_eq!(field(&l1, "option dhcp-server-identifier"), VIP, "{l1}");
    assert!(
        leased_ips(&a).contains(&("02:00:00:00:d0:01".into(), ip1.clone(), "bound".into())),
        "A's leases: {:?}",
        leased_ips(&a)
    );
    // Only the master answered.
    assert_eq!(b.counter("dhcp_offers") + b.counter("dhcp_acks"), 0);
    assert!(b.counter("dhcp_not_master") > 0);

    // A second client gets another address.
    macvlan(&lab, "d3", "02:00:00:00:d0:03");
    let ip3 = field(&dhclient(&lab, "d3"), "fixed-address").to_string();
    assert_ne!(ip3, ip1);

    // The static mapping of the lab configs.
    macvlan(&lab, "d2", "02:00:00:00:d0:02");
    let l2 = dhclient(&lab, "d2");
    assert_eq!(field(&l2, "fixed-address"), "192.168.0.50", "{l2}");

    // A burst of malformed DHCP: counted, dropped, and the service still answers.
    let dropped = |fw: &Fw| fw.counter("dhcp_malformed") + fw.counter("drop_dhcp_queue_full");
    let malformed = dropped(&a);
    let script = lab.log_dir().join("garbage.py");
    std::fs::write(&script, format!("{PY_RAW}{GARBAGE}")).unwrap();
    let out = lab.exec(
        Node::Client,
        &["python3", &script.display().to_string(), "eth0", "300"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(5), POLL, || dropped(&a)
            >= malformed + 250),
        "malformed or queue full: {} -> {}",
        malformed,
        dropped(&a)
    );

    // The pool-starving attack: a REQUEST for each pool address with no DISCOVER before it,
    // each from a MAC of its own (chaddr = source MAC), REQUESTs whose chaddr is not their
    // source MAC, and a relayed one. The first are NAKed, the others dropped; none binds
    // anything. Then one host declines every pool address: none was given to it, so none is
    // taken out of the pool (before the fix all 50 were, for 10 minutes, and the next client
    // got no offer).
    // Two of the addresses are the first two clients' (NAKed as another client's).
    let (naks, unoffered, mismatch, relayed, ignored) = (
        a.counter("dhcp_naks"),
        a.counter("dhcp_unoffered"),
        a.counter("dhcp_chaddr_mismatch"),
        a.counter("dhcp_relayed"),
        a.counter("dhcp_ignored"),
    );
    let script = lab.log_dir().join("starve.py");
    std::fs::write(&script, format!("{PY_RAW}{STARVE}")).unwrap();
    let out = lab.exec(
        Node::Client,
        &["python3", &script.display().to_string(), "eth0", VIP],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(LONG, POLL, || a.counter("dhcp_naks") >= naks + 50
            && a.counter("dhcp_unoffered") >= unoffered + 48
            && a.counter("dhcp_chaddr_mismatch") >= mismatch + 20
            && a.counter("dhcp_relayed") > relayed
            && a.counter("dhcp_ignored") >= ignored + 50),
        "naks {} -> {}, unoffered {} -> {}, chaddr mismatch {} -> {}, relayed {} -> {}, \
         ignored {} -> {}",
        naks,
        a.counter("dhcp_naks"),
        unoffered,
        a.counter("dhcp_unoffered"),
        mismatch,
        a.counter("dhcp_chaddr_mismatch"),
        relayed,
        a.counter("dhcp_relayed"),
        ignored,
        a.counter("dhcp_ignored"),
    );
    assert_eq!(a.counter("dhcp_declines"), 0, "a decline was taken");
    let taken: Vec<_> = leased_ips(&a)
        .into_iter()
        .filter(|(mac, _, _)| mac.starts_with("02:00:00:00:e"))
        .collect();
    assert!(taken.is_empty(), "the attack bound {taken:?}");

    macvlan(&lab, "d4", "02:00:00:00:d0:04");
    let ip4 = field(&dhclient(&lab, "d4"), "fixed-address").to_string();
    assert!(![ip1.as_str(), ip3.as_str(), "192.168.0.50"].contains(&ip4.as_str()));
    assert!(a.daemon.is_some());

    // Every lease reached B over the sync link.
    for (mac, ip) in [("02:00:00:00:d0:01", &ip1), ("02:00:00:00:d0:03", &ip3)] {
        let want = (mac.to_string(), ip.clone(), "bound".to_string());
        assert!(
            wait_until(LONG, POLL, || leased_ips(&b).contains(&want)),
            "B does not hold {want:?}: {:?}",
            leased_ips(&b)
        );
    }
    assert!(b.counter("sync_rx_lease") >= 2);

    // A dies: B takes the VIP, and the first client renews from B with the same address.
    let mut a = a;
    a.kill9();
    assert!(
        wait_until(LONG, POLL, || statuses(&b)
            == BTreeSet::from(["MASTER".into()])),
        "B did not take over"
    );
    let acks = b.counter("dhcp_acks");
    let again = dhclient(&lab, "d1");
    assert_eq!(field(&again, "fixed-address"), ip1, "{again}");
    assert_eq!(
        field(&again, "option dhcp-server-identifier"),
        VIP,
        "{again}"
    );
    assert!(
        b.counter("dhcp_acks") > acks,
        "B did not answer the renewal"
    );

    // B restarted while A is dead: its leases come back from its state dir.
    let mut b = b;
    b.kill9();
    b.spawn(&config("fw-b.toml"));
    assert!(
        leased_ips(&b)
            .iter()
            .any(|(m, ip, _)| m == "02:00:00:00:d0:01" && ip == &ip1),
        "B forgot its leases across a restart: {:?}",
        leased_ips(&b)
    );
}
