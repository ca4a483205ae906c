//! Named per-reason counters: every frame the pipeline sees ends in exactly one of them, so
//! `rx_frames` equals the sum of the outcome counters (a property the tests check).
//!
//! Each worker owns one [`Counters`] and is its only writer, so an increment is a relaxed load
//! and store (a plain `add` on x86), not a locked read-modify-write. Readers (the control thread)
//! may see a value a few nanoseconds old, never a torn one.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter with a single writer and any number of readers.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one. Only the owning worker may call this (single writer).
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`. Only the owning worker may call this (single writer).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Declares the counter table once: the struct, its names and its snapshot come from one list,
/// so a counter cannot exist without a name or be left out of `tandemctl stats`.
macro_rules! counters {
    (
        outcomes { $($(#[doc = $od:literal])* $outcome:ident,)* }
        events { $($(#[doc = $ed:literal])* $event:ident,)* }
    ) => {
        /// The dataplane's counters (see the module doc).
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[doc = $od])* pub $outcome: Counter,)*
            $($(#[doc = $ed])* pub $event: Counter,)*
        }

        impl Counters {
            /// Names of the counters that close a frame's way: each received frame adds one to
            /// exactly one of these.
            pub const OUTCOMES: &'static [&'static str] = &[$(stringify!($outcome),)*];

            /// Every counter's name and help (its doc comment), for the metrics registry.
            pub const HELP: &'static [(&'static str, &'static str)] = &[
                $((stringify!($outcome), concat!($($od),*)),)*
                $((stringify!($event), concat!($($ed),*)),)*
            ];

            /// Every counter with its name, in declaration order.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![
                    $((stringify!($outcome), self.$outcome.get()),)*
                    $((stringify!($event), self.$event.get()),)*
                ]
            }

            /// Sum of the outcome counters: equals `rx_frames` once a batch is done.
            pub fn outcomes_total(&self) -> u64 {
                0 $(+ self.$outcome.get())*
            }
        }
    };
}

counters! {
    outcomes {
        /// Forwarded to another interface (or back out the same one, routed).
        forwarded,
        /// Answered in place by the box itself (ARP reply, ICMP echo reply, RST, ICMP error).
        replied,
        /// Handed to the control plane (CARP adverts) through the slow path.
        to_control,
        /// A CARP advert with a TTL other than 255 (it did not come from the link itself).
        drop_carp_ttl,
        /// A CARP payload shorter than the 36-byte header or longer than any advert.
        drop_carp_malformed,
        /// A CARP advert for a VHID the receiving interface does not have.
        drop_carp_vhid,
        /// A CARP advert over its source's budget, or from another source than the VHID's peer
        /// with the others' half of the slow-path queue full.
        drop_carp_budget,
        /// DHCP to the box (UDP port 67) on an interface that serves DHCP, handed to the DHCP
        /// thread past the rules (pfSense passes it with hidden rules too).
        to_dhcp,
        /// DHCP for the DHCP thread with its queue full (or no DHCP thread).
        drop_dhcp_queue_full,
        /// Held until the next hop's MAC is known (sent later, or dropped as neigh_failed or
        /// neigh_evicted).
        neigh_queued,
        /// Frame shorter than an Ethernet header, or sent from a group (multicast or broadcast)
        /// address.
        drop_eth_malformed,
        /// To a MAC that is neither ours nor a VIP's we hold, or unicast IP in a broadcast frame.
        drop_l2_not_for_us,
        /// 802.1Q-tagged frame: tandem's interfaces are untagged (use a VLAN device).
        drop_vlan,
        /// Neither IPv4 nor ARP (IPv6 included: tandem forwards IPv4 only).
        drop_ethertype,
        /// ARP that is not Ethernet/IPv4, truncated, or from a multicast or broadcast hardware
        /// address.
        drop_arp_malformed,
        /// ARP for an address we do not answer for; learned from when useful, then dropped.
        arp_ignored,
        /// Bad IPv4 header: version, lengths.
        drop_ipv4_malformed,
        /// IPv4 header checksum mismatch.
        drop_ipv4_checksum,
        /// A fragment addressed to the box itself, or a fragmented ICMP error: tandem forwards
        /// fragments (see `fragment`), it does not reassemble them for itself.
        drop_fragment,
        /// An IPv4 header with options while `system.allow_ip_options` is off (pf's default).
        drop_ip_options,
        /// A later fragment whose datagram's first fragment has not passed: blocked, not seen
        /// yet (out of order: not held), or forgotten (see `frag_flows_expired`).
        drop_frag_no_first,
        /// A later fragment starting inside the first fragment's payload (RFC 1858 overlap).
        drop_frag_overlap,
        /// A first fragment that would re-point a live datagram's followers (same datagram, other
        /// addresses out or another interface in), or a later fragment from another interface
        /// than its first: spoofed, dropped (see `fragment`).
        drop_frag_conflict,
        /// DF set and longer than the egress MTU: an ICMP fragmentation needed with that MTU is
        /// sent when allowed (RFC 1191).
        drop_frag_needed,
        /// DF clear and longer than the egress MTU, and it could not be fragmented: IP options
        /// (which to copy into each fragment is per option), the next hop's MAC not known yet,
        /// or no room in the emit queue for the other fragments.
        drop_too_big,
        /// An address valid nowhere on a wire (RFC 1812 5.3.7, RFC 1122 3.2.1.3): loopback
        /// source or destination, destination on network 0, multicast or broadcast source;
        /// and, for a packet that would make a state, a source that is one of the box's own
        /// addresses or VIPs, or an interface subnet's network or broadcast address.
        drop_martian,
        /// TCP/UDP/ICMP header truncated or inconsistent.
        drop_l4_malformed,
        /// To one of our addresses but nothing here serves it.
        drop_local_unhandled,
        /// No state and the first matching rule blocks (per-rule hits in the ruleset).
        drop_blocked_rule,
        /// No state and no rule matched: default deny.
        drop_blocked_default,
        /// No state, a pass rule matched, but a TCP packet other than SYN without ACK.
        drop_tcp_no_state,
        /// TCP segment outside the tracked window (pf's "bad state").
        drop_tcp_bad_window,
        /// TCP segment of a tracked connection without ACK that is neither a SYN nor a RST
        /// (no flags, a bare FIN, data alone): sent by no stack, refused before it can move
        /// the windows.
        drop_tcp_no_ack,
        /// No state, a pass rule matched, but ICMP that makes none: a query's reply (it answers
        /// a request, whose state it would have found), or a message that is neither a query
        /// nor an error (no id to key a flow by).
        drop_icmp_no_state,
        /// New state refused: the table is at its limit.
        drop_state_limit,
        /// New state refused: its source holds the rule's `max_src_states` states.
        drop_src_states,
        /// New state refused: its source opens states faster than the rule's
        /// `max_src_conn_rate`.
        drop_src_rate,
        /// New state refused: the rule has per-source limits and the source-node table is full.
        drop_src_nodes,
        /// No free source port on the translation address.
        drop_nat_exhausted,
        /// Lost a race: another worker created the same state at the same moment.
        drop_state_race,
        /// An ICMP error whose quoted packet matches no state.
        drop_icmp_error_no_state,
        /// An ICMP error quoting a TCP segment whose sequence number is outside the state's
        /// window (pf's BAD ICMP, RFC 5927): forged or stale.
        drop_icmp_error_bad_seq,
        /// TTL would reach zero (an ICMP time exceeded is sent when allowed).
        drop_ttl_expired,
        /// No route to the destination (an ICMP unreachable is sent when allowed).
        drop_no_route,
        /// The next hop's queue of frames waiting for ARP is full.
        drop_neigh_queue_full,
        /// No free buffer to hold a frame waiting for ARP.
        drop_neigh_pool_exhausted,
        /// The next hop did not answer ARP recently and is held down: dropped at once.
        drop_neigh_unreachable,
        /// The buffer handed to the pipeline is smaller than a frame buffer may need to be.
        drop_short_buffer,
    }
    events {
        /// Frames received from all interfaces.
        rx_frames,
        /// Frames handed back for transmission, forwarded and generated.
        tx_frames,
        /// ARP replies sent for our addresses and held VIPs.
        arp_replies,
        /// ARP requests sent to resolve next hops.
        arp_requests,
        /// Neighbours not learnt from ARP because the cache was full
        /// (`NeighCache::DEFAULT_MAX_ENTRIES`; entries age out after 20 minutes unconfirmed).
        neigh_table_full,
        /// Frames that waited for ARP and were then sent.
        neigh_released,
        /// Frames that waited for ARP whose neighbour never answered.
        neigh_failed,
        /// Frames that waited for ARP, dropped when every resolution slot was busy and a
        /// frame to a gateway took their next hop's.
        neigh_evicted,
        /// ICMP echo replies sent.
        icmp_echo_replies,
        /// ICMP errors sent (time exceeded, unreachable, reject).
        icmp_errors_sent,
        /// TCP RSTs sent by reject rules.
        tcp_rsts_sent,
        /// ICMP errors not sent because of the rate limit.
        icmp_errors_ratelimited,
        /// TCP RSTs of reject rules not sent because of the rate limit (the bucket of the ICMP
        /// errors: both together at most 100 a second and 50 at once per worker).
        tcp_rsts_ratelimited,
        /// States created.
        states_created,
        /// Packets that matched an existing state.
        state_hits,
        /// Packets whose addresses or ports were translated.
        nat_translated,
        /// Generated frames dropped because the emit queue was full.
        drop_emit_full,
        /// First fragments recorded in the fragment table (their followers may pass).
        frag_flows_created,
        /// Later fragments forwarded after their first fragment.
        frag_followers,
        /// Fragment table entries forgotten unfinished after the fragment timeout.
        frag_flows_expired,
        /// Fragment table entries evicted unfinished (the oldest of a full shard) to make room
        /// for a new datagram: its later fragments, if any still come, are dropped.
        frag_flows_evicted,
        /// Fragments the box made of datagrams without DF longer than the egress MTU.
        frags_made,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_every_counter_once() {
        let c = Counters::default();
        c.forwarded.inc();
        c.drop_vlan.add(3);
        let snap = c.snapshot();
        let mut names: Vec<_> = snap.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), snap.len());
        assert!(snap.contains(&("forwarded", 1)));
        assert!(snap.contains(&("drop_vlan", 3)));
        assert_eq!(c.outcomes_total(), 4);
    }
}
