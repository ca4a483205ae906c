//! Opening: the plan of (interface, queue) pairs checked before anything is bound, the UMEM
//! created and one XDP socket bound per pair.

use std::os::fd::AsRawFd;

use xsk_rs::config::{
    BindFlags, FrameSize, LibxdpFlags, QueueSize, SocketConfig, UmemConfig, XdpFlags,
};
use xsk_rs::{FrameDesc, Socket, Umem};

use super::super::netlink::{self, attached_xdp};
use super::super::{BindMode, OpenError, Queues, WorkerConfig};
use super::{Port, PortCounters, Sock, WorkerPorts, CHUNK_SIZE, COMPLETE_BATCH, NO_PORT};

pub(super) fn is_zero_copy(fd: libc::c_int) -> bool {
    let mut opts: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: `opts` and `len` are valid for writes and `len` is `opts`'s size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_OPTIONS,
            (&mut opts as *mut u32).cast(),
            &mut len,
        )
    };
    rc == 0 && opts & XDP_OPTIONS_ZEROCOPY != 0
}

pub(super) fn with_source(e: &dyn std::error::Error) -> String {
    match e.source() {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}

// linux/if_xdp.h
const SOL_XDP: libc::c_int = 283;

const XDP_OPTIONS: libc::c_int = 8;

const XDP_OPTIONS_ZEROCOPY: u32 = 1;

const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// What one copy-mode `sendto` sends at most without `XDP_MAX_TX_SKB_BUDGET` (`TX_BATCH_SIZE`,
/// net/xdp/xsk.c).
pub(super) const KERNEL_TX_BATCH: usize = 32;

/// Lets one copy-mode `sendto` on `fd` send up to `ring` frames (the whole TX ring) instead of
/// 32, so that a round's batch leaves in one system call rather than one per 32 frames. Returns
/// the budget in force: `ring`, or [`KERNEL_TX_BATCH`] on a kernel without the option (before
/// 6.17: `ENOPROTOOPT`), which is no error: the kick then repeats, as it always did. Any other
/// refusal is logged and treated the same way. (The socket's send buffer still bounds one call:
/// with the default `wmem_default` of 212992 bytes about 90 MTU-sized frames leave per call; the
/// rest stay on the ring for the next kick, never lost.)
pub(super) fn raise_tx_budget(fd: libc::c_int, ring: u32) -> usize {
    // SAFETY: `ring` is a valid u32 for reads, and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            SOL_XDP,
            XDP_MAX_TX_SKB_BUDGET,
            (&ring as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        return ring as usize;
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOPROTOOPT) {
        tracing::warn!(
            ring,
            error = %err,
            "setsockopt(XDP_MAX_TX_SKB_BUDGET) refused; copy-mode TX kicks send 32 frames a call"
        );
    }
    KERNEL_TX_BATCH
}

/// The (port, queue) pairs to bind, resolved and checked before anything is bound.
type Plan = Vec<(usize, u32)>;

impl WorkerPorts {
    pub(super) fn plan(config: &WorkerConfig) -> Result<Plan, OpenError> {
        if config.ports.is_empty() {
            return Err(OpenError::Config("no ports".into()));
        }
        if !config.ring_size.is_power_of_two() || config.ring_size < 64 {
            return Err(OpenError::Config(format!(
                "ring size {} is not a power of two >= 64",
                config.ring_size
            )));
        }
        if config.batch == 0 {
            return Err(OpenError::Config("batch is 0".into()));
        }
        let mut plan = Vec::new();
        for (i, spec) in config.ports.iter().enumerate() {
            if config.ports[..i]
                .iter()
                .any(|p| p.if_index == spec.if_index || p.name == spec.name)
            {
                return Err(OpenError::Config(format!(
                    "interface {} (index {}) is listed twice",
                    spec.name, spec.if_index
                )));
            }
            netlink::kernel_ifindex(&spec.name).map_err(|source| OpenError::NoInterface {
                name: spec.name.clone(),
                source,
            })?;
            let count =
                netlink::rx_queue_count(&spec.name).map_err(|source| OpenError::QueueCount {
                    name: spec.name.clone(),
                    source,
                })?;
            let queues: Vec<u32> = match &spec.queues {
                Queues::All => (0..count).collect(),
                Queues::Only(q) => q.clone(),
            };
            if queues.is_empty() {
                return Err(OpenError::Config(format!(
                    "interface {}: no queues",
                    spec.name
                )));
            }
            for &queue in &queues {
                if queue >= count {
                    return Err(OpenError::NoQueue {
                        name: spec.name.clone(),
                        queue,
                        count,
                    });
                }
                if !plan.contains(&(i, queue)) {
                    plan.push((i, queue));
                }
            }
        }
        if plan.len() >= usize::from(NO_PORT) {
            return Err(OpenError::Config("too many sockets".into()));
        }
        Ok(plan)
    }

    pub(super) fn bind(
        config: &WorkerConfig,
        plan: &Plan,
        mode: BindMode,
    ) -> Result<Self, OpenError> {
        let nsocks = plan.len() as u32;
        let ring = config.ring_size;
        let total = if config.frames == 0 {
            2 * ring * nsocks
        } else {
            config.frames
        };
        let umem_err = |reason: String| OpenError::Umem {
            frames: total,
            reason,
        };
        let umem_config = UmemConfig::builder()
            .frame_size(FrameSize::new(CHUNK_SIZE).map_err(|e| umem_err(e.to_string()))?)
            .fill_queue_size(QueueSize::new(ring).map_err(|e| umem_err(e.to_string()))?)
            .comp_queue_size(QueueSize::new(ring).map_err(|e| umem_err(e.to_string()))?)
            .frame_headroom(0)
            .build()
            .map_err(|e| umem_err(e.to_string()))?;
        let frames = std::num::NonZeroU32::new(total).ok_or_else(|| umem_err("0 frames".into()))?;
        let (umem, pool) =
            Umem::new(umem_config, frames, false).map_err(|e| umem_err(with_source(&e)))?;

        let mut bind_flags = BindFlags::XDP_USE_NEED_WAKEUP;
        bind_flags |= match mode {
            BindMode::ZeroCopy => BindFlags::XDP_ZEROCOPY,
            _ => BindFlags::XDP_COPY,
        };
        let ring_size = QueueSize::new(ring).map_err(|e| OpenError::Config(e.to_string()))?;
        let socket_config = SocketConfig::builder()
            .rx_queue_size(ring_size)
            .tx_queue_size(ring_size)
            .libxdp_flags(LibxdpFlags::empty())
            .xdp_flags(XdpFlags::empty())
            .bind_flags(bind_flags)
            .build();

        let mut ports: Vec<Port> = config
            .ports
            .iter()
            .map(|spec| Port {
                if_index: spec.if_index,
                name: spec.name.clone(),
                tx_sock: usize::MAX,
                prog_id: None,
            })
            .collect();
        let mut socks = Vec::with_capacity(plan.len());
        for &(port, queue) in plan {
            let name = &config.ports[port].name;
            let bind_err = |reason: String| OpenError::Bind {
                name: name.clone(),
                queue,
                mode,
                reason,
            };
            let iface = name
                .parse()
                .map_err(|_| bind_err("name has a NUL byte".into()))?;
            // SAFETY: xsk-rs requires that the UMEM's frames are not handed to the kernel
            // twice and that descriptors given to the rings belong to this UMEM. Every socket
            // here shares `umem`, and frames only reach its rings through the pool below, which
            // holds each chunk once.
            let (tx, rx, rings) = unsafe { Socket::new(socket_config, &umem, &iface, queue) }
                .map_err(|e| bind_err(with_source(&e)))?;
            let (fq, cq) =
                rings.ok_or_else(|| bind_err("libxdp returned no fill/completion ring".into()))?;
            if ports[port].tx_sock == usize::MAX {
                ports[port].tx_sock = socks.len();
            }
            socks.push(Sock {
                port,
                queue,
                rx,
                tx,
                fq,
                cq,
                in_fill: 0,
                in_tx: 0,
                pending: Vec::with_capacity(config.batch * plan.len()),
            });
        }
        if config.exclusive {
            for port in &mut ports {
                port.prog_id = attached_xdp(&port.name).ok().flatten().map(|a| a.prog_id);
            }
        }
        let actual = match socks.first().map(|s| is_zero_copy(s.rx.fd().as_raw_fd())) {
            Some(true) => BindMode::ZeroCopy,
            _ => BindMode::Copy,
        };
        // One budget for the worker: every socket has the same ring size, and a kernel has the
        // option for all of them or none.
        let tx_budget = match actual {
            BindMode::Copy => socks
                .iter()
                .map(|s| raise_tx_budget(s.tx.fd().as_raw_fd(), ring))
                .min()
                .unwrap_or(KERNEL_TX_BATCH),
            _ => KERNEL_TX_BATCH,
        };
        let fill_target = ring.min((total / (2 * nsocks)).max(1));
        let mut tx_of = [NO_PORT; 256];
        for port in &ports {
            // `plan` caps the number of sockets below u16::MAX.
            tx_of[usize::from(port.if_index)] = port.tx_sock as u16;
        }
        let pollfds = super::wait::pollfds(&socks);
        let mut ports = Self {
            socks,
            ports,
            tx_of,
            umem,
            #[cfg(debug_assertions)]
            places: vec![super::Place::Free; pool.len()],
            pool,
            total,
            fill_target,
            ring_size: ring,
            tx_budget,
            batch: config.batch,
            rx_next: 0,
            scratch: vec![FrameDesc::default(); config.batch.max(COMPLETE_BATCH)],
            pollfds,
            mode: actual,
            counters: PortCounters::default(),
            _not_send: std::marker::PhantomData,
        };
        ports.refill();
        Ok(ports)
    }
}
