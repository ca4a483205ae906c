//! Malformed frames through the lab's switch reach the box's dataplane, and are counted there.
//!
//! The lab's switch is a plain L2 switch: `scripts/lab` turns bridge netfilter off in its
//! namespace. With it on, the bridge validates IPv4 as a router does and drops a bad header or
//! checksum itself, so a garbage test sending through the switch would pass without ever testing
//! the dataplane (issue 10.12). Here the same frames go through the bridge from the client, and
//! straight into the box from the switch port that faces it, and the box's drop counters must
//! move by exactly what was sent.
//!
//! Needs root. Lab tests take the machine-wide lab lock: one at a time.

mod common;

use common::{config, Fw, LONG, POLL};
use tandem_testlab::topology::{mac, mac_string, CLIENT_IP, SERVER_IP};
use tandem_testlab::{require_root, wait_until, Lab, Node};

/// Frames of each kind sent per injection.
const N: u64 = 5;

/// A python script that sends, on `ifname`, `N` IPv4 frames from the client to fwa's LAN MAC
/// with a wrong header checksum, then `N` with a header length of 4 words (too short).
fn garbage_script(ifname: &str) -> String {
    let dst = mac_string(mac(Node::Fwa, "lan").expect("fwa lan mac")).replace(':', "");
    let src = mac_string(mac(Node::Client, "eth0").expect("client mac")).replace(':', "");
    let (sip, dip) = (CLIENT_IP.octets(), SERVER_IP.octets());
    format!(
        "import socket,struct\n\
         def csum(b):\n  c=sum(struct.unpack('!10H',b)); c=(c&0xffff)+(c>>16); c=(c&0xffff)+(c>>16); return 0xffff-c\n\
         def frame(vihl,bad):\n  udp=struct.pack('!HHHH',5000,9,12,0)+b'junk'\n  \
           h=bytearray(struct.pack('!BBHHHBBH4s4s',vihl,0,20+len(udp),1,0,64,17,0,bytes({sip:?}),bytes({dip:?})))\n  \
           c=csum(bytes(h))^(0x5555 if bad else 0); h[10:12]=struct.pack('!H',c)\n  \
           f=bytes.fromhex('{dst}{src}0800')+bytes(h)+udp; return f+bytes(max(0,60-len(f)))\n\
         s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW); s.bind(('{ifname}',0))\n\
         for _ in range({N}): s.send(frame(0x45,True))\n\
         for _ in range({N}): s.send(frame(0x44,False))\n"
    )
}

/// Runs the injection on `node`'s `ifname`.
fn inject(lab: &Lab, node: Node, ifname: &str) {
    let out = lab.exec(node, &["python3", "-c", &garbage_script(ifname)]);
    assert!(
        out.status.success(),
        "inject on {node} {ifname}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn drops(fw: &Fw) -> (u64, u64) {
    (
        fw.counter("drop_ipv4_checksum"),
        fw.counter("drop_ipv4_malformed"),
    )
}

/// Injects on `node`'s `ifname` and waits for both drop counters to move by N.
fn injected_frames_are_counted(fw: &Fw, node: Node, ifname: &str) {
    let (csum0, bad0) = drops(fw);
    inject(fw.lab, node, ifname);
    let arrived = wait_until(LONG, POLL, || drops(fw) == (csum0 + N, bad0 + N));
    assert!(
        arrived,
        "{N} bad-checksum and {N} short-header frames sent on {node} {ifname}: the box counted \
         {:?} more (a switch running bridge netfilter drops them before the box)",
        {
            let (c, b) = drops(fw);
            (c - csum0, b - bad0)
        }
    );
}

#[test]
fn malformed_ipv4_through_the_switch_reaches_the_box_and_is_counted() {
    require_root();
    let lab = Lab::up("garbg").expect("lab up");
    let fw = Fw::start(&lab, Node::Fwa, &config("fw-single.toml"));

    // Through the bridge, as a LAN host sends: what bridge netfilter would eat.
    injected_frames_are_counted(&fw, Node::Client, "eth0");
    // Straight into the box from the switch port that faces it: the garbage tests' way.
    injected_frames_are_counted(&fw, Node::Switch, "fwa-lan");

    // The box still forwards (nothing above disturbed it).
    assert!(lab.ping(Node::Client, &SERVER_IP.to_string(), 2));
}
