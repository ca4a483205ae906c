//! ARP view: after `new_checked` (length and Ethernet/IPv4 format) no accessor panics, and a
//! parsed packet emits back to the same 28 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_dataplane::wire::arp::{ArpPacket, ArpRepr, PACKET_LEN};

fuzz_target!(|data: &[u8]| {
    // Accessors of an unchecked view may panic by contract; check_len/check_format must not.
    let raw = ArpPacket::new_unchecked(data);
    let _ = raw.check_len();
    if raw.check_len().is_ok() {
        let _ = raw.check_format();
    }
    let Ok(p) = ArpPacket::new_checked(data) else {
        return;
    };
    let _ = (
        p.hardware_type(),
        p.protocol_type(),
        p.hardware_len(),
        p.protocol_len(),
        p.operation(),
        p.source_hardware_addr(),
        p.source_protocol_addr(),
        p.target_hardware_addr(),
        p.target_protocol_addr(),
    );
    let repr = ArpRepr::parse(&p).expect("a checked packet parses");
    let mut out = [0u8; PACKET_LEN];
    repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
    assert_eq!(&out[..], &data[..PACKET_LEN], "emit(parse(x)) == x");
    assert_eq!(
        ArpRepr::parse(&ArpPacket::new_unchecked(&out[..])).expect("reparse"),
        repr
    );
});
