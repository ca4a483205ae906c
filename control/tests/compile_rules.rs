//! Compilation in detail: outbound NAT per mode, address resolution (aliases, `self`, `<if>
//! net`, invert), VIP types, and every compile error with its message.

use std::net::Ipv4Addr;

use tandem_control::compile::{compile, device_mac, CompileError, Compiled};
use tandem_control::config::{parse, Config, IfAddr};
use tandem_dataplane::filter::{proto, Action, NatTarget, PacketMeta, PortPolicy, Verdict};
use tandem_dataplane::wire::MacAddr;
use tandem_dataplane::IfIndex;

/// wan (0), lan (1), dmz (2, role other), sync; a WAN IP alias and a LAN CARP VIP.
const BASE: &str = r#"
[system]
hostname = "t"
host_id = 1

[[interfaces]]
name = "wan"
device = "eth0"
address = "203.0.113.2/24"
role = "wan"

[[interfaces]]
name = "lan"
device = "eth1"
address = "10.1.0.1/16"
role = "lan"
mac = "02:00:00:00:01:01"

[[interfaces]]
name = "dmz"
device = "eth2"
address = "10.2.0.1/24"
role = "other"

[[interfaces]]
name = "sync"
device = "eth3"
address = "10.255.0.1/24"
role = "sync"

[routes]
default_gateway = "203.0.113.1"

[[virtual_ips]]
type = "ipalias"
interface = "wan"
address = "203.0.113.9/24"

[[virtual_ips]]
type = "carp"
interface = "lan"
address = "10.1.0.254/16"
vhid = 3
password = "p"
"#;

const WAN: IfIndex = 0;
const LAN: IfIndex = 1;
const DMZ: IfIndex = 2;

fn config(extra: &str) -> Config {
    let text = format!("{BASE}\n{extra}");
    parse("t.toml", &text).unwrap_or_else(|e| panic!("invalid:\n{e}"))
}

fn mac(device: &str) -> Option<MacAddr> {
    let n: u8 = device.strip_prefix("eth")?.parse().ok()?;
    Some(MacAddr([2, 0, 0, 0, 0, n + 1]))
}

fn build(c: &Config) -> Compiled {
    compile(c, 1, &mac).unwrap_or_else(|e| panic!("{e}"))
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn meta(in_if: IfIndex, p: u8, src: &str, dst: &str, sport: u16, dport: u16) -> PacketMeta {
    PacketMeta {
        in_if,
        proto: p,
        src: ip(src),
        dst: ip(dst),
        sport,
        dport,
    }
}

fn tcp(in_if: IfIndex, src: &str, dst: &str, dport: u16) -> PacketMeta {
    meta(in_if, proto::TCP, src, dst, 40000, dport)
}

/// The NAT of a TCP packet from `src` to `dst`:`dport` leaving by `out_if`.
fn nat(c: &Compiled, out_if: IfIndex, src: &str, dst: &str, dport: u16) -> Option<NatTarget> {
    c.generation
        .ruleset
        .outbound_nat(out_if, &tcp(LAN, src, dst, dport))
}

fn verdict(c: &Compiled, m: &PacketMeta) -> Option<u32> {
    match c.generation.ruleset.evaluate(m) {
        Verdict::Rule { number, .. } => Some(number),
        Verdict::DefaultDeny => None,
    }
}

// --- Outbound NAT ------------------------------------------------------------------------------

#[test]
fn automatic_translates_inside_networks_to_the_wan_address() {
    let c = build(&config(""));
    let to = |addr: &str, rule| {
        Some(NatTarget {
            rule,
            addr: ip(addr),
            ports: PortPolicy::Range(1024, 65535),
        })
    };
    // No config rules: the automatic ones are numbered from 1, lan's then dmz's.
    assert_eq!(
        nat(&c, WAN, "10.1.2.3", "8.8.8.8", 80),
        to("203.0.113.2", 1)
    );
    assert_eq!(
        nat(&c, WAN, "10.2.0.50", "8.8.8.8", 80),
        to("203.0.113.2", 2)
    );
    // Not the WAN's own network, not the sync link's, not outside.
    assert_eq!(nat(&c, WAN, "203.0.113.7", "8.8.8.8", 80), None);
    assert_eq!(nat(&c, WAN, "10.255.0.2", "8.8.8.8", 80), None);
    assert_eq!(nat(&c, WAN, "192.0.2.1", "8.8.8.8", 80), None);
    // Nothing leaving by the inside interfaces.
    assert_eq!(nat(&c, LAN, "10.2.0.50", "10.1.0.9", 80), None);
    assert_eq!(nat(&c, DMZ, "10.1.0.9", "10.2.0.50", 80), None);
    let descriptions: Vec<_> = c
        .generation
        .ruleset
        .nat_rules()
        .iter()
        .map(|r| r.description.as_str())
        .collect();
    assert_eq!(
        descriptions,
        [
            "automatic: lan net to wan address",
            "automatic: dmz net to wan address"
        ]
    );
}

#[test]
fn automatic_covers_every_wan() {
    let mut c = config("");
    c.interfaces[2].role = tandem_control::config::Role::Wan;
    let c = build(&c);
    assert_eq!(
        nat(&c, DMZ, "10.1.0.9", "8.8.8.8", 80).map(|t| t.addr),
        Some(ip("10.2.0.1"))
    );
    assert_eq!(
        nat(&c, WAN, "10.1.0.9", "8.8.8.8", 80).map(|t| t.addr),
        Some(ip("203.0.113.2"))
    );
    // A WAN's network is not translated to another WAN's address.
    assert_eq!(nat(&c, WAN, "10.2.0.9", "8.8.8.8", 80), None);
}

#[test]
fn manual_without_rules_translates_nothing() {
    let c = build(&config("[nat.outbound]\nmode = \"manual\""));
    assert!(c.generation.ruleset.nat_rules().is_empty());
    assert_eq!(nat(&c, WAN, "10.1.2.3", "8.8.8.8", 80), None);
}

#[test]
fn disabled_has_no_nat() {
    let c = build(&config("[nat.outbound]\nmode = \"disabled\""));
    assert!(c.generation.ruleset.nat_rules().is_empty());
    assert_eq!(nat(&c, WAN, "10.1.2.3", "8.8.8.8", 80), None);
}

const MANUAL_RULES: &str = r#"
[[nat.outbound.rules]]
interface = "wan"
no_nat = true
destination = { address = "198.51.100.0/24" }
description = "the partner's network sees our addresses"

[[nat.outbound.rules]]
interface = "wan"
disabled = true
source = { address = "10.1.0.0/16" }
translation = { address = "203.0.113.2" }

[[nat.outbound.rules]]
interface = "wan"
protocol = "udp"
source = { address = "10.1.0.0/16" }
destination = { port = 53 }
translation = { address = "203.0.113.9", static_port = true }

[[nat.outbound.rules]]
interface = "wan"
protocol = "tcp"
source = { address = "10.1.0.0/16" }
translation = { address = "203.0.113.9", port = "20000-29999" }

[[nat.outbound.rules]]
interface = "wan"
source = { address = "10.1.0.0/16" }
translation = { address = "interface address" }
"#;

#[test]
fn manual_rules_in_order_no_nat_first() {
    let c = build(&config(&format!(
        "[nat.outbound]\nmode = \"manual\"\n{MANUAL_RULES}"
    )));
    let rules = c.generation.ruleset.nat_rules();
    // The disabled rule (number 2) is not compiled; numbers are the config's positions.
    let numbers: Vec<u32> = rules.iter().map(|r| r.number).collect();
    assert_eq!(numbers, [1, 3, 4, 5]);
    // "Do not NAT" matched first wins over the translations after it.
    assert_eq!(nat(&c, WAN, "10.1.0.9", "198.51.100.4", 443), None);
    // UDP 53: static port to the IP alias.
    let udp = c
        .generation
        .ruleset
        .outbound_nat(WAN, &meta(LAN, proto::UDP, "10.1.0.9", "8.8.8.8", 5353, 53));
    assert_eq!(
        udp,
        Some(NatTarget {
            rule: 3,
            addr: ip("203.0.113.9"),
            ports: PortPolicy::Static,
        })
    );
    // TCP: the configured port range.
    assert_eq!(
        nat(&c, WAN, "10.1.0.9", "8.8.8.8", 443),
        Some(NatTarget {
            rule: 4,
            addr: ip("203.0.113.9"),
            ports: PortPolicy::Range(20000, 29999),
        })
    );
    // Anything else from the LAN: the interface address, default ports.
    let icmp = c
        .generation
        .ruleset
        .outbound_nat(WAN, &meta(LAN, proto::ICMP, "10.1.0.9", "8.8.8.8", 0, 0));
    assert_eq!(
        icmp,
        Some(NatTarget {
            rule: 5,
            addr: ip("203.0.113.2"),
            ports: PortPolicy::Range(1024, 65535),
        })
    );
    // Manual: the DMZ has no rule, so no automatic one either.
    assert_eq!(nat(&c, WAN, "10.2.0.9", "8.8.8.8", 443), None);
}

#[test]
fn hybrid_puts_the_automatic_rules_after_the_config_s() {
    let c = build(&config(&format!(
        "[nat.outbound]\nmode = \"hybrid\"\n{MANUAL_RULES}"
    )));
    let numbers: Vec<u32> = c
        .generation
        .ruleset
        .nat_rules()
        .iter()
        .map(|r| r.number)
        .collect();
    // Five config rules (one disabled), then lan's and dmz's automatic rules.
    assert_eq!(numbers, [1, 3, 4, 5, 6, 7]);
    assert_eq!(nat(&c, WAN, "10.1.0.9", "198.51.100.4", 443), None);
    assert_eq!(
        nat(&c, WAN, "10.1.0.9", "8.8.8.8", 443).map(|t| t.rule),
        Some(4)
    );
    assert_eq!(
        nat(&c, WAN, "10.2.0.9", "8.8.8.8", 443),
        Some(NatTarget {
            rule: 7,
            addr: ip("203.0.113.2"),
            ports: PortPolicy::Range(1024, 65535),
        })
    );
}

// --- Filter rules: resolution ------------------------------------------------------------------

#[test]
fn aliases_resolve_to_their_entries() {
    let c = build(&config(
        r#"
[[aliases]]
name = "admins"
type = "host"
entries = ["10.1.0.5", "10.1.0.6"]

[[aliases]]
name = "partners"
type = "network"
entries = ["198.51.100.0/24", "192.0.2.0/25"]

[[filter.rules]]
interface = "lan"
action = "pass"
protocol = "tcp"
source = { address = "admins" }
destination = { address = "partners", port = "22-23" }
log = true
"#,
    ));
    let r = &c.generation.ruleset;
    assert_eq!(
        r.evaluate(&tcp(LAN, "10.1.0.5", "192.0.2.100", 22)),
        Verdict::Rule {
            index: 0,
            number: 1,
            action: Action::Pass,
            keep_state: true,
            log: true,
        }
    );
    assert!(r
        .evaluate(&tcp(LAN, "10.1.0.6", "198.51.100.255", 23))
        .is_pass());
    // Outside the aliases, or the port range.
    assert_eq!(
        r.evaluate(&tcp(LAN, "10.1.0.7", "192.0.2.100", 22)),
        Verdict::DefaultDeny
    );
    assert_eq!(
        r.evaluate(&tcp(LAN, "10.1.0.5", "192.0.2.128", 22)),
        Verdict::DefaultDeny
    );
    assert_eq!(
        r.evaluate(&tcp(LAN, "10.1.0.5", "192.0.2.100", 24)),
        Verdict::DefaultDeny
    );
    // A port range matches TCP and UDP only; this rule is TCP.
    let udp = meta(LAN, proto::UDP, "10.1.0.5", "192.0.2.100", 40000, 22);
    assert_eq!(r.evaluate(&udp), Verdict::DefaultDeny);
}

#[test]
fn self_is_every_address_of_the_box_vips_included() {
    let c = build(&config(
        r#"
[[filter.rules]]
interface = "wan"
action = "reject"
protocol = "tcp"
destination = { address = "self", port = 22 }

[[filter.rules]]
interface = "wan"
action = "pass"
protocol = "tcp"
destination = { port = 22 }
"#,
    ));
    let cfg = config("");
    let r = &c.generation.ruleset;
    for own in cfg.self_addrs() {
        let v = r.evaluate(&tcp(WAN, "192.0.2.1", &own.to_string(), 22));
        assert_eq!(
            (
                v.action(),
                verdict(&c, &tcp(WAN, "192.0.2.1", &own.to_string(), 22))
            ),
            (Action::Reject, Some(1)),
            "{own}"
        );
    }
    // The box's addresses: 4 interfaces, the IP alias and the CARP VIP.
    assert_eq!(cfg.self_addrs().len(), 6);
    for own in ["203.0.113.9", "10.1.0.254", "10.255.0.1", "10.2.0.1"] {
        assert_eq!(
            verdict(&c, &tcp(WAN, "192.0.2.1", own, 22)),
            Some(1),
            "{own}"
        );
    }
    // A neighbour of the box is not the box.
    assert_eq!(
        verdict(&c, &tcp(WAN, "192.0.2.1", "203.0.113.3", 22)),
        Some(2)
    );
    assert_eq!(
        verdict(&c, &tcp(WAN, "192.0.2.1", "10.1.0.253", 22)),
        Some(2)
    );
}

#[test]
fn invert_and_interface_nets() {
    let c = build(&config(
        r#"
[[filter.rules]]
interface = "dmz"
action = "block"
disabled = true

[[filter.rules]]
interface = "dmz"
action = "block"
source = { address = "dmz net", invert = true }
description = "anti-spoofing"

[[filter.rules]]
interface = "dmz"
action = "pass"
destination = { address = "lan net", invert = true }

[[filter.rules]]
interface = "dmz"
action = "pass"
protocol = "icmp"
"#,
    ));
    let r = &c.generation.ruleset;
    // Rule 1 is disabled: not compiled, and the numbers keep the config's positions.
    let numbers: Vec<u32> = r.rules(DMZ).iter().map(|r| r.number).collect();
    assert_eq!(numbers, [2, 3, 4]);
    // Spoofed source: blocked by rule 2.
    assert_eq!(verdict(&c, &tcp(DMZ, "10.1.0.9", "8.8.8.8", 80)), Some(2));
    assert_eq!(
        r.evaluate(&tcp(DMZ, "10.1.0.9", "8.8.8.8", 80)).action(),
        Action::Block
    );
    // From the DMZ to anywhere but the LAN: rule 3.
    assert_eq!(verdict(&c, &tcp(DMZ, "10.2.0.9", "8.8.8.8", 80)), Some(3));
    assert_eq!(
        verdict(&c, &tcp(DMZ, "10.2.0.9", "10.255.0.1", 80)),
        Some(3)
    );
    // To the LAN: only ICMP (rule 4), TCP is default-denied.
    assert_eq!(verdict(&c, &tcp(DMZ, "10.2.0.9", "10.1.0.9", 80)), None);
    let ping = meta(DMZ, proto::ICMP, "10.2.0.9", "10.1.0.9", 0, 0);
    assert_eq!(verdict(&c, &ping), Some(4));
    // The other interfaces have no rules: everything is default-denied there.
    assert!(r.rules(WAN).is_empty() && r.rules(LAN).is_empty());
    assert_eq!(verdict(&c, &tcp(LAN, "10.1.0.9", "8.8.8.8", 80)), None);
    assert_eq!(r.rules(DMZ)[0].description, "anti-spoofing");
}

#[test]
fn protocols() {
    let c = build(&config(
        r#"
[[filter.rules]]
interface = "lan"
action = "pass"
protocol = "carp"

[[filter.rules]]
interface = "lan"
action = "pass"
protocol = "pfsync"

[[filter.rules]]
interface = "lan"
action = "pass"
protocol = "tcp/udp"
source = { port = 53 }

[[filter.rules]]
interface = "lan"
action = "block"
protocol = "udp"

[[filter.rules]]
interface = "lan"
action = "pass"
protocol = "any"
"#,
    ));
    let m = |p, sport, dport| meta(LAN, p, "10.1.0.9", "10.2.0.9", sport, dport);
    assert_eq!(verdict(&c, &m(112, 0, 0)), Some(1));
    assert_eq!(verdict(&c, &m(240, 0, 0)), Some(2));
    assert_eq!(verdict(&c, &m(proto::TCP, 53, 9)), Some(3));
    assert_eq!(verdict(&c, &m(proto::UDP, 53, 9)), Some(3));
    assert_eq!(verdict(&c, &m(proto::UDP, 54, 9)), Some(4));
    assert_eq!(verdict(&c, &m(proto::TCP, 54, 9)), Some(5));
    assert_eq!(verdict(&c, &m(47, 0, 0)), Some(5));
    // Block and reject keep no state.
    let rules = c.generation.ruleset.rules(LAN);
    assert!(rules[0].keep_state && !rules[3].keep_state);
}

// --- VIPs, interfaces, routes ------------------------------------------------------------------

#[test]
fn a_vip_on_the_sync_link_is_refused() {
    let e = refused(
        r#"
[[virtual_ips]]
type = "ipalias"
interface = "sync"
address = "10.255.0.9/24"
"#,
    );
    assert!(
        e.contains("virtual_ips[2].interface: sync is the sync link"),
        "{e}"
    );
}

#[test]
fn vip_types() {
    let c = build(&config(
        r#"
[[virtual_ips]]
type = "proxyarp"
interface = "dmz"
address = "10.2.0.100/24"

[[virtual_ips]]
type = "other"
interface = "dmz"
address = "10.2.0.101/24"
"#,
    ));
    let vips: Vec<_> = c
        .generation
        .vips
        .iter()
        .map(|v| (v.if_index, v.addr, v.prefix_len, v.vhid))
        .collect();
    // proxyarp is always held like an ipalias; other is not compiled.
    assert_eq!(
        vips,
        [
            (WAN, ip("203.0.113.9"), 24, None),
            (LAN, ip("10.1.0.254"), 16, Some(3)),
            (DMZ, ip("10.2.0.100"), 24, None),
        ]
    );
}

#[test]
fn mac_override_and_devices() {
    let c = build(&config(""));
    let macs: Vec<_> = c.generation.interfaces.iter().map(|i| i.mac).collect();
    assert_eq!(
        macs,
        [
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr([2, 0, 0, 0, 1, 1]), // the config's mac, not eth1's
            MacAddr([2, 0, 0, 0, 0, 3]),
        ]
    );
    assert_eq!(c.devices, ["eth0", "eth1", "eth2"]);
    // The override means eth1's MAC is never asked for.
    let c2 = compile(&config(""), 1, &|d: &str| {
        assert_ne!(d, "eth1", "asked for an overridden device's MAC");
        assert_ne!(d, "eth3", "asked for the sync device's MAC");
        mac(d)
    });
    assert!(c2.is_ok());
}

#[test]
fn static_routes_leave_by_their_gateway_s_interface() {
    let c = build(&config(
        r#"
[[routes.static]]
network = "10.50.0.0/16"
gateway = "10.1.0.2"

[[routes.static]]
network = "10.2.0.128/25"
gateway = "203.0.113.5"
"#,
    ));
    let t = &c.generation.routes;
    let hop = |d: &str| t.next_hop(ip(d)).map(|h| (h.out_if, h.addr));
    assert_eq!(hop("10.50.3.4"), Some((LAN, ip("10.1.0.2"))));
    // More specific than the connected DMZ network: the static route wins.
    assert_eq!(hop("10.2.0.200"), Some((WAN, ip("203.0.113.5"))));
    assert_eq!(hop("10.2.0.20"), Some((DMZ, ip("10.2.0.20"))));
    assert_eq!(hop("1.1.1.1"), Some((WAN, ip("203.0.113.1"))));
    let prefixes: Vec<String> = t.routes().iter().map(|r| r.prefix.to_string()).collect();
    assert_eq!(
        prefixes,
        [
            "203.0.113.0/24",
            "10.1.0.0/16",
            "10.2.0.0/24",
            "10.50.0.0/16",
            "10.2.0.128/25",
            "0.0.0.0/0"
        ]
    );
}

#[test]
fn no_default_gateway_no_default_route() {
    let mut cfg = config("");
    cfg.routes.default_gateway = None;
    let c = build(&cfg);
    assert_eq!(c.generation.routes.lookup(ip("1.1.1.1")), None);
    assert_eq!(c.generation.routes.len(), 3);
}

#[test]
fn device_mac_refuses_paths_and_missing_devices() {
    assert_eq!(device_mac("../../etc"), None);
    assert_eq!(device_mac(".."), None);
    assert_eq!(device_mac(""), None);
    assert_eq!(device_mac("tandem-no-such-device"), None);
}

// --- Errors ------------------------------------------------------------------------------------

fn error(c: &Config, macs: &dyn Fn(&str) -> Option<MacAddr>) -> String {
    compile(c, 1, macs).unwrap_err().to_string()
}

/// Validation's refusal of BASE plus `extra`: what compile would refuse is refused before it, so
/// that `--check-config` never passes a config the daemon refuses.
fn refused(extra: &str) -> String {
    let text = format!("{BASE}\n{extra}");
    parse("t.toml", &text).unwrap_err().to_string()
}

#[test]
fn error_no_mac() {
    let e = compile(&config(""), 1, &|d: &str| {
        (d != "eth2").then(|| mac(d)).flatten()
    });
    assert_eq!(
        e.unwrap_err(),
        CompileError::NoMac {
            interface: "dmz".into(),
            device: "eth2".into()
        }
    );
    assert_eq!(
        error(&config(""), &|_| None),
        "interface wan: no MAC address for device eth0"
    );
}

#[test]
fn error_bad_mac() {
    assert_eq!(
        error(&config(""), &|_| Some(MacAddr::ZERO)),
        "interface wan: device eth0 has MAC 00:00:00:00:00:00, not a unicast address"
    );
    assert_eq!(
        error(&config(""), &|_| Some(MacAddr([1, 0, 0x5e, 0, 0, 1]))),
        "interface wan: device eth0 has MAC 01:00:5e:00:00:01, not a unicast address"
    );
}

#[test]
fn error_too_many_interfaces() {
    let mut c = config("");
    let template = c.interfaces[2].clone();
    // 3 + 254 = 257 dataplane interfaces: one more than an IfIndex numbers.
    for i in 0..254u32 {
        let mut f = template.clone();
        f.name = format!("x{i}");
        f.device = format!("x{i}");
        f.address = IfAddr::new(Ipv4Addr::from_bits(0x0b00_0001 + (i << 8)), 24).unwrap();
        c.interfaces.push(f);
    }
    assert_eq!(
        error(&c, &|_| Some(MacAddr([2, 0, 0, 0, 0, 9]))),
        "interfaces: 257 dataplane interfaces, at most 256"
    );
    c.interfaces.pop();
    assert!(compile(&c, 1, &|_| Some(MacAddr([2, 0, 0, 0, 0, 9]))).is_ok());
}

#[test]
fn error_gateway_on_the_sync_link() {
    let e = refused(
        r#"
[[routes.static]]
network = "10.50.0.0/16"
gateway = "10.255.0.2"
"#,
    );
    assert!(
        e.contains("routes.static[0].gateway: 10.255.0.2 is on interface sync, the sync link"),
        "{e}"
    );
    // A config that skipped validation: compile refuses it too.
    let mut c = config("");
    c.routes.default_gateway = Some(ip("10.255.0.2"));
    assert_eq!(
        error(&c, &mac),
        "routes.default_gateway: 10.255.0.2 is not on the network of a dataplane interface"
    );
}

#[test]
fn error_nat_by_the_sync_link() {
    let rules = r#"
[nat.outbound]
mode = "hybrid"

[[nat.outbound.rules]]
interface = "wan"

[[nat.outbound.rules]]
interface = "sync"
"#;
    let e = refused(rules);
    assert!(
        e.contains("nat.outbound.rules[1].interface: sync is the sync link"),
        "{e}"
    );
    // A config that skipped validation: compile refuses it too, unless the rule is disabled
    // (a disabled rule is not compiled, so it cannot fail).
    let mut c = config(&rules.replace("\"sync\"", "\"wan\""));
    c.nat.outbound.rules[1].interface = "sync".into();
    assert_eq!(
        error(&c, &mac),
        "nat.outbound.rules[1].interface: sync is not a dataplane interface"
    );
    c.nat.outbound.rules[1].disabled = true;
    assert!(compile(&c, 1, &mac).is_ok());
}

#[test]
fn error_nat_source_port() {
    let e = refused(
        r#"
[nat.outbound]
mode = "manual"

[[nat.outbound.rules]]
interface = "wan"
protocol = "udp"
source = { address = "10.1.0.0/16", port = 500 }
translation = { static_port = true }
"#,
    );
    assert!(
        e.contains("nat.outbound.rules[0].source.port: outbound NAT rules match no source port"),
        "{e}"
    );
}

#[test]
fn per_source_limits_reach_the_dataplane_rule() {
    use tandem_dataplane::state::{ConnRate, SrcLimits};
    let c = build(&config(
        r#"
[[filter.rules]]
interface = "lan"
action = "pass"
protocol = "tcp"
max_src_states = 100
max_src_conn_rate = "50/5"

[[filter.rules]]
interface = "lan"
action = "pass"
"#,
    ));
    let rules = c.generation.ruleset.rules(LAN);
    assert_eq!(
        rules[0].src_limits,
        SrcLimits {
            max_states: 100,
            rate: Some(ConnRate {
                conns: 50,
                seconds: 5
            }),
        }
    );
    assert_eq!(rules[1].src_limits, SrcLimits::NONE);
}

#[test]
fn a_state_limit_above_the_tables_size_at_start_is_held_and_said() {
    use tandem_control::compile::apply_table_limits;
    use tandem_dataplane::state::{StateTable, TableConfig};
    let mut c = config("");
    c.system.state_limit = 1000;
    let states = StateTable::new(TableConfig {
        limit: 1000,
        capacity: 1000,
        ..TableConfig::default()
    });
    assert_eq!(apply_table_limits(&states, &c.system), None);
    assert_eq!(states.limit(), 1000);
    // Raised far past what the index was sized for: held, and the note says so.
    c.system.state_limit = 1_000_000;
    let note = apply_table_limits(&states, &c.system).expect("a held limit is said");
    assert!(
        note.starts_with("system.state_limit 1000000 is above"),
        "{note}"
    );
    assert!(states.limit() < 1_000_000);
    assert!(
        note.contains(&format!("held at {}", states.limit())),
        "{note}"
    );
}
