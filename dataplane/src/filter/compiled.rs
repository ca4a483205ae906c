//! The evaluation form of one interface's rule list.
//!
//! What is hoisted out of the per-rule loop:
//! - **Protocol.** Rules are split into four lists by the packet protocol class they can match
//!   (TCP, UDP, ICMP, other), keeping their order. A TCP packet never looks at a `udp`, `icmp`
//!   or `carp` rule, and a rule with a port range is only in the TCP and UDP lists, so the loop
//!   has no "is this TCP/UDP?" test. Only the "other" list needs a protocol compare.
//! - **Addresses.** A set that is one range (any, a network, a host, merged aliases that came out
//!   as one block) is tested with one subtraction and one compare, `x - lo <= span`, with no
//!   branch on the kind of match; bigger sets use a binary search in a side table. `!` is an XOR.
//! - **Ports.** No port range is stored as `0..=65535`, so the test is the same range compare.
//! - **Skip steps** (pf's): for each rule and each of destination port, destination and source,
//!   the index of the next rule whose criterion differs. When rule i fails on a criterion, all
//!   the following rules with the same criterion fail too, and the loop jumps over them (a block
//!   of rules about one server, or one port, is skipped in one step).
//!
//! - **A one-dimensional cut** (HiCuts with a single cut): each class's list is cut along the
//!   destination port, the destination or the source address, whichever gives the shortest
//!   longest candidate list, into intervals of the key space inside which every rule's criterion
//!   is constant. A packet binary-searches its interval and scans only the rules that can match
//!   there, in order. 1000 rules on 1000 different ports (or servers) cost a ~11-step search
//!   and a scan of the few rules left (the wildcards and the match), not 1000 tests. The cut is
//!   bounded in memory (`index_cap`); a ruleset it cannot help keeps one list.
//!
//! - **Bit vectors** ([`bits`]) for a class no cut helps (wildcards on every field: two thirds of
//!   a mixed ruleset on any one field), so it never falls back to scanning every rule.
//!
//! An entry is 60 bytes: the loop streams through a dense array, about one cache line per rule.

mod bits;

use super::addr::ranges_contain;
use super::{proto, Addrs, PacketMeta, PortRange, ProtoMatch, Rule};
use crate::filter::AddrMatch;

/// `Entry::proto` value meaning "any protocol of this list".
const PROTO_ANY: u16 = 256;
/// `AddrTest::set` value meaning "a single range, no side table".
const NO_SET: u32 = u32::MAX;

/// Packet protocol classes, each with its own rule list.
const CLASS_TCP: usize = 0;
const CLASS_UDP: usize = 1;
const CLASS_ICMP: usize = 2;
const CLASS_OTHER: usize = 3;

#[inline]
fn class_of(p: u8) -> usize {
    match p {
        proto::TCP => CLASS_TCP,
        proto::UDP => CLASS_UDP,
        proto::ICMP => CLASS_ICMP,
        _ => CLASS_OTHER,
    }
}

/// One address criterion: a single inclusive range `[lo, lo + span]`, or a set in the side
/// table; matches when "inside" differs from `invert`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct AddrTest {
    lo: u32,
    span: u32,
    set: u32,
    invert: bool,
}

impl AddrTest {
    #[inline]
    fn test(&self, x: u32, sets: &[Box<[(u32, u32)]>]) -> bool {
        let inside = if self.set == NO_SET {
            x.wrapping_sub(self.lo) <= self.span
        } else {
            sets.get(self.set as usize)
                .is_some_and(|r| ranges_contain(r, x))
        };
        inside != self.invert
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    dport_lo: u16,
    dport_span: u16,
    sport_lo: u16,
    sport_span: u16,
    /// The IP protocol required, or [`PROTO_ANY`].
    proto: u16,
    /// Index of the rule in the interface's list.
    index: u32,
    skip_dport: u32,
    skip_dst: u32,
    skip_src: u32,
    dst: AddrTest,
    src: AddrTest,
}

/// The compiled rule list of one interface.
/// The packet field a class is indexed on.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
enum Key {
    #[default]
    Dport,
    Dst,
    Src,
}

/// One protocol class: its rules cut into candidate lists along one packet field.
///
/// The key space (a port or an address as `u32`) is cut at every range boundary of the key
/// criterion of the rules, into intervals inside which each rule's criterion is either always
/// true or always false. Each interval gets the list of rules that can match there, in order,
/// with their own skip steps. Intervals with the same list share it.
#[derive(Debug, Default)]
struct ClassIndex {
    /// The bit-vector index, when the class uses one instead of the cut.
    bits: Option<bits::BitIndex>,
    key: Key,
    /// Start of each interval, ascending; `bounds[0] == 0`.
    bounds: Box<[u32]>,
    /// List of each interval, an index into `lists`.
    list_of: Box<[u32]>,
    lists: Box<[Box<[Entry]>]>,
}

impl ClassIndex {
    /// Rule entries of the class that can match a packet whose key is `key`.
    #[inline]
    fn candidates(&self, key: u32) -> &[Entry] {
        // `bounds[0] == 0`, so at least one bound is <= key.
        let k = self.bounds.partition_point(|&b| b <= key).saturating_sub(1);
        self.list_of
            .get(k)
            .and_then(|&l| self.lists.get(l as usize))
            .map_or(&[], |l| &l[..])
    }
}

#[derive(Debug, Default)]
pub(super) struct CompiledIf {
    classes: [ClassIndex; 4],
    /// Address sets of more than one range, shared by all classes.
    sets: Vec<Box<[(u32, u32)]>>,
}

impl CompiledIf {
    pub(super) fn build(rules: &[Rule]) -> CompiledIf {
        let mut c = CompiledIf::default();
        let mut lists: [Vec<Entry>; 4] = Default::default();
        for (index, rule) in rules.iter().enumerate() {
            let Ok(index) = u32::try_from(index) else {
                break;
            };
            let (Some(dport), Some(sport)) = (ports(rule.dst_port), ports(rule.src_port)) else {
                continue; // an empty port range matches nothing
            };
            let src = c.addr_test(&rule.src);
            let dst = c.addr_test(&rule.dst);
            let entry = |proto: u16| Entry {
                dport_lo: dport.0,
                dport_span: dport.1,
                sport_lo: sport.0,
                sport_span: sport.1,
                proto,
                index,
                skip_dport: 0,
                skip_dst: 0,
                skip_src: 0,
                dst,
                src,
            };
            let l4_only = rule.src_port.is_some() || rule.dst_port.is_some();
            let mut classes: [bool; 4] = [false; 4];
            let mut other_proto = PROTO_ANY;
            match normalize(rule.proto) {
                ProtoMatch::Any => {
                    classes = [true, true, !l4_only, !l4_only];
                }
                ProtoMatch::Tcp => classes[CLASS_TCP] = true,
                ProtoMatch::Udp => classes[CLASS_UDP] = true,
                ProtoMatch::TcpUdp => {
                    classes[CLASS_TCP] = true;
                    classes[CLASS_UDP] = true;
                }
                ProtoMatch::Icmp => classes[CLASS_ICMP] = !l4_only,
                ProtoMatch::Proto(n) => {
                    classes[CLASS_OTHER] = !l4_only;
                    other_proto = u16::from(n);
                }
            }
            for (k, on) in classes.into_iter().enumerate() {
                if on {
                    let p = if k == CLASS_OTHER {
                        other_proto
                    } else {
                        PROTO_ANY
                    };
                    lists[k].push(entry(p));
                }
            }
        }
        for (k, list) in lists.into_iter().enumerate() {
            c.classes[k] = ClassIndex::build(list, &c.sets);
        }
        c
    }

    fn addr_test(&mut self, m: &AddrMatch) -> AddrTest {
        let (lo, span, set) = match &m.addrs {
            Addrs::Any => (0, u32::MAX, NO_SET),
            Addrs::Set(s) => match s.ranges() {
                // The empty set: a range that contains nothing is impossible with
                // `x - lo <= span`, so it goes to the side table (where it is empty).
                [] | [_, _, ..] => {
                    let r: Box<[(u32, u32)]> = s.ranges().into();
                    let set = match self.sets.iter().position(|x| *x == r) {
                        Some(i) => i,
                        None => {
                            self.sets.push(r);
                            self.sets.len() - 1
                        }
                    };
                    (0, 0, u32::try_from(set).unwrap_or(NO_SET))
                }
                [(lo, hi)] => (*lo, hi - lo, NO_SET),
            },
        };
        AddrTest {
            lo,
            span,
            set,
            invert: m.invert,
        }
    }

    /// Index (in the interface's list) of the first rule matching `meta`.
    #[inline]
    pub(super) fn first_match(&self, meta: &PacketMeta) -> Option<u32> {
        let class = &self.classes[class_of(meta.proto)];
        let (src, dst) = (meta.src.to_bits(), meta.dst.to_bits());
        if let Some(b) = &class.bits {
            // Destination port and both addresses are settled by the bits.
            return b.first(meta.dport, dst, src, |e| {
                meta.sport.wrapping_sub(e.sport_lo) <= e.sport_span
                    && (e.proto == PROTO_ANY || e.proto == u16::from(meta.proto))
            });
        }
        let list = class.candidates(match class.key {
            Key::Dport => u32::from(meta.dport),
            Key::Dst => dst,
            Key::Src => src,
        });
        let sets = &self.sets[..];
        let mut i = 0usize;
        while let Some(e) = list.get(i) {
            if meta.dport.wrapping_sub(e.dport_lo) > e.dport_span {
                i = e.skip_dport as usize;
            } else if !e.dst.test(dst, sets) {
                i = e.skip_dst as usize;
            } else if !e.src.test(src, sets) {
                i = e.skip_src as usize;
            } else if meta.sport.wrapping_sub(e.sport_lo) > e.sport_span
                || (e.proto != PROTO_ANY && e.proto != u16::from(meta.proto))
            {
                i += 1;
            } else {
                return Some(e.index);
            }
        }
        None
    }
}

/// The longest candidate list a cut may leave before the class takes bit vectors instead: a
/// scan of that many 60-byte entries costs about what three binary searches and a row of ANDs do.
const BITS_BEYOND: usize = 32;

/// Most candidate entries a class index may hold, all intervals together, for `n` rules: past
/// that, cutting along that field costs more memory than it saves time.
fn index_cap(n: usize) -> usize {
    16 * n + 1024
}

impl ClassIndex {
    /// Cuts `entries` (one class's rules, in order) along the field that gives the shortest
    /// longest candidate list (then the smallest index); one list of everything if no cut fits
    /// [`index_cap`] or helps.
    fn build(entries: Vec<Entry>, sets: &[Box<[(u32, u32)]>]) -> ClassIndex {
        let n = entries.len();
        let mut best: Option<(Key, Cut)> = None;
        for key in [Key::Dport, Key::Dst, Key::Src] {
            let ranges: Vec<Vec<(u32, u32)>> =
                entries.iter().map(|e| key_ranges(e, key, sets)).collect();
            let Some(cut) = Cut::new(&ranges, index_cap(n)) else {
                continue;
            };
            let better = best
                .as_ref()
                .is_none_or(|(_, b)| (cut.longest, cut.total) < (b.longest, b.total));
            if better {
                best = Some((key, cut));
            }
        }
        // A cut that still leaves long lists (or none within the cap): bit vectors instead.
        if best.as_ref().is_none_or(|(_, c)| c.longest > BITS_BEYOND) && n > BITS_BEYOND {
            if let Some(b) = bits::BitIndex::build(entries.clone(), sets) {
                return ClassIndex {
                    bits: Some(b),
                    ..ClassIndex::default()
                };
            }
        }
        let (key, cut) = match best {
            Some((key, cut)) if cut.longest < n => (key, cut),
            // Nothing to gain: one interval, every entry.
            _ => (
                Key::Dport,
                Cut {
                    bounds: vec![0],
                    cands: vec![(0..n).collect()],
                    longest: n,
                    total: n,
                },
            ),
        };
        // Share identical lists (adjacent intervals with the same list are already merged).
        let mut ids: std::collections::HashMap<&[usize], u32> = std::collections::HashMap::new();
        let mut lists: Vec<Box<[Entry]>> = Vec::new();
        let mut list_of = Vec::with_capacity(cut.cands.len());
        for cand in &cut.cands {
            let id = *ids.entry(cand.as_slice()).or_insert_with(|| {
                let mut l: Vec<Entry> = cand.iter().map(|&i| entries[i]).collect();
                skip_steps(&mut l);
                lists.push(l.into_boxed_slice());
                u32::try_from(lists.len() - 1).unwrap_or(u32::MAX)
            });
            list_of.push(id);
        }
        ClassIndex {
            bits: None,
            key,
            bounds: cut.bounds.into_boxed_slice(),
            list_of: list_of.into_boxed_slice(),
            lists: lists.into_boxed_slice(),
        }
    }
}

/// A cut of the key space into intervals, with the candidate entries of each.
#[derive(Debug)]
struct Cut {
    bounds: Vec<u32>,
    cands: Vec<Vec<usize>>,
    longest: usize,
    total: usize,
}

impl Cut {
    /// `ranges[i]`: the disjoint key ranges where entry i's criterion holds. `None` when the
    /// candidate lists would hold more than `cap` entries.
    fn new(ranges: &[Vec<(u32, u32)>], cap: usize) -> Option<Cut> {
        let pts = cut_points(ranges);
        let mut cands: Vec<Vec<usize>> = vec![Vec::new(); pts.len()];
        let mut total = 0usize;
        for (i, rs) in ranges.iter().enumerate() {
            for &(a, b) in rs {
                // Every range starts on a point and ends just before one (or at u32::MAX).
                let k0 = pts.partition_point(|&p| p < a);
                let k1 = pts.partition_point(|&p| p <= b);
                total += k1.saturating_sub(k0);
                if total > cap {
                    return None;
                }
                for c in &mut cands[k0..k1] {
                    c.push(i);
                }
            }
        }
        // Merge adjacent intervals with the same candidates.
        let mut bounds = Vec::with_capacity(pts.len());
        let mut merged: Vec<Vec<usize>> = Vec::with_capacity(pts.len());
        for (p, c) in pts.into_iter().zip(cands) {
            if merged.last() != Some(&c) {
                bounds.push(p);
                merged.push(c);
            }
        }
        let longest = merged.iter().map(Vec::len).max().unwrap_or(0);
        let total = merged.iter().map(Vec::len).sum();
        Some(Cut {
            bounds,
            cands: merged,
            longest,
            total,
        })
    }
}

/// The points that cut the key space so that every range starts on one and ends just before
/// one (or at `u32::MAX`): sorted, distinct, the first 0.
fn cut_points(ranges: &[Vec<(u32, u32)>]) -> Vec<u32> {
    let mut pts: Vec<u32> = vec![0];
    for &(a, b) in ranges.iter().flatten() {
        pts.push(a);
        if let Some(next) = b.checked_add(1) {
            pts.push(next);
        }
    }
    pts.sort_unstable();
    pts.dedup();
    pts
}

/// Where entry `e`'s criterion on `key` holds: sorted disjoint inclusive ranges.
fn key_ranges(e: &Entry, key: Key, sets: &[Box<[(u32, u32)]>]) -> Vec<(u32, u32)> {
    let t = match key {
        Key::Dport => {
            let lo = u32::from(e.dport_lo);
            return vec![(lo, lo + u32::from(e.dport_span))];
        }
        Key::Dst => &e.dst,
        Key::Src => &e.src,
    };
    let inside: Vec<(u32, u32)> = if t.set == NO_SET {
        vec![(t.lo, t.lo.saturating_add(t.span))]
    } else {
        sets.get(t.set as usize)
            .map_or_else(Vec::new, |r| r.to_vec())
    };
    if t.invert {
        complement(&inside)
    } else {
        inside
    }
}

/// The complement of sorted disjoint inclusive ranges within `0..=u32::MAX`.
fn complement(ranges: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    let mut next: Option<u32> = Some(0); // first address not yet covered, None past the end
    for &(a, b) in ranges {
        if let Some(n) = next {
            if a > n {
                out.push((n, a - 1));
            }
        }
        next = b.checked_add(1);
    }
    if let Some(n) = next {
        out.push((n, u32::MAX));
    }
    out
}

/// `(lo, span)` of an optional port range; `None` for an empty range (lo > hi).
fn ports(r: Option<PortRange>) -> Option<(u16, u16)> {
    match r {
        None => Some((0, u16::MAX)),
        Some(r) if r.lo <= r.hi => Some((r.lo, r.hi - r.lo)),
        Some(_) => None,
    }
}

fn normalize(p: ProtoMatch) -> ProtoMatch {
    match p {
        ProtoMatch::Proto(proto::TCP) => ProtoMatch::Tcp,
        ProtoMatch::Proto(proto::UDP) => ProtoMatch::Udp,
        ProtoMatch::Proto(proto::ICMP) => ProtoMatch::Icmp,
        p => p,
    }
}

/// Fills the skip steps: for each criterion, the index of the next entry where it differs.
fn skip_steps(list: &mut [Entry]) {
    let n = u32::try_from(list.len()).unwrap_or(u32::MAX);
    let mut next = n;
    for i in (0..list.len()).rev() {
        let (skip_dport, skip_dst, skip_src) = match list.get(i + 1) {
            None => (n, n, n),
            Some(b) => {
                let a = &list[i];
                let step = |same: bool, skip: u32| if same { skip } else { next };
                (
                    step(
                        (a.dport_lo, a.dport_span) == (b.dport_lo, b.dport_span),
                        b.skip_dport,
                    ),
                    step(a.dst == b.dst, b.skip_dst),
                    step(a.src == b.src, b.skip_src),
                )
            }
        };
        let e = &mut list[i];
        e.skip_dport = skip_dport;
        e.skip_dst = skip_dst;
        e.skip_src = skip_src;
        next = u32::try_from(i).unwrap_or(u32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::filter::{Action, AddrSet, PortRange, Prefix};
    use std::net::Ipv4Addr;

    fn meta(dst: u32, dport: u16) -> PacketMeta {
        PacketMeta {
            in_if: 0,
            proto: proto::TCP,
            src: Ipv4Addr::new(192, 168, 0, 5),
            dst: Ipv4Addr::from_bits(dst),
            sport: 40000,
            dport,
        }
    }

    #[test]
    fn complement_of_ranges() {
        assert_eq!(complement(&[]), vec![(0, u32::MAX)]);
        assert_eq!(complement(&[(0, u32::MAX)]), vec![]);
        assert_eq!(
            complement(&[(0, 9), (20, 29)]),
            vec![(10, 19), (30, u32::MAX)]
        );
        assert_eq!(complement(&[(5, u32::MAX)]), vec![(0, 4)]);
    }

    #[test]
    fn cut_by_port_leaves_few_candidates() {
        let mut rules: Vec<Rule> = (0..999u16)
            .map(|i| {
                Rule::new(u32::from(i), Action::Pass).with_dst_port(PortRange::single(1000 + i))
            })
            .collect();
        rules.push(Rule::new(999, Action::Block));
        let c = CompiledIf::build(&rules);
        let tcp = &c.classes[CLASS_TCP];
        assert_eq!(tcp.key, Key::Dport);
        assert_eq!(tcp.candidates(1500).len(), 2);
        assert_eq!(tcp.candidates(80).len(), 1);
        assert_eq!(c.first_match(&meta(0x0a00_0001, 1998)), Some(998));
        assert_eq!(c.first_match(&meta(0x0a00_0001, 80)), Some(999));
        // ICMP has only the last rule.
        assert_eq!(c.classes[CLASS_ICMP].candidates(0).len(), 1);
    }

    #[test]
    fn cut_by_destination_with_sets_and_inversion() {
        let mut rules: Vec<Rule> = (0..500u32)
            .map(|i| {
                let host = Prefix::host(Ipv4Addr::from_bits(0x0a00_0000 + 2 * i));
                Rule::new(i, Action::Pass).with_dst(AddrMatch::set(AddrSet::new([host])))
            })
            .collect();
        let set = AddrSet::new(["172.16.0.0/16", "172.18.0.0/16"].map(|p| p.parse().unwrap()));
        rules.push(Rule::new(500, Action::Pass).with_dst(AddrMatch::set(set.clone())));
        rules.push(Rule::new(501, Action::Pass).with_dst(AddrMatch::set(set).inverted()));
        let c = CompiledIf::build(&rules);
        let tcp = &c.classes[CLASS_TCP];
        assert_eq!(tcp.key, Key::Dst);
        assert_eq!(tcp.candidates(0x0a00_0000 + 998).len(), 2); // the host, and rule 501
        assert_eq!(c.first_match(&meta(0x0a00_0000 + 998, 1)), Some(499));
        assert_eq!(c.first_match(&meta(0x0a00_0000 + 999, 1)), Some(501));
        assert_eq!(c.first_match(&meta(0xac12_0101, 1)), Some(500));
        assert_eq!(c.first_match(&meta(0xac11_0101, 1)), Some(501));
    }

    #[test]
    fn few_rules_keep_one_list_and_many_wildcards_take_bit_vectors() {
        let rules: Vec<Rule> = (0..20u32).map(|i| Rule::new(i, Action::Pass)).collect();
        let c = CompiledIf::build(&rules);
        assert!(c.classes[CLASS_TCP].bits.is_none());
        assert_eq!(c.classes[CLASS_TCP].bounds.len(), 1);
        assert_eq!(c.first_match(&meta(1, 1)), Some(0));
        let rules: Vec<Rule> = (0..100u32).map(|i| Rule::new(i, Action::Pass)).collect();
        let c = CompiledIf::build(&rules);
        assert!(c.classes[CLASS_TCP].bits.is_some());
        assert_eq!(c.first_match(&meta(1, 1)), Some(0));
    }

    /// A third of the rules on each of destination host, destination port and source host
    /// (the benchmark's `rules_1000_mixed`): no cut fits, the bits answer.
    #[test]
    fn a_mixed_ruleset_takes_bit_vectors_and_finds_the_first_match() {
        let host =
            |base: u32, i: u32| AddrMatch::prefix(Prefix::host(Ipv4Addr::from_bits(base + i)));
        let rules: Vec<Rule> = (0..999u32)
            .map(|i| {
                let r = Rule::new(i, Action::Pass).with_proto(ProtoMatch::Tcp);
                match i % 3 {
                    0 => r.with_dst(host(0xc612_0000, i)),
                    1 => r.with_dst_port(PortRange::single(20_000 + i as u16)),
                    _ => r
                        .with_src(host(0x0a0a_0000, i))
                        .with_dst_port(PortRange::new(0, 1023)),
                }
            })
            .chain([Rule::new(999, Action::Block).with_proto(ProtoMatch::Tcp)])
            .collect();
        let c = CompiledIf::build(&rules);
        assert!(c.classes[CLASS_TCP].bits.is_some());
        // Nothing specific matches: the catch-all.
        assert_eq!(c.first_match(&meta(0x0b00_0001, 80)), Some(999));
        // A destination host rule, a port rule, a source rule with its port range.
        assert_eq!(c.first_match(&meta(0xc612_0000 + 300, 80)), Some(300));
        assert_eq!(c.first_match(&meta(0x0b00_0001, 20_000 + 301)), Some(301));
        let mut m = meta(0x0b00_0001, 1000);
        m.src = Ipv4Addr::from_bits(0x0a0a_0000 + 302);
        assert_eq!(c.first_match(&m), Some(302));
        m.dport = 2000; // outside the source rule's ports
        assert_eq!(c.first_match(&m), Some(999));
        // UDP has no rule at all.
        m.proto = proto::UDP;
        assert_eq!(c.first_match(&m), None);
    }

    #[test]
    fn entry_fits_a_cache_line() {
        assert!(
            std::mem::size_of::<Entry>() <= 64,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }
}
