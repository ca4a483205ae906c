//! DHCP requests, as the DHCP thread reads them: the input is the BOOTP message, put in an
//! Ethernet/IPv4/UDP frame to port 67 with valid checksums (so that the fuzzer works on the
//! message, not on the checksums) and read by `dhcp::wire::parse`. A request that parses then
//! drives a 16-address pool as the server would (DISCOVER offers, REQUEST binds, RELEASE and
//! DECLINE end), twice, the second time later. Nothing panics (dhcproto's option decoders
//! included: this build has debug assertions), no address is bound to two clients, and no more
//! addresses are bound than the pool has.
#![no_main]

use std::collections::HashSet;
use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, MessageType, OptionCode};
use libfuzzer_sys::fuzz_target;
use tandem_control::config::Dhcp;
use tandem_control::dhcp::pool::{LeaseState, Pool};
use tandem_control::dhcp::wire;
use tandem_dataplane::wire::MacAddr;

const FIRST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 150);
const LAST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 165);

fn frame(message: &[u8]) -> Vec<u8> {
    let a = wire::Addressing {
        src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
        dst_mac: MacAddr::BROADCAST,
        src_ip: Ipv4Addr::UNSPECIFIED,
        dst_ip: Ipv4Addr::BROADCAST,
    };
    wire::udp_frame(message, &a, wire::CLIENT_PORT, wire::SERVER_PORT)
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 1500 {
        return;
    }
    let Ok(req) = wire::parse(&frame(data)) else {
        return;
    };
    let mut pool = Pool::new(&Dhcp {
        interface: "lan".into(),
        enabled: true,
        ranges: vec![(FIRST, LAST)],
        gateway: Ipv4Addr::new(192, 168, 0, 10),
        dns: Vec::new(),
        domain: None,
        lease_time: 100,
        statics: Vec::new(),
        description: String::new(),
        no_sync: false,
        verify_chaddr: true,
    });
    let opts = req.msg.opts();
    let requested = match opts.get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let hostname = match opts.get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) => h.clone(),
        _ => String::new(),
    };
    let mac = req.chaddr;
    for now in [1u64, 1000] {
        let ms = now * 1000;
        match req.kind {
            MessageType::Discover => {
                if let Some(ip) = pool.offer(mac, requested, now) {
                    assert!((FIRST..=LAST).contains(&ip), "offered {ip}");
                }
            }
            MessageType::Request => {
                let ip = requested.unwrap_or(req.msg.ciaddr());
                let _ = pool.request(mac, ip, &hostname, now, ms);
                // What a client that follows the protocol gets.
                if let Some(offered) = pool.offer(mac, requested, now) {
                    let l = pool.request(mac, offered, &hostname, now, ms).unwrap();
                    assert!(l
                        .hostname
                        .bytes()
                        .all(|b| b == b' ' || b.is_ascii_graphic()));
                }
            }
            MessageType::Release => {
                let _ = pool.end(mac, req.msg.ciaddr(), LeaseState::Released, now, ms);
            }
            MessageType::Decline => {
                let ip = requested.unwrap_or(Ipv4Addr::UNSPECIFIED);
                let _ = pool.end(mac, ip, LeaseState::Declined, now, ms);
            }
            _ => {}
        }
        pool.expire(now, ms);
        let mut bound = HashSet::new();
        for l in pool.leases().filter(|l| l.state == LeaseState::Bound) {
            assert!((FIRST..=LAST).contains(&l.ip), "bound {}", l.ip);
            assert!(bound.insert(l.ip), "{} bound twice", l.ip);
        }
    }
});
