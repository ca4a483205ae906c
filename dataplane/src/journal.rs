//! The hook through which the state table reports its changes to state sync.
//!
//! The table calls [`StateJournal::record`] on every insert and delete it performs; the pipeline
//! reports updates (a TCP window moved, a timeout class changed) through
//! [`StateTable::record_update`](crate::state::StateTable::record_update). tandem-sync implements
//! the trait with per-worker bounded lock-free queues; the dataplane itself only knows this trait.
//!
//! `record` runs on a worker, inside the packet path: it must not block and must not allocate
//! (cloning the `Arc` to queue it is fine: that is a reference count, not an allocation).

use std::sync::Arc;

use crate::state::State;

/// What happened to a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JournalKind {
    /// A state was created (locally: states imported from the peer are not journaled).
    Insert,
    /// A state's tracking (peers, timeout) changed.
    Update,
    /// A state was removed (expired, reset, flushed or deleted by the peer).
    Delete,
}

/// The receiver of state changes. Implementations must not block or allocate.
pub trait StateJournal: Send + Sync {
    /// Record that `state` was inserted, updated or deleted.
    fn record(&self, kind: JournalKind, state: &Arc<State>);
}

/// A journal that records nothing: a standalone box, tests, benches.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJournal;

impl StateJournal for NoJournal {
    #[inline]
    fn record(&self, _kind: JournalKind, _state: &Arc<State>) {}
}

/// A journal that counts what it is told, for tests.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct CountingJournal {
    pub inserts: std::sync::atomic::AtomicUsize,
    pub updates: std::sync::atomic::AtomicUsize,
    pub deletes: std::sync::atomic::AtomicUsize,
}

#[cfg(test)]
impl CountingJournal {
    pub fn counts(&self) -> (usize, usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.inserts.load(Relaxed),
            self.updates.load(Relaxed),
            self.deletes.load(Relaxed),
        )
    }
}

#[cfg(test)]
impl StateJournal for CountingJournal {
    fn record(&self, kind: JournalKind, _state: &Arc<State>) {
        use std::sync::atomic::Ordering::Relaxed;
        match kind {
            JournalKind::Insert => self.inserts.fetch_add(1, Relaxed),
            JournalKind::Update => self.updates.fetch_add(1, Relaxed),
            JournalKind::Delete => self.deletes.fetch_add(1, Relaxed),
        };
    }
}
