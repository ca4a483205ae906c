//! tandem's fast path: everything a packet touches between an RX ring and a TX ring.
//!
//! One frame's way through [`pipeline`]: L2 filter, then ARP or IPv4; IPv4 addressed to the box
//! itself (ICMP echo, CARP, sync) or forwarded: filter rules or an existing state, NAT, routing,
//! neighbour resolution, TX. Modules here are pure where they can be (they return what happened);
//! the pipeline decides and counts every drop in [`counters`].
//!
//! This crate depends on no other crate of tandem's: control compiles its config into the types
//! of [`filter`] and [`route`], sync implements [`journal::StateJournal`].

pub mod capture;
pub mod carp_filter;
pub mod counters;
pub mod filter;
pub mod fragment;
pub mod generation;
pub mod io;
pub mod journal;
mod memo;
pub mod neigh;
pub mod pipeline;
pub mod route;
pub mod state;
pub mod wire;
#[cfg(feature = "afxdp")]
pub mod worker;

/// Index of a dataplane interface in the pipeline's interface table (`lan`, `wan`, ...).
/// Small and `Copy` because it travels with every frame.
pub type IfIndex = u8;
