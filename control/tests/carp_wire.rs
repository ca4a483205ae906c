//! CARP adverts on the wire: golden bytes, the HMAC against an independent implementation
//! (Python's `hmac`), every reject reason, replay, and arbitrary bytes.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use tandem_control::carp::wire::{
    build_advert, check_advert, AdvertParams, CarpAuth, CarpPacket, CarpRepr, Fresh, Reject,
    ReplayGuard, COUNTER_STEP, FRAME_LEN, HEADER_LEN,
};
use tandem_dataplane::wire::ipv4::Ipv4Packet;
use tandem_dataplane::wire::MacAddr;

const VIP: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 100);
const SRC: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 101);
const COUNTER: u64 = 0x0102_0304_0506_0708;

/// HMAC-SHA1(key = "secret" zero-padded to 20, 02 01 01 ac192e64 0102030405060708), computed
/// once with `python3 -c "import hmac,hashlib; ..."` (the command is in `hmac_matches_python`).
const HMAC: [u8; 20] = [
    0x76, 0xb7, 0x0d, 0x16, 0x01, 0x5d, 0x32, 0x42, 0x74, 0x22, 0xf1, 0x40, 0x59, 0x40, 0xca, 0x22,
    0xf2, 0x50, 0xa0, 0xd4,
];

/// The whole advert: vhid 1, advbase 1, advskew 0, demote 0, COUNTER, password "secret",
/// VIP 172.25.46.100, from 172.25.46.101. Checksums computed by a separate Python script.
#[rustfmt::skip]
const FRAME: [u8; 70] = [
    // Ethernet: to 01:00:5e:00:00:12 from the virtual MAC 00:00:5e:00:01:01, IPv4
    0x01, 0x00, 0x5e, 0x00, 0x00, 0x12, 0x00, 0x00, 0x5e, 0x00, 0x01, 0x01, 0x08, 0x00,
    // IPv4: TOS 0xe0 (CS7), len 56, id 0, DF, TTL 255, proto 112, checksum, src, dst 224.0.0.18
    0x45, 0xe0, 0x00, 0x38, 0x00, 0x00, 0x40, 0x00, 0xff, 0x70, 0xbf, 0xe4,
    0xac, 0x19, 0x2e, 0x65, 0xe0, 0x00, 0x00, 0x12,
    // CARP: v2 type 1, vhid 1, advskew 0, authlen 7, demote 0, advbase 1, checksum 0xfb89
    0x21, 0x01, 0x00, 0x07, 0x00, 0x01, 0xfb, 0x89,
    // counter
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    // HMAC-SHA1
    0x76, 0xb7, 0x0d, 0x16, 0x01, 0x5d, 0x32, 0x42, 0x74, 0x22, 0xf1, 0x40, 0x59, 0x40, 0xca, 0x22,
    0xf2, 0x50, 0xa0, 0xd4,
];

fn auth() -> CarpAuth {
    CarpAuth::new(1, b"secret", &[VIP])
}

fn golden(auth: &CarpAuth) -> Vec<u8> {
    let mut buf = vec![0xaa; 2048];
    let n = build_advert(
        &mut buf,
        &AdvertParams {
            src_ip: SRC,
            advbase: 1,
            advskew: 0,
            demote: 0,
            counter: COUNTER,
            auth,
        },
    );
    buf.truncate(n);
    buf
}

fn check(frame: &[u8], a: &CarpAuth) -> Result<tandem_control::carp::wire::Advert, Reject> {
    check_advert(frame, |vhid| (vhid == a.vhid()).then_some(a))
}

/// Recomputes the IPv4 header checksum and the CARP checksum after a test edited the frame.
/// Leaves frames too broken for that alone.
fn fix_checksums(frame: &mut [u8]) {
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut frame[14..]) else {
        return;
    };
    ip.fill_checksum();
    let hl = ip.header_len();
    if let Ok(mut c) = CarpPacket::new_checked(&mut frame[14 + hl..]) {
        c.fill_checksum();
    }
}

#[test]
fn advert_matches_golden_bytes() {
    let a = auth();
    let f = golden(&a);
    assert_eq!(f.len(), FRAME_LEN);
    assert_eq!(f, FRAME);
    assert_eq!(a.compute(COUNTER), HMAC);
}

#[test]
fn hmac_matches_python() {
    let script = "import hmac,hashlib,socket,sys
key=b'secret'.ljust(20,b'\\0')
msg=bytes([2,1,1])+socket.inet_aton('172.25.46.100')+bytes.fromhex('0102030405060708')
sys.stdout.write(hmac.new(key,msg,hashlib.sha1).hexdigest())";
    let Ok(out) = Command::new("python3").args(["-c", script]).output() else {
        eprintln!("python3 not found: the stored vector is the only check");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hex: String = auth()
        .compute(COUNTER)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), hex);
}

#[test]
fn hmac_covers_sorted_vips_and_padded_key() {
    let b = Ipv4Addr::new(172, 25, 46, 200);
    // The order of configuration does not matter: the HMAC takes them sorted.
    assert_eq!(
        CarpAuth::new(1, b"secret", &[b, VIP]).compute(9),
        CarpAuth::new(1, b"secret", &[VIP, b]).compute(9)
    );
    assert_eq!(CarpAuth::new(1, b"secret", &[b, VIP]).vips(), &[VIP, b]);
    // Another VIP set, VHID, password or counter gives another HMAC.
    let base = auth().compute(9);
    assert_ne!(CarpAuth::new(1, b"secret", &[VIP, b]).compute(9), base);
    assert_ne!(CarpAuth::new(2, b"secret", &[VIP]).compute(9), base);
    assert_ne!(CarpAuth::new(1, b"secreT", &[VIP]).compute(9), base);
    assert_ne!(auth().compute(10), base);
    // The key is zero-padded: explicit trailing zeros are the same key.
    assert_eq!(CarpAuth::new(1, b"secret\0\0", &[VIP]).compute(9), base);
    // The key never shows in Debug.
    assert!(!format!("{:?}", auth()).contains("secret"));
}

#[test]
fn view_and_repr_read_what_was_written() {
    let f = golden(&auth());
    let p = CarpPacket::new_checked(&f[34..]).unwrap();
    assert_eq!((p.version(), p.msg_type(), p.vhid()), (2, 1, 1));
    assert_eq!(
        (p.advskew(), p.authlen(), p.demote(), p.advbase()),
        (0, 7, 0, 1)
    );
    assert_eq!(p.checksum(), 0xfb89);
    assert!(p.verify_checksum());
    assert_eq!(p.counter(), COUNTER);
    assert_eq!(p.counter_bytes(), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(p.hmac(), HMAC);
    let r = CarpRepr::parse(&p).unwrap();
    let mut buf = [0u8; HEADER_LEN];
    r.emit(&mut CarpPacket::new_unchecked(&mut buf[..]));
    assert_eq!(&buf[..], &f[34..]);
    assert!(CarpPacket::new_checked(&f[34..69]).is_err());
}

#[test]
fn check_advert_accepts_the_golden_frame() {
    let a = auth();
    let adv = check(&FRAME, &a).unwrap();
    assert_eq!(adv.src_mac, MacAddr::carp_virtual(1));
    assert_eq!(
        (adv.src_ip, adv.dst_ip),
        (SRC, Ipv4Addr::new(224, 0, 0, 18))
    );
    assert_eq!(
        (adv.vhid, adv.advbase, adv.advskew, adv.demote),
        (1, 1, 0, 0)
    );
    assert_eq!(adv.counter, COUNTER);
    // Ethernet padding after the datagram is ignored.
    let mut padded = FRAME.to_vec();
    padded.extend_from_slice(&[0xee; 10]);
    assert_eq!(check(&padded, &a), Ok(adv));
}

#[test]
fn demote_byte_and_skew_round_trip() {
    let a = auth();
    let mut buf = [0u8; FRAME_LEN];
    build_advert(
        &mut buf,
        &AdvertParams {
            src_ip: SRC,
            advbase: 0,
            advskew: 240,
            demote: 37,
            counter: u64::MAX,
            auth: &a,
        },
    );
    let adv = check(&buf, &a).unwrap();
    assert_eq!(
        (adv.advbase, adv.advskew, adv.demote, adv.counter),
        (0, 240, 37, u64::MAX)
    );
}

/// Each reason, and that an earlier (cheaper) check wins over a later one.
#[test]
fn every_reject_reason() {
    let a = auth();
    let ok = FRAME.to_vec();

    // not_carp: ARP, and UDP.
    let mut f = ok.clone();
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(check(&f, &a), Err(Reject::NotCarp));
    let mut f = ok.clone();
    f[23] = 17;
    fix_checksums(&mut f);
    assert_eq!(check(&f, &a), Err(Reject::NotCarp));
    assert_eq!(check(&f[..10], &a), Err(Reject::NotCarp));

    // bad_ip: truncated header, bad header checksum, a fragment.
    assert_eq!(check(&ok[..30], &a), Err(Reject::BadIp));
    let mut f = ok.clone();
    f[25] ^= 1;
    assert_eq!(check(&f, &a), Err(Reject::BadIp));
    let mut f = ok.clone();
    f[20..22].copy_from_slice(&[0x20, 0x00]); // MF
    fix_checksums(&mut f);
    assert_eq!(check(&f, &a), Err(Reject::BadIp));

    // bad_ttl (checked before the CARP header is even looked at).
    let mut f = ok.clone();
    f[22] = 254;
    f[40] ^= 0xff; // also a bad CARP checksum: TTL is cheaper and first
    Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    assert_eq!(check(&f, &a), Err(Reject::BadTtl));

    // short: an IP payload of 35 bytes.
    let mut f = ok[..69].to_vec();
    f[16..18].copy_from_slice(&55u16.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    assert_eq!(check(&f, &a), Err(Reject::Short));

    // bad_checksum: one bit of the HMAC flipped, CARP checksum left.
    let mut f = ok.clone();
    f[60] ^= 0x10;
    assert_eq!(check(&f, &a), Err(Reject::BadChecksum));

    // bad_version: 3 (VRRPv3), checksum fixed.
    let mut f = ok.clone();
    f[34] = 0x31;
    fix_checksums(&mut f);
    assert_eq!(check(&f, &a), Err(Reject::BadVersion));

    // bad_type: 2.
    let mut f = ok.clone();
    f[34] = 0x22;
    fix_checksums(&mut f);
    assert_eq!(check(&f, &a), Err(Reject::BadType));

    // unknown_vhid.
    let mut f = ok.clone();
    f[35] = 9;
    fix_checksums(&mut f);
    assert_eq!(check(&f, &a), Err(Reject::UnknownVhid));
    assert_eq!(check_advert(&ok, |_| None), Err(Reject::UnknownVhid));

    // bad_auth: another password, another VIP set, a tampered counter.
    assert_eq!(
        check(&ok, &CarpAuth::new(1, b"Secret", &[VIP])),
        Err(Reject::BadAuth)
    );
    let two = CarpAuth::new(1, b"secret", &[VIP, Ipv4Addr::new(172, 25, 46, 99)]);
    assert_eq!(check(&ok, &two), Err(Reject::BadAuth));
    let mut f = ok.clone();
    f[49] = 9;
    fix_checksums(&mut f);
    assert_eq!(check(&f, &a), Err(Reject::BadAuth));

    // As in BSD, the HMAC does not cover advbase/advskew/demote: only the checksum guards them.
    let mut f = ok.clone();
    f[36] = 100;
    fix_checksums(&mut f);
    assert_eq!(check(&f, &a).map(|x| x.advskew), Ok(100));
}

#[test]
fn reject_names_are_the_counter_names() {
    let names: Vec<&str> = Reject::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(
        names,
        [
            "not_carp",
            "bad_ip",
            "bad_ttl",
            "short",
            "bad_checksum",
            "bad_version",
            "bad_type",
            "unknown_vhid",
            "bad_auth",
            "replay",
            "loop"
        ]
    );
    for (i, r) in Reject::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i, "ALL is in discriminant order");
        assert_eq!(r.to_string(), r.name());
    }
}

#[test]
fn replay_guard() {
    let t0 = Instant::now();
    let peer = Ipv4Addr::new(10, 0, 0, 2);
    let other = Ipv4Addr::new(10, 0, 0, 3);
    let mut g = ReplayGuard::new(Duration::from_secs(3));
    assert_eq!(g.check(1, peer, 100, t0), Ok(Fresh::InOrder));
    assert_eq!(g.check(1, peer, 101, t0), Ok(Fresh::InOrder));
    // The same advert again, or an older one.
    assert_eq!(g.check(1, peer, 101, t0), Err(Reject::Replay));
    assert_eq!(
        g.check(1, peer, 50, t0 + Duration::from_secs(1)),
        Err(Reject::Replay)
    );
    // Counters are per VHID, whatever the source claims: the HMAC does not cover the IP
    // header, so a captured advert resent from a new address is still a replay.
    assert_eq!(g.check(2, peer, 5, t0), Ok(Fresh::InOrder));
    assert_eq!(g.check(1, other, 101, t0), Err(Reject::Replay));
    assert_eq!(g.check(1, other, 5, t0), Err(Reject::Replay));
    // Silence does not make the guard forget (issue 10.1): an hour later the old advert is
    // still a replay, resent as often as the attacker likes.
    let later = t0 + Duration::from_secs(3600);
    for k in 0..10 {
        assert_eq!(
            g.check(1, other, 100, later + Duration::from_secs(k)),
            Err(Reject::Replay)
        );
        assert_eq!(
            g.check(1, peer, 100, later + Duration::from_secs(k)),
            Err(Reject::Replay)
        );
    }
    assert_eq!(g.check(1, peer, 102, later), Ok(Fresh::InOrder));
    // Our own counters of this run coming back are a loop, whoever claims to send them, the
    // last one or any earlier one.
    let start = 1_000 << 16 | 0x1234;
    for k in 0..5 {
        g.note_sent(3, start + k * COUNTER_STEP);
    }
    for k in 0..5 {
        assert_eq!(
            g.check(3, other, start + k * COUNTER_STEP, later),
            Err(Reject::Loop)
        );
    }
    // A peer's counter between ours is the peer's.
    assert_eq!(g.check(3, peer, start + 1, later), Ok(Fresh::InOrder));
    g.forget_vhid(1);
    assert_eq!(g.check(1, peer, 1, t0), Ok(Fresh::InOrder));
}

#[test]
fn replay_guard_accepts_a_rebooted_bsd_peer_after_a_run_from_its_address() {
    let t0 = Instant::now();
    let peer = Ipv4Addr::new(10, 0, 0, 2);
    let other = Ipv4Addr::new(10, 0, 0, 1);
    let s = Duration::from_secs(1);
    let mut g = ReplayGuard::new(Duration::from_secs(3));
    assert_eq!(g.check(1, peer, 1 << 60, t0), Ok(Fresh::InOrder));
    // The peer reboots and draws a lower random counter; it counts up by one per advert.
    assert_eq!(g.check(1, peer, 77, t0 + 5 * s), Err(Reject::Replay));
    // Another address cannot take part in the run.
    assert_eq!(g.check(1, other, 78, t0 + 6 * s), Err(Reject::Replay));
    assert_eq!(g.check(1, peer, 78, t0 + 6 * s), Err(Reject::Replay));
    assert_eq!(
        g.check(1, peer, 79, t0 + 7 * s),
        Ok(Fresh::AfterRestart),
        "the third in a row is accepted"
    );
    assert_eq!(g.check(1, peer, 80, t0 + 8 * s), Ok(Fresh::InOrder));
    // One captured advert resent every second never makes a run, however long.
    let mut g = ReplayGuard::new(Duration::from_secs(3));
    assert_eq!(g.check(1, peer, 1000, t0), Ok(Fresh::InOrder));
    for k in 1..=30 {
        assert_eq!(g.check(1, peer, 10, t0 + k * s), Err(Reject::Replay));
    }
    // A run that pauses longer than the gap starts over.
    assert_eq!(g.check(1, peer, 11, t0 + 31 * s), Err(Reject::Replay));
    assert_eq!(g.check(1, peer, 12, t0 + 40 * s), Err(Reject::Replay));
    assert_eq!(g.check(1, peer, 13, t0 + 41 * s), Err(Reject::Replay));
    assert_eq!(g.check(1, peer, 14, t0 + 42 * s), Ok(Fresh::AfterRestart));
}

#[test]
fn a_recorded_run_of_a_tandem_peers_adverts_is_never_taken_for_a_reboot() {
    // The attack a review ran: record a run of the backup's adverts while it was master, then
    // play it back, from its address and in order, once it is backup again (it sends nothing).
    let t0 = Instant::now();
    let peer = Ipv4Addr::new(192, 168, 0, 12);
    let s = Duration::from_secs(1);
    let mut g = ReplayGuard::new(Duration::from_secs(3));
    let start = 1_796_680_000u64 << 30 | 0x4321;
    let recorded: Vec<u64> = (0..6).map(|k| start + k * COUNTER_STEP).collect();
    for (k, &c) in recorded.iter().enumerate() {
        assert_eq!(g.check(2, peer, c, t0 + k as u32 * s), Ok(Fresh::InOrder));
    }
    // Played back any number of times, at the peer's pace: every advert is a replay.
    for round in 0..3u32 {
        for (k, &c) in recorded.iter().enumerate() {
            let at = t0 + (60 + 20 * round + k as u32) * s;
            assert_eq!(
                g.check(2, peer, c, at),
                Err(Reject::Replay),
                "round {round} advert {k}"
            );
        }
    }
    // The genuine peer, master again, counts on from its last counter.
    assert_eq!(
        g.check(2, peer, start + 6 * COUNTER_STEP, t0 + 200 * s),
        Ok(Fresh::InOrder)
    );
    // The peer restarts after its clock was set back: new random low bits, below the mark. A
    // run of three on bits never heard is a restart; the old run played back still is not.
    let restarted = (start - (1 << 40)) & !0xffff | 0x9999;
    for k in 0..2 {
        assert_eq!(
            g.check(
                2,
                peer,
                restarted + k * COUNTER_STEP,
                t0 + (210 + k as u32) * s
            ),
            Err(Reject::Replay)
        );
    }
    assert_eq!(
        g.check(2, peer, restarted + 2 * COUNTER_STEP, t0 + 212 * s),
        Ok(Fresh::AfterRestart)
    );
    for (k, &c) in recorded.iter().enumerate() {
        let at = t0 + (300 + k as u32) * s;
        assert_eq!(
            g.check(2, peer, c, at),
            Err(Reject::Replay),
            "old run, advert {k}"
        );
    }
    // A BSD peer's run that lost an advert (a step of 2) is still a reboot.
    let mut g = ReplayGuard::new(Duration::from_secs(3));
    assert_eq!(g.check(1, peer, 1 << 60, t0), Ok(Fresh::InOrder));
    assert_eq!(g.check(1, peer, 500, t0 + s), Err(Reject::Replay));
    assert_eq!(g.check(1, peer, 502, t0 + 2 * s), Err(Reject::Replay));
    assert_eq!(g.check(1, peer, 503, t0 + 3 * s), Ok(Fresh::AfterRestart));
    // Steps past MAX_RESTART_STEP start the run over.
    let mut g = ReplayGuard::new(Duration::from_secs(3));
    assert_eq!(g.check(1, peer, 1 << 60, t0), Ok(Fresh::InOrder));
    let big = tandem_control::carp::wire::MAX_RESTART_STEP + 1;
    for k in 1..=5 {
        assert_eq!(
            g.check(1, peer, 500 + k * big, t0 + k as u32 * s),
            Err(Reject::Replay)
        );
    }
}

#[test]
fn no_forged_counter_locks_the_genuine_peer_out() {
    // A review's scenarios: counters of runs the guard never heard (this box's own earlier
    // runs, the peer's runs from before this box started) sent from the peer's address.
    let t0 = Instant::now();
    let peer = Ipv4Addr::new(192, 168, 0, 12);
    let s = Duration::from_secs(1);
    let p_run = 1_796_680_000u64 << 30 | 0x1111;
    let mut g = ReplayGuard::new(Duration::from_secs(3));
    for k in 0..3 {
        assert_eq!(
            g.check(2, peer, p_run + k * COUNTER_STEP, t0 + k as u32 * s),
            Ok(Fresh::InOrder)
        );
    }
    // A: one counter far above the mark, on bits never heard: taken (a one-off, as any
    // recording from before this box's start), but the peer's run goes on.
    let forged_high = (p_run + (1 << 40)) & !0xffff | 0x2222;
    assert_eq!(
        g.check(2, peer, forged_high, t0 + 4 * s),
        Ok(Fresh::InOrder)
    );
    assert_eq!(
        g.check(2, peer, p_run + 3 * COUNTER_STEP, t0 + 5 * s),
        Ok(Fresh::InOrder),
        "the genuine run goes on above its own highest counter"
    );
    // B: three counters below the mark on unheard bits, sent 1 ms apart: a "restart"; the
    // peer's run still goes on.
    let forged_low = (p_run - (1 << 40)) & !0xffff | 0x3333;
    let mut at = t0 + 6 * s;
    let mut last = Ok(Fresh::InOrder);
    for k in 0..3 {
        at += Duration::from_millis(1);
        last = g.check(2, peer, forged_low + k * COUNTER_STEP, at);
    }
    assert_eq!(last, Ok(Fresh::AfterRestart));
    assert_eq!(
        g.check(2, peer, p_run + 4 * COUNTER_STEP, t0 + 7 * s),
        Ok(Fresh::InOrder)
    );
    // Both forgeries' recordings, and the peer's, are replays now.
    for c in [forged_high, forged_low, p_run, p_run + 4 * COUNTER_STEP] {
        assert_eq!(
            g.check(2, peer, c, t0 + 8 * s),
            Err(Reject::Replay),
            "{c:#x}"
        );
    }
}

#[test]
fn a_bsd_peer_counting_by_one_is_accepted_advert_after_advert() {
    // Its low bits change every advert: the runs it leaves behind never refuse its next one,
    // across a wrap of the low 16 bits too.
    let t0 = Instant::now();
    let peer = Ipv4Addr::new(10, 0, 0, 2);
    let mut g = ReplayGuard::new(Duration::from_secs(3));
    let start = 0x0123_4567_89ab_ff00u64;
    for k in 0..70_000u64 {
        let at = t0 + Duration::from_millis(k);
        assert_eq!(
            g.check(1, peer, start + k, at),
            Ok(Fresh::InOrder),
            "advert {k}"
        );
    }
    // And an advert it sent long ago is a replay.
    assert_eq!(
        g.check(1, peer, start + 10, t0 + Duration::from_secs(80)),
        Err(Reject::Replay)
    );
}

#[test]
fn initial_counters_grow_across_restarts() {
    let a = tandem_control::carp::wire::initial_counter();
    std::thread::sleep(Duration::from_millis(2));
    let b = tandem_control::carp::wire::initial_counter();
    assert!(b > a + 1_000_000, "{a} then {b}");
}

/// xorshift64*: the tests' reproducible randomness (tandem-control has no proptest).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Arbitrary bytes, and valid frames with random bytes changed, never panic; whatever passes
/// carries the VHID the lookup knows.
#[test]
fn arbitrary_bytes_never_panic() {
    let a = auth();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..200_000u32 {
        let mut f: Vec<u8> = if case % 2 == 0 {
            let len = (rng.next() % 120) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            let mut f = FRAME.to_vec();
            let len = 14 + (rng.next() % 60) as usize;
            f.truncate(len.max(14) + (rng.next() % 2) as usize * 60);
            for _ in 0..(rng.next() % 4) {
                let i = (rng.next() as usize) % f.len();
                f[i] = rng.next() as u8;
            }
            if rng.next() & 1 == 0 && f.len() >= 34 {
                fix_checksums(&mut f);
            }
            f
        };
        if case % 7 == 0 {
            f.extend_from_slice(&[0; 8]);
        }
        if let Ok(adv) = check(&f, &a) {
            assert_eq!(adv.vhid, 1, "case {case}: {f:02x?}");
        }
        if let Ok(p) = CarpPacket::new_checked(&f[..]) {
            let _ = (
                p.counter(),
                p.hmac(),
                p.verify_checksum(),
                CarpRepr::parse(&p),
            );
        }
    }
}
