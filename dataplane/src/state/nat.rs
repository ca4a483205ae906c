//! Source NAT: choose the translated source port of a new flow, atomically with its insert.
//!
//! The port must make the reply key (the reversed wire key: remote address and port, the NAT
//! address and the chosen port) unique in the table. Candidates are probed through the key
//! map's entry API: the probe that finds a free slot is the insert, so two workers can never
//! pick the same port for the same remote endpoint. Probing starts at an offset hashed from the
//! flow and the insert's time (ms) with the table's secret hasher (ports spread, and are not
//! predictable from outside), then goes up linearly through the range and wraps, for at most
//! [`MAX_PORT_ATTEMPTS`] candidates (pf's `pf_get_sport` scans the whole range from a random
//! start). The start depends on nothing the insert creates (such as the sync id): a worker
//! computes the first candidate before the insert, to prefetch its bucket
//! (`StateTable::prefetch_nat_reply`). The time keeps a retransmitted SYN from scanning the
//! same 1024 candidates of a nearly full range again, and a flow that comes back with the same
//! addresses and ports from getting the same port again. A port is only taken per remote
//! endpoint: the same NAT port serves flows to different servers, so exhaustion needs ~64k
//! concurrent flows to one address and port.
//!
//! For ICMP queries the "port" is the ICMP id, both ports of the key. Protocols without ports
//! (GRE, ESP, ...) keep their key and get a state only if that key is free.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::key::{FlowKey, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use super::table::{Birth, InsertError, NewState, ReadSection, State, StateTable};
use super::timeouts::Millis;
use crate::journal::Producer;

/// How to choose the translated source port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortPolicy {
    /// Any free port in `lo..=hi`.
    Range(u16, u16),
    /// Keep the original port (pf's `static-port`), or fail with
    /// [`InsertError::PortExhausted`] if the reply key is taken.
    Static,
}

impl PortPolicy {
    /// tandem's default: every unprivileged port, 1024..=65535.
    pub const DEFAULT: PortPolicy = PortPolicy::Range(1024, 65535);
    /// pf's default NAT range (`nat ... port 50001:65535`), for those who filter on it.
    pub const PF: PortPolicy = PortPolicy::Range(50001, 65535);
}

impl Default for PortPolicy {
    fn default() -> Self {
        PortPolicy::DEFAULT
    }
}

/// The most candidate ports one insert tries (bounds a new connection's cost when a remote
/// endpoint is nearly exhausted: ~1024 entry probes, tens of microseconds).
pub const MAX_PORT_ATTEMPTS: u32 = 1024;

#[inline]
fn with_port(mut key: FlowKey, port: u16) -> FlowKey {
    key.sport = port;
    if key.proto == PROTO_ICMP {
        key.dport = port;
    }
    key
}

/// Where a NAT insert looks for a free port: the candidates, in order, are the ports from
/// `lo + start` up, wrapping within `lo..lo + span`.
#[derive(Debug, Clone, Copy)]
struct PortProbe {
    base: FlowKey,
    lo: u32,
    span: u32,
    start: u32,
}

impl PortProbe {
    /// The wire key of candidate `i`.
    #[inline]
    fn candidate(self, i: u32) -> FlowKey {
        let port = self.lo + (self.start + i) % self.span;
        with_port(self.base, port as u16)
    }
}

impl StateTable {
    /// The probe of a NAT insert of `stack` translated to `nat_addr` at `now`. Its start is
    /// hashed from the flow and `now` (with the table's secret hasher), so that a worker can
    /// compute the first candidate before it inserts ([`StateTable::prefetch_nat_reply`]).
    #[inline]
    fn port_probe(
        &self,
        stack: &FlowKey,
        nat_addr: Ipv4Addr,
        policy: PortPolicy,
        now: Millis,
    ) -> PortProbe {
        let has_ports = matches!(stack.proto, PROTO_TCP | PROTO_UDP | PROTO_ICMP);
        let (lo, hi) = match policy {
            PortPolicy::Range(a, b) if has_ports => (a.min(b), a.max(b)),
            _ => (stack.sport, stack.sport),
        };
        let span = u32::from(hi) - u32::from(lo) + 1;
        PortProbe {
            base: FlowKey {
                src: nat_addr,
                ..*stack
            },
            lo: u32::from(lo),
            span,
            start: (self.port_hasher.hash_one((stack.packed(), now)) % u64::from(span)) as u32,
        }
    }

    /// Start loading the key index's bucket of the reply key a NAT insert of `stack` tries
    /// first: a random line of a large index, which the insert would otherwise wait for. A
    /// worker calls it as soon as it knows the translation, before the rules' evaluation, so
    /// that the two overlap.
    #[inline]
    pub(crate) fn prefetch_nat_reply(
        &self,
        stack: &FlowKey,
        nat_addr: Ipv4Addr,
        policy: PortPolicy,
        now: Millis,
    ) {
        let _ = self.prefetch(&self.first_nat_reply(stack, nat_addr, policy, now));
    }

    /// The reply key a NAT insert of `stack` at `now` tries first: the one it gets in a table
    /// where that key is free.
    #[inline]
    pub(crate) fn first_nat_reply(
        &self,
        stack: &FlowKey,
        nat_addr: Ipv4Addr,
        policy: PortPolicy,
        now: Millis,
    ) -> FlowKey {
        self.port_probe(stack, nat_addr, policy, now)
            .candidate(0)
            .reversed()
    }

    /// Insert a local state for `new.stack` translated to source address `nat_addr` and a
    /// source port chosen by `policy` (`new.wire` is ignored). The state's `wire` key holds the
    /// translation.
    pub fn insert_nat(
        &self,
        new: NewState,
        nat_addr: Ipv4Addr,
        policy: PortPolicy,
        now: Millis,
        by: &Producer,
    ) -> Result<Arc<State>, InsertError> {
        self.insert_nat_inner(None, new, nat_addr, policy, now, by, false)
    }

    /// [`StateTable::insert_nat`], the state marked as counted in its source node or not.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert_nat_inner(
        &self,
        section: Option<&ReadSection>,
        new: NewState,
        nat_addr: Ipv4Addr,
        policy: PortPolicy,
        now: Millis,
        by: &Producer,
        src_tracked: bool,
    ) -> Result<Arc<State>, InsertError> {
        let id = self.next_sync_id();
        let probe = self.port_probe(&new.stack, nat_addr, policy, now);
        let candidates = (0..probe.span.min(MAX_PORT_ATTEMPTS)).map(move |i| probe.candidate(i));
        self.insert_probing(
            Birth::local(id, &new, now, by, src_tracked).in_section(section),
            candidates,
            InsertError::PortExhausted,
        )
    }
}
