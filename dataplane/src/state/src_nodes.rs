//! Per-source limits of the states a rule creates: pf's source nodes (`struct pf_ksrc_node`)
//! with `max-src-states` and a `max-src-conn-rate`.
//!
//! A rule with limits ([`SrcLimits`]) counts its states per source address in a node keyed by
//! (rule number, source address of the first packet, before translation). The first state of a
//! source creates its node; a new state is refused when its node holds `max_states` states
//! already, or when the source opened `rate.conns` states in the last `rate.seconds` seconds.
//! The state carries a mark (in its expiry word, so it stays 120 bytes), and the table releases
//! the node's count when it removes a marked state, whoever removes it (expiry, kill, flush, a
//! peer's delete).
//!
//! Only the creation of a state pays: an established packet never looks at the nodes, and a rule
//! without limits never touches them.
//!
//! # Bounds
//!
//! At most `max_nodes` nodes exist (pf's `set limit src-nodes`, default 10 000): a source that
//! would need one more is refused and counted (a flood from random sources cannot grow the map).
//! A node of 48 bytes plus its map slot: 10 000 nodes are well under 1 MB. The expiry walk
//! ([`SrcNodes::expire`]) removes a node once it holds no state and its rate window has passed
//! since its last new state (pf keeps a node `src.track` seconds, default 0).
//!
//! # Rate
//!
//! pf's `pf_threshold`: a count of new states, in thousandths, that decays linearly to zero over
//! `seconds` (a moving average, not a fixed window). A new state is let in while the decayed count
//! plus one stays within `conns`: a burst of `conns`, then one every `seconds / conns`. Unlike pf,
//! which counts a connection when its handshake completes (`pf_src_connlimit`), tandem counts at
//! creation: a SYN flood from one source is what the limit is for. A refused attempt does not
//! count, so a source that stops is let in again after at most `seconds / conns`.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use dashmap::DashMap;

use super::timeouts::Millis;

/// pf's `set limit src-nodes` default.
pub const DEFAULT_MAX_NODES: u32 = 10_000;

/// New states per time: `conns` per `seconds` (pf's `max-src-conn-rate conns/seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRate {
    /// New states allowed per `seconds` (at least 1).
    pub conns: u32,
    /// The averaging interval in seconds (at least 1).
    pub seconds: u32,
}

/// A rule's per-source limits; the default has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SrcLimits {
    /// Most states one source may hold through the rule (pf's `max-src-states`); 0: no limit.
    pub max_states: u32,
    /// Most new states per time from one source (pf's `max-src-conn-rate`).
    pub rate: Option<ConnRate>,
}

impl SrcLimits {
    /// No limit: the rule's states are not tracked per source.
    pub const NONE: SrcLimits = SrcLimits {
        max_states: 0,
        rate: None,
    };

    /// True when the rule has a limit, i.e. its states are tracked per source.
    #[inline]
    pub const fn is_limited(&self) -> bool {
        self.max_states != 0 || self.rate.is_some()
    }
}

/// Why a source was refused a new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrcRefusal {
    /// The source holds `max_states` states of the rule.
    States,
    /// The source opened states faster than the rule's rate.
    Rate,
    /// No room for the source's node: `max_nodes` sources are tracked.
    Nodes,
}

/// Thousandths: the rate's count is kept in 1/1000 of a state so that it decays smoothly.
const MULT: u64 = 1000;

/// The rate's moving count (pf's `struct pf_threshold`, in milliseconds).
#[derive(Debug, Default)]
struct Threshold {
    count: u64,
    last: Millis,
}

impl Threshold {
    /// Admit one more new state at `now` if the decayed count leaves room for it. A refusal
    /// changes nothing, so the count decays linearly from the last admitted state (pf re-bases
    /// at every attempt, which makes the decay depend on how often a source knocks).
    fn admit(&mut self, rate: ConnRate, now: Millis) -> bool {
        let window = u64::from(rate.seconds.max(1)) * 1000;
        let elapsed = now.saturating_sub(self.last);
        let count = if elapsed >= window {
            0
        } else {
            // Rounded up: the room for one more comes at the exact interval, not a rounding
            // early. count <= conns * MULT < 2^42 and window < 2^42: no overflow in u128.
            u128::from(self.count)
                .saturating_mul(u128::from(window - elapsed))
                .div_ceil(u128::from(window)) as u64
        };
        if count + MULT > u64::from(rate.conns) * MULT {
            return false;
        }
        self.count = count + MULT;
        self.last = now;
        true
    }
}

/// One source of one rule.
#[derive(Debug)]
struct Node {
    states: AtomicU32,
    /// Last new state admitted (ms): with `hold`, when the node may go.
    last: AtomicU64,
    /// How long the node outlives its last state: the rate window (ms), 0 without a rate.
    hold: AtomicU64,
    rate: Mutex<Threshold>,
}

impl Node {
    fn new() -> Node {
        Node {
            states: AtomicU32::new(0),
            last: AtomicU64::new(0),
            hold: AtomicU64::new(0),
            rate: Mutex::new(Threshold::default()),
        }
    }

    fn admit(&self, limits: &SrcLimits, now: Millis) -> Result<(), SrcRefusal> {
        // Claim a slot first (compare-and-swap: two workers cannot both take the last one).
        let claimed = self
            .states
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |s| {
                (limits.max_states == 0 || s < limits.max_states).then_some(s + 1)
            });
        if claimed.is_err() {
            return Err(SrcRefusal::States);
        }
        if let Some(rate) = limits.rate {
            let ok = self
                .rate
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .admit(rate, now);
            if !ok {
                self.release();
                return Err(SrcRefusal::Rate);
            }
            self.hold
                .store(u64::from(rate.seconds) * 1000, Ordering::Relaxed);
        }
        self.last.fetch_max(now, Ordering::Relaxed);
        Ok(())
    }

    fn release(&self) {
        // Saturating: a release without its admit (which the table's bookkeeping rules out)
        // must not wrap to 4 billion and lock the source out.
        let _ = self
            .states
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |s| s.checked_sub(1));
    }

    fn idle(&self, now: Millis) -> bool {
        self.states.load(Ordering::Acquire) == 0
            && now
                >= self
                    .last
                    .load(Ordering::Relaxed)
                    .saturating_add(self.hold.load(Ordering::Relaxed))
    }
}

/// The source nodes of every rule with limits. See the [module documentation](self).
#[derive(Debug)]
pub struct SrcNodes {
    map: DashMap<(u32, Ipv4Addr), Node, ahash::RandomState>,
    count: AtomicUsize,
    max: AtomicU32,
}

impl SrcNodes {
    /// An empty set of at most `max_nodes` nodes.
    pub fn new(max_nodes: u32) -> SrcNodes {
        SrcNodes {
            map: DashMap::with_hasher_and_shard_amount(ahash::RandomState::new(), 16),
            count: AtomicUsize::new(0),
            max: AtomicU32::new(max_nodes),
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// True when no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most nodes.
    pub fn max_nodes(&self) -> u32 {
        self.max.load(Ordering::Relaxed)
    }

    /// Change the most nodes (existing nodes above it stay until they go idle).
    pub fn set_max_nodes(&self, max: u32) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// States `src` holds through rule `rule` (tests, the CLI).
    pub fn states_of(&self, rule: u32, src: Ipv4Addr) -> u32 {
        self.map
            .get(&(rule, src))
            .map_or(0, |n| n.states.load(Ordering::Relaxed))
    }

    /// Count one new state of `src` through `rule` at `now`, or say why not. On `Ok` the caller
    /// owes one [`SrcNodes::release`] (the table does it when it removes the state).
    pub fn acquire(
        &self,
        rule: u32,
        src: Ipv4Addr,
        limits: &SrcLimits,
        now: Millis,
    ) -> Result<(), SrcRefusal> {
        let key = (rule, src);
        // A known source: the shard's read lock only (expiry takes the write lock to remove an
        // idle node, so a node cannot go between this lookup and its count).
        if let Some(node) = self.map.get(&key) {
            return node.admit(limits, now);
        }
        if self.count.fetch_add(1, Ordering::Relaxed) >= self.max_nodes() as usize {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return Err(SrcRefusal::Nodes);
        }
        match self.map.entry(key) {
            dashmap::Entry::Occupied(o) => {
                // Another worker created it a moment ago.
                self.count.fetch_sub(1, Ordering::Relaxed);
                o.get().admit(limits, now)
            }
            dashmap::Entry::Vacant(v) => {
                let node = Node::new();
                let admitted = node.admit(limits, now);
                if admitted.is_ok() {
                    v.insert(node);
                } else {
                    // Limits of 0 new states: nothing to remember.
                    self.count.fetch_sub(1, Ordering::Relaxed);
                }
                admitted
            }
        }
    }

    /// Give back one state of `src` through `rule`.
    pub fn release(&self, rule: u32, src: Ipv4Addr) {
        if let Some(node) = self.map.get(&(rule, src)) {
            node.release();
        }
    }

    /// Remove the nodes idle at `now` (no state, rate window passed). Returns how many. Takes
    /// each of the 16 shards' write lock in turn: the map holds at most `max_nodes` nodes.
    pub fn expire(&self, now: Millis) -> usize {
        if self.is_empty() {
            return 0;
        }
        let mut removed = 0;
        self.map.retain(|_, node| {
            let idle = node.idle(now);
            removed += usize::from(idle);
            !idle
        });
        self.count.fetch_sub(removed, Ordering::Relaxed);
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 50);
    const B: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 51);

    #[test]
    fn max_states_per_source_and_rule() {
        let n = SrcNodes::new(10);
        let l = SrcLimits {
            max_states: 2,
            rate: None,
        };
        assert_eq!(n.acquire(1, A, &l, 0), Ok(()));
        assert_eq!(n.acquire(1, A, &l, 0), Ok(()));
        assert_eq!(n.acquire(1, A, &l, 0), Err(SrcRefusal::States));
        // Another source, another rule: their own counts.
        assert_eq!(n.acquire(1, B, &l, 0), Ok(()));
        assert_eq!(n.acquire(2, A, &l, 0), Ok(()));
        n.release(1, A);
        assert_eq!(n.states_of(1, A), 1);
        assert_eq!(n.acquire(1, A, &l, 0), Ok(()));
        assert_eq!(n.len(), 3);
    }

    #[test]
    fn rate_is_a_burst_then_one_per_interval() {
        let n = SrcNodes::new(10);
        let l = SrcLimits {
            max_states: 0,
            rate: Some(ConnRate {
                conns: 5,
                seconds: 10,
            }),
        };
        for _ in 0..5 {
            assert_eq!(n.acquire(1, A, &l, 1000), Ok(()));
        }
        assert_eq!(n.acquire(1, A, &l, 1000), Err(SrcRefusal::Rate));
        // The count decays by 5 per 10 s: one more after 2 s, not before.
        assert_eq!(n.acquire(1, A, &l, 2999), Err(SrcRefusal::Rate));
        assert_eq!(n.acquire(1, A, &l, 3000), Ok(()));
        assert_eq!(n.acquire(1, A, &l, 3000), Err(SrcRefusal::Rate));
        // A refused attempt did not count: the states it did not create are not held.
        assert_eq!(n.states_of(1, A), 6);
        // After the whole window, a full burst again.
        for _ in 0..5 {
            assert_eq!(n.acquire(1, A, &l, 13_000), Ok(()));
        }
    }

    #[test]
    fn nodes_are_bounded_and_expire_when_idle() {
        let n = SrcNodes::new(2);
        let l = SrcLimits {
            max_states: 100,
            rate: Some(ConnRate {
                conns: 100,
                seconds: 5,
            }),
        };
        assert_eq!(n.acquire(1, A, &l, 0), Ok(()));
        assert_eq!(n.acquire(1, B, &l, 0), Ok(()));
        let c = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(n.acquire(1, c, &l, 0), Err(SrcRefusal::Nodes));
        assert_eq!(n.len(), 2);
        // A holds a state: stays. B released: goes once its rate window has passed.
        n.release(1, B);
        assert_eq!(n.expire(4999), 0);
        assert_eq!(n.expire(5000), 1);
        assert_eq!(n.acquire(1, c, &l, 5000), Ok(()));
        assert_eq!(n.len(), 2);
        // A release too many saturates at zero.
        n.release(1, A);
        n.release(1, A);
        assert_eq!(n.states_of(1, A), 0);
    }
}
