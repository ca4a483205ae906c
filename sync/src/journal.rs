//! The workers' side of state sync: [`SyncJournal`], the dataplane's
//! [`StateJournal`].
//!
//! # Queues
//!
//! One bounded lock-free queue ([`ArrayQueue`]) per producer: the table hands a
//! [`Producer`](tandem_dataplane::journal::Producer) to each thread that changes it (every
//! worker's pipeline, the housekeeping thread, the control thread), and each producer asks the
//! journal for a queue of its own ([`StateJournal::queue`]). A producer cannot be cloned or
//! shared between threads, so every queue has exactly one producer, by construction. Changes
//! that came from the peer are never journaled (the table's
//! [`Origin::Peer`](tandem_dataplane::journal::Origin)), so nothing recorded here is an echo.
//! The journal keeps a producer's queue until the producer is gone and the queue is drained.
//!
//! An entry is `(JournalKind, Arc<State>)`: cloning the `Arc` is an atomic increment, pushing
//! is a few atomics on the queue; nothing allocates and nothing blocks.
//!
//! # Coalescing (pfsync's `pfsync_update_state`)
//!
//! A state already queued and not yet drained is not queued again for an update: the mark
//! lives in the state ([`State::mark_queued`], two bits and a byte of its expiry word, so the
//! state stays 120 bytes). Inserts set the mark (updates before the drain ride on the insert:
//! the sync thread reads the tracking when it sends) and always go through; deletes always go
//! through. [`SyncJournal::drain`] clears the mark (under the state's mutex) before handing the
//! state over, so every change made after the sync thread reads the tracking queues it again.
//! A coalesced update costs a relaxed load of the expiry word, which the worker has just
//! written (same cache line); see the `record_cost` test for a number.
//!
//! # maxupd (pfsync's `sc_maxupdates`)
//!
//! For TCP states, each coalesced update also counts in the state (up to 128). The update that
//! brings a state's count to `maxupd` raises [`SyncJournal::due`]: the sync thread, which polls
//! it at least every millisecond, drains and sends at once instead of waiting for its batch
//! timer. pfsync's default is 128; `maxupd` 0 disables the count (and its atomic add). As in
//! pfsync, other protocols are not counted. Two workers updating one state (its two directions)
//! may lose each other's counts: the push then comes later, never spuriously.
//!
//! # Overflow and repair
//!
//! A full queue drops the entry, increments `overflow` and raises the resync flag
//! ([`SyncJournal::take_resync`]); the worker goes on. A dropped update may leave its state
//! marked with nothing queued, a dropped insert or delete is lost: the journal alone can no
//! longer tell the peer the truth. The sync thread, seeing the flag, repairs with a full walk
//! of the table ([`StateTable::for_each`](tandem_dataplane::state::StateTable::for_each)):
//! for every state it clears the mark ([`State::clear_queued`]) and sends a full INS, framed
//! by BUS START/END like a bulk update, so the peer deletes the states of ours it holds and did
//! not get during the walk (the lost deletes). It keeps draining during the walk.
//!
//! # Order
//!
//! Entries of one queue come out in the order they went in: the inserts, updates and deletes a
//! worker records for a state arrive in order. A state's events recorded by different threads
//! (a delete by expiry, after the insert by a worker) sit in different queues and may come out
//! in either order; the consumer resolves it with [`State::is_removed`]: an insert or update of
//! a removed state is not sent (its delete is, or was). Sync ids are never reused, so a delete
//! cannot be confused with a later state's insert.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_queue::ArrayQueue;
use tandem_dataplane::journal::{JournalKind, JournalQueue, StateJournal};
use tandem_dataplane::state::key::PROTO_TCP;
use tandem_dataplane::state::State;

/// A queued state change.
pub type Entry = (JournalKind, Arc<State>);

/// Journal sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalConfig {
    /// Entries per producer's queue, 16 bytes each. The queue must absorb what a worker inserts
    /// while the sync thread is busy sending: measured (perf/RESULTS.md, "State sync"), a worker
    /// inserting flat out filled 4096 entries in 2-3 ms and every overflow cost a full-table
    /// resync; 131072 (2 MiB per queue) kept up and tripled the replication rate.
    pub capacity: usize,
    /// pfsync's maxupd: a TCP state updated this many times since its last send makes the
    /// journal [`due`](SyncJournal::due) (1-128; 0: never).
    pub maxupd: u8,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            capacity: 131_072,
            maxupd: 128,
        }
    }
}

/// The workers' journal. See the [module documentation](self).
#[derive(Debug)]
pub struct SyncJournal {
    /// Every producer's queue, in the order they were handed out. Locked by the sync thread
    /// for a drain and by a new producer to add its queue; never by `record`.
    queues: Mutex<Vec<Arc<ArrayQueue<Entry>>>>,
    capacity: usize,
    cursor: AtomicUsize,
    flags: Arc<Flags>,
}

/// What producers raise for the sync thread.
#[derive(Debug)]
struct Flags {
    maxupd: u8,
    overflow: AtomicU64,
    resync: AtomicBool,
    due: AtomicBool,
}

/// One producer's end: its queue and the journal's flags.
struct ProducerQueue {
    queue: Arc<ArrayQueue<Entry>>,
    flags: Arc<Flags>,
}

impl SyncJournal {
    /// A journal whose producers get queues of `config.capacity` entries.
    pub fn new(config: JournalConfig) -> Self {
        SyncJournal {
            queues: Mutex::new(Vec::new()),
            capacity: config.capacity.max(1),
            cursor: AtomicUsize::new(0),
            flags: Arc::new(Flags {
                maxupd: config.maxupd.min(128),
                overflow: AtomicU64::new(0),
                resync: AtomicBool::new(false),
                due: AtomicBool::new(false),
            }),
        }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, Vec<Arc<ArrayQueue<Entry>>>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Entries dropped because a queue was full (counter `overflow`).
    pub fn overflow(&self) -> u64 {
        self.flags.overflow.load(Ordering::Relaxed)
    }

    /// True once since the last call if an entry was dropped: the sync thread must repair with
    /// a full walk (see the [module documentation](self#overflow-and-repair)).
    pub fn take_resync(&self) -> bool {
        self.flags.resync.swap(false, Ordering::AcqRel)
    }

    /// True once since the last call if a TCP state reached `maxupd` coalesced updates: the
    /// sync thread drains and sends now.
    pub fn due(&self) -> bool {
        let due = &self.flags.due;
        due.load(Ordering::Relaxed) && due.swap(false, Ordering::AcqRel)
    }

    /// Entries waiting (approximate while producers push).
    pub fn len(&self) -> usize {
        self.queues().iter().map(|q| q.len()).sum()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues held: one per live producer, and those of gone producers until drained.
    pub fn producers(&self) -> usize {
        self.queues().len()
    }

    /// Take up to `max` entries, queue by queue (a rotating first queue), and hand them to `f`
    /// in each queue's order. An insert's or update's mark is cleared before `f` sees it, so `f`
    /// must read the tracking (it does, to build the record) after this call took the entry:
    /// see the [module documentation](self#coalescing-pfsyncs-pfsync_update_state).
    /// Returns how many were taken. For the sync thread; `f` must not ask for a producer.
    pub fn drain(&self, max: usize, mut f: impl FnMut(JournalKind, Arc<State>)) -> usize {
        let mut queues = self.queues();
        let n = queues.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut taken = 0;
        for k in 0..n {
            let q = &queues[(start + k) % n];
            while taken < max {
                let Some((kind, state)) = q.pop() else { break };
                if kind != JournalKind::Delete {
                    state.clear_queued();
                }
                taken += 1;
                f(kind, state);
            }
        }
        // A gone producer's queue goes once it is empty (nobody can push to it again).
        queues.retain(|q| Arc::strong_count(q) > 1 || !q.is_empty());
        taken
    }
}

impl StateJournal for SyncJournal {
    fn queue(&self) -> Box<dyn JournalQueue> {
        let queue = Arc::new(ArrayQueue::new(self.capacity));
        self.queues().push(Arc::clone(&queue));
        Box::new(ProducerQueue {
            queue,
            flags: Arc::clone(&self.flags),
        })
    }
}

impl ProducerQueue {
    #[cold]
    fn overflowed(&self) {
        self.flags.overflow.fetch_add(1, Ordering::Relaxed);
        self.flags.resync.store(true, Ordering::Release);
    }
}

impl JournalQueue for ProducerQueue {
    #[inline]
    fn record(&self, kind: JournalKind, state: &Arc<State>) {
        match kind {
            JournalKind::Update => {
                if !state.mark_queued() {
                    let maxupd = self.flags.maxupd;
                    if maxupd != 0
                        && state.proto() == PROTO_TCP
                        && state.count_sync_update(maxupd) == maxupd - 1
                    {
                        self.flags.due.store(true, Ordering::Release);
                    }
                    return;
                }
            }
            JournalKind::Insert => {
                state.mark_queued();
            }
            JournalKind::Delete => {}
        }
        if self.queue.push((kind, Arc::clone(state))).is_err() {
            self.overflowed();
        }
    }
}

#[cfg(test)]
mod tests;
