//! State table tests: the state limit, expiry and its pressure rules, per-source limits, port
//! reuse and the levels of non-TCP states.

use super::*;

#[test]
fn state_limit() {
    let t = table(3);
    let by = t.producer();
    for p in 0..3 {
        t.insert(syn_state(p), 0, &by).unwrap();
    }
    assert_eq!(
        t.insert(syn_state(3), 0, &by).unwrap_err(),
        InsertError::StateLimit
    );
    assert_eq!(t.len(), 3);
    let s = t.lookup(&tcp_key(0)).unwrap().0;
    t.remove(&s, Origin::Local(&by));
    assert!(t.insert(syn_state(3), 0, &by).is_ok());
}

#[test]
fn a_limit_raised_above_the_tables_size_is_held_to_it() {
    let t = table(1000);
    assert_eq!(t.set_limit(500), 500, "lowering is always taken");
    assert_eq!(t.limit(), 500);
    let held = t.set_limit(10_000);
    assert_eq!(held, 1000, "the index was sized for 1000 states");
    assert_eq!(t.limit(), held);
    // Up to the limit in force every insert succeeds; past it, the limit refuses (not a
    // full index: the index stays at most half full).
    let by = t.producer();
    for p in 0..1000 {
        t.insert(syn_state(p), 0, &by).unwrap();
    }
    assert_eq!(
        t.insert(syn_state(1000), 0, &by).unwrap_err(),
        InsertError::StateLimit
    );
}

#[test]
fn states_expire_after_their_timeout() {
    let t = table(1000);
    let by = t.producer();
    t.set_timeouts(Timeouts {
        adaptive: Some(Adaptive::DISABLED),
        ..Timeouts::default()
    });
    let udp = FlowKey::new(PROTO_UDP, CLIENT, 5353, SERVER, 53);
    t.insert(NewState::first_packet(udp, 1, None, 80), 0, &by)
        .unwrap();
    let icmp = FlowKey::icmp_query(CLIENT, SERVER, 1);
    t.insert(NewState::first_packet(icmp, 1, None, 84), 0, &by)
        .unwrap();
    t.insert(syn_state(1), 0, &by).unwrap();
    assert_eq!(t.expire(19 * SEC, usize::MAX, &by), 0);
    assert_eq!(t.expire(20 * SEC, usize::MAX, &by), 1, "icmp.first 20 s");
    assert_eq!(t.expire(59 * SEC, usize::MAX, &by), 0);
    assert_eq!(t.expire(60 * SEC, usize::MAX, &by), 1, "udp.first 60 s");
    assert!(t.lookup(&udp.reversed()).is_none());
    assert_eq!(t.expire(119 * SEC, usize::MAX, &by), 0);
    assert_eq!(t.expire(120 * SEC, usize::MAX, &by), 1, "tcp.first 120 s");
    assert!(t.is_empty());
}

#[test]
fn traffic_keeps_an_established_flow_alive() {
    let t = table(1000);
    let by = t.producer();
    let s = t.insert(syn_state(1), 0, &by).unwrap();
    establish(&s, 0);
    let idle = t.insert(syn_state(2), 0, &by).unwrap();
    establish(&idle, 0);
    // One packet every hour for three days on the first flow only.
    let mut now = 0;
    let mut seq = 1001;
    for _ in 0..72 {
        now += 3600 * SEC;
        let data = TcpSegment {
            flags: ACK,
            seq,
            ack: 9001,
            win: 65_535,
            payload_len: 100,
            ..TcpSegment::default()
        };
        seq += 100;
        s.track_tcp(Direction::Original, &data, 152, now).unwrap();
        t.expire(now, 10, &by);
    }
    t.expire(now, usize::MAX, &by);
    assert!(t.lookup(&tcp_key(1)).is_some(), "active flow kept");
    assert!(
        t.lookup(&tcp_key(2)).is_none(),
        "idle flow gone after tcp.established"
    );
    assert!(idle.is_removed());
}

#[test]
fn expiry_walk_is_resumable() {
    let t = table(100_000);
    let by = t.producer();
    for p in 0..5000 {
        let udp = FlowKey::new(PROTO_UDP, CLIENT, p, SERVER, 53);
        t.insert(NewState::first_packet(udp, 1, None, 0), 0, &by)
            .unwrap();
    }
    // Budget 500: each call looks at a few shards, all are removed after enough calls.
    let mut removed = 0;
    let mut calls = 0;
    while removed < 5000 {
        let r = t.expire(3600 * SEC, 500, &by);
        assert!(
            r < 1000,
            "a call removed {r}, more than its budget's shards"
        );
        removed += r;
        calls += 1;
        assert!(calls < 100);
    }
    assert!(calls >= 5);
    assert!(t.is_empty());
}

#[test]
fn flood_does_not_push_out_established_flows() {
    const LIMIT: u32 = 2000;
    let t = table(LIMIT);
    let by = t.producer();
    let est = t.insert(syn_state(1), 0, &by).unwrap();
    establish(&est, 0);
    let mut p = 2;
    let mut refused = 0;
    while p < 10_000 {
        match t.insert(syn_state(p), SEC, &by) {
            Ok(_) => {}
            Err(InsertError::StateLimit) => refused += 1,
            Err(e) => panic!("{e}"),
        }
        p += 1;
    }
    assert_eq!(t.len(), LIMIT as usize);
    assert_eq!(refused, 10_000 - 2 - (LIMIT as usize - 1));
    // The established flow still works.
    let alive = t.with_state(&tcp_key(1).reversed(), |s, dir| {
        let seg = TcpSegment {
            flags: ACK,
            seq: 9001,
            ack: 1001,
            win: 65_535,
            payload_len: 10,
            ..TcpSegment::default()
        };
        s.track_tcp(dir, &seg, 62, 2 * SEC)
    });
    assert_eq!(alive, Some(Ok(())));
    // Under pressure the flood's embryonic states go once idle for EMBRYONIC_GRACE (1 s),
    // not after tcp.first (40 s at the limit with adaptive scaling); the established one stays.
    assert_eq!(t.expire(SEC + EMBRYONIC_GRACE - 1, usize::MAX, &by), 0);
    assert_eq!(
        t.expire(SEC + EMBRYONIC_GRACE, usize::MAX, &by),
        LIMIT as usize - 1
    );
    assert_eq!(t.len(), 1);
    assert!(Arc::ptr_eq(&t.lookup(&tcp_key(1)).unwrap().0, &est));
    // The table has room again: a new connection gets its state.
    assert!(t.insert(syn_state(20_000), 3 * SEC, &by).is_ok());
}

#[test]
fn under_pressure_closed_states_go_too() {
    const LIMIT: u32 = 10;
    let t = table(LIMIT);
    let by = t.producer();
    let est = t.insert(syn_state(1), 0, &by).unwrap();
    establish(&est, 0);
    for p in 2..=LIMIT as u16 {
        let s = t.insert(syn_state(p), 0, &by).unwrap();
        // The server answers the SYN with a RST (a closed port): tcp.closed, 90 s.
        let rst = TcpSegment {
            flags: super::tcp::flags::RST | ACK,
            seq: 0,
            ack: 1001,
            win: 0,
            ..TcpSegment::default()
        };
        s.track_tcp(Direction::Reply, &rst, 40, 0).unwrap();
        assert_eq!(s.expire().1, TimeoutClass::TcpClosed);
    }
    assert_eq!(t.expire(EMBRYONIC_GRACE - 1, usize::MAX, &by), 0);
    assert_eq!(
        t.expire(EMBRYONIC_GRACE, usize::MAX, &by),
        LIMIT as usize - 1
    );
    assert!(Arc::ptr_eq(&t.lookup(&tcp_key(1)).unwrap().0, &est));
}

#[test]
fn without_pressure_embryonic_states_keep_their_timeout() {
    const LIMIT: u32 = 1000;
    let t = table(LIMIT);
    let by = t.producer();
    // 89% of the limit: below the pressure mark, only the (adaptive) timeout applies.
    for p in 0..899 {
        t.insert(syn_state(p), 0, &by).unwrap();
    }
    assert_eq!(t.expire(10 * SEC, usize::MAX, &by), 0);
    // One more state: 90%, pressure.
    t.insert(syn_state(900), 10 * SEC, &by).unwrap();
    assert_eq!(t.expire(10 * SEC, usize::MAX, &by), 899);
    assert_eq!(t.expire(11 * SEC - 1, usize::MAX, &by), 0);
    assert_eq!(t.len(), 1);
}

#[test]
fn adaptive_timeouts_apply_to_established_states_under_pressure() {
    // pf's adaptive scaling: with 1000 states of a limit 1000 (start 600, end 1200) every
    // timeout is a third; tcp.established 86400 s -> 28800 s.
    const LIMIT: u32 = 1000;
    let t = table(LIMIT);
    let by = t.producer();
    for p in 0..LIMIT as u16 {
        let s = t.insert(syn_state(p), 0, &by).unwrap();
        establish(&s, 0);
    }
    assert_eq!(t.expire(28_800 * SEC - 1, usize::MAX, &by), 0);
    assert_eq!(t.expire(28_800 * SEC, usize::MAX, &by), LIMIT as usize);
}

fn limited(max_states: u32, rate: Option<ConnRate>) -> SrcLimits {
    SrcLimits { max_states, rate }
}

#[test]
fn per_source_state_limit_is_given_back_on_every_removal() {
    let t = table(100);
    let by = t.producer();
    let l = limited(2, None);
    let a = t.insert_limited(syn_state(1), None, &l, 0, &by).unwrap();
    assert!(a.is_src_tracked());
    let b = t.insert_limited(syn_state(2), None, &l, 0, &by).unwrap();
    assert_eq!(
        t.insert_limited(syn_state(3), None, &l, 0, &by)
            .unwrap_err(),
        InsertError::SrcStates
    );
    assert_eq!(t.src_nodes().states_of(7, CLIENT), 2);
    // Removal (a kill, a peer's delete) gives one back.
    assert!(t.remove(&a, Origin::Local(&by)));
    assert_eq!(t.src_nodes().states_of(7, CLIENT), 1);
    // A failed insert (the flow has a state) gives back what it took.
    assert_eq!(
        t.insert_limited(syn_state(2), None, &l, 0, &by)
            .unwrap_err(),
        InsertError::Exists
    );
    assert_eq!(t.src_nodes().states_of(7, CLIENT), 1);
    // NAT: tracked too.
    let n = t
        .insert_limited(syn_state(4), Some((VIP, PortPolicy::DEFAULT)), &l, 0, &by)
        .unwrap();
    assert!(n.is_src_tracked());
    assert_eq!(t.src_nodes().states_of(7, CLIENT), 2);
    // Expiry gives back, and the node goes when it is idle.
    drop((b, n));
    assert_eq!(t.expire(120 * SEC, usize::MAX, &by), 2);
    assert_eq!(t.src_nodes().states_of(7, CLIENT), 0);
    assert!(t.src_nodes().is_empty());
    t.check_consistency().unwrap();
}

#[test]
fn per_source_limits_at_a_full_table_charge_nothing() {
    let t = table(1);
    let by = t.producer();
    let l = limited(
        0,
        Some(ConnRate {
            conns: 1,
            seconds: 60,
        }),
    );
    t.insert(syn_state(1), 0, &by).unwrap();
    assert_eq!(
        t.insert_limited(syn_state(2), None, &l, 0, &by)
            .unwrap_err(),
        InsertError::StateLimit
    );
    let s = t.lookup(&tcp_key(1)).unwrap().0;
    t.remove(&s, Origin::Local(&by));
    // The refused attempt did not use the source's one connection per minute.
    assert!(t.insert_limited(syn_state(2), None, &l, 0, &by).is_ok());
    assert_eq!(
        t.insert_limited(syn_state(3), None, &l, 0, &by)
            .unwrap_err(),
        InsertError::StateLimit
    );
}

#[test]
fn unlimited_rules_do_not_touch_source_nodes() {
    let t = table(100);
    let by = t.producer();
    let s = t
        .insert_limited(syn_state(1), None, &SrcLimits::NONE, 0, &by)
        .unwrap();
    assert!(!s.is_src_tracked());
    assert!(t.src_nodes().is_empty());
}

#[test]
fn state_size_is_unchanged() {
    // The source-node mark lives in the expiry word: State stays in a 144-byte malloc chunk.
    assert_eq!(std::mem::size_of::<State>(), 120);
}

#[test]
fn port_reuse_purges() {
    let t = table(100);
    let by = t.producer();
    let s = t.insert(syn_state(1), 0, &by).unwrap();
    s.modify(|tr| {
        tr.src.state = PeerState::FIN_WAIT_2;
        tr.dst.state = PeerState::FIN_WAIT_2;
    });
    let (st, dir) = t.lookup(&tcp_key(1)).unwrap();
    assert_eq!(
        st.track_tcp(dir, &syn(77_000), 60, 5 * SEC),
        Err(TrackError::PortReuse)
    );
    assert_eq!(st.expire().1, TimeoutClass::Purge);
    assert_eq!(t.expire(5 * SEC, usize::MAX, &by), 1);
    assert!(t.insert(syn_state(1), 5 * SEC, &by).is_ok());
}

#[test]
fn non_tcp_levels_and_counters() {
    let t = table(100);
    let by = t.producer();
    let udp = FlowKey::new(PROTO_UDP, CLIENT, 5000, SERVER, 53);
    t.insert(NewState::first_packet(udp, 1, None, 80), 0, &by)
        .unwrap();
    t.with_state(&udp.reversed(), |s, d| s.track_other(d, 120, SEC))
        .unwrap();
    t.with_state(&udp, |s, d| s.track_other(d, 80, 2 * SEC))
        .unwrap();
    let tr = t.lookup(&udp).unwrap().0.tracking();
    assert_eq!(tr.timeout, TimeoutClass::UdpMultiple);
    assert_eq!(tr.packets, [2, 1]);
    assert_eq!(tr.bytes, [160, 120]);
    assert_eq!(tr.last, 2 * SEC);
    let _ = PROTO_ICMP;
}
