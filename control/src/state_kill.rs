//! `tandemctl states kill` (pfctl -k / -K): remove the states that match the same filters as
//! `tandemctl states` (an address or a port at either end, on either side of NAT; a protocol),
//! plus the rule that created them, or every state.
//!
//! Removal goes through [`StateTable::remove`], which journals a delete: with state sync on,
//! the peer gets a DEL_C for each (and a journal overflow on a big kill is repaired by the
//! resync walk, whose END purges on the peer what the walk no longer holds). A killed TCP
//! connection is not reset: like pf, the next segment of either end finds no state and is
//! handled as new (blocked, or a fresh state if a rule passes it mid-stream).
//!
//! [`kill_unpassed`] is the reload side (`system.kill_states_on_reload`, off by default as in
//! pf, which keeps states across `pfctl -f`): after a new ruleset is in force, the states whose
//! first packet it would no longer pass are killed the same way.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use tandem_dataplane::filter::Ruleset;
use tandem_dataplane::journal::Origin;
use tandem_dataplane::pipeline::meta_of;
use tandem_dataplane::state::{FlowKey, State, StateTable};
use tandem_dataplane::IfIndex;

use crate::api::{StatesKillArgs, StatesKillReply};

/// What a kill matches: every given field must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillFilter {
    pub addr: Option<Ipv4Addr>,
    pub port: Option<u16>,
    /// IP protocol number.
    pub proto: Option<u8>,
    pub rule: Option<u32>,
}

/// Why a `states kill` request is refused (nothing is killed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KillError {
    /// No filter and no `--all`: a slip must not empty the table.
    #[error(
        "states kill: give a filter (--addr, --port, --proto, --rule) or --all to kill every state"
    )]
    NoFilter,
    /// `--all` with a filter: ambiguous.
    #[error("states kill: --all takes no filter")]
    AllWithFilter,
    /// A protocol neither named nor a number.
    #[error("states kill: unknown protocol {0:?} (tcp, udp, icmp or a number)")]
    UnknownProtocol(String),
}

impl KillFilter {
    /// The filter of a request, or the refusal: no filter without `all` (a slip must not empty
    /// the table), `all` with a filter (ambiguous), an unknown protocol name.
    pub fn of(args: &StatesKillArgs) -> Result<KillFilter, KillError> {
        let proto = args.proto.as_deref().map(proto_number).transpose()?;
        let f = KillFilter {
            addr: args.addr,
            port: args.port,
            proto,
            rule: args.rule,
        };
        let filtered = f != KillFilter::ALL;
        match (filtered, args.all) {
            (false, false) => Err(KillError::NoFilter),
            (true, true) => Err(KillError::AllWithFilter),
            _ => Ok(f),
        }
    }

    /// Matches every state.
    pub const ALL: KillFilter = KillFilter {
        addr: None,
        port: None,
        proto: None,
        rule: None,
    };

    /// Whether `s` matches: the semantics of `states`' filters (handler.rs), plus the rule.
    pub fn matches(&self, s: &State) -> bool {
        let (stack, wire) = (s.stack, s.wire());
        self.addr
            .is_none_or(|a| touches(&stack, a) || touches(&wire, a))
            && self
                .port
                .is_none_or(|p| [stack.sport, stack.dport, wire.sport, wire.dport].contains(&p))
            && self.proto.is_none_or(|p| p == s.proto())
            && self.rule.is_none_or(|r| r == s.rule)
    }
}

fn touches(k: &FlowKey, a: Ipv4Addr) -> bool {
    k.src == a || k.dst == a
}

/// `tcp`, `udp`, `icmp` (any case) or a protocol number.
fn proto_number(name: &str) -> Result<u8, KillError> {
    use tandem_dataplane::wire::ipv4::proto;
    match name.to_ascii_lowercase().as_str() {
        "icmp" => Ok(proto::ICMP),
        "tcp" => Ok(proto::TCP),
        "udp" => Ok(proto::UDP),
        other => other
            .parse()
            .map_err(|_| KillError::UnknownProtocol(name.to_string())),
    }
}

/// Removes the states `args` selects from `table`; how many went, and a note when the filter
/// names a rule `in_force` does not hold.
pub fn kill(
    table: &StateTable,
    args: &StatesKillArgs,
    in_force: &Ruleset,
) -> Result<StatesKillReply, KillError> {
    let filter = KillFilter::of(args)?;
    let killed = remove_where(table, |s| filter.matches(s));
    if killed > 0 {
        tracing::info!(killed, ?filter, "states killed");
    }
    let unknown = filter.rule.filter(|r| {
        !in_force
            .all_rules()
            .iter()
            .flatten()
            .any(|rule| rule.number == *r)
    });
    let note = unknown.map(|r| {
        format!(
            "no rule {r} in the rules in force (see tandemctl rules): only states an earlier ruleset or the peer's created under that number could match"
        )
    });
    Ok(StatesKillReply { killed, note })
}

/// Kills the states whose first packet `new` would not pass; returns how many. A state's
/// interface is where `old` holds the rule that created it (rule numbers are unique across
/// interfaces); a state whose rule `old` does not hold (a peer's with a config not yet synced,
/// or rule 0) is kept: nothing says where it came in. Call after `new` is in force, so no
/// state the old ruleset passes can be created behind the walk.
pub fn kill_unpassed(table: &StateTable, old: &Ruleset, new: &Ruleset) -> u64 {
    // Rule number -> interface, once: not a scan of every rule for every state.
    let in_if: HashMap<u32, IfIndex> = old
        .all_rules()
        .iter()
        .enumerate()
        .filter_map(|(i, rules)| Some((IfIndex::try_from(i).ok()?, rules)))
        .flat_map(|(i, rules)| rules.iter().map(move |r| (r.number, i)))
        .collect();
    let killed = remove_where(table, |s| {
        in_if
            .get(&s.rule)
            .is_some_and(|&i| !new.verdict(&meta_of(i, &s.stack)).is_pass())
    });
    if killed > 0 {
        tracing::info!(killed, "states the new ruleset no longer passes killed");
    }
    killed
}

/// Removes the states `pick` selects; how many went. The matches are collected first and
/// removed after the walk: [`StateTable::for_each`] holds a shard lock that `remove` takes too.
/// A state that expired or was removed by the peer in between is not counted. The removals are
/// this call's own changes: they go to the peer through a journal queue of its own.
fn remove_where(table: &StateTable, pick: impl Fn(&State) -> bool) -> u64 {
    let by = table.producer();
    let mut victims: Vec<Arc<State>> = Vec::new();
    table.for_each(|s| {
        if pick(s) {
            victims.push(Arc::clone(s));
        }
    });
    victims
        .iter()
        .filter(|s| table.remove(s, Origin::Local(&by)))
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tandem_dataplane::journal::{JournalKind, JournalQueue, StateJournal};
    use tandem_dataplane::state::{NewState, TableConfig};

    #[derive(Debug, Default)]
    struct Deletes(Arc<AtomicU64>);

    impl StateJournal for Deletes {
        fn queue(&self) -> Box<dyn JournalQueue> {
            Box::new(DeleteCount(self.0.clone()))
        }
    }

    struct DeleteCount(Arc<AtomicU64>);

    impl JournalQueue for DeleteCount {
        fn record(&self, kind: JournalKind, _: &Arc<State>) {
            if kind == JournalKind::Delete {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 100);
    const OTHER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 101);
    const SERVER: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 1);

    /// Five states: TCP client:40000->server:80 (rule 2), client:40001->server:443 (rule 2),
    /// UDP client:5000->server:53 (rule 2), UDP other:5000->server:53 (rule 7), ICMP other.
    fn table() -> (StateTable, Arc<Deletes>) {
        let j = Arc::new(Deletes::default());
        let t = StateTable::with_journal(TableConfig::default(), j.clone());
        let by = t.producer();
        let add = |proto, src, sport, dport, rule| {
            let key = FlowKey::new(proto, src, sport, SERVER, dport);
            t.insert(NewState::first_packet(key, rule, None, 60), 0, &by)
                .expect("room");
        };
        add(6, CLIENT, 40000, 80, 2);
        add(6, CLIENT, 40001, 443, 2);
        add(17, CLIENT, 5000, 53, 2);
        add(17, OTHER, 5000, 53, 7);
        add(1, OTHER, 9, 9, 7);
        (t, j)
    }

    fn args() -> StatesKillArgs {
        StatesKillArgs::default()
    }

    /// The rules in force: 7 (the states' rule) on one interface.
    fn in_force() -> Ruleset {
        use tandem_dataplane::filter::{Action, Rule};
        Ruleset::new(vec![vec![Rule::new(7, Action::Pass)]], vec![], 1)
    }

    #[test]
    fn a_kill_without_a_filter_or_all_is_refused_and_removes_nothing() {
        let (t, j) = table();
        let e = kill(&t, &args(), &in_force()).unwrap_err();
        assert_eq!(e, KillError::NoFilter);
        assert!(e.to_string().contains("--all"), "{e}");
        let e = kill(
            &t,
            &StatesKillArgs {
                all: true,
                port: Some(80),
                ..args()
            },
            &in_force(),
        )
        .unwrap_err();
        assert_eq!(e, KillError::AllWithFilter);
        assert!(e.to_string().contains("no filter"), "{e}");
        let e = kill(
            &t,
            &StatesKillArgs {
                proto: Some("sctp".into()),
                ..args()
            },
            &in_force(),
        )
        .unwrap_err();
        assert_eq!(e, KillError::UnknownProtocol("sctp".into()));
        assert!(e.to_string().contains("unknown protocol"), "{e}");
        assert_eq!(t.len(), 5);
        assert_eq!(j.0.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn filters_combine_and_every_kill_is_journaled_as_a_delete() {
        let (t, j) = table();
        let rules = in_force();
        let k = |a: StatesKillArgs| kill(&t, &a, &rules).unwrap().killed;
        // A rule not in force (a typo, most likely) is said, not only answered with 0.
        let typo = kill(
            &t,
            &StatesKillArgs {
                rule: Some(77),
                ..args()
            },
            &rules,
        )
        .unwrap();
        assert_eq!(typo.killed, 0);
        assert!(
            typo.note
                .as_deref()
                .is_some_and(|n| n.contains("no rule 77")),
            "{typo:?}"
        );
        assert_eq!(
            k(StatesKillArgs {
                addr: Some(CLIENT),
                proto: Some("TCP".into()),
                port: Some(443),
                ..args()
            }),
            1
        );
        let by_rule = StatesKillArgs {
            rule: Some(7),
            proto: Some("17".into()),
            ..args()
        };
        assert_eq!(kill(&t, &by_rule, &rules).unwrap().note, None);
        assert_eq!(
            k(by_rule),
            0,
            "rule 7 and UDP: the other host's UDP state, killed just above"
        );
        assert_eq!(
            k(StatesKillArgs {
                addr: Some(CLIENT),
                ..args()
            }),
            2,
            "the client's two others"
        );
        assert_eq!(
            k(StatesKillArgs {
                addr: Some(CLIENT),
                ..args()
            }),
            0,
            "already gone"
        );
        assert_eq!(t.len(), 1);
        assert_eq!(
            k(StatesKillArgs {
                all: true,
                ..args()
            }),
            1
        );
        assert!(t.is_empty());
        assert_eq!(
            j.0.load(Ordering::Relaxed),
            5,
            "one journaled delete per kill"
        );
    }

    #[test]
    fn a_reload_kills_only_the_states_the_new_ruleset_no_longer_passes() {
        use tandem_dataplane::filter::{Action, AddrMatch, PortRange, Prefix, ProtoMatch, Rule};
        let (t, j) = table();
        let lan = |rules| Ruleset::new(vec![rules, vec![Rule::new(9, Action::Block)]], vec![], 1);
        // Old: rule 2 passes the client, rule 7 the other host (on lan, interface 0).
        let old = lan(vec![
            Rule::new(2, Action::Pass).with_src(AddrMatch::prefix(Prefix::host(CLIENT))),
            Rule::new(7, Action::Pass).with_src(AddrMatch::prefix(Prefix::host(OTHER))),
        ]);
        // New: port 443 is blocked first; the client's rule stays; the other host's is gone.
        let new = lan(vec![
            Rule::new(1, Action::Block)
                .with_proto(ProtoMatch::Tcp)
                .with_dst_port(PortRange { lo: 443, hi: 443 }),
            Rule::new(2, Action::Pass).with_src(AddrMatch::prefix(Prefix::host(CLIENT))),
        ]);
        assert_eq!(
            kill_unpassed(&t, &old, &old),
            0,
            "the same ruleset kills nothing"
        );
        assert_eq!(
            kill_unpassed(&t, &old, &new),
            3,
            "443, and the other host's two"
        );
        let mut left: Vec<u16> = t.snapshot().iter().map(|s| s.stack.sport).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            vec![5000, 40000],
            "the client's UDP and port-80 states stay"
        );
        assert_eq!(
            j.0.load(Ordering::Relaxed),
            3,
            "journaled: the peer drops them too"
        );
        assert_eq!(
            new.all_rules()[0][1].counters.hits(),
            0,
            "asking the new ruleset counts no hit"
        );
    }
}
