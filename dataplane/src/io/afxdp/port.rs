//! [`WorkerPorts`]: one UMEM, its free-frame pool, and one socket per (interface, RX queue),
//! in rooms by kernel concept:
//!
//! - `socket`: checking the plan, creating the UMEM and binding the XDP sockets;
//! - `rings`: the four rings of each socket in one round (completion, fill, RX, TX): the
//!   [`Ports`](crate::io::Ports) implementation the worker's driver loop polls;
//! - `wakeup`: the syscalls that wake the kernel to send;
//! - `wait`: an idle worker's sleep, until a frame arrives;
//! - `umem`: where each chunk of the UMEM is (the free pool, the audit).
//!
//! This file holds the types they share, opening and closing.

mod rings;
mod socket;
mod umem;
mod wait;
mod wakeup;

use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

use super::netlink::{attached_xdp, detach_xdp};
use super::{BindMode, OpenError, WorkerConfig};
use crate::IfIndex;
pub use umem::FrameAudit;
use umem::Place;

/// UMEM chunk size: 256 bytes of XDP headroom in front of a [`FRAME_SIZE`] buffer need more
/// than 2048, and aligned chunks are a power of two.
const CHUNK_SIZE: u32 = 4096;

/// `tx_of` entry of an interface index this worker has no port for.
const NO_PORT: u16 = u16::MAX;

// `tx_of` has one entry per possible `IfIndex`.
const _: () = assert!(IfIndex::MAX as usize == 255);

/// Frames per round taken from each completion ring.
const COMPLETE_BATCH: usize = 256;

/// What the ports did, for the worker to export. Plain counters: the worker thread owns them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames taken from RX rings and handed to the handler.
    pub rx: u64,
    /// Frames put on TX rings (forwarded and [`WorkerPorts::send_copy`]).
    pub tx: u64,
    /// Frames the handler answered [`Verdict::Drop`] for.
    pub dropped: u64,
    /// Frames received longer than [`FRAME_SIZE`] (or with less room than that in their
    /// chunk): dropped before the handler.
    pub rx_too_long: u64,
    /// Frames whose TX ring was full: back to the pool, not sent.
    pub tx_ring_full: u64,
    /// [`Verdict::Tx`] naming an interface this worker has no port for, or a length over
    /// [`FRAME_SIZE`]: dropped.
    pub bad_verdict: u64,
    /// Frames back from completion rings.
    pub completed: u64,
    /// Times a fill ring wanted frames and the pool had none left for it.
    pub fill_starved: u64,
    /// [`WorkerPorts::send_copy`] calls that found no free frame.
    pub send_no_frame: u64,
    /// TX kicks: `sendto` calls that asked the kernel to send (in copy mode the kernel sends
    /// in them; see [`WorkerPorts::tx_budget`]).
    pub tx_kicks: u64,
    /// TX kicks (`sendto`) that failed with an unexpected error.
    pub tx_kick_errors: u64,
    /// Idle waits (`ppoll` on the sockets) that failed other than by a signal: the worker
    /// slept on a timer instead.
    pub wait_errors: u64,
}

/// The kernel's own counters of the worker's sockets (`XDP_STATISTICS`), summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Frames the kernel dropped for this socket (no fill entry in copy mode, among others).
    pub rx_dropped: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
}

#[derive(Debug)]
struct Port {
    if_index: IfIndex,
    name: String,
    /// Socket whose TX ring sends this port's frames.
    tx_sock: usize,
    /// XDP program id on the interface once bound, for an exclusive worker: detached on drop
    /// if libxdp left it attached.
    prog_id: Option<u32>,
}

#[derive(Debug)]
struct Sock {
    port: usize,
    queue: u32,
    rx: RxQueue,
    tx: TxQueue,
    fq: FillQueue,
    cq: CompQueue,
    in_fill: u32,
    in_tx: u32,
    /// Frames bound for this socket's TX ring in the current round.
    pending: Vec<FrameDesc>,
}

/// One worker's AF_XDP ports: one UMEM shared by one socket per (interface, RX queue).
///
/// Not `Send` on purpose: it must live and die in the thread (and network namespace) that
/// opened it.
#[derive(Debug)]
pub struct WorkerPorts {
    // Field order is drop order: sockets go before the UMEM (xsk-rs also keeps the UMEM alive
    // while any socket lives).
    socks: Vec<Sock>,
    ports: Vec<Port>,
    /// Socket whose TX ring sends frames for each pipeline interface index; `NO_PORT` where
    /// this worker has no such port.
    tx_of: [u16; 256],
    umem: Umem,
    pool: Vec<FrameDesc>,
    total: u32,
    fill_target: u32,
    ring_size: u32,
    /// Frames one copy-mode `sendto` sends at most (see `wakeup`).
    tx_budget: usize,
    batch: usize,
    /// Socket the next round receives from first.
    rx_next: usize,
    scratch: Vec<FrameDesc>,
    /// One entry per socket of `socks`, in its order, for [`WorkerPorts::wait_rx`].
    pollfds: Vec<libc::pollfd>,
    mode: BindMode,
    counters: PortCounters,
    #[cfg(debug_assertions)]
    places: Vec<Place>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl WorkerPorts {
    /// Opens the ports: removes XDP programs left on the interfaces, creates the UMEM, binds one
    /// socket per (interface, queue), fills the fill rings. Fails, naming the interface and
    /// queue, if any queue cannot be bound; nothing stays bound then.
    pub fn open(config: &WorkerConfig) -> Result<Self, OpenError> {
        let plan = Self::plan(config)?;
        if config.exclusive {
            let names: Vec<&str> = config.ports.iter().map(|p| p.name.as_str()).collect();
            remove_xdp_programs(&names)?;
        }
        match config.mode {
            BindMode::Auto => match Self::bind(config, &plan, BindMode::ZeroCopy) {
                Err(OpenError::Bind {
                    name,
                    queue,
                    reason,
                    ..
                }) => {
                    tracing::info!(
                        interface = %name,
                        queue,
                        %reason,
                        "zero-copy bind refused, binding in copy mode"
                    );
                    Self::bind(config, &plan, BindMode::Copy)
                }
                other => other,
            },
            mode => Self::bind(config, &plan, mode),
        }
    }

    /// The mode the sockets are bound in (never `Auto`).
    pub fn mode(&self) -> BindMode {
        self.mode
    }

    /// Frames one TX kick sends at most in copy mode: the TX ring's size where the kernel
    /// takes `XDP_MAX_TX_SKB_BUDGET` (Linux 6.17 and later), else its fixed 32. The socket's
    /// send buffer can stop a call sooner (about 90 MTU-sized frames with the default
    /// `wmem_default`); what is left waits on the ring for the next kick. Zero-copy drivers send
    /// from their own NAPI loop, whatever this says.
    pub fn tx_budget(&self) -> usize {
        self.tx_budget
    }

    /// The bound (interface name, queue) pairs.
    pub fn bound(&self) -> Vec<(String, u32)> {
        self.socks
            .iter()
            .map(|s| (self.ports[s.port].name.clone(), s.queue))
            .collect()
    }

    pub fn counters(&self) -> &PortCounters {
        &self.counters
    }

    /// The kernel's counters of every socket, summed (sockets whose statistics cannot be read
    /// are skipped).
    pub fn kernel_stats(&self) -> KernelStats {
        let mut k = KernelStats::default();
        for sock in &self.socks {
            if let Ok(st) = sock.rx.fd().xdp_statistics() {
                k.rx_dropped += st.rx_dropped();
                k.rx_ring_full += st.rx_ring_full();
                k.rx_fill_ring_empty += st.rx_fill_ring_empty_descs();
                k.rx_invalid_descs += st.rx_invalid_descs();
                k.tx_invalid_descs += st.tx_invalid_descs();
            }
        }
        k
    }

    /// How the kernel runs the XDP program on each port's interface (`native`, `generic`),
    /// as rtnetlink reports it now; `None` where nothing is attached or it cannot be read.
    /// The program is attached without a mode flag, so the kernel takes native mode where the
    /// driver has it (veth does) and generic mode otherwise.
    pub fn xdp_modes(&self) -> Vec<(String, Option<&'static str>)> {
        self.ports
            .iter()
            .map(|p| {
                let mode = attached_xdp(&p.name).ok().flatten();
                (p.name.clone(), mode.map(|m| m.mode_name()))
            })
            .collect()
    }

    /// Frames in the free pool right now.
    pub fn free_frames(&self) -> usize {
        self.pool.len()
    }
}

impl Drop for WorkerPorts {
    fn drop(&mut self) {
        // Deleting the sockets lets libxdp drop its references to the XDP program and detach it
        // when the count reaches zero. An exclusive worker then removes the program if it is
        // still there (a count raised by a process that was killed).
        self.socks.clear();
        for port in &self.ports {
            let Some(ours) = port.prog_id else { continue };
            match attached_xdp(&port.name) {
                Ok(Some(now)) if now.prog_id == ours => {
                    if let Err(e) = detach_xdp(&port.name) {
                        tracing::warn!(
                            interface = %port.name,
                            prog_id = ours,
                            error = %e,
                            "cannot detach the XDP program"
                        );
                    }
                }
                _ => {}
            }
        }
    }
}

/// Removes any XDP program attached to these interfaces (logged with its id): programs left
/// by a killed process, whose libxdp reference count never returns to zero. Call it once
/// before the workers of a process open their ports when several workers share interfaces
/// ([`WorkerConfig::exclusive`] false), and once after they have all stopped.
pub fn remove_xdp_programs(names: &[&str]) -> Result<(), OpenError> {
    for &name in names {
        if let Ok(Some(stale)) = attached_xdp(name) {
            tracing::warn!(
                interface = %name,
                prog_id = stale.prog_id,
                "removing the XDP program left on a dataplane interface"
            );
            detach_xdp(name).map_err(|source| OpenError::StaleProgram {
                name: name.to_string(),
                prog_id: stale.prog_id,
                source,
            })?;
        }
    }
    Ok(())
}
