//! ICMP errors: those received (matched to the state they quote, translated back) and those
//! the box sends (unreachable, time exceeded, RSTs for reject rules), rate limited.

use super::*;

impl WorkerSide {
    /// An ICMP error (unreachable, time exceeded...) about a packet of one of our states: it
    /// follows that state, translated through the quoted packet when the state is NATed.
    pub(super) fn icmp_error(
        &mut self,
        gen: &Generation,
        dp: &Dataplane,
        buf: &mut [u8],
        p: &Packet,
    ) -> Verdict {
        let Packet {
            in_if,
            len,
            key: outer,
            hl,
            total,
            ..
        } = *p;
        let c = &*self.counters;
        let ip = &mut buf[ETH..ETH + total];
        let Ok(quoted) = QuotedPacket::parse(IcmpPacket::new_unchecked(&ip[hl..]).data()) else {
            c.drop_l4_malformed.inc();
            return Verdict::Drop;
        };
        let inner = FlowKey::new(
            u8::from(quoted.protocol),
            quoted.src,
            quoted.src_port,
            quoted.dst,
            quoted.dst_port,
        );
        // The quoted packet went the other way: its reversed key is this error's own direction.
        let Some((state, dir)) = dp.states.lookup(&inner.reversed()) else {
            c.drop_icmp_error_no_state.inc();
            return Verdict::Drop;
        };
        // An error goes back to the sender of the packet it quotes: anything else is forged
        // (it would carry an error about one flow to another host).
        if outer.dst != inner.src {
            c.drop_icmp_error_no_state.inc();
            return Verdict::Drop;
        }
        // A TCP quote must carry a sequence number inside the window of the side that sent it
        // (pf, RFC 5927): addresses and ports alone are public, and a forged error would reset
        // the connection or shrink its MSS. Only ICMP errors pay for this check.
        if let Some(seq) = quoted.tcp_seq {
            if !state.icmp_quote_fits(dir.opposite(), seq.0) {
                c.drop_icmp_error_bad_seq.inc();
                return Verdict::Drop;
            }
        }
        let mut new_outer_dst = outer.dst;
        if let Some(x) = translation(&state, dir) {
            // The outer packet is translated like any packet of the flow; the quoted packet,
            // which went the opposite way, on its opposite side. Both checksums are computed
            // again: the outer header's and the ICMP message's (it covers the quote).
            let mut outer = Ipv4Packet::new_unchecked(&mut *ip);
            let mut icmp = IcmpPacket::new_unchecked(outer.payload_mut());
            x.opposite().apply(icmp.data_mut());
            icmp.fill_checksum();
            match x.side {
                Side::Src => outer.set_src_addr(x.addr),
                Side::Dst => {
                    outer.set_dst_addr(x.addr);
                    new_outer_dst = x.addr;
                }
            }
            outer.fill_checksum();
            c.nat_translated.inc();
        }
        c.state_hits.inc();
        self.route_and_send(gen, dp, in_if, buf, len, new_outer_dst)
    }

    /// A reject rule: TCP gets a RST, anything else an ICMP port unreachable.
    pub(super) fn reject(
        &mut self,
        gen: &Generation,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
        l4: L4,
        hl: usize,
    ) -> Verdict {
        let Some(seg) = l4.seg else {
            let kind = IcmpErrorKind::DstUnreachable(icmp::CODE_PORT_UNREACHABLE);
            return match self.icmp_error_reply(gen, in_if, buf, len, kind) {
                Some(v) => {
                    self.counters.replied.inc();
                    v
                }
                None => {
                    self.counters.drop_blocked_rule.inc();
                    Verdict::Drop
                }
            };
        };
        let c = &*self.counters;
        let Some(iface) = gen.interface(in_if) else {
            c.drop_blocked_rule.inc();
            return Verdict::Drop;
        };
        // No RST for a RST (RFC 793), nor where RFC 1812 forbids an ICMP error (to or from a
        // broadcast, multicast, unspecified or loopback address, or a frame the link
        // broadcast): a reset sent there would answer a spoofed source or many hosts at once.
        let link_broadcast = EthernetFrame::new_unchecked(&buf[..len])
            .dst_addr()
            .is_multicast();
        let (src, dst, rst, allowed) = {
            let ip = Ipv4Packet::new_unchecked(&buf[ETH..len]);
            let tcp = TcpPacket::new_unchecked(ip.payload());
            let _ = hl;
            (
                ip.src_addr(),
                ip.dst_addr(),
                TcpRepr::reset_for(&tcp),
                icmp::may_send_error(&ip),
            )
        };
        if seg.flags & TcpFlags::RST.0 != 0 || !allowed || link_broadcast {
            c.drop_blocked_rule.inc();
            return Verdict::Drop;
        }
        // The ICMP errors' bucket: a flood at a reject rule gets as many answers as a flood at
        // a closed route (FreeBSD's icmplim covers both, as `BANDLIM_RST_CLOSEDPORT`).
        if !self.icmp.take(self.now) {
            c.drop_blocked_rule.inc();
            c.tcp_rsts_ratelimited.inc();
            return Verdict::Drop;
        }
        let ipr = Ipv4Repr {
            src: dst,
            dst: src,
            protocol: IpProtocol::Tcp,
            payload_len: rst.buffer_len(),
            ttl: OWN_TTL,
            dscp: 0,
        };
        let ip_end = ETH + ipr.buffer_len();
        ipr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[ETH..ip_end]));
        rst.emit(
            &mut TcpPacket::new_unchecked(&mut buf[ETH + ipv4::HEADER_LEN..ip_end]),
            dst,
            src,
        );
        let n = pad_frame(buf, ip_end);
        let peer = EthernetFrame::new_unchecked(&buf[..]).src_addr();
        let mut eth = EthernetFrame::new_unchecked(&mut buf[..n]);
        eth.set_dst_addr(peer);
        eth.set_src_addr(iface.mac);
        c.replied.inc();
        c.tcp_rsts_sent.inc();
        Verdict::Tx {
            out_if: in_if,
            len: n,
        }
    }

    pub(super) fn time_exceeded(
        &mut self,
        gen: &Generation,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
    ) -> Verdict {
        let r = self.icmp_error_reply(
            gen,
            in_if,
            buf,
            len,
            IcmpErrorKind::TimeExceeded(icmp::CODE_TTL_EXCEEDED_IN_TRANSIT),
        );
        r.unwrap_or(Verdict::Drop)
    }

    /// Answers the frame in `buf` with an ICMP error from the receiving interface's address,
    /// in place. None when RFC 1812 forbids an error here or the rate limit says no; the caller
    /// has already counted the drop that caused it.
    pub(super) fn icmp_error_reply(
        &mut self,
        gen: &Generation,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
        kind: IcmpErrorKind,
    ) -> Option<Verdict> {
        let iface = gen.interface(in_if)?;
        let (our_ip, _) = iface.addr?;
        let (peer_mac, link_broadcast) = {
            let eth = EthernetFrame::new_unchecked(&buf[..len]);
            (eth.src_addr(), eth.dst_addr().is_multicast())
        };
        let (invoking_src, allowed, total) = {
            let ip = Ipv4Packet::new_unchecked(&buf[ETH..len]);
            (
                ip.src_addr(),
                icmp::may_send_error(&ip),
                usize::from(ip.total_len()),
            )
        };
        if !allowed || link_broadcast {
            return None;
        }
        if !self.icmp.take(self.now) {
            self.counters.icmp_errors_ratelimited.inc();
            return None;
        }
        // The quoted bytes move behind the new headers: copy them out first (they overlap).
        let mut quote = [0u8; 128];
        let qn = total.min(len - ETH).min(quote.len());
        quote[..qn].copy_from_slice(&buf[ETH..ETH + qn]);
        let icmp_off = ETH + ipv4::HEADER_LEN;
        let icmp_len = icmp::emit_icmp_error(&mut buf[icmp_off..], kind, &quote[..qn]);
        let ipr = Ipv4Repr {
            src: our_ip,
            dst: invoking_src,
            protocol: IpProtocol::Icmp,
            payload_len: icmp_len,
            ttl: OWN_TTL,
            dscp: 0,
        };
        ipr.emit(&mut Ipv4Packet::new_unchecked(
            &mut buf[ETH..icmp_off + icmp_len],
        ));
        let n = pad_frame(buf, icmp_off + icmp_len);
        let mut eth = EthernetFrame::new_unchecked(&mut buf[..n]);
        eth.set_dst_addr(peer_mac);
        eth.set_src_addr(iface.mac);
        eth.set_ethertype(EtherType::Ipv4);
        self.counters.icmp_errors_sent.inc();
        Some(Verdict::Tx {
            out_if: in_if,
            len: n,
        })
    }
}
