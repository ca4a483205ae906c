//! CARP on a thread of its own (DESIGN.md section 2; issue 10.4): the machines' timers, the
//! adverts received from the workers and the adverts sent all run on `tandem-carp`, which
//! nothing else can delay. Before, CARP ran in the control loop between control requests: a
//! `tandemctl states` walking a big table, a reload or a burst of requests held back adverts
//! and master-down timers, and the loop took at most 64 received frames per 10 ms round, so a
//! flood of junk on the CARP group above ~6.4k frames/s pushed the peer's adverts out of the
//! slow-path queue and the backup went MASTER beside the master.
//!
//! The control thread keeps a [`CarpHandle`]: requests go to the CARP thread on a channel and
//! the answers come back on a one-shot channel. The CARP thread never waits on the control
//! thread; the control thread waits at most [`REPLY_TIMEOUT`] for an answer.
//!
//! The thread's loop: wait for a frame, a request or CARP's next deadline, whichever comes
//! first; take at most [`FRAMES_PER_ROUND`] frames, then run the timers. A frame costs an HMAC
//! (about a microsecond), so a round of frames never pushes a timer back by more than about
//! a millisecond, and the thread drains far faster than the workers' budgets let frames in
//! (`tandem_dataplane::pipeline`, the CARP slow-path filter).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, never, select, Receiver, Sender};
use tandem_dataplane::pipeline::{ControlFrame, Dataplane};
use tandem_dataplane::worker::SlowFrame;

use super::runtime::{CarpRuntime, MaintenanceError};
use crate::config::Config;

/// Received frames handled before the timers run again.
pub const FRAMES_PER_ROUND: usize = 256;
/// The longest the thread sleeps with nothing due (the link poll is due every 20 ms anyway).
const IDLE: Duration = Duration::from_millis(100);
/// How long the control thread waits for the CARP thread's answer.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// A request from the control thread.
enum Request {
    Status(Sender<super::Status>),
    Stats(Sender<Vec<(String, u64)>>),
    SetEnabled(bool, Sender<()>),
    SetMaintenance(bool, Sender<Result<(), MaintenanceError>>),
    Reconfigure(Box<Config>, Vec<String>, Sender<()>),
    Stop(Sender<()>),
}

/// The control thread's side of the CARP thread.
#[derive(Debug)]
pub struct CarpHandle {
    requests: Sender<Request>,
    sync_pending: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("carp request")
    }
}

impl CarpHandle {
    /// Builds the runtime of `config`, starts its groups (after setting the state sync's bulk
    /// demotion, so that a box that restarts takes no VIP before it holds the states) and runs
    /// it on the `tandem-carp` thread, which takes the workers' slow-path frames from `frames`.
    pub fn start(
        config: &Config,
        devices: &[String],
        dp: Arc<Dataplane>,
        send: Sender<SlowFrame>,
        state_dir: Option<PathBuf>,
        frames: Receiver<ControlFrame>,
        sync_pending: bool,
    ) -> std::io::Result<CarpHandle> {
        let now = Instant::now();
        let mut runtime = CarpRuntime::new(config, devices, dp, send, state_dir, now);
        runtime.set_sync_pending(sync_pending, now);
        runtime.start(now);
        let (requests, rx) = bounded::<Request>(64);
        let pending = Arc::new(AtomicBool::new(sync_pending));
        let p = pending.clone();
        let thread = std::thread::Builder::new()
            .name("tandem-carp".into())
            .spawn(move || run(runtime, &frames, &rx, &p))?;
        Ok(CarpHandle {
            requests,
            sync_pending: pending,
            thread: Some(thread),
        })
    }

    /// Sends `make(reply_tx)` and waits for the answer.
    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Request) -> Option<T> {
        let (tx, rx) = bounded(1);
        self.requests.send_timeout(make(tx), REPLY_TIMEOUT).ok()?;
        rx.recv_timeout(REPLY_TIMEOUT).ok()
    }

    /// The box's CARP status (empty if the CARP thread does not answer; the CARP thread reads
    /// the clock itself).
    pub fn status(&self) -> super::Status {
        self.ask(Request::Status).unwrap_or_default()
    }

    /// Counters for `tandemctl stats`, prefixed `carp_`.
    pub fn stats(&self) -> Vec<(String, u64)> {
        let mut v = self.ask(Request::Stats).unwrap_or_default();
        v.push((
            "carp_thread_running".to_string(),
            u64::from(self.is_running()),
        ));
        v
    }

    pub fn set_enabled(&mut self, on: bool) {
        let _ = self.ask(|tx| Request::SetEnabled(on, tx));
    }

    pub fn set_maintenance(&mut self, on: bool) -> Result<(), MaintenanceError> {
        self.ask(|tx| Request::SetMaintenance(on, tx))
            .unwrap_or(Err(MaintenanceError::NoAnswer))
    }

    /// State sync's bulk update is running or done; the CARP thread reads it every round.
    pub fn set_sync_pending(&self, pending: bool) {
        self.sync_pending.store(pending, Ordering::Relaxed);
    }

    /// A new config's CARP groups ([`CarpRuntime::reconfigure`]): only what changed restarts.
    pub fn reconfigure(&self, config: &Config, devices: &[String]) {
        let config = Box::new(config.clone());
        let devices = devices.to_vec();
        if self
            .ask(|tx| Request::Reconfigure(config, devices, tx))
            .is_none()
        {
            tracing::error!("carp: the CARP thread did not take the new config");
        }
    }

    /// Whether the CARP thread is alive.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops every group (masters bow out) and the thread.
    pub fn stop(&mut self) {
        let _ = self.ask(Request::Stop);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("carp: the CARP thread panicked");
            }
        }
    }
}

impl Drop for CarpHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

/// The CARP thread's loop; returns on [`Request::Stop`] or when the handle is gone.
fn run(
    mut rt: CarpRuntime,
    frames: &Receiver<ControlFrame>,
    requests: &Receiver<Request>,
    sync_pending: &AtomicBool,
) {
    // Once the workers are gone their channel is disconnected: stop selecting on it.
    let none = never();
    let mut frames_open = true;
    loop {
        let now = Instant::now();
        rt.set_sync_pending(sync_pending.load(Ordering::Relaxed), now);
        rt.tick(now);
        let wait = rt
            .next_deadline()
            .map_or(IDLE, |t| t.saturating_duration_since(now).min(IDLE));
        let f = if frames_open { frames } else { &none };
        select! {
            recv(f) -> first => match first {
                Ok(first) => {
                    rt.on_frame(&first, Instant::now());
                    for frame in frames.try_iter().take(FRAMES_PER_ROUND - 1) {
                        rt.on_frame(&frame, Instant::now());
                    }
                }
                Err(_) => frames_open = false,
            },
            recv(requests) -> r => match r {
                Ok(Request::Stop(done)) => {
                    rt.stop(Instant::now());
                    let _ = done.send(());
                    return;
                }
                Ok(r) => serve(&mut rt, r),
                Err(_) => {
                    rt.stop(Instant::now());
                    return;
                }
            },
            default(wait) => {}
        }
    }
}

/// One request from the control thread; the answer goes back on its channel.
fn serve(rt: &mut CarpRuntime, r: Request) {
    let now = Instant::now();
    match r {
        Request::Status(tx) => {
            let _ = tx.send(rt.status(now));
        }
        Request::Stats(tx) => {
            let _ = tx.send(rt.stats());
        }
        Request::SetEnabled(on, tx) => {
            rt.set_enabled(on, now);
            let _ = tx.send(());
        }
        Request::SetMaintenance(on, tx) => {
            let _ = tx.send(rt.set_maintenance(on, now));
        }
        Request::Reconfigure(config, devices, tx) => {
            rt.reconfigure(&config, &devices, now);
            let _ = tx.send(());
        }
        // Handled by the loop.
        Request::Stop(tx) => {
            let _ = tx.send(());
        }
    }
}
