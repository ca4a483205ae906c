//! AF_XDP ports of one worker, through xsk-rs 0.11 (libxdp underneath).
//!
//! A worker owns one [`WorkerPorts`]: ONE UMEM shared (`XDP_SHARED_UMEM`) by all of the worker's
//! sockets, one socket per (interface, RX queue). A frame received on `lan` is sent on `wan` by
//! moving its descriptor from lan's RX ring to wan's TX ring: no copy.
//!
//! # Shared UMEM across interfaces with xsk-rs 0.11
//!
//! xsk-rs allows it. `Socket::new` calls libxdp's `xsk_socket__create_shared`; libxdp keeps one
//! context per (netns, ifindex, queue) of a UMEM. The first socket uses the fill and completion
//! rings created with the UMEM; each further socket on another (interface, queue) gets fresh fill
//! and completion rings on its own fd (xsk-rs returns them as `Some((FillQueue, CompQueue))`), and
//! is bound with `XDP_SHARED_UMEM` to the first socket's fd. The kernel (5.10 and later) then
//! gives that socket a buffer pool of its own over the same UMEM. Two consequences:
//!
//! - every socket has its own fill ring (its RX takes frames from it) and its own completion ring
//!   (its TX completes there): the frame pool here feeds and drains all of them;
//! - libxdp binds the second and later sockets with `XDP_SHARED_UMEM` alone and the kernel gives
//!   them the first socket's mode: copy or zero-copy, and need_wakeup, are chosen once per worker
//!   (all interfaces of a worker must then support the chosen mode).
//!
//! # Frames
//!
//! UMEM chunks are 4096 bytes: the kernel keeps `XDP_PACKET_HEADROOM` (256) in front of the
//! packet, and the pipeline's contract is a [`FRAME_SIZE`] (2048) buffer from the start of the
//! packet. Every chunk is at all times in exactly one place: the free pool (a stack), a socket's
//! fill ring, the pipeline (during the handler call only), or a socket's TX/completion ring.
//! Counters per socket of what is in its fill and TX rings make this checkable at any time
//! ([`WorkerPorts::frames_accounted`]); debug builds also track every chunk's place and assert on
//! every move, which catches a descriptor used twice at the moment it happens.
//!
//! # Copy mode, zero-copy, need_wakeup
//!
//! [`BindMode::Auto`] binds zero-copy first and, if the kernel refuses (veth has no zero-copy:
//! `EOPNOTSUPP`), starts again in copy mode. Sockets always use `XDP_USE_NEED_WAKEUP`. In copy
//! mode the kernel sends frames only in `sendto`, at most 32 per call (`TX_BATCH_SIZE` in
//! net/xdp/xsk.c) and answers `EAGAIN` when more are left, so a TX kick repeats while the kernel
//! says so (bounded by the number of frames queued); in zero-copy one kick per ring suffices.
//! Where the kernel has `XDP_MAX_TX_SKB_BUDGET` (6.17 and later), copy-mode sockets raise that
//! limit to their TX ring's size, and one kick sends a whole round of small frames (the socket's
//! send buffer still ends a call sooner for large ones: ~90 MTU-sized frames with the default
//! `wmem_default`; the rest leave on the next kick, nothing is lost).
//!
//! # XDP program
//!
//! libxdp attaches its default program (redirect to the socket bound on the RX queue, else
//! `XDP_PASS`) when the first socket binds on an interface and detaches it when the last socket
//! goes, using a reference count kept in the program. A process killed with SIGKILL leaves the
//! program attached with a count that never returns to zero (libxdp then reuses it, and it stays
//! after the next clean stop). So an exclusive worker ([`WorkerConfig::exclusive`], the default)
//! removes any XDP program found on its interfaces before binding (the dataplane owns its
//! interfaces; the removal is logged with the program id), and its drop removes the program it
//! attached if it is still there once the sockets are gone. Workers sharing interfaces leave
//! this to [`remove_xdp_programs`], called once around their lifetime. A removed stale libxdp dispatcher may leave its
//! pin directory under /sys/fs/bpf/xdp.
//!
//! Because a queue without a socket passes its frames to the kernel, around the firewall,
//! [`WorkerPorts::open`] binds every RX queue it is asked for and refuses to start ([`OpenError`])
//! if any one cannot be bound. All calls (open, poll, drop) must come from a thread in the
//! interfaces' network namespace.

mod netlink;
mod port;

pub use netlink::{attached_xdp, detach_xdp, kernel_ifindex, rx_queue_count, AttachedXdp};
pub use port::{remove_xdp_programs, FrameAudit, KernelStats, PortCounters, WorkerPorts};

use std::fmt;
use std::io;

#[cfg(doc)]
use super::FRAME_SIZE;
use crate::IfIndex;

/// How sockets bind: the first socket decides for the whole UMEM (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Zero-copy if the driver can, else copy.
    #[default]
    Auto,
    /// Zero-copy or refuse to start.
    ZeroCopy,
    /// Copy mode (works on every driver with XDP, generic XDP included).
    Copy,
}

impl fmt::Display for BindMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::ZeroCopy => "zero-copy",
            Self::Copy => "copy",
        })
    }
}

/// Which RX queues of an interface this worker binds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Queues {
    /// Every RX queue the interface has (ethtool channels).
    #[default]
    All,
    /// These queues only (other workers bind the rest).
    Only(Vec<u32>),
}

/// Entries of each ring when not configured: with 1024 bulk TCP on the lab found the fill ring
/// empty (1.8k-18k frames dropped per 20 s of iperf3), with 4096 none (perf/RESULTS.md, "Bulk
/// TCP and the ring size"). It costs UMEM: 2 x 4096 chunks of 4 KiB per socket, 64 MiB for a
/// worker on two interfaces.
pub const DEFAULT_RING_SIZE: u32 = 4096;

/// One dataplane interface of a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// The pipeline's index of this interface: what the handler sees and returns.
    pub if_index: IfIndex,
    /// Kernel interface name.
    pub name: String,
    pub queues: Queues,
}

/// Everything [`WorkerPorts::open`] needs; `Default` gives sizes that suit a veth lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    pub ports: Vec<PortSpec>,
    pub mode: BindMode,
    /// Size of each RX, TX, fill and completion ring (power of two; [`DEFAULT_RING_SIZE`]).
    pub ring_size: u32,
    /// UMEM chunks; 0 = 2 x `ring_size` per socket (a full fill ring and a full TX ring each).
    pub frames: u32,
    /// Most frames taken from one RX ring per round.
    pub batch: usize,
    /// This worker is the only one with sockets on its interfaces: [`WorkerPorts::open`]
    /// removes any XDP program found on them first, and drop removes the one it attached if
    /// libxdp left it. Set false when workers share interfaces (queue groups), and call
    /// [`remove_xdp_programs`] once before starting them and once after they stop: one worker
    /// must not remove the program another worker's sockets use.
    pub exclusive: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            ports: Vec::new(),
            mode: BindMode::Auto,
            ring_size: DEFAULT_RING_SIZE,
            frames: 0,
            batch: 64,
            exclusive: true,
        }
    }
}

/// Why a worker's ports did not open. Each names the interface and queue it is about.
#[derive(Debug)]
pub enum OpenError {
    /// The configuration cannot work (no ports, ring size not a power of two, ...).
    Config(String),
    /// The interface does not exist in this thread's network namespace.
    NoInterface { name: String, source: io::Error },
    /// The number of RX queues of the interface could not be read.
    QueueCount { name: String, source: io::Error },
    /// A queue was asked for that the interface does not have.
    NoQueue {
        name: String,
        queue: u32,
        count: u32,
    },
    /// An XDP program already on the interface could not be removed.
    StaleProgram {
        name: String,
        prog_id: u32,
        source: io::Error,
    },
    /// The UMEM could not be created.
    Umem { frames: u32, reason: String },
    /// A socket could not be bound to a queue.
    Bind {
        name: String,
        queue: u32,
        mode: BindMode,
        reason: String,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(why) => write!(f, "AF_XDP worker configuration: {why}"),
            Self::NoInterface { name, source } => {
                write!(
                    f,
                    "interface {name}: not found in this network namespace: {source}"
                )
            }
            Self::QueueCount { name, source } => {
                write!(
                    f,
                    "interface {name}: cannot read its number of RX queues: {source}"
                )
            }
            Self::NoQueue { name, queue, count } => write!(
                f,
                "interface {name}: cannot bind RX queue {queue}: the interface has {count} RX \
                 queue(s) (0..{count})"
            ),
            Self::StaleProgram {
                name,
                prog_id,
                source,
            } => write!(
                f,
                "interface {name}: cannot remove the XDP program (id {prog_id}) left on it: \
                 {source}"
            ),
            Self::Umem { frames, reason } => {
                write!(f, "cannot create a UMEM of {frames} frames: {reason}")
            }
            Self::Bind {
                name,
                queue,
                mode,
                reason,
            } => write!(
                f,
                "interface {name}: cannot bind an AF_XDP socket ({mode} mode) on RX queue \
                 {queue}: {reason}; refusing to start, since frames on an unbound queue would \
                 reach the kernel around the firewall"
            ),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NoInterface { source, .. }
            | Self::QueueCount { source, .. }
            | Self::StaleProgram { source, .. } => Some(source),
            _ => None,
        }
    }
}
