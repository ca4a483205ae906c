//! Creating states: a first packet's (with the table's and the per-source limits, evicting
//! under pressure) and the peer's (a synced insert, never journaled back).

use super::*;

impl StateTable {
    /// Insert a local state (new id, journaled into `by`'s queue). `new.wire` is used as is.
    pub fn insert(
        &self,
        new: NewState,
        now: Millis,
        by: &Producer,
    ) -> Result<Arc<State>, InsertError> {
        let id = self.next_sync_id();
        self.insert_probing(
            Birth::local(id, &new, now, by, false),
            std::iter::once(new.wire),
            InsertError::Exists,
        )
    }

    /// Insert a local state created by a rule with per-source limits (pf's `max-src-states`,
    /// `max-src-conn-rate`, see [`super::src_nodes`]), translated by `nat` (address, port
    /// policy) as [`StateTable::insert_nat`] does, or as [`StateTable::insert`] does without.
    /// Without limits this is exactly `insert` or `insert_nat`: the source nodes are not
    /// touched. With limits, the source's node is counted first and the state carries the mark
    /// that gives the count back when it is removed; a failed insert gives it back at once.
    pub fn insert_limited(
        &self,
        new: NewState,
        nat: Option<(std::net::Ipv4Addr, super::super::PortPolicy)>,
        limits: &SrcLimits,
        now: Millis,
        by: &Producer,
    ) -> Result<Arc<State>, InsertError> {
        self.insert_limited_in(None, new, nat, limits, now, by)
    }

    /// [`StateTable::insert_limited`] under a worker's read section (its epoch pin, no pin of
    /// the insert's own: see [`StateTable::with_state_in`]).
    pub fn insert_limited_in(
        &self,
        section: Option<&ReadSection>,
        new: NewState,
        nat: Option<(std::net::Ipv4Addr, super::super::PortPolicy)>,
        limits: &SrcLimits,
        now: Millis,
        by: &Producer,
    ) -> Result<Arc<State>, InsertError> {
        let tracked = limits.is_limited();
        if tracked {
            // A full table refuses before the source's rate is charged for a state it cannot
            // have (racy, but the insert checks again).
            if self.len() >= self.limit() as usize {
                return Err(InsertError::StateLimit);
            }
            self.src_nodes
                .acquire(new.rule, new.stack.src, limits, now)
                .map_err(|r| match r {
                    SrcRefusal::States => InsertError::SrcStates,
                    SrcRefusal::Rate => InsertError::SrcRate,
                    SrcRefusal::Nodes => InsertError::SrcNodes,
                })?;
        }
        match nat {
            Some((addr, policy)) => {
                self.insert_nat_inner(section, new, addr, policy, now, by, tracked)
            }
            None => {
                let id = self.next_sync_id();
                self.insert_probing(
                    Birth::local(id, &new, now, by, tracked).in_section(section),
                    std::iter::once(new.wire),
                    InsertError::Exists,
                )
            }
        }
    }

    /// The source nodes of the rules with per-source limits.
    pub fn src_nodes(&self) -> &SrcNodes {
        &self.src_nodes
    }

    /// Insert a state learnt from the peer, under its own id, not journaled (pfsync marks them
    /// NOSYNC so they are not sent back). `created` and `last` are already rebased on the local
    /// clock by the caller.
    pub fn insert_synced(
        &self,
        id: SyncId,
        new: NewState,
        created: Millis,
        last: Millis,
    ) -> Result<Arc<State>, InsertError> {
        let state = self.insert_probing(
            Birth {
                id,
                new: &new,
                created,
                last,
                origin: Origin::Peer,
                src_tracked: false,
                section: None,
            },
            std::iter::once(new.wire),
            InsertError::Exists,
        )?;
        state.mark_from_peer();
        Ok(state)
    }

    pub(super) fn build(&self, birth: &Birth<'_>, wire: FlowKey) -> State {
        let Birth {
            id,
            new,
            created,
            last,
            src_tracked,
            ..
        } = *birth;
        let counted = u64::from(new.bytes != 0);
        let tracked = if src_tracked { SRC_TRACKED } else { 0 };
        State {
            id,
            created_s: u32::try_from(created / 1000).unwrap_or(u32::MAX),
            rule: new.rule,
            stack: new.stack,
            reply: wire.reversed(),
            expire: AtomicU64::new(pack_expire(last, new.timeout) | tracked),
            peers: SeqLock::new(Peers {
                src: new.src,
                dst: new.dst,
                packets: [counted, 0],
                bytes: [u64::from(new.bytes), 0],
            }),
        }
    }

    #[inline]
    pub(super) fn id_shard(
        &self,
        id: &SyncId,
    ) -> std::sync::MutexGuard<'_, HashSet<ById, ahash::RandomState>> {
        // Fibonacci hashing of id ^ creator: sequential ids spread over all shards.
        let mix = ({ id.id } ^ (u64::from(id.creator) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let idx = (mix >> 32) as usize % ID_SHARDS;
        self.ids[idx].lock().unwrap_or_else(PoisonError::into_inner)
    }
}
