//! Config sync's threads: the primary's pusher and the secondary's listener, with the status
//! and counters `tandemctl config sync` and `stats` show.
//!
//! The primary's side (the pusher, the doctor's inspection of the peer) is in `push.rs`.
//!
//! Neither thread touches the running config. The pusher is handed each new [`Payload`] by the
//! control thread ([`ConfigSync::offer`]). The listener's sessions hand a push to the control
//! thread as an [`ApplyRequest`] and wait for its answer: the control thread merges, validates,
//! persists and applies it between two control requests, as it runs `config apply`. A slow,
//! silent or hostile client costs a session thread at most [`SESSION`], and at most
//! [`MAX_SESSIONS`] run at once: nothing about a push can stall the control loop or the
//! dataplane.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tandem_dataplane::filter::{Action, PacketMeta, Ruleset, Verdict};
use tandem_dataplane::IfIndex;
use tandem_sync::config_sync::{Channel, ChannelError, ChannelKey};

use super::payload::Payload;
use super::protocol::{ToPrimary, ToSecondary, MAX_ANSWER, MAX_ERRORS, MAX_PUSH};
use super::{content_hash, short_hash, ConfigSyncError, ExchangeError};
use crate::config::SyncSection;
use crate::doctor::live::LiveState;

mod push;
use crate::unproven::{Room, Unproven};
use push::{inspect, Pusher};

/// How often the primary compares its content with the secondary's when nothing changed.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// How soon the primary tries again after a session failed (the peer is down or refused).
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// The TCP connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Everything a session may take, handshake to answer (a 10,000-rule push included).
pub const SESSION: Duration = Duration::from_secs(30);
/// What [`ConfigSync::inspect_peer`] answers when it does not know whom to ask.
pub const UNKNOWN_PEER: &str =
    "the peer's address is not known yet (no state sync peer, and no push received)";
/// How long a client may take to complete the handshake: short, so that connections that never
/// authenticate cannot hold the session slots for long.
pub const HANDSHAKE: Duration = Duration::from_secs(3);
/// Sessions a secondary serves at once; more are dropped and counted, unless one of those
/// running is still in its handshake: the newcomer takes its place (see `crate::unproven`).
pub const MAX_SESSIONS: usize = 4;
/// Session threads at most, counting those ended for a newcomer and not yet gone.
const MAX_SESSION_THREADS: usize = 2 * MAX_SESSIONS;

/// One push and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRecord {
    pub at_unix: u64,
    pub version: u64,
    /// `accepted`, `refused` or `failed` (the session broke before an answer).
    pub result: &'static str,
    pub error: Option<String>,
    /// The secondary's generation that runs it, when accepted.
    pub generation: Option<u64>,
    /// The hash of the content pushed (`config apply` waits for the push of what it applied).
    pub hash: String,
}

/// What both roles show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// `primary` or `secondary`.
    pub role: &'static str,
    /// The peer's address (the primary's target; the secondary's expected source, if known).
    pub peer: Option<Ipv4Addr>,
    pub port: u16,
    /// Config names of the sections that travel, and of those that have nothing to sync.
    pub sections: Vec<String>,
    pub nothing_to_sync: Vec<String>,
    /// The hash of the synced content this box runs (the primary: what it pushes; the
    /// secondary: its last accepted push).
    pub local_hash: Option<String>,
    /// The version of the secondary's last accepted push (as far as this box knows).
    pub version: u64,
    /// The hash the peer last said it runs, and when it said so.
    pub peer_hash: Option<String>,
    pub peer_seen_unix: Option<u64>,
    pub peer_hostname: Option<String>,
    pub last_push: Option<PushRecord>,
    /// The last failure to talk to the peer, cleared by a session that works.
    pub last_error: Option<String>,
    /// Sessions the primary has run to their end (ok or not): `config sync now` waits for it
    /// to move.
    pub sessions: u64,
    /// Of those, the ones that pushed whatever the hashes said (`config sync now`).
    pub forced_sessions: u64,
    /// This box's config generation.
    pub generation: u64,
    /// The address of the last peer that opened an authenticated session here.
    pub peer_heard: Option<Ipv4Addr>,
}

impl Status {
    /// Both boxes run the same content for the synced sections.
    pub fn in_sync(&self) -> bool {
        self.local_hash.is_some() && self.local_hash == self.peer_hash
    }
}

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// Config sync's counters, shown in `stats` as `config_sync_<name>`.
        #[derive(Debug, Default)]
        pub struct Counters { $($(#[doc = $doc])* pub $name: AtomicU64,)* }
        impl Counters {
            /// Every counter's name and help (its doc comment), for the metrics registry.
            pub const HELP: &'static [(&'static str, &'static str)] =
                &[$((stringify!($name), concat!($($doc),*))),*];

            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters!(
    /// Primary: checks of the secondary's content hash.
    checks,
    /// Primary: pushes sent.
    pushes,
    /// Primary: pushes the secondary applied.
    pushes_accepted,
    /// Primary: pushes the secondary refused.
    pushes_refused,
    /// Primary: sessions that failed (connect, handshake, timeout).
    session_failures,
    /// Secondary: sessions that passed the handshake.
    sessions_accepted,
    /// Secondary: handshakes that failed authentication.
    auth_failures,
    /// Secondary: connections from another address than the peer's.
    refused_source,
    /// Secondary: connections the sync interface's rules block.
    refused_by_rule,
    /// Secondary: connections refused because sessions were already running.
    refused_busy,
    /// Secondary: unfinished handshakes ended to make room for a newer connection (from the
    /// same source, or the oldest when the slots were full).
    handshakes_ended,
    /// Secondary: sessions past their deadline.
    timeouts,
    /// Secondary: messages over the size limit.
    too_large,
    /// Secondary: messages that do not parse.
    malformed,
    /// Secondary: pushes not newer than the stored version (replays).
    stale_version,
    /// Pushes refused because this box is the primary.
    refused_role,
    /// Secondary: inspections (doctor) answered.
    inspections,
    /// Secondary: pushes applied.
    applied,
    /// Secondary: pushes refused on apply (invalid merged config).
    apply_refused,
);

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A push handed to the control thread, with where to send its answer.
#[derive(Debug)]
pub struct ApplyRequest {
    pub push: super::store::StoredPush,
    pub sections: Vec<SyncSection>,
    /// The primary's address (whose config sync and state sync the result must still pass).
    pub from: Ipv4Addr,
    /// The session gives up waiting then: a request found later is not applied (the primary
    /// was told it was not, and will push again).
    pub deadline: Instant,
    /// The new generation, or every error.
    pub reply: Sender<Result<u64, Vec<String>>>,
}

/// The rules of the sync link, as the secondary's listener applies them to who connects.
#[derive(Debug)]
pub struct SyncRules {
    pub ruleset: Arc<Ruleset>,
    /// The sync interface's `in_if` in `ruleset`.
    pub in_if: IfIndex,
}

/// The running service, either role.
#[derive(Debug)]
pub struct ConfigSync {
    pub status: Arc<Mutex<Status>>,
    pub counters: Arc<Counters>,
    /// The primary's: new payloads for the pusher.
    orders: Option<Sender<Order>>,
    /// The secondary's: pushes for the control thread to apply.
    pub applies: Option<Receiver<ApplyRequest>>,
    /// What this box shows a peer that inspects it, published by the control thread.
    inspection: Arc<Mutex<Option<Inspection>>>,
    /// Who the peer is and how to reach it (for inspecting it).
    peer: Option<SocketAddrV4>,
    key: ChannelKey,
    hostname: String,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// A box's config in force and live state, as its peer's doctor reads them.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Shared, not copied: it is republished every half second, and may be megabytes.
    pub config: Arc<String>,
    pub live: LiveState,
}

#[derive(Debug)]
struct Order {
    payload: Payload,
    force: bool,
}

/// Where a box's config sync listens, whom it accepts, and (the primary) where it pushes.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The sync interface's address and the config sync port.
    pub listen: SocketAddrV4,
    /// The peer's sync address: the only source accepted, and where to push (the primary) or
    /// inspect. `None` on a secondary whose state sync is multicast: any source the sync
    /// interface's rules pass.
    pub peer: Option<Ipv4Addr>,
    /// This box pushes (it is the primary).
    pub pushes: bool,
    pub key: ChannelKey,
    pub hostname: String,
    pub rules: Arc<ArcSwap<SyncRules>>,
}

impl ConfigSync {
    /// Binds the listener (both roles: the secondary takes pushes there, either box answers
    /// inspections) and, on the primary, starts the pusher, which does nothing until the first
    /// [`ConfigSync::offer`]. `version` and `hash` are those of the push a secondary runs (0
    /// and `None` before the first).
    pub fn start(
        setup: Setup,
        version: u64,
        hash: Option<String>,
    ) -> Result<ConfigSync, ConfigSyncError> {
        let listener =
            TcpListener::bind(setup.listen).map_err(|source| ConfigSyncError::Listen {
                addr: setup.listen,
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(ConfigSyncError::Nonblocking)?;
        let port = setup.listen.port();
        let peer = setup.peer.map(|p| SocketAddrV4::new(p, port));
        let status = Arc::new(Mutex::new(Status {
            role: if setup.pushes { "primary" } else { "secondary" },
            peer: setup.peer,
            port,
            local_hash: hash,
            version,
            ..Status::default()
        }));
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let inspection = Arc::new(Mutex::new(None));
        let (apply_tx, apply_rx) = crossbeam_channel::bounded(MAX_SESSIONS);
        let mut threads = Vec::new();
        let mut orders = None;
        if setup.pushes {
            let target = peer.ok_or(ConfigSyncError::NoSyncTo)?;
            let (tx, rx) = crossbeam_channel::unbounded();
            let pusher = Pusher {
                target,
                key: setup.key.clone(),
                hostname: setup.hostname.clone(),
                status: status.clone(),
                counters: counters.clone(),
                last_logged: None,
            };
            let s = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("tandem-config-push".into())
                    .spawn(move || pusher.run(&rx, &s))
                    .map_err(ConfigSyncError::Thread)?,
            );
            orders = Some(tx);
        }
        let (key, hostname, pushes) = (setup.key.clone(), setup.hostname.clone(), setup.pushes);
        let shared = Arc::new(Listener {
            setup,
            status: status.clone(),
            counters: counters.clone(),
            applies: apply_tx,
            inspection: inspection.clone(),
            active: AtomicUsize::new(0),
            handshakes: Unproven::default(),
        });
        let s = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("tandem-config-listen".into())
                .spawn(move || shared.run(&listener, &s))
                .map_err(ConfigSyncError::Thread)?,
        );
        Ok(ConfigSync {
            status,
            counters,
            orders,
            applies: (!pushes).then_some(apply_rx),
            inspection,
            peer,
            key,
            hostname,
            stop,
            threads,
        })
    }

    /// Publishes what a peer that inspects this box reads.
    pub fn publish(&self, inspection: Inspection) {
        if let Ok(mut i) = self.inspection.lock() {
            *i = Some(inspection);
        }
    }

    /// Reads the peer's config and live state, on a thread of its own: the answer comes on the
    /// returned channel (within [`CONNECT_TIMEOUT`] + [`SESSION`]).
    pub fn inspect_peer(&self) -> Receiver<Result<Inspection, ConfigSyncError>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        // A secondary with multicast state sync knows its primary once it has been pushed to.
        let heard = self.status.lock().ok().and_then(|s| s.peer_heard);
        let port = self.status.lock().map_or(0, |s| s.port);
        let Some(peer) = self
            .peer
            .or_else(|| heard.map(|h| SocketAddrV4::new(h, port)))
        else {
            let _ = tx.send(Err(ConfigSyncError::UnknownPeer));
            return rx;
        };
        let (key, hostname) = (self.key.clone(), self.hostname.clone());
        let spawned = std::thread::Builder::new()
            .name("tandem-config-inspect".into())
            .spawn(move || {
                let _ = tx.send(inspect(peer, &key, hostname));
            });
        if let Err(e) = spawned {
            tracing::warn!("config sync: cannot inspect the peer: {e}");
        }
        rx
    }

    /// The primary: `payload` is what to push from now on; checked (and pushed if the
    /// secondary's hash differs, or always with `force`) at once.
    pub fn offer(&self, payload: Payload, force: bool) {
        if let Some(tx) = &self.orders {
            if let Ok(mut s) = self.status.lock() {
                s.local_hash = Some(payload.hash.clone());
                s.sections = names(&payload.carried);
                s.nothing_to_sync = names(&payload.nothing_to_sync);
            }
            let _ = tx.send(Order { payload, force });
        }
    }

    /// Whether this box pushes.
    pub fn is_primary(&self) -> bool {
        self.orders.is_some()
    }

    /// A copy of the status.
    pub fn snapshot(&self) -> Status {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Updates the status under its lock.
    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }
}

impl Drop for ConfigSync {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.orders = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn names(sections: &[SyncSection]) -> Vec<String> {
    sections.iter().map(|s| s.to_string()).collect()
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------------
// The secondary

struct Listener {
    setup: Setup,
    status: Arc<Mutex<Status>>,
    counters: Arc<Counters>,
    applies: Sender<ApplyRequest>,
    inspection: Arc<Mutex<Option<Inspection>>>,
    active: AtomicUsize,
    /// Sessions still in their handshake.
    handshakes: Unproven<Ipv4Addr>,
}

impl Listener {
    fn run(self: Arc<Self>, listener: &TcpListener, stop: &Arc<AtomicBool>) {
        let what = if self.setup.pushes {
            "inspections"
        } else {
            "pushes"
        };
        tracing::info!(listen = %self.setup.listen, "config sync: accepting {what}");
        while !stop.load(Ordering::Relaxed) {
            wait_readable(listener.as_raw_fd(), 200);
            // Accept everything queued; refuse cheaply what may not talk to us.
            while let Ok((stream, from)) = listener.accept() {
                let SocketAddr::V4(from) = from else { continue };
                if let Err(counter) = self.admit(from) {
                    Counters::bump(counter);
                    continue;
                }
                // Only this thread adds sessions: the count can only fall meanwhile.
                let running = self.active.load(Ordering::Acquire);
                let admitted = (running < MAX_SESSION_THREADS)
                    .then(|| {
                        let room = Room {
                            own_source: true,
                            full: running >= MAX_SESSIONS,
                        };
                        self.handshakes.admit(*from.ip(), &stream, room)
                    })
                    .flatten();
                let Some(admitted) = admitted else {
                    Counters::bump(&self.counters.refused_busy);
                    continue;
                };
                self.counters
                    .handshakes_ended
                    .fetch_add(admitted.ended as u64, Ordering::Relaxed);
                self.active.fetch_add(1, Ordering::AcqRel);
                let me = self.clone();
                let spawned = std::thread::Builder::new()
                    .name("tandem-config-session".into())
                    .spawn(move || {
                        me.serve(stream, from, admitted.ticket);
                        me.active.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    self.handshakes.proven(admitted.ticket);
                    self.active.fetch_sub(1, Ordering::AcqRel);
                    Counters::bump(&self.counters.refused_busy);
                }
            }
        }
    }

    /// Whether `from` may open a session: the configured peer (when state sync names one),
    /// passed by the sync interface's rules. `Err` is the counter of the refusal.
    fn admit(&self, from: SocketAddrV4) -> Result<(), &AtomicU64> {
        if self.setup.peer.is_some_and(|p| p != *from.ip()) {
            tracing::warn!("config sync: connection from {from} refused: not the peer");
            return Err(&self.counters.refused_source);
        }
        let rules = self.setup.rules.load();
        let meta = PacketMeta {
            in_if: rules.in_if,
            proto: 6,
            src: *from.ip(),
            dst: *self.setup.listen.ip(),
            sport: from.port(),
            dport: self.setup.listen.port(),
        };
        match rules.ruleset.evaluate(&meta) {
            Verdict::Rule {
                action: Action::Pass,
                ..
            } => Ok(()),
            _ => {
                tracing::warn!(
                    "config sync: connection from {from} refused by the sync interface's rules"
                );
                Err(&self.counters.refused_by_rule)
            }
        }
    }

    fn serve(&self, stream: TcpStream, from: SocketAddrV4, ticket: u64) {
        let accepted = Channel::accept(stream, &self.setup.key, HANDSHAKE, SESSION);
        self.handshakes.proven(ticket);
        let mut ch = match accepted {
            Ok(ch) => ch,
            Err(e) => {
                self.count_error(&e);
                if matches!(e, ChannelError::Authentication) {
                    tracing::warn!("config sync: {from}: {e}");
                }
                return;
            }
        };
        Counters::bump(&self.counters.sessions_accepted);
        self.update(|s| s.peer_heard = Some(*from.ip()));
        // A session is a status and at most one push.
        for _ in 0..2 {
            let msg = match ch.recv(MAX_PUSH) {
                Ok(m) => m,
                Err(e) => {
                    self.count_error(&e);
                    return;
                }
            };
            let Ok(msg) = serde_json::from_slice::<ToSecondary>(&msg) else {
                Counters::bump(&self.counters.malformed);
                return;
            };
            let answer = match msg {
                ToSecondary::Status { hash, hostname } => {
                    self.update(|s| {
                        s.peer_hash = Some(hash);
                        s.peer_seen_unix = Some(now_unix());
                        s.peer_hostname = Some(printable(&hostname));
                    });
                    let s = self.status.lock().map(|s| s.clone()).unwrap_or_default();
                    ToPrimary::Status {
                        version: s.version,
                        hash: s.local_hash,
                        hostname: self.setup.hostname.clone(),
                        generation: s.generation,
                    }
                }
                ToSecondary::Inspect { .. } => {
                    Counters::bump(&self.counters.inspections);
                    let Some(i) = self.inspection.lock().ok().and_then(|i| i.clone()) else {
                        return;
                    };
                    ToPrimary::Inspection {
                        config: i.config.to_string(),
                        live: Box::new(i.live),
                    }
                }
                ToSecondary::Push { version, .. } if self.setup.pushes => {
                    Counters::bump(&self.counters.refused_role);
                    tracing::warn!("config sync: push version {version} from {from} refused: this box is the primary");
                    ToPrimary::Refused {
                        errors: vec!["this box is the primary (it has sync_to): it accepts no pushes; remove sync_to from one of the two boxes".into()],
                    }
                }
                ToSecondary::Push {
                    version,
                    hash,
                    sections,
                    payload,
                    hostname,
                } => self.push(from, version, hash, sections, payload, hostname),
            };
            let Ok(bytes) = serde_json::to_vec(&answer) else {
                return;
            };
            if ch.send(&bytes).is_err() {
                return;
            }
        }
    }

    /// Checks a push, hands it to the control thread and waits for the verdict.
    fn push(
        &self,
        from: SocketAddrV4,
        version: u64,
        hash: String,
        sections: Vec<String>,
        payload: String,
        hostname: String,
    ) -> ToPrimary {
        let refuse = |counter: &AtomicU64, errors: Vec<String>| {
            Counters::bump(counter);
            let text = errors.join("\n");
            tracing::error!("config sync: push version {version} from {from} refused:\n{text}");
            self.update(|s| {
                s.last_push = Some(PushRecord {
                    at_unix: now_unix(),
                    version,
                    result: "refused",
                    error: Some(text),
                    generation: None,
                    hash: hash.clone(),
                });
            });
            let mut errors = errors;
            errors.truncate(MAX_ERRORS);
            ToPrimary::Refused { errors }
        };
        if content_hash(&payload) != hash {
            return refuse(
                &self.counters.malformed,
                vec!["the payload does not match its hash".into()],
            );
        }
        let held = self.status.lock().map_or(0, |s| s.version);
        if version <= held {
            return refuse(
                &self.counters.stale_version,
                vec![format!(
                    "version {version} is not newer than version {held}, in force here: a replay or a rollback"
                )],
            );
        }
        let mut parsed = Vec::with_capacity(sections.len());
        for name in &sections {
            match SyncSection::parse(name) {
                Ok(s) => parsed.push(s),
                Err(_) => {
                    return refuse(
                        &self.counters.malformed,
                        vec![format!("unknown section {name:?}")],
                    )
                }
            }
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        let request = ApplyRequest {
            push: super::store::StoredPush {
                version,
                hash: hash.clone(),
                sections,
                payload,
                from: format!("{} ({})", from.ip(), printable(&hostname)),
                received_unix: now_unix(),
            },
            sections: parsed,
            from: *from.ip(),
            deadline: Instant::now() + SESSION / 2,
            reply: tx,
        };
        if self.applies.send_timeout(request, SESSION / 2).is_err() {
            return refuse(
                &self.counters.apply_refused,
                vec!["the daemon is busy: try again".into()],
            );
        }
        match rx.recv_timeout(SESSION / 2) {
            Ok(Ok(generation)) => {
                // The control thread updated the status when it applied the push.
                tracing::info!(
                    "config sync: version {version} ({}) from {from} in force as generation {generation}",
                    short_hash(&hash)
                );
                ToPrimary::Accepted {
                    version,
                    generation,
                }
            }
            Ok(Err(errors)) => refuse(&self.counters.apply_refused, errors),
            Err(_) => refuse(
                &self.counters.apply_refused,
                vec!["the daemon did not answer in time".into()],
            ),
        }
    }

    fn count_error(&self, e: &ChannelError) {
        let c = match e {
            ChannelError::Authentication => &self.counters.auth_failures,
            ChannelError::Timeout => &self.counters.timeouts,
            ChannelError::TooLarge { .. } => &self.counters.too_large,
            ChannelError::Protocol(_) => &self.counters.malformed,
            ChannelError::Io(_) => return,
        };
        Counters::bump(c);
    }

    fn update(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }
}

/// A peer's hostname as it may appear in logs and files: printable ASCII, at most 64 characters.
fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}

/// Waits until `fd` is readable or `ms` milliseconds pass.
fn wait_readable(fd: std::os::fd::RawFd, ms: i32) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack, for the duration of the call.
    unsafe {
        libc::poll(&mut p, 1, ms);
    }
}

/// Connections that never authenticate cannot keep the secondary's session slots from the
/// primary.
#[cfg(test)]
mod slot_tests {
    use super::*;
    use std::io::Write;
    use tandem_dataplane::filter::Rule;

    /// Attackers on the sync link (four addresses the sync rules pass; with multicast state
    /// sync no peer address is known) open a TCP connection every 50 ms between them and send
    /// nothing. Each was dropped after the 3 s handshake deadline, but the next was queued
    /// already: the slots never freed for the primary, whose sessions (one every 500 ms for
    /// 10 s) were all refused as busy (0 of 20) until a newcomer could end an unfinished
    /// handshake.
    #[test]
    fn unauthenticated_connections_cannot_keep_the_primary_out() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let listen = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let key = ChannelKey::derive("admin", "a long random config sync password");
        let rules = Arc::new(ArcSwap::from_pointee(SyncRules {
            ruleset: Arc::new(Ruleset::new(
                vec![vec![Rule::new(1, Action::Pass)]],
                Vec::new(),
                1,
            )),
            in_if: 0,
        }));
        let secondary = ConfigSync::start(
            Setup {
                listen,
                peer: None,
                pushes: false,
                key: key.clone(),
                hostname: "fwb".into(),
                rules,
            },
            0,
            None,
        )
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let attacker = std::thread::spawn(move || {
            let mut held = std::collections::VecDeque::new();
            let mut n: u8 = 0;
            while !s.load(Ordering::Relaxed) {
                n = n.wrapping_add(1);
                let src = Ipv4Addr::new(127, 0, 0, 2 + n % 4);
                if let Ok(mut c) = crate::unproven::connect_from(src, SocketAddr::V4(listen)) {
                    let _ = c.write_all(&[]);
                    held.push_back(c);
                }
                if held.len() > 200 {
                    held.pop_front();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        // The attack under way: the slots full (refusals before the fix, handshakes ended
        // after it).
        let c = &secondary.counters;
        let t = Instant::now();
        while c.refused_busy.load(Ordering::Relaxed) + c.handshakes_ended.load(Ordering::Relaxed)
            == 0
        {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the attack never filled the slots"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let (mut ok, mut tries) = (0, 0);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            tries += 1;
            let session = Channel::connect(
                SocketAddr::V4(listen),
                &key,
                Duration::from_secs(1),
                Duration::from_secs(2),
            )
            .and_then(|mut ch| {
                // A terminal escape in the hostname: stored printable (`tandemctl config sync`
                // shows it).
                let msg = serde_json::to_vec(&ToSecondary::Status {
                    hash: "x".into(),
                    hostname: "fw\u{1b}[2Ja".into(),
                })
                .unwrap();
                ch.send(&msg)?;
                ch.recv(MAX_ANSWER)
            });
            if session.is_ok() {
                ok += 1;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        stop.store(true, Ordering::Relaxed);
        attacker.join().unwrap();
        eprintln!(
            "primary: {ok} of {tries} sessions answered; secondary: refused_busy {}, handshakes_ended {}, timeouts {}, sessions_accepted {}",
            c.refused_busy.load(Ordering::Relaxed),
            c.handshakes_ended.load(Ordering::Relaxed),
            c.timeouts.load(Ordering::Relaxed),
            c.sessions_accepted.load(Ordering::Relaxed)
        );
        assert!(
            ok * 2 >= tries,
            "the primary got {ok} of {tries} sessions through while an unauthenticated client held the slots"
        );
        assert!(c.handshakes_ended.load(Ordering::Relaxed) > 0);
        let heard = secondary.status.lock().unwrap().peer_hostname.clone();
        assert_eq!(heard.as_deref(), Some("fw[2Ja"));
        assert_eq!(
            c.sessions_accepted.load(Ordering::Relaxed),
            ok,
            "only the primary authenticated"
        );
    }
}
