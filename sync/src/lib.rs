//! Everything that crosses the sync link: the state journal's replication (pfsync's role) and
//! configuration replication (XML-RPC's role).
//!
//! - [`wire`]: the frame format (the spec; docs/sync-protocol.md explains it): header, actions,
//!   records, the MAC, [`wire::FrameBuilder`] and [`wire::parse`].
//! - [`replay`]: the per-sender replay window and restart detection.
//! - [`journal`]: [`journal::SyncJournal`], the workers' side: per-worker lock-free queues,
//!   pfsync-style coalescing, overflow and resync signalling.

pub mod journal;
pub mod replay;
pub mod wire;
