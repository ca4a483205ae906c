//! [`State`] and the [`StateTable`] shared by all workers.
//!
//! # Keys
//!
//! Every state lives under two keys of the key index ([`index`]): its stack key (the first
//! packet's 5-tuple before translation: on the inside for outbound NAT) and its reply key, the
//! reversed wire key (the answer's 5-tuple as it arrives, before translation: on the outside).
//! Whichever way a packet goes, its own 5-tuple finds the state in one lookup, and the slot says
//! which [`Direction`] the packet goes. A slot is one word (the state's address, the direction
//! and a hash tag): the key is not copied into the index but read from the state. A flow whose
//! stack key equals its own reply key (src == dst and sport == dport, a LAND packet) cannot get
//! a state: its second key collides with its first.
//!
//! # Locking
//!
//! - Workers look states up without a lock ([`StateTable::with_state`]): the key index is read
//!   inside an epoch guard (a worker holds one per batch, [`StateTable::read_section`]), and a
//!   removed state is released only once no guard of its time is left. No reference count is
//!   touched; the worker then takes the write side of the state's sequence lock to track the
//!   packet (one compare-and-swap; readers such as state sync never block it, see [`seqlock`]).
//!   [`StateTable::lookup`] clones the `Arc` for callers that keep the state past the lookup.
//! - Writers of the key index (insert, remove) take a stripe lock chosen by the key, so one
//!   key's writers serialise; lookups never wait for them.
//! - The [`SyncId`] index is a separate array of 4096 `Mutex<HashSet>` shards, each entry the
//!   state's `Arc` hashed by its id (8 bytes a slot). No worker reads it per packet; insert and
//!   remove touch one shard. It is also the expiry walk's cursor. Cost: one 9-byte slot per
//!   state (x the load factor), one mutex per insert and remove.
//! - Lock order: key stripe, then id shard, then a state's write lock. No code takes a table
//!   lock while holding a state's write lock, and nothing takes a key stripe while holding an id shard.
//!
//! # Insert and remove
//!
//! Insert puts the reply key first (that is where NAT probes for a free port), then the id,
//! then the stack key; any collision rolls back what was put, so a state ends up under both keys
//! or none. A lookup may see a state under its reply key alone for the few nanoseconds of an
//! insert, before its first packet has even left. The remover owns a deletion by taking the id
//! out of the id index; it then marks the state removed and takes both keys out (only if they
//! still point to that state). An insert that finds its state marked removed once its stack key
//! is in takes the key out itself, so no key outlives its state.
//!
//! # Memory
//!
//! `State` is 120 bytes (with the `Arc` header 136, a 144-byte malloc chunk). The key index is
//! mapped whole at start for the larger of the configured capacity and the state limit, at most
//! half full: 64-byte buckets of 7 slots, 37 bytes per state of the limit; the id index adds one
//! 9-byte slot per state (x its load factor). [`StateTable::memory_estimate`] computes it; the
//! `#[ignore]`d test `one_million_states` reports it with the process RSS. A limit raised at run
//! time above the size the index was mapped for is held to that size until a restart
//! ([`StateTable::set_limit`]): beyond it, lookups would probe ever further.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::key::{FlowKey, SyncId, PROTO_TCP};
use super::src_nodes::{SrcLimits, SrcNodes, SrcRefusal, DEFAULT_MAX_NODES};
use super::tcp::{self, TcpPeer, TcpSegment, TrackError};
use super::timeouts::{Adaptive, Millis, TimeoutClass, Timeouts};
use super::Direction;
use crate::journal::{JournalKind, NoJournal, Origin, Producer, StateJournal};
use index::{Hashed, KeyIndex, Refused};
use seqlock::SeqLock;

mod index;
mod insert;
mod seqlock;
mod sweep;
mod track;

/// Why a state could not be inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// One of the state's keys (or its sync id) already belongs to another state.
    Exists,
    /// The table holds its configured limit of states.
    StateLimit,
    /// Source NAT found no free port for this flow in the allowed range.
    PortExhausted,
    /// The rule's `max_src_states`: the source holds that many states of the rule.
    SrcStates,
    /// The rule's `max_src_conn_rate`: the source opens states faster than that.
    SrcRate,
    /// The source-node table holds its limit of sources (pf's `set limit src-nodes`).
    SrcNodes,
}

impl std::fmt::Display for InsertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InsertError::Exists => "a state with the same key or sync id exists",
            InsertError::StateLimit => "state table full (state limit reached)",
            InsertError::PortExhausted => "no free NAT port for this flow",
            InsertError::SrcStates => "the source holds the rule's max_src_states states",
            InsertError::SrcRate => "the source exceeds the rule's max_src_conn_rate",
            InsertError::SrcNodes => "source-node table full (src node limit reached)",
        })
    }
}

impl std::error::Error for InsertError {}

// The expire word: last activity in ms (upper 47 bits: 4400 years), the source-node mark
// (bit 16, set once at creation: the state counts in its rule's source node), state sync's update count
// (bits 8-15), a removed flag (bit 7), state sync's queued flag (bit 6), the two from-peer
// flags (bits 4-5), the timeout class (bits 0-3). The two sync fields are state sync's coalescing mark (see `State::mark_queued`):
// they live in this word so that `State` stays 120 bytes (a separate `AtomicU8` would make it
// 128, a 160-byte malloc chunk instead of 144).
const CLASS_MASK: u64 = 0x0f;
/// Set while the state's last change came from the peer and this box has not yet tracked a
/// segment of it strictly in that direction (original, reply): its windows may lag, see
/// `tcp::catch_up`.
const FROM_PEER_ORIGINAL: u64 = 0x10;
const FROM_PEER_REPLY: u64 = 0x20;
const FROM_PEER: u64 = FROM_PEER_ORIGINAL | FROM_PEER_REPLY;
/// How long after a state's last update a segment without data through a taken-over VIP may
/// still catch its windows up (`State::track_tcp_on_takeover`): a takeover's detection (3 x
/// advbase plus the skew: ~3 s at pfSense's advbase 1, ~15 s at 5) and the first segments after
/// it, with room. Segments with data are not bound by it.
pub const CATCH_UP_AFTER_SYNC: Millis = 30_000;
const REMOVED: u64 = 0x80;
const SYNC_QUEUED: u64 = 0x40;
const SYNC_UPD_SHIFT: u32 = 8;
const SYNC_UPD: u64 = 0xff << SYNC_UPD_SHIFT;
/// The state counts in a source node (`src_nodes`): removing it releases one there.
const SRC_TRACKED: u64 = 1 << 16;
const LAST_SHIFT: u32 = 17;

#[inline]
fn pack_expire(last: Millis, class: TimeoutClass) -> u64 {
    (last << LAST_SHIFT) | class as u64
}

#[inline]
fn unpack_expire(word: u64) -> (Millis, TimeoutClass, bool) {
    let class = TimeoutClass::from_number((word & CLASS_MASK) as u8).unwrap_or(TimeoutClass::Purge);
    (word >> LAST_SHIFT, class, word & REMOVED != 0)
}

/// The mutable part of a state behind its sequence lock.
#[derive(Debug, Clone, Copy, Default)]
struct Peers {
    src: TcpPeer,
    dst: TcpPeer,
    packets: [u64; 2],
    bytes: [u64; 2],
}

/// A copy of a state's mutable part, for the CLI and state sync, and the argument of
/// [`State::modify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracking {
    /// The side that sent the first packet.
    pub src: TcpPeer,
    /// The other side.
    pub dst: TcpPeer,
    /// Packets accepted, `[original, reply]`.
    pub packets: [u64; 2],
    /// Bytes accepted (IP length), `[original, reply]`.
    pub bytes: [u64; 2],
    /// When the last packet that refreshes the state was accepted.
    pub last: Millis,
    /// The timeout that applies from `last`.
    pub timeout: TimeoutClass,
}

/// One connection: its identity, keys and the rule that let it in (immutable), and its tracking
/// (behind a sequence lock; the expiry word is an atomic so the expiry walk never takes it).
#[derive(Debug)]
pub struct State {
    /// pfsync identity.
    pub id: SyncId,
    /// Creation time in seconds of the caller's clock (pfsync exports seconds; 4 bytes saved).
    created_s: u32,
    /// The number of the rule that created the state.
    pub rule: u32,
    /// The first packet's key before translation (inside, pre-NAT for outbound NAT).
    pub stack: FlowKey,
    /// The reply's key as it arrives, before translation: the reversed wire key. Stored rather
    /// than `wire` because the key map borrows its keys from the state.
    reply: FlowKey,
    expire: AtomicU64,
    peers: SeqLock<Peers>,
}

impl State {
    /// IP protocol of the flow.
    #[inline]
    pub fn proto(&self) -> u8 {
        self.stack.proto
    }

    /// The first packet's key after translation (outside, post-NAT for outbound NAT); equals
    /// `stack` without NAT.
    #[inline]
    pub fn wire(&self) -> FlowKey {
        self.reply.reversed()
    }

    /// The key under which packets of `dir` find this state.
    #[inline]
    pub fn key(&self, dir: Direction) -> &FlowKey {
        match dir {
            Direction::Original => &self.stack,
            Direction::Reply => &self.reply,
        }
    }

    /// Creation time (to the second).
    #[inline]
    pub fn created(&self) -> Millis {
        u64::from(self.created_s) * 1000
    }

    /// The direction of a packet whose own key found this state.
    #[inline]
    pub fn direction_of(&self, key: &FlowKey) -> Direction {
        if *key == self.stack {
            Direction::Original
        } else {
            Direction::Reply
        }
    }

    /// True once the table has removed the state (a worker may still hold it for a moment).
    #[inline]
    pub fn is_removed(&self) -> bool {
        self.expire.load(Ordering::Acquire) & REMOVED != 0
    }

    /// Last activity and timeout class.
    #[inline]
    pub fn expire(&self) -> (Millis, TimeoutClass) {
        let (last, class, _) = unpack_expire(self.expire.load(Ordering::Relaxed));
        (last, class)
    }

    /// Whether the expiry walk removes the state at `now`: past its deadline, or, under
    /// `pressure`, carrying no connection (embryonic or closed) and idle for
    /// [`EMBRYONIC_GRACE`]. One load of the expiry word.
    #[inline]
    fn evictable(
        &self,
        t: &Timeouts,
        adaptive: &Adaptive,
        states: u64,
        now: Millis,
        pressure: bool,
    ) -> bool {
        let (last, class, removed) = unpack_expire(self.expire.load(Ordering::Relaxed));
        !removed
            && (now >= t.deadline(adaptive, class, last, states)
                || (pressure
                    && (class.is_embryonic() || class == TimeoutClass::TcpClosed)
                    && now >= last.saturating_add(EMBRYONIC_GRACE)))
    }

    /// Start loading the expiry word [`State::evictable`] reads (the expiry walk's one cache
    /// miss per state).
    #[inline]
    fn prefetch_expiry(&self) {
        index::prefetch(std::ptr::from_ref(&self.expire).cast());
    }

    /// When the state expires with `states` live states, or `None` if already removed.
    pub fn deadline(&self, t: &Timeouts, adaptive: &Adaptive, states: u64) -> Option<Millis> {
        let (last, class, removed) = unpack_expire(self.expire.load(Ordering::Relaxed));
        (!removed).then(|| t.deadline(adaptive, class, last, states))
    }

    /// The write side of the tracking (see [`seqlock`]).
    #[inline]
    fn lock(&self) -> seqlock::WriteGuard<'_, Peers> {
        self.peers.write()
    }

    // Only under the peers write lock: every writer of the word holds it, except state sync's
    // `mark_queued`/`count_sync_update`, whose racing sets this store may undo (see there).
    #[inline]
    fn set_expire(&self, last: Millis, class: TimeoutClass) {
        let keep = self.expire.load(Ordering::Relaxed)
            & (REMOVED | SYNC_QUEUED | SYNC_UPD | FROM_PEER | SRC_TRACKED);
        self.expire
            .store(pack_expire(last, class) | keep, Ordering::Release);
    }

    /// State sync's coalescing mark (pfsync's "already queued"): set it, and return true if it
    /// was clear, i.e. the caller must queue the state. Lock-free, for the workers' journal.
    ///
    /// A worker's `set_expire` racing with this (the other direction, on another worker) may
    /// store the word without the mark: the state is then queued once more, a duplicate the
    /// sync thread sends twice. Never the other way round: the mark is cleared only under the
    /// state's write lock ([`State::clear_queued`]), so no stale mark can be written back.
    #[inline]
    pub fn mark_queued(&self) -> bool {
        if self.expire.load(Ordering::Relaxed) & SYNC_QUEUED != 0 {
            return false;
        }
        self.expire.fetch_or(SYNC_QUEUED, Ordering::AcqRel) & SYNC_QUEUED == 0
    }

    /// True while the state is marked queued for sync.
    #[inline]
    pub fn is_queued(&self) -> bool {
        self.expire.load(Ordering::Relaxed) & SYNC_QUEUED != 0
    }

    /// Count one update of a queued state (pfsync's `sync_updates`), up to `limit`; returns
    /// the count before this one (so exactly one caller sees `limit - 1`). At `limit` it
    /// stays. Lost counts (a racing `set_expire`) only delay the push. `limit` <= 128.
    #[inline]
    pub fn count_sync_update(&self, limit: u8) -> u8 {
        let word = self.expire.load(Ordering::Relaxed);
        let n = ((word & SYNC_UPD) >> SYNC_UPD_SHIFT) as u8;
        if n >= limit.min(128) {
            return n;
        }
        // Below 128 plus one per racing worker: never carries into `last`.
        let before = self
            .expire
            .fetch_add(1 << SYNC_UPD_SHIFT, Ordering::Relaxed);
        ((before & SYNC_UPD) >> SYNC_UPD_SHIFT) as u8
    }

    /// Clear the sync mark and the update count (the sync thread, when it takes the state off
    /// its queue, before it reads the tracking). Under the state's write lock, so that a worker's
    /// `set_expire` cannot write back a stale mark: every change a worker makes after this
    /// either is seen by the sync thread's next read of the tracking or queues the state anew.
    pub fn clear_queued(&self) {
        let _p = self.lock();
        self.expire
            .fetch_and(!(SYNC_QUEUED | SYNC_UPD), Ordering::AcqRel);
    }

    /// Marks the state as copied from the peer: its windows may lag (see `tcp::catch_up`).
    pub fn mark_from_peer(&self) {
        let _p = self.lock();
        self.expire.fetch_or(FROM_PEER, Ordering::AcqRel);
    }

    /// True while a direction of the state has not been tracked strictly since it came from
    /// the peer.
    pub fn is_from_peer(&self) -> bool {
        self.expire.load(Ordering::Relaxed) & FROM_PEER != 0
    }

    fn mark_removed(&self) {
        let _p = self.lock();
        self.expire.fetch_or(REMOVED, Ordering::AcqRel);
    }

    /// True when the state counts in its rule's source node (see `src_nodes`).
    #[inline]
    pub fn is_src_tracked(&self) -> bool {
        self.expire.load(Ordering::Relaxed) & SRC_TRACKED != 0
    }
}

/// What a new state starts with, from its first packet (or from the peer, for sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewState {
    /// First packet's key before translation.
    pub stack: FlowKey,
    /// First packet's key after translation ([`StateTable::insert_nat`] chooses its source port).
    pub wire: FlowKey,
    /// Number of the rule that matched.
    pub rule: u32,
    /// The sender of the first packet.
    pub src: TcpPeer,
    /// The other side.
    pub dst: TcpPeer,
    /// Initial timeout class.
    pub timeout: TimeoutClass,
    /// Length of the first packet, counted in the original direction (0: count nothing).
    pub bytes: u32,
}

impl NewState {
    /// The state a first packet creates (pf's `pf_create_state`), without translation
    /// (`wire == stack`). `seg` is the TCP segment for TCP, `None` otherwise. For TCP, pf's
    /// default `flags S/SA` creates states from [`TcpSegment::is_initial_syn`] segments only:
    /// that check is the filter's.
    pub fn first_packet(stack: FlowKey, rule: u32, seg: Option<&TcpSegment>, bytes: u32) -> Self {
        let (src, dst, timeout) = match (stack.proto, seg) {
            (PROTO_TCP, Some(seg)) => {
                let (s, d) = tcp::first_packet(seg);
                (s, d, TimeoutClass::TcpFirst)
            }
            (proto, _) => tcp::first_stateless(proto),
        };
        NewState {
            stack,
            wire: stack,
            rule,
            src,
            dst,
            timeout,
            bytes,
        }
    }
}

/// State table settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableConfig {
    /// This node's pfsync creator id (non-zero, distinct on each box).
    pub creator: u32,
    /// Maximum number of states (pf's `set limit states`).
    pub limit: u32,
    /// Timeouts; their `adaptive: None` means 60%/120% of `limit`.
    pub timeouts: Timeouts,
    /// States to allocate the id index's room for up front, so that its shards do not grow
    /// (rehash under their locks) while traffic ramps up. 0: grow on demand, which tandemd
    /// does: presized for a large limit, the shards spread a small table over megabytes, and
    /// each insert misses the cache (new connections 18-37 % slower at 10,000 states in a table
    /// for a million). The key index is mapped for the larger of this and `limit` either way.
    pub capacity: usize,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            creator: 1,
            limit: 100_000,
            timeouts: Timeouts::default(),
            capacity: 0,
        }
    }
}

/// Under pressure (the table holds [`PRESSURE_PERCENT`] of its limit or more), embryonic TCP
/// states (no answer yet, or handshake not completed) idle this long are evicted by the expiry
/// walk, whatever their timeout: a SYN flood's states never progress, a real handshake completes
/// within a round trip, and a client whose state went retransmits its SYN (Linux after 1 s, then
/// 3 s), which creates it again. Closed TCP states (a RST, or both FINs acknowledged: what a
/// flood against a closed port leaves, `tcp.closed` 90 s) go the same way: they carry no
/// connection, and a late segment of one is dropped as it would be a moment later. Without this, a table filled by a flood stays full for
/// `tcp.first` scaled by the adaptive factor (120 s x 1/3 = 40 s at the limit with pf's
/// defaults), and every new connection is refused all that time. Established states are not
/// touched: a flood at the limit cannot push them out (pf refuses new states at the limit, and
/// so does tandem).
pub const EMBRYONIC_GRACE: Millis = 1000;
/// See [`EMBRYONIC_GRACE`].
pub const PRESSURE_PERCENT: u64 = 90;
/// The expiry walk looks at `len / EXPIRE_SLICES` states per call (at least
/// [`MIN_EXPIRE_BUDGET`]): called every 100 ms, a pass over the table takes 10 s at any size, as
/// pf's purge thread covers its table once per `interval` (10 s). Measured cost (perf/RESULTS.md,
/// `state/expire`): see [`StateTable::expire_budget`].
pub const EXPIRE_SLICES: usize = 100;
/// The smallest budget of an expiry call: small tables are walked whole every call.
pub const MIN_EXPIRE_BUDGET: usize = 20_000;

/// Id index shards: the unit of the expiry walk; ~250 states per shard at 1M states.
const ID_SHARDS: usize = 4096;

/// An id index entry: the state, hashed and compared by its [`SyncId`] (8 bytes a slot).
#[derive(Debug)]
struct ById(Arc<State>);

impl Borrow<SyncId> for ById {
    fn borrow(&self) -> &SyncId {
        &self.0.id
    }
}

impl Hash for ById {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.id.hash(h);
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

type IdShard = Mutex<HashSet<ById, ahash::RandomState>>;

/// Who a new state is and where it comes from: what [`StateTable::insert_probing`] builds
/// and journals, whichever way the caller chose its wire key.
#[derive(Clone, Copy)]
pub(in crate::state) struct Birth<'a> {
    pub id: SyncId,
    pub new: &'a NewState,
    /// Creation time (the peer's, rebased, for a synced state).
    pub created: Millis,
    /// Last activity.
    pub last: Millis,
    pub origin: Origin<'a>,
    /// The state counts in its rule's source node (see `src_nodes`).
    pub src_tracked: bool,
    /// The worker's read section, whose epoch pin the insert then uses (else it pins).
    pub section: Option<&'a ReadSection>,
}

impl<'a> Birth<'a> {
    /// A state this box creates at `now`, journaled into `by`'s queue.
    pub fn local(
        id: SyncId,
        new: &'a NewState,
        now: Millis,
        by: &'a Producer,
        src_tracked: bool,
    ) -> Self {
        Birth {
            id,
            new,
            created: now,
            last: now,
            origin: Origin::Local(by),
            src_tracked,
            section: None,
        }
    }

    /// The same birth under `section`'s epoch pin.
    pub fn in_section(self, section: Option<&'a ReadSection>) -> Self {
        Birth { section, ..self }
    }
}

/// A key hashed by [`StateTable::prefetch`], for [`StateTable::prefetch_state`].
#[derive(Debug, Clone, Copy)]
pub struct Prefetched {
    at: Hashed,
}

/// A stretch of lock-free reads of the key index, held by a worker around a batch: the
/// lookups inside run under its epoch pin ([`StateTable::with_state_in`]), so a batch pays one
/// fence instead of one a packet, and no pin at all per packet. Not to be held across a wait:
/// while a thread stays pinned, no removed state is released.
#[must_use]
#[derive(Debug)]
pub struct ReadSection {
    pin: crossbeam_epoch::Guard,
}

/// All states, shared by all workers. See the [module documentation](self).
pub struct StateTable {
    keys: KeyIndex,
    ids: Box<[IdShard]>,
    count: AtomicUsize,
    next_id: AtomicU64,
    creator: u32,
    limit: AtomicU32,
    timeouts: RwLock<Timeouts>,
    cursor: AtomicUsize,
    journal: Arc<dyn StateJournal>,
    pub(super) port_hasher: ahash::RandomState,
    src_nodes: SrcNodes,
}

impl std::fmt::Debug for StateTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateTable")
            .field("creator", &self.creator)
            .field("len", &self.len())
            .field("limit", &self.limit())
            .finish_non_exhaustive()
    }
}

impl StateTable {
    /// An empty table that journals nothing.
    pub fn new(config: TableConfig) -> Self {
        Self::with_journal(config, Arc::new(NoJournal))
    }

    /// An empty table that journals the local changes made through its producers
    /// ([`StateTable::producer`]) to `journal`.
    pub fn with_journal(config: TableConfig, journal: Arc<dyn StateJournal>) -> Self {
        let hasher = ahash::RandomState::new();
        let per_shard = config.capacity.div_ceil(ID_SHARDS);
        let ids = (0..ID_SHARDS)
            .map(|_| Mutex::new(HashSet::with_capacity_and_hasher(per_shard, hasher.clone())))
            .collect();
        let table = StateTable {
            keys: KeyIndex::for_states(config.capacity.max(config.limit as usize)),
            ids,
            count: AtomicUsize::new(0),
            next_id: AtomicU64::new(first_id_of_this_run()),
            creator: config.creator,
            limit: AtomicU32::new(0),
            timeouts: RwLock::new(config.timeouts),
            cursor: AtomicUsize::new(0),
            journal,
            port_hasher: ahash::RandomState::new(),
            src_nodes: SrcNodes::new(DEFAULT_MAX_NODES),
        };
        table.set_limit(config.limit);
        table
    }

    /// This node's creator id.
    pub fn creator(&self) -> u32 {
        self.creator
    }

    /// Number of states.
    #[inline]
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// True when there is no state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the key index, mapped whole at start for the state limit then (`TableConfig`).
    pub fn index_bytes(&self) -> usize {
        self.keys.bytes()
    }

    /// The state limit.
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Change the limit (existing states above it stay until they expire). The key index was
    /// sized at start for the limit then (`TableConfig`): a limit above that size is held to it
    /// until a restart, rather than let lookups probe ever further. Returns the limit in force.
    pub fn set_limit(&self, limit: u32) -> u32 {
        let sized = u32::try_from(self.keys.sized_for()).unwrap_or(u32::MAX);
        let limit = limit.min(sized);
        self.limit.store(limit, Ordering::Relaxed);
        limit
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> Timeouts {
        *self.timeouts.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Change the timeouts (takes effect at the next expiry walk, for existing states too).
    pub fn set_timeouts(&self, t: Timeouts) {
        *self
            .timeouts
            .write()
            .unwrap_or_else(PoisonError::into_inner) = t;
    }

    /// The adaptive bounds in force: configured, or 60%/120% of the limit.
    pub fn adaptive(&self) -> Adaptive {
        self.timeouts()
            .adaptive
            .unwrap_or_else(|| Adaptive::for_limit(self.limit()))
    }

    /// A fresh local sync id (ids start at 1).
    #[inline]
    /// A new state's identity. Ids of one run start from the start time (see
    /// `first_id_of_this_run`): a restarted box must not hand out again the ids its previous run
    /// used, which its peer still holds and sends back in the bulk update.
    pub fn next_sync_id(&self) -> SyncId {
        SyncId {
            creator: self.creator,
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }

    /// Run `f` on the state a packet with key `key` belongs to, and the packet's direction,
    /// without a lock: no reference count is touched, nothing is allocated, nothing shared is
    /// written. The lookup pins the epoch itself; [`StateTable::with_state_in`] is the same
    /// inside a worker's [`ReadSection`].
    ///
    /// `f` may not keep the reference past its return (clone the `Arc` for that). To remove a
    /// state (port reuse), return that decision and use [`StateTable::lookup`] afterwards.
    #[inline]
    pub fn with_state<R>(
        &self,
        key: &FlowKey,
        f: impl FnOnce(&Arc<State>, Direction) -> R,
    ) -> Option<R> {
        self.with_state_in(None, key, f)
    }

    /// [`StateTable::with_state`] under `section`'s epoch pin when there is one: no pin of its
    /// own. Even nested in an outer pin, a pin is a thread-local lookup and two counter updates,
    /// ~44 instructions, 4 % of an established packet's.
    #[inline]
    pub fn with_state_in<R>(
        &self,
        section: Option<&ReadSection>,
        key: &FlowKey,
        f: impl FnOnce(&Arc<State>, Direction) -> R,
    ) -> Option<R> {
        let pinned;
        let guard = match section {
            Some(s) => &s.pin,
            None => {
                pinned = crossbeam_epoch::pin();
                &pinned
            }
        };
        self.keys.with(key, self.keys.hashed(key), guard, f)
    }

    /// The state of key `key` and the packet's direction, as an owned `Arc` (two atomic
    /// operations on the state's reference count more than [`StateTable::with_state`]).
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<(Arc<State>, Direction)> {
        self.with_state(key, |s, d| (Arc::clone(s), d))
    }

    /// Start a [`ReadSection`] (a worker's batch).
    #[inline]
    pub fn read_section(&self) -> ReadSection {
        ReadSection {
            pin: crossbeam_epoch::pin(),
        }
    }

    /// Stage 1 of a batch's lookahead: hash `key` and start loading its bucket. See
    /// `pipeline::lookahead`.
    #[inline]
    pub fn prefetch(&self, key: &FlowKey) -> Prefetched {
        let at = self.keys.hashed(key);
        self.keys.prefetch_bucket(at);
        Prefetched { at }
    }

    /// Stage 2, a few packets later: start loading the state the bucket points to.
    #[inline]
    pub fn prefetch_state(&self, p: Prefetched) {
        self.keys.prefetch_state(p.at);
    }

    /// The state with pfsync identity `id`.
    pub fn get_by_id(&self, id: &SyncId) -> Option<Arc<State>> {
        self.id_shard(id).get(id).map(|b| Arc::clone(&b.0))
    }

    /// A new producer: the right of one thread (a worker, the housekeeping, the control thread)
    /// to change this table with its changes journaled (see [`crate::journal`]).
    pub fn producer(&self) -> Producer {
        Producer::new(self.journal.queue())
    }

    /// Journal an update of `state` made by `by` (its tracking moved). Safe inside
    /// [`StateTable::with_state`].
    #[inline]
    pub fn updated(&self, state: &Arc<State>, by: &Producer) {
        by.record(JournalKind::Update, state);
    }

    /// Insert the state `birth` describes, its wire key the first of `wires` whose reply key
    /// is free (`exhausted` if none is). The reply key is taken first, so the probe and the
    /// claim are one step.
    pub(super) fn insert_probing(
        &self,
        birth: Birth<'_>,
        wires: impl Iterator<Item = FlowKey>,
        exhausted: InsertError,
    ) -> Result<Arc<State>, InsertError> {
        let Birth {
            id,
            new,
            origin,
            src_tracked,
            section,
            ..
        } = birth;
        let limit = self.limit() as usize;
        // One epoch pin for the whole insert: the worker's read section's, or one of its own.
        let pinned;
        let guard = match section {
            Some(s) => &s.pin,
            None => {
                pinned = crossbeam_epoch::pin();
                &pinned
            }
        };
        let release_src = || {
            if src_tracked {
                self.src_nodes.release(new.rule, new.stack.src);
            }
        };
        // Every failure gives back the count taken here and the source node's count the caller
        // took for a tracked state ([`StateTable::insert_limited`]).
        let fail = |e| {
            self.count.fetch_sub(1, Ordering::Relaxed);
            release_src();
            Err(e)
        };
        // Compare-and-swap rather than add-then-undo: `len()` never shows more than the limit,
        // not even for the moment of a refused insert (the CLI and the lab test read it).
        let reserved = self
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c < limit).then_some(c + 1)
            });
        if reserved.is_err() {
            release_src();
            return Err(InsertError::StateLimit);
        }
        // No search for the stack key first: a duplicate is rare (a worker's caller has just
        // missed the key; a synced state's caller found no state with its id), and the stack
        // key's insert below refuses one. What was done before is then undone, and the state
        // marked removed, so that a packet that found it by its reply key meanwhile does not
        // get it sent to the peer.

        // One allocation, re-aimed at the next candidate while nobody else can see it.
        let mut spare: Option<Arc<State>> = None;
        let mut placed = None;
        for wire in wires {
            let state = match spare.take() {
                Some(mut s) => match Arc::get_mut(&mut s) {
                    Some(unshared) => {
                        unshared.reply = wire.reversed();
                        s
                    }
                    None => Arc::new(self.build(&birth, wire)),
                },
                None => Arc::new(self.build(&birth, wire)),
            };
            match self.keys.insert(&state, Direction::Reply, guard) {
                Ok(()) => {
                    placed = Some(state);
                    break;
                }
                Err(Refused::Exists) => spare = Some(state),
                Err(Refused::Full) => return fail(InsertError::StateLimit),
            }
        }
        let Some(state) = placed else {
            // Every reply key taken (one candidate only, for a static port or a synced state):
            // by this very flow, or the port range is exhausted. The cold path can ask.
            if self.keys.contains(&new.stack, guard) {
                return fail(InsertError::Exists);
            }
            return fail(exhausted);
        };
        let unreply = || {
            state.mark_removed();
            self.keys.remove(&state.reply, &state, guard);
        };

        if !self.id_shard(&id).insert(ById(Arc::clone(&state))) {
            unreply();
            return fail(InsertError::Exists);
        }

        if let Err(refused) = self.keys.insert(&state, Direction::Original, guard) {
            // Lost a race with another insert of the same flow, or no room.
            let owned = self.id_shard(&id).remove(&id);
            unreply();
            if !owned {
                // A remover (the expiry walk found it by id) took it out first and gives back
                // its count and its source node's (its keys may still be on their way out).
                return Err(InsertError::Exists);
            }
            return fail(match refused {
                Refused::Exists => InsertError::Exists,
                Refused::Full => InsertError::StateLimit,
            });
        }

        if state.is_removed() {
            // Removed between our id insert and our stack key insert: the remover may have
            // missed the stack key, take it out ourselves.
            self.keys.remove(&state.stack, &state, guard);
        } else {
            origin.record(JournalKind::Insert, &state);
        }
        Ok(state)
    }
}

/// The first state id of this run: the Unix time in microseconds times 16. A run would have to
/// create more than 16 states per microsecond of its life (16 million per second, sustained) to
/// reach the ids a later run starts from, so restarts never reuse ids, even within a second
/// (pf uses `time_second << 32`, which a restart within the same second would repeat).
fn first_id_of_this_run() -> u64 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    u64::try_from(micros).unwrap_or(u64::MAX >> 4) << 4
}
