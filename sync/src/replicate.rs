//! The sync thread's engine: [`Replicator`]. A pure core driven by [`Replicator::poll`] with
//! the time passed in, over a [`Transport`]; no thread, no clock, no socket of its own.
//!
//! # One poll
//!
//! 1. Receive everything waiting (up to [`SyncConfig::max_recv`]): TTL 255 (`bad_ttl`),
//!    source = the configured peer (`bad_source`), [`wire::parse`] (one counter per
//!    [`Reject`]), our own host id (`own_host`), the sender's [`ReplayWindow`] (`replay`), then
//!    the records. State records in a control datagram are ignored (`unsequenced_state`):
//!    control numbers are outside the data window (no retransmission), so only ACK/NACK,
//!    cumulative or bounded by what is unacknowledged, may ride on them.
//! 2. The journal's overflow flag ([`SyncJournal::take_resync`]) starts a full walk.
//! 3. Drain the journal: INS for inserts, UPD_C for updates (the tracking read now, so one
//!    record carries every coalesced update), DEL_C for deletes; nothing but the delete for a
//!    state already removed; no DEL_C for a state the peer deleted (see *Echo* below).
//! 4. One step of a walk (bulk answer or resync), at most [`SyncConfig::bulk_pace`] datagrams.
//! 5. The bulk request timer.
//! 6. Flush: the open datagram goes out when full, when the journal is `due` (maxupd), or when
//!    its first record is [`SyncConfig::flush_delay_ms`] old. The last datagram of a burst
//!    carries `ACK_REQ`.
//! 7. ACK (every [`SyncConfig::ack_interval_ms`] of traffic, every [`SyncConfig::ack_every`]
//!    datagrams, at once on `ACK_REQ` or when a gap was repaired) and NACK (every hole at once
//!    when a new one appears, again every [`SyncConfig::nack_interval_ms`] while any lasts), in
//!    control datagrams of their own (a control number, bit 63, each fresh once: a replayed
//!    NACK or ACK is `stale_control`, see [`crate::replay`]).
//! 8. Retransmission: a NACK is answered from the ring of unacknowledged datagrams (the same
//!    bytes); a NACKed datagram no longer in the ring falls back to a full walk. A tail loss
//!    (the last datagram of a burst lost: no later datagram reveals the gap) is repaired by
//!    resending the newest unacknowledged datagram after [`SyncConfig::retransmit_timeout_ms`]
//!    without an ACK: the receiver then sees the gap and NACKs it. A receiver that gets a
//!    duplicate with `ACK_REQ` (our ACK was lost) ACKs again.
//! 9. Keepalive: nothing sent for [`SyncConfig::keepalive_ms`] (retransmissions aside), a
//!    control datagram without records goes out, so that the peer can tell an idle box from a
//!    dead link ([`Status::peer_heard`]: the peer to us; that the peer hears us, only its own
//!    status tells). It acknowledges nothing, so flow control does not take it for an ACK.
//!
//! # Merge rules
//!
//! INS of an unknown id: [`StateTable::insert_synced`] (not journaled: never echoed), ages
//! rebased on our clock, counters copied. INS or UPD_C of a known id:
//! [`State::merge_remote`] (each side only forward, judged separately: the dst side is never
//! copied when it is the stale one, unlike opnsense/src#327); a stale side counts `stale` and
//! queues our newer copy back as UPD_C (pfsync's push-back). UPD_C of an unknown id: UPD_REQ
//! (once per datagram). UPD_REQ(id): answered with INS. DEL_C: [`StateTable::remove`] by id, from the peer (not journaled).
//! CLR: every state of that creator removed.
//!
//! # No echo
//!
//! What the peer tells us is applied as [`Origin::Peer`]: the table journals none of it, so a
//! state the peer deleted is never deleted back at it (pfsync's NOSYNC). Updates a worker makes
//! to a state the peer created are the worker's own and are journaled as usual.
//!
//! # Bulk update
//!
//! On start the replicator is `bulk_pending` (the daemon demotes CARP by 240 while it is) and
//! sends UPD_REQ 0/0 at its first poll, again every [`SyncConfig::bulk_interval_ms`], up to
//! [`SyncConfig::bulk_retries`] times; then it gives up (`bulk_failed`, a warning, no longer
//! pending). The responder answers with a walk: BUS START, INS for every state, BUS END with
//! the walk's duration. The walk is a snapshot (`StateTable::snapshot`: one `Arc<State>` per
//! state, 8 bytes and one atomic increment each: 800 KB and a few ms for 100k states; states
//! removed meanwhile are skipped when reached) sent at most `bulk_pace` datagrams per poll
//! (13 INS each: 16 datagrams per 1 ms poll is 208k states/s, 100k states in half a second).
//! A request that arrives during a walk makes another walk follow it.
//!
//! The requester marks every id of the responder's creator it hears of between START and END;
//! at END (once every datagram before it arrived: an END overtaking a lost datagram waits for
//! the repair) it removes the states of the responder's creator it did not hear of (pfsync's
//! purge: deletes lost while we were away, or in a journal overflow), and clears
//! `bulk_pending`. A journal overflow on the sender is repaired by the same walk (resync).
//!
//! Only our own start (and [`Replicator::request_bulk`]) sets `bulk_pending`. A peer seen for
//! the first time while ours is pending gets our request at once instead of at the next retry.
//! A restarted peer gets no request from us: it has nothing we lack (its new states come by its
//! journal, its first datagrams by NACK), and the purge at its walk's END would remove the
//! states of its creator we carry for it since it died: live connections. A gap that fell out
//! of the replay window (`window_lost`) asks for a *quiet* bulk update (no demotion).
//!
//! The request, the walk and the peer's walk as received are three state machines, each with
//! its states and transitions listed in one place (`replicate/bulk.rs`).
//!
//! # In order, flow control
//!
//! State records are applied in sequence order: a datagram above a hole is held until the hole
//! is repaired (a retransmitted INS must not resurrect a state whose DEL_C overtook it). While
//! the peer ACKs, at most [`SyncConfig::max_in_flight`] datagrams are unacknowledged, under the
//! 64-wide replay window so that every hole stays repairable; journal entries wait in their
//! queues meanwhile.
//!
//! # The daemon
//!
//! One sync thread owns the `Replicator` and the [`RawIpSocket`](crate::socket::RawIpSocket):
//! it calls [`Replicator::poll`] with the dataplane's clock when the socket is readable or at
//! [`PollResult::next_wakeup_ms`] (at most [`SyncConfig::drain_interval_ms`] away: the journal
//! has no fd), and sets the CARP demotion from [`Replicator::bulk_pending`]. One cluster is two
//! boxes: the retransmit ring and the ACKs assume a single peer.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;

use tandem_dataplane::journal::{JournalKind, Origin};
use tandem_dataplane::state::{Millis, NewState, State, StateTable, SyncId, TcpPeer, TimeoutClass};

use crate::journal::SyncJournal;
use crate::replay::{is_data, Replay, ReplayWindow, Seen, CONTROL, WIDTH};
use crate::transport::Transport;
use crate::wire::{
    self, BusRecord, BusStatus, FrameBuilder, InsRecord, LeaseRecord, Record, Reject, SyncKey,
    UpdCRecord, FLAG_ACK_REQ,
};

mod bulk;
mod receive;
mod send;

use bulk::{BulkUpdate, Incoming};

/// Replicator settings (`ha.state_sync`).
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// This box's host id (pfsync creator id; the state table's `creator`). Non-zero.
    pub host_id: u32,
    /// This run's boot id: only increases ([`crate::boot`]; the daemon takes it from its
    /// state directory's [`BootStore`](crate::boot::BootStore)).
    pub boot_id: u32,
    /// The newest boot id of each peer (host id, boot id) accepted before our start (persisted
    /// by the daemon): older boots are refused (`old_boot`) even as the first datagram heard.
    pub peer_boots: Vec<(u32, u32)>,
    /// The MAC key.
    pub key: SyncKey,
    /// The peer's sync address (unicast, and the only accepted source); `None`: multicast
    /// 224.0.0.240 and any source on the link.
    pub peer: Option<Ipv4Addr>,
    /// Datagram size limit (IP payload): the sync link's MTU minus 20.
    pub mtu: usize,
    /// How long a record may wait for its datagram to fill (default 10 ms).
    pub flush_delay_ms: u64,
    /// ACK every this many ms of traffic (default 50).
    pub ack_interval_ms: u64,
    /// ... or every this many datagrams (default 32).
    pub ack_every: u64,
    /// NACK a gap again every this many ms while it lasts (default 50).
    pub nack_interval_ms: u64,
    /// Resend the newest unacknowledged datagram after this long without an ACK (default 200).
    pub retransmit_timeout_ms: u64,
    /// Datagrams kept for retransmission (default 256).
    pub retransmit_ring: usize,
    /// Bulk requests before giving up (default 12; 0: do not ask).
    pub bulk_retries: u32,
    /// Between bulk requests (default 5000 ms).
    pub bulk_interval_ms: u64,
    /// Walk datagrams per poll (default 16).
    pub bulk_pace: usize,
    /// Journal entries drained per poll (default 8192).
    pub drain_max: usize,
    /// Datagrams received per poll (default 1024).
    pub max_recv: usize,
    /// The longest the daemon may sleep between polls: the journal has no fd (default 1 ms).
    pub drain_interval_ms: u64,
    /// Flow control: at most this many sequenced datagrams unacknowledged while the peer
    /// acknowledges (default 48: inside the 64-wide replay window, so a loss in a burst stays
    /// repairable). Entries wait in the journal meanwhile. A peer silent for
    /// [`SyncConfig::peer_dead_ms`] lifts the limit (we send as pfsync does, to nobody).
    pub max_in_flight: usize,
    /// No ACK for this long: the peer is gone (default 1000 ms).
    pub peer_dead_ms: u64,
    /// Send a keepalive (a control datagram without records) after this long without sending
    /// anything but retransmissions (default 1000 ms; 0: never). pfsync is silent when nothing
    /// changes, so its peer cannot tell an idle box from a dead link until a failover loses
    /// connections; this keepalive gives the peer a "last heard" figure (`tandemctl sync`,
    /// `tandemctl doctor`).
    pub keepalive_ms: u64,
}

impl SyncConfig {
    /// Defaults around a host id, key and peer.
    pub fn new(host_id: u32, key: SyncKey, peer: Option<Ipv4Addr>) -> Self {
        SyncConfig {
            host_id,
            boot_id: crate::boot::next_boot_id(0),
            peer_boots: Vec::new(),
            key,
            peer,
            mtu: wire::DEFAULT_MTU,
            flush_delay_ms: 10,
            ack_interval_ms: 50,
            ack_every: 32,
            nack_interval_ms: 50,
            retransmit_timeout_ms: 200,
            retransmit_ring: 256,
            bulk_retries: 12,
            bulk_interval_ms: 5000,
            bulk_pace: 16,
            drain_max: 8192,
            max_recv: 1024,
            drain_interval_ms: 1,
            max_in_flight: 48,
            peer_dead_ms: 1000,
            keepalive_ms: 1000,
        }
    }
}

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// The replicator's counters (`tandemctl sync counters`).
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct Counters {
            $($(#[doc = $doc])* pub $name: u64,)*
        }
        impl Counters {
            /// Every counter's name and help (its doc comment), for the metrics registry.
            pub const HELP: &'static [(&'static str, &'static str)] =
                &[$((stringify!($name), concat!($($doc),*))),*];

            /// Every counter by name, in declaration order.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name)),*]
            }
        }
    };
}

counters! {
    /// Datagrams sent (all kinds, retransmissions included).
    tx_datagrams,
    /// Sequenced datagrams sent for the first time.
    tx_sequenced,
    /// Unsequenced (ACK/NACK) datagrams sent.
    tx_control,
    /// INS records sent.
    tx_ins,
    /// UPD_C records sent.
    tx_upd_c,
    /// DEL_C records sent.
    tx_del_c,
    /// UPD_REQ records sent (bulk requests included).
    tx_upd_req,
    /// BUS records sent.
    tx_bus,
    /// LEASE records sent.
    tx_lease,
    /// ACK records sent.
    tx_ack,
    /// Keepalives (control datagrams without records) sent after `keepalive_ms` without
    /// sending anything but retransmissions.
    tx_keepalive,
    /// NACK records sent (`nacks_sent`).
    tx_nack,
    /// Send errors.
    tx_errors,
    /// Datagrams received (before any check).
    rx_datagrams,
    /// Datagrams accepted (all checks passed).
    rx_accepted,
    /// Records received, by action.
    rx_ins,
    /// UPD_C received.
    rx_upd_c,
    /// DEL_C received.
    rx_del_c,
    /// UPD_REQ received.
    rx_upd_req,
    /// BUS received.
    rx_bus,
    /// LEASE records received.
    rx_lease,
    /// CLR received.
    rx_clr,
    /// ACK received.
    rx_ack,
    /// NACK received (`nacks_received`).
    rx_nack,
    /// Receive errors.
    rx_errors,
    /// States inserted from the peer.
    applied_inserts,
    /// States merged from the peer (INS of a known id, UPD_C).
    applied_updates,
    /// States removed on the peer's word (DEL_C, CLR, bulk purge).
    applied_deletes,
    /// An INS whose keys collide with another local state, or beyond the state limit.
    insert_failed,
    /// Merges where at least one side of ours was newer (pushed back).
    stale,
    /// UPD_C for an id we do not have.
    upd_unknown,
    /// UPD_REQ(id) answered with INS.
    upd_req_answered,
    /// Datagrams resent (NACK or timeout).
    retransmits,
    /// NACKed datagrams no longer in the ring (answered with a full walk).
    retransmit_missed,
    /// TTL other than 255.
    bad_ttl,
    /// Source other than the configured peer.
    bad_source,
    /// wire::Reject::Short.
    short,
    /// wire::Reject::BadVersion.
    bad_version,
    /// wire::Reject::BadLength.
    bad_length,
    /// wire::Reject::BadMac.
    bad_mac,
    /// wire::Reject::Malformed.
    malformed,
    /// Replayed data datagrams (sequence number seen or older than the window).
    replay,
    /// Datagrams of a boot older than the sender's current (or last persisted) one.
    old_boot,
    /// Control (ACK/NACK) datagrams whose control number is not above the last one.
    stale_control,
    /// Gaps that fell out of the replay window (repaired by a bulk request).
    window_lost,
    /// Subheaders of unknown actions skipped.
    unknown_action,
    /// Datagrams carrying our own host id (looped back, or a misconfigured peer).
    own_host,
    /// State records in control datagrams, ignored.
    unsequenced_state,
    /// Journal entries drained.
    journal_entries,
    /// The journal's overflow count (entries dropped by workers).
    journal_overflow,
    /// Full walks started because the journal overflowed.
    resyncs,
    /// Bulk requests sent (ours, retries and quiet ones).
    bulk_requests,
    /// Bulk requests received.
    bulk_requests_received,
    /// Walks completed (bulk answers and resyncs: BUS END sent).
    bulk_sent,
    /// Bulk updates received (BUS END after START).
    bulk_received,
    /// States removed at a bulk END because the peer did not send them.
    bulk_purged,
    /// Our bulk requests gave up.
    bulk_failed,
    /// The peer's restarts seen (new boot id).
    peer_restarts,
}

/// Something the daemon may log or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// First datagram of a sender (host id, boot id).
    PeerFirst(u32, u32),
    /// A sender restarted (host id, new boot id).
    PeerRestarted(u32, u32),
    /// Our bulk update arrived: `bulk_pending` is now false (undo the CARP demotion).
    BulkDone,
    /// Our bulk requests gave up: `bulk_pending` is now false (undo the demotion, warn).
    BulkFailed,
    /// A walk (bulk answer or resync) started, with this many states.
    WalkStarted(usize),
    /// The journal overflowed: a resync walk starts.
    Resync,
    /// The peer sent a DHCP lease newer than any this box holds for its address.
    Lease(LeaseRecord),
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollResult {
    /// Poll again at this time at the latest (or earlier when the socket is readable).
    pub next_wakeup_ms: Millis,
    /// What happened.
    pub events: Vec<Event>,
}

/// For `tandemctl sync status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Our host id and boot id.
    pub host_id: u32,
    /// Our boot id.
    pub boot_id: u32,
    /// Configured peer address (`None`: multicast).
    pub peer: Option<Ipv4Addr>,
    /// The peer heard last: host id, boot id.
    pub peer_host: Option<(u32, u32)>,
    /// States in our table.
    pub states: usize,
    /// Lag variation in ms: receive time minus the datagram's timestamp, minus the smallest
    /// such value seen from this peer boot (the clocks are unrelated: this is the extra delay
    /// of the last datagram over the fastest one, not an absolute latency).
    pub lag_ms: Option<u64>,
    /// "done", "pending (try 2/12)", "failed", or "off" (bulk_retries 0).
    pub bulk: String,
    /// A walk in progress: states sent / total.
    pub walk: Option<(usize, usize)>,
    /// Datagrams sent and not yet acknowledged.
    pub unacked: usize,
    /// Our next sequence number.
    pub next_seq: u64,
    /// The last send or receive error.
    pub last_error: Option<String>,
    /// When the last authenticated, fresh datagram from the peer arrived (any: data, ACK,
    /// keepalive).
    pub peer_heard: Option<Millis>,
}

/// Receive state of one sender (by host id).
#[derive(Debug, Default)]
struct PeerRx {
    window: ReplayWindow,
    /// Every sequenced datagram up to `cum` arrived (or was given up).
    cum: u64,
    /// Arrived above `cum`.
    above: BTreeSet<u64>,
    unacked: u64,
    ack_now: bool,
    last_ack: Millis,
    last_nack: Option<Millis>,
    /// A new hole appeared: NACK at once.
    nack_now: bool,
    lag_min: Option<u32>,
    lag_last: u32,
    /// Its walk, as we receive it: the ids of its creator heard between BUS START and END.
    incoming: Incoming,
    /// State records of sequenced datagrams not yet applied (a gap before them), by seq.
    held: BTreeMap<u64, Vec<Record>>,
}

impl PeerRx {
    fn advance(&mut self) {
        while self.above.remove(&(self.cum + 1)) {
            self.cum += 1;
        }
    }
    /// The holes below the highest datagram received, lowest first (at most `max`).
    fn holes(&self, max: usize) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        let mut next = self.cum + 1;
        for &s in &self.above {
            if v.len() >= max {
                break;
            }
            if s > next {
                v.push((next, s - 1));
            }
            next = s + 1;
        }
        v
    }
}

#[derive(Debug)]
struct Sent {
    seq: u64,
    bytes: Vec<u8>,
}

fn bus_record(status: BusStatus, endtime_ms: u32) -> Record {
    Record::Bus(BusRecord {
        creator: 0,
        endtime_ms,
        status,
    })
}

/// NACK ranges per round (a 64-wide window has at most 32 holes).
const MAX_NACKS: usize = 32;

/// The replication engine. See the [module documentation](self).
#[derive(Debug)]
pub struct Replicator {
    cfg: SyncConfig,
    table: Arc<StateTable>,
    journal: Arc<SyncJournal>,
    builder: FrameBuilder,
    ctl: FrameBuilder,
    /// When the open datagram's first record was pushed.
    open_since: Option<Millis>,
    next_seq: u64,
    /// The last control number sent (ACK/NACK datagrams; bit 63 set on the wire).
    ctl_seq: u64,
    ring: VecDeque<Sent>,
    last_progress: Millis,
    /// Highest cumulative ACK from the peer, and when an ACK last arrived.
    acked: u64,
    last_ack_rx: Option<Millis>,
    /// When we last sent a datagram (the keepalive's clock), and last heard the peer.
    last_tx: Option<Millis>,
    last_rx: Option<Millis>,
    peers: HashMap<u32, PeerRx>,
    last_peer: Option<(u32, u32)>,
    /// The bulk update: our request for the peer's walk, our walk for the peer.
    bulk: BulkUpdate,
    counters: Counters,
    last_error: Option<String>,
    buf: Vec<u8>,
    events: Vec<Event>,
    /// UPD_REQ ids sent in the datagram being processed (pfsync's per-packet de-duplication).
    req_dedup: Vec<SyncId>,
    push_back: Vec<Arc<State>>,
    /// DHCP leases to send ([`Replicator::send_lease`]).
    lease_out: Vec<LeaseRecord>,
    /// The newest lease of every address, sent or received: a walk (the peer's bulk request)
    /// sends them all, so a box that joins learns every lease.
    leases: HashMap<Ipv4Addr, LeaseRecord>,
}

fn age(now: Millis, then: Millis) -> u32 {
    u32::try_from(now.saturating_sub(then)).unwrap_or(u32::MAX)
}

/// The INS record of a state, its tracking read now.
pub fn ins_record(s: &State, now: Millis) -> InsRecord {
    let t = s.tracking();
    InsRecord {
        id: s.id,
        stack: s.stack,
        wire: s.wire(),
        src: t.src,
        dst: t.dst,
        timeout: t.timeout,
        last_age_ms: age(now, t.last),
        created_age_s: age(now, s.created()) / 1000,
        rule: s.rule,
        packets: t.packets,
        bytes: t.bytes,
    }
}

fn upd_c_record(s: &State, now: Millis) -> UpdCRecord {
    let t = s.tracking();
    UpdCRecord {
        id: s.id,
        src: t.src,
        dst: t.dst,
        timeout: t.timeout,
        last_age_ms: age(now, t.last),
    }
}

impl Replicator {
    /// A replicator for `table`, draining `journal` (the one the table was built with:
    /// `StateTable::with_journal(cfg, journal.clone())`). `bulk_pending` is true from here
    /// until the bulk update arrives or the requests give up (unless `bulk_retries` is 0).
    ///
    /// Panics if `cfg.host_id` is not the table's creator id (a wiring error: the purge at a
    /// bulk END and the own-host check rely on it).
    pub fn new(cfg: SyncConfig, table: Arc<StateTable>, journal: Arc<SyncJournal>) -> Self {
        assert_eq!(
            cfg.host_id,
            table.creator(),
            "ha.state_sync host id must be the state table's creator id"
        );
        let builder = FrameBuilder::new(cfg.key.clone(), cfg.host_id, cfg.boot_id, cfg.mtu);
        let ctl = FrameBuilder::new(cfg.key.clone(), cfg.host_id, cfg.boot_id, cfg.mtu);
        let bulk = BulkUpdate::new(cfg.bulk_retries);
        Replicator {
            buf: vec![0; 65_536],
            cfg,
            table,
            journal,
            builder,
            ctl,
            open_since: None,
            next_seq: 1,
            ctl_seq: 0,
            ring: VecDeque::new(),
            last_progress: 0,
            acked: 0,
            last_ack_rx: None,
            last_tx: None,
            last_rx: None,
            peers: HashMap::new(),
            last_peer: None,
            lease_out: Vec::new(),
            leases: HashMap::new(),
            bulk,
            counters: Counters::default(),
            last_error: None,
            events: Vec::new(),
            req_dedup: Vec::new(),
            push_back: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SyncConfig {
        &self.cfg
    }

    /// True until our bulk update arrived or gave up: demote CARP (by 240) while true.
    pub fn bulk_pending(&self) -> bool {
        self.bulk.request.is_pending()
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// When a datagram of the peer last arrived ([`Status::peer_heard`], without building the
    /// whole status).
    pub fn peer_heard(&self) -> Option<Millis> {
        self.last_rx
    }

    /// Status for the CLI.
    pub fn status(&self) -> Status {
        let lag_ms = self.last_peer.and_then(|(h, _)| {
            let p = self.peers.get(&h)?;
            Some(u64::from(p.lag_last.wrapping_sub(p.lag_min?)))
        });
        Status {
            host_id: self.cfg.host_id,
            boot_id: self.cfg.boot_id,
            peer: self.cfg.peer,
            peer_host: self.last_peer,
            states: self.table.len(),
            lag_ms,
            bulk: self.bulk.request.describe(self.cfg.bulk_retries),
            walk: self.bulk.walk.progress(),
            unacked: self.ring.len(),
            next_seq: self.next_seq,
            last_error: self.last_error.clone(),
            peer_heard: self.last_rx,
        }
    }

    /// One round. See the [module documentation](self).
    pub fn poll<T: Transport + ?Sized>(&mut self, transport: &mut T, now: Millis) -> PollResult {
        let mut t = transport;
        let t: &mut dyn Transport = &mut t;
        self.receive(t, now);
        self.counters.journal_overflow = self.journal.overflow();
        if self.journal.take_resync() {
            self.events.push(Event::Resync);
            self.counters.resyncs += 1;
            self.start_walk(t, now, true);
        }
        let due = self.journal.due() || !self.lease_out.is_empty();
        for r in std::mem::take(&mut self.lease_out) {
            self.push(t, Record::Lease(r), now);
        }
        self.drain(t, now);
        self.walk_step(t, now);
        self.bulk_timer(t, now);
        if let Some(since) = self.open_since {
            if due || now >= since + self.cfg.flush_delay_ms {
                self.flush(t, now, true);
            }
        }
        self.acks(t, now);
        self.retransmit_timer(t, now);
        PollResult {
            next_wakeup_ms: self.next_wakeup(now),
            events: std::mem::take(&mut self.events),
        }
    }

    fn next_wakeup(&self, now: Millis) -> Millis {
        let mut w = now + self.cfg.drain_interval_ms.max(1);
        let mut at = |t: Millis| w = w.min(t.max(now));
        if let Some(s) = self.open_since {
            at(s + self.cfg.flush_delay_ms);
        }
        if self.bulk.walk.is_walking() {
            at(now + 1);
        }
        if let Some(next_at) = self.bulk.request.next_at() {
            at(next_at);
        }
        if !self.ring.is_empty() {
            at(self.last_progress + self.cfg.retransmit_timeout_ms);
        }
        if self.cfg.keepalive_ms > 0 {
            at(self.last_tx.unwrap_or(0) + self.cfg.keepalive_ms);
        }
        for p in self.peers.values() {
            if p.unacked > 0 {
                at(p.last_ack + self.cfg.ack_interval_ms);
            }
            if let Some(n) = p.last_nack {
                at(n + self.cfg.nack_interval_ms);
            }
        }
        w
    }
}
