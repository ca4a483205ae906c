//! A packet without a state: the inbound interface's rules, then the state (and its NAT
//! binding) it creates.

use super::*;
use crate::state::PortPolicy;

impl WorkerSide {
    /// A packet with no state, not to us: the rules decide, then a state is created.
    pub(super) fn new_flow(
        &mut self,
        section: Option<&ReadSection>,
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
        // A first packet that may create a state (not a TCP segment other than the first SYN):
        // its translation is known from the route and the NAT rules before the filter rules are
        // evaluated, and so is the reply key the insert tries first. In a key index larger than
        // the cache that key's bucket is a random line of memory: it starts loading now and
        // arrives while the rules are evaluated, instead of stalling the insert (perf/RESULTS.md,
        // issue 14 session 8). Only with a route the worker's memo holds, read without a change:
        // a packet the rules then block leaves the memo as it was. Its price is then the NAT
        // rules' evaluation, two hashes and a prefetch.
        let early = self.early_nat(gen, dp, &key, &l4, &meta);
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
        // A query's reply answers a request whose state it would have found: alone, it makes
        // no state (Linux's conntrack calls it invalid), or its state would carry requests from
        // the other side in as replies. ICMP that is neither a query nor an error has no id to
        // key a flow by (nor one for NAT to rewrite): no state either.
        if keep_state && matches!(l4.icmp, IcmpKind::Reply | IcmpKind::Other) {
            c.drop_icmp_no_state.inc();
            return Verdict::Drop;
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
            // The early decision holds for the same route (the same generation, the same memo).
            let nat = match early {
                Some((h, nat)) if h == hop => nat,
                _ => outbound_nat(gen, hop, &meta),
            };
            let inserted =
                dp.states
                    .insert_limited_in(section, new, nat, &limits, self.now, &self.journal);
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

    /// The route (from the memo only) and the translation of a first packet that may create a
    /// state, its reply key's bucket requested: `None` in an index small enough for the cache,
    /// for a TCP segment other than an initial SYN (the rules' keep state drops it), or with
    /// the route not in the memo.
    fn early_nat(
        &self,
        gen: &Generation,
        dp: &Dataplane,
        key: &FlowKey,
        l4: &L4,
        meta: &PacketMeta,
    ) -> Option<(NextHop, Option<(Ipv4Addr, PortPolicy)>)> {
        if dp.states.index_bytes() < lookahead::LOOKAHEAD_INDEX_BYTES
            || l4.seg.as_ref().is_some_and(|s| !s.is_initial_syn())
        {
            return None;
        }
        let hop = self.routes.peek(&gen.routes, key.dst)?;
        let nat = outbound_nat(gen, hop, meta);
        if let Some((addr, ports)) = nat {
            dp.states.prefetch_nat_reply(key, addr, ports, self.now);
        }
        Some((hop, nat))
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
            in_if,
            len,
            l4,
            hl,
            total,
            ..
        } = *p;
        // The rule's bytes are those of the packets it decided (a pass rule's first packets:
        // the states' own traffic is counted on the states).
        let bytes = u32::try_from(total).unwrap_or(u32::MAX);
        match gen.ruleset.evaluate_sized(meta, bytes) {
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

/// The translation NAT rules give a new flow leaving by `hop`: address and port policy.
fn outbound_nat(
    gen: &Generation,
    hop: NextHop,
    meta: &PacketMeta,
) -> Option<(Ipv4Addr, PortPolicy)> {
    gen.ruleset
        .outbound_nat(hop.out_if, meta)
        .map(|t| (t.addr, t.ports))
}
