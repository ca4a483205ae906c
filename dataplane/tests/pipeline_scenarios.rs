//! Box A end to end: frames in on in-memory ports, frames out checked by etherparse, exact
//! counter deltas for each step.

mod common;

use std::net::Ipv4Addr;

use common::*;
use etherparse::icmpv4::{DestUnreachableHeader, TimeExceededCode};
use etherparse::Icmpv4Type;
use tandem_dataplane::filter::{
    Action, AddrMatch, PortPolicy, PortRange, Prefix, ProtoMatch, Rule,
};
use tandem_dataplane::state::{FlowKey, TableConfig};

const T0: u64 = 1_000;

// ---------- 1. ARP ----------

#[test]
fn arp_answers_for_held_vip_and_own_address_only() {
    let mut lab = Lab::new();

    // Who has the LAN VIP: the virtual MAC answers, with the VIP as sender.
    let s = lab.snapshot();
    lab.send(LAN, &arp_request(CLIENT_MAC, CLIENT, LAN_VIP), T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("replied", 1),
            ("arp_replies", 1),
            ("tx_frames", 1),
        ],
    );
    let a = parse_arp(&lab.one_sent(LAN));
    assert_eq!(
        a,
        Arp {
            eth_src: LAN_VMAC,
            eth_dst: CLIENT_MAC,
            op: 2,
            sha: LAN_VMAC,
            spa: LAN_VIP,
            tha: CLIENT_MAC,
            tpa: CLIENT,
        }
    );

    // Who has the interface address: the interface MAC. (The request's padding is garbage:
    // the reply, built in its buffer, must not carry it.)
    let mut req = arp_request(CLIENT_MAC, CLIENT, LAN_IP);
    req[42..].fill(0xee);
    let s = lab.snapshot();
    lab.send(LAN, &req, T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("replied", 1),
            ("arp_replies", 1),
            ("tx_frames", 1),
        ],
    );
    let a = parse_arp(&lab.one_sent(LAN));
    assert_eq!((a.eth_src, a.sha, a.spa), (LAN_MAC, LAN_MAC, LAN_IP));
    assert_eq!(
        (a.eth_dst, a.op, a.tha, a.tpa),
        (CLIENT_MAC, 2, CLIENT_MAC, CLIENT)
    );

    // Someone else's address: silence.
    let s = lab.snapshot();
    lab.send(
        LAN,
        &arp_request(CLIENT_MAC, CLIENT, Ipv4Addr::new(192, 168, 0, 50)),
        T0,
    );
    s.assert_delta(&lab, &[("rx_frames", 1), ("arp_ignored", 1)]);
    lab.nothing_sent();

    // The WAN VIP asked on the LAN: not this interface's.
    let s = lab.snapshot();
    lab.send(LAN, &arp_request(CLIENT_MAC, CLIENT, WAN_VIP), T0);
    s.assert_delta(&lab, &[("rx_frames", 1), ("arp_ignored", 1)]);
    lab.nothing_sent();

    // Backup for vhid 2: the VIP is the master's, not ours.
    lab.dp.held.set(2, false);
    let s = lab.snapshot();
    lab.send(LAN, &arp_request(CLIENT_MAC, CLIENT, LAN_VIP), T0);
    s.assert_delta(&lab, &[("rx_frames", 1), ("arp_ignored", 1)]);
    lab.nothing_sent();
}

// ---------- 2. ARP resolution with waiting packets ----------

#[test]
fn frames_wait_for_arp_and_leave_in_order_with_the_learnt_mac() {
    let mut lab = Lab::with(BoxA {
        neighbours: false,
        ..box_a()
    });
    lab.dp
        .neigh
        .learn(LAN, CLIENT, tandem_dataplane::wire::MacAddr(CLIENT_MAC), 0);

    let s = lab.snapshot();
    for i in 0..3u8 {
        lab.inject(
            LAN,
            &udp_frame(
                CLIENT_MAC,
                LAN_MAC,
                (CLIENT, 5000),
                (SERVER, 53),
                64,
                &[i; 4],
            ),
        );
    }
    assert_eq!(lab.poll(T0), 3);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 3),
            ("neigh_queued", 3),
            ("states_created", 1),
            ("state_hits", 2),
            ("nat_translated", 3),
            ("arp_requests", 1),
            ("tx_frames", 1),
        ],
    );
    assert!(lab.sent(LAN).is_empty());
    let req = lab.sent(WAN);
    assert_eq!(req.len(), 1, "one ARP request for three frames");
    let a = parse_arp(&req[0]);
    assert_eq!(
        a,
        Arp {
            eth_src: WAN_MAC,
            eth_dst: BROADCAST,
            op: 1,
            sha: WAN_MAC,
            spa: WAN_IP,
            tha: [0; 6],
            tpa: SERVER,
        }
    );

    // The server answers: the three frames leave, in order, to its MAC.
    let s = lab.snapshot();
    lab.send(
        WAN,
        &arp_frame(SERVER_MAC, WAN_MAC, 2, SERVER_MAC, SERVER, WAN_MAC, WAN_IP),
        T0 + 5,
    );
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("arp_ignored", 1),
            ("neigh_released", 3),
            ("tx_frames", 3),
        ],
    );
    assert!(lab.sent(LAN).is_empty());
    let out = lab.sent(WAN);
    assert_eq!(out.len(), 3);
    for (i, f) in out.iter().enumerate() {
        let p = parse(f);
        assert_eq!(p.eth.destination, SERVER_MAC);
        assert_eq!(p.eth.source, WAN_MAC);
        assert_eq!((p.src(), p.dst()), (WAN_VIP, SERVER));
        assert_eq!(p.ip.time_to_live, 63);
        assert_eq!(p.payload, vec![i as u8; 4], "frame {i} in order");
    }
    assert_eq!(
        lab.dp.neigh.lookup(WAN, SERVER).map(|m| m.0),
        Some(SERVER_MAC)
    );
}

// ---------- 3. Ping the VIPs ----------

#[test]
fn ping_lan_vip_is_answered_by_the_vip_and_wan_vip_is_default_denied() {
    let mut lab = Lab::new();
    let s = lab.snapshot();
    lab.send(
        LAN,
        &Echo::request(CLIENT_MAC, LAN_VMAC, CLIENT, LAN_VIP)
            .id(7)
            .seq(1)
            .payload(b"ping")
            .frame(),
        T0,
    );
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("replied", 1),
            ("icmp_echo_replies", 1),
            ("tx_frames", 1),
        ],
    );
    let p = parse(&lab.one_sent(LAN));
    assert_eq!(
        p.eth.source, LAN_VMAC,
        "from the MAC the request was sent to"
    );
    assert_eq!(p.eth.destination, CLIENT_MAC);
    assert_eq!((p.src(), p.dst()), (LAN_VIP, CLIENT));
    assert_eq!(p.ip.time_to_live, 64);
    match p.icmp().icmp_type {
        Icmpv4Type::EchoReply(e) => assert_eq!((e.id, e.seq), (7, 1)),
        ref t => panic!("{t:?}"),
    }
    assert_eq!(p.payload, b"ping");
    assert_eq!(lab.dp.states.len(), 0, "pings to the box keep no state");

    let s = lab.snapshot();
    lab.send(
        WAN,
        &Echo::request(SERVER_MAC, WAN_VMAC, SERVER, WAN_VIP)
            .id(8)
            .seq(1)
            .payload(b"ping")
            .frame(),
        T0,
    );
    s.assert_delta(&lab, &[("rx_frames", 1), ("drop_blocked_default", 1)]);
    lab.nothing_sent();
}

// ---------- 4. TCP through NAT ----------

#[test]
fn tcp_connection_through_nat_both_ways() {
    let mut lab = Lab::new();
    let c = (CLIENT, 40000);
    let srv = (SERVER, 80);

    // SYN out.
    let s = lab.snapshot();
    lab.send(
        LAN,
        &Tcp::new(CLIENT_MAC, LAN_VMAC, c, srv)
            .flags("S")
            .seq(1000)
            .frame(),
        T0,
    );
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("forwarded", 1),
            ("tx_frames", 1),
            ("states_created", 1),
            ("nat_translated", 1),
        ],
    );
    let p = parse(&lab.one_sent(WAN));
    assert_eq!((p.eth.source, p.eth.destination), (WAN_MAC, SERVER_MAC));
    assert_eq!((p.src(), p.dst()), (WAN_VIP, SERVER));
    assert_eq!(p.ip.time_to_live, 63);
    let nat_port = p.tcp().source_port;
    assert!((1024..=65535).contains(&nat_port));
    assert_eq!(p.tcp().destination_port, 80);
    assert!(p.tcp().syn && !p.tcp().ack);
    assert_eq!(p.tcp().sequence_number, 1000);

    // The pass rule counts the SYN, and its IP bytes (20 + 20: `tandemctl rules`' Bytes).
    let gen = lab.dp.generation.load();
    let hit: Vec<_> = gen
        .ruleset
        .rules(LAN)
        .iter()
        .map(|r| (r.counters.hits(), r.counters.bytes()))
        .filter(|&(hits, _)| hits > 0)
        .collect();
    assert_eq!(hit, [(1, 40)]);

    let states = lab.dp.states.snapshot();
    assert_eq!(states.len(), 1);
    let st = &states[0];
    assert_eq!(st.stack, FlowKey::new(6, CLIENT, 40000, SERVER, 80));
    assert_eq!(st.wire(), FlowKey::new(6, WAN_VIP, nat_port, SERVER, 80));

    let vip = (WAN_VIP, nat_port);
    // (from, frame, expected (src, sport) -> (dst, dport) on the other side)
    let steps: Vec<(u8, Vec<u8>)> = vec![
        (
            WAN,
            Tcp::new(SERVER_MAC, WAN_VMAC, srv, vip)
                .flags("SA")
                .seq(5000)
                .ack(1001)
                .frame(),
        ),
        (
            LAN,
            Tcp::new(CLIENT_MAC, LAN_VMAC, c, srv)
                .flags("A")
                .seq(1001)
                .ack(5001)
                .frame(),
        ),
        (
            LAN,
            Tcp::new(CLIENT_MAC, LAN_VMAC, c, srv)
                .flags("PA")
                .seq(1001)
                .ack(5001)
                .payload(b"GET")
                .frame(),
        ),
        (
            WAN,
            Tcp::new(SERVER_MAC, WAN_VMAC, srv, vip)
                .flags("PA")
                .seq(5001)
                .ack(1004)
                .payload(b"HTTP")
                .frame(),
        ),
        (
            LAN,
            Tcp::new(CLIENT_MAC, LAN_VMAC, c, srv)
                .flags("FA")
                .seq(1004)
                .ack(5005)
                .frame(),
        ),
        (
            WAN,
            Tcp::new(SERVER_MAC, WAN_VMAC, srv, vip)
                .flags("FA")
                .seq(5005)
                .ack(1005)
                .frame(),
        ),
        (
            LAN,
            Tcp::new(CLIENT_MAC, LAN_VMAC, c, srv)
                .flags("A")
                .seq(1005)
                .ack(5006)
                .frame(),
        ),
    ];
    for (i, (from, f)) in steps.iter().enumerate() {
        let sent = parse(f);
        let s = lab.snapshot();
        lab.send(*from, f, T0 + 10 * (i as u64 + 1));
        s.assert_delta(
            &lab,
            &[
                ("rx_frames", 1),
                ("forwarded", 1),
                ("tx_frames", 1),
                ("state_hits", 1),
                ("nat_translated", 1),
            ],
        );
        let to = if *from == LAN { WAN } else { LAN };
        let p = parse(&lab.one_sent(to));
        assert_eq!(p.ip.time_to_live, 63, "step {i}: TTL decremented once");
        let t = p.tcp();
        assert_eq!(t.sequence_number, sent.tcp().sequence_number, "step {i}");
        assert_eq!(
            t.acknowledgment_number,
            sent.tcp().acknowledgment_number,
            "step {i}"
        );
        assert_eq!(p.payload, sent.payload, "step {i}");
        if *from == LAN {
            assert_eq!((p.eth.source, p.eth.destination), (WAN_MAC, SERVER_MAC));
            assert_eq!((p.src(), t.source_port), (WAN_VIP, nat_port), "step {i}");
            assert_eq!((p.dst(), t.destination_port), (SERVER, 80), "step {i}");
        } else {
            assert_eq!((p.eth.source, p.eth.destination), (LAN_MAC, CLIENT_MAC));
            assert_eq!((p.src(), t.source_port), (SERVER, 80), "step {i}");
            assert_eq!((p.dst(), t.destination_port), (CLIENT, 40000), "step {i}");
        }
    }
    assert_eq!(lab.dp.states.len(), 1);
    let tr = lab.dp.states.snapshot()[0].tracking();
    assert_eq!(tr.packets, [5, 3]);
}

// ---------- 5. Unsolicited traffic ----------

#[test]
fn unsolicited_syn_from_wan_and_stateless_ack_from_lan_are_dropped() {
    let mut lab = Lab::new();
    for (dst, mac) in [((CLIENT, 22), WAN_MAC), ((WAN_VIP, 22), WAN_VMAC)] {
        let s = lab.snapshot();
        lab.send(
            WAN,
            &Tcp::new(SERVER_MAC, mac, (SERVER, 5555), dst)
                .flags("S")
                .seq(1)
                .frame(),
            T0,
        );
        s.assert_delta(&lab, &[("rx_frames", 1), ("drop_blocked_default", 1)]);
        lab.nothing_sent();
    }
    assert_eq!(lab.dp.states.len(), 0);

    let s = lab.snapshot();
    lab.send(
        LAN,
        &Tcp::new(CLIENT_MAC, LAN_MAC, (CLIENT, 40001), (SERVER, 80))
            .flags("A")
            .seq(1)
            .ack(1)
            .frame(),
        T0,
    );
    s.assert_delta(&lab, &[("rx_frames", 1), ("drop_tcp_no_state", 1)]);
    lab.nothing_sent();
    assert_eq!(lab.dp.states.len(), 0);
}

// ---------- 6. Reject ----------

#[test]
fn reject_tcp_with_rst_ack() {
    let mut lab = Lab::new();
    let mut syn = Tcp::new(SERVER_MAC, WAN_MAC, (SERVER, 33000), (WAN_IP, 23))
        .flags("S")
        .seq(777_000)
        .frame();
    // Garbage in the padding: the RST, built in the same buffer, must not carry it.
    syn[54..].fill(0xee);
    let s = lab.snapshot();
    lab.send(WAN, &syn, T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("replied", 1),
            ("tcp_rsts_sent", 1),
            ("tx_frames", 1),
        ],
    );
    let rst = lab.one_sent(WAN);
    assert_eq!(rst.len(), 60);
    assert!(rst[54..].iter().all(|&b| b == 0), "RST padding zeroed");
    let p = parse(&rst);
    assert_eq!((p.eth.source, p.eth.destination), (WAN_MAC, SERVER_MAC));
    assert_eq!((p.src(), p.dst()), (WAN_IP, SERVER));
    let t = p.tcp();
    assert_eq!((t.source_port, t.destination_port), (23, 33000));
    assert!(t.rst && t.ack && !t.syn);
    assert_eq!(t.acknowledgment_number, 777_001);
    assert_eq!(t.sequence_number, 0);
    assert_eq!(lab.dp.states.len(), 0);
}

#[test]
fn reject_udp_with_port_unreachable_quoting_the_datagram() {
    let mut wan = wan_rules();
    wan.push(
        Rule::new(11, Action::Reject)
            .with_proto(ProtoMatch::Udp)
            .with_dst(AddrMatch::prefix(Prefix::host(WAN_IP)))
            .with_dst_port(PortRange::single(161)),
    );
    let mut lab = Lab::with(BoxA { wan, ..box_a() });
    let orig = udp_frame(
        SERVER_MAC,
        WAN_MAC,
        (SERVER, 40404),
        (WAN_IP, 161),
        64,
        b"public",
    );
    let s = lab.snapshot();
    lab.send(WAN, &orig, T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("replied", 1),
            ("icmp_errors_sent", 1),
            ("tx_frames", 1),
        ],
    );
    let p = parse(&lab.one_sent(WAN));
    assert_eq!((p.eth.source, p.eth.destination), (WAN_MAC, SERVER_MAC));
    assert_eq!((p.src(), p.dst()), (WAN_IP, SERVER));
    assert_eq!(p.ip.time_to_live, 64);
    assert_eq!(
        p.icmp().icmp_type,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port)
    );
    let (qip, ql4) = parse_quoted(&p.payload);
    assert_eq!(&p.payload[..28], &ip_of(&orig)[..28], "quotes header + 8");
    assert_eq!(
        (Ipv4Addr::from(qip.source), Ipv4Addr::from(qip.destination)),
        (SERVER, WAN_IP)
    );
    assert_eq!(&ql4[..4], &[0x9d, 0xd4, 0x00, 161]);
}

// ---------- 7. TTL ----------

#[test]
fn ttl_1_gets_time_exceeded_from_the_lan_address() {
    let mut lab = Lab::new();
    let orig = udp_frame(
        CLIENT_MAC,
        LAN_VMAC,
        (CLIENT, 5000),
        (SERVER, 53),
        1,
        b"query...",
    );
    let s = lab.snapshot();
    lab.send(LAN, &orig, T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("drop_ttl_expired", 1),
            ("icmp_errors_sent", 1),
            ("tx_frames", 1),
        ],
    );
    let p = parse(&lab.one_sent(LAN));
    assert_eq!(p.eth.destination, CLIENT_MAC);
    assert_eq!((p.src(), p.dst()), (LAN_IP, CLIENT));
    assert_eq!(
        p.icmp().icmp_type,
        Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit)
    );
    let (qip, _) = parse_quoted(&p.payload);
    assert_eq!(qip.time_to_live, 1);
    assert_eq!(&p.payload[..28], &ip_of(&orig)[..28], "IP header + 8 bytes");
    assert_eq!(
        lab.dp.states.len(),
        0,
        "no state for a packet that died here"
    );
}

// ---------- 8. ICMP error for a NATed flow ----------

#[test]
fn icmp_error_about_a_nated_datagram_is_translated_back() {
    let mut lab = Lab::new();
    lab.send(
        LAN,
        &udp_frame(
            CLIENT_MAC,
            LAN_VMAC,
            (CLIENT, 5000),
            (SERVER, 53),
            64,
            b"query!!!",
        ),
        T0,
    );
    let out = lab.one_sent(WAN);
    let p = parse(&out);
    let nat_port = p.udp().source_port;
    assert_eq!(p.src(), WAN_VIP);

    // The server answers with port unreachable quoting what it got (TTL as received).
    let quoted = &ip_of(&out)[..28];
    let err = icmp_frame(
        SERVER_MAC,
        WAN_VMAC,
        SERVER,
        WAN_VIP,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
        quoted,
    );
    let s = lab.snapshot();
    lab.send(WAN, &err, T0 + 10);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("forwarded", 1),
            ("tx_frames", 1),
            ("state_hits", 1),
            ("nat_translated", 1),
        ],
    );
    let e = parse(&lab.one_sent(LAN));
    assert_eq!(e.eth.destination, CLIENT_MAC);
    assert_eq!((e.src(), e.dst()), (SERVER, CLIENT));
    assert_eq!(e.ip.time_to_live, 63);
    assert_eq!(
        e.icmp().icmp_type,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port)
    );
    let (qip, ql4) = parse_quoted(&e.payload);
    assert_eq!(
        (Ipv4Addr::from(qip.source), Ipv4Addr::from(qip.destination)),
        (CLIENT, SERVER)
    );
    assert_eq!(u16::from_be_bytes([ql4[0], ql4[1]]), 5000);
    assert_eq!(u16::from_be_bytes([ql4[2], ql4[3]]), 53);
    assert_ne!(nat_port, 0);
}

// ---------- 8b. ICMP errors about TCP: the quoted sequence number must fit ----------

/// A NATed TCP connection, established with data both ways: client seq 1000.., server 5000...
/// Returns the last segment each side sent, as it left the box (client's on WAN, server's on
/// LAN), for errors to quote.
fn established_tcp(lab: &mut Lab) -> (Vec<u8>, Vec<u8>) {
    let (c, srv) = ((CLIENT, 40000), (SERVER, 80));
    lab.send(
        LAN,
        &Tcp::new(CLIENT_MAC, LAN_VMAC, c, srv)
            .flags("S")
            .seq(1000)
            .frame(),
        T0,
    );
    let nat_port = parse(&lab.one_sent(WAN)).tcp().source_port;
    let vip = (WAN_VIP, nat_port);
    lab.send(
        WAN,
        &Tcp::new(SERVER_MAC, WAN_VMAC, srv, vip)
            .flags("SA")
            .seq(5000)
            .ack(1001)
            .frame(),
        T0 + 1,
    );
    lab.one_sent(LAN);
    lab.send(
        LAN,
        &Tcp::new(CLIENT_MAC, LAN_VMAC, c, srv)
            .flags("PA")
            .seq(1001)
            .ack(5001)
            .payload(b"GET")
            .frame(),
        T0 + 2,
    );
    let client_seg = lab.one_sent(WAN);
    lab.send(
        WAN,
        &Tcp::new(SERVER_MAC, WAN_VMAC, srv, vip)
            .flags("PA")
            .seq(5001)
            .ack(1004)
            .payload(b"HTTP")
            .frame(),
        T0 + 3,
    );
    let server_seg = lab.one_sent(LAN);
    (client_seg, server_seg)
}

/// `seg`'s IP header and first 8 TCP bytes, its sequence number replaced by `seq`.
fn quote_with_seq(seg: &[u8], seq: u32) -> Vec<u8> {
    let mut q = ip_of(seg)[..28].to_vec();
    q[24..28].copy_from_slice(&seq.to_be_bytes());
    q
}

/// pf's check (RFC 5927): an ICMP error about a TCP segment passes only when the quoted
/// sequence number lies in [seqlo - max_win of the receiver, seqhi] of the side that sent it;
/// anything else is a forged (blind) error, counted and dropped. Both directions, both edges.
#[test]
fn icmp_error_about_tcp_passes_only_with_a_sequence_number_inside_the_window() {
    let mut lab = Lab::new();
    let (client_seg, server_seg) = established_tcp(&mut lab);
    let tr = lab.dp.states.snapshot()[0].tracking();
    // The client sent 1000 (SYN) and "GET" (1001..1004); the server acked 1004 with a 64240
    // window, the client acked 5001 (not yet "HTTP") with the same; neither side scales.
    assert_eq!((tr.src.seqlo, tr.src.seqhi), (1004, 1004 + 64240));
    assert_eq!((tr.dst.seqlo, tr.dst.seqhi), (5005, 5001 + 64240));
    assert_eq!((tr.src.max_win, tr.dst.max_win), (64240, 64240));
    let client_low = 1004u32.wrapping_sub(64240);
    let server_low = 5005u32.wrapping_sub(64240);

    let frag_needed =
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1280,
        });
    let passed = [
        ("rx_frames", 1),
        ("forwarded", 1),
        ("tx_frames", 1),
        ("state_hits", 1),
        ("nat_translated", 1),
    ];
    let dropped = [("rx_frames", 1), ("drop_icmp_error_bad_seq", 1)];

    // From the WAN (a router on the way to the server), about the client's segment.
    let mut now = T0 + 10;
    for (seq, pass) in [
        (1001, true),         // the segment as sent
        (1004 + 64240, true), // seqhi: the last byte the server allows
        (client_low, true),   // seqlo less the server's window: an old retransmission
        (1004 + 64241, false),
        (client_low.wrapping_sub(1), false),
        (1001 ^ 0x8000_0000, false), // a blind guess half the space away
    ] {
        let err = icmp_frame(
            SERVER_MAC,
            WAN_VMAC,
            SERVER,
            WAN_VIP,
            frag_needed.clone(),
            &quote_with_seq(&client_seg, seq),
        );
        let s = lab.snapshot();
        lab.send(WAN, &err, now);
        now += 1;
        if pass {
            s.assert_delta(&lab, &passed);
            let e = parse(&lab.one_sent(LAN));
            assert_eq!((e.src(), e.dst()), (SERVER, CLIENT), "seq {seq}");
            let (_, ql4) = parse_quoted(&e.payload);
            assert_eq!(u32::from_be_bytes([ql4[4], ql4[5], ql4[6], ql4[7]]), seq);
        } else {
            s.assert_delta(&lab, &dropped);
            lab.nothing_sent();
        }
    }

    // From the client, about the server's segment (as the client got it).
    for (seq, pass) in [
        (5001, true),
        (5001 + 64240, true),
        (server_low, true),
        (5001 + 64241, false),
        (server_low.wrapping_sub(1), false),
        (5001 ^ 0x8000_0000, false),
    ] {
        let err = icmp_frame(
            CLIENT_MAC,
            LAN_VMAC,
            CLIENT,
            SERVER,
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
            &quote_with_seq(&server_seg, seq),
        );
        let s = lab.snapshot();
        lab.send(LAN, &err, now);
        now += 1;
        if pass {
            s.assert_delta(&lab, &passed);
            let e = parse(&lab.one_sent(WAN));
            assert_eq!((e.src(), e.dst()), (WAN_VIP, SERVER), "seq {seq}");
        } else {
            s.assert_delta(&lab, &dropped);
            lab.nothing_sent();
        }
    }

    // An error never moves the windows, and the connection goes on.
    assert_eq!(lab.dp.states.snapshot()[0].tracking().src, tr.src);
    assert_eq!(lab.dp.states.snapshot()[0].tracking().dst, tr.dst);
    lab.assert_outcomes_balance();
}

/// A TCP quote shorter than the 8 bytes RFC 792 promises has no sequence number to check: a
/// malformed drop, as pf's short-header drop.
#[test]
fn icmp_error_quoting_less_than_8_tcp_bytes_is_malformed() {
    let mut lab = Lab::new();
    let (client_seg, _) = established_tcp(&mut lab);
    let err = icmp_frame(
        SERVER_MAC,
        WAN_VMAC,
        SERVER,
        WAN_VIP,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
        &ip_of(&client_seg)[..24],
    );
    let s = lab.snapshot();
    lab.send(WAN, &err, T0 + 10);
    s.assert_delta(&lab, &[("rx_frames", 1), ("drop_l4_malformed", 1)]);
    lab.nothing_sent();
}

// ---------- 9. ICMP echo through NAT ----------

#[test]
fn echo_through_nat_comes_back_with_the_original_id() {
    let mut lab = Lab::new();
    let s = lab.snapshot();
    lab.send(
        LAN,
        &Echo::request(CLIENT_MAC, LAN_VMAC, CLIENT, SERVER)
            .id(0x1234)
            .seq(1)
            .payload(b"abcdefgh")
            .frame(),
        T0,
    );
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("forwarded", 1),
            ("tx_frames", 1),
            ("states_created", 1),
            ("nat_translated", 1),
        ],
    );
    let p = parse(&lab.one_sent(WAN));
    assert_eq!((p.src(), p.dst()), (WAN_VIP, SERVER));
    let id = match p.icmp().icmp_type {
        Icmpv4Type::EchoRequest(e) => {
            assert_eq!(e.seq, 1);
            e.id
        }
        ref t => panic!("{t:?}"),
    };
    assert!(id >= 1024, "id translated into the NAT range: {id:#x}");

    let s = lab.snapshot();
    lab.send(
        WAN,
        &Echo::reply(SERVER_MAC, WAN_VMAC, SERVER, WAN_VIP)
            .id(id)
            .seq(1)
            .payload(b"abcdefgh")
            .frame(),
        T0 + 10,
    );
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("forwarded", 1),
            ("tx_frames", 1),
            ("state_hits", 1),
            ("nat_translated", 1),
        ],
    );
    let r = parse(&lab.one_sent(LAN));
    assert_eq!((r.src(), r.dst()), (SERVER, CLIENT));
    assert_eq!(r.eth.destination, CLIENT_MAC);
    match r.icmp().icmp_type {
        Icmpv4Type::EchoReply(e) => assert_eq!((e.id, e.seq), (0x1234, 1)),
        ref t => panic!("{t:?}"),
    }
    assert_eq!(r.payload, b"abcdefgh");
}

// ---------- 10. Port exhaustion ----------

#[test]
fn nat_port_range_of_four_serves_four_flows_then_drops() {
    let mut lab = Lab::with(BoxA {
        ports: PortPolicy::Range(2000, 2003),
        ..box_a()
    });
    let mut ports = Vec::new();
    for i in 0..4u16 {
        let s = lab.snapshot();
        lab.send(
            LAN,
            &udp_frame(
                CLIENT_MAC,
                LAN_VMAC,
                (CLIENT, 6000 + i),
                (SERVER, 53),
                64,
                b"q",
            ),
            T0,
        );
        s.assert_delta(
            &lab,
            &[
                ("rx_frames", 1),
                ("forwarded", 1),
                ("tx_frames", 1),
                ("states_created", 1),
                ("nat_translated", 1),
            ],
        );
        let p = parse(&lab.one_sent(WAN));
        assert_eq!(p.src(), WAN_VIP);
        ports.push(p.udp().source_port);
    }
    ports.sort_unstable();
    assert_eq!(ports, vec![2000, 2001, 2002, 2003]);

    let s = lab.snapshot();
    lab.send(
        LAN,
        &udp_frame(CLIENT_MAC, LAN_VMAC, (CLIENT, 6004), (SERVER, 53), 64, b"q"),
        T0,
    );
    s.assert_delta(&lab, &[("rx_frames", 1), ("drop_nat_exhausted", 1)]);
    lab.nothing_sent();
    assert_eq!(lab.dp.states.len(), 4);
}

// ---------- 11. Expiry ----------

#[test]
fn expired_udp_state_no_longer_lets_the_reply_in() {
    let mut lab = Lab::new();
    let by = lab.dp.states.producer();
    lab.send(
        LAN,
        &udp_frame(CLIENT_MAC, LAN_VMAC, (CLIENT, 5353), (SERVER, 53), 64, b"q"),
        T0,
    );
    let nat_port = parse(&lab.one_sent(WAN)).udp().source_port;
    assert_eq!(lab.dp.states.expire(T0 + 59_000, usize::MAX, &by), 0);
    assert_eq!(lab.dp.states.expire(T0 + 61_000, usize::MAX, &by), 1);
    assert_eq!(lab.dp.states.len(), 0);

    let s = lab.snapshot();
    lab.send(
        WAN,
        &udp_frame(
            SERVER_MAC,
            WAN_VMAC,
            (SERVER, 53),
            (WAN_VIP, nat_port),
            64,
            b"a",
        ),
        T0 + 61_001,
    );
    s.assert_delta(&lab, &[("rx_frames", 1), ("drop_blocked_default", 1)]);
    lab.nothing_sent();
}

// ---------- 12. SYN flood ----------

#[test]
fn syn_flood_stops_at_the_state_limit_and_the_established_flow_lives_on() {
    let mut lab = Lab::with(BoxA {
        table: TableConfig {
            limit: 64,
            ..TableConfig::default()
        },
        ..box_a()
    });
    let c = (CLIENT, 40000);
    let srv = (SERVER, 80);
    let vip = handshake(&mut lab, c, srv, T0);
    assert_eq!(lab.sent(LAN).len(), 1);
    assert_eq!(lab.sent(WAN).len(), 1);

    // 100 SYNs from other ports: 63 fill the table, 37 are refused.
    let s = lab.snapshot();
    for i in 0..100u16 {
        lab.inject(
            LAN,
            &Tcp::new(CLIENT_MAC, LAN_VMAC, (CLIENT, 10_000 + i), srv)
                .flags("S")
                .seq(u32::from(i))
                .frame(),
        );
        if lab.ports[usize::from(LAN)].pending_rx() == 32 {
            lab.poll(T0 + 10);
        }
    }
    while lab.ports[usize::from(LAN)].pending_rx() > 0 {
        lab.poll(T0 + 10);
    }
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 100),
            ("forwarded", 63),
            ("tx_frames", 63),
            ("states_created", 63),
            ("nat_translated", 63),
            ("drop_state_limit", 37),
        ],
    );
    assert_eq!(lab.dp.states.len(), 64);
    assert_eq!(lab.sent(WAN).len(), 63);

    // The established flow still passes both ways.
    let s = lab.snapshot();
    lab.send(
        LAN,
        &Tcp::new(CLIENT_MAC, LAN_VMAC, c, srv)
            .flags("PA")
            .seq(101)
            .ack(901)
            .payload(b"data")
            .frame(),
        T0 + 20,
    );
    lab.send(
        WAN,
        &Tcp::new(SERVER_MAC, WAN_VMAC, srv, vip)
            .flags("PA")
            .seq(901)
            .ack(105)
            .payload(b"back")
            .frame(),
        T0 + 21,
    );
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 2),
            ("forwarded", 2),
            ("tx_frames", 2),
            ("state_hits", 2),
            ("nat_translated", 2),
        ],
    );
    let out = lab.sent(WAN);
    assert_eq!(out.len(), 1);
    assert_eq!(parse(&out[0]).payload, b"data");
    assert_eq!(parse(&lab.one_sent(LAN)).payload, b"back");
}

// ---------- 13. L2 and IPv4 sanity ----------

#[test]
fn l2_and_ipv4_sanity_drops() {
    let mut lab = Lab::new();
    let good = udp_frame(CLIENT_MAC, LAN_MAC, (CLIENT, 5000), (SERVER, 53), 64, b"q");

    let mut other_mac = good.clone();
    other_mac[..6].copy_from_slice(&[0x02, 0, 0, 0, 0x0a, 0x99]);
    // A virtual MAC of a VHID we do not hold, on a multicast-free unicast address.
    let mut unheld_vmac = good.clone();
    unheld_vmac[..6].copy_from_slice(&[0x00, 0x00, 0x5e, 0x00, 0x01, 0x07]);

    let mut vlan = Vec::new();
    etherparse::PacketBuilder::ethernet2(CLIENT_MAC, LAN_MAC)
        .single_vlan(etherparse::VlanId::try_new(10).unwrap())
        .ipv4(CLIENT.octets(), SERVER.octets(), 64)
        .udp(5000, 53)
        .write(&mut vlan, b"q")
        .unwrap();

    let mut v6 = Vec::new();
    etherparse::PacketBuilder::ethernet2(CLIENT_MAC, LAN_MAC)
        .ipv6(
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .udp(5000, 53)
        .write(&mut v6, b"q")
        .unwrap();

    let mut frag = good.clone();
    edit_ipv4(&mut frag, |ip| {
        ip.fragment_offset = etherparse::IpFragOffset::try_new(185).unwrap();
    });

    let mut bad_sum = good.clone();
    bad_sum[24] ^= 0x5a;

    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("unicast to another MAC", other_mac, "drop_l2_not_for_us"),
        ("an unheld VHID's MAC", unheld_vmac, "drop_l2_not_for_us"),
        ("802.1Q", vlan, "drop_vlan"),
        ("IPv6", v6, "drop_ethertype"),
        (
            "later fragment without its first",
            frag,
            "drop_frag_no_first",
        ),
        ("bad IPv4 checksum", bad_sum, "drop_ipv4_checksum"),
    ];
    for (what, f, counter) in cases {
        let s = lab.snapshot();
        lab.send(LAN, &f, T0);
        s.assert_delta(&lab, &[("rx_frames", 1), (counter, 1)]);
        lab.nothing_sent();
        assert_eq!(lab.dp.states.len(), 0, "{what}");
    }

    // The good frame itself passes.
    let s = lab.snapshot();
    lab.send(LAN, &good, T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("forwarded", 1),
            ("tx_frames", 1),
            ("states_created", 1),
            ("nat_translated", 1),
        ],
    );
}

// ---------- 14. No route ----------

#[test]
fn no_route_gets_net_unreachable() {
    let mut lab = Lab::with(BoxA {
        default_route: false,
        ..box_a()
    });
    let dns = Ipv4Addr::new(8, 8, 8, 8);
    let orig = udp_frame(
        CLIENT_MAC,
        LAN_VMAC,
        (CLIENT, 5000),
        (dns, 53),
        64,
        b"query",
    );
    let s = lab.snapshot();
    lab.send(LAN, &orig, T0);
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 1),
            ("drop_no_route", 1),
            ("icmp_errors_sent", 1),
            ("tx_frames", 1),
        ],
    );
    let p = parse(&lab.one_sent(LAN));
    assert_eq!(p.eth.destination, CLIENT_MAC);
    assert_eq!((p.src(), p.dst()), (LAN_IP, CLIENT));
    assert_eq!(
        p.icmp().icmp_type,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Network)
    );
    assert_eq!(&p.payload[..28], &ip_of(&orig)[..28]);
    assert_eq!(lab.dp.states.len(), 0);
}

// ---------- 16. Generation swap ----------

#[test]
fn new_generation_applies_to_new_flows_and_spares_existing_states() {
    let mut lab = Lab::new();
    let flow = |sport| {
        udp_frame(
            CLIENT_MAC,
            LAN_VMAC,
            (CLIENT, sport),
            (SERVER, 53),
            64,
            b"q",
        )
    };
    lab.send(LAN, &flow(5000), T0);
    let nat_port = parse(&lab.one_sent(WAN)).udp().source_port;

    // The LAN pass rule goes.
    let setup = BoxA {
        lan: Vec::new(),
        ..box_a()
    };
    lab.dp.apply(setup.generation(2));

    let s = lab.snapshot();
    lab.send(LAN, &flow(5001), T0 + 10);
    s.assert_delta(&lab, &[("rx_frames", 1), ("drop_blocked_default", 1)]);
    lab.nothing_sent();

    let s = lab.snapshot();
    lab.send(LAN, &flow(5000), T0 + 20);
    lab.send(
        WAN,
        &udp_frame(
            SERVER_MAC,
            WAN_VMAC,
            (SERVER, 53),
            (WAN_VIP, nat_port),
            64,
            b"a",
        ),
        T0 + 30,
    );
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 2),
            ("forwarded", 2),
            ("tx_frames", 2),
            ("state_hits", 2),
            ("nat_translated", 2),
        ],
    );
    let out = lab.sent(WAN);
    assert_eq!(out.len(), 1);
    assert_eq!(parse(&out[0]).src(), WAN_VIP);
    assert_eq!(parse(&lab.one_sent(LAN)).dst(), CLIENT);
}

/// The ICMP message of an IPv4 frame verifies (ones' complement sum of all its words 0xffff).
fn icmp_checksum_verifies(f: &[u8]) -> bool {
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    ones_complement(&f[14 + ihl..14 + total]) == 0
}

/// Fuzz finding (wire_icmp): an echo with id 0, seq 0 and no data is all zeros once it is a
/// reply (or once NAT gives the reply its id 0 back), and RFC 1624's incremental update then
/// gave it the checksum 0x0000, which does not verify: the asker dropped the answer.
#[test]
fn all_zero_echo_replies_keep_a_valid_checksum() {
    let mut lab = Lab::new();
    lab.send(
        LAN,
        &Echo::request(CLIENT_MAC, LAN_VMAC, CLIENT, LAN_VIP).frame(),
        T0,
    );
    let reply = lab.one_sent(LAN);
    assert!(matches!(
        parse(&reply).icmp().icmp_type,
        Icmpv4Type::EchoReply(_)
    ));
    assert!(icmp_checksum_verifies(&reply), "the box's own reply");

    lab.send(
        LAN,
        &Echo::request(CLIENT_MAC, LAN_VMAC, CLIENT, SERVER).frame(),
        T0,
    );
    let out = lab.one_sent(WAN);
    assert!(
        icmp_checksum_verifies(&out),
        "the request, its id translated"
    );
    let id = match parse(&out).icmp().icmp_type {
        Icmpv4Type::EchoRequest(e) => e.id,
        ref t => panic!("{t:?}"),
    };
    lab.send(
        WAN,
        &Echo::reply(SERVER_MAC, WAN_VMAC, SERVER, WAN_VIP)
            .id(id)
            .frame(),
        T0 + 10,
    );
    let back = lab.one_sent(LAN);
    match parse(&back).icmp().icmp_type {
        Icmpv4Type::EchoReply(e) => assert_eq!((e.id, e.seq), (0, 0)),
        ref t => panic!("{t:?}"),
    }
    assert!(
        icmp_checksum_verifies(&back),
        "the reply, its id 0 given back"
    );
}

// ---------- First packets in a key index larger than the cache ----------

/// In a key index of `LOOKAHEAD_INDEX_BYTES` or more, a first packet's route (from the
/// worker's memo) and NAT rule are looked up before the filter rules, to request its reply
/// key's bucket early. That changes no packet's fate: the same frames through a box whose index
/// fits the cache and through one whose index does not end in the same counters, with the same
/// translations and the same number of states.
#[test]
fn first_packets_fare_the_same_in_a_small_and_a_large_key_index() {
    use tandem_dataplane::pipeline::LOOKAHEAD_INDEX_BYTES;
    let run = |limit: u32| {
        let mut lab = Lab::with_state_limit(limit);
        let large = lab.dp.states.index_bytes() >= LOOKAHEAD_INDEX_BYTES;
        // A TCP connection through NAT, both ways; its SYN again later (a retransmission
        // meets its state).
        let (vip, port) = handshake(&mut lab, (CLIENT, 40000), (SERVER, 80), T0);
        assert_eq!(vip, WAN_VIP);
        let (to_client, to_server) = (lab.sent(LAN), lab.sent(WAN));
        assert_eq!(to_client.len(), 1, "the SYN-ACK");
        assert_eq!(parse(&to_client[0]).dst(), CLIENT, "translated back");
        assert_eq!(to_server.len(), 1, "the ACK");
        assert_eq!(parse(&to_server[0]).src(), WAN_VIP);
        // Blocked: an unsolicited SYN from the WAN (default deny), a stray ACK from the LAN
        // (no state), a UDP datagram with TTL 1 (time exceeded, no state).
        lab.send(
            WAN,
            &Tcp::new(SERVER_MAC, WAN_VMAC, (SERVER, 5555), (WAN_VIP, 22))
                .flags("S")
                .frame(),
            T0 + 10,
        );
        lab.send(
            LAN,
            &Tcp::new(CLIENT_MAC, LAN_VMAC, (CLIENT, 40001), (SERVER, 80))
                .flags("A")
                .seq(1)
                .ack(1)
                .frame(),
            T0 + 11,
        );
        let ttl1 = udp_frame(CLIENT_MAC, LAN_VMAC, (CLIENT, 5000), (SERVER, 53), 1, b"q");
        lab.send(LAN, &ttl1, T0 + 12);
        assert_eq!(parse(&lab.one_sent(LAN)).src(), LAN_IP, "time exceeded");
        // Passed and translated: UDP, an ICMP echo.
        let udp = udp_frame(CLIENT_MAC, LAN_VMAC, (CLIENT, 5001), (SERVER, 53), 64, b"q");
        lab.send(LAN, &udp, T0 + 13);
        assert_eq!(parse(&lab.one_sent(WAN)).src(), WAN_VIP);
        let echo = Echo::request(CLIENT_MAC, LAN_VMAC, CLIENT, SERVER)
            .id(0x1234)
            .seq(1)
            .frame();
        lab.send(LAN, &echo, T0 + 14);
        assert_eq!(parse(&lab.one_sent(WAN)).src(), WAN_VIP);
        // A reply to the NAT port of the connection reaches the client's port.
        lab.send(
            WAN,
            &Tcp::new(SERVER_MAC, WAN_VMAC, (SERVER, 80), (WAN_VIP, port))
                .flags("A")
                .seq(901)
                .ack(101)
                .frame(),
            T0 + 15,
        );
        let back = lab.one_sent(LAN);
        let ip = etherparse::SlicedPacket::from_ethernet(&back).unwrap();
        let Some(etherparse::TransportSlice::Tcp(tcp)) = ip.transport else {
            panic!("the reply left as something else");
        };
        assert_eq!(tcp.destination_port(), 40000);
        (large, lab.dp.states.len(), lab.counters().snapshot())
    };
    let (small_large, small_states, small) = run(1_000);
    let (large_large, large_states, large) = run(1_000_000);
    assert!(!small_large && large_large, "one index of each size");
    assert_eq!(small_states, 3, "TCP, UDP and the echo");
    assert_eq!(large_states, small_states);
    assert_eq!(large, small, "counters");
}
