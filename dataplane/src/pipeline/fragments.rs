//! The pipeline's side of fragments and the egress MTU (see the parent's doc for the policy and
//! [`crate::fragment`] for the table). Kept apart from the per-packet way of unfragmented
//! traffic, which pays one test of the flags/offset word and one length compare for all this.

use std::net::Ipv4Addr;

use super::{cut_frame, is_martian, WorkerSide, ETH};
use crate::fragment::{Conflict, Follow, FragKey, Inserted};
use crate::generation::Generation;
use crate::io::Verdict;
use crate::pipeline::Dataplane;
use crate::state::FlowKey;
use crate::wire::checksum;
use crate::wire::ethernet::EthernetFrame;
use crate::wire::icmp::IcmpErrorKind;
use crate::wire::ipv4::{self, Ipv4Packet};
use crate::IfIndex;

impl WorkerSide {
    /// A later fragment (offset > 0): it carries no transport header, so it passes only behind
    /// a first fragment that passed, with the addresses that one left with.
    #[cold]
    #[inline(never)]
    pub(super) fn later_fragment(
        &mut self,
        gen: &Generation,
        dp: &Dataplane,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
    ) -> Verdict {
        // Cut to the datagram, as a whole one is (`ipv4`): nothing after it crosses the box.
        let end = ETH + usize::from(Ipv4Packet::new_unchecked(&buf[ETH..len]).total_len());
        let len = if end < len { cut_frame(buf, end) } else { len };
        let (key, offset, payload_len, last, hl) = {
            let ip = Ipv4Packet::new_unchecked(&buf[ETH..len]);
            let key = FragKey {
                src: ip.src_addr(),
                dst: ip.dst_addr(),
                proto: u8::from(ip.next_header()),
                id: ip.ident(),
            };
            let hl = ip.header_len();
            (
                key,
                ip.frag_offset(),
                ip.payload().len(),
                !ip.more_frags(),
                hl,
            )
        };
        let c = &*self.counters;
        if is_martian(key.src, key.dst) {
            c.drop_martian.inc();
            return Verdict::Drop;
        }
        // RFC 1812 §5.3.4, as for whole packets: nothing received as a link-layer broadcast or
        // multicast is forwarded (and the box takes no fragment for itself).
        if EthernetFrame::new_unchecked(&buf[..len])
            .dst_addr()
            .is_multicast()
        {
            c.drop_l2_not_for_us.inc();
            return Verdict::Drop;
        }
        // RFC 791: a datagram is at most 65535 bytes. A fragment reaching past that (the "ping
        // of death") would overflow a careless receiver's reassembly.
        let end = usize::from(offset) + payload_len;
        let Ok(payload_len) = u16::try_from(payload_len) else {
            c.drop_ipv4_malformed.inc();
            return Verdict::Drop;
        };
        if end + hl > usize::from(u16::MAX) {
            c.drop_ipv4_malformed.inc();
            return Verdict::Drop;
        }
        let place = (offset, payload_len);
        let (src, dst) = match dp.frags.follow(key, in_if, place, last, self.now) {
            Follow::Pass { src, dst } => (src, dst),
            Follow::NoFirst => {
                c.drop_frag_no_first.inc();
                return Verdict::Drop;
            }
            Follow::Expired => {
                c.frag_flows_expired.inc();
                c.drop_frag_no_first.inc();
                return Verdict::Drop;
            }
            Follow::Overlap => {
                c.drop_frag_overlap.inc();
                return Verdict::Drop;
            }
            Follow::WrongInterface => {
                c.drop_frag_conflict.inc();
                return Verdict::Drop;
            }
        };
        let hop = match self.next_hop_or_answer(gen, in_if, buf, len, dst) {
            Ok(hop) => hop,
            Err(verdict) => return verdict,
        };
        if translate_addrs(&mut buf[ETH..len], (key.src, key.dst), (src, dst)) {
            self.counters.nat_translated.inc();
        }
        self.counters.frag_followers.inc();
        self.forward(gen, dp, hop.out_if, hop.addr, buf, len)
    }

    /// A first fragment about to be forwarded (rules and state passed, translated): records its
    /// datagram so that the later fragments follow. `key` is the packet as received on `in_if`;
    /// `datagram` holds it as it leaves (IP header of `hl` bytes and payload). `Err` is the
    /// frame's fate when it would re-point a live datagram.
    pub(super) fn first_fragment_passes(
        &mut self,
        dp: &Dataplane,
        in_if: IfIndex,
        key: &FlowKey,
        id: u16,
        datagram: &[u8],
        hl: usize,
    ) -> Result<(), Verdict> {
        let (out_src, out_dst) = {
            let ip = Ipv4Packet::new_unchecked(datagram);
            (ip.src_addr(), ip.dst_addr())
        };
        let fk = FragKey {
            src: key.src,
            dst: key.dst,
            proto: key.proto,
            id,
        };
        let first_end = u16::try_from(datagram.len() - hl).unwrap_or(u16::MAX);
        let c = &*self.counters;
        match dp
            .frags
            .insert(fk, in_if, (out_src, out_dst), first_end, self.now)
        {
            Ok(how) => {
                match how {
                    Inserted::Fresh => {}
                    Inserted::ReusedExpired => c.frag_flows_expired.inc(),
                    Inserted::EvictedOldest => c.frag_flows_evicted.inc(),
                }
                c.frag_flows_created.inc();
                Ok(())
            }
            Err(Conflict) => {
                c.drop_frag_conflict.inc();
                Err(Verdict::Drop)
            }
        }
    }

    /// A frame longer than `mtu` plus the Ethernet header is about to be routed: None if it
    /// may go on (it fits after all, the frame having bytes after the datagram, or it has no
    /// DF and will be fragmented as it leaves), else its fate: with DF the sender learns the
    /// MTU (RFC 1191).
    #[cold]
    #[inline(never)]
    pub(super) fn too_big(
        &mut self,
        gen: &Generation,
        in_if: IfIndex,
        buf: &mut [u8],
        len: usize,
        mtu: u16,
    ) -> Option<Verdict> {
        let (df, total) = {
            let ip = Ipv4Packet::new_unchecked(&buf[ETH..len]);
            (ip.dont_frag(), ip.total_len())
        };
        if total <= mtu || !df {
            return None;
        }
        self.counters.drop_frag_needed.inc();
        let kind = IcmpErrorKind::FragNeeded { next_hop_mtu: mtu };
        Some(
            self.icmp_error_reply(gen, in_if, buf, len, kind)
                .unwrap_or(Verdict::Drop),
        )
    }

    /// A datagram without DF, longer than `mtu`, leaving on `out_if` (TTL decremented, Ethernet
    /// header written for the next hop): fragmented (RFC 791 §3.2), the first fragment in
    /// `buf`, the others through the emit queue.
    #[cold]
    #[inline(never)]
    pub(super) fn fragment_out(
        &mut self,
        out_if: IfIndex,
        buf: &mut [u8],
        len: usize,
        mtu: u16,
    ) -> Verdict {
        let c = &*self.counters;
        let (hl, total, offset, mf) = {
            let ip = Ipv4Packet::new_unchecked(&buf[ETH..len]);
            let total = usize::from(ip.total_len());
            (ip.header_len(), total, ip.frag_offset(), ip.more_frags())
        };
        let mtu = usize::from(mtu);
        if total <= mtu {
            // Bytes after the datagram made the frame long: they are not sent.
            c.forwarded.inc();
            let n = super::pad_frame(buf, ETH + total);
            return Verdict::Tx { out_if, len: n };
        }
        // Every fragment's payload but the last is a multiple of 8 bytes (the offset's unit).
        let step = mtu.saturating_sub(hl) / 8 * 8;
        let payload = total - hl;
        if hl != ipv4::HEADER_LEN || step == 0 {
            c.drop_too_big.inc();
            return Verdict::Drop;
        }
        let pieces = payload.div_ceil(step);
        if pieces - 1 > self.emit.room() {
            c.drop_too_big.inc();
            return Verdict::Drop;
        }
        // The others first, from the bytes the first will keep its header over.
        for k in 1..pieces {
            let (start, end) = (k * step, ((k + 1) * step).min(payload));
            let src = &buf[..ETH + hl + end];
            self.emit.push(out_if, |b| {
                let n = ETH + hl + end - start;
                b[..ETH + hl].copy_from_slice(&src[..ETH + hl]);
                b[ETH + hl..n].copy_from_slice(&src[ETH + hl + start..]);
                let mut ip = Ipv4Packet::new_unchecked(&mut b[ETH..n]);
                // Within the original datagram: its offset plus ours; MF unless this is the
                // original's last piece and the original was a last fragment.
                ip.set_total_len(u16::try_from(n - ETH).unwrap_or(u16::MAX));
                ip.set_frag_offset(offset.saturating_add(u16::try_from(start).unwrap_or(u16::MAX)));
                ip.set_more_frags(end < payload || mf);
                ip.fill_checksum();
                super::pad_frame(b, n)
            });
        }
        let n = ETH + hl + step;
        let mut ip = Ipv4Packet::new_unchecked(&mut buf[ETH..n]);
        ip.set_total_len(u16::try_from(hl + step).unwrap_or(u16::MAX));
        ip.set_more_frags(true);
        ip.fill_checksum();
        c.forwarded.inc();
        c.frags_made.add(u64::try_from(pieces).unwrap_or(u64::MAX));
        Verdict::Tx { out_if, len: n }
    }
}

/// Rewrites a datagram's addresses from `old` to `new` with the header checksum patched
/// incrementally (RFC 1624); the payload is left alone (a later fragment has no transport
/// header to patch). Returns whether anything changed.
fn translate_addrs(ip: &mut [u8], old: (Ipv4Addr, Ipv4Addr), new: (Ipv4Addr, Ipv4Addr)) -> bool {
    if old == new {
        return false;
    }
    let mut p = Ipv4Packet::new_unchecked(ip);
    let mut c = p.checksum();
    if old.0 != new.0 {
        c = checksum::update_addr(c, old.0, new.0);
        p.set_src_addr(new.0);
    }
    if old.1 != new.1 {
        c = checksum::update_addr(c, old.1, new.1);
        p.set_dst_addr(new.1);
    }
    p.set_checksum(c);
    true
}
