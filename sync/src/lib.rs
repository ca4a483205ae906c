//! Everything that crosses the sync link: the state journal's replication (pfsync's role) and
//! configuration replication (XML-RPC's role).
//!
//! - [`wire`]: the frame format (the spec; docs/sync-protocol.md explains it): header, actions,
//!   records, the MAC, [`wire::FrameBuilder`] and [`wire::parse`].
//! - [`replay`]: the per-sender replay window, restart detection, control freshness.
//! - [`boot`]: forward-only boot ids, and the peers' boots persisted across restarts.
//! - [`journal`]: [`journal::SyncJournal`], the workers' side: per-worker lock-free queues,
//!   pfsync-style coalescing, overflow and resync signalling.
//! - [`replicate`]: [`replicate::Replicator`], the sync thread's engine: receive, merge,
//!   send, ACK/NACK repair, bulk update, resync, counters.
//! - [`transport`]: the [`transport::Transport`] trait and an in-memory pair with faults.
//! - [`socket`]: [`socket::RawIpSocket`], protocol 240 on the sync interface.
//! - [`config_sync`]: [`config_sync::Channel`], config sync's authenticated, encrypted TCP channel.

pub mod boot;
pub mod config_sync;
pub mod journal;
pub mod replay;
pub mod replicate;
pub mod socket;
pub mod transport;
pub mod wire;
