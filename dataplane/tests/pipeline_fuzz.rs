//! Property tests: whatever arrives on either interface, the pipeline does not panic, every frame
//! ends in exactly one outcome counter, and every IPv4 frame it sends has a valid header checksum.

mod common;

use common::*;
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::Icmpv4Type;
use proptest::prelude::*;
use proptest::sample::Index;

/// A lab with a UDP and a TCP flow through NAT already set up, and frames that reach every part
/// of the pipeline: new flows, state hits both ways, ICMP errors, ARP, local traffic, reject.
fn lab_and_templates() -> (Lab, Vec<(u8, Vec<u8>)>) {
    let mut lab = Lab::new();
    let udp_out = udp_frame(
        CLIENT_MAC,
        LAN_VMAC,
        (CLIENT, 5000),
        (SERVER, 53),
        64,
        b"query",
    );
    lab.send(LAN, &udp_out, 1);
    let udp_wire = lab.one_sent(WAN);
    let uport = parse(&udp_wire).udp().source_port;
    let syn = Tcp::new(CLIENT_MAC, LAN_VMAC, (CLIENT, 40000), (SERVER, 80))
        .flags("S")
        .seq(1000)
        .frame();
    lab.send(LAN, &syn, 2);
    let tport = parse(&lab.one_sent(WAN)).tcp().source_port;
    let vip = (WAN_VIP, tport);
    let srv = (SERVER, 80);
    let synack = Tcp::new(SERVER_MAC, WAN_VMAC, srv, vip)
        .flags("SA")
        .seq(5000)
        .ack(1001)
        .frame();
    lab.send(WAN, &synack, 3);
    let _ = lab.one_sent(LAN);

    let t = vec![
        (LAN, udp_out),
        (
            WAN,
            udp_frame(
                SERVER_MAC,
                WAN_VMAC,
                (SERVER, 53),
                (WAN_VIP, uport),
                64,
                b"answer",
            ),
        ),
        (LAN, syn),
        (WAN, synack),
        (
            LAN,
            Tcp::new(CLIENT_MAC, LAN_VMAC, (CLIENT, 40000), srv)
                .flags("PA")
                .seq(1001)
                .ack(5001)
                .payload(b"GET /")
                .frame(),
        ),
        (
            WAN,
            Tcp::new(SERVER_MAC, WAN_VMAC, srv, vip)
                .flags("PA")
                .seq(5001)
                .ack(1001)
                .payload(b"200")
                .frame(),
        ),
        (
            WAN,
            icmp_frame(
                SERVER_MAC,
                WAN_VMAC,
                SERVER,
                WAN_VIP,
                Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
                &ip_of(&udp_wire)[..28],
            ),
        ),
        (
            LAN,
            Echo::request(CLIENT_MAC, LAN_VMAC, CLIENT, LAN_VIP)
                .id(1)
                .seq(1)
                .payload(b"ping")
                .frame(),
        ),
        (
            LAN,
            Echo::request(CLIENT_MAC, LAN_VMAC, CLIENT, SERVER)
                .id(2)
                .seq(1)
                .payload(b"ping")
                .frame(),
        ),
        (
            LAN,
            udp_frame(CLIENT_MAC, LAN_MAC, (CLIENT, 5001), (SERVER, 53), 1, b"ttl"),
        ),
        (
            WAN,
            Tcp::new(SERVER_MAC, WAN_MAC, (SERVER, 1234), (WAN_IP, 23))
                .flags("S")
                .seq(9)
                .frame(),
        ),
        (LAN, arp_request(CLIENT_MAC, CLIENT, LAN_VIP)),
        (
            WAN,
            arp_frame(SERVER_MAC, WAN_MAC, 2, SERVER_MAC, SERVER, WAN_MAC, WAN_IP),
        ),
    ];
    (lab, t)
}

/// Recomputes the IPv4 header checksum of a frame whose header fits in it (so mutations get
/// past the checksum check and reach the deeper layers).
fn fix_ipv4_checksum(f: &mut [u8]) {
    if f.len() < 34 || f[12..14] != [0x08, 0x00] {
        return;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    if ihl < 20 || f.len() < 14 + ihl {
        return;
    }
    f[24] = 0;
    f[25] = 0;
    let c = ones_complement(&f[14..14 + ihl]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// Every IPv4 frame the box sent has a valid header checksum (the IP header of anything that
/// passed was verified on the way in and patched incrementally since).
fn check_sent(lab: &mut Lab) -> usize {
    let mut n = 0;
    for ifx in [LAN, WAN] {
        for f in lab.sent(ifx) {
            assert!(f.len() >= 14);
            if f[12..14] == [0x08, 0x00] {
                let ihl = usize::from(f[14] & 0x0f) * 4;
                assert_eq!(ones_complement(&f[14..14 + ihl]), 0, "IPv4 header checksum");
            }
            n += 1;
        }
    }
    n
}

#[derive(Debug, Clone)]
struct Mutation {
    from: u8,
    template: Index,
    flips: Vec<(Index, u8)>,
    truncate: Option<Index>,
    fix_checksum: bool,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        0u8..2,
        any::<Index>(),
        prop::collection::vec((any::<Index>(), 1u8..=255), 0..6),
        prop::option::weighted(0.2, any::<Index>()),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(from, template, flips, truncate, fix_checksum)| Mutation {
            from,
            template,
            flips,
            truncate,
            fix_checksum,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(
        frames in prop::collection::vec((0u8..2, prop::collection::vec(any::<u8>(), 0..160)), 1..40)
    ) {
        let mut lab = Lab::new();
        for (i, (ifx, bytes)) in frames.iter().enumerate() {
            lab.inject(*ifx, bytes);
            lab.poll(10 + i as u64);
        }
        check_sent(&mut lab);
        let c = lab.counters();
        prop_assert_eq!(c.outcomes_total(), c.rx_frames.get());
        prop_assert_eq!(c.rx_frames.get(), frames.len() as u64);
    }

    #[test]
    fn mutated_frames_never_panic(muts in prop::collection::vec(mutation(), 1..40)) {
        let (mut lab, templates) = lab_and_templates();
        let by = lab.dp.states.producer();
        let rx0 = lab.counters().rx_frames.get();
        for (i, m) in muts.iter().enumerate() {
            let (native_if, t) = &templates[m.template.index(templates.len())];
            let mut f = t.clone();
            for (at, x) in &m.flips {
                let k = at.index(f.len());
                f[k] ^= x;
            }
            if let Some(n) = m.truncate {
                f.truncate(n.index(f.len() + 1));
            }
            if m.fix_checksum {
                fix_ipv4_checksum(&mut f);
            }
            // Mostly on the interface the frame belongs to, sometimes on the other one.
            let ifx = if m.from == 0 { *native_if } else { 1 - *native_if };
            lab.inject(ifx, &f);
            lab.poll(100 + 7 * i as u64);
        }
        // Time passes: ARP retries and failures, then expiry.
        lab.poll(10_000);
        lab.dp.states.expire(1_000_000_000, usize::MAX, &by);
        lab.poll(1_000_000_000);
        check_sent(&mut lab);
        let c = lab.counters();
        prop_assert_eq!(c.outcomes_total(), c.rx_frames.get());
        prop_assert_eq!(c.rx_frames.get() - rx0, muts.len() as u64);
    }
}
