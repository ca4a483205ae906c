//! Address matching: CIDR prefixes, flattened address sets (aliases) and the `[!]set` of a rule.
//!
//! Control flattens aliases, resolves `<if> net` and `self`, and hands the dataplane plain
//! prefixes. An [`AddrSet`] stores them as sorted, merged, non-overlapping inclusive ranges of
//! `u32`, so membership is one binary search whatever the set was written as (overlapping
//! prefixes, nested aliases, adjacent networks all collapse).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network `addr/len`. The address is masked on construction: `10.1.2.3/8` is
/// stored as `10.0.0.0/8`, so two equal networks compare equal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: Ipv4Addr,
    len: u8,
}

impl Prefix {
    /// `0.0.0.0/0`: every address.
    pub const ANY: Prefix = Prefix {
        addr: Ipv4Addr::UNSPECIFIED,
        len: 0,
    };

    /// The network of `addr` with `len` leading bits; `None` when `len > 32`.
    pub const fn new(addr: Ipv4Addr, len: u8) -> Option<Prefix> {
        if len > 32 {
            return None;
        }
        let masked = addr.to_bits() & mask(len);
        Some(Prefix {
            addr: Ipv4Addr::from_bits(masked),
            len,
        })
    }

    /// The one-address network `addr/32`.
    pub const fn host(addr: Ipv4Addr) -> Prefix {
        Prefix { addr, len: 32 }
    }

    /// The network address (host bits zero).
    pub const fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length, 0..=32. (A prefix is never empty: no `is_empty`.)
    #[allow(clippy::len_without_is_empty)]
    pub const fn len(&self) -> u8 {
        self.len
    }

    /// The netmask as a `u32` (`/24` -> `0xffff_ff00`).
    pub const fn mask(&self) -> u32 {
        mask(self.len)
    }

    /// First address of the network, as a `u32`.
    pub const fn first(&self) -> u32 {
        self.addr.to_bits()
    }

    /// Last address of the network (the broadcast address for `len < 31`), as a `u32`.
    pub const fn last(&self) -> u32 {
        self.addr.to_bits() | !mask(self.len)
    }

    /// Whether `ip` lies inside this network.
    #[inline]
    pub const fn contains(&self, ip: Ipv4Addr) -> bool {
        ip.to_bits() & mask(self.len) == self.addr.to_bits()
    }

    /// The directed broadcast address (the last one; for `/31` and `/32` just the last).
    pub const fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.last())
    }

    /// Whether the two networks share an address (one holds the other).
    pub const fn overlaps(&self, other: &Prefix) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

/// The netmask of a prefix length `len <= 32` (`0` for `/0`, no shift overflow).
#[inline]
pub(crate) const fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixParseError;

impl fmt::Display for PrefixParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected an IPv4 address or network: a.b.c.d or a.b.c.d/len with len <= 32")
    }
}

impl std::error::Error for PrefixParseError {}

impl FromStr for Prefix {
    type Err = PrefixParseError;

    /// `a.b.c.d/len`, or a bare `a.b.c.d` meaning `/32`. Host bits are masked off.
    fn from_str(s: &str) -> Result<Prefix, PrefixParseError> {
        match s.split_once('/') {
            None => s.parse().map(Prefix::host).map_err(|_| PrefixParseError),
            Some((a, l)) => {
                let addr: Ipv4Addr = a.parse().map_err(|_| PrefixParseError)?;
                let len: u8 = l.parse().map_err(|_| PrefixParseError)?;
                Prefix::new(addr, len).ok_or(PrefixParseError)
            }
        }
    }
}

/// A set of IPv4 addresses: sorted, merged, non-overlapping inclusive ranges `[start, end]`.
///
/// Built from any list of prefixes (an alias flattened by control); overlapping and adjacent
/// prefixes are merged, so the ranges are strictly increasing with gaps between them.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct AddrSet {
    ranges: Vec<(u32, u32)>,
}

impl AddrSet {
    /// The empty set (matches nothing).
    pub const fn empty() -> AddrSet {
        AddrSet { ranges: Vec::new() }
    }

    /// The set of all the addresses in `prefixes`.
    pub fn new(prefixes: impl IntoIterator<Item = Prefix>) -> AddrSet {
        AddrSet::from_ranges(prefixes.into_iter().map(|p| (p.first(), p.last())))
    }

    /// The set of all the addresses in the inclusive ranges `ranges` (a range with
    /// `start > end` is empty and ignored).
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u32, u32)>) -> AddrSet {
        let mut v: Vec<(u32, u32)> = ranges.into_iter().filter(|(s, e)| s <= e).collect();
        v.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(v.len());
        for (s, e) in v {
            match merged.last_mut() {
                // Overlapping or adjacent (`last.1 + 1 == s`) ranges merge; `checked_add`
                // because a range ending at 255.255.255.255 has no successor.
                Some(last) if last.1.checked_add(1).is_none_or(|next| s <= next) => {
                    last.1 = last.1.max(e);
                }
                _ => merged.push((s, e)),
            }
        }
        merged.shrink_to_fit();
        AddrSet { ranges: merged }
    }

    /// Whether `ip` is in the set: one binary search over the ranges.
    #[inline]
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        ranges_contain(&self.ranges, ip.to_bits())
    }

    /// The merged ranges, sorted, non-overlapping and non-adjacent.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }

    /// Whether the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The smallest list of CIDR prefixes covering exactly this set, in ascending order
    /// (for display: `tandemctl rules`).
    pub fn prefixes(&self) -> Vec<Prefix> {
        let mut out = Vec::new();
        for &(start, end) in &self.ranges {
            let mut s = u64::from(start);
            let e = u64::from(end);
            while s <= e {
                // The largest block aligned at `s` that does not pass `e`.
                let mut size_bits = if s == 0 {
                    32
                } else {
                    s.trailing_zeros().min(32)
                };
                while size_bits > 0 && s + (1u64 << size_bits) - 1 > e {
                    size_bits -= 1;
                }
                let len = u8::try_from(32 - size_bits).unwrap_or(32);
                let addr = Ipv4Addr::from_bits(u32::try_from(s).unwrap_or(u32::MAX));
                out.push(Prefix { addr, len });
                s += 1u64 << size_bits;
            }
        }
        out
    }
}

/// Binary search of `x` in sorted, non-overlapping inclusive ranges.
#[inline]
pub(crate) fn ranges_contain(ranges: &[(u32, u32)], x: u32) -> bool {
    // Index of the first range starting after `x`; the candidate is the one before it.
    let i = ranges.partition_point(|r| r.0 <= x);
    i > 0 && ranges[i - 1].1 >= x
}

impl fmt::Debug for AddrSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.prefixes()).finish()
    }
}

impl FromIterator<Prefix> for AddrSet {
    fn from_iter<I: IntoIterator<Item = Prefix>>(iter: I) -> AddrSet {
        AddrSet::new(iter)
    }
}

/// The addresses a rule field names: any address, or a set.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub enum Addrs {
    #[default]
    Any,
    Set(AddrSet),
}

/// A rule's source or destination: `any`, a set (alias, network, host), or its negation
/// (`!set`: every address not in the set; `!any` matches nothing).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct AddrMatch {
    pub addrs: Addrs,
    pub invert: bool,
}

impl AddrMatch {
    /// Matches every address.
    pub const ANY: AddrMatch = AddrMatch {
        addrs: Addrs::Any,
        invert: false,
    };

    /// Matches the addresses of `set`.
    pub fn set(set: AddrSet) -> AddrMatch {
        AddrMatch {
            addrs: Addrs::Set(set),
            invert: false,
        }
    }

    /// Matches the addresses of one network.
    pub fn prefix(p: Prefix) -> AddrMatch {
        AddrMatch::set(AddrSet::new([p]))
    }

    /// The same match, negated.
    pub fn inverted(mut self) -> AddrMatch {
        self.invert = !self.invert;
        self
    }

    /// Whether `ip` matches (the reference semantics; the ruleset evaluates a compiled form).
    pub fn matches(&self, ip: Ipv4Addr) -> bool {
        let inside = match &self.addrs {
            Addrs::Any => true,
            Addrs::Set(s) => s.contains(ip),
        };
        inside != self.invert
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_is_masked_and_contains() {
        let n = Prefix::new(ip("10.1.2.3"), 8).unwrap();
        assert_eq!(n, p("10.0.0.0/8"));
        assert_eq!(n.to_string(), "10.0.0.0/8");
        assert!(n.contains(ip("10.255.255.255")));
        assert!(!n.contains(ip("11.0.0.0")));
        assert!(Prefix::ANY.contains(ip("255.255.255.255")));
        assert_eq!(Prefix::new(ip("1.2.3.4"), 33), None);
        assert_eq!(p("1.2.3.4"), Prefix::host(ip("1.2.3.4")));
        assert_eq!(p("192.168.0.0/24").last(), ip("192.168.0.255").to_bits());
        assert!("1.2.3.4/33".parse::<Prefix>().is_err());
        assert!("1.2.3/8".parse::<Prefix>().is_err());
    }

    #[test]
    fn set_merges_overlapping_and_adjacent() {
        let s = AddrSet::new([
            p("10.0.1.0/24"),
            p("10.0.0.0/24"),
            p("10.0.0.5/32"),
            p("192.168.0.0/16"),
            p("192.168.3.0/24"),
        ]);
        assert_eq!(s.ranges().len(), 2);
        assert_eq!(s.prefixes(), vec![p("10.0.0.0/23"), p("192.168.0.0/16")]);
        assert!(s.contains(ip("10.0.1.255")));
        assert!(!s.contains(ip("10.0.2.0")));
        assert!(s.contains(ip("192.168.200.1")));
        assert!(!AddrSet::empty().contains(ip("0.0.0.0")));
        let all = AddrSet::new([p("0.0.0.0/1"), p("128.0.0.0/1")]);
        assert_eq!(all.prefixes(), vec![Prefix::ANY]);
        assert!(all.contains(ip("255.255.255.255")));
    }

    #[test]
    fn addr_match_invert() {
        let m = AddrMatch::prefix(p("10.0.0.0/8"));
        assert!(m.matches(ip("10.1.1.1")));
        assert!(!m.clone().inverted().matches(ip("10.1.1.1")));
        assert!(m.inverted().matches(ip("11.1.1.1")));
        assert!(AddrMatch::ANY.matches(ip("1.1.1.1")));
        assert!(!AddrMatch::ANY.inverted().matches(ip("1.1.1.1")));
    }

    fn arb_prefix() -> impl Strategy<Value = Prefix> {
        // Cluster addresses in a small space so sets overlap and touch often.
        (0u32..4096, 16u8..=32).prop_map(|(a, len)| {
            Prefix::new(
                Ipv4Addr::from_bits(0x0a00_0000 | (a << 8) | (a & 0xff)),
                len,
            )
            .unwrap()
        })
    }

    proptest! {
        #[test]
        fn set_contains_matches_naive(
            prefixes in proptest::collection::vec(arb_prefix(), 0..40),
            probes in proptest::collection::vec(0u32..0x0100_0000, 64),
        ) {
            let set = AddrSet::new(prefixes.iter().copied());
            // Ranges are sorted, non-overlapping and non-adjacent.
            for w in set.ranges().windows(2) {
                prop_assert!(w[0].1 < w[1].0 && w[0].1 + 1 < w[1].0);
            }
            let mut edges = Vec::new();
            for q in &prefixes {
                edges.extend([q.first(), q.last(), q.first().wrapping_sub(1), q.last().wrapping_add(1)]);
            }
            for x in probes.iter().map(|x| 0x0a00_0000 | x).chain(edges) {
                let a = Ipv4Addr::from_bits(x);
                let naive = prefixes.iter().any(|q| q.contains(a));
                prop_assert_eq!(set.contains(a), naive, "{}", a);
            }
            // The CIDR decomposition describes the same set.
            let again = AddrSet::new(set.prefixes());
            prop_assert_eq!(&again, &set);
        }
    }
}
