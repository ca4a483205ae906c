use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;

const LAN: IfIndex = 0;
const WAN: IfIndex = 1;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn net(s: &str) -> AddrMatch {
    AddrMatch::prefix(s.parse().unwrap())
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> PacketMeta {
    PacketMeta {
        in_if: LAN,
        proto: proto::TCP,
        src: ip(src),
        dst: ip(dst),
        sport,
        dport,
    }
}

fn with_proto(p: u8, mut m: PacketMeta) -> PacketMeta {
    m.proto = p;
    if p != proto::TCP && p != proto::UDP {
        m.sport = 0;
        m.dport = 0;
    }
    m
}

fn lan_only(rules: Vec<Rule>) -> Ruleset {
    Ruleset::new(vec![rules], Vec::new(), 1)
}

fn number(v: Verdict) -> Option<u32> {
    match v {
        Verdict::Rule { number, .. } => Some(number),
        Verdict::DefaultDeny => None,
    }
}

#[test]
fn first_match_wins() {
    let rs = lan_only(vec![
        Rule::new(10, Action::Block).with_dst(net("10.0.0.1/32")),
        Rule::new(20, Action::Pass).with_dst(net("10.0.0.0/24")),
        Rule::new(30, Action::Reject),
    ]);
    let v = rs.evaluate(&tcp("192.168.0.5", 1000, "10.0.0.1", 80));
    assert_eq!(number(v), Some(10));
    assert_eq!(v.action(), Action::Block);
    let v = rs.evaluate(&tcp("192.168.0.5", 1000, "10.0.0.2", 80));
    assert_eq!(
        v,
        Verdict::Rule {
            index: 1,
            number: 20,
            action: Action::Pass,
            keep_state: true,
            log: false
        }
    );
    assert!(v.is_pass() && v.keeps_state());
    assert_eq!(
        rs.evaluate(&tcp("192.168.0.5", 1000, "10.0.1.2", 80))
            .action(),
        Action::Reject
    );
}

#[test]
fn default_deny() {
    let rs = lan_only(vec![Rule::new(1, Action::Pass).with_dst(net("10.0.0.0/8"))]);
    let v = rs.evaluate(&tcp("192.168.0.5", 1000, "11.0.0.1", 80));
    assert_eq!(v, Verdict::DefaultDeny);
    assert_eq!(v.action(), Action::Block);
    assert!(!v.is_pass() && !v.keeps_state());
    // No rules at all, and an interface the ruleset does not know.
    assert_eq!(
        Ruleset::empty(0).evaluate(&tcp("1.1.1.1", 1, "2.2.2.2", 2)),
        Verdict::DefaultDeny
    );
    let mut m = tcp("192.168.0.5", 1000, "10.0.0.1", 80);
    m.in_if = 7;
    assert_eq!(rs.evaluate(&m), Verdict::DefaultDeny);
}

#[test]
fn invert_on_src_and_dst() {
    let rs = lan_only(vec![
        Rule::new(1, Action::Pass).with_src(net("192.168.0.0/24").inverted()),
        Rule::new(2, Action::Block).with_dst(net("10.0.0.0/8").inverted()),
        Rule::new(3, Action::Pass),
    ]);
    // Source outside the LAN net: rule 1.
    assert_eq!(
        number(rs.evaluate(&tcp("192.168.1.5", 1, "8.8.8.8", 53))),
        Some(1)
    );
    // Source inside, destination outside 10/8: rule 2.
    assert_eq!(
        number(rs.evaluate(&tcp("192.168.0.5", 1, "8.8.8.8", 53))),
        Some(2)
    );
    // Source inside, destination inside 10/8: rule 3.
    assert_eq!(
        number(rs.evaluate(&tcp("192.168.0.5", 1, "10.8.8.8", 53))),
        Some(3)
    );
    // "!any" matches nothing.
    let rs = lan_only(vec![
        Rule::new(1, Action::Pass).with_src(AddrMatch::ANY.inverted())
    ]);
    assert_eq!(
        rs.evaluate(&tcp("192.168.0.5", 1, "8.8.8.8", 53)),
        Verdict::DefaultDeny
    );
}

#[test]
fn port_ranges_match_tcp_and_udp_only() {
    let rs = lan_only(vec![
        Rule::new(1, Action::Pass).with_dst_port(PortRange::new(8000, 8080)),
        Rule::new(2, Action::Pass).with_src_port(PortRange::single(53)),
        Rule::new(3, Action::Block),
    ]);
    let m = tcp("192.168.0.5", 40000, "10.0.0.1", 8000);
    assert_eq!(number(rs.evaluate(&m)), Some(1));
    assert_eq!(
        number(rs.evaluate(&tcp("192.168.0.5", 40000, "10.0.0.1", 8080))),
        Some(1)
    );
    assert_eq!(
        number(rs.evaluate(&tcp("192.168.0.5", 40000, "10.0.0.1", 8081))),
        Some(3)
    );
    assert_eq!(
        number(rs.evaluate(&tcp("192.168.0.5", 40000, "10.0.0.1", 7999))),
        Some(3)
    );
    assert_eq!(number(rs.evaluate(&with_proto(proto::UDP, m))), Some(1));
    assert_eq!(
        number(rs.evaluate(&tcp("192.168.0.5", 53, "10.0.0.1", 1))),
        Some(2)
    );
    // ICMP and CARP never match a rule with ports, even with ports 0 in range.
    let rs0 = lan_only(vec![
        Rule::new(1, Action::Pass).with_dst_port(PortRange::new(0, 100))
    ]);
    assert_eq!(
        rs0.evaluate(&with_proto(proto::ICMP, m)),
        Verdict::DefaultDeny
    );
    assert_eq!(
        rs0.evaluate(&with_proto(proto::CARP, m)),
        Verdict::DefaultDeny
    );
    assert_eq!(number(rs.evaluate(&with_proto(proto::ICMP, m))), Some(3));
    // An empty range (lo > hi) matches nothing.
    let rs = lan_only(vec![
        Rule::new(1, Action::Pass).with_dst_port(PortRange::new(9, 8))
    ]);
    assert_eq!(
        rs.evaluate(&tcp("192.168.0.5", 1, "10.0.0.1", 9)),
        Verdict::DefaultDeny
    );
}

#[test]
fn protocols() {
    let rs = lan_only(vec![
        Rule::new(1, Action::Pass)
            .with_proto(ProtoMatch::TcpUdp)
            .with_dst_port(PortRange::single(53)),
        Rule::new(2, Action::Pass).with_proto(ProtoMatch::Proto(proto::CARP)),
        Rule::new(3, Action::Pass).with_proto(ProtoMatch::Proto(proto::PFSYNC)),
        Rule::new(4, Action::Pass).with_proto(ProtoMatch::Icmp),
        Rule::new(5, Action::Pass).with_proto(ProtoMatch::Proto(proto::TCP)),
        Rule::new(6, Action::Pass).with_proto(ProtoMatch::Udp),
        Rule::new(7, Action::Block),
    ]);
    let m = tcp("192.168.0.5", 4000, "192.168.0.1", 53);
    assert_eq!(number(rs.evaluate(&m)), Some(1));
    assert_eq!(number(rs.evaluate(&with_proto(proto::UDP, m))), Some(1));
    assert_eq!(number(rs.evaluate(&with_proto(proto::CARP, m))), Some(2));
    assert_eq!(number(rs.evaluate(&with_proto(proto::PFSYNC, m))), Some(3));
    assert_eq!(number(rs.evaluate(&with_proto(proto::ICMP, m))), Some(4));
    let other_port = tcp("192.168.0.5", 4000, "192.168.0.1", 80);
    assert_eq!(number(rs.evaluate(&other_port)), Some(5));
    assert_eq!(
        number(rs.evaluate(&with_proto(proto::UDP, other_port))),
        Some(6)
    );
    assert_eq!(number(rs.evaluate(&with_proto(50, m))), Some(7)); // ESP
}

#[test]
fn per_interface_lists() {
    let rs = Ruleset::new(
        vec![
            vec![Rule::new(100, Action::Pass).with_src(net("192.168.0.0/24"))],
            vec![Rule::new(200, Action::Pass).with_dst(net("172.25.46.100/32"))],
        ],
        Vec::new(),
        3,
    );
    assert_eq!(rs.generation(), 3);
    let m = tcp("192.168.0.5", 1000, "172.25.46.100", 80);
    assert_eq!(number(rs.evaluate(&m)), Some(100));
    let from_wan = PacketMeta {
        in_if: WAN,
        ..tcp("172.25.46.1", 1000, "172.25.46.100", 80)
    };
    assert_eq!(number(rs.evaluate(&from_wan)), Some(200));
    // The LAN's rule does not apply on the WAN, nor the WAN's on the LAN.
    assert_eq!(
        rs.evaluate(&PacketMeta {
            in_if: WAN,
            ..tcp("192.168.0.5", 1, "8.8.8.8", 80)
        }),
        Verdict::DefaultDeny
    );
    assert_eq!(
        rs.evaluate(&tcp("10.0.0.1", 1000, "172.25.46.100", 80)),
        Verdict::DefaultDeny
    );
    assert_eq!(rs.rules(WAN).len(), 1);
    assert!(rs.rules(9).is_empty());
}

#[test]
fn alias_sets() {
    let servers = AddrSet::new(
        ["10.0.0.1", "10.0.0.7", "10.0.0.3", "10.0.1.0/24"].map(|s| s.parse().unwrap()),
    );
    let rs = lan_only(vec![
        Rule::new(1, Action::Pass).with_dst(AddrMatch::set(servers))
    ]);
    for d in ["10.0.0.1", "10.0.0.7", "10.0.0.3", "10.0.1.200"] {
        assert_eq!(
            number(rs.evaluate(&tcp("192.168.0.5", 1, d, 80))),
            Some(1),
            "{d}"
        );
    }
    for d in ["10.0.0.2", "10.0.0.4", "10.0.2.0", "10.0.0.0"] {
        assert_eq!(
            rs.evaluate(&tcp("192.168.0.5", 1, d, 80)),
            Verdict::DefaultDeny,
            "{d}"
        );
    }
    // An empty alias matches nothing, and its negation everything.
    let rs = lan_only(vec![
        Rule::new(1, Action::Pass).with_dst(AddrMatch::set(AddrSet::empty())),
        Rule::new(2, Action::Pass).with_src(AddrMatch::set(AddrSet::empty()).inverted()),
    ]);
    assert_eq!(
        number(rs.evaluate(&tcp("192.168.0.5", 1, "10.0.0.1", 80))),
        Some(2)
    );
}

#[test]
fn hit_counters() {
    let rs = lan_only(vec![
        Rule::new(1, Action::Pass).with_dst_port(PortRange::single(80)),
        Rule::new(2, Action::Block),
    ]);
    for _ in 0..3 {
        rs.evaluate_sized(&tcp("192.168.0.5", 1, "10.0.0.1", 80), 60);
    }
    rs.evaluate(&tcp("192.168.0.5", 1, "10.0.0.1", 443));
    rs.evaluate(&PacketMeta {
        in_if: WAN,
        ..tcp("192.168.0.5", 1, "10.0.0.1", 80)
    });
    let r = rs.rules(LAN);
    assert_eq!((r[0].counters.hits(), r[0].counters.bytes()), (3, 180));
    assert_eq!((r[1].counters.hits(), r[1].counters.bytes()), (1, 0));
}

#[test]
fn skip_steps_jump_blocks_correctly() {
    // Blocks of rules sharing a destination, then sharing a port: a miss on the shared
    // criterion skips the block, and the rule after it still matches.
    let mut rules = Vec::new();
    for i in 0..50u16 {
        rules.push(
            Rule::new(u32::from(i), Action::Pass)
                .with_dst(net("10.0.0.1/32"))
                .with_dst_port(PortRange::single(1000 + i)),
        );
    }
    for i in 0..50u16 {
        rules.push(
            Rule::new(100 + u32::from(i), Action::Pass)
                .with_dst_port(PortRange::single(22))
                .with_src(net(&format!("10.1.{i}.0/24"))),
        );
    }
    rules.push(Rule::new(999, Action::Block));
    let rs = lan_only(rules);
    assert_eq!(
        number(rs.evaluate(&tcp("10.1.3.3", 1, "10.0.0.1", 1049))),
        Some(49)
    );
    assert_eq!(
        number(rs.evaluate(&tcp("10.1.3.3", 1, "10.0.0.2", 1049))),
        Some(999)
    );
    assert_eq!(
        number(rs.evaluate(&tcp("10.1.3.3", 1, "10.0.0.1", 22))),
        Some(103)
    );
    assert_eq!(
        number(rs.evaluate(&tcp("10.1.49.3", 1, "10.0.0.1", 22))),
        Some(149)
    );
    assert_eq!(
        number(rs.evaluate(&tcp("10.2.3.3", 1, "10.0.0.1", 22))),
        Some(999)
    );
}

#[test]
fn nat_first_match_no_nat_and_no_rule() {
    let vip = ip("172.25.46.100");
    let mut no_nat = NatRule::no_nat(1, WAN);
    no_nat.dst = net("172.25.46.0/24");
    let mut web = NatRule::translate(2, WAN, ip("172.25.46.101"));
    web.proto = ProtoMatch::Tcp;
    web.dst_port = Some(PortRange::single(443));
    web.kind = NatKind::Translate {
        addr: ip("172.25.46.101"),
        ports: PortPolicy::Static,
    };
    let mut auto = NatRule::translate(3, WAN, vip);
    auto.src = net("192.168.0.0/24");
    let rs = Ruleset::new(vec![vec![], vec![]], vec![no_nat, web, auto], 1);

    let m = tcp("192.168.0.100", 40000, "8.8.8.8", 80);
    assert_eq!(
        rs.outbound_nat(WAN, &m),
        Some(NatTarget {
            rule: 3,
            addr: vip,
            ports: PortPolicy::Range(1024, 65535)
        })
    );
    let https = tcp("192.168.0.100", 40000, "8.8.8.8", 443);
    assert_eq!(
        rs.outbound_nat(WAN, &https).map(|t| (t.rule, t.ports)),
        Some((2, PortPolicy::Static))
    );
    // A UDP packet to port 443 skips the TCP-only rule.
    assert_eq!(
        rs.outbound_nat(WAN, &with_proto(proto::UDP, https))
            .map(|t| t.rule),
        Some(3)
    );
    // Do-not-NAT matches first.
    assert_eq!(
        rs.outbound_nat(WAN, &tcp("192.168.0.100", 40000, "172.25.46.1", 443)),
        None
    );
    // No rule matches: the source is not the LAN.
    assert_eq!(
        rs.outbound_nat(WAN, &tcp("10.9.9.9", 40000, "8.8.8.8", 80)),
        None
    );
    // No rule on that interface.
    assert_eq!(rs.outbound_nat(LAN, &m), None);
    assert_eq!(rs.outbound_nat(200, &m), None);
}

// Property: the compiled evaluation agrees with the naive first-match reference.

fn arb_addr_match() -> impl Strategy<Value = AddrMatch> {
    let set = proptest::collection::vec((0u32..64, 24u8..=32), 0..4).prop_map(|v| {
        AddrSet::new(
            v.into_iter()
                .map(|(a, l)| Prefix::new(Ipv4Addr::from_bits(0x0a00_0000 | (a << 2)), l).unwrap()),
        )
    });
    prop_oneof![
        2 => Just(AddrMatch::ANY),
        3 => set.prop_map(AddrMatch::set),
    ]
    .prop_flat_map(|m| (Just(m), proptest::bool::weighted(0.2)))
    .prop_map(|(m, inv)| if inv { m.inverted() } else { m })
}

fn arb_ports() -> impl Strategy<Value = Option<PortRange>> {
    prop_oneof![3 => Just(None), 2 => (0u16..8, 0u16..8).prop_map(|(a, b)| Some(PortRange::new(a, b)))]
}

fn arb_proto() -> impl Strategy<Value = ProtoMatch> {
    prop_oneof![
        Just(ProtoMatch::Any),
        Just(ProtoMatch::Tcp),
        Just(ProtoMatch::Udp),
        Just(ProtoMatch::TcpUdp),
        Just(ProtoMatch::Icmp),
        prop::sample::select(vec![1u8, 6, 17, 112, 240]).prop_map(ProtoMatch::Proto),
    ]
}

fn arb_rule() -> impl Strategy<
    Value = (
        ProtoMatch,
        AddrMatch,
        AddrMatch,
        Option<PortRange>,
        Option<PortRange>,
    ),
> {
    (
        arb_proto(),
        arb_addr_match(),
        arb_addr_match(),
        arb_ports(),
        arb_ports(),
    )
}

fn arb_meta() -> impl Strategy<Value = PacketMeta> {
    (
        prop::sample::select(vec![1u8, 6, 17, 112, 240, 47]),
        0u32..256,
        0u32..256,
        0u16..8,
        0u16..8,
    )
        .prop_map(|(p, s, d, sp, dp)| {
            let l4 = p == proto::TCP || p == proto::UDP;
            PacketMeta {
                in_if: LAN,
                proto: p,
                src: Ipv4Addr::from_bits(0x0a00_0000 | s),
                dst: Ipv4Addr::from_bits(0x0a00_0000 | d),
                sport: if l4 { sp } else { 0 },
                dport: if l4 { dp } else { 0 },
            }
        })
}

proptest! {
    #[test]
    fn evaluate_matches_naive_first_match(
        specs in proptest::collection::vec(arb_rule(), 0..200),
        metas in proptest::collection::vec(arb_meta(), 64),
    ) {
        let rules: Vec<Rule> = specs
            .into_iter()
            .enumerate()
            .map(|(i, (p, s, d, sp, dp))| {
                let mut r = Rule::new(i as u32 * 10, Action::Pass).with_proto(p).with_src(s).with_dst(d);
                r.src_port = sp;
                r.dst_port = dp;
                r
            })
            .collect();
        let rs = lan_only(rules);
        for m in &metas {
            let naive = rs.rules(LAN).iter().position(|r| r.matches(m));
            let got = match rs.evaluate(m) {
                Verdict::Rule { index, .. } => Some(index as usize),
                Verdict::DefaultDeny => None,
            };
            prop_assert_eq!(got, naive, "{:?}", m);
        }
    }
}

#[test]
fn ruleset_is_shareable_between_workers() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Ruleset>();
    assert_send_sync::<crate::route::RouteTable>();
    assert_send_sync::<crate::neigh::NeighCache>();
    fn assert_send<T: Send>() {}
    assert_send::<crate::neigh::PendingQueues>();
    assert_send::<crate::neigh::NeighMemo>();
}
