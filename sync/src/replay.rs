//! Replay protection per sender: an IPsec-style sliding window (RFC 4303 §3.4.3) over the
//! sequence numbers of one boot of the sender, forward-only boot ids, and a freshness number
//! for control datagrams.
//!
//! The window remembers the highest sequence number accepted (`top`) and a 64-bit bitmap of
//! the 64 numbers up to it. A number already seen, or 64 or more below `top`, is a replay
//! (counter `replay`). A number above `top` slides the window; one inside it and unseen is a
//! late arrival (a reordering or a retransmission answering our NACK) and is accepted.
//!
//! A sender's restart: boot ids only move forward (time-based, at least one more than the last
//! one the sender persisted: [`crate::boot`]). A datagram with a boot id *newer* than the
//! current one starts a new window ([`Seen::Restart`]; the very first datagram of a sender:
//! [`Seen::First`]). An *older* boot id is refused (`old_boot`): a recorded datagram of a
//! previous boot cannot retire the current one (issue 10.2: with a list of the last few
//! retired boots, a receiver that restarted had forgotten them, and one replayed datagram made
//! it refuse every genuine datagram of the peer's current boot). The receiver persists the
//! newest boot it accepted of each peer and passes it back as the window's `floor` after its
//! own restart, so that an older boot is refused even as the first datagram heard.
//!
//! The first datagram a window sees ([`Seen::First`]) marks every sequence number below its own
//! as seen: what came before we met the sender is for a bulk update to bring, and a recorded
//! older datagram of the same boot must not be applied as a "late" one.
//!
//! Control datagrams (ACK/NACK only) do not take part in the data sequence (they are not
//! retransmitted), but need freshness too (issue 10.3: a replayed NACK made the sender resend
//! its ring or walk its table; a replayed ACK kept a dead peer "alive" for flow control). They
//! carry their own per-boot counter, starting at 1, with bit 63 set ([`CONTROL`]); the window
//! accepts only a number above the highest control number seen of this boot (`stale_control`
//! otherwise). A reordered older control datagram is dropped too: harmless, ACKs are cumulative
//! and NACKs repeat while a hole lasts. Sequence number 0 is not used (`stale_control`).
//!
//! Call [`ReplayWindow::check`] only after the MAC is verified: an unauthenticated datagram must
//! not move the window.

/// Window width in sequence numbers.
pub const WIDTH: u64 = 64;
/// Bit 63 of the sequence field: a control datagram; the low 63 bits are its control number.
pub const CONTROL: u64 = 1 << 63;

/// Whether a header's sequence number is a data one (retransmitted, in the window).
pub const fn is_data(seq: u64) -> bool {
    seq != 0 && seq & CONTROL == 0
}

/// What the window says of an accepted datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next in order (`top + 1`).
    InOrder,
    /// Ahead of `top + 1`: `from..=to` are missing (NACK them).
    Gap {
        /// First missing.
        from: u64,
        /// Last missing.
        to: u64,
    },
    /// Inside the window and not seen before: a late or retransmitted datagram.
    Late,
    /// First datagram this window sees: the window starts at it (we just started, or just
    /// met this sender: whatever came before is for a bulk update to bring).
    First,
    /// First datagram of a new boot of the sender: the window starts over. Its sequence
    /// starts at 1, so `missing` are the new boot's datagrams lost before this one (NACK them).
    Restart {
        /// `from..=to` missing, if `seq` > 1.
        missing: Option<(u64, u64)>,
    },
    /// A fresh control datagram (ACK/NACK): outside the data window.
    Control,
}

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Replay {
    /// Sequence number seen already or older than the window.
    #[error("sync datagram replayed (sequence number seen or older than the window)")]
    Seen,
    /// A boot id older than the sender's current (or last persisted) one.
    #[error("sync datagram of an older boot of the sender (replayed, or its clock went back)")]
    OldBoot,
    /// A control number not above the last one of this boot (or sequence number 0).
    #[error("sync control datagram not newer than the last one (replayed)")]
    StaleControl,
}

impl Replay {
    /// The counter's name.
    pub const fn counter(self) -> &'static str {
        match self {
            Replay::Seen => "replay",
            Replay::OldBoot => "old_boot",
            Replay::StaleControl => "stale_control",
        }
    }
}

/// One sender's window. See the [module documentation](self).
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    boot: Option<u32>,
    /// The oldest boot id still accepted.
    floor: u32,
    top: u64,
    /// Bit i: `top - i` was seen.
    bits: u64,
    /// Highest control number of this boot.
    ctl_top: u64,
    /// The boot began with [`Seen::First`] and no data datagram came yet: the first one marks
    /// every number below it as seen.
    past_unknown: bool,
}

impl ReplayWindow {
    /// A window that has seen nothing: the first datagram is [`Seen::First`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A window that refuses boot ids below `floor` (the last boot of this sender we persisted).
    pub fn with_floor(floor: u32) -> Self {
        ReplayWindow {
            floor,
            ..Self::default()
        }
    }

    /// The current boot id of the sender, once one datagram was accepted.
    pub fn boot(&self) -> Option<u32> {
        self.boot
    }

    /// The highest sequence number accepted in the current boot.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Check an authenticated datagram of boot `boot` with sequence number `seq`, and record it.
    pub fn check(&mut self, boot: u32, seq: u64) -> Result<Seen, Replay> {
        if seq == 0 {
            return Err(Replay::StaleControl);
        }
        if self.boot != Some(boot) {
            if boot < self.floor || self.boot.is_some_and(|b| boot < b) {
                return Err(Replay::OldBoot);
            }
            let first = self.boot.is_none();
            *self = ReplayWindow {
                boot: Some(boot),
                floor: boot,
                past_unknown: first,
                ..ReplayWindow::default()
            };
            let seen = if first {
                Seen::First
            } else {
                Seen::Restart {
                    missing: (is_data(seq) && seq > 1).then(|| (1, seq - 1)),
                }
            };
            if is_data(seq) {
                self.top = seq;
                self.bits = if first { u64::MAX } else { 1 };
                self.past_unknown = false;
            } else {
                self.ctl_top = seq & !CONTROL;
            }
            return Ok(seen);
        }
        if seq & CONTROL != 0 {
            let n = seq & !CONTROL;
            if n <= self.ctl_top {
                return Err(Replay::StaleControl);
            }
            self.ctl_top = n;
            return Ok(Seen::Control);
        }
        if self.top == 0 {
            // The first data datagram of this boot, after control ones.
            let seen = if self.past_unknown || seq == 1 {
                Seen::InOrder
            } else {
                Seen::Gap {
                    from: 1,
                    to: seq - 1,
                }
            };
            self.bits = if self.past_unknown { u64::MAX } else { 1 };
            self.past_unknown = false;
            self.top = seq;
            return Ok(seen);
        }
        if seq > self.top {
            let shift = seq - self.top;
            let seen = if shift == 1 {
                Seen::InOrder
            } else {
                Seen::Gap {
                    from: self.top + 1,
                    to: seq - 1,
                }
            };
            self.bits = if shift >= WIDTH {
                0
            } else {
                self.bits << shift
            } | 1;
            self.top = seq;
            return Ok(seen);
        }
        let back = self.top - seq;
        if back >= WIDTH {
            return Err(Replay::Seen);
        }
        let bit = 1u64 << back;
        if self.bits & bit != 0 {
            return Err(Replay::Seen);
        }
        self.bits |= bit;
        Ok(Seen::Late)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: u64 = CONTROL;

    #[test]
    fn in_order_then_replay() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(7, 1), Ok(Seen::First));
        assert_eq!(w.check(7, 2), Ok(Seen::InOrder));
        assert_eq!(w.check(7, 2), Err(Replay::Seen));
        assert_eq!(w.check(7, 1), Err(Replay::Seen));
        assert_eq!(w.check(7, 3), Ok(Seen::InOrder));
        assert_eq!(w.top(), 3);
    }

    #[test]
    fn gap_then_late_fill_then_replay_of_the_fill() {
        let mut w = ReplayWindow::new();
        w.check(1, 10).unwrap();
        assert_eq!(w.check(1, 14), Ok(Seen::Gap { from: 11, to: 13 }));
        assert_eq!(w.check(1, 12), Ok(Seen::Late));
        assert_eq!(w.check(1, 12), Err(Replay::Seen));
        assert_eq!(w.check(1, 11), Ok(Seen::Late));
        assert_eq!(w.check(1, 13), Ok(Seen::Late));
        assert_eq!(w.check(1, 15), Ok(Seen::InOrder));
    }

    #[test]
    fn older_than_the_window_is_replay_edge_inside_is_not() {
        let mut w = ReplayWindow::new();
        w.check(1, 1).unwrap();
        w.check(1, 100).unwrap();
        // top 100: 37..=100 is the window.
        assert_eq!(w.check(1, 36), Err(Replay::Seen));
        assert_eq!(w.check(1, 37), Ok(Seen::Late));
        // A jump of more than the width clears the bitmap.
        assert!(matches!(
            w.check(1, 1000),
            Ok(Seen::Gap { from: 101, to: 999 })
        ));
        assert_eq!(w.check(1, 999), Ok(Seen::Late));
        assert_eq!(w.check(1, 936), Err(Replay::Seen));
    }

    #[test]
    fn what_came_before_the_first_datagram_is_not_late() {
        // We met the sender at 50: a recorded 49 of the same boot is a replay, not a late
        // arrival to apply.
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(5, 50), Ok(Seen::First));
        assert_eq!(w.check(5, 49), Err(Replay::Seen));
        assert_eq!(w.check(5, 51), Ok(Seen::InOrder));
        // Met by a control datagram: the first data datagram plays that part.
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(5, C | 9), Ok(Seen::First));
        assert_eq!(w.check(5, 50), Ok(Seen::InOrder));
        assert_eq!(w.check(5, 49), Err(Replay::Seen));
    }

    #[test]
    fn new_boot_resets_old_boot_is_refused() {
        let mut w = ReplayWindow::new();
        w.check(0xaaaa, 500).unwrap();
        // The peer restarted: its sequence starts again at 1.
        assert_eq!(w.check(0xbbbb, 1), Ok(Seen::Restart { missing: None }));
        assert_eq!(w.check(0xbbbb, 2), Ok(Seen::InOrder));
        // A replay of the previous boot's traffic does not reset the window to it.
        assert_eq!(w.check(0xaaaa, 501), Err(Replay::OldBoot));
        assert_eq!(w.boot(), Some(0xbbbb));
        assert_eq!(w.check(0xbbbb, 2), Err(Replay::Seen));
        assert_eq!(w.check(0xbbbb, 3), Ok(Seen::InOrder));
    }

    /// Issue 10.2: the receiver restarted (a fresh window) and heard the peer's current boot;
    /// a recorded datagram of any older boot, not only the last few, is refused, and the
    /// genuine traffic goes on.
    #[test]
    fn any_older_boot_is_refused_after_the_receiver_restarted() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(1_000_010, 7), Ok(Seen::First));
        for old in [1_000_009, 1_000_000, 1, 0] {
            assert_eq!(w.check(old, 1), Err(Replay::OldBoot));
            assert_eq!(w.check(old, C | 1), Err(Replay::OldBoot));
        }
        assert_eq!(w.check(1_000_010, 8), Ok(Seen::InOrder));
        assert_eq!(w.boot(), Some(1_000_010));
    }

    /// With the peer's last boot persisted, an older boot is refused even as the first
    /// datagram heard after our restart; the persisted boot itself goes on.
    #[test]
    fn the_persisted_floor_refuses_older_boots_first_heard() {
        let mut w = ReplayWindow::with_floor(2_000);
        assert_eq!(w.check(1_999, 3), Err(Replay::OldBoot));
        assert_eq!(w.boot(), None);
        assert_eq!(w.check(2_000, 40), Ok(Seen::First));
        let mut w = ReplayWindow::with_floor(2_000);
        assert_eq!(w.check(2_001, 1), Ok(Seen::First));
    }

    #[test]
    fn control_datagrams_are_fresh_once() {
        let mut w = ReplayWindow::new();
        w.check(3, 5).unwrap();
        assert_eq!(w.check(3, C | 1), Ok(Seen::Control));
        assert_eq!(w.check(3, C | 2), Ok(Seen::Control));
        // Replayed, or reordered behind a newer one: refused.
        assert_eq!(w.check(3, C | 2), Err(Replay::StaleControl));
        assert_eq!(w.check(3, C | 1), Err(Replay::StaleControl));
        // Sequence 0 is not used.
        assert_eq!(w.check(3, 0), Err(Replay::StaleControl));
        assert_eq!(w.top(), 5);
        assert_eq!(w.check(3, 6), Ok(Seen::InOrder));
        assert_eq!(w.check(3, C | 3), Ok(Seen::Control));
    }

    #[test]
    fn a_restart_first_heard_by_control_or_late_data_reports_what_is_missing() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(3, C | 1), Ok(Seen::First));
        assert_eq!(w.check(3, 1), Ok(Seen::InOrder));
        // A restart first heard at seq 4: 1..=3 of the new boot are missing.
        assert_eq!(
            w.check(9, 4),
            Ok(Seen::Restart {
                missing: Some((1, 3))
            })
        );
        assert_eq!(w.check(9, 2), Ok(Seen::Late));
        // A restart first heard by a control datagram, then data at 3: 1..=2 missing.
        assert_eq!(w.check(10, C | 1), Ok(Seen::Restart { missing: None }));
        assert_eq!(w.check(10, 3), Ok(Seen::Gap { from: 1, to: 2 }));
        assert_eq!(w.check(10, 1), Ok(Seen::Late));
        // The control numbers of the new boot start over.
        assert_eq!(w.check(10, C | 1), Err(Replay::StaleControl));
        assert_eq!(w.check(10, C | 2), Ok(Seen::Control));
    }
}
