//! The state table: every connection the firewall has let through, shared by all workers.
//!
//! - [`key`]: [`FlowKey`] (a packet's 5-tuple) and [`SyncId`] (pfsync's identity of a state).
//! - [`table`]: [`State`] and [`StateTable`]: one lookup by a packet's own key finds its state
//!   and its [`Direction`]; insert puts a state under both of its keys or under none.
//! - [`nat`]: source NAT port allocation, atomic with the insert.
//! - [`src_nodes`]: per-source limits of a rule's states (pf's source nodes).
//! - [`tcp`]: pf's TCP window tracking.
//! - [`timeouts`]: pf's timeouts, adaptive scaling.
//!
//! Changes are reported to state sync through [`crate::journal::StateJournal`].

pub mod key;
pub mod nat;
pub mod src_nodes;
pub mod table;
pub mod tcp;
pub mod timeouts;

pub use key::{FlowKey, SyncId};
pub use nat::PortPolicy;
pub use src_nodes::{ConnRate, SrcLimits, SrcNodes, SrcRefusal};
pub use table::{
    InsertError, NewState, Prefetched, ReadSection, State, StateTable, TableConfig, Tracking,
    EMBRYONIC_GRACE,
};
pub use tcp::{PeerState, TcpPeer, TcpSegment, TrackError};
pub use timeouts::{Adaptive, Clock, Millis, TimeoutClass, Timeouts};

/// Which way a packet goes relative to the packet that created its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Same way as the first packet (found under the state's stack key).
    Original,
    /// The answer (found under the state's reversed wire key).
    Reply,
}

impl Direction {
    /// 0 for [`Original`](Direction::Original), 1 for [`Reply`](Direction::Reply): the index of
    /// per-direction counters.
    #[inline]
    pub const fn index(self) -> usize {
        match self {
            Direction::Original => 0,
            Direction::Reply => 1,
        }
    }

    /// The other way.
    #[inline]
    #[must_use]
    pub const fn opposite(self) -> Direction {
        match self {
            Direction::Original => Direction::Reply,
            Direction::Reply => Direction::Original,
        }
    }
}

#[cfg(test)]
mod tests;
