//! Forwarding: the route, the next hop's MAC (or the ARP queue), TTL, the egress MTU, and the
//! frame handed to the output port.

use super::*;

impl WorkerSide {
    /// The next hop to `dst`, checked before anything is rewritten: without a route the sender
    /// gets a net unreachable, with TTL 1 a time exceeded (both from the packet as it arrived).
    /// Either way the frame's fate is the `Err`, its drop counted.
    pub(super) fn next_hop_or_answer(
        &mut self,
        gen: &Generation,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
        dst: Ipv4Addr,
    ) -> Result<NextHop, Verdict> {
        let Some(hop) = self.routes.next_hop(&gen.routes, dst) else {
            self.counters.drop_no_route.inc();
            let kind = IcmpErrorKind::DstUnreachable(icmp::CODE_NET_UNREACHABLE);
            return Err(self
                .icmp_error_reply(gen, in_if, buf, len, kind)
                .unwrap_or(Verdict::Drop));
        };
        if Ipv4Packet::new_unchecked(&buf[ETH..len]).ttl() <= 1 {
            self.counters.drop_ttl_expired.inc();
            return Err(self.time_exceeded(gen, in_if, buf, len));
        }
        // The frame's length bounds the datagram's: one compare in the common case.
        let mtu = gen.interface(hop.out_if).map_or(u16::MAX, |i| i.mtu);
        if len - ETH > usize::from(mtu) {
            if let Some(v) = self.too_big(gen, in_if, buf, len, mtu) {
                return Err(v);
            }
        }
        Ok(hop)
    }

    /// Routes a packet of an existing state and sends it.
    pub(super) fn route_and_send(
        &mut self,
        gen: &Generation,
        dp: &Dataplane,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
        dst: Ipv4Addr,
    ) -> Verdict {
        match self.next_hop_or_answer(gen, in_if, buf, len, dst) {
            Ok(hop) => self.forward(gen, dp, hop.out_if, hop.addr, buf, len),
            Err(verdict) => verdict,
        }
    }

    /// Decrements the TTL, writes the Ethernet header for the next hop and sends, or queues the
    /// frame until the next hop answers ARP.
    pub(super) fn forward(
        &mut self,
        gen: &Generation,
        dp: &Dataplane,
        out_if: IfIndex,
        next_hop: Ipv4Addr,
        buf: &mut [u8],
        len: usize,
    ) -> Verdict {
        let c = &*self.counters;
        let Some(out) = gen.interface(out_if) else {
            c.drop_no_route.inc();
            return Verdict::Drop;
        };
        Ipv4Packet::new_unchecked(&mut buf[ETH..len]).decrement_ttl_incremental();
        let mut eth = EthernetFrame::new_unchecked(&mut buf[..len]);
        eth.set_src_addr(out.mac);
        // Only a datagram without DF gets here too big (`next_hop_or_answer`): fragmented. The
        // test comes after the neighbour lookup, whose one call site keeps it inlined.
        let too_big = len - ETH > usize::from(out.mtu);
        if let Some(mac) = self.memo.lookup(&dp.neigh, out_if, next_hop) {
            eth.set_dst_addr(mac);
            if too_big {
                return self.fragment_out(out_if, buf, len, out.mtu);
            }
            c.forwarded.inc();
            return Verdict::Tx { out_if, len };
        }
        self.wait_for_arp(gen, out_if, next_hop, &buf[..len], too_big)
    }

    /// The next hop's MAC is not known: the frame waits for ARP (and the first one asks), or
    /// is dropped. Out of the forwarded frame's line: a known neighbour is the rule, and this
    /// tail, inlined into [`WorkerSide::forward`], cost every forwarded frame 2 instructions.
    #[cold]
    #[inline(never)]
    fn wait_for_arp(
        &mut self,
        gen: &Generation,
        out_if: IfIndex,
        next_hop: Ipv4Addr,
        frame: &[u8],
        too_big: bool,
    ) -> Verdict {
        let c = &*self.counters;
        if too_big {
            // Queued for ARP it would be released whole, too big: the next datagrams, once the
            // neighbour is known (other traffic resolves it), are fragmented.
            c.drop_too_big.inc();
            return Verdict::Drop;
        }
        // Priority for a gateway: a route's next hop, not the packet's destination. Whatever a
        // host sends, on-link destinations (a scan of dead addresses, or replies to spoofed
        // dead sources) take one slot each and gateways only their few.
        let dst = Ipv4Packet::new_unchecked(&frame[ETH..]).dst_addr();
        let priority = next_hop != dst;
        match self
            .pending
            .enqueue(out_if, next_hop, frame, self.now, priority)
        {
            EnqueueOutcome::Queued { send_request } => {
                c.neigh_queued.inc();
                if send_request {
                    send_arp_request(gen, &mut self.emit, c, out_if, next_hop);
                }
            }
            EnqueueOutcome::QueueFull | EnqueueOutcome::TooManyNextHops => {
                c.drop_neigh_queue_full.inc()
            }
            EnqueueOutcome::Failed => c.drop_neigh_unreachable.inc(),
            EnqueueOutcome::PoolExhausted | EnqueueOutcome::TooLarge => {
                c.drop_neigh_pool_exhausted.inc()
            }
        }
        Verdict::Drop
    }
}
