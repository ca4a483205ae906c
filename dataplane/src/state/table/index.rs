//! The key index: every state under its two keys, read without a lock.
//!
//! # Layout
//!
//! A fixed array of 64-byte buckets (one cache line each), each with [`SLOTS`] slots and a meta
//! word. A slot is one `u64`: the state's address (an `Arc<State>` turned into a raw pointer:
//! the index owns one reference per slot), the key's direction in bit 0 (a `State` is
//! 8-aligned) and 16 bits of the key's hash in bits 48-63 (Linux gives user space 47-bit
//! addresses on x86-64 and 48-bit ones on aarch64 unless a program asks for more). 0 is empty.
//! The meta word holds a 4-bit hash nibble per slot (0: empty) in bits 0-27 and the bucket's
//! overflow count in bits 32-63, so that one load tells a lookup which slots may hold its key,
//! usually none or one, as SwissTable's control bytes do.
//!
//! A key lives in its home bucket or, when that is full, in one of the next ones; every bucket
//! it passed over counts it in its overflow count (as Folly's F14 tables do). A lookup reads the
//! home bucket's meta word, compares the slots whose nibble matches (their full tag, then the
//! key), and goes on to the next bucket only while the overflow count says some key did. A
//! removal empties its slot and gives back the counts it took, so a table with churn needs no
//! tombstones and no rebuild.
//!
//! # Concurrency
//!
//! Readers take no lock and write nothing shared: inside an epoch guard (crossbeam-epoch) they
//! load slots with acquire ordering, so a state published by an insert is seen whole. Writers
//! (insert, remove) serialise per key on a stripe lock chosen by the key's home bucket, so that
//! two inserts of one key cannot both succeed and a key is never removed while it is inserted;
//! they claim slots by compare-and-swap, because a writer of another stripe may spill into the
//! same bucket. A removed slot's reference is given back through the epoch, once every reader
//! that may have loaded the address has dropped its guard.
//!
//! # Size
//!
//! The table never grows: moving keys under readers that take no lock would need a second
//! table and a migration on every lookup. It is sized once for the state limit at most half
//! full (`for_states`), and an insert that finds no free slot within [`MAX_PROBE`] buckets
//! fails: the caller counts it as a full table. The buckets are one anonymous mapping, advised
//! onto 2 MiB pages when large, so a million states cost TLB entries by the dozen, not by the
//! ten thousand.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_epoch::Guard;

use super::State;
use crate::state::key::FlowKey;
use crate::state::Direction;

/// Slots per bucket: 7 x 8 bytes and the meta word fill one cache line.
pub(super) const SLOTS: usize = 7;
/// How many buckets an insert looks at, from the key's home, for a free slot.
const MAX_PROBE: usize = 32;
/// Writer stripes: one key's writers serialise, different keys' rarely meet.
const STRIPES: usize = 1024;
/// Buckets of a table: none below this (tests build many small tables).
const MIN_BUCKETS: usize = 64;
/// Above this many states the table is sized as for this many (a 1 GiB mapping): the limit can
/// be set to `u32::MAX`, which no box holds.
const MAX_SIZED_STATES: usize = 1 << 24;

const TAG_SHIFT: u32 = 48;
const DIR_BIT: u64 = 1;
const ADDR_MASK: u64 = ((1 << TAG_SHIFT) - 1) & !DIR_BIT;

#[repr(C, align(64))]
pub(super) struct Bucket {
    slots: [AtomicU64; SLOTS],
    /// Per slot a 4-bit nibble of its key's hash (0: empty) in bits 0-27; in bits 32-63 the
    /// number of keys whose home is this bucket or an earlier one and that live after it.
    meta: AtomicU64,
}

const NIBBLES: u64 = 0x0111_1111;
const NIBBLE_HIGH: u64 = 0x0888_8888;
const OVERFLOW_ONE: u64 = 1 << 32;

/// The slots of `meta` whose nibble may be `nibble`: a bit set at bit 4i+3 for slot i. Exact
/// for every slot below the first match, possibly a false match above it (a borrow): the
/// caller checks the slot itself.
#[inline]
fn nibble_matches(meta: u64, nibble: u64) -> u64 {
    let x = (meta & 0x0fff_ffff) ^ (nibble * NIBBLES);
    x.wrapping_sub(NIBBLES) & !x & NIBBLE_HIGH
}

/// Why an insert did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// The key is in the index already.
    Exists,
    /// No free slot within [`MAX_PROBE`] buckets of the key's home.
    Full,
}

/// See the [module documentation](self).
pub(super) struct KeyIndex {
    map: memmap2::MmapMut,
    /// The states the index was sized for (at most half full with two keys each).
    states: usize,
    buckets: usize,
    stripes: Box<[Mutex<()>]>,
    hasher: ahash::RandomState,
}

impl std::fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyIndex")
            .field("buckets", &self.buckets)
            .finish_non_exhaustive()
    }
}

/// A key's place: its home bucket and its hash tag.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hashed {
    home: usize,
    tag: u64,
    nibble: u64,
}

impl KeyIndex {
    /// An empty index for `states` states (two keys each) at most half full.
    pub fn for_states(states: usize) -> Self {
        let states = states.clamp(1, MAX_SIZED_STATES);
        let keys = 2 * states;
        let buckets = (2 * keys).div_ceil(SLOTS).max(MIN_BUCKETS);
        let bytes = buckets * std::mem::size_of::<Bucket>();
        // An anonymous mapping is zero-filled (all slots empty, all counts 0) and costs memory
        // only where touched. Failing to map it is as fatal as failing any allocation.
        let map = memmap2::MmapOptions::new()
            .len(bytes)
            .map_anon()
            .unwrap_or_else(|e| panic!("state table: cannot map {bytes} bytes: {e}"));
        if bytes >= 2 << 20 {
            // Best effort: without transparent huge pages the table works on 4 KiB pages.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        KeyIndex {
            map,
            states,
            buckets,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: ahash::RandomState::new(),
        }
    }

    #[inline]
    fn buckets(&self) -> &[Bucket] {
        // SAFETY: the mapping is page-aligned (Bucket needs 64), `buckets * size_of::<Bucket>()`
        // bytes long and lives as long as `self`; all-zero bytes are valid atomics, and the
        // slice is only ever accessed through those atomics.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<Bucket>(), self.buckets) }
    }

    /// The states the index was sized for: the most a table can hold without its lookups
    /// probing ever further.
    pub fn sized_for(&self) -> usize {
        self.states
    }

    /// Number of slots.
    #[cfg(test)]
    pub fn slots(&self) -> usize {
        self.buckets * SLOTS
    }

    /// Bytes mapped for the buckets.
    pub fn bytes(&self) -> usize {
        self.map.len()
    }

    /// Where `key` lives.
    #[inline]
    pub fn hashed(&self, key: &FlowKey) -> Hashed {
        let h = self.hasher.hash_one(key);
        Hashed {
            // Lemire's multiply-shift: any bucket count, no modulo.
            home: ((u128::from(h) * self.buckets as u128) >> 64) as usize,
            // Never 0: an empty slot's tag.
            tag: (h & 0xffff) | 1,
            // 1-15 (0 marks an empty slot; 0 becomes 1): other bits than the tag's.
            nibble: {
                let n = (h >> 16) & 0xf;
                n | u64::from(n == 0)
            },
        }
    }

    /// Start loading `at`'s home bucket into the cache (stage 1 of a batch's lookahead).
    #[inline]
    pub fn prefetch_bucket(&self, at: Hashed) {
        prefetch(self.buckets()[at.home].slots.as_ptr().cast());
    }

    /// Start loading the state `key` most likely belongs to (stage 2, once the bucket is in the
    /// cache): the first slot of the home bucket whose nibble matches. Dereferences nothing, so
    /// it needs no guard: a prefetch of a freed address is harmless.
    #[inline]
    pub fn prefetch_state(&self, at: Hashed) {
        let bucket = &self.buckets()[at.home];
        let candidates = nibble_matches(bucket.meta.load(Ordering::Relaxed), at.nibble);
        if candidates != 0 {
            let i = (candidates.trailing_zeros() / 4) as usize;
            let word = bucket.slots[i].load(Ordering::Relaxed);
            if word != 0 {
                let state = unpack(word).0.cast::<u8>();
                // A state (keys, expiry, tracking: all read per packet) is 120 bytes at a
                // 16-byte aligned address: three cache lines out of four times, those of its
                // first byte, of byte 64 and of its last byte.
                prefetch(state);
                prefetch(state.wrapping_add(64));
                prefetch(state.wrapping_add(std::mem::size_of::<State>() - 1));
            }
        }
    }

    #[inline]
    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets {
            0
        } else {
            b + 1
        }
    }

    /// The slot word of `key`, and where it is (bucket, slot), if present; if absent, the first
    /// slot marked empty seen within [`MAX_PROBE`] buckets (for `insert`). The caller holds an
    /// epoch guard of the default collector (`crossbeam_epoch::pin`): the states of other keys
    /// met on the way may be being removed, a stripe lock alone does not keep them alive.
    // Inlined: it is most of an established packet's lookup.
    #[inline(always)]
    fn find(
        &self,
        key: &FlowKey,
        at: Hashed,
    ) -> Result<(u64, usize, usize), Option<(usize, usize)>> {
        let buckets = self.buckets();
        let tag = at.tag << TAG_SHIFT;
        let mut empty = None;
        let mut b = at.home;
        let mut left = self.buckets;
        loop {
            let bucket = &buckets[b];
            let meta = bucket.meta.load(Ordering::Acquire);
            let mut candidates = nibble_matches(meta, at.nibble);
            while candidates != 0 {
                let i = (candidates.trailing_zeros() / 4) as usize;
                candidates &= candidates - 1;
                let word = bucket.slots[i].load(Ordering::Acquire);
                // Tags are never 0, so an empty slot never matches.
                if (word ^ tag) >> TAG_SHIFT == 0 {
                    let (state, dir) = unpack(word);
                    // SAFETY: a non-empty slot holds the address of a live state: the index
                    // owns a reference until the slot is emptied, and after that until every
                    // guard of the time is dropped (removal defers the release through the
                    // default collector); the caller holds such a guard.
                    if unsafe { (*state).key(dir) } == key {
                        return Ok((word, b, i));
                    }
                }
            }
            // Only within `MAX_PROBE` buckets of home: keys placed further would lengthen every
            // lookup that passes them.
            if empty.is_none() && self.buckets - left < MAX_PROBE {
                let free = nibble_matches(meta, 0);
                if free != 0 {
                    empty = Some((b, (free.trailing_zeros() / 4) as usize));
                }
            }
            left -= 1;
            if meta < OVERFLOW_ONE || left == 0 {
                return Err(empty);
            }
            b = self.next(b);
        }
    }

    /// Run `f` on the state of `key` and the key's direction, without a lock. `f` may keep no
    /// reference past its return but may clone the `Arc`.
    #[inline]
    pub fn with<R>(
        &self,
        key: &FlowKey,
        at: Hashed,
        _guard: &Guard,
        f: impl FnOnce(&Arc<State>, Direction) -> R,
    ) -> Option<R> {
        let (word, _, _) = self.find(key, at).ok()?;
        let (state, dir) = unpack(word);
        // SAFETY: `state` came from `Arc::into_raw` of a reference the index owns, kept alive
        // by the guard (see `find`). `ManuallyDrop` gives back no count we did not take; a
        // clone `f` makes takes its own.
        let state = ManuallyDrop::new(unsafe { Arc::from_raw(state) });
        Some(f(&state, dir))
    }

    /// True if `key` is present.
    pub fn contains(&self, key: &FlowKey, _guard: &Guard) -> bool {
        self.find(key, self.hashed(key)).is_ok()
    }

    fn stripe(&self, at: Hashed) -> std::sync::MutexGuard<'_, ()> {
        self.stripes[at.home % STRIPES]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Put `state` under its key for `dir`.
    pub fn insert(
        &self,
        state: &Arc<State>,
        dir: Direction,
        _guard: &Guard,
    ) -> Result<(), Refused> {
        let key = state.key(dir);
        let at = self.hashed(key);
        // `find` reads other keys' states, which their own writers may be removing: under the
        // caller's guard.
        let _w = self.stripe(at);
        let Err(empty) = self.find(key, at) else {
            return Err(Refused::Exists);
        };
        let addr = Arc::as_ptr(state) as u64;
        if addr & !ADDR_MASK != 0 {
            // An address above 48 bits or not 8-aligned cannot be packed: never on Linux
            // without an explicit request for a larger address space.
            return Err(Refused::Full);
        }
        let word = (at.tag << TAG_SHIFT) | addr | dir_bit(dir);
        // The slot's reference, taken before any reader can see the address.
        let raw = Arc::into_raw(Arc::clone(state));
        // The empty slot the search saw first, if still free (a writer of another stripe may
        // have taken it), else the first free one from the home bucket on.
        let buckets = self.buckets();
        let claim = |b: usize, i: usize| {
            let slot = &buckets[b].slots[i];
            let claimed = slot.load(Ordering::Relaxed) == 0
                && slot
                    .compare_exchange(0, word, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok();
            if claimed {
                // After the claim: the remover of the slot's last key cleared its nibble
                // before it emptied the slot (see `remove`), so nothing clears this one.
                buckets[b]
                    .meta
                    .fetch_or(at.nibble << (4 * i), Ordering::Release);
            }
            claimed
        };
        let mut placed = empty.filter(|&(b, i)| claim(b, i)).map(|(b, _)| b);
        let mut b = at.home;
        for _ in 0..MAX_PROBE.min(self.buckets) {
            if placed.is_some() {
                break;
            }
            placed = (0..SLOTS).any(|i| claim(b, i)).then_some(b);
            b = self.next(b);
        }
        let Some(b) = placed else {
            // SAFETY: `raw` is the reference taken above, published nowhere.
            drop(unsafe { Arc::from_raw(raw) });
            return Err(Refused::Full);
        };
        // Count the key in every bucket it passed, so lookups go on past them.
        let mut p = at.home;
        while p != b {
            buckets[p].meta.fetch_add(OVERFLOW_ONE, Ordering::Release);
            p = self.next(p);
        }
        Ok(())
    }

    /// Take `key` out if it points to `state`; its reference is released once no reader can
    /// hold it. False if the key is absent or belongs to another state.
    pub fn remove(&self, key: &FlowKey, state: &Arc<State>, guard: &Guard) -> bool {
        let Some(unlinked) = self.remove_at(key, self.hashed(key), state, guard) else {
            return false;
        };
        release_later(guard, [Some(unlinked), None]);
        true
    }

    /// [`KeyIndex::remove`] with `key`'s place already computed (`at == self.hashed(key)`), for
    /// a caller that requested its bucket beforehand ([`KeyIndex::prefetch_bucket`]), and the
    /// slot's reference handed to the caller, to release with another in one deferred call
    /// ([`release_later`]).
    pub fn remove_at(
        &self,
        key: &FlowKey,
        at: Hashed,
        state: &Arc<State>,
        _guard: &Guard,
    ) -> Option<Unlinked> {
        let _w = self.stripe(at);
        let (word, b, i) = self.find(key, at).ok()?;
        if unpack(word).0 != Arc::as_ptr(state) {
            return None;
        }
        let buckets = self.buckets();
        // The nibble first: once the slot is empty another writer may claim it and set its own.
        buckets[b]
            .meta
            .fetch_and(!(0xf << (4 * i)), Ordering::Release);
        buckets[b].slots[i].store(0, Ordering::Release);
        let mut p = at.home;
        while p != b {
            buckets[p].meta.fetch_sub(OVERFLOW_ONE, Ordering::Release);
            p = self.next(p);
        }
        Some(Unlinked(unpack(word).0))
    }

    /// Number of keys (walks the whole index: tests only).
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.buckets()
            .iter()
            .flat_map(|b| &b.slots)
            .filter(|s| s.load(Ordering::Acquire) != 0)
            .count()
    }
}

impl Drop for KeyIndex {
    fn drop(&mut self) {
        for bucket in self.buckets() {
            for slot in &bucket.slots {
                let word = slot.swap(0, Ordering::Acquire);
                if word != 0 {
                    // SAFETY: the slot's own reference (see `insert`); `&mut self`: no reader.
                    drop(unsafe { Arc::from_raw(unpack(word).0) });
                }
            }
        }
    }
}

/// A hint to load the cache line at `p`; nothing where the target has no such instruction.
#[inline]
pub(super) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[inline]
fn dir_bit(dir: Direction) -> u64 {
    match dir {
        Direction::Original => 0,
        Direction::Reply => DIR_BIT,
    }
}

#[inline]
fn unpack(word: u64) -> (*const State, Direction) {
    let dir = if word & DIR_BIT == 0 {
        Direction::Original
    } else {
        Direction::Reply
    };
    ((word & ADDR_MASK) as *const State, dir)
}

/// A slot's reference to a state, just taken out of the index ([`KeyIndex::remove_at`]):
/// readers may still hold the address, so it is given back through the epoch only
/// ([`release_later`]); dropped otherwise, it leaks.
#[must_use = "a slot's reference is given back by release_later"]
pub(super) struct Unlinked(*const State);

/// Give back slots' references (a state's two, typically) after every current guard is
/// dropped, in one deferred call.
pub(super) fn release_later(guard: &Guard, refs: [Option<Unlinked>; 2]) {
    // SAFETY: each is a slot's own reference (from `Arc::into_raw` in `insert`), just
    // unpublished, and `Unlinked` is neither `Clone` nor `Copy`: this is its one release.
    let owned = refs.map(|r| r.map(|Unlinked(state)| unsafe { Arc::from_raw(state) }));
    if owned.iter().any(Option::is_some) {
        guard.defer(move || drop(owned));
    }
}

#[cfg(test)]
mod tests;
