//! State timeouts: pf's defaults, its timeout classes and adaptive scaling.
//!
//! Times are plain `u64` milliseconds from a monotonic origin chosen by the caller ([`Millis`]):
//! the pipeline reads its clock once per batch and passes the value down, tests drive it by hand.
//! A state stores the time of its last accepted packet and its [`TimeoutClass`]; its deadline is
//! computed when expiry looks at it, as pf's `pf_state_expires` does, so adaptive scaling applies
//! to states that already exist when a flood starts, not only to new ones.

/// Milliseconds since an arbitrary monotonic origin (the caller's clock).
pub type Millis = u64;

/// A monotonic millisecond clock: the pipeline reads it once per batch, housekeeping once per
/// expiry call, and passes the value down. Tests use plain numbers instead.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Clock {
            origin: std::time::Instant::now(),
        }
    }

    /// Milliseconds since the clock's origin (a vDSO `clock_gettime`, ~20 ns).
    #[inline]
    pub fn now_ms(&self) -> Millis {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Which timeout applies to a state, pf's `PFTM_*` for the states we keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TimeoutClass {
    /// TCP: after the first packet (`tcp.first`).
    TcpFirst,
    /// TCP: before both sides are established (`tcp.opening`).
    TcpOpening,
    /// TCP: both sides established (`tcp.established`).
    TcpEstablished,
    /// TCP: one side has sent a FIN (`tcp.closing`).
    TcpClosing,
    /// TCP: both sides have sent a FIN (`tcp.finwait`).
    TcpFinWait,
    /// TCP: both FINs acknowledged, or a RST (`tcp.closed`).
    TcpClosed,
    /// UDP: after the first packet (`udp.first`).
    UdpFirst,
    /// UDP: one side has sent, the other not yet (`udp.single`).
    UdpSingle,
    /// UDP: both sides have sent (`udp.multiple`).
    UdpMultiple,
    /// ICMP: after the first packet (`icmp.first`).
    IcmpFirst,
    /// ICMP: after a reply (`icmp.error`, pf's name).
    IcmpError,
    /// Other protocols: after the first packet (`other.first`).
    OtherFirst,
    /// Other protocols: one side has sent (`other.single`).
    OtherSingle,
    /// Other protocols: both sides have sent (`other.multiple`).
    OtherMultiple,
    /// Marked for removal: expired whatever the clock says (pf's `PFTM_PURGE`).
    Purge,
}

impl TimeoutClass {
    /// Every class, in the order of their numbers (`class as u8`).
    pub const ALL: [TimeoutClass; 15] = [
        TimeoutClass::TcpFirst,
        TimeoutClass::TcpOpening,
        TimeoutClass::TcpEstablished,
        TimeoutClass::TcpClosing,
        TimeoutClass::TcpFinWait,
        TimeoutClass::TcpClosed,
        TimeoutClass::UdpFirst,
        TimeoutClass::UdpSingle,
        TimeoutClass::UdpMultiple,
        TimeoutClass::IcmpFirst,
        TimeoutClass::IcmpError,
        TimeoutClass::OtherFirst,
        TimeoutClass::OtherSingle,
        TimeoutClass::OtherMultiple,
        TimeoutClass::Purge,
    ];

    /// The class numbered `n` (`class as u8`), if any: for the state's packed expiry word and
    /// the sync wire format.
    pub fn from_number(n: u8) -> Option<TimeoutClass> {
        Self::ALL.get(usize::from(n)).copied()
    }

    /// Embryonic states: the ones a SYN flood creates, and the first to go under pressure.
    pub const fn is_embryonic(self) -> bool {
        matches!(self, TimeoutClass::TcpFirst | TimeoutClass::TcpOpening)
    }
}

/// Adaptive scaling bounds, in states (pf's `adaptive.start` / `adaptive.end`).
///
/// With more than `start` states, every timeout is multiplied by
/// `(end - states) / (end - start)`; at `end` states and above, everything is expired.
/// Both 0 disables scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adaptive {
    /// Scaling starts above this many states.
    pub start: u32,
    /// Timeouts reach zero at this many states.
    pub end: u32,
}

impl Adaptive {
    /// pf's defaults for a state limit: start at 60% of it, end at 120%.
    pub const fn for_limit(limit: u32) -> Self {
        Adaptive {
            start: ((limit as u64) * 60 / 100) as u32,
            end: ((limit as u64) * 120 / 100) as u32,
        }
    }

    /// No scaling.
    pub const DISABLED: Adaptive = Adaptive { start: 0, end: 0 };

    /// `timeout_ms` scaled for `states` live states.
    #[inline]
    pub fn scale(&self, timeout_ms: u64, states: u64) -> u64 {
        let (start, end) = (u64::from(self.start), u64::from(self.end));
        if end == 0 || start >= end || states <= start {
            timeout_ms
        } else if states >= end {
            0
        } else {
            // timeout_ms <= u32::MAX * 1000 and end - states < 2^32: no overflow in u128.
            (u128::from(timeout_ms) * u128::from(end - states) / u128::from(end - start)) as u64
        }
    }
}

/// The timeout of every class, in seconds (pf's `set timeout`), plus adaptive scaling.
/// `Default` is pf's defaults; `adaptive` defaults to pf's 60%/120% of the table's limit when the
/// table is built with [`Timeouts::adaptive`] left at `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `tcp.first`, 120 s.
    pub tcp_first: u32,
    /// `tcp.opening`, 30 s.
    pub tcp_opening: u32,
    /// `tcp.established`, 86400 s.
    pub tcp_established: u32,
    /// `tcp.closing`, 900 s.
    pub tcp_closing: u32,
    /// `tcp.finwait`, 45 s.
    pub tcp_finwait: u32,
    /// `tcp.closed`, 90 s.
    pub tcp_closed: u32,
    /// `udp.first`, 60 s.
    pub udp_first: u32,
    /// `udp.single`, 30 s.
    pub udp_single: u32,
    /// `udp.multiple`, 60 s.
    pub udp_multiple: u32,
    /// `icmp.first`, 20 s.
    pub icmp_first: u32,
    /// `icmp.error`, 10 s.
    pub icmp_error: u32,
    /// `other.first`, 60 s.
    pub other_first: u32,
    /// `other.single`, 30 s.
    pub other_single: u32,
    /// `other.multiple`, 60 s.
    pub other_multiple: u32,
    /// Adaptive scaling; `None`: pf's default for the table's state limit.
    pub adaptive: Option<Adaptive>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_first: 120,
            tcp_opening: 30,
            tcp_established: 86_400,
            tcp_closing: 900,
            tcp_finwait: 45,
            tcp_closed: 90,
            udp_first: 60,
            udp_single: 30,
            udp_multiple: 60,
            icmp_first: 20,
            icmp_error: 10,
            other_first: 60,
            other_single: 30,
            other_multiple: 60,
            adaptive: None,
        }
    }
}

impl Timeouts {
    /// The unscaled timeout of `class` in milliseconds (0 for [`TimeoutClass::Purge`]).
    #[inline]
    pub fn base_ms(&self, class: TimeoutClass) -> u64 {
        let s = match class {
            TimeoutClass::TcpFirst => self.tcp_first,
            TimeoutClass::TcpOpening => self.tcp_opening,
            TimeoutClass::TcpEstablished => self.tcp_established,
            TimeoutClass::TcpClosing => self.tcp_closing,
            TimeoutClass::TcpFinWait => self.tcp_finwait,
            TimeoutClass::TcpClosed => self.tcp_closed,
            TimeoutClass::UdpFirst => self.udp_first,
            TimeoutClass::UdpSingle => self.udp_single,
            TimeoutClass::UdpMultiple => self.udp_multiple,
            TimeoutClass::IcmpFirst => self.icmp_first,
            TimeoutClass::IcmpError => self.icmp_error,
            TimeoutClass::OtherFirst => self.other_first,
            TimeoutClass::OtherSingle => self.other_single,
            TimeoutClass::OtherMultiple => self.other_multiple,
            TimeoutClass::Purge => 0,
        };
        u64::from(s) * 1000
    }

    /// The deadline of a state last seen at `last` in `class`, with `states` live states and
    /// `adaptive` bounds (pf's `pf_state_expires`).
    #[inline]
    pub fn deadline(
        &self,
        adaptive: &Adaptive,
        class: TimeoutClass,
        last: Millis,
        states: u64,
    ) -> Millis {
        last.saturating_add(adaptive.scale(self.base_ms(class), states))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_class_has_its_number_and_back() {
        for (n, c) in TimeoutClass::ALL.iter().enumerate() {
            assert_eq!(*c as usize, n, "{c:?} is not at its number");
            assert_eq!(TimeoutClass::from_number(n as u8), Some(*c));
        }
        assert_eq!(
            TimeoutClass::from_number(TimeoutClass::ALL.len() as u8),
            None
        );
    }

    use super::*;

    #[test]
    fn clock_is_monotonic() {
        let c = Clock::new();
        let a = c.now_ms();
        std::thread::sleep(std::time::Duration::from_millis(3));
        assert!(c.now_ms() >= a + 3);
    }

    #[test]
    fn pf_defaults() {
        let t = Timeouts::default();
        assert_eq!(t.base_ms(TimeoutClass::TcpFirst), 120_000);
        assert_eq!(t.base_ms(TimeoutClass::TcpEstablished), 86_400_000);
        assert_eq!(t.base_ms(TimeoutClass::IcmpError), 10_000);
        assert_eq!(t.base_ms(TimeoutClass::Purge), 0);
    }

    #[test]
    fn adaptive_scaling_follows_pf() {
        let a = Adaptive::for_limit(100_000);
        assert_eq!(
            a,
            Adaptive {
                start: 60_000,
                end: 120_000
            }
        );
        assert_eq!(a.scale(30_000, 60_000), 30_000);
        // Half way between start and end: half the timeout.
        assert_eq!(a.scale(30_000, 90_000), 15_000);
        // At the limit (100%): a third.
        assert_eq!(a.scale(120_000, 100_000), 40_000);
        assert_eq!(a.scale(30_000, 120_000), 0);
        assert_eq!(Adaptive::DISABLED.scale(30_000, u64::MAX), 30_000);
    }
}
