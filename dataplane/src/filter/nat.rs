//! Outbound NAT rules (pfSense "Firewall > NAT > Outbound").
//!
//! Control puts the rules in evaluation order for the configured mode (manual rules first, then
//! the automatic ones in hybrid mode); the dataplane takes the first rule of the outbound
//! interface that matches. A "do not NAT" rule ([`NatKind::NoNat`]) that matches first stops the
//! search: the packet leaves untranslated.
//!
//! Only new connections are looked up here; the state remembers the translation.

use std::net::Ipv4Addr;

use super::{proto, AddrMatch, PacketMeta, PortRange, ProtoMatch, Ruleset};
use crate::IfIndex;

/// How the source port of a translated connection is chosen: the state table's own policy,
/// since it is the table that allocates ports atomically with the insert.
pub use crate::state::PortPolicy;

/// What a NAT rule does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum NatKind {
    /// "Do not NAT": matching packets leave with their own source address.
    NoNat,
    /// Translate the source to `addr` (the interface address or a CARP VIP).
    Translate { addr: Ipv4Addr, ports: PortPolicy },
}

/// One outbound NAT rule.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NatRule {
    /// Stable id shown by the CLI.
    pub number: u32,
    /// The interface the packet leaves by.
    pub out_if: IfIndex,
    pub proto: ProtoMatch,
    pub src: AddrMatch,
    pub dst: AddrMatch,
    /// When set, the rule matches TCP and UDP only.
    pub dst_port: Option<PortRange>,
    pub kind: NatKind,
    pub description: String,
}

impl NatRule {
    /// A rule translating everything that leaves by `out_if` to `addr`, ports from
    /// 1024..=65535 (narrow it through the public fields).
    pub fn translate(number: u32, out_if: IfIndex, addr: Ipv4Addr) -> NatRule {
        NatRule {
            number,
            out_if,
            proto: ProtoMatch::Any,
            src: AddrMatch::ANY,
            dst: AddrMatch::ANY,
            dst_port: None,
            kind: NatKind::Translate {
                addr,
                ports: PortPolicy::Range(1024, u16::MAX),
            },
            description: String::new(),
        }
    }

    /// A "do not NAT" rule for everything that leaves by `out_if` (narrow it through the public
    /// fields).
    pub fn no_nat(number: u32, out_if: IfIndex) -> NatRule {
        NatRule {
            kind: NatKind::NoNat,
            ..NatRule::translate(number, out_if, Ipv4Addr::UNSPECIFIED)
        }
    }

    /// Whether the rule matches a packet leaving by `out_if`.
    pub fn matches(&self, out_if: IfIndex, meta: &PacketMeta) -> bool {
        let l4 = meta.proto == proto::TCP || meta.proto == proto::UDP;
        self.out_if == out_if
            && self.proto.matches(meta.proto)
            && self.dst_port.is_none_or(|r| l4 && r.contains(meta.dport))
            && self.src.matches(meta.src)
            && self.dst.matches(meta.dst)
    }
}

/// The translation chosen for a new outbound connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NatTarget {
    /// The matched rule's number.
    pub rule: u32,
    /// The new source address.
    pub addr: Ipv4Addr,
    pub ports: PortPolicy,
}

/// Indexes of `nat` per outbound interface, keeping the order.
pub(super) fn index_by_if(nat: &[NatRule]) -> Vec<Vec<u32>> {
    let mut by_if: Vec<Vec<u32>> = Vec::new();
    for (i, r) in nat.iter().enumerate() {
        let Ok(i) = u32::try_from(i) else { break };
        let k = usize::from(r.out_if);
        if by_if.len() <= k {
            by_if.resize_with(k + 1, Vec::new);
        }
        by_if[k].push(i);
    }
    by_if
}

impl Ruleset {
    /// The source translation for a new connection leaving by `out_if`: the first matching
    /// rule's, or `None` when no rule matches or the first match is "do not NAT".
    pub fn outbound_nat(&self, out_if: IfIndex, meta: &PacketMeta) -> Option<NatTarget> {
        let list = self.nat_by_if.get(usize::from(out_if))?;
        let rule = list
            .iter()
            .filter_map(|&i| self.nat.get(i as usize))
            .find(|r| r.matches(out_if, meta))?;
        match rule.kind {
            NatKind::NoNat => None,
            NatKind::Translate { addr, ports } => Some(NatTarget {
                rule: rule.number,
                addr,
                ports,
            }),
        }
    }
}
