//! Virtual reassembly of IPv4 fragments: the table of fragmented datagrams whose first fragment
//! passed.
//!
//! Only the first fragment (offset 0) carries the transport header, so only it can meet the
//! rules and the state table. tandem does not rebuild the datagram (a 4000-byte datagram does
//! not fit one 2048-byte frame buffer, and holding fragments costs memory an attacker chooses);
//! instead, as VPP's and Linux's "shallow" reassembly do, the pipeline lets the first fragment
//! take the way an unfragmented packet would, and when it passes records here, under the
//! datagram's identity as received (source, destination, protocol, IP id, RFC 791), the
//! addresses it left with. Each later fragment of that datagram is then forwarded with the same
//! addresses (its IP header translated like the first's). A later fragment without a recorded
//! first fragment is dropped: either its first fragment was blocked (it must not pass on its
//! own), or it came first (out of order; not held, see the pipeline's doc), or its entry expired.
//!
//! NAT and checksums: the transport checksum covers the whole datagram, but the rewrite NAT does
//! (addresses in the pseudo-header, a port or ICMP id in the header) touches only words whose
//! old and new values are known, so the first fragment's checksum is patched incrementally
//! (RFC 1624) as for an unfragmented packet, and the later fragments, which carry payload only,
//! need no transport change (pf does the same for its non-reassembled fragments).
//!
//! Bounds: a fixed number of slots, allocated once (no allocation per packet). A first fragment
//! that finds its shard full takes the slot of the oldest entry there (pf does the same): the
//! fragments of a genuine datagram follow their first within milliseconds, so what is evicted
//! is, in practice, a datagram whose followers never came, and a flood of unfinished datagrams
//! cannot shut genuine ones out for the timeout's length. An entry lives
//! [`FragConfig::timeout_ms`] after its first fragment and is forgotten lazily (a lookup ignores
//! it, an insert reuses its slot). An entry also goes as soon as every byte of its datagram has
//! passed, so steady fragmented traffic holds one slot per datagram in flight.
//!
//! Poisoning: a live entry is never re-pointed. A second first fragment of the same datagram
//! (same source, destination, protocol and IP id) that left with other addresses or came in on
//! another interface is refused ([`Conflict`]): otherwise a spoofed first fragment carrying
//! another host's ports would send the genuine datagram's followers to that host. Followers
//! must come in on their first fragment's interface, whose rules that one met.
//!
//! Workers: the table is shared by all workers (sharded mutexes). NICs (and veth) hash every
//! fragment of a datagram to a receive queue by (source, destination) alone, the ports being
//! absent from the later fragments, so the fragments of one datagram normally reach one worker
//! in order; sharing the table makes a first fragment hashed elsewhere (a NIC that hashes it by
//! its ports) still found by its followers, provided it was processed first.

use std::net::Ipv4Addr;
use std::sync::Mutex;

use crate::state::Millis;
use crate::IfIndex;

/// Sizes of the fragment table.
#[derive(Debug, Clone, Copy)]
pub struct FragConfig {
    /// Fragmented datagrams tracked at once (rounded up to a multiple of the shard count).
    pub capacity: usize,
    /// How long an entry lives after its first fragment. pf keeps fragments 30 s (`set timeout
    /// frag`), Linux 30 s (`ipfrag_time`); the fragments of one datagram leave the sender within
    /// microseconds, so 10 s is ample and holds a flood of unfinished datagrams for less long.
    pub timeout_ms: Millis,
}

impl Default for FragConfig {
    fn default() -> FragConfig {
        // 4096 slots of 40 bytes: 160 KiB, against pf's default limit of 5000 fragments.
        FragConfig {
            capacity: 4096,
            timeout_ms: 10_000,
        }
    }
}

/// The identity of a fragmented datagram as it arrives (RFC 791: the fragments of a datagram
/// share source, destination, protocol and identification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub id: u16,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: FragKey,
    /// The interface its first fragment came in on: followers must come the same way.
    in_if: IfIndex,
    /// The addresses the first fragment left with (translated when its state is NATed).
    out_src: Ipv4Addr,
    out_dst: Ipv4Addr,
    /// End of the first fragment's payload: a later fragment must start at or after it, or it
    /// would overwrite the transport header the rules saw (RFC 1858's overlap attack).
    first_end: u16,
    /// Payload bytes passed so far, the first fragment's included.
    seen: u32,
    /// The datagram's payload length, known once its last fragment (MF clear) has passed.
    total: Option<u32>,
    expires: Millis,
}

/// What becomes of a later fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Forward it with these addresses.
    Pass { src: Ipv4Addr, dst: Ipv4Addr },
    /// No first fragment of its datagram has passed (blocked, not seen yet, or forgotten).
    NoFirst,
    /// Its first fragment passed, but so long ago that the entry expired.
    Expired,
    /// It starts inside the first fragment's payload (overlap): dropped.
    Overlap,
    /// It came in on another interface than its first fragment (spoofed: that interface's
    /// rules never saw the datagram): dropped.
    WrongInterface,
}

/// Where a first fragment's datagram was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// In a free slot, or over a repeat of itself (same addresses, same interface).
    Fresh,
    /// In the slot of an entry that had expired.
    ReusedExpired,
    /// The shard was full: the oldest live entry there was evicted (its later fragments will be
    /// dropped as `NoFirst`).
    EvictedOldest,
}

/// A live entry for the same datagram left with other addresses or came in on another
/// interface: the new first fragment is refused and the entry kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict;

/// Shards: enough that workers seldom meet on one lock, few enough that each holds a useful
/// number of slots.
const SHARDS: usize = 64;

/// One shard's slots, allocated once.
type Slots = Box<[Option<Entry>]>;

/// The shared table of fragmented datagrams (see the module doc).
#[derive(Debug)]
pub struct FragTable {
    shards: Box<[Mutex<Slots>]>,
    /// Keyed at random per table: an outsider cannot aim every datagram at one shard by
    /// choosing addresses (the IP id alone already lets them fill a shard; not the others).
    hasher: ahash::RandomState,
    timeout_ms: Millis,
}

impl FragTable {
    pub fn new(config: FragConfig) -> FragTable {
        let per_shard = config.capacity.div_ceil(SHARDS).max(1);
        FragTable {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(vec![None; per_shard].into_boxed_slice()))
                .collect(),
            hasher: ahash::RandomState::new(),
            timeout_ms: config.timeout_ms,
        }
    }

    /// Slots in all (the memory bound).
    pub fn capacity(&self) -> usize {
        self.shards.len() * self.shard(0).len()
    }

    /// Live entries at `now` (a walk: for tests and the CLI, not the fast path).
    pub fn len(&self, now: Millis) -> usize {
        (0..self.shards.len())
            .map(|i| {
                self.shard(i)
                    .iter()
                    .flatten()
                    .filter(|e| e.expires > now)
                    .count()
            })
            .sum()
    }

    pub fn is_empty(&self, now: Millis) -> bool {
        self.len(now) == 0
    }

    fn shard(&self, i: usize) -> std::sync::MutexGuard<'_, Slots> {
        // A panic under the lock cannot leave a slot half written (each is written in one
        // assignment): a poisoned shard is still consistent.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn shard_of(&self, key: &FragKey) -> usize {
        let h = self
            .hasher
            .hash_one((key.src.to_bits(), key.dst.to_bits(), key.proto, key.id));
        // SHARDS is a power of two and the hash uniform: the low bits are a fair index.
        (h as usize) & (SHARDS - 1)
    }

    /// Records that the first fragment of `key`, with `first_end` payload bytes, came in on
    /// `in_if`, passed, and left as `out_src -> out_dst`. A repeat of a live entry's first
    /// fragment keeps the entry (and what its followers have passed); one that would re-point it
    /// is a [`Conflict`].
    pub fn insert(
        &self,
        key: FragKey,
        in_if: IfIndex,
        (out_src, out_dst): (Ipv4Addr, Ipv4Addr),
        first_end: u16,
        now: Millis,
    ) -> Result<Inserted, Conflict> {
        let entry = Entry {
            key,
            in_if,
            out_src,
            out_dst,
            first_end,
            seen: u32::from(first_end),
            total: None,
            expires: now.saturating_add(self.timeout_ms),
        };
        let mut shard = self.shard(self.shard_of(&key));
        if let Some(old) = shard.iter_mut().flatten().find(|e| e.key == key) {
            if old.expires <= now {
                *old = entry;
                return Ok(Inserted::ReusedExpired);
            }
            if (old.in_if, old.out_src, old.out_dst) != (in_if, out_src, out_dst) {
                return Err(Conflict);
            }
            return Ok(Inserted::Fresh);
        }
        // A free slot first, else one whose entry expired, else the oldest entry's.
        let (i, how) = if let Some(i) = shard.iter().position(Option::is_none) {
            (i, Inserted::Fresh)
        } else if let Some(i) = shard
            .iter()
            .position(|s| s.is_some_and(|e| e.expires <= now))
        {
            (i, Inserted::ReusedExpired)
        } else {
            let oldest = shard
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.map_or(0, |e| e.expires))
                .map_or(0, |(i, _)| i);
            (oldest, Inserted::EvictedOldest)
        };
        shard[i] = Some(entry);
        Ok(how)
    }

    /// A later fragment of `key`: `offset` and `len` are its payload's place and size in the
    /// datagram (bytes), `last` whether MF is clear. The entry goes once every byte has passed.
    pub fn follow(
        &self,
        key: FragKey,
        in_if: IfIndex,
        (offset, len): (u16, u16),
        last: bool,
        now: Millis,
    ) -> Follow {
        let mut shard = self.shard(self.shard_of(&key));
        let Some(slot) = shard.iter_mut().find(|s| s.is_some_and(|e| e.key == key)) else {
            return Follow::NoFirst;
        };
        let Some(e) = slot.as_mut() else {
            return Follow::NoFirst;
        };
        if e.expires <= now {
            *slot = None;
            return Follow::Expired;
        }
        if e.in_if != in_if {
            return Follow::WrongInterface;
        }
        if offset < e.first_end {
            return Follow::Overlap;
        }
        e.seen = e.seen.saturating_add(u32::from(len));
        if last {
            e.total = Some(u32::from(offset) + u32::from(len));
        }
        let pass = Follow::Pass {
            src: e.out_src,
            dst: e.out_dst,
        };
        // Complete: nothing more to come (duplicates would find no entry and be dropped, which
        // costs nothing since the receiver has the datagram).
        if e.total.is_some_and(|t| e.seen >= t) {
            *slot = None;
        }
        pass
    }
}

impl Default for FragTable {
    fn default() -> FragTable {
        FragTable::new(FragConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 100);
    const B: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 1);
    const NAT: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 100);
    const LAN: IfIndex = 1;
    const WAN: IfIndex = 0;

    fn key(id: u16) -> FragKey {
        FragKey {
            src: A,
            dst: B,
            proto: 17,
            id,
        }
    }

    fn pass() -> Follow {
        Follow::Pass { src: NAT, dst: B }
    }

    #[test]
    fn followers_pass_with_the_first_fragments_addresses_until_complete() {
        let t = FragTable::default();
        assert_eq!(
            t.insert(key(1), LAN, (NAT, B), 1480, 0),
            Ok(Inserted::Fresh)
        );
        assert_eq!(
            t.follow(key(2), LAN, (1480, 1480), false, 1),
            Follow::NoFirst
        );
        assert_eq!(t.follow(key(1), LAN, (1480, 1480), false, 1), pass());
        assert_eq!(t.len(1), 1);
        assert_eq!(t.follow(key(1), LAN, (2960, 1048), true, 1), pass());
        assert!(t.is_empty(1), "every byte passed: the entry goes");
        assert_eq!(
            t.follow(key(1), LAN, (2960, 1048), true, 1),
            Follow::NoFirst
        );
    }

    #[test]
    fn the_last_fragment_before_a_middle_one_keeps_the_entry() {
        let t = FragTable::default();
        t.insert(key(1), LAN, (NAT, B), 1480, 0).unwrap();
        assert_eq!(t.follow(key(1), LAN, (2960, 1048), true, 1), pass());
        assert_eq!(t.len(1), 1, "a hole remains");
        assert_eq!(t.follow(key(1), LAN, (1480, 1480), false, 1), pass());
        assert!(t.is_empty(1));
    }

    #[test]
    fn a_fragment_inside_the_first_ones_payload_is_an_overlap() {
        let t = FragTable::default();
        t.insert(key(1), LAN, (NAT, B), 1480, 0).unwrap();
        assert_eq!(t.follow(key(1), LAN, (8, 1480), false, 1), Follow::Overlap);
        assert_eq!(t.follow(key(1), LAN, (1472, 16), false, 1), Follow::Overlap);
        assert_eq!(t.follow(key(1), LAN, (1480, 8), false, 1), pass());
    }

    #[test]
    fn entries_expire_and_their_slots_are_reused_and_a_full_shard_evicts_its_oldest() {
        let t = FragTable::new(FragConfig {
            capacity: 1,
            timeout_ms: 100,
        });
        // One slot per shard: keys that land in key(1)'s shard.
        let mut same = (2..10_000)
            .map(key)
            .filter(|k| t.shard_of(k) == t.shard_of(&key(1)));
        let (other, third) = (same.next().unwrap(), same.next().unwrap());
        assert_eq!(t.insert(key(1), LAN, (NAT, B), 8, 0), Ok(Inserted::Fresh));
        assert_eq!(
            t.insert(other, LAN, (NAT, B), 8, 50),
            Ok(Inserted::EvictedOldest),
            "a full shard makes room: the oldest entry goes"
        );
        assert_eq!(t.follow(key(1), LAN, (8, 8), false, 60), Follow::NoFirst);
        assert_eq!(
            t.follow(other, LAN, (8, 8), false, 99),
            Follow::Pass { src: NAT, dst: B }
        );
        assert_eq!(
            t.insert(third, LAN, (NAT, B), 8, 150),
            Ok(Inserted::ReusedExpired),
            "expired slot reused"
        );
        assert_eq!(t.follow(other, LAN, (16, 8), true, 151), Follow::NoFirst);
        assert_eq!(t.follow(third, LAN, (8, 8), false, 250), Follow::Expired);
        assert_eq!(t.follow(third, LAN, (8, 8), false, 250), Follow::NoFirst);
    }

    #[test]
    fn capacity_is_fixed_and_a_flood_of_unfinished_datagrams_does_not_shut_out_a_new_one() {
        let t = FragTable::new(FragConfig {
            capacity: 128,
            timeout_ms: 10_000,
        });
        assert_eq!(t.capacity(), 128);
        let mut evicted = 0;
        for id in 0..1000 {
            if t.insert(key(id), LAN, (NAT, B), 8, u64::from(id)) == Ok(Inserted::EvictedOldest) {
                evicted += 1;
            }
        }
        assert_eq!(evicted, 1000 - 128);
        assert_eq!(t.len(1000), 128, "never more than the capacity");
        // A genuine datagram after the flood gets its slot and its follower passes.
        t.insert(key(5000), LAN, (NAT, B), 8, 1000).unwrap();
        assert_eq!(t.follow(key(5000), LAN, (8, 8), true, 1001), pass());
    }

    #[test]
    fn a_live_entry_is_never_re_pointed() {
        let t = FragTable::default();
        let other_host = Ipv4Addr::new(192, 168, 0, 101);
        t.insert(key(1), WAN, (B, A), 1480, 0).unwrap();
        // A spoofed first fragment of the same datagram that matched another host's state.
        assert_eq!(
            t.insert(key(1), WAN, (B, other_host), 1480, 1),
            Err(Conflict)
        );
        // The same from another interface.
        assert_eq!(t.insert(key(1), LAN, (B, A), 1480, 1), Err(Conflict));
        // A repeat of the genuine one keeps the entry and what passed.
        assert_eq!(
            t.follow(key(1), WAN, (1480, 1480), false, 2),
            Follow::Pass { src: B, dst: A }
        );
        assert_eq!(t.insert(key(1), WAN, (B, A), 1480, 3), Ok(Inserted::Fresh));
        assert_eq!(
            t.follow(key(1), WAN, (2960, 40), true, 4),
            Follow::Pass { src: B, dst: A }
        );
        assert!(
            t.is_empty(4),
            "complete: the repeat did not reset the bytes seen"
        );
    }

    #[test]
    fn a_follower_from_another_interface_is_refused() {
        let t = FragTable::default();
        t.insert(key(1), LAN, (NAT, B), 1480, 0).unwrap();
        assert_eq!(
            t.follow(key(1), WAN, (1480, 8), false, 1),
            Follow::WrongInterface
        );
        assert_eq!(t.follow(key(1), LAN, (1480, 8), true, 1), pass());
    }
}
