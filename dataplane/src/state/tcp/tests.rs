use super::flags::*;
use super::*;
use Direction::{Original as O, Reply as R};

fn seg(flags: u8, seq: u32, ack: u32, win: u16, len: u16) -> TcpSegment {
    TcpSegment {
        flags,
        seq,
        ack,
        win,
        wscale: None,
        payload_len: len,
    }
}

const C: u32 = 1_000; // client ISN
const S: u32 = 50_000; // server ISN

/// Client SYN, server SYN|ACK, client ACK: both established.
fn handshake() -> (TcpPeer, TcpPeer) {
    let syn = seg(SYN, C, 0, 65_535, 0);
    let (mut a, mut b) = first_packet(&syn);
    assert_eq!((a.state, b.state), (PeerState::SYN_SENT, PeerState::CLOSED));
    assert_eq!(
        track(&mut a, &mut b, &seg(SYN | ACK, S, C + 1, 65_535, 0), R),
        Ok(Some(TimeoutClass::TcpOpening))
    );
    assert_eq!(a.state, PeerState::ESTABLISHED);
    assert_eq!(b.state, PeerState::SYN_SENT);
    assert_eq!(
        track(&mut a, &mut b, &seg(ACK, C + 1, S + 1, 65_535, 0), O),
        Ok(Some(TimeoutClass::TcpEstablished))
    );
    assert_eq!(b.state, PeerState::ESTABLISHED);
    (a, b)
}

/// A backup's copy lags: the server has sent 1 MB more than the copy saw and the client has
/// acked it. pf's check refuses the client's ack (more than MAXACKWINDOW ahead); catch_up
/// moves the copy forward, and the ack then tracks strictly. RSTs, SYNs and segments beyond
/// CATCH_UP_MAX are not caught up.
#[test]
fn a_lagging_copy_catches_up_with_segments_ahead_but_not_with_resets() {
    let (mut a, mut b) = handshake();
    let ahead = S + 1 + 1_000_000;
    let ack = seg(ACK, C + 1, ahead, 65_535, 0);
    assert_eq!(
        track(&mut a, &mut b, &ack, O),
        Err(TrackError::BadWindow),
        "pf refuses it"
    );
    let (a0, b0) = (a, b);
    assert!(!catch_up(
        &mut a,
        &mut b,
        &seg(RST | ACK, C + 1, ahead, 0, 0),
        O
    ));
    assert!(!catch_up(
        &mut a,
        &mut b,
        &seg(ACK, C + 1, S + 1 + CATCH_UP_MAX + 10, 65_535, 0),
        O
    ));
    assert_eq!((a, b), (a0, b0), "nothing moved");
    assert!(catch_up(&mut a, &mut b, &ack, O));
    assert!(
        track(&mut a, &mut b, &ack, O).is_ok(),
        "after catching up the ack tracks"
    );
    assert!(seq_geq(b.seqlo, ahead), "the server's side moved forward");
    // The server's next data (the reply direction) is in the window again.
    assert!(track(&mut a, &mut b, &seg(ACK, ahead, C + 1, 65_535, 1448), R).is_ok());
}

#[test]
fn handshake_data_and_close_pass() {
    let (mut a, mut b) = handshake();
    // Client sends 1000 bytes twice, server acks and answers with 500.
    assert!(track(
        &mut a,
        &mut b,
        &seg(ACK | PSH, C + 1, S + 1, 65_535, 1000),
        O
    )
    .is_ok());
    assert!(track(
        &mut a,
        &mut b,
        &seg(ACK | PSH, C + 1001, S + 1, 65_535, 1000),
        O
    )
    .is_ok());
    assert_eq!(
        track(
            &mut a,
            &mut b,
            &seg(ACK | PSH, S + 1, C + 2001, 65_535, 500),
            R
        ),
        Ok(Some(TimeoutClass::TcpEstablished))
    );
    assert_eq!(a.seqlo, C + 2001);
    assert_eq!(b.seqlo, S + 501);
    // Client closes.
    assert_eq!(
        track(
            &mut a,
            &mut b,
            &seg(FIN | ACK, C + 2001, S + 501, 65_535, 0),
            O
        ),
        Ok(Some(TimeoutClass::TcpClosing))
    );
    assert_eq!(a.state, PeerState::CLOSING);
    // Server acks the FIN and sends its own.
    assert_eq!(
        track(
            &mut a,
            &mut b,
            &seg(FIN | ACK, S + 501, C + 2002, 65_535, 0),
            R
        ),
        Ok(Some(TimeoutClass::TcpFinWait))
    );
    assert_eq!(a.state, PeerState::FIN_WAIT_2);
    assert_eq!(b.state, PeerState::CLOSING);
    // Client acks the server's FIN: both closed.
    assert_eq!(
        track(&mut a, &mut b, &seg(ACK, C + 2002, S + 502, 65_535, 0), O),
        Ok(Some(TimeoutClass::TcpClosed))
    );
    assert_eq!(
        (a.state, b.state),
        (PeerState::FIN_WAIT_2, PeerState::FIN_WAIT_2)
    );
    // A new SYN on the closed ports: port reuse.
    assert_eq!(
        track(&mut a, &mut b, &seg(SYN, C + 90_000, 0, 65_535, 0), O),
        Err(TrackError::PortReuse)
    );
}

#[test]
fn out_of_window_data_is_rejected() {
    let (mut a, mut b) = handshake();
    let before = (a, b);
    // 200 KB ahead of what the server's 64 KB window allows.
    assert_eq!(
        track(
            &mut a,
            &mut b,
            &seg(ACK, C + 1 + 200_000, S + 1, 65_535, 100),
            O
        ),
        Err(TrackError::BadWindow)
    );
    // Far behind (more than a window back).
    assert_eq!(
        track(
            &mut a,
            &mut b,
            &seg(ACK, C.wrapping_sub(100_000), S + 1, 65_535, 100),
            O
        ),
        Err(TrackError::BadWindow)
    );
    // Acking data the server never sent.
    assert_eq!(
        track(
            &mut a,
            &mut b,
            &seg(ACK, C + 1, S + 1 + 200_000, 65_535, 0),
            O
        ),
        Err(TrackError::BadWindow)
    );
    assert_eq!((a, b), before, "a rejected segment changes nothing");
}

#[test]
fn rst_must_hit_the_sequence() {
    let (mut a, mut b) = handshake();
    assert!(track(&mut a, &mut b, &seg(ACK, C + 1, S + 1, 65_535, 1000), O).is_ok());
    // A blind RST inside the window but not at the sequence: rejected.
    assert_eq!(
        track(&mut a, &mut b, &seg(RST, S + 1 + 3000, 0, 0, 0), R),
        Err(TrackError::BadWindow)
    );
    // Far outside the window: rejected.
    assert_eq!(
        track(&mut a, &mut b, &seg(RST, S + 10_000_000, 0, 0, 0), R),
        Err(TrackError::BadWindow)
    );
    assert_eq!(b.state, PeerState::ESTABLISHED);
    // The exact one: both sides to TIME_WAIT.
    assert_eq!(
        track(&mut a, &mut b, &seg(RST | ACK, S + 1, C + 1001, 0, 0), R),
        Ok(Some(TimeoutClass::TcpClosed))
    );
    assert_eq!(
        (a.state, b.state),
        (PeerState::TIME_WAIT, PeerState::TIME_WAIT)
    );
}

#[test]
fn retransmissions_pass() {
    let (mut a, mut b) = handshake();
    let data = seg(ACK | PSH, C + 1, S + 1, 65_535, 1400);
    assert!(track(&mut a, &mut b, &data, O).is_ok());
    assert!(track(
        &mut a,
        &mut b,
        &seg(ACK | PSH, C + 1401, S + 1, 65_535, 1400),
        O
    )
    .is_ok());
    // The first segment again, then the SYN|ACK again (lost ACK).
    assert_eq!(
        track(&mut a, &mut b, &data, O),
        Ok(Some(TimeoutClass::TcpEstablished))
    );
    assert!(track(&mut a, &mut b, &seg(SYN | ACK, S, C + 1, 65_535, 0), R).is_ok());
    assert_eq!(a.seqlo, C + 2801, "a retransmission never moves seqlo back");
    // A duplicate of the client's SYN.
    assert!(track(&mut a, &mut b, &seg(SYN, C, 0, 65_535, 0), O).is_ok());
}

/// The ICMP quote check reads the sender's peer, and the receiver's window scaled when both
/// sides scale; it works across the sequence space's wrap.
#[test]
fn icmp_quote_fits_the_senders_window() {
    let (a, b) = handshake();
    // Client: seqlo C (pf keeps the ISN until data moves it), seqhi the server's ack plus
    // its window; the server's max_win 65535.
    assert_eq!((a.seqlo, a.seqhi, b.max_win), (C, C + 1 + 65_535, 65_535));
    assert!(icmp_quote_fits(&a, &b, O, C + 1));
    assert!(icmp_quote_fits(&a, &b, O, C + 1 + 65_535));
    assert!(!icmp_quote_fits(&a, &b, O, C + 1 + 65_536));
    assert!(icmp_quote_fits(&a, &b, O, C.wrapping_sub(65_535)));
    assert!(!icmp_quote_fits(&a, &b, O, C.wrapping_sub(65_536)));
    // Quoted as the server's, the server's peer decides.
    assert!(icmp_quote_fits(&a, &b, R, S + 1));
    assert!(icmp_quote_fits(&a, &b, R, S + 1 + 65_535));
    assert!(!icmp_quote_fits(&a, &b, R, S + 1 + 65_536));
    assert!(!icmp_quote_fits(&a, &b, R, (S + 1) ^ 0x8000_0000));

    // Scaled: the receiver's max_win counts shifted (4 << 14 = 65536 below seqlo).
    let near_wrap = TcpPeer {
        seqlo: 10,
        seqhi: 10 + 200_000,
        max_win: 502,
        wscale: WSCALE_FLAG | 7,
        state: PeerState::ESTABLISHED,
    };
    let other = TcpPeer {
        seqlo: S,
        seqhi: S + 64_256,
        max_win: 4,
        wscale: WSCALE_FLAG | 14,
        state: PeerState::ESTABLISHED,
    };
    assert!(icmp_quote_fits(
        &near_wrap,
        &other,
        O,
        10u32.wrapping_sub(65_536)
    ));
    assert!(!icmp_quote_fits(
        &near_wrap,
        &other,
        O,
        10u32.wrapping_sub(65_537)
    ));
    assert!(icmp_quote_fits(&near_wrap, &other, O, 200_010));
    assert!(!icmp_quote_fits(&near_wrap, &other, O, 200_011));
    // Without scaling on both sides, the window is not shifted.
    let unscaled = TcpPeer { wscale: 0, ..other };
    assert!(!icmp_quote_fits(
        &near_wrap,
        &unscaled,
        O,
        10u32.wrapping_sub(5)
    ));
    assert!(icmp_quote_fits(
        &near_wrap,
        &unscaled,
        O,
        10u32.wrapping_sub(4)
    ));
}

#[test]
fn window_scaling_both_sides() {
    // Client offers shift 7 with a 64240 window field (SYN windows are never scaled).
    let syn = TcpSegment {
        wscale: Some(7),
        ..seg(SYN, C, 0, 64_240, 0)
    };
    let (mut a, mut b) = first_packet(&syn);
    assert_eq!(a.wscale, WSCALE_FLAG | 7);
    // pf stores the SYN's window scaled down, rounding up: ceil(64240 / 128) = 502.
    assert_eq!(a.max_win, 502);
    let synack = TcpSegment {
        wscale: Some(20), // clamped to 14
        ..seg(SYN | ACK, S, C + 1, 65_535, 0)
    };
    assert!(track(&mut a, &mut b, &synack, R).is_ok());
    assert_eq!(b.wscale, WSCALE_FLAG | 14);
    assert_eq!(b.max_win, 4); // ceil(65535 / 16384)
    assert!(track(&mut a, &mut b, &seg(ACK, C + 1, S + 1, 502, 0), O).is_ok());
    // The client's window is now 502 << 7 = 64256 bytes: the server may send that far.
    assert_eq!(b.seqhi, S + 1 + 502 * 128);
    // Server announces 10 << 14 = 163840: the client may send 150 KB in one go.
    assert!(track(&mut a, &mut b, &seg(ACK, S + 1, C + 1, 10, 0), R).is_ok());
    assert!(track(&mut a, &mut b, &seg(ACK, C + 1, S + 1, 502, 1400), O).is_ok());
    assert!(track(&mut a, &mut b, &seg(ACK, C + 150_001, S + 1, 502, 1400), O).is_ok());
    // But not past 10 << 14.
    assert_eq!(
        track(&mut a, &mut b, &seg(ACK, C + 170_000, S + 1, 502, 1400), O),
        Err(TrackError::BadWindow)
    );
}

#[test]
fn scaling_needs_both_sides() {
    let syn = TcpSegment {
        wscale: Some(7),
        ..seg(SYN, C, 0, 64_240, 0)
    };
    let (mut a, mut b) = first_packet(&syn);
    // The server does not scale and offers 2000 bytes: the client's window is restored
    // unscaled, its wscale cleared.
    assert!(track(&mut a, &mut b, &seg(SYN | ACK, S, C + 1, 2000, 0), R).is_ok());
    assert_eq!(a.wscale, 0);
    assert_eq!(a.max_win, 64_256);
    assert_eq!(b.wscale, 0);
    assert!(track(&mut a, &mut b, &seg(ACK, C + 1, S + 1, 64_240, 0), O).is_ok());
    assert!(track(&mut a, &mut b, &seg(ACK, C + 1, S + 1, 64_240, 1400), O).is_ok());
    // 2000 means 2000 bytes, not 2000 << 7: the next 1400 do not fit.
    assert_eq!(a.seqhi, C + 1 + 2000);
    assert_eq!(
        track(&mut a, &mut b, &seg(ACK, C + 1401, S + 1, 64_240, 1400), O),
        Err(TrackError::BadWindow)
    );
}

#[test]
fn stateless_levels() {
    let (mut a, mut b, class) = first_stateless(PROTO_UDP);
    assert_eq!(class, TimeoutClass::UdpFirst);
    assert_eq!(
        track_stateless(PROTO_UDP, &mut a, &mut b, O),
        TimeoutClass::UdpSingle
    );
    assert_eq!(
        track_stateless(PROTO_UDP, &mut a, &mut b, R),
        TimeoutClass::UdpSingle
    );
    assert_eq!(
        track_stateless(PROTO_UDP, &mut a, &mut b, O),
        TimeoutClass::UdpMultiple
    );
    assert_eq!(
        (a.state, b.state),
        (PeerState::MULTIPLE, PeerState::MULTIPLE)
    );
    let (mut a, mut b, _) = first_stateless(PROTO_ICMP);
    assert_eq!(
        track_stateless(PROTO_ICMP, &mut a, &mut b, R),
        TimeoutClass::IcmpError
    );
}

#[test]
fn merge_never_moves_backwards() {
    let (a, b) = handshake();
    let mut ahead = a;
    ahead.seqlo = a.seqlo.wrapping_add(5000);
    // Newer remote: applied.
    let mut local = a;
    assert!(merge_side(&mut local, &ahead, true, true));
    assert_eq!(local, ahead);
    // Older remote (window behind): refused, nothing changes.
    assert!(!merge_side(&mut local, &a, true, true));
    assert_eq!(local, ahead);
    // A lower level is stale even with a higher seqlo.
    let mut older = ahead;
    older.state = PeerState::SYN_SENT;
    older.seqlo = ahead.seqlo.wrapping_add(1);
    assert!(!merge_side(&mut local, &older, true, true));
    // dst side: a lower seqlo is stale once the side has sent, whatever the level.
    let mut dst_local = b;
    let mut closing = b;
    closing.state = PeerState::CLOSING;
    closing.seqlo = b.seqlo.wrapping_sub(100);
    assert!(!merge_side(&mut dst_local, &closing, true, false));
    assert_eq!(dst_local, b);
    // Non-TCP: levels only.
    let mut udp = TcpPeer {
        state: PeerState::MULTIPLE,
        ..TcpPeer::default()
    };
    let single = TcpPeer {
        state: PeerState::SINGLE,
        ..TcpPeer::default()
    };
    assert!(!merge_side(&mut udp, &single, false, true));
    assert_eq!(udp.state, PeerState::MULTIPLE);
}

#[test]
fn peer_is_small() {
    assert_eq!(std::mem::size_of::<TcpPeer>(), 12);
}

#[test]
fn an_established_ack_in_the_window_takes_the_shortcut() {
    let (mut a, mut b) = handshake();
    let data = seg(ACK | PSH, C + 1, S + 1, 65_535, 100);
    assert!(track_established(&mut a, &mut b, &data));
    assert_eq!(a.seqlo, C + 101, "the sender's data is counted");
    // Outside the window: no shortcut, nothing touched, and the full tracker refuses it.
    let (a0, b0) = (a, b);
    let far = seg(ACK, C + 101 + (1 << 30), S + 1, 65_535, 100);
    assert!(!track_established(&mut a, &mut b, &far));
    assert_eq!((a, b), (a0, b0));
    assert_eq!(track(&mut a, &mut b, &far, O), Err(TrackError::BadWindow));
    // A FIN is the full tracker's business (it moves a level).
    let fin = seg(ACK | FIN, C + 101, S + 1, 65_535, 0);
    let (a0, b0) = (a, b);
    assert!(!track_established(&mut a, &mut b, &fin));
    assert_eq!((a, b), (a0, b0));
}

mod shortcut {
    use super::*;
    use proptest::prelude::*;

    /// A peer at a level `state` gives, its `seqlo` from `seqlo`, the rest at random.
    fn peer_with(
        state: impl Strategy<Value = PeerState>,
        seqlo: impl Strategy<Value = u32>,
    ) -> impl Strategy<Value = TcpPeer> {
        (
            state,
            seqlo,
            0u32..2_000_000,
            any::<u16>(),
            prop_oneof![Just(0u8), (0u8..=14).prop_map(|s| WSCALE_FLAG | s)],
        )
            .prop_map(|(state, seqlo, reach, max_win, wscale)| TcpPeer {
                seqlo,
                seqhi: seqlo.wrapping_add(reach),
                max_win,
                wscale,
                state,
            })
    }

    fn peer() -> impl Strategy<Value = TcpPeer> {
        peer_with(
            prop_oneof![3 => Just(PeerState::ESTABLISHED), 1 => (0u8..=10).prop_map(PeerState)],
            prop_oneof![Just(0u32), 1u32..4_000_000, any::<u32>()],
        )
    }

    fn segment() -> impl Strategy<Value = TcpSegment> {
        (
            prop_oneof![
                4 => prop_oneof![Just(ACK), Just(ACK | PSH)],
                1 => any::<u8>().prop_map(|f| f & 0x3f),
            ],
            prop_oneof![1u32..4_000_000, any::<u32>()],
            prop_oneof![1u32..4_000_000, any::<u32>()],
            any::<u16>(),
            prop_oneof![Just(0u16), 1u16..1500, any::<u16>()],
        )
            .prop_map(|(flags, seq, ack, win, payload_len)| TcpSegment {
                flags,
                seq,
                ack,
                win,
                wscale: None,
                payload_len,
            })
    }

    /// An ESTABLISHED peer that has sent: the shortcut's side of the state space.
    fn established() -> impl Strategy<Value = TcpPeer> {
        peer_with(Just(PeerState::ESTABLISHED), 1u32..)
    }

    /// `track` (shortcut first) and the full tracker alone, from the same peers: the same
    /// answer, the same peers after.
    fn agree(a: TcpPeer, b: TcpPeer, s: &TcpSegment, dir: Direction) -> Result<(), TestCaseError> {
        let (mut fa, mut fb) = (a, b);
        let full = match dir {
            O => track_sender(&mut fa, &mut fb, s, dir),
            R => track_sender(&mut fb, &mut fa, s, dir),
        };
        let (mut ta, mut tb) = (a, b);
        let got = track(&mut ta, &mut tb, s, dir);
        prop_assert_eq!(got, full);
        prop_assert_eq!((ta, tb), (fa, fb));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// The same agreement where it is easy to get wrong: segments of established
        /// connections at (and one off) every bound of the window test: the sender's `seqhi`,
        /// the receiver's window behind `seqlo`, and the ack skew both ways.
        #[test]
        fn the_shortcut_agrees_at_the_window_edges(
            a in established(), b in established(), reply in any::<bool>(),
            flags in prop_oneof![3 => Just(ACK), 1 => Just(ACK | PSH), 1 => any::<u8>()],
            len in prop_oneof![Just(0u16), 1u16..1500], win in any::<u16>(),
            seq_edge in 0usize..3, seq_off in -2i64..=2,
            ack_edge in 0usize..3, ack_off in -70_000i64..=70_000, ack_fine in -2i64..=2,
        ) {
            let dir = if reply { R } else { O };
            let (src, dst) = if reply { (b, a) } else { (a, b) };
            let (sws, dws) = if src.wscale != 0 && dst.wscale != 0 {
                (src.wscale & WSCALE_MASK, dst.wscale & WSCALE_MASK)
            } else {
                (0, 0)
            };
            let dst_win = u32::from(dst.max_win) << dws;
            let seq = match seq_edge {
                0 => src.seqlo,
                1 => src.seqhi.wrapping_sub(u32::from(len)),
                _ => src.seqlo.wrapping_sub(dst_win),
            }
            .wrapping_add(seq_off as u32);
            let ack = match ack_edge {
                0 => dst.seqlo.wrapping_sub(ack_off as u32),
                1 => dst.seqlo.wrapping_add(MAX_ACK_WINDOW as u32),
                _ => dst.seqlo.wrapping_sub((MAX_ACK_WINDOW << sws) as u32),
            }
            .wrapping_add(ack_fine as u32);
            let s = TcpSegment { flags, seq, ack, win, wscale: None, payload_len: len };
            agree(a, b, &s, dir)?;
        }

        /// `track` (shortcut first) and the full tracker alone give the same answer and leave
        /// the same peers, for any peers and segment.
        #[test]
        fn the_established_shortcut_agrees_with_the_full_tracker(
            a in peer(), b in peer(), s in segment(), reply in any::<bool>(),
        ) {
            let dir = if reply { R } else { O };
            agree(a, b, &s, dir)?;
        }
    }
}

/// Only a SYN or a RST may come without ACK. Anything else (no flags, a bare FIN, data with PSH
/// alone) is refused and moves nothing: pf would let its sequence number set the sender's
/// `seqlo`, which the exact-RST rule compares with. A SYN from a side whose SYN was acked
/// passes (the receiver answers it) without moving anything either.
#[test]
fn a_segment_without_ack_moves_nothing() {
    let (mut a, mut b) = handshake();
    let (a0, b0) = (a, b);
    for flags in [0, FIN, PSH, FIN | PSH, SYN | FIN] {
        assert_eq!(
            track(&mut a, &mut b, &seg(flags, S + 1 + 1_000, 0, 65_535, 1), R),
            Err(TrackError::NoAck),
            "flags {flags:#x}"
        );
        assert_eq!((a, b), (a0, b0), "flags {flags:#x}");
    }
    assert_eq!(
        track(&mut a, &mut b, &seg(SYN, 777, 0, 65_535, 0), R),
        Ok(None),
        "a SYN from an established side is passed"
    );
    assert_eq!((a, b), (a0, b0));
    assert_eq!(
        track(&mut a, &mut b, &seg(RST, S + 1 + 1_001, 0, 0, 0), R),
        Err(TrackError::BadWindow),
        "a RST one past the guess"
    );
    assert_eq!(
        track(&mut a, &mut b, &seg(RST, S + 1, 0, 0, 0), R),
        Ok(Some(TimeoutClass::TcpClosed)),
        "a RST without ACK at the real sequence"
    );
}

/// The handshake still takes a retransmitted SYN without ACK (the SYN|ACK was lost).
#[test]
fn a_retransmitted_syn_still_passes() {
    let syn = seg(SYN, C, 0, 65_535, 0);
    let (mut a, mut b) = first_packet(&syn);
    assert!(track(&mut a, &mut b, &syn, O).is_ok());
    assert_eq!(a.state, PeerState::SYN_SENT);
    assert_eq!(
        track(&mut a, &mut b, &seg(SYN | ACK, S, C + 1, 65_535, 0), R),
        Ok(Some(TimeoutClass::TcpOpening))
    );
    assert_eq!(track(&mut a, &mut b, &syn, O), Ok(None));
    assert_eq!(
        track(&mut a, &mut b, &seg(ACK, C + 1, S + 1, 65_535, 0), O),
        Ok(Some(TimeoutClass::TcpEstablished))
    );
}
