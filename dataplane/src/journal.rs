//! The hook through which the state table reports its changes to state sync.
//!
//! # Origin
//!
//! Every change to the table says who made it ([`Origin`]): a thread of this box, through the
//! [`Producer`] it owns, or the peer. The table journals a local change itself, whatever its
//! kind (insert, tracking update, delete), into that producer's queue, and never journals a
//! change that came from the peer: the peer already has it (pfsync marks such states NOSYNC for
//! the same reason), so nothing is echoed back and nothing has to be cancelled afterwards.
//!
//! # Producers
//!
//! A [`Producer`] is one thread's own queue into the journal: the table hands one out
//! ([`StateTable::producer`](crate::state::StateTable::producer)) to each worker's pipeline, to
//! the housekeeping thread (expiry) and to the control thread (`tandemctl states kill`). It can
//! be moved to its thread but not shared (`!Sync`) or cloned, so each queue has one producer by
//! construction; the queue lives as long as the journal drains what the producer left in it.
//!
//! `record` runs on a worker, inside the packet path: it must not block and must not allocate
//! (cloning the `Arc` to queue it is fine: that is a reference count, not an allocation).

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::state::State;

/// What happened to a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JournalKind {
    /// A state was created here (states imported from the peer are not journaled).
    Insert,
    /// A state's tracking (peers, timeout) changed here.
    Update,
    /// A state was removed here (expired, reset, flushed, killed).
    Delete,
}

/// The receiver of state changes: hands out one queue per producing thread.
pub trait StateJournal: Send + Sync {
    /// A new queue for one producing thread.
    fn queue(&self) -> Box<dyn JournalQueue>;
}

/// One producer's queue. Implementations must not block or allocate in `record`.
pub trait JournalQueue: Send {
    /// Record that `state` was inserted, updated or deleted.
    fn record(&self, kind: JournalKind, state: &Arc<State>);
}

/// One thread's right to change the table and have the change journaled: see the
/// [module documentation](self#producers).
pub struct Producer {
    queue: Box<dyn JournalQueue>,
    // `Cell` is `Send` but not `Sync`: a producer moves to its thread, never is shared.
    _one_thread: PhantomData<Cell<()>>,
}

impl Producer {
    pub(crate) fn new(queue: Box<dyn JournalQueue>) -> Producer {
        Producer {
            queue,
            _one_thread: PhantomData,
        }
    }

    #[inline]
    pub(crate) fn record(&self, kind: JournalKind, state: &Arc<State>) {
        self.queue.record(kind, state);
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Producer")
    }
}

/// Who makes a change to the table.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A thread of this box: the change is journaled into its producer's queue.
    Local(&'a Producer),
    /// The peer, through state sync: never journaled (never sent back).
    Peer,
}

impl Origin<'_> {
    #[inline]
    pub(crate) fn record(self, kind: JournalKind, state: &Arc<State>) {
        if let Origin::Local(p) = self {
            p.record(kind, state);
        }
    }
}

/// A journal that records nothing: a standalone box, tests, benches.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJournal;

impl StateJournal for NoJournal {
    fn queue(&self) -> Box<dyn JournalQueue> {
        Box::new(NoJournal)
    }
}

impl JournalQueue for NoJournal {
    #[inline]
    fn record(&self, _kind: JournalKind, _state: &Arc<State>) {}
}

/// A journal that counts what it is told, for tests.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct CountingJournal {
    counts: Arc<Counts>,
}

#[cfg(test)]
#[derive(Debug, Default)]
struct Counts {
    inserts: std::sync::atomic::AtomicUsize,
    updates: std::sync::atomic::AtomicUsize,
    deletes: std::sync::atomic::AtomicUsize,
}

#[cfg(test)]
impl CountingJournal {
    pub fn counts(&self) -> (usize, usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.counts;
        (
            c.inserts.load(Relaxed),
            c.updates.load(Relaxed),
            c.deletes.load(Relaxed),
        )
    }
}

#[cfg(test)]
impl StateJournal for CountingJournal {
    fn queue(&self) -> Box<dyn JournalQueue> {
        Box::new(Arc::clone(&self.counts))
    }
}

#[cfg(test)]
impl JournalQueue for Arc<Counts> {
    fn record(&self, kind: JournalKind, _state: &Arc<State>) {
        use std::sync::atomic::Ordering::Relaxed;
        match kind {
            JournalKind::Insert => self.inserts.fetch_add(1, Relaxed),
            JournalKind::Update => self.updates.fetch_add(1, Relaxed),
            JournalKind::Delete => self.deletes.fetch_add(1, Relaxed),
        };
    }
}
