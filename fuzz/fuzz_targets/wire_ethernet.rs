//! Ethernet view: after `new_checked` no accessor panics, and a parsed header emits back to the
//! same 14 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_dataplane::wire::ethernet::{EthernetFrame, EthernetRepr, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = EthernetFrame::new_checked(data) else {
        assert!(data.len() < HEADER_LEN, "a full header must pass check_len");
        return;
    };
    let _ = (frame.dst_addr(), frame.src_addr(), frame.ethertype());
    assert_eq!(frame.payload().len(), data.len() - HEADER_LEN);
    if let Ok(repr) = EthernetRepr::parse(&frame) {
        let mut out = [0u8; HEADER_LEN];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
        assert_eq!(&out[..], &data[..HEADER_LEN], "emit(parse(x)) == x");
        let again = EthernetRepr::parse(&EthernetFrame::new_unchecked(&out[..])).expect("reparse");
        assert_eq!(again, repr);
    }
});
