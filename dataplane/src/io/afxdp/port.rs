//! [`WorkerPorts`]: one UMEM, its free-frame pool, and one socket per (interface, RX queue).

use std::io::Write;
use std::os::fd::AsRawFd;

use xsk_rs::config::{
    BindFlags, FrameSize, LibxdpFlags, QueueSize, SocketConfig, UmemConfig, XdpFlags,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use super::netlink::{self, attached_xdp, detach_xdp};
use super::{BindMode, OpenError, Queues, WorkerConfig};
use crate::io::{Verdict, FRAME_SIZE};
use crate::IfIndex;

/// UMEM chunk size: 256 bytes of XDP headroom in front of a [`FRAME_SIZE`] buffer need more
/// than 2048, and aligned chunks are a power of two.
const CHUNK_SIZE: u32 = 4096;

/// `tx_of` entry of an interface index this worker has no port for.
const NO_PORT: u16 = u16::MAX;

// `tx_of` has one entry per possible `IfIndex`.
const _: () = assert!(IfIndex::MAX as usize == 255);

/// Frames per round taken from each completion ring.
const COMPLETE_BATCH: usize = 256;

/// In copy mode one `sendto` sends at most this many frames (`TX_BATCH_SIZE`, net/xdp/xsk.c).
const KERNEL_TX_BATCH: usize = 32;

// linux/if_xdp.h
const SOL_XDP: libc::c_int = 283;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;

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
    /// TX kicks (`sendto`) that failed with an unexpected error.
    pub tx_kick_errors: u64,
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

/// Where the frames are, from [`WorkerPorts::frames_accounted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAudit {
    /// Chunks in the UMEM.
    pub total: u32,
    /// In the free pool.
    pub free: u32,
    /// Given to fill rings and not received yet.
    pub in_fill: u32,
    /// Given to TX rings and not completed yet.
    pub in_tx: u32,
}

/// Where one chunk is (debug builds only): every move asserts the place it comes from.
#[cfg(debug_assertions)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Free,
    Fill(u16),
    Pipeline,
    Tx(u16),
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
    batch: usize,
    /// Socket the next round receives from first.
    rx_next: usize,
    scratch: Vec<FrameDesc>,
    mode: BindMode,
    counters: PortCounters,
    #[cfg(debug_assertions)]
    places: Vec<Place>,
    _not_send: std::marker::PhantomData<*const ()>,
}

/// The (port, queue) pairs to bind, resolved and checked before anything is bound.
type Plan = Vec<(usize, u32)>;

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

    fn plan(config: &WorkerConfig) -> Result<Plan, OpenError> {
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

    fn bind(config: &WorkerConfig, plan: &Plan, mode: BindMode) -> Result<Self, OpenError> {
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
        let fill_target = ring.min((total / (2 * nsocks)).max(1));
        let mut tx_of = [NO_PORT; 256];
        for port in &ports {
            // `plan` caps the number of sockets below u16::MAX.
            tx_of[usize::from(port.if_index)] = port.tx_sock as u16;
        }
        let mut ports = Self {
            socks,
            ports,
            tx_of,
            umem,
            #[cfg(debug_assertions)]
            places: vec![Place::Free; pool.len()],
            pool,
            total,
            fill_target,
            ring_size: ring,
            batch: config.batch,
            rx_next: 0,
            scratch: vec![FrameDesc::default(); config.batch.max(COMPLETE_BATCH)],
            mode: actual,
            counters: PortCounters::default(),
            _not_send: std::marker::PhantomData,
        };
        ports.refill();
        Ok(ports)
    }

    /// The mode the sockets are bound in (never `Auto`).
    pub fn mode(&self) -> BindMode {
        self.mode
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

    /// Frames in the free pool right now.
    pub fn free_frames(&self) -> usize {
        self.pool.len()
    }

    /// One batched round: reap TX completions, refill fill rings, receive up to `budget` frames
    /// (at most `batch` per RX ring) and run `handler` on each, then put the forwarded frames on
    /// their TX rings with one kick per ring (in copy mode repeated while the kernel says it
    /// has more, see the module docs). Returns the number of frames received.
    ///
    /// `handler(in_if, buf, len)` gets the whole [`FRAME_SIZE`] buffer, the frame in its first
    /// `len` bytes.
    pub fn poll<F>(&mut self, budget: usize, handler: &mut F) -> usize
    where
        F: FnMut(IfIndex, &mut [u8], usize) -> Verdict,
    {
        self.complete();
        self.kick_leftover_tx();
        self.refill();
        let mut received = 0;
        let mut scratch = std::mem::take(&mut self.scratch);
        // Start one socket further each round, so that a budget smaller than a batch per
        // socket cannot starve the last sockets.
        let nsocks = self.socks.len();
        self.rx_next = (self.rx_next + 1) % nsocks;
        for s in (self.rx_next..nsocks).chain(0..self.rx_next) {
            let want = self.batch.min(budget - received);
            if want == 0 {
                break;
            }
            // SAFETY: `scratch` only receives descriptors; the kernel hands back chunks of the
            // UMEM this socket was created with.
            let n = unsafe { self.socks[s].rx.consume(&mut scratch[..want]) };
            if n == 0 {
                continue;
            }
            received += n;
            self.socks[s].in_fill -= n as u32;
            self.counters.rx += n as u64;
            let in_if = self.ports[self.socks[s].port].if_index;
            for desc in &mut scratch[..n] {
                self.mark(desc, Place::fill(s), Place::Pipeline);
                let rx_len = desc.lengths().data();
                let verdict = {
                    // SAFETY: the chunk came from this socket's RX ring, so it belongs to `umem`
                    // and the kernel is done with it; no other descriptor refers to it (each
                    // chunk is in one place only), so this is the only live reference to it.
                    let mut data = unsafe { self.umem.data_mut(desc) };
                    // `contents_mut` is the first `len` bytes: lengthen the frame to the whole
                    // buffer the pipeline may use (clamped to the chunk's room after the
                    // packet start, 3840 bytes unless an XDP program moved the start).
                    data.cursor().set_pos(FRAME_SIZE);
                    let buf = data.contents_mut();
                    let verdict = if buf.len() == FRAME_SIZE && rx_len <= FRAME_SIZE {
                        Some(handler(in_if, buf, rx_len))
                    } else {
                        None
                    };
                    if let Some(Verdict::Tx { len, .. }) = verdict {
                        // The descriptor carries the verdict's length, not the received one:
                        // the frame may have grown or shrunk.
                        data.cursor().set_pos(len.min(FRAME_SIZE));
                    }
                    verdict
                };
                match verdict {
                    None => {
                        self.counters.rx_too_long += 1;
                        self.free(*desc, Place::Pipeline);
                    }
                    Some(Verdict::Drop) => {
                        self.counters.dropped += 1;
                        self.free(*desc, Place::Pipeline);
                    }
                    Some(Verdict::Tx { out_if, len }) => {
                        let out = usize::from(self.tx_of[usize::from(out_if)]);
                        if out < nsocks && len <= FRAME_SIZE && len > 0 {
                            self.socks[out].pending.push(*desc);
                        } else {
                            self.counters.bad_verdict += 1;
                            self.free(*desc, Place::Pipeline);
                        }
                    }
                }
            }
        }
        self.scratch = scratch;
        self.flush_tx();
        received
    }

    /// Sends a copy of `bytes` on `out_if` (slow path: ARP, CARP adverts). False, and counted,
    /// if there is no free frame, no such port, the frame is too long, or the TX ring is full.
    pub fn send_copy(&mut self, out_if: IfIndex, bytes: &[u8]) -> bool {
        let s = usize::from(self.tx_of[usize::from(out_if)]);
        if s >= self.socks.len() || bytes.is_empty() || bytes.len() > FRAME_SIZE {
            self.counters.bad_verdict += 1;
            return false;
        }
        if self.pool.is_empty() {
            self.complete();
        }
        let Some(mut desc) = self.pool.pop() else {
            self.counters.send_no_frame += 1;
            return false;
        };
        self.mark(&desc, Place::Free, Place::Pipeline);
        let written = {
            // SAFETY: the chunk came from the pool, so no ring and no other descriptor holds
            // it; it belongs to `umem`.
            let mut data = unsafe { self.umem.data_mut(&mut desc) };
            let mut cursor = data.cursor();
            cursor.set_pos(0);
            cursor.write_all(bytes).is_ok()
        };
        if !written {
            self.counters.bad_verdict += 1;
            self.free(desc, Place::Pipeline);
            return false;
        }
        self.socks[s].pending.push(desc);
        let before = self.counters.tx;
        self.flush_one(s);
        self.counters.tx > before
    }

    /// Checks that every chunk is in exactly one place: free + in fill rings + in TX rings ==
    /// total, and no chunk twice in the pool. Debug builds also check each chunk's tracked
    /// place against the counts.
    pub fn frames_accounted(&self) -> Result<FrameAudit, String> {
        let audit = FrameAudit {
            total: self.total,
            free: self.pool.len() as u32,
            in_fill: self.socks.iter().map(|s| s.in_fill).sum(),
            in_tx: self.socks.iter().map(|s| s.in_tx).sum(),
        };
        if audit.free + audit.in_fill + audit.in_tx != audit.total {
            return Err(format!("frames do not add up: {audit:?}"));
        }
        let mut seen = vec![false; self.total as usize];
        for desc in &self.pool {
            let i = chunk_index(desc);
            match seen.get_mut(i) {
                Some(s) if !*s => *s = true,
                Some(_) => return Err(format!("chunk {i} is in the free pool twice")),
                None => return Err(format!("chunk {i} is outside the UMEM")),
            }
        }
        #[cfg(debug_assertions)]
        {
            for (s, sock) in self.socks.iter().enumerate() {
                let fill = self.places.iter().filter(|p| **p == Place::fill(s)).count();
                let tx = self.places.iter().filter(|p| **p == Place::tx(s)).count();
                if fill != sock.in_fill as usize || tx != sock.in_tx as usize {
                    return Err(format!(
                        "socket {s}: tracked {fill} in fill, {tx} in tx; counted {} and {}",
                        sock.in_fill, sock.in_tx
                    ));
                }
            }
            let free = self.places.iter().filter(|p| **p == Place::Free).count();
            if free != self.pool.len() {
                return Err(format!(
                    "tracked {free} free, pool holds {}",
                    self.pool.len()
                ));
            }
        }
        Ok(audit)
    }

    /// Reaps every completion ring into the pool.
    fn complete(&mut self) {
        let mut scratch = std::mem::take(&mut self.scratch);
        for s in 0..self.socks.len() {
            loop {
                let want = scratch.len().min(self.socks[s].in_tx as usize);
                if want == 0 {
                    break;
                }
                // SAFETY: completion entries are chunks this socket's TX ring sent, all of
                // `umem`. `consume` zeroes their lengths (the pool does not care).
                let n = unsafe { self.socks[s].cq.consume(&mut scratch[..want]) };
                if n == 0 {
                    break;
                }
                self.socks[s].in_tx -= n as u32;
                self.counters.completed += n as u64;
                for desc in &scratch[..n] {
                    self.free(*desc, Place::tx(s));
                }
            }
        }
        self.scratch = scratch;
    }

    /// Kicks TX rings that still hold frames the kernel has not taken (copy mode stops after
    /// 32 frames per kick, or early when the completion ring is full), so that they leave
    /// without waiting for new traffic on that ring.
    fn kick_leftover_tx(&mut self) {
        for s in 0..self.socks.len() {
            let sock = &mut self.socks[s];
            if sock.in_tx > 0 && sock.tx.nb_free_exact() < self.ring_size {
                self.kick_tx(s, 1);
            }
        }
    }

    /// Tops every fill ring up to its target from the pool.
    fn refill(&mut self) {
        for s in 0..self.socks.len() {
            let sock = &mut self.socks[s];
            let want = self.fill_target.saturating_sub(sock.in_fill);
            if want == 0 {
                continue;
            }
            let free_slots = sock.fq.nb_free(want);
            let n = (want.min(free_slots) as usize).min(self.pool.len());
            if n < want as usize && n < free_slots as usize {
                self.counters.fill_starved += 1;
            }
            if n == 0 {
                continue;
            }
            let from = self.pool.len() - n;
            // SAFETY: the descriptors come from the pool (each chunk once, owned by no ring),
            // and `nb_free` said `n` slots are free, so all `n` are accepted.
            let done = unsafe { sock.fq.produce(&self.pool[from..]) };
            debug_assert_eq!(done, n, "fill ring took fewer frames than nb_free promised");
            sock.in_fill += done as u32;
            #[cfg(debug_assertions)]
            for i in from..from + done {
                let c = chunk_index(&self.pool[i]);
                assert_eq!(
                    self.places[c],
                    Place::Free,
                    "chunk {c} filled while not free"
                );
                self.places[c] = Place::fill(s);
            }
            // Frames the ring refused (never, per nb_free) stay at the top of the pool.
            self.pool.drain(from..from + done);
            if sock.fq.needs_wakeup() {
                let _ = sock.fq.wakeup(sock.rx.fd_mut(), 0);
            }
        }
    }

    fn flush_tx(&mut self) {
        for s in 0..self.socks.len() {
            if !self.socks[s].pending.is_empty() {
                self.flush_one(s);
            }
        }
    }

    /// Puts socket `s`'s pending frames on its TX ring and kicks it; frames that do not fit go
    /// back to the pool, counted.
    fn flush_one(&mut self, s: usize) {
        let mut pending = std::mem::take(&mut self.socks[s].pending);
        // SAFETY: pending frames are chunks of `umem` held by nothing else (taken from an RX
        // ring or the pool), with their lengths set.
        let n = unsafe { self.socks[s].tx.produce(&pending) };
        self.socks[s].in_tx += n as u32;
        self.counters.tx += n as u64;
        for desc in &pending[..n] {
            self.mark(desc, Place::Pipeline, Place::tx(s));
        }
        for desc in &pending[n..] {
            self.counters.tx_ring_full += 1;
            self.free(*desc, Place::Pipeline);
        }
        let full = n < pending.len();
        pending.clear();
        self.socks[s].pending = pending;
        // A full ring is kicked too: the kernel must drain it for the next round to fit.
        if n > 0 || full {
            self.kick_tx(s, n.max(1));
        }
    }

    /// Wakes the kernel to send: once in zero-copy, and in copy mode again while the kernel
    /// says it has more to send (it sends [`KERNEL_TX_BATCH`] frames per call).
    fn kick_tx(&mut self, s: usize, queued: usize) {
        let sock = &self.socks[s];
        if !sock.tx.needs_wakeup() {
            return;
        }
        let fd = sock.tx.fd().as_raw_fd();
        let rounds = match self.mode {
            BindMode::Copy => queued.div_ceil(KERNEL_TX_BATCH) + 1,
            _ => 1,
        };
        for _ in 0..rounds {
            // SAFETY: a zero-length sendto on the socket's own fd, no buffers.
            let rc = unsafe {
                libc::sendto(
                    fd,
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if rc >= 0 {
                break;
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) => continue,
                Some(libc::ENOBUFS | libc::EBUSY | libc::ENETDOWN) => break,
                _ => {
                    self.counters.tx_kick_errors += 1;
                    break;
                }
            }
        }
    }

    fn free(&mut self, desc: FrameDesc, from: Place) {
        self.mark(&desc, from, Place::Free);
        self.pool.push(desc);
    }

    #[cfg(debug_assertions)]
    fn mark(&mut self, desc: &FrameDesc, from: Place, to: Place) {
        let c = chunk_index(desc);
        let place = self.places.get_mut(c).expect("descriptor outside the UMEM");
        assert_eq!(
            *place, from,
            "chunk {c} moves to {to:?} from {place:?}, expected {from:?}"
        );
        *place = to;
    }

    #[cfg(not(debug_assertions))]
    #[inline(always)]
    fn mark(&mut self, _desc: &FrameDesc, _from: Place, _to: Place) {}
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

/// `Place` exists in release builds too, so that `mark` keeps one signature; only debug builds
/// store it.
#[cfg(not(debug_assertions))]
#[derive(Debug, Clone, Copy)]
enum Place {
    Free,
    Pipeline,
    Fill,
    Tx,
}

impl Place {
    #[cfg(debug_assertions)]
    fn fill(s: usize) -> Self {
        Self::Fill(s as u16)
    }

    #[cfg(debug_assertions)]
    fn tx(s: usize) -> Self {
        Self::Tx(s as u16)
    }

    #[cfg(not(debug_assertions))]
    fn fill(_s: usize) -> Self {
        Self::Fill
    }

    #[cfg(not(debug_assertions))]
    fn tx(_s: usize) -> Self {
        Self::Tx
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

fn chunk_index(desc: &FrameDesc) -> usize {
    desc.addr() / CHUNK_SIZE as usize
}

fn is_zero_copy(fd: libc::c_int) -> bool {
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

fn with_source(e: &dyn std::error::Error) -> String {
    match e.source() {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}
