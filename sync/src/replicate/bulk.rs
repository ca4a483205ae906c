//! The bulk update: asking for one (the request timer), answering one (the table walk, paced),
//! and ending one (the purge at BUS END). See the parent's doc, *Bulk update*.
//!
//! Three machines, each an enum whose transitions are the methods of its `impl` (listed in its
//! doc): [`Request`], ours to the peer; [`WalkState`], our walk answering the peer's; and
//! [`Incoming`], the peer's walk as we receive it. They do no I/O and count nothing, so each
//! can be tested alone: the [`Replicator`] methods at the end of the file send, count and
//! report around each transition.

use super::*;

/// A bulk request is not repeated within this long because a peer appeared.
const REQUEST_HOLDOFF_MS: Millis = 1000;

/// Everything the replicator keeps of the bulk update.
#[derive(Debug)]
pub(super) struct BulkUpdate {
    /// Ours: asking the peer for its walk.
    pub(super) request: Request,
    /// When we last sent a request (ours, a retry or a quiet one): a peer appearing does not
    /// bring another within [`REQUEST_HOLDOFF_MS`].
    last_request: Option<Millis>,
    /// Theirs: our walk answering the peer's request (or a journal overflow, or a NACK
    /// beyond the ring).
    pub(super) walk: WalkState,
}

impl BulkUpdate {
    pub(super) fn new(retries: u32) -> Self {
        BulkUpdate {
            request: Request::new(retries),
            last_request: None,
            walk: WalkState::Idle,
        }
    }

    fn held_off(&self, now: Millis) -> bool {
        self.last_request
            .is_some_and(|l| now < l + REQUEST_HOLDOFF_MS)
    }
}

/// Our request for the peer's walk; `Pending` is `bulk_pending` (CARP demoted).
///
/// ```text
/// new, retries 0          -> Off
/// new                     -> Pending { 0, 0 }        (asks at the first poll)
/// Pending { t, at }, now >= at:
///   tick, t < retries     -> Pending { t + 1, now + interval }   UPD_REQ 0/0
///   tick, t >= retries    -> Failed                             bulk_failed, BulkFailed
/// Pending { t, _ }, sent_early
///                         -> Pending { max(t, 1), now + interval }  (a peer appeared, or quiet)
/// Pending, received       -> Done                               BulkDone
/// any, restart            -> Pending { 0, 0 }        (the operator's resync)
/// ```
///
/// Off, Done and Failed are left only by `restart`. A quiet request (`window_lost`) is sent in
/// any state and moves none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Request {
    /// `bulk_retries` is 0: we never ask (until the operator does).
    Off,
    /// Waiting for the peer's END; `tries` requests sent, the next one due at `next_at`.
    Pending { tries: u32, next_at: Millis },
    /// The peer's walk arrived.
    Done,
    /// `bulk_retries` requests went unanswered: given up, the demotion lifted.
    Failed,
}

/// What [`Request::tick`] asks of the replicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tick {
    /// Nothing due.
    Wait,
    /// Send UPD_REQ 0/0.
    Send,
    /// The requests ran out after this many tries: count and report the failure.
    GiveUp { tries: u32 },
}

impl Request {
    fn new(retries: u32) -> Self {
        if retries == 0 {
            Request::Off
        } else {
            Request::restart()
        }
    }

    /// From any state: ask again, at once, with a fresh count of tries.
    fn restart() -> Self {
        Request::Pending {
            tries: 0,
            next_at: 0,
        }
    }

    pub(super) fn is_pending(&self) -> bool {
        matches!(self, Request::Pending { .. })
    }

    /// When the timer is due next (while pending).
    pub(super) fn next_at(&self) -> Option<Millis> {
        match *self {
            Request::Pending { next_at, .. } => Some(next_at),
            _ => None,
        }
    }

    /// The request timer at `now`.
    fn tick(&mut self, now: Millis, retries: u32, interval: Millis) -> Tick {
        let Request::Pending { tries, next_at } = *self else {
            return Tick::Wait;
        };
        if now < next_at {
            return Tick::Wait;
        }
        if tries >= retries {
            *self = Request::Failed;
            return Tick::GiveUp { tries };
        }
        *self = Request::Pending {
            tries: tries + 1,
            next_at: now + interval,
        };
        Tick::Send
    }

    /// A request went out of turn: it counts as a try (at least the first), and the next
    /// retry is a full interval away.
    fn sent_early(&mut self, now: Millis, interval: Millis) {
        if let Request::Pending { tries, .. } = *self {
            *self = Request::Pending {
                tries: tries.max(1),
                next_at: now + interval,
            };
        }
    }

    /// The peer's walk ended: true if it was the one we waited for.
    fn received(&mut self) -> bool {
        if !self.is_pending() {
            return false;
        }
        *self = Request::Done;
        true
    }

    /// For `tandemctl sync status`.
    pub(super) fn describe(&self, retries: u32) -> String {
        match *self {
            Request::Off => "off".into(),
            Request::Done => "done".into(),
            Request::Failed => "failed".into(),
            Request::Pending { tries, .. } => {
                format!("pending (try {}/{})", tries.max(1), retries)
            }
        }
    }
}

/// Our walk of the table for the peer: BUS START, INS for every state of a snapshot, BUS END.
///
/// ```text
/// Idle, start(r)                -> Walking { walk(r), again: None }    snapshot, BUS START
/// Walking { again }, start(r)   -> Walking { again: Some(a) }          a.resync = r or again's
/// Walking, next_state           -> Walking, one state further          INS (paced by the caller)
/// Walking, all states passed,
///   finish                      -> Idle, handing back `again`          BUS END, bulk_sent
/// ```
///
/// A request during a walk queues one more walk after it (however many arrive: one walk
/// answers them all), a resync if any of them was one (a resync clears the states' queued
/// marks; a plain walk does not). The caller starts the queued walk only after END: a START
/// inside the first walk would restart the peer's marks, and the first END would then purge
/// the states sent before it.
#[derive(Debug)]
pub(super) enum WalkState {
    /// No walk in progress.
    Idle,
    /// A walk in progress, and the one queued behind it, if any.
    Walking { walk: Walk, again: Option<Again> },
}

/// One walk: a snapshot of the table and how far it is sent.
#[derive(Debug)]
pub(super) struct Walk {
    states: Vec<Arc<State>>,
    at: usize,
    started: Millis,
    resync: bool,
}

/// A walk queued behind the one in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Again {
    pub(super) resync: bool,
}

/// What [`WalkState::start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// A walk started over this many states: send BUS START.
    Started(usize),
    /// A walk is in progress: another follows it.
    Queued,
}

/// A walk that passed its last state: what END needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ended {
    pub(super) started: Millis,
    pub(super) again: Option<Again>,
}

impl WalkState {
    /// A walk is wanted. `snapshot` is taken only if none is in progress (it costs an
    /// atomic increment per state).
    pub(super) fn start(
        &mut self,
        now: Millis,
        resync: bool,
        snapshot: impl FnOnce() -> Vec<Arc<State>>,
    ) -> Start {
        match self {
            WalkState::Idle => {
                let states = snapshot();
                let n = states.len();
                *self = WalkState::Walking {
                    walk: Walk {
                        states,
                        at: 0,
                        started: now,
                        resync,
                    },
                    again: None,
                };
                Start::Started(n)
            }
            WalkState::Walking { again, .. } => {
                let resync = resync || again.is_some_and(|a| a.resync);
                *again = Some(Again { resync });
                Start::Queued
            }
        }
    }

    /// True while a walk has states left to pass.
    pub(super) fn has_next(&self) -> bool {
        matches!(self, WalkState::Walking { walk, .. } if walk.at < walk.states.len())
    }

    /// The next state of the walk (removed ones too: the caller skips them), and whether the
    /// walk is a resync.
    pub(super) fn next_state(&mut self) -> Option<(Arc<State>, bool)> {
        let WalkState::Walking { walk, .. } = self else {
            return None;
        };
        let s = walk.states.get(walk.at)?;
        walk.at += 1;
        Some((Arc::clone(s), walk.resync))
    }

    /// Ends a walk that passed its last state (back to Idle); `None` while states are left
    /// or no walk is in progress.
    pub(super) fn finish(&mut self) -> Option<Ended> {
        match std::mem::replace(self, WalkState::Idle) {
            WalkState::Walking { walk, again } if walk.at >= walk.states.len() => Some(Ended {
                started: walk.started,
                again,
            }),
            unfinished => {
                *self = unfinished;
                None
            }
        }
    }

    pub(super) fn is_walking(&self) -> bool {
        matches!(self, WalkState::Walking { .. })
    }

    /// States passed and total, for `tandemctl sync status`.
    pub(super) fn progress(&self) -> Option<(usize, usize)> {
        match self {
            WalkState::Idle => None,
            WalkState::Walking { walk, .. } => Some((walk.at, walk.states.len())),
        }
    }
}

/// The peer's walk as we receive it, per sender (in its `PeerRx`, so a restarted sender starts
/// outside): the ids of its creator heard between its START and END, which the purge spares.
///
/// ```text
/// Outside, START   -> Open { }          (again on a second START: the marks restart)
/// Open, heard(id)  -> Open { + id }     (Outside: nothing)
/// Open, END        -> Outside, handing back the marks: purge, bulk_received
/// Outside, END     -> Outside, nothing  (an END without its START: no purge)
/// ```
#[derive(Debug, Default)]
pub(super) enum Incoming {
    #[default]
    Outside,
    Open(HashSet<SyncId>),
}

impl Incoming {
    pub(super) fn start(&mut self) {
        *self = Incoming::Open(HashSet::new());
    }

    pub(super) fn heard(&mut self, id: SyncId) {
        if let Incoming::Open(seen) = self {
            seen.insert(id);
        }
    }

    /// The marks of the walk that ends, if one was open.
    pub(super) fn end(&mut self) -> Option<HashSet<SyncId>> {
        match std::mem::take(self) {
            Incoming::Open(seen) => Some(seen),
            Incoming::Outside => None,
        }
    }
}

impl Replicator {
    /// Ask the peer for a bulk update again, as at start (`bulk_pending` true again): the
    /// operator's `tandemctl sync resync`.
    pub fn request_bulk(&mut self) {
        self.bulk.request = Request::restart();
    }

    // ---- walks (bulk answer, resync) ------------------------------------------------------

    /// Snapshot the table and push BUS START at once: every record pushed after it (journal
    /// entries of states newer than the snapshot included) is between START and END, so the
    /// peer's purge spares those states.
    pub(super) fn start_walk(&mut self, t: &mut dyn Transport, now: Millis, resync: bool) {
        let table = &self.table;
        let Start::Started(n) = self.bulk.walk.start(now, resync, || table.snapshot()) else {
            return;
        };
        self.events.push(Event::WalkStarted(n));
        self.push(t, bus_record(BusStatus::Start, 0), now);
        let leases: Vec<LeaseRecord> = self.leases.values().copied().collect();
        for r in leases {
            self.push(t, Record::Lease(r), now);
        }
    }

    /// At most `bulk_pace` datagrams of the walk, within the credit; END once every state
    /// was passed, then the walk queued behind it.
    pub(super) fn walk_step(&mut self, t: &mut dyn Transport, now: Millis) {
        let limit = self.counters.tx_sequenced + self.cfg.bulk_pace.max(1) as u64;
        while self.bulk.walk.has_next() && self.counters.tx_sequenced < limit && self.credit(now) {
            let Some((s, resync)) = self.bulk.walk.next_state() else {
                break;
            };
            if s.is_removed() {
                continue;
            }
            if resync {
                s.clear_queued();
            }
            self.push(t, Record::Ins(ins_record(&s, now)), now);
        }
        let Some(end) = self.bulk.walk.finish() else {
            return;
        };
        // What the journal holds now goes out before END (tidier; the purge spares it anyway,
        // being after START).
        self.drain(t, now);
        self.push(t, bus_record(BusStatus::End, age(now, end.started)), now);
        self.flush(t, now, true);
        self.counters.bulk_sent += 1;
        if let Some(again) = end.again {
            self.start_walk(t, now, again.resync);
        }
    }

    pub(super) fn bulk_timer(&mut self, t: &mut dyn Transport, now: Millis) {
        let tick = self
            .bulk
            .request
            .tick(now, self.cfg.bulk_retries, self.cfg.bulk_interval_ms);
        match tick {
            Tick::Wait => {}
            Tick::Send => self.send_bulk_request(t, now),
            Tick::GiveUp { tries } => {
                self.counters.bulk_failed += 1;
                self.events.push(Event::BulkFailed);
                tracing::warn!(
                    tries,
                    "state sync: no bulk update from the peer after {tries} requests; giving up \
                     (CARP demotion lifted)"
                );
            }
        }
    }

    /// A request out of turn, from a datagram just accepted: its sender is new while ours is
    /// pending (`peer_new`: ours may have gone to nobody), or a gap fell out of the replay
    /// window (`quiet`: asked whatever our request's state, so no demotion).
    pub(super) fn request_early(
        &mut self,
        t: &mut dyn Transport,
        now: Millis,
        quiet: bool,
        peer_new: bool,
    ) {
        if !(quiet || (peer_new && self.bulk_pending())) || self.bulk.held_off(now) {
            return;
        }
        self.send_bulk_request(t, now);
        self.bulk.request.sent_early(now, self.cfg.bulk_interval_ms);
    }

    pub(super) fn send_bulk_request(&mut self, t: &mut dyn Transport, now: Millis) {
        self.counters.bulk_requests += 1;
        self.bulk.last_request = Some(now);
        self.push(t, Record::BULK_REQUEST, now);
        self.flush(t, now, true);
    }

    /// A BUS END (applied in order: every datagram before it was): purge and finish.
    pub(super) fn bulk_end(&mut self, host: u32) {
        let Some(p) = self.peers.get_mut(&host) else {
            return;
        };
        let Some(seen) = p.incoming.end() else {
            return;
        };
        for s in self.table.snapshot() {
            if { s.id.creator } == host && !seen.contains(&s.id) {
                self.counters.bulk_purged += 1;
                self.remove_on_peer_word(&s);
            }
        }
        self.counters.bulk_received += 1;
        if self.bulk.request.received() {
            self.events.push(Event::BulkDone);
            tracing::info!(host, "state sync: bulk update received");
        }
    }
}

#[cfg(test)]
mod tests;
