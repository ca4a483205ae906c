//! The first room of the pipeline: the Ethernet frame (for us? which ethertype?) and ARP
//! (answers for our addresses and held VIPs, learning, the pending queues).

use super::*;
use crate::neigh::Learned;

impl WorkerSide {
    pub(super) fn process(
        &mut self,
        section: Option<&ReadSection>,
        gen: &Generation,
        dp: &Dataplane,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
    ) -> Verdict {
        let c = &self.counters;
        let Some(iface) = gen.interface(in_if) else {
            c.drop_l2_not_for_us.inc();
            return Verdict::Drop;
        };
        let Ok(eth) = EthernetFrame::new_checked(&buf[..len]) else {
            c.drop_eth_malformed.inc();
            return Verdict::Drop;
        };
        let dst = eth.dst_addr();
        // No station sends from a group address (IEEE 802; bridges drop such frames): anything
        // the box answered (an ARP reply, an echo reply, an ICMP error) would go to every host.
        if eth.src_addr().is_multicast() {
            c.drop_eth_malformed.inc();
            return Verdict::Drop;
        }
        if dst != iface.mac
            && !dst.is_broadcast()
            && dst != CARP_GROUP_MAC
            && !holds_vmac(gen, dp, in_if, dst)
        {
            c.drop_l2_not_for_us.inc();
            return Verdict::Drop;
        }
        match eth.ethertype() {
            // A frame to a held virtual MAC comes through a VIP this box holds: after a takeover,
            // the states it meets may lag (see StateTable::track_tcp_on_takeover).
            EtherType::Ipv4 => {
                let via_vip = dst.carp_vhid().is_some();
                self.ipv4(section, gen, dp, in_if, buf, len, via_vip)
            }
            EtherType::Arp => self.arp(gen, dp, in_if, buf, len),
            EtherType::Vlan => {
                c.drop_vlan.inc();
                Verdict::Drop
            }
            _ => {
                c.drop_ethertype.inc();
                Verdict::Drop
            }
        }
    }

    pub(super) fn arp(
        &mut self,
        gen: &Generation,
        dp: &Dataplane,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
    ) -> Verdict {
        let c = &self.counters;
        let repr = match ArpPacket::new_checked(&buf[ETH..len]).and_then(|p| ArpRepr::parse(&p)) {
            Ok(r) => r,
            Err(_) => {
                c.drop_arp_malformed.inc();
                return Verdict::Drop;
            }
        };
        // No host has a multicast or broadcast hardware address: an answer to one would go to
        // every host on the link (FreeBSD's in_arpinput drops these). The frame's own source
        // was checked; this is the one inside the ARP packet.
        if repr.source_mac.is_multicast() {
            c.drop_arp_malformed.inc();
            return Verdict::Drop;
        }
        let iface = &gen.interfaces[usize::from(in_if)];
        // A gratuitous ARP (sender IP == target IP) announces, it does not ask (RFC 5227): never
        // answer one. A CARP peer taking a VIP over announces it; a master about to step down
        // that answered would pull the switch's entry for the virtual MAC back to itself.
        let announcement = repr.source_ip == repr.target_ip;
        let ours = if announcement {
            None
        } else {
            our_mac_for(gen, dp, in_if, repr.target_ip)
        };
        // Learn from what is addressed to us, and refresh what we already know (RFC 826's merge
        // flag): a gratuitous ARP moves a known neighbour, a stranger's chatter adds nothing.
        // Our own addresses are never neighbours (a peer's announcement of a shared VIP). The
        // learning is the condition's last step; a full cache is counted.
        let on_link = iface
            .addr
            .is_some_and(|(a, l)| same_net(a, repr.source_ip, l));
        if on_link
            && !is_configured_addr(gen, repr.source_ip)
            && (ours.is_some() || dp.neigh.lookup(in_if, repr.source_ip).is_some())
            && dp
                .neigh
                .learn(in_if, repr.source_ip, repr.source_mac, self.now)
                == Learned::Full
        {
            c.neigh_table_full.inc();
        }
        match (repr.operation, ours) {
            (ArpOperation::Request, Some(mac)) => {
                let reply = ArpRepr {
                    operation: ArpOperation::Reply,
                    source_mac: mac,
                    source_ip: repr.target_ip,
                    target_mac: repr.source_mac,
                    target_ip: repr.source_ip,
                };
                let n = arp::emit_arp_frame(buf, repr.source_mac, mac, &reply);
                c.arp_replies.inc();
                c.replied.inc();
                Verdict::Tx {
                    out_if: in_if,
                    len: n,
                }
            }
            _ => {
                c.arp_ignored.inc();
                Verdict::Drop
            }
        }
    }
}
