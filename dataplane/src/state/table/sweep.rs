//! Removing and walking states: removal by state or id, flush, walks and snapshots for the CLI
//! and the bulk update, the housekeeping's expiry sweep, and the consistency check tests use.

use super::*;
use crossbeam_epoch::Guard;

/// States whose keys' buckets the expiry requests before it removes the first of them (32
/// lines): enough for their misses to overlap, few enough that the first is still in the cache
/// when its turn comes.
const UNLINK_AHEAD: usize = 16;
/// How far ahead of its reading the expiry walk requests a state's expiry word (lines in
/// flight), for the same reasons.
const EXPIRY_AHEAD: usize = 32;

impl StateTable {
    /// Remove `state` from the table (both keys and its id) and journal the deletion if it is
    /// `origin`'s own. False if it was not in the table (already removed by someone else). Must
    /// not be called inside a [`StateTable::with_state`] closure.
    pub fn remove(&self, state: &Arc<State>, origin: Origin<'_>) -> bool {
        {
            let mut shard = self.id_shard(&state.id);
            match shard.get(&state.id) {
                Some(s) if Arc::ptr_eq(&s.0, state) => {
                    shard.remove(&state.id);
                }
                _ => return false,
            }
        }
        let guard = &crossbeam_epoch::pin();
        self.unlink(state, self.key_places(state), origin, guard);
        true
    }

    /// Where `state`'s two keys live in the key index, stack key first (see `unlink`).
    fn key_places(&self, state: &State) -> [Hashed; 2] {
        [&state.stack, &state.reply].map(|k| self.keys.hashed(k))
    }

    /// The rest of a removal once its caller took `state` out of the id index (which makes
    /// it the one remover): marked removed, both keys out of the index (their places `at`,
    /// stack key first), the count and the source node's given back, the deletion journaled.
    fn unlink(&self, state: &Arc<State>, at: [Hashed; 2], origin: Origin<'_>, guard: &Guard) {
        state.mark_removed();
        let stack = self.keys.remove_at(&state.stack, at[0], state, guard);
        let reply = self.keys.remove_at(&state.reply, at[1], state, guard);
        index::release_later(guard, [stack, reply]);
        self.count.fetch_sub(1, Ordering::Relaxed);
        if state.is_src_tracked() {
            self.src_nodes.release(state.rule, state.stack.src);
        }
        origin.record(JournalKind::Delete, state);
    }

    /// Remove the state with pfsync identity `id`.
    pub fn remove_by_id(&self, id: &SyncId, origin: Origin<'_>) -> bool {
        match self.get_by_id(id) {
            Some(s) => self.remove(&s, origin),
            None => false,
        }
    }

    /// Remove every state (pfctl -F state), journaled into `by`'s queue. Returns how many.
    pub fn flush(&self, by: &Producer) -> usize {
        let origin = Origin::Local(by);
        self.snapshot()
            .iter()
            .filter(|s| self.remove(s, origin))
            .count()
    }

    /// Call `f` on every state, one id shard at a time (the CLI, the bulk update). A shard's
    /// lock is held while `f` runs on its states: `f` must be quick and must not remove.
    pub fn for_each(&self, mut f: impl FnMut(&Arc<State>)) {
        for shard in self.ids.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.iter().for_each(|b| f(&b.0));
        }
    }

    /// Every state, for the CLI (allocates: not for the workers).
    pub fn snapshot(&self) -> Vec<Arc<State>> {
        let mut v = Vec::with_capacity(self.len());
        self.for_each(|s| v.push(Arc::clone(s)));
        v
    }

    /// Walk the next part of the table and remove the states expired at `now`. Visits whole id
    /// shards until at least `budget` states were looked at, resuming next call where this one
    /// stopped; a full pass takes about `len() / budget` calls. Returns how many were removed.
    ///
    /// For the housekeeping thread, never a worker. The walk uses the id index, not the key
    /// index: a shard's lock is held while its states' expiry words are read (atomics, no state
    /// lock) and its expired states are taken out of it, so lookups never wait for expiry
    /// (an insert of a state whose id falls in the shard does). Right after, with the lock
    /// released, the shard's expired states leave the key index; their memory is released
    /// through the epoch once no worker's batch can still see them.
    pub fn expire(&self, now: Millis, budget: usize, by: &Producer) -> usize {
        let timeouts = self.timeouts();
        let adaptive = timeouts
            .adaptive
            .unwrap_or_else(|| Adaptive::for_limit(self.limit()));
        let states = self.len() as u64;
        let pressure = states * 100 >= u64::from(self.limit()) * PRESSURE_PERCENT;
        let due = |s: &State| s.evictable(&timeouts, &adaptive, states, now, pressure);
        let mut victims: Vec<ById> = Vec::new();
        let mut removed = 0;
        let mut visited = 0;
        let mut cursor = self.cursor.load(Ordering::Relaxed) % ID_SHARDS;
        for _ in 0..ID_SHARDS {
            {
                let mut shard = self.ids[cursor]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                visited += shard.len();
                // Each state's expiry word is a cache miss: requested EXPIRY_AHEAD states
                // before it is read, so that the misses overlap instead of queueing.
                shard
                    .iter()
                    .take(EXPIRY_AHEAD)
                    .for_each(|b| b.0.prefetch_expiry());
                let mut ahead = shard.iter().skip(EXPIRY_AHEAD);
                // Every word read (not `any`, which would stop at the first due): the
                // extraction's second reading then finds them all in the cache.
                let any_due = shard
                    .iter()
                    .map(|b| {
                        if let Some(a) = ahead.next() {
                            a.0.prefetch_expiry();
                        }
                        due(&b.0)
                    })
                    .fold(false, |any, d| any | d);
                // Taken out of the id index under the lock the walk holds anyway (their words
                // now in the cache): that makes this walk their one remover (see `remove`),
                // without an `Arc` clone or a second lookup each.
                if any_due {
                    victims.extend(shard.extract_if(|b| due(&b.0)));
                }
            }
            // Out of the key index at once: a state out of the id index and still in the key
            // index cannot be removed by a worker (a SYN reusing its ports) or found by the
            // peer's updates, so that time is kept short.
            removed += victims.len();
            self.unlink_all(&victims, Origin::Local(by));
            victims.clear();
            cursor = (cursor + 1) % ID_SHARDS;
            if visited >= budget {
                break;
            }
        }
        self.cursor.store(cursor, Ordering::Relaxed);
        self.src_nodes.expire(now);
        removed
    }

    /// [`StateTable::unlink`] for states already out of the id index, [`UNLINK_AHEAD`] at a
    /// time: their keys' buckets (two random lines of the index each) are requested first, so
    /// that their misses overlap. One epoch pin a chunk, not one for all: a long pin would hold
    /// back every thread's reclamation.
    fn unlink_all(&self, victims: &[ById], origin: Origin<'_>) {
        let mut places = Vec::with_capacity(UNLINK_AHEAD.min(victims.len()));
        for chunk in victims.chunks(UNLINK_AHEAD) {
            let guard = &crossbeam_epoch::pin();
            places.clear();
            places.extend(chunk.iter().map(|v| {
                let at = self.key_places(&v.0);
                at.iter().for_each(|&a| self.keys.prefetch_bucket(a));
                at
            }));
            for (v, &at) in chunk.iter().zip(&places) {
                self.unlink(&v.0, at, origin, guard);
            }
        }
    }

    /// How many states the housekeeping's next [`StateTable::expire`] call should look at:
    /// `len / EXPIRE_SLICES`, at least [`MIN_EXPIRE_BUDGET`] (see [`EXPIRE_SLICES`]).
    pub fn expire_budget(&self) -> usize {
        (self.len() / EXPIRE_SLICES).max(MIN_EXPIRE_BUDGET)
    }

    /// An estimate of the table's memory from the structures' sizes (bytes): the key index's
    /// buckets (mapped whole at start), the id index's hashbrown slots (entry + one control
    /// byte), the states (`Arc` header included, rounded up to glibc's 16-byte chunks with
    /// their 8-byte header); not allocator slack.
    pub fn memory_estimate(&self) -> usize {
        let id_slot = std::mem::size_of::<ById>() + 1;
        // hashbrown holds capacity * 8 / 7 buckets.
        let id_buckets: usize = self
            .ids
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).capacity() * 8 / 7)
            .sum();
        let arc_state = (std::mem::size_of::<State>() + 16 + 8).div_ceil(16) * 16;
        self.keys.bytes() + id_buckets * id_slot + self.len() * arc_state
    }

    /// Test support: every key slot points to a live state indexed by id, every indexed state
    /// has both keys, and the count matches.
    #[cfg(test)]
    pub(crate) fn check_consistency(&self) -> Result<(), String> {
        let ids: Vec<Arc<State>> = self.snapshot();
        if ids.len() != self.len() {
            return Err(format!("count {} but {} ids", self.len(), ids.len()));
        }
        let keys = self.keys.count();
        if keys != 2 * ids.len() {
            return Err(format!("{keys} keys for {} states", ids.len()));
        }
        for s in &ids {
            for dir in [Direction::Original, Direction::Reply] {
                let found = self.with_state(s.key(dir), |f, d| Arc::ptr_eq(f, s) && d == dir);
                match found {
                    Some(true) => {}
                    _ => return Err(format!("state {:?} missing its {dir:?} key", { s.id.id })),
                }
            }
            if s.is_removed() {
                return Err(format!("state {:?} indexed but removed", { s.id.id }));
            }
        }
        Ok(())
    }
}
