//! The DHCPv4 server of the LAN VIP (issue 12, the seed's "Configuration du service DHCP"):
//! only the CARP master of an interface's VIP answers, with the VIP as server identifier and
//! router, and every lease change is replicated to the peer over state sync (Kea's
//! hot-standby, without ISC's end-of-life failover protocol).
//!
//! - [`wire`]: frames in and out (`dhcproto` for the message and its options);
//! - [`pool`]: leases, offers and static mappings, no I/O;
//! - [`server`]: the DHCP thread;
//! - [`store`]: the leases on disk.

pub mod pool;
pub mod server;
pub mod store;
pub mod wire;

pub use pool::{Lease, LeaseState};
pub use server::{DhcpHandle, Replication};
