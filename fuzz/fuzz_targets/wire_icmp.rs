//! ICMP view: after `new_checked` no accessor panics; an error's quote wraps as a quoted IPv4
//! header; a parsed message emits back to the same bytes; echo-to-reply and the errors we build
//! about any datagram keep checksums valid; a quoted TCP header reads when 8 bytes are there.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_dataplane::wire::icmp::{
    emit_icmp_error, IcmpErrorKind, IcmpPacket, IcmpRepr, IcmpType, HEADER_LEN,
};
use tandem_dataplane::wire::ipv4::Ipv4Packet;
use tandem_dataplane::wire::tcp::QuotedTcp;

fuzz_target!(|data: &[u8]| {
    // We build errors about whatever arrives: the quote must stay inside the buffer's bounds.
    let mut err = [0u8; 8 + 60 + 8];
    for kind in [
        IcmpErrorKind::DstUnreachable(3),
        IcmpErrorKind::FragNeeded { next_hop_mtu: 1400 },
        IcmpErrorKind::TimeExceeded(0),
    ] {
        let n = emit_icmp_error(&mut err, kind, data);
        assert!(n >= HEADER_LEN && n <= err.len());
        let e = IcmpPacket::new_checked(&err[..n]).expect("an emitted error is well formed");
        assert!(e.verify_checksum(), "emitted error checksum");
    }

    let Ok(p) = IcmpPacket::new_checked(data) else {
        return;
    };
    let _ = (
        p.msg_type(),
        p.msg_code(),
        p.checksum(),
        p.echo_ident(),
        p.echo_seq_no(),
        p.next_hop_mtu(),
        p.data().len(),
        p.verify_checksum(),
    );
    if let Ok(quote) = p.embedded() {
        let q = Ipv4Packet::new_checked_quoted(quote).expect("embedded() checked the quote");
        let _ = (
            q.src_addr(),
            q.dst_addr(),
            q.next_header(),
            q.payload().len(),
        );
        // The quoted TCP header (ports and sequence number, checked against the state's window).
        let t = QuotedTcp::parse(q.payload());
        assert_eq!(t.is_ok(), q.payload().len() >= QuotedTcp::LEN);
    }
    let _ = IcmpRepr::parse(&p);

    let mut copy = data.to_vec();
    let mut m = IcmpPacket::new_unchecked(&mut copy[..]);
    m.fill_checksum();
    assert!(
        m.verify_checksum(),
        "fill_checksum makes the message verify"
    );
    if m.msg_type() == IcmpType::EchoRequest {
        let mut reply = copy.clone();
        let mut r = IcmpPacket::new_unchecked(&mut reply[..]);
        r.echo_request_to_reply();
        assert!(
            r.verify_checksum(),
            "echo reply patched incrementally still verifies"
        );
    }
    if let Ok(repr) = IcmpRepr::parse(&IcmpPacket::new_unchecked(&copy[..])) {
        assert_eq!(repr.buffer_len(), copy.len());
        let mut out = copy.clone();
        repr.emit(&mut IcmpPacket::new_unchecked(&mut out[..]));
        assert_eq!(
            IcmpRepr::parse(&IcmpPacket::new_unchecked(&out[..])).expect("reparse"),
            repr
        );
    }
});
