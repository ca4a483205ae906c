//! Fragments and the egress MTU on box A (issue 10.8): fragmented UDP and ICMP through NAT both
//! ways (the reassembled datagrams checked by etherparse, transport checksum included),
//! followers of a blocked or unseen first fragment, overlaps, the table's bound and expiry, DF
//! against a smaller MTU, fragments to the box itself. Exact counter deltas for each step.

mod common;

use std::net::Ipv4Addr;

use common::*;
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::Icmpv4Type;
use tandem_dataplane::fragment::FragConfig;

const T0: u64 = 1_000;
const NAT_PORT: u16 = 1024;

// ----- fragments, built and reassembled by the test itself -----

fn set_ip_checksum(ip: &mut [u8]) {
    let hl = usize::from(ip[0] & 0x0f) * 4;
    ip[10..12].fill(0);
    let c = ones_complement(&ip[..hl]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Splits an Ethernet/IPv4 frame into fragments of at most `mtu` bytes of IP (RFC 791: every
/// payload but the last a multiple of 8), with IP id `id` and DF clear, as a sending host does.
fn fragments(frame: &[u8], mtu: usize, id: u16) -> Vec<Vec<u8>> {
    let (eth, ip) = frame.split_at(14);
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let payload = &ip[hl..total];
    let step = (mtu - hl) / 8 * 8;
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + step).min(payload.len());
        let mut f = eth.to_vec();
        f.extend_from_slice(&ip[..hl]);
        f.extend_from_slice(&payload[off..end]);
        let ipb = &mut f[14..];
        ipb[2..4].copy_from_slice(&u16::try_from(hl + end - off).unwrap().to_be_bytes());
        ipb[4..6].copy_from_slice(&id.to_be_bytes());
        let mf: u16 = if end < payload.len() { 0x2000 } else { 0 };
        let word = mf | u16::try_from(off / 8).unwrap();
        ipb[6..8].copy_from_slice(&word.to_be_bytes());
        set_ip_checksum(ipb);
        out.push(pad(f));
        off = end;
    }
    out
}

/// Puts sent fragments back together (each header checksum verified), then parses the whole
/// datagram with etherparse, which checks its transport checksum over every byte.
fn reassemble(frags: &[Vec<u8>]) -> (Parsed, u16) {
    let mut data = Vec::new();
    let mut first: Option<Vec<u8>> = None;
    let mut id = None;
    for f in frags {
        let ip = ip_of(f);
        let hl = usize::from(ip[0] & 0x0f) * 4;
        assert_eq!(ones_complement(&ip[..hl]), 0, "fragment header checksum");
        let this_id = u16::from_be_bytes([ip[4], ip[5]]);
        assert_eq!(*id.get_or_insert(this_id), this_id, "one datagram");
        let off = usize::from(u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff) * 8;
        if off == 0 {
            first = Some(f[..14 + hl].to_vec());
        }
        if data.len() < off + ip.len() - hl {
            data.resize(off + ip.len() - hl, 0);
        }
        data[off..off + ip.len() - hl].copy_from_slice(&ip[hl..]);
    }
    let mut whole = first.expect("the first fragment was sent");
    let hl = whole.len() - 14;
    whole.extend_from_slice(&data);
    let ipb = &mut whole[14..];
    ipb[2..4].copy_from_slice(&u16::try_from(hl + data.len()).unwrap().to_be_bytes());
    ipb[6..8].copy_from_slice(&[0, 0]);
    set_ip_checksum(ipb);
    (parse(&whole), id.unwrap())
}

fn big_payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

fn client_udp(payload: &[u8]) -> Vec<u8> {
    udp_frame(
        CLIENT_MAC,
        LAN_VMAC,
        (CLIENT, 5000),
        (SERVER, 7000),
        64,
        payload,
    )
}

fn server_udp(payload: &[u8]) -> Vec<u8> {
    udp_frame(
        SERVER_MAC,
        WAN_VMAC,
        (SERVER, 7000),
        (WAN_VIP, NAT_PORT),
        64,
        payload,
    )
}

fn send_all(lab: &mut Lab, ifx: u8, frames: &[Vec<u8>], now: u64) {
    for f in frames {
        lab.inject(ifx, f);
    }
    assert_eq!(lab.poll(now), frames.len());
}

fn nat_setup() -> BoxA {
    BoxA {
        ports: tandem_dataplane::filter::PortPolicy::Range(NAT_PORT, NAT_PORT),
        ..box_a()
    }
}

// ----- the tests -----

/// 4000 bytes of UDP each way through NAT, fragmented by the sender at 1500: three fragments
/// out with the NAT address and port, the UDP checksum (which covers the whole datagram) still
/// right; the reply's three fragments back to the client's address and port.
#[test]
fn fragmented_udp_through_nat_both_ways() {
    let mut lab = Lab::with(nat_setup());
    let data = big_payload(4000);

    let out = fragments(&client_udp(&data), 1500, 0x4242);
    assert_eq!(out.len(), 3);
    let s = lab.snapshot();
    send_all(&mut lab, LAN, &out, T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 3),
            ("forwarded", 3),
            ("tx_frames", 3),
            ("states_created", 1),
            ("nat_translated", 3),
            ("frag_flows_created", 1),
            ("frag_followers", 2),
        ],
    );
    assert!(
        lab.dp.frags.is_empty(T0),
        "a complete datagram leaves no entry"
    );
    let sent = lab.sent(WAN);
    assert!(lab.sent(LAN).is_empty());
    assert_eq!(sent.len(), 3);
    for f in &sent {
        let ip = ip_of(f);
        assert_eq!(ip[8], 63, "TTL decremented");
        assert_eq!(&f[..6], &SERVER_MAC);
    }
    let (p, id) = reassemble(&sent);
    assert_eq!(id, 0x4242, "the IP id is kept");
    assert_eq!((p.src(), p.dst()), (WAN_VIP, SERVER));
    assert_eq!(
        (p.udp().source_port, p.udp().destination_port),
        (NAT_PORT, 7000)
    );
    assert_eq!(p.payload, data);

    let back = fragments(&server_udp(&data), 1500, 0x0707);
    let s = lab.snapshot();
    send_all(&mut lab, WAN, &back, T0 + 10);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 3),
            ("forwarded", 3),
            ("tx_frames", 3),
            ("state_hits", 1),
            ("nat_translated", 3),
            ("frag_flows_created", 1),
            ("frag_followers", 2),
        ],
    );
    let sent = lab.sent(LAN);
    assert!(lab.sent(WAN).is_empty());
    let (p, _) = reassemble(&sent);
    assert_eq!((p.src(), p.dst()), (SERVER, CLIENT));
    assert_eq!(
        (p.udp().source_port, p.udp().destination_port),
        (7000, 5000)
    );
    assert_eq!(p.payload, data);
    assert!(lab.dp.frags.is_empty(T0 + 10));
}

/// `ping -s 3000` through NAT: the echo id is translated in the first fragment and its ICMP
/// checksum (over the whole message) patched; the reply comes back with the client's id.
#[test]
fn ping_3000_bytes_through_nat() {
    let mut lab = Lab::new();
    let data = big_payload(3000);
    let req = Echo::request(CLIENT_MAC, LAN_VMAC, CLIENT, SERVER)
        .id(0x1234)
        .seq(1)
        .payload(&data)
        .frame();
    let s = lab.snapshot();
    send_all(&mut lab, LAN, &fragments(&req, 1500, 9), T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 3),
            ("forwarded", 3),
            ("tx_frames", 3),
            ("states_created", 1),
            ("nat_translated", 3),
            ("frag_flows_created", 1),
            ("frag_followers", 2),
        ],
    );
    let (p, _) = reassemble(&lab.sent(WAN));
    assert_eq!(p.src(), WAN_VIP);
    let Icmpv4Type::EchoRequest(echo) = p.icmp().icmp_type.clone() else {
        panic!("not an echo request: {:?}", p.icmp());
    };
    assert_eq!(p.payload, data);

    let reply = Echo::reply(SERVER_MAC, WAN_VMAC, SERVER, WAN_VIP)
        .id(echo.id)
        .seq(1)
        .payload(&data)
        .frame();
    let s = lab.snapshot();
    send_all(&mut lab, WAN, &fragments(&reply, 1500, 10), T0 + 5);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 3),
            ("forwarded", 3),
            ("tx_frames", 3),
            ("state_hits", 1),
            ("nat_translated", 3),
            ("frag_flows_created", 1),
            ("frag_followers", 2),
        ],
    );
    let (p, _) = reassemble(&lab.sent(LAN));
    assert_eq!(p.dst(), CLIENT);
    let Icmpv4Type::EchoReply(echo) = p.icmp().icmp_type.clone() else {
        panic!("not an echo reply: {:?}", p.icmp());
    };
    assert_eq!(echo.id, 0x1234);
    assert_eq!(p.payload, data);
}

/// A later fragment that arrives before its first is dropped (not held), counted; the first and
/// the rest then pass, and the entry waits for the missing bytes until it expires.
#[test]
fn a_follower_before_its_first_fragment_is_dropped() {
    let mut lab = Lab::new();
    let frags = fragments(&client_udp(&big_payload(4000)), 1500, 77);
    let s = lab.snapshot();
    lab.send(LAN, &frags[2], T0);
    s.assert_delta(&lab, &[("rx_frames", 1), ("drop_frag_no_first", 1)]);
    lab.nothing_sent();

    let s = lab.snapshot();
    send_all(&mut lab, LAN, &frags[..2], T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 2),
            ("forwarded", 2),
            ("tx_frames", 2),
            ("states_created", 1),
            ("nat_translated", 2),
            ("frag_flows_created", 1),
            ("frag_followers", 1),
        ],
    );
    assert_eq!(lab.sent(WAN).len(), 2);
    assert_eq!(lab.dp.frags.len(T0), 1, "incomplete: kept until it expires");
    assert_eq!(lab.dp.frags.len(T0 + 10_000), 0, "10 s later: forgotten");
}

/// The first fragment of an unsolicited datagram from the WAN meets the default deny; its
/// followers never pass, nor does an allowed datagram's follower in a broadcast frame or one
/// crafted to overlap the first fragment's header (RFC 1858).
#[test]
fn followers_of_a_blocked_first_fragment_never_pass() {
    let mut lab = Lab::new();
    let frags = fragments(&server_udp(&big_payload(4000)), 1500, 5);
    let s = lab.snapshot();
    send_all(&mut lab, WAN, &frags, T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 3),
            ("drop_blocked_default", 1),
            ("drop_frag_no_first", 2),
        ],
    );
    lab.nothing_sent();
    assert_eq!(lab.dp.states.len(), 0);

    // An allowed datagram, then a fragment of it at offset 8 (over the UDP header's bytes).
    let frags = fragments(&client_udp(&big_payload(4000)), 1500, 6);
    lab.send(LAN, &frags[0], T0);
    assert_eq!(lab.sent(WAN).len(), 1);
    // Its follower in a broadcast frame is not forwarded (RFC 1812 §5.3.4).
    let mut broadcast = frags[1].clone();
    broadcast[..6].copy_from_slice(&BROADCAST);
    let s = lab.snapshot();
    lab.send(LAN, &broadcast, T0);
    s.assert_delta(&lab, &[("rx_frames", 1), ("drop_l2_not_for_us", 1)]);
    lab.nothing_sent();
    let mut overlap = frags[1].clone();
    overlap[14 + 6..14 + 8].copy_from_slice(&1u16.to_be_bytes()); // MF clear, offset 8 bytes
    set_ip_checksum(&mut overlap[14..]);
    let s = lab.snapshot();
    lab.send(LAN, &overlap, T0);
    s.assert_delta(&lab, &[("rx_frames", 1), ("drop_frag_overlap", 1)]);
    lab.nothing_sent();
}

/// The table holds a fixed number of datagrams. A flood of first fragments whose followers
/// never come fills it, then each new one evicts the oldest entry of its shard: the table never
/// grows past its capacity, and a genuine datagram sent after the flood still passes whole.
#[test]
fn a_flood_of_unfinished_datagrams_stays_bounded_and_does_not_shut_out_a_genuine_one() {
    let mut lab = Lab::with(BoxA {
        frags: FragConfig {
            capacity: 64,
            timeout_ms: 10_000,
        },
        ..box_a()
    });
    assert_eq!(lab.dp.frags.capacity(), 64);
    let data = big_payload(4000);
    // The first datagram's first fragment creates the UDP state; the rest hit it.
    let first = fragments(&client_udp(&data), 1500, 0);
    lab.send(LAN, &first[0], T0);
    lab.sent(WAN);
    // 64 shards of one slot, keyed at random: 3000 datagrams fill every shard (the chance
    // that one stays empty is 64 * (63/64)^3000, about 1e-19).
    const TRIES: u16 = 3000;
    let small = big_payload(100);
    let mut evicted = 0u64;
    for id in 1..TRIES {
        let f = &fragments(&client_udp(&small), 60, id)[0];
        let before = lab.counters().frag_flows_evicted.get();
        let s = lab.snapshot();
        let now = T0 + u64::from(id);
        lab.send(LAN, f, now);
        let mut expect = vec![
            ("rx_frames", 1),
            ("forwarded", 1),
            ("tx_frames", 1),
            ("state_hits", 1),
            ("nat_translated", 1),
            ("frag_flows_created", 1),
        ];
        if lab.counters().frag_flows_evicted.get() != before {
            expect.push(("frag_flows_evicted", 1));
            evicted += 1;
        }
        s.assert_delta(&lab, &expect);
        assert_eq!(
            lab.sent(WAN).len(),
            1,
            "every first fragment that passes the rules leaves"
        );
        assert!(lab.dp.frags.len(now) <= 64, "never more entries than slots");
    }
    let end = T0 + u64::from(TRIES);
    assert_eq!(lab.dp.frags.len(end), 64, "every slot in use");
    assert_eq!(
        evicted,
        u64::from(TRIES) - 64,
        "every datagram but the first of each slot evicted one"
    );
    // The first datagram was the oldest of its shard: its follower finds nothing.
    let s = lab.snapshot();
    lab.send(LAN, &first[1], end);
    s.assert_delta(&lab, &[("rx_frames", 1), ("drop_frag_no_first", 1)]);
    lab.nothing_sent();

    // A genuine datagram after the flood: its first fragment evicts the oldest entry of its
    // shard, and all its followers pass.
    let genuine = fragments(&client_udp(&data), 1500, 9999);
    let s = lab.snapshot();
    send_all(&mut lab, LAN, &genuine, end + 1);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 3),
            ("forwarded", 3),
            ("tx_frames", 3),
            ("state_hits", 1),
            ("nat_translated", 3),
            ("frag_flows_created", 1),
            ("frag_flows_evicted", 1),
            ("frag_followers", 2),
        ],
    );
    assert_eq!(lab.sent(WAN).len(), 3);
}

/// A follower must come in on its first fragment's interface: one spoofed from the WAN with the
/// client's datagram identity is dropped, and the genuine followers still pass.
#[test]
fn a_follower_from_another_interface_is_dropped() {
    let mut lab = Lab::new();
    let frags = fragments(&client_udp(&big_payload(4000)), 1500, 41);
    lab.send(LAN, &frags[0], T0);
    assert_eq!(lab.sent(WAN).len(), 1);
    let mut spoofed = frags[1].clone();
    spoofed[..6].copy_from_slice(&WAN_VMAC);
    spoofed[6..12].copy_from_slice(&SERVER_MAC);
    let s = lab.snapshot();
    lab.send(WAN, &spoofed, T0);
    s.assert_delta(&lab, &[("rx_frames", 1), ("drop_frag_conflict", 1)]);
    lab.nothing_sent();
    let s = lab.snapshot();
    send_all(&mut lab, LAN, &frags[1..], T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 2),
            ("forwarded", 2),
            ("tx_frames", 2),
            ("nat_translated", 2),
            ("frag_followers", 2),
        ],
    );
    assert_eq!(lab.dp.frags.len(T0), 0, "complete");
}

/// An entry lives for the fragment timeout: a follower after it is dropped and the expiry
/// counted.
#[test]
fn a_follower_after_the_timeout_is_dropped() {
    let mut lab = Lab::with(BoxA {
        frags: FragConfig {
            capacity: 4096,
            timeout_ms: 100,
        },
        ..box_a()
    });
    let frags = fragments(&client_udp(&big_payload(4000)), 1500, 31);
    lab.send(LAN, &frags[0], T0);
    lab.send(LAN, &frags[1], T0 + 99);
    assert_eq!(lab.sent(WAN).len(), 2);
    let s = lab.snapshot();
    lab.send(LAN, &frags[2], T0 + 100);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("drop_frag_no_first", 1),
            ("frag_flows_expired", 1),
        ],
    );
    lab.nothing_sent();
}

/// DF set and longer than the egress MTU: the sender gets an ICMP fragmentation needed from the
/// box's address on its side, with the egress MTU, quoting its datagram as sent; no state is
/// created. DF clear: translated, then fragmented to the MTU as it leaves. A datagram of
/// exactly the MTU passes whole, and an established flow meets the same check.
#[test]
fn df_over_a_smaller_mtu_gets_fragmentation_needed_with_the_mtu() {
    let mut lab = Lab::with(BoxA {
        mtu: (1500, 1400),
        ..nat_setup()
    });
    // 1500 bytes of IP to the WAN (MTU 1400), DF set as by every modern stack.
    let big = client_udp(&big_payload(1500 - 28));
    let s = lab.snapshot();
    lab.send(LAN, &big, T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("drop_frag_needed", 1),
            ("icmp_errors_sent", 1),
            ("tx_frames", 1),
        ],
    );
    assert_eq!(lab.dp.states.len(), 0);
    let p = parse(&lab.one_sent(LAN));
    assert_eq!((p.src(), p.dst()), (LAN_IP, CLIENT));
    assert_eq!(p.eth.destination, CLIENT_MAC);
    assert_eq!(
        p.icmp().icmp_type,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1400
        })
    );
    let (q, q8) = parse_quoted(&p.payload);
    assert_eq!((Ipv4Addr::from(q.source), q.total_len), (CLIENT, 1500));
    assert_eq!(u16::from_be_bytes([q8[0], q8[1]]), 5000, "the port as sent");

    // DF clear: NATed, then cut in two at 1400 (1376 bytes of payload, a multiple of 8, and
    // the last 104); the UDP checksum, patched for the NAT before the cut, verifies over the
    // reassembled datagram.
    let data = big_payload(1500 - 28);
    let mut no_df = client_udp(&data);
    edit_ipv4(&mut no_df, |ip| {
        ip.dont_fragment = false;
        ip.identification = 0x5151;
    });
    let s = lab.snapshot();
    lab.send(LAN, &no_df, T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("forwarded", 1),
            ("tx_frames", 2),
            ("states_created", 1),
            ("nat_translated", 1),
            ("frags_made", 2),
        ],
    );
    assert!(lab.sent(LAN).is_empty());
    let out = lab.sent(WAN);
    let sizes: Vec<usize> = out.iter().map(|f| ip_of(f).len()).collect();
    assert_eq!(sizes, [1396, 124]);
    for f in &out {
        assert_eq!(&f[..6], &SERVER_MAC);
        assert_eq!(ip_of(f)[8], 63, "TTL decremented once");
    }
    let (p, id) = reassemble(&out);
    assert_eq!(id, 0x5151);
    assert_eq!((p.src(), p.dst()), (WAN_VIP, SERVER));
    assert_eq!(
        (p.udp().source_port, p.udp().destination_port),
        (NAT_PORT, 7000)
    );
    assert_eq!(p.payload, data);

    // Exactly the MTU: passes whole; the established flow's big DF datagram meets the same
    // answer as before.
    let fits = client_udp(&big_payload(1400 - 28));
    lab.send(LAN, &fits, T0);
    assert_eq!(parse(&lab.one_sent(WAN)).ip.total_len, 1400);
    let s = lab.snapshot();
    lab.send(LAN, &big, T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("state_hits", 1),
            ("drop_frag_needed", 1),
            ("icmp_errors_sent", 1),
            ("tx_frames", 1),
        ],
    );
    assert_eq!(parse(&lab.one_sent(LAN)).dst(), CLIENT);

    // The other way (into the LAN, MTU 1500) 1500 bytes pass.
    let reply = udp_frame(
        SERVER_MAC,
        WAN_VMAC,
        (SERVER, 7000),
        (WAN_VIP, NAT_PORT),
        64,
        &big_payload(1500 - 28),
    );
    lab.send(WAN, &reply, T0);
    assert_eq!(parse(&lab.one_sent(LAN)).ip.total_len, 1500);
}

/// Fragments addressed to the box itself (a big ping to the VIP): it reassembles nothing.
/// A first fragment too short for its transport header (RFC 1858's tiny fragment) is malformed.
#[test]
fn fragments_to_the_box_and_tiny_first_fragments_are_dropped() {
    let mut lab = Lab::new();
    let req = Echo::request(CLIENT_MAC, LAN_VMAC, CLIENT, LAN_VIP)
        .id(1)
        .seq(1)
        .payload(&big_payload(3000))
        .frame();
    let s = lab.snapshot();
    send_all(&mut lab, LAN, &fragments(&req, 1500, 3), T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 3),
            ("drop_fragment", 1),
            ("drop_frag_no_first", 2),
        ],
    );
    lab.nothing_sent();

    // TCP cut after 8 bytes: the flags are in the second fragment.
    let syn = Tcp::new(CLIENT_MAC, LAN_VMAC, (CLIENT, 40000), (SERVER, 80))
        .flags("S")
        .seq(1)
        .frame();
    let tiny = fragments(&syn, 28, 4);
    assert_eq!(tiny.len(), 3);
    let s = lab.snapshot();
    send_all(&mut lab, LAN, &tiny, T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 3),
            ("drop_l4_malformed", 1),
            ("drop_frag_no_first", 2),
        ],
    );
    lab.nothing_sent();
    assert_eq!(lab.dp.states.len(), 0);
}

/// Fragments (no DF, as a host's fragments are) that are still too big for a smaller egress
/// MTU are fragmented again, offsets kept within the original datagram and MF on every piece
/// but the datagram's last: the server's reassembly gets the whole datagram, NATed.
#[test]
fn fragments_too_big_for_the_egress_mtu_are_fragmented_again() {
    let mut lab = Lab::with(BoxA {
        mtu: (1500, 1400),
        ..nat_setup()
    });
    let data = big_payload(4000);
    let frags = fragments(&client_udp(&data), 1500, 0x0aaa);
    let s = lab.snapshot();
    send_all(&mut lab, LAN, &frags, T0);
    // 1480 + 1480 + 1048 bytes of payload in; the first two cut in two (1376 + 104) at 1400.
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 3),
            ("forwarded", 3),
            ("tx_frames", 5),
            ("states_created", 1),
            ("nat_translated", 3),
            ("frag_flows_created", 1),
            ("frag_followers", 2),
            ("frags_made", 4),
        ],
    );
    let out = lab.sent(WAN);
    let mut sizes: Vec<usize> = out.iter().map(|f| ip_of(f).len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [124, 124, 1068, 1396, 1396]);
    let (p, id) = reassemble(&out);
    assert_eq!(id, 0x0aaa);
    assert_eq!((p.src(), p.udp().source_port), (WAN_VIP, NAT_PORT));
    assert_eq!(p.payload, data);
    let last_mf: Vec<bool> = out
        .iter()
        .map(|f| u16::from_be_bytes([ip_of(f)[6], ip_of(f)[7]]) & 0x2000 != 0)
        .collect();
    assert_eq!(
        last_mf.iter().filter(|mf| !**mf).count(),
        1,
        "one last fragment"
    );
}

/// Too big without DF while the next hop's MAC is unknown: not queued for ARP (it would be
/// released whole, too big for the link), dropped and counted.
#[test]
fn too_big_without_df_towards_an_unresolved_next_hop_is_dropped() {
    let mut lab = Lab::with(BoxA {
        mtu: (1500, 1400),
        neighbours: false,
        ..nat_setup()
    });
    let mut no_df = client_udp(&big_payload(1500 - 28));
    edit_ipv4(&mut no_df, |ip| ip.dont_fragment = false);
    let s = lab.snapshot();
    lab.send(LAN, &no_df, T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("states_created", 1),
            ("nat_translated", 1),
            ("drop_too_big", 1),
        ],
    );
    lab.nothing_sent();
}

/// Found by a review: a later fragment kept what followed its datagram in the frame (a
/// trailer no rule looks at), where whole datagrams and first fragments are cut to theirs.
#[test]
fn a_later_fragment_is_cut_to_its_datagram() {
    let mut lab = Lab::with(nat_setup());
    let mut out = fragments(&client_udp(&big_payload(2000)), 1500, 0x5151);
    assert_eq!(out.len(), 2);
    let whole = out[1].len();
    out[1].extend_from_slice(&[0xa5; 500]);
    send_all(&mut lab, LAN, &out, T0);
    let sent = lab.sent(WAN);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].len(), whole, "the trailer crossed the box");
}
