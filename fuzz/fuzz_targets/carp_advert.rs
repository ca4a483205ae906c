//! CARP adverts as they arrive on a dataplane port. Input: one control byte, then the frame.
//! Control bit 0: sign the frame first (IPv4 header checksum, HMAC of VHID 1 or 2 over its
//! counter, CARP checksum), so mutations reach everything after the HMAC. Whatever the bytes,
//! nothing panics; an advert that passes rebuilds (`build_advert`) into one that passes with
//! the same fields; the replay guard takes any sequence of counters.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tandem_control::carp::wire::{
    build_advert, check_advert, AdvertParams, CarpAuth, CarpPacket, CarpRepr, ReplayGuard,
    FRAME_LEN,
};
use tandem_dataplane::wire::ethernet::{self, EtherType, EthernetFrame};
use tandem_dataplane::wire::ipv4::{IpProtocol, Ipv4Packet};

fn groups() -> &'static [CarpAuth; 2] {
    static G: OnceLock<[CarpAuth; 2]> = OnceLock::new();
    G.get_or_init(|| {
        [
            CarpAuth::new(1, b"wan-secret", &[Ipv4Addr::new(172, 25, 46, 100)]),
            CarpAuth::new(2, b"lan-secret", &[Ipv4Addr::new(192, 168, 0, 10)]),
        ]
    })
}

fn group(vhid: u8) -> Option<&'static CarpAuth> {
    groups().iter().find(|g| g.vhid() == vhid)
}

/// Makes everything but the fields under test right: IPv4 header checksum, HMAC, CARP checksum.
fn sign(f: &mut [u8]) {
    let Ok(eth) = EthernetFrame::new_checked(&f[..]) else {
        return;
    };
    if eth.ethertype() != EtherType::Ipv4 {
        return;
    }
    let ip_bytes = &mut f[ethernet::HEADER_LEN..];
    let Ok(ip) = Ipv4Packet::new_checked(&ip_bytes[..]) else {
        return;
    };
    if ip.next_header() == IpProtocol::Carp {
        let mut ip = Ipv4Packet::new_unchecked(&mut *ip_bytes);
        if let Ok(mut carp) = CarpPacket::new_checked(ip.payload_mut()) {
            if let Some(auth) = group(carp.vhid()) {
                let hmac = auth.compute(carp.counter());
                carp.set_hmac(&hmac);
            }
            carp.fill_checksum();
        }
    }
    Ipv4Packet::new_unchecked(ip_bytes).fill_checksum();
}

fuzz_target!(|data: &[u8]| {
    let Some((ctl, frame)) = data.split_first() else {
        return;
    };
    let mut f = frame.to_vec();
    if ctl & 1 != 0 {
        sign(&mut f);
    }
    // The bare header view, wherever the bytes come from.
    if let Ok(p) = CarpPacket::new_checked(&f[..]) {
        let _ = (
            p.version(),
            p.msg_type(),
            p.authlen(),
            p.checksum(),
            p.counter_bytes(),
        );
        let _ = CarpRepr::parse(&p);
    }
    let Ok(advert) = check_advert(&f, group) else {
        return;
    };
    let mut guard = ReplayGuard::new(Duration::from_secs(3));
    let t0 = Instant::now();
    guard
        .check(advert.vhid, advert.src_ip, advert.counter, t0)
        .expect("the first advert of a VHID is fresh");
    assert!(
        guard
            .check(advert.vhid, advert.src_ip, advert.counter, t0)
            .is_err(),
        "the same counter again is a replay"
    );

    let auth = group(advert.vhid).expect("check_advert only passes known VHIDs");
    let mut out = [0u8; FRAME_LEN];
    let n = build_advert(
        &mut out,
        &AdvertParams {
            src_ip: advert.src_ip,
            advbase: advert.advbase,
            advskew: advert.advskew,
            demote: advert.demote,
            counter: advert.counter,
            auth,
        },
    );
    let again = check_advert(&out[..n], group).expect("a rebuilt advert passes");
    assert_eq!(
        (
            again.vhid,
            again.advbase,
            again.advskew,
            again.demote,
            again.counter,
            again.src_ip
        ),
        (
            advert.vhid,
            advert.advbase,
            advert.advskew,
            advert.demote,
            advert.counter,
            advert.src_ip
        )
    );
});
