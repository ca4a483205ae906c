//! UDP view. Input: 4 bytes source address, 4 bytes destination, then the datagram. After
//! `new_checked` no accessor panics; with its checksum filled a datagram parses, and emitting
//! the parsed repr over the same payload gives the same bytes back.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use tandem_dataplane::wire::udp::{UdpPacket, UdpRepr, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((addrs, dgram)) = data.split_at_checked(8) else {
        return;
    };
    let src = Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]);
    let dst = Ipv4Addr::new(addrs[4], addrs[5], addrs[6], addrs[7]);
    let Ok(p) = UdpPacket::new_checked(dgram) else {
        return;
    };
    let _ = (
        p.src_port(),
        p.dst_port(),
        p.checksum(),
        p.verify_checksum(src, dst),
    );
    assert_eq!(p.payload().len(), usize::from(p.len()) - HEADER_LEN);
    let _ = UdpRepr::parse(&p, src, dst);

    let len = usize::from(p.len());
    let mut copy = dgram[..len].to_vec();
    let mut m = UdpPacket::new_unchecked(&mut copy[..]);
    m.fill_checksum(src, dst);
    assert!(
        m.verify_checksum(src, dst),
        "fill_checksum makes the datagram verify"
    );
    let repr =
        UdpRepr::parse(&m, src, dst).expect("a checked datagram with a good checksum parses");
    let mut out = copy.clone();
    repr.emit(&mut UdpPacket::new_unchecked(&mut out[..]), src, dst);
    assert_eq!(out, copy, "emit(parse(x)) == x");
});
