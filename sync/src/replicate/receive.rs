//! Receiving: each datagram checked (TTL, source, authentication, replay), its records applied
//! in sequence order, and the merge rules. See the parent's doc, *Merge rules*.

use super::*;

impl Replicator {
    // ---- receiving -----------------------------------------------------------------------

    pub(super) fn receive(&mut self, t: &mut dyn Transport, now: Millis) {
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

    pub(super) fn reject(&mut self, r: Reject) {
        let c = &mut self.counters;
        match r {
            Reject::Short => c.short += 1,
            Reject::BadVersion => c.bad_version += 1,
            Reject::BadLength => c.bad_length += 1,
            Reject::BadMac => c.bad_mac += 1,
            Reject::Malformed => c.malformed += 1,
        }
    }

    pub(super) fn datagram(
        &mut self,
        t: &mut dyn Transport,
        d: &[u8],
        src: Ipv4Addr,
        ttl: u8,
        now: Millis,
    ) {
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
        self.last_rx = Some(now);
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
        self.request_early(t, now, quiet_bulk, retry_now);
    }

    /// Apply, in sequence order, the held datagrams of `host` up to its `cum`.
    pub(super) fn deliver(&mut self, t: &mut dyn Transport, host: u32, now: Millis) {
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

    pub(super) fn record(&mut self, t: &mut dyn Transport, host: u32, rec: Record, now: Millis) {
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
                        self.peers.entry(host).or_default().incoming.start();
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
    pub(super) fn keep_lease(&mut self, r: LeaseRecord) -> bool {
        match self.leases.get(&r.ip) {
            Some(old) if old.updated_ms >= r.updated_ms => false,
            _ => {
                self.leases.insert(r.ip, r);
                true
            }
        }
    }

    pub(super) fn heard(&mut self, host: u32, id: SyncId) {
        if { id.creator } != host {
            return;
        }
        if let Some(p) = self.peers.get_mut(&host) {
            p.incoming.heard(id);
        }
    }

    /// Remove `s` because the peer says so: not journaled, so never sent back.
    pub(super) fn remove_on_peer_word(&mut self, s: &Arc<State>) {
        if self.table.remove(s, Origin::Peer) {
            self.counters.applied_deletes += 1;
        }
    }

    pub(super) fn merge(
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

    pub(super) fn apply_ins(&mut self, r: &InsRecord, now: Millis) {
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
