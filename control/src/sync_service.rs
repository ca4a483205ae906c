//! State sync in the daemon: the sync thread that runs the [`Replicator`] over the raw IP
//! socket on the sync interface, and what the control thread reads of it.
//!
//! The thread polls the replicator at least every millisecond (the journal has no fd) and
//! whenever the socket is readable. It publishes, every 50 ms, a snapshot of the status and the
//! counters for `tandemctl sync` and `tandemctl stats`, and the bulk-pending flag that CARP's
//! demotion follows (a box that starts must not take the VIPs before it holds the states).
//!
//! What may reach the sync service is decided by the rules of the sync interface (the seed's
//! "pass pfsync from cluster_pfSense to self"): a datagram whose source they do not pass is
//! dropped before the replicator sees it, and counted. The filter reads at most
//! [`SyncConfig::max_recv`] datagrams per poll, blocked ones included: a flood of protocol 240
//! from a blocked source costs a bounded share of each poll and cannot starve the journal
//! drain, the sends and the ACKs (issue 10.3).
//!
//! Boot ids: with a state directory, ours comes from its [`BootStore`] (above the last one
//! persisted), and the peers' newest boots are read from it at start and written when the
//! replicator reports a peer's new boot, so that a recorded datagram of an older boot is
//! refused after our restart too (issue 10.2).

use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use tandem_dataplane::filter::{Action, PacketMeta, Verdict};
use tandem_dataplane::state::{Clock, StateTable};
use tandem_sync::boot::{BootError, BootStore};
use tandem_sync::journal::SyncJournal;
use tandem_sync::replicate::{Event, Replicator, SyncConfig};
use tandem_sync::socket::RawIpSocket;
use tandem_sync::transport::Transport;
use tandem_sync::wire::{LeaseRecord, SyncKey, LEASE_HOSTNAME};

use crate::dhcp::pool::{Lease, LeaseState};

use crate::api::SyncReply;
use crate::config_sync::service::SyncRules;
use crate::doctor::live::PEER_SILENT_MS;

/// What the sync thread publishes.
#[derive(Debug, Clone, Default)]
pub struct SyncSnapshot {
    pub reply: Option<SyncReply>,
    pub counters: Vec<(&'static str, u64)>,
}

/// The running sync thread.
#[derive(Debug)]
pub struct SyncService {
    pub snapshot: Arc<Mutex<SyncSnapshot>>,
    bulk_pending: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Where the sync thread listens and who it talks to.
#[derive(Debug, Clone)]
pub struct SyncSetup {
    pub host_id: u32,
    pub key: Vec<u8>,
    /// `None`: multicast 224.0.0.240.
    pub peer: Option<Ipv4Addr>,
    /// The OS device of the sync interface.
    pub device: String,
    /// The sync interface's own address (the destination the rules see).
    pub own_ip: Ipv4Addr,
    /// The rules of the sync interface and its index in them: the daemon's, swapped by every
    /// reload (a pfsync pass rule fixed and reloaded takes effect at once).
    pub rules: Arc<ArcSwap<SyncRules>>,
    /// Where our boot id and the peers' are persisted (`None`: boot ids from the clock only).
    pub state_dir: Option<PathBuf>,
    /// DHCP leases: the server's changes to send, and the peer's for the server.
    pub leases: LeaseLink,
}

/// The DHCP server's side of lease replication, as the sync thread sees it.
#[derive(Debug, Clone, Default)]
pub struct LeaseLink {
    pub to_peer: Option<crossbeam_channel::Receiver<Lease>>,
    pub from_peer: Option<crossbeam_channel::Sender<Lease>>,
}

/// Why state sync could not start.
#[derive(Debug, thiserror::Error)]
pub enum SyncStartError {
    /// `ha.state_sync.key` is unusable.
    #[error("ha.state_sync.key: {0}")]
    Key(tandem_sync::wire::KeyError),
    /// The raw socket on the sync interface could not be opened.
    #[error("state sync on {device}: {source}")]
    Socket {
        device: String,
        source: std::io::Error,
    },
    /// The sync thread could not be started.
    #[error("cannot start the sync thread: {0}")]
    Thread(std::io::Error),
}

impl SyncService {
    /// Opens the socket and starts the thread. Errors name the device.
    pub fn start(
        setup: SyncSetup,
        table: Arc<StateTable>,
        journal: Arc<SyncJournal>,
        clock: Clock,
    ) -> Result<SyncService, SyncStartError> {
        let key = SyncKey::new(&setup.key).map_err(SyncStartError::Key)?;
        let mut cfg = SyncConfig::new(setup.host_id, key, setup.peer);
        cfg.mtu = device_mtu(&setup.device).map_or(cfg.mtu, |m| m.saturating_sub(20));
        // A state directory we cannot use costs the persisted floor, not the sync: warn and go
        // on with the clock's boot id.
        let store = match setup.state_dir.as_deref().map(open_boot_store) {
            Some(Ok((st, boot))) => {
                cfg.boot_id = boot;
                cfg.peer_boots = st.peers();
                Some(st)
            }
            Some(Err(e)) => {
                tracing::warn!("state sync: {e}: boot ids not persisted");
                None
            }
            None => None,
        };
        let sock = RawIpSocket::open(&setup.device, setup.peer).map_err(|source| {
            SyncStartError::Socket {
                device: setup.device.clone(),
                source,
            }
        })?;
        let transport = RuleFilter {
            inner: sock,
            setup: setup.clone(),
            blocked: Arc::new(AtomicU64::new(0)),
            budget: cfg.max_recv,
        };
        let rep = Replicator::new(cfg, table, journal);
        let snapshot = Arc::new(Mutex::new(SyncSnapshot::default()));
        let bulk_pending = Arc::new(AtomicBool::new(rep.bulk_pending()));
        let stop = Arc::new(AtomicBool::new(false));
        let sync_thread = SyncThread {
            rep,
            transport,
            store,
            leases: setup.leases.clone(),
            clock,
            snapshot: snapshot.clone(),
            bulk_pending: bulk_pending.clone(),
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("tandem-sync".into())
            .spawn(move || sync_thread.run())
            .map_err(SyncStartError::Thread)?;
        tracing::info!(
            device = %setup.device,
            peer = %setup.peer.map_or_else(|| "224.0.0.240 (multicast)".to_string(), |p| p.to_string()),
            "state sync running"
        );
        Ok(SyncService {
            snapshot,
            bulk_pending,
            stop,
            thread: Some(thread),
        })
    }

    /// True while this box's bulk update has not arrived (CARP stays demoted meanwhile). A sync
    /// thread that died holds nothing back: false.
    pub fn bulk_pending(&self) -> bool {
        self.is_running() && self.bulk_pending.load(Ordering::Relaxed)
    }

    /// Whether the sync thread is alive.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// The last published status; `running` is false once the thread has died.
    pub fn snapshot(&self) -> SyncSnapshot {
        let mut snap = self.snapshot.lock().map(|s| s.clone()).unwrap_or_default();
        if !self.is_running() {
            if let Some(r) = snap.reply.as_mut() {
                r.running = false;
                r.bulk_status = "sync thread stopped (see the log)".into();
            }
        }
        snap
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SyncService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The sync thread: the replicator, what it polls, and what it publishes to the service.
struct SyncThread {
    rep: Replicator,
    /// The sync socket behind the sync interface's rules (and their count of blocked datagrams).
    transport: RuleFilter<RawIpSocket>,
    store: Option<BootStore>,
    leases: LeaseLink,
    clock: Clock,
    snapshot: Arc<Mutex<SyncSnapshot>>,
    bulk_pending: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl SyncThread {
    /// Polls the replicator until the service is stopped.
    fn run(self) {
        let SyncThread {
            mut rep,
            mut transport,
            mut store,
            leases,
            clock,
            snapshot,
            bulk_pending,
            stop,
        } = self;
        let mut next_publish = 0;
        let started = clock.now_ms();
        let blocked = transport.blocked.clone();
        let publish_now = |rep: &Replicator, now: u64| {
            publish(
                rep,
                &snapshot,
                blocked.load(Ordering::Relaxed),
                started,
                now,
            );
        };
        // Whether the log said the peer went silent (said once per silence, and when it ends).
        let mut silent = false;
        while !stop.load(Ordering::Relaxed) {
            let now = clock.now_ms();
            transport.budget = rep.config().max_recv;
            if let Some(rx) = &leases.to_peer {
                for l in rx.try_iter().take(1024) {
                    rep.send_lease(lease_record(&l));
                }
            }
            let r = rep.poll(&mut transport, now);
            for e in &r.events {
                match e {
                    Event::BulkDone => {
                        tracing::info!("sync: bulk update received: CARP demotion lifted")
                    }
                    Event::BulkFailed => {
                        tracing::warn!(
                            "sync: no bulk update after every retry: CARP demotion lifted anyway"
                        )
                    }
                    Event::PeerRestarted(h, b) => {
                        tracing::info!(peer = h, boot = b, "sync: peer {h} restarted (boot {b})");
                        remember_peer(store.as_mut(), *h, *b);
                    }
                    Event::PeerFirst(h, b) => {
                        tracing::info!(peer = h, boot = b, "sync: peer {h} heard (boot {b})");
                        remember_peer(store.as_mut(), *h, *b);
                    }
                    Event::WalkStarted(n) => {
                        tracing::info!("sync: sending {n} states (bulk update)")
                    }
                    Event::Resync => {
                        tracing::warn!("sync: journal overflow: resending every state")
                    }
                    Event::Lease(r) => {
                        if let (Some(tx), Some(l)) = (&leases.from_peer, lease_of(r)) {
                            let _ = tx.try_send(l);
                        }
                    }
                }
            }
            silent = log_silence(rep.peer_heard(), started, now, silent);
            bulk_pending.store(rep.bulk_pending(), Ordering::Relaxed);
            if now >= next_publish {
                next_publish = now + 50;
                publish_now(&rep, now);
            }
            let wait = r.next_wakeup_ms.saturating_sub(clock.now_ms()).min(1);
            wait_readable(transport.inner.fd(), wait);
        }
        publish_now(&rep, clock.now_ms());
    }
}

/// A DHCP lease as the sync link carries it.
fn lease_record(l: &Lease) -> LeaseRecord {
    let mut hostname = [0u8; LEASE_HOSTNAME];
    let name = l.hostname.as_bytes();
    let n = name.len().min(LEASE_HOSTNAME);
    hostname[..n].copy_from_slice(&name[..n]);
    LeaseRecord {
        mac: l.mac,
        ip: l.ip,
        expires: l.expires,
        updated_ms: l.updated_ms,
        state: l.state as u8,
        hostname,
        hostname_len: u8::try_from(n).unwrap_or(0),
    }
}

/// The lease a record carries; `None` for a state this version does not know.
fn lease_of(r: &LeaseRecord) -> Option<Lease> {
    let n = usize::from(r.hostname_len).min(LEASE_HOSTNAME);
    Some(Lease {
        mac: r.mac,
        ip: r.ip,
        expires: r.expires,
        state: LeaseState::from_u8(r.state)?,
        hostname: String::from_utf8_lossy(&r.hostname[..n]).into_owned(),
        updated_ms: r.updated_ms,
    })
}

/// The state directory's boot store and our boot id for this start.
fn open_boot_store(dir: &std::path::Path) -> Result<(BootStore, u32), BootError> {
    let mut st = BootStore::open(dir)?;
    let boot = st.start()?;
    Ok((st, boot))
}

/// Persists a peer's boot, so that its older boots stay refused after our restart.
fn remember_peer(store: Option<&mut BootStore>, host: u32, boot: u32) {
    if let Some(st) = store {
        if let Err(e) = st.record_peer(host, boot) {
            tracing::warn!("state sync: {e}: the peer's boot is not persisted");
        }
    }
}

/// `started`: when the sync thread started (the peer's silence counts from there until it is
/// first heard).
fn publish(rep: &Replicator, snapshot: &Mutex<SyncSnapshot>, blocked: u64, started: u64, now: u64) {
    let st = rep.status();
    let c = rep.counters();
    let mut counters = c.snapshot();
    counters.push(("blocked_by_rule", blocked));
    let get = |name: &str| {
        counters
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    };
    let dropped: u64 = [
        "bad_ttl",
        "bad_source",
        "short",
        "bad_version",
        "bad_length",
        "malformed",
        "replay",
        "old_boot",
        "stale_control",
        "window_lost",
        "own_host",
        "unsequenced_state",
        "blocked_by_rule",
    ]
    .iter()
    .map(|n| get(n))
    .sum();
    let reply = SyncReply {
        running: true,
        peer: Some(
            st.peer
                .map_or_else(|| "224.0.0.240 (multicast)".to_string(), |p| p.to_string()),
        ),
        sent: get("tx_datagrams"),
        received: get("rx_accepted"),
        retransmitted: get("retransmits"),
        auth_failed: get("bad_mac"),
        dropped,
        lag_ms: st.lag_ms.unwrap_or(0),
        bulk_status: st.bulk.clone(),
        states: st.states as u64,
        peer_heard_ms: st.peer_heard.map(|t| now.saturating_sub(t)),
        peer_silent_ms: now.saturating_sub(st.peer_heard.unwrap_or(started)),
    };
    if let Ok(mut s) = snapshot.lock() {
        *s = SyncSnapshot {
            reply: Some(reply),
            counters,
        };
    }
}

/// Waits until `fd` is readable or `ms` milliseconds pass.
fn wait_readable(fd: std::os::fd::RawFd, ms: u64) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout = i32::try_from(ms).unwrap_or(1);
    // SAFETY: one valid pollfd on the stack, for the duration of the call.
    unsafe {
        libc::poll(&mut p, 1, timeout);
    }
}

/// The sync interface's MTU, from sysfs (the daemon runs in its network namespace).
fn device_mtu(dev: &str) -> Option<usize> {
    std::fs::read_to_string(format!("/sys/class/net/{dev}/mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The raw socket behind the sync interface's rules: a datagram from a source the rules do not
/// pass (first match, default deny) never reaches the replicator.
///
/// `budget` is how many more datagrams, passed or blocked, this poll may read (the sync thread
/// sets it to `max_recv` before each poll). It used to loop until a datagram passed or the
/// socket was empty: a flood from a blocked source kept it there, and the sync thread never
/// drained its journal nor sent an ACK (issue 10.3).
struct RuleFilter<T> {
    inner: T,
    setup: SyncSetup,
    blocked: Arc<AtomicU64>,
    budget: usize,
}

impl<T: Transport> Transport for RuleFilter<T> {
    fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        self.inner.send(datagram)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, Ipv4Addr, u8)>> {
        loop {
            // Out of budget: "nothing waiting" for this poll; the rest waits for the next.
            let Some(left) = self.budget.checked_sub(1) else {
                return Ok(None);
            };
            self.budget = left;
            let Some((n, src, ttl)) = self.inner.recv(buf)? else {
                return Ok(None);
            };
            let rules = self.setup.rules.load();
            let meta = PacketMeta {
                in_if: rules.in_if,
                proto: tandem_sync::wire::IPPROTO_SYNC,
                src,
                dst: self.setup.own_ip,
                sport: 0,
                dport: 0,
            };
            match rules.ruleset.evaluate(&meta) {
                Verdict::Rule {
                    action: Action::Pass,
                    ..
                } => return Ok(Some((n, src, ttl))),
                _ => {
                    self.blocked.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Logs the peer's silence (nothing heard for [`PEER_SILENT_MS`], the doctor's
/// `state-sync-peer-silent`, counted from `started` until it is first heard) when it starts and
/// when it ends: a dead sync link otherwise shows only in the doctor and the metrics until a
/// failover resets the connections it did not carry. Returns whether the peer is now silent.
fn log_silence(heard: Option<u64>, started: u64, now: u64, was_silent: bool) -> bool {
    let quiet_ms = now.saturating_sub(heard.unwrap_or(started));
    let silent = quiet_ms > PEER_SILENT_MS;
    if silent && !was_silent {
        tracing::warn!(
            "sync: nothing heard from the peer for {:.1}s: the sync link or the peer's tandemd \
             is down, and after a failover now the connections it has not received would stall (their packets dropped until the ends give up)",
            quiet_ms as f64 / 1000.0
        );
    } else if !silent && was_silent {
        tracing::info!("sync: the peer is heard again");
    }
    silent
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;
    use tandem_dataplane::state::TableConfig;
    use tandem_sync::journal::JournalConfig;

    /// A socket under a flood of protocol 240 from a blocked source: never empty.
    struct Flood;

    impl Transport for Flood {
        fn send(&mut self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
        fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, Ipv4Addr, u8)>> {
            buf[..56].fill(0);
            Ok(Some((56, Ipv4Addr::new(10, 255, 0, 77), 255)))
        }
    }

    /// Issue 10.3: the rule filter used to loop until a datagram passed or the socket was
    /// empty; under a flood from a blocked source one poll never returned.
    #[test]
    fn a_flood_from_a_blocked_source_cannot_hold_a_poll() {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let journal = Arc::new(SyncJournal::new(JournalConfig::default()));
            let table = Arc::new(StateTable::with_journal(
                TableConfig {
                    creator: 1,
                    ..TableConfig::default()
                },
                journal.clone(),
            ));
            let key = SyncKey::new(b"0123456789abcdef").unwrap();
            let cfg = SyncConfig::new(1, key, Some(Ipv4Addr::new(10, 255, 0, 2)));
            let max_recv = cfg.max_recv;
            let mut rep = Replicator::new(cfg, table, journal);
            let blocked = Arc::new(AtomicU64::new(0));
            let mut f = RuleFilter {
                inner: Flood,
                setup: SyncSetup {
                    host_id: 1,
                    key: Vec::new(),
                    peer: None,
                    device: "sync".into(),
                    own_ip: Ipv4Addr::new(10, 255, 0, 1),
                    rules: Arc::new(ArcSwap::from_pointee(SyncRules {
                        ruleset: Arc::new(tandem_dataplane::filter::Ruleset::empty(1)),
                        in_if: 0,
                    })),
                    state_dir: None,
                    leases: LeaseLink::default(),
                },
                blocked: blocked.clone(),
                budget: max_recv,
            };
            for now in 0..3 {
                f.budget = max_recv;
                rep.poll(&mut f, now);
            }
            let _ = tx.send((blocked.load(Ordering::Relaxed), max_recv as u64));
        });
        let (blocked, max_recv) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("three polls under a flood did not return within 20 s");
        assert_eq!(blocked, 3 * max_recv, "each poll reads its budget, no more");
    }
}
