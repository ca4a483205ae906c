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
//! An entry is 60 bytes: the loop streams through a dense array, about one cache line per rule.

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
#[derive(Debug, Default)]
pub(super) struct CompiledIf {
    classes: [Vec<Entry>; 4],
    /// Address sets of more than one range, shared by all classes.
    sets: Vec<Box<[(u32, u32)]>>,
}

impl CompiledIf {
    pub(super) fn build(rules: &[Rule]) -> CompiledIf {
        let mut c = CompiledIf::default();
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
                    c.classes[k].push(entry(p));
                }
            }
        }
        for list in &mut c.classes {
            list.shrink_to_fit();
            skip_steps(list);
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
        let list = &self.classes[class_of(meta.proto)];
        let (src, dst) = (meta.src.to_bits(), meta.dst.to_bits());
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

    #[test]
    fn entry_fits_a_cache_line() {
        assert!(
            std::mem::size_of::<Entry>() <= 64,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }
}
