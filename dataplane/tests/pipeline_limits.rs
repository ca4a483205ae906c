//! State exhaustion on box A (issue 10.7): per-source limits of a rule (pf's `max-src-states`,
//! `max-src-conn-rate`), the bounded source-node table, and a SYN flood's embryonic states
//! evicted under pressure while an established flow lives on. Exact counter deltas.

mod common;

use std::net::Ipv4Addr;

use common::*;
use tandem_dataplane::filter::{Action, AddrMatch, Rule};
use tandem_dataplane::journal::Origin;
use tandem_dataplane::state::{ConnRate, SrcLimits, TableConfig, EMBRYONIC_GRACE};
use tandem_dataplane::wire::MacAddr;

const T0: u64 = 1_000;
const SRV: (Ipv4Addr, u16) = (SERVER, 80);
const A: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 50);
const B: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 51);
const C: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 52);

/// Box A whose lan rule (number 1) has `limits`.
fn lab_with(limits: SrcLimits) -> Lab {
    let mut rule = Rule::new(1, Action::Pass).with_src(AddrMatch::prefix(prefix("192.168.0.0/24")));
    rule.src_limits = limits;
    Lab::with(BoxA {
        lan: vec![rule],
        ..box_a()
    })
}

fn syn(src: Ipv4Addr, sport: u16) -> Vec<u8> {
    Tcp::new(CLIENT_MAC, LAN_VMAC, (src, sport), SRV)
        .flags("S")
        .seq(100)
        .frame()
}

/// A SYN from `src:sport` forwarded (and translated): the usual counters of a new state.
const CREATED: &[(&str, u64)] = &[
    ("rx_frames", 1),
    ("forwarded", 1),
    ("tx_frames", 1),
    ("states_created", 1),
    ("nat_translated", 1),
];

#[track_caller]
fn syn_created(lab: &mut Lab, src: Ipv4Addr, sport: u16, now: u64) {
    let s = lab.snapshot();
    lab.send(LAN, &syn(src, sport), now);
    s.assert_delta(lab, CREATED);
    assert_eq!(lab.sent(WAN).len(), 1);
}

#[track_caller]
fn syn_refused(lab: &mut Lab, src: Ipv4Addr, sport: u16, now: u64, counter: &str) {
    let s = lab.snapshot();
    lab.send(LAN, &syn(src, sport), now);
    s.assert_delta(lab, &[("rx_frames", 1), (counter, 1)]);
    lab.nothing_sent();
}

#[test]
fn max_src_states_refuses_the_source_over_its_limit_only() {
    let mut lab = lab_with(SrcLimits {
        max_states: 3,
        rate: None,
    });
    let by = lab.dp.states.producer();
    for port in 0..3 {
        syn_created(&mut lab, A, 10_000 + port, T0);
    }
    syn_refused(&mut lab, A, 10_003, T0, "drop_src_states");
    syn_refused(&mut lab, A, 10_004, T0, "drop_src_states");
    // Another source has its own count.
    syn_created(&mut lab, B, 10_000, T0);
    let nodes = lab.dp.states.src_nodes();
    assert_eq!((nodes.states_of(1, A), nodes.states_of(1, B)), (3, 1));
    assert_eq!(lab.dp.states.len(), 4);

    // One of A's states goes (a kill; expiry and a peer's delete take the same way): A may
    // open one more, not two.
    let key = tandem_dataplane::state::FlowKey::new(
        tandem_dataplane::filter::proto::TCP,
        A,
        10_000,
        SERVER,
        80,
    );
    let (state, _) = lab.dp.states.lookup(&key).unwrap();
    assert!(lab.dp.states.remove(&state, Origin::Local(&by)));
    assert_eq!(lab.dp.states.src_nodes().states_of(1, A), 2);
    syn_created(&mut lab, A, 10_005, T0 + 1);
    syn_refused(&mut lab, A, 10_006, T0 + 1, "drop_src_states");
}

#[test]
fn established_packets_do_not_touch_the_source_nodes() {
    let mut lab = lab_with(SrcLimits {
        max_states: 1,
        rate: None,
    });
    lab.dp.neigh.learn(LAN, A, MacAddr(CLIENT_MAC), 0);
    let c = (A, 40_000);
    lab.send(
        LAN,
        &Tcp::new(CLIENT_MAC, LAN_VMAC, c, SRV)
            .flags("S")
            .seq(100)
            .frame(),
        T0,
    );
    let nat_port = parse(&lab.one_sent(WAN)).tcp().source_port;
    let vip = (WAN_VIP, nat_port);
    let s = lab.snapshot();
    lab.send(
        WAN,
        &Tcp::new(SERVER_MAC, WAN_VMAC, SRV, vip)
            .flags("SA")
            .seq(900)
            .ack(101)
            .frame(),
        T0 + 1,
    );
    lab.send(
        LAN,
        &Tcp::new(CLIENT_MAC, LAN_VMAC, c, SRV)
            .flags("A")
            .seq(101)
            .ack(901)
            .frame(),
        T0 + 2,
    );
    for i in 0..10 {
        lab.send(
            LAN,
            &Tcp::new(CLIENT_MAC, LAN_VMAC, c, SRV)
                .flags("PA")
                .seq(101 + i * 4)
                .ack(901)
                .payload(b"data")
                .frame(),
            T0 + 3,
        );
    }
    // A's one state carries all of it; the limit of 1 only refuses a second state.
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 12),
            ("forwarded", 12),
            ("tx_frames", 12),
            ("state_hits", 12),
            ("nat_translated", 12),
        ],
    );
    assert_eq!(lab.dp.states.src_nodes().states_of(1, A), 1);
    assert_eq!((lab.sent(LAN).len(), lab.sent(WAN).len()), (1, 11));
    syn_refused(&mut lab, A, 40_001, T0 + 4, "drop_src_states");
}

#[test]
fn max_src_conn_rate_is_a_burst_then_one_per_interval() {
    // 2 per second: a burst of 2, then one every 500 ms.
    let mut lab = lab_with(SrcLimits {
        max_states: 0,
        rate: Some(ConnRate {
            conns: 2,
            seconds: 1,
        }),
    });
    syn_created(&mut lab, A, 10_000, T0);
    syn_created(&mut lab, A, 10_001, T0);
    syn_refused(&mut lab, A, 10_002, T0, "drop_src_rate");
    syn_refused(&mut lab, A, 10_003, T0 + 499, "drop_src_rate");
    // Other sources are not slowed down by A.
    syn_created(&mut lab, B, 10_000, T0 + 499);
    syn_created(&mut lab, A, 10_004, T0 + 500);
    syn_refused(&mut lab, A, 10_005, T0 + 500, "drop_src_rate");
    // After a full interval of silence, a full burst again.
    syn_created(&mut lab, A, 10_006, T0 + 1500);
    syn_created(&mut lab, A, 10_007, T0 + 1500);
    syn_refused(&mut lab, A, 10_008, T0 + 1500, "drop_src_rate");
}

#[test]
fn the_source_node_table_is_bounded_and_frees_idle_sources() {
    let mut lab = lab_with(SrcLimits {
        max_states: 10,
        rate: None,
    });
    let by = lab.dp.states.producer();
    lab.dp.states.src_nodes().set_max_nodes(2);
    syn_created(&mut lab, A, 10_000, T0);
    syn_created(&mut lab, B, 10_000, T0);
    syn_refused(&mut lab, C, 10_000, T0, "drop_src_nodes");
    assert_eq!(lab.dp.states.src_nodes().len(), 2);
    // A's and B's states expire (tcp.first 120 s); their nodes go with them, C gets a place.
    lab.dp.states.expire(T0 + 121_000, usize::MAX, &by);
    assert!(lab.dp.states.src_nodes().is_empty());
    syn_created(&mut lab, C, 10_000, T0 + 121_000);
}

#[test]
fn syn_flood_at_the_limit_goes_within_a_second_and_new_flows_get_in() {
    let mut lab = Lab::with(BoxA {
        table: TableConfig {
            limit: 64,
            ..TableConfig::default()
        },
        ..box_a()
    });
    let by = lab.dp.states.producer();
    // An established flow.
    let c = (CLIENT, 40_000);
    handshake(&mut lab, c, SRV, T0);
    lab.sent(LAN);
    lab.sent(WAN);
    // The flood: 63 SYNs from random-looking sources fill the table, 10 more are refused.
    let s = lab.snapshot();
    for i in 0..73u16 {
        let src = Ipv4Addr::new(192, 168, 0, 20 + (i % 60) as u8);
        lab.send(LAN, &syn(src, 20_000 + i), T0 + 10);
    }
    s.assert_delta(
        &lab,
        &[
            ("rx_frames", 73),
            ("forwarded", 63),
            ("tx_frames", 63),
            ("states_created", 63),
            ("nat_translated", 63),
            ("drop_state_limit", 10),
        ],
    );
    lab.sent(WAN);
    // Under pressure the flood's states go once idle for EMBRYONIC_GRACE, not after tcp.first
    // (40 s at the limit with adaptive timeouts); the established flow stays.
    assert_eq!(
        lab.dp
            .states
            .expire(T0 + 10 + EMBRYONIC_GRACE - 1, usize::MAX, &by),
        0
    );
    assert_eq!(
        lab.dp
            .states
            .expire(T0 + 10 + EMBRYONIC_GRACE, usize::MAX, &by),
        63
    );
    assert_eq!(lab.dp.states.len(), 1);
    // A new connection gets in, the established one goes on.
    syn_created(&mut lab, CLIENT, 40_001, T0 + 1100);
    let s = lab.snapshot();
    lab.send(
        LAN,
        &Tcp::new(CLIENT_MAC, LAN_VMAC, c, SRV)
            .flags("PA")
            .seq(101)
            .ack(901)
            .payload(b"data")
            .frame(),
        T0 + 1101,
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
}
