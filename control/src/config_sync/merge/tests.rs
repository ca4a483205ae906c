//! The merge on the seed's pair and on the cases around it.

use std::collections::BTreeSet;

use super::*;
use crate::config::{self, SyncSection};
use crate::config_sync::payload;

fn lab(name: &str) -> String {
    let path = format!(
        "{}/../scripts/lab-configs/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

fn all() -> BTreeSet<SyncSection> {
    SyncSection::ALL.iter().copied().collect()
}

/// A's payload merged into `b_text`, validated.
fn push_into(a_text: &str, b_text: &str) -> (config::Config, Merged) {
    let p = payload::build(a_text, &all()).unwrap();
    let m = merge(b_text, &p.text, &p.carried).unwrap();
    let c = config::parse("merged", &m.text).unwrap_or_else(|e| panic!("{e}\n{}", m.text));
    (c, m)
}

#[test]
fn the_seed_pair_merges_into_b_with_b_s_own_box_sections_and_skews() {
    let a = config::parse("fw-a", &lab("fw-a.toml")).unwrap();
    let b = config::parse("fw-b", &lab("fw-b.toml")).unwrap();
    let (m, merged) = push_into(&lab("fw-a.toml"), &lab("fw-b.toml"));
    // Per-box: B's.
    assert_eq!(m.system, b.system);
    assert_eq!(m.interfaces, b.interfaces);
    assert_eq!(m.ha, b.ha);
    // Pushed: A's, but the skews.
    assert_eq!(m.filter, a.filter);
    assert_eq!(m.aliases, a.aliases);
    assert_eq!(m.nat, a.nat);
    let skews: Vec<u8> = m
        .virtual_ips
        .iter()
        .map(|v| v.carp().unwrap().advskew)
        .collect();
    assert_eq!(skews, [1, 1], "B keeps its own skews");
    assert!(merged.notes.is_empty(), "{:?}", merged.notes);
    // B's file already equals what A pushes: the merge changes nothing B runs.
    assert_eq!(m, b);
}

#[test]
fn a_rule_added_on_a_reaches_b_and_a_no_sync_rule_does_not() {
    let a = lab("fw-a.toml")
        + r#"
[[filter.rules]]
interface = "lan"
action = "block"
protocol = "tcp"
destination = { address = "any", port = 25 }
description = "no mail from the LAN"

[[filter.rules]]
interface = "lan"
action = "block"
protocol = "udp"
destination = { address = "any", port = 53 }
description = "A only"
no_sync = true
"#;
    let (m, _) = push_into(&a, &lab("fw-b.toml"));
    let descs: Vec<&str> = m
        .filter
        .rules
        .iter()
        .map(|r| r.description.as_str())
        .collect();
    assert!(descs.contains(&"no mail from the LAN"));
    assert!(!descs.contains(&"A only"));
}

#[test]
fn b_s_own_no_sync_items_survive_every_push_ahead_of_the_pushed_ones() {
    let b = lab("fw-b.toml")
        + r#"
[[aliases]]
name = "b_admins"
type = "host"
entries = ["192.168.0.200"]
no_sync = true

[[filter.rules]]
interface = "lan"
action = "pass"
protocol = "tcp"
source = { address = "b_admins" }
destination = { address = "self", port = 22 }
description = "B's own admin rule"
nosync = true

[[nat.outbound.rules]]
interface = "wan"
no_nat = true
source = { address = "192.168.0.250" }
description = "B's own no-NAT host"
no_sync = true
"#;
    let (m, _) = push_into(&lab("fw-a.toml"), &b);
    assert_eq!(m.filter.rules[0].description, "B's own admin rule");
    assert!(m.aliases.iter().any(|a| a.name == "b_admins"));
    assert_eq!(m.nat.outbound.rules[0].description, "B's own no-NAT host");
    assert_eq!(m.nat.outbound.rules.len(), 2);
    // B's items that are not no_sync are replaced: A has no rule of that description.
    let b2 = b.replace("nosync = true", "");
    let (m2, _) = push_into(&lab("fw-a.toml"), &b2);
    assert!(m2
        .filter
        .rules
        .iter()
        .all(|r| r.description != "B's own admin rule"));
}

#[test]
fn skews_never_let_the_secondary_outrank_the_primary() {
    // A's skews rise to 50: B's own 1 would win; it becomes 150.
    let a = lab("fw-a.toml").replace("advskew = 0", "advskew = 50");
    let (m, merged) = push_into(&a, &lab("fw-b.toml"));
    let skews: Vec<u8> = m
        .virtual_ips
        .iter()
        .map(|v| v.carp().unwrap().advskew)
        .collect();
    assert_eq!(skews, [150, 150]);
    assert_eq!(merged.notes.len(), 2, "{:?}", merged.notes);
    // A new VIP that B never had: A's skew + 100.
    let a = lab("fw-a.toml")
        + r#"
[[virtual_ips]]
type = "carp"
interface = "lan"
address = "192.168.0.20/24"
vhid = 3
password = "tandem-lab-vhid3"
advskew = 7
"#;
    let (m, _) = push_into(&a, &lab("fw-b.toml"));
    let v3 = m
        .virtual_ips
        .iter()
        .find(|v| v.carp().unwrap().vhid == 3)
        .unwrap();
    assert_eq!(v3.carp().unwrap().advskew, 107);
    // At the top of the range: at most 239, below the 240 a primary in maintenance sends.
    let a = lab("fw-a.toml").replace("advskew = 0", "advskew = 200");
    let (m, _) = push_into(&a, &lab("fw-b.toml"));
    assert_eq!(m.virtual_ips[0].carp().unwrap().advskew, 239);
    // The primary at 239 or above leaves the secondary nothing between it and 240: refused
    // rather than a tie.
    for top in [239, 240, 245, 254] {
        let a = lab("fw-a.toml").replace("advskew = 0", &format!("advskew = {top}"));
        let p = payload::build(&a, &all()).unwrap();
        let e = merge(&lab("fw-b.toml"), &p.text, &p.carried)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no higher skew"), "{top}: {e}");
    }
    // B's own skew above 240 sends as 240: against A's 238 it is kept (240 > 238; B's own
    // config warns about it).
    let a = lab("fw-a.toml").replace("advskew = 0", "advskew = 238");
    let b = lab("fw-b.toml").replace("advskew = 1", "advskew = 250");
    assert!(
        b.contains("advskew = 250"),
        "fw-b.toml's skew changed: fix this test"
    );
    let (m, merged) = push_into(&a, &b);
    assert_eq!(m.virtual_ips[0].carp().unwrap().advskew, 250);
    assert!(merged.notes.is_empty(), "{:?}", merged.notes);
}

#[test]
fn a_section_of_the_wrong_type_is_refused_not_emptied() {
    let b = lab("fw-b.toml");
    for (payload, section) in [
        ("nat = 5\n", SyncSection::Nat),
        ("[filter]\nrules = \"x\"\n", SyncSection::Rules),
        ("[routes]\nstatic = 1\n", SyncSection::StaticRoutes),
        ("virtual_ips = 5\n", SyncSection::VirtualIps),
        ("[aliases]\nx = 1\n", SyncSection::Aliases),
    ] {
        let e = merge(&b, payload, &[section]).unwrap_err().to_string();
        assert!(e.contains("not a"), "{payload}: {e}");
    }
    // Absent is empty, on purpose: the primary has none.
    let m = merge(&b, "", &[SyncSection::StaticRoutes]).unwrap();
    assert!(config::parse("m", &m.text).is_ok());
    // A section named twice.
    let e = merge(&b, "", &[SyncSection::Rules, SyncSection::Rules])
        .unwrap_err()
        .to_string();
    assert!(e.contains("twice"), "{e}");
}

#[test]
fn a_payload_with_more_than_it_carries_is_refused() {
    let p = payload::build(&lab("fw-a.toml"), &BTreeSet::from([SyncSection::Rules])).unwrap();
    let b = lab("fw-b.toml");
    assert!(merge(&b, &p.text, &p.carried).is_ok());
    let sneaky = format!("{}\n[system]\nhost_id = 1\n", p.text);
    let e = merge(&b, &sneaky, &p.carried).unwrap_err().to_string();
    assert!(e.contains("\"system\""), "{e}");
    let sneaky = "[routes]\ndefault_gateway = \"1.2.3.4\"\nstatic = []\n";
    let e = merge(&b, sneaky, &[SyncSection::StaticRoutes])
        .unwrap_err()
        .to_string();
    assert!(e.contains("routes.default_gateway"), "{e}");
    assert!(merge(&b, "not toml [", &p.carried).is_err());
}

#[test]
fn a_push_that_breaks_b_fails_validation_with_field_paths() {
    // A rule naming an interface B lacks.
    let a = lab("fw-a.toml").replace("interface = \"lan\"\naction = \"pass\"\nsource = { address = \"lan net\" }\ndestination = { address = \"any\" }", "interface = \"dmz\"\naction = \"pass\"");
    assert_ne!(a, lab("fw-a.toml"));
    let p = payload::build(&a, &all()).unwrap();
    let m = merge(&lab("fw-b.toml"), &p.text, &p.carried).unwrap();
    let e = config::parse("push", &m.text).unwrap_err().to_string();
    assert!(e.contains("filter.rules[") && e.contains("dmz"), "{e}");
}

#[test]
fn ip_aliases_and_proxy_arp_vips_stay_on_their_box() {
    // Each box's own extra address: pushed, both boxes would answer ARP for A's.
    let vip = |kind: &str, ip: &str| {
        format!(
            "\n[[virtual_ips]]\ntype = \"{kind}\"\ninterface = \"lan\"\naddress = \"{ip}/24\"\n"
        )
    };
    let a = lab("fw-a.toml") + &vip("ipalias", "192.168.0.21") + &vip("proxyarp", "192.168.0.22");
    let b = lab("fw-b.toml") + &vip("ipalias", "192.168.0.31");
    let p = payload::build(&a, &all()).unwrap();
    assert!(
        !p.text.contains("192.168.0.21") && !p.text.contains("192.168.0.22"),
        "{}",
        p.text
    );
    let (m, _) = push_into(&a, &b);
    let mut addrs: Vec<String> = m
        .virtual_ips
        .iter()
        .map(|v| v.address.addr().to_string())
        .collect();
    addrs.sort();
    // A's two CARP VIPs, and B's own alias.
    assert_eq!(addrs, ["172.25.46.100", "192.168.0.10", "192.168.0.31"]);
    // An older primary that still sends its aliases: they are not taken either.
    let mut pushed: toml::Table = p.text.parse().unwrap();
    let alias: toml::Value = toml::from_str::<toml::Table>(&vip("ipalias", "192.168.0.21"))
        .unwrap()["virtual_ips"][0]
        .clone();
    pushed["virtual_ips"].as_array_mut().unwrap().push(alias);
    let merged = merge(&b, &toml::to_string(&pushed).unwrap(), &p.carried).unwrap();
    assert!(!merged.text.contains("192.168.0.21"), "{}", merged.text);
}
