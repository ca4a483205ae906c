//! TCP view. Input: 4 bytes source address, 4 bytes destination, then the segment. After
//! `new_checked` no accessor panics (options included); with its checksum filled a segment
//! parses, and the parsed header emits to one that parses the same.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use tandem_dataplane::wire::tcp::{TcpPacket, TcpRepr};

fuzz_target!(|data: &[u8]| {
    let Some((addrs, seg)) = data.split_at_checked(8) else {
        return;
    };
    let src = Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]);
    let dst = Ipv4Addr::new(addrs[4], addrs[5], addrs[6], addrs[7]);
    let Ok(p) = TcpPacket::new_checked(seg) else {
        return;
    };
    let _ = (
        p.src_port(),
        p.dst_port(),
        p.seq_number(),
        p.ack_number(),
        p.flags(),
        p.window_len(),
        p.checksum(),
        p.urgent_at(),
        p.options().len(),
        p.segment_len(),
        p.parse_options(),
        p.verify_checksum(src, dst),
        TcpRepr::reset_for(&p),
    );
    assert_eq!(p.options().len() + 20 + p.payload().len(), seg.len());
    let _ = TcpRepr::parse(&p, src, dst);

    let mut copy = seg.to_vec();
    let mut m = TcpPacket::new_unchecked(&mut copy[..]);
    m.fill_checksum(src, dst);
    assert!(
        m.verify_checksum(src, dst),
        "fill_checksum makes the segment verify"
    );
    let repr = TcpRepr::parse(&m, src, dst).expect("a checked segment with a good checksum parses");
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut TcpPacket::new_unchecked(&mut out[..]), src, dst);
    let back = TcpPacket::new_checked(&out[..]).expect("an emitted header is well formed");
    assert_eq!(TcpRepr::parse(&back, src, dst).expect("reparse"), repr);
});
