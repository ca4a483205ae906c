//! Every check: the config that triggers it, and the seed's pair, which does not.

use super::live::LiveState;
use super::*;
use crate::api::{CarpReply, CarpStatus, CarpVip, ConfigSyncReply, SyncReply};
use crate::config;

fn lab(name: &str) -> String {
    let path = format!(
        "{}/../scripts/lab-configs/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

fn parse(text: &str) -> Config {
    config::parse("test", text).unwrap_or_else(|e| panic!("{e}"))
}

/// The findings for A's and B's texts, offline.
fn pair(a: &str, b: &str) -> Report {
    let (ca, cb) = (parse(a), parse(b));
    examine(
        &BoxView {
            config: &ca,
            live: None,
            text: Some(a),
        },
        Some(&BoxView {
            config: &cb,
            live: None,
            text: Some(b),
        }),
        None,
    )
}

fn ids(r: &Report) -> Vec<&str> {
    r.findings.iter().map(|f| f.id.as_str()).collect()
}

/// The finding with `id`, which must be there.
fn finding<'a>(r: &'a Report, id: &str) -> &'a Finding {
    r.findings
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no {id} in {:?}", ids(r)))
}

fn a() -> String {
    lab("fw-a.toml")
}
fn b() -> String {
    lab("fw-b.toml")
}

/// Replaces `from` by `to` once, insisting that `from` is there.
fn with(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in the config");
    text.replacen(from, to, 1)
}

#[test]
fn the_seed_pair_is_clean_both_ways_and_so_are_the_fast_variants() {
    let r = pair(&a(), &b());
    assert!(r.findings.is_empty(), "{}", r.human());
    let r = pair(&b(), &a());
    assert!(r.findings.is_empty(), "{}", r.human());
    let r = pair(&lab("fw-a-fast.toml"), &lab("fw-b-fast.toml"));
    assert!(r.findings.is_empty(), "{}", r.human());
    assert!(!r.has_errors());
    assert!(r.human().contains("No findings"));
}

#[test]
fn nat_to_the_interface_address_on_a_carp_interface() {
    // Manual rule to the interface address.
    let bad = with(
        &a(),
        "translation = { address = \"172.25.46.100\" }",
        "translation = { address = \"interface address\" }",
    );
    let r = pair(&bad, &b());
    let f = finding(&r, "nat-not-vip");
    assert_eq!(f.field, "nat.outbound.rules[0].translation");
    assert_eq!(f.severity, Severity::Error);
    assert!(r.has_errors());
    // Automatic mode: every inside network leaves by the WAN's own address.
    let automatic = |t: &str| {
        let start = t.find("[[nat.outbound.rules]]").unwrap();
        let end = t.find("# --- Aliases").unwrap();
        with(
            &format!("{}{}", &t[..start], &t[end..]),
            "mode = \"hybrid\"",
            "mode = \"automatic\"",
        )
    };
    let r = pair(&automatic(&a()), &automatic(&b()));
    assert_eq!(finding(&r, "nat-not-vip").field, "nat.outbound.mode");
    // Hybrid whose manual rule covers only part of the LAN: the rest is NATed automatically.
    let bad = with(
        &a(),
        "source = { address = \"192.168.0.0/24\" }",
        "source = { address = \"192.168.0.0/25\" }",
    );
    let r = pair(&bad, &b());
    assert!(r
        .findings
        .iter()
        .any(|f| f.id == "nat-not-vip" && f.field == "nat.outbound.mode"));
    // Manual mode with the VIP: fine.
    let ok = with(&a(), "mode = \"hybrid\"", "mode = \"manual\"");
    assert!(!ids(&pair(&ok, &b())).contains(&"nat-not-vip"));
}

#[test]
fn carp_adverts_blocked_by_the_rules() {
    // WAN passes the adverts of one stranger only, then denies: the peer's are blocked. (On
    // LAN the seed's allow-all rule would pass them anyway.)
    let bad = with(
        &a(),
        "protocol = \"carp\"\nsource = { address = \"wan net\" }",
        "protocol = \"carp\"\nsource = { address = \"10.9.9.9\" }",
    );
    let r = pair(&bad, &b());
    let f = finding(&r, "carp-adverts-blocked");
    assert_eq!(f.field, "virtual_ips[0].interface");
    assert!(f.message.contains("wan"), "{}", f.message);
}

#[test]
fn sync_link_without_pass_rules_for_pfsync_or_config_sync() {
    let no_pfsync = with(&b(), "protocol = \"pfsync\"", "protocol = \"udp\"");
    let r = pair(&a(), &no_pfsync);
    assert_eq!(
        finding(&r, "state-sync-blocked").field,
        "peer:ha.state_sync.interface"
    );
    let no_cfg = with(
        &b(),
        "destination = { address = \"self\", port = 8443 }",
        "destination = { address = \"self\", port = 8444 }",
    );
    let r = pair(&a(), &no_cfg);
    let f = finding(&r, "config-sync-blocked");
    assert_eq!(
        (f.field.as_str(), f.severity),
        ("peer:ha.config_sync.port", Severity::Error)
    );
    // On the primary: its rules travel to the secondary, where they would lock config sync
    // out (an error); with rules not synced only the peer's doctor needs it (a warning).
    let no_cfg_a = with(
        &a(),
        "destination = { address = \"self\", port = 8443 }",
        "destination = { address = \"self\", port = 8444 }",
    );
    let r = pair(&no_cfg_a, &b());
    assert_eq!(finding(&r, "config-sync-blocked").severity, Severity::Error);
    let toggle = no_cfg_a.find("# The seed's \"Toggle All\"").unwrap();
    let rules_stay = format!("{}sections = [\"aliases\", \"nat\"]\n", &no_cfg_a[..toggle]);
    let r = pair(&rules_stay, &b());
    assert_eq!(
        finding(&r, "config-sync-blocked").severity,
        Severity::Warning
    );
}

#[test]
fn a_push_that_would_lock_the_secondary_out_is_named() {
    // B's own file with A's blocking sync rule in it: what B would run after such a push.
    let locked = with(
        &b(),
        "destination = { address = \"self\", port = 8443 }",
        "destination = { address = \"self\", port = 9443 }",
    );
    let a_ip = "10.255.0.1".parse().unwrap();
    let why = lockout(&parse(&locked), a_ip);
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].contains("config sync"), "{why:?}");
    let no_pfsync = with(&b(), "protocol = \"pfsync\"", "protocol = \"udp\"");
    let why = lockout(&parse(&no_pfsync), a_ip);
    assert!(why.len() == 1 && why[0].contains("pfsync"), "{why:?}");
    assert!(lockout(&parse(&b()), a_ip).is_empty());
}

#[test]
fn a_rule_naming_the_real_peer_is_no_false_positive() {
    // Narrower than the seed's "wan net": just B's address. Fine when B's config is known.
    let exact = with(
        &a(),
        "protocol = \"carp\"\nsource = { address = \"wan net\" }",
        "protocol = \"carp\"\nsource = { address = \"172.25.46.102\" }",
    );
    assert!(!ids(&pair(&exact, &b())).contains(&"carp-adverts-blocked"));
    // Alone, the doctor cannot tell: a warning, not an error.
    let c = parse(&exact);
    let alone = BoxView {
        config: &c,
        live: None,
        text: None,
    };
    let r = examine(&alone, None, None);
    assert_eq!(
        finding(&r, "carp-adverts-blocked").severity,
        Severity::Warning
    );
}

#[test]
fn carp_without_state_or_config_sync() {
    let cut = |t: &str| t[..t.find("[ha.state_sync]").unwrap()].to_string();
    let r = pair(&cut(&a()), &cut(&b()));
    assert_eq!(finding(&r, "no-state-sync").severity, Severity::Warning);
    assert_eq!(finding(&r, "no-config-sync").severity, Severity::Info);
    // Nothing syncs the configs, and they differ: drift.
    let b2 = with(
        &cut(&b()),
        "description = \"default allow LAN to any\"",
        "description = \"allow\"",
    );
    assert!(ids(&pair(&cut(&a()), &b2)).contains(&"config-drift"));
    assert!(!ids(&pair(&cut(&a()), &cut(&b()))).contains(&"config-drift"));
    // Static routes and DHCP servers drift too.
    let route = "\n[[routes.static]]\nnetwork = \"10.50.0.0/16\"\ngateway = \"172.25.46.1\"\n";
    let r = pair(&format!("{}{route}", cut(&a())), &cut(&b()));
    assert_eq!(finding(&r, "config-drift").field, "routes.static");
    let lan_dhcp = "\n[[dhcp]]\ninterface = \"lan\"\nrange = \"192.168.0.150-192.168.0.199\"\n";
    let r = pair(&format!("{}{lan_dhcp}", cut(&a())), &cut(&b()));
    assert_eq!(finding(&r, "config-drift").field, "dhcp");
}

#[test]
fn host_ids_equal() {
    let r = pair(&a(), &with(&b(), "host_id = 2", "host_id = 1"));
    assert_eq!(finding(&r, "host-id-equal").field, "system.host_id");
}

#[test]
fn vips_that_differ_between_the_boxes() {
    // Missing on the peer.
    let extra = "\n[[virtual_ips]]\ntype = \"carp\"\ninterface = \"lan\"\naddress = \"192.168.0.20/24\"\nvhid = 3\npassword = \"tandem-lab-vhid3\"\n";
    let r = pair(&format!("{}{extra}", a()), &b());
    let f = finding(&r, "vip-missing-on-peer");
    assert_eq!(f.field, "virtual_ips[2]");
    // Missing here (the peer's field).
    let r = pair(&a(), &format!("{}{extra}", b()));
    assert_eq!(
        finding(&r, "vip-missing-on-peer").field,
        "peer:virtual_ips[2]"
    );
    // Same address, other vhid.
    let r = pair(&a(), &with(&b(), "vhid = 2", "vhid = 7"));
    assert!(ids(&r).contains(&"vip-vhid-mismatch"));
    // Same vhid, other address.
    let r = pair(
        &a(),
        &with(
            &b(),
            "address = \"192.168.0.10/24\"",
            "address = \"192.168.0.9/24\"",
        ),
    );
    assert!(ids(&r).contains(&"vip-address-mismatch"));
    // Password and advbase.
    let r = pair(&a(), &with(&b(), "tandem-lab-vhid2", "another-password"));
    assert_eq!(
        finding(&r, "vip-password-mismatch").field,
        "virtual_ips[1].password"
    );
    let r = pair(&a(), &b().replacen("advbase = 1", "advbase = 2", 1));
    assert_eq!(
        finding(&r, "vip-advbase-mismatch").field,
        "virtual_ips[0].advbase"
    );
}

#[test]
fn a_vip_outside_the_peer_s_subnet() {
    // B's LAN on another network: the VIP does not fit there.
    let b2 = b()
        .replace("192.168.0.12/24", "192.168.1.12/24")
        .replace("192.168.0.10/24", "192.168.1.10/24")
        // Its DHCP server moves along, or the config would not even parse.
        .replace("192.168.0.150-192.168.0.199", "192.168.1.150-192.168.1.199")
        .replace("\"192.168.0.50\"", "\"192.168.1.50\"")
        .replace("[\"192.168.0.10\"]", "[\"192.168.1.10\"]");
    let r = pair(&a(), &b2);
    assert!(ids(&r).contains(&"vip-outside-peer-subnet"));
    assert!(ids(&r).contains(&"interface-network-mismatch"));
}

#[test]
fn skews_that_let_the_secondary_win_or_tie() {
    let tie = b().replace("advskew = 1", "advskew = 0");
    let r = pair(&a(), &tie);
    assert_eq!(finding(&r, "skew-equal").field, "virtual_ips[0].advskew");
    let wins = a().replace("advskew = 0", "advskew = 5");
    let r = pair(&wins, &b());
    assert!(ids(&r).contains(&"skew-secondary-wins"));
    // Seen from the secondary's side too.
    let r = pair(&b(), &wins);
    assert!(ids(&r).contains(&"skew-secondary-wins"));
}

#[test]
fn skews_above_240_are_compared_as_sent() {
    // 250 and 245 both go out as 240: a tie, though the numbers differ.
    let r = pair(
        &a().replace("advskew = 0", "advskew = 245"),
        &b().replace("advskew = 1", "advskew = 250"),
    );
    let f = finding(&r, "skew-equal");
    assert!(
        f.message.contains("245 and 250, both sent as 240"),
        "{}",
        f.message
    );
    // 239 against 250 (sent as 240) still has a winner.
    let r = pair(
        &a().replace("advskew = 0", "advskew = 239"),
        &b().replace("advskew = 1", "advskew = 250"),
    );
    assert!(!ids(&r).contains(&"skew-equal"), "{:?}", ids(&r));
}

#[test]
fn addresses_both_boxes_hold_and_routes_through_the_other_box() {
    // B's LAN address set to A's.
    let r = pair(&a(), &with(&b(), "192.168.0.12/24", "192.168.0.11/24"));
    assert_eq!(
        finding(&r, "address-duplicate").field,
        "interfaces[1].address"
    );
    // One ipalias on both boxes.
    let alias = "\n[[virtual_ips]]\ntype = \"ipalias\"\ninterface = \"lan\"\naddress = \"192.168.0.20/24\"\n";
    let r = pair(&format!("{}{alias}", a()), &format!("{}{alias}", b()));
    assert!(finding(&r, "address-duplicate")
        .message
        .contains("192.168.0.20"));
    assert!(!ids(&pair(&a(), &b())).contains(&"address-duplicate"));
    // A's default gateway is B's WAN address.
    let r = pair(
        &with(
            &a(),
            "default_gateway = \"172.25.46.1\"",
            "default_gateway = \"172.25.46.102\"",
        ),
        &b(),
    );
    assert_eq!(
        finding(&r, "gateway-is-peer").field,
        "routes.default_gateway"
    );
}

#[test]
fn dhcp_pools_holding_the_peer_and_servers_both_boxes_run() {
    // A's pool holds B's LAN address (the push's refusal says so too; this names the pool).
    let a2 = with(
        &a(),
        "range = \"192.168.0.150-192.168.0.199\"",
        "range = \"192.168.0.12-192.168.0.40\"",
    );
    let b2 = with(
        &b(),
        "range = \"192.168.0.150-192.168.0.199\"",
        "range = \"192.168.0.13-192.168.0.40\"",
    );
    let r = pair(&a2, &b2);
    assert_eq!(finding(&r, "dhcp-pool-holds-peer").field, "dhcp[0].ranges");
    // A pool on an interface with no CARP VIP (a box address each): both servers answer.
    let dmz = |n: u8| {
        format!(
            "\n[[interfaces]]\nname = \"dmz\"\ndevice = \"dmz\"\naddress = \"10.9.0.{n}/24\"\nrole = \"other\"\n\
             \n[[dhcp]]\ninterface = \"dmz\"\nrange = \"10.9.0.150-10.9.0.199\"\n"
        )
    };
    let r = pair(&format!("{}{}", a(), dmz(1)), &format!("{}{}", b(), dmz(2)));
    assert_eq!(finding(&r, "dhcp-both-serve").field, "dhcp[1].interface");
    // A CARP VIP there on A only: B's server, with none, still answers as backup.
    let vip = "\n[[virtual_ips]]\ntype = \"carp\"\ninterface = \"dmz\"\naddress = \"10.9.0.10/24\"\nvhid = 9\npassword = \"a-dmz-password\"\n";
    let r = pair(
        &format!("{}{}{vip}", a(), dmz(1)),
        &format!("{}{}", b(), dmz(2)),
    );
    assert!(ids(&r).contains(&"dhcp-both-serve"), "{:?}", ids(&r));
    // On both boxes: only the master answers.
    let b_vip = vip.replace("vhid = 9", "vhid = 9\nadvskew = 100");
    let r = pair(
        &format!("{}{}{vip}", a(), dmz(1)),
        &format!("{}{}{b_vip}", b(), dmz(2)),
    );
    assert!(!ids(&r).contains(&"dhcp-both-serve"), "{:?}", ids(&r));
    // The seed's LAN pool has the LAN VIP: only the master answers.
    assert!(!ids(&pair(&a(), &b())).contains(&"dhcp-both-serve"));
}

#[test]
fn config_sync_roles_targets_and_credentials() {
    // Both push.
    let b_pushes = with(
        &b(),
        "username = \"admin\"",
        "sync_to = \"10.255.0.1\"\nusername = \"admin\"",
    );
    let r = pair(&a(), &b_pushes);
    assert!(finding(&r, "config-sync-roles").message.contains("both"));
    // Neither.
    let a_text = a();
    let a_quiet = with(
        &a_text[..a_text.find("# The seed's \"Toggle All\"").unwrap()],
        "sync_to = \"10.255.0.2\"\n",
        "",
    );
    let r = pair(&a_quiet, &b());
    assert!(finding(&r, "config-sync-roles").message.contains("neither"));
    // One side only.
    let cut = b()[..b().find("[ha.config_sync]").unwrap()].to_string();
    assert!(ids(&pair(&a(), &cut)).contains(&"config-sync-one-side"));
    // Credentials.
    let r = pair(&a(), &with(&b(), "tandem-lab-config-sync", "other"));
    assert!(ids(&r).contains(&"config-sync-credentials"));
    // The target is not the peer's sync address (B's sync address moves).
    let b_moved = b().replace("10.255.0.2/24", "10.255.0.3/24");
    let r = pair(&a(), &b_moved);
    assert_eq!(
        finding(&r, "config-sync-target").field,
        "ha.config_sync.sync_to"
    );
    assert_eq!(finding(&r, "state-sync-peer").field, "ha.state_sync.peer");
}

#[test]
fn state_sync_keys_and_sides() {
    let r = pair(
        &a(),
        &with(
            &b(),
            "tandem-lab-state-sync-key",
            "tandem-lab-another-sync-key",
        ),
    );
    assert_eq!(
        finding(&r, "state-sync-key-mismatch").field,
        "ha.state_sync.key"
    );
    let off = with(&b(), "enabled = true", "enabled = false");
    assert!(ids(&pair(&a(), &off)).contains(&"state-sync-one-side"));
}

#[test]
fn rules_nat_and_routes_naming_what_the_peer_lacks() {
    let dmz = "\n[[interfaces]]\nname = \"dmz\"\ndevice = \"dmz\"\naddress = \"10.50.0.1/24\"\nrole = \"other\"\n\n[[filter.rules]]\ninterface = \"dmz\"\naction = \"pass\"\n\n[[routes.static]]\nnetwork = \"10.60.0.0/16\"\ngateway = \"10.50.0.254\"\n";
    let r = pair(&format!("{}{dmz}", a()), &b());
    let fields: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.id == "interface-missing-on-peer")
        .map(|f| f.field.as_str())
        .collect();
    assert!(
        fields.iter().any(|f| f.starts_with("filter.rules[")),
        "{fields:?}"
    );
    assert!(
        fields.iter().any(|f| f.starts_with("routes.static[0]")),
        "{fields:?}"
    );
    // Marked no_sync: a box's own business.
    let own = dmz
        .replace("action = \"pass\"\n", "action = \"pass\"\nno_sync = true\n")
        .replace(
            "gateway = \"10.50.0.254\"\n",
            "gateway = \"10.50.0.254\"\nno_sync = true\n",
        );
    let r = pair(&format!("{}{own}", a()), &b());
    assert!(
        !ids(&r).contains(&"interface-missing-on-peer"),
        "{}",
        r.human()
    );
}

#[test]
fn config_warnings_are_findings() {
    let short = a().replace("tandem-lab-vhid1", "short");
    let short_b = b().replace("tandem-lab-vhid1", "short");
    let r = pair(&short, &short_b);
    let fields: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.id == "config-warning")
        .map(|f| f.field.as_str())
        .collect();
    assert_eq!(
        fields,
        ["peer:virtual_ips[0].password", "virtual_ips[0].password"]
    );
}

fn live(status: CarpStatus) -> LiveState {
    LiveState {
        hostname: "fw".into(),
        unix_ms: 1_000_000,
        carp: CarpReply {
            vips: vec![CarpVip {
                interface: "lan".into(),
                vhid: 2,
                vip: "192.168.0.10".parse().unwrap(),
                status,
                advbase: 1,
                advskew: 0,
                demotion: 0,
                last_transition_reason: String::new(),
                previous_status: None,
                since_s: None,
            }],
            enabled: true,
            maintenance: false,
            demotion: 0,
        },
        sync: SyncReply {
            running: true,
            peer: None,
            sent: 1,
            received: 1,
            retransmitted: 0,
            auth_failed: 0,
            dropped: 0,
            lag_ms: 0,
            bulk_status: "done".into(),
            states: 0,
            peer_heard_ms: Some(400),
            peer_silent_ms: 400,
        },
        config_sync: ConfigSyncReply {
            role: "primary".into(),
            peer: None,
            port: 8443,
            sections: vec![],
            nothing_to_sync: vec![],
            local_hash: Some("h".into()),
            peer_hash: Some("h".into()),
            in_sync: true,
            version: 1,
            peer_hostname: None,
            peer_seen_s: None,
            last_push: None,
            last_error: None,
            sessions: 1,
            forced_sessions: 0,
        },
    }
}

fn online(own: &LiveState, peer: Option<&LiveState>, err: Option<&str>) -> Report {
    let (ca, cb) = (parse(&a()), parse(&b()));
    examine(
        &BoxView {
            config: &ca,
            live: Some(own),
            text: None,
        },
        peer.map(|p| BoxView {
            config: &cb,
            live: Some(p),
            text: None,
        })
        .as_ref(),
        err,
    )
}

#[test]
fn live_checks_fire_on_what_the_boxes_see() {
    let (m, bk) = (live(CarpStatus::Master), live(CarpStatus::Backup));
    assert!(online(&m, Some(&bk), None).findings.is_empty());
    assert!(ids(&online(&m, Some(&m), None)).contains(&"carp-both-master"));
    assert!(ids(&online(&bk, Some(&bk), None)).contains(&"carp-both-backup"));
    let r = online(&m, None, Some("connection refused"));
    assert_eq!(finding(&r, "peer-unreachable").severity, Severity::Error);
    let r = online(&m, None, Some(crate::config_sync::service::UNKNOWN_PEER));
    assert_eq!(finding(&r, "peer-unknown").severity, Severity::Info);
    assert!(!r.has_errors());
    let mut d = m.clone();
    d.carp.demotion = 240;
    assert!(ids(&online(&d, Some(&bk), None)).contains(&"box-demoted"));
    let mut mm = m.clone();
    mm.carp.maintenance = true;
    assert!(ids(&online(&mm, Some(&bk), None)).contains(&"maintenance"));
    // The peer's switches, read over config sync (a new user's review: `carp disable` and
    // maintenance on either box went unreported, or reported as "no backup" wrongly).
    let mut pm = bk.clone();
    pm.carp.maintenance = true;
    assert_eq!(ids(&online(&m, Some(&pm), None)), ["peer-maintenance"]);
    let mut off = bk.clone();
    off.carp.enabled = false;
    assert_eq!(
        finding(&online(&off, Some(&m), None), "carp-disabled").severity,
        Severity::Error
    );
    assert_eq!(
        finding(&online(&m, Some(&off), None), "peer-carp-disabled").severity,
        Severity::Error
    );
    assert!(ids(&online(&bk, Some(&d), None)).contains(&"peer-demoted"));
    let mut s = m.clone();
    s.sync.running = false;
    assert!(ids(&online(&s, Some(&bk), None)).contains(&"state-sync-not-running"));
    let mut s = m.clone();
    s.sync.bulk_status = "pending (try 2/12)".into();
    assert!(ids(&online(&s, Some(&bk), None)).contains(&"state-sync-bulk-pending"));
    let mut s = m.clone();
    (s.sync.peer_heard_ms, s.sync.peer_silent_ms) = (Some(3_500), 3_500);
    let r = online(&s, Some(&bk), None);
    assert_eq!(
        finding(&r, "state-sync-peer-silent").severity,
        Severity::Error
    );
    assert!(finding(&r, "state-sync-peer-silent")
        .message
        .contains("not heard from the state sync peer for 3 s"));
    (s.sync.peer_heard_ms, s.sync.peer_silent_ms) = (None, 12_000);
    assert!(
        finding(&online(&s, Some(&bk), None), "state-sync-peer-silent")
            .message
            .contains("never heard (12 s since state sync started)")
    );
    // Just started, not heard yet; or heard within three keepalives: nothing to say.
    (s.sync.peer_heard_ms, s.sync.peer_silent_ms) = (None, 800);
    assert!(!ids(&online(&s, Some(&bk), None)).contains(&"state-sync-peer-silent"));
    (s.sync.peer_heard_ms, s.sync.peer_silent_ms) = (Some(2_900), 2_900);
    assert!(!ids(&online(&s, Some(&bk), None)).contains(&"state-sync-peer-silent"));
    let mut s = m.clone();
    s.sync.auth_failed = 3;
    assert!(ids(&online(&s, Some(&bk), None)).contains(&"state-sync-auth-failures"));
    let mut c = m.clone();
    c.config_sync.in_sync = false;
    c.config_sync.last_error = Some("10.255.0.2:8443: refused".into());
    let r = online(&c, Some(&bk), None);
    assert!(finding(&r, "config-not-in-sync")
        .message
        .contains("refused"));
    let mut late = bk.clone();
    late.unix_ms += 5_000;
    assert!(ids(&online(&m, Some(&late), None)).contains(&"clock-skew"));
}

#[test]
fn the_report_reads_as_json_and_as_text() {
    let bad = with(
        &a(),
        "translation = { address = \"172.25.46.100\" }",
        "translation = { address = \"interface address\" }",
    );
    let r = pair(&bad, &b().replace("advskew = 1", "advskew = 0"));
    let json = serde_json::to_value(&r).unwrap();
    let first = &json["findings"][0];
    for k in ["id", "severity", "field", "message", "fix"] {
        assert!(first.get(k).is_some(), "{k} missing: {first}");
    }
    assert_eq!(first["severity"], "error");
    let text = r.human();
    assert!(text.starts_with("ERROR ("), "{text}");
    assert!(
        text.contains("  nat.outbound.rules[0].translation: "),
        "{text}"
    );
}

#[test]
fn dhcp_handing_out_a_box_address_as_gateway_or_dns() {
    // The lab configs serve DHCP on LAN with the VIP: clean (the seed pair test). A box address:
    let bad = with(
        &a(),
        "dns = [\"192.168.0.10\"]",
        "gateway = \"192.168.0.11\"\ndns = [\"192.168.0.11\"]",
    );
    let r = pair(&bad, &b());
    let f = finding(&r, "dhcp-gateway-not-vip");
    assert_eq!(
        (f.field.as_str(), f.severity),
        ("dhcp[0].gateway", Severity::Error)
    );
    assert_eq!(finding(&r, "dhcp-dns-not-vip").field, "dhcp[0].dns[0]");
}

/// `single::sync_lockout` on `c` compiled as the daemon compiles it.
fn lockout(c: &Config, primary: std::net::Ipv4Addr) -> Vec<String> {
    let compiled = super::compiled(c).expect("compiles");
    single::sync_lockout(c, &compiled.sync, primary)
}

#[test]
fn a_push_that_would_lock_the_secondary_out_is_found_before_it_is_pushed() {
    // Each box's sync-link rules pass the other box alone: right on each box by itself (neither
    // file has a finding of its own), but A's rules, pushed, replace B's, and then pass only
    // B's own address to B: B refuses every push.
    let peer_only = |text: &str, other: &str| {
        let t = text.replace(
            "source = { address = \"cluster_pfSense\" }",
            &format!("source = {{ address = \"{other}\" }}"),
        );
        assert_ne!(t, text, "the lab configs' sync rules changed");
        t
    };
    let (a2, b2) = (peer_only(&a(), "10.255.0.2"), peer_only(&b(), "10.255.0.1"));
    let r = pair(&a2, &b2);
    let f = finding(&r, "config-sync-push-locks-out");
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(f.field, "ha.config_sync.sections");
    assert!(f.message.contains("10.255.0.1"), "{}", f.message);
    assert!(f.fix.contains("10.255.0.0/24"), "{}", f.fix);
    // Seen from B (the secondary) too, named as the peer's.
    let r = pair(&b2, &a2);
    assert_eq!(
        finding(&r, "config-sync-push-locks-out").field,
        "peer:ha.config_sync.sections"
    );
    // The primary's rules decide: B's own are replaced by the push.
    assert!(ids(&pair(&a2, &b())).contains(&"config-sync-push-locks-out"));
    assert!(!ids(&pair(&a(), &b())).contains(&"config-sync-push-locks-out"));
    assert!(!ids(&pair(&a(), &b2)).contains(&"config-sync-push-locks-out"));
    // Neither file has a finding of its own: only playing the push through shows it.
    for text in [&a2, &b2] {
        let c = parse(text);
        let alone = examine(
            &BoxView {
                config: &c,
                live: None,
                text: Some(text),
            },
            None,
            None,
        );
        assert!(
            alone.findings.iter().all(|f| f.severity != Severity::Error),
            "{:?}",
            ids(&alone)
        );
    }
    // A push the secondary cannot merge (a skew it cannot lose with) is refused too.
    let top = a().replacen("advskew = 0", "advskew = 254", 1);
    assert_ne!(top, a());
    let r = pair(&top, &b());
    assert!(
        ids(&r).contains(&"config-sync-push-refused"),
        "{:?}",
        ids(&r)
    );
}
