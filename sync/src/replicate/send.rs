//! Sending: records into datagrams, the flush and flow control, and the ACK/NACK side of
//! reliability (acknowledgements out, NACKs answered from the retransmit ring, the tail-loss
//! timer). See the parent's doc for the rules.

use super::*;

impl Replicator {
    // ---- sending -------------------------------------------------------------------------

    pub(super) fn count_tx(&mut self, rec: &Record) {
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
    pub(super) fn push(&mut self, t: &mut dyn Transport, rec: Record, now: Millis) {
        if !self.builder.push(&rec) {
            self.flush(t, now, false);
            // An empty datagram takes any record (the builder's MTU fits an INS).
            let _ = self.builder.push(&rec);
        }
        self.open_since.get_or_insert(now);
        self.count_tx(&rec);
    }

    pub(super) fn send_bytes(&mut self, t: &mut dyn Transport, bytes: &[u8]) {
        self.counters.tx_datagrams += 1;
        if let Err(e) = t.send(bytes) {
            self.counters.tx_errors += 1;
            self.last_error = Some(format!("send: {e}"));
        }
    }

    /// Seal and send the open datagram; `end_of_burst` asks for an ACK.
    pub(super) fn flush(&mut self, t: &mut dyn Transport, now: Millis, end_of_burst: bool) {
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
        self.last_tx = Some(now);
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
    pub(super) fn next_ctl(&mut self) -> u64 {
        self.ctl_seq += 1;
        CONTROL | self.ctl_seq
    }

    pub(super) fn send_control(&mut self, t: &mut dyn Transport, recs: &[Record], now: Millis) {
        self.last_tx = Some(now);
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
    pub(super) fn credit(&self, now: Millis) -> bool {
        let alive = self
            .last_ack_rx
            .is_some_and(|t| now < t + self.cfg.peer_dead_ms);
        !alive || self.ring.len() < self.cfg.max_in_flight.max(1)
    }

    pub(super) fn drain(&mut self, t: &mut dyn Transport, now: Millis) {
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

    pub(super) fn drain_some(&mut self, t: &mut dyn Transport, now: Millis, max: usize) -> usize {
        let mut entries = Vec::with_capacity(max);
        let n = self.journal.drain(max, |k, s| entries.push((k, s)));
        self.counters.journal_entries += n as u64;
        for (kind, s) in entries {
            let id = s.id;
            match kind {
                JournalKind::Delete => self.push(t, Record::DelC(id), now),
                _ if s.is_removed() => {}
                JournalKind::Insert => self.push(t, Record::Ins(ins_record(&s, now)), now),
                JournalKind::Update => self.push(t, Record::UpdC(upd_c_record(&s, now)), now),
            }
        }
        n
    }

    // ---- acknowledgement, retransmission -------------------------------------------------

    pub(super) fn acks(&mut self, t: &mut dyn Transport, now: Millis) {
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
        self.keepalive(t, now);
    }

    /// Nothing sent for keepalive_ms (retransmissions do not count: the peer drops them as
    /// duplicates without hearing us), a control datagram without records: the wire's
    /// keepalive. It acknowledges nothing; it tells the peer that we are here.
    fn keepalive(&mut self, t: &mut dyn Transport, now: Millis) {
        // An open datagram goes out within flush_delay_ms anyway.
        if self.cfg.keepalive_ms == 0
            || !self.builder.is_empty()
            || self
                .last_tx
                .is_some_and(|t| now < t + self.cfg.keepalive_ms)
        {
            return;
        }
        self.last_tx = Some(now);
        self.ctl.clear();
        let n = self.next_ctl();
        let bytes = self.ctl.finish(n, now).to_vec();
        self.ctl.clear();
        self.counters.tx_control += 1;
        self.counters.tx_keepalive += 1;
        self.send_bytes(t, &bytes);
    }

    pub(super) fn on_ack(&mut self, seq: u64, now: Millis) {
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

    pub(super) fn on_nack(&mut self, t: &mut dyn Transport, from: u64, to: u64, now: Millis) {
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

    pub(super) fn retransmit_timer(&mut self, t: &mut dyn Transport, now: Millis) {
        if now < self.last_progress + self.cfg.retransmit_timeout_ms {
            return;
        }
        if let Some(b) = self.ring.back().map(|s| s.bytes.clone()) {
            self.counters.retransmits += 1;
            self.send_bytes(t, &b);
            self.last_progress = now;
        }
    }
}
