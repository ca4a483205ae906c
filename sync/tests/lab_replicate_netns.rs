//! RawIpSocket on a real link: two network namespaces joined by a veth pair, a Replicator at
//! each end (unicast, then multicast 224.0.0.240), states replicated through the kernel.
//! Needs root; takes the machine-wide lab lock.

mod common;

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tandem_dataplane::state::{Clock, StateTable, TableConfig};
use tandem_sync::journal::{JournalConfig, SyncJournal};
use tandem_sync::replicate::{Replicator, SyncConfig};
use tandem_sync::socket::RawIpSocket;
use tandem_sync::transport::Transport;

struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {args:?}");
}

/// Open a RawIpSocket inside namespace `ns` (setns on a throwaway thread: the socket keeps
/// its namespace, the test thread keeps its own).
fn open_in(ns: &str, ifname: &str, peer: Option<Ipv4Addr>) -> RawIpSocket {
    let path = format!("/var/run/netns/{ns}");
    let ifname = ifname.to_owned();
    std::thread::spawn(move || {
        let f = File::open(&path).expect("netns file");
        // SAFETY: setns on this thread only, with a namespace fd we hold open.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        RawIpSocket::open(&ifname, peer).expect("raw socket")
    })
    .join()
    .expect("socket thread")
}

struct End {
    table: Arc<StateTable>,
    worker: Producer,
    rep: Replicator,
    sock: RawIpSocket,
}

fn end(host: u32, sock: RawIpSocket, peer: Option<Ipv4Addr>) -> End {
    let journal = Arc::new(SyncJournal::new(JournalConfig::default()));
    let table = Arc::new(StateTable::with_journal(
        TableConfig {
            creator: host,
            ..TableConfig::default()
        },
        journal.clone(),
    ));
    let rep = Replicator::new(
        SyncConfig::new(host, key(), peer),
        table.clone(),
        journal.clone(),
    );
    End {
        worker: table.producer(),
        table,
        rep,
        sock,
    }
}

fn drive(a: &mut End, b: &mut End, clock: &Clock, until: impl Fn(&End, &End) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        a.rep.poll(&mut a.sock, clock.now_ms());
        b.rep.poll(&mut b.sock, clock.now_ms());
        if until(a, b) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

fn replicate_over(a: &mut End, b: &mut End, clock: &Clock) {
    assert!(
        drive(a, b, clock, |a, b| !a.rep.bulk_pending()
            && !b.rep.bulk_pending()),
        "bulk: {:?} / {:?}",
        a.rep.status(),
        b.rep.counters()
    );
    for i in 0..100 {
        let s = insert_tcp(&a.table, &a.worker, i, true, clock.now_ms());
        establish(&a.table, &a.worker, &s, clock.now_ms());
    }
    assert!(
        drive(a, b, clock, |a, b| b.table.len() == a.table.len()),
        "B has {} states",
        b.table.len()
    );
    assert_same(&a.table, &b.table);
    let c = b.rep.counters();
    assert_eq!(c.bad_ttl + c.bad_source + c.bad_mac + c.malformed, 0);
    assert!(c.rx_ins >= 100);
}

#[test]
fn raw_sockets_replicate_across_a_veth_pair() {
    tandem_testlab::require_root();
    let _lock = tandem_testlab::lock().expect("lab lock");
    let p = tandem_testlab::unique_prefix("sync");
    let (na, nb) = (format!("{p}a"), format!("{p}b"));
    ip(&["netns", "add", &na]);
    let _guard = Netns(vec![na.clone()]);
    ip(&["netns", "add", &nb]);
    let _guard_b = Netns(vec![nb.clone()]);
    ip(&[
        "-n", &na, "link", "add", "synca", "type", "veth", "peer", "name", "syncb", "netns", &nb,
    ]);
    ip(&["-n", &na, "addr", "add", "10.77.0.1/24", "dev", "synca"]);
    ip(&["-n", &nb, "addr", "add", "10.77.0.2/24", "dev", "syncb"]);
    ip(&["-n", &na, "link", "set", "synca", "up"]);
    ip(&["-n", &nb, "link", "set", "syncb", "up"]);
    let clock = Clock::new();

    // Unicast.
    let (pa, pb) = (Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2));
    let mut a = end(1, open_in(&na, "synca", Some(pb)), Some(pb));
    let mut b = end(2, open_in(&nb, "syncb", Some(pa)), Some(pa));
    assert_eq!(a.sock.destination(), pb);
    assert!(a.sock.fd() >= 0);
    replicate_over(&mut a, &mut b, &clock);

    // The kernel's source address reaches the check: B2 on the same link expects another
    // peer, so A's datagram is `bad_source` there.
    let mut b2 = end(
        3,
        open_in(&nb, "syncb", Some(Ipv4Addr::new(10, 77, 0, 9))),
        Some(Ipv4Addr::new(10, 77, 0, 9)),
    );
    let mut stray = open_in(&na, "synca", Some(pb));
    stray.send(&[0u8; 40]).expect("send");
    assert!(tandem_testlab::wait_until(
        Duration::from_secs(2),
        Duration::from_millis(5),
        || {
            b2.rep.poll(&mut b2.sock, clock.now_ms());
            b2.rep.counters().bad_source >= 1
        }
    ));
    drop((a, b, b2));

    // Multicast 224.0.0.240.
    let mut a = end(11, open_in(&na, "synca", None), None);
    let mut b = end(12, open_in(&nb, "syncb", None), None);
    assert_eq!(a.sock.destination(), tandem_sync::socket::SYNC_GROUP);
    replicate_over(&mut a, &mut b, &clock);
    assert_eq!(a.rep.counters().own_host, 0, "multicast looped back");
}
