//! A worker: one pinned thread that owns its AF_XDP ports and a [`Pipeline`], and polls them
//! in batches. It never waits on another thread (when idle it sleeps, see [`IdlePolicy`]):
//! frames from the control plane (CARP adverts, gratuitous ARPs) arrive on a channel it drains
//! with `try_recv`, and frames for the control plane leave on a bounded channel with `try_send`
//! (counted when full).
//!
//! The ports are opened on the worker's own thread, after pinning, so that the UMEM's memory is
//! touched first by the core that uses it. The result of opening is reported back before the
//! loop starts: the daemon refuses to start when any worker cannot bind all its queues.
//!
//! A worker that panics in its loop stops the whole process ([`std::process::abort`]), loudly:
//! a box whose worker is gone keeps advertising CARP while that worker's queues go unserved (the
//! XDP program passes them to the kernel, around the firewall), so the peer would never take
//! over. Fail-stop instead: the peer takes over at master-down, as after `kill -9`, and the
//! service manager restarts the box. A panic here is a bug (packets never panic the pipeline);
//! the default hook has printed its message and location before the abort.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::io::afxdp::{BindMode, KernelStats, OpenError, PortCounters, WorkerConfig, WorkerPorts};
use crate::io::Ports;
use crate::pipeline::{ControlFrame, Dataplane, Pipeline, PipelineConfig};
use crate::state::Clock;
use crate::IfIndex;

/// Test hook (lab tests only): when this environment variable names a file, a worker panics
/// once that file exists, checked every 10 ms off the packet path. Lets a test show that a
/// dead worker stops the box.
pub const PANIC_HOOK_ENV: &str = "TANDEM_TEST_WORKER_PANIC_FILE";

/// Aborts the process when dropped during a panic: a worker thread's unwinding ends here.
struct AbortOnPanic {
    index: usize,
}

impl Drop for AbortOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(
                worker = self.index,
                "worker panicked: stopping the box so that the peer takes over"
            );
            eprintln!(
                "tandem: worker {} panicked; aborting (the peer takes over, the service manager \
                 restarts this box)",
                self.index
            );
            std::process::abort();
        }
    }
}

/// A frame the control plane wants sent on a dataplane interface.
#[derive(Debug, Clone)]
pub struct SlowFrame {
    pub out_if: IfIndex,
    pub bytes: Vec<u8>,
}

/// What a worker does when its rings are empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Spin on the rings: lowest latency, one core at 100% (a dedicated box).
    BusyPoll,
    /// Spin a little, then sleep, doubling up to `max_sleep_us` (plus the timer slack, 50 us):
    /// a quiet worker gives its core back (a lab, a shared machine). In copy mode it sleeps in
    /// `ppoll` on its sockets and the kernel wakes it for the first frame of the next burst;
    /// the timeout bounds what comes from elsewhere (control-plane frames, counters, stop). In
    /// zero-copy mode it sleeps on the timer alone (see [`WorkerPorts::wait_rx`]).
    Backoff { max_sleep_us: u32 },
}

impl Default for IdlePolicy {
    fn default() -> IdlePolicy {
        IdlePolicy::Backoff { max_sleep_us: 200 }
    }
}

/// Everything a worker needs to start.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// Worker number (thread name `tandem-w{index}`).
    pub index: usize,
    /// The core to pin to, if any.
    pub core: Option<usize>,
    pub ports: WorkerConfig,
    pub pipeline: PipelineConfig,
    pub idle: IdlePolicy,
    /// Frames taken from the rings per round.
    pub budget: usize,
    /// Where DHCP requests go (the DHCP thread), if a DHCP server runs.
    pub dhcp: Option<Sender<ControlFrame>>,
}

/// The kernel's AF_XDP socket statistics a worker publishes (XDP_STATISTICS), by name.
pub const KERNEL_STATS: [&str; 5] = [
    "xdp_rx_dropped",
    "xdp_rx_ring_full",
    "xdp_fill_ring_empty",
    "xdp_rx_invalid_descs",
    "xdp_tx_invalid_descs",
];

/// The port counters of a worker, published every few milliseconds for the CLI.
#[derive(Debug, Default)]
pub struct PortStats {
    pub rx: AtomicU64,
    pub tx: AtomicU64,
    pub tx_ring_full: AtomicU64,
    pub fill_starved: AtomicU64,
    pub send_no_frame: AtomicU64,
    pub rx_too_long: AtomicU64,
    /// Frames whose verdict named an interface the worker has no port for, or a bad length.
    pub bad_verdict: AtomicU64,
    /// TX kicks: `sendto` calls on the worker's sockets.
    pub tx_kicks: AtomicU64,
    /// TX kicks (`sendto`) that failed with an unexpected error.
    pub tx_kick_errors: AtomicU64,
    /// Idle waits on the sockets that failed (the worker slept on a timer instead).
    pub wait_errors: AtomicU64,
    /// Slow-path frames the worker could not send.
    pub slow_dropped: AtomicU64,
    /// The kernel's counters of the worker's sockets (`XDP_STATISTICS`), read once a second.
    pub kernel: [AtomicU64; KERNEL_STATS.len()],
}

impl PortStats {
    fn publish(&self, c: &PortCounters) {
        self.rx.store(c.rx, Ordering::Relaxed);
        self.tx.store(c.tx, Ordering::Relaxed);
        self.tx_ring_full.store(c.tx_ring_full, Ordering::Relaxed);
        self.fill_starved.store(c.fill_starved, Ordering::Relaxed);
        self.send_no_frame.store(c.send_no_frame, Ordering::Relaxed);
        self.rx_too_long.store(c.rx_too_long, Ordering::Relaxed);
        self.bad_verdict.store(c.bad_verdict, Ordering::Relaxed);
        self.tx_kicks.store(c.tx_kicks, Ordering::Relaxed);
        self.tx_kick_errors
            .store(c.tx_kick_errors, Ordering::Relaxed);
        self.wait_errors.store(c.wait_errors, Ordering::Relaxed);
    }

    /// In [`KERNEL_STATS`]' order.
    fn publish_kernel(&self, k: &KernelStats) {
        let v = [
            k.rx_dropped,
            k.rx_ring_full,
            k.rx_fill_ring_empty,
            k.rx_invalid_descs,
            k.tx_invalid_descs,
        ];
        for (a, v) in self.kernel.iter().zip(v) {
            a.store(v, Ordering::Relaxed);
        }
    }

    /// Name/value pairs, for `tandemctl stats`.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        [
            ("port_rx", self.rx.load(Ordering::Relaxed)),
            ("port_tx", self.tx.load(Ordering::Relaxed)),
            (
                "port_tx_ring_full",
                self.tx_ring_full.load(Ordering::Relaxed),
            ),
            (
                "port_fill_starved",
                self.fill_starved.load(Ordering::Relaxed),
            ),
            (
                "port_send_no_frame",
                self.send_no_frame.load(Ordering::Relaxed),
            ),
            ("port_rx_too_long", self.rx_too_long.load(Ordering::Relaxed)),
            ("port_bad_verdict", self.bad_verdict.load(Ordering::Relaxed)),
            ("port_tx_kicks", self.tx_kicks.load(Ordering::Relaxed)),
            (
                "port_tx_kick_errors",
                self.tx_kick_errors.load(Ordering::Relaxed),
            ),
            ("port_wait_errors", self.wait_errors.load(Ordering::Relaxed)),
            (
                "slow_path_dropped",
                self.slow_dropped.load(Ordering::Relaxed),
            ),
        ]
        .into_iter()
        .chain(
            KERNEL_STATS
                .iter()
                .zip(&self.kernel)
                .map(|(name, v)| (*name, v.load(Ordering::Relaxed))),
        )
        .collect()
    }
}

/// What a worker's ports are bound to, as the kernel took them: for `tandemctl status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundPorts {
    /// Copy or zero-copy (never `Auto`).
    pub socket_mode: BindMode,
    /// The (interface, RX queue) pairs with a socket.
    pub queues: Vec<(String, u32)>,
    /// Per interface, how the kernel runs the XDP program (`native`, `generic`), if known.
    pub xdp: Vec<(String, Option<&'static str>)>,
}

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    pub index: usize,
    pub bound: BoundPorts,
    pub stats: Arc<PortStats>,
    /// Frames from the control plane to send.
    pub slow_tx: Sender<SlowFrame>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts a worker thread and waits until its ports are open (or failed to open).
    pub fn start(
        dp: Arc<Dataplane>,
        spec: WorkerSpec,
        clock: Clock,
        to_control: Sender<ControlFrame>,
    ) -> Result<Worker, OpenError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(PortStats::default());
        let (slow_tx, slow_rx) = crossbeam_channel::bounded::<SlowFrame>(1024);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Result<BoundPorts, OpenError>>(1);
        let index = spec.index;
        let thread = {
            let (stop, stats) = (stop.clone(), stats.clone());
            std::thread::Builder::new()
                .name(format!("tandem-w{index}"))
                .spawn(move || {
                    if let Some(core) = spec.core {
                        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                            tracing::warn!(worker = index, core, "could not pin the worker");
                        }
                    }
                    let ports = match WorkerPorts::open(&spec.ports) {
                        Ok(p) => {
                            // The TX budget means something in copy mode only.
                            let tx_budget = (p.mode() == BindMode::Copy).then(|| p.tx_budget());
                            tracing::info!(
                                worker = index,
                                mode = ?p.mode(),
                                tx_budget = ?tx_budget,
                                "ports open (tx_budget: frames one TX kick sends)"
                            );
                            let _ = ready_tx.send(Ok(BoundPorts {
                                socket_mode: p.mode(),
                                queues: p.bound(),
                                xdp: p.xdp_modes(),
                            }));
                            p
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    // From here on a panic stops the process (see the module doc); before,
                    // a failed start is an error the daemon reports.
                    let _abort = AbortOnPanic { index };
                    let mut pipeline = Pipeline::new(dp, &spec.pipeline);
                    pipeline.set_control_channel(to_control);
                    if let Some(tx) = spec.dhcp.clone() {
                        pipeline.set_dhcp_channel(tx);
                    }
                    PollLoop {
                        ports,
                        pipeline,
                        spec,
                        clock,
                        slow_rx,
                        stop,
                        stats,
                        panic_file: std::env::var_os(PANIC_HOOK_ENV).map(PathBuf::from),
                    }
                    .run();
                })
                .map_err(|e| {
                    OpenError::Config(format!("worker {index}: cannot start thread: {e}"))
                })?
        };
        match ready_rx.recv() {
            Ok(Ok(bound)) => Ok(Worker {
                index,
                bound,
                stats,
                slow_tx,
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(OpenError::Config(format!(
                    "worker {index} ended before opening its ports"
                )))
            }
        }
    }

    /// Asks the worker to stop and waits for it; its ports close (and detach XDP) on its own
    /// thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The worker thread's side: everything its poll loop owns.
struct PollLoop {
    ports: WorkerPorts,
    pipeline: Pipeline,
    spec: WorkerSpec,
    clock: Clock,
    /// Frames from the control plane to send.
    slow_rx: Receiver<SlowFrame>,
    stop: Arc<AtomicBool>,
    stats: Arc<PortStats>,
    /// The test hook's file ([`PANIC_HOOK_ENV`]), if set.
    panic_file: Option<PathBuf>,
}

impl PollLoop {
    /// The poll loop, until the worker is asked to stop.
    fn run(self) {
        let PollLoop {
            mut ports,
            mut pipeline,
            spec,
            clock,
            slow_rx,
            stop,
            stats,
            panic_file,
        } = self;
        let mut idle_rounds: u32 = 0;
        let mut sleep_us: u32 = 1;
        let mut last_publish = 0;
        let mut last_kernel = 0;
        while !stop.load(Ordering::Relaxed) {
            let now = clock.now_ms();
            let n = pipeline.round(&mut ports, spec.budget, now);
            let mut slow = 0;
            while let Ok(f) = slow_rx.try_recv() {
                slow += 1;
                if !ports.send_copy(f.out_if, &f.bytes) {
                    stats.slow_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            if now.saturating_sub(last_publish) >= 10 {
                stats.publish(ports.counters());
                last_publish = now;
                if now.saturating_sub(last_kernel) >= 1000 {
                    stats.publish_kernel(&ports.kernel_stats());
                    last_kernel = now;
                }
                // The test hook: one branch every 10 ms when unset, never per packet.
                if let Some(f) = &panic_file {
                    if f.exists() {
                        panic!(
                            "worker {}: {} exists ({PANIC_HOOK_ENV}): test panic",
                            spec.index,
                            f.display()
                        );
                    }
                }
            }
            if n > 0 || slow > 0 {
                idle_rounds = 0;
                sleep_us = 1;
                continue;
            }
            match spec.idle {
                IdlePolicy::BusyPoll => std::hint::spin_loop(),
                IdlePolicy::Backoff { max_sleep_us } => {
                    idle_rounds = idle_rounds.saturating_add(1);
                    if idle_rounds < 64 {
                        std::hint::spin_loop();
                    } else {
                        // Not a plain sleep: a timer's wakeup comes 50 us or more late (timer
                        // slack), which was this box's latency at moderate rates.
                        ports.wait_rx(Duration::from_micros(u64::from(sleep_us)));
                        sleep_us = (sleep_us * 2).min(max_sleep_us.max(1));
                    }
                }
            }
        }
        stats.publish(ports.counters());
    }
}
