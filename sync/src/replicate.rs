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
//!
//! # Merge rules
//!
//! INS of an unknown id: [`StateTable::insert_synced`] (not journaled: never echoed), ages
//! rebased on our clock, counters copied. INS or UPD_C of a known id:
//! [`State::merge_remote`] (each side only forward, judged separately: the dst side is never
//! copied when it is the stale one, unlike opnsense/src#327); a stale side counts `stale` and
//! queues our newer copy back as UPD_C (pfsync's push-back). UPD_C of an unknown id: UPD_REQ
//! (once per datagram). UPD_REQ(id): answered with INS. DEL_C: [`StateTable::remove_by_id`].
//! CLR: every state of that creator removed.
//!
//! # Echo
//!
//! The table journals every removal, the peer's deletes included (it has no NOSYNC flag). The
//! replicator remembers the ids it removed on the peer's word (DEL_C, CLR, the purge at a bulk
//! END) in a set, and the drain drops the journal's Delete of such an id (counter
//! `echo_suppressed`) and forgets it. Every successful removal journals exactly one Delete, so
//! the set empties itself; if a journal overflow lost one, the id stays: the set is cleared
//! when it exceeds 65536 ids (the worst case is then a harmless, ignored DEL_C).
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

use tandem_dataplane::journal::JournalKind;
use tandem_dataplane::state::{Millis, NewState, State, StateTable, SyncId, TcpPeer, TimeoutClass};

use crate::journal::SyncJournal;
use crate::replay::{is_data, Replay, ReplayWindow, Seen, CONTROL, WIDTH};
use crate::transport::Transport;
use crate::wire::{
    self, BusRecord, BusStatus, FrameBuilder, InsRecord, LeaseRecord, Record, Reject, SyncKey,
    UpdCRecord, FLAG_ACK_REQ,
};

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
    /// Journal deletes of states the peer deleted, not sent back.
    echo_suppressed,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bulk {
    Off,
    Pending { tries: u32, next_at: Millis },
    Done,
    Failed,
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
    /// Between BUS START and END: the ids of the sender's creator we heard of.
    bulk_seen: Option<HashSet<SyncId>>,
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

#[derive(Debug)]
struct Walk {
    states: Vec<Arc<State>>,
    at: usize,
    started: Millis,
    resync: bool,
}

fn bus_record(status: BusStatus, endtime_ms: u32) -> Record {
    Record::Bus(BusRecord {
        creator: 0,
        endtime_ms,
        status,
    })
}

const ECHO_LIMIT: usize = 65_536;
/// NACK ranges per round (a 64-wide window has at most 32 holes).
const MAX_NACKS: usize = 32;
/// A bulk request is not repeated within this long because a peer appeared.
const REQUEST_HOLDOFF_MS: Millis = 1000;

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
    peers: HashMap<u32, PeerRx>,
    last_peer: Option<(u32, u32)>,
    peer_deleted: HashSet<SyncId>,
    bulk: Bulk,
    last_request: Option<Millis>,
    walk: Option<Walk>,
    walk_again: bool,
    walk_again_resync: bool,
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
        let bulk = if cfg.bulk_retries == 0 {
            Bulk::Off
        } else {
            Bulk::Pending {
                tries: 0,
                next_at: 0,
            }
        };
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
            peers: HashMap::new(),
            last_peer: None,
            peer_deleted: HashSet::new(),
            lease_out: Vec::new(),
            leases: HashMap::new(),
            bulk,
            last_request: None,
            walk: None,
            walk_again: false,
            walk_again_resync: false,
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
        matches!(self.bulk, Bulk::Pending { .. })
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
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
            bulk: match self.bulk {
                Bulk::Off => "off".into(),
                Bulk::Done => "done".into(),
                Bulk::Failed => "failed".into(),
                Bulk::Pending { tries, .. } => {
                    format!("pending (try {}/{})", tries.max(1), self.cfg.bulk_retries)
                }
            },
            walk: self.walk.as_ref().map(|w| (w.at, w.states.len())),
            unacked: self.ring.len(),
            next_seq: self.next_seq,
            last_error: self.last_error.clone(),
        }
    }

    /// Ask the peer for a bulk update again, as at start (`bulk_pending` true again): the
    /// operator's `tandemctl sync resync`.
    pub fn request_bulk(&mut self) {
        self.bulk = Bulk::Pending {
            tries: 0,
            next_at: 0,
        };
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
        if self.walk.is_some() {
            at(now + 1);
        }
        if let Bulk::Pending { next_at, .. } = self.bulk {
            at(next_at);
        }
        if !self.ring.is_empty() {
            at(self.last_progress + self.cfg.retransmit_timeout_ms);
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

    // ---- sending -------------------------------------------------------------------------

    fn count_tx(&mut self, rec: &Record) {
        let c = &mut self.counters;
        match rec {
            Record::Ins(_) => c.tx_ins += 1,
            Record::UpdC(_) => c.tx_upd_c += 1,
            Record::DelC(_) => c.tx_del_c += 1,
            Record::UpdReq(_) => c.tx_upd_req += 1,
            Record::Bus(_) => c.tx_bus += 1,
            Record::Ack { .. } => c.tx_ack += 1,
            Record::Nack { .. } => c.tx_nack += 1,
            Record::Lease(_) => c.tx_lease += 1,
            Record::Clr { .. } | Record::InsAck(_) => {}
        }
    }

    /// Put a record into the open sequenced datagram, sending it first if full.
    fn push(&mut self, t: &mut dyn Transport, rec: Record, now: Millis) {
        if !self.builder.push(&rec) {
            self.flush(t, now, false);
            // An empty datagram takes any record (the builder's MTU fits an INS).
            let _ = self.builder.push(&rec);
        }
        self.open_since.get_or_insert(now);
        self.count_tx(&rec);
    }

    fn send_bytes(&mut self, t: &mut dyn Transport, bytes: &[u8]) {
        self.counters.tx_datagrams += 1;
        if let Err(e) = t.send(bytes) {
            self.counters.tx_errors += 1;
            self.last_error = Some(format!("send: {e}"));
        }
    }

    /// Seal and send the open datagram; `end_of_burst` asks for an ACK.
    fn flush(&mut self, t: &mut dyn Transport, now: Millis, end_of_burst: bool) {
        if self.builder.is_empty() {
            self.open_since = None;
            return;
        }
        let half_full = self.ring.len() * 2 >= self.cfg.retransmit_ring;
        if end_of_burst || half_full {
            self.builder.set_flags(FLAG_ACK_REQ);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let bytes = self.builder.finish(seq, now).to_vec();
        self.builder.clear();
        self.open_since = None;
        self.counters.tx_sequenced += 1;
        self.send_bytes(t, &bytes);
        if self.ring.is_empty() {
            self.last_progress = now;
        }
        self.ring.push_back(Sent { seq, bytes });
        while self.ring.len() > self.cfg.retransmit_ring.max(1) {
            self.ring.pop_front();
        }
    }

    /// The next control number, bit 63 set: every control datagram is fresh exactly once.
    fn next_ctl(&mut self) -> u64 {
        self.ctl_seq += 1;
        CONTROL | self.ctl_seq
    }

    fn send_control(&mut self, t: &mut dyn Transport, recs: &[Record], now: Millis) {
        self.ctl.clear();
        for r in recs {
            if !self.ctl.push(r) {
                let n = self.next_ctl();
                let bytes = self.ctl.finish(n, now).to_vec();
                self.ctl.clear();
                self.counters.tx_control += 1;
                self.send_bytes(t, &bytes);
                let _ = self.ctl.push(r);
            }
            self.count_tx(r);
        }
        if !self.ctl.is_empty() {
            let n = self.next_ctl();
            let bytes = self.ctl.finish(n, now).to_vec();
            self.ctl.clear();
            self.counters.tx_control += 1;
            self.send_bytes(t, &bytes);
        }
    }

    /// May another sequenced datagram go out (flow control)?
    fn credit(&self, now: Millis) -> bool {
        let alive = self
            .last_ack_rx
            .is_some_and(|t| now < t + self.cfg.peer_dead_ms);
        !alive || self.ring.len() < self.cfg.max_in_flight.max(1)
    }

    fn drain(&mut self, t: &mut dyn Transport, now: Millis) {
        let mut left = self.cfg.drain_max;
        while left > 0 && self.credit(now) {
            // Small chunks: the credit is checked between them (a chunk is at most 3
            // datagrams of INS).
            let n = self.drain_some(t, now, left.min(32));
            if n == 0 {
                break;
            }
            left -= n;
        }
    }

    fn drain_some(&mut self, t: &mut dyn Transport, now: Millis, max: usize) -> usize {
        let mut entries = Vec::with_capacity(max);
        let n = self.journal.drain(max, |k, s| entries.push((k, s)));
        self.counters.journal_entries += n as u64;
        for (kind, s) in entries {
            let id = s.id;
            match kind {
                JournalKind::Delete => {
                    if self.peer_deleted.remove(&id) {
                        self.counters.echo_suppressed += 1;
                    } else {
                        self.push(t, Record::DelC(id), now);
                    }
                }
                _ if s.is_removed() => {}
                JournalKind::Insert => self.push(t, Record::Ins(ins_record(&s, now)), now),
                JournalKind::Update => self.push(t, Record::UpdC(upd_c_record(&s, now)), now),
            }
        }
        n
    }

    // ---- walks (bulk answer, resync) ------------------------------------------------------

    /// Snapshot the table and push BUS START at once: every record pushed after it (journal
    /// entries of states newer than the snapshot included) is between START and END, so the
    /// peer's purge spares those states.
    fn start_walk(&mut self, t: &mut dyn Transport, now: Millis, resync: bool) {
        if self.walk.is_some() {
            self.walk_again = true;
            self.walk_again_resync |= resync;
            return;
        }
        let states = self.table.snapshot();
        self.events.push(Event::WalkStarted(states.len()));
        self.walk = Some(Walk {
            states,
            at: 0,
            started: now,
            resync,
        });
        self.push(t, bus_record(BusStatus::Start, 0), now);
        let leases: Vec<LeaseRecord> = self.leases.values().copied().collect();
        for r in leases {
            self.push(t, Record::Lease(r), now);
        }
    }

    fn walk_step(&mut self, t: &mut dyn Transport, now: Millis) {
        let Some(mut w) = self.walk.take() else {
            return;
        };
        let limit = self.counters.tx_sequenced + self.cfg.bulk_pace.max(1) as u64;
        while w.at < w.states.len() && self.counters.tx_sequenced < limit && self.credit(now) {
            let s = Arc::clone(&w.states[w.at]);
            w.at += 1;
            if s.is_removed() {
                continue;
            }
            if w.resync {
                s.clear_queued();
            }
            self.push(t, Record::Ins(ins_record(&s, now)), now);
        }
        if w.at < w.states.len() {
            self.walk = Some(w);
            return;
        }
        // What the journal holds now goes out before END (tidier; the purge spares it anyway,
        // being after START).
        self.drain(t, now);
        self.push(t, bus_record(BusStatus::End, age(now, w.started)), now);
        self.flush(t, now, true);
        self.counters.bulk_sent += 1;
        if std::mem::take(&mut self.walk_again) {
            let resync = std::mem::take(&mut self.walk_again_resync);
            self.start_walk(t, now, resync);
        }
    }

    fn bulk_timer(&mut self, t: &mut dyn Transport, now: Millis) {
        let Bulk::Pending { tries, next_at } = self.bulk else {
            return;
        };
        if now < next_at {
            return;
        }
        if tries >= self.cfg.bulk_retries {
            self.bulk = Bulk::Failed;
            self.counters.bulk_failed += 1;
            self.events.push(Event::BulkFailed);
            tracing::warn!(
                tries,
                "state sync: no bulk update from the peer after {tries} requests; giving up \
                 (CARP demotion lifted)"
            );
            return;
        }
        self.bulk = Bulk::Pending {
            tries: tries + 1,
            next_at: now + self.cfg.bulk_interval_ms,
        };
        self.send_bulk_request(t, now);
    }

    fn send_bulk_request(&mut self, t: &mut dyn Transport, now: Millis) {
        self.counters.bulk_requests += 1;
        self.last_request = Some(now);
        self.push(t, Record::BULK_REQUEST, now);
        self.flush(t, now, true);
    }

    // ---- acknowledgement, retransmission -------------------------------------------------

    fn acks(&mut self, t: &mut dyn Transport, now: Millis) {
        let mut recs = Vec::new();
        for p in self.peers.values_mut() {
            if p.unacked > 0
                && (p.ack_now
                    || p.unacked >= self.cfg.ack_every
                    || now >= p.last_ack + self.cfg.ack_interval_ms)
            {
                recs.push(Record::Ack { seq: p.cum });
                p.unacked = 0;
                p.ack_now = false;
                p.last_ack = now;
            }
            // Every hole at once when a new one appears, and again every nack_interval while
            // any lasts.
            if p.above.is_empty() {
                p.last_nack = None;
                p.nack_now = false;
            } else if p.nack_now
                || p.last_nack
                    .is_none_or(|l| now >= l + self.cfg.nack_interval_ms)
            {
                for (from, to) in p.holes(MAX_NACKS) {
                    recs.push(Record::Nack { from, to });
                }
                p.last_nack = Some(now);
                p.nack_now = false;
            }
        }
        if !recs.is_empty() {
            self.send_control(t, &recs, now);
        }
    }

    fn on_ack(&mut self, seq: u64, now: Millis) {
        self.last_ack_rx = Some(now);
        if seq >= self.next_seq {
            return; // not a number we sent (this boot): ignore
        }
        self.acked = self.acked.max(seq);
        let before = self.ring.len();
        while self.ring.front().is_some_and(|s| s.seq <= seq) {
            self.ring.pop_front();
        }
        if self.ring.len() != before {
            self.last_progress = now;
        }
    }

    fn on_nack(&mut self, t: &mut dyn Transport, from: u64, to: u64, now: Millis) {
        // Numbers acknowledged already: a stale NACK (reordered behind our peer's ACK), not
        // worth a walk. Replayed NACKs never get here (their control number is not fresh).
        let from = from.max(self.acked + 1);
        let to = to.min(self.next_seq.saturating_sub(1));
        if from > to {
            return;
        }
        let first = self.ring.front().map(|s| s.seq);
        let mut missed = false;
        // At most the ring's length: a NACK cannot make us send more than we hold.
        let from_held = first.map_or(to + 1, |f| from.max(f));
        if from < from_held {
            missed = true;
        }
        let mut resend = Vec::new();
        if let Some(f) = first {
            for seq in from_held..=to {
                match self.ring.get((seq - f) as usize) {
                    Some(s) if s.seq == seq => resend.push(s.bytes.clone()),
                    _ => missed = true,
                }
            }
        }
        for b in resend {
            self.counters.retransmits += 1;
            self.send_bytes(t, &b);
        }
        if missed {
            self.counters.retransmit_missed += 1;
            self.start_walk(t, now, false);
        }
    }

    fn retransmit_timer(&mut self, t: &mut dyn Transport, now: Millis) {
        if now < self.last_progress + self.cfg.retransmit_timeout_ms {
            return;
        }
        if let Some(b) = self.ring.back().map(|s| s.bytes.clone()) {
            self.counters.retransmits += 1;
            self.send_bytes(t, &b);
            self.last_progress = now;
        }
    }

    // ---- receiving -----------------------------------------------------------------------

    fn receive(&mut self, t: &mut dyn Transport, now: Millis) {
        let mut buf = std::mem::take(&mut self.buf);
        for _ in 0..self.cfg.max_recv {
            match t.recv(&mut buf) {
                Ok(Some((n, src, ttl))) => self.datagram(t, &buf[..n], src, ttl, now),
                Ok(None) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.counters.rx_errors += 1;
                    self.last_error = Some(format!("receive: {e}"));
                    break;
                }
            }
        }
        self.buf = buf;
    }

    fn reject(&mut self, r: Reject) {
        let c = &mut self.counters;
        match r {
            Reject::Short => c.short += 1,
            Reject::BadVersion => c.bad_version += 1,
            Reject::BadLength => c.bad_length += 1,
            Reject::BadMac => c.bad_mac += 1,
            Reject::Malformed => c.malformed += 1,
        }
    }

    fn datagram(&mut self, t: &mut dyn Transport, d: &[u8], src: Ipv4Addr, ttl: u8, now: Millis) {
        self.counters.rx_datagrams += 1;
        if ttl != wire::TTL {
            self.counters.bad_ttl += 1;
            return;
        }
        if self.cfg.peer.is_some_and(|p| p != src) {
            self.counters.bad_source += 1;
            return;
        }
        let frame = match wire::parse(d, &self.cfg.key) {
            Ok(f) => f,
            Err(r) => return self.reject(r),
        };
        let h = frame.header;
        if h.host == self.cfg.host_id {
            self.counters.own_host += 1;
            return;
        }
        self.counters.unknown_action += u64::from(frame.unknown_actions());
        let floor = self
            .cfg
            .peer_boots
            .iter()
            .find(|(host, _)| *host == h.host)
            .map_or(0, |(_, b)| *b);
        let p = self.peers.entry(h.host).or_insert_with(|| PeerRx {
            window: ReplayWindow::with_floor(floor),
            ..PeerRx::default()
        });
        let seen = match p.window.check(h.boot, h.seq) {
            Ok(s) => s,
            Err(Replay::OldBoot) => {
                self.counters.old_boot += 1;
                return;
            }
            Err(Replay::StaleControl) => {
                self.counters.stale_control += 1;
                return;
            }
            Err(Replay::Seen) => {
                self.counters.replay += 1;
                // A duplicate asking for an ACK: our ACK was lost (or it is a replay: an ACK
                // of what we have is harmless either way).
                if h.flags & FLAG_ACK_REQ != 0 {
                    p.ack_now = true;
                    p.unacked = p.unacked.max(1);
                }
                return;
            }
        };
        self.counters.rx_accepted += 1;
        self.last_peer = Some((h.host, h.boot));
        let lag = (now as u32).wrapping_sub(h.timestamp);
        let mut quiet_bulk = false;
        let mut retry_now = false;
        match seen {
            Seen::First | Seen::Restart { .. } => {
                *p = PeerRx {
                    window: std::mem::take(&mut p.window),
                    last_ack: now,
                    ..PeerRx::default()
                };
                // A boot first heard by a control datagram has no data yet.
                p.cum = if is_data(h.seq) { h.seq } else { 0 };
                if let Seen::Restart { missing } = seen {
                    self.counters.peer_restarts += 1;
                    self.events.push(Event::PeerRestarted(h.host, h.boot));
                    if missing.is_some() {
                        p.cum = 0;
                        p.above.insert(h.seq);
                        p.nack_now = true;
                    }
                } else {
                    self.events.push(Event::PeerFirst(h.host, h.boot));
                }
                // Our own request may have gone to a peer that was not there yet: ask now
                // rather than at the next retry.
                retry_now = true;
            }
            Seen::InOrder if p.above.is_empty() => p.cum = h.seq,
            Seen::InOrder => {
                p.above.insert(h.seq);
            }
            Seen::Gap { .. } => {
                p.above.insert(h.seq);
                p.nack_now = true;
            }
            Seen::Late => {
                if h.seq > p.cum {
                    p.above.insert(h.seq);
                    let before = p.cum;
                    p.advance();
                    // A repaired gap: ACK at once, the sender may be waiting for credit.
                    p.ack_now |= p.cum != before;
                }
            }
            Seen::Control => {}
        }
        if is_data(h.seq) {
            p.unacked += 1;
            if h.flags & FLAG_ACK_REQ != 0 {
                p.ack_now = true;
            }
            if p.lag_min.is_none_or(|m| lag.wrapping_sub(m) > u32::MAX / 2) {
                p.lag_min = Some(lag);
            }
            p.lag_last = lag;
        }
        // A gap that fell out of the window can no longer be retransmitted.
        let top = p.window.top();
        if top > WIDTH && p.cum + WIDTH < top {
            self.counters.window_lost += 1;
            p.cum = top - WIDTH;
            p.above.retain(|&s| s > top - WIDTH);
            p.advance();
            quiet_bulk = true;
        }

        // ACK and NACK act at once; state records wait for every datagram before theirs
        // (applied in sequence order, so a retransmitted INS cannot resurrect a state whose
        // DEL_C overtook it).
        let mut state_recs = Vec::new();
        for rec in frame.records() {
            match rec {
                Record::Ack { seq } => {
                    self.counters.rx_ack += 1;
                    self.on_ack(seq, now);
                }
                Record::Nack { from, to } => {
                    self.counters.rx_nack += 1;
                    self.on_nack(t, from, to, now);
                }
                _ if !is_data(h.seq) => self.counters.unsequenced_state += 1,
                r => state_recs.push(r),
            }
        }
        if is_data(h.seq) {
            if let Some(p) = self.peers.get_mut(&h.host) {
                p.held.insert(h.seq, state_recs);
            }
        }
        self.deliver(t, h.host, now);
        let held_off = self
            .last_request
            .is_some_and(|l| now < l + REQUEST_HOLDOFF_MS);
        if (quiet_bulk || (retry_now && self.bulk_pending())) && !held_off {
            self.send_bulk_request(t, now);
            if let Bulk::Pending { tries, .. } = self.bulk {
                self.bulk = Bulk::Pending {
                    tries: tries.max(1),
                    next_at: now + self.cfg.bulk_interval_ms,
                };
            }
        }
    }

    /// Apply, in sequence order, the held datagrams of `host` up to its `cum`.
    fn deliver(&mut self, t: &mut dyn Transport, host: u32, now: Millis) {
        loop {
            let Some(p) = self.peers.get_mut(&host) else {
                return;
            };
            let cum = p.cum;
            let Some(e) = p.held.first_entry() else {
                return;
            };
            if *e.key() > cum {
                return;
            }
            let recs = e.remove();
            self.req_dedup.clear();
            for rec in recs {
                self.record(t, host, rec, now);
            }
            let backs = std::mem::take(&mut self.push_back);
            for s in &backs {
                if !s.is_removed() {
                    self.push(t, Record::UpdC(upd_c_record(s, now)), now);
                }
            }
            self.push_back = backs;
            self.push_back.clear();
        }
    }

    fn record(&mut self, t: &mut dyn Transport, host: u32, rec: Record, now: Millis) {
        match rec {
            Record::Ins(r) => {
                self.counters.rx_ins += 1;
                self.heard(host, r.id);
                self.apply_ins(&r, now);
            }
            Record::UpdC(r) => {
                self.counters.rx_upd_c += 1;
                self.heard(host, r.id);
                match self.table.get_by_id(&r.id) {
                    Some(s) => self.merge(&s, &r.src, &r.dst, r.timeout, r.last_age_ms, now),
                    None => {
                        self.counters.upd_unknown += 1;
                        if !self.req_dedup.contains(&r.id) {
                            self.req_dedup.push(r.id);
                            self.push(t, Record::UpdReq(r.id), now);
                        }
                    }
                }
            }
            Record::DelC(id) => {
                self.counters.rx_del_c += 1;
                if let Some(s) = self.table.get_by_id(&id) {
                    self.remove_on_peer_word(&s);
                }
            }
            Record::Clr { creator } => {
                self.counters.rx_clr += 1;
                for s in self.table.snapshot() {
                    if { s.id.creator } == creator {
                        self.remove_on_peer_word(&s);
                    }
                }
            }
            Record::UpdReq(SyncId { creator: 0, id: 0 }) => {
                self.counters.rx_upd_req += 1;
                self.counters.bulk_requests_received += 1;
                self.start_walk(t, now, false);
            }
            Record::UpdReq(id) => {
                self.counters.rx_upd_req += 1;
                if let Some(s) = self.table.get_by_id(&id) {
                    self.counters.upd_req_answered += 1;
                    self.push(t, Record::Ins(ins_record(&s, now)), now);
                }
            }
            Record::Bus(b) => {
                self.counters.rx_bus += 1;
                match b.status {
                    BusStatus::Start => {
                        self.peers.entry(host).or_default().bulk_seen = Some(HashSet::new());
                    }
                    BusStatus::End => self.bulk_end(host),
                }
            }
            Record::Lease(r) => {
                self.counters.rx_lease += 1;
                if self.keep_lease(r) {
                    self.events.push(Event::Lease(r));
                }
            }
            Record::InsAck(_) | Record::Ack { .. } | Record::Nack { .. } => {}
        }
    }

    /// Queues a DHCP lease for the peer (sent in order with the states, repaired like them).
    pub fn send_lease(&mut self, r: LeaseRecord) {
        if self.keep_lease(r) {
            self.lease_out.push(r);
        }
    }

    /// Keeps `r` if it is newer than what this box holds for its address.
    fn keep_lease(&mut self, r: LeaseRecord) -> bool {
        match self.leases.get(&r.ip) {
            Some(old) if old.updated_ms >= r.updated_ms => false,
            _ => {
                self.leases.insert(r.ip, r);
                true
            }
        }
    }

    fn heard(&mut self, host: u32, id: SyncId) {
        if { id.creator } != host {
            return;
        }
        if let Some(seen) = self.peers.get_mut(&host).and_then(|p| p.bulk_seen.as_mut()) {
            seen.insert(id);
        }
    }

    /// A BUS END (applied in order: every datagram before it was): purge and finish.
    fn bulk_end(&mut self, host: u32) {
        let Some(p) = self.peers.get_mut(&host) else {
            return;
        };
        let Some(seen) = p.bulk_seen.take() else {
            return;
        };
        for s in self.table.snapshot() {
            if { s.id.creator } == host && !seen.contains(&s.id) {
                self.counters.bulk_purged += 1;
                self.remove_on_peer_word(&s);
            }
        }
        self.counters.bulk_received += 1;
        if self.bulk_pending() {
            self.bulk = Bulk::Done;
            self.events.push(Event::BulkDone);
            tracing::info!(host, "state sync: bulk update received");
        }
    }

    fn remove_on_peer_word(&mut self, s: &Arc<State>) {
        if self.peer_deleted.len() >= ECHO_LIMIT {
            self.peer_deleted.clear();
        }
        self.peer_deleted.insert(s.id);
        if self.table.remove(s) {
            self.counters.applied_deletes += 1;
        } else {
            self.peer_deleted.remove(&s.id);
        }
    }

    fn merge(
        &mut self,
        s: &Arc<State>,
        src: &TcpPeer,
        dst: &TcpPeer,
        timeout: TimeoutClass,
        last_age_ms: u32,
        now: Millis,
    ) {
        let last = now.saturating_sub(u64::from(last_age_ms));
        let stale = s.merge_remote(src, dst, timeout, last);
        self.counters.applied_updates += 1;
        if stale > 0 {
            self.counters.stale += 1;
            if !self.push_back.iter().any(|p| Arc::ptr_eq(p, s)) {
                self.push_back.push(Arc::clone(s));
            }
        }
    }

    fn apply_ins(&mut self, r: &InsRecord, now: Millis) {
        if let Some(s) = self.table.get_by_id(&r.id) {
            return self.merge(&s, &r.src, &r.dst, r.timeout, r.last_age_ms, now);
        }
        let new = NewState {
            stack: r.stack,
            wire: r.wire,
            rule: r.rule,
            src: r.src,
            dst: r.dst,
            timeout: r.timeout,
            bytes: 0,
        };
        let created = now.saturating_sub(u64::from(r.created_age_s) * 1000);
        let last = now.saturating_sub(u64::from(r.last_age_ms));
        match self.table.insert_synced(r.id, new, created, last) {
            Ok(s) => {
                s.modify(|t| {
                    t.packets = r.packets;
                    t.bytes = r.bytes;
                });
                self.counters.applied_inserts += 1;
            }
            Err(_) => {
                self.counters.insert_failed += 1;
            }
        }
    }
}
