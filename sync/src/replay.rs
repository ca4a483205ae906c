//! Replay protection per sender: an IPsec-style sliding window (RFC 4303 §3.4.3) over the
//! sequence numbers of one boot of the sender.
//!
//! The window remembers the highest sequence number accepted (`top`) and a 64-bit bitmap of
//! the 64 numbers up to it. A number already seen, or 64 or more below `top`, is a replay
//! (counter `replay`). A number above `top` slides the window; one inside it and unseen is a
//! late arrival (a reordering or a retransmission answering our NACK) and is accepted.
//!
//! A sender's restart: every start draws a random 32-bit boot id that every header carries. A
//! datagram with a boot id other than the current one (and not one of the last
//! [`RETIRED`] boot ids, so an attacker replaying a previous boot's datagrams cannot reset the
//! window to them) starts a new window: [`Seen::Restart`] (the very first datagram of a
//! sender: [`Seen::First`]). The caller then treats the peer as
//! restarted (its states are gone: expect its bulk request; its sequence starts over).
//!
//! Sequence number 0 marks an unsequenced datagram (ACK/NACK only: cumulative or idempotent);
//! it bypasses the window ([`Seen::Unsequenced`]), the MAC having authenticated it.
//!
//! Call [`ReplayWindow::check`] only after the MAC is verified: an unauthenticated datagram must
//! not move the window.

/// How many previous boot ids of a sender are refused.
pub const RETIRED: usize = 4;
/// Window width in sequence numbers.
pub const WIDTH: u64 = 64;

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
    /// Sequence number 0: outside the window.
    Unsequenced,
}

/// A replayed datagram (seen already, older than the window, or from a retired boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sync datagram replayed (sequence number seen or older than the window, or old boot)")]
pub struct Replay;

impl Replay {
    /// The counter's name.
    pub const fn counter(self) -> &'static str {
        "replay"
    }
}

/// One sender's window. See the [module documentation](self).
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    boot: Option<u32>,
    retired: [Option<u32>; RETIRED],
    top: u64,
    /// Bit i: `top - i` was seen.
    bits: u64,
}

impl ReplayWindow {
    /// A window that has seen nothing: the first datagram is [`Seen::First`].
    pub fn new() -> Self {
        Self::default()
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
        if self.boot != Some(boot) {
            if self.retired.contains(&Some(boot)) {
                return Err(Replay);
            }
            let seen = match self.boot {
                None => Seen::First,
                Some(old) => {
                    self.retired.rotate_right(1);
                    self.retired[0] = Some(old);
                    Seen::Restart {
                        missing: (seq > 1).then(|| (1, seq - 1)),
                    }
                }
            };
            self.boot = Some(boot);
            self.top = 0;
            self.bits = 0;
            if seq != 0 {
                self.top = seq;
                self.bits = 1;
            }
            return Ok(seen);
        }
        if seq == 0 {
            return Ok(Seen::Unsequenced);
        }
        if seq > self.top {
            let shift = seq - self.top;
            let seen = if self.top == 0 || shift == 1 {
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
            return Err(Replay);
        }
        let bit = 1u64 << back;
        if self.bits & bit != 0 {
            return Err(Replay);
        }
        self.bits |= bit;
        Ok(Seen::Late)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_then_replay() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(7, 1), Ok(Seen::First));
        assert_eq!(w.check(7, 2), Ok(Seen::InOrder));
        assert_eq!(w.check(7, 2), Err(Replay));
        assert_eq!(w.check(7, 1), Err(Replay));
        assert_eq!(w.check(7, 3), Ok(Seen::InOrder));
        assert_eq!(w.top(), 3);
    }

    #[test]
    fn gap_then_late_fill_then_replay_of_the_fill() {
        let mut w = ReplayWindow::new();
        w.check(1, 10).unwrap();
        assert_eq!(w.check(1, 14), Ok(Seen::Gap { from: 11, to: 13 }));
        assert_eq!(w.check(1, 12), Ok(Seen::Late));
        assert_eq!(w.check(1, 12), Err(Replay));
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
        assert_eq!(w.check(1, 36), Err(Replay));
        assert_eq!(w.check(1, 37), Ok(Seen::Late));
        // A jump of more than the width clears the bitmap.
        assert!(matches!(
            w.check(1, 1000),
            Ok(Seen::Gap { from: 101, to: 999 })
        ));
        assert_eq!(w.check(1, 999), Ok(Seen::Late));
        assert_eq!(w.check(1, 936), Err(Replay));
    }

    #[test]
    fn new_boot_resets_old_boot_is_refused() {
        let mut w = ReplayWindow::new();
        w.check(0xaaaa, 500).unwrap();
        // The peer restarted: its sequence starts again at 1.
        assert_eq!(w.check(0xbbbb, 1), Ok(Seen::Restart { missing: None }));
        assert_eq!(w.check(0xbbbb, 2), Ok(Seen::InOrder));
        // A replay of the previous boot's traffic does not reset the window to it.
        assert_eq!(w.check(0xaaaa, 501), Err(Replay));
        assert_eq!(w.boot(), Some(0xbbbb));
        assert_eq!(w.check(0xbbbb, 2), Err(Replay));
    }

    #[test]
    fn unsequenced_bypasses_the_window() {
        let mut w = ReplayWindow::new();
        w.check(3, 5).unwrap();
        assert_eq!(w.check(3, 0), Ok(Seen::Unsequenced));
        assert_eq!(w.check(3, 0), Ok(Seen::Unsequenced));
        assert_eq!(w.top(), 5);
        // Unsequenced first datagram: window empty, the next is in order.
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(3, 0), Ok(Seen::First));
        assert_eq!(w.check(3, 1), Ok(Seen::InOrder));
        // A restart first heard at seq 4: 1..=3 of the new boot are missing.
        assert_eq!(
            w.check(9, 4),
            Ok(Seen::Restart {
                missing: Some((1, 3))
            })
        );
        assert_eq!(w.check(9, 2), Ok(Seen::Late));
    }
}
