use super::*;

#[test]
fn quoted_header_gives_ports_and_sequence_only() {
    // An ICMP error quotes 8 bytes: ports 0x1234 -> 80, seq 0x01020304.
    let q = [0x12, 0x34, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04];
    assert_eq!(
        QuotedTcp::parse(&q),
        Ok(QuotedTcp {
            src_port: 0x1234,
            dst_port: 80,
            seq_number: SeqNumber(0x0102_0304),
        })
    );
    // Longer quotes read the same fields; shorter ones cannot be checked.
    let mut long = q.to_vec();
    long.extend_from_slice(&[0xff; 12]);
    assert_eq!(QuotedTcp::parse(&long), QuotedTcp::parse(&q));
    for n in 0..QuotedTcp::LEN {
        assert_eq!(QuotedTcp::parse(&q[..n]), Err(WireError));
    }
}
use proptest::prelude::*;

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
const SERVER: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);

// A Linux SYN 192.168.1.10:51000 -> 93.184.216.34:443: MSS 1460, SACK-permitted,
// timestamps (TSval 0x000a1b2c), NOP, window scale 7.
static SYN: [u8; 40] = [
    0xc7, 0x38, 0x01, 0xbb, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00, // ports seq ack
    0xa0, 0x02, 0xfa, 0xf0, 0x08, 0xac, 0x00, 0x00, // off flags win csum urg
    0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x0a, 0x1b, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x03, 0x03, 0x07, // options
];

// The server's PSH|ACK carrying "hi!", 93.184.216.34:443 -> 192.168.1.10:51000.
static DATA: [u8; 23] = [
    0x01, 0xbb, 0xc7, 0x38, 0xab, 0xcd, 0xef, 0x01, 0x12, 0x34, 0x56, 0x79, // ports seq ack
    0x50, 0x18, 0x01, 0xf5, 0x60, 0x6d, 0x00, 0x00, // off flags win csum urg
    b'h', b'i', b'!',
];

#[test]
fn deconstruct_syn() {
    let p = TcpPacket::new_checked(&SYN[..]).unwrap();
    assert_eq!((p.src_port(), p.dst_port()), (51000, 443));
    assert_eq!(p.seq_number(), SeqNumber(0x1234_5678));
    assert_eq!(p.ack_number(), SeqNumber(0));
    assert_eq!(p.header_len(), 40);
    assert_eq!(p.flags(), TcpFlags::SYN);
    assert_eq!(
        (p.window_len(), p.checksum(), p.urgent_at()),
        (64240, 0x08ac, 0)
    );
    assert_eq!(p.options().len(), 20);
    assert!(p.payload().is_empty());
    assert_eq!(p.segment_len(), 1);
    assert!(p.verify_checksum(CLIENT, SERVER));
    // Swapping src and dst leaves the sum alone; another address does not.
    assert!(p.verify_checksum(SERVER, CLIENT));
    assert!(!p.verify_checksum(CLIENT, Ipv4Addr::new(1, 1, 1, 1)));
    assert_eq!(
        p.parse_options(),
        TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some((0x000a_1b2c, 0)),
        }
    );
}

#[test]
fn deconstruct_data() {
    let p = TcpPacket::new_checked(&DATA[..]).unwrap();
    assert_eq!(p.flags(), TcpFlags::PSH | TcpFlags::ACK);
    assert!(
        p.flags().contains(TcpFlags::ACK) && !p.flags().contains(TcpFlags::SYN | TcpFlags::ACK)
    );
    assert_eq!(p.payload(), b"hi!");
    assert_eq!(p.segment_len(), 3);
    assert!(p.verify_checksum(SERVER, CLIENT));
    assert_eq!(p.parse_options(), TcpOptions::default());
}

#[test]
fn construct() {
    let mut buf = [0u8; 23];
    buf[20..].copy_from_slice(b"hi!");
    let mut p = TcpPacket::new_unchecked(&mut buf[..]);
    p.set_src_port(443);
    p.set_dst_port(51000);
    p.set_seq_number(SeqNumber(0xabcd_ef01));
    p.set_ack_number(SeqNumber(0x1234_5679));
    p.set_header_len(20);
    p.set_flags(TcpFlags::PSH | TcpFlags::ACK);
    p.set_window_len(501);
    p.set_urgent_at(0);
    p.fill_checksum(SERVER, CLIENT);
    assert_eq!(buf, DATA);
}

#[test]
fn repr_parse_emit() {
    let p = TcpPacket::new_checked(&DATA[..]).unwrap();
    let repr = TcpRepr::parse(&p, SERVER, CLIENT).unwrap();
    assert_eq!(
        repr,
        TcpRepr {
            src_port: 443,
            dst_port: 51000,
            seq_number: SeqNumber(0xabcd_ef01),
            ack_number: SeqNumber(0x1234_5679),
            flags: TcpFlags::PSH | TcpFlags::ACK,
            window_len: 501,
        }
    );
    let mut buf = [0xffu8; 23];
    buf[20..].copy_from_slice(b"hi!");
    repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), SERVER, CLIENT);
    assert_eq!(buf, DATA);
    assert_eq!(
        TcpRepr::parse(&p, SERVER, Ipv4Addr::new(1, 1, 1, 1)),
        Err(WireError)
    );
}

#[test]
fn reset_for_syn_and_ack() {
    let syn = TcpPacket::new_checked(&SYN[..]).unwrap();
    let rst = TcpRepr::reset_for(&syn);
    assert_eq!((rst.src_port, rst.dst_port), (443, 51000));
    assert_eq!(rst.flags, TcpFlags::RST | TcpFlags::ACK);
    assert_eq!(
        (rst.seq_number, rst.ack_number),
        (SeqNumber(0), SeqNumber(0x1234_5679))
    );

    let data = TcpPacket::new_checked(&DATA[..]).unwrap();
    let rst = TcpRepr::reset_for(&data);
    assert_eq!(rst.flags, TcpFlags::RST);
    assert_eq!(rst.seq_number, SeqNumber(0x1234_5679));

    let mut buf = [0u8; 20];
    rst.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), CLIENT, SERVER);
    let p = TcpPacket::new_checked(&buf[..]).unwrap();
    assert_eq!(TcpRepr::parse(&p, CLIENT, SERVER).unwrap(), rst);
    let h = etherparse::TcpHeaderSlice::from_slice(&buf).unwrap();
    assert!(h.rst() && !h.ack());
    let c = h
        .to_header()
        .calc_checksum_ipv4_raw(CLIENT.octets(), SERVER.octets(), &[])
        .unwrap();
    assert_eq!(c, p.checksum());
}

#[test]
fn malformed_options() {
    let parse = |opts: &[u8]| {
        let mut buf = vec![0u8; 20 + opts.len()];
        buf[12] = ((5 + opts.len() / 4) as u8) << 4;
        buf[20..].copy_from_slice(opts);
        TcpPacket::new_checked(&buf[..]).unwrap().parse_options()
    };
    // MSS, then an option whose length runs past the header: MSS is kept.
    let o = parse(&[2, 4, 0x05, 0xb4, 8, 10, 0, 0]);
    assert_eq!(
        o,
        TcpOptions {
            mss: Some(1460),
            ..TcpOptions::default()
        }
    );
    // A length byte below 2 stops parsing instead of looping forever.
    assert_eq!(parse(&[3, 0, 3, 7]), TcpOptions::default());
    assert_eq!(
        parse(&[1, 1, 1, 3]),
        TcpOptions::default(),
        "missing length byte"
    );
    // Wrong length for a known option: skipped, the next one still parsed.
    let o = parse(&[2, 3, 0, 3, 3, 7, 0, 0]);
    assert_eq!(
        o,
        TcpOptions {
            window_scale: Some(7),
            ..TcpOptions::default()
        }
    );
    // Unknown option skipped by its length; END stops before garbage.
    let o = parse(&[0xfe, 4, 9, 9, 4, 2, 0, 0xff]);
    assert_eq!(
        o,
        TcpOptions {
            sack_permitted: true,
            ..TcpOptions::default()
        }
    );
}

#[test]
fn impossible_len() {
    assert_eq!(TcpPacket::new_checked(&SYN[..19]), Err(WireError));
    assert_eq!(
        TcpPacket::new_checked(&SYN[..39]),
        Err(WireError),
        "offset past buffer"
    );
    let mut b = DATA;
    b[12] = 0x40;
    assert_eq!(TcpPacket::new_checked(&b[..]), Err(WireError), "offset 4");
}

#[test]
fn seq_numbers() {
    let a = SeqNumber(0xffff_fff0);
    let b = a + 0x20;
    assert_eq!(b, SeqNumber(0x10));
    assert!(a.lt(b) && a.le(b) && b.gt(a) && b.ge(a) && a.le(a) && a.ge(a));
    assert!(!a.lt(a) && !a.gt(a));
    assert_eq!(b - a, 0x20);
    assert_eq!(a - b, -0x20);
    assert_eq!(b - 0x20u32, a);
    assert_eq!(a.max(b), b);
    assert_eq!(a.min(b), a);
    let mut c = a;
    c += 0x10;
    assert_eq!(c, SeqNumber(0));
    // Half the circle away is "behind": i32::MIN is negative.
    assert!(SeqNumber(0x8000_0000).lt(SeqNumber(0)));
}

#[test]
fn flags_debug() {
    assert_eq!(format!("{:?}", TcpFlags::SYN | TcpFlags::ACK), "SYN|ACK");
    assert_eq!(format!("{:?}", TcpFlags::empty()), "-");
    assert!((TcpFlags::SYN | TcpFlags::FIN).intersects(TcpFlags::FIN | TcpFlags::RST));
    assert_eq!((!TcpFlags::ACK).bits() & TcpFlags::ACK.bits(), 0);
}

#[test]
fn against_etherparse() {
    let h = etherparse::TcpHeaderSlice::from_slice(&SYN).unwrap();
    let p = TcpPacket::new_checked(&SYN[..]).unwrap();
    assert_eq!(
        (h.source_port(), h.destination_port()),
        (p.src_port(), p.dst_port())
    );
    assert_eq!(h.sequence_number(), p.seq_number().0);
    assert_eq!(h.data_offset() as usize * 4, p.header_len());
    assert!(h.syn() && !h.ack());
    assert_eq!(h.window_size(), p.window_len());
    let c = h
        .to_header()
        .calc_checksum_ipv4_raw(CLIENT.octets(), SERVER.octets(), &[])
        .unwrap();
    assert_eq!(c, p.checksum());
}

proptest! {
    #[test]
    fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..80), src in any::<u32>()) {
        if let Ok(p) = TcpPacket::new_checked(&data[..]) {
            let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(), p.flags());
            let _ = (p.header_len(), p.window_len(), p.checksum(), p.urgent_at());
            let _ = (p.options(), p.payload(), p.segment_len(), p.parse_options());
            let _ = p.verify_checksum(src.into(), CLIENT);
            let _ = TcpRepr::parse(&p, src.into(), CLIENT);
            let _ = TcpRepr::reset_for(&p);
        }
    }

    /// Option parsing over arbitrary option bytes: never panics, and whatever it returns
    /// was really in the bytes.
    #[test]
    fn options_never_panic(opts in proptest::collection::vec(any::<u8>(), 0..40)) {
        let words = opts.len() / 4;
        let mut buf = vec![0u8; 20 + words * 4];
        buf[12] = ((5 + words) as u8) << 4;
        buf[20..].copy_from_slice(&opts[..words * 4]);
        let o = TcpPacket::new_checked(&buf[..]).unwrap().parse_options();
        if let Some(mss) = o.mss {
            prop_assert!(buf.windows(4).any(|w| w[..2] == [2, 4] && w[2..] == mss.to_be_bytes()));
        }
    }

    #[test]
    fn checksum_matches_etherparse(
        payload in proptest::collection::vec(any::<u8>(), 0..100),
        seq in any::<u32>(), flags in any::<u8>(), src in any::<u32>(), dst in any::<u32>(),
    ) {
        let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
        let mut buf = vec![0u8; 20 + payload.len()];
        buf[20..].copy_from_slice(&payload);
        let repr = TcpRepr {
            src_port: 1, dst_port: 2, seq_number: SeqNumber(seq), ack_number: SeqNumber(!seq),
            flags: TcpFlags(flags), window_len: 1000,
        };
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), src, dst);
        let h = etherparse::TcpHeaderSlice::from_slice(&buf).unwrap().to_header();
        prop_assert_eq!(
            h.calc_checksum_ipv4_raw(src.octets(), dst.octets(), &payload).unwrap(),
            u16::from_be_bytes([buf[16], buf[17]])
        );
        prop_assert!(TcpPacket::new_checked(&buf[..]).unwrap().verify_checksum(src, dst));
    }

    /// NAT of a segment (address in the pseudo-header, port in the header) patched
    /// incrementally equals a recompute.
    #[test]
    fn nat_incremental_matches_recompute(
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        src in any::<u32>(), dst in any::<u32>(), new_src in any::<u32>(),
        sport in any::<u16>(), new_sport in any::<u16>(), seq in any::<u32>(),
    ) {
        let (src, dst, new_src) = (Ipv4Addr::from(src), Ipv4Addr::from(dst), Ipv4Addr::from(new_src));
        let mut buf = vec![0u8; 20 + payload.len()];
        buf[20..].copy_from_slice(&payload);
        let repr = TcpRepr {
            src_port: sport, dst_port: 80, seq_number: SeqNumber(seq), ack_number: SeqNumber(0),
            flags: TcpFlags::ACK, window_len: 512,
        };
        let mut p = TcpPacket::new_unchecked(&mut buf[..]);
        repr.emit(&mut p, src, dst);
        let c = checksum::update_addr(p.checksum(), src, new_src);
        let c = checksum::update_u16(c, sport, new_sport);
        p.set_src_port(new_sport);
        p.set_checksum(c);
        prop_assert!(p.verify_checksum(new_src, dst));
        p.fill_checksum(new_src, dst);
        prop_assert_eq!(p.checksum(), c);
    }

    #[test]
    fn seq_order_matches_signed_distance(a in any::<u32>(), d in 1u32..0x8000_0000) {
        let a = SeqNumber(a);
        let b = a + d;
        prop_assert!(a.lt(b) && b.gt(a) && !b.lt(a));
        prop_assert_eq!(b - a, d as i32);
    }
}
