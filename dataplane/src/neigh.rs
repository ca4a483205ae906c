//! Neighbour (ARP) resolution: a shared cache of resolved neighbours, and per-worker queues of
//! frames waiting for one.
//!
//! - [`NeighCache`] is shared by all workers (a `DashMap` with ahash) and read for every
//!   forwarded frame: a hit is one hash and one shard read lock, the MAC copied out. Entries are
//!   learnt from ARP replies and requests, and aged out by [`NeighCache::expire`] (housekeeping,
//!   not the hit path: a lookup never looks at the clock) after a reachable time that defaults
//!   to FreeBSD's `net.link.ether.inet.max_age` (arpt_keep, 20 minutes).
//! - [`NeighMemo`] is an optional per-worker front for it: a small direct-mapped copy of recent
//!   answers, valid while the cache's change generation (bumped when a MAC changes or an entry
//!   goes, not on refreshes) stays put, so the common hit does not touch a shared lock. One memo
//!   serves one cache.
//! - [`PendingQueues`] belongs to one worker's pipeline, so it needs no lock. It holds frames
//!   whose next hop is not resolved yet: per next hop a bounded FIFO, buffers from a pool
//!   allocated once at construction (no allocation per packet), ARP request retries, a failure
//!   timeout that drops the queued frames, and a hold-down (negative cache) during which frames
//!   to a dead next hop are dropped at once without any ARP, so a dead host cannot cause an ARP
//!   storm.
//!
//! Timeline of one next hop with the defaults (3 tries, 1 s apart, 20 s hold-down), `t0` the
//! first frame:
//!
//! ```text
//! t0            enqueue -> Queued { send_request: true }: the caller sends the first request
//! t0 + 1 s      poll -> SendRequest (try 2)
//! t0 + 2 s      poll -> SendRequest (try 3)
//! t0 + 3 s      poll -> Dropped { ResolveFailed, count }: hold-down starts
//! .. + 20 s     enqueue -> Failed (frame dropped, no ARP), unless the neighbour was learnt
//! ```
//!
//! At any poll before the failure, a neighbour found in the cache releases the queued frames in
//! order as [`PendingEvent::Ready`].
//!
//! Each worker resolves on its own: with N workers a next hop may see up to N requests per
//! interval. That is the price of lock-free queues, and bounded.
//!
//! Bound on ARP requests: a next hop in resolution sends at most one request per `retry_ms`, and
//! at most `max_next_hops` are in resolution at once (a held-down one gives its slot up only to
//! a new next hop), so even a scan of dead addresses makes at most `max_next_hops` requests per
//! `retry_ms` per worker: 64 per second by default.
//!
//! Priority: a host that sends to a stream of dead on-link addresses keeps every slot resolving
//! and locks everyone else out (an attacker's review measured a 17 s ping gap on failover, the
//! new master unable to resolve its gateway). A frame enqueued with `priority` (the caller's: one
//! going to a gateway, a route's next hop, of which there are a few whatever hosts send) may take
//! the slot of the oldest resolution that no such frame asked for; that resolution's frames are
//! dropped ([`DropReason::Evicted`]). An eviction sends the new next hop's request at once, so a
//! gateway's resolutions can add up to `max_next_hops` requests per `retry_ms` to the bound
//! above.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

use crate::io::FRAME_SIZE;
use crate::memo::Memo;
use crate::wire::MacAddr;
use crate::IfIndex;

/// A resolved neighbour.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NeighEntry {
    pub mac: MacAddr,
    /// When it was last learnt or confirmed (milliseconds on the caller's monotonic clock).
    pub updated_ms: u64,
}

/// What [`NeighCache::learn`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Learned {
    /// A neighbour the cache did not know.
    New,
    /// Same MAC, timestamp refreshed.
    Refreshed,
    /// The neighbour answered with another MAC (a CARP failover upstream, a replaced box, or
    /// spoofing: worth a log line).
    Changed { old: MacAddr },
    /// Not learnt: the cache already holds its maximum of entries.
    Full,
}

/// The shared cache of resolved neighbours, keyed by (interface, IPv4 address).
#[derive(Debug)]
pub struct NeighCache {
    map: DashMap<(IfIndex, Ipv4Addr), NeighEntry, ahash::RandomState>,
    reachable_ms: u64,
    /// The most entries of one interface.
    max_entries: usize,
    /// Entries per interface (by index).
    counts: [AtomicUsize; 256],
    /// Bumped after every change that can make a looked-up MAC wrong (a MAC changed, an entry
    /// removed); not by new entries or refreshes. Lets a [`NeighMemo`] trust its copies.
    generation: AtomicU64,
}

impl NeighCache {
    /// FreeBSD's arpt_keep: 20 minutes.
    pub const DEFAULT_REACHABLE_MS: u64 = 20 * 60 * 1000;
    /// The most neighbours the cache holds on one interface (every host of a /16, ~3 MiB):
    /// without a bound, ARP requests to the box from every address of a large on-link network
    /// (a /8: 16 million) would grow it without end, and each housekeeping pass would walk all
    /// of it. Past it a new neighbour of that interface is not learnt until entries age out, as
    /// Linux's neighbour table does past `gc_thresh3` (counted as `neigh_table_full`). Per
    /// interface, so that a flood on the LAN cannot keep the box from learning its WAN
    /// gateway again.
    pub const DEFAULT_MAX_ENTRIES: usize = 65_536;

    /// A cache whose entries are removed by [`NeighCache::expire`] once not confirmed for
    /// `reachable_ms`, of at most [`NeighCache::DEFAULT_MAX_ENTRIES`].
    pub fn new(reachable_ms: u64) -> NeighCache {
        NeighCache::with_limit(reachable_ms, NeighCache::DEFAULT_MAX_ENTRIES)
    }

    /// [`NeighCache::new`] of at most `max_entries` neighbours per interface (a few more when
    /// workers learn at the same moment).
    pub fn with_limit(reachable_ms: u64, max_entries: usize) -> NeighCache {
        NeighCache {
            map: DashMap::with_hasher(ahash::RandomState::new()),
            reachable_ms,
            max_entries,
            counts: std::array::from_fn(|_| AtomicUsize::new(0)),
            generation: AtomicU64::new(0),
        }
    }

    fn count(&self, out_if: IfIndex) -> &AtomicUsize {
        &self.counts[usize::from(out_if)]
    }

    /// The MAC of `ip` on `out_if`, if resolved. The per-packet path.
    #[inline]
    pub fn lookup(&self, out_if: IfIndex, ip: Ipv4Addr) -> Option<MacAddr> {
        self.map.get(&(out_if, ip)).map(|e| e.mac)
    }

    /// The whole entry of `ip` on `out_if`.
    pub fn get(&self, out_if: IfIndex, ip: Ipv4Addr) -> Option<NeighEntry> {
        self.map.get(&(out_if, ip)).map(|e| *e)
    }

    /// Records that `ip` on `out_if` is at `mac` (an ARP reply, or a request from it).
    pub fn learn(&self, out_if: IfIndex, ip: Ipv4Addr, mac: MacAddr, now_ms: u64) -> Learned {
        if self.count(out_if).load(Ordering::Relaxed) >= self.max_entries
            && !self.map.contains_key(&(out_if, ip))
        {
            return Learned::Full;
        }
        let new = NeighEntry {
            mac,
            updated_ms: now_ms,
        };
        match self.map.insert((out_if, ip), new) {
            None => {
                self.count(out_if).fetch_add(1, Ordering::Relaxed);
                Learned::New
            }
            Some(old) if old.mac == mac => Learned::Refreshed,
            Some(old) => {
                self.bump();
                Learned::Changed { old: old.mac }
            }
        }
    }

    /// Forgets one neighbour.
    pub fn remove(&self, out_if: IfIndex, ip: Ipv4Addr) -> Option<NeighEntry> {
        let removed = self.map.remove(&(out_if, ip)).map(|(_, e)| e);
        if removed.is_some() {
            self.count(out_if).fetch_sub(1, Ordering::Relaxed);
            self.bump();
        }
        removed
    }

    /// Forgets every neighbour of `out_if` (link down, address change). Returns how many.
    pub fn flush_if(&self, out_if: IfIndex) -> usize {
        self.remove_where(|k, _| k.0 == out_if)
    }

    /// Housekeeping: removes the entries not confirmed for the reachable time. Returns how many.
    pub fn expire(&self, now_ms: u64) -> usize {
        let keep = self.reachable_ms;
        self.remove_where(|_, e| now_ms.saturating_sub(e.updated_ms) >= keep)
    }

    /// The change generation (see [`NeighMemo`]).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn remove_where(
        &self,
        mut gone: impl FnMut(&(IfIndex, Ipv4Addr), &NeighEntry) -> bool,
    ) -> usize {
        let mut n = 0;
        self.map.retain(|k, e| {
            let g = gone(k, e);
            if g {
                n += 1;
                self.count(k.0).fetch_sub(1, Ordering::Relaxed);
            }
            !g
        });
        if n > 0 {
            self.bump();
        }
        n
    }

    /// The configured reachable time.
    pub fn reachable_ms(&self) -> u64 {
        self.reachable_ms
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A copy of every entry, sorted by interface and address (for the CLI).
    pub fn snapshot(&self) -> Vec<(IfIndex, Ipv4Addr, NeighEntry)> {
        let mut v: Vec<_> = self
            .map
            .iter()
            .map(|r| (r.key().0, r.key().1, *r.value()))
            .collect();
        v.sort_unstable_by_key(|&(i, a, _)| (i, a));
        v
    }
}

/// A worker's private memo in front of the shared [`NeighCache`]: a small direct-mapped table
/// of recent (interface, address) -> MAC answers, trusted while the cache's generation has not
/// moved. A hit costs one atomic load of a line that is only written when a MAC changes or an
/// entry goes, instead of a shard lock that every worker writes (the default gateway's shard
/// would bounce between cores on every packet).
#[derive(Debug)]
pub struct NeighMemo(Memo<(IfIndex, Ipv4Addr), MacAddr>);

impl NeighMemo {
    /// A memo of `slots` entries (rounded up to a power of two, at least 1).
    pub fn new(slots: usize) -> NeighMemo {
        NeighMemo(Memo::new(slots))
    }

    /// [`NeighCache::lookup`] through the memo.
    #[inline]
    pub fn lookup(&mut self, cache: &NeighCache, out_if: IfIndex, ip: Ipv4Addr) -> Option<MacAddr> {
        let bits = ip.to_bits() ^ (u32::from(out_if) << 24);
        self.0.get(cache.generation(), (out_if, ip), bits, || {
            cache.lookup(out_if, ip)
        })
    }
}

impl Default for NeighMemo {
    fn default() -> NeighMemo {
        NeighMemo::new(64)
    }
}

impl Default for NeighCache {
    fn default() -> NeighCache {
        NeighCache::new(NeighCache::DEFAULT_REACHABLE_MS)
    }
}

/// Sizes and timers of a worker's [`PendingQueues`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PendingConfig {
    /// Frame buffers in the pool, shared by all next hops of the worker.
    pub pool_frames: usize,
    /// Frames queued per next hop at most.
    pub queue_len: usize,
    /// Next hops in resolution (or held down) at once.
    pub max_next_hops: usize,
    /// Largest frame that can be queued, in bytes.
    pub frame_size: usize,
    /// ARP requests sent per resolution attempt, the first at once.
    pub tries: u32,
    /// Interval between requests; the attempt fails `tries * retry_ms` after the first.
    pub retry_ms: u64,
    /// How long a failed next hop stays dead: frames to it are dropped without ARP.
    pub hold_down_ms: u64,
}

impl Default for PendingConfig {
    fn default() -> PendingConfig {
        PendingConfig {
            pool_frames: 256,
            queue_len: 8,
            max_next_hops: 64,
            frame_size: FRAME_SIZE,
            tries: 3,
            retry_ms: 1000,
            // FreeBSD's arpt_down.
            hold_down_ms: 20_000,
        }
    }
}

/// What became of a frame given to [`PendingQueues::enqueue`]. Every outcome but `Queued` means
/// the frame was dropped; the caller counts it under the outcome's name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EnqueueOutcome {
    /// Queued. `send_request`: this frame started a resolution, send the first ARP request now
    /// (later ones come from [`PendingQueues::poll`]).
    Queued { send_request: bool },
    /// The next hop's queue already holds `queue_len` frames.
    QueueFull,
    /// No free buffer in the pool. If this frame started a resolution it goes on (the request
    /// comes from the next poll), so that later frames find the neighbour resolved.
    PoolExhausted,
    /// The next hop failed to resolve recently and is held down.
    Failed,
    /// `max_next_hops` next hops are already being resolved.
    TooManyNextHops,
    /// The frame is larger than `frame_size`.
    TooLarge,
}

/// Why queued frames were dropped.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DropReason {
    /// The next hop did not answer `tries` ARP requests.
    ResolveFailed,
    /// Every slot was busy and a frame with priority took this resolution's slot.
    Evicted,
}

/// What [`PendingQueues::poll`] asks the caller to do.
#[derive(PartialEq, Eq, Debug)]
pub enum PendingEvent<'a> {
    /// A queued frame whose next hop is now resolved, in queue order: write `mac` as the
    /// destination MAC and send it on `out_if`. The buffer returns to the pool after the call.
    Ready {
        out_if: IfIndex,
        next_hop: Ipv4Addr,
        mac: MacAddr,
        frame: &'a mut [u8],
    },
    /// Send an ARP request for `target` on `out_if` (a retry).
    SendRequest { out_if: IfIndex, target: Ipv4Addr },
    /// `count` queued frames to `next_hop` were dropped.
    Dropped {
        out_if: IfIndex,
        next_hop: Ipv4Addr,
        reason: DropReason,
        count: u32,
    },
}

/// Totals since construction, for counters and tests.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PendingStats {
    /// Frames queued.
    pub queued: u64,
    /// Frames released as `Ready`.
    pub released: u64,
    /// ARP requests asked for (the first, through `Queued { send_request: true }`, and retries).
    pub requests: u64,
    /// Frames dropped: queue full.
    pub queue_full: u64,
    /// Frames dropped: pool exhausted.
    pub pool_exhausted: u64,
    /// Frames dropped: next hop held down after a failure.
    pub held_down: u64,
    /// Frames dropped: too many next hops in resolution.
    pub too_many_next_hops: u64,
    /// Frames dropped: larger than a pool buffer.
    pub too_large: u64,
    /// Frames dropped because their resolution failed.
    pub resolve_failed: u64,
    /// Resolutions that failed (next hops put in hold-down).
    pub failed_next_hops: u64,
    /// Frames dropped because their resolution gave its slot to a frame with priority.
    pub evicted: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SlotState {
    Free,
    Resolving {
        /// When the attempt started; it fails at `started_ms + tries * retry_ms`.
        started_ms: u64,
        /// Requests sent so far.
        sent: u32,
        /// When the next request is due.
        next_ms: u64,
    },
    HeldDown {
        until_ms: u64,
    },
}

#[derive(Debug)]
struct Slot {
    state: SlotState,
    /// A frame with priority asked for this resolution: it is never evicted.
    priority: bool,
    out_if: IfIndex,
    ip: Ipv4Addr,
    /// Pool buffer indexes, oldest first; capacity `queue_len`, never grown.
    frames: VecDeque<u32>,
}

impl Slot {
    /// The frame that started the resolution was dropped, so its caller was not told to send
    /// the first request: let the next poll send it.
    fn defer_first_request(&mut self, now_ms: u64) {
        if let SlotState::Resolving { sent, next_ms, .. } = &mut self.state {
            *sent = 0;
            *next_ms = now_ms;
        }
    }
}

/// One worker's frames waiting for neighbour resolution. See the module documentation.
#[derive(Debug)]
pub struct PendingQueues {
    cfg: PendingConfig,
    slots: Vec<Slot>,
    /// Slots not `Free`.
    active: usize,
    /// `pool_frames * frame_size` bytes.
    pool: Box<[u8]>,
    lens: Box<[u16]>,
    /// Free buffer indexes (a stack); capacity `pool_frames`, never grown.
    free: Vec<u32>,
    stats: PendingStats,
    /// Evictions since the last poll, reported by it: (out_if, next hop, frames dropped).
    /// Capacity `max_next_hops`, never grown.
    evictions: Vec<(IfIndex, Ipv4Addr, u32)>,
}

impl PendingQueues {
    /// Allocates everything up front: the pool, the slots and their queues.
    pub fn new(cfg: PendingConfig) -> PendingQueues {
        // Buffer indexes and lengths are u32/u16: clamp absurd configurations.
        let frame_size = cfg.frame_size.min(usize::from(u16::MAX));
        let pool_frames = cfg.pool_frames.min(u32::MAX as usize);
        let cfg = PendingConfig {
            frame_size,
            pool_frames,
            ..cfg
        };
        let slots = (0..cfg.max_next_hops)
            .map(|_| Slot {
                state: SlotState::Free,
                priority: false,
                out_if: 0,
                ip: Ipv4Addr::UNSPECIFIED,
                frames: VecDeque::with_capacity(cfg.queue_len),
            })
            .collect();
        // Popped from the end: hand out buffer 0 first.
        let free = (0..pool_frames)
            .rev()
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
            .collect();
        PendingQueues {
            cfg,
            slots,
            active: 0,
            pool: vec![0u8; pool_frames.saturating_mul(frame_size)].into_boxed_slice(),
            lens: vec![0u16; pool_frames].into_boxed_slice(),
            free,
            stats: PendingStats::default(),
            evictions: Vec::with_capacity(cfg.max_next_hops),
        }
    }

    pub fn config(&self) -> &PendingConfig {
        &self.cfg
    }

    pub fn stats(&self) -> PendingStats {
        self.stats
    }

    /// Whether nothing is queued, resolving, held down or evicted unreported (then
    /// [`PendingQueues::poll`] has nothing to do and returns at once).
    pub fn is_idle(&self) -> bool {
        self.active == 0 && self.evictions.is_empty()
    }

    /// Frames queued now, all next hops together.
    pub fn queued_frames(&self) -> usize {
        self.cfg.pool_frames - self.free.len()
    }

    /// Queues a copy of `frame` (a whole Ethernet frame whose destination MAC the caller will
    /// write on release) until `next_hop` on `out_if` resolves. Call it after a cache miss.
    /// With `priority` (see the module documentation), a new resolution may take the slot of
    /// the oldest one without.
    pub fn enqueue(
        &mut self,
        out_if: IfIndex,
        next_hop: Ipv4Addr,
        frame: &[u8],
        now_ms: u64,
        priority: bool,
    ) -> EnqueueOutcome {
        if frame.len() > self.cfg.frame_size {
            self.stats.too_large += 1;
            return EnqueueOutcome::TooLarge;
        }
        let mut send_request = false;
        let fresh = self.start(now_ms);
        let k = match self.find(out_if, next_hop) {
            Some(k) => {
                let slot = &mut self.slots[k];
                match slot.state {
                    SlotState::HeldDown { until_ms } if now_ms < until_ms => {
                        self.stats.held_down += 1;
                        return EnqueueOutcome::Failed;
                    }
                    SlotState::HeldDown { .. } => {
                        // Hold-down over: try again.
                        slot.state = fresh;
                        slot.priority = false;
                        send_request = true;
                    }
                    _ => {}
                }
                slot.priority |= priority;
                k
            }
            None => {
                let Some(k) = self.claim_slot(priority) else {
                    self.stats.too_many_next_hops += 1;
                    return EnqueueOutcome::TooManyNextHops;
                };
                let slot = &mut self.slots[k];
                slot.out_if = out_if;
                slot.ip = next_hop;
                slot.state = fresh;
                slot.priority = priority;
                self.active += 1;
                send_request = true;
                k
            }
        };
        let slot = &mut self.slots[k];
        if slot.frames.len() >= self.cfg.queue_len {
            self.stats.queue_full += 1;
            if send_request {
                slot.defer_first_request(now_ms);
            }
            return EnqueueOutcome::QueueFull;
        }
        let Some(b) = self.free.pop() else {
            self.stats.pool_exhausted += 1;
            if send_request {
                slot.defer_first_request(now_ms);
            }
            return EnqueueOutcome::PoolExhausted;
        };
        let start = b as usize * self.cfg.frame_size;
        self.pool[start..start + frame.len()].copy_from_slice(frame);
        self.lens[b as usize] = u16::try_from(frame.len()).unwrap_or(u16::MAX);
        slot.frames.push_back(b);
        self.stats.queued += 1;
        if send_request {
            self.stats.requests += 1;
        }
        EnqueueOutcome::Queued { send_request }
    }

    /// Timers and releases; call once per batch (cheap when idle). Emits, in slot order:
    /// `Ready` for every frame whose next hop is now in `cache`, `SendRequest` for due retries,
    /// `Dropped` for next hops that failed. Hold-downs end when they expire or when the next
    /// hop shows up in the cache.
    pub fn poll(
        &mut self,
        cache: &NeighCache,
        now_ms: u64,
        emit: &mut impl FnMut(PendingEvent<'_>),
    ) {
        for (out_if, next_hop, count) in self.evictions.drain(..) {
            emit(PendingEvent::Dropped {
                out_if,
                next_hop,
                reason: DropReason::Evicted,
                count,
            });
        }
        if self.active == 0 {
            return;
        }
        let cfg = self.cfg;
        for slot in &mut self.slots {
            match slot.state {
                SlotState::Free => {}
                SlotState::Resolving {
                    started_ms,
                    sent,
                    next_ms,
                } => {
                    if let Some(mac) = cache.lookup(slot.out_if, slot.ip) {
                        while let Some(b) = slot.frames.pop_front() {
                            let start = b as usize * cfg.frame_size;
                            let len = usize::from(self.lens[b as usize]);
                            emit(PendingEvent::Ready {
                                out_if: slot.out_if,
                                next_hop: slot.ip,
                                mac,
                                frame: &mut self.pool[start..start + len],
                            });
                            self.free.push(b);
                            self.stats.released += 1;
                        }
                        slot.state = SlotState::Free;
                        self.active -= 1;
                    } else if now_ms
                        >= started_ms
                            .saturating_add(u64::from(cfg.tries).saturating_mul(cfg.retry_ms))
                    {
                        let count = slot.frames.len();
                        self.free.extend(slot.frames.drain(..));
                        self.stats.resolve_failed += count as u64;
                        self.stats.failed_next_hops += 1;
                        slot.state = SlotState::HeldDown {
                            until_ms: now_ms + cfg.hold_down_ms,
                        };
                        emit(PendingEvent::Dropped {
                            out_if: slot.out_if,
                            next_hop: slot.ip,
                            reason: DropReason::ResolveFailed,
                            count: u32::try_from(count).unwrap_or(u32::MAX),
                        });
                    } else if sent < cfg.tries && now_ms >= next_ms {
                        // On schedule, but no burst of catch-up requests after a stall.
                        let next = next_ms
                            .saturating_add(cfg.retry_ms)
                            .max(now_ms.saturating_add(1));
                        slot.state = SlotState::Resolving {
                            started_ms,
                            sent: sent + 1,
                            next_ms: next,
                        };
                        self.stats.requests += 1;
                        emit(PendingEvent::SendRequest {
                            out_if: slot.out_if,
                            target: slot.ip,
                        });
                    }
                }
                SlotState::HeldDown { until_ms } => {
                    if now_ms >= until_ms || cache.lookup(slot.out_if, slot.ip).is_some() {
                        slot.state = SlotState::Free;
                        self.active -= 1;
                    }
                }
            }
        }
    }

    /// Drops every frame queued for `out_if` and forgets its resolutions (link down). Returns
    /// how many frames were dropped.
    pub fn flush_if(&mut self, out_if: IfIndex) -> usize {
        let mut dropped = 0;
        for slot in &mut self.slots {
            if slot.state != SlotState::Free && slot.out_if == out_if {
                dropped += slot.frames.len();
                self.free.extend(slot.frames.drain(..));
                slot.state = SlotState::Free;
                self.active -= 1;
            }
        }
        dropped
    }

    fn start(&self, now_ms: u64) -> SlotState {
        SlotState::Resolving {
            started_ms: now_ms,
            sent: 1,
            next_ms: now_ms + self.cfg.retry_ms,
        }
    }

    fn find(&self, out_if: IfIndex, ip: Ipv4Addr) -> Option<usize> {
        if self.active == 0 {
            return None;
        }
        self.slots
            .iter()
            .position(|s| s.state != SlotState::Free && s.ip == ip && s.out_if == out_if)
    }

    /// A free slot or, failing that, the held-down slot closest to expiry (so a scan of dead
    /// addresses cannot lock new next hops out for a whole hold-down), or, for a frame with
    /// `priority`, the oldest resolution without priority (its frames dropped, reported by the
    /// next poll).
    fn claim_slot(&mut self, priority: bool) -> Option<usize> {
        if let Some(k) = self.slots.iter().position(|s| s.state == SlotState::Free) {
            return Some(k);
        }
        let held_down = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(k, s)| match s.state {
                SlotState::HeldDown { until_ms } => Some((until_ms, k)),
                _ => None,
            })
            .min()
            .map(|(_, k)| k);
        let k = match held_down {
            Some(k) => k,
            None if priority => self.evict_oldest_without_priority()?,
            None => return None,
        };
        self.slots[k].state = SlotState::Free;
        self.active -= 1;
        Some(k)
    }

    /// Empties the oldest resolving slot no frame with priority asked for, and returns it.
    fn evict_oldest_without_priority(&mut self) -> Option<usize> {
        let k = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(k, s)| match s.state {
                SlotState::Resolving { started_ms, .. } if !s.priority => Some((started_ms, k)),
                _ => None,
            })
            .min()
            .map(|(_, k)| k)?;
        let slot = &mut self.slots[k];
        let count = slot.frames.len();
        self.free.extend(slot.frames.drain(..));
        self.stats.evicted += count as u64;
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        if self.evictions.len() < self.evictions.capacity() {
            self.evictions.push((slot.out_if, slot.ip, count));
        } else if let Some(last) = self.evictions.last_mut() {
            // More evictions than slots between two polls (a poll runs every batch): the
            // count goes on the last report, so that no dropped frame goes uncounted.
            last.2 = last.2.saturating_add(count);
        }
        Some(k)
    }
}

#[cfg(test)]
mod tests;
