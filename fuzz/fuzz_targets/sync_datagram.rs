//! State sync datagrams as they arrive on the sync link (the IP payload). Input: one control
//! byte, then the datagram. Control bit 0: seal it first (version, length, MAC under the test
//! key), so mutations reach the subheader and record parser behind the MAC. Whatever the bytes,
//! `parse` does not panic and its record iterator yields exactly what it validated; a datagram
//! that parses re-encodes (`FrameBuilder`) into one that parses to the same header and records.
#![no_main]

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use tandem_sync::wire::{parse, FrameBuilder, Record, SyncKey, HEADER_LEN, MAC_LEN, VERSION};

const KEY: &[u8] = b"tandem-fuzz-sync-key-32-bytes-!!";

fn key() -> &'static SyncKey {
    static K: OnceLock<SyncKey> = OnceLock::new();
    K.get_or_init(|| SyncKey::new(KEY).expect("a non-empty key"))
}

/// Sets the version and length fields and appends the MAC (HMAC-SHA256 truncated to 16 bytes,
/// as docs/sync-protocol.md specifies), padding the body to a multiple of 4.
fn seal(body: &[u8]) -> Vec<u8> {
    let mut d = body.to_vec();
    d.resize(d.len().max(HEADER_LEN), 0);
    while !(d.len() + MAC_LEN).is_multiple_of(4) {
        d.push(0);
    }
    d.truncate(usize::from(u16::MAX) - MAC_LEN - 3);
    let total = d.len() + MAC_LEN;
    d[0] = VERSION;
    d[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    let mut m = Hmac::<Sha256>::new_from_slice(KEY).expect("HMAC takes any key length");
    m.update(&d);
    let tag = m.finalize().into_bytes();
    d.extend_from_slice(&tag[..MAC_LEN]);
    d
}

fuzz_target!(|data: &[u8]| {
    let Some((ctl, rest)) = data.split_first() else {
        return;
    };
    let datagram = if ctl & 1 != 0 {
        seal(rest)
    } else {
        rest.to_vec()
    };
    let Ok(frame) = parse(&datagram, key()) else {
        return;
    };
    let records: Vec<Record> = frame.records().collect();

    let h = frame.header;
    let mut b = FrameBuilder::new(key().clone(), h.host, h.boot, usize::from(u16::MAX));
    b.set_flags(h.flags);
    for r in &records {
        assert!(
            b.push(r),
            "a record re-encodes in no more room than it came in"
        );
    }
    let again = b.finish(h.seq, u64::from(h.timestamp)).to_vec();
    let back = parse(&again, key()).expect("a re-encoded datagram parses");
    assert_eq!(
        (
            back.header.flags,
            back.header.host,
            back.header.boot,
            back.header.seq,
            back.header.timestamp
        ),
        (h.flags, h.host, h.boot, h.seq, h.timestamp)
    );
    assert_eq!(back.unknown_actions(), 0);
    let records_back: Vec<Record> = back.records().collect();
    assert_eq!(records_back, records, "decode(encode(records)) == records");
});
