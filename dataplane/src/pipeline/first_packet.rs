//! A packet without a state: the inbound interface's rules, then the state (and its NAT
//! binding) it creates.

use super::*;

impl WorkerSide {
    /// A packet with no state, not to us: the rules decide, then a state is created.
    pub(super) fn new_flow(
        &mut self,
        gen: &Generation,
        dp: &Dataplane,
        buf: &mut [u8],
        p: &Packet,
    ) -> Verdict {
        let Packet {
            in_if,
            len,
            key,
            l4,
            hl,
            total,
        } = *p;
        let meta = meta_of(in_if, &key);
        // A first packet that may create a state (not a TCP segment other than the first SYN,
        // which keep state drops below): its translation is known from the route and the NAT
        // rules before the filter rules are evaluated, and so is the reply key the insert tries
        // first. In a key index larger than the cache that key's bucket is a random line of
        // memory: it starts loading now and arrives while the rules are evaluated, instead of
        // stalling the insert (-7 to -15 % a new connection, perf/RESULTS.md). The price: a
        // packet the rules then block has looked up its route (in the worker's memo).
        let early_hop = (dp.states.index_bytes() >= lookahead::LOOKAHEAD_INDEX_BYTES)
            .then(|| self.routes.next_hop(&gen.routes, key.dst))
            .flatten();
        let mut nat = None;
        if let Some(hop) = early_hop {
            if l4.seg.as_ref().is_none_or(|s| s.is_initial_syn()) {
                nat = gen
                    .ruleset
                    .outbound_nat(hop.out_if, &meta)
                    .map(|t| (t.addr, t.ports));
                if let Some((addr, ports)) = nat {
                    dp.states.prefetch_nat_reply(&key, addr, ports);
                }
            }
        }
        let (number, keep_state, limits) = match self.filter(gen, buf, p, &meta) {
            Ok(pass) => pass,
            Err(verdict) => return verdict,
        };
        let c = &*self.counters;
        if let Some(seg) = &l4.seg {
            if keep_state && !seg.is_initial_syn() {
                c.drop_tcp_no_state.inc();
                return Verdict::Drop;
            }
        }
        let hop = match self.next_hop_or_answer(gen, in_if, buf, len, key.dst) {
            Ok(hop) => hop,
            Err(verdict) => return verdict,
        };
        let c = &*self.counters;
        if keep_state {
            let new = NewState::first_packet(
                key,
                number,
                l4.seg.as_ref(),
                u32::try_from(total).unwrap_or(u32::MAX),
            );
            // The route is the one looked up above (the same memo, the same destination).
            if early_hop != Some(hop) {
                nat = gen
                    .ruleset
                    .outbound_nat(hop.out_if, &meta)
                    .map(|t| (t.addr, t.ports));
            }
            let inserted = dp
                .states
                .insert_limited(new, nat, &limits, self.now, &self.journal);
            match inserted {
                Ok(state) => {
                    c.states_created.inc();
                    if let Some(x) = translation(&state, Direction::Original) {
                        x.apply(&mut buf[ETH..ETH + total]);
                        c.nat_translated.inc();
                    }
                }
                Err(InsertError::StateLimit) => {
                    c.drop_state_limit.inc();
                    return Verdict::Drop;
                }
                Err(InsertError::PortExhausted) => {
                    c.drop_nat_exhausted.inc();
                    return Verdict::Drop;
                }
                Err(InsertError::SrcStates) => {
                    c.drop_src_states.inc();
                    return Verdict::Drop;
                }
                Err(InsertError::SrcRate) => {
                    c.drop_src_rate.inc();
                    return Verdict::Drop;
                }
                Err(InsertError::SrcNodes) => {
                    c.drop_src_nodes.inc();
                    return Verdict::Drop;
                }
                Err(_) => {
                    c.drop_state_race.inc();
                    return Verdict::Drop;
                }
            }
        }
        if let Some(id) = l4.first_frag {
            if let Err(v) =
                self.first_fragment_passes(dp, in_if, &key, id, &buf[ETH..ETH + total], hl)
            {
                return v;
            }
        }
        self.forward(gen, dp, hop.out_if, hop.addr, buf, len)
    }

    /// The rules of the inbound interface for a packet without state: `Ok((rule number,
    /// keep state, per-source limits))` when a pass rule matches; otherwise the frame's fate (dropped and counted,
    /// or answered by a reject).
    pub(super) fn filter(
        &mut self,
        gen: &Generation,
        buf: &mut [u8],
        p: &Packet,
        meta: &PacketMeta,
    ) -> Result<(u32, bool, SrcLimits), Verdict> {
        let Packet {
            in_if, len, l4, hl, ..
        } = *p;
        match gen.ruleset.evaluate(meta) {
            RuleVerdict::DefaultDeny => {
                self.counters.drop_blocked_default.inc();
                Err(Verdict::Drop)
            }
            RuleVerdict::Rule {
                action: Action::Block,
                ..
            } => {
                self.counters.drop_blocked_rule.inc();
                Err(Verdict::Drop)
            }
            RuleVerdict::Rule {
                action: Action::Reject,
                ..
            } => Err(self.reject(gen, in_if, buf, len, l4, hl)),
            RuleVerdict::Rule {
                action: Action::Pass,
                index,
                number,
                keep_state,
                ..
            } => {
                let limits = gen
                    .ruleset
                    .rules(in_if)
                    .get(index as usize)
                    .map_or(SrcLimits::NONE, |r| r.src_limits);
                Ok((number, keep_state, limits))
            }
        }
    }
}
