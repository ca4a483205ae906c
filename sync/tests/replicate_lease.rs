//! DHCP leases over the sync link: sent in order with the states, the newer record wins, and a
//! box that joins gets every lease in its bulk update.

mod common;

use std::net::Ipv4Addr;

use common::*;
use tandem_sync::journal::JournalConfig;
use tandem_sync::replicate::Event;
use tandem_sync::transport::mem_pair;
use tandem_sync::wire::{LeaseRecord, LEASE_HOSTNAME};

fn lease(ip: u8, updated_ms: u64) -> LeaseRecord {
    let mut hostname = [0u8; LEASE_HOSTNAME];
    hostname[..6].copy_from_slice(b"client");
    LeaseRecord {
        mac: [2, 0, 0, 0, 0xd0, ip],
        ip: Ipv4Addr::new(192, 168, 0, ip),
        expires: 1_800_000_000,
        updated_ms,
        state: 1,
        hostname,
        hostname_len: 6,
    }
}

fn leases_seen(n: &Node) -> Vec<LeaseRecord> {
    n.events
        .iter()
        .filter_map(|e| match e {
            Event::Lease(l) => Some(*l),
            _ => None,
        })
        .collect()
}

#[test]
fn a_lease_reaches_the_peer_and_only_a_newer_one_replaces_it() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 200);
    a.rep.send_lease(lease(150, 1_000));
    run(&mut a, &mut b, 200, 250);
    assert_eq!(leases_seen(&b), [lease(150, 1_000)]);
    assert_eq!(a.counter("tx_lease"), 1);
    assert_eq!(b.counter("rx_lease"), 1);
    // An older record (a late or replayed change) is not news; a newer one is.
    b.events.clear();
    a.rep.send_lease(lease(150, 900));
    a.rep.send_lease(lease(150, 2_000));
    run(&mut a, &mut b, 250, 300);
    assert_eq!(leases_seen(&b), [lease(150, 2_000)]);
    // What B heard it does not send back.
    assert_eq!(b.counter("tx_lease"), 0);
}

#[test]
fn a_box_that_joins_gets_every_lease_in_its_bulk_update() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 200);
    for ip in 150..160 {
        a.rep.send_lease(lease(ip, 1_000));
    }
    run(&mut a, &mut b, 200, 250);
    // B restarts: a new replicator with a new boot, which asks A for a bulk update.
    let (ta, tb) = mem_pair(A_ADDR, B_ADDR);
    a.t = ta;
    let mut b2 = node_with(config(2, 0xb002, A_ADDR), JournalConfig::default(), tb);
    run(&mut a, &mut b2, 250, 1_000);
    assert!(!b2.rep.bulk_pending());
    let mut got: Vec<u8> = leases_seen(&b2).iter().map(|l| l.ip.octets()[3]).collect();
    got.sort_unstable();
    assert_eq!(got, (150..160).collect::<Vec<u8>>());
}
