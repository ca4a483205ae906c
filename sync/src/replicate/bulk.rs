//! The bulk update: asking for one (the request timer), answering one (the table walk, paced),
//! and ending one (the purge at BUS END). See the parent's doc, *Bulk update*.

use super::*;

impl Replicator {
    /// Ask the peer for a bulk update again, as at start (`bulk_pending` true again): the
    /// operator's `tandemctl sync resync`.
    pub fn request_bulk(&mut self) {
        self.bulk = Bulk::Pending {
            tries: 0,
            next_at: 0,
        };
    }

    // ---- walks (bulk answer, resync) ------------------------------------------------------

    /// Snapshot the table and push BUS START at once: every record pushed after it (journal
    /// entries of states newer than the snapshot included) is between START and END, so the
    /// peer's purge spares those states.
    pub(super) fn start_walk(&mut self, t: &mut dyn Transport, now: Millis, resync: bool) {
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

    pub(super) fn walk_step(&mut self, t: &mut dyn Transport, now: Millis) {
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

    pub(super) fn bulk_timer(&mut self, t: &mut dyn Transport, now: Millis) {
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

    pub(super) fn send_bulk_request(&mut self, t: &mut dyn Transport, now: Millis) {
        self.counters.bulk_requests += 1;
        self.last_request = Some(now);
        self.push(t, Record::BULK_REQUEST, now);
        self.flush(t, now, true);
    }

    /// A BUS END (applied in order: every datagram before it was): purge and finish.
    pub(super) fn bulk_end(&mut self, host: u32) {
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
}
