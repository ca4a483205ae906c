//! The batch's lookahead: before a received batch is processed, each frame's flow key is read
//! and hashed and its key-index bucket prefetched; then, with the buckets in the cache, the
//! state each points to is prefetched as well. When processing reaches the
//! frame, its lookup finds both in the cache: the memory latency of a large table is paid
//! once per batch, overlapped, instead of twice per packet, one after the other (DPDK's bulk
//! lookup does the same in stages).
//!
//! Only for tables too large for the caches ([`LOOKAHEAD_STATES`]), or for an index too large
//! for them ([`LOOKAHEAD_INDEX_BYTES`]) while many new flows arrive (each new key's bucket is a
//! random line of the whole index, however few states there are): for a small, hot table the
//! lookahead is pure cost (reading the headers and hashing twice).

use crate::io::Look;
use crate::state::{FlowKey, Prefetched, StateTable};
use crate::wire::ethernet::{self, EtherType, EthernetFrame};
use crate::wire::ipv4::{proto, Ipv4Packet};
use crate::wire::l4_ports;

/// From this many states the lookahead runs: the key index (~37 bytes a state) and the states
/// (144 bytes each) then outgrow a core's 2-4 MiB L2.
pub const LOOKAHEAD_STATES: usize = 1 << 14;

/// From this size a key index (mapped whole for the state limit) is larger than a core's L2
/// cache (1-2 MiB on current x86 cores): a new flow's bucket is then rarely in it.
pub const LOOKAHEAD_INDEX_BYTES: usize = 4 << 20;

/// Whether a round should run the lookahead: where its lookups miss the cache. That is a
/// table of `states` too large for it, or a key index of `index_bytes` too large for it while
/// new flows come in ([`many_new`] of the last round).
pub(super) fn pays(states: usize, index_bytes: usize, many_new_flows: bool) -> bool {
    states >= LOOKAHEAD_STATES || (many_new_flows && index_bytes >= LOOKAHEAD_INDEX_BYTES)
}

/// Whether `new_flows` of a round's `frames` are enough for the lookahead to pay on the next:
/// one in eight. The lookahead costs every frame its parse and hash (~100 instructions, ~25 ns
/// here); it saves a new flow a bucket miss (~100-150 ns).
pub(super) fn many_new(new_flows: usize, frames: usize) -> bool {
    new_flows > 0 && new_flows * 8 >= frames
}

/// Frames whose buckets are prefetched before their states are: a whole RX batch (what an AF_XDP
/// port hands over at once by default, `WorkerConfig::batch`) in one stage, so that stage 2
/// reads buckets requested microseconds before, not a few frames before (when they may still be
/// on their way, and the read would wait for them).
const STAGE: usize = 64;

/// One batch's lookahead over one table.
#[derive(Debug)]
pub(super) struct Lookahead<'t> {
    states: &'t StateTable,
    /// Stage 1 done (hashed, bucket requested), stage 2 to do: the first `n` (frames without a
    /// flow key are not staged).
    staged: [Option<Prefetched>; STAGE],
    n: usize,
}

impl<'t> Lookahead<'t> {
    pub(super) fn new(states: &'t StateTable) -> Self {
        Lookahead {
            states,
            staged: [None; STAGE],
            n: 0,
        }
    }

    /// Stage 2 for every staged frame: its state requested, the bucket now in the cache.
    #[inline]
    fn prefetch_states(&mut self) {
        for &p in self.staged[..self.n].iter().flatten() {
            self.states.prefetch_state(p);
        }
        self.n = 0;
    }
}

impl Look for Lookahead<'_> {
    #[inline]
    fn frame(&mut self, bytes: &[u8]) {
        if self.n == STAGE {
            self.prefetch_states();
        }
        if let Some(k) = flow_key(bytes) {
            self.staged[self.n] = Some(self.states.prefetch(&k));
            self.n += 1;
        }
    }

    #[inline]
    fn end(&mut self) {
        self.prefetch_states();
    }
}

/// The key the established path will look up for a TCP or UDP frame, read without the
/// pipeline's checks: a malformed frame only costs a useless prefetch.
#[inline]
fn flow_key(frame: &[u8]) -> Option<FlowKey> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(&frame[ethernet::HEADER_LEN..]).ok()?;
    let proto = u8::from(ip.next_header());
    if proto != proto::TCP && proto != proto::UDP {
        return None;
    }
    let (sport, dport) = l4_ports(ip.payload())?;
    Some(FlowKey {
        proto,
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        sport,
        dport,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn the_lookahead_runs_for_a_large_table_and_for_new_flows_in_a_large_index() {
        let (states, bytes) = (LOOKAHEAD_STATES, LOOKAHEAD_INDEX_BYTES);
        assert!(pays(states, 0, false), "a large table, all hits");
        assert!(pays(10, bytes, true), "new flows in a large index");
        assert!(!pays(10, bytes, false), "a few hot states in a large index");
        assert!(
            !pays(10, bytes - 1, true),
            "new flows in an index that fits the cache"
        );
    }

    #[test]
    fn one_new_flow_in_eight_frames_is_many() {
        assert!(many_new(1, 1));
        assert!(many_new(8, 64));
        assert!(!many_new(7, 64), "7 of 64");
        assert!(!many_new(0, 0), "an empty round");
        assert!(!many_new(0, 64));
    }

    #[test]
    fn the_key_of_a_tcp_frame_is_the_one_the_established_path_looks_up() {
        let mut frame = vec![0u8; 14 + 20 + 20];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut frame[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[9] = proto::TCP;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[192, 0, 2, 7]);
        frame[34..38].copy_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
        let key = flow_key(&frame).expect("a TCP frame");
        assert_eq!(
            key,
            FlowKey::new(
                proto::TCP,
                Ipv4Addr::new(10, 0, 0, 1),
                40000,
                Ipv4Addr::new(192, 0, 2, 7),
                443
            )
        );
        assert_eq!(flow_key(&frame[..20]), None, "truncated");
        frame[23] = 1; // ICMP
        assert_eq!(flow_key(&frame), None);
    }
}
