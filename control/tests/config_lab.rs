//! The lab's configs (the seed article's two boxes, and box A alone) and `tandemd --check-config`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tandem_control::config::{
    load, Action, AddrSpec, Config, IfAddr, NatMode, Prefix, Protocol, Role, SyncSection,
    TranslationAddr, VipKind,
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn lab(name: &str) -> Config {
    let path = workspace().join("scripts/lab-configs").join(name);
    match load(&path) {
        Ok(c) => c,
        Err(e) => panic!("{name} is invalid:\n{e}"),
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn prefix(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn if_addr(s: &str) -> IfAddr {
    s.parse().unwrap()
}

/// The first enabled rule of `iface` matching the packet, as the dataplane will evaluate them
/// (first match wins); `None` is the implicit block.
fn first_match(
    c: &Config,
    iface: &str,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dport: Option<u16>,
) -> Option<Action> {
    let addr_matches = |spec: &AddrSpec, invert: bool, a: Ipv4Addr| {
        let hit = c
            .resolve(spec)
            .is_none_or(|ps| ps.iter().any(|p| p.contains(a)));
        hit != invert
    };
    c.rules_on(iface)
        .find(|r| {
            let proto_ok = r.protocol.numbers().is_empty() || r.protocol.numbers().contains(&proto);
            let port_ok = match (r.destination.port, dport) {
                (None, _) => true,
                (Some(range), Some(p)) => range.contains(p),
                (Some(_), None) => false,
            };
            proto_ok
                && port_ok
                && addr_matches(&r.source.addr, r.source.invert, src)
                && addr_matches(&r.destination.addr, r.destination.invert, dst)
        })
        .map(|r| r.action)
}

#[test]
fn lab_configs_are_valid() {
    for name in ["fw-a.toml", "fw-b.toml", "fw-single.toml"] {
        lab(name);
    }
}

/// The seed's settings on one box of the pair.
fn check_seed_box(c: &Config, own: [&str; 3], skew: u8) {
    let [wan, lan, sync] = own;
    let iface = |name: &str| {
        c.interface(name)
            .unwrap_or_else(|| panic!("no interface {name}"))
    };
    assert_eq!(
        (iface("wan").device.as_str(), iface("wan").role),
        ("wan", Role::Wan)
    );
    assert_eq!(
        (iface("lan").device.as_str(), iface("lan").role),
        ("lan", Role::Lan)
    );
    assert_eq!(
        (iface("sync").device.as_str(), iface("sync").role),
        ("sync", Role::Sync)
    );
    assert_eq!(iface("wan").address, if_addr(wan));
    assert_eq!(iface("lan").address, if_addr(lan));
    assert_eq!(iface("sync").address, if_addr(sync));
    assert_eq!(c.routes.default_gateway, Some(ip("172.25.46.1")));

    // Step 1: two CARP VIPs, base 1, the box's skew.
    let groups = c.carp_groups();
    assert_eq!(groups.len(), 2);
    for (g, (iface, vhid, vip)) in groups
        .iter()
        .zip([("wan", 1, "172.25.46.100"), ("lan", 2, "192.168.0.10")])
    {
        assert_eq!(
            (g.interface, g.carp.vhid, g.addresses.clone()),
            (iface, vhid, vec![ip(vip)])
        );
        assert_eq!((g.carp.advbase, g.carp.advskew), (1, skew));
    }
    let vips: Vec<IfAddr> = c.virtual_ips.iter().map(|v| v.address).collect();
    assert_eq!(
        vips,
        [if_addr("172.25.46.100/24"), if_addr("192.168.0.10/24")]
    );

    // Step 2: hybrid outbound NAT of the LAN to the WAN VIP.
    assert_eq!(c.nat.outbound.mode, NatMode::Hybrid);
    let [rule] = c.nat.outbound.rules.as_slice() else {
        panic!("one NAT rule expected")
    };
    assert_eq!(
        (rule.interface.as_str(), rule.protocol),
        ("wan", Protocol::Any)
    );
    assert_eq!(
        rule.source.addr,
        AddrSpec::Network(prefix("192.168.0.0/24"))
    );
    assert_eq!(rule.destination.addr, AddrSpec::Any);
    assert_eq!(
        rule.translation.address,
        TranslationAddr::Addr(ip("172.25.46.100"))
    );
    assert!(!rule.disabled && !rule.no_nat && !rule.no_sync);

    // Step 3: the alias of both sync addresses, and the rules that let sync in.
    let alias = c.alias("cluster_pfSense").expect("alias cluster_pfSense");
    assert_eq!(
        alias.entries,
        [prefix("10.255.0.1/32"), prefix("10.255.0.2/32")]
    );
    let peer_sync = if sync.starts_with("10.255.0.1/") {
        ip("10.255.0.2")
    } else {
        ip("10.255.0.1")
    };
    let own_sync = if_addr(sync).addr();
    let cs_port = c.ha.config_sync.as_ref().expect("config sync").port;
    assert_eq!(
        first_match(c, "sync", 240, peer_sync, own_sync, None),
        Some(Action::Pass),
        "pfsync from the peer"
    );
    assert_eq!(
        first_match(c, "sync", 6, peer_sync, own_sync, Some(cs_port)),
        Some(Action::Pass),
        "config sync from the peer"
    );
    assert_eq!(
        first_match(c, "sync", 6, peer_sync, own_sync, Some(22)),
        None,
        "nothing else on sync"
    );
    assert_eq!(
        first_match(c, "sync", 240, ip("10.255.0.9"), own_sync, None),
        None,
        "pfsync from a stranger"
    );
    // LAN: pass from lan net to any. WAN: block, but CARP adverts pass on both.
    assert_eq!(
        first_match(
            c,
            "lan",
            6,
            ip("192.168.0.100"),
            ip("198.51.100.1"),
            Some(80)
        ),
        Some(Action::Pass)
    );
    assert_eq!(
        first_match(
            c,
            "wan",
            6,
            ip("198.51.100.1"),
            ip("172.25.46.100"),
            Some(80)
        ),
        Some(Action::Block)
    );
    assert_eq!(
        first_match(c, "wan", 112, ip("172.25.46.102"), ip("224.0.0.18"), None),
        Some(Action::Pass)
    );
    assert_eq!(
        first_match(c, "lan", 112, ip("192.168.0.12"), ip("224.0.0.18"), None),
        Some(Action::Pass)
    );

    // State sync to the peer's sync address, with a key.
    let ss = c.ha.state_sync.as_ref().expect("state sync");
    assert!(ss.enabled);
    assert_eq!(ss.interface, "sync");
    assert_eq!(ss.peer, Some(peer_sync));
    assert!(!ss.key.is_empty());
}

#[test]
fn fw_a_is_the_seeds_primary() {
    let a = lab("fw-a.toml");
    assert_eq!(
        (a.system.hostname.as_str(), a.system.host_id.get()),
        ("fwa", 1)
    );
    check_seed_box(
        &a,
        ["172.25.46.101/24", "192.168.0.11/24", "10.255.0.1/24"],
        0,
    );
    let cs = a.ha.config_sync.as_ref().unwrap();
    assert_eq!(
        cs.sync_to,
        Some(ip("10.255.0.2")),
        "the primary pushes to B's sync address"
    );
    assert_eq!(
        cs.sections.len(),
        SyncSection::ALL.len(),
        "the seed's Toggle All"
    );
}

#[test]
fn fw_b_is_the_seeds_secondary() {
    let b = lab("fw-b.toml");
    assert_eq!(
        (b.system.hostname.as_str(), b.system.host_id.get()),
        ("fwb", 2)
    );
    check_seed_box(
        &b,
        ["172.25.46.102/24", "192.168.0.12/24", "10.255.0.2/24"],
        1,
    );
    let cs = b.ha.config_sync.as_ref().unwrap();
    assert_eq!(
        cs.sync_to, None,
        "the seed: leave Synchronize Config to IP empty on the secondary"
    );
    assert!(cs.sections.is_empty());
}

#[test]
fn fw_a_and_fw_b_make_a_pair() {
    let (a, b) = (lab("fw-a.toml"), lab("fw-b.toml"));
    assert_ne!(a.system.host_id, b.system.host_id);
    // Same CARP groups (vhid, password, advbase, addresses); A wins with the lower skew.
    for (ga, gb) in a.carp_groups().iter().zip(b.carp_groups().iter()) {
        assert_eq!((ga.interface, ga.carp.vhid), (gb.interface, gb.carp.vhid));
        assert_eq!(ga.carp.password, gb.carp.password);
        assert_eq!(ga.carp.advbase, gb.carp.advbase);
        assert_eq!(ga.addresses, gb.addresses);
        assert!(ga.carp.advskew < gb.carp.advskew);
    }
    // What config sync pushes is already the same on both.
    assert_eq!(a.aliases, b.aliases);
    assert_eq!(a.filter, b.filter);
    assert_eq!(a.nat, b.nat);
    assert_eq!(a.routes, b.routes);
    // Each one's sync peer is the other.
    let (sa, sb) = (
        a.ha.state_sync.as_ref().unwrap(),
        b.ha.state_sync.as_ref().unwrap(),
    );
    assert_eq!(sa.peer, Some(b.interface("sync").unwrap().ip()));
    assert_eq!(sb.peer, Some(a.interface("sync").unwrap().ip()));
    assert_eq!(sa.key, sb.key);
    let (ca, cb) = (
        a.ha.config_sync.as_ref().unwrap(),
        b.ha.config_sync.as_ref().unwrap(),
    );
    assert_eq!(
        (&ca.username, &ca.password, ca.port),
        (&cb.username, &cb.password, cb.port)
    );
}

#[test]
fn fw_single_is_box_a_alone() {
    let s = lab("fw-single.toml");
    let a = lab("fw-a.toml");
    assert_eq!(s.ha, Default::default());
    assert!(s.virtual_ips.iter().all(|v| v.kind == VipKind::IpAlias));
    let addrs = |c: &Config| {
        c.virtual_ips
            .iter()
            .map(|v| (v.interface.clone(), v.address.addr()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        addrs(&s),
        addrs(&a),
        "the clients see the same gateway and NAT address"
    );
    let nat = |c: &Config| {
        let mut nat = c.nat.clone();
        nat.outbound
            .rules
            .iter_mut()
            .for_each(|r| r.description.clear());
        nat
    };
    assert_eq!(nat(&s), nat(&a));
    assert_eq!(s.interface("lan"), a.interface("lan"));
    assert_eq!(s.interface("wan"), a.interface("wan"));
    assert_eq!(s.routes, a.routes);
}

// --- tandemd --check-config ------------------------------------------------------------------

fn tandemd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tandemd"))
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("run tandemd")
}

/// `tandemd --check-config` on `text`, written to a scratch file named `name` (removed after);
/// returns the output and the file's path as it was named.
fn check_config_of(name: &str, text: &str) -> (std::process::Output, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("tandem-config-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    let out = tandemd(&["--check-config", file.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    (out, file)
}

#[test]
fn check_config_accepts_the_lab_configs() {
    for name in ["fw-a.toml", "fw-b.toml", "fw-single.toml"] {
        let file = format!("scripts/lab-configs/{name}");
        let out = tandemd(&["--check-config", &file]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{file}: OK\n")
        );
        assert!(out.stderr.is_empty());
    }
}

#[test]
fn check_config_warns_of_what_the_doctor_finds_and_still_exits_0() {
    // Valid, but the sync link's rules shut the peer out: the doctor's one-box findings come
    // as warnings, and the exit status stays the validation's (the unit runs this before
    // every start).
    let text = std::fs::read_to_string(workspace().join("scripts/lab-configs/fw-a.toml")).unwrap();
    let shut = text.replace(
        "source = { address = \"cluster_pfSense\" }",
        "source = { address = \"10.255.0.99\" }",
    );
    assert_ne!(shut, text);
    let (out, file) = check_config_of("fw-shut.toml", &shut);

    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: OK\n", file.display())
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for id in ["[config-sync-blocked]", "[state-sync-blocked]"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("warning: doctor (error): ") && l.ends_with(id)),
            "{id} missing:\n{stderr}"
        );
    }
    assert!(stderr.contains("tandemctl doctor --config"), "{stderr}");
}

#[test]
fn check_config_refuses_a_broken_file_naming_the_fields() {
    let text = std::fs::read_to_string(workspace().join("scripts/lab-configs/fw-a.toml")).unwrap();
    let broken = text.replacen("vhid = 2", "vhid = 0", 1).replacen(
        "key = \"tandem-lab-state-sync-key\"",
        "",
        1,
    );
    assert_ne!(broken, text);
    let (out, file) = check_config_of("fw-broken.toml", &broken);

    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let f = file.display();
    // The field's line; for the missing key, its table's header.
    let line = |prefix: &str| 1 + broken.lines().position(|l| l.starts_with(prefix)).unwrap();
    let (vhid, table) = (line("vhid = 0"), line("[ha.state_sync]"));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{f}: virtual_ips[1].vhid: 0 is out of range 1..=255 (line {vhid})\n\
             {f}: ha.state_sync.key: missing (line {table})\n"
        )
    );
}

#[test]
fn check_config_warns_of_a_short_carp_password_and_exits_0() {
    let text = std::fs::read_to_string(workspace().join("scripts/lab-configs/fw-a.toml")).unwrap();
    let weak = text.replace("\"tandem-lab-vhid1\"", "\"vhid1\"");
    assert_ne!(weak, text);
    let (out, file) = check_config_of("fw-weak.toml", &weak);

    assert_eq!(out.status.code(), Some(0));
    let f = file.display();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{f}: OK\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("warning: {f}: virtual_ips[")),
        "{stderr}"
    );
    assert!(
        lines[0].contains("].password: is 5 bytes long; a CARP password under 8 bytes"),
        "{stderr}"
    );
    // The warning names the password's line, as errors name theirs.
    let line = 1 + weak.lines().position(|l| l.contains("\"vhid1\"")).unwrap();
    assert!(lines[0].ends_with(&format!(" (line {line})")), "{stderr}");
}

#[test]
fn check_config_on_a_missing_file_and_a_syntax_error() {
    let out = tandemd(&["--check-config", "scripts/lab-configs/no-such.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("scripts/lab-configs/no-such.toml: cannot read: "));

    let dir = std::env::temp_dir().join(format!("tandem-config-syntax-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("fw.toml");
    std::fs::write(&file, "[system]\nhostname = fw\n").unwrap();
    let out = tandemd(&["--check-config", file.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("{}: line 2, column 12: ", file.display())),
        "{stderr}"
    );
}

#[test]
fn the_daemon_refuses_to_start_on_a_broken_config_and_says_where() {
    let dir = std::env::temp_dir().join(format!("tandem-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.toml");
    let text = std::fs::read_to_string(workspace().join("scripts/lab-configs/fw-a.toml")).unwrap();
    std::fs::write(&file, text.replace("host_id = 1", "host_id = 0")).unwrap();
    let sock = dir.join("t.sock");
    let out = tandemd(&[
        "--config",
        file.to_str().unwrap(),
        "--socket",
        sock.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a broken config must stop the daemon"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.toml: system.host_id:"),
        "the error names the field: {err}"
    );
    assert!(
        !sock.exists(),
        "no control socket for a daemon that did not start"
    );
    // One mode or the other.
    assert_eq!(tandemd(&[]).status.code(), Some(2));
    assert_eq!(
        tandemd(&["--config", "a", "--check-config", "b"])
            .status
            .code(),
        Some(2)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
