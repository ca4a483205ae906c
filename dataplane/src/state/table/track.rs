//! A state's tracking on the fast path and from the peer: TCP windows and flags per direction
//! (pf's sequence checks), packet and byte counts, ICMP quotes checked against the window, and
//! the merge of a peer's newer copy (each side only forward).

use super::*;

/// The catch-up of [`State::track_tcp_on_takeover`], out of the established packet's line (it
/// is for a takeover's first segments only): the windows move for `seg`, and stay moved only if
/// `seg` then tracks. A segment whose sequence number the check eases (no data, no FIN) moves
/// them only within [`CATCH_UP_AFTER_SYNC`] of the state's last update (in `word`, the expiry
/// word).
#[cold]
#[inline(never)]
fn catch_up_and_track(
    src: &mut TcpPeer,
    dst: &mut TcpPeer,
    seg: &TcpSegment,
    dir: Direction,
    word: u64,
    now: Millis,
) -> Result<Option<TimeoutClass>, TrackError> {
    let (last, _, _) = unpack_expire(word);
    let eased = seg.payload_len == 0 && seg.flags & tcp::flags::FIN == 0;
    if eased && now.saturating_sub(last) > CATCH_UP_AFTER_SYNC {
        return Err(TrackError::BadWindow);
    }
    let before = (*src, *dst);
    if !tcp::catch_up(src, dst, seg, dir) {
        return Err(TrackError::BadWindow);
    }
    let tracked = tcp::track(src, dst, seg, dir);
    if tracked.is_err() {
        (*src, *dst) = before;
    }
    tracked
}

impl State {
    /// Track a TCP segment of `bytes` bytes going `dir` at `now` (pf's `pf_tcp_track_full`):
    /// on success the counters and, unless pf's loose rule accepted it, the expiry are updated.
    /// On [`TrackError::PortReuse`] the state is marked [`TimeoutClass::Purge`]: the caller
    /// removes it (outside any [`StateTable::with_state`] closure) and may create a new one.
    #[inline]
    pub fn track_tcp(
        &self,
        dir: Direction,
        seg: &TcpSegment,
        bytes: u32,
        now: Millis,
    ) -> Result<(), TrackError> {
        self.track_tcp_inner(dir, seg, bytes, now, false)
    }

    /// [`track_tcp`](Self::track_tcp) for a segment that reached this box through a virtual IP
    /// it has taken over: if the state came from the peer and has not been tracked here yet in
    /// this direction, a segment ahead of its windows moves them forward (`tcp::catch_up`)
    /// instead of being refused. Only for such segments: a segment sent to the box's own
    /// address cannot loosen a state, so a host next to a backup cannot use it to push a
    /// connection's windows forward (and, through sync, the master's).
    ///
    /// More bounds keep a spoofed segment, sent to the new master, from moving a state's
    /// windows out of the real connection's reach (which would stall it): only a segment with
    /// ACK catches up; the windows move only if the segment then tracks strictly (a data
    /// segment's guess right in one number and wrong in the other leaves nothing behind, so
    /// both must be guessed at once); a direction catches up once (a landed guess cannot be
    /// stepped on); and a segment without data, whose sequence number the check eases as pf
    /// does (so that only its acknowledgement number must fit), moves them only within
    /// [`CATCH_UP_AFTER_SYNC`] of the state's last update. A connection idle since the takeover
    /// thus still catches up on its first data segment, however late.
    #[inline]
    pub fn track_tcp_on_takeover(
        &self,
        dir: Direction,
        seg: &TcpSegment,
        bytes: u32,
        now: Millis,
    ) -> Result<(), TrackError> {
        self.track_tcp_inner(dir, seg, bytes, now, true)
    }

    // Inlined into both callers: it is the established packet's hot path, and the flag it
    // takes folds away for the common caller.
    #[inline(always)]
    pub(super) fn track_tcp_inner(
        &self,
        dir: Direction,
        seg: &TcpSegment,
        bytes: u32,
        now: Millis,
        may_catch_up: bool,
    ) -> Result<(), TrackError> {
        let mut p = self.lock();
        let Peers { src, dst, .. } = &mut *p;
        let from_peer = match dir {
            Direction::Original => FROM_PEER_ORIGINAL,
            Direction::Reply => FROM_PEER_REPLY,
        };
        let mut tracked = tcp::track(src, dst, seg, dir);
        let word = self.expire.load(Ordering::Relaxed);
        let lagging = word & from_peer != 0;
        if may_catch_up && lagging && tracked == Err(TrackError::BadWindow) {
            tracked = catch_up_and_track(src, dst, seg, dir, word, now);
            if tracked.is_ok() {
                // One catch-up a direction: from here the windows are this box's own. A
                // spoofed segment that guessed both numbers once cannot then step them on.
                self.expire.fetch_and(!from_peer, Ordering::AcqRel);
            }
        } else if lagging && matches!(tracked, Ok(Some(_))) {
            // Tracked strictly: this direction's windows are this box's own from now on.
            self.expire.fetch_and(!from_peer, Ordering::AcqRel);
        }
        match tracked {
            Ok(refresh) => {
                p.packets[dir.index()] += 1;
                p.bytes[dir.index()] += u64::from(bytes);
                if let Some(class) = refresh {
                    self.set_expire(now, class);
                }
                Ok(())
            }
            Err(TrackError::PortReuse) => {
                self.set_expire(now, TimeoutClass::Purge);
                Err(TrackError::PortReuse)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether an ICMP error quoting a TCP segment with sequence number `seq`, sent in
    /// direction `quoted_dir`, fits this state's windows ([`tcp::icmp_quote_fits`]). Reads
    /// only: an error never moves a window.
    pub fn icmp_quote_fits(&self, quoted_dir: Direction, seq: u32) -> bool {
        let p = self.peers.read();
        tcp::icmp_quote_fits(&p.src, &p.dst, quoted_dir, seq)
    }

    /// Account a UDP, ICMP or other-protocol packet of `bytes` bytes going `dir` at `now`.
    pub fn track_other(&self, dir: Direction, bytes: u32, now: Millis) {
        let mut p = self.lock();
        let Peers { src, dst, .. } = &mut *p;
        let class = tcp::track_stateless(self.proto(), src, dst, dir);
        p.packets[dir.index()] += 1;
        p.bytes[dir.index()] += u64::from(bytes);
        self.set_expire(now, class);
    }

    /// A copy of the tracking, taken without blocking the workers that track the state.
    pub fn tracking(&self) -> Tracking {
        let (p, (last, timeout)) = self.peers.read_with(|| self.expire());
        Tracking {
            src: p.src,
            dst: p.dst,
            packets: p.packets,
            bytes: p.bytes,
            last,
            timeout,
        }
    }

    /// Change the tracking under the state's lock (state sync's merge of a peer's update).
    pub fn modify<R>(&self, f: impl FnOnce(&mut Tracking) -> R) -> R {
        let mut p = self.lock();
        let (last, timeout) = self.expire();
        let mut t = Tracking {
            src: p.src,
            dst: p.dst,
            packets: p.packets,
            bytes: p.bytes,
            last,
            timeout,
        };
        let r = f(&mut t);
        *p = Peers {
            src: t.src,
            dst: t.dst,
            packets: t.packets,
            bytes: t.bytes,
        };
        self.set_expire(t.last, t.timeout);
        r
    }

    /// Merge a peer's update of this state (pfsync's UPD/UPD_C): each side is applied only if
    /// it does not move backwards ([`tcp::merge_side`]); if at least one side was applied, the
    /// timeout becomes `timeout` from `now` (pf re-bases the expiry on reception). Returns the
    /// number of stale sides (0 to 2): with any, the caller counts it and pushes its own copy
    /// back to the peer, as pfsync does.
    pub fn merge_remote(
        &self,
        src: &TcpPeer,
        dst: &TcpPeer,
        timeout: TimeoutClass,
        now: Millis,
    ) -> u8 {
        let tcp = self.proto() == PROTO_TCP;
        let mut p = self.lock();
        let mut stale = 0;
        if !tcp::merge_side(&mut p.src, src, tcp, true) {
            stale += 1;
        }
        if !tcp::merge_side(&mut p.dst, dst, tcp, false) {
            stale += 1;
        }
        if stale < 2 {
            self.set_expire(now, timeout);
            self.expire.fetch_or(FROM_PEER, Ordering::AcqRel);
        }
        stale
    }
}
