//! Each section of the config, parsed from a TOML snippet into the expected typed values, and the
//! lookups the dataplane compiler will use.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use tandem_control::config::{
    parse, Action, AddrSpec, AliasType, Carp, Config, Endpoint, IpVersion, MacAddr, NatMode,
    PortRange, Prefix, Protocol, Role, SyncSection, TranslationAddr, VipKind,
    DEFAULT_CONFIG_SYNC_PORT, DEFAULT_RING_SIZE, DEFAULT_STATE_LIMIT, DEFAULT_WORKERS,
    STATE_SYNC_MULTICAST,
};

/// A valid box with three interfaces; tests append sections.
const BASE: &str = r#"
[system]
hostname = "fw"
host_id = 1

[[interfaces]]
name = "wan"
device = "eth0"
address = "172.25.46.101/24"
role = "wan"

[[interfaces]]
name = "lan"
device = "eth1"
address = "192.168.0.11/24"
role = "lan"

[[interfaces]]
name = "sync"
device = "eth2"
address = "10.255.0.1/24"
role = "sync"
"#;

fn ok(snippet: &str) -> Config {
    let text = format!("{BASE}{snippet}");
    match parse("t.toml", &text) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn prefix(s: &str) -> Prefix {
    s.parse().unwrap()
}

#[test]
fn system_defaults_and_knobs() {
    let c = ok("");
    assert_eq!(c.system.hostname, "fw");
    assert_eq!(c.system.host_id.get(), 1);
    assert_eq!(c.system.workers, DEFAULT_WORKERS);
    assert_eq!(c.system.ring_size, DEFAULT_RING_SIZE);
    assert_eq!(c.system.state_limit, DEFAULT_STATE_LIMIT);
    assert!(!c.system.kill_states_on_reload, "off by default, as pf");

    let text = BASE.replace(
        "host_id = 1",
        "host_id = 4294967295\nworkers = 4\nring_size = 1024\nstate_limit = 1000000\nkill_states_on_reload = true",
    );
    let c = parse("t.toml", &text).unwrap();
    assert_eq!(c.system.host_id.get(), u32::MAX);
    assert_eq!(c.system.workers, 4);
    assert_eq!(c.system.ring_size, 1024);
    assert_eq!(c.system.state_limit, 1_000_000);
    assert!(c.system.kill_states_on_reload);
}

#[test]
fn interfaces() {
    let c = ok(r#"
[[interfaces]]
name = "dmz"
device = "enp3s0f1"
address = "10.1.0.1/30"
role = "other"
description = "the DMZ"
mac = "02:00:00:00:0A:01"
"#);
    assert_eq!(c.interfaces.len(), 4);
    let dmz = c.interface("dmz").unwrap();
    assert_eq!(dmz.device, "enp3s0f1");
    assert_eq!(dmz.address, "10.1.0.1/30".parse().unwrap());
    assert_eq!(dmz.ip(), ip("10.1.0.1"));
    assert_eq!(dmz.network(), prefix("10.1.0.0/30"));
    assert_eq!(dmz.role, Role::Other);
    assert_eq!(dmz.description, "the DMZ");
    assert_eq!(dmz.mac, Some(MacAddr([2, 0, 0, 0, 0x0a, 1])));
    let wan = c.interface("wan").unwrap();
    assert_eq!(
        (wan.role, wan.mac, wan.description.as_str()),
        (Role::Wan, None, "")
    );
    assert_eq!(c.interface_by_device("eth1").unwrap().name, "lan");
    assert_eq!(c.interface_network("lan"), Some(prefix("192.168.0.0/24")));
    assert_eq!(c.interface_network("nope"), None);
    assert_eq!(c.interface_for(ip("10.255.0.2")).unwrap().name, "sync");
    assert!(c.interface_for(ip("8.8.8.8")).is_none());
}

#[test]
fn routes() {
    let c = ok(r#"
[routes]
default_gateway = "172.25.46.1"

[[routes.static]]
network = "10.10.0.0/16"
gateway = "192.168.0.254"
description = "behind the LAN router"

[[routes.static]]
network = "203.0.113.7"
gateway = "172.25.46.254"
"#);
    assert_eq!(c.routes.default_gateway, Some(ip("172.25.46.1")));
    assert_eq!(c.routes.static_routes.len(), 2);
    let r0 = &c.routes.static_routes[0];
    assert_eq!(
        (r0.network, r0.gateway),
        (prefix("10.10.0.0/16"), ip("192.168.0.254"))
    );
    assert_eq!(r0.description, "behind the LAN router");
    assert_eq!(c.routes.static_routes[1].network, prefix("203.0.113.7/32"));

    assert_eq!(ok("").routes.default_gateway, None);
}

#[test]
fn aliases() {
    let c = ok(r#"
[[aliases]]
name = "cluster_pfSense"
type = "host"
entries = ["10.255.0.1", "10.255.0.2"]
description = "both sync addresses"

[[aliases]]
name = "inside"
type = "network"
entries = ["192.168.0.0/24", "10.10.0.0/16", "198.51.100.9"]
"#);
    let a = c.alias("cluster_pfSense").unwrap();
    assert_eq!(a.kind, AliasType::Host);
    assert_eq!(
        a.entries,
        vec![prefix("10.255.0.1/32"), prefix("10.255.0.2/32")]
    );
    assert_eq!(a.description, "both sync addresses");
    assert!(a.contains(ip("10.255.0.2")) && !a.contains(ip("10.255.0.3")));
    let n = c.alias("inside").unwrap();
    assert_eq!(n.kind, AliasType::Network);
    assert_eq!(
        n.entries,
        vec![
            prefix("192.168.0.0/24"),
            prefix("10.10.0.0/16"),
            prefix("198.51.100.9/32")
        ]
    );
    assert!(n.contains(ip("10.10.200.1")));
    assert!(
        c.alias("cluster_pfsense").is_none(),
        "alias names are case-sensitive"
    );
}

#[test]
fn virtual_ips() {
    let c = ok(r#"
[[virtual_ips]]
type = "carp"
interface = "wan"
address = "172.25.46.100/24"
vhid = 1
password = "secret"
advbase = 1
advskew = 0
description = "CARP WAN"

[[virtual_ips]]
type = "carp"
interface = "lan"
address = "192.168.0.10/24"
vhid = 2
password = "secret2"

[[virtual_ips]]
type = "ipalias"
interface = "lan"
address = "192.168.0.20/32"

[[virtual_ips]]
type = "proxyarp"
interface = "wan"
address = "172.25.46.50/24"

[[virtual_ips]]
type = "other"
interface = "wan"
address = "172.25.46.51/24"

[[virtual_ips]]
type = "carp"
interface = "wan"
address = "172.25.46.99/24"
vhid = 1
password = "secret"
advskew = 0
"#);
    let v = &c.virtual_ips;
    assert_eq!(v.len(), 6);
    assert_eq!(v[0].interface, "wan");
    assert_eq!(v[0].address, "172.25.46.100/24".parse().unwrap());
    assert_eq!(v[0].description, "CARP WAN");
    assert_eq!(
        v[0].kind,
        VipKind::Carp(Carp {
            vhid: 1,
            password: "secret".into(),
            advbase: 1,
            advskew: 0
        })
    );
    // advbase defaults to 1 and advskew to 0.
    assert_eq!(
        v[1].carp(),
        Some(&Carp {
            vhid: 2,
            password: "secret2".into(),
            advbase: 1,
            advskew: 0
        })
    );
    assert_eq!(v[2].kind, VipKind::IpAlias);
    assert_eq!(v[2].carp(), None);
    assert_eq!(v[3].kind, VipKind::ProxyArp);
    assert_eq!(v[4].kind, VipKind::Other);
    assert_eq!(c.vips_on("lan").count(), 2);

    // One advertisement per VHID and interface, with its addresses in HMAC order.
    let groups = c.carp_groups();
    assert_eq!(groups.len(), 2);
    assert_eq!((groups[0].interface, groups[0].carp.vhid), ("wan", 1));
    assert_eq!(
        groups[0].addresses,
        vec![ip("172.25.46.99"), ip("172.25.46.100")]
    );
    assert_eq!((groups[1].interface, groups[1].carp.vhid), ("lan", 2));
    assert_eq!(groups[1].addresses, vec![ip("192.168.0.10")]);
    assert_eq!(groups[0].carp.advert_interval(), Duration::from_secs(1));
}

#[test]
fn carp_fast_mode_and_skew() {
    let c = ok(r#"
[[virtual_ips]]
type = "carp"
interface = "lan"
address = "192.168.0.10/24"
vhid = 7
password = "12345678901234567890"
advbase = 0
advskew = 26
"#);
    let carp = c.virtual_ips[0].carp().unwrap();
    assert!(carp.is_fast());
    // 26/256 s = 101.5625 ms.
    assert_eq!(carp.advert_interval(), Duration::from_micros(101_562));

    let c = ok(r#"
[[virtual_ips]]
type = "carp"
interface = "lan"
address = "192.168.0.10/24"
vhid = 255
password = "p"
advbase = 255
advskew = 254
"#);
    let carp = c.virtual_ips[0].carp().unwrap();
    assert!(!carp.is_fast());
    assert_eq!((carp.vhid, carp.advbase, carp.advskew), (255, 255, 254));
    assert_eq!(
        carp.advert_interval(),
        Duration::from_secs(255) + Duration::from_micros(992_187)
    );
}

#[test]
fn outbound_nat() {
    let c = ok(r#"
[[virtual_ips]]
type = "carp"
interface = "wan"
address = "172.25.46.100/24"
vhid = 1
password = "secret"

[nat.outbound]
mode = "hybrid"

[[nat.outbound.rules]]
interface = "wan"
protocol = "any"
source = { address = "192.168.0.0/24" }
destination = { address = "any" }
translation = { address = "172.25.46.100" }
description = "LAN out by the WAN VIP"

[[nat.outbound.rules]]
disabled = true
no_nat = true
interface = "wan"
protocol = "tcp"
source = { address = "lan net", port = "1024-65535" }
destination = { address = "203.0.113.0/24", invert = true, port = 443 }
no_sync = true

[[nat.outbound.rules]]
interface = "wan"
protocol = "udp"
source = { address = "192.168.0.0/24" }
translation = { port = "20000-29999" }

[[nat.outbound.rules]]
interface = "wan"
protocol = "udp"
translation = { address = "interface address", static_port = true }
"#);
    let nat = &c.nat.outbound;
    assert_eq!(nat.mode, NatMode::Hybrid);
    assert_eq!(nat.rules.len(), 4);

    let r0 = &nat.rules[0];
    assert!(!r0.disabled && !r0.no_nat && !r0.no_sync);
    assert_eq!(r0.interface, "wan");
    assert_eq!(r0.protocol, Protocol::Any);
    assert_eq!(
        r0.source,
        Endpoint {
            addr: AddrSpec::Network(prefix("192.168.0.0/24")),
            invert: false,
            port: None
        }
    );
    assert_eq!(r0.destination, Endpoint::ANY);
    assert_eq!(
        r0.translation.address,
        TranslationAddr::Addr(ip("172.25.46.100"))
    );
    assert_eq!(
        (r0.translation.port, r0.translation.static_port),
        (None, false)
    );
    assert_eq!(r0.description, "LAN out by the WAN VIP");
    assert_eq!(c.translation_ip(r0), Some(ip("172.25.46.100")));

    let r1 = &nat.rules[1];
    assert!(r1.disabled && r1.no_nat && r1.no_sync);
    assert_eq!(r1.protocol, Protocol::Tcp);
    assert_eq!(r1.source.addr, AddrSpec::InterfaceNet("lan".into()));
    assert_eq!(
        r1.source.port,
        Some(PortRange {
            lo: 1024,
            hi: 65535
        })
    );
    assert_eq!(
        r1.destination,
        Endpoint {
            addr: AddrSpec::Network(prefix("203.0.113.0/24")),
            invert: true,
            port: Some(PortRange::single(443)),
        }
    );
    // No translation written: the interface's address.
    assert_eq!(r1.translation.address, TranslationAddr::InterfaceAddress);

    let r2 = &nat.rules[2];
    assert_eq!(r2.translation.address, TranslationAddr::InterfaceAddress);
    assert_eq!(
        r2.translation.port,
        Some(PortRange {
            lo: 20000,
            hi: 29999
        })
    );
    assert_eq!(c.translation_ip(r2), Some(ip("172.25.46.101")));

    let r3 = &nat.rules[3];
    assert!(r3.translation.static_port);

    // Without a [nat] section: automatic, no rules (pfSense's default).
    let c = ok("");
    assert_eq!(c.nat.outbound.mode, NatMode::Automatic);
    assert!(c.nat.outbound.rules.is_empty());
    assert_eq!(
        ok("[nat.outbound]\nmode = \"disabled\"\n")
            .nat
            .outbound
            .mode,
        NatMode::Disabled
    );
    assert_eq!(
        ok("[nat.outbound]\nmode = \"manual\"\n").nat.outbound.mode,
        NatMode::Manual
    );
}

#[test]
fn filter_rules() {
    let c = ok(r#"
[[aliases]]
name = "cluster_pfSense"
type = "host"
entries = ["10.255.0.1", "10.255.0.2"]

[[filter.rules]]
interface = "sync"
action = "pass"
ip_version = "inet"
protocol = "tcp"
source = { address = "cluster_pfSense" }
destination = { address = "self", invert = false, port = "8443" }
log = true
description = "config sync"

[[filter.rules]]
interface = "sync"
action = "pass"
protocol = "pfsync"
source = { address = "cluster_pfSense" }
destination = { address = "self" }

[[filter.rules]]
interface = "lan"
action = "reject"
protocol = "tcp/udp"
source = { address = "192.168.0.99" }
destination = { address = "lan net", invert = true, port = "1024-65535" }
no_sync = true

[[filter.rules]]
interface = "lan"
action = "pass"
disabled = true
protocol = "icmp"

[[filter.rules]]
interface = "lan"
action = "pass"
protocol = "udp"
destination = { port = 53 }

[[filter.rules]]
interface = "wan"
action = "block"
protocol = "carp"
"#);
    let rules = &c.filter.rules;
    assert_eq!(rules.len(), 6);
    let r0 = &rules[0];
    assert_eq!(
        (r0.interface.as_str(), r0.action, r0.protocol),
        ("sync", Action::Pass, Protocol::Tcp)
    );
    assert_eq!(r0.ip_version, IpVersion::Inet);
    assert_eq!(r0.source.addr, AddrSpec::Alias("cluster_pfSense".into()));
    assert_eq!(
        r0.destination,
        Endpoint {
            addr: AddrSpec::SelfAddrs,
            invert: false,
            port: Some(PortRange::single(8443))
        }
    );
    assert!(r0.log && !r0.disabled && !r0.no_sync);
    assert_eq!(r0.description, "config sync");
    assert_eq!(rules[1].protocol, Protocol::Pfsync);
    assert_eq!(rules[1].protocol.numbers(), &[240]);

    let r2 = &rules[2];
    assert_eq!((r2.action, r2.protocol), (Action::Reject, Protocol::TcpUdp));
    assert_eq!(r2.source.addr, AddrSpec::Addr(ip("192.168.0.99")));
    assert_eq!(
        r2.destination,
        Endpoint {
            addr: AddrSpec::InterfaceNet("lan".into()),
            invert: true,
            port: Some(PortRange {
                lo: 1024,
                hi: 65535
            }),
        }
    );
    assert!(r2.no_sync && !r2.log);
    assert!(rules[3].disabled);
    assert_eq!(rules[3].source, Endpoint::ANY);
    assert_eq!(rules[4].destination.port, Some(PortRange::single(53)));
    assert_eq!(rules[5].protocol, Protocol::Carp);

    // The rules of one interface, enabled ones only, in file order.
    let lan: Vec<Action> = c.rules_on("lan").map(|r| r.action).collect();
    assert_eq!(lan, vec![Action::Reject, Action::Pass]);
    assert_eq!(c.rules_on("sync").count(), 2);
}

#[test]
fn address_specs_resolve() {
    let c = ok(r#"
[[aliases]]
name = "cluster_pfSense"
type = "host"
entries = ["10.255.0.1", "10.255.0.2"]

[[virtual_ips]]
type = "carp"
interface = "lan"
address = "192.168.0.10/24"
vhid = 2
password = "secret"
"#);
    assert_eq!(c.resolve(&AddrSpec::Any), None);
    assert_eq!(
        c.resolve(&AddrSpec::Addr(ip("1.2.3.4"))),
        Some(vec![prefix("1.2.3.4/32")])
    );
    assert_eq!(
        c.resolve(&AddrSpec::Network(prefix("10.0.0.0/8"))),
        Some(vec![prefix("10.0.0.0/8")])
    );
    assert_eq!(
        c.resolve(&AddrSpec::Alias("cluster_pfSense".into())),
        Some(vec![prefix("10.255.0.1/32"), prefix("10.255.0.2/32")])
    );
    assert_eq!(
        c.resolve(&AddrSpec::InterfaceNet("lan".into())),
        Some(vec![prefix("192.168.0.0/24")])
    );
    // "self": every interface address and every VIP, sorted.
    let own = vec![
        ip("10.255.0.1"),
        ip("172.25.46.101"),
        ip("192.168.0.10"),
        ip("192.168.0.11"),
    ];
    assert_eq!(c.self_addrs(), own);
    assert_eq!(
        c.resolve(&AddrSpec::SelfAddrs),
        Some(own.iter().copied().map(Prefix::host).collect())
    );
    assert!(c.is_self(ip("192.168.0.10")) && c.is_self(ip("10.255.0.1")));
    assert!(!c.is_self(ip("192.168.0.12")));
}

#[test]
fn ha_state_sync() {
    let c = ok(r#"
[ha.state_sync]
enabled = true
interface = "sync"
peer = "10.255.0.2"
key = "0123456789abcdef"
"#);
    let s = c.ha.state_sync.as_ref().unwrap();
    assert!(s.enabled);
    assert_eq!(s.interface, "sync");
    assert_eq!(s.peer, Some(ip("10.255.0.2")));
    assert_eq!(s.destination(), ip("10.255.0.2"));
    assert_eq!(s.key, "0123456789abcdef");
    assert_eq!(c.sync_interface().unwrap().device, "eth2");
    assert_eq!(c.ha.config_sync, None);

    // No peer: multicast, as pfsync; enabled defaults to true.
    let c = ok("[ha.state_sync]\ninterface = \"sync\"\nkey = \"0123456789abcdef\"\n");
    let s = c.ha.state_sync.as_ref().unwrap();
    assert!(s.enabled);
    assert_eq!(s.peer, None);
    assert_eq!(s.destination(), STATE_SYNC_MULTICAST);

    let c =
        ok("[ha.state_sync]\nenabled = false\ninterface = \"sync\"\nkey = \"0123456789abcdef\"\n");
    assert!(!c.ha.state_sync.unwrap().enabled);

    // No [ha]: a box alone.
    let c = ok("");
    assert_eq!((c.ha.state_sync, c.ha.config_sync), (None, None));
}

#[test]
fn ha_config_sync() {
    // The primary: a target, a section list.
    let c = ok(r#"
[ha.state_sync]
interface = "sync"
peer = "10.255.0.2"
key = "0123456789abcdef"

[ha.config_sync]
sync_to = "10.255.0.2"
port = 9443
username = "admin"
password = "pw"
sections = ["rules", "aliases", "nat", "virtual_ips", "static_routes"]
"#);
    let cs = c.ha.config_sync.as_ref().unwrap();
    assert!(cs.pushes());
    assert_eq!(cs.sync_to, Some(ip("10.255.0.2")));
    assert_eq!(cs.port, 9443);
    assert_eq!(
        (cs.username.as_str(), cs.password.as_str()),
        ("admin", "pw")
    );
    let want: BTreeSet<SyncSection> = [
        SyncSection::Rules,
        SyncSection::Aliases,
        SyncSection::Nat,
        SyncSection::VirtualIps,
        SyncSection::StaticRoutes,
    ]
    .into_iter()
    .collect();
    assert_eq!(cs.sections, want);

    // Without sections: all of them (the seed's "Toggle All"), and the default port.
    let c = ok(r#"
[ha.config_sync]
sync_to = "10.255.0.2"
username = "admin"
password = "pw"
"#);
    let cs = c.ha.config_sync.as_ref().unwrap();
    assert_eq!(cs.sections.len(), 18);
    assert_eq!(cs.sections, SyncSection::ALL.iter().copied().collect());
    assert_eq!(cs.port, DEFAULT_CONFIG_SYNC_PORT);

    // The secondary: no target, it accepts pushes; it pushes no section.
    let c = ok("[ha.config_sync]\nusername = \"admin\"\npassword = \"pw\"\n");
    let cs = c.ha.config_sync.as_ref().unwrap();
    assert!(!cs.pushes());
    assert!(cs.sections.is_empty());
}

#[test]
fn every_seed_section_name_parses() {
    let names = [
        "users",
        "auth_servers",
        "certificates",
        "rules",
        "schedules",
        "aliases",
        "nat",
        "ipsec",
        "openvpn",
        "dhcp",
        "wol",
        "static_routes",
        "load_balancer",
        "virtual_ips",
        "traffic_shaper",
        "traffic_shaper_limiters",
        "dns",
        "captive_portal",
    ];
    let list = names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let c = ok(&format!(
        "[ha.config_sync]\nsync_to = \"10.255.0.2\"\nusername = \"a\"\npassword = \"b\"\nsections = [{list}]\n"
    ));
    let got: Vec<&str> =
        c.ha.config_sync
            .unwrap()
            .sections
            .iter()
            .map(|s| s.name())
            .collect();
    assert_eq!(got, names);
}

#[test]
fn the_documented_example_is_valid() {
    let doc = include_str!("../../docs/config.md");
    let start = doc
        .find("```toml\n")
        .expect("a toml example in docs/config.md")
        + 8;
    let len = doc[start..].find("```").unwrap();
    let text = &doc[start..start + len];
    let c = match parse("docs/config.md", text) {
        Ok(c) => c,
        Err(e) => panic!("{e}\n{text}"),
    };
    assert_eq!(c.interfaces.len(), 3);
    assert_eq!(c.filter.rules.len(), 2);
    assert_eq!(c.filter.rules[1].max_src_states, Some(1000));
    assert_eq!(
        c.filter.rules[1].max_src_conn_rate,
        Some(tandem_control::config::SrcConnRate {
            conns: 100,
            seconds: 10
        })
    );
    assert!(c.ha.config_sync.unwrap().pushes());
    // DHCP's chaddr check: on as written, and off when the file says so.
    assert!(c.dhcp[0].verify_chaddr);
    let off = text.replace("verify_chaddr = true", "verify_chaddr = false");
    assert_ne!(off, text);
    assert!(!parse("docs/config.md", &off).unwrap().dhcp[0].verify_chaddr);
    let unset = text.replace("verify_chaddr = true", "");
    assert!(
        parse("docs/config.md", &unset).unwrap().dhcp[0].verify_chaddr,
        "default on"
    );
}
