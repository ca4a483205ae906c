//! The compiled ruleset: what control compiles the TOML config into, and what the pipeline asks
//! about every packet that no state covers.
//!
//! Semantics (pfSense's, with `quick` on every rule): rules are per inbound interface, the first
//! matching rule wins, and a packet no rule matches is blocked (default deny). A rule with a port
//! range matches only TCP and UDP. [`Rule::matches`] is the reference semantics;
//! [`Ruleset::evaluate`] gives the same answer faster (see [`compiled`] for how).
//!
//! A [`Ruleset`] is immutable once built (workers load it through arc-swap once per batch); only
//! its hit counters change, with relaxed atomic adds.

mod addr;
mod compiled;
mod nat;

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::state::SrcLimits;
use crate::IfIndex;

pub use addr::{AddrMatch, AddrSet, Addrs, Prefix, PrefixParseError};
pub use nat::{NatKind, NatRule, NatTarget, PortPolicy};

use compiled::CompiledIf;

/// IP protocol numbers the filter knows by name.
pub use crate::wire::ipv4::proto;

/// An inclusive port range `lo..=hi`; a single port is `lo == hi`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    /// The one port `p`.
    pub const fn single(p: u16) -> PortRange {
        PortRange { lo: p, hi: p }
    }

    /// `lo..=hi` (empty, matching nothing, when `lo > hi`).
    pub const fn new(lo: u16, hi: u16) -> PortRange {
        PortRange { lo, hi }
    }

    #[inline]
    pub const fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

/// The protocol a rule matches. `Proto(n)` with n = 1, 6 or 17 means the same as `Icmp`, `Tcp`,
/// `Udp`; CARP is `Proto(112)`, pfsync `Proto(240)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum ProtoMatch {
    #[default]
    Any,
    Tcp,
    Udp,
    TcpUdp,
    Icmp,
    Proto(u8),
}

impl ProtoMatch {
    /// Whether a packet of IP protocol `p` matches.
    #[inline]
    pub const fn matches(&self, p: u8) -> bool {
        match *self {
            ProtoMatch::Any => true,
            ProtoMatch::Tcp => p == proto::TCP,
            ProtoMatch::Udp => p == proto::UDP,
            ProtoMatch::TcpUdp => p == proto::TCP || p == proto::UDP,
            ProtoMatch::Icmp => p == proto::ICMP,
            ProtoMatch::Proto(n) => p == n,
        }
    }
}

/// What a matching rule does with the packet.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Action {
    Pass,
    /// Drop silently.
    Block,
    /// Drop and answer: TCP RST for TCP, ICMP port unreachable otherwise.
    Reject,
}

/// Per-rule counters, bumped with relaxed atomic adds by every worker.
#[derive(Debug, Default)]
pub struct RuleCounters {
    pub hits: AtomicU64,
    pub bytes: AtomicU64,
}

impl RuleCounters {
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// One filter rule, as compiled by control.
#[derive(Debug)]
pub struct Rule {
    /// Stable id shown by the CLI and in counters; survives reordering of the config.
    pub number: u32,
    pub action: Action,
    pub proto: ProtoMatch,
    pub src: AddrMatch,
    pub dst: AddrMatch,
    /// When set, the rule matches TCP and UDP only.
    pub src_port: Option<PortRange>,
    /// When set, the rule matches TCP and UDP only.
    pub dst_port: Option<PortRange>,
    pub log: bool,
    /// A passing rule creates a state (pfSense's default); ignored for block and reject.
    pub keep_state: bool,
    /// Per-source limits of the states the rule creates (pf's `max-src-states`,
    /// `max-src-conn-rate`); none by default.
    pub src_limits: SrcLimits,
    pub description: String,
    pub counters: RuleCounters,
}

impl Rule {
    /// A rule matching every packet: `action` from any to any, keeping state when it passes.
    /// Set the public fields (or use the builder methods) to narrow it.
    pub fn new(number: u32, action: Action) -> Rule {
        Rule {
            number,
            action,
            proto: ProtoMatch::Any,
            src: AddrMatch::ANY,
            dst: AddrMatch::ANY,
            src_port: None,
            dst_port: None,
            log: false,
            keep_state: action == Action::Pass,
            src_limits: SrcLimits::NONE,
            description: String::new(),
            counters: RuleCounters::default(),
        }
    }

    pub fn with_proto(mut self, proto: ProtoMatch) -> Rule {
        self.proto = proto;
        self
    }

    pub fn with_src(mut self, src: AddrMatch) -> Rule {
        self.src = src;
        self
    }

    pub fn with_dst(mut self, dst: AddrMatch) -> Rule {
        self.dst = dst;
        self
    }

    pub fn with_src_port(mut self, ports: PortRange) -> Rule {
        self.src_port = Some(ports);
        self
    }

    pub fn with_dst_port(mut self, ports: PortRange) -> Rule {
        self.dst_port = Some(ports);
        self
    }

    pub fn with_description(mut self, description: impl Into<String>) -> Rule {
        self.description = description.into();
        self
    }

    /// Whether the rule matches the packet: the reference semantics, rule by rule.
    /// (The interface is the ruleset's business: a rule lives in its interface's list.)
    pub fn matches(&self, meta: &PacketMeta) -> bool {
        let has_ports = self.src_port.is_some() || self.dst_port.is_some();
        let l4 = meta.proto == proto::TCP || meta.proto == proto::UDP;
        self.proto.matches(meta.proto)
            && (!has_ports || l4)
            && self.src_port.is_none_or(|r| r.contains(meta.sport))
            && self.dst_port.is_none_or(|r| r.contains(meta.dport))
            && self.src.matches(meta.src)
            && self.dst.matches(meta.dst)
    }
}

/// What the filter needs to know of a packet. Ports are 0 for protocols other than TCP/UDP.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PacketMeta {
    pub in_if: IfIndex,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}

/// The filter's answer for one packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// The rule at `index` in the inbound interface's list (number `number`) matched.
    Rule {
        index: u32,
        number: u32,
        action: Action,
        keep_state: bool,
        log: bool,
    },
    /// No rule matched (or the interface has no rules): block.
    DefaultDeny,
}

impl Verdict {
    /// The verdict of `rule`, at `index` in its interface's list.
    #[inline]
    fn of_rule(index: u32, rule: &Rule) -> Verdict {
        Verdict::Rule {
            index,
            number: rule.number,
            action: rule.action,
            keep_state: rule.keep_state,
            log: rule.log,
        }
    }

    /// The action to take: the matched rule's, or `Block` for default deny.
    pub const fn action(&self) -> Action {
        match *self {
            Verdict::Rule { action, .. } => action,
            Verdict::DefaultDeny => Action::Block,
        }
    }

    /// Whether the packet passes.
    pub const fn is_pass(&self) -> bool {
        matches!(self.action(), Action::Pass)
    }

    /// Whether a state must be created (a passing rule with keep state).
    pub const fn keeps_state(&self) -> bool {
        matches!(
            *self,
            Verdict::Rule {
                action: Action::Pass,
                keep_state: true,
                ..
            }
        )
    }
}

/// The whole compiled filter of one configuration generation.
pub struct Ruleset {
    rules: Vec<Vec<Rule>>,
    compiled: Vec<CompiledIf>,
    nat: Vec<NatRule>,
    /// Indexes into `nat`, per outbound interface, in order.
    nat_by_if: Vec<Vec<u32>>,
    generation: u64,
}

impl Ruleset {
    /// Builds the ruleset: `rules[i]` are the rules of the interface `IfIndex` i (first match
    /// wins), `nat` the outbound NAT rules in evaluation order (manual first, then automatic).
    pub fn new(rules: Vec<Vec<Rule>>, nat: Vec<NatRule>, generation: u64) -> Ruleset {
        let compiled = rules.iter().map(|r| CompiledIf::build(r)).collect();
        let nat_by_if = nat::index_by_if(&nat);
        Ruleset {
            rules,
            compiled,
            nat,
            nat_by_if,
            generation,
        }
    }

    /// A ruleset with no rules (everything is default-denied) and no NAT.
    pub fn empty(generation: u64) -> Ruleset {
        Ruleset::new(Vec::new(), Vec::new(), generation)
    }

    /// The configuration generation this ruleset was compiled from.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The rules of interface `ifx`, in order (empty for an unknown interface).
    pub fn rules(&self, ifx: IfIndex) -> &[Rule] {
        self.rules.get(usize::from(ifx)).map_or(&[], Vec::as_slice)
    }

    /// The rule lists of all interfaces, indexed by `IfIndex`.
    pub fn all_rules(&self) -> &[Vec<Rule>] {
        &self.rules
    }

    /// The outbound NAT rules, in evaluation order.
    pub fn nat_rules(&self) -> &[NatRule] {
        &self.nat
    }

    /// First match wins on the packet's inbound interface; default deny. Counts one hit (and no
    /// bytes) on the matched rule; use [`Ruleset::evaluate_sized`] to count bytes too.
    #[inline]
    pub fn evaluate(&self, meta: &PacketMeta) -> Verdict {
        self.evaluate_sized(meta, 0)
    }

    /// [`Ruleset::evaluate`], adding `bytes` (the packet's IP length) to the matched rule.
    pub fn evaluate_sized(&self, meta: &PacketMeta, bytes: u32) -> Verdict {
        let Some((index, rule)) = self.first_match(meta) else {
            return Verdict::DefaultDeny;
        };
        rule.counters.hits.fetch_add(1, Ordering::Relaxed);
        if bytes != 0 {
            rule.counters
                .bytes
                .fetch_add(u64::from(bytes), Ordering::Relaxed);
        }
        Verdict::of_rule(index, rule)
    }

    /// The verdict [`Ruleset::evaluate`] would give, without counting a hit: for the control
    /// plane's questions about packets that are not flowing (does the new ruleset still pass
    /// this state's first packet?).
    pub fn verdict(&self, meta: &PacketMeta) -> Verdict {
        match self.first_match(meta) {
            Some((index, rule)) => Verdict::of_rule(index, rule),
            None => Verdict::DefaultDeny,
        }
    }

    #[inline]
    fn first_match(&self, meta: &PacketMeta) -> Option<(u32, &Rule)> {
        let i = usize::from(meta.in_if);
        let (c, rules) = (self.compiled.get(i)?, self.rules.get(i)?);
        let index = c.first_match(meta)?;
        Some((index, rules.get(index as usize)?))
    }
}

impl fmt::Debug for Ruleset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ruleset")
            .field("generation", &self.generation)
            .field("rules", &self.rules)
            .field("nat", &self.nat)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
