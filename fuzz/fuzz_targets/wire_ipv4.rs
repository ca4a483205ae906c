//! IPv4 view: after `new_checked` (or `new_checked_quoted`, for quotes in ICMP errors) no
//! accessor panics; the incremental TTL decrement keeps a valid checksum valid; a parsed header
//! emits to a header that parses to the same repr.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_dataplane::wire::ipv4::{Ipv4Packet, Ipv4Repr, HEADER_LEN};

fn touch<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) {
    let _ = (
        p.version(),
        p.header_len(),
        p.dscp_ecn(),
        p.dscp(),
        p.ecn(),
        p.total_len(),
        p.ident(),
        p.dont_frag(),
        p.more_frags(),
        p.frag_offset(),
        p.is_fragment(),
        p.is_first_fragment(),
        p.ttl(),
        p.next_header(),
        p.checksum(),
        p.src_addr(),
        p.dst_addr(),
        p.options().len(),
        p.header().len(),
        p.payload().len(),
        p.verify_checksum(),
    );
    assert!(p.header_len() >= HEADER_LEN);
    assert_eq!(p.header().len(), p.header_len());
    assert_eq!(p.options().len(), p.header_len() - HEADER_LEN);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = Ipv4Packet::new_checked_quoted(data) {
        touch(&q);
    }
    let Ok(p) = Ipv4Packet::new_checked(data) else {
        return;
    };
    touch(&p);
    assert!(usize::from(p.total_len()) <= data.len());
    assert_eq!(
        p.payload().len(),
        usize::from(p.total_len()) - p.header_len()
    );

    // A router's TTL decrement (RFC 1624) must keep a correct checksum correct.
    let mut copy = data.to_vec();
    let mut m = Ipv4Packet::new_unchecked(&mut copy[..]);
    m.fill_checksum();
    assert!(m.verify_checksum(), "fill_checksum makes the header verify");
    let ttl = m.ttl();
    let new = m.decrement_ttl_incremental();
    assert_eq!(new, ttl.saturating_sub(1));
    assert!(
        m.verify_checksum(),
        "TTL {ttl}: incremental update broke the checksum"
    );

    if let Ok(repr) = Ipv4Repr::parse(&p) {
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
        let back = Ipv4Packet::new_checked(&out[..]).expect("an emitted header is well formed");
        assert_eq!(Ipv4Repr::parse(&back).expect("reparse"), repr);
    }
});
