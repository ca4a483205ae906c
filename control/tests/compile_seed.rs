//! The seed's configs compiled into dataplane generations: what the pipeline will see of them.

use std::net::Ipv4Addr;
use std::path::Path;

use tandem_control::compile::{compile, Compiled};
use tandem_control::config::{load, Config};
use tandem_dataplane::filter::{proto, Action, NatTarget, PacketMeta, PortPolicy, Verdict};
use tandem_dataplane::generation::{Interface, Vip, DEFAULT_MTU};
use tandem_dataplane::route::NextHop;
use tandem_dataplane::wire::MacAddr;
use tandem_dataplane::IfIndex;

fn lab(name: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts/lab-configs")
        .join(name);
    load(&path).unwrap_or_else(|e| panic!("{name} is invalid:\n{e}"))
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// A MAC per device, as the lab's would be: 02:00:00:00:00:N.
fn fake_mac(device: &str) -> Option<MacAddr> {
    let n = match device {
        "wan" => 1,
        "lan" => 2,
        "sync" => 3,
        _ => return None,
    };
    Some(MacAddr([2, 0, 0, 0, 0, n]))
}

fn compiled(name: &str) -> Compiled {
    compile(&lab(name), 7, &fake_mac).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn meta(in_if: IfIndex, proto: u8, src: &str, dst: &str, dport: u16) -> PacketMeta {
    PacketMeta {
        in_if,
        proto,
        src: ip(src),
        dst: ip(dst),
        sport: if dport == 0 { 0 } else { 40000 },
        dport,
    }
}

#[test]
fn fw_a_interfaces_are_lan_and_wan_not_sync() {
    let c = compiled("fw-a.toml");
    let g = &c.generation;
    assert_eq!(g.number, 7);
    assert_eq!(g.ruleset.generation(), 7);
    // Config order (wan, lan, sync), sync left to the kernel.
    assert_eq!(
        g.interfaces,
        [
            Interface {
                name: "wan".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                addr: Some((ip("172.25.46.101"), 24)),
                dhcp: false,
                mtu: DEFAULT_MTU,
            },
            Interface {
                name: "lan".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 2]),
                addr: Some((ip("192.168.0.11"), 24)),
                // The seed's DHCP server runs on LAN.
                dhcp: true,
                mtu: DEFAULT_MTU,
            },
        ]
    );
    assert_eq!(c.devices, ["wan", "lan"]);
    assert_eq!(g.interface_index("sync"), None);
    assert_eq!(c.sync.interfaces, ["sync"]);
}

#[test]
fn fw_a_carp_vips() {
    let c = compiled("fw-a.toml");
    let g = &c.generation;
    let wan = g.interface_index("wan").unwrap();
    let lan = g.interface_index("lan").unwrap();
    assert_eq!(
        g.vips,
        [
            Vip {
                if_index: wan,
                addr: ip("172.25.46.100"),
                prefix_len: 24,
                vhid: Some(1),
            },
            Vip {
                if_index: lan,
                addr: ip("192.168.0.10"),
                prefix_len: 24,
                vhid: Some(2),
            },
        ]
    );
    // A CARP VIP answers ARP with the virtual MAC.
    let lan_if = g.interface(lan).unwrap();
    assert_eq!(g.vips[1].mac(lan_if), MacAddr([0, 0, 0x5e, 0, 1, 2]));
}

#[test]
fn fw_b_has_its_own_addresses_and_the_same_vips() {
    let c = compiled("fw-b.toml");
    let g = &c.generation;
    let addrs: Vec<_> = g.interfaces.iter().map(|i| i.addr).collect();
    assert_eq!(
        addrs,
        [
            Some((ip("172.25.46.102"), 24)),
            Some((ip("192.168.0.12"), 24))
        ]
    );
    let vips: Vec<_> = g.vips.iter().map(|v| (v.addr, v.vhid)).collect();
    assert_eq!(
        vips,
        [
            (ip("172.25.46.100"), Some(1)),
            (ip("192.168.0.10"), Some(2))
        ]
    );
}

#[test]
fn fw_a_lan_passes_to_the_internet() {
    let c = compiled("fw-a.toml");
    let g = &c.generation;
    let lan = g.interface_index("lan").unwrap();
    for p in [proto::TCP, proto::UDP, proto::ICMP] {
        let port = if p == proto::ICMP { 0 } else { 443 };
        let v = g
            .ruleset
            .evaluate(&meta(lan, p, "192.168.0.100", "8.8.8.8", port));
        // "default allow LAN to any" is the 4th rule of [[filter.rules]].
        assert_eq!(
            v,
            Verdict::Rule {
                index: 1,
                number: 4,
                action: Action::Pass,
                keep_state: true,
                log: false,
            },
            "protocol {p}"
        );
    }
    // Not from the LAN's network: default deny.
    let v = g
        .ruleset
        .evaluate(&meta(lan, proto::TCP, "10.9.9.9", "8.8.8.8", 443));
    assert_eq!(v, Verdict::DefaultDeny);
    // The rule's description and number, as the CLI shows them.
    let rule = &g.ruleset.rules(lan)[1];
    assert_eq!(
        (rule.number, rule.description.as_str()),
        (4, "default allow LAN to any")
    );
}

#[test]
fn fw_a_wan_blocks_ssh_to_the_vip_and_passes_carp() {
    let c = compiled("fw-a.toml");
    let g = &c.generation;
    let wan = g.interface_index("wan").unwrap();
    let v = g
        .ruleset
        .evaluate(&meta(wan, proto::TCP, "172.25.46.1", "172.25.46.100", 22));
    assert!(!v.is_pass(), "{v:?}");
    assert_eq!(v.action(), Action::Block);
    assert!(matches!(v, Verdict::Rule { number: 6, .. }), "{v:?}");
    // The peer's CARP adverts come in on the WAN (rule 5), not from outside its network.
    let carp = g
        .ruleset
        .evaluate(&meta(wan, proto::CARP, "172.25.46.102", "224.0.0.18", 0));
    assert!(
        matches!(
            carp,
            Verdict::Rule {
                number: 5,
                action: Action::Pass,
                ..
            }
        ),
        "{carp:?}"
    );
    let foreign = g
        .ruleset
        .evaluate(&meta(wan, proto::CARP, "10.1.1.1", "224.0.0.18", 0));
    assert_eq!(foreign.action(), Action::Block);
}

#[test]
fn fw_a_outbound_nat_uses_the_wan_vip_first() {
    let c = compiled("fw-a.toml");
    let g = &c.generation;
    let wan = g.interface_index("wan").unwrap();
    let lan = g.interface_index("lan").unwrap();
    let m = meta(lan, proto::TCP, "192.168.0.100", "8.8.8.8", 443);
    // Hybrid: the config's rule (number 1) before the automatic one to the interface address.
    assert_eq!(
        g.ruleset.outbound_nat(wan, &m),
        Some(NatTarget {
            rule: 1,
            addr: ip("172.25.46.100"),
            ports: PortPolicy::Range(1024, 65535),
        })
    );
    let nat = g.ruleset.nat_rules();
    assert_eq!(nat.len(), 2, "{nat:?}");
    assert_eq!(nat[1].number, 2);
    assert_eq!(nat[1].description, "automatic: lan net to wan address");
    // Nothing is translated leaving by the LAN.
    assert_eq!(g.ruleset.outbound_nat(lan, &m), None);
}

#[test]
fn fw_a_routes() {
    let c = compiled("fw-a.toml");
    let g = &c.generation;
    let wan = g.interface_index("wan").unwrap();
    let lan = g.interface_index("lan").unwrap();
    assert_eq!(
        g.routes.next_hop(ip("192.168.0.55")),
        Some(NextHop {
            out_if: lan,
            addr: ip("192.168.0.55"),
        })
    );
    assert_eq!(
        g.routes.next_hop(ip("172.25.46.1")),
        Some(NextHop {
            out_if: wan,
            addr: ip("172.25.46.1"),
        })
    );
    assert_eq!(
        g.routes.next_hop(ip("8.8.8.8")),
        Some(NextHop {
            out_if: wan,
            addr: ip("172.25.46.1"),
        })
    );
    // The sync link is the kernel's: the dataplane routes it by default, to the WAN gateway.
    assert_eq!(
        g.routes.lookup(ip("10.255.0.2")).map(|r| r.gateway),
        Some(Some(ip("172.25.46.1")))
    );
    assert_eq!(g.routes.len(), 3);
}

#[test]
fn fw_a_sync_rules_pass_only_the_cluster_s_sync_flows() {
    let c = compiled("fw-a.toml");
    let s = &c.sync;
    let sync = s.index("sync").unwrap();
    let eval = |p, src, dport| s.ruleset.evaluate(&meta(sync, p, src, "10.255.0.1", dport));
    let config_sync = eval(proto::TCP, "10.255.0.2", 8443);
    assert!(
        matches!(
            config_sync,
            Verdict::Rule {
                number: 1,
                action: Action::Pass,
                ..
            }
        ),
        "{config_sync:?}"
    );
    let state_sync = eval(proto::PFSYNC, "10.255.0.2", 0);
    assert!(
        matches!(
            state_sync,
            Verdict::Rule {
                number: 2,
                action: Action::Pass,
                ..
            }
        ),
        "{state_sync:?}"
    );
    assert_eq!(eval(proto::TCP, "10.255.0.2", 22), Verdict::DefaultDeny);
    assert_eq!(eval(proto::TCP, "10.255.0.3", 8443), Verdict::DefaultDeny);
    assert_eq!(s.index("lan"), None);
    // None of them is a dataplane rule.
    let all: usize = c.generation.ruleset.all_rules().iter().map(Vec::len).sum();
    assert_eq!(all, 4);
}

#[test]
fn fw_single_vips_are_always_held() {
    let c = compiled("fw-single.toml");
    let g = &c.generation;
    let vips: Vec<_> = g.vips.iter().map(|v| (v.addr, v.vhid)).collect();
    assert_eq!(
        vips,
        [(ip("172.25.46.100"), None), (ip("192.168.0.10"), None)]
    );
    // An IP alias answers ARP with the interface's own MAC.
    let lan = g.interface_index("lan").unwrap();
    assert_eq!(
        g.vips[1].mac(g.interface(lan).unwrap()),
        MacAddr([2, 0, 0, 0, 0, 2])
    );
    assert!(c.sync.interfaces.is_empty());
    assert!(c.sync.ruleset.all_rules().is_empty());
}

#[test]
fn ip_options_are_dropped_unless_the_system_section_allows_them() {
    assert!(!compiled("fw-a.toml").generation.allow_ip_options);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lab-configs/fw-a.toml");
    let text = std::fs::read_to_string(path).unwrap().replacen(
        "host_id = 1\n",
        "host_id = 1\nallow_ip_options = true\n",
        1,
    );
    let config = tandem_control::config::parse("fw-a.toml", &text).unwrap();
    assert!(config.system.allow_ip_options);
    let c = compile(&config, 7, &fake_mac).unwrap();
    assert!(c.generation.allow_ip_options);
}
