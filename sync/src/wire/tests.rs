use super::*;
use proptest::prelude::*;

const KEY: &[u8] = b"tandem-test-key";

fn key() -> SyncKey {
    SyncKey::new(KEY).unwrap()
}

fn id() -> SyncId {
    SyncId {
        creator: 0x0a0b_0c0d,
        id: 0x0102_0304_0506_0708,
    }
}

fn peers() -> (TcpPeer, TcpPeer) {
    (
        TcpPeer {
            seqlo: 1000,
            seqhi: 66535,
            max_win: 65535,
            wscale: 0x87,
            state: PeerState::ESTABLISHED,
        },
        TcpPeer {
            seqlo: 50000,
            seqhi: 115_535,
            max_win: 29200,
            wscale: 0x80,
            state: PeerState::ESTABLISHED,
        },
    )
}

fn ins() -> InsRecord {
    let (src, dst) = peers();
    InsRecord {
        id: id(),
        stack: FlowKey::new(
            6,
            Ipv4Addr::new(192, 168, 0, 100),
            40000,
            Ipv4Addr::new(172, 25, 46, 1),
            80,
        ),
        wire: FlowKey::new(
            6,
            Ipv4Addr::new(172, 25, 46, 101),
            50000,
            Ipv4Addr::new(172, 25, 46, 1),
            80,
        ),
        src,
        dst,
        timeout: TimeoutClass::TcpEstablished,
        last_age_ms: 250,
        created_age_s: 12,
        rule: 3,
        packets: [10, 8],
        bytes: [1500, 90000],
    }
}

fn one_of_each() -> Vec<Record> {
    let (src, dst) = peers();
    vec![
        Record::Clr { creator: 1 },
        Record::Ins(ins()),
        Record::UpdC(UpdCRecord {
            id: id(),
            src,
            dst,
            timeout: TimeoutClass::TcpClosing,
            last_age_ms: 0,
        }),
        Record::DelC(id()),
        Record::BULK_REQUEST,
        Record::Bus(BusRecord {
            creator: 0x0a0b_0c0d,
            endtime_ms: 1234,
            status: BusStatus::End,
        }),
        Record::InsAck(id()),
        Record::Ack { seq: 6 },
        Record::Nack { from: 3, to: 5 },
    ]
}

#[rustfmt::skip]
const GOLDEN_BODY: &[u8] = &[
    // CLR: subheader {action 0, 1 word, count 1}, creator 1
    0x00, 0x01, 0x00, 0x01,  0x00, 0x00, 0x00, 0x01,
    // INS: {13, 27 words, 1}
    0x0d, 0x1b, 0x00, 0x01,
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,   // id
    0x0a, 0x0b, 0x0c, 0x0d,                           // creator
    0x06, 0x02, 0x00, 0x00,                           // proto TCP, timeout tcp.established, pad
    0xc0, 0xa8, 0x00, 0x64, 0xac, 0x19, 0x2e, 0x01, 0x9c, 0x40, 0x00, 0x50, // stack key
    0xac, 0x19, 0x2e, 0x65, 0xac, 0x19, 0x2e, 0x01, 0xc3, 0x50, 0x00, 0x50, // wire key
    0x00, 0x00, 0x03, 0xe8, 0x00, 0x01, 0x03, 0xe7, 0xff, 0xff, 0x87, 0x04, // src peer
    0x00, 0x00, 0xc3, 0x50, 0x00, 0x01, 0xc3, 0x4f, 0x72, 0x10, 0x80, 0x04, // dst peer
    0x00, 0x00, 0x00, 0xfa,                           // last packet 250 ms ago
    0x00, 0x00, 0x00, 0x0c,                           // created 12 s ago
    0x00, 0x00, 0x00, 0x03,                           // rule 3
    0, 0, 0, 0, 0, 0, 0, 10,   0, 0, 0, 0, 0, 0, 0, 8,                 // packets
    0, 0, 0, 0, 0, 0, 0x05, 0xdc,   0, 0, 0, 0, 0, 0x01, 0x5f, 0x90,   // bytes
    // UPD_C: {4, 11 words, 1}
    0x04, 0x0b, 0x00, 0x01,
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x0a, 0x0b, 0x0c, 0x0d,
    0x00, 0x00, 0x03, 0xe8, 0x00, 0x01, 0x03, 0xe7, 0xff, 0xff, 0x87, 0x04,
    0x00, 0x00, 0xc3, 0x50, 0x00, 0x01, 0xc3, 0x4f, 0x72, 0x10, 0x80, 0x04,
    0x00, 0x00, 0x00, 0x00,                           // last packet 0 ms ago
    0x03, 0x00, 0x00, 0x00,                           // timeout tcp.closing, pad
    // DEL_C: {7, 3 words, 1}
    0x07, 0x03, 0x00, 0x01,
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x0a, 0x0b, 0x0c, 0x0d,
    // UPD_REQ 0/0 (bulk request): {5, 3 words, 1}
    0x05, 0x03, 0x00, 0x01,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    // BUS: {10, 3 words, 1}: creator, endtime 1234 ms, END
    0x0a, 0x03, 0x00, 0x01,
    0x0a, 0x0b, 0x0c, 0x0d, 0x00, 0x00, 0x04, 0xd2, 0x02, 0x00, 0x00, 0x00,
    // INS_ACK: {2, 3 words, 1}
    0x02, 0x03, 0x00, 0x01,
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x0a, 0x0b, 0x0c, 0x0d,
    // ACK: {32, 2 words, 1}: seq 6
    0x20, 0x02, 0x00, 0x01,
    0, 0, 0, 0, 0, 0, 0, 6,
    // NACK: {33, 4 words, 1}: 3..=5
    0x21, 0x04, 0x00, 0x01,
    0, 0, 0, 0, 0, 0, 0, 3,   0, 0, 0, 0, 0, 0, 0, 5,
];

#[rustfmt::skip]
const GOLDEN_HEADER: [u8; HEADER_LEN] = [
    0x82, 0x01, 0x01, 0x30,   // version, flags ACK_REQ, length 304
    0x0a, 0x0b, 0x0c, 0x0d,   // host id
    0x11, 0x22, 0x33, 0x44,   // boot id
    0x00, 0x00, 0x00, 0x05,   // timestamp (ms mod 2^32)
    0, 0, 0, 0, 0, 0, 0, 7,   // seq 7
];

/// HMAC-SHA256(b"tandem-test-key", header || body)[..16], computed with Python's hmac module.
const GOLDEN_MAC: &str = "b95a1588720ef77a045d32e2f667fba3";

fn golden_frame() -> Vec<u8> {
    let mut b = FrameBuilder::new(key(), 0x0a0b_0c0d, 0x1122_3344, DEFAULT_MTU);
    for r in one_of_each() {
        assert!(b.push(&r));
    }
    b.set_flags(FLAG_ACK_REQ);
    b.finish(7, 0x1_0000_0005).to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn golden_bytes_one_record_of_each_action() {
    let f = golden_frame();
    assert_eq!(f.len(), 304);
    assert_eq!(f[..HEADER_LEN], GOLDEN_HEADER);
    assert_eq!(&f[HEADER_LEN..f.len() - MAC_LEN], GOLDEN_BODY);
    assert_eq!(hex(&f[f.len() - MAC_LEN..]), GOLDEN_MAC, "{}", hex(&f));
}

#[test]
fn golden_frame_decodes_field_by_field() {
    let f = golden_frame();
    let frame = parse(&f, &key()).unwrap();
    assert_eq!(
        frame.header,
        Header {
            flags: FLAG_ACK_REQ,
            length: 304,
            host: 0x0a0b_0c0d,
            boot: 0x1122_3344,
            timestamp: 5,
            seq: 7,
        }
    );
    assert_eq!(frame.unknown_actions(), 0);
    let recs: Vec<Record> = frame.records().collect();
    assert_eq!(recs, one_of_each());
    let Record::Ins(i) = recs[1] else {
        panic!("second record is not INS: {:?}", recs[1])
    };
    assert_eq!({ i.id.creator }, 0x0a0b_0c0d);
    assert_eq!({ i.id.id }, 0x0102_0304_0506_0708);
    assert_eq!(i.stack.proto, 6);
    assert_eq!(i.wire.proto, 6);
    assert_eq!(i.stack.src, Ipv4Addr::new(192, 168, 0, 100));
    assert_eq!(i.wire.sport, 50000);
    assert_eq!(i.src.seqhi, 66535);
    assert_eq!(i.dst.max_win, 29200);
    assert_eq!(i.src.wscale, 0x87);
    assert_eq!(i.timeout, TimeoutClass::TcpEstablished);
    assert_eq!(i.last_age_ms, 250);
    assert_eq!(i.rule, 3);
    assert_eq!(i.bytes, [1500, 90000]);
    assert_eq!(recs[4], Record::BULK_REQUEST);
}

#[test]
fn record_lengths_are_whole_words_and_match_the_encoder() {
    for r in one_of_each() {
        let mut v = Vec::new();
        encode(&r, &mut v);
        assert_eq!(Some(v.len()), record_len(r.action()), "{r:?}");
        assert_eq!(v.len() % 4, 0);
        assert!(v.len() / 4 <= 255);
    }
}

#[test]
fn consecutive_records_share_a_subheader() {
    let mut b = FrameBuilder::new(key(), 1, 1, DEFAULT_MTU);
    for i in 0..5 {
        assert!(b.push_del_c(SyncId { creator: 1, id: i }));
    }
    assert!(b.push_ack(9));
    assert!(b.push_del_c(SyncId { creator: 1, id: 9 }));
    let f = b.finish(1, 0).to_vec();
    // Header, {DEL_C x5}, {ACK}, {DEL_C}, MAC.
    assert_eq!(f.len(), HEADER_LEN + 4 + 5 * 12 + 4 + 8 + 4 + 12 + MAC_LEN);
    assert_eq!(f[HEADER_LEN..HEADER_LEN + 4], [7, 3, 0, 5]);
    assert_eq!(parse(&f, &key()).unwrap().records().count(), 7);
}

#[test]
fn wrong_key_is_bad_mac_and_empty_key_refused() {
    let f = golden_frame();
    let other = SyncKey::new(b"another key").unwrap();
    assert_eq!(parse(&f, &other).unwrap_err(), Reject::BadMac);
    assert_eq!(SyncKey::new(b"").unwrap_err(), KeyError::Empty);
    assert_eq!(format!("{:?}", key()), "SyncKey(..)");
}

#[test]
fn truncated_frames_are_short_or_bad_length() {
    let f = golden_frame();
    for n in 0..f.len() {
        let e = parse(&f[..n], &key()).unwrap_err();
        if n < MIN_LEN {
            assert_eq!(e, Reject::Short, "{n}");
        } else {
            assert_eq!(e, Reject::BadLength, "{n}");
        }
    }
    // A length field that lies (and a MAC that would have to match it) is bad_length first.
    let mut g = f.clone();
    g.extend_from_slice(&[0; 4]);
    assert_eq!(parse(&g, &key()).unwrap_err(), Reject::BadLength);
}

#[test]
fn pfsync_versions_are_bad_version() {
    let mut f = golden_frame();
    for v in [5u8, 6, 1] {
        f[0] = v;
        assert_eq!(parse(&f, &key()).unwrap_err(), Reject::BadVersion);
    }
    assert_eq!(Reject::BadVersion.counter(), "bad_version");
}

/// A frame whose body is given raw, sealed with the right MAC: what a newer or buggy peer
/// holding the key could send.
fn seal(body: &[u8]) -> Vec<u8> {
    let total = HEADER_LEN + body.len() + MAC_LEN;
    let mut f = vec![0; HEADER_LEN];
    f[0] = VERSION;
    f[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    f[16..24].copy_from_slice(&1u64.to_be_bytes());
    f.extend_from_slice(body);
    let tag = key().tag(&f);
    f.extend_from_slice(&tag);
    f
}

#[test]
fn unknown_action_skipped_by_length_next_known_read() {
    let mut body = vec![200, 2, 0, 3]; // action 200, 8-byte records, 3 of them
    body.extend_from_slice(&[0xee; 24]);
    body.extend_from_slice(&[action::DEL_C, 3, 0, 1]);
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 9]);
    let f = seal(&body);
    let frame = parse(&f, &key()).unwrap();
    assert_eq!(frame.unknown_actions(), 1);
    let recs: Vec<Record> = frame.records().collect();
    assert_eq!(recs, vec![Record::DelC(SyncId { creator: 9, id: 42 })]);
}

#[test]
fn longer_records_read_by_known_prefix_shorter_are_malformed() {
    // A newer peer's DEL_C with one more word.
    let mut body = vec![action::DEL_C, 4, 0, 2];
    for i in 1..=2u8 {
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, i, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
    }
    let f = seal(&body);
    let recs: Vec<Record> = parse(&f, &key()).unwrap().records().collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1], Record::DelC(SyncId { creator: 1, id: 2 }));

    // Zero-length records of an unknown action.
    assert_eq!(
        parse(&seal(&[200, 0, 0xff, 0xff]), &key()).unwrap_err(),
        Reject::Malformed
    );
    // UPD_C declared 10 words instead of 11.
    let mut body = vec![action::UPD_C, 10, 0, 1];
    body.extend_from_slice(&[0; 40]);
    assert_eq!(parse(&seal(&body), &key()).unwrap_err(), Reject::Malformed);
    // Records running past the end.
    let mut body = vec![action::DEL_C, 3, 0, 2];
    body.extend_from_slice(&[0; 12]);
    assert_eq!(parse(&seal(&body), &key()).unwrap_err(), Reject::Malformed);
    // A trailing half subheader cannot happen (length is whole words); a BUS status 7 can.
    let body = [action::BUS, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 7, 0, 0, 0];
    assert_eq!(parse(&seal(&body), &key()).unwrap_err(), Reject::Malformed);
    // A timeout class this version does not know.
    let mut body = vec![action::UPD_C, 11, 0, 1];
    body.extend_from_slice(&[0; 44]);
    body[4 + 40] = 15;
    assert_eq!(parse(&seal(&body), &key()).unwrap_err(), Reject::Malformed);
}

#[test]
fn frame_fills_exactly_to_the_mtu() {
    // 1480 - 24 - 16 = 1440 bytes of body. DEL_C (12 B) while it fits: 4 + 119 x 12 = 1432,
    // 8 bytes left, too few for another subheader and record.
    let mut b = FrameBuilder::new(key(), 1, 1, DEFAULT_MTU);
    let mut n = 0;
    while b.push_del_c(SyncId { creator: 1, id: n }) {
        n += 1;
    }
    assert_eq!(n, 119);
    assert!(!b.fits(action::ACK));
    // Exactly full: 4 + 118 x 12 + (4 + 16) = 1440.
    let mut b = FrameBuilder::new(key(), 1, 1, DEFAULT_MTU);
    for n in 0..118 {
        assert!(b.push_del_c(SyncId { creator: 1, id: n }));
    }
    assert!(b.fits(action::NACK));
    assert!(b.push_nack(1, 2));
    assert!(!b.fits(action::NACK));
    assert!(!b.fits(action::CLR), "not even 4 + 4 bytes left");
    assert!(!b.push_ack(1));
    let f = b.finish(1, 0).to_vec();
    assert_eq!(f.len(), DEFAULT_MTU);
    assert_eq!(parse(&f, &key()).unwrap().records().count(), 119);

    // Full states: (1440 - 4) / 108 = 13.
    let mut b = FrameBuilder::new(key(), 1, 1, DEFAULT_MTU);
    let mut n = 0;
    while b.push_ins(&ins()) {
        n += 1;
    }
    assert_eq!(n, 13);
    // Compact updates: (1440 - 4) / 44 = 32.
    let mut b = FrameBuilder::new(key(), 1, 1, DEFAULT_MTU);
    let (src, dst) = peers();
    let u = UpdCRecord {
        id: id(),
        src,
        dst,
        timeout: TimeoutClass::TcpEstablished,
        last_age_ms: 0,
    };
    let mut n = 0;
    while b.push_upd_c(&u) {
        n += 1;
    }
    assert_eq!(n, 32);
}

#[test]
fn builder_reuses_its_buffer() {
    let mut b = FrameBuilder::new(key(), 1, 1, DEFAULT_MTU);
    let cap = b.buf.capacity();
    for round in 0..3 {
        while b.push_upd_req(SyncId {
            creator: 1,
            id: round,
        }) {}
        let _ = b.finish(round + 1, 0);
        b.clear();
        assert!(b.is_empty());
    }
    assert_eq!(b.buf.capacity(), cap, "no reallocation");
}

#[test]
fn push_after_finish_starts_a_new_datagram_finish_twice_reseals() {
    let mut b = FrameBuilder::new(key(), 1, 1, DEFAULT_MTU);
    assert!(b.push_del_c(SyncId { creator: 1, id: 1 }));
    let first = b.finish(1, 0).to_vec();
    assert_eq!(b.finish(1, 0), &first[..], "same seq, same bytes");
    let other = b.finish(2, 0).to_vec();
    assert_eq!(parse(&other, &key()).unwrap().header.seq, 2);
    assert!(b.push_del_c(SyncId { creator: 1, id: 2 }));
    assert_eq!(b.records(), 1);
    let second = b.finish(3, 0).to_vec();
    let recs: Vec<Record> = parse(&second, &key()).unwrap().records().collect();
    assert_eq!(recs, [Record::DelC(SyncId { creator: 1, id: 2 })]);
}

#[test]
fn keepalive_is_header_and_mac() {
    let mut b = FrameBuilder::new(key(), 1, 1, DEFAULT_MTU);
    let f = b.finish(0, 0).to_vec();
    assert_eq!(f.len(), MIN_LEN);
    let frame = parse(&f, &key()).unwrap();
    assert_eq!(frame.records().count(), 0);
    assert_eq!(frame.header.seq, 0);
}

// ---- properties ----------------------------------------------------------------------------

fn peer() -> impl Strategy<Value = TcpPeer> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(|(seqlo, seqhi, max_win, wscale, s)| TcpPeer {
            seqlo,
            seqhi,
            max_win,
            wscale,
            state: PeerState(s),
        })
}

fn sync_id() -> impl Strategy<Value = SyncId> {
    (any::<u32>(), any::<u64>()).prop_map(|(creator, id)| SyncId { creator, id })
}

fn class() -> impl Strategy<Value = TimeoutClass> {
    (0..TimeoutClass::ALL.len()).prop_map(|i| TimeoutClass::ALL[i])
}

fn flow(proto: u8) -> impl Strategy<Value = FlowKey> {
    (any::<u32>(), any::<u16>(), any::<u32>(), any::<u16>()).prop_map(move |(s, sp, d, dp)| {
        FlowKey::new(proto, Ipv4Addr::from(s), sp, Ipv4Addr::from(d), dp)
    })
}

fn ins_record() -> impl Strategy<Value = InsRecord> {
    any::<u8>().prop_flat_map(|proto| {
        (
            sync_id(),
            flow(proto),
            flow(proto),
            peer(),
            peer(),
            class(),
            any::<(u32, u32, u32)>(),
            any::<[u64; 4]>(),
        )
            .prop_map(
                |(id, stack, wire, src, dst, timeout, (l, c, rule), n)| InsRecord {
                    id,
                    stack,
                    wire,
                    src,
                    dst,
                    timeout,
                    last_age_ms: l,
                    created_age_s: c,
                    rule,
                    packets: [n[0], n[1]],
                    bytes: [n[2], n[3]],
                },
            )
    })
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        any::<u32>().prop_map(|creator| Record::Clr { creator }),
        ins_record().prop_map(Record::Ins),
        (sync_id(), peer(), peer(), class(), any::<u32>()).prop_map(
            |(id, src, dst, timeout, last_age_ms)| Record::UpdC(UpdCRecord {
                id,
                src,
                dst,
                timeout,
                last_age_ms
            })
        ),
        sync_id().prop_map(Record::DelC),
        sync_id().prop_map(Record::UpdReq),
        (any::<u32>(), any::<u32>(), any::<bool>()).prop_map(|(creator, endtime_ms, end)| {
            Record::Bus(BusRecord {
                creator,
                endtime_ms,
                status: if end {
                    BusStatus::End
                } else {
                    BusStatus::Start
                },
            })
        }),
        sync_id().prop_map(Record::InsAck),
        any::<u64>().prop_map(|seq| Record::Ack { seq }),
        (any::<u64>(), any::<u64>()).prop_map(|(from, to)| Record::Nack { from, to }),
    ]
}

proptest! {
    #[test]
    fn records_round_trip(recs in proptest::collection::vec(record(), 0..40),
                          seq in any::<u64>(), now in any::<u64>(), host in any::<u32>()) {
        let mut b = FrameBuilder::new(key(), host, 0xb007, DEFAULT_MTU);
        let mut sent = Vec::new();
        for r in &recs {
            if !b.push(r) {
                break;
            }
            sent.push(*r);
        }
        let f = b.finish(seq, now).to_vec();
        prop_assert!(f.len() <= DEFAULT_MTU);
        let frame = parse(&f, &key()).unwrap();
        prop_assert_eq!(frame.header.seq, seq);
        prop_assert_eq!(frame.header.host, host);
        prop_assert_eq!(frame.header.timestamp, now as u32);
        let got: Vec<Record> = frame.records().collect();
        prop_assert_eq!(got, sent);
    }

    #[test]
    fn any_single_bit_flip_is_rejected(recs in proptest::collection::vec(record(), 1..8),
                                        bit in any::<proptest::sample::Index>()) {
        let mut b = FrameBuilder::new(key(), 1, 2, DEFAULT_MTU);
        for r in &recs {
            b.push(r);
        }
        let mut f = b.finish(3, 4).to_vec();
        let i = bit.index(f.len() * 8);
        f[i / 8] ^= 1 << (i % 8);
        // Version and length are checked before the MAC; every other bit is the MAC's.
        let want = match i / 8 {
            0 => Reject::BadVersion,
            2 | 3 => Reject::BadLength,
            _ => Reject::BadMac,
        };
        prop_assert_eq!(parse(&f, &key()).unwrap_err(), want);
    }

    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse(&data, &key());
        // Garbage with a correct MAC: the walk must refuse or read it, never panic.
        if data.len() % 4 == 0 && data.len() + MIN_LEN < 65535 {
            if let Ok(frame) = parse(&seal(&data), &key()) {
                let _ = frame.records().count();
            }
        }
    }
}
