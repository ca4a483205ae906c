//! Longest-prefix-match routing.
//!
//! Control compiles connected networks (one per interface address), static routes and the
//! default route into one [`RouteTable`]; like the ruleset it is immutable and swapped whole.
//!
//! Structure: one hash map per prefix length that is present, keyed by the masked network,
//! probed from the longest length down; the default route sits in its own slot.
//!
//! Why this and not a trie or DIR-24-8: a firewall like tandem's holds tens to a few thousand
//! routes with only a handful of distinct lengths (the connected /24s, a few statics, /32 hosts,
//! the default). A lookup costs one mask and one hash probe per *distinct length present*, most
//! specific first, stopping at the first hit: for the usual 2-4 lengths that is 2-4 probes into
//! small, cache-resident maps, no pointer chasing, and the build is trivial and cheap enough to
//! redo at every configuration apply. A sorted array per length would do the same with a binary
//! search per length (log n probes instead of ~1). DIR-24-8 (a 32 MiB first-level table) is the
//! answer for full internet tables at tens of Mpps, which this is not.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::filter::Prefix;
use crate::memo::Memo;
use crate::IfIndex;

/// One route: packets to `prefix` leave by `out_if`, to `gateway` or, for a connected network
/// (`gateway: None`), to the destination itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Route {
    pub prefix: Prefix,
    pub out_if: IfIndex,
    pub gateway: Option<Ipv4Addr>,
}

impl Route {
    /// The address to resolve (ARP) for a packet to `dst` using this route.
    #[inline]
    pub fn next_hop(&self, dst: Ipv4Addr) -> Ipv4Addr {
        self.gateway.unwrap_or(dst)
    }
}

/// Where a packet goes: out of `out_if`, to the neighbour `addr`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NextHop {
    pub out_if: IfIndex,
    pub addr: Ipv4Addr,
}

/// The routes of one prefix length: masked network -> index into `RouteTable::routes`.
#[derive(Debug)]
struct LengthTable {
    mask: u32,
    nets: HashMap<u32, u32, ahash::RandomState>,
}

/// Identities of route tables, unique in the process: a [`RouteMemo`] knows by it whether its
/// copies came from the table it is asked about (an address could be reused by the next table).
static NEXT_TABLE_ID: AtomicU64 = AtomicU64::new(1);

/// An immutable longest-prefix-match table.
#[derive(Debug)]
pub struct RouteTable {
    /// Unique in the process, never 0 (a fresh [`RouteMemo`]'s "no table").
    id: u64,
    routes: Vec<Route>,
    /// One table per length present except /0, longest first.
    by_len: Vec<LengthTable>,
    /// Index of the default route (0.0.0.0/0), if any.
    default: Option<u32>,
}

impl RouteTable {
    /// Builds the table. When the same prefix appears twice the first one wins (control lists
    /// connected networks first, so a static route cannot shadow a connected one).
    pub fn new(routes: Vec<Route>) -> RouteTable {
        let mut by_len: Vec<LengthTable> = Vec::new();
        let mut default = None;
        for (i, r) in routes.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            let len = r.prefix.len();
            if len == 0 {
                default.get_or_insert(i);
                continue;
            }
            let mask = r.prefix.mask();
            let table = match by_len.iter().position(|t| t.mask == mask) {
                Some(k) => &mut by_len[k],
                None => {
                    by_len.push(LengthTable {
                        mask,
                        nets: HashMap::default(),
                    });
                    let last = by_len.len() - 1;
                    &mut by_len[last]
                }
            };
            table.nets.entry(r.prefix.first()).or_insert(i);
        }
        // Longest first: masks of longer prefixes are numerically larger.
        by_len.sort_unstable_by_key(|t| std::cmp::Reverse(t.mask));
        for t in &mut by_len {
            t.nets.shrink_to_fit();
        }
        RouteTable {
            id: NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed),
            routes,
            by_len,
            default,
        }
    }

    /// The most specific route to `dst`, if any.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<&Route> {
        let x = dst.to_bits();
        let index = self
            .by_len
            .iter()
            .find_map(|t| t.nets.get(&(x & t.mask)).copied())
            .or(self.default)?;
        self.routes.get(index as usize)
    }

    /// The interface and neighbour for a packet to `dst`: the route's gateway, or `dst` itself
    /// on a connected network.
    #[inline]
    pub fn next_hop(&self, dst: Ipv4Addr) -> Option<NextHop> {
        self.lookup(dst).map(|r| NextHop {
            out_if: r.out_if,
            addr: r.next_hop(dst),
        })
    }

    /// All routes, in the order given.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl Default for RouteTable {
    fn default() -> RouteTable {
        RouteTable::new(Vec::new())
    }
}

/// A worker's memo of recent [`RouteTable::next_hop`] answers, emptied when asked about another
/// table (a configuration apply swaps the table whole). A hit is one multiply, one load and one
/// compare instead of a hash probe per prefix length (about a tenth of an established packet's
/// instructions went to the route).
#[derive(Debug)]
pub struct RouteMemo(Memo<Ipv4Addr, NextHop>);

impl RouteMemo {
    /// A memo of `slots` entries (rounded up to a power of two, at least 1).
    pub fn new(slots: usize) -> RouteMemo {
        RouteMemo(Memo::new(slots))
    }

    /// [`RouteTable::next_hop`] through the memo.
    #[inline]
    pub fn next_hop(&mut self, table: &RouteTable, dst: Ipv4Addr) -> Option<NextHop> {
        self.0
            .get(table.id, dst, dst.to_bits(), || table.next_hop(dst))
    }

    /// The memo's copy of `next_hop(dst)` in `table`, if it holds one; no lookup, no change.
    #[inline]
    pub fn peek(&self, table: &RouteTable, dst: Ipv4Addr) -> Option<NextHop> {
        self.0.peek(table.id, dst, dst.to_bits())
    }
}

impl Default for RouteMemo {
    /// 256 destinations (2.5 KiB).
    fn default() -> RouteMemo {
        RouteMemo::new(256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LAN: IfIndex = 0;
    const WAN: IfIndex = 1;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn route(p: &str, out_if: IfIndex, gw: Option<&str>) -> Route {
        Route {
            prefix: p.parse().unwrap(),
            out_if,
            gateway: gw.map(ip),
        }
    }

    #[test]
    fn memo_answers_like_the_table_and_follows_a_new_table() {
        let mut memo = RouteMemo::new(4);
        let old = lab();
        // More destinations than slots, twice: hits, misses and evictions all answer right.
        for round in 0..2 {
            for d in [
                "192.168.0.5",
                "172.25.46.9",
                "10.20.1.1",
                "10.20.30.40",
                "8.8.8.8",
                "1.2.3.4",
            ] {
                assert_eq!(
                    memo.next_hop(&old, ip(d)),
                    old.next_hop(ip(d)),
                    "{d}, round {round}"
                );
            }
        }
        // A new table (the default now via the LAN): nothing of the old one is served.
        let new = RouteTable::new(vec![
            route("192.168.0.0/24", LAN, None),
            route("0.0.0.0/0", LAN, Some("192.168.0.254")),
        ]);
        for d in ["8.8.8.8", "1.2.3.4", "172.25.46.9"] {
            assert_eq!(memo.next_hop(&new, ip(d)), new.next_hop(ip(d)), "{d}");
            assert_eq!(memo.next_hop(&new, ip(d)).map(|h| h.out_if), Some(LAN));
        }
        // No route: none, and not remembered as one.
        let empty = RouteTable::default();
        assert_eq!(memo.next_hop(&empty, ip("8.8.8.8")), None);
        assert_eq!(
            memo.next_hop(&new, ip("8.8.8.8")),
            new.next_hop(ip("8.8.8.8"))
        );
    }

    proptest! {
        /// Any sequence of lookups through a small memo answers as the table does.
        #[test]
        fn memo_agrees_with_the_table(dsts in proptest::collection::vec(any::<u32>(), 1..200)) {
            let table = lab();
            let mut memo = RouteMemo::new(8);
            for d in dsts {
                // Half the addresses near the lab's routes, so hits and evictions both happen.
                let d = Ipv4Addr::from_bits(if d & 1 == 0 { 0x0a14_1e00 | (d >> 28) } else { d });
                prop_assert_eq!(memo.next_hop(&table, d), table.next_hop(d));
            }
        }
    }

    fn lab() -> RouteTable {
        RouteTable::new(vec![
            route("192.168.0.0/24", LAN, None),
            route("172.25.46.0/24", WAN, None),
            route("10.20.0.0/16", LAN, Some("192.168.0.254")),
            route("10.20.30.40/32", WAN, Some("172.25.46.2")),
            route("0.0.0.0/0", WAN, Some("172.25.46.1")),
        ])
    }

    #[test]
    fn connected_static_and_default() {
        let t = lab();
        assert_eq!(t.len(), 5);
        let hop = |d: &str| t.next_hop(ip(d)).map(|h| (h.out_if, h.addr));
        // Connected: the destination itself is the next hop.
        assert_eq!(hop("192.168.0.100"), Some((LAN, ip("192.168.0.100"))));
        assert_eq!(hop("172.25.46.1"), Some((WAN, ip("172.25.46.1"))));
        // Static, and a more specific host route inside it.
        assert_eq!(hop("10.20.1.1"), Some((LAN, ip("192.168.0.254"))));
        assert_eq!(hop("10.20.30.40"), Some((WAN, ip("172.25.46.2"))));
        assert_eq!(hop("10.20.30.41"), Some((LAN, ip("192.168.0.254"))));
        // Default.
        assert_eq!(hop("8.8.8.8"), Some((WAN, ip("172.25.46.1"))));
        assert_eq!(t.lookup(ip("8.8.8.8")).map(|r| r.prefix), Some(Prefix::ANY));
    }

    #[test]
    fn no_default_no_route() {
        let t = RouteTable::new(vec![route("192.168.0.0/24", LAN, None)]);
        assert_eq!(t.lookup(ip("8.8.8.8")), None);
        assert_eq!(RouteTable::default().next_hop(ip("1.1.1.1")), None);
        assert!(RouteTable::default().is_empty());
    }

    #[test]
    fn duplicate_prefix_first_wins() {
        let t = RouteTable::new(vec![
            route("192.168.0.0/24", LAN, None),
            route("192.168.0.0/24", WAN, Some("172.25.46.1")),
            route("0.0.0.0/0", LAN, Some("192.168.0.1")),
            route("0.0.0.0/0", WAN, Some("172.25.46.1")),
        ]);
        assert_eq!(t.lookup(ip("192.168.0.9")).map(|r| r.out_if), Some(LAN));
        assert_eq!(t.lookup(ip("9.9.9.9")).map(|r| r.out_if), Some(LAN));
    }

    fn naive(routes: &[Route], dst: Ipv4Addr) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, r) in routes.iter().enumerate() {
            if r.prefix.contains(dst)
                && best.is_none_or(|b| r.prefix.len() > routes[b].prefix.len())
            {
                best = Some(i);
            }
        }
        best
    }

    proptest! {
        #[test]
        fn lookup_matches_naive_longest_prefix(
            specs in proptest::collection::vec((0u32..64, prop::sample::select(vec![0u8, 8, 16, 20, 24, 26, 30, 31, 32]), 0u8..4), 0..60),
            probes in proptest::collection::vec(0u32..0x4000, 64),
        ) {
            // Addresses clustered in 10.0.0.0/18 so that prefixes nest and collide.
            let routes: Vec<Route> = specs
                .iter()
                .map(|&(a, len, ifx)| Route {
                    prefix: Prefix::new(Ipv4Addr::from_bits(0x0a00_0000 | (a << 8) | (a * 37 % 256)), len).unwrap(),
                    out_if: ifx,
                    gateway: None,
                })
                .collect();
            let t = RouteTable::new(routes.clone());
            let mut targets: Vec<u32> = probes.iter().map(|p| 0x0a00_0000 | p).collect();
            targets.extend(routes.iter().flat_map(|r| [r.prefix.first(), r.prefix.last(), r.prefix.last().wrapping_add(1)]));
            targets.push(0x0b00_0000);
            for x in targets {
                let d = Ipv4Addr::from_bits(x);
                let want = naive(&routes, d).map(|i| &routes[i]);
                prop_assert_eq!(t.lookup(d), want, "{}", d);
                prop_assert_eq!(t.next_hop(d).map(|h| h.addr), want.map(|_| d));
            }
        }
    }
}
