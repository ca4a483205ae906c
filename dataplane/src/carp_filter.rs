//! The worker's cheap filter for CARP adverts before the slow path (issue 10.4).
//!
//! Every TTL-255 frame of IP protocol 112 to 224.0.0.18 used to go to the control plane's one
//! shared queue: a LAN host sending junk on the CARP group faster than CARP drained it pushed the
//! peer's genuine adverts out, and the backup went MASTER beside the master. CARP's HMAC needs
//! the group's key, which the dataplane does not hold, so the worker filters on what it can
//! read for nearly nothing, and rations the rest:
//!
//! 1. Length: the CARP header is 36 bytes; BSD sends exactly that. Anything shorter, or longer
//!    than [`MAX_LEN`], is `drop_carp_malformed`.
//! 2. VHID: one of the receiving interface's CARP VIPs, from the current generation; else
//!    `drop_carp_vhid`.
//! 3. Budget: adverts from the VHID's peer (the source of the last advert the control plane
//!    authenticated for that VHID, published in [`CarpPeers`]) draw on a bucket of their own
//!    per VHID ([`PEER_RATE`]); every other source draws first on a bucket of its own
//!    (direct-mapped by address, [`SOURCE_RATE`]), then on one bucket shared by all of them
//!    ([`OTHERS_RATE`]). Over budget: `drop_carp_budget`. Others may also only fill half of the
//!    slow-path queue (the pipeline's part): the other half is the peer's.
//!
//! Limits: a sender that forges the peer's address and a real VHID shares the peer's bucket
//! (the worker cannot tell them apart without the key); switch port security against address
//! spoofing is the defence there. Before the control plane has authenticated any advert for a
//! VHID it has no peer for it, and the peer's adverts go with the others.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::generation::Generation;
use crate::state::timeouts::Millis;
use crate::IfIndex;

/// The CARP header's length: the shortest advert.
pub const MIN_LEN: usize = 36;
/// The longest CARP payload let through (36 bytes and room for a future trailer).
pub const MAX_LEN: usize = 256;
/// Adverts per second per VHID from its peer: the fastest advert interval is 1/256 s.
pub const PEER_RATE: u32 = 300;
/// Burst of the peer's bucket.
pub const PEER_BURST: u32 = 64;
/// Adverts per second from one other source (a peer not yet authenticated sends one per
/// second per VHID at the usual advbase).
pub const SOURCE_RATE: u32 = 16;
/// Burst of a source's bucket.
pub const SOURCE_BURST: u32 = 8;
/// Adverts per second from all other sources together, per worker: far below what the CARP
/// thread checks (about a microsecond each), so junk never backs the queue up.
pub const OTHERS_RATE: u32 = 2_000;
/// Burst of the shared bucket.
pub const OTHERS_BURST: u32 = 256;
/// Slots of the per-source table (direct-mapped: a new source takes the slot of its hash).
const SOURCES: usize = 64;

/// The peer of each VHID as the control plane last authenticated it: written by the CARP
/// thread, read by the workers. 0 is none.
#[derive(Debug)]
pub struct CarpPeers([AtomicU32; 256]);

impl CarpPeers {
    pub fn new() -> CarpPeers {
        CarpPeers(std::array::from_fn(|_| AtomicU32::new(0)))
    }

    /// The peer of `vhid`, if known.
    #[inline]
    pub fn get(&self, vhid: u8) -> Option<Ipv4Addr> {
        match self.0[usize::from(vhid)].load(Ordering::Relaxed) {
            0 => None,
            a => Some(Ipv4Addr::from(a)),
        }
    }

    pub fn set(&self, vhid: u8, peer: Ipv4Addr) {
        self.0[usize::from(vhid)].store(u32::from(peer), Ordering::Relaxed);
    }
}

impl Default for CarpPeers {
    fn default() -> CarpPeers {
        CarpPeers::new()
    }
}

/// A token bucket in thousandths of a token, refilled from the batch clock (milliseconds):
/// `rate` tokens per second is `rate` thousandths per millisecond, so no division.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    milli: u64,
    at: Millis,
}

impl Bucket {
    fn full(burst: u32, now: Millis) -> Bucket {
        Bucket {
            milli: u64::from(burst) * 1000,
            at: now,
        }
    }

    /// Refills for the time since the last call, then takes one token if there is one.
    fn take(&mut self, rate: u32, burst: u32, now: Millis) -> bool {
        let elapsed = now.saturating_sub(self.at);
        self.at = self.at.max(now);
        self.milli = self
            .milli
            .saturating_add(elapsed.saturating_mul(u64::from(rate)))
            .min(u64::from(burst) * 1000);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// What the filter made of an advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarpVerdict {
    /// From the VHID's peer, within its budget: may use the whole queue.
    Peer,
    /// From another source, within budget: may use the others' half of the queue.
    Other,
    /// Too short or too long.
    Malformed,
    /// Not a VHID of the receiving interface.
    UnknownVhid,
    /// Over its budget.
    OverBudget,
}

/// One worker's budgets.
#[derive(Debug)]
pub struct CarpBudget {
    peers: Box<[Bucket; 256]>,
    sources: [(u32, Bucket); SOURCES],
    others: Bucket,
}

impl Default for CarpBudget {
    fn default() -> CarpBudget {
        CarpBudget {
            peers: Box::new([Bucket::full(PEER_BURST, 0); 256]),
            sources: [(0, Bucket::full(SOURCE_BURST, 0)); SOURCES],
            others: Bucket::full(OTHERS_BURST, 0),
        }
    }
}

impl CarpBudget {
    /// Judges the CARP payload `carp` (the IPv4 payload) from `src`, received on `in_if` at
    /// `now`.
    pub fn admit(
        &mut self,
        gen: &Generation,
        peers: &CarpPeers,
        in_if: IfIndex,
        src: Ipv4Addr,
        carp: &[u8],
        now: Millis,
    ) -> CarpVerdict {
        if carp.len() < MIN_LEN || carp.len() > MAX_LEN {
            return CarpVerdict::Malformed;
        }
        let vhid = carp[1];
        if !gen
            .vips
            .iter()
            .any(|v| v.if_index == in_if && v.vhid == Some(vhid))
        {
            return CarpVerdict::UnknownVhid;
        }
        if peers.get(vhid) == Some(src) {
            return if self.peers[usize::from(vhid)].take(PEER_RATE, PEER_BURST, now) {
                CarpVerdict::Peer
            } else {
                CarpVerdict::OverBudget
            };
        }
        let a = u32::from(src);
        // Fibonacci hashing of the address into the slots.
        let slot = (a.wrapping_mul(0x9e37_79b9) >> 26) as usize % SOURCES;
        let s = &mut self.sources[slot];
        if s.0 != a {
            *s = (a, Bucket::full(SOURCE_BURST, now));
        }
        if s.1.take(SOURCE_RATE, SOURCE_BURST, now)
            && self.others.take(OTHERS_RATE, OTHERS_BURST, now)
        {
            CarpVerdict::Other
        } else {
            CarpVerdict::OverBudget
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let mut b = Bucket::full(4, 0);
        assert_eq!((0..10).filter(|_| b.take(100, 4, 0)).count(), 4);
        // 100 per second: one per 10 ms.
        assert!(!b.take(100, 4, 9));
        assert!(b.take(100, 4, 10));
        // A long pause refills to the burst, not beyond.
        assert_eq!((0..10).filter(|_| b.take(100, 4, 10_000)).count(), 4);
        // The clock going backwards takes nothing and gives nothing.
        assert!(!b.take(100, 4, 5));
    }
}
