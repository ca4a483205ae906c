//! Filter rules that never match: an earlier enabled rule on the same interface matches every
//! packet they would (first match wins). Most often a copy left behind with another action, or a
//! narrow pass below a broad block; pfSense accepts both silently.
//!
//! Addresses are compared as the dataplane matches them ([`Config::resolve`]: aliases
//! flattened, `<if> net` and `self` expanded), as sorted, merged ranges, so that "covers" is
//! exact for plain and inverted addresses alike; a warning is never given for a rule that can
//! match a packet its predecessors let by.

use std::collections::HashMap;

use super::super::error::ConfigWarning;
use super::super::model::{Config, FilterRule};
use super::super::types::{Endpoint, PortRange, Protocol};

/// Warns of every enabled rule that an earlier enabled rule covers, naming the first such rule
/// (the one that takes its packets).
pub(super) fn shadowed_rules(file: &str, config: &Config, out: &mut Vec<ConfigWarning>) {
    // Rules per interface, each with its endpoints resolved once. Every pair is looked at: for
    // 10,000 host rules on one interface (50M pairs, none covering another) that is 0.27 s in a
    // release build, the file's reading and validation 0.33 s.
    let mut by_interface: HashMap<&str, Earlier<'_>> = HashMap::new();
    for (i, rule) in config.filter.rules.iter().enumerate() {
        if rule.disabled {
            continue;
        }
        let m = Match::of(config, rule);
        let earlier = by_interface.entry(rule.interface.as_str()).or_default();
        if let Some((j, first)) = earlier.first_covering(&m) {
            let how = if first.rule_match() == m.rule_match() {
                "matches the same packets"
            } else {
                "matches every packet it would"
            };
            out.push(ConfigWarning {
                file: file.to_owned(),
                path: format!("filter.rules[{i}]"),
                message: format!(
                    "never matches: filter.rules[{j}] (rule {}) {how} on interface {} first \
                     (first match wins)",
                    j + 1,
                    rule.interface
                ),
                line: None,
            });
        }
        earlier.push(i, m);
    }
}

/// The enabled rules of one interface so far, with a compact copy of each for the scan.
#[derive(Default)]
struct Earlier<'c> {
    rules: Vec<(usize, Match<'c>)>,
    /// `rules[k].1.quick`, contiguous: the scan's pairs part here, in a few comparisons each.
    quick: Vec<Quick>,
}

impl<'c> Earlier<'c> {
    fn push(&mut self, index: usize, m: Match<'c>) {
        self.quick.push(m.quick);
        self.rules.push((index, m));
    }

    /// The first rule that covers `later`, with its index in the file.
    fn first_covering(&self, later: &Match<'_>) -> Option<(usize, &Match<'c>)> {
        self.quick
            .iter()
            .enumerate()
            .filter(|(_, q)| q.may_cover(&later.quick))
            .map(|(k, _)| (self.rules[k].0, &self.rules[k].1))
            .find(|(_, first)| first.covers(later))
    }
}

/// A rule's protocols, ports and address hulls: a necessary condition of [`Match::covers`] in a
/// few comparisons.
#[derive(Clone, Copy)]
struct Quick {
    /// The protocols matched, one bit each ([`protocol_bits`]).
    protocols: u8,
    /// Source port, destination port, source address, destination address: each one's first
    /// and last value. No port is every port; an address that is not a plain list (any, or
    /// inverted) spans every address, so that it neither parts a pair nor is parted.
    lo: [u32; 4],
    hi: [u32; 4],
}

impl Quick {
    fn of(protocol: Protocol, source: &Side, destination: &Side) -> Quick {
        let ports = |s: &Side| {
            s.port
                .map_or((0, u32::from(u16::MAX)), |p| (p.lo.into(), p.hi.into()))
        };
        let hull = |s: &Side| match &s.addrs {
            Addrs::Only(r) => r.hull().unwrap_or((0, u32::MAX)),
            Addrs::Any | Addrs::Except(_) => (0, u32::MAX),
        };
        let parts = [
            ports(source),
            ports(destination),
            hull(source),
            hull(destination),
        ];
        Quick {
            protocols: protocol_bits(protocol),
            lo: parts.map(|p| p.0),
            hi: parts.map(|p| p.1),
        }
    }

    fn may_cover(&self, later: &Quick) -> bool {
        let mut within = later.protocols & !self.protocols == 0;
        for k in 0..4 {
            within &= self.lo[k] <= later.lo[k] && later.hi[k] <= self.hi[k];
        }
        within
    }
}

/// The protocols a rule's `protocol` matches, one bit each (for [`Quick`]).
fn protocol_bits(p: Protocol) -> u8 {
    match p {
        Protocol::Any => u8::MAX,
        Protocol::Tcp => 1,
        Protocol::Udp => 2,
        Protocol::TcpUdp => 1 | 2,
        Protocol::Icmp => 4,
        Protocol::Carp => 8,
        Protocol::Pfsync => 16,
    }
}

/// What a rule matches, resolved.
struct Match<'c> {
    rule: &'c FilterRule,
    source: Side,
    destination: Side,
    quick: Quick,
}

impl<'c> Match<'c> {
    fn of(config: &Config, rule: &'c FilterRule) -> Match<'c> {
        let source = Side::of(config, &rule.source);
        let destination = Side::of(config, &rule.destination);
        Match {
            rule,
            quick: Quick::of(rule.protocol, &source, &destination),
            source,
            destination,
        }
    }

    /// The rule's match fields as written (for "the same packets").
    fn rule_match(&self) -> (&Protocol, &Endpoint, &Endpoint) {
        (
            &self.rule.protocol,
            &self.rule.source,
            &self.rule.destination,
        )
    }

    /// Whether every packet `later` matches, this matches too. The family is IPv4 for every
    /// rule; the interface is the caller's.
    fn covers(&self, later: &Match<'_>) -> bool {
        protocol_covers(self.rule.protocol, later.rule.protocol)
            && self.source.covers(&later.source)
            && self.destination.covers(&later.destination)
    }
}

fn protocol_covers(first: Protocol, later: Protocol) -> bool {
    first == later
        || first == Protocol::Any
        || (first == Protocol::TcpUdp && matches!(later, Protocol::Tcp | Protocol::Udp))
}

/// One end of a rule: its addresses and ports.
struct Side {
    addrs: Addrs,
    port: Option<PortRange>,
}

impl Side {
    fn of(config: &Config, e: &Endpoint) -> Side {
        let addrs = match config.resolve(&e.addr) {
            None if e.invert => Addrs::Except(Ranges::everything()),
            None => Addrs::Any,
            Some(prefixes) => {
                let ranges = Ranges::of(prefixes.iter().map(|p| (p.first(), p.last())));
                // 0.0.0.0/0, and all but nothing (an empty alias inverted), are "any".
                match e.invert {
                    false if ranges.is_everything() => Addrs::Any,
                    true if ranges.is_empty() => Addrs::Any,
                    false => Addrs::Only(ranges),
                    true => Addrs::Except(ranges),
                }
            }
        };
        Side {
            addrs,
            port: e.port,
        }
    }

    fn covers(&self, later: &Side) -> bool {
        let ports = match (self.port, later.port) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a.lo <= b.lo && b.hi <= a.hi,
        };
        ports && self.addrs.covers(&later.addrs)
    }
}

/// The addresses an endpoint matches.
enum Addrs {
    Any,
    /// These (`invert = false`).
    Only(Ranges),
    /// All but these (`invert = true`).
    Except(Ranges),
}

impl Addrs {
    fn covers(&self, later: &Addrs) -> bool {
        match (self, later) {
            // An endpoint matching nothing is a mistake of its own, not this warning's.
            (_, Addrs::Only(b)) if b.is_empty() => false,
            (_, Addrs::Except(b)) if b.is_everything() => false,
            (Addrs::Any, _) => true,
            (Addrs::Only(a), Addrs::Only(b)) => a.contains_all(b),
            (Addrs::Except(a), Addrs::Only(b)) => a.misses_all(b),
            // All but B inside all but A: A inside B.
            (Addrs::Except(a), Addrs::Except(b)) => b.contains_all(a),
            // A list covers "all but B" only if it is everything, which a list written out
            // never quite is; not worth the exact test.
            (Addrs::Only(_), Addrs::Except(_)) | (_, Addrs::Any) => false,
        }
    }
}

/// Sorted, disjoint, non-adjacent inclusive ranges of IPv4 addresses.
struct Ranges(Vec<(u32, u32)>);

impl Ranges {
    fn everything() -> Ranges {
        Ranges(vec![(0, u32::MAX)])
    }

    fn of(ranges: impl Iterator<Item = (u32, u32)>) -> Ranges {
        let mut v: Vec<(u32, u32)> = ranges.collect();
        v.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        Ranges(merged)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first and last addresses, if any.
    fn hull(&self) -> Option<(u32, u32)> {
        Some((self.0.first()?.0, self.0.last()?.1))
    }

    fn is_everything(&self) -> bool {
        self.0 == [(0, u32::MAX)]
    }

    /// The range that holds `ip`, if any.
    fn holding(&self, ip: u32) -> Option<(u32, u32)> {
        let i = self.0.partition_point(|&(lo, _)| lo <= ip);
        let (lo, hi) = *self.0.get(i.checked_sub(1)?)?;
        (lo <= ip && ip <= hi).then_some((lo, hi))
    }

    /// Whether every address of `other` is in `self` (ranges are merged, so each of `other`'s
    /// lies inside one of `self`'s).
    fn contains_all(&self, other: &Ranges) -> bool {
        other
            .0
            .iter()
            .all(|&(lo, hi)| self.holding(lo).is_some_and(|(_, end)| hi <= end))
    }

    /// Whether no address of `other` is in `self`.
    fn misses_all(&self, other: &Ranges) -> bool {
        other.0.iter().all(|&(lo, hi)| {
            // The first of `self`'s ranges ending at or after `lo` must start after `hi`.
            let i = self.0.partition_point(|&(_, end)| end < lo);
            self.0.get(i).is_none_or(|&(start, _)| start > hi)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(v: &[(u32, u32)]) -> Ranges {
        Ranges::of(v.iter().copied())
    }

    #[test]
    fn ranges_merge_overlapping_and_adjacent() {
        assert_eq!(
            r(&[(10, 20), (0, 5), (6, 8), (15, 30)]).0,
            [(0, 8), (10, 30)]
        );
        assert!(r(&[(0, 10), (11, u32::MAX)]).is_everything());
    }

    #[test]
    fn contains_all_needs_each_range_inside_one() {
        let a = r(&[(0, 9), (20, 29)]);
        assert!(a.contains_all(&r(&[(0, 9)])));
        assert!(a.contains_all(&r(&[(2, 3), (25, 29)])));
        assert!(!a.contains_all(&r(&[(5, 21)])));
        assert!(!a.contains_all(&r(&[(30, 30)])));
        assert!(a.contains_all(&r(&[])));
    }

    #[test]
    fn misses_all_finds_any_overlap() {
        let a = r(&[(10, 19), (30, 39)]);
        assert!(a.misses_all(&r(&[(0, 9), (20, 29), (40, 50)])));
        assert!(!a.misses_all(&r(&[(0, 10)])));
        assert!(!a.misses_all(&r(&[(39, 45)])));
        assert!(!a.misses_all(&r(&[(0, 100)])));
    }

    #[test]
    fn inverted_addresses_cover_as_sets() {
        let only = |v: &[(u32, u32)]| Addrs::Only(r(v));
        let except = |v: &[(u32, u32)]| Addrs::Except(r(v));
        // "not 10-19" covers 30-39 but not 15-35.
        assert!(except(&[(10, 19)]).covers(&only(&[(30, 39)])));
        assert!(!except(&[(10, 19)]).covers(&only(&[(15, 35)])));
        // "not 10-19" covers "not 0-50", not the other way round.
        assert!(except(&[(10, 19)]).covers(&except(&[(0, 50)])));
        assert!(!except(&[(0, 50)]).covers(&except(&[(10, 19)])));
        // A list never covers "all but" one; nothing covers "any" but "any".
        assert!(!only(&[(0, u32::MAX)]).covers(&except(&[(5, 5)])));
        assert!(!except(&[(5, 5)]).covers(&Addrs::Any));
        assert!(Addrs::Any.covers(&except(&[(5, 5)])));
        // An endpoint that matches nothing is not called shadowed.
        assert!(!Addrs::Any.covers(&only(&[])));
    }
}
