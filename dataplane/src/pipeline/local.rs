//! Packets for the box itself: echo requests answered, CARP adverts and DHCP requests handed
//! to their threads, the rest answered or dropped.

use super::*;

impl WorkerSide {
    /// A packet to one of our addresses with no state: the rules of its interface apply, then
    /// the box answers what it serves (ICMP echo) and hands CARP to the control plane.
    pub(super) fn local(
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
        let c = &*self.counters;
        if key.proto == proto::CARP && key.dst == CARP_GROUP {
            // CARP is authenticated by its HMAC in the control plane, not by rules (pfSense
            // passes it automatically too). The cheapest check first, here: an advert that did
            // not come from the link itself (TTL 255) never takes a place on the slow path.
            if Ipv4Packet::new_unchecked(&buf[ETH..ETH + total]).ttl() != 255 {
                c.drop_carp_ttl.inc();
                return Verdict::Drop;
            }
            // Then length, VHID and budget (carp_filter), so that junk cannot push the peer's
            // adverts out of the shared queue.
            let payload = buf.get(ETH + hl..ETH + total).unwrap_or_default();
            let peer = match self
                .carp
                .admit(gen, &dp.carp_peers, in_if, key.src, payload, self.now)
            {
                CarpVerdict::Peer => true,
                CarpVerdict::Other => false,
                CarpVerdict::Malformed => {
                    c.drop_carp_malformed.inc();
                    return Verdict::Drop;
                }
                CarpVerdict::UnknownVhid => {
                    c.drop_carp_vhid.inc();
                    return Verdict::Drop;
                }
                CarpVerdict::OverBudget => {
                    c.drop_carp_budget.inc();
                    return Verdict::Drop;
                }
            };
            // The other half of the queue is the peer's.
            if let Some(tx) = self.to_control.as_ref() {
                if !peer && tx.capacity().is_some_and(|cap| tx.len() >= cap / 2) {
                    c.drop_carp_budget.inc();
                    return Verdict::Drop;
                }
            }
            if hand_off(self.to_control.as_ref(), in_if, &buf[..len]) {
                c.to_control.inc();
            } else {
                c.drop_local_unhandled.inc();
            }
            return Verdict::Drop;
        }
        if key.proto == proto::UDP
            && key.dport == DHCP_SERVER_PORT
            && gen.interface(in_if).is_some_and(|i| i.dhcp)
        {
            // Served by the DHCP thread, which checks the message and whether this box is the
            // VIP's master; here only a bounded copy, so a flood costs the fast path nothing more.
            if hand_off(self.to_dhcp.as_ref(), in_if, &buf[..len]) {
                c.to_dhcp.inc();
            } else {
                c.drop_dhcp_queue_full.inc();
            }
            return Verdict::Drop;
        }
        if let Err(verdict) = self.filter(gen, buf, p, &meta_of(in_if, &key)) {
            return verdict;
        }
        let c = &*self.counters;
        // The box reassembles nothing for itself (CARP's control plane refuses fragments too).
        if l4.first_frag.is_some() {
            c.drop_fragment.inc();
            return Verdict::Drop;
        }
        // No echo reply to a broadcast or multicast (FreeBSD's icmp.bmcastecho=0): the reply
        // would be sourced from that address, and the box would be a smurf amplifier.
        if l4.icmp == IcmpKind::EchoRequest
            && !key.dst.is_broadcast()
            && !key.dst.is_multicast()
            && !is_subnet_broadcast(gen, key.dst)
        {
            let ip = &mut buf[ETH..ETH + total];
            let mut icmp = IcmpPacket::new_unchecked(&mut ip[hl..]);
            icmp.echo_request_to_reply();
            let mut ipp = Ipv4Packet::new_unchecked(&mut *ip);
            ipp.set_src_addr(key.dst);
            ipp.set_dst_addr(key.src);
            ipp.set_ttl(OWN_TTL);
            ipp.fill_checksum();
            // From the MAC that owns the address asked (the virtual MAC for a held CARP VIP),
            // whatever the request was sent to (a broadcast frame must not become the source).
            let peer = EthernetFrame::new_unchecked(&buf[..]).src_addr();
            let own = our_mac_for(gen, dp, in_if, key.dst)
                .unwrap_or(gen.interfaces[usize::from(in_if)].mac);
            let mut eth = EthernetFrame::new_unchecked(&mut buf[..len]);
            eth.set_dst_addr(peer);
            eth.set_src_addr(own);
            c.icmp_echo_replies.inc();
            c.replied.inc();
            return Verdict::Tx { out_if: in_if, len };
        }
        c.drop_local_unhandled.inc();
        Verdict::Drop
    }
}

/// A copy of `frame` to a slow-path thread's bounded queue; false when there is none or it is
/// full (the frame is then the caller's to count and drop).
fn hand_off(tx: Option<&Sender<ControlFrame>>, in_if: IfIndex, frame: &[u8]) -> bool {
    tx.is_some_and(|tx| {
        tx.try_send(ControlFrame {
            in_if,
            bytes: frame.to_vec(),
        })
        .is_ok()
    })
}
