//! A state copied from the peer after a CARP takeover: when its windows catch up with the
//! connection's segments, and what a spoofed segment cannot make them do.

use std::sync::Arc;

use super::*;

/// A TCP segment without data and its window, for the catch-up tests.
fn seg(f: u8, seq: u32, ack: u32) -> TcpSegment {
    TcpSegment {
        flags: f,
        seq,
        ack,
        win: 65_535,
        wscale: None,
        payload_len: 0,
    }
}

/// The rest of the handshake of `syn_state`'s connection on `s` (SYN-ACK 50000, ACK 1001).
fn handshake(s: &Arc<State>) {
    use crate::state::tcp::flags;
    s.track_tcp(
        Direction::Reply,
        &seg(flags::SYN | flags::ACK, 50_000, 1_001),
        60,
        1,
    )
    .unwrap();
    s.track_tcp(Direction::Original, &seg(flags::ACK, 1_001, 50_001), 60, 2)
        .unwrap();
}

/// A state that arrived from the peer may be caught up with once per direction (its windows lag
/// by the sync delay); a state of this box's own never is.
#[test]
fn only_states_from_the_peer_catch_up_with_segments_ahead() {
    use crate::state::tcp::flags;
    let t = StateTable::new(TableConfig::default());
    let by = t.producer();
    let far_ack = seg(flags::ACK, 1_001, 50_001 + 2_000_000);

    let own = t.insert(syn_state(1000), 0, &by).unwrap();
    handshake(&own);
    assert_eq!(
        own.track_tcp_on_takeover(Direction::Original, &far_ack, 60, 3),
        Err(TrackError::BadWindow)
    );

    let copy = t
        .insert_synced(SyncId { creator: 9, id: 7 }, syn_state(1001), 0, 0)
        .unwrap();
    // The copy receives the peer's view of the established connection, as state sync merges it.
    assert!(copy.is_from_peer());
    let theirs = own.tracking();
    copy.merge_remote(&theirs.src, &theirs.dst, TimeoutClass::TcpEstablished, 3);
    assert!(copy.is_from_peer());
    assert_eq!(
        copy.track_tcp(Direction::Original, &far_ack, 60, 3),
        Err(TrackError::BadWindow),
        "not through the box's own address"
    );
    assert_eq!(
        copy.track_tcp_on_takeover(Direction::Original, &far_ack, 60, 3),
        Ok(()),
        "the copy catches up through a VIP taken over"
    );
    // One strict success in each direction and the copy is this box's own: no more catching up.
    copy.track_tcp(Direction::Original, &far_ack, 60, 4)
        .unwrap();
    copy.track_tcp(
        Direction::Reply,
        &seg(flags::ACK, 50_001 + 2_000_000, 1_001),
        60,
        5,
    )
    .unwrap();
    assert!(!copy.is_from_peer());
    let farther = seg(flags::ACK, 1_001, 50_001 + 8_000_000);
    assert_eq!(
        copy.track_tcp_on_takeover(Direction::Original, &farther, 60, 6),
        Err(TrackError::BadWindow)
    );
}

/// A spoofed segment sent to the new master cannot move a synced state's windows unless it
/// tracks strictly once moved (a right ack with a wrong sequence number leaves nothing), nor,
/// without data, long after the state's last update.
#[test]
fn a_catch_up_that_does_not_track_leaves_the_windows_and_ends_with_the_sync_window() {
    use crate::state::table::CATCH_UP_AFTER_SYNC;
    use crate::state::tcp::flags;
    let t = StateTable::new(TableConfig::default());
    let by = t.producer();
    let own = t.insert(syn_state(1000), 0, &by).unwrap();
    handshake(&own);
    let theirs = own.tracking();
    let synced = |id: u64, at: Millis| {
        let c = t
            .insert_synced(SyncId { creator: 9, id }, syn_state(1000 + id as u16), 0, 0)
            .unwrap();
        c.merge_remote(&theirs.src, &theirs.dst, TimeoutClass::TcpEstablished, at);
        c
    };

    // 100 bytes of data whose ack is 8 MB ahead (within reach of a catch-up) and whose
    // sequence number is 1 GiB behind: refused, and the windows are as they were. (A
    // segment without data has its sequence number eased, as in pf: the sync window bounds
    // those.)
    let copy = synced(1, 10);
    let before = copy.tracking();
    let far_ack = 50_001 + 8_000_000;
    let wrong_seq = TcpSegment {
        payload_len: 100,
        ..seg(flags::ACK, 1_001u32.wrapping_sub(1 << 30), far_ack)
    };
    assert_eq!(
        copy.track_tcp_on_takeover(Direction::Original, &wrong_seq, 60, 11),
        Err(TrackError::BadWindow)
    );
    assert_eq!(
        copy.tracking(),
        before,
        "a refused segment moved the windows"
    );
    // The real connection's next segment still tracks (after catching up with its own ack).
    assert_eq!(
        copy.track_tcp_on_takeover(
            Direction::Original,
            &seg(flags::ACK, 1_001, 50_001 + 2_000),
            60,
            12
        ),
        Ok(())
    );

    // Past the sync window after the state's last update: no catch-up for a segment without
    // data (only its ack is checked)...
    let idle = synced(2, 10);
    let right = seg(flags::ACK, 1_001, far_ack);
    let late = 11 + CATCH_UP_AFTER_SYNC;
    assert_eq!(
        idle.track_tcp_on_takeover(Direction::Original, &right, 60, late),
        Err(TrackError::BadWindow)
    );
    // ... but a connection idle since the takeover still catches up on its first data segment,
    // whose two numbers are both checked.
    let data = TcpSegment {
        payload_len: 100,
        ..right
    };
    assert_eq!(
        idle.track_tcp_on_takeover(Direction::Original, &data, 160, late),
        Ok(())
    );
    // A data segment without ACK (whose acknowledgement number the strict check would not
    // look at) never catches up: it is refused before anything else.
    let no_ack = synced(4, 10);
    let before = no_ack.tracking();
    let push_only = TcpSegment {
        payload_len: 1,
        ..seg(flags::PSH, 1_001 + 16_000_000, 0)
    };
    assert_eq!(
        no_ack.track_tcp_on_takeover(Direction::Original, &push_only, 61, 11),
        Err(TrackError::NoAck)
    );
    assert_eq!(no_ack.tracking(), before);
    // One catch-up a direction: the rest of the flight tracks strictly (the sender may go on
    // for a window), but a segment that would step the windows on again is refused.
    let flight = synced(5, 10);
    let first = TcpSegment {
        payload_len: 1_000,
        ..seg(flags::ACK, 1_001 + 4_000_000, far_ack)
    };
    assert_eq!(
        flight.track_tcp_on_takeover(Direction::Original, &first, 1_060, 11),
        Ok(())
    );
    let next = TcpSegment {
        seq: first.seq + 1_000,
        ..first
    };
    assert_eq!(
        flight.track_tcp_on_takeover(Direction::Original, &next, 1_060, 12),
        Ok(())
    );
    // A spoofed step right after a landed guess (nothing tracked strictly in between).
    let guessed = synced(6, 10);
    assert_eq!(
        guessed.track_tcp_on_takeover(Direction::Original, &first, 1_060, 11),
        Ok(())
    );
    let step = TcpSegment {
        seq: first.seq + 8_000_000,
        ack: far_ack + 8_000_000,
        ..first
    };
    let before = guessed.tracking();
    assert_eq!(
        guessed.track_tcp_on_takeover(Direction::Original, &step, 1_060, 12),
        Err(TrackError::BadWindow)
    );
    assert_eq!(
        (guessed.tracking().src, guessed.tracking().dst),
        (before.src, before.dst)
    );
    // Within it, the same segment catches up.
    let fresh = synced(3, 10);
    assert_eq!(
        fresh.track_tcp_on_takeover(Direction::Original, &right, 60, 10 + CATCH_UP_AFTER_SYNC),
        Ok(())
    );
}
